"""Several MAGI-1 branches in one graph, and a batch, against one branch (README: benchmarks).

Runs a real ComfyUI with this pack against the bundled emulator (each task takes LATENCY s on
the "service"), in the same run:
  - one branch: Submit → Poll → LoadVideo (the baseline);
  - N independent branches in one graph;
  - one Submit with a batch of N first frames;
and prints wall time, the ratio to one branch, and the result GETs each task cost against the
bound T / interval + 2. Target: N branches and a batch of N finish in at most 1.3× one branch.

    $MAGI1_PYTHON -m bench.bench_branches [--branches 3] [--latency 5] [--interval 1]
"""
from __future__ import annotations

import argparse
import time

from tools.comfyui_harness import ComfyUIServer
from tools.wavespeed_emulator import EmulatorServer

_seed = iter(range(10_000, 10**9))


def branch(prefix: str, *, batch: int = 1, interval: float) -> dict:
    # A batch of EmptyImage frames is N identical requests: with a fixed seed the ledger makes them
    # one task (billed once), so the batch case asks for new videos (seed -1) to stay N tasks.
    return {
        f"{prefix}img": {"class_type": "EmptyImage",
                         "inputs": {"width": 640, "height": 360, "batch_size": batch, "color": 0x884422}},
        f"{prefix}submit": {"class_type": "Magi1Submit",
                            "inputs": {"prompt": f"branch {prefix}", "seed": next(_seed) if batch == 1 else -1, "resolution": "480p",
                                       "image": [f"{prefix}img", 0]}},
        f"{prefix}poll": {"class_type": "Magi1Poll",
                          "inputs": {"task": [f"{prefix}submit", 0], "timeout_s": 600, "poll_interval_s": interval}},
        f"{prefix}load": {"class_type": "Magi1LoadVideo", "inputs": {"video_url": [f"{prefix}poll", 0]}},
        f"{prefix}out": {"class_type": "PreviewAny", "inputs": {"source": [f"{prefix}load", 2]}},
    }


def timed(server: ComfyUIServer, emulator: EmulatorServer, graph: dict) -> tuple[float, int, int]:
    emulator.reset()
    started = time.monotonic()
    server.run(graph, timeout=600)
    seconds = time.monotonic() - started
    journal = emulator.journal()
    return seconds, sum(e["route"] == "submit" for e in journal), sum(e["route"] == "result" for e in journal)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--branches", type=int, default=3)
    parser.add_argument("--latency", type=float, default=5.0)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    n = args.branches

    with EmulatorServer(port=0, latency=args.latency, default_resolution="480p") as emulator, ComfyUIServer(
        env={"WAVESPEED_BASE_URL": emulator.base_url, "WAVESPEED_API_KEY": "bench-key-0000"}
    ) as server:
        timed(server, emulator, branch("warm", interval=args.interval))  # imports, first decode
        one = timed(server, emulator, branch("a", interval=args.interval))
        several = {}
        for i in range(n):
            several.update(branch(f"b{i}", interval=args.interval))
        many = timed(server, emulator, several)
        batch = timed(server, emulator, branch("c", batch=n, interval=args.interval))

    bound = args.latency / args.interval + 2
    print(f"\nEach task takes {args.latency:.0f} s on the emulator; poll interval {args.interval:g} s; "
          f"480p, 96 frames per clip.\n")
    print("| graph | tasks | wall s | × one branch | result GETs per task | bound T/interval+2 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, (seconds, tasks, gets) in [("one branch (baseline)", one), (f"{n} independent branches", many),
                                         (f"one Submit, batch of {n}", batch)]:
        print(f"| {name} | {tasks} | {seconds:.1f} | {seconds / one[0]:.2f} | {gets / max(tasks, 1):.1f} | {bound:.0f} |")


if __name__ == "__main__":
    main()
