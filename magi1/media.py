"""IMAGE array → lossless PNG bytes for the upload, after checking the service would take it.

Arrays are numpy (the node converts the IMAGE tensor with `.numpy()`): float RGB in 0…1,
`[B,H,W,3]` or `[H,W,3]`. float → uint8 is `floor(clip(x, 0, 1) * 255 + 0.5)` (clamped, rounded
half up), the convention the emulator and the tests share, so the uploaded PNG is pixel-exact to
the IMAGE given.
"""
from __future__ import annotations

import cv2
import numpy as np

from .errors import InputError

MIN_SIDE = 64
MAX_SIDE = 4096

# How the upload PNG is compressed. What the user waits for is encode time + upload time. On
# 1280×720 frames (bench/bench_png.py on this 2-core machine; totals at 50 Mbit/s up):
#   zlib's default strategy, level 1 / 3 / 9, smooth render: 0.95 / 0.88 / 0.80 MB in
#       54 / 81 / 635 ms → 206 / 221 / 762 ms in all; fine texture: 1.61–1.54 MB → 326–420 ms.
#   Z_RLE strategy + Paeth filter (used here): smooth render 0.78 MB in 38 ms → 162 ms; fine
#       texture 1.39 MB in 44 ms → 267 ms. Smaller than level 9, faster than level 1.
#   Stored (level 0): 2.77 MB in 15 ms → 458 ms.
# Rendered and photographic frames leave noise-like filter residuals that LZ77's long matches do
# not help with; run lengths plus Huffman coding take what there is. Both frames together: 1.8 s /
# 0.43 s / 0.17 s at 10 / 50 / 200 Mbit/s, against 2.1 s / 0.53 s / 0.23 s for the best zlib
# level at each speed. Z_RLE makes levels 1…9 byte-identical, so the default is the cheapest, 1.
DEFAULT_PNG_LEVEL = 1
# IMWRITE_PNG_FILTER is OpenCV ≥ 4.11; without it libpng's adaptive filters pick Paeth here anyway.
_PNG_PARAMS = [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
if hasattr(cv2, "IMWRITE_PNG_FILTER"):
    _PNG_PARAMS += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_PAETH]


def validate_first_frames(images: np.ndarray) -> None:
    """Refuse, with a message saying what to do, an IMAGE the service could not use as first frames."""
    shape = tuple(images.shape)
    if images.ndim not in (3, 4):
        raise InputError(
            f"The image input has shape {list(shape)}; expected an IMAGE batch [B, H, W, 3] or a single "
            "[H, W, 3] image. Connect an IMAGE output (e.g. Load Image) to it."
        )
    if images.ndim == 4 and shape[0] < 1:
        raise InputError("The image batch is empty: connect at least one image, or disconnect the input "
                         "to generate from the prompt alone.")
    channels = shape[-1]
    if channels == 4:
        raise InputError(
            "The image has an alpha channel (RGBA); MAGI-1 takes RGB. Drop the alpha first, e.g. with "
            "ComfyUI's 'Split Image with Alpha' node (use its IMAGE output), or load the image without its mask."
        )
    if channels != 3:
        raise InputError(
            f"The image has {channels} channel(s); MAGI-1 takes RGB images [B, H, W, 3]. "
            "Convert it to RGB before this node."
        )
    if not np.issubdtype(images.dtype, np.floating):
        raise InputError(f"The image is {images.dtype}, not a float IMAGE in 0…1. Connect a ComfyUI IMAGE output.")
    height, width = shape[-3], shape[-2]
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise InputError(
            f"The image is {width}×{height} px; each side must be {MIN_SIDE}…{MAX_SIDE} px. "
            "Resize it first (e.g. with 'Upscale Image' to 1280×720 for 720p, 854×480 for 480p)."
        )
    if np.isnan(images).any():
        raise InputError(
            "The image contains NaN (not-a-number) pixels, so it cannot be encoded. The node that made it "
            "produced invalid values: check its inputs, or run it again."
        )


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float RGB (any shape) → uint8: clamp to 0…1, scale by 255, round half up."""
    # Computed in the input's own precision (float32 for an IMAGE), exactly as the expression
    # `(np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)` would, but with one temporary array.
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.float16 or not np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float32)
    scaled = np.clip(image, 0, 1)
    scaled *= 255
    scaled += 0.5
    return scaled.astype(np.uint8)


def encode_png(image: np.ndarray, level: int = DEFAULT_PNG_LEVEL) -> bytes:
    """One [H, W, 3] RGB image (float in 0…1, or already uint8) → lossless PNG bytes."""
    if not 0 <= level <= 9:
        raise ValueError(f"PNG compression level must be 0…9, not {level}")
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"encode_png takes one [H, W, 3] RGB image, not shape {list(image.shape)}")
    pixels = to_uint8(image)
    params = [cv2.IMWRITE_PNG_COMPRESSION, level, *_PNG_PARAMS]
    ok, png = cv2.imencode(".png", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError("OpenCV could not encode the image as PNG")
    return png.tobytes()
