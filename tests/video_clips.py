"""Generated test clips whose true pixels are known, and the reference decode to compare with.

Every frame is drawn in RGB: a mid-grey ground, eight colour patches of known values
(`PATCHES`, at `patch_centres`), an orientation marker (a white bar along the top edge and a
white square in the top-left corner: only the upright frame has both there) and the frame's
index as eight black/white blocks along the bottom. Clips are encoded with PyAV (FFmpeg), whose
converter is told the colour matrix and range the stream is tagged with, so a right decode
gives the drawn values back within the codec's loss.

`reference_rgb` is what a player shows: PyAV decoding to rgb24 with the matrix and range the
stream is tagged with (FFmpeg's default, BT.601 limited, when untagged), rotated by the
display matrix as FFmpeg's autorotation does.
"""
from __future__ import annotations

import fractions
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

PATCHES: list[tuple[int, int, int]] = [
    (20, 200, 40), (200, 30, 40), (30, 40, 210), (230, 220, 40),
    (40, 210, 220), (220, 40, 200), (235, 235, 235), (24, 24, 24),
]
GROUND = (128, 128, 128)

# av colour tags (FFmpeg's AVColorSpace / AVColorRange numbers)
SPC_BT709, SPC_UNSPECIFIED, SPC_BT470BG, SPC_SMPTE170M = 1, 2, 5, 6
RANGE_UNSPECIFIED, RANGE_TV, RANGE_PC = 0, 1, 2


