"""What the benchmarks share: their input videos, peak-memory accounting, Markdown tables."""
from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("MAGI1_CACHE", Path.home() / ".cache" / "comfyui-magi1")) / "bench"
COMFYUI = Path(os.environ.get("MAGI1_COMFYUI", CACHE.parent / "ComfyUI-0.3.75"))

WIDTH, HEIGHT, FPS = 1280, 720, 24
# Bump when the recipe below changes, so cached inputs are rebuilt.
_RECIPE = 1


def textured_frame(index: int = 0, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """An RGB uint8 frame with photo-like texture that moves (rotates, zooms, pans) with `index`."""
    return _moved(_texture(width, height), index, width, height)


def smooth_render(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """An RGB uint8 frame like a clean render: gradients, soft texture, flat shapes, no grain."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    gradient = np.stack([x / width * 180 + 30, y / height * 160 + 40, (x + y) / (width + height) * 120 + 60], -1)
    soft = cv2.GaussianBlur(rng.standard_normal((height // 4, width // 4, 3)).astype(np.float32), (0, 0), 1.5)
    soft = cv2.resize(soft, (width, height), interpolation=cv2.INTER_CUBIC)
    frame = np.clip(gradient + soft / soft.std() * 25, 0, 255).astype(np.uint8)
    cv2.circle(frame, (width * 5 // 16, height * 5 // 12), height // 5, (200, 40, 40), -1)
    cv2.rectangle(frame, (width * 5 // 8, height // 7), (width * 55 // 64, height * 25 // 36), (30, 160, 60), -1)
    return frame


def _texture(width: int, height: int) -> np.ndarray:
    # Fine grain (noise blurred to ~1.5 px): compresses and decodes like detailed real footage.
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(0, 256, (height * 2, width * 2, 3), dtype=np.uint8), (0, 0), 1.5)


def _moved(base: np.ndarray, index: int, width: int, height: int) -> np.ndarray:
    matrix = cv2.getRotationMatrix2D((width, height), index * 0.3, 1.0 + 0.002 * index)
    matrix[:, 2] -= (width / 2 - 3 * index, height / 2)
    frame = cv2.warpAffine(base, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
    centre = (int(width / 2 + 400 * np.sin(index / 10)), int(height / 2 + 200 * np.cos(index / 13)))
    cv2.circle(frame, centre, 80, (255, 64, 0), -1)
    return frame


def encoder() -> str:
    """'libx264' through PyAV when the venv's av has it (H.264, like the service), else OpenCV's 'mp4v'."""
    try:
        import av

        if "libx264" in av.codecs_available:
            return "libx264"
    except ImportError:
        pass
    return "mp4v"


def input_video(frames: int, *, bt709: bool = False) -> Path:
    """A 1280×720 24 fps MP4 of `frames` textured, moving frames, built once and cached.

    `bt709`: converted with the BT.709 matrix and tagged so (limited range), as HD cameras and
    many encoders write it; otherwise untagged BT.601 (FFmpeg's default), like the service's MP4s.
    """
    codec = encoder()
    if bt709 and codec != "libx264":
        raise RuntimeError("a BT.709-tagged input needs PyAV with libx264")
    colour = "_bt709" if bt709 else ""
    path = CACHE / f"input_{WIDTH}x{HEIGHT}_{FPS}fps_{frames}f_{codec}{colour}_r{_RECIPE}.mp4"
    if path.is_file():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.mp4")
    base = _texture(WIDTH, HEIGHT)
    if codec == "libx264":
        import av

        with av.open(str(partial), "w") as container:
            stream = container.add_stream("libx264", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
            stream.options = {"crf": "18", "preset": "veryfast"}
            if bt709:
                context = stream.codec_context
                context.colorspace = context.color_primaries = context.color_trc = 1  # BT.709
                context.color_range = 1  # limited ("tv")
            for index in range(frames):
                frame = av.VideoFrame.from_ndarray(_moved(base, index, WIDTH, HEIGHT), format="rgb24")
                if bt709:
                    frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    else:
        writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
        for index in range(frames):
            writer.write(cv2.cvtColor(_moved(base, index, WIDTH, HEIGHT), cv2.COLOR_RGB2BGR))
        writer.release()
    partial.rename(path)
    return path


def describe(path: Path) -> str:
    capture = cv2.VideoCapture(str(path))
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    mbit_s = path.stat().st_size * 8 / (frames / fps) / 1e6
    return f"{path.name}: {frames} frames, {path.stat().st_size / 1e6:.1f} MB, {mbit_s:.1f} Mbit/s"


# --- memory ---------------------------------------------------------------------------------------
def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def reset_peak() -> int:
    """Reset the process's peak RSS to the current RSS (Linux `clear_refs` 5); returns that RSS."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    return _status("VmRSS")


def cpu_seconds() -> tuple[float, float]:
    """(user + kernel, kernel) CPU seconds of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_stime


def peak_since(rss_before: int) -> int:
    return _status("VmHWM") - rss_before


# --- running cases ------------------------------------------------------------------------------------
def run_child(args: list[str], env: dict[str, str] | None = None) -> str:
    """Run `python <args>` in a fresh process (clean memory peak) and return its last stdout line."""
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


def median(values: list[float]) -> float:
    return statistics.median(values)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
