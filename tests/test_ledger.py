"""The ledger remembers every paid task across restarts, never the key."""
from magi1.ledger import Ledger, fingerprint


def payload(seed=5, prompt="a"):
    return {"prompt": prompt, "seed": seed, "enable_safety_checker": True}


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


def test_a_recorded_task_survives_reopening_the_database(tmp_path):
    db = tmp_path / "tasks.sqlite3"
    Ledger(db).record_submission("t1", fingerprint="f1", base_url="https://a", payload=payload(), status="created")
    record = Ledger(db).get("t1")
    assert record.task_id == "t1" and record.seed == 5 and record.request == payload()


def test_a_failed_task_is_not_offered_for_reuse(tmp_path):
    ledger = Ledger(tmp_path / "db")
    ledger.record_submission("t1", fingerprint="f", base_url="", payload=payload(), status="created")
    assert ledger.find_reusable("f").task_id == "t1"
    ledger.update_status("t1", "failed", error="boom")
    assert ledger.find_reusable("f") is None


def test_the_newest_reusable_task_wins(tmp_path):
    ledger = Ledger(tmp_path / "db")
    ledger.record_submission("old", fingerprint="f", base_url="", payload=payload(), status="created")
    ledger.record_submission("new", fingerprint="f", base_url="", payload=payload(), status="created")
    assert ledger.find_reusable("f").task_id == "new"


def test_a_saved_video_is_found_by_its_url_and_only_while_the_file_exists(tmp_path):
    ledger = Ledger(tmp_path / "db")
    ledger.record_submission("t1", fingerprint=None, base_url="", payload={}, status="created")
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\0\0\0\x18ftypisom")
    ledger.record_video("t1", "https://cdn/x.mp4", video)
    assert ledger.find_by_video_url("https://cdn/x.mp4").saved_video == video
    video.unlink()
    assert ledger.find_by_video_url("https://cdn/x.mp4").saved_video is None


def test_the_ledger_never_stores_a_key(tmp_path, monkeypatch):
    monkeypatch.setenv("WAVESPEED_API_KEY", "sk-ledger-secret-9999")
    ledger = Ledger(tmp_path / "db")
    ledger.record_submission("t1", fingerprint="f", base_url="https://a", payload=payload(), status="created")
    ledger.update_status("t1", "completed", video_url="https://cdn/x.mp4")
    for path in tmp_path.iterdir():
        assert b"ledger-secret" not in path.read_bytes()
