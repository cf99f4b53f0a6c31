"""Waiting for tasks: one loop for any number of task ids, without blocking the event loop.

Each poll round asks for every pending task at once (the blocking GETs run in worker threads);
between rounds the loop sleeps in short ticks, calling the cancel check each tick, so a Cancel
ends the wait within about `TICK_S`. A task of T seconds costs at most T / interval + 2 GETs.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar
from collections.abc import Awaitable, Callable, Sequence

from . import events
from .client import Prediction
from .errors import TaskFailedError, TaskTimeoutError

log = logging.getLogger(__name__)

TICK_S = 0.25
# A guess at how long a default MAGI-1 task takes on the service, used only for the progress
# bar's estimate; the bar never reaches the end before the tasks do.
TYPICAL_TASK_S = 120.0

T = TypeVar("T")


@dataclass
class WaitSnapshot:
    """What the node shows while it waits."""

    task_ids: Sequence[str]
    statuses: dict[str, str] = field(default_factory=dict)
    elapsed_s: float = 0.0
    polls: int = 0
    done: int = 0
    # Completed tasks whose output the service's content check flagged (`has_nsfw_contents`).
    nsfw_task_ids: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.task_ids)

    def estimated_remaining_s(self, typical_s: float = TYPICAL_TASK_S) -> float | None:
        if self.done == self.total:
            return 0.0
        left = typical_s - self.elapsed_s
        return left if left > 0 else None

    def nsfw_notice(self) -> str:
        """One line for the node's status text when a task's output was flagged, else ""."""
        if not self.nsfw_task_ids:
            return ""
        ids = ", ".join(self.nsfw_task_ids[:3]) + (" …" if len(self.nsfw_task_ids) > 3 else "")
        return f"⚠ flagged NSFW by WaveSpeed, the video may be blanked: task {ids}"

    def fraction(self, typical_s: float = TYPICAL_TASK_S) -> float:
        """0…1 for a progress bar: finished tasks count whole, running ones by elapsed time."""
        if self.total == 0:
            return 1.0
        running = min(self.elapsed_s / typical_s, 0.95)
        return (self.done + (self.total - self.done) * running) / self.total


# Our own pool, not asyncio.to_thread: ComfyUI runs each prompt in `asyncio.run`, which on exit
# waits for every thread of the loop's default executor, so a Cancel during an 8 s request took
# 7.5 s to show (measured). Threads of this pool finish in the background instead.
_workers = ThreadPoolExecutor(max_workers=16, thread_name_prefix="magi1")


async def run_interruptible(
    blocking: Callable[[], T], throw_if_interrupted: Callable[[], None], tick: float = TICK_S
) -> T:
    """Run `blocking` in a worker thread; keep checking for Cancel while it runs."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    future = loop.run_in_executor(_workers, context.run, blocking)
    while True:
        done, _ = await asyncio.wait({future}, timeout=tick)
        if done:
            return future.result()
        throw_if_interrupted()


async def sleep_interruptible(seconds: float, throw_if_interrupted: Callable[[], None],
                              on_tick: Callable[[], None] | None = None, tick: float = TICK_S) -> None:
    deadline = time.monotonic() + seconds
    while True:
        throw_if_interrupted()
        left = deadline - time.monotonic()
        if left <= 0:
            return
        await asyncio.sleep(min(tick, left))
        if on_tick is not None:
            on_tick()


async def wait_for_tasks(
    get_result: Callable[[str], Prediction],
    task_ids: Sequence[str],
    *,
    timeout_s: float,
    interval_s: float,
    throw_if_interrupted: Callable[[], None],
    on_update: Callable[[WaitSnapshot], None] | None = None,
    on_final: Callable[[Prediction], Awaitable[None] | None] | None = None,
) -> list[Prediction]:
    """Poll until every task is completed; return their predictions in the order given.

    Raises TaskFailedError as soon as one task ends in a failed state (naming the others, which
    may still finish), TaskTimeoutError after `timeout_s`, or ComfyUI's interrupt on Cancel.
    `on_final` sees each task's final prediction as soon as it arrives (to record it).
    """
    start = time.monotonic()
    snapshot = WaitSnapshot(task_ids=list(task_ids), statuses=dict.fromkeys(task_ids, "submitted"))
    results: dict[str, Prediction] = {}
    pending = list(dict.fromkeys(task_ids))

    def report() -> None:
        snapshot.elapsed_s = time.monotonic() - start
        if on_update is not None:
            on_update(snapshot)

    while True:
        round_started = time.monotonic()
        answers = await asyncio.gather(
            *(run_interruptible(lambda t=t: get_result(t), throw_if_interrupted) for t in pending)
        )
        snapshot.polls += len(pending)
        for task_id, prediction in zip(pending, answers, strict=True):
            snapshot.statuses[task_id] = prediction.status
            if prediction.is_final and on_final is not None:
                maybe = on_final(prediction)
                if asyncio.iscoroutine(maybe):
                    await maybe
            if prediction.is_completed:
                results[task_id] = prediction
                if prediction.has_nsfw_contents and task_id not in snapshot.nsfw_task_ids:
                    snapshot.nsfw_task_ids.append(task_id)
                    report_nsfw(task_id)
            elif prediction.has_failed:
                others = [t for t in pending if t != task_id and t not in results]
                raise TaskFailedError(
                    _failure_message(prediction, others),
                    code=prediction.code,
                    service_message=prediction.error or None,
                    task_id=task_id,
                )
        pending = [t for t in pending if t not in results]
        snapshot.done = len(results)
        report()
        if not pending:
            return [results[t] for t in task_ids]

        elapsed = time.monotonic() - start
        if elapsed >= timeout_s:
            raise TaskTimeoutError(_timeout_message(pending, elapsed, snapshot.statuses), task_ids=pending)
        next_round = round_started + interval_s
        wait = min(next_round - time.monotonic(), start + timeout_s - time.monotonic())
        if wait > 0:
            await sleep_interruptible(wait, throw_if_interrupted, on_tick=report)


def report_nsfw(task_id: str) -> None:
    """Say in the log and to the panel (a task event) that a task's output was flagged."""
    log.warning("MAGI-1 task %s completed with has_nsfw_contents set by WaveSpeed's content check: "
                "its video may be blanked. It is billed; change the prompt or first frame to get another.",
                task_id)
    events.publish(task_id, "completed", has_nsfw_contents=True)


def _failure_message(prediction: Prediction, others: Sequence[str]) -> str:
    what = prediction.error or "no reason given"
    code = f" (code {prediction.code})" if prediction.code is not None else ""
    text = f"MAGI-1 task {prediction.id} ended '{prediction.status}'{code}: {what}."
    if prediction.code == 1200 or "moderat" in what.lower() or "nsfw" in what.lower():
        text += " The prompt or first frame was refused by moderation; change it and queue again."
    elif prediction.code == 1402:
        text += " The service could not fetch the first frame; queue again to upload it anew."
    else:
        text += " Change the input named in the message if there is one, and queue again."
    if others:
        text += (" Other tasks of this batch were still running and may finish (they are billed): "
                 + ", ".join(others) + ". Paste their ids into Magi1Poll's task_id to collect them.")
    return text


def _timeout_message(pending: Sequence[str], elapsed: float, statuses: dict[str, str]) -> str:
    listed = ", ".join(f"{t} ({statuses.get(t, '?')})" for t in pending)
    return (
        f"Stopped waiting after {elapsed:.0f} s; still not finished: {listed}. The task(s) may still "
        "complete on WaveSpeed and are billed: paste the id(s) into Magi1Poll's task_id (one per "
        "line) to collect the video later, or raise timeout_s."
    )
