"""Emulated MAGI-1 tasks: submit validation, the status a poll sees at a given moment, rendering.

A task is `created` for the first `CREATED_FRACTION` of its latency, then `processing`, then
`completed` once its latency has passed and its video is written. The latency is fixed when the
task is submitted, so changing the emulator's latency affects later tasks only.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import videogen
from .faults import Fault

logger = logging.getLogger(__name__)

MODEL_ID = "wavespeed-ai/magi-1-24b"
CREATED_FRACTION = 0.1
SEED_MAX = 2_147_483_647
NUM_FRAMES_RANGE = (96, 192)
FPS_RANGE = (5, 30)
DEFAULT_NUM_FRAMES = 96
DEFAULT_FPS = 24

# WaveSpeed's task error codes (see docs: notes/wavespeed-api.md).
CODE_MISSING_PARAMETER = 1400
CODE_INVALID_PARAMETER = 1401
CODE_MEDIA_UNREACHABLE = 1402
CODE_INTERNAL = 5000

FINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "timeout", "deleted"})


class SubmitError(Exception):
    """A submit body the service would refuse with HTTP 400 and this WaveSpeed code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class MediaUnreachableError(Exception):
    """The first-frame image URL could not be fetched by the emulator."""


@dataclass(frozen=True)
class TaskRequest:
    prompt: str
    image: str | None
    seed: int
    resolution: str
    aspect_ratio: str
    num_frames: int
    frames_per_second: int
    enable_safety_checker: bool
    sync: bool
    sent: dict[str, Any] = field(default_factory=dict, compare=False)  # the body as the client sent it


