"""How the panel names a ledger task: the ledger's statuses (the service's and the pack's own)
as the states a user reads, and a saved clip counted only when its file is under output/magi1."""
import time

import pytest

from magi1 import panel_routes
from magi1.ledger import TaskRecord


def record(status, video_path=None, **request):
    now = time.time()
    return TaskRecord(task_id="t1", fingerprint=None, base_url="http://x", request=request, seed=5,
                      status=status, error="", video_url=None, video_path=video_path, inference_ms=None,
                      submitted_at=now - 30, updated_at=now)


@pytest.mark.parametrize(("status", "state"), [
    ("claimed", "waiting"), ("submitting", "submitting"),
    ("submitted", "running"), ("created", "running"), ("processing", "running"),
    ("completed", "completed"), ("saved", "completed"),
    ("failed", "failed"), ("dead", "dead"), ("cancelled", "cancelled"),
])
def test_each_ledger_status_has_the_panel_s_state(tmp_path, status, state):
    row = panel_routes.task_row(record(status), tmp_path)
    assert row["state"] == state and row["status"] == status


def test_a_completed_task_with_its_file_under_output_magi1_is_saved(tmp_path):
    clip = tmp_path / "magi1" / "magi1_t1.mp4"
    clip.parent.mkdir()
    clip.write_bytes(b"\0")
    row = panel_routes.task_row(record("completed", str(clip), prompt="p" * 500, resolution="720p"), tmp_path)
    assert row["state"] == "saved" and row["can_collect"] is False
    assert row["video"] == {"filename": "magi1_t1.mp4", "subfolder": "magi1", "type": "output"}
    assert row["resolution"] == "720p" and len(row["prompt"]) == panel_routes.PROMPT_EXCERPT_CHARS + 1
    assert row["took_s"] == pytest.approx(30, abs=0.2)


def test_a_completed_task_whose_file_is_gone_can_be_collected(tmp_path):
    row = panel_routes.task_row(record("completed", str(tmp_path / "magi1" / "gone.mp4")), tmp_path)
    assert row["state"] == "completed" and row["can_collect"] is True and row["video"] is None


def test_a_failed_or_waiting_task_offers_no_collect(tmp_path):
    assert panel_routes.task_row(record("failed"), tmp_path)["can_collect"] is False
    assert panel_routes.task_row(record("claimed"), tmp_path)["can_collect"] is False
    assert panel_routes.task_row(record("processing"), tmp_path)["took_s"] is None
