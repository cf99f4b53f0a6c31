"""Batch throughput and the ledger's claim overhead (issue 8), against in-run baselines.

    $PY bench/bench_billing.py            # batch of 32 vs one task (emulator latency 5 s), claims
    $PY bench/bench_billing.py --quick    # batch of 8, fewer claims

1. A batch of N first frames (Magi1Submit + Magi1Poll's recipe, no limits) against the emulator
   with a 5 s task latency, vs one task in the same run: the batch's wall time over one task's,
   the most threads alive, and whether urllib3 warned "Connection pool is full".
2. The claim: the ledger writes around one billed POST (claim, submitting, submitted) on SQLite
   (the default file) and on PostgreSQL (a throwaway local server), in ms per task, vs the
   first ledger's single INSERT (sqlite3, one connection per call) as the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from magi1 import pipeline  # noqa: E402
from magi1.ledger import Ledger  # noqa: E402
from magi1.params import build_request  # noqa: E402
from tools.wavespeed_emulator import EmulatorServer  # noqa: E402

LATENCY_S = 5.0


class _PoolFull(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "pool is full" in record.getMessage().lower():
            self.count += 1


def _run_batch(emulator: EmulatorServer, workdir: Path, batch: int) -> tuple[float, int]:
    """Seconds from submit to every MP4 saved, and the most threads alive meanwhile."""
    ctx = pipeline.Context(output_dir=workdir / f"out{batch}", private_dir=workdir / f"private{batch}")
    frames = np.random.default_rng(batch).random((batch, 64, 96, 3), dtype=np.float32)
    peak = [threading.active_count()]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], threading.active_count())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()

    async def recipe() -> None:
        task = await pipeline.submit(ctx, build_request("bench", -1, resolution="480p"), frames)
        await pipeline.wait_and_save(ctx, task.task_ids, timeout_s=600, interval_s=1.0)

    started = time.monotonic()
    asyncio.run(recipe())
    seconds = time.monotonic() - started
    done.set()
    return seconds, peak[0] - 1  # minus the watcher


def bench_batch(batch: int) -> list[str]:
    import os

    pool_full = _PoolFull()
    logging.getLogger("urllib3").addHandler(pool_full)
    with tempfile.TemporaryDirectory() as tmp, EmulatorServer(
        port=0, latency=LATENCY_S, default_resolution="480p", api_key="bench-key-0000"
    ) as emulator:
        # One render shared by every task: the emulator's video encoding (CPU) is not what is measured.
        emulator.configure(reuse_renders=True)
        os.environ["WAVESPEED_BASE_URL"] = emulator.base_url
        os.environ["WAVESPEED_API_KEY"] = "bench-key-0000"
        os.environ["MAGI1_MAX_TASKS_PER_RUN"] = str(max(batch, 8))  # the spend guard allows 8
        one, one_threads = _run_batch(emulator, Path(tmp), 1)
        many, many_threads = _run_batch(emulator, Path(tmp), batch)
    return [
        "| case | wall s | × one task | threads (peak) |",
        "| --- | --- | --- | --- |",
        f"| one task (baseline) | {one:.2f} | 1.00 | {one_threads} |",
        f"| batch of {batch} | {many:.2f} | {many / one:.2f} | {many_threads} |",
        "",
        f'"Connection pool is full" warnings: {pool_full.count}',
    ]


def _baseline_insert(path: Path, n: int) -> float:
    """The first ledger's write per task: one INSERT on a fresh sqlite3 connection (WAL)."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS tasks (task_id TEXT PRIMARY KEY, request_json TEXT, "
                   "status TEXT, submitted_at REAL, updated_at REAL)")
    times = []
    for i in range(n):
        started = time.perf_counter()
        db = sqlite3.connect(path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            with db:
                db.execute("INSERT INTO tasks VALUES (?, '{}', 'created', ?, ?)", (f"t{i}", time.time(), time.time()))
        finally:
            db.close()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _claim_ms(ledger: Ledger, n: int) -> float:
    times = []
    for i in range(n):
        started = time.perf_counter()
        claim = ledger.claim(f"k{i}-{time.time()}", dedupe=True, base_url="b", payload={"seed": i})
        ledger.mark_submitting(claim.record.row_id, {"seed": i})
        ledger.record_submitted(claim.record.row_id, f"task-{i}-{time.time()}")
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def bench_claims(n: int) -> list[str]:
    rows = ["| ledger | ms per task (median) | baseline ms | added ms |", "| --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as tmp:
        base = _baseline_insert(Path(tmp) / "v1.sqlite3", n)
        sqlite_ms = _claim_ms(Ledger(Path(tmp) / "tasks.sqlite3"), n)
        rows.append(f"| SQLite (WAL) | {sqlite_ms:.2f} | {base:.2f} | {sqlite_ms - base:+.2f} |")
    try:
        from fixtures_postgres import PostgresUnavailable, postgres_running
    except ImportError as exc:  # pytest missing: the fixture module imports it
        rows.append(f"| PostgreSQL | not measured: {exc} | | |")
        return rows
    try:
        with postgres_running() as server:
            ledger = Ledger(server.create_database("bench"))
            pg_ms = _claim_ms(ledger, n)
            ledger.dispose()
        rows.append(f"| PostgreSQL (loopback) | {pg_ms:.2f} | {base:.2f} | {pg_ms - base:+.2f} |")
    except PostgresUnavailable as exc:
        rows.append(f"| PostgreSQL | not measured: {exc} | | |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch of 8, 50 claims")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    batch, claims = (8, 50) if args.quick else (32, 200)
    print(f"## Batch of {batch} first frames vs one task (emulator latency {LATENCY_S:g} s, no limits)\n")
    print("\n".join(bench_batch(batch)))
    print(f"\n## Ledger writes around one billed POST ({claims} tasks)\n")
    print("\n".join(bench_claims(claims)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
