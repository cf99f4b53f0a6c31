"""The bundled WaveSpeed emulator, specified over real HTTP on loopback with real MP4 files."""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest
from video_reference import read_rgb_frames
import requests

from tools.wavespeed_emulator import EmulatorAdmin, EmulatorServer, FaultSpecError

REPO_ROOT = Path(__file__).resolve().parents[1]
MAGI1 = "/api/v3/wavespeed-ai/magi-1-24b"
FINAL = {"completed", "failed", "cancelled", "timeout", "deleted"}
# Measured with mp4v (this OpenCV build has no H.264 encoder) on the scene below: 2.3-2.5 with or
# without a cover crop, at 480p and 720p. A colour swap or a wrong crop gives 30 and more.
FIRST_FRAME_MAX_MEAN_ABS_DIFF = 4.0


# --- helpers ------------------------------------------------------------------------------------
class Client(requests.Session):
    """A session that sends the emulator's key and knows its base URL."""

    def __init__(self, server: EmulatorServer) -> None:
        super().__init__()
        self.base_url = server.base_url
        self.headers.update(server.auth_headers())


@pytest.fixture
def api(emulator: EmulatorServer) -> Client:
    with Client(emulator) as session:
        yield session


def scene(width: int, height: int) -> np.ndarray:
    """An RGB test picture whose channels differ everywhere, so a BGR mix-up cannot hide."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    picture = np.stack(
        [40 + 180 * xs / width, 30 + 160 * ys / height, np.full_like(xs, 70.0)], axis=-1
    ).astype(np.uint8)
    cv2.circle(picture, (width // 4, height // 2), height // 5, (230, 30, 30), -1, cv2.LINE_AA)
    cv2.rectangle(
        picture, (width * 5 // 8, height // 4), (width * 7 // 8, height * 3 // 4), (20, 40, 220), -1
    )
    return picture


def png_bytes(picture: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    assert ok
    return encoded.tobytes()


def expected_first_frame(picture: np.ndarray, width: int, height: int) -> np.ndarray:
    """The documented rule, computed independently: scale to cover (INTER_AREA), crop the centre."""
    src_h, src_w = picture.shape[:2]
    scale = max(width / src_w, height / src_h)
    scaled_w, scaled_h = max(width, round(src_w * scale)), max(height, round(src_h * scale))
    scaled = cv2.resize(picture, (scaled_w, scaled_h), interpolation=cv2.INTER_AREA)
    top, left = (scaled_h - height) // 2, (scaled_w - width) // 2
    return scaled[top : top + height, left : left + width]


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def upload(api: Client, data: bytes, filename: str = "first.png", content_type: str = "image/png") -> str:
    ticket = api.post(
        f"{api.base_url}/api/v3/media/uploads",
        json={"filename": filename, "size": len(data), "content_type": content_type},
    )
    assert ticket.status_code == 200, ticket.text
    instruction = ticket.json()["data"]["upload"]
    put = requests.put(instruction["url"], data=data, headers=instruction["headers"])
    assert put.status_code == 200, put.text
    return ticket.json()["data"]["download_url"]


def submit(api: Client, **body: object) -> requests.Response:
    return api.post(f"{api.base_url}{MAGI1}", json={"prompt": "a red ball rolls across a table", **body})


def wait_final(api: Client, task_id: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = api.get(f"{api.base_url}/api/v3/predictions/{task_id}/result")
        assert answer.status_code == 200, answer.text
        data = answer.json()["data"]
        if data["status"] in FINAL:
            return data
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not finish in {timeout}s")


def run_task(api: Client, **body: object) -> dict:
    [task] = run_tasks(api, body)
    return task


def run_tasks(api: Client, *bodies: dict) -> list[dict]:
    """Submit every body first, then wait for each: the emulator renders them side by side."""
    answers = [submit(api, **body) for body in bodies]
    assert all(answer.status_code == 200 for answer in answers), [answer.text for answer in answers]
    return [wait_final(api, answer.json()["data"]["id"]) for answer in answers]


def download(url: str, tmp_path: Path, name: str = "video.mp4") -> Path:
    answer = requests.get(url)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "video/mp4"
    assert int(answer.headers["Content-Length"]) == len(answer.content)
    path = tmp_path / name
    path.write_bytes(answer.content)
    return path


def same_up_to_codec_noise(a: np.ndarray, b: np.ndarray) -> bool:
    """The emulator renders identical frames for identical inputs (checked exactly in the frame
    generator); libx264 in PyAV, even single-threaded, now and then encodes a clip a hair
    differently on a loaded machine, so decoded clips are compared with a small tolerance."""
    return a.shape == b.shape and mean_abs_diff(a, b) < 0.5


def decode(path: Path) -> tuple[np.ndarray, float]:
    """All frames as RGB uint8 [N, H, W, 3], and the container's fps."""
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return np.stack(read_rgb_frames(path)), fps


