"""HTTP routes for the MAGI-1 panel (web/magi1_panel.js): the ledger's tasks, thumbnails, the
account, collecting a task now, and the pack's settings.

| route | answer |
| --- | --- |
| `GET /magi1/tasks?limit=50&before=<submitted_at>` | `{"tasks": [row...], "next_before": float or null}`, newest first, keyset paging |
| `GET /magi1/tasks/{task_id}/thumbnail` | a small JPEG of the saved clip's first frame (cached on disk under temp) |
| `GET /magi1/account[?refresh=1]` | balance (cached `BALANCE_TTL_S`), tasks today / this month, running vs slots, spend from the user's price |
| `POST /magi1/tasks/{task_id}/collect` | starts a background wait + save of an unsaved task (202), or says it is saved |
| `GET /magi1/settings`, `POST /magi1/settings` | the pack's settings file (magi1/pack_settings.py) |

Nothing here serves a path from the request: a thumbnail is made only from the file the ledger
says a task was saved to, and only when it lies under `<output>/magi1/`. Every route follows the
key route's rule (`key_routes.request_refusal`, one rule for both): the Host must be ComfyUI's
own, writes need the custom header `X-Magi1-Request`, a same-origin `Origin` and a JSON body; a
foreign `Origin` is refused on reads too.
Blocking work (SQL, balance over HTTP, decoding a frame) runs in threads, never on the event
loop, so ComfyUI and its running prompts never wait on the panel.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from . import key_routes, pack_settings, pipeline
from .task_ids import is_task_id
from .client import RetryPolicy, Timeouts, WaveSpeedClient
from .config import load_settings, resolve_base_url
from .errors import Magi1Error

log = logging.getLogger(__name__)

PREFIX = "/magi1"
PROMPT_EXCERPT_CHARS = 160
PAGE_DEFAULT = 50
PAGE_MAX = 200
BALANCE_TTL_S = 60.0
BALANCE_ERROR_TTL_S = 15.0  # a failed balance check is retried sooner than a good one is refreshed
THUMBNAIL_WIDTH = 192
THUMBNAIL_FOLDER = "magi1_thumbnails"
RUNNING_WINDOW_S = 24 * 3600  # a task still "running" after a day is stale bookkeeping, not a slot in use
RUNNING_SCAN_ROWS = 500
COLLECT_TIMEOUT_S = 1800.0
COLLECT_INTERVAL_S = 5.0
PRICE_NOTE = ("No price is assumed: set what one task costs you in Settings › WaveSpeed MAGI-1 "
              "(WaveSpeed lists it on the model's page, wavespeed-ai/magi-1-24b, on wavespeed.ai).")

# Ledger statuses (after the ledger issue) -> what the panel calls them.
STATES = {
    # `submitting`: the billed POST went out and its answer is not known yet, or was lost (the
    # ledger reconciles it through the history before the request is ever sent again).
    "claimed": "waiting", "submitting": "submitting",
    "submitted": "running", "created": "running", "processing": "running",
    "completed": "completed", "saved": "completed",
    "failed": "failed", "dead": "dead",
}
RUNNING_STATUSES = frozenset(s for s, state in STATES.items() if state == "running")


class Host(Protocol):
    """What the routes need from ComfyUI (magi1.comfy_glue fits): its folders, the event forwarder."""

    def output_directory(self) -> Path: ...
    def temp_directory(self) -> Path: ...
    def private_directory(self) -> Path: ...
    def forward_task_events(self) -> Any: ...
    def server_host_names(self) -> frozenset[str]: ...


def _context(host: Host) -> pipeline.Context:
    return pipeline.Context(output_dir=host.output_directory(), private_dir=host.private_directory())


# --- rows -------------------------------------------------------------------------------------------
def saved_file(record: Any, video_root: Path) -> Path | None:
    """The task's saved MP4 when it exists and lies under `<output>/magi1/`, else None."""
    if not getattr(record, "video_path", None):
        return None
    try:
        path = Path(record.video_path).resolve()
        path.relative_to(video_root.resolve())
    except (OSError, ValueError):
        return None
    return path if path.suffix.lower() == ".mp4" and path.is_file() else None


