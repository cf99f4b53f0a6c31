"""The WaveSpeed client over real HTTP against the bundled emulator.

Retry rules: result GETs and upload steps retry 429 (honouring Retry-After), 5xx and broken
connections; the submit POST is sent exactly once, whatever happens.
"""
import time

import numpy as np
import pytest

from magi1.client import RetryPolicy, Timeouts, WaveSpeedClient
from magi1.config import ApiKey
from magi1.errors import (
    AuthError,
    InsufficientBalanceError,
    InvalidRequestError,
    RateLimitedError,
    ServerError,
    SubmitUncertainError,
    TaskNotFoundError,
    TransportError,
    UploadError,
)

FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.2)


def make_client(emulator, key=None, **kwargs):
    sleeps = []
    client = WaveSpeedClient(
        emulator.base_url, ApiKey(key or emulator.api_key, "test"), retry=kwargs.pop("retry", FAST_RETRY),
        sleep=lambda s: sleeps.append(s), **kwargs,
    )
    client.sleeps = sleeps
    return client


def calls(emulator, route, settle_s=2.0):
    """Requests the emulator saw on `route`, once it has finished answering them all."""
    deadline = time.monotonic() + settle_s
    seen = emulator.stats().get(route, 0)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = emulator.stats().get(route, 0)
        if now == seen and now > 0:
            break
        seen = now
    return seen


def test_submit_returns_the_task_and_the_result_completes(emulator):
    client = make_client(emulator)
    task = client.submit({"prompt": "a lighthouse at dusk", "seed": 3})
    assert task.id and task.status == "created"
    emulator.wait_for_task(task.id)
    result = client.get_result(task.id)
    assert result.is_completed and result.outputs[0].endswith(".mp4") and result.inference_ms is not None


def test_a_wrong_key_is_an_auth_error_that_never_repeats_the_key(emulator):
    client = make_client(emulator, key="sk-wrong-key-1234567890")
    with pytest.raises(AuthError) as caught:
        client.submit({"prompt": "x"})
    assert caught.value.status == 401
    assert "wrong-key" not in str(caught.value) and "wrong-key" not in repr(client)
    assert "WAVESPEED_API_KEY" in str(caught.value)


def test_insufficient_balance_says_to_top_up(emulator):
    emulator.add_fault("submit", "status", status=402, message="Insufficient balance")
    with pytest.raises(InsufficientBalanceError, match="Top up"):
        make_client(emulator).submit({"prompt": "x"})


def test_a_refused_parameter_is_an_invalid_request_naming_the_service_message(emulator):
    with pytest.raises(InvalidRequestError, match="num_frames"):
        make_client(emulator).submit({"prompt": "x", "num_frames": 5})


@pytest.mark.parametrize("status", [500, 502, 503])
def test_the_submit_post_is_never_retried_on_a_server_error(emulator, status):
    emulator.add_fault("submit", "status", status=status, count=3)
    client = make_client(emulator)
    with pytest.raises(SubmitUncertainError, match="MAY have been created") as caught:
        client.submit({"prompt": "x"})
    assert caught.value.status == status
    assert calls(emulator, "submit") == 1 and client.sleeps == []


def test_a_submit_accepted_but_answered_500_is_reported_as_maybe_billed(emulator):
    emulator.add_fault("submit", "accept_then_500")
    with pytest.raises(SubmitUncertainError, match="task_id"):
        make_client(emulator).submit({"prompt": "x"})
    assert calls(emulator, "submit") == 1 and len(emulator.tasks()) == 1  # it exists: hence the warning


def test_a_submit_that_times_out_is_not_sent_again(emulator):
    emulator.add_fault("submit", "delay", seconds=1.5)
    client = make_client(emulator, timeouts=Timeouts(connect=2, read=2, submit=0.5, upload=2))
    with pytest.raises(SubmitUncertainError, match="no answer within"):
        client.submit({"prompt": "x"})
    assert calls(emulator, "submit") == 1


def test_a_submit_whose_connection_is_reset_is_not_sent_again(emulator):
    emulator.add_fault("submit", "reset")
    with pytest.raises(SubmitUncertainError):
        make_client(emulator).submit({"prompt": "x"})
    assert calls(emulator, "submit") == 1