# --- envelope and life cycle --------------------------------------------------------------------
def test_submit_answers_the_envelope_with_a_created_prediction(api, emulator):
    answer = submit(api, seed=7)

    assert answer.status_code == 200
    envelope = answer.json()
    assert envelope["code"] == 200 and envelope["message"] == "success"
    task = envelope["data"]
    assert re.fullmatch(r"[0-9a-f]{32}", task["id"])
    assert task["model"] == "wavespeed-ai/magi-1-24b"
    assert task["status"] == "created"
    assert task["outputs"] == [] and task["has_nsfw_contents"] == []
    assert task["urls"] == {"get": f"{emulator.base_url}/api/v3/predictions/{task['id']}/result"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", task["created_at"])
    assert task["error"] == "" and task["timings"] == {"inference": 0}


def test_a_task_goes_created_then_processing_then_completed(api, emulator):
    emulator.set_latency(1.0)  # created for its first 0.1 s, processing until 1 s at least
    submitted = submit(api).json()["data"]
    task_id = submitted["id"]
    seen = [submitted["status"]]
    while seen[-1] not in FINAL:
        status = api.get(f"{emulator.base_url}/api/v3/predictions/{task_id}/result").json()["data"]["status"]
        if seen[-1] != status:
            seen.append(status)
        time.sleep(0.02)

    assert seen == ["created", "processing", "completed"]


def test_a_completed_task_lists_its_mp4_and_inference_time(api, emulator):
    task = run_task(api)

    assert task["status"] == "completed"
    assert task["outputs"] == [f"{emulator.base_url}/outputs/{task['id']}.mp4"]
    assert task["has_nsfw_contents"] == [False]
    assert task["timings"]["inference"] >= emulator.latency * 1000


def test_an_unknown_prediction_is_404_with_the_envelope(api, emulator):
    answer = api.get(f"{emulator.base_url}/api/v3/predictions/{'0' * 32}/result")

    assert answer.status_code == 404
    assert answer.json()["code"] == 404 and answer.json()["data"] is None


# --- auth ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "Bearer "}, {"Authorization": "Basic abc"}],
    ids=["no header", "wrong key", "empty key", "not bearer"],
)
def test_api_calls_without_the_right_key_are_401(emulator, headers):
    answer = requests.post(f"{emulator.base_url}{MAGI1}", json={"prompt": "x"}, headers=headers)

    assert answer.status_code == 401
    assert answer.json()["code"] == 401 and answer.json()["data"] is None
    assert emulator.tasks() == []


def test_any_non_empty_key_is_accepted_when_the_emulator_has_none(monkeypatch):
    monkeypatch.delenv("WAVESPEED_API_KEY", raising=False)
    with EmulatorServer(port=0, latency=0.1) as server:
        accepted = requests.post(
            f"{server.base_url}{MAGI1}", json={"prompt": "x"}, headers={"Authorization": "Bearer k"}
        )
        refused = requests.post(f"{server.base_url}{MAGI1}", json={"prompt": "x"})

    assert accepted.status_code == 200
    assert refused.status_code == 401


