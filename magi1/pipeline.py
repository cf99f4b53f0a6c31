"""The recipe the nodes follow: first frame → upload → submit → wait → save → decode.

Everything here works on numpy arrays and plain callbacks, so it runs (and is tested) without
ComfyUI; the nodes hand it ComfyUI's directories and cancel check through `Context`.
Blocking HTTP and file work runs in worker threads, so ComfyUI's event loop keeps running other
nodes (several MAGI-1 tasks in one graph wait at the same time).
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Sequence

import numpy as np

from . import local_files, media, video
from .client import Prediction, WaveSpeedClient, client_for
from .config import Settings, check_url, load_settings
from .download import download_video, mp4_index_and_samples_present
from .errors import InputError, TaskFailedError
from .ledger import Ledger, fingerprint
from .mp4_metadata import tag_saved_video
from .params import Magi1Request
from .task_ids import is_task_id, shown
from .urls import PolicySession
from .poller import WaitSnapshot, run_interruptible, wait_for_tasks

log = logging.getLogger(__name__)

VIDEO_SUBFOLDER = "magi1"
LEDGER_FILE = "tasks.sqlite3"


@dataclass(frozen=True)
class Magi1Task:
    """What flows from Magi1Submit to Magi1Poll: the batch's task ids, in the batch's order."""

    task_ids: tuple[str, ...]
    base_url: str
    reused: tuple[bool, ...] = ()

    def __str__(self) -> str:
        return "\n".join(self.task_ids)


@dataclass
class Context:
    """Where things go and how to notice Cancel; built by the nodes from ComfyUI's glue."""

    output_dir: Path
    private_dir: Path
    throw_if_interrupted: Callable[[], None] = lambda: None
    _ledger: Ledger | None = field(default=None, repr=False)
    _cancelled: BaseException | None = field(default=None, repr=False)

    def check_cancel(self) -> None:
        """Raise if Cancel was pressed during this node's run.

        ComfyUI's own check clears its flag when it raises, so the first check to see it would
        hide it from every other thread of this run (a background upload would go on to submit a
        billed task). The cancel is remembered here, so every later check raises too.
        """
        if self._cancelled is not None:
            raise self._cancelled
        try:
            self.throw_if_interrupted()
        except BaseException as exc:
            self._cancelled = exc
            raise

    @property
    def video_dir(self) -> Path:
        return Path(self.output_dir) / VIDEO_SUBFOLDER

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = ledger_at(Path(self.private_dir) / LEDGER_FILE)
        return self._ledger

    def sleep(self, seconds: float) -> None:
        """A blocking sleep (for worker threads) that ends early with ComfyUI's interrupt."""
        deadline = time.monotonic() + seconds
        while True:
            self.check_cancel()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.2, left))

    def settings(self) -> Settings:
        return load_settings(self.private_dir)

    def client(self) -> WaveSpeedClient:
        return client_for(self.settings(), sleep=self.sleep)


_ledgers: dict[Path, Ledger] = {}
# Downloads carry no key (result URLs are public CDN links), so one plain session serves them all.
_download_session = PolicySession()  # the URL policy on every hop, never a ~/.netrc login


def ledger_at(path: Path) -> Ledger:
    path = Path(path).resolve()
    if path not in _ledgers:
        _ledgers[path] = Ledger(path)
    return _ledgers[path]


# --- submit -----------------------------------------------------------------------------------------
def first_frame_digest(pixels: np.ndarray) -> str:
    return hashlib.sha256(repr(pixels.shape).encode() + pixels.tobytes()).hexdigest()


async def submit(ctx: Context, request: Magi1Request, first_frames: np.ndarray | None) -> Magi1Task:
    """Submit one task per first frame (or one text-to-video task), all at once.

    A fixed seed (≥ 0) with inputs identical to an earlier task that has not failed reuses that
    task: it is not submitted or billed again. Seed -1 always submits.
    """
    if first_frames is not None:
        media.validate_first_frames(first_frames)
        if first_frames.ndim == 3:
            first_frames = first_frames[None]
    client = ctx.client()
    frames: Sequence[np.ndarray | None] = list(first_frames) if first_frames is not None else [None]

    def submit_one(index: int, image: np.ndarray | None) -> tuple[str, bool]:
        pixels = media.to_uint8(image) if image is not None else None
        digest = first_frame_digest(pixels) if pixels is not None else None
        asked = request.payload(None)
        key = fingerprint(client.base_url, asked, digest)
        if request.seed >= 0:
            earlier = ctx.ledger.find_reusable(key)
            if earlier is not None:
                log.info("reusing MAGI-1 task %s: same inputs and fixed seed %d, so it is not billed again",
                         earlier.task_id, request.seed)
                return earlier.task_id, True
        image_url = None
        if pixels is not None:
            ctx.check_cancel()
            png = media.encode_png(pixels)
            ctx.check_cancel()
            image_url = client.upload(png, f"magi1_first_frame_{digest[:16]}.png", "image/png")
        ctx.check_cancel()  # last moment to cancel before the billed POST
        payload = request.payload(image_url)
        prediction = client.submit(payload)
        ctx.ledger.record_submission(
            prediction.id, fingerprint=key, base_url=client.base_url, payload=payload, status=prediction.status
        )
        if len(frames) > 1:
            log.info("batch item %d/%d is task %s", index + 1, len(frames), prediction.id)
        return prediction.id, False

    results = await asyncio.gather(
        *(run_interruptible(lambda i=i, f=f: submit_one(i, f), ctx.check_cancel)
          for i, f in enumerate(frames))
    )
    return Magi1Task(
        task_ids=tuple(r[0] for r in results), base_url=client.base_url, reused=tuple(r[1] for r in results)
    )


