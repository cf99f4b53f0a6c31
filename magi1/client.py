"""The WaveSpeed v3 client: submit, poll, upload, on one `requests.Session`.

Retry rules (see ../shared/notes/contract.md): result GETs and upload steps are retried on 429
(honouring Retry-After), 5xx and connection errors with capped, jittered backoff. The submit POST
is sent exactly once, whatever happens: every accepted POST is billed.
"""
from __future__ import annotations

import hashlib
import logging
import math
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable, Mapping

import requests
import requests.adapters

from . import __version__
from .config import ApiKey, Settings, check_url
from .errors import (
    ApiError,
    AuthError,
    InsufficientBalanceError,
    InvalidRequestError,
    RateLimitedError,
    ServerError,
    SubmitRateLimitedError,
    SubmitUncertainError,
    TaskNotFoundError,
    TransportError,
    UploadError,
)

log = logging.getLogger(__name__)

MODEL_PATH = "wavespeed-ai/magi-1-24b"
COMPLETED = "completed"
FAILED_STATUSES = frozenset({"failed", "cancelled", "timeout", "deleted"})
FINAL_STATUSES = FAILED_STATUSES | {COMPLETED}
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# The longest Retry-After a submit honours in one wait (seconds): a larger, infinite or NaN value
# is capped here; a negative one, or none, means DEFAULT_SUBMIT_RETRY_S.
MAX_SUBMIT_RETRY_AFTER_S = 120.0
DEFAULT_SUBMIT_RETRY_S = 10.0
HISTORY_PAGE_SIZE = 100
POOL_SIZE = 16  # = poller's worker threads
USER_AGENT = f"comfyui-magi1/{__version__}"


@dataclass(frozen=True)
class Timeouts:
    """Seconds; the official SDK's values."""

    connect: float = 10.0
    read: float = 30.0
    submit: float = 60.0
    upload: float = 120.0


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 30.0
    jitter: float = 0.25

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before try number `attempt + 1` (attempt counts from 1)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        backoff = self.base_delay * (2 ** (attempt - 1)) * (1.0 + random.uniform(-self.jitter, self.jitter))
        return min(backoff, self.max_delay)


@dataclass(frozen=True)
class Prediction:
    """One task as WaveSpeed reports it."""

    id: str
    status: str
    outputs: tuple[str, ...] = ()
    error: str = ""
    code: int | None = None
    model: str = ""
    created_at: str = ""
    timings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def is_completed(self) -> bool:
        return self.status == COMPLETED

    @property
    def has_failed(self) -> bool:
        return self.status in FAILED_STATUSES

    @property
    def inference_ms(self) -> int | None:
        value = self.timings.get("inference") if self.timings else None
        return int(value) if isinstance(value, (int, float)) else None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Prediction:
        code = data.get("code")
        return cls(
            id=str(data.get("id") or ""),
            status=str(data.get("status") or "").lower(),
            outputs=tuple(str(u) for u in (data.get("outputs") or ())),
            error=str(data.get("error") or ""),
            code=code if isinstance(code, int) else None,
            model=str(data.get("model") or ""),
            created_at=str(data.get("created_at") or ""),
            timings=dict(data.get("timings") or {}),
        )


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def submit_retry_delay(response: requests.Response) -> float:
    """Seconds to wait after a 429 on submit: `Retry-After` made finite and capped (never spins)."""
    value = _retry_after(response)
    if value is None or not math.isfinite(value) or value <= 0:  # none, NaN, infinite, zero, negative
        return DEFAULT_SUBMIT_RETRY_S
    return min(value, MAX_SUBMIT_RETRY_AFTER_S)


def _envelope(response: requests.Response) -> tuple[int | None, str, Any]:
    try:
        body = response.json()
    except ValueError:
        return None, "", None
    if not isinstance(body, dict):
        return None, "", None
    code = body.get("code")
    return (code if isinstance(code, int) else None), str(body.get("message") or ""), body.get("data")


_BALANCE_WORDS = ("balance", "insufficient", "credit", "top up", "top-up", "quota")


