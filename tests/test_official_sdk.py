"""The official `wavespeed` SDK (2.0.5) runs MAGI-1 against the bundled emulator, unchanged.

The SDK reads `WAVESPEED_API_KEY` once, when it is imported, and never reads a base URL from the
environment: both are given to `wavespeed.Client(api_key=..., base_url=...)` here.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import requests

wavespeed = pytest.importorskip("wavespeed", reason="the official SDK comes with requirements-dev.txt")

from tools.wavespeed_emulator import EmulatorServer  # noqa: E402

MODEL = "wavespeed-ai/magi-1-24b"
FIRST_FRAME_MAX_MEAN_ABS_DIFF = 4.0  # measured 2.3-2.5 (see test_emulator.py)


@pytest.fixture
def sdk(emulator: EmulatorServer) -> wavespeed.Client:
    return wavespeed.Client(api_key=emulator.api_key, base_url=emulator.base_url, retry_interval=0.05)


@pytest.fixture
def first_frame_png(tmp_path: Path) -> tuple[Path, np.ndarray]:
    ys, xs = np.mgrid[0:480, 0:848].astype(np.float32)
    picture = np.stack([40 + 180 * xs / 848, 30 + 160 * ys / 480, np.full_like(xs, 70.0)], axis=-1).astype(
        np.uint8
    )
    cv2.circle(picture, (212, 240), 96, (230, 30, 30), -1, cv2.LINE_AA)
    path = tmp_path / "first frame.png"
    assert cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    return path, picture


def first_frame_of(url: str, tmp_path: Path) -> np.ndarray:
    video = tmp_path / "out.mp4"
    video.write_bytes(requests.get(url, timeout=10).content)
    capture = cv2.VideoCapture(str(video))
    ok, bgr = capture.read()
    capture.release()
    assert ok
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def test_the_sdk_uploads_a_png_and_runs_magi1_to_completion(sdk, emulator, first_frame_png, tmp_path):
    path, picture = first_frame_png

    image_url = sdk.upload(str(path))
    output = sdk.run(
        MODEL,
        {"prompt": "the red ball rolls away", "image": image_url, "seed": 42},
        timeout=60,
        poll_interval=0.1,
    )

    assert emulator.uploaded_bytes(image_url) == path.read_bytes()
    [video_url] = output["outputs"]
    assert video_url.startswith(f"{emulator.base_url}/outputs/")
    first = first_frame_of(video_url, tmp_path)
    assert float(np.abs(first.astype(np.int16) - picture).mean()) < FIRST_FRAME_MAX_MEAN_ABS_DIFF
    assert (
        emulator.stats()["upload"] == 1
        and emulator.stats()["upload_put"] == 1
        and emulator.stats()["submit"] == 1
    )


def test_the_sdk_rides_out_transient_result_errors(sdk, emulator):
    emulator.add_fault("result", "status", status=503, count=2)
    emulator.add_fault("result", "reset")

    output = sdk.run(MODEL, {"prompt": "waves at night"}, timeout=60, poll_interval=0.1)

    assert len(output["outputs"]) == 1
    assert emulator.faults() == []


def test_the_sdk_reports_a_failed_task_with_its_id_and_error(sdk, emulator):
    emulator.add_fault("submit", "fail_task", error="content moderation rejected the prompt", code=1200)

    result = sdk.run_no_throw(MODEL, {"prompt": "anything"}, timeout=60, poll_interval=0.1)

    [task] = emulator.tasks()
    assert result["status"] == "failed" and result["outputs"] is None
    assert result["task_id"] == task["id"]
    assert "content moderation rejected the prompt" in result["error"]


def test_the_sdk_never_resubmits_after_a_500(sdk, emulator):
    emulator.add_fault("submit", "accept_then_500")

    with pytest.raises(RuntimeError, match="HTTP 500"):
        sdk.run(MODEL, {"prompt": "anything"}, timeout=60, poll_interval=0.1)

    assert emulator.stats()["submit"] == 1
    assert len(emulator.tasks()) == 1


def test_the_sdk_sync_mode_gets_the_finished_task_in_one_call(sdk, emulator):
    output = sdk.run(MODEL, {"prompt": "a paper boat"}, timeout=60, enable_sync_mode=True)

    assert len(output["outputs"]) == 1
    assert emulator.stats() == {"submit": 1}


def test_the_sdk_get_result_reads_a_task_by_id(sdk, emulator):
    task_id = requests.post(
        f"{emulator.base_url}/api/v3/{MODEL}",
        json={"prompt": "x"},
        headers=emulator.auth_headers(),
        timeout=10,
    ).json()["data"]["id"]
    emulator.wait_for_task(task_id)

    answer = sdk.get_result(task_id)

    assert answer["code"] == 200
    assert answer["data"]["status"] == "completed" and answer["data"]["id"] == task_id
