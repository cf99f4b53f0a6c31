"""The emulator's admin API under `/_emulator/` (no auth, never journaled, no faults).

A mixin over `http_base.BaseHandler`, calling only `EmulatorServer`'s public methods; the same
operations are offered in-process on `EmulatorServer` and over HTTP by `admin.EmulatorAdmin`.
"""

from __future__ import annotations

import json
from typing import Any

from .http_base import BaseHandler


class AdminHandlers(BaseHandler):
    # --- admin API ------------------------------------------------------------------------------
    def _admin_body(self) -> dict[str, Any]:
        try:
            body = json.loads(self._body.decode("utf-8")) if self._body else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = None
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body

    def _admin_faults(self) -> None:
        emulator = self.emulator
        if self.command == "GET":
            self._ok(emulator.faults())
        elif self.command == "DELETE":
            emulator.clear_faults()
            self._ok([])
        else:
            try:
                self._ok(emulator.add_fault(**self._admin_body()))
            except (ValueError, TypeError) as exc:
                self._envelope(400, str(exc))

    def _admin_reset(self) -> None:
        self.emulator.reset()
        self._ok(self.emulator.config())

    def _admin_journal(self) -> None:
        self._ok(self.emulator.journal())

    def _admin_stats(self) -> None:
        self._ok(self.emulator.stats())

    def _admin_config(self) -> None:
        if self.command == "POST":
            try:
                self.emulator.configure(**self._admin_body())
            except (ValueError, TypeError) as exc:
                self._envelope(400, str(exc))
                return
        self._ok(self.emulator.config())

    def _admin_tasks(self) -> None:
        self._ok(self.emulator.tasks())

    def _admin_task(self, task_id: str) -> None:
        described = self.emulator.task(task_id)
        if described is None:
            self._envelope(404, f"Task {task_id} not found")
        else:
            self._ok(described)

    def _admin_uploads(self) -> None:
        self._ok(
            [
                {**stored.describe(), "download_url": self.emulator.media_url(stored.token, stored.filename)}
                for stored in self.emulator.uploads.values()
            ]
        )
