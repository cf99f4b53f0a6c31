"""A side environment holding the lowest OpenCV the pack allows (and ComfyUI's lowest PyAV).

    python tools/opencv_floor.py          # builds it if needed, prints the directory to put first on PYTHONPATH

requirements.txt allows `opencv-python>=4.8`, and users have every release from there on (other
packs pin their own). The decoder must be right on all of them, so the tests run it under the
newest (the venv's) and under this one. The directory is made with
`pip install --target`, cached in `$MAGI1_CACHE` (default ~/.cache/comfyui-magi1), and holds:
- `opencv-python-headless==4.8.1.78`: the same FFmpeg-based video reader as `opencv-python`
  4.8.1.78, without the GUI libraries (libGL) that a server or CI image may lack;
- `numpy<2`: OpenCV 4.8 was built against numpy 1.x's C API and fails to import under numpy 2
  ("A module that was compiled using NumPy 1.x cannot be run in NumPy 2");
- `av==14.2.0`, the lowest PyAV ComfyUI 0.3.75 allows (PyAV < 17 converts colour differently,
  see `_PyAVSource` in magi1/video.py).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

OPENCV_FLOOR = "4.8.1.78"
# ComfyUI 0.3.75 requires av>=14.2.0: the decoder's PyAV path is tested on that floor too.
PYAV_FLOOR = "14.2.0"
PACKAGES = [f"opencv-python-headless=={OPENCV_FLOOR}", "numpy<2", f"av=={PYAV_FLOOR}"]
CACHE = Path(os.environ.get("MAGI1_CACHE", Path.home() / ".cache" / "comfyui-magi1"))
# Bump when PACKAGES change, so a stale directory is rebuilt.
_RECIPE = 2


def directory() -> Path:
    return CACHE / f"opencv-floor-{OPENCV_FLOOR}-r{_RECIPE}"


def ensure(python: str = sys.executable) -> Path:
    """The side environment's directory, built with `python -m pip install --target` if missing."""
    target = directory()
    if (target / ".complete").is_file():
        return target
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--no-warn-conflicts", "--target", str(partial), *PACKAGES], check=True)
    (partial / ".complete").write_text(" ".join(PACKAGES) + "\n")
    try:
        partial.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(partial, ignore_errors=True)
        if not (target / ".complete").is_file():
            raise
    return target


if __name__ == "__main__":
    print(ensure())