def test_the_key_in_the_emulators_environment_is_required(monkeypatch):
    monkeypatch.setenv("WAVESPEED_API_KEY", "env-key-123")
    with EmulatorServer(port=0, latency=0.1) as server:
        right = requests.post(
            f"{server.base_url}{MAGI1}", json={"prompt": "x"}, headers={"Authorization": "Bearer env-key-123"}
        )
        wrong = requests.post(
            f"{server.base_url}{MAGI1}", json={"prompt": "x"}, headers={"Authorization": "Bearer other"}
        )

    assert (right.status_code, wrong.status_code) == (200, 401)


def test_outputs_and_uploaded_media_need_no_key(api, emulator):
    download_url = upload(api, b"\x89PNG not really")
    task = run_task(api)

    assert requests.get(download_url).status_code == 200
    assert requests.get(task["outputs"][0]).status_code == 200


# --- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize("prompt", [None, "", "   \n"], ids=["missing", "empty", "blank"])
def test_a_missing_or_blank_prompt_is_400_code_1400(api, emulator, prompt):
    body = {} if prompt is None else {"prompt": prompt}
    answer = api.post(f"{emulator.base_url}{MAGI1}", json=body)

    assert answer.status_code == 400
    assert answer.json()["code"] == 1400


@pytest.mark.parametrize(
    "field",
    [
        {"seed": -2},
        {"seed": 2147483648},
        {"seed": "5"},
        {"num_frames": 95},
        {"num_frames": 193},
        {"num_frames": 96.5},
        {"frames_per_second": 4},
        {"frames_per_second": 31},
        {"resolution": "1080p"},
        {"aspect_ratio": "4:3"},
        {"enable_safety_checker": "yes"},
        {"image": 42},
    ],
    ids=lambda field: f"{next(iter(field))}={next(iter(field.values()))!r}",
)
def test_out_of_range_values_are_400_code_1401(api, field):
    answer = submit(api, **field)

    assert answer.status_code == 400
    assert answer.json()["code"] == 1401


@pytest.mark.parametrize(
    "field",
    [
        {"seed": -1},
        {"seed": 2147483647},
        {"num_frames": 192},
        {"frames_per_second": 5},
        {"frames_per_second": 30},
    ],
    ids=lambda field: f"{next(iter(field))}={next(iter(field.values()))}",
)
def test_boundary_values_are_accepted(api, field):
    assert submit(api, **field).status_code == 200


def test_a_body_that_is_not_json_is_400(api, emulator):
    answer = api.post(
        f"{emulator.base_url}{MAGI1}", data=b"{not json", headers={"Content-Type": "application/json"}
    )

    assert answer.status_code == 400 and answer.json()["code"] == 1401


# --- uploads ------------------------------------------------------------------------------------
def test_the_two_step_upload_round_trips_the_bytes_exactly(api, emulator):
    data = png_bytes(scene(320, 200))
    ticket = api.post(
        f"{emulator.base_url}/api/v3/media/uploads",
        json={"filename": "frame.png", "size": len(data), "content_type": "image/png"},
    ).json()["data"]

    assert ticket["upload"]["method"] == "PUT"
    assert ticket["upload"]["headers"] == {"Content-Type": "image/png"}
    put = requests.put(ticket["upload"]["url"], data=data, headers=ticket["upload"]["headers"])
    fetched = requests.get(ticket["download_url"])
    assert put.status_code == 200
    assert fetched.status_code == 200
    assert fetched.headers["Content-Type"] == "image/png"
    assert fetched.content == data
    assert emulator.uploaded_bytes(ticket["download_url"]) == data


def test_the_binary_upload_round_trips_the_bytes_exactly(api, emulator):
    data = png_bytes(scene(200, 120)) + b"\r\n--boundary-lookalike\r\n"
    answer = api.post(
        f"{emulator.base_url}/api/v3/media/upload/binary", files={"file": ("f.png", data, "image/png")}
    )

    assert answer.status_code == 200 and answer.json()["code"] == 200
    download_url = answer.json()["data"]["download_url"]
    assert requests.get(download_url).content == data


