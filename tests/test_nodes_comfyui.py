"""The three nodes inside a real ComfyUI (0.3.75 and 0.33.0), against the emulator: the public
contract, errors before billing, Cancel, failures that name the task, resuming by id, and no key
anywhere."""
import json
from datetime import datetime
import sqlite3
import threading
import time

import pytest
from tools.comfyui_harness import PromptFailed, PromptInterrupted, PromptRejected

from tools.wavespeed_emulator import EmulatorServer

CATEGORY = "WaveSpeed/MAGI-1"


@pytest.fixture
def env(comfyui):
    comfyui.emulator.reset()
    comfyui.server.clear_cache()
    return comfyui


_seeds = iter(range(1000, 10**6))


def magi1_graph(*, prompt="a kite over a beach", seed=None, image=True, batch=1, load=True,
                timeout_s=120, interval=0.2, task_id=None, extra=None):
    """An API-format graph: EmptyImage → Magi1Submit → Magi1Poll → Magi1LoadVideo → PreviewImage."""
    seed = next(_seeds) if seed is None else seed
    graph = {}
    if task_id is None:
        submit_inputs = {"prompt": prompt, "seed": seed, "resolution": "480p", **(extra or {})}
        if image:
            graph["img"] = {"class_type": "EmptyImage",
                            "inputs": {"width": 320, "height": 240, "batch_size": batch, "color": 0x3366AA}}
            submit_inputs["image"] = ["img", 0]
        graph["submit"] = {"class_type": "Magi1Submit", "inputs": submit_inputs}
        poll_inputs = {"task": ["submit", 0]}
    else:
        poll_inputs = {"task_id": task_id}
    graph["poll"] = {"class_type": "Magi1Poll",
                     "inputs": {**poll_inputs, "timeout_s": timeout_s, "poll_interval_s": interval}}
    if load:
        graph["load"] = {"class_type": "Magi1LoadVideo", "inputs": {"video_url": ["poll", 0]}}
        graph["preview"] = {"class_type": "SaveImage",
                            "inputs": {"images": ["load", 1], "filename_prefix": "magi1_test"}}
    else:
        graph["show"] = {"class_type": "PreviewAny", "inputs": {"source": ["poll", 0]}}
    return graph


def submits(emulator):
    return [e for e in emulator.journal() if e["route"] == "submit"]


def error_of(excinfo):
    return excinfo.value.error or {}


def combo_options(spec):
    """A combo's choices from /object_info: V3 lists ["COMBO", {"options": [...]}], V1 [[...], {...}]."""
    return spec[1]["options"] if spec[0] == "COMBO" else spec[0]


def validation_details(excinfo, node="submit"):
    """The custom_validation_failed messages ComfyUI answered POST /prompt with, for one node."""
    errors = excinfo.value.details.get("node_errors", {}).get(node, {}).get("errors", [])
    return [(e["type"], e.get("details", "")) for e in errors]


# --- the contract -----------------------------------------------------------------------------
def test_the_nodes_inputs_and_outputs_are_the_public_contract(env):
    info = env.server.object_info()
    submit, poll, load = info["Magi1Submit"], info["Magi1Poll"], info["Magi1LoadVideo"]
    assert {submit["category"], poll["category"], load["category"]} == {CATEGORY}
    assert list(submit["input"]["required"]) == ["prompt", "seed"]
    assert submit["input"]["required"]["seed"][1]["min"] == -1
    assert submit["input"]["required"]["seed"][1]["max"] == 2147483647
    assert list(submit["input"]["optional"]) == [
        "image", "resolution", "aspect_ratio", "num_frames", "frames_per_second", "enable_safety_checker"]
    assert combo_options(submit["input"]["optional"]["resolution"]) == ["default", "480p", "720p"]
    assert combo_options(submit["input"]["optional"]["aspect_ratio"]) == ["default", "auto", "16:9", "9:16", "1:1"]
    assert submit["output"] == ["MAGI1_TASK", "STRING"] and submit["output_name"] == ["task", "task_id"]
    assert list(poll["input"]["optional"]) == ["task", "task_id", "timeout_s", "poll_interval_s"]
    assert poll["input"]["optional"]["timeout_s"][1]["default"] == 1800
    assert poll["input"]["optional"]["poll_interval_s"][1]["default"] == 5.0
    assert poll["input"]["optional"]["poll_interval_s"][1]["min"] == 0.2
    assert poll["output"] == ["STRING", "VIDEO"] and poll["output_name"] == ["video_url", "video"]
    assert list(load["input"]["required"]) == ["video_url"]
    assert list(load["input"]["optional"]) == ["frame_load_cap", "skip_first_frames", "select_every_nth"]
    assert load["output"] == ["IMAGE", "IMAGE", "INT", "FLOAT", "VIDEO"]
    assert load["output_name"] == ["frames", "last_frame", "frame_count", "fps", "video"]


