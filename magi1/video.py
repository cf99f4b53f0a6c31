"""MP4 → one float32 `[N,H,W,3]` RGB array in 0…1, as fast as the decoder can go.

What a frame costs on a 2-core machine (1280×720, see bench/README.md for the figures):
decoding it (both cores, FFmpeg's threads), writing 11 MB of float32 (memory bandwidth), and
the kernel's first-touch faults on those 11 MB, which cost as much as the decoding itself.
So the loader keeps the work per frame minimal and spreads it over both cores:

- one output array for every video, allocated once from the probed frame counts (plus slack:
  a page never written costs nothing), returned as a view; no list of frames, no `np.stack`;
- a decoding thread runs OpenCV (which releases the GIL) into a small ring of reused uint8
  buffers while the caller's thread converts the previous frame, so decoding and converting
  overlap;
- the conversion is two passes, both in OpenCV's SIMD code: BGR→RGB on the small uint8 frame,
  then a 256-entry float32 look-up table written straight into the frame's slot. The table
  holds exactly `x / 255`, so frames equal the straightforward `frame / 255`;
- on Linux a third thread asks the kernel to fault in the output's pages ahead of the writer
  (`MADV_POPULATE_WRITE`, which never changes data), so the fault cost moves to whichever
  core is idle, and the output uses 4 KiB pages, not huge pages (see `_HUGE_PAGES`);
- frames that are skipped or not selected are only `grab()`bed (decoded, never converted), and
  reading stops at the cap.
"""
from __future__ import annotations

import ctypes
import logging
import math
import mmap
import queue
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError, VideoDecodeError

log = logging.getLogger(__name__)

# uint8 → float32 as a table: exactly x / 255 (the shared convention), and cv2.LUT writes it
# into the output slot in one pass at memory speed.
_TO_FLOAT = np.arange(256, dtype=np.float32) / np.float32(255)

# Frames decoded ahead of the converter; a few are enough to smooth out the decoder's bursts.
_RING_FRAMES = 3
# Room above the reported frame count, for containers that under-report. Never written → free.
_SLACK_FRAMES = 8
_SLACK_FRACTION = 0.02
# When the container does not report a count at all, start here and grow.
_UNKNOWN_COUNT_GUESS = 64
# Counts above this are a container's nonsense (streams report 2**63), not a video.
_MAX_PLAUSIBLE_COUNT = 10_000_000
# The pre-faulting thread works in steps of this many bytes, checking for the end in between.
_PREFAULT_STEP = 32 << 20
# numpy asks for transparent huge pages on large arrays. Not for this one: in a VM that returns
# free memory to its host (free page reporting: cloud machines, this one), the kernel hands huge
# pages out of exactly the blocks it gave back, and each costs a round trip to the host. Measured
# here on 5 GB of fresh output: 10–14 s of kernel time with huge pages, 1.3–2.7 s without; on
# memory the host still backs, 0.8 s vs 1.3 s, and that part runs on the pre-faulting thread.
_HUGE_PAGES = False


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frame_count: int
    """As the container reports it; 0 when it does not say (the file still has frames)."""


@dataclass(frozen=True)
class DecodedFrames:
    frames: np.ndarray
    """float32 `[N,H,W,3]` RGB in 0…1, C-contiguous (wrap with `torch.from_numpy`, zero-copy)."""
    fps: float
    """The first video's frame rate."""
    counts: list[int]
    """Frames kept from each video, in the order given."""


def probe(path: str | Path) -> VideoInfo:
    """Size, frame rate and reported frame count of a video, without decoding it."""
    capture = _open(Path(path))
    try:
        return _info(Path(path), capture)
    finally:
        capture.release()


