"""The MAGI-1 panel's costs (issue 12), each against an in-run baseline.

`--case route` (runs on its own): a real ComfyUI with this pack and a ledger of `--rows` tasks
(10,000); the latency of `GET /magi1/tasks` (first page, a page deep in the list), `GET
/magi1/account` (balance cached), with and without the ledger's
index on `submitted_at`, against ComfyUI's own `GET /system_stats` (the HTTP floor) and
the ledger's `list_tasks` called in-process. Target: the task route under 50 ms.

`--case save`: Submit → Poll → SaveVideo through Magi1Poll's `video` output (no decode at all)
against the same graph through Magi1LoadVideo's `video` (which decodes every frame to float32),
on a 192-frame 720p clip from the emulator, one run each in a fresh ComfyUI: wall time and the
ComfyUI process's peak memory (VmHWM) above its RSS before the run. Needs Magi1Poll's `video`
output (issue 11): before that merge only the LoadVideo graph runs, and the table says so.

    $MAGI1_PYTHON bench/bench_panel.py --case route [--rows 10000] [--repeat 200]
    $MAGI1_PYTHON bench/bench_panel.py --case save
"""
from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

try:  # the harness moved under tools/ in issue 11
    from tools.comfyui_harness import ComfyUIServer
except ImportError:
    from comfyui_harness import ComfyUIServer

from magi1 import pipeline  # noqa: E402
from tools.wavespeed_emulator import EmulatorServer  # noqa: E402

CLIP_FRAMES = 192
CLIP_RESOLUTION = "720p"


# --- route ---------------------------------------------------------------------------------------
def fill_ledger(path: Path, rows: int) -> None:
    """`rows` tasks in the SQLite ledger at `path`: one through the ledger's API, copied in one
    transaction (one API call per row takes ~5 ms: minutes for 10,000). Works on the ledger's
    table whatever its name (`tasks`, or `magi1_tasks` after the ledger issue): the copies get new
    task ids and times, an own integer key, and NULL in any other unique column."""
    book = pipeline.ledger_at(path)
    now = time.time()
    book.record_submission("bench-seed-row", fingerprint="0" * 64, base_url="https://api.wavespeed.ai",
                           payload={"prompt": "a slow pan over a misty valley at dawn " * 3, "seed": 1,
                                    "resolution": "720p"}, status="completed")
    with sqlite3.connect(path) as db:
        table = next(name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                     if "task_id" in [c[1] for c in db.execute(f'PRAGMA table_info("{name}")')])
        info = list(db.execute(f'PRAGMA table_info("{table}")'))
        unique = {col[2] for index in db.execute(f'PRAGMA index_list("{table}")') if index[2]
                  for col in db.execute(f'PRAGMA index_info("{index[1]}")')}
        timed = "?2 - ?3 * 37.0"
        chosen = {"task_id": "'bench-' || ?1", "submitted_at": timed, "claimed_at": timed,
                  "updated_at": timed + " + 90"}
        columns, values = [], []
        for _, name, _, _, _, primary in info:
            if primary and name != "task_id":
                continue  # its own key (an integer primary key numbers itself)
            columns.append(name)
            values.append(chosen.get(name, "NULL" if name in unique else name))
        sql = (f'INSERT INTO "{table}" ({", ".join(columns)}) SELECT {", ".join(values)} '
               f"FROM \"{table}\" WHERE task_id = 'bench-seed-row'")
        db.executemany(sql, ((f"{i:06d}", now, i) for i in range(rows - 1)))


def drop_submitted_at_indexes(path: Path) -> list[str]:
    """Drop the ledger's indexes whose first column is submitted_at; their names."""
    with sqlite3.connect(path) as db:
        table = next(name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                     if "task_id" in [c[1] for c in db.execute(f'PRAGMA table_info("{name}")')])
        names = [name for _, name, *_ in db.execute(f'PRAGMA index_list("{table}")')
                 if [c[2] for c in db.execute(f"PRAGMA index_info('{name}')")][:1] == ["submitted_at"]]
        for name in names:
            db.execute(f'DROP INDEX "{name}"')
    return names


