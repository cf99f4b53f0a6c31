"""The task ledger: every paid task, on disk, in SQLite.

A row per task: the request's fingerprint (prompt, parameters, seed, SHA-256 of the first
frame's pixels, base URL; never the key), the task id, its status, and where its video was saved.
It is what lets a fixed seed reuse a paid task instead of paying again, lets a restarted ComfyUI
collect a task, and keeps a saved video from being downloaded twice.
"""
from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Iterator, Mapping

from . import events

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id       TEXT PRIMARY KEY,
    fingerprint   TEXT,
    base_url      TEXT NOT NULL DEFAULT '',
    request_json  TEXT NOT NULL DEFAULT '{}',
    seed          INTEGER,
    status        TEXT NOT NULL DEFAULT 'created',
    error         TEXT NOT NULL DEFAULT '',
    video_url     TEXT,
    video_path    TEXT,
    inference_ms  INTEGER,
    submitted_at  REAL NOT NULL,
    updated_at    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_fingerprint ON tasks (fingerprint);
CREATE INDEX IF NOT EXISTS tasks_video_url ON tasks (video_url);
CREATE INDEX IF NOT EXISTS tasks_submitted_at ON tasks (submitted_at);
"""
REUSABLE_STATUSES = ("created", "processing", "completed")


def fingerprint(base_url: str, payload: Mapping[str, Any], first_frame_sha256: str | None) -> str:
    """Identity of a request: what was asked, not how (the uploaded image URL differs each time)."""
    asked = {k: v for k, v in payload.items() if k != "image"}
    material = json.dumps(
        {"base_url": base_url, "request": asked, "first_frame": first_frame_sha256},
        sort_keys=True, separators=(",", ":"),
    )
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True)
class TaskRecord:
    task_id: str
    fingerprint: str | None
    base_url: str
    request: dict
    seed: int | None
    status: str
    error: str
    video_url: str | None
    video_path: str | None
    inference_ms: int | None
    submitted_at: float
    updated_at: float

    @property
    def saved_video(self) -> Path | None:
        """The saved MP4, if it is still on disk."""
        if self.video_path and Path(self.video_path).is_file():
            return Path(self.video_path)
        return None


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA journal_mode=WAL")
            with db:
                yield db
        finally:
            db.close()

    @staticmethod
    def _record(row: sqlite3.Row | None) -> TaskRecord | None:
        if row is None:
            return None
        values = dict(row)
        values["request"] = json.loads(values.pop("request_json") or "{}")
        return TaskRecord(**values)

    def record_submission(
        self, task_id: str, *, fingerprint: str | None, base_url: str, payload: Mapping[str, Any], status: str
    ) -> None:
        now = time.time()
        with self._lock, self._connect() as db:
            db.execute(
                "INSERT INTO tasks (task_id, fingerprint, base_url, request_json, seed, status, submitted_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(task_id) DO NOTHING",
                (task_id, fingerprint, base_url, json.dumps(dict(payload), sort_keys=True), payload.get("seed"),
                 status or "created", now, now),
            )
        events.publish(task_id, status or "created")

    def ensure(self, task_id: str, *, base_url: str) -> TaskRecord:
        """The record of a task, creating a bare one for a task submitted elsewhere (resume by id)."""
        existing = self.get(task_id)
        if existing is not None:
            return existing
        self.record_submission(task_id, fingerprint=None, base_url=base_url, payload={}, status="created")
        return self.get(task_id)  # type: ignore[return-value]

    def update_status(self, task_id: str, status: str, *, error: str = "", video_url: str | None = None,
                      inference_ms: int | None = None) -> None:
        with self._lock, self._connect() as db:
            db.execute(
                "UPDATE tasks SET status = ?, error = ?, video_url = COALESCE(?, video_url), "
                "inference_ms = COALESCE(?, inference_ms), updated_at = ? WHERE task_id = ?",
                (status, error, video_url, inference_ms, time.time(), task_id),
            )
        events.publish(task_id, status, error=error)

    def record_video(self, task_id: str, video_url: str, video_path: Path) -> None:
        with self._lock, self._connect() as db:
            db.execute(
                "UPDATE tasks SET video_url = ?, video_path = ?, updated_at = ? WHERE task_id = ?",
                (video_url, str(video_path), time.time(), task_id),
            )
        events.publish(task_id, "saved")

    def get(self, task_id: str) -> TaskRecord | None:
        with self._connect() as db:
            return self._record(db.execute("SELECT * FROM tasks WHERE task_id = ?", (task_id,)).fetchone())

    def find_reusable(self, fingerprint: str) -> TaskRecord | None:
        """The newest task with this fingerprint that has not failed (only asked for fixed seeds)."""
        marks = ",".join("?" * len(REUSABLE_STATUSES))
        with self._connect() as db:
            row = db.execute(
                f"SELECT * FROM tasks WHERE fingerprint = ? AND status IN ({marks}) "
                "ORDER BY submitted_at DESC LIMIT 1",
                (fingerprint, *REUSABLE_STATUSES),
            ).fetchone()
        return self._record(row)

    def find_by_video_url(self, video_url: str) -> TaskRecord | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM tasks WHERE video_url = ? ORDER BY updated_at DESC LIMIT 1", (video_url,)
            ).fetchone()
        return self._record(row)

    def list_tasks(self, *, limit: int = 50, before: float | None = None) -> list[TaskRecord]:
        """Tasks newest first (by `submitted_at`); `before` pages on: pass the last row's `submitted_at`."""
        limit = max(1, min(int(limit), 500))
        with self._connect() as db:
            if before is None:
                rows = db.execute("SELECT * FROM tasks ORDER BY submitted_at DESC LIMIT ?", (limit,)).fetchall()
            else:
                rows = db.execute(
                    "SELECT * FROM tasks WHERE submitted_at < ? ORDER BY submitted_at DESC LIMIT ?",
                    (float(before), limit),
                ).fetchall()
        return [r for r in (self._record(row) for row in rows) if r is not None]

    def count_since(self, since: float) -> int:
        """How many tasks were submitted at or after `since` (seconds since the epoch)."""
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM tasks WHERE submitted_at >= ?", (float(since),)).fetchone()[0])
