"""The WaveSpeed v3 client: submit, poll, upload, on one `requests.Session`.

Retry rules (see ../shared/notes/contract.md): result GETs and upload steps are retried on 429
(honouring Retry-After), 5xx and connection errors with capped, jittered backoff. The submit POST
is sent exactly once, whatever happens: every accepted POST is billed.
"""
from __future__ import annotations

import email.utils
import hashlib
import logging
import math
import random
import re
import threading
import time
from datetime import timezone
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable, Mapping

import requests
import requests.adapters

from . import __version__
from .config import ApiKey, Settings, check_url
from .task_ids import is_task_id, shown
from .urls import PolicySession
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
    UnexpectedTaskIdError,
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
UPLOAD_METHODS = frozenset({"PUT", "POST"})  # what a presigned storage URL takes
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")  # no CR, LF or other control character
RETRY_AFTER_MAX_S = 600.0  # a longer wait is a broken or hostile answer; the node would look hung


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
    # The service's content check flagged an output (its video may be blanked). WaveSpeed sends
    # `has_nsfw_contents` as one boolean per output (wavespeed-api.md); True when any is true.
    has_nsfw_contents: bool = False

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
        """The task in a `data` object. Raises AnswerShapeError naming the field when `status` is
        not text or `outputs` is not a list of URL strings (a service or proxy answering something
        else); informational fields of another type (`timings`, `code`) are dropped."""
        status = data.get("status")
        if status is not None and not isinstance(status, str):
            raise AnswerShapeError(f"its status is a {type(status).__name__}, not text")
        outputs = data.get("outputs") or ()
        if not isinstance(outputs, (list, tuple)) or not all(isinstance(url, str) for url in outputs):
            raise AnswerShapeError("its outputs are not a list of URLs")
        code = data.get("code")
        timings = data.get("timings")
        return cls(
            id=str(data.get("id") or ""),
            status=(status or "").lower(),
            outputs=tuple(outputs),
            error=str(data.get("error") or ""),
            code=code if isinstance(code, int) else None,
            model=str(data.get("model") or ""),
            created_at=str(data.get("created_at") or ""),
            timings=dict(timings) if isinstance(timings, Mapping) else {},
            has_nsfw_contents=_any_flag(data.get("has_nsfw_contents")),
        )


class AnswerShapeError(ValueError):
    """A field of a WaveSpeed answer has a type the pack cannot use; the client turns it into an
    ApiError naming the task (its text says which field, never a value)."""


def _retry_after(response: requests.Response, *, now: float | None = None) -> float | None:
    """Seconds `Retry-After` asks to wait, in 0…RETRY_AFTER_MAX_S; None when absent or unusable.

    RFC 9110 §10.2.3: delay-seconds (digits; a decimal is accepted too) or an HTTP-date, which
    becomes the seconds from `now` (default: the clock) to it, 0 when past. NaN, infinities,
    negatives and anything unparsable give None (the caller's own backoff); huge values are capped.
    """
    value = (response.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        current = time.time() if now is None else now
        seconds = max(when.timestamp() - current, 0.0)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, RETRY_AFTER_MAX_S)


def submit_retry_delay(response: requests.Response) -> float:
    """Seconds to wait after a 429 on submit: `Retry-After` made finite and capped (never spins)."""
    value = _retry_after(response)
    if value is None or not math.isfinite(value) or value <= 0:  # none, NaN, infinite, zero, negative
        return DEFAULT_SUBMIT_RETRY_S
    return min(value, MAX_SUBMIT_RETRY_AFTER_S)


def _envelope(response: requests.Response) -> tuple[int | None, str, Any]:
    """(code, message, data) of WaveSpeed's JSON envelope; the message without the request's key."""
    try:
        body = response.json()
    except ValueError:
        return None, "", None
    if not isinstance(body, dict):
        return None, "", None
    code = body.get("code")
    message = without_credentials(str(body.get("message") or ""), response)
    return (code if isinstance(code, int) else None), message, body.get("data")


