"""The plain way to read a video, which the tests compare everything else against."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def read_rgb_frames(path: Path | str) -> list[np.ndarray]:
    """Every frame as RGB uint8 [H, W, 3], decoded with OpenCV one by one."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    assert frames, f"no frames decoded from {path}"
    return frames


def write_clip(path: Path, frames: int = 3) -> Path:
    """A real (tiny) MP4 made by OpenCV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 8, (32, 32))
    for index in range(frames):
        writer.write(np.full((32, 32, 3), index * 40, np.uint8))
    writer.release()
    return path