# --- wait and save ----------------------------------------------------------------------------------
def video_path_for(ctx: Context, task_id: str) -> Path:
    return ctx.video_dir / f"magi1_{task_id}.mp4"


async def wait_and_save(
    ctx: Context,
    task_ids: Sequence[str],
    *,
    timeout_s: float,
    interval_s: float,
    on_update: Callable[[WaitSnapshot], None] | None = None,
) -> list[tuple[str, Path]]:
    """Wait for the tasks, save each finished MP4 under the output directory, return (url, path).

    A task whose video was saved before (this run or an earlier one) is not polled again, and a
    saved video is never downloaded twice.
    """
    if not task_ids:
        raise InputError("Magi1Poll got no task: connect Magi1Submit's task output or paste a task_id.")
    settings = ctx.settings()
    saved: dict[str, tuple[str, Path]] = {}
    for task_id in task_ids:
        record = ctx.ledger.ensure(task_id, base_url=settings.base_url)
        if record.status == "completed" and record.video_url and record.saved_video:
            saved[task_id] = (record.video_url, record.saved_video)
    pending = [t for t in task_ids if t not in saved]
    if pending:
        client = ctx.client()

        def record_final(prediction: Prediction) -> None:
            ctx.ledger.update_status(
                prediction.id, prediction.status, error=prediction.error,
                video_url=prediction.outputs[0] if prediction.outputs else None,
                inference_ms=prediction.inference_ms,
            )

        predictions = await wait_for_tasks(
            lambda t: client.get_result(t, sleep=ctx.sleep),
            pending,
            timeout_s=timeout_s,
            interval_s=interval_s,
            throw_if_interrupted=ctx.check_cancel,
            on_update=on_update,
            on_final=record_final,
        )

        async def save(prediction: Prediction) -> None:
            if not prediction.outputs:
                raise TaskFailedError(
                    f"MAGI-1 task {prediction.id} completed without an output URL. Paste the id into "
                    "Magi1Poll's task_id to try again later; contact WaveSpeed support if it persists.",
                    task_id=prediction.id,
                )
            url = prediction.outputs[0]
            path = await run_interruptible(
                lambda: save_video(ctx, url, task_id=prediction.id), ctx.check_cancel
            )
            saved[prediction.id] = (url, path)

        await asyncio.gather(*(save(p) for p in predictions))
    return [saved[t] for t in task_ids]


def save_video(ctx: Context, url: str, *, task_id: str | None = None) -> Path:
    """The local copy of a result video: the saved one when there is one, else downloaded now."""
    if task_id is not None and not is_task_id(task_id):  # before it reaches the ledger or a file name
        raise InputError(f"{shown(task_id)} is not a WaveSpeed task id; no file was written.")
    record = ctx.ledger.get(task_id) if task_id else ctx.ledger.find_by_video_url(url)
    if record is not None and record.saved_video is not None and mp4_index_and_samples_present(record.saved_video):
        return record.saved_video
    if task_id is None and record is not None:
        task_id = record.task_id
    if task_id is not None and not is_task_id(task_id):  # from the ledger: it becomes a file name
        raise InputError(f"{shown(task_id)} is not a WaveSpeed task id; no file was written.")
    name = task_id or "url_" + hashlib.sha256(url.encode()).hexdigest()[:16]
    dest = ctx.video_dir / f"magi1_{name}.mp4"
    if not (dest.is_file() and mp4_index_and_samples_present(dest)):
        download_video(
            url, dest, session=_download_session, what=f"the video of task {task_id}" if task_id else "the video",
            throw_if_interrupted=ctx.check_cancel, sleep=ctx.sleep,
        )
        tag_saved_video(dest, ctx.ledger.get(task_id) if task_id else None)
    if task_id:
        ctx.ledger.record_video(task_id, url, dest)
    return dest


# --- load ---------------------------------------------------------------------------------------------
def resolve_source(ctx: Context, source: str) -> Path:
    """A local MP4 for a URL (saved copy, or downloaded now) or a local path.

    Local paths follow magi1.local_files (videos inside ComfyUI's input, output or temp folder);
    URLs follow magi1.urls.
    """
    source = local_files.unquote(source)
    if "://" not in source:
        return local_files.resolve_local_video(source, local_files.allowed_roots(ctx.output_dir))
    check_url(source, what="video_url")
    return save_video(ctx, source)


async def load_videos(ctx: Context, sources: Sequence[str], *, frame_load_cap: int = 0,
                      skip_first_frames: int = 0, select_every_nth: int = 1) -> tuple[list[Path], video.DecodedFrames]:
    if not sources:
        raise InputError("Magi1LoadVideo got no video_url: connect Magi1Poll's video_url or paste a URL or path.")
    paths = []
    for source in sources:
        paths.append(await run_interruptible(lambda s=source: resolve_source(ctx, s), ctx.check_cancel))
    decoded = await run_interruptible(
        lambda: video.decode(paths, frame_load_cap=frame_load_cap, skip_first_frames=skip_first_frames,
                             select_every_nth=select_every_nth,
                             # stops the decode thread itself on Cancel, instead of leaving it allocating
                             on_progress=lambda done, expected: ctx.check_cancel()),
        ctx.check_cancel,
    )
    return paths, decoded
