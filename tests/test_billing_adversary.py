"""Adversarial billing cases: a slow claim owner, a stale owner's clean-up, two ambiguous submits
on one account. Each is proved from the emulator's own request log or the ledger, over loopback.
"""

import asyncio
import sqlite3
import threading
import time

import pytest

from magi1 import pipeline
from magi1.errors import SubmitReconcileError
from magi1.ledger import Ledger
from magi1.params import build_request
from test_billing import first_frames, make_ctx, run, submits
from test_ledger import race_in_processes


@pytest.fixture
def ctx(emulator_env, tmp_path):
    return make_ctx(tmp_path)


def _expire_every_lease(db_path):
    """What another machine sees when its clock runs ahead of the owner's (or the owner is slow)."""
    with sqlite3.connect(db_path, timeout=10) as db:
        db.execute("UPDATE magi1_tasks SET lease_until = 0 WHERE task_id IS NULL")


def test_a_slow_owner_whose_lease_was_taken_over_does_not_post_too(emulator_env, emulator, tmp_path):
    slow, taker = make_ctx(tmp_path), make_ctx(tmp_path)
    image = first_frames()
    emulator.add_fault("upload", "delay", seconds=1.5)  # only the slow owner's upload
    results = {}

    def slow_owner():
        results["slow"] = run(pipeline.submit(slow, build_request("same", 7), image))

    thread = threading.Thread(target=slow_owner)
    thread.start()
    time.sleep(0.5)  # the slow owner holds the claim and is uploading
    _expire_every_lease(tmp_path / "private" / pipeline.LEDGER_FILE)
    results["taker"] = run(pipeline.submit(taker, build_request("same", 7), image.copy()))
    thread.join(30)
    assert len(submits(emulator)) == 1  # one bill for one request
    assert results["slow"].task_ids == results["taker"].task_ids
    [row] = slow.ledger.list_tasks()
    assert row.task_id == results["taker"].task_ids[0]


def test_a_stale_owner_cleaning_up_never_drops_the_claim_of_its_successor(tmp_path):
    target = tmp_path / "ledger.sqlite3"
    stale, successor = Ledger(target, owner="stale"), Ledger(target, owner="successor")
    won = stale.claim("f", dedupe=True, base_url="", payload={"seed": 1}, lease_s=0.2)
    time.sleep(0.3)
    taken = successor.claim("f", dedupe=True, base_url="", payload={"seed": 1})
    assert taken.won
    stale.drop_unsent(won.record.row_id)  # e.g. the stale owner's Cancel, late
    assert not Ledger(target, owner="third").claim("f", dedupe=True, base_url="", payload={"seed": 1}).won


def test_a_lost_answer_never_adopts_a_task_another_node_is_recording(emulator_env, emulator, tmp_path, monkeypatch):
    """Node B waited in the limiter's queue for minutes, then POSTed (accepted, answer in transit);
    node A's POST gets a 502 that created nothing. The history's one unowned task is B's, not A's."""
    monkeypatch.setattr(pipeline, "RECONCILE_INTERVAL_S", 0.1)
    a_ctx, b_ctx = make_ctx(tmp_path), make_ctx(tmp_path)
    ledger = b_ctx.ledger
    b_request = build_request("b's prompt", 11)
    b_claim = ledger.claim("b", dedupe=True, base_url=b_ctx.settings().base_url, payload=b_request.payload(None))
    with sqlite3.connect(tmp_path / "private" / pipeline.LEDGER_FILE, timeout=10) as db:
        db.execute("UPDATE magi1_tasks SET claimed_at = claimed_at - 300")  # claimed 5 minutes ago
    b_claim = ledger.claim("b", dedupe=True, base_url=b_ctx.settings().base_url, payload=b_request.payload(None))
    ledger.mark_submitting(b_claim.record.row_id, b_request.payload(None), claimed_at=b_claim.record.claimed_at)
    b_task = b_ctx.client().submit(b_request.payload(None))  # accepted; B has not written it yet
    emulator.add_fault("submit", "status", status=502)
    with pytest.raises(SubmitReconcileError) as caught:
        asyncio.run(pipeline.submit(a_ctx, build_request("a's prompt", 12), None))
    assert ledger.get(b_task.id) is None  # A did not take B's task as its own
    assert b_task.id in caught.value.candidates


def test_a_task_posted_by_an_owner_that_died_before_writing_its_id_is_adopted(ctx, emulator, monkeypatch):
    """SIGKILL between the billed POST and the ledger write (seed -1: nobody re-queues the same
    request to take the claim over): the next start finds the task in the history and saves it."""
    from magi1 import adoption

    monkeypatch.setattr(pipeline, "RECONCILE_INTERVAL_S", 0.1)
    request = build_request("x", -1)
    crashed = Ledger(ctx.private_dir / pipeline.LEDGER_FILE, owner="crashed")
    won = crashed.claim("f", dedupe=False, base_url=ctx.settings().base_url, payload=request.payload(None))
    crashed.mark_submitting(won.record.row_id, request.payload(None), lease_s=0.2)
    task = ctx.client().submit(request.payload(None))  # billed; the process dies before recording it
    time.sleep(0.3)
    [path] = adoption.adopt(ctx.output_dir, ctx.private_dir, interval_s=0.2, give_up_after_s=30)
    assert path.is_file() and ctx.ledger.get(task.id).status == "saved"
    assert len(submits(emulator)) == 1


