"""A WaveSpeed-compatible HTTP server for MAGI-1: the v3 API, upload targets, outputs, admin API.

Routes (names are what faults, the journal and the stats call them):

| route | call |
| --- | --- |
| submit | `POST /api/v3/wavespeed-ai/magi-1-24b` |
| result | `GET /api/v3/predictions/{id}/result` (and `GET /api/v3/predictions/{id}`) |
| history | `POST /api/v3/predictions` `{page, page_size, model?, status?, created_after?, created_before?}` |
| balance | `GET /api/v3/balance` → `data.balance` (USD; admin-settable, default 100.0) |
| upload | `POST /api/v3/media/uploads` → a presigned-style `PUT` target and a `download_url` |
| upload_put | `PUT /_upload/{token}` (no bearer, exactly the ticket's Content-Type and size) |
| upload_binary | `POST /api/v3/media/upload/binary` (multipart field `file`) |
| output | `GET /outputs/{id}.mp4` (no bearer, Range supported) |
| media | `GET /media/{token}/{filename}` (no bearer) |

Admin API under `/_emulator/` (no auth, never journaled): `faults` (GET, POST, DELETE), `reset`
(POST), `journal` (GET), `stats` (GET), `config` (GET, POST `{latency, default_resolution,
balance, submit_limit, submit_window, max_running, reuse_renders}`), `tasks` and `tasks/{id}` (GET), `uploads` (GET).

Account limits, like WaveSpeed's tiers (off by default): `submit_limit` accepted submits per
`submit_window` seconds, past which a submit answers 429 with `Retry-After` and creates nothing;
`max_running` tasks running at once, past which a new task stays `created` until a slot frees.
For load tests, `reuse_renders` renders one video per (resolution, aspect ratio, frames, fps) and
serves it for every such task (the first frame and seed of the others are then not drawn).

The modules: `http_base` (HTTP mechanics), `api` (the WaveSpeed API), `admin_api` (the admin
API), `tasks` (one task's life), `faults`, `media`; this module holds the state and routes.
Everything is bounded (bodies, stored uploads, tasks, journal, render threads), every thread is a
daemon, and `EmulatorServer.stop()` returns within about a second even with clients connected.
The Authorization header is read only to check it: it is never logged, journaled or echoed.
"""

from __future__ import annotations

import logging
import re
import os
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, OrderedDict, deque
from typing import Any
from urllib.parse import quote, urlsplit

from . import tasks as tasks_mod
from . import videogen
from .admin_api import AdminHandlers
from .api import ApiHandlers
from .faults import Fault, FaultBook
from .http_base import MAX_JSON_BYTES, Exchange, HTTPServer, is_loopback, make_route, redact
from .media import MediaStore, UploadedMedia
from .tasks import MediaUnreachableError, Task

logger = logging.getLogger(__name__)

DEFAULT_LATENCY_S = 6.0
DEFAULT_BALANCE_USD = 100.0
DEFAULT_SUBMIT_WINDOW_S = 60.0
DEFAULT_MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_STORED_MEDIA_BYTES = 512 * 1024 * 1024
MULTIPART_OVERHEAD_BYTES = 64 * 1024
MAX_TASKS = 1000
MAX_JOURNAL_ENTRIES = 5000
MAX_PARALLEL_RENDERS = 4
STOP_BUDGET_S = 0.9
MAX_LATENCY_S = 24 * 3600.0
IMAGE_FETCH_TIMEOUT_S = 10.0
HISTORY_DAYS = 7

MEDIA_PATH = re.compile(r"^/media/(?P<token>[0-9a-f]{32})/(?P<filename>[^/]+)$")

