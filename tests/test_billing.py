"""Never pay twice: what each submit outcome costs, proved from the emulator's own request log.

The recipe runs without ComfyUI over real HTTP against the emulator, with the ledger on disk.
"""

import asyncio
import threading
import time

import numpy as np
import pytest

from magi1 import adoption, client as client_module, pipeline
from magi1.errors import (
    InvalidRequestError,
    SpendLimitError,
    SubmitReconcileError,
    TaskNotFoundError,
)
from magi1.params import build_request
from recipe_support import Cancelled, make_ctx, run, submits


@pytest.fixture
def ctx(emulator_env, tmp_path):
    return make_ctx(tmp_path)


def first_frames(batch=1, seed=0):
    return np.random.default_rng(seed).random((batch, 64, 96, 3), dtype=np.float32)


def accepted(emulator):
    """Submits that created a task: answered 200, or lost after the task was made."""
    return [e for e in submits(emulator) if e["status"] == 200 or str(e.get("fault", "")).startswith("accept")]


def test_two_identical_nodes_in_one_prompt_post_once(ctx, emulator, tmp_path):
    image = first_frames()
    other_node = make_ctx(tmp_path)

    async def both():
        return await asyncio.gather(
            pipeline.submit(ctx, build_request("same", 5), image),
            pipeline.submit(other_node, build_request("same", 5), image.copy()),
        )

    a, b = run(both())
    assert a.task_ids == b.task_ids and sorted(a.reused + b.reused) == [False, True]
    assert len(submits(emulator)) == 1 and len(emulator.uploads) == 1


def test_429_twice_waits_retry_after_and_posts_once_accepted(ctx, emulator):
    emulator.add_fault("submit", "rate_limit", retry_after=1, count=2)
    started = time.monotonic()
    task = run(pipeline.submit(ctx, build_request("x", 1), None))
    assert time.monotonic() - started >= 2.0
    assert [e["status"] for e in submits(emulator)] == [429, 429, 200]
    assert [t["id"] for t in emulator.tasks()] == list(task.task_ids)


@pytest.mark.parametrize("text", ["nan", "-5", "inf", "soon"])
def test_a_nonsense_retry_after_neither_hangs_nor_spins(ctx, emulator, monkeypatch, text):
    monkeypatch.setattr(client_module, "DEFAULT_SUBMIT_RETRY_S", 0.5)
    emulator.add_fault("submit", "rate_limit", retry_after_text=text)
    run(pipeline.submit(ctx, build_request("x", 1), None))
    assert [e["status"] for e in submits(emulator)] == [429, 200]


def test_a_batch_of_five_under_two_submits_a_window_all_succeed(ctx, emulator):
    emulator.configure(submit_limit=2, submit_window=1.0)
    task = run(pipeline.submit(ctx, build_request("x", -1), first_frames(batch=5)))
    saved = run(pipeline.wait_and_save(ctx, task.task_ids, timeout_s=60, interval_s=0.2))
    assert len(set(task.task_ids)) == 5 and len(saved) == 5
    assert len([e for e in submits(emulator) if e["status"] == 200]) == 5


@pytest.mark.parametrize("kind", ["accept_then_500", "accept_then_drop", "accept_then_html"])
def test_an_accepted_submit_whose_answer_is_lost_is_found_in_the_history(ctx, emulator, kind):
    emulator.add_fault("submit", kind)
    task = run(pipeline.submit(ctx, build_request("x", 3), None))
    [(_, path)] = run(pipeline.wait_and_save(ctx, task.task_ids, timeout_s=60, interval_s=0.2))
    assert path.is_file() and len(submits(emulator)) == 1
    assert [t["id"] for t in emulator.tasks()] == list(task.task_ids)
    again = run(pipeline.submit(ctx, build_request("x", 3), None))
    assert again.task_ids == task.task_ids and len(submits(emulator)) == 1


def test_a_lost_answer_with_nothing_created_is_reported_and_not_resent(ctx, emulator, monkeypatch):
    monkeypatch.setattr(pipeline, "RECONCILE_INTERVAL_S", 0.1)
    emulator.add_fault("submit", "status", status=502)
    with pytest.raises(SubmitReconcileError, match="Queue again"):
        run(pipeline.submit(ctx, build_request("x", 3), None))
    assert len(submits(emulator)) == 1 and emulator.tasks() == []
    run(pipeline.submit(ctx, build_request("x", 3), None))  # the claim was released: submits anew
    assert len(submits(emulator)) == 2


