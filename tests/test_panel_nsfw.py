"""A completed task whose output WaveSpeed flagged (`has_nsfw_contents`) says so: on the prediction,
in the wait's snapshot (the node's status text), in the log, and as a task event for the panel."""
import asyncio
import logging

from magi1 import events
from magi1.client import Prediction
from magi1.poller import wait_for_tasks


def completed(task_id, flags):
    return Prediction.from_data({"id": task_id, "status": "completed", "outputs": [f"https://x/{task_id}.mp4"],
                                 "has_nsfw_contents": flags})


def test_the_flag_is_read_from_the_per_output_list_the_service_sends():
    assert completed("a", [False]).has_nsfw_contents is False
    assert completed("b", [False, True]).has_nsfw_contents is True
    assert completed("c", []).has_nsfw_contents is False
    assert completed("d", True).has_nsfw_contents is True
    assert completed("e", "true").has_nsfw_contents is False  # only a real boolean counts
    assert Prediction.from_data({"id": "f", "status": "processing"}).has_nsfw_contents is False


def wait(predictions):
    seen = []
    result = asyncio.run(wait_for_tasks(
        lambda task_id: predictions[task_id], list(predictions), timeout_s=10, interval_s=0.1,
        throw_if_interrupted=lambda: None, on_update=seen.append))
    return result, seen[-1]


def test_a_flagged_task_is_named_in_the_snapshot_the_node_shows():
    _, snapshot = wait({"t1": completed("t1", [True]), "t2": completed("t2", [False])})
    assert snapshot.nsfw_task_ids == ["t1"]
    assert "NSFW" in snapshot.nsfw_notice() and "t1" in snapshot.nsfw_notice() and "t2" not in snapshot.nsfw_notice()


def test_an_unflagged_wait_has_no_notice():
    _, snapshot = wait({"t3": completed("t3", [False])})
    assert snapshot.nsfw_task_ids == [] and snapshot.nsfw_notice() == ""


def test_a_flagged_task_is_logged_and_published_for_the_panel(caplog):
    published = []
    unsubscribe = events.subscribe(published.append)
    try:
        with caplog.at_level(logging.WARNING, logger="magi1.poller"):
            wait({"t4": completed("t4", [True])})
    finally:
        unsubscribe()
    assert any("t4" in r.getMessage() and "has_nsfw_contents" in r.getMessage() for r in caplog.records)
    assert {"task_id": "t4", "status": "completed", "has_nsfw_contents": True} in published
