"""Video files → one float32 `[N,H,W,3]` RGB array in 0…1: right on every OpenCV, as fast as it goes.

Right means what a player shows (FFmpeg honouring the stream's tags), whichever `opencv-python`
is installed (the pack allows ≥ 4.8; other packs pin their own). `probe` reads each file with
PyAV (which ComfyUI installs): the video stream's codec, pixel format, colour tags, display
matrix (rotation) and frame count, and for MP4/MOV the file's own index (`mp4_index`), which
also tells whether the file is complete. Then each file goes to one of two decoders:

- OpenCV, for what every OpenCV release converts right and fast: H.264, HEVC and MPEG-4 Part 2
  in 8-bit 4:2:0 whose colour is BT.601 (tagged so, or untagged: FFmpeg's default), limited
  range or JPEG-range `yuvj420p`. OpenCV's own auto-rotation is switched off (4.11 ignores the
  tag, others apply it) and the rotation is applied here, from the display matrix;
- PyAV, for everything else: BT.709 (OpenCV 4.8–4.12 convert it as BT.601: up to 30/255 off),
  full range tagged on a non-`yuvj` format, 10-bit, alpha (dropped: IMAGE is RGB), codecs
  OpenCV's FFmpeg lacks (AV1 needs libdav1d), and any file OpenCV cannot open. Its frames are
  converted by FFmpeg's swscale with the matrix and range given explicitly.

Speed (figures in bench/README.md): one output array for every video, allocated once from the
video streams' own counts (plus slack: a page never written costs nothing), returned as a view;
a decoding thread (OpenCV and PyAV release the GIL) fills a small ring of uint8 frames while the
caller's thread converts the previous one (BGR→RGB, rotation, then a 256-entry float32 table
written straight into the frame's slot: exactly `x / 255`); skipped and unselected frames are
decoded (later frames depend on them) but never converted; reading stops at the cap. The Linux
page handling of the output array lives in `page_memory`.
"""
from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av  # ComfyUI's own dependency (its VIDEO type decodes with it)
import cv2
import numpy as np

from . import mp4_index, page_memory
from .errors import InputError, VideoDecodeError

log = logging.getLogger(__name__)

# uint8 → float32 as a table: exactly x / 255 (the shared convention), and cv2.LUT writes it
# into the output slot in one pass at memory speed.
_TO_FLOAT = np.arange(256, dtype=np.float32) / np.float32(255)

# Frames decoded ahead of the converter; a few are enough to smooth out the decoder's bursts.
_RING_FRAMES = 3
# Room above the expected frame count, for streams whose count is an estimate. Never written → free.
_SLACK_FRAMES = 8
_SLACK_FRACTION = 0.02
# When the stream does not say how long it is, start here and grow.
_UNKNOWN_COUNT_GUESS = 64
# Counts above this are a container's nonsense (streams report 2**63), not a video.
_MAX_PLAUSIBLE_COUNT = 10_000_000
# Memory the rest of ComfyUI keeps needing while a video loads: never planned into the output.
_MEMORY_RESERVE = 512 << 20

# What OpenCV decodes right on every release the pack allows (see the module docstring).
_OPENCV_CODECS = {"h264", "hevc", "mpeg4"}
_OPENCV_PIXEL_FORMATS = {"yuv420p", "yuvj420p"}
# FFmpeg's AVColorSpace numbers that mean the BT.601 matrix; 2 is "unspecified" (FFmpeg's default
# for it is BT.601 too), 0 is RGB (the GBR of an RGB codec: no matrix).
_BT601 = {2, 5, 6}
_BT709 = 1
_BT2020 = {9, 10}
_RANGE_PC = 2
# Counter-clockwise quarter turns → cv2.rotate code.
_ROTATE = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_CLOCKWISE}