def test_cancel_in_run_one_does_not_break_run_two_upload_retries(emulator_env, emulator, tmp_path):
    first = make_ctx(tmp_path)
    emulator.add_fault("upload", "delay", seconds=1.0)
    first.cancel.press_after(0.2)
    with pytest.raises(Cancelled):
        run(pipeline.submit(first, build_request("x", 1), first_frames()))
    time.sleep(1.2)
    second = make_ctx(tmp_path)
    emulator.add_fault("upload", "status", status=503)
    task = run(pipeline.submit(second, build_request("y", 1), first_frames(seed=1)))
    assert len(task.task_ids) == 1 and len(submits(emulator)) == 1


def test_cancel_during_a_batch_posts_nothing_after_it(ctx, emulator):
    emulator.add_fault("upload", "delay", seconds=1.0, count=4)
    ctx.cancel.press_after(0.3)
    with pytest.raises(Cancelled):
        run(pipeline.submit(ctx, build_request("x", -1), first_frames(batch=4)))
    time.sleep(1.5)  # the uploads finish in their threads: none may go on to the billed POST
    assert submits(emulator) == []
    assert ctx.ledger.list_tasks() == []  # unsent claims leave no trace


def test_97_first_frames_are_refused_before_any_request(ctx, emulator):
    with pytest.raises(SpendLimitError, match=r"97 billed.*MAGI1_MAX_TASKS_PER_RUN"):
        run(pipeline.submit(ctx, build_request("x", -1), first_frames(batch=97)))
    assert emulator.journal() == []


def test_the_spend_guard_counts_every_node_of_one_queued_prompt(emulator_env, emulator, tmp_path, monkeypatch):
    monkeypatch.setenv("MAGI1_MAX_TASKS_PER_RUN", "4")
    run(pipeline.submit(make_ctx(tmp_path, "prompt-1"), build_request("a", -1), first_frames(batch=3)))
    with pytest.raises(SpendLimitError, match="3 already created"):
        run(pipeline.submit(make_ctx(tmp_path, "prompt-1"), build_request("b", -1), first_frames(batch=2)))
    run(pipeline.submit(make_ctx(tmp_path, "prompt-2"), build_request("b", -1), first_frames(batch=2)))
    assert len(submits(emulator)) == 5 and len(emulator.uploads) == 5


def test_a_batch_failing_part_way_names_the_billed_ids(ctx, emulator):
    emulator.configure(latency=0.5)
    emulator.add_fault("submit", "status", status=400, message="prompt refused")
    with pytest.raises(InvalidRequestError) as caught:
        run(pipeline.submit(ctx, build_request("x", -1), first_frames(batch=3)))
    created = [t["id"] for t in emulator.tasks()]
    message = str(caught.value)
    assert len(created) == 2 and all(task_id in message for task_id in created)
    assert "nothing was billed" not in message.lower()


def test_a_reused_task_the_service_forgot_is_marked_dead_and_submitted_afresh(ctx, emulator):
    task = run(pipeline.submit(ctx, build_request("x", 9), None))
    emulator.reset()  # the service no longer knows it (7 days later, another account...)
    with pytest.raises(TaskNotFoundError, match="marked dead"):
        run(pipeline.wait_and_save(ctx, task.task_ids, timeout_s=30, interval_s=0.2))
    assert ctx.ledger.get(task.task_ids[0]).status == "dead"
    again = run(pipeline.submit(ctx, build_request("x", 9), None))
    assert again.task_ids != task.task_ids and again.reused == (False,)


def test_a_failure_changes_the_cache_generation_so_comfyui_reruns_submit(ctx, emulator):
    emulator.add_fault("submit", "fail_task")
    before = pipeline.failure_generation()
    task = run(pipeline.submit(ctx, build_request("x", 2), None))
    with pytest.raises(Exception, match="failed"):
        run(pipeline.wait_and_save(ctx, task.task_ids, timeout_s=30, interval_s=0.2))
    assert pipeline.failure_generation() != before