def timings_ms(call, repeat: int) -> list[float]:
    call()  # warm: connections, caches
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def row(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"| {name} | {statistics.median(samples):.2f} | {p95:.2f} | {max(samples):.2f} |"


def bench_route(rows: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="magi1-bench-panel-") as work:
        emulator = EmulatorServer(port=0, latency=0.2, default_resolution="480p", api_key="bench-key").start()
        server = ComfyUIServer(Path(work) / "comfyui", env={"WAVESPEED_BASE_URL": emulator.base_url,
                                                             "WAVESPEED_API_KEY": emulator.api_key})
        try:
            server.start()
            ledger_path = server.user_dir / "__magi1" / pipeline.LEDGER_FILE
            fill_ledger(ledger_path, rows)
            book = pipeline.ledger_at(ledger_path)
            deep = book.list_tasks(limit=200)[-1].submitted_at
            for _ in range(20):  # a cursor half-way down the list
                deep = book.list_tasks(limit=250, before=deep)[-1].submitted_at

            def get(path, **params):
                return lambda: server.get(path, params=params).raise_for_status()

            results = [
                ("ComfyUI GET /system_stats (HTTP floor)", timings_ms(get("/system_stats"), repeat)),
                ("ledger.list_tasks(50) in-process", timings_ms(lambda: book.list_tasks(limit=50), repeat)),
                ("GET /magi1/tasks?limit=50", timings_ms(get("/magi1/tasks", limit=50), repeat)),
                ("GET /magi1/tasks?limit=50&before=<row 5,000>", timings_ms(get("/magi1/tasks", limit=50, before=deep), repeat)),
                ("GET /magi1/account (balance cached)", timings_ms(get("/magi1/account"), repeat)),
            ]
            # The same without the ledger's index on submitted_at (what it cost before there was one).
            dropped = drop_submitted_at_indexes(ledger_path)
            results += [
                (f"without index {name}: ledger.list_tasks(50)", timings_ms(lambda: book.list_tasks(limit=50), repeat))
                for name in dropped or ["(none to drop)"]
            ][:1]
            results += [
                ("without it: GET /magi1/tasks?limit=50", timings_ms(get("/magi1/tasks", limit=50), repeat)),
                ("without it: GET /magi1/account", timings_ms(get("/magi1/account"), repeat)),
            ]
        finally:
            server.stop()
            emulator.stop()
    print(f"Panel routes with {rows:,} ledger rows, {repeat} requests each (ms; target for /magi1/tasks: < 50)\n")
    print("| request | median | p95 | max |\n| --- | --- | --- | --- |")
    for name, samples in results:
        print(row(name, samples))


# --- save ----------------------------------------------------------------------------------------
def _graph(through_load_video: bool) -> dict:
    graph = {
        "submit": {"class_type": "Magi1Submit", "inputs": {
            "prompt": "a 192-frame bench clip", "seed": 4242, "resolution": CLIP_RESOLUTION,
            "num_frames": CLIP_FRAMES}},
        "poll": {"class_type": "Magi1Poll", "inputs": {"task": ["submit", 0], "timeout_s": 900,
                                                       "poll_interval_s": 0.5}},
    }
    if through_load_video:
        graph["load"] = {"class_type": "Magi1LoadVideo", "inputs": {"video_url": ["poll", 0]}}
        video = ["load", 4]
    else:
        video = ["poll", 1]
    graph["save"] = {"class_type": "SaveVideo", "inputs": {
        "video": video, "filename_prefix": "bench/magi1", "format": "auto", "codec": "auto"}}
    return graph


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def bench_save() -> None:
    results = []
    missing_poll_video = False
    with tempfile.TemporaryDirectory(prefix="magi1-bench-save-") as work:
        emulator = EmulatorServer(port=0, latency=0.5, default_resolution=CLIP_RESOLUTION,
                                  api_key="bench-key").start()
        try:
            for name, through_load in (("Poll.video → SaveVideo (no decode)", False),
                                       ("Poll → LoadVideo.video → SaveVideo", True)):
                server = ComfyUIServer(Path(work) / ("load" if through_load else "poll"),
                                       env={"WAVESPEED_BASE_URL": emulator.base_url,
                                            "WAVESPEED_API_KEY": emulator.api_key})
                server.start()
                try:
                    if not through_load and "VIDEO" not in server.object_info("Magi1Poll").get("output", []):
                        missing_poll_video = True
                        continue
                    emulator.reset()
                    pid = server._process.pid
                    baseline_kib = _kib(pid, "VmRSS")
                    Path(f"/proc/{pid}/clear_refs").write_text("5")  # peak := current
                    started = time.monotonic()
                    server.run(_graph(through_load), timeout=900)
                    seconds = time.monotonic() - started
                    peak_mib = (_kib(pid, "VmHWM") - baseline_kib) / 1024
                    results.append((name, seconds, peak_mib))
                finally:
                    server.stop()
        finally:
            emulator.stop()
    base_seconds, base_peak = results[-1][1], results[-1][2]
    print(f"Submit → Poll → SaveVideo, one {CLIP_FRAMES}-frame {CLIP_RESOLUTION} clip, one run each, "
          "fresh ComfyUI per case (the emulator's render of the clip is in both)\n")
    print("| graph | wall s | × LoadVideo | peak MiB above start | × LoadVideo |\n| --- | --- | --- | --- | --- |")
    for name, seconds, peak in results:
        print(f"| {name} | {seconds:.1f} | {seconds / base_seconds:.2f} | {peak:.0f} | "
              f"{peak / base_peak if base_peak > 0 else float('nan'):.2f} |")
    if missing_poll_video:
        print("\nMagi1Poll has no `video` output on this branch (issue 11 adds it): only the LoadVideo "
              "baseline ran; run this case again after that merge.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=("route", "save"), default="route")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    if args.case == "route":
        bench_route(args.rows, args.repeat)
    else:
        bench_save()


if __name__ == "__main__":
    main()