def error_for_answer(response: requests.Response, *, action: str, task_id: str | None = None) -> ApiError:
    """The named exception for a non-success answer, with a message that says what to do."""
    status = response.status_code
    code, service_message, _ = _envelope(response)
    detail = f"HTTP {status}" + (f", code {code}" if code is not None and code != status else "")
    said = f": {service_message}" if service_message else ""
    about = f" (task {task_id})" if task_id else ""
    common = {"status": status, "code": code, "service_message": service_message or None, "task_id": task_id}

    if status == 402 or any(w in service_message.lower() for w in _BALANCE_WORDS):
        return InsufficientBalanceError(
            f"WaveSpeed refused to {action}{about}: the account's balance is too low ({detail}{said}). "
            "Top up at wavespeed.ai, then queue again. Nothing was generated.",
            **common,
        )
    if status in (401, 403):
        return AuthError(
            f"WaveSpeed refused the API key while trying to {action}{about} ({detail}{said}). "
            "Check the key in WAVESPEED_API_KEY or in ComfyUI's settings; a new key works only "
            "after the account's first top-up.",
            **common,
        )
    if status == 404 and task_id:
        return TaskNotFoundError(
            f"WaveSpeed does not know task {task_id} ({detail}{said}). Check the id; results are "
            "kept for 7 days only.",
            **common,
        )
    if status == 429:
        return RateLimitedError(
            f"WaveSpeed is rate-limiting requests to {action}{about} ({detail}{said}). Wait a minute "
            "and queue again; a higher account tier allows more tasks at once.",
            **common,
        )
    if 400 <= status < 500:
        return InvalidRequestError(
            f"WaveSpeed refused the request to {action}{about} ({detail}{said}). Fix the input named "
            "in that message; nothing was billed.",
            **common,
        )
    return ServerError(
        f"WaveSpeed failed to {action}{about} ({detail}{said}). This is on the service's side; "
        "try again in a few minutes.",
        **common,
    )