def without_credentials(text: str, response: requests.Response) -> str:
    """`text` from an answer with the credential its request carried cut out.

    A proxy or a debugging server in front of the API may echo the request's headers in an error
    body; that text ends up in the node's error, /history and the log.
    """
    for answered in (*response.history, response):
        request = answered.request
        credential = (request.headers.get("Authorization") or "") if request is not None else ""
        token = credential.split(" ", 1)[-1].strip()
        if len(token) >= 8 and token in text:
            text = text.replace(token, "<the API key>")
    return text


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
            # Redirects are checked hop by hop, and the key goes only to the base URL's origin.
            session = PolicySession(key_origin=self.base_url)
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
            except requests.TooManyRedirects:
                raise ServerError(
                    f"WaveSpeed's answer to {action}" + (f" (task {task_id})" if task_id else "")
                    + " redirected too many times. Check WAVESPEED_BASE_URL.",
                    task_id=task_id,
                ) from None
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ContentDecodingError,
                    requests.exceptions.ChunkedEncodingError) as exc:
                # A body that does not decode as its Content-Encoding says is a broken transfer too.
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
                f"WaveSpeed answered {action}" + (f" (task {task_id})" if task_id else "")
                + f" with something that is not its usual envelope (code {code}: {message or 'no message'}). "
                "Check WAVESPEED_BASE_URL.",
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
        except requests.TooManyRedirects:
            raise _uncertain("the answer redirected too many times") from None
        except requests.RequestException as exc:  # e.g. a body that does not decode: sent, maybe billed
            raise _uncertain(f"the answer could not be read ({type(exc).__name__})") from None
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
        if not data.get("id"):
            raise _uncertain("the answer carried no task id", status=response.status_code)
        if not is_task_id(data.get("id")):
            raise _uncertain(f"the answer's task id {shown(data.get('id'))} is not a valid task id",
                             status=response.status_code)
        try:
            prediction = Prediction.from_data(data)
        except AnswerShapeError as exc:  # billed already: keep the id, the poll reads the rest
            log.warning("the submit answer for task %s is odd (%s); polling it as usual", data["id"], exc)
            prediction = Prediction(id=data["id"], status="created")
        log.info("submitted MAGI-1 task %s", prediction.id)
        return prediction

    def get_result(self, task_id: str, *, sleep: Callable[[float], None] | None = None) -> Prediction:
        """The task's state. UnexpectedTaskIdError when the answer is about another id."""
        if not is_task_id(task_id):
            raise UnexpectedTaskIdError(
                f"{shown(task_id)} is not a WaveSpeed task id; nothing was asked. Copy the id from "
                "Magi1Submit's task_id output.",
                task_id=None, answered_id=None,
            )
        url = self._url(f"predictions/{task_id}/result")
        response = self._send_with_retries(
            lambda: self.session.get(url, headers=self._auth(), timeout=(self.timeouts.connect, self.timeouts.read)),
            action="check the task",
            task_id=task_id,
            sleep=sleep,
        )
        data = self._data(response, action="check the task", task_id=task_id)
        answered = data.get("id")
        if answered is not None and answered != "" and answered != task_id:
            raise UnexpectedTaskIdError(
                f"WaveSpeed answered the check of task {task_id} with task {shown(answered)}. The "
                "answer was ignored; check WAVESPEED_BASE_URL (a proxy or cache in between?) and "
                f"collect {task_id} again by pasting it into Magi1Poll's task_id.",
                status=response.status_code, task_id=task_id, answered_id=str(answered),
            )
        error = data.get("error")
        if isinstance(error, str):
            data = {**data, "error": without_credentials(error, response)}
        try:
            return Prediction.from_data({**data, "id": task_id})
        except AnswerShapeError as exc:
            raise ServerError(
                f"WaveSpeed's answer about task {task_id} is not understood: {exc}. Check "
                f"WAVESPEED_BASE_URL (a proxy in between?); collect {task_id} later by pasting it into "
                "Magi1Poll's task_id.",
                status=response.status_code, task_id=task_id,
            ) from None

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
        target = _upload_target(data)
        if target is None:
            raise UploadError(
                "WaveSpeed's upload answer named no usable upload or download URL (a field is missing, "
                "of another type, or a header or method a request cannot carry). Check WAVESPEED_BASE_URL. "
                "Nothing was submitted or billed.",
                status=response.status_code,
            )
        put_url, method, headers, download_url = target
        check_url(put_url, what="the upload URL")
        put_session = PolicySession()  # no bearer, no session defaults: exactly upload.headers
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
        if not isinstance(download_url, str) or not download_url:
            raise UploadError("WaveSpeed's upload answer named no download URL.", status=response.status_code)
        log.info("uploaded %s (%d bytes, binary endpoint)", filename, len(content))
        return str(download_url)

    def balance(self, *, sleep: Callable[[float], None] | None = None) -> float:
        """The account's balance in USD: `GET /api/v3/balance` → `data.balance` (wavespeed-api.md).

        Retried like a result GET (429, 5xx, connection errors). Raises AuthError for a refused
        key, ServerError when the answer carries no finite number.
        """
        action = "read the account's balance"
        url = self._url("balance")
        response = self._send_with_retries(
            lambda: self.session.get(url, headers=self._auth(), timeout=(self.timeouts.connect, self.timeouts.read)),
            action=action,
            sleep=sleep,
        )
        if response.status_code == 404:  # its message names the path, which error_for_answer reads as "balance too low"
            response.close()
            raise ServerError(
                "This service has no balance endpoint (GET /api/v3/balance answered HTTP 404). "
                "Check WAVESPEED_BASE_URL; the balance is also shown on wavespeed.ai.",
                status=404,
            )
        value = self._data(response, action=action).get("balance")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ServerError(
                f"WaveSpeed answered the balance request without a number ({str(value)[:40]!r}). "
                "Check WAVESPEED_BASE_URL.",
                status=response.status_code,
            )
        return float(value)

    def close(self) -> None:
        self.session.close()


def _upload_target(data: Mapping[str, Any]) -> tuple[str, str, dict[str, str], str] | None:
    """(upload URL, method, headers, download URL) from a `/media/uploads` answer; None when a
    field is missing or of a shape that cannot be sent as is (a method other than PUT/POST, a
    header name that is not a token, a value with a line break or control character)."""
    upload = data.get("upload")
    download_url = data.get("download_url")
    if not isinstance(upload, Mapping) or not isinstance(download_url, str) or not download_url:
        return None
    put_url, method, headers = upload.get("url"), upload.get("method") or "PUT", upload.get("headers") or {}
    if not isinstance(put_url, str) or not put_url or not isinstance(method, str) \
            or method.upper() not in UPLOAD_METHODS or not isinstance(headers, Mapping):
        return None
    clean = {str(name): str(value) for name, value in headers.items() if isinstance(value, (str, int))}
    if len(clean) != len(headers) or not all(
            _HEADER_NAME.fullmatch(name) and _HEADER_VALUE.fullmatch(value) for name, value in clean.items()):
        return None
    return put_url, method.upper(), clean, download_url


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


def _any_flag(value: Any) -> bool:
    """`has_nsfw_contents` as one bool: a list of per-output booleans, or a single boolean."""
    if isinstance(value, (list, tuple)):
        return any(item is True for item in value)
    return value is True


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