def test_a_late_answer_after_a_takeover_never_overwrites_the_successors_task(tmp_path):
    """The first owner's POST outlived its lease (a slow answer, or a clock behind the others');
    the successor submitted and recorded its task. The late answer's task is paid too: both are kept."""
    target = tmp_path / "ledger.sqlite3"
    slow, successor = Ledger(target, owner="slow"), Ledger(target, owner="successor")
    won = slow.claim("f", dedupe=True, base_url="https://a", payload={"seed": 1}, lease_s=0.2)
    slow.mark_submitting(won.record.row_id, {"seed": 1}, lease_s=0.2)
    time.sleep(0.3)
    taken = successor.claim("f", dedupe=True, base_url="https://a", payload={"seed": 1})
    assert taken.won and taken.takeover
    successor.record_submitted(taken.record.row_id, "t-successor")
    slow.record_submitted(won.record.row_id, "t-late")
    assert successor.get("t-successor") is not None and successor.get("t-late") is not None
    assert successor.find_reusable("f").task_id == "t-successor"


def test_a_machine_whose_clock_runs_ahead_never_takes_over_a_live_claim(postgres_url):
    """Two machines on one PostgreSQL ledger; the second's clock is 10 minutes ahead (no NTP).
    The first holds a live claim (lease 2 minutes): the second waits for it instead of paying."""
    here = Ledger(postgres_url, owner="in-time")
    ahead = Ledger(postgres_url, owner="ahead", clock=lambda: time.time() + 600)
    assert here.claim("f", dedupe=True, base_url="https://a", payload={"seed": 1}, lease_s=120).won
    assert not ahead.claim("f", dedupe=True, base_url="https://a", payload={"seed": 1}).won


def test_a_twin_waiting_on_an_ambiguous_submit_does_not_pay_for_it_again(emulator_env, emulator, tmp_path, monkeypatch):
    """Two identical fixed-seed nodes; the first one's POST is accepted but its answer lost, and the
    history also shows an unrelated task (made on wavespeed.ai, say): the first cannot tell which
    is its own and reports both. The twin must not then submit the same request a second time."""
    monkeypatch.setattr(pipeline, "RECONCILE_INTERVAL_S", 0.1)
    first, twin = make_ctx(tmp_path), make_ctx(tmp_path)
    first.client().submit(build_request("made elsewhere", -1).payload(None))
    emulator.add_fault("submit", "accept_then_500")

    async def both():
        one = asyncio.create_task(pipeline.submit(first, build_request("same", 21), None))
        await asyncio.sleep(0.2)  # the first node holds the claim
        two = asyncio.create_task(pipeline.submit(twin, build_request("same", 21), None))
        return await asyncio.gather(one, two, return_exceptions=True)

    outcomes = run(both())
    assert all(isinstance(o, SubmitReconcileError) for o in outcomes)
    assert len(submits(emulator)) == 2  # the unrelated task and the first node's: nothing paid twice


def _submit_in_process(private, output, start, queue):
    import numpy as np

    start.wait(20)
    context = pipeline.Context(output_dir=output, private_dir=private)
    image = np.random.default_rng(0).random((1, 64, 96, 3), dtype=np.float32)
    queue.put(asyncio.run(pipeline.submit(context, build_request("same", 31), image)).task_ids)


def test_two_processes_on_one_sqlite_ledger_submit_a_fixed_seed_request_once(emulator_env, emulator, tmp_path):
    pipeline.ledger_for(tmp_path / "private")  # the schema exists before the race
    ids = race_in_processes(_submit_in_process, [(tmp_path / "private", tmp_path / "output")] * 2, settle_s=1.5)
    assert ids[0] == ids[1] and len(submits(emulator)) == 1


def test_one_stray_404_does_not_kill_a_running_paid_task(ctx, emulator, monkeypatch):
    """A single 404 on a poll (a proxy's hiccup, a replica that has not seen the task yet) while
    the task runs: the task is not marked dead, its video is saved, re-queuing costs nothing."""
    monkeypatch.setattr(pipeline, "NOT_FOUND_RECHECK_S", 0.2)
    task = run(pipeline.submit(ctx, build_request("x", 41), None))
    emulator.add_fault("result", "status", status=404, message="prediction not found")
    [(_, path)] = run(pipeline.wait_and_save(ctx, task.task_ids, timeout_s=60, interval_s=0.2))
    assert path.is_file() and ctx.ledger.get(task.task_ids[0]).status == "saved"
    again = run(pipeline.submit(ctx, build_request("x", 41), None))
    assert again.task_ids == task.task_ids and len(submits(emulator)) == 1


def test_a_task_whose_post_was_on_the_wire_at_cancel_is_saved_in_the_background(ctx, emulator, monkeypatch):
    """Cancel while the billed POST is out: the task exists and is paid; nobody will Poll it. Its
    video is saved under output/magi1/ without a restart or a re-queue."""
    from magi1 import adoption

    monkeypatch.setattr(adoption, "POLL_INTERVAL_S", 0.2)
    emulator.add_fault("submit", "accept_then_delay", seconds=1.0)
    ctx.cancel.press_after(0.3)
    with pytest.raises(Exception):  # noqa: B017 - ComfyUI's interrupt, whatever its class
        run(pipeline.submit(ctx, build_request("x", -1), None))
    deadline = time.monotonic() + 20
    while not list(ctx.video_dir.glob("magi1_*.mp4")) and time.monotonic() < deadline:
        time.sleep(0.2)
    [task] = emulator.tasks()
    assert (ctx.video_dir / f"magi1_{task['id']}.mp4").is_file()