class WaveSpeedClient:
    """Talks to one WaveSpeed-compatible base URL with one key.

    `sleep` waits between retries; the nodes pass one that wakes up for ComfyUI's Cancel button.
    """

    def __init__(
        self,
        base_url: str,
        api_key: ApiKey,
        *,
        session: requests.Session | None = None,
        timeouts: Timeouts = Timeouts(),
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = check_url(base_url.rstrip("/"), what="the WaveSpeed base URL")
        self._api_key = api_key
        if session is None:
            session = requests.Session()
            # As many connections as the pack's worker threads, and a thread waits for a free one
            # rather than opening one the pool then throws away ("connection pool is full").
            adapter = requests.adapters.HTTPAdapter(pool_maxsize=POOL_SIZE, pool_block=True)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self.session = session
        self.session.headers.setdefault("User-Agent", USER_AGENT)
        self.timeouts = timeouts
        self.retry = retry
        self.sleep = sleep

    def __repr__(self) -> str:
        return f"WaveSpeedClient({self.base_url!r}, key={self._api_key!r})"

    # -- plumbing ----------------------------------------------------------------------------------
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key.reveal()}"}

    def _url(self, path: str) -> str:
        return f"{self.base_url}/api/v3/{path.lstrip('/')}"

    def _send_with_retries(
        self,
        send: Callable[[], requests.Response],
        *,
        action: str,
        task_id: str | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> requests.Response:
        """Run `send` until it answers something not worth retrying, or the attempts run out."""
        sleep = sleep or self.sleep
        last_error: Exception | None = None
        for attempt in range(1, self.retry.attempts + 1):
            retry_after = None
            try:
                response = send()
            except (requests.ConnectionError, requests.Timeout) as exc:
                last_error = TransportError(
                    f"Could not reach WaveSpeed to {action}"
                    + (f" (task {task_id})" if task_id else "")
                    + f": {type(exc).__name__}. Check the network or WAVESPEED_BASE_URL.",
                    task_id=task_id,
                )
                reason = type(exc).__name__
            else:
                if response.status_code not in RETRYABLE_STATUSES:
                    return response
                last_error = error_for_answer(response, action=action, task_id=task_id)
                retry_after = _retry_after(response)
                reason = f"HTTP {response.status_code}"
                response.close()
            if attempt == self.retry.attempts:
                break
            delay = self.retry.delay(attempt, retry_after)
            log.warning(
                "%s%s: %s; retry %d/%d in %.1f s",
                action,
                f" (task {task_id})" if task_id else "",
                reason,
                attempt,
                self.retry.attempts - 1,
                delay,
            )
            sleep(delay)
        assert last_error is not None
        raise last_error

    def _data(self, response: requests.Response, *, action: str, task_id: str | None = None) -> Any:
        if response.status_code != 200:
            raise error_for_answer(response, action=action, task_id=task_id)
        code, message, data = _envelope(response)
        if not isinstance(data, dict) or (code is not None and code != 200):
            raise ServerError(
                f"WaveSpeed answered {action} with something that is not its usual envelope "
                f"(code {code}: {message or 'no message'}). Check WAVESPEED_BASE_URL.",
                status=response.status_code,
                code=code,
                service_message=message or None,
                task_id=task_id,
            )
        return data

    # -- the calls ---------------------------------------------------------------------------------
    def submit(self, payload: Mapping[str, Any]) -> Prediction:
        """POST the task once. Never retried here: a second POST would be a second bill.

        Raises SubmitRateLimitedError on 429 (nothing was created: the caller may wait
        `retry_after` and submit again), SubmitUncertainError when the task may exist (timeout,
        connection dropped after sending, 5xx, an answer that is not the envelope, no id), and
        the other ApiErrors for a clear refusal (nothing billed).
        """
        url = self._url(MODEL_PATH)
        try:
            response = self.session.post(
                url, json=dict(payload), headers=self._auth(), timeout=(self.timeouts.connect, self.timeouts.submit)
            )
        except requests.ConnectTimeout as exc:
            raise TransportError(
                f"Could not connect to WaveSpeed to submit the task ({type(exc).__name__}). "
                "Nothing was sent, so nothing was billed; check the network and queue again."
            ) from None
        except requests.ConnectionError as exc:
            if _never_sent(exc):
                raise TransportError(
                    f"Could not connect to WaveSpeed to submit the task ({type(exc).__name__}). "
                    "Nothing was sent, so nothing was billed; check the network and queue again."
                ) from None
            raise _uncertain(f"the connection broke ({type(exc).__name__})") from None
        except requests.Timeout:
            raise _uncertain(f"no answer within {self.timeouts.submit:.0f} s") from None
        if response.status_code >= 500:
            code, message, _ = _envelope(response)
            raise _uncertain(f"HTTP {response.status_code}" + (f": {message}" if message else ""),
                             status=response.status_code, code=code)
        if response.status_code == 429:
            code, message, _ = _envelope(response)
            delay = submit_retry_delay(response)
            raise SubmitRateLimitedError(
                f"WaveSpeed is rate-limiting submits (HTTP 429{': ' + message if message else ''}); "
                f"nothing was created. Waiting {delay:.0f} s before submitting again.",
                retry_after=delay, status=429, code=code, service_message=message or None,
            )
        if response.status_code == 200:
            code, message, data = _envelope(response)
            if not isinstance(data, dict) or (code is not None and code != 200):
                kind = response.headers.get("Content-Type", "?").split(";")[0]
                raise _uncertain(f"an answer that is not WaveSpeed's envelope ({kind})", status=200, code=code)
        data = self._data(response, action="submit the task")
        prediction = Prediction.from_data(data)
        if not prediction.id:
            raise _uncertain("the answer carried no task id", status=response.status_code)
        log.info("submitted MAGI-1 task %s", prediction.id)
        return prediction

    def get_result(self, task_id: str, *, sleep: Callable[[float], None] | None = None) -> Prediction:
        url = self._url(f"predictions/{task_id}/result")
        response = self._send_with_retries(
            lambda: self.session.get(url, headers=self._auth(), timeout=(self.timeouts.connect, self.timeouts.read)),
            action="check the task",
            task_id=task_id,
            sleep=sleep,
        )
        data = self._data(response, action="check the task", task_id=task_id)
        prediction = Prediction.from_data(data)
        if not prediction.id:
            prediction = Prediction.from_data({**data, "id": task_id})
        return prediction

    def history(
        self,
        *,
        created_after: str | None = None,
        model: str | None = MODEL_PATH,
        page: int = 1,
        page_size: int = HISTORY_PAGE_SIZE,
        sleep: Callable[[float], None] | None = None,
    ) -> list[Prediction]:
        """One page of the account's predictions of the last 7 days, newest first.

        `POST /api/v3/predictions` (see ../shared/notes/wavespeed-api.md); `created_after` is an
        ISO 8601 time. Items carry no inputs. Retried like a poll (it creates nothing).
        """
        body: dict[str, Any] = {"page": page, "page_size": page_size}
        if model:
            body["model"] = model
        if created_after:
            body["created_after"] = created_after
        action = "list recent predictions"
        response = self._send_with_retries(
            lambda: self.session.post(
                self._url("predictions"), json=body, headers=self._auth(),
                timeout=(self.timeouts.connect, self.timeouts.read),
            ),
            action=action,
            sleep=sleep,
        )
        data = self._data(response, action=action)
        items = data.get("items") or []
        return [Prediction.from_data(item) for item in items if isinstance(item, dict) and item.get("id")]

    def upload(
        self,
        content: bytes,
        filename: str,
        content_type: str = "image/png",
        *,
        sleep: Callable[[float], None] | None = None,
    ) -> str:
        """Upload bytes, return the URL the service can read them from.

        Two steps as the official SDK does today (`/media/uploads` then a PUT of the bytes to the
        URL it names, with exactly its headers and no bearer); the older one-step
        `/media/upload/binary` when the service answers 404 or 405 to the first.
        """
        action = "upload the first frame"
        try:
            response = self._send_with_retries(
                lambda: self.session.post(
                    self._url("media/uploads"),
                    json={"filename": filename, "size": len(content), "content_type": content_type},
                    headers=self._auth(),
                    timeout=(self.timeouts.connect, self.timeouts.read),
                ),
                action=action,
                sleep=sleep,
            )
        except ApiError as exc:
            raise _as_upload_error(exc) from None
        if response.status_code in (404, 405):
            response.close()
            log.info("/media/uploads answered %d; using the older /media/upload/binary", response.status_code)
            return self._upload_binary(content, filename, content_type, sleep=sleep)
        try:
            data = self._data(response, action=action)
        except ApiError as exc:
            raise _as_upload_error(exc) from None
        upload = data.get("upload") or {}
        download_url = data.get("download_url")
        put_url = upload.get("url")
        if not put_url or not download_url:
            raise UploadError(
                "WaveSpeed's upload answer named no upload or download URL. Check WAVESPEED_BASE_URL.",
                status=response.status_code,
            )
        check_url(put_url, what="the upload URL")
        method = str(upload.get("method") or "PUT").upper()
        headers = {str(k): str(v) for k, v in (upload.get("headers") or {}).items()}
        put_session = requests.Session()  # no bearer, no session defaults: exactly upload.headers
        try:
            put = self._send_with_retries(
                lambda: put_session.request(
                    method, put_url, data=content, headers=headers,
                    timeout=(self.timeouts.connect, self.timeouts.upload),
                ),
                action=action,
                sleep=sleep,
            )
        except ApiError as exc:
            raise _as_upload_error(exc) from None
        finally:
            put_session.close()
        if not 200 <= put.status_code < 300:
            raise UploadError(
                f"The upload of the first frame was refused (HTTP {put.status_code}). Queue again; "
                "if it persists, the service's storage is failing.",
                status=put.status_code,
            )
        log.info("uploaded %s (%d bytes)", filename, len(content))
        return str(download_url)

    def _upload_binary(
        self, content: bytes, filename: str, content_type: str, *, sleep: Callable[[float], None] | None = None
    ) -> str:
        action = "upload the first frame"
        try:
            response = self._send_with_retries(
                lambda: self.session.post(
                    self._url("media/upload/binary"),
                    files={"file": (filename, content, content_type)},
                    headers=self._auth(),
                    timeout=(self.timeouts.connect, self.timeouts.upload),
                ),
                action=action,
                sleep=sleep,
            )
            data = self._data(response, action=action)
        except ApiError as exc:
            raise _as_upload_error(exc) from None
        download_url = data.get("download_url")
        if not download_url:
            raise UploadError("WaveSpeed's upload answer named no download URL.", status=response.status_code)
        log.info("uploaded %s (%d bytes, binary endpoint)", filename, len(content))
        return str(download_url)

    def close(self) -> None:
        self.session.close()


def _never_sent(exc: requests.ConnectionError) -> bool:
    """True when the connection was refused or never opened, so the POST never left."""
    text = repr(exc)
    return any(s in text for s in ("NewConnectionError", "Connection refused", "NameResolutionError"))


def _uncertain(why: str, *, status: int | None = None, code: int | None = None) -> SubmitUncertainError:
    return SubmitUncertainError(
        f"The submit request got no clear answer ({why}). The task MAY have been created and "
        "billed. It was not sent again. Check your task history on wavespeed.ai (or the emulator's "
        "journal) before queueing again; if you find the task id there, paste it into Magi1Poll's "
        "task_id to collect the video.",
        status=status,
        code=code,
    )


def _as_upload_error(exc: ApiError) -> ApiError:
    if isinstance(exc, (AuthError, InsufficientBalanceError, UploadError)):
        return exc
    return UploadError(
        f"{exc} Nothing was submitted or billed.",
        status=exc.status, code=exc.code, service_message=exc.service_message,
    )


_clients: dict[tuple[str, str], WaveSpeedClient] = {}
_clients_lock = threading.Lock()


def client_for(settings: Settings) -> WaveSpeedClient:
    """One client (and so one connection pool) per base URL and key, reused across runs.

    It keeps no per-run state: a run passes its own cancel-aware `sleep` to each call (`upload`,
    `get_result`, `history`), so a Cancel in one run never leaks into the next.
    """
    fingerprint = hashlib.sha256(settings.api_key.reveal().encode()).hexdigest()
    with _clients_lock:
        client = _clients.get((settings.base_url, fingerprint))
        if client is None:
            client = WaveSpeedClient(settings.base_url, settings.api_key)
            _clients[(settings.base_url, fingerprint)] = client
        return client
