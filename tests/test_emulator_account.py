"""The emulator's account-level behaviour: history, balance, rate limit, concurrency cap, lost answers."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import requests

from tools.wavespeed_emulator import EmulatorAdmin, EmulatorServer, FaultSpecError

MAGI1 = "/api/v3/wavespeed-ai/magi-1-24b"


@pytest.fixture
def api(emulator: EmulatorServer) -> requests.Session:
    with requests.Session() as session:
        session.headers.update(emulator.auth_headers())
        yield session


def submit(api: requests.Session, emulator: EmulatorServer, **body: object) -> requests.Response:
    return api.post(f"{emulator.base_url}{MAGI1}", json={"prompt": "a ball", **body}, timeout=10)


def history(api: requests.Session, emulator: EmulatorServer, **body: object) -> dict:
    answer = api.post(f"{emulator.base_url}/api/v3/predictions", json={"page": 1, "page_size": 50, **body})
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat()


def test_history_lists_predictions_newest_first_with_the_documented_fields(api, emulator):
    first = submit(api, emulator).json()["data"]["id"]
    second = submit(api, emulator).json()["data"]["id"]

    data = history(api, emulator, model="wavespeed-ai/magi-1-24b")

    assert [item["id"] for item in data["items"]] == [second, first]
    assert data["total"] == 2 and data["page"] == 1
    item = data["items"][0]
    assert {
        "id",
        "model",
        "outputs",
        "urls",
        "has_nsfw_contents",
        "status",
        "created_at",
        "error",
        "executionTime",
        "timings",
    } <= set(item)


def test_history_filters_by_creation_time_model_and_pages(api, emulator):
    submit(api, emulator)
    time.sleep(0.05)
    cut = time.time()
    time.sleep(0.05)
    later = [submit(api, emulator).json()["data"]["id"] for _ in range(3)]

    after = history(api, emulator, created_after=iso(cut))
    other_model = history(api, emulator, model="someone/else")
    page2 = history(api, emulator, created_after=iso(cut), page=2, page_size=2)

    assert [item["id"] for item in after["items"]] == later[::-1]
    assert other_model["items"] == [] and other_model["total"] == 0
    assert [item["id"] for item in page2["items"]] == [later[0]]


def test_history_refuses_a_bad_page_size(api, emulator):
    answer = api.post(f"{emulator.base_url}/api/v3/predictions", json={"page": 1, "page_size": 101})
    assert answer.status_code == 400


def test_balance_defaults_to_100_and_is_settable_over_the_admin_api(api, emulator):
    url = f"{emulator.base_url}/api/v3/balance"
    assert api.get(url).json()["data"]["balance"] == 100.0

    EmulatorAdmin(emulator.base_url).configure(balance=12.5)

    assert api.get(url).json() == {"code": 200, "message": "success", "data": {"balance": 12.5}}
    assert requests.get(url).status_code == 401


def test_submit_rate_limit_answers_429_with_retry_after_and_creates_nothing(api, emulator):
    emulator.configure(submit_limit=2, submit_window=1.5)

    answers = [submit(api, emulator) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 2
    assert len(emulator.tasks()) == 2
    time.sleep(float(answers[2].headers["Retry-After"]))
    assert submit(api, emulator).status_code == 200


def test_concurrency_cap_keeps_extra_tasks_created_until_a_slot_frees(api, emulator):
    emulator.configure(max_running=1, latency=0.6)
    first = submit(api, emulator).json()["data"]["id"]
    second = submit(api, emulator).json()["data"]["id"]

    time.sleep(0.3)
    assert emulator.task(first)["status"] == "processing"
    assert emulator.task(second)["status"] == "created"
    assert emulator.wait_for_task(first)["status"] == "completed"
    assert emulator.wait_for_task(second, timeout=10)["status"] == "completed"


@pytest.mark.parametrize("kind", ["accept_then_drop", "accept_then_html", "accept_then_500"])
def test_lost_answers_still_create_a_billed_task(api, emulator, kind):
    emulator.add_fault("submit", kind)

    try:
        answer = submit(api, emulator)
        lost = answer.status_code >= 500
    except requests.ConnectionError:
        lost = True

    assert lost
    [task] = emulator.tasks()
    assert emulator.wait_for_task(task["id"])["status"] == "completed"
    [entry] = [e for e in emulator.journal() if e["route"] == "submit"]
    assert entry["fault"] == kind


def test_rate_limit_fault_answers_429_on_submit_with_the_given_retry_after_text(api, emulator):
    emulator.add_fault("submit", "rate_limit", retry_after_text="nan")

    answer = submit(api, emulator)

    assert answer.status_code == 429 and answer.headers["Retry-After"] == "nan"
    assert emulator.tasks() == []
    with pytest.raises(FaultSpecError):
        emulator.add_fault("result", "rate_limit")


def test_reuse_renders_serves_one_render_to_every_task_of_the_same_shape(api, emulator):
    emulator.configure(reuse_renders=True, latency=0.2)
    ids = [submit(api, emulator, seed=n).json()["data"]["id"] for n in range(3)]

    finals = [emulator.wait_for_task(task_id) for task_id in ids]

    assert [f["status"] for f in finals] == ["completed"] * 3
    videos = [requests.get(f["outputs"][0]).content for f in finals]
    assert videos[0] == videos[1] == videos[2] and len(videos[0]) > 0
