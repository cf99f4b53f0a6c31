"""Upload PNG: compression settings against encode time + transfer time, on 1280×720 frames.

    $PY bench/bench_png.py [--repeats 9] [--link 50]

Two frames: a smooth render (gradients, soft texture, flat shapes: like most generated first
frames) and a fine texture (grain everywhere: the hard case). Rows:
- "zlib L": what `cv2.imencode` does when given only a level (zlib's default strategy);
- "pack L": `magi1.media.encode_png(image, L)` (the pack's path: clamp, round, RGB→BGR, Z_RLE
  strategy, Paeth filter).
Total = encode time + size / link speed (upload only; the request overhead is the same for all).
The level picked is the pack's level with the least total over both frames at `--link` Mbit/s.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

sys.path.insert(0, str(common.REPO))
from magi1 import media

LINKS_MBIT = (10, 50, 200)
PACK_LEVELS = (0, 1, 3, 9)


def timed(encode, repeats: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        size = len(encode())
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), size


def measure(image: np.ndarray, repeats: int) -> dict[str, tuple[float, int]]:
    """{row: (encode ms, bytes)} for one float RGB image."""
    rows = {}
    for level in range(10):
        # The pack's own clamp/round/BGR steps are timed here too, so the rows compare fairly.
        rows[f"zlib {level}"] = timed(lambda level=level: cv2.imencode(
            ".png", cv2.cvtColor(media.to_uint8(image), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, level])[1],
            repeats)
    for level in PACK_LEVELS:
        rows[f"pack {level}"] = timed(lambda level=level: media.encode_png(image, level), repeats)
        decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(media.encode_png(image, level), np.uint8),
                                            cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert np.array_equal(decoded, media.to_uint8(image)), "the pack's PNG must be lossless"
    return rows


def total_ms(measured: tuple[float, int], mbit: float) -> float:
    ms, size = measured
    return ms + size * 8 / (mbit * 1e6) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--link", type=float, default=50, help="link speed (Mbit/s up) that picks the level")
    args = parser.parse_args()

    frames = {"smooth render": common.smooth_render(), "fine texture": common.textured_frame(0)}
    links = sorted({*LINKS_MBIT, args.link})
    results = {name: measure(frame.astype(np.float32) / 255, args.repeats) for name, frame in frames.items()}

    def pack_total(level: int, mbit: float) -> float:
        return sum(total_ms(rows[f"pack {level}"], mbit) for rows in results.values())

    def best_level(mbit: float) -> int:
        # Z_RLE makes levels 1…9 byte-identical: ties (within 2%, timing noise) go to the lowest.
        fastest = min(pack_total(level, mbit) for level in PACK_LEVELS)
        return min(level for level in PACK_LEVELS if pack_total(level, mbit) <= fastest * 1.02)

    best = best_level(args.link)
    print(f"1280×720 RGB frames (raw 2.76 MB); median of {args.repeats} encodes; totals = encode + upload\n")
    header = ["settings", *(f"{name}: ms / MB" for name in frames),
              *(f"both: total ms @ {mbit:g} Mbit/s" for mbit in links)]
    rows = []
    for row in results["smooth render"]:
        label = row
        if row == f"pack {media.DEFAULT_PNG_LEVEL}":
            label += " (default)"
        if row == f"pack {best}":
            label += f" ← best pack level at {args.link:g} Mbit/s"
        cells = [f"{results[name][row][0]:.0f} / {results[name][row][1] / 1e6:.3f}" for name in frames]
        totals = [f"{sum(total_ms(results[name][row], mbit) for name in frames):.0f}" for mbit in links]
        rows.append([label, *cells, *totals])
    print(common.markdown_table(header, rows))
    print()
    for mbit in links:
        zlib_best = min((row for row in results["smooth render"] if row.startswith("zlib")),
                        key=lambda row: sum(total_ms(results[n][row], mbit) for n in frames))
        print(f"- at {mbit:g} Mbit/s: best pack level {best_level(mbit)} "
              f"({pack_total(best_level(mbit), mbit):.0f} ms for both frames); best level with zlib's default "
              f"strategy: {zlib_best} ({sum(total_ms(results[n][zlib_best], mbit) for n in frames):.0f} ms)")


if __name__ == "__main__":
    main()
