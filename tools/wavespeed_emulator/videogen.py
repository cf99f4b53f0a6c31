"""Stand-in MAGI-1 videos: a real MP4 whose first frame is the caller's image.

Codec. H.264 (yuv420p), as the real service sends and as browsers play, written with PyAV's
libx264 when PyAV is installed (it is wherever ComfyUI is: ComfyUI requires `av`). Without PyAV
the writer falls back to OpenCV: `avc1` if this build can encode it, else MPEG-4 Part 2 (`mp4v`).
The opencv-python 5.0.0 wheel has no usable H.264 encoder (its FFmpeg only offers `h264_v4l2m2m`,
which needs a hardware device), and browsers do not play `mp4v`, so OpenCV, PyAV and FFmpeg can
decode such a file but a video preview in ComfyUI cannot. The FFmpeg backend refuses
`VIDEOWRITER_PROP_QUALITY`, so the encoder's own defaults are the best quality on offer; the first
frame is an intra frame and decodes within a mean absolute difference of about 2.5 (of 255) of the
cover-cropped image, mostly chroma subsampling at sharp edges (tests/test_emulator.py measures it).

Frames are RGB uint8 `[H, W, 3]` everywhere in this module and turned into BGR only when written,
because a PNG decoded by OpenCV is BGR and a colour swap is the classic bug here.

Determinism: the same seed, prompt, size, frame count and first frame give identical frames.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

logger = logging.getLogger(__name__)

# (width, height) per resolution and aspect ratio, as the real service renders them.
FRAME_SIZES: dict[str, dict[str, tuple[int, int]]] = {
    "720p": {"16:9": (1280, 720), "9:16": (720, 1280), "1:1": (720, 720)},
    "480p": {"16:9": (848, 480), "9:16": (480, 848), "1:1": (480, 480)},
}
RESOLUTIONS = tuple(FRAME_SIZES)
ASPECT_RATIOS = ("auto", "16:9", "9:16", "1:1")

# How far the camera drifts over a whole clip: visible, but slow enough to look like a shot.
ZOOM_OVER_CLIP = 0.12
PAN_OVER_CLIP = 0.05  # of the frame's width/height

_CODEC_PREFERENCE = ("avc1", "mp4v")


class VideoGenerationError(RuntimeError):
    """The stand-in video could not be produced (bad image bytes, writer failure, aborted)."""


@dataclass(frozen=True)
class VideoSpec:
    """Everything a stand-in video depends on."""

    width: int
    height: int
    num_frames: int
    fps: int
    seed: int
    prompt: str


# --- sizes and first frames ---------------------------------------------------------------------
def frame_size(
    resolution: str, aspect_ratio: str, image_shape: tuple[int, ...] | None = None
) -> tuple[int, int]:
    """(width, height) for a request; `auto` picks the aspect closest to the image's, else 16:9."""
    sizes = FRAME_SIZES[resolution]
    if aspect_ratio != "auto":
        return sizes[aspect_ratio]
    if image_shape is None:
        return sizes["16:9"]
    image_aspect = image_shape[1] / image_shape[0]
    # Compare in log space so 2:1 and 1:2 are equally far from 1:1.
    return min(sizes.values(), key=lambda wh: abs(math.log(wh[0] / wh[1]) - math.log(image_aspect)))