@dataclass(frozen=True)
class VideoInfo:
    width: int
    """As shown: after rotation."""
    height: int
    fps: float
    frame_count: int
    """From the video stream itself (MP4 index, stream count or the stream's own duration × rate);
    0 when it does not say (the file may still have frames)."""
    codec: str = ""
    """FFmpeg's decoder name (`h264`, `hevc`, `av1`, `libdav1d`, `vp9`...)."""
    pixel_format: str = ""
    quarter_turns: int = 0
    """Counter-clockwise quarter turns from the coded picture to the shown one (display matrix)."""
    matrix: str = "bt601"
    """The colour matrix the frames are converted with: `bt601`, `bt709` or `bt2020`."""
    full_range: bool = False
    exact_count: bool = False
    """`frame_count` comes from an index that lists every frame (so a shorter decode is an error)."""
    decoder: str = "opencv"
    """`opencv` or `pyav`: which decoder this file goes through, and why in `decoder_reason`."""
    decoder_reason: str = ""


@dataclass(frozen=True)
class DecodedFrames:
    frames: np.ndarray
    """float32 `[N,H,W,3]` RGB in 0…1, C-contiguous (wrap with `torch.from_numpy`, zero-copy)."""
    fps: float
    """The first video's frame rate."""
    counts: list[int]
    """Frames kept from each video, in the order given."""


def probe(path: str | Path) -> VideoInfo:
    """What the video stream says about itself, and which decoder will read it.

    Reads the MP4/MOV index and the stream parameters; decodes a first frame only for other
    containers (their display matrix travels with the frames).

    Raises VideoDecodeError naming the file when it is missing, incomplete (an MP4 whose index
    or sample data is not all there), not a video, or in a codec nothing here decodes.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"Video file {path} does not exist. Check the path, or download the video again.")
    index = _complete_index(path)
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as error:
        raise VideoDecodeError(
            f"{path} cannot be opened as a video ({error.strerror or error}): the file is damaged or not a "
            "video. Download it again (delete the saved copy first)."
        ) from None
    with container:
        if not container.streams.video:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
            raise VideoDecodeError(f"{path} has no video stream (streams: {kinds}).")
        stream = container.streams.video[0]
        context = stream.codec_context
        if context is None:
            raise VideoDecodeError(_undecodable(path, repr(getattr(stream, "codec_tag", "") or "?"), "no decoder"))
        codec = _codec_name(context)
        fps = _frame_rate(stream)
        track = _video_track(index, stream)
        count, exact = _frame_count(track, stream, fps)
        width, height = context.width, context.height
        pixel_format, colorspace, colour_range = context.pix_fmt, int(context.colorspace), int(context.color_range)
        rotation = track.rotation if track is not None else None
        if rotation is None or not pixel_format or not width:
            # not an MP4/MOV (no index to read the display matrix from): ask the first frame
            try:
                first = next(container.decode(stream), None)
            except av.error.FFmpegError as error:
                raise VideoDecodeError(_undecodable(path, codec, str(error.strerror or error))) from None
            if first is None:
                raise VideoDecodeError(_undecodable(path, codec, "no frame decodes"))
            width, height, pixel_format = first.width, first.height, first.format.name
            colorspace, colour_range = int(first.colorspace), int(first.color_range)
            rotation = float(getattr(first, "rotation", 0) or 0)
    turns = int(round(rotation / 90)) % 4
    matrix = "bt709" if colorspace == _BT709 else "bt2020" if colorspace in _BT2020 else "bt601"
    full_range = colour_range == _RANGE_PC or pixel_format.startswith("yuvj")
    if turns % 2:
        width, height = height, width
    reason = _why_pyav(context.name, pixel_format, matrix, colour_range, turns)
    return VideoInfo(width=width, height=height, fps=fps, frame_count=count, codec=codec,
                     pixel_format=pixel_format, quarter_turns=turns, matrix=matrix, full_range=full_range,
                     exact_count=exact, decoder="pyav" if reason else "opencv", decoder_reason=reason)


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
    Raises VideoDecodeError (naming the file) for missing, incomplete or undecodable files and
    for a decode that ends before the frames an MP4's index lists; VideoDecodeError naming
    `frame_load_cap` when the frames would not fit in the memory available.
    """
    _check_options(frame_load_cap, skip_first_frames, select_every_nth)
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError("No video to decode: give at least one video path.")
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
        counts = _run_pipeline(paths, infos, output, frame_load_cap, skip_first_frames, select_every_nth,
                               on_progress, frames_expected)
    finally:
        output.finish()
    if output.count == 0:
        names = ", ".join(p.name for p in paths)
        if not skip_first_frames:
            codecs = ", ".join(sorted({i.codec for i in infos if i.codec})) or "video"
            raise VideoDecodeError(
                f"No frame of {names} could be decoded ({codecs}): the file is damaged, or the FFmpeg in "
                f"this PyAV (av {av.__version__}) cannot decode it. Download it again, or re-encode it to H.264."
            )
        raise VideoDecodeError(
            f"No frames selected: skip_first_frames={skip_first_frames} skips past the end of "
            f"{names} ({' + '.join(str(i.frame_count) for i in infos)} frames). "
            "Lower skip_first_frames (it applies to each video)."
        )
    return DecodedFrames(frames=output.frames(), fps=infos[0].fps, counts=counts)