def task_row(record: Any, output_dir: Path, collecting: bool = False) -> dict[str, Any]:
    """One ledger record as the panel shows it (JSON-safe). Shapes: times in epoch seconds."""
    request = record.request if isinstance(record.request, dict) else {}
    prompt = str(request.get("prompt") or "")
    video_root = Path(output_dir) / pipeline.VIDEO_SUBFOLDER
    saved = saved_file(record, video_root)
    state = STATES.get(record.status, record.status)
    if state == "completed" and saved is not None:
        state = "saved"
    final = state in ("saved", "completed", "failed", "dead")
    video = None
    if saved is not None:
        relative = saved.relative_to(Path(output_dir).resolve())
        video = {"filename": relative.name, "subfolder": relative.parent.as_posix(), "type": "output"}
    row_id = getattr(record, "row_id", None)
    return {
        # A claim that has no task id yet (the ledger issue's "waiting for a slot") is keyed by its row.
        "key": record.task_id or f"claim-{row_id}",
        "task_id": record.task_id,
        "status": record.status,
        "state": state,
        "prompt": prompt[:PROMPT_EXCERPT_CHARS] + ("…" if len(prompt) > PROMPT_EXCERPT_CHARS else ""),
        "seed": record.seed,
        "resolution": request.get("resolution") or "default",
        "aspect_ratio": request.get("aspect_ratio") or "default",
        "num_frames": request.get("num_frames"),
        "has_image": bool(request.get("image")),
        "submitted_at": record.submitted_at,
        "updated_at": record.updated_at,
        "took_s": round(record.updated_at - record.submitted_at, 1) if final else None,
        "inference_ms": record.inference_ms,
        "error": record.error or "",
        "has_nsfw_contents": bool(getattr(record, "has_nsfw_contents", False)),
        "video": video,
        # What Magi1LoadVideo's video_url takes for a saved clip ("add to graph" in the panel).
        "saved_path": str(saved) if saved is not None else None,
        "thumbnail": f"{PREFIX}/tasks/{record.task_id}/thumbnail" if saved is not None else None,
        "collecting": collecting,
        "can_collect": saved is None and state not in ("failed", "dead", "waiting", "submitting") and not collecting,
    }


def list_page(host: Host, limit: int, before: float | None, collecting: set[str]) -> dict[str, Any]:
    ctx = _context(host)
    records = ctx.ledger.list_tasks(limit=limit, before=before)
    rows = [task_row(r, ctx.output_dir, r.task_id in collecting) for r in records]
    return {"tasks": rows, "next_before": records[-1].submitted_at if len(records) == limit else None}


# --- thumbnails ---------------------------------------------------------------------------------------
def first_frame_jpeg(video: Path, width: int = THUMBNAIL_WIDTH) -> bytes:
    """The first frame of `video`, scaled to `width` pixels wide, as JPEG bytes. Raises on a bad file.

    OpenCV, not PyAV: a PyAV decoder with frame threads, left after one frame, froze a whole
    ComfyUI 0.33 process (every Python thread waiting on the GIL, seen in a test run). OpenCV's
    decoder never calls back into Python and releases the GIL while it reads.
    """
    import cv2

    capture = cv2.VideoCapture(str(video))
    try:
        ok, pixels = capture.read()
    finally:
        capture.release()
    if not ok or pixels is None:
        raise ValueError(f"no frame could be read from {video.name}")
    height = max(2, round(pixels.shape[0] * width / max(pixels.shape[1], 1) / 2) * 2)
    small = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 82])
    if not ok:
        raise ValueError(f"could not encode a thumbnail of {video.name}")
    return encoded.tobytes()