def test_a_put_whose_size_differs_from_the_ticket_is_400(api, emulator):
    ticket = api.post(
        f"{emulator.base_url}/api/v3/media/uploads",
        json={"filename": "a.png", "size": 10, "content_type": "image/png"},
    ).json()["data"]

    answer = requests.put(ticket["upload"]["url"], data=b"123", headers=ticket["upload"]["headers"])

    assert answer.status_code == 400
    assert requests.get(ticket["download_url"]).status_code == 404


def test_a_put_with_a_bearer_or_another_content_type_is_refused(api, emulator):
    ticket = api.post(
        f"{emulator.base_url}/api/v3/media/uploads",
        json={"filename": "a.png", "size": 3, "content_type": "image/png"},
    ).json()["data"]
    url = ticket["upload"]["url"]

    with_bearer = requests.put(
        url, data=b"123", headers={**ticket["upload"]["headers"], **emulator.auth_headers()}
    )
    other_type = requests.put(url, data=b"123", headers={"Content-Type": "application/octet-stream"})

    assert with_bearer.status_code == 400
    assert other_type.status_code == 403


def test_uploads_over_the_cap_are_413():
    with EmulatorServer(port=0, api_key="k", max_upload_bytes=1000) as server:
        headers = server.auth_headers()
        ticket = requests.post(
            f"{server.base_url}/api/v3/media/uploads",
            json={"filename": "a.png", "size": 1001},
            headers=headers,
        )
        binary = requests.post(
            f"{server.base_url}/api/v3/media/upload/binary",
            files={"file": ("a.png", b"x" * 100_000)},
            headers=headers,
        )

    assert ticket.status_code == 413
    assert binary.status_code == 413


# --- the video ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "size", "frames", "fps"),
    [
        ({}, (848, 480), 96, 24),
        ({"aspect_ratio": "9:16", "num_frames": 100, "frames_per_second": 12}, (480, 848), 100, 12),
        ({"aspect_ratio": "1:1"}, (480, 480), 96, 24),
        ({"resolution": "720p", "aspect_ratio": "16:9"}, (1280, 720), 96, 24),
    ],
    ids=["480p default", "480p 9:16 100@12", "480p 1:1", "720p 16:9"],
)
def test_the_mp4_has_the_requested_frames_size_and_fps(api, tmp_path, body, size, frames, fps):
    task = run_task(api, **body)

    video, video_fps = decode(download(task["outputs"][0], tmp_path))

    assert video.shape == (frames, size[1], size[0], 3)
    assert video_fps == pytest.approx(fps)


@pytest.mark.parametrize(
    ("image_size", "frame_size"),
    [((1200, 800), (848, 480)), ((600, 1000), (480, 848)), ((500, 530), (480, 480))],
    ids=["landscape→16:9", "portrait→9:16", "square-ish→1:1"],
)
def test_the_first_frame_is_the_uploaded_image_cover_cropped(api, tmp_path, image_size, frame_size):
    picture = scene(*image_size)
    task = run_task(api, image=upload(api, png_bytes(picture)), seed=11)

    video, _ = decode(download(task["outputs"][0], tmp_path))

    expected = expected_first_frame(picture, *frame_size)
    assert video.shape[1:3] == (frame_size[1], frame_size[0])
    assert mean_abs_diff(video[0], expected) < FIRST_FRAME_MAX_MEAN_ABS_DIFF
    # The red disc stays red: a BGR mix-up would make it blue.
    disc = (expected[..., 0] > 200) & (expected[..., 2] < 60)
    red, _, blue = video[0][disc].mean(axis=0)
    assert disc.sum() > 1000 and red > 180 and blue < 80


def test_later_frames_move_away_from_the_first(api, tmp_path):
    picture = scene(848, 480)
    task = run_task(api, image=upload(api, png_bytes(picture)), seed=3)

    video, _ = decode(download(task["outputs"][0], tmp_path))

    differences = [mean_abs_diff(frame, video[0]) for frame in video[1:]]
    # Measured: about 0.3-0.5 for frame 1 and 15-17 for the last frame.
    assert min(differences) > 0.1
    assert differences[-1] > 10


