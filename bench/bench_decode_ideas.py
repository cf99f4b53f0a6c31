"""The ideas tried on the way to magi1.video.decode, each measured against the raw read loop.

    $PY bench/bench_decode_ideas.py [--frames 480] [--rounds 3]

Each variant is a small self-contained loader below (a step from the naive one towards the
pack's), run in a fresh process, in turn with the others, medians shown. This is how the
choices in magi1/video.py were made; rerun it after changing that file or on another machine.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

sys.path.insert(0, str(common.REPO))

SCALE = np.float32(1 / 255)
TABLE = np.arange(256, dtype=np.float32) / np.float32(255)


def _empty(count: int, height: int, width: int, huge_pages: bool) -> np.ndarray:
    out = np.empty((count + 8, height, width, 3), np.float32)
    if not huge_pages:  # as magi1.video does; numpy's default is to ask for huge pages
        _madvise(out, 15)  # MADV_NOHUGEPAGE, before any page exists
    return out


def _output(capture: cv2.VideoCapture, huge_pages: bool) -> np.ndarray:
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    return _empty(count, height, width, huge_pages)


def _madvise(out: np.ndarray, advice: int, length: int | None = None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    start = out.ctypes.data - out.ctypes.data % 4096
    libc.madvise(start, length or out.nbytes, advice)


def _single_loop(path: str, convert, reuse: bool = False, prefault: bool = False,
                 huge_pages: bool = False) -> np.ndarray:
    capture = cv2.VideoCapture(path)
    out = _output(capture, huge_pages)
    faulter = _start_prefault(out, len(out) - 8) if prefault else None
    index, frame, rgb = 0, None, None
    while True:
        ok, frame = capture.read(frame if reuse else None)
        if not ok:
            break
        rgb = convert(frame, out[index], rgb)
        index += 1
    if faulter:
        faulter.join()
    return out[:index]


def _start_prefault(out: np.ndarray, frames: int) -> threading.Thread:
    def run() -> None:
        _madvise(out, 23, out[0].nbytes * frames)  # MADV_POPULATE_WRITE; ctypes releases the GIL

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def reversed_view_multiply(frame, slot, rgb):
    np.multiply(frame[..., ::-1], SCALE, out=slot)


def cvtcolor_multiply(frame, slot, rgb):
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=rgb)
    np.multiply(rgb, SCALE, out=slot)
    return rgb


def cvtcolor_addweighted(frame, slot, rgb):
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=rgb)
    cv2.addWeighted(rgb, 1 / 255, rgb, 0, 0, dst=slot, dtype=cv2.CV_32F)
    return rgb


def cvtcolor_lut(frame, slot, rgb):
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=rgb)
    cv2.LUT(rgb, TABLE, dst=slot)
    return rgb


def pyav(path: str, thread_type: str) -> np.ndarray:
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = thread_type
        out = _empty(stream.frames, stream.height, stream.width, huge_pages=False)
        faulter = _start_prefault(out, stream.frames)
        index = 0
        for frame in container.decode(stream):
            cv2.LUT(frame.to_ndarray(format="rgb24"), TABLE, dst=out[index])
            index += 1
        faulter.join()
    return out[:index]


def magi1_decode(path: str, huge_pages: bool = False) -> np.ndarray:
    from magi1 import video

    if huge_pages:  # numpy's default: leave the output's pages to transparent huge pages
        video.page_memory.no_huge_pages = lambda array: None
    return video.decode([path]).frames


def magi1_decode_no_prefault(path: str) -> np.ndarray:
    from magi1 import video

    video.page_memory.Prefaulter.start_for = classmethod(lambda cls, array, frames: None)
    return video.decode([path]).frames


def raw_loop(path: str) -> np.ndarray | None:
    capture = cv2.VideoCapture(path)
    while capture.read()[0]:
        pass
    return None


# All use 4 KiB pages (as magi1.video does) unless they say "huge pages".
VARIANTS = {
    "raw read loop (baseline)": raw_loop,
    "prealloc; np.multiply on a BGR→RGB reversed view": lambda p: _single_loop(p, reversed_view_multiply),
    "prealloc; cvtColor + np.multiply(out=slot)": lambda p: _single_loop(p, cvtcolor_multiply),
    "prealloc; cvtColor + cv2.addWeighted(dtype=CV_32F)": lambda p: _single_loop(p, cvtcolor_addweighted),
    "prealloc; cvtColor + cv2.LUT (float32 table)": lambda p: _single_loop(p, cvtcolor_lut),
    "… + read into a reused buffer": lambda p: _single_loop(p, cvtcolor_lut, reuse=True),
    "… + pre-fault thread (MADV_POPULATE_WRITE)": lambda p: _single_loop(p, cvtcolor_lut, True, True),
    "… with huge pages (numpy's default)": lambda p: _single_loop(p, cvtcolor_lut, True, True, huge_pages=True),
    "PyAV thread_type=AUTO, rgb24 + LUT + pre-fault": lambda p: pyav(p, "AUTO"),
    "PyAV default threading, rgb24 + LUT + pre-fault": lambda p: pyav(p, "SLICE"),
    "decode thread + ring, LUT, 4 KiB pages, no pre-fault": magi1_decode_no_prefault,
    "decode thread + ring, LUT, pre-fault, huge pages": lambda p: magi1_decode(p, huge_pages=True),
    "magi1.video.decode (decode thread + ring + LUT + pre-fault + 4 KiB pages)": magi1_decode,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=480)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds to wait before each case (see bench_decode.py --help)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--video", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.variant:  # child
        rss_before = common.reset_peak()
        cpu_before = common.cpu_seconds()
        start = time.perf_counter()
        frames = VARIANTS[args.variant](args.video)
        seconds = time.perf_counter() - start
        cpu, kernel = (a - b for a, b in zip(common.cpu_seconds(), cpu_before, strict=True))
        print(json.dumps({"seconds": seconds, "cpu": cpu, "sys": kernel, "peak": common.peak_since(rss_before),
                          "frames": 0 if frames is None else len(frames)}))
        return

    video = common.input_video(args.frames)
    print(f"### {common.describe(video)}; {args.rounds} rounds, {args.settle:g} s settle\n", flush=True)
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name in VARIANTS:
            time.sleep(args.settle)
            line = common.run_child([__file__, "--variant", name, "--video", str(video)])
            results[name].append(json.loads(line))
    raw = common.median([r["seconds"] for r in results["raw read loop (baseline)"]])
    rows = []
    for name, runs in results.items():
        seconds = common.median([r["seconds"] for r in runs])
        rows.append([name, f"{seconds:.2f} ({min(r['seconds'] for r in runs):.2f}–{max(r['seconds'] for r in runs):.2f})",
                     f"{seconds / raw:.2f}×",
                     f"{common.median([r['cpu'] for r in runs]):.2f} ({common.median([r['sys'] for r in runs]):.2f})",
                     f"{common.median([r['peak'] for r in runs]) / 2**20:.0f}"])
    print(common.markdown_table(["variant", "seconds, median (min–max)", "× raw loop", "CPU s (kernel)", "peak MiB"],
                                rows))


if __name__ == "__main__":
    main()