# --- probing --------------------------------------------------------------------------------------------
def _complete_index(path: Path) -> mp4_index.Mp4Index | None:
    """The MP4/MOV index (None for other containers); VideoDecodeError when the file is incomplete."""
    try:
        index = mp4_index.read(path)
    except OSError as error:
        raise VideoDecodeError(f"Cannot read {path}: {error.strerror or error}.") from None
    problem = index.problem if index is not None else _matroska_problem(path)
    if problem:
        raise VideoDecodeError(
            f"{path} is incomplete: {problem}. Download it again (delete the saved copy first), "
            "or wait until whatever writes it has finished."
        )
    return index


_EBML = b"\x1a\x45\xdf\xa3"
_SEGMENT = b"\x18\x53\x80\x67"


def _matroska_problem(path: Path) -> str | None:
    """Why an MKV/WebM is cut short, or None: its Segment element states its size (EBML, RFC 8794).

    A file still being written (or streamed live) leaves the size unknown; that is not checked.
    """
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(0)
        head = fh.read(4096)
    if not head.startswith(_EBML):
        return None
    try:
        header_size, length, _ = _ebml_size(head, 4)
        at = 4 + length + header_size
        if head[at:at + 4] != _SEGMENT:
            return None
        segment_size, length, unknown = _ebml_size(head, at + 4)
    except (IndexError, ValueError):
        return "its EBML header is cut short"
    end = at + 4 + length + segment_size
    if not unknown and end > size:
        return f"its Segment runs to byte {end:,} but the file has {size:,} bytes: the file is cut short"
    return None


def _ebml_size(data: bytes, at: int) -> tuple[int, int, bool]:
    """(value, bytes used, whether it means "unknown size") of the EBML variable-size integer at `at`."""
    first = data[at]
    if first == 0:
        raise ValueError("not an EBML size")
    length = 9 - first.bit_length()
    value = first & ((1 << (8 - length)) - 1)
    for byte in data[at + 1:at + length]:
        value = value << 8 | byte
    if at + length > len(data):
        raise IndexError("cut short")
    return value, length, value == (1 << (7 * length)) - 1


def _video_track(index: mp4_index.Mp4Index | None, stream) -> mp4_index.Track | None:
    if index is None:
        return None
    tracks = [t for t in index.tracks if t.handler == "vide"]
    return next((t for t in tracks if t.track_id == stream.id), tracks[0] if tracks else None)


def _codec_name(context) -> str:
    codec = getattr(context, "codec", None)
    return getattr(codec, "canonical_name", None) or getattr(context, "name", None) or "an unknown codec"


def _undecodable(path: Path, codec: str, why: str) -> str:
    return (f"{path} holds video in {codec}, and the FFmpeg in this PyAV (av {av.__version__}) cannot decode "
            f"it ({why}): either it has no decoder for {codec} or the file is damaged. Re-encode it to H.264 "
            "(for example `ffmpeg -i in.mkv -c:v libx264 -pix_fmt yuv420p out.mp4`), update the av package, "
            "or, if it was downloaded, download it again.")


