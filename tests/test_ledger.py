"""The ledger claims a request before it is paid for, remembers every paid task, never the key.

Each claim test runs on SQLite (the default) and on a real PostgreSQL server (a farm's ledger).
"""

import multiprocessing
import threading
import time

import pytest

from magi1 import events
from magi1.ledger import Ledger, fingerprint


def payload(seed=5, prompt="a"):
    return {"prompt": prompt, "seed": seed, "enable_safety_checker": True}


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "tasks.sqlite3")
    return request.getfixturevalue("postgres_url")


def claim(ledger, key="f", dedupe=True, run_id=None, lease_s=120.0):
    return ledger.claim(key, dedupe=dedupe, base_url="https://a", payload=payload(), run_id=run_id, lease_s=lease_s)


def test_the_fingerprint_ignores_the_uploaded_image_url_but_not_the_pixels():
    base = "http://127.0.0.1:1"
    a = fingerprint(base, {**payload(), "image": "http://127.0.0.1:1/media/1/a.png"}, "px1")
    b = fingerprint(base, {**payload(), "image": "http://127.0.0.1:1/media/2/a.png"}, "px1")
    c = fingerprint(base, payload(), "px2")
    assert a == b != c


def test_the_fingerprint_changes_with_prompt_seed_and_service():
    base = fingerprint("https://a", payload(), None)
    assert base != fingerprint("https://a", payload(seed=6), None)
    assert base != fingerprint("https://a", payload(prompt="b"), None)
    assert base != fingerprint("https://b", payload(), None)


def test_a_recorded_task_survives_reopening_the_database(target):
    Ledger(target).record_submission("t1", fingerprint="f1", base_url="https://a", payload=payload(), status="created")
    record = Ledger(target).get("t1")
    assert record.task_id == "t1" and record.seed == 5 and record.request == payload()


def test_the_first_claim_wins_and_the_second_sees_the_winner(target):
    first, second = Ledger(target, owner="a"), Ledger(target, owner="b")
    won = claim(first)
    lost = claim(second)
    assert won.won and not lost.won
    assert lost.record.row_id == won.record.row_id and lost.record.task_id is None
    first.mark_submitting(won.record.row_id, payload())
    first.record_submitted(won.record.row_id, "t1")
    assert claim(second).record.task_id == "t1"