def test_every_input_has_a_tooltip_and_every_node_a_description(env):
    info = env.server.object_info()
    for name in ("Magi1Submit", "Magi1Poll", "Magi1LoadVideo"):
        assert info[name]["description"]
        for section in ("required", "optional"):
            for input_name, spec in info[name]["input"].get(section, {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{name}.{input_name} has no tooltip"


# --- before anything is billed ------------------------------------------------------------------
def test_a_blank_prompt_is_refused_when_queued_before_anything_runs(env):
    with pytest.raises(PromptRejected) as caught:
        env.server.queue(magi1_graph(prompt="   "))
    assert any(kind == "custom_validation_failed" and "prompt is empty" in details
               for kind, details in validation_details(caught)), caught.value.details
    assert env.emulator.journal() == []


def test_a_blank_prompt_from_another_node_fails_when_the_node_runs(env):
    # Validation sees only typed values; a linked prompt is checked by the node before any call.
    graph = magi1_graph()
    graph["text"] = {"class_type": "PrimitiveString", "inputs": {"value": "  "}}
    graph["submit"]["inputs"]["prompt"] = ["text", 0]
    with pytest.raises(PromptFailed) as caught:
        env.server.run(graph)
    assert "prompt is empty" in error_of(caught)["exception_message"]
    assert env.emulator.journal() == []


@pytest.mark.parametrize("seed", [-5, 2**31])
def test_a_seed_out_of_range_is_refused_when_queued(env, seed):
    with pytest.raises(PromptRejected) as caught:
        env.server.queue(magi1_graph(seed=seed))
    assert any(kind == "custom_validation_failed" and "seed must be" in details
               for kind, details in validation_details(caught)), caught.value.details
    assert env.emulator.journal() == []


def test_num_frames_out_of_range_fails_before_anything_is_sent(env):
    with pytest.raises(PromptFailed) as caught:
        env.server.run(magi1_graph(extra={"num_frames": 50}))
    assert "num_frames" in error_of(caught)["exception_message"]
    assert env.emulator.journal() == []


def test_poll_without_task_or_id_says_what_to_connect(env):
    with pytest.raises(PromptFailed) as caught:
        env.server.run(magi1_graph(task_id=""))
    assert "task_id" in error_of(caught)["exception_message"]


# --- a whole run --------------------------------------------------------------------------------
def test_a_batch_of_two_first_frames_is_two_tasks_with_one_post_each(env):
    # Seed -1: EmptyImage's two frames are identical, and with a fixed seed identical requests
    # are one task (billed once; see test_billing.py).
    entry = env.server.run(magi1_graph(batch=2, seed=-1))
    assert len(submits(env.emulator)) == 2
    task_ids = [t["id"] for t in env.emulator.tasks()]
    assert len(task_ids) == 2
    assert all((env.server.output_dir / "magi1" / f"magi1_{t}.mp4").is_file() for t in task_ids)
    assert entry["outputs"]["poll"]["images"]  # the preview of the saved videos


def test_a_fixed_seed_requeued_reuses_the_task_and_seed_minus_one_does_not(env):
    graph = magi1_graph(seed=4242)
    env.server.run(graph)
    env.server.clear_cache()
    env.server.run(graph)
    assert len(submits(env.emulator)) == 1
    random_graph = magi1_graph(seed=-1)
    env.server.run(random_graph)
    env.server.run(random_graph)  # not served from ComfyUI's cache either
    assert len(submits(env.emulator)) == 3


def test_a_task_is_collected_by_id(env):
    from magi1.client import WaveSpeedClient
    from magi1.config import ApiKey

    task = WaveSpeedClient(env.emulator.base_url, ApiKey(env.emulator.api_key, "test")).submit({"prompt": "x"})
    entry = env.server.run(magi1_graph(task_id=task.id))
    assert (env.server.output_dir / "magi1" / f"magi1_{task.id}.mp4").is_file()
    assert entry["outputs"]["preview"]["images"]


# --- failures name the task -----------------------------------------------------------------------
def test_a_failed_task_shows_its_id_and_the_services_reason(env):
    env.emulator.add_fault("submit", "fail_task", error="the prompt was refused by moderation", code=1200)
    with pytest.raises(PromptFailed) as caught:
        env.server.run(magi1_graph(load=False))
    message = error_of(caught)["exception_message"]
    task_id = env.emulator.tasks()[0]["id"]
    assert task_id in message and "refused by moderation" in message
    assert error_of(caught)["exception_type"].endswith("TaskFailedError")


def test_a_failed_fixed_seed_task_is_submitted_afresh_when_queued_again(env):
    """The failure says "queue again": the next queue must not be served the failed task from
    ComfyUI's cache (Magi1Submit's fingerprint changes when a task fails), and the ledger does not
    reuse a failed task, so the same graph submits a new task and succeeds."""
    graph = magi1_graph(load=False, seed=424242)
    env.emulator.add_fault("submit", "fail_task", error="a passing failure", code=5000)
    with pytest.raises(PromptFailed):
        env.server.run(graph)
    entry = env.server.run(graph)
    assert len(submits(env.emulator)) == 2
    failed, completed = env.emulator.tasks()[0]["id"], env.emulator.tasks()[1]["id"]
    assert completed in entry["outputs"]["show"]["text"][0] and failed not in entry["outputs"]["show"]["text"][0]


def test_a_timeout_names_the_task_and_how_to_collect_it(env):
    env.emulator.add_fault("submit", "never_complete")
    with pytest.raises(PromptFailed) as caught:
        env.server.run(magi1_graph(load=False, timeout_s=10, interval=1.0), timeout=60)
    message = error_of(caught)["exception_message"]
    assert env.emulator.tasks()[0]["id"] in message and "task_id" in message


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_says_where_to_fix_it(env, status):
    env.emulator.add_fault("submit", "status", status=status, message="invalid api key")
    with pytest.raises(PromptFailed) as caught:
        env.server.run(magi1_graph(load=False))
    assert "WAVESPEED_API_KEY" in error_of(caught)["exception_message"]


def test_insufficient_balance_says_to_top_up(env):
    env.emulator.add_fault("submit", "status", status=402, message="Insufficient balance")
    with pytest.raises(PromptFailed) as caught:
        env.server.run(magi1_graph(load=False))
    assert "Top up" in error_of(caught)["exception_message"]


def test_a_submit_answered_500_is_posted_once_and_the_error_says_it_may_be_billed(env):
    env.emulator.add_fault("submit", "accept_then_500")
    with pytest.raises(PromptFailed) as caught:
        env.server.run(magi1_graph(load=False))
    assert "MAY have been created" in error_of(caught)["exception_message"]
    time.sleep(0.5)
    assert len(submits(env.emulator)) == 1


# --- Cancel -----------------------------------------------------------------------------------------
def cancel_after(server, seconds):
    timer = threading.Timer(seconds, server.interrupt)
    timer.start()
    return timer


def run_and_cancel(env, graph, after_s):
    prompt_id = env.server.queue(graph)
    cancel_after(env.server, after_s)
    started = time.monotonic()
    with pytest.raises(PromptInterrupted):
        env.server.wait(prompt_id, timeout=60)
    return time.monotonic() - started - after_s


def ledger_task_ids(env):
    path = env.server.user_dir / "__magi1" / "tasks.sqlite3"
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT task_id FROM magi1_tasks WHERE task_id IS NOT NULL")]


def test_cancel_during_the_wait_shows_as_interrupted_and_the_task_stays_recorded(env):
    env.emulator.add_fault("submit", "never_complete")
    late = run_and_cancel(env, magi1_graph(load=False, interval=5.0), after_s=2.0)
    assert late < 1.5
    assert env.emulator.tasks()[0]["id"] in ledger_task_ids(env)


def test_cancel_during_a_slow_upload_submits_nothing(env):
    env.emulator.add_fault("upload", "delay", seconds=4)
    late = run_and_cancel(env, magi1_graph(load=False), after_s=1.0)
    assert late < 1.5
    time.sleep(4)  # the upload finishes in the background and must then stop short of the POST
    assert submits(env.emulator) == []


def test_cancel_during_the_submit_keeps_the_task_that_was_billed(env):
    env.emulator.add_fault("submit", "delay", seconds=3)
    late = run_and_cancel(env, magi1_graph(load=False), after_s=1.0)
    assert late < 1.5
    time.sleep(3)
    [task] = env.emulator.tasks()
    assert task["id"] in ledger_task_ids(env)  # recorded, so it can be collected by id


def test_cancel_during_the_download_leaves_no_partial_file(env):
    env.emulator.add_fault("output", "delay", seconds=4)
    late = run_and_cancel(env, magi1_graph(load=False), after_s=2.5)
    assert late < 1.5
    time.sleep(4)
    assert not [p for p in (env.server.output_dir / "magi1").glob("*") if p.suffix != ".mp4"]


# --- several branches at once -------------------------------------------------------------------------
def test_two_independent_branches_wait_at_the_same_time(env):
    env.emulator.set_latency(3.0)
    a = magi1_graph(load=False)
    b = {f"b_{k}": json.loads(json.dumps(v).replace('["submit"', '["b_submit"').replace('["poll"', '["b_poll"'))
         for k, v in magi1_graph(load=False, prompt="another").items()}
    env.server.run({**a, **b}, timeout=60)
    first, second = sorted(datetime.fromisoformat(e["time"].replace("Z", "+00:00")) for e in submits(env.emulator))
    # the second task was submitted while the first one was still running: the waits overlapped
    assert (second - first).total_seconds() < 3.0


# --- the key never leaks --------------------------------------------------------------------------------
def test_the_key_is_nowhere_in_what_comfyui_wrote_or_answered(env):
    entry = env.server.run(magi1_graph())
    key = env.emulator.api_key.encode()
    leaks = []
    for path in env.server.base_dir.rglob("*"):
        if path.is_file() and not path.is_symlink() and "custom_nodes" not in path.parts:
            if key in path.read_bytes():
                leaks.append(str(path))
    assert leaks == []
    assert key.decode() not in json.dumps(entry)
    assert key.decode() not in env.server.get("/history").text
    assert key.decode() not in env.server.get("/object_info").text
    assert key.decode() not in json.dumps(env.emulator.journal())
    assert list(env.server.output_dir.glob("magi1_test*.png"))  # a PNG with metadata was written


def test_an_emulator_given_no_key_of_its_own_accepts_any(env):
    with EmulatorServer(port=0, latency=0.1) as open_emulator:
        import requests

        answer = requests.post(open_emulator.base_url + "/api/v3/wavespeed-ai/magi-1-24b",
                               json={"prompt": "x"}, headers={"Authorization": "Bearer anything"}, timeout=10)
        assert answer.status_code == 200


# --- the key setting's route ------------------------------------------------------------------------------
def own_page_headers(server) -> dict:
    """What ComfyUI's own page sends to the key route (see test_security for what is refused)."""
    return {"Origin": server.url, "X-Magi1-Request": "1"}


def test_the_key_route_stores_a_key_privately_and_never_answers_with_it(env):
    secret = "sk-route-test-" + "x" * 20 + "9876"
    try:
        answer = env.server.post("/magi1/api_key", json={"key": secret}, headers=own_page_headers(env.server))
        assert answer.status_code == 200 and secret not in answer.text
        status = env.server.get("/magi1/api_key").json()
        assert status["stored"] is True and secret not in json.dumps(status)
        # This ComfyUI also has WAVESPEED_API_KEY in its environment, which wins over the file.
        assert status["source"] == "environment" and status["environment_overrides"] is True
        key_file = env.server.user_dir / "__magi1" / "wavespeed_api_key"
        assert key_file.read_text() == secret and (key_file.stat().st_mode & 0o777) == 0o600
        for path in ("/userdata/..%2F__magi1%2Fwavespeed_api_key", "/api/userdata/__magi1%2Fwavespeed_api_key"):
            assert secret not in env.server.get(path).text
    finally:
        env.server._http.delete(env.server.url + "/magi1/api_key", headers=own_page_headers(env.server), timeout=10)
    assert env.server.get("/magi1/api_key").json()["stored"] is False


def test_the_key_route_refuses_an_empty_or_malformed_key(env):
    for body in ({"key": ""}, {"key": "two words"}, {"nokey": 1}):
        assert env.server.post("/magi1/api_key", json=body, headers=own_page_headers(env.server)).status_code == 400