def _frame_rate(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and float(rate) > 0:
            return float(rate)
    log.warning("%s does not state its frame rate; assuming 24 fps", stream.container.name)
    return 24.0


def _frame_count(track: mp4_index.Track | None, stream, fps: float) -> tuple[int, bool]:
    """The video stream's own frame count, and whether it is exact (an index lists every frame).

    Never the file's duration: that is the longest stream's, and an MP4 or MKV with 300 s of
    audio and 2 s of video would be sized for 300 s.
    """
    if track is not None and 0 < track.samples < _MAX_PLAUSIBLE_COUNT:
        return track.samples, not track.edits_drop_samples
    if 0 < stream.frames < _MAX_PLAUSIBLE_COUNT:
        return int(stream.frames), False
    seconds = None
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif (tag := stream.metadata.get("DURATION")) is not None:  # Matroska writes one per track
        seconds = _clock_seconds(tag)
    if seconds and 0 < seconds * fps < _MAX_PLAUSIBLE_COUNT:
        return int(round(seconds * fps)), False
    return 0, False


def _clock_seconds(text: str) -> float | None:
    try:
        hours, minutes, seconds = text.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def _why_pyav(decoder_name: str, pixel_format: str, matrix: str, colour_range: int, turns: int) -> str:
    """Why OpenCV cannot decode this stream right on every release, or '' when it can."""
    if decoder_name not in _OPENCV_CODECS:
        return f"codec {decoder_name}"
    if pixel_format not in _OPENCV_PIXEL_FORMATS:
        return f"pixel format {pixel_format}"
    if matrix != "bt601":
        return f"colour matrix {matrix}"
    if colour_range == _RANGE_PC and not pixel_format.startswith("yuvj"):
        return "full range"
    if turns and not _OPENCV_ROTATION_SWITCH:
        return "rotation (this OpenCV cannot switch its auto-rotation off)"
    return ""


_OPENCV_ROTATION_SWITCH = hasattr(cv2, "CAP_PROP_ORIENTATION_AUTO")


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
        frame_bytes = height * width * 3 * 4
        need = frames_expected * frame_bytes
        available = page_memory.available_bytes()
        if available is not None and need > available - _MEMORY_RESERVE:
            raise self._no_memory(frames_expected, width, height, need, max(0, available - _MEMORY_RESERVE))
        capacity = frames_expected + _SLACK_FRAMES + int(frames_expected * _SLACK_FRACTION)
        try:
            self._array = np.empty((capacity, height, width, 3), np.float32)
        except MemoryError:
            raise self._no_memory(frames_expected, width, height, need, None) from None
        page_memory.no_huge_pages(self._array)  # before any page exists
        self.count = 0
        self._rgb: np.ndarray | None = None
        self._turned: np.ndarray | None = None
        self._prefaulter = page_memory.Prefaulter.start_for(self._array, frames_expected)

    @staticmethod
    def _no_memory(frames: int, width: int, height: int, need: int, available: int | None) -> VideoDecodeError:
        free = f", {available / 2**30:.1f} GiB available" if available is not None else ""
        return VideoDecodeError(
            f"Not enough memory for {frames} frames of {width}×{height} ({need / 2**30:.1f} GiB as float32{free}). "
            "Set frame_load_cap (or raise select_every_nth) to load fewer frames."
        )

    def append(self, frame: np.ndarray, bgr: bool, turns: int) -> None:
        if self.count == len(self._array):
            self._grow()
        if bgr:
            frame = self._rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=self._rgb)
        if turns:
            frame = self._turned = cv2.rotate(frame, _ROTATE[turns], dst=self._turned)
        cv2.LUT(frame, _TO_FLOAT, dst=self._array[self.count])
        self.count += 1
        if self._prefaulter is not None:
            self._prefaulter.writer_at = self.count

    def _grow(self) -> None:
        # A stream that under-reported. ndarray.resize is realloc: on Linux an mremap that moves
        # page tables, not data, so this costs no second full-size buffer. No view may exist now.
        self._stop_prefaulter()
        capacity = len(self._array) + max(_UNKNOWN_COUNT_GUESS, len(self._array) // 8)
        log.debug("the stream under-reported its frames; growing the output to %d frames", capacity)
        self._array.resize((capacity, *self._array.shape[1:]), refcheck=False)

    def finish(self) -> None:
        """Stop pre-faulting and give back pages faulted in for frames that never came."""
        self._stop_prefaulter()
        if self.count < self._expected:
            page_memory.release(self._array[self.count:self._expected])

    def frames(self) -> np.ndarray:
        return self._array[: self.count]

    def _stop_prefaulter(self) -> None:
        if self._prefaulter is not None:
            self._prefaulter.stop()
            self._prefaulter = None


# --- the two decoders -----------------------------------------------------------------------------------
class _OpenCVSource:
    """OpenCV's FFmpeg reader with its auto-rotation off: coded-orientation BGR frames."""

    bgr = True

    def __init__(self, capture: cv2.VideoCapture) -> None:
        self._capture = capture
        self.grab = capture.grab
        self.read = capture.read

    @classmethod
    def open(cls, path: Path, info: VideoInfo) -> _OpenCVSource | None:
        # FFmpeg explicitly: the default would try the image-sequence reader on names with '%'.
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not capture.isOpened():
            capture.release()
            log.info("OpenCV cannot open %s; decoding it with PyAV", path.name)
            return None
        if _OPENCV_ROTATION_SWITCH and not capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0) and info.quarter_turns:
            capture.release()
            log.info("OpenCV cannot switch off its auto-rotation for %s; decoding it with PyAV", path.name)
            return None
        return cls(capture)

    def close(self) -> None:
        self._capture.release()