def _int_in(body: dict[str, Any], name: str, low: int, high: int, default: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SubmitError(CODE_INVALID_PARAMETER, f"{name} must be an integer in {low}~{high}, got {value!r}")
    return value


def _choice(body: dict[str, Any], name: str, choices: tuple[str, ...], default: str) -> str:
    value = body.get(name)
    if value is None:
        return default
    if value not in choices:
        raise SubmitError(
            CODE_INVALID_PARAMETER, f"{name} must be one of {', '.join(choices)}, got {value!r}"
        )
    return value


def parse_submit(body: Any, default_resolution: str) -> TaskRequest:
    """A MAGI-1 submit body → TaskRequest; raises SubmitError like the service's HTTP 400."""
    if not isinstance(body, dict):
        raise SubmitError(CODE_INVALID_PARAMETER, "the request body must be a JSON object")
    prompt = body.get("prompt")
    if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
        raise SubmitError(CODE_MISSING_PARAMETER, "prompt is required")
    if not isinstance(prompt, str):
        raise SubmitError(CODE_INVALID_PARAMETER, "prompt must be a string")
    image = body.get("image")
    if image is not None and not isinstance(image, str):
        raise SubmitError(CODE_INVALID_PARAMETER, "image must be a URL string")
    safety = body.get("enable_safety_checker", True)
    if not isinstance(safety, bool):
        raise SubmitError(CODE_INVALID_PARAMETER, "enable_safety_checker must be a boolean")
    sync = body.get("enable_sync_mode", False)
    if not isinstance(sync, bool):
        raise SubmitError(CODE_INVALID_PARAMETER, "enable_sync_mode must be a boolean")
    return TaskRequest(
        prompt=prompt,
        image=image or None,
        seed=_int_in(body, "seed", -1, SEED_MAX, -1),
        resolution=_choice(body, "resolution", videogen.RESOLUTIONS, default_resolution),
        aspect_ratio=_choice(body, "aspect_ratio", videogen.ASPECT_RATIOS, "auto"),
        num_frames=_int_in(body, "num_frames", *NUM_FRAMES_RANGE, DEFAULT_NUM_FRAMES),
        frames_per_second=_int_in(body, "frames_per_second", *FPS_RANGE, DEFAULT_FPS),
        enable_safety_checker=safety,
        sync=sync,
        sent=dict(body),
    )


def iso_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class TaskState:
    status: str
    error: str = ""
    code: int | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


class Task:
    """One emulated prediction. Thread-safe: rendered by one thread, read by many."""

    def __init__(self, request: TaskRequest, latency: float, outcome: Fault | None) -> None:
        self.id = secrets.token_hex(16)
        self.request = request
        # seed -1 lets the service pick; the emulator picks once and reports it in `describe()`.
        self.seed = request.seed if request.seed >= 0 else secrets.randbelow(SEED_MAX + 1)
        self.latency = latency
        self.outcome = outcome
        self.created_at = iso_now()
        self.created_epoch = time.time()
        self.submitted = time.monotonic()
        # When the task got a running slot (monotonic); None while it waits behind the account's
        # concurrency cap. Set once, by the emulator's scheduler.
        self.started: float | None = None
        self.discarded = False
        self._lock = threading.Lock()
        self._rendered = threading.Event()
        self._failure: TaskState | None = None
        self.video_path: str | None = None
        self.size: tuple[int, int] | None = None
        self.codec: str | None = None
        self.render_seconds = 0.0
        if outcome is not None:
            # The outcome is decided already: no video will ever be served, so none is made.
            self._rendered.set()

    @property
    def needs_render(self) -> bool:
        return not self._rendered.is_set()

    def start(self, moment: float) -> None:
        """The task got a running slot at `moment` (monotonic seconds)."""
        if self.started is None:
            self.started = moment

    def state(self, now: float | None = None) -> TaskState:
        started = self.started
        if started is None:
            return TaskState("created")
        elapsed = (time.monotonic() if now is None else now) - started
        if elapsed < CREATED_FRACTION * self.latency:
            return TaskState("created")
        outcome = self.outcome
        if outcome is not None and outcome.kind == "never_complete":
            return TaskState("processing")
        with self._lock:
            failure = self._failure
        if failure is not None:
            return failure
        if elapsed < self.latency or not self._rendered.is_set():
            return TaskState("processing")
        if outcome is not None and outcome.kind == "fail_task":
            return TaskState("failed", outcome.params["error"], outcome.params["code"])
        if outcome is not None and outcome.kind == "final_status":
            status = outcome.params["status"]
            return TaskState(status, f"Task {status} (injected by the emulator)")
        return TaskState("completed")

    def view(self, base_url: str, now: float | None = None) -> dict[str, Any]:
        """The prediction object WaveSpeed answers with, as of `now`."""
        state = self.state(now)
        completed = state.status == "completed"
        data: dict[str, Any] = {
            "id": self.id,
            "model": MODEL_ID,
            "outputs": [f"{base_url}/outputs/{self.id}.mp4"] if completed else [],
            "urls": {"get": f"{base_url}/api/v3/predictions/{self.id}/result"},
            "has_nsfw_contents": [False] if completed else [],
            "status": state.status,
            "created_at": self.created_at,
            "error": state.error,
            "timings": {
                "inference": round(max(self.latency, self.render_seconds) * 1000) if completed else 0
            },
        }
        if state.code is not None:
            data["code"] = state.code
        return data

    def describe(self) -> dict[str, Any]:
        """What the emulator decided for this task (admin API): effective seed, size, codec."""
        state = self.state()
        return {
            "id": self.id,
            "status": state.status,
            "error": state.error,
            "request": self.request.sent,
            "prompt": self.request.prompt,
            "image": self.request.image,
            "requested_seed": self.request.seed,
            "seed": self.seed,
            "resolution": self.request.resolution,
            "aspect_ratio": self.request.aspect_ratio,
            "num_frames": self.request.num_frames,
            "frames_per_second": self.request.frames_per_second,
            "enable_safety_checker": self.request.enable_safety_checker,
            "width": self.size[0] if self.size else None,
            "height": self.size[1] if self.size else None,
            "codec": self.codec,
            "latency": self.latency,
            "render_seconds": round(self.render_seconds, 3),
            "fault": self.outcome.as_dict() if self.outcome else None,
            "created_at": self.created_at,
        }

    def wait_final(
        self, timeout: float, stop: threading.Event, refresh: Callable[[], None] | None = None
    ) -> TaskState:
        """Poll until final, `timeout` or `stop`; `refresh` lets the scheduler start queued tasks."""
        deadline = time.monotonic() + timeout
        while True:
            if refresh is not None:
                refresh()
            state = self.state()
            if state.final or time.monotonic() >= deadline or stop.is_set():
                return state
            stop.wait(0.02)

    # --- written by the render thread ---------------------------------------------------------------
    def finish_rendered(self, path: str, size: tuple[int, int], codec: str, seconds: float) -> None:
        with self._lock:
            self.video_path, self.size, self.codec, self.render_seconds = path, size, codec, seconds
        self._rendered.set()

    def finish_failed(self, code: int, error: str) -> None:
        with self._lock:
            self._failure = TaskState("failed", error, code)
        self._rendered.set()

    def discard(self) -> None:
        """Forget the task's video (reset, eviction); a render still running removes its own file."""
        with self._lock:
            self.discarded = True
            path, self.video_path = self.video_path, None
        if path:
            _remove_quietly(path)


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def render(
    task: Task,
    workdir: str,
    load_image: Callable[[str], bytes],
    should_stop: Callable[[], bool],
) -> None:
    """Fetch the first frame, write the MP4 and record the outcome on `task` (render thread)."""
    started = time.monotonic()
    request = task.request
    try:
        image = None
        if request.image:
            try:
                image = videogen.decode_image(load_image(request.image))
            except MediaUnreachableError as exc:
                task.finish_failed(CODE_MEDIA_UNREACHABLE, f"Failed to download image: {exc}")
                return
            except videogen.VideoGenerationError as exc:
                task.finish_failed(CODE_INVALID_PARAMETER, f"Invalid image: {exc}")
                return
        width, height = videogen.frame_size(
            request.resolution, request.aspect_ratio, image.shape if image is not None else None
        )
        spec = videogen.VideoSpec(
            width, height, request.num_frames, request.frames_per_second, task.seed, request.prompt
        )
        final_path = os.path.join(workdir, f"{task.id}.mp4")
        partial_path = os.path.join(
            workdir, f"{task.id}.partial.mp4"
        )  # OpenCV picks the container by extension
        try:
            codec = videogen.generate_video(
                partial_path, spec, image, lambda: should_stop() or task.discarded
            )
            os.replace(partial_path, final_path)
        finally:
            _remove_quietly(partial_path)
        seconds = time.monotonic() - started
        task.finish_rendered(final_path, (width, height), codec, seconds)
        logger.debug(
            "task %s rendered %dx%d x%d frames in %.2fs", task.id, width, height, request.num_frames, seconds
        )
        if task.discarded:
            task.discard()
    except Exception as exc:  # a render thread must always leave the task in a final state
        if not should_stop() and not task.discarded:
            logger.exception("task %s: rendering failed", task.id)
        task.finish_failed(CODE_INTERNAL, f"Internal error while generating the video: {exc}")