def encoder_available(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
        return True
    except (av.codec.codec.UnknownCodecError, ValueError):
        return False


def _grid(width: int, height: int) -> tuple[int, int, int, int]:
    """Patch size and top-left of the 4×2 patch grid (even coordinates, for 4:2:0 chroma)."""
    pw = max(4, (width // 6) // 2 * 2)
    ph = max(4, (height // 5) // 2 * 2)
    x0 = ((width - 4 * pw) // 2) // 2 * 2
    y0 = ((height - 2 * ph) // 2) // 2 * 2
    return pw, ph, x0, y0


def patch_centres(width: int, height: int) -> list[tuple[int, int]]:
    """(row, column) of each patch's centre in the upright frame, in `PATCHES` order."""
    pw, ph, x0, y0 = _grid(width, height)
    return [(y0 + (i // 4) * ph + ph // 2, x0 + (i % 4) * pw + pw // 2) for i in range(8)]


def draw(index: int, width: int, height: int) -> np.ndarray:
    """The upright RGB uint8 frame `index`, [height, width, 3]."""
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = GROUND
    pw, ph, x0, y0 = _grid(width, height)
    for i, colour in enumerate(PATCHES):
        y, x = y0 + (i // 4) * ph, x0 + (i % 4) * pw
        frame[y:y + ph, x:x + pw] = colour
    edge = max(2, min(width, height) // 10) // 2 * 2
    frame[:edge // 2, :] = 255           # bar along the top
    frame[:edge, :edge] = 255             # square in the top-left corner
    block = max(2, width // 8)
    for bit in range(8):
        value = 255 if (index >> bit) & 1 else 0
        frame[height - edge:, bit * block:(bit + 1) * block] = value
    return frame


@dataclass
class Clip:
    """How to make one clip; `make` writes it and returns its path."""

    name: str
    container: str = "mp4"
    codec: str = "libx264"
    pix_fmt: str = "yuv420p"
    width: int = 96
    height: int = 64
    frames: int = 12
    rate: fractions.Fraction = fractions.Fraction(24)
    colorspace: int = SPC_UNSPECIFIED
    color_range: int = RANGE_UNSPECIFIED
    rotation: int = 0
    audio_seconds: float = 0.0
    audio_first: bool = False
    vfr_pts_ms: Sequence[int] | None = None
    options: dict[str, str] = field(default_factory=dict)
    container_options: dict[str, str] = field(default_factory=dict)
    suffix: str = ".mp4"

    def make(self, folder: Path) -> Path:
        path = folder / (self.name + self.suffix)
        if not path.exists():
            _encode(self, path)
        return path


def _conversion(clip: Clip) -> tuple[str, str]:
    matrix = "ITU709" if clip.colorspace == SPC_BT709 else "ITU601"
    return matrix, ("JPEG" if clip.color_range == RANGE_PC else "MPEG")


def _encode(clip: Clip, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with av.open(str(tmp), "w", format=clip.container, options=clip.container_options) as out:
        audio = None
        if clip.audio_seconds and clip.audio_first:
            audio = out.add_stream("aac", rate=8000, layout="mono")
        stream = out.add_stream(clip.codec, rate=clip.rate, options=clip.options)
        # width × height is the size shown; a phone stores it turned, and tags the turn back
        turns = _quarter_turns(clip.rotation)
        coded = (clip.height, clip.width) if turns % 2 else (clip.width, clip.height)
        stream.width, stream.height, stream.pix_fmt = *coded, clip.pix_fmt
        if clip.colorspace != SPC_UNSPECIFIED:
            stream.codec_context.colorspace = clip.colorspace
            stream.codec_context.color_primaries = clip.colorspace if clip.colorspace == SPC_BT709 else 5
            stream.codec_context.color_trc = clip.colorspace if clip.colorspace == SPC_BT709 else 6
        if clip.color_range != RANGE_UNSPECIFIED:
            stream.codec_context.color_range = clip.color_range
        if clip.vfr_pts_ms is not None:
            stream.codec_context.time_base = fractions.Fraction(1, 1000)
        if clip.rotation:
            stream.set_display_rotation(clip.rotation)
        if clip.audio_seconds and not clip.audio_first:
            audio = out.add_stream("aac", rate=8000, layout="mono")
        matrix, rng = _conversion(clip)
        alpha = "a" in clip.pix_fmt.replace("gray", "")
        for index in range(clip.frames):
            rgb = np.ascontiguousarray(np.rot90(draw(index, clip.width, clip.height), k=-turns))
            if alpha:
                rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255 - 10 * (index % 8), np.uint8)])
                frame = av.VideoFrame.from_ndarray(rgba, format="rgba")
            else:
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if not clip.pix_fmt.startswith(("rgb", "bgr", "argb", "gbr")):
                frame = frame.reformat(format=clip.pix_fmt, dst_colorspace=matrix, dst_color_range=rng)
            else:
                frame = frame.reformat(format=clip.pix_fmt)
            if clip.vfr_pts_ms is not None:
                frame.pts = clip.vfr_pts_ms[index]
                frame.time_base = fractions.Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if audio is not None:
            samples = int(clip.audio_seconds * 8000)
            t = np.arange(samples, dtype=np.float32) / 8000
            tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for start in range(0, samples, 8000):
                chunk = tone[start:start + 8000][None, :]
                aframe = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                aframe.sample_rate = 8000
                aframe.pts = start
                for packet in audio.encode(aframe):
                    out.mux(packet)
            for packet in audio.encode():
                out.mux(packet)
    tmp.rename(path)


# --- the reference decode ----------------------------------------------------------------------------
_SPC_BT601 = {SPC_BT470BG, SPC_SMPTE170M, SPC_UNSPECIFIED, 0}


def reference_rgb(path: Path | str) -> np.ndarray:
    """Every frame as a player shows it: uint8 RGB [N, H, W, 3], decoded by the installed PyAV.

    PyAV < 17 converts the JPEG-range formats (yuvj420p) with the BT.601 matrix whatever it is
    told; there such BT.709 frames are taken to limited range first, which it converts right.
    (Sharp chroma edges come out differently from one FFmpeg's swscale to another, so the
    reference is always the installed PyAV's, never a stored one.)
    """
    old_pyav = tuple(int(p) for p in av.__version__.split(".")[:2]) < (17, 0)
    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            matrix = "ITU709" if frame.colorspace == SPC_BT709 else "ITU601"
            full = frame.color_range == RANGE_PC or frame.format.name.startswith("yuvj")
            rotation = getattr(frame, "rotation", 0)
            if old_pyav and full and matrix == "ITU709" and frame.format.name.startswith("yuvj"):
                frame = frame.reformat(format=frame.format.name.replace("yuvj", "yuv"), src_color_range="JPEG",
                                       dst_color_range="MPEG")
                full = False
            rgb = frame.to_ndarray(format="rgb24", src_colorspace=matrix,
                                   src_color_range="JPEG" if full else "MPEG", dst_color_range="JPEG")
            frames.append(np.rot90(rgb, k=_quarter_turns(rotation)))
    return np.ascontiguousarray(np.stack(frames))


def _quarter_turns(rotation: float) -> int:
    """Counter-clockwise quarter turns that show a frame upright (FFmpeg's autorotate)."""
    return int(round(rotation / 90)) % 4
