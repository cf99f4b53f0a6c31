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