def decode(
    paths: Sequence[str | Path],
    frame_load_cap: int = 0,
    skip_first_frames: int = 0,
    select_every_nth: int = 1,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> DecodedFrames:
    """Decode the videos into one float32 `[N,H,W,3]` RGB array, in the order given.

    The options apply to each video: skip its first `skip_first_frames`, then keep every
    `select_every_nth` frame, stopping after `frame_load_cap` kept frames (0 = no cap).

    `on_progress(frames_done, frames_expected)` is called in the caller's thread after each
    kept frame; an exception it raises (a cancel) stops decoding and propagates.
    """
    _check_options(frame_load_cap, skip_first_frames, select_every_nth)
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError("No video to decode: give at least one MP4 path.")
    infos = [probe(p) for p in paths]
    for path, info in zip(paths[1:], infos[1:], strict=True):
        if (info.width, info.height) != (infos[0].width, infos[0].height):
            raise VideoDecodeError(
                f"Cannot load {paths[0].name} ({infos[0].width}×{infos[0].height}) and {path.name} "
                f"({info.width}×{info.height}) as one batch: the frames of one IMAGE must share a size. "
                "Load them with separate Magi1LoadVideo nodes (and resize one if you need them together)."
            )
        if not math.isclose(info.fps, infos[0].fps, rel_tol=1e-3):
            log.warning("%s runs at %.3f fps, %s at %.3f fps; the batch reports the first's rate",
                        path.name, info.fps, paths[0].name, infos[0].fps)

    def expected(info: VideoInfo) -> int:
        count = info.frame_count or _UNKNOWN_COUNT_GUESS
        return _selected_count(count, frame_load_cap, skip_first_frames, select_every_nth)

    frames_expected = sum(expected(info) for info in infos)
    output = _FrameBuffer(frames_expected, infos[0].height, infos[0].width)
    try:
        counts = _run_pipeline(paths, output, frame_load_cap, skip_first_frames, select_every_nth,
                               on_progress, frames_expected)
    finally:
        output.finish()
    if output.count == 0:
        names = ", ".join(p.name for p in paths)
        if skip_first_frames:
            raise VideoDecodeError(
                f"No frames selected: skip_first_frames={skip_first_frames} skips past the end of "
                f"{names} ({' + '.join(str(i.frame_count) for i in infos)} frames reported). "
                "Lower skip_first_frames (it applies to each video)."
            )
        raise VideoDecodeError(f"OpenCV decoded no frames from {names}. Check that the video plays in a video player.")
    return DecodedFrames(frames=output.frames(), fps=infos[0].fps, counts=counts)


# --- opening and probing ----------------------------------------------------------------------------
def _open(path: Path) -> cv2.VideoCapture:
    if not path.is_file():
        raise VideoDecodeError(f"Video file {path} does not exist. Check the path, or download the video again.")
    # FFmpeg explicitly: the default would try the image-sequence reader on names with '%'.
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()
        raise VideoDecodeError(
            f"OpenCV cannot open {path} as a video: the file is damaged, incomplete or not a video. "
            "Download it again (delete the saved copy first), or check that it plays in a video player."
        )
    return capture


def _info(path: Path, capture: cv2.VideoCapture) -> VideoInfo:
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    reported = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    frame_count = int(reported) if math.isfinite(reported) and 0 < reported < _MAX_PLAUSIBLE_COUNT else 0
    # No count, or no size: only a decoded frame can tell whether there is a video at all.
    if (frame_count == 0 or width <= 0 or height <= 0) and not capture.grab():
        raise VideoDecodeError(
            f"{path} has no video frames OpenCV can decode. Download it again, or check that it "
            "plays in a video player."
        )
    if width <= 0 or height <= 0:
        ok, frame = capture.retrieve()
        if not ok:
            raise VideoDecodeError(f"OpenCV cannot decode the frames of {path}. Check that it plays in a video player.")
        height, width = frame.shape[:2]
    if not (math.isfinite(fps) and fps > 0):
        log.warning("%s does not state its frame rate; assuming 24 fps", path.name)
        fps = 24.0
    return VideoInfo(width=width, height=height, fps=fps, frame_count=frame_count)


def _check_options(frame_load_cap: int, skip_first_frames: int, select_every_nth: int) -> None:
    if frame_load_cap < 0:
        raise InputError(f"frame_load_cap must be 0 (all frames) or more, not {frame_load_cap}.")
    if skip_first_frames < 0:
        raise InputError(f"skip_first_frames must be 0 or more, not {skip_first_frames}.")
    if select_every_nth < 1:
        raise InputError(f"select_every_nth must be 1 (every frame) or more, not {select_every_nth}.")


def _selected_count(frame_count: int, cap: int, skip: int, nth: int) -> int:
    kept = -(-max(0, frame_count - skip) // nth)
    return min(kept, cap) if cap else kept


# --- the output array ---------------------------------------------------------------------------------
class _FrameBuffer:
    """The one output array, filled frame by frame, grown in the rare case the counts were low."""

    def __init__(self, frames_expected: int, height: int, width: int) -> None:
        self._expected = frames_expected
        capacity = frames_expected + _SLACK_FRAMES + int(frames_expected * _SLACK_FRACTION)
        try:
            self._array = np.empty((capacity, height, width, 3), np.float32)
        except MemoryError:
            need = frames_expected * height * width * 12 / 2**30
            raise VideoDecodeError(
                f"Not enough memory for {frames_expected} frames of {width}×{height} ({need:.1f} GiB as "
                "float32). Set frame_load_cap or select_every_nth to load fewer frames."
            ) from None
        if not _HUGE_PAGES:
            _advise(self._array, _MADV_NOHUGEPAGE)  # before any page exists
        self.count = 0
        self._rgb: np.ndarray | None = None
        self._prefaulter = _Prefaulter.start_for(self._array, frames_expected)

    def append(self, bgr: np.ndarray) -> None:
        if self.count == len(self._array):
            self._grow()
        self._rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=self._rgb)
        cv2.LUT(self._rgb, _TO_FLOAT, dst=self._array[self.count])
        self.count += 1
        if self._prefaulter is not None:
            self._prefaulter.writer_at = self.count

    def _grow(self) -> None:
        # A container that under-reported. ndarray.resize is realloc: on Linux an mremap that moves
        # page tables, not data, so this costs no second full-size buffer. No view may exist now.
        self._stop_prefaulter()
        capacity = len(self._array) + max(_UNKNOWN_COUNT_GUESS, len(self._array) // 8)
        log.debug("the container under-reported its frames; growing the output to %d frames", capacity)
        self._array.resize((capacity, *self._array.shape[1:]), refcheck=False)

    def finish(self) -> None:
        """Stop pre-faulting and give back pages faulted in for frames that never came."""
        self._stop_prefaulter()
        if self.count < self._expected:
            _release(self._array[self.count:self._expected])

    def frames(self) -> np.ndarray:
        return self._array[: self.count]

    def _stop_prefaulter(self) -> None:
        if self._prefaulter is not None:
            self._prefaulter.stop()
            self._prefaulter = None


# --- memory advice (Linux; elsewhere these are no-ops) ---------------------------------------------
# Linux ≥ 5.14: fault pages in as if written, without writing (so it is safe beside the writer).
_MADV_POPULATE_WRITE = 23
_MADV_NOHUGEPAGE = 15
_MADV_DONTNEED = 4


def _load_libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        libc.madvise.restype = ctypes.c_int
        return libc
    except (OSError, AttributeError) as error:
        log.debug("no madvise (%s): decoding without memory advice", error)
        return None


_libc = _load_libc()


def _page_start(address: int) -> int:
    return address - address % mmap.PAGESIZE


def _advise(array: np.ndarray, advice: int) -> None:
    """madvise over every page `array` touches (fine for advice that never changes data)."""
    if _libc is not None and array.size:
        start = _page_start(array.ctypes.data)
        _libc.madvise(start, array.ctypes.data + array.nbytes - start, advice)


def _release(array: np.ndarray) -> None:
    """Hand the whole pages inside `array` back to the kernel (they read as zeros afterwards)."""
    if _libc is None or array.size == 0:
        return
    end = array.ctypes.data + array.nbytes
    first = _page_start(array.ctypes.data + mmap.PAGESIZE - 1)
    last = _page_start(end)
    if last > first:
        _libc.madvise(first, last - first, _MADV_DONTNEED)


class _Prefaulter(threading.Thread):
    """Faults the output's pages in on the idle core, ahead of the writer.

    The first touch of fresh memory costs the kernel about as much as decoding the frame (here
    0.25–0.5 ms per MB, 3–6 ms per 720p frame). ctypes releases the GIL for the madvise call, so
    this runs truly in parallel with the decoder and the converter.
    """

    def __init__(self, array: np.ndarray, frames: int) -> None:
        super().__init__(name="magi1-prefault", daemon=True)
        self._array = array
        self._frames = frames
        self._stopped = threading.Event()
        self.writer_at = 0  # frames written so far; a plain int is atomic enough for a hint

    @classmethod
    def start_for(cls, array: np.ndarray, frames: int) -> _Prefaulter | None:
        if _libc is None or frames == 0:
            return None
        prefaulter = cls(array, frames)
        prefaulter.start()
        return prefaulter

    def run(self) -> None:
        frame_bytes = self._array[0].nbytes
        base = _page_start(self._array.ctypes.data)
        offset = self._array.ctypes.data - base
        end = offset + self._frames * frame_bytes
        position = 0
        while position < end and not self._stopped.is_set():
            # Never fault behind the writer: it faults those pages itself anyway.
            position = max(position, offset + self.writer_at * frame_bytes)
            position -= position % mmap.PAGESIZE
            length = min(_PREFAULT_STEP, end - position)
            if length <= 0:
                break
            if _libc.madvise(base + position, length, _MADV_POPULATE_WRITE) != 0:
                log.debug("MADV_POPULATE_WRITE unavailable (errno %d); no pre-faulting", ctypes.get_errno())
                return
            position += length

    def stop(self) -> None:
        self._stopped.set()
        self.join()


# --- decoding -----------------------------------------------------------------------------------------
_END = object()


class _Stopped(Exception):
    """The caller stopped consuming frames; the decoder thread just ends."""


class _Ring:
    """The uint8 frames passed between the decoder thread and the converting thread."""

    def __init__(self, frames: int) -> None:
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        self.ready: queue.SimpleQueue = queue.SimpleQueue()
        self._stopping = threading.Event()
        for _ in range(frames):
            self._free.put(None)  # allocated by cv2 on first use, reused after

    def take(self) -> np.ndarray | None:
        buffer = self._free.get()
        self.check()
        return buffer

    def give_back(self, buffer: np.ndarray | None) -> None:
        self._free.put(buffer)

    def check(self) -> None:
        if self._stopping.is_set():
            raise _Stopped

    def stop(self) -> None:
        self._stopping.set()
        self._free.put(None)  # wakes the decoder if it waits for a buffer


def _run_pipeline(paths: list[Path], output: _FrameBuffer, frame_load_cap: int, skip_first_frames: int,
                  select_every_nth: int, on_progress: Callable[[int, int], None] | None,
                  frames_expected: int) -> list[int]:
    """Decode in a worker thread into a ring of uint8 frames; convert them here as they come."""
    ring = _Ring(_RING_FRAMES)
    counts: list[int] = []
    size = output.frames().shape[1:3]

    def decode_all() -> None:
        try:
            for path in paths:
                counts.append(_decode_one(path, size, frame_load_cap, skip_first_frames, select_every_nth, ring))
            ring.ready.put(_END)
        except _Stopped:
            pass
        except Exception as error:  # noqa: BLE001 - handed to the caller's thread, which re-raises it
            ring.ready.put(error)

    decoder = threading.Thread(target=decode_all, name="magi1-decode", daemon=True)
    decoder.start()
    try:
        while True:
            item = ring.ready.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            output.append(item)
            ring.give_back(item)
            if on_progress is not None:
                on_progress(output.count, max(frames_expected, output.count))
    finally:
        ring.stop()
        decoder.join()
    return counts


def _decode_one(path: Path, size: tuple[int, int], frame_load_cap: int, skip_first_frames: int,
                select_every_nth: int, ring: _Ring) -> int:
    capture = _open(path)
    buffer = None
    kept = 0
    try:
        for _ in range(skip_first_frames):
            ring.check()
            if not capture.grab():  # decoded (later frames depend on it), never converted
                return 0
        position = 0
        while not frame_load_cap or kept < frame_load_cap:
            if position % select_every_nth:
                ring.check()
                if not capture.grab():
                    break
            else:
                if buffer is None:
                    buffer = ring.take()
                ok, frame = capture.read(buffer)
                if not ok:
                    break
                if frame.shape[:2] != size:
                    raise VideoDecodeError(
                        f"{path} changes size mid-stream (frame {skip_first_frames + position} is "
                        f"{frame.shape[1]}×{frame.shape[0]}, expected {size[1]}×{size[0]}); "
                        "re-encode it at one size."
                    )
                ring.ready.put(frame)
                buffer = None
                kept += 1
            position += 1
        return kept
    finally:
        if buffer is not None:
            ring.give_back(buffer)
        capture.release()