def test_the_same_seed_and_inputs_give_identical_frames(api, tmp_path):
    image = upload(api, png_bytes(scene(640, 360)))
    first, second, other = run_tasks(
        api, {"image": image, "seed": 1234}, {"image": image, "seed": 1234}, {"image": image, "seed": 1235}
    )

    frames_first, _ = decode(download(first["outputs"][0], tmp_path, "a.mp4"))
    frames_second, _ = decode(download(second["outputs"][0], tmp_path, "b.mp4"))
    frames_other, _ = decode(download(other["outputs"][0], tmp_path, "c.mp4"))

    assert same_up_to_codec_noise(frames_first, frames_second)
    assert not np.array_equal(frames_first[1:], frames_other[1:])


def test_without_an_image_the_first_frame_depends_on_seed_and_prompt(api, tmp_path):
    base, again, other_seed, other_prompt = run_tasks(
        api,
        {"seed": 5, "prompt": "a lighthouse in a storm"},
        {"seed": 5, "prompt": "a lighthouse in a storm"},
        {"seed": 6, "prompt": "a lighthouse in a storm"},
        {"seed": 5, "prompt": "a lighthouse at dawn"},
    )

    first = {
        name: decode(download(task["outputs"][0], tmp_path, f"{name}.mp4"))[0][0]
        for name, task in [("base", base), ("again", again), ("seed", other_seed), ("prompt", other_prompt)]
    }

    assert same_up_to_codec_noise(first["base"], first["again"])
    assert mean_abs_diff(first["base"], first["seed"]) > 5
    assert mean_abs_diff(first["base"], first["prompt"]) > 1


def test_seed_minus_one_gets_a_seed_picked_and_reported(api, emulator):
    task = run_task(api, seed=-1)

    described = emulator.task(task["id"])
    assert described["requested_seed"] == -1
    assert 0 <= described["seed"] <= 2147483647


def test_the_admin_view_of_a_task_shows_the_request_as_sent_and_what_was_decided(api, emulator):
    body = {"prompt": "a kite", "seed": 9, "aspect_ratio": "1:1", "frames_per_second": 12, "extra": True}
    task = run_task(api, **body)

    described = emulator.task(task["id"])

    assert described["request"] == body
    assert (described["width"], described["height"]) == (480, 480)
    assert described["codec"] in ("h264", "avc1", "mp4v")
    assert (described["num_frames"], described["frames_per_second"], described["resolution"]) == (
        96,
        12,
        "480p",
    )


def test_an_image_url_the_emulator_cannot_reach_fails_the_task_with_1402(api):
    answer = submit(api, image="https://example.invalid/first.png")
    task = wait_final(api, answer.json()["data"]["id"])

    assert answer.status_code == 200
    assert task["status"] == "failed"
    assert task["code"] == 1402
    assert "example.invalid" in task["error"]
    assert task["outputs"] == []


def test_an_image_on_another_loopback_server_is_fetched_over_http(api, tmp_path):
    picture = scene(848, 480)
    with EmulatorServer(port=0, api_key="other") as elsewhere:
        image_url = upload(Client(elsewhere), png_bytes(picture))
        task = run_task(api, image=image_url)
        fetched = elsewhere.journal()[-1]

    video, _ = decode(download(task["outputs"][0], tmp_path))
    assert fetched["route"] == "media" and fetched["status"] == 200
    assert mean_abs_diff(video[0], picture) < FIRST_FRAME_MAX_MEAN_ABS_DIFF


def test_the_output_serves_byte_ranges(api, emulator):
    task = run_task(api)
    whole = requests.get(task["outputs"][0]).content

    part = requests.get(task["outputs"][0], headers={"Range": "bytes=100-"})

    assert part.status_code == 206
    assert part.content == whole[100:]
    assert part.headers["Content-Range"] == f"bytes 100-{len(whole) - 1}/{len(whole)}"