def thumbnail(host: Host, task_id: str) -> bytes | None:
    """The cached (or newly made) thumbnail of a task's saved clip; None when it has none."""
    ctx = _context(host)
    record = ctx.ledger.get(task_id)
    video = saved_file(record, ctx.video_dir) if record is not None else None
    if video is None:
        return None
    stat = video.stat()
    key = hashlib.sha256(f"{video}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:24]
    cache = Path(host.temp_directory()) / THUMBNAIL_FOLDER / f"{key}.jpg"
    try:
        return cache.read_bytes()
    except OSError:
        pass
    data = first_frame_jpeg(video)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(cache)
    return data


# --- account -------------------------------------------------------------------------------------------
@dataclass
class _BalanceEntry:
    value: float | None
    error: str | None
    checked_at: float
    expires: float


class BalanceCache:
    """The account balance per (base URL, key), fetched in a thread with short timeouts and cached.

    A run never waits on it: it has its own client (own connection pool, two tries at most).
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], _BalanceEntry] = {}
        self._lock = threading.Lock()

    def get(self, private_dir: Path, *, refresh: bool = False) -> dict[str, Any]:
        try:
            settings = load_settings(private_dir)
        except Magi1Error as exc:  # no key, or a refused base URL: say so, fetch nothing
            return {"balance": None, "balance_error": str(exc), "balance_checked_at": None}
        key = (settings.base_url, hashlib.sha256(settings.api_key.reveal().encode()).hexdigest())
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or refresh or entry.expires <= time.time():
                entry = self._fetch(settings)
                self._entries[key] = entry
        return {"balance": entry.value, "balance_error": entry.error, "balance_checked_at": entry.checked_at}

    @staticmethod
    def _fetch(settings: Any) -> _BalanceEntry:
        now = time.time()
        client = WaveSpeedClient(settings.base_url, settings.api_key, timeouts=Timeouts(connect=5.0, read=10.0),
                                 retry=RetryPolicy(attempts=2, base_delay=0.5, max_delay=2.0))
        try:
            value = client.balance()
            return _BalanceEntry(value, None, now, now + BALANCE_TTL_S)
        except Magi1Error as exc:
            log.info("the MAGI-1 panel could not read the balance: %s", exc)
            return _BalanceEntry(None, str(exc), now, now + BALANCE_ERROR_TTL_S)
        finally:
            client.close()


def local_day_and_month_start(now: float | None = None) -> tuple[float, float]:
    """Epoch seconds of today's and this month's first instant, in the server's local time."""
    moment = dt.datetime.fromtimestamp(time.time() if now is None else now).astimezone()
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return day.timestamp(), day.replace(day=1).timestamp()


def account(host: Host, balances: BalanceCache, *, refresh: bool = False) -> dict[str, Any]:
    ctx = _context(host)
    private_dir = Path(host.private_directory())
    day, month = local_day_and_month_start()
    today = ctx.ledger.count_since(day)
    this_month = ctx.ledger.count_since(month)
    recent = ctx.ledger.list_tasks(limit=RUNNING_SCAN_ROWS)
    since = time.time() - RUNNING_WINDOW_S
    running = sum(1 for r in recent if r.status in RUNNING_STATUSES and r.submitted_at >= since)
    waiting = sum(1 for r in recent if STATES.get(r.status) == "waiting" and r.submitted_at >= since)
    limits = pack_settings.load(private_dir)
    price = limits.price_per_task_usd
    answer = {
        "tasks_today": today,
        "tasks_this_month": this_month,
        "running": running,
        "waiting": waiting,
        "slots": limits.account_max_running,
        "max_tasks_per_run": limits.max_tasks_per_run,
        "price_per_task_usd": price,
        "spent_today_usd": None if price is None else round(price * today, 4),
        "spent_this_month_usd": None if price is None else round(price * this_month, 4),
        "price_note": PRICE_NOTE,
        "service": _service_host(),
    }
    answer.update(balances.get(private_dir, refresh=refresh))
    return answer


def _service_host() -> str:
    """The host the pack talks to (api.wavespeed.ai, or the emulator's), for the panel's account line."""
    try:
        return urlsplit(resolve_base_url()).netloc
    except Magi1Error:
        return ""


# --- collect -----------------------------------------------------------------------------------------
class Collector:
    """Background wait + save of tasks the user asked to collect from the panel (one thread each)."""

    def __init__(self) -> None:
        self._running: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def active(self) -> set[str]:
        with self._lock:
            return {t for t, thread in self._running.items() if thread.is_alive()}

    def start(self, host: Any, task_id: str) -> bool:
        """True when a collection started now, False when one is already running for this task."""
        with self._lock:
            thread = self._running.get(task_id)
            if thread is not None and thread.is_alive():
                return False
            thread = threading.Thread(target=self._collect, args=(host, task_id), daemon=True,
                                      name=f"magi1-collect-{task_id[:16]}")
            self._running[task_id] = thread
        thread.start()
        return True

    @staticmethod
    def _collect(host: Any, task_id: str) -> None:
        ctx = _context(host)
        try:
            [(_, path)] = asyncio.run(pipeline.wait_and_save(
                ctx, [task_id], timeout_s=COLLECT_TIMEOUT_S, interval_s=COLLECT_INTERVAL_S))
            log.info("collected MAGI-1 task %s from the panel: %s", task_id, path)
        except Exception as exc:  # noqa: BLE001 - a background thread: the log is where this goes
            log.warning("could not collect MAGI-1 task %s from the panel: %s", task_id, exc)


# --- who may call ------------------------------------------------------------------------------------
def settings_answer(private_dir: Path) -> dict[str, Any]:
    current = pack_settings.load(private_dir)
    return {
        "values": {key: getattr(current, key) for key in pack_settings.FIELDS},
        "sources": {key: current.source_of(key) for key in pack_settings.FIELDS},
        "price_note": PRICE_NOTE,
    }


def _int_query(value: str | None, default: int, low: int, high: int) -> int:
    try:
        return min(max(int(value), low), high) if value not in (None, "") else default
    except ValueError:
        return default


def make_register(host: Host) -> Callable[[Any], None]:
    """A function that adds the panel's routes to ComfyUI's route table (given by the glue) and
    starts forwarding task events to the front end. `host` gives the folders (see `Host`)."""
    balances = BalanceCache()
    collector = Collector()

    def register(routes: Any) -> None:
        from aiohttp import web

        def refuse(status: int, message: str) -> web.Response:
            return web.json_response({"error": message}, status=status)

        def refused(request) -> web.Response | None:
            why = key_routes.request_refusal(request.method, request.headers, own_names=host.server_host_names(),
                                             content_type=request.content_type)
            if why is None:
                return None
            log.warning("refused a %s to %s: %s", request.method, request.path, why)
            return refuse(403, f"Refused: {why}.")

        @routes.get(f"{PREFIX}/tasks")
        async def get_tasks(request):
            if answer := refused(request):
                return answer
            limit = _int_query(request.query.get("limit"), PAGE_DEFAULT, 1, PAGE_MAX)
            before = None
            if request.query.get("before"):
                try:
                    before = float(request.query["before"])
                except ValueError:
                    return refuse(400, "before must be a number (the last row's submitted_at)")
            page = await asyncio.to_thread(list_page, host, limit, before, collector.active())
            return web.json_response(page, headers={"Cache-Control": "no-store"})

        @routes.get(PREFIX + "/tasks/{task_id}/thumbnail")
        async def get_thumbnail(request):
            if answer := refused(request):
                return answer
            task_id = request.match_info["task_id"]
            if not is_task_id(task_id):
                return refuse(400, "not a task id")
            try:
                data = await asyncio.to_thread(thumbnail, host, task_id)
            except Exception as exc:  # noqa: BLE001 - a clip PyAV cannot read: no thumbnail, said why
                log.info("no thumbnail for MAGI-1 task %s: %s", task_id, exc)
                return refuse(422, f"the saved video of task {task_id} could not be read")
            if data is None:
                return refuse(404, f"task {task_id} has no saved video under output/magi1")
            return web.Response(body=data, content_type="image/jpeg",
                                headers={"Cache-Control": "private, max-age=86400"})

        @routes.get(f"{PREFIX}/account")
        async def get_account(request):
            if answer := refused(request):
                return answer
            refresh = request.query.get("refresh") == "1"
            answer = await asyncio.to_thread(account, host, balances, refresh=refresh)
            return web.json_response(answer, headers={"Cache-Control": "no-store"})

        @routes.post(PREFIX + "/tasks/{task_id}/collect")
        async def post_collect(request):
            if answer := refused(request):
                return answer
            task_id = request.match_info["task_id"]
            if not is_task_id(task_id):
                return refuse(400, "not a task id")
            record = await asyncio.to_thread(lambda: _context(host).ledger.get(task_id))
            if record is None:
                return refuse(404, f"task {task_id} is not in this ComfyUI's ledger")
            row = task_row(record, host.output_directory(), task_id in collector.active())
            if row["state"] == "saved":
                return web.json_response({"task_id": task_id, "collecting": False, "saved": True})
            if row["state"] in ("failed", "dead"):
                return refuse(409, f"task {task_id} {row['state']}: there is no video to collect")
            started = collector.start(host, task_id)
            return web.json_response({"task_id": task_id, "collecting": True, "started": started}, status=202)

        @routes.get(f"{PREFIX}/settings")
        async def get_settings(request):
            if answer := refused(request):
                return answer
            return web.json_response(settings_answer(host.private_directory()))

        @routes.post(f"{PREFIX}/settings")
        async def post_settings(request):
            if answer := refused(request):
                return answer
            try:
                body = await request.json()
            except ValueError:
                return refuse(400, "send a JSON object of settings")
            if not isinstance(body, dict):
                return refuse(400, "send a JSON object of settings")
            try:
                pack_settings.write_file(host.private_directory(), body)
            except pack_settings.SettingsValueError as exc:
                return refuse(400, str(exc))
            log.info("MAGI-1 settings changed from the front end: %s", ", ".join(sorted(body)))
            return web.json_response(settings_answer(host.private_directory()))

        host.forward_task_events()

    return register
