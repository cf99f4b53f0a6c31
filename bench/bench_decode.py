"""MP4 → float32 frames: this pack's loader against the baselines, measured in the same run.

    $PY bench/bench_decode.py            # 96- and 480-frame clips, 5 rounds (several minutes)
    $PY bench/bench_decode.py --quick    # 96-frame clip, 3 rounds, no ComfyUI case

Every case runs in a fresh process, so its peak memory (VmHWM, reset just before decoding,
minus the RSS at that moment) is its own. Rounds run the cases in turn, so a busy machine
slows them all alike; the table shows medians. Ratios are to the raw read loop of the same run.

Each case waits `--settle` seconds first. In a VM that returns freed memory to its host (this
one, most cloud machines), memory freed by the previous case is handed back within seconds, and
the next case's fresh pages then cost far more kernel time than right after a free. Inside
ComfyUI a decode rarely follows a large free by under a second, so the settled state is the
honest one; `--settle 0` shows the flattering back-to-back figures.
CPU s is user + kernel time of all the case's threads (kernel: mostly first-touch page faults).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

sys.path.insert(0, str(common.REPO))

# (case, extra options for magi1.video.decode as a function of the clip's frame count)
CASES = ["raw read loop", "list + np.stack", "ComfyUI VideoFromFile", "magi1.video.decode",
         "decode cap=N/4", "decode skip=N/2", "decode nth=4", "decode via PyAV", "decode BT.709 clip (PyAV)"]
TARGET_TIME = 2.2
TARGET_MEMORY = 1.1
TARGET_MEMORY_SLACK = 300 << 20


def options_for(case: str, frames: int) -> dict[str, int]:
    return {
        "decode cap=N/4": {"frame_load_cap": frames // 4},
        "decode skip=N/2": {"skip_first_frames": frames // 2},
        "decode nth=4": {"select_every_nth": 4},
    }.get(case, {})


# --- one case, in a child process ---------------------------------------------------------------------
def run_case(case: str, video: Path, frames_in_clip: int) -> dict:
    import cv2
    import numpy as np

    if case == "ComfyUI VideoFromFile":
        sys.path.insert(0, str(common.COMFYUI))
        from comfy_api.input_impl import VideoFromFile  # imported before the clock starts
    if case.startswith(("magi1", "decode")):
        from magi1 import video as magi1_video

        if case == "decode via PyAV":  # the path BT.709, AV1, VP9, 10-bit and alpha take
            magi1_video._why_pyav = lambda *args: "forced by the benchmark"
        if case.startswith("decode BT.709"):
            video = common.input_video(frames_in_clip, bt709=True)

    rss_before = common.reset_peak()
    cpu_before = common.cpu_seconds()
    start = time.perf_counter()
    if case == "raw read loop":
        capture = cv2.VideoCapture(str(video))
        frames = 0
        while capture.read()[0]:
            frames += 1
        shape = None
    elif case == "list + np.stack":
        capture = cv2.VideoCapture(str(video))
        decoded = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            decoded.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        images = np.stack(decoded).astype(np.float32) / 255
        frames, shape = len(images), images.shape
    elif case == "ComfyUI VideoFromFile":
        images = VideoFromFile(str(video)).get_components().images
        frames, shape = len(images), tuple(images.shape)
    else:
        images = magi1_video.decode([video], **options_for(case, frames_in_clip)).frames
        frames, shape = len(images), images.shape
    seconds = time.perf_counter() - start
    cpu, sys_cpu = (after - before for after, before in zip(common.cpu_seconds(), cpu_before, strict=True))
    return {"frames": frames, "seconds": seconds, "cpu": cpu, "sys": sys_cpu, "peak": common.peak_since(rss_before),
            "tensor": 0 if shape is None else frames * shape[1] * shape[2] * 3 * 4}


def check_correctness(video: Path) -> float:
    """Largest difference between this pack's frames and the straightforward decoder's.

    For the BT.709 clip the straightforward decoder is PyAV with the BT.709 matrix (OpenCV
    4.8–4.12 would read it as BT.601).
    """
    import cv2
    import numpy as np

    from magi1 import video as magi1_video

    ours = magi1_video.decode([video]).frames
    if "bt709" in video.name:
        import av

        with av.open(str(video)) as container:
            reference = [f.to_ndarray(format="rgb24", src_colorspace="ITU709", src_color_range="MPEG",
                                      dst_color_range="JPEG") for f in container.decode(video=0)]
        assert len(reference) == len(ours), (len(reference), len(ours))
        return max(float(np.abs(ours[i] - reference[i] / 255).max()) for i in range(len(ours)))
    capture = cv2.VideoCapture(str(video))
    largest, index = 0.0, 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        expected = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) / 255
        largest = max(largest, float(np.abs(ours[index] - expected).max()))
        index += 1
    assert index == len(ours), (index, len(ours))
    return largest


# --- the run ----------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="96-frame clip only, 3 rounds, no ComfyUI case")
    parser.add_argument("--frames", default=None, help="comma-separated clip lengths (default 96,480)")
    parser.add_argument("--rounds", type=int, default=None, help="runs of each case (default 5; quick 3)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to wait before each case")
    parser.add_argument("--cases", default=None, help="comma-separated subset of: " + "; ".join(CASES))
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--video", help=argparse.SUPPRESS)
    parser.add_argument("--clip-frames", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.case:  # child
        if args.case == "check":
            print(json.dumps({"max_difference": check_correctness(Path(args.video))}))
        else:
            print(json.dumps(run_case(args.case, Path(args.video), args.clip_frames)))
        return

    lengths = [int(f) for f in (args.frames or ("96" if args.quick else "96,480")).split(",")]
    rounds = args.rounds or (3 if args.quick else 5)
    cases = args.cases.split(",") if args.cases else list(CASES)
    if "ComfyUI VideoFromFile" in cases and (args.quick or not (common.COMFYUI / "comfy_api").is_dir()):
        cases.remove("ComfyUI VideoFromFile")
    if "raw read loop" not in cases:
        cases.insert(0, "raw read loop")

    print(f"encoder: {common.encoder()}; rounds: {rounds}; settle: {args.settle:g} s; cache: {common.CACHE}",
          flush=True)
    for length in lengths:
        video = common.input_video(length)
        print(f"\n### {common.describe(video)}\n", flush=True)
        check = json.loads(common.run_child([__file__, "--case", "check", "--video", str(video)]))
        print(f"max |magi1.video.decode − straightforward cv2 decode| = {check['max_difference']:.6f} "
              f"(limit 1/255 = {1 / 255:.6f})", flush=True)
        if any(case.startswith("decode BT.709") for case in cases):
            bt709 = common.input_video(length, bt709=True)
            check = json.loads(common.run_child([__file__, "--case", "check", "--video", str(bt709)]))
            print(f"BT.709 clip {bt709.name}: max |magi1.video.decode − PyAV BT.709 decode| = "
                  f"{check['max_difference']:.6f}", flush=True)
        print(flush=True)
        results: dict[str, list[dict]] = {case: [] for case in cases}
        for _ in range(rounds):
            for case in cases:
                time.sleep(args.settle)
                line = common.run_child([__file__, "--case", case, "--video", str(video),
                                         "--clip-frames", str(length)])
                results[case].append(json.loads(line))
        print(table(results, length), flush=True)


def table(results: dict[str, list[dict]], length: int) -> str:
    raw = common.median([r["seconds"] for r in results["raw read loop"]])
    rows = []
    for case, runs in results.items():
        seconds = common.median([r["seconds"] for r in runs])
        peak = common.median([r["peak"] for r in runs])
        frames = runs[0]["frames"]
        tensor = runs[0]["tensor"]
        verdict = ""
        if case == "magi1.video.decode":
            ok = seconds <= TARGET_TIME * raw and peak <= TARGET_MEMORY * tensor + TARGET_MEMORY_SLACK
            verdict = " ✅" if ok else " ❌"
        spread = f"{min(r['seconds'] for r in runs):.2f}–{max(r['seconds'] for r in runs):.2f}"
        rows.append([
            case + verdict,
            str(frames),
            f"{seconds:.2f} ({spread})",
            f"{frames / seconds:.0f}",
            f"{seconds / raw:.2f}×",
            f"{common.median([r['cpu'] for r in runs]):.2f} ({common.median([r['sys'] for r in runs]):.2f})",
            f"{peak / 2**20:.0f}",
            f"{peak / tensor:.2f}×" if tensor else "–",
        ])
    header = ["case", "frames", "seconds, median (min–max)", "frames/s", "× raw loop", "CPU s (kernel)", "peak MiB",
              "peak ÷ float32 tensor"]
    return common.markdown_table(header, rows)


if __name__ == "__main__":
    main()