def test_sync_mode_answers_with_the_finished_task(api):
    answer = submit(api, enable_sync_mode=True)

    assert answer.status_code == 200
    assert answer.json()["data"]["status"] == "completed"
    assert answer.json()["data"]["outputs"]


# --- faults -------------------------------------------------------------------------------------
def test_a_status_fault_answers_that_status_with_the_envelope_and_retry_after(api, emulator):
    task_id = submit(api).json()["data"]["id"]
    emulator.add_fault("result", "status", status=429, retry_after=2, message="Too many requests")
    url = f"{emulator.base_url}/api/v3/predictions/{task_id}/result"

    limited = api.get(url)
    after = api.get(url)

    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "2"
    assert limited.json() == {"code": 429, "message": "Too many requests", "data": None}
    assert after.status_code == 200


def test_a_fault_affects_exactly_count_requests(api, emulator):
    task_id = submit(api).json()["data"]["id"]
    emulator.add_fault("result", "status", status=503, count=2)
    url = f"{emulator.base_url}/api/v3/predictions/{task_id}/result"

    statuses = [api.get(url).status_code for _ in range(3)]

    assert statuses == [503, 503, 200]
    assert emulator.faults() == []


def test_insufficient_balance_refuses_the_submit_without_creating_a_task(api, emulator):
    emulator.add_fault("submit", "status", status=402)

    answer = submit(api)

    assert answer.status_code == 402
    assert answer.json()["message"] == "Insufficient balance"
    assert emulator.tasks() == []


@pytest.mark.parametrize("route", ["upload", "upload_put", "upload_binary", "media", "output"])
def test_status_faults_apply_to_each_route(api, emulator, route):
    ticket = api.post(
        f"{emulator.base_url}/api/v3/media/uploads",
        json={"filename": "a.png", "size": 3, "content_type": "image/png"},
    ).json()["data"]
    stored_url = upload(api, b"abc")
    task = run_task(api)
    calls = {
        "upload": lambda: api.post(
            f"{emulator.base_url}/api/v3/media/uploads",
            json={"filename": "b.png", "size": 1, "content_type": "image/png"},
        ),
        "upload_put": lambda: requests.put(
            ticket["upload"]["url"], data=b"abc", headers=ticket["upload"]["headers"]
        ),
        "upload_binary": lambda: api.post(
            f"{emulator.base_url}/api/v3/media/upload/binary", files={"file": ("c.png", b"c")}
        ),
        "media": lambda: requests.get(stored_url),
        "output": lambda: requests.get(task["outputs"][0]),
    }
    emulator.add_fault(route, "status", status=500)

    failed, retried = calls[route](), calls[route]()

    assert failed.status_code == 500 and failed.json()["code"] == 500
    assert retried.status_code == 200


def test_a_reset_fault_closes_the_connection_without_an_answer(api, emulator):
    emulator.add_fault("submit", "reset")

    with pytest.raises(requests.exceptions.ConnectionError):
        submit(api)
    assert emulator.tasks() == []
    assert emulator.journal()[-1]["status"] is None


def test_a_delay_fault_makes_a_client_read_timeout(api, emulator):
    task_id = submit(api).json()["data"]["id"]
    emulator.add_fault("result", "delay", seconds=1.0, count=2)
    url = f"{emulator.base_url}/api/v3/predictions/{task_id}/result"

    with pytest.raises(requests.exceptions.ReadTimeout):
        api.get(url, timeout=(2, 0.3))
    started = time.monotonic()
    patient = api.get(url, timeout=5)

    assert patient.status_code == 200
    assert time.monotonic() - started >= 0.9


def test_accept_then_500_creates_a_task_that_completes(api, emulator):
    emulator.add_fault("submit", "accept_then_500")

    answer = submit(api)

    assert answer.status_code == 500
    [task] = emulator.tasks()
    assert emulator.wait_for_task(task["id"])["status"] == "completed"


