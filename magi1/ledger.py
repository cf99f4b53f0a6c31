"""The task ledger: every paid task, claimed before it is paid for, in one SQL database.

A row per billed request: the request's fingerprint (prompt, parameters, seed, SHA-256 of the first
frame's pixels, base URL; never the key), the task id once known, its status, the owner and lease
of the claim, and where its video was saved. Built on SQLAlchemy Core (ComfyUI ships SQLAlchemy 2):

- default: SQLite at `<private_dir>/tasks.sqlite3` (WAL, a 30 s busy timeout, write transactions
  `BEGIN IMMEDIATE`), shared by every ComfyUI process on that user folder;
- `MAGI1_LEDGER_URL`: any SQLAlchemy URL, PostgreSQL (`postgresql+psycopg://user@host/db`) for
  several machines on one WaveSpeed account.

Claim before pay: `claim()` inserts a row whose `active_key` is the fingerprint; a unique
constraint on `active_key` lets exactly one node, process or machine win. The others see the
winner's row and wait for its task id (`claim()` again until it has one). The claim carries an
owner and a lease (`lease_until`, epoch seconds); a claim whose owner stopped renewing it is taken
over by compare-and-swap, never left blocking. A failed or dead task releases its key (NULL), so
the next run submits afresh. Seed -1 rows carry no key: they never dedupe.

Statuses, in order: `claimed` → `submitting` (the POST may be on the wire) → `submitted` →
the service's `created`/`processing` → `completed` → `saved`; or `failed`, `dead` (the service no
longer knows the task). Every change is committed before the next step and published through
`magi1.events.publish`. Every method blocks on the database: call it from a worker thread, never
from ComfyUI's event loop.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from . import events
from .errors import ClaimLostError, LedgerWriteError

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_S = 30.0
DEFAULT_LEASE_S = 300.0  # renewed before each long step and while waiting for a slot
# Statuses in which a task's fingerprint stays claimed: reused, waited for, never paid twice.
ACTIVE_STATUSES = frozenset(
    {"claimed", "submitting", "submitted", "created", "processing", "completed", "saved"}
)
UNCLAIMED_STATUSES = frozenset({"claimed", "submitting"})  # no task id yet
RELEASED_STATUSES = frozenset({"failed", "dead", "cancelled", "timeout", "deleted", "abandoned"})
UNSAVED_STATUSES = ("submitted", "created", "processing", "completed")

metadata = sa.MetaData()
tasks = sa.Table(
    "magi1_tasks",
    metadata,
    sa.Column("row_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.String(128), unique=True, nullable=True),
    sa.Column("fingerprint", sa.String(64), nullable=True, index=True),
    sa.Column("active_key", sa.String(64), unique=True, nullable=True),
    sa.Column("base_url", sa.Text, nullable=False, default=""),
    sa.Column("request_json", sa.Text, nullable=False, default="{}"),
    sa.Column("seed", sa.BigInteger, nullable=True),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("error", sa.Text, nullable=False, default=""),
    sa.Column("video_url", sa.Text, nullable=True, index=True),
    sa.Column("video_path", sa.Text, nullable=True),
    sa.Column("inference_ms", sa.BigInteger, nullable=True),
    sa.Column("has_nsfw_contents", sa.Boolean, nullable=False, default=False),
    sa.Column("owner", sa.String(200), nullable=True),
    sa.Column("lease_until", sa.Float, nullable=True),
    sa.Column("run_id", sa.String(128), nullable=True, index=True),
    sa.Column("claimed_at", sa.Float, nullable=False),
    sa.Column("submitted_at", sa.Float, nullable=False, index=True),
    sa.Column("updated_at", sa.Float, nullable=False),
)
# The account limiter's shared state (magi1.limiter): one row per account (base URL + key digest).
limits = sa.Table(
    "magi1_limits",
    metadata,
    sa.Column("account", sa.String(128), primary_key=True),
    sa.Column("blocked_until", sa.Float, nullable=False, default=0.0),
    sa.Column("learned_per_minute", sa.Float, nullable=True),
    sa.Column("updated_at", sa.Float, nullable=False),
)


def fingerprint(base_url: str, payload: Mapping[str, Any], first_frame_sha256: str | None) -> str:
    """Identity of a request: what was asked, not how (the uploaded image URL differs each time)."""
    asked = {k: v for k, v in payload.items() if k != "image"}
    material = json.dumps(
        {"base_url": base_url, "request": asked, "first_frame": first_frame_sha256},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(material.encode()).hexdigest()


def process_owner() -> str:
    """This process's claim owner: host, pid and a random part (a restarted pid is a new owner)."""
    return _OWNER