def test_exactly_one_of_many_concurrent_claims_wins(target):
    ledgers = [Ledger(target, owner=f"o{i}") for i in range(8)]
    barrier = threading.Barrier(len(ledgers))
    results = []

    def contend(ledger):
        barrier.wait()
        results.append(claim(ledger).won)

    threads = [threading.Thread(target=contend, args=(ledger,)) for ledger in ledgers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == [False] * 7 + [True]


def race_in_processes(target, arg_tuples, settle_s=1.0):
    """Start one spawned process per args (each gets `start`, `queue` last), release them at once
    when all are up, and return what each put on the queue."""
    spawn = multiprocessing.get_context("spawn")
    start, queue = spawn.Event(), spawn.Queue()
    procs = [spawn.Process(target=target, args=(*args, start, queue)) for args in arg_tuples]
    for proc in procs:
        proc.start()
    time.sleep(settle_s)
    start.set()
    results = [queue.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(30)
    return results


def _claim_in_process(target, owner, start, queue):
    start.wait(10)
    queue.put(Ledger(target, owner=owner).claim("f", dedupe=True, base_url="", payload={"seed": 1}).won)


def test_exactly_one_of_several_processes_wins(target):
    Ledger(target).dispose()  # schema created once, before the race
    wins = race_in_processes(_claim_in_process, [(target, f"p{i}") for i in range(4)])
    assert sorted(wins) == [False, False, False, True]


def test_a_claim_whose_lease_ran_out_is_taken_over(target):
    crashed, survivor = Ledger(target, owner="crashed"), Ledger(target, owner="survivor")
    assert claim(crashed, lease_s=0.2).won
    assert not claim(survivor).won
    time.sleep(0.3)
    taken = claim(survivor)
    assert taken.won and taken.record.owner == "survivor" and not taken.takeover


def test_a_takeover_after_the_post_may_have_left_asks_to_reconcile(target):
    crashed, survivor = Ledger(target, owner="crashed"), Ledger(target, owner="survivor")
    won = claim(crashed, lease_s=0.2)
    crashed.mark_submitting(won.record.row_id, payload(), lease_s=0.2)
    time.sleep(0.3)
    assert claim(survivor).takeover


def test_seed_minus_one_claims_never_dedupe(target):
    ledger = Ledger(target)
    assert claim(ledger, dedupe=False).won and claim(ledger, dedupe=False).won


def test_a_failed_task_releases_its_claim(target):
    ledger = Ledger(target)
    won = claim(ledger)
    ledger.record_submitted(won.record.row_id, "t1")
    ledger.update_status("t1", "failed", error="boom")
    again = claim(ledger)
    assert again.won and again.record.row_id != won.record.row_id


def test_a_dead_task_releases_its_claim_and_says_why(target):
    ledger = Ledger(target)
    won = claim(ledger)
    ledger.record_submitted(won.record.row_id, "t1")
    ledger.mark_dead("t1", "unknown to the service")
    assert ledger.get("t1").status == "dead" and claim(ledger).won


def test_an_unsent_claim_is_dropped_without_a_trace(target):
    ledger = Ledger(target)
    won = claim(ledger)
    ledger.drop_unsent(won.record.row_id)
    assert ledger.list_tasks() == [] and claim(ledger).won


def test_every_state_change_is_published(target):
    seen = []
    unsubscribe = events.subscribe(seen.append)
    try:
        ledger = Ledger(target)
        won = claim(ledger)
        ledger.mark_submitting(won.record.row_id, payload())
        ledger.record_submitted(won.record.row_id, "t1")
        ledger.update_status("t1", "completed", video_url="https://cdn/x.mp4")
        ledger.record_video("t1", "https://cdn/x.mp4", "/tmp/x.mp4")
    finally:
        unsubscribe()
    assert [e["status"] for e in seen] == ["claimed", "submitting", "submitted", "completed", "saved"]
    assert [e["task_id"] for e in seen][2:] == ["t1"] * 3


def test_the_run_count_is_what_the_spend_guard_reads(target):
    ledger = Ledger(target)
    for n in range(3):
        claim(ledger, key=f"k{n}", run_id="prompt-1")
    claim(ledger, key="other", run_id="prompt-2")
    assert ledger.count_run("prompt-1") == 3


def test_unsaved_tasks_are_listed_for_adoption(target):
    ledger = Ledger(target)
    for n, status in enumerate(["processing", "saved", "failed", "completed"]):
        won = claim(ledger, key=f"k{n}")
        ledger.record_submitted(won.record.row_id, f"t{n}")
        ledger.update_status(f"t{n}", status)
    assert [r.task_id for r in ledger.unsaved(newer_than=0)] == ["t0", "t3"]


def test_list_tasks_pages_newest_first(target):
    ledger = Ledger(target)
    for n in range(5):
        ledger.record_submission(f"t{n}", fingerprint=None, base_url="", payload={}, status="submitted")
        time.sleep(0.01)
    first = ledger.list_tasks(limit=2)
    rest = ledger.list_tasks(limit=10, before=first[-1].submitted_at)
    assert [r.task_id for r in first + rest] == ["t4", "t3", "t2", "t1", "t0"]
    assert ledger.count_since(0) == 5


def test_a_saved_video_is_found_by_its_url_and_only_while_the_file_exists(tmp_path):
    ledger = Ledger(tmp_path / "db")
    ledger.record_submission("t1", fingerprint=None, base_url="", payload={}, status="created")
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\0\0\0\x18ftypisom")
    ledger.record_video("t1", "https://cdn/x.mp4", video)
    assert ledger.find_by_video_url("https://cdn/x.mp4").saved_video == video
    video.unlink()
    assert ledger.find_by_video_url("https://cdn/x.mp4").saved_video is None


def test_rows_of_the_first_ledger_format_are_carried_over(tmp_path):
    import sqlite3

    path = tmp_path / "tasks.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE tasks (task_id TEXT PRIMARY KEY, fingerprint TEXT, base_url TEXT, request_json TEXT, "
            "seed INTEGER, status TEXT, error TEXT, video_url TEXT, video_path TEXT, inference_ms INTEGER, "
            "submitted_at REAL, updated_at REAL);"
            "INSERT INTO tasks VALUES ('old1', 'f', '', '{}', 5, 'completed', '', 'u', '/x.mp4', 10, 1.0, 2.0);"
        )
    assert Ledger(path).get("old1").status == "saved"


def test_the_ledger_never_stores_a_key(tmp_path, monkeypatch):
    monkeypatch.setenv("WAVESPEED_API_KEY", "sk-ledger-secret-9999")
    ledger = Ledger(tmp_path / "db")
    ledger.record_submission("t1", fingerprint="f", base_url="https://a", payload=payload(), status="created")
    ledger.update_status("t1", "completed", video_url="https://cdn/x.mp4")
    for path in tmp_path.iterdir():
        assert b"ledger-secret" not in path.read_bytes()


def test_ledgers_opened_at_the_same_moment_on_a_fresh_database_all_work(target):
    barrier = threading.Barrier(6)
    opened, errors = [], []

    def open_and_claim(n):
        barrier.wait()
        try:
            opened.append(Ledger(target, owner=f"o{n}").claim("same", dedupe=True, base_url="", payload={}).won)
        except Exception as exc:  # noqa: BLE001 - collected and shown below
            errors.append(exc)

    threads = [threading.Thread(target=open_and_claim, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and sorted(opened) == [False] * 5 + [True]
