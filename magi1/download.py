"""Fetching a finished video to disk, whole or not at all.

Streams to a temp file in the destination folder and renames it into place only when the
byte count matches Content-Length, the size is under the cap and the file is a whole MP4: its
index is present and every sample it lists lies within the file (`mp4_index`). That last check
is what catches a transfer cut short when the server sent no Content-Length. A broken transfer
is retried; nothing partial is ever left behind.

Content encodings (gzip, deflate, br where installed) are decoded by requests/urllib3: the
Content-Length check compares the bytes that came over the wire (`raw.tell()`), the size cap the
decoded bytes. Every URL and redirect hop follows the pack's URL policy (magi1.urls); downloads
never carry the API key, nor a ~/.netrc login (`keep_headers`; pass a `urls.PolicySession`, whose
redirects do not consult ~/.netrc either).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from collections.abc import Callable

import requests

from . import mp4_index
from .config import check_url
from .errors import DownloadError, UnsafeUrlError
from .urls import PolicySession, RedirectGuard, keep_headers

log = logging.getLogger(__name__)

MAX_VIDEO_BYTES = 2 * 1024**3  # a 192-frame 720p MAGI-1 clip is tens of MB; 2 GiB is "something is wrong"
CHUNK_BYTES = 1024 * 1024
ATTEMPTS = 3
MAX_SECONDS = 1800.0  # per try; 2 GiB at 1.2 MB/s. A server trickling bytes must not hold a worker for ever
WATCH_TICK_S = 0.25  # how often the watchdog looks for Cancel and the deadline while a read blocks
looks_like_mp4 = mp4_index.starts_like_mp4


def mp4_index_and_samples_present(path: Path) -> bool:
    """True when `path` is an MP4 whose index (moov) is there and whose samples all lie within it.

    Reads box headers and the index only (milliseconds). A saved copy that fails this was cut
    short (an older download without Content-Length, a full disk) and must be downloaded again.
    """
    return mp4_index.problem(path) is None


def download_video(
    url: str,
    dest: Path,
    *,
    session: requests.Session | None = None,
    what: str = "the video",
    max_bytes: int = MAX_VIDEO_BYTES,
    attempts: int = ATTEMPTS,
    timeout: tuple[float, float] = (10.0, 60.0),
    throw_if_interrupted: Callable[[], None] = lambda: None,
    sleep: Callable[[float], None] = time.sleep,
    max_seconds: float = MAX_SECONDS,
) -> Path:
    """Download `url` to `dest` (atomically). Returns `dest`. Raises DownloadError.

    `timeout` bounds each connect and each read; `max_seconds` bounds a whole try, and a Cancel
    (`throw_if_interrupted` raising) ends a read that blocks, within WATCH_TICK_S: a watchdog
    thread shuts the socket down, so a server that sends one byte now and then cannot hold
    the thread (and the pack's worker pool) for ever.
    """
    try:
        check_url(url, what="the video URL")
    except UnsafeUrlError as exc:
        raise DownloadError(str(exc)) from None
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    own_session = session is None
    session = session or PolicySession()
    problem = ""
    try:
        for attempt in range(1, attempts + 1):
            throw_if_interrupted()
            try:
                size = _fetch_once(session, url, dest, max_bytes, timeout, throw_if_interrupted, max_seconds)
                log.info("saved %s to %s (%.1f MB)", what, dest, size / 1e6)
                return dest
            except UnsafeUrlError as exc:
                raise DownloadError(f"Refused to download {what}: {exc}") from None
            except _Retryable as exc:
                problem = str(exc)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                problem = f"the connection broke ({type(exc).__name__})"
            except requests.RequestException as exc:  # a body that does not decode as its Content-Encoding says
                problem = f"the answer could not be read ({type(exc).__name__})"
            if attempt < attempts:
                log.warning("downloading %s: %s; retry %d/%d", what, problem, attempt, attempts - 1)
                sleep(min(2.0 ** attempt, 10.0))
    finally:
        if own_session:
            session.close()
    raise DownloadError(
        f"Could not download {what} after {attempts} tries: {problem}. The result stays on "
        "WaveSpeed for 7 days: queue the graph again (a fixed seed reuses the task, so it is not "
        "billed twice) or paste the URL into Magi1LoadVideo."
    )


def _content_length(value: str | None) -> int | None:
    """The header's byte count when it is plain ASCII digits (RFC 9110 §8.6), else None (unknown).

    `str.isdigit()` also accepts '²' or '١', which int() refuses or reads as another number.
    """
    value = (value or "").strip()
    return int(value) if value.isascii() and value.isdigit() else None


class _Retryable(Exception):
    pass


class _Watchdog:
    """Shuts a streaming response's socket down at `deadline` or when `throw_if_interrupted` raises.

    A read blocked in recv() then returns at once; `raise_if_fired` (called by the reader after
    the read loop, whether it ended or failed) raises the Cancel or a DownloadError for the deadline.
    """

    def __init__(self, max_seconds: float, throw_if_interrupted: Callable[[], None]) -> None:
        self.max_seconds = max_seconds
        self.deadline = time.monotonic() + max_seconds
        self.throw_if_interrupted = throw_if_interrupted
        self.fired: BaseException | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, response: requests.Response) -> None:
        self._thread = threading.Thread(target=self._run, args=(response,), name="magi1-download-watchdog",
                                        daemon=True)
        self._thread.start()

    def _run(self, response: requests.Response) -> None:
        while not self._done.wait(WATCH_TICK_S):
            try:
                self.throw_if_interrupted()
            except BaseException as exc:  # noqa: BLE001 - the Cancel, handed to the reader
                self.fired = exc
            if self.fired is None and time.monotonic() > self.deadline:
                self.fired = DownloadError(
                    f"The download took longer than {self.max_seconds:.0f} s and was stopped (the server "
                    "sends too slowly). Try again later or paste another URL."
                )
            if self.fired is not None:
                _shut_down(response)
                return

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def raise_if_fired(self) -> None:
        self.stop()
        if self.fired is not None:
            raise self.fired


def _shut_down(response: requests.Response) -> None:
    """Wake a reader blocked on this response's socket (shutdown, not close: the reader owns it)."""
    connection = getattr(response.raw, "connection", None) or getattr(response.raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _fetch_once(session, url, dest, max_bytes, timeout, throw_if_interrupted, max_seconds=MAX_SECONDS) -> int:
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        # Redirects are followed by requests, each hop checked by the guard before it is sent.
        guard = RedirectGuard(what="the video URL's redirect")
        with session.get(url, stream=True, timeout=timeout, hooks={"response": guard},
                         auth=keep_headers) as response:
            if response.status_code in (404, 410):
                raise DownloadError(
                    f"The video is gone (HTTP {response.status_code}): results are kept for 7 days only."
                )
            if response.status_code >= 400:
                raise _Retryable(f"HTTP {response.status_code}")
            expected_size = _content_length(response.headers.get("Content-Length"))
            if expected_size is not None and expected_size > max_bytes:
                raise DownloadError(f"The video is {expected_size / 1e6:.0f} MB, over the {max_bytes / 1e6:.0f} MB cap.")
            size = 0
            watchdog = _Watchdog(max_seconds, throw_if_interrupted)
            watchdog.watch(response)
            try:
                with open(tmp, "wb") as fh:
                    for chunk in response.iter_content(CHUNK_BYTES):
                        size += len(chunk)
                        if size > max_bytes:
                            raise DownloadError(f"The video grew past the {max_bytes / 1e6:.0f} MB cap; stopped.")
                        fh.write(chunk)
                        throw_if_interrupted()
            except Exception:
                watchdog.raise_if_fired()  # a read cut short by the watchdog: its reason, not the symptom
                raise
            watchdog.raise_if_fired()  # a cut without Content-Length ends the loop quietly: never keep it
            received = response.raw.tell()  # bytes on the wire, before any content decoding
        if expected_size is not None and received != expected_size:
            raise _Retryable(f"truncated: got {received} of {expected_size} bytes")
        if size == 0:
            raise _Retryable("the answer was empty")
        with open(tmp, "rb") as fh:
            if not looks_like_mp4(fh.read(12)):
                raise DownloadError(
                    "The downloaded file is not an MP4 (it does not start with an MP4 box). "
                    "Check the URL; if it came from WaveSpeed, the service returned a broken file."
                )
        if (problem := mp4_index.problem(tmp)) is not None:
            raise _Retryable(f"the MP4 arrived incomplete: {problem}")
        os.replace(tmp, dest)
        return size
    finally:
        tmp.unlink(missing_ok=True)