_OWNER = f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class TaskRecord:
    """One ledger row. `task_id` is None while the claim has not been submitted yet."""

    task_id: str | None
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
    has_nsfw_contents: bool = False
    row_id: int = 0
    owner: str | None = None
    lease_until: float | None = None
    run_id: str | None = None
    claimed_at: float = 0.0

    @property
    def saved_video(self) -> Path | None:
        """The saved MP4, if it is still on disk."""
        if self.video_path and Path(self.video_path).is_file():
            return Path(self.video_path)
        return None

    def lease_expired(self, now: float | None = None) -> bool:
        return self.lease_until is None or self.lease_until < (time.time() if now is None else now)


@dataclass(frozen=True)
class Claim:
    """What `Ledger.claim` decided.

    `won`: this caller owns `record` and must submit it (after reconciling, when `takeover` says
    the previous owner died while its POST may have been on the wire). Otherwise `record` is the
    row that holds the fingerprint: reuse its task id, or wait for one (`record.task_id is None`).
    """

    won: bool
    record: TaskRecord
    takeover: bool = False


def _sqlite_engine(path: Path) -> Engine:
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        f"sqlite:///{path}", connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy's documented recipe: let SQLAlchemy emit BEGIN (IMMEDIATE, below), so a
        # read-then-write transaction never fails with "database is locked" half-way.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _migrate_sqlite_v1(engine: Engine) -> None:
    """Copy the rows of the first ledger format (table `tasks`) once, so reuse survives the upgrade."""
    with engine.begin() as db:
        names = {row[0] for row in db.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table'")}
        if "tasks" not in names:
            return
        copied = db.exec_driver_sql(
            "INSERT OR IGNORE INTO magi1_tasks (task_id, fingerprint, active_key, base_url, request_json, "
            "seed, status, error, video_url, video_path, inference_ms, has_nsfw_contents, claimed_at, "
            "submitted_at, updated_at) SELECT task_id, fingerprint, NULL, base_url, request_json, seed, "
            "CASE WHEN status = 'completed' AND video_path IS NOT NULL THEN 'saved' ELSE status END, "
            "error, video_url, video_path, inference_ms, 0, submitted_at, submitted_at, updated_at FROM tasks"
        ).rowcount
        db.exec_driver_sql("ALTER TABLE tasks RENAME TO tasks_v1_migrated")
    log.info("MAGI-1 ledger: %d task(s) carried over from the first ledger format", copied)


class Ledger:
    """The task ledger on one database. Thread-safe; every method blocks (call from a worker thread).

    `target`: a SQLite file path, or an SQLAlchemy URL string (`sqlite:///...`,
    `postgresql+psycopg://...`).
    """

    def __init__(
        self, target: Path | str, *, owner: str | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.owner = owner or process_owner()
        self._clock = clock  # this machine's clock (seconds since the epoch); corrected below
        text = str(target)
        if "://" in text:
            self.url = text
            self.engine = _sqlite_engine(Path(sa.engine.make_url(text).database or "")) if text.startswith(
                "sqlite"
            ) else sa.create_engine(text, pool_pre_ping=True, pool_size=5, max_overflow=10)
        else:
            self.url = f"sqlite:///{Path(target)}"
            self.engine = _sqlite_engine(Path(target))
        self._sqlite = self.engine.dialect.name == "sqlite"
        self._lock = threading.Lock()
        self._create_tables()
        if self._sqlite:
            _migrate_sqlite_v1(self.engine)
        self._offset = 0.0 if self._sqlite else self._database_clock_offset()

    def _database_clock_offset(self) -> float:
        """Seconds the database server's clock is ahead of this machine's (0.0 when unknown).

        Leases are compared across machines: with each machine's own clock, one running a few
        minutes ahead would take over live claims (and pay twice). Every time the ledger writes
        or compares is on the server's clock instead. SQLite's processes share one machine's clock.
        """
        try:
            with self.engine.connect() as db:
                before = self._clock()
                server = float(db.exec_driver_sql("SELECT EXTRACT(EPOCH FROM clock_timestamp())").scalar_one())
                after = self._clock()
        except sa.exc.SQLAlchemyError as exc:  # another dialect: each machine's own clock, as before
            log.info("MAGI-1 ledger: the database's clock is unknown (%s); using this machine's", exc)
            return 0.0
        offset = server - (before + after) / 2
        if abs(offset) > 5.0:
            log.warning("MAGI-1 ledger: this machine's clock is %.0f s off the database's; leases use the database's",
                        -offset)
        return offset

    def now(self) -> float:
        """The ledger's clock: the database server's (PostgreSQL), seconds since the epoch."""
        return self._clock() + self._offset

    def _create_tables(self) -> None:
        """Create the tables if missing. Several processes may try at the same moment on a fresh
        PostgreSQL database, where CREATE TABLE IF NOT EXISTS can still collide: look again."""
        for attempt in range(5):
            try:
                metadata.create_all(self.engine)
                return
            except (IntegrityError, ProgrammingError, OperationalError):
                if attempt == 4:
                    raise
                time.sleep(0.1 * (attempt + 1))

    def __repr__(self) -> str:
        return f"Ledger({self.engine.url.render_as_string(hide_password=True)!r})"

    def dispose(self) -> None:
        self.engine.dispose()

    # --- reading --------------------------------------------------------------------------------
    @staticmethod
    def _record(row: Any) -> TaskRecord | None:
        if row is None:
            return None
        values = dict(row._mapping)
        values.pop("active_key", None)
        values["request"] = json.loads(values.pop("request_json") or "{}")
        values["has_nsfw_contents"] = bool(values.get("has_nsfw_contents"))
        return TaskRecord(**values)

    def _one(self, where: Any) -> TaskRecord | None:
        with self.engine.connect() as db:
            return self._record(db.execute(sa.select(tasks).where(where).limit(1)).first())

    def get(self, task_id: str) -> TaskRecord | None:
        return self._one(tasks.c.task_id == task_id)

    def get_row(self, row_id: int) -> TaskRecord | None:
        return self._one(tasks.c.row_id == row_id)

    def find_reusable(self, fingerprint: str) -> TaskRecord | None:
        """The row holding this fingerprint's claim (a task not failed), if any."""
        return self._one(tasks.c.active_key == fingerprint)

    def find_by_video_url(self, video_url: str) -> TaskRecord | None:
        with self.engine.connect() as db:
            row = db.execute(
                sa.select(tasks).where(tasks.c.video_url == video_url).order_by(tasks.c.updated_at.desc()).limit(1)
            ).first()
        return self._record(row)

    def known_task_ids(self, task_ids: list[str]) -> set[str]:
        """Which of `task_ids` some ledger row owns."""
        if not task_ids:
            return set()
        with self.engine.connect() as db:
            rows = db.execute(sa.select(tasks.c.task_id).where(tasks.c.task_id.in_(task_ids))).all()
        return {row[0] for row in rows}

    def list_tasks(self, *, limit: int = 50, before: float | None = None) -> list[TaskRecord]:
        """Tasks newest first (by `submitted_at`); `before` pages on: pass the last row's `submitted_at`."""
        limit = max(1, min(int(limit), 500))
        query = sa.select(tasks).order_by(tasks.c.submitted_at.desc()).limit(limit)
        if before is not None:
            query = query.where(tasks.c.submitted_at < float(before))
        with self.engine.connect() as db:
            rows = db.execute(query).all()
        return [r for r in (self._record(row) for row in rows) if r is not None]

    def count_since(self, since: float) -> int:
        """How many tasks were submitted at or after `since` (seconds since the epoch)."""
        with self.engine.connect() as db:
            return int(
                db.execute(
                    sa.select(sa.func.count()).select_from(tasks).where(tasks.c.submitted_at >= float(since))
                ).scalar_one()
            )

    def count_run(self, run_id: str) -> int:
        """Billed (or being billed) tasks created for one queued prompt."""
        with self.engine.connect() as db:
            return int(
                db.execute(
                    sa.select(sa.func.count()).select_from(tasks).where(tasks.c.run_id == run_id)
                ).scalar_one()
            )

    def count_in_flight(self, *, base_url: str | None = None, since: float = 0.0) -> int:
        """Tasks submitted or being submitted and not final (the account limiter's running count)."""
        query = sa.select(sa.func.count()).select_from(tasks).where(
            tasks.c.status.in_(("submitting", "submitted", "created", "processing")),
            tasks.c.updated_at >= since,
        )
        if base_url is not None:
            query = query.where(tasks.c.base_url == base_url)
        with self.engine.connect() as db:
            return int(db.execute(query).scalar_one())

    def unsaved(self, *, newer_than: float, base_url: str | None = None) -> list[TaskRecord]:
        """Submitted tasks whose video is not saved yet, submitted after `newer_than` (adoption)."""
        query = (
            sa.select(tasks)
            .where(
                tasks.c.task_id.is_not(None),
                tasks.c.status.in_(UNSAVED_STATUSES),
                tasks.c.submitted_at >= newer_than,
            )
            .order_by(tasks.c.submitted_at)
        )
        if base_url is not None:
            query = query.where(tasks.c.base_url == base_url)
        with self.engine.connect() as db:
            rows = db.execute(query).all()
        return [r for r in (self._record(row) for row in rows) if r is not None]

    def submitting_since(self, since: float, *, exclude_row: int) -> int:
        """Other rows whose POST may be on the wire, sent at or after `since` less a minute (reconciling).

        By when the POST left (`submitted_at`, written by `mark_submitting`), not when the request
        was claimed: a claim that queued for minutes in the limiter still posts a task now."""
        with self.engine.connect() as db:
            return int(
                db.execute(
                    sa.select(sa.func.count())
                    .select_from(tasks)
                    .where(
                        tasks.c.status == "submitting",
                        tasks.c.submitted_at >= since - 60.0,
                        tasks.c.row_id != exclude_row,
                    )
                ).scalar_one()
            )

    def orphaned_submits(self, *, newer_than: float) -> list[TaskRecord]:
        """Rows left `submitting` by an owner that stopped (lease run out) before writing the task
        id its POST may have created, submitted after `newer_than` (adoption reconciles them)."""
        with self.engine.connect() as db:
            rows = db.execute(
                sa.select(tasks).where(
                    tasks.c.status == "submitting",
                    tasks.c.task_id.is_(None),
                    tasks.c.lease_until < self.now(),
                    tasks.c.submitted_at >= newer_than,
                ).order_by(tasks.c.submitted_at)
            ).all()
        return [r for r in (self._record(row) for row in rows) if r is not None]

    def take_orphan(self, record: TaskRecord, lease_s: float = DEFAULT_LEASE_S) -> TaskRecord | None:
        """Take over an orphaned `submitting` row (compare-and-swap, so one process reconciles it);
        the taken row, or None when another process took it or its owner came back."""
        now = self.now()
        with self.engine.begin() as db:
            taken = db.execute(
                tasks.update()
                .where(
                    tasks.c.row_id == record.row_id,
                    tasks.c.status == "submitting",
                    tasks.c.task_id.is_(None),
                    tasks.c.lease_until == record.lease_until,
                )
                .values(owner=self.owner, lease_until=now + lease_s, claimed_at=now, updated_at=now)
            ).rowcount
            if taken != 1:
                return None
            return self._record(db.execute(sa.select(tasks).where(tasks.c.row_id == record.row_id)).first())

    # --- the account limiter's shared state (magi1.limiter) ---------------------------------------
    def account_load(self, base_url: str, *, running_since: float, submits_since: float, claimed_at: float) -> tuple[int, int, int]:
        """(tasks running, submits since `submits_since`, claims waiting before `claimed_at`) of one service."""
        active = ("submitting", "submitted", "created", "processing")
        with self.engine.connect() as db:
            running = db.execute(
                sa.select(sa.func.count()).select_from(tasks).where(
                    tasks.c.base_url == base_url, tasks.c.status.in_(active), tasks.c.updated_at >= running_since
                )
            ).scalar_one()
            recent = db.execute(
                sa.select(sa.func.count()).select_from(tasks).where(
                    tasks.c.base_url == base_url, tasks.c.status != "claimed", tasks.c.submitted_at >= submits_since
                )
            ).scalar_one()
            ahead = db.execute(
                sa.select(sa.func.count()).select_from(tasks).where(
                    tasks.c.base_url == base_url, tasks.c.status == "claimed", tasks.c.claimed_at < claimed_at
                )
            ).scalar_one()
        return int(running), int(recent), int(ahead)

    def in_flight_ids(self, base_url: str, *, running_since: float) -> list[str]:
        """Task ids counted as running for the limiter (to refresh their status from the service)."""
        with self.engine.connect() as db:
            rows = db.execute(
                sa.select(tasks.c.task_id).where(
                    tasks.c.base_url == base_url,
                    tasks.c.task_id.is_not(None),
                    tasks.c.status.in_(("submitted", "created", "processing")),
                    tasks.c.updated_at >= running_since,
                )
            ).all()
        return [row[0] for row in rows]

    def limit_state(self, account: str) -> tuple[float, float | None, float]:
        """(blocked_until, learned submits a minute or None, when it was learned) of an account."""
        with self.engine.connect() as db:
            row = db.execute(sa.select(limits).where(limits.c.account == account)).first()
        if row is None:
            return 0.0, None, 0.0
        return float(row.blocked_until), row.learned_per_minute, float(row.updated_at)

    def record_rate_limit(self, account: str, *, blocked_until: float, learned_per_minute: float | None) -> None:
        """A 429 was seen: every process on this ledger waits until `blocked_until`."""
        now = self.now()
        try:
            with self.engine.begin() as db:
                changed = db.execute(
                    limits.update()
                    .where(limits.c.account == account)
                    .values(
                        blocked_until=sa.func.max(limits.c.blocked_until, blocked_until)
                        if self._sqlite
                        else sa.func.greatest(limits.c.blocked_until, blocked_until),
                        learned_per_minute=learned_per_minute,
                        updated_at=now,
                    )
                ).rowcount
                if not changed:
                    db.execute(
                        limits.insert().values(
                            account=account, blocked_until=blocked_until,
                            learned_per_minute=learned_per_minute, updated_at=now,
                        )
                    )
        except IntegrityError:
            self.record_rate_limit(account, blocked_until=blocked_until, learned_per_minute=learned_per_minute)
        except OperationalError as exc:
            log.warning("could not share a rate limit through the MAGI-1 ledger: %s", exc.orig)

    # --- claiming -------------------------------------------------------------------------------
    def claim(
        self,
        fingerprint: str,
        *,
        dedupe: bool,
        base_url: str,
        payload: Mapping[str, Any],
        run_id: str | None = None,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> Claim:
        """Claim the right to submit this request, or learn who holds it (one transaction).

        `dedupe=False` (seed -1) always wins a fresh row. Raises LedgerWriteError when the
        database cannot be written.
        """
        for _ in range(50):
            now = self.now()
            try:
                with self.engine.begin() as db:
                    if dedupe:
                        holder = self._record(
                            db.execute(sa.select(tasks).where(tasks.c.active_key == fingerprint)).first()
                        )
                        if holder is not None:
                            if holder.status not in UNCLAIMED_STATUSES or not holder.lease_expired(now):
                                return Claim(False, holder)
                            taken = db.execute(
                                tasks.update()
                                .where(
                                    tasks.c.row_id == holder.row_id,
                                    tasks.c.status == holder.status,
                                    sa.or_(tasks.c.owner == holder.owner, tasks.c.owner.is_(None)),
                                    tasks.c.lease_until == holder.lease_until,
                                )
                                .values(
                                    owner=self.owner, lease_until=now + lease_s, run_id=run_id, updated_at=now,
                                    claimed_at=now,  # a new claim: the old holder's writes no longer match
                                )
                            ).rowcount
                            if taken != 1:
                                continue
                            log.warning(
                                "MAGI-1 ledger: took over the claim of %s (its owner %s stopped at %r)",
                                fingerprint[:12],
                                holder.owner,
                                holder.status,
                            )
                            record = self._record(
                                db.execute(sa.select(tasks).where(tasks.c.row_id == holder.row_id)).first()
                            )
                            assert record is not None
                            return Claim(True, record, takeover=holder.status == "submitting")
                    row_id = db.execute(
                        tasks.insert().values(
                            fingerprint=fingerprint,
                            active_key=fingerprint if dedupe else None,
                            base_url=base_url,
                            request_json=json.dumps(dict(payload), sort_keys=True),
                            seed=payload.get("seed"),
                            status="claimed",
                            error="",
                            owner=self.owner,
                            lease_until=now + lease_s,
                            run_id=run_id,
                            claimed_at=now,
                            submitted_at=now,
                            updated_at=now,
                        )
                    ).inserted_primary_key[0]
                    record = self._record(db.execute(sa.select(tasks).where(tasks.c.row_id == row_id)).first())
            except IntegrityError:
                continue  # another process inserted the same key first: read its row
            except OperationalError as exc:
                raise LedgerWriteError(f"The MAGI-1 ledger could not be written ({exc.orig}).") from exc
            assert record is not None
            events.publish("", "claimed", row_id=record.row_id, run_id=run_id)
            return Claim(True, record)
        raise LedgerWriteError("The MAGI-1 ledger kept changing under a claim; try again.")

    def _update(self, where: Any, *, about: str | None = None, event: bool = True, **values: Any) -> int:
        values["updated_at"] = self.now()
        try:
            with self.engine.begin() as db:
                count = db.execute(tasks.update().where(where).values(**values)).rowcount
        except (OperationalError, IntegrityError) as exc:
            raise LedgerWriteError(
                f"The MAGI-1 ledger could not be written ({getattr(exc, 'orig', exc)})"
                + (f"; task {about} was paid for: paste its id into Magi1Poll to collect it." if about else "."),
                task_id=about,
            ) from exc
        status = values.get("status")
        if event and status and count:
            fields = {k: values[k] for k in ("error", "video_url", "video_path") if values.get(k)}
            events.publish(about or values.get("task_id") or "", status, **fields)
        return count

    def _held(self, row_id: int, claimed_at: float | None) -> Any:
        """Rows still held by this claim: this owner and, when given, the same claim moment.

        A takeover writes a new owner and `claimed_at`, so a slow or stale holder (even a thread of
        the same process) matches nothing and learns it lost the claim instead of paying twice.
        """
        where = (tasks.c.row_id == row_id) & (tasks.c.owner == self.owner) & tasks.c.task_id.is_(None)
        if claimed_at is not None:
            where = where & (tasks.c.claimed_at == claimed_at)
        return where

    def renew(self, row_id: int, lease_s: float = DEFAULT_LEASE_S, *, claimed_at: float | None = None) -> None:
        """Extend this owner's lease on a claim (before each long step).

        With `claimed_at` (the claim's), raises ClaimLostError when the claim was taken over."""
        count = self._update(self._held(row_id, claimed_at), event=False, lease_until=self.now() + lease_s)
        if claimed_at is not None and count != 1:
            raise ClaimLostError(f"The MAGI-1 ledger claim {row_id} was taken over by another node.")

    def mark_submitting(
        self,
        row_id: int,
        payload: Mapping[str, Any],
        lease_s: float = DEFAULT_LEASE_S,
        *,
        claimed_at: float | None = None,
    ) -> None:
        """Written before the billed POST leaves: a crash from here on is reconciled, not re-sent.

        A compare-and-swap from `claimed` by this claim's holder: ClaimLostError (send nothing)
        when another node took the claim over meanwhile."""
        now = self.now()
        count = self._update(
            self._held(row_id, claimed_at) & (tasks.c.status == "claimed"),
            status="submitting",
            request_json=json.dumps(dict(payload), sort_keys=True),
            lease_until=now + lease_s,
            submitted_at=now,
        )
        if count != 1:
            raise ClaimLostError(
                f"The MAGI-1 ledger claim {row_id} was taken over by another node before its POST; not sent."
            )

    def record_submitted(self, row_id: int, task_id: str, *, status: str = "submitted") -> None:
        """The task id is known: written first, before anything else happens to it.

        When the claim was taken over meanwhile and already carries another task (this POST's
        answer came after its lease ran out), this paid task is kept on a row of its own, never
        written over the other one: both stay known, and adoption saves both."""
        status = status if status in ("processing", "completed") else "submitted"
        count = self._update(
            (tasks.c.row_id == row_id) & (tasks.c.task_id.is_(None) | (tasks.c.task_id == task_id)),
            about=task_id,
            task_id=task_id,
            status=status,
            owner=None,
            lease_until=None,
        )
        if count:
            return
        claim = self.get_row(row_id)
        log.warning(
            "MAGI-1 ledger: task %s was paid for after its claim went to task %s; both are kept",
            task_id, claim.task_id if claim else "(none)",
        )
        self.record_submission(
            task_id,
            fingerprint=claim.fingerprint if claim else None,
            base_url=claim.base_url if claim else "",
            payload=claim.request if claim else {},
            status=status,
            run_id=claim.run_id if claim else None,
        )

    def mark_claimed(self, row_id: int, lease_s: float = DEFAULT_LEASE_S, *, claimed_at: float | None = None) -> None:
        """Back to `claimed` after a 429 (nothing was created): a takeover need not reconcile."""
        self._update(
            self._held(row_id, claimed_at),
            status="claimed",
            owner=self.owner,
            lease_until=self.now() + lease_s,
        )

    def adopt(self, row_id: int, task_id: str) -> bool:
        """Give the claim the task id found in the history; False if another row owns that id."""
        try:
            self.record_submitted(row_id, task_id)
        except LedgerWriteError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                return False
            raise
        return True

    def drop_unsent(self, row_id: int, *, claimed_at: float | None = None) -> None:
        """Forget a claim whose POST never left (cancel, upload failure, spend guard): nothing billed.

        Only this holder's own claim: a claim another node took over meanwhile is left alone."""
        try:
            with self.engine.begin() as db:
                db.execute(tasks.delete().where(self._held(row_id, claimed_at), tasks.c.status == "claimed"))
        except OperationalError as exc:
            log.warning("could not drop an unsent MAGI-1 claim (it expires with its lease): %s", exc.orig)

    def release(self, row_id: int, status: str, error: str = "") -> None:
        """A claim that will not be (or was not) submitted: frees the fingerprint for a later run."""
        self._update(tasks.c.row_id == row_id, status=status, error=error, active_key=None, owner=None, lease_until=None)

    # --- compatibility with tasks known by id only -----------------------------------------------
    def record_submission(
        self,
        task_id: str,
        *,
        fingerprint: str | None,
        base_url: str,
        payload: Mapping[str, Any],
        status: str,
        run_id: str | None = None,
    ) -> None:
        """A task submitted elsewhere (or adopted): one row, no claim lease."""
        now = self.now()
        try:
            with self.engine.begin() as db:
                exists = db.execute(sa.select(tasks.c.row_id).where(tasks.c.task_id == task_id)).first()
                if exists is not None:
                    return
                db.execute(
                    tasks.insert().values(
                        task_id=task_id,
                        fingerprint=fingerprint,
                        active_key=None,
                        base_url=base_url,
                        request_json=json.dumps(dict(payload), sort_keys=True),
                        seed=payload.get("seed"),
                        status=status or "submitted",
                        error="",
                        run_id=run_id,
                        claimed_at=now,
                        submitted_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            return  # recorded by another process at the same moment
        except OperationalError as exc:
            raise LedgerWriteError(
                f"The MAGI-1 ledger could not record task {task_id} ({exc.orig}); paste its id into "
                "Magi1Poll to collect it.",
                task_id=task_id,
            ) from exc
        events.publish(task_id, status or "submitted")

    def ensure(self, task_id: str, *, base_url: str) -> TaskRecord:
        """The record of a task, creating a bare one for a task submitted elsewhere (resume by id)."""
        existing = self.get(task_id)
        if existing is not None:
            return existing
        self.record_submission(task_id, fingerprint=None, base_url=base_url, payload={}, status="submitted")
        return self.get(task_id)  # type: ignore[return-value]

    def update_status(
        self,
        task_id: str,
        status: str,
        *,
        error: str = "",
        video_url: str | None = None,
        inference_ms: int | None = None,
        has_nsfw_contents: bool | None = None,
    ) -> None:
        values: dict[str, Any] = {"status": status, "error": error}
        if video_url is not None:
            values["video_url"] = video_url
        if inference_ms is not None:
            values["inference_ms"] = inference_ms
        if has_nsfw_contents is not None:
            values["has_nsfw_contents"] = bool(has_nsfw_contents)
        if status in RELEASED_STATUSES:
            values["active_key"] = None
        where = tasks.c.task_id == task_id
        if status != "saved":
            where = where & (tasks.c.status != "saved")  # a late poll never un-saves a task
        self._update(where, about=task_id, **values)

    def mark_dead(self, task_id: str, why: str) -> None:
        """The service no longer knows this task: the next run with these inputs submits afresh."""
        self._update(tasks.c.task_id == task_id, about=task_id, status="dead", error=why, active_key=None)

    def record_video(self, task_id: str, video_url: str, video_path: Path) -> None:
        self._update(
            tasks.c.task_id == task_id,
            about=task_id,
            status="saved",
            video_url=video_url,
            video_path=str(video_path),
        )
