"""Fetching a finished video to disk, whole or not at all.

Streams to a temp file in the destination folder and renames it into place only when the
byte count matches Content-Length, the size is under the cap and the file is a whole MP4: its
index is present and every sample it lists lies within the file (`mp4_index`). That last check
is what catches a transfer cut short when the server sent no Content-Length. A broken transfer
is retried; nothing partial is ever left behind.
"""
from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path
from collections.abc import Callable

import requests

from . import mp4_index
from .config import check_url
from .errors import DownloadError, UnsafeUrlError

log = logging.getLogger(__name__)

MAX_VIDEO_BYTES = 2 * 1024**3  # a 192-frame 720p MAGI-1 clip is tens of MB; 2 GiB is "something is wrong"
CHUNK_BYTES = 1024 * 1024
ATTEMPTS = 3
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
) -> Path:
    """Download `url` to `dest` (atomically). Returns `dest`. Raises DownloadError."""
    try:
        check_url(url, what="the video URL")
    except UnsafeUrlError as exc:
        raise DownloadError(str(exc)) from None
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    own_session = session is None
    session = session or requests.Session()
    problem = ""
    try:
        for attempt in range(1, attempts + 1):
            throw_if_interrupted()
            try:
                size = _fetch_once(session, url, dest, max_bytes, timeout, throw_if_interrupted)
                log.info("saved %s to %s (%.1f MB)", what, dest, size / 1e6)
                return dest
            except _Retryable as exc:
                problem = str(exc)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                problem = f"the connection broke ({type(exc).__name__})"
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


class _Retryable(Exception):
    pass


def _fetch_once(session, url, dest, max_bytes, timeout, throw_if_interrupted) -> int:
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with session.get(url, stream=True, timeout=timeout) as response:
            if response.status_code in (404, 410):
                raise DownloadError(
                    f"The video is gone (HTTP {response.status_code}): results are kept for 7 days only."
                )
            if response.status_code >= 400:
                raise _Retryable(f"HTTP {response.status_code}")
            expected = response.headers.get("Content-Length")
            expected_size = int(expected) if expected and expected.isdigit() else None
            if expected_size is not None and expected_size > max_bytes:
                raise DownloadError(f"The video is {expected_size / 1e6:.0f} MB, over the {max_bytes / 1e6:.0f} MB cap.")
            size = 0
            with open(tmp, "wb") as fh:
                for chunk in response.iter_content(CHUNK_BYTES):
                    size += len(chunk)
                    if size > max_bytes:
                        raise DownloadError(f"The video grew past the {max_bytes / 1e6:.0f} MB cap; stopped.")
                    fh.write(chunk)
                    throw_if_interrupted()
        if expected_size is not None and size != expected_size:
            raise _Retryable(f"truncated: got {size} of {expected_size} bytes")
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