ROUTES = (
    make_route("submit", "POST", r"^/api/v3/wavespeed-ai/magi-1-24b/?$", "_submit", api=True),
    make_route("history", "POST", r"^/api/v3/predictions/?$", "_history", api=True),
    make_route(
        "result", "GET", r"^/api/v3/predictions/(?P<task_id>[^/]+)(?:/result)?/?$", "_result", api=True
    ),
    make_route("balance", "GET", r"^/api/v3/balance/?$", "_balance", api=True),
    make_route("upload", "POST", r"^/api/v3/media/uploads/?$", "_upload_ticket", api=True),
    make_route("upload_binary", "POST", r"^/api/v3/media/upload/binary/?$", "_upload_binary", api=True),
    make_route("api", "GET POST PUT DELETE", r"^/api/v3/.*$", "_unknown_api", api=True),
    make_route("upload_put", "PUT", r"^/_upload/(?P<token>[0-9a-f]{32})$", "_upload_put"),
    make_route("output", "GET HEAD", r"^/outputs/(?P<task_id>[0-9a-f]{32})\.mp4$", "_output"),
    make_route("media", "GET HEAD", MEDIA_PATH.pattern, "_media"),
    make_route("admin", "GET POST DELETE", r"^/_emulator/faults/?$", "_admin_faults", admin=True),
    make_route("admin", "POST", r"^/_emulator/reset/?$", "_admin_reset", admin=True),
    make_route("admin", "GET", r"^/_emulator/journal/?$", "_admin_journal", admin=True),
    make_route("admin", "GET", r"^/_emulator/stats/?$", "_admin_stats", admin=True),
    make_route("admin", "GET POST", r"^/_emulator/config/?$", "_admin_config", admin=True),
    make_route("admin", "GET", r"^/_emulator/tasks/?$", "_admin_tasks", admin=True),
    make_route("admin", "GET", r"^/_emulator/tasks/(?P<task_id>[^/]+)$", "_admin_task", admin=True),
    make_route("admin", "GET", r"^/_emulator/uploads/?$", "_admin_uploads", admin=True),
)


class _Handler(ApiHandlers, AdminHandlers):
    routes = ROUTES