def decode_image(image_bytes: bytes) -> np.ndarray:
    """PNG/JPEG/WebP bytes → RGB uint8 `[H, W, 3]` (alpha dropped, 16-bit reduced to 8-bit)."""
    buffer = np.frombuffer(image_bytes, dtype=np.uint8)
    bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
    if bgr is None:
        raise VideoGenerationError("the image could not be decoded (not a PNG, JPEG or WebP file?)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def cover_crop(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize to cover `width`×`height` (cv2.INTER_AREA), then crop the centre."""
    src_h, src_w = image.shape[:2]
    if (src_w, src_h) == (width, height):
        return image.copy()
    scale = max(width / src_w, height / src_h)
    scaled_w = max(width, round(src_w * scale))
    scaled_h = max(height, round(src_h * scale))
    scaled = cv2.resize(image, (scaled_w, scaled_h), interpolation=cv2.INTER_AREA)
    left = (scaled_w - width) // 2
    top = (scaled_h - height) // 2
    return np.ascontiguousarray(scaled[top : top + height, left : left + width])


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def title_card(spec: VideoSpec) -> np.ndarray:
    """A deterministic seed- and prompt-dependent first frame for text-to-video requests."""
    rng = _rng("title", spec.seed, spec.prompt)
    w, h = spec.width, spec.height
    top_left, bottom_right = rng.integers(30, 226, size=(2, 3)).astype(np.float32)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    t = ((xs / max(w - 1, 1)) + (ys / max(h - 1, 1))) / 2.0
    frame = (top_left * (1.0 - t[..., None]) + bottom_right * t[..., None]).astype(np.uint8)
    unit = min(w, h)
    for _ in range(int(rng.integers(3, 7))):
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        size = int(rng.integers(unit // 12, unit // 4))
        if rng.random() < 0.5:
            cv2.circle(frame, centre, size, colour, -1, cv2.LINE_AA)
        else:
            cv2.rectangle(frame, centre, (centre[0] + size, centre[1] + size // 2), colour, -1, cv2.LINE_AA)
    _draw_caption(frame, spec)
    return frame


def _draw_caption(frame: np.ndarray, spec: VideoSpec) -> None:
    h, w = frame.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = max(0.5, min(w, h) / 600.0)
    thickness = max(1, round(scale * 2))
    line_height = int(cv2.getTextSize("Ag", font, scale, thickness)[0][1] * 1.8)
    lines = wrap_text(spec.prompt.strip(), font, scale, thickness, w - 2 * line_height)[:6]
    lines.append(f"MAGI-1 emulator  seed {spec.seed}")
    y = h - line_height * len(lines)
    for line in lines:
        origin = (line_height, y)
        cv2.putText(frame, line, origin, font, scale, (0, 0, 0), thickness + 3, cv2.LINE_AA)
        cv2.putText(frame, line, origin, font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
        y += line_height


def wrap_text(text: str, font: int, scale: float, thickness: int, max_width: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if current and cv2.getTextSize(candidate, font, scale, thickness)[0][0] > max_width:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


# --- motion -------------------------------------------------------------------------------------
def render_frames(first_frame: np.ndarray, spec: VideoSpec) -> Iterator[np.ndarray]:
    """Frame 0 is `first_frame` untouched; later frames zoom and pan slowly, with a marker crossing."""
    rng = _rng("motion", spec.seed)
    angle = float(rng.uniform(0.0, 2.0 * math.pi))
    marker_colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
    marker_row = float(rng.uniform(0.2, 0.8))
    h, w = first_frame.shape[:2]
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    radius = max(4, min(w, h) // 30)
    yield first_frame
    last = max(spec.num_frames - 1, 1)
    for index in range(1, spec.num_frames):
        progress = index / last
        zoom = 1.0 + ZOOM_OVER_CLIP * progress
        dx = PAN_OVER_CLIP * w * progress * math.cos(angle)
        dy = PAN_OVER_CLIP * h * progress * math.sin(angle)
        matrix = np.array([[zoom, 0.0, (1.0 - zoom) * cx + dx], [0.0, zoom, (1.0 - zoom) * cy + dy]])
        frame = cv2.warpAffine(
            first_frame, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        marker = (round(progress * (w - 1)), round(marker_row * (h - 1)))
        cv2.circle(frame, marker, radius + 2, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(frame, marker, radius, marker_colour, -1, cv2.LINE_AA)
        yield frame


# --- writing ------------------------------------------------------------------------------------
_codec_lock = threading.Lock()
_codec: str | None = None


def _pyav_h264() -> bool:
    try:
        import av
    except ImportError:
        return False
    return "libx264" in av.codecs_available


def video_codec() -> str:
    """What MP4s are written with: `h264` (PyAV), else OpenCV's `avc1` or `mp4v` (probed once)."""
    global _codec
    with _codec_lock:
        if _codec is None:
            if _pyav_h264():
                _codec = "h264"
            else:
                _codec = next((c for c in _CODEC_PREFERENCE if _can_write(c)), None)
            if _codec is None:
                raise VideoGenerationError("this OpenCV build can write neither H.264 nor MPEG-4 video")
            logger.info("emulator videos are encoded as %s", _codec)
        return _codec


def _can_write(fourcc: str) -> bool:
    with tempfile.TemporaryDirectory(prefix="wavespeed-emulator-probe-") as tmp:
        path = os.path.join(tmp, "probe.mp4")
        with _quiet_native_stderr():
            writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), 24.0, (64, 64))
            opened = writer.isOpened()
            if opened:
                for value in (0, 128):
                    writer.write(np.full((64, 64, 3), value, dtype=np.uint8))
            writer.release()
        if not opened or not os.path.exists(path):
            return False
        capture = cv2.VideoCapture(path)
        try:
            return bool(capture.read()[0])
        finally:
            capture.release()


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence fd 2 while probing: FFmpeg reports a missing encoder there, out of Python's reach."""
    previous_level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        saved = os.dup(2)
    except OSError:
        saved = None
    try:
        if saved is not None:
            with open(os.devnull, "wb") as devnull:
                os.dup2(devnull.fileno(), 2)
        yield
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)
        cv2.utils.logging.setLogLevel(previous_level)


def write_mp4(
    path: str,
    frames: Iterator[np.ndarray],
    spec: VideoSpec,
    should_stop: Callable[[], bool] = lambda: False,
) -> str:
    """Encode RGB frames to `path`; returns the codec used. Raises VideoGenerationError."""
    codec = video_codec()
    if codec == "h264":
        return _write_mp4_pyav(path, frames, spec, should_stop)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*codec), float(spec.fps), (spec.width, spec.height))
    if not writer.isOpened():
        raise VideoGenerationError(f"cv2.VideoWriter could not open {codec} for {spec.width}x{spec.height}")
    try:
        for frame in frames:
            if should_stop():
                raise VideoGenerationError("video generation was aborted")
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        raise VideoGenerationError("cv2.VideoWriter produced no file")
    return codec


# Near-lossless (CRF 16) so the first frame survives; "veryfast" keeps a 720p clip around a second.
# One encoder thread, and the colour conversion done here with OpenCV rather than by FFmpeg's
# threaded swscale: with either left to FFmpeg, the same frames gave different bytes run to run.
X264_OPTIONS = {"crf": "16", "preset": "veryfast", "x264-params": "threads=1:lookahead-threads=1:sliced-threads=0"}


# Two clips encoded at the same time came out slightly different from the same clip encoded
# alone (seen with libx264 in PyAV 18); encoding one clip at a time keeps "same seed, same video".
_encode_lock = threading.Lock()


def _write_mp4_pyav(path: str, frames: Iterator[np.ndarray], spec: VideoSpec,
                    should_stop: Callable[[], bool]) -> str:
    with _encode_lock:
        return _write_mp4_pyav_locked(path, frames, spec, should_stop)


def _write_mp4_pyav_locked(path: str, frames: Iterator[np.ndarray], spec: VideoSpec,
                           should_stop: Callable[[], bool]) -> str:
    from fractions import Fraction

    import av

    try:
        with av.open(path, mode="w", format="mp4") as container:
            rate = Fraction(spec.fps).limit_denominator(1001)
            rate_base = 1 / rate
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height = spec.width, spec.height
            stream.pix_fmt = "yuv420p"
            stream.options = dict(X264_OPTIONS)
            stream.codec_context.thread_type = "NONE"  # PyAV's own default would thread it again
            stream.codec_context.thread_count = 1
            for index, frame in enumerate(frames):
                if should_stop():
                    raise VideoGenerationError("video generation was aborted")
                yuv = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2YUV_I420)
                picture = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
                picture.pts = index  # explicit timestamps: without them the encoder's output varied
                picture.time_base = rate_base
                for packet in stream.encode(picture):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    except av.FFmpegError as exc:
        raise VideoGenerationError(f"PyAV could not write H.264: {exc}") from exc
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        raise VideoGenerationError("PyAV produced no file")
    return "h264"


def generate_video(
    path: str,
    spec: VideoSpec,
    image: np.ndarray | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> str:
    """Write the stand-in video for `spec` (image: RGB uint8, any size) to `path`; returns the fourcc."""
    first_frame = cover_crop(image, spec.width, spec.height) if image is not None else title_card(spec)
    return write_mp4(path, render_frames(first_frame, spec), spec, should_stop)