class _PyAVSource:
    """PyAV's decoder; frames converted to RGB by swscale with the stream's matrix and range."""

    bgr = False

    def __init__(self, path: Path, info: VideoInfo) -> None:
        self._error = av.error.FFmpegError
        self._decoded = 0
        self._path, self._info = path, info
        self._container = av.open(str(path))
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        self._frames: Iterator = self._container.decode(stream)
        self._convert = {"format": "rgb24", "src_colorspace": _SWS_MATRIX[info.matrix],
                         "src_color_range": "JPEG" if info.full_range else "MPEG", "dst_color_range": "JPEG"}
        # PyAV < 17 converts the JPEG-range formats (yuvj420p...) with the BT.601 matrix whatever
        # it is told (a BT.709 green (20,200,40) comes out (33,229,43)); measured on 14.2 (ComfyUI
        # 0.3.75's floor), 15.1 and 16.0, right from 17.0 (which converts with sws_scale_frame).
        # There, such frames go to limited range first, which the matrix is then honoured for.
        self._limited_first = None
        if _PYAV_YUVJ_IGNORES_MATRIX and info.pixel_format.startswith("yuvj") and info.matrix != "bt601":
            self._limited_first = {"format": info.pixel_format.replace("yuvj", "yuv"),
                                   "src_color_range": "JPEG", "dst_color_range": "MPEG"}
            self._convert["src_color_range"] = "MPEG"

    def _next(self):
        try:
            frame = next(self._frames, None)
        except self._error as error:
            why = str(error.strerror or error)
            if not self._decoded:  # not one frame: this build cannot decode the codec (AV1 without dav1d...)
                raise VideoDecodeError(_undecodable(self._path, self._info.codec, why)) from None
            raise VideoDecodeError(
                f"{self._path} is damaged: FFmpeg stopped decoding its {self._info.codec} video after "
                f"{self._decoded} frames ({why}). Download it again (delete the saved copy first)."
            ) from None
        self._decoded += 1
        return frame

    def grab(self) -> bool:
        return self._next() is not None

    def read(self, _buffer: np.ndarray | None = None) -> tuple[bool, np.ndarray | None]:
        frame = self._next()
        if frame is None:
            return False, None
        if self._limited_first is not None:
            frame = frame.reformat(**self._limited_first)
        return True, frame.to_ndarray(**self._convert)

    def close(self) -> None:
        self._container.close()


