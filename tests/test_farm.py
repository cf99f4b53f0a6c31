"""Several real ComfyUI processes on one WaveSpeed account: billed once, and nothing paid is lost.

Each case starts its own ComfyUI 0.3.75 processes against one emulator and proves its claim
from the emulator's request log: two processes on one user folder (two GPUs of one machine),
two "machines" (separate user folders) on one PostgreSQL ledger, and a ComfyUI killed with
SIGKILL while its task runs, restarted with nothing queued.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from tools.comfyui_harness import ComfyUIServer, PromptFailed
from fixtures_comfyui import require_comfyui
from fixtures_emulator import fake_api_key

from tools.wavespeed_emulator import EmulatorServer

RUN_TIMEOUT_S = 120


@pytest.fixture
def emulator_for_comfyui():
    require_comfyui()
    with EmulatorServer(port=0, latency=1.0, default_resolution="480p", api_key=fake_api_key()) as server:
        yield server


def comfyui(workdir: Path, emulator: EmulatorServer, *, user_dir: Path | None = None, **env: str) -> ComfyUIServer:
    extra = ("--user-directory", str(user_dir)) if user_dir is not None else ()
    return ComfyUIServer(
        workdir,
        env={"WAVESPEED_BASE_URL": emulator.base_url, "WAVESPEED_API_KEY": emulator.api_key, **env},
        extra_args=extra,
    )


def graph(seed: int) -> dict:
    return {
        "submit": {"class_type": "Magi1Submit", "inputs": {"prompt": "a lighthouse at dusk", "seed": seed}},
        "poll": {"class_type": "Magi1Poll", "inputs": {"task": ["submit", 0], "poll_interval_s": 0.2}},
        "show": {"class_type": "PreviewAny", "inputs": {"source": ["poll", 0]}},
    }


def submits(emulator: EmulatorServer) -> list[dict]:
    return [e for e in emulator.journal() if e["route"] == "submit"]


def run_at_the_same_moment(servers: list[ComfyUIServer], prompt: dict) -> list[dict]:
    barrier = threading.Barrier(len(servers))
    entries: list[dict | BaseException] = [RuntimeError("not run")] * len(servers)

    def queue_and_wait(index: int) -> None:
        barrier.wait()
        try:
            entries[index] = servers[index].run(prompt, timeout=RUN_TIMEOUT_S)
        except BaseException as exc:  # noqa: BLE001 - reported below with the others
            entries[index] = exc

    threads = [threading.Thread(target=queue_and_wait, args=(i,)) for i in range(len(servers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(RUN_TIMEOUT_S + 30)
    failures = [e for e in entries if isinstance(e, BaseException)]
    assert not failures, failures
    return entries  # type: ignore[return-value]


def saved_videos(server: ComfyUIServer) -> list[Path]:
    return sorted((server.output_dir / "magi1").glob("*.mp4"))


def test_two_comfyui_processes_on_one_user_folder_pay_once(emulator_for_comfyui, tmp_path):
    emulator = emulator_for_comfyui
    shared_user = tmp_path / "user"
    shared_user.mkdir()
    with comfyui(tmp_path / "gpu0", emulator, user_dir=shared_user) as first, comfyui(
        tmp_path / "gpu1", emulator, user_dir=shared_user
    ) as second:
        run_at_the_same_moment([first, second], graph(seed=4242))
        assert len(submits(emulator)) == 1
        [task] = emulator.tasks()
        # Saved once: the other process finds the file through the shared ledger.
        assert [p.name for p in saved_videos(first) + saved_videos(second)] == [f"magi1_{task['id']}.mp4"]


def test_two_machines_on_one_postgresql_ledger_pay_once(emulator_for_comfyui, tmp_path, postgres_url):
    emulator = emulator_for_comfyui
    with comfyui(tmp_path / "machine-a", emulator, MAGI1_LEDGER_URL=postgres_url) as a, comfyui(
        tmp_path / "machine-b", emulator, MAGI1_LEDGER_URL=postgres_url
    ) as b:
        run_at_the_same_moment([a, b], graph(seed=777))
        assert len(submits(emulator)) == 1
        assert len(saved_videos(a) + saved_videos(b)) == 1  # (here both "machines" share one disk)
    assert not (tmp_path / "machine-a" / "user" / "__magi1" / "tasks.sqlite3").exists()


def test_a_comfyui_killed_while_its_task_runs_saves_the_mp4_after_restart(emulator_for_comfyui, tmp_path):
    emulator = emulator_for_comfyui
    emulator.set_latency(6.0)
    server = comfyui(tmp_path / "crashy", emulator).start()
    try:
        server.queue(graph(seed=31337))
        deadline = time.monotonic() + 60
        while not [e for e in submits(emulator) if e["status"] == 200] and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # the task id is in the ledger right after the answer
        server.kill()
        [task] = emulator.tasks()
        assert task["status"] in ("created", "processing") and saved_videos(server) == []
        server.start()  # nothing is queued: the adoption at start-up collects the paid task
        deadline = time.monotonic() + 60
        while not saved_videos(server) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert [p.name for p in saved_videos(server)] == [f"magi1_{task['id']}.mp4"]
        assert len(submits(emulator)) == 1
        assert "adoption: saved task" in server.log_text()
    finally:
        server.stop()


def test_two_identical_submit_nodes_in_one_prompt_post_once(comfyui):
    comfyui.emulator.reset()
    comfyui.server.clear_cache()
    prompt = {}
    for n in ("1", "2"):
        prompt[f"submit{n}"] = {"class_type": "Magi1Submit", "inputs": {"prompt": "twin nodes", "seed": 5151}}
        # The Polls differ (their interval), so ComfyUI runs both branches instead of serving the
        # second from the first's cache; the Submits are identical: one task, one POST.
        interval = 0.2 if n == "1" else 0.3
        prompt[f"poll{n}"] = {"class_type": "Magi1Poll", "inputs": {"task": [f"submit{n}", 0], "poll_interval_s": interval}}
        prompt[f"show{n}"] = {"class_type": "PreviewAny", "inputs": {"source": [f"poll{n}", 0]}}

    entry = comfyui.server.run(prompt, timeout=RUN_TIMEOUT_S)

    assert len(submits(comfyui.emulator)) == 1
    [task] = comfyui.emulator.tasks()
    shown = [entry["outputs"][f"show{n}"]["text"][0] for n in ("1", "2")]
    assert shown[0] == shown[1] and task["id"] in shown[0]


def test_97_first_frames_are_refused_in_comfyui_before_any_request(comfyui):
    comfyui.emulator.reset()
    comfyui.server.clear_cache()
    prompt = {
        "img": {"class_type": "EmptyImage", "inputs": {"width": 96, "height": 64, "batch_size": 97, "color": 1}},
        "submit": {"class_type": "Magi1Submit", "inputs": {"prompt": "frames wired by mistake", "seed": -1,
                                                          "image": ["img", 0]}},
        "show": {"class_type": "PreviewAny", "inputs": {"source": ["submit", 1]}},
    }
    with pytest.raises(PromptFailed) as caught:
        comfyui.server.run(prompt, timeout=RUN_TIMEOUT_S)
    message = caught.value.error["exception_message"]
    assert "97" in message and "MAGI1_MAX_TASKS_PER_RUN" in message
    assert comfyui.emulator.journal() == []


def test_the_spend_guard_counts_every_submit_node_of_one_queued_prompt(comfyui):
    import json

    comfyui.emulator.reset()
    comfyui.server.clear_cache()
    settings = comfyui.server.user_dir / "__magi1" / "settings.json"
    settings.write_text(json.dumps({"max_tasks_per_run": 2}))
    prompt = {
        "img": {"class_type": "EmptyImage", "inputs": {"width": 96, "height": 64, "batch_size": 2, "color": 2}},
        "a": {"class_type": "Magi1Submit", "inputs": {"prompt": "a", "seed": -1, "image": ["img", 0]}},
        "b": {"class_type": "Magi1Submit", "inputs": {"prompt": "b", "seed": -1}},
        "show_a": {"class_type": "PreviewAny", "inputs": {"source": ["a", 1]}},
        "show_b": {"class_type": "PreviewAny", "inputs": {"source": ["b", 1]}},
    }
    try:
        with pytest.raises(PromptFailed) as caught:
            comfyui.server.run(prompt, timeout=RUN_TIMEOUT_S)
    finally:
        settings.unlink()
    assert "limit of 2 per queued prompt" in caught.value.error["exception_message"]
    assert len(submits(comfyui.emulator)) <= 2  # whichever node came second was refused unsent
