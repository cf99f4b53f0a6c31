"""Where the pack talks to, and with which key.

The key comes from `WAVESPEED_API_KEY`, else from a key file the pack's own settings route wrote
into a private folder of ComfyUI's user directory. The environment wins. The key is held in an
`ApiKey`, whose repr and str never show it.
"""
from __future__ import annotations

import logging
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from . import urls
from .errors import InvalidApiKeyError, MissingApiKeyError

log = logging.getLogger(__name__)

is_loopback_host = urls.is_loopback_host  # kept for callers of config.is_loopback_host

DEFAULT_BASE_URL = "https://api.wavespeed.ai"
ENV_API_KEY = "WAVESPEED_API_KEY"
ENV_BASE_URL = "WAVESPEED_BASE_URL"
KEY_FILE_NAME = "wavespeed_api_key"


class ApiKey:
    """A secret that refuses to be printed."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self.source = source

    def reveal(self) -> str:
        return self._value

    @property
    def last4(self) -> str:
        return self._value[-4:] if len(self._value) >= 8 else ""

    def __repr__(self) -> str:
        return f"ApiKey(<hidden>, source={self.source!r})"

    __str__ = __repr__


KEY_MIN_CHARS = 8
KEY_MAX_CHARS = 512  # WaveSpeed keys are 64 hex characters; anything far longer is a pasted file


def _clean_key(raw: str | None) -> str | None:
    if raw is None:
        return None
    key = raw.strip()
    return key or None


def _describe_character(char: str) -> str:
    if char in "\r\n\u2028\u2029\x85":
        return "a line break"
    if char.isspace():
        return f"a space (U+{ord(char):04X})"
    name = unicodedata.name(char, "")
    kind = "an invisible or control character" if unicodedata.category(char)[0] in "CZ" else "a non-ASCII character"
    return f"{kind} (U+{ord(char):04X}{' ' + name if name else ''})"


def check_key(raw: str | None, *, source: str) -> str | None:
    """The key with surrounding whitespace removed, or None when empty; InvalidApiKeyError if malformed.

    A key is 8…512 printable ASCII characters (0x21…0x7E): HTTP header values cannot carry more,
    and a line break or an invisible character (a zero-width space, a byte-order mark) is a
    copy-paste accident that would fail every call later. The error names the character and its
    position, never the key: `source` says where the key came from (the variable, the file…).
    """
    key = _clean_key(raw)
    if key is None:
        return None
    for position, char in enumerate(key, start=1):
        if not 0x21 <= ord(char) <= 0x7E:
            raise InvalidApiKeyError(
                f"The WaveSpeed API key from {source} contains {_describe_character(char)} at character "
                f"{position} of {len(key)}. Copy the key again from wavespeed.ai (one line, nothing else) "
                "and set it again."
            )
    if not KEY_MIN_CHARS <= len(key) <= KEY_MAX_CHARS:
        raise InvalidApiKeyError(
            f"The WaveSpeed API key from {source} has {len(key)} characters; a key has "
            f"{KEY_MIN_CHARS}…{KEY_MAX_CHARS}. Copy the key again from wavespeed.ai and set it again."
        )
    return key


def key_file(private_dir: Path) -> Path:
    return Path(private_dir) / KEY_FILE_NAME


def read_key_file(private_dir: Path | None) -> str | None:
    if private_dir is None:
        return None
    path = key_file(private_dir)
    try:
        return _clean_key(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("could not read the WaveSpeed key file %s: %s", path, exc.strerror)
        return None


def write_key_file(private_dir: Path, key: str) -> Path:
    """Store `key` with mode 0600 (written to a temp file first, so a reader never sees half).

    Raises InvalidApiKeyError (never showing the key) for a malformed one, ValueError when empty.
    """
    key = check_key(key, source="the key given") or ""
    if not key:
        raise ValueError("empty key")
    private_dir = Path(private_dir)
    private_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = key_file(private_dir)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, key.encode("utf-8"))
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def delete_key_file(private_dir: Path) -> bool:
    try:
        key_file(private_dir).unlink()
        return True
    except FileNotFoundError:
        return False


def find_api_key(private_dir: Path | None) -> ApiKey | None:
    """The key in use (environment first), or None; InvalidApiKeyError when that key is malformed."""
    env_key = check_key(os.environ.get(ENV_API_KEY), source=f"the environment variable {ENV_API_KEY}")
    if env_key:
        return ApiKey(env_key, "environment")
    file_key = check_key(read_key_file(private_dir), source="the key file stored from ComfyUI's settings")
    if file_key:
        return ApiKey(file_key, "settings")
    return None


def resolve_api_key(private_dir: Path | None) -> ApiKey:
    key = find_api_key(private_dir)
    if key is None:
        raise MissingApiKeyError()
    return key


def check_url(url: str, *, what: str = "URL") -> str:
    """The pack's URL policy (see magi1.urls): https://, or http:// only on a loopback host."""
    return urls.check_url(url, what=what)


def resolve_base_url() -> str:
    base = (os.environ.get(ENV_BASE_URL) or "").strip() or DEFAULT_BASE_URL
    return check_url(base.rstrip("/"), what=ENV_BASE_URL)


@dataclass(frozen=True)
class Settings:
    base_url: str
    api_key: ApiKey


def load_settings(private_dir: Path | None) -> Settings:
    """Base URL and key, checked; raises ConfigError subclasses with what to do."""
    return Settings(base_url=resolve_base_url(), api_key=resolve_api_key(private_dir))


ENV_LEDGER_URL = "MAGI1_LEDGER_URL"


def ledger_url() -> str | None:
    """`MAGI1_LEDGER_URL` (an SQLAlchemy URL for the task ledger), or None for the SQLite default."""
    value = (os.environ.get(ENV_LEDGER_URL) or "").strip()
    return value or None