def test_fail_task_ends_the_next_task_failed_with_its_error_and_code(api, emulator):
    emulator.add_fault("submit", "fail_task", error="GPU fell over", code=1403)

    answer = submit(api)
    task = wait_final(api, answer.json()["data"]["id"])

    assert answer.status_code == 200
    assert task["status"] == "failed"
    assert task["error"] == "GPU fell over" and task["code"] == 1403
    assert run_task(api)["status"] == "completed"


@pytest.mark.parametrize("final_status", ["cancelled", "timeout", "deleted"])
def test_final_status_ends_the_task_in_that_status(api, emulator, final_status):
    emulator.add_fault("submit", "final_status", status=final_status)

    task = run_task(api)

    assert task["status"] == final_status
    assert task["outputs"] == []


def test_never_complete_keeps_the_task_processing(api, emulator):
    emulator.add_fault("submit", "never_complete")
    task_id = submit(api).json()["data"]["id"]

    time.sleep(emulator.latency * 3)

    answer = api.get(f"{emulator.base_url}/api/v3/predictions/{task_id}/result")
    assert answer.json()["data"]["status"] == "processing"


def test_truncate_sends_the_full_length_but_half_the_bytes(api, emulator):
    task = run_task(api)
    whole = requests.get(task["outputs"][0]).content
    emulator.add_fault("output", "truncate")
    output = urlsplit(task["outputs"][0])
    connection = http.client.HTTPConnection(output.hostname, output.port, timeout=10)

    connection.request("GET", output.path)
    answer = connection.getresponse()
    with pytest.raises(http.client.IncompleteRead) as truncated:
        answer.read()
    connection.close()

    assert int(answer.getheader("Content-Length")) == len(whole)
    assert truncated.value.partial == whole[: len(whole) // 2]


def test_invalid_mp4_serves_bytes_that_are_not_a_video(api, emulator, tmp_path):
    task = run_task(api)
    emulator.add_fault("output", "invalid_mp4")

    answer = requests.get(task["outputs"][0])

    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "video/mp4"
    assert answer.content[4:8] != b"ftyp"
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(answer.content)
    assert not cv2.VideoCapture(str(bogus)).read()[0]


@pytest.mark.parametrize(
    "spec",
    [
        {"route": "nowhere", "kind": "status", "status": 500},
        {"route": "result", "kind": "explode"},
        {"route": "result", "kind": "status"},
        {"route": "result", "kind": "truncate"},
        {"route": "output", "kind": "fail_task"},
        {"route": "submit", "kind": "final_status", "status": "completed"},
        {"route": "submit", "kind": "status", "status": 500, "count": 0},
    ],
    ids=[
        "route",
        "kind",
        "no status",
        "truncate off output",
        "fail_task off submit",
        "final completed",
        "count 0",
    ],
)
def test_a_fault_the_emulator_cannot_honour_is_refused(emulator, spec):
    with pytest.raises(FaultSpecError):
        emulator.add_fault(**spec)
    over_http = requests.post(f"{emulator.base_url}/_emulator/faults", json=spec)
    assert over_http.status_code == 400


# --- admin API, journal, stats ------------------------------------------------------------------
def test_the_admin_api_drives_a_separately_started_emulator(api, emulator):
    admin = EmulatorAdmin(emulator.base_url)
    admin.add_fault("submit", "status", status=503)
    admin.set_latency(0.2)

    refused, accepted = submit(api), submit(api)

    assert (refused.status_code, accepted.status_code) == (503, 200)
    assert admin.task(accepted.json()["data"]["id"])["latency"] == 0.2
    assert admin.stats()["submit"] == 2
    assert [entry["status"] for entry in admin.journal()] == [503, 200]
    admin.reset()
    assert admin.journal() == [] and admin.tasks() == [] and admin.config()["latency"] == 0.5


def test_the_journal_records_requests_and_never_the_key(api, emulator, caplog):
    caplog.set_level(logging.DEBUG)
    key = emulator.api_key
    upload(api, png_bytes(scene(64, 64)))
    run_task(api, seed=1, prompt=f"please ignore {key}")
    requests.get(f"{emulator.base_url}{MAGI1}?key={key}", headers=emulator.auth_headers())

    journal_text = requests.get(f"{emulator.base_url}/_emulator/journal").text
    journal = json.loads(journal_text)["data"]

    assert key not in journal_text
    assert "Authorization" not in journal_text and "Bearer" not in journal_text
    emulator_log = "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith("tools.wavespeed_emulator")
    )
    assert "POST /api/v3/wavespeed-ai/magi-1-24b 200" in emulator_log
    assert key not in emulator_log
    assert {"method", "path", "status", "time"} <= set(journal[0])
    submitted = next(entry for entry in journal if entry["route"] == "submit")
    assert submitted["json_body"] == {"prompt": "[redacted]", "seed": 1}