def test_a_submit_to_a_closed_port_says_nothing_was_billed():
    client = WaveSpeedClient("http://127.0.0.1:9", ApiKey("k" * 12, "test"), retry=FAST_RETRY)
    with pytest.raises(TransportError, match="nothing was billed"):
        client.submit({"prompt": "x"})


def test_a_429_on_a_poll_is_retried_after_retry_after(emulator):
    task = make_client(emulator).submit({"prompt": "x"})
    emulator.add_fault("result", "status", status=429, retry_after=0.1, count=2)
    client = make_client(emulator)
    assert client.get_result(task.id).id == task.id
    assert client.sleeps == [0.1, 0.1]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_on_a_poll_are_retried_with_growing_capped_delays(emulator, status):
    task = make_client(emulator).submit({"prompt": "x"})
    emulator.add_fault("result", "status", status=status, count=3)
    client = make_client(emulator)
    assert client.get_result(task.id).id == task.id
    assert len(client.sleeps) == 3 and all(0 < s <= FAST_RETRY.max_delay for s in client.sleeps)
    assert client.sleeps[0] < client.sleeps[1] <= client.sleeps[2]


def test_a_reset_connection_on_a_poll_is_retried(emulator):
    task = make_client(emulator).submit({"prompt": "x"})
    emulator.add_fault("result", "reset", count=2)
    assert make_client(emulator).get_result(task.id).id == task.id


def test_a_slow_poll_past_the_read_timeout_is_retried(emulator):
    task = make_client(emulator).submit({"prompt": "x"})
    emulator.add_fault("result", "delay", seconds=1.0)
    client = make_client(emulator, timeouts=Timeouts(connect=2, read=0.3, submit=2, upload=2))
    assert client.get_result(task.id).id == task.id
    assert len(client.sleeps) == 1


def test_polls_give_up_after_the_last_attempt_naming_the_task(emulator):
    task = make_client(emulator).submit({"prompt": "x"})
    emulator.add_fault("result", "status", status=503, count=10)
    with pytest.raises(ServerError, match=task.id):
        make_client(emulator).get_result(task.id)
    assert calls(emulator, "result") == FAST_RETRY.attempts


def test_a_persistent_429_ends_as_rate_limited(emulator):
    task = make_client(emulator).submit({"prompt": "x"})
    emulator.add_fault("result", "status", status=429, count=10)
    with pytest.raises(RateLimitedError):
        make_client(emulator).get_result(task.id)


def test_an_unknown_task_id_is_task_not_found(emulator):
    with pytest.raises(TaskNotFoundError, match="7 days"):
        make_client(emulator).get_result("0" * 32)


def test_a_failed_task_is_a_prediction_with_its_error_not_an_exception(emulator):
    emulator.add_fault("submit", "fail_task", error="moderation refused the prompt", code=1200)
    client = make_client(emulator)
    task = client.submit({"prompt": "x"})
    emulator.wait_for_task(task.id)
    result = client.get_result(task.id)
    assert result.has_failed and result.error == "moderation refused the prompt" and result.code == 1200


def png_bytes():
    import cv2

    ok, encoded = cv2.imencode(".png", np.full((64, 80, 3), 200, np.uint8))
    return encoded.tobytes()


def test_upload_uses_the_two_step_protocol_and_the_bytes_arrive_exactly(emulator):
    content = png_bytes()
    url = make_client(emulator).upload(content, "frame.png")
    assert emulator.uploaded_bytes(url) == content
    assert calls(emulator, "upload") == 1 and calls(emulator, "upload_put") == 1
    assert calls(emulator, "upload_binary") == 0


@pytest.mark.parametrize("status", [404, 405])
def test_upload_falls_back_to_the_binary_endpoint_when_uploads_is_missing(emulator, status):
    emulator.add_fault("upload", "status", status=status)
    content = png_bytes()
    url = make_client(emulator).upload(content, "frame.png")
    assert emulator.uploaded_bytes(url) == content and calls(emulator, "upload_binary") == 1


def test_an_upload_put_failing_for_good_is_an_upload_error_saying_nothing_was_billed(emulator):
    emulator.add_fault("upload_put", "status", status=500, count=10)
    with pytest.raises(UploadError, match="Nothing was submitted"):
        make_client(emulator).upload(png_bytes(), "frame.png")


def test_the_emulator_journal_never_sees_the_key_in_what_it_keeps(emulator):
    client = make_client(emulator)
    client.submit({"prompt": "x"})
    assert emulator.api_key not in repr(emulator.journal())