def test_adoption_saves_a_submitted_task_nobody_waits_for(ctx, emulator):
    task = run(pipeline.submit(ctx, build_request("x", 4), None))
    [path] = adoption.adopt(ctx.output_dir, ctx.private_dir, interval_s=0.2, give_up_after_s=30)
    assert path.is_file() and path.parent == ctx.video_dir
    assert ctx.ledger.get(task.task_ids[0]).status == "saved"
    before = len(emulator.journal())
    [(_, again)] = run(pipeline.wait_and_save(ctx, task.task_ids, timeout_s=30, interval_s=0.2))
    assert again == path and len(emulator.journal()) == before  # re-queuing costs nothing


def test_a_429_is_shared_so_other_submits_wait_instead_of_hammering(ctx, emulator, tmp_path):
    from datetime import datetime

    emulator.add_fault("submit", "rate_limit", retry_after=2)
    other_node = make_ctx(tmp_path)

    async def both():
        first = asyncio.create_task(pipeline.submit(ctx, build_request("a", -1), None))
        await asyncio.sleep(0.5)  # the 429 has been seen by now
        second = await pipeline.submit(other_node, build_request("b", -1), None)
        return await first, second

    run(both())
    log = submits(emulator)
    assert [e["status"] for e in log] == [429, 200, 200]
    times = [datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp() for e in log]
    assert min(times[1:]) - times[0] >= 1.9  # neither submit went out before Retry-After passed


def test_an_explicit_running_cap_queues_the_batch_and_shows_its_place(emulator_env, emulator, tmp_path, monkeypatch):
    monkeypatch.setenv("MAGI1_ACCOUNT_MAX_RUNNING", "1")
    monkeypatch.setattr("magi1.limiter.REFRESH_S", 0.2)
    emulator.set_latency(0.5)
    shown = []
    context = make_ctx(tmp_path)
    context.on_submit_status = shown.append
    task = run(pipeline.submit(context, build_request("x", -1), first_frames(batch=2)))
    assert len(set(task.task_ids)) == 2
    assert any("waiting for a slot" in text and "1 of 1 running" in text for text in shown)
    first, second = sorted(emulator.tasks(), key=lambda t: t["created_at"])
    assert emulator.wait_for_task(first["id"])["status"] == "completed"


def test_no_limit_set_means_no_wait(ctx, emulator):
    emulator.set_latency(2.0)
    shown = []
    ctx.on_submit_status = shown.append
    started = time.monotonic()
    run(pipeline.submit(ctx, build_request("x", -1), first_frames(batch=4)))
    assert shown == [] and time.monotonic() - started < 2.0


def test_a_ledger_write_failing_after_the_billed_post_names_the_task(ctx, emulator):
    import sqlite3

    from magi1.errors import LedgerWriteError

    emulator.add_fault("submit", "delay", seconds=1.0)  # the POST is on the wire for a second
    db_path = ctx.private_dir / pipeline.LEDGER_FILE

    def break_the_ledger():
        time.sleep(0.5)
        with sqlite3.connect(db_path, timeout=10) as db:
            db.execute("ALTER TABLE magi1_tasks RENAME TO magi1_tasks_gone")

    breaker = threading.Thread(target=break_the_ledger)
    breaker.start()
    with pytest.raises(LedgerWriteError) as caught:
        run(pipeline.submit(ctx, build_request("x", 1), None))
    breaker.join()
    [task] = emulator.tasks()
    assert caught.value.task_id == task["id"] and task["id"] in str(caught.value)
    assert "Magi1Poll" in str(caught.value)


def test_a_poll_that_gives_up_hands_its_tasks_to_the_background_adoption(ctx, emulator, monkeypatch):
    from magi1.errors import TaskTimeoutError

    monkeypatch.setattr(adoption, "POLL_INTERVAL_S", 0.2)
    emulator.set_latency(2.0)
    task = run(pipeline.submit(ctx, build_request("x", 6), None))
    with pytest.raises(TaskTimeoutError):
        run(pipeline.wait_and_save(ctx, task.task_ids, timeout_s=0.5, interval_s=0.2))
    deadline = time.monotonic() + 20
    while ctx.ledger.get(task.task_ids[0]).status != "saved" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (ctx.video_dir / f"magi1_{task.task_ids[0]}.mp4").is_file()