def test_stats_count_requests_per_route(api, emulator):
    upload(api, b"abc")
    run_task(api)

    stats = emulator.stats()

    assert stats["upload"] == 1 and stats["upload_put"] == 1 and stats["submit"] == 1
    assert stats["result"] >= 2
    assert "admin" not in stats


def test_reset_clears_faults_tasks_uploads_and_journal(api, emulator):
    emulator.add_fault("result", "status", status=500)
    download_url = upload(api, b"abc")
    task = submit(api).json()["data"]

    emulator.reset()

    assert emulator.faults() == [] and emulator.tasks() == [] and emulator.journal() == []
    assert requests.get(download_url).status_code == 404
    assert api.get(f"{emulator.base_url}/api/v3/predictions/{task['id']}/result").status_code == 404


# --- life cycle of the server -------------------------------------------------------------------
def test_stop_returns_quickly_with_connections_open_and_a_request_in_flight():
    server = EmulatorServer(port=0, latency=5.0, api_key="k").start()
    session = Client(server)
    session.post(f"{server.base_url}{MAGI1}", json={"prompt": "x"})  # leaves a kept-alive connection
    server.add_fault("result", "delay", seconds=30)
    outcome: list[object] = []

    def wait_for_the_delayed_answer() -> None:
        try:
            outcome.append(requests.get(f"{server.base_url}/api/v3/predictions/x/result", timeout=10))
        except requests.RequestException as exc:
            outcome.append(exc)

    in_flight = threading.Thread(target=wait_for_the_delayed_answer, daemon=True)
    in_flight.start()
    time.sleep(0.2)

    started = time.monotonic()
    server.stop()

    assert time.monotonic() - started < 1.5  # budget 0.9 s; the margin is for a loaded machine
    in_flight.join(timeout=2)
    assert len(outcome) == 1 and isinstance(outcome[0], requests.exceptions.ConnectionError)
    with pytest.raises(requests.exceptions.ConnectionError):
        session.get(f"{server.base_url}/api/v3/predictions/x/result", timeout=2)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_cli_serves_until_interrupted(tmp_path):
    port = _free_port()
    env = {**os.environ, "WAVESPEED_API_KEY": "cli-key"}
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.wavespeed_emulator", "--port", str(port), "--latency", "0.2"],
        cwd=REPO_ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = requests.post(
                    f"{base_url}{MAGI1}", json={"prompt": "x"}, headers={"Authorization": "Bearer cli-key"}
                )
                break
            except requests.exceptions.ConnectionError:
                assert time.monotonic() < deadline and process.poll() is None, "the CLI did not start"
                time.sleep(0.1)
        assert answer.status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        _, log = process.communicate(timeout=10)

    assert process.returncode == 0
    assert f"WAVESPEED_BASE_URL=http://127.0.0.1:{port}" in log
    assert re.search(rf"POST {MAGI1} 200 \d+ms", log)
    assert "cli-key" not in log


def test_the_frame_generator_is_exactly_deterministic_by_seed_and_prompt():
    from tools.wavespeed_emulator import videogen

    spec = videogen.VideoSpec(width=320, height=240, num_frames=96, fps=24, seed=9, prompt="a lighthouse")
    first = np.stack(list(videogen.render_frames(videogen.title_card(spec), spec)))
    again = np.stack(list(videogen.render_frames(videogen.title_card(spec), spec)))
    assert np.array_equal(first, again)