class EmulatorServer:
    """A WaveSpeed-compatible MAGI-1 service on loopback, for tests and credit-free demos.

    >>> with EmulatorServer(port=0, latency=0.5) as emulator:
    ...     emulator.base_url  # e.g. 'http://127.0.0.1:40123'

    `api_key`: the only bearer key accepted; None takes `WAVESPEED_API_KEY` from the environment at
    construction, and when that is unset too, any non-empty key is accepted.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: float = DEFAULT_LATENCY_S,
        default_resolution: str = "720p",
        api_key: str | None = None,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    ) -> None:
        _check_latency(latency)
        _check_resolution(default_resolution)
        self.host = host
        self._requested_port = port
        self._initial_config = {"latency": float(latency), "default_resolution": default_resolution}
        self._balance = DEFAULT_BALANCE_USD
        self._submit_limit: int | None = None
        self._submit_window = DEFAULT_SUBMIT_WINDOW_S
        self._max_running: int | None = None
        self._accepted_submits: deque[float] = deque()
        self._reuse_renders = False
        self._reused: dict[tuple, tuple[str, tuple[int, int], str]] = {}
        self._reuse_locks: dict[tuple, threading.Lock] = {}
        self._latency = float(latency)
        self.default_resolution = default_resolution
        self._api_key = api_key if api_key is not None else (os.environ.get("WAVESPEED_API_KEY") or None)
        self.max_upload_bytes = max_upload_bytes
        self._faults = FaultBook()
        self._media = MediaStore(max_upload_bytes, max(MAX_STORED_MEDIA_BYTES, max_upload_bytes))
        self._lock = threading.Lock()
        self._tasks: OrderedDict[str, Task] = OrderedDict()
        self._journal: deque[dict[str, Any]] = deque(maxlen=MAX_JOURNAL_ENTRIES)
        self._stats: Counter[str] = Counter()
        self._stopping = threading.Event()
        self._render_slots = threading.BoundedSemaphore(MAX_PARALLEL_RENDERS)
        self._renders: set[threading.Thread] = set()
        self._httpd: HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._workdir: str | None = None
        self._port: int | None = None

    # --- life cycle -------------------------------------------------------------------------------
    def start(self) -> EmulatorServer:
        if self._httpd is not None:
            raise RuntimeError("the emulator is already running")
        videogen.video_codec()  # probe the encoder once, before any request waits on it
        if not is_loopback(self.host):
            logger.warning("serving on %s, which is not a loopback address", self.host)
        self._stopping.clear()
        self._workdir = tempfile.mkdtemp(prefix="wavespeed-emulator-")
        self._httpd = HTTPServer((self.host, self._requested_port), self, _Handler)
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="wavespeed-emulator",
            daemon=True,
        )
        self._thread.start()
        logger.info("WaveSpeed emulator listening: WAVESPEED_BASE_URL=%s", self.base_url)
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        deadline = time.monotonic() + STOP_BUDGET_S
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
        # Renders stop at their next frame. Waiting for them keeps OpenCV's encoder out of the
        # interpreter's exit, where a daemon thread inside it aborts the process (SIGABRT).
        with self._lock:
            renders = list(self._renders)
        for render in renders:
            render.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            for task in self._tasks.values():
                task.discard()
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
        logger.info("WaveSpeed emulator stopped")

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def port(self) -> int:
        """The port it listens on (still answered after `stop()`, for messages and restarts)."""
        if self._port is None:
            raise RuntimeError("the emulator has not been started")
        return self._port

    @property
    def base_url(self) -> str:
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def api_key(self) -> str | None:
        return self._api_key

    def auth_headers(self) -> dict[str, str]:
        """Headers a client would send; a placeholder key when the emulator accepts any key."""
        return {"Authorization": f"Bearer {self._api_key or 'any-key'}"}

    # --- configuration ----------------------------------------------------------------------------
    @property
    def latency(self) -> float:
        return self._latency

    def set_latency(self, seconds: float) -> None:
        """Latency for tasks submitted from now on."""
        _check_latency(seconds)
        self._latency = float(seconds)

    _UNSET: Any = object()

    def configure(
        self,
        *,
        latency: float | None = None,
        default_resolution: str | None = None,
        balance: float | None = None,
        submit_limit: int | None = _UNSET,
        submit_window: float | None = None,
        max_running: int | None = _UNSET,
        reuse_renders: bool | None = None,
    ) -> dict[str, Any]:
        """Change settings; `submit_limit`/`max_running` None switches that account limit off.

        Raises ValueError for a value out of range (nothing is changed then).
        """
        if default_resolution is not None:
            _check_resolution(default_resolution)
        if balance is not None:
            _check_number("balance", balance, -1e9, 1e9)
        if submit_window is not None:
            _check_number("submit_window", submit_window, 0.01, 86400.0)
        for name, value in (("submit_limit", submit_limit), ("max_running", max_running)):
            if value is not self._UNSET and value is not None:
                if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
                    raise ValueError(f"{name} must be null or an integer in 1…100000")
        if latency is not None:
            self.set_latency(latency)
        if default_resolution is not None:
            self.default_resolution = default_resolution
        if reuse_renders is not None and not isinstance(reuse_renders, bool):
            raise ValueError("reuse_renders must be true or false")
        with self._lock:
            if reuse_renders is not None:
                self._reuse_renders = reuse_renders
            if balance is not None:
                self._balance = float(balance)
            if submit_window is not None:
                self._submit_window = float(submit_window)
            if submit_limit is not self._UNSET:
                self._submit_limit = submit_limit
            if max_running is not self._UNSET:
                self._schedule(time.monotonic())  # tasks started under the old cap keep their start
                self._max_running = max_running
        return self.config()

    @property
    def balance(self) -> float:
        """The account balance `GET /api/v3/balance` reports, in USD."""
        with self._lock:
            return self._balance

    def set_balance(self, usd: float) -> None:
        self.configure(balance=usd)

    def config(self) -> dict[str, Any]:
        return {
            "latency": self._latency,
            "default_resolution": self.default_resolution,
            "max_upload_bytes": self.max_upload_bytes,
            "codec": videogen.video_codec(),
            "key_required": self._api_key is not None,
            "balance": self._balance,
            "submit_limit": self._submit_limit,
            "submit_window": self._submit_window,
            "max_running": self._max_running,
            "reuse_renders": self._reuse_renders,
        }

    # --- faults -----------------------------------------------------------------------------------
    def add_fault(self, route: str, kind: str = "status", *, count: int = 1, **params: Any) -> dict[str, Any]:
        """Queue a fault; e.g. `add_fault("result", "status", status=429, retry_after=1, count=2)`.

        Raises faults.FaultSpecError (a ValueError) for a description the emulator cannot honour.
        """
        return self._faults.add({"route": route, "kind": kind, "count": count, **params}).as_dict()

    def clear_faults(self) -> None:
        self._faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        return self._faults.pending()

    def reset(self) -> None:
        """Forget faults, journal, stats, tasks and uploads; restore the constructor's configuration."""
        self._faults.clear()
        self._media.clear()
        with self._lock:
            self._journal.clear()
            self._stats.clear()
            dropped = list(self._tasks.values())
            self._tasks.clear()
        for task in dropped:
            task.discard()
        self._latency = self._initial_config["latency"]
        self.default_resolution = self._initial_config["default_resolution"]
        with self._lock:
            self._balance = DEFAULT_BALANCE_USD
            self._submit_limit, self._max_running = None, None
            self._submit_window = DEFAULT_SUBMIT_WINDOW_S
            self._accepted_submits.clear()
            self._reuse_renders = False
            self._reused.clear()

    # --- what happened ----------------------------------------------------------------------------
    def journal(self) -> list[dict[str, Any]]:
        """Requests seen (admin calls excluded), oldest first; headers and keys are never kept."""
        with self._lock:
            return [dict(entry) for entry in self._journal]

    def stats(self) -> dict[str, int]:
        """Requests seen per route name (admin calls excluded)."""
        with self._lock:
            return dict(self._stats)

    def tasks(self) -> list[dict[str, Any]]:
        with self._lock:
            self._schedule(time.monotonic())
            known = list(self._tasks.values())
        return [task.describe() for task in known]

    def task(self, task_id: str) -> dict[str, Any] | None:
        task = self.find_task(task_id)
        return task.describe() if task is not None else None

    @property
    def uploads(self) -> dict[str, UploadedMedia]:
        """Stored uploads by token (a snapshot)."""
        return self._media.snapshot()

    def uploaded_bytes(self, download_url: str) -> bytes:
        """The stored bytes behind one of this emulator's `download_url`s; KeyError if none."""
        match = MEDIA_PATH.match(urlsplit(download_url).path)
        stored = self._media.get(match.group("token")) if match else None
        if stored is None:
            raise KeyError(download_url)
        return stored.data

    def wait_for_task(self, task_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """Block until the task is final (or `timeout`); returns its prediction object."""
        task = self.find_task(task_id)
        if task is None:
            raise KeyError(task_id)
        task.wait_final(timeout, self._stopping, self.refresh)
        return task.view(self.base_url)

    def refresh(self) -> None:
        """Start the queued tasks whose running slot has freed (the concurrency cap)."""
        with self._lock:
            self._schedule(time.monotonic())

    # --- what the handlers call -------------------------------------------------------------------
    @property
    def stopping(self) -> threading.Event:
        """Set while the server stops: handlers waiting on something give up."""
        return self._stopping

    @property
    def media(self) -> MediaStore:
        return self._media

    def take_fault(self, route: str, kinds: frozenset[str]) -> Fault | None:
        """The oldest pending fault of `kinds` on `route`, one use consumed; None if none."""
        return self._faults.take(route, kinds)

    def body_limit(self, route: str) -> int:
        """Largest request body accepted on `route`, in bytes."""
        if route == "upload_put":
            return self.max_upload_bytes
        if route == "upload_binary":
            return self.max_upload_bytes + MULTIPART_OVERHEAD_BYTES
        return MAX_JSON_BYTES

    def admit_submit(self) -> float | None:
        """Count one submit against the rate limit: None when admitted, else seconds to wait."""
        now = time.monotonic()
        with self._lock:
            window, limit = self._submit_window, self._submit_limit
            while self._accepted_submits and self._accepted_submits[0] <= now - window:
                self._accepted_submits.popleft()
            if limit is not None and len(self._accepted_submits) >= limit:
                return self._accepted_submits[0] + window - now
            self._accepted_submits.append(now)
            return None

    def history(
        self,
        *,
        model: str | None = None,
        status: str | None = None,
        after: float | None = None,
        before: float | None = None,
    ) -> list[dict[str, Any]]:
        """Prediction objects of the last 7 days, newest first, like `POST /api/v3/predictions`.

        `after`/`before`: epoch seconds (exclusive/inclusive bounds on creation time).
        """
        now_epoch, now = time.time(), time.monotonic()
        with self._lock:
            self._schedule(now)
            known = list(self._tasks.values())
        items = []
        for task in reversed(known):
            if task.created_epoch < now_epoch - HISTORY_DAYS * 86400:
                continue
            if after is not None and task.created_epoch <= after:
                continue
            if before is not None and task.created_epoch > before:
                continue
            if model is not None and model != tasks_mod.MODEL_ID:
                continue
            view = task.view(self.base_url, now)
            if status is not None and view["status"] != status:
                continue
            view["executionTime"] = view["timings"]["inference"]
            items.append(view)
        return items

    # --- internals ---------------------------------------------------------------------------------
    def _schedule(self, now: float) -> None:
        """Start queued tasks whose slot has freed by `now` (caller holds the lock).

        Under `max_running`, a task starts at the earliest moment at or after its submission when
        fewer than `max_running` started tasks are unfinished, in submission order (FIFO).
        """
        cap = self._max_running
        waiting = [task for task in self._tasks.values() if task.started is None]
        if not waiting:
            return
        if cap is None:
            for task in waiting:
                task.start(max(task.submitted, now))
            return
        started = [t for t in self._tasks.values() if t.started is not None]
        for task in waiting:
            ends = [t.started + t.latency for t in started if t.started + t.latency > task.submitted]
            moment = None
            for candidate in sorted({task.submitted, *ends}):
                if candidate > now:
                    break
                running = sum(1 for t in started if t.started <= candidate < t.started + t.latency)
                if running < cap:
                    moment = candidate
                    break
            if moment is None:
                return  # first in, first out: later tasks wait behind this one
            task.start(moment)
            started.append(task)

    def record(self, exchange: Exchange, bearer: str | None) -> None:
        if exchange.route == "admin":
            return
        millis = (time.monotonic() - exchange.started) * 1000.0
        entry: dict[str, Any] = {
            "time": tasks_mod.iso_now(),
            "method": exchange.method,
            "path": exchange.path,
            "route": exchange.route,
            "status": exchange.status,
            "duration_ms": round(millis, 1),
        }
        if exchange.fault:
            entry["fault"] = exchange.fault
        if exchange.json_body is not None:
            keys = tuple(k for k in (self._api_key, bearer) if k)
            entry["json_body"] = redact(exchange.json_body, keys)
        with self._lock:
            self._journal.append(entry)
            self._stats[exchange.route] += 1

    def media_url(self, token: str, filename: str) -> str:
        return f"{self.base_url}/media/{token}/{quote(filename, safe='')}"

    def find_task(self, task_id: str) -> Task | None:
        with self._lock:
            self._schedule(time.monotonic())
            return self._tasks.get(task_id)

    def create_task(self, request: tasks_mod.TaskRequest, outcome: Any) -> Task:
        task = Task(request, self._latency, outcome)
        with self._lock:
            self._tasks[task.id] = task
            self._schedule(task.submitted)
            evicted = []
            while len(self._tasks) > MAX_TASKS:
                evicted.append(self._tasks.popitem(last=False)[1])
        for old in evicted:
            old.discard()
        if request.seed < 0:
            logger.info("task %s: seed -1, the emulator picked %d", task.id, task.seed)
        if task.needs_render:
            render = threading.Thread(
                target=self._render, args=(task,), name=f"render-{task.id[:8]}", daemon=True
            )
            with self._lock:
                self._renders.add(render)
            render.start()
        return task

    def _render(self, task: Task) -> None:
        try:
            while not self._render_slots.acquire(timeout=0.1):
                if self._stopping.is_set():
                    return
            try:
                workdir = self._workdir
                if self._stopping.is_set() or task.discarded or workdir is None:
                    return
                if self._reuse_renders:
                    self._render_reused(task, workdir)
                else:
                    tasks_mod.render(task, workdir, self._load_image, self._stopping.is_set)
            finally:
                self._render_slots.release()
        finally:
            with self._lock:
                self._renders.discard(threading.current_thread())

    def _render_reused(self, task: Task, workdir: str) -> None:
        """Load tests: one render per (resolution, aspect ratio, frames, fps), shared by hard link."""
        request = task.request
        key = (request.resolution, request.aspect_ratio, request.num_frames, request.frames_per_second)
        with self._lock:
            lock = self._reuse_locks.setdefault(key, threading.Lock())
        with lock:
            cached = self._reused.get(key)
            if cached is None:
                tasks_mod.render(task, workdir, self._load_image, self._stopping.is_set)
                if task.video_path is None or task.size is None:
                    return
                keep = os.path.join(workdir, f"shared-{len(self._reused)}.mp4")
                os.link(task.video_path, keep)
                self._reused[key] = (keep, task.size, task.codec or "")
                return
        path, size, codec = cached
        final = os.path.join(workdir, f"{task.id}.mp4")
        os.link(path, final)
        task.finish_rendered(final, size, codec, 0.0)

    def _load_image(self, url: str) -> bytes:
        """The first frame's bytes: from this emulator's own store, or another loopback server."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise MediaUnreachableError(
                f"unsupported image URL scheme {parts.scheme or '(none)'!r}: upload the image and pass its URL"
            )
        if not is_loopback(parts.hostname):
            raise MediaUnreachableError(
                f"{parts.hostname} is not reachable (the emulator fetches loopback URLs only)"
            )
        own = self._port is not None and parts.port == self._port
        match = MEDIA_PATH.match(parts.path)
        if own and match:
            stored = self._media.get(match.group("token"))
            if stored is None:
                raise MediaUnreachableError(f"no uploaded file at {url}")
            return stored.data
        # Loopback only, so never through a proxy from the environment.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(url, timeout=IMAGE_FETCH_TIMEOUT_S) as answer:
                data = answer.read(self.max_upload_bytes + 1)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise MediaUnreachableError(f"{url}: {exc}") from exc
        if len(data) > self.max_upload_bytes:
            raise MediaUnreachableError(f"{url}: larger than {self.max_upload_bytes} bytes")
        return data


def _check_latency(seconds: Any) -> None:
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not 0 <= seconds <= MAX_LATENCY_S
    ):
        raise ValueError(f"latency must be a number of seconds in 0…{MAX_LATENCY_S:g}")


def _check_number(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"{name} must be a number in {low:g}…{high:g}")


def _check_resolution(resolution: Any) -> None:
    if resolution not in videogen.RESOLUTIONS:
        raise ValueError(f"default_resolution must be one of {', '.join(videogen.RESOLUTIONS)}")