_SWS_MATRIX = {"bt601": "ITU601", "bt709": "ITU709", "bt2020": "BT2020"}
_PYAV_YUVJ_IGNORES_MATRIX = tuple(int(part) for part in av.__version__.split(".")[:2] if part.isdigit()) < (17, 0)


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


def _run_pipeline(paths: list[Path], infos: list[VideoInfo], output: _FrameBuffer, frame_load_cap: int,
                  skip_first_frames: int, select_every_nth: int,
                  on_progress: Callable[[int, int], None] | None, frames_expected: int) -> list[int]:
    """Decode in a worker thread into a ring of uint8 frames; convert them here as they come."""
    ring = _Ring(_RING_FRAMES)
    counts: list[int] = []

    def decode_all() -> None:
        try:
            for path, info in zip(paths, infos, strict=True):
                counts.append(_decode_one(path, info, frame_load_cap, skip_first_frames, select_every_nth, ring))
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
            frame, bgr, turns = item
            output.append(frame, bgr, turns)
            ring.give_back(frame if bgr else None)
            if on_progress is not None:
                on_progress(output.count, max(frames_expected, output.count))
    finally:
        ring.stop()
        decoder.join()
    return counts


def _decode_one(path: Path, info: VideoInfo, frame_load_cap: int, skip_first_frames: int,
                select_every_nth: int, ring: _Ring) -> int:
    source = _OpenCVSource.open(path, info) if info.decoder == "opencv" else None
    try:
        kept, seen, ended = _read_frames(path, info, source or _PyAVSource(path, info), frame_load_cap,
                                         skip_first_frames, select_every_nth, ring)
    except _OpenCVDecodedNothing:
        log.info("OpenCV decoded no frame of %s; decoding it with PyAV", path.name)
        kept, seen, ended = _read_frames(path, info, _PyAVSource(path, info), frame_load_cap,
                                         skip_first_frames, select_every_nth, ring)
    if ended and info.exact_count and seen < info.frame_count:
        raise VideoDecodeError(
            f"{path} ended after {seen} of the {info.frame_count} frames its index lists ({info.codec or 'video'}): "
            "the file is damaged or incomplete. Download it again (delete the saved copy first)."
        )
    return kept


class _OpenCVDecodedNothing(Exception):
    pass


def _read_frames(path: Path, info: VideoInfo, source, frame_load_cap: int, skip_first_frames: int,
                 select_every_nth: int, ring: _Ring) -> tuple[int, int, bool]:
    """(frames kept, frames decoded, whether the stream ended) for one file, closing `source`."""
    coded = (info.width, info.height) if info.quarter_turns % 2 else (info.height, info.width)
    bgr, turns = source.bgr, info.quarter_turns
    buffer, holding = None, False  # a ring slot taken: a uint8 buffer for OpenCV (None at first)
    kept = seen = 0
    try:
        for _ in range(skip_first_frames):
            ring.check()
            if not source.grab():  # decoded (later frames depend on it), never converted
                break
            seen += 1
        else:
            position = 0
            while not frame_load_cap or kept < frame_load_cap:
                if position % select_every_nth:
                    ring.check()
                    if not source.grab():
                        break
                else:
                    if not holding:  # at most a ring's worth of frames in flight
                        buffer, holding = ring.take(), True
                    ok, frame = source.read(buffer if bgr else None)
                    if not ok:
                        break
                    if frame.shape[:2] != coded:
                        raise VideoDecodeError(
                            f"{path} changes size mid-stream (frame {seen} is {frame.shape[1]}×"
                            f"{frame.shape[0]}, expected {coded[1]}×{coded[0]}); re-encode it at one size."
                        )
                    ring.ready.put((frame, bgr, turns))
                    buffer, holding = None, False
                    kept += 1
                seen += 1
                position += 1
            else:
                return kept, seen, False
        if seen == 0 and bgr:
            raise _OpenCVDecodedNothing
        return kept, seen, True
    finally:
        if holding:
            ring.give_back(buffer)
        source.close()
