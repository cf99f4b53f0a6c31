"""Adoption: save the videos of paid tasks nobody waits for any more, in a background thread.

A task is adopted when the ledger says it was submitted but its video is not saved, and it is
younger than WaveSpeed keeps predictions (7 days): after ComfyUI (re)starts, and when a Poll
gave up waiting. The adopter polls each such task (every `POLL_INTERVAL_S`, WaveSpeed asks for
5 s or more), saves a finished MP4 under `output/magi1/` exactly as Magi1Poll would (so a later
re-queue of the same graph finds it and costs nothing), marks a failed task failed and a task the
service no longer knows dead. Every change goes through the ledger, which publishes the events.
One adopter thread per process works on a task at a time; it never raises (it logs).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import Magi1Error, TaskNotFoundError

log = logging.getLogger(__name__)

MAX_AGE_S = 7 * 24 * 3600.0
POLL_INTERVAL_S = 5.0
GIVE_UP_AFTER_S = 6 * 3600.0
MAX_FAILURES = 6  # failed checks in a row (service unreachable...) before a task waits for the next start  # a task still running after this long is left for the next start

_busy: set[str] = set()
_busy_lock = threading.Lock()
_stop = threading.Event()


def adopt_in_background(
    output_dir: Path, private_dir: Path, *, task_ids: Sequence[str] | None = None, interval_s: float | None = None
) -> threading.Thread:
    """Start a daemon thread adopting the ledger's unsaved tasks (or only `task_ids`)."""
    thread = threading.Thread(
        target=adopt,
        args=(Path(output_dir), Path(private_dir)),
        kwargs={"task_ids": task_ids, "interval_s": interval_s},
        name="magi1-adoption",
        daemon=True,
    )
    thread.start()
    return thread


def adopt(
    output_dir: Path,
    private_dir: Path,
    *,
    task_ids: Sequence[str] | None = None,
    interval_s: float | None = None,
    give_up_after_s: float = GIVE_UP_AFTER_S,
) -> list[Path]:
    """Poll and save the unsaved tasks until each is final (blocking); returns the saved paths."""
    from . import pipeline  # late: the pipeline imports this module when a Poll gives up

    interval = POLL_INTERVAL_S if interval_s is None else interval_s
    ctx = pipeline.Context(output_dir=output_dir, private_dir=private_dir)
    saved: list[Path] = []
    try:
        settings = ctx.settings()
        client = ctx.client()
        if task_ids is None:  # a start: first give the submits of owners that died their task ids
            pipeline.reconcile_orphans(ctx, client, newer_than=time.time() - MAX_AGE_S)
        records = ctx.ledger.unsaved(newer_than=time.time() - MAX_AGE_S, base_url=settings.base_url)
    except Magi1Error as exc:  # no key, a refused base URL, the ledger unreadable
        log.warning("MAGI-1 adoption did not start: %s", exc)
        return saved
    except Exception:  # a background thread must log, never raise
        log.exception("MAGI-1 adoption could not read the task ledger")
        return saved
    wanted = {r.task_id for r in records if r.task_id and (task_ids is None or r.task_id in task_ids)}
    with _busy_lock:
        mine = sorted(wanted - _busy)
        _busy.update(mine)
    if not mine:
        return saved
    log.info("MAGI-1 adoption: saving %d paid task(s) nobody waits for: %s", len(mine), ", ".join(mine))
    pending = list(mine)
    failures: dict[str, int] = {}
    deadline = time.monotonic() + give_up_after_s
    try:
        while pending and not _stop.is_set() and time.monotonic() < deadline:
            for task_id in list(pending):
                try:
                    prediction = pipeline.confirmed_result(client, task_id, sleep=_stop.wait)
                    if not prediction.is_final:
                        continue
                    pending.remove(task_id)
                    ctx.ledger.update_status(
                        task_id,
                        prediction.status,
                        error=prediction.error,
                        video_url=prediction.outputs[0] if prediction.outputs else None,
                        inference_ms=prediction.inference_ms,
                    )
                    if prediction.is_completed and prediction.outputs:
                        path = pipeline.save_video(ctx, prediction.outputs[0], task_id=task_id)
                        saved.append(path)
                        log.info("MAGI-1 adoption: saved task %s to %s", task_id, path)
                    else:
                        log.warning("MAGI-1 adoption: task %s ended %r: %s", task_id, prediction.status,
                                    prediction.error or "no reason given")
                except TaskNotFoundError:
                    pending.remove(task_id)
                    ctx.ledger.mark_dead(task_id, "unknown to the service (adoption)")
                    log.warning("MAGI-1 adoption: WaveSpeed no longer knows task %s; marked dead", task_id)
                except Magi1Error as exc:
                    failures[task_id] = failures.get(task_id, 0) + 1
                    if failures[task_id] >= MAX_FAILURES:
                        pending.remove(task_id)
                        log.warning("MAGI-1 adoption: task %s: %s; left for the next start", task_id, exc)
                    else:
                        log.warning("MAGI-1 adoption: task %s: %s (will retry)", task_id, exc)
            if pending:
                _stop.wait(interval)
    except Exception:
        log.exception("MAGI-1 adoption stopped")
    finally:
        with _busy_lock:
            _busy.difference_update(mine)
    if pending:
        log.warning("MAGI-1 adoption: still not finished, left for later: %s", ", ".join(pending))
    return saved
