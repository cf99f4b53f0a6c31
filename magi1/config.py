"""Where the pack talks to, and with which key.

The key comes from `WAVESPEED_API_KEY`, else from a key file the pack's own settings route wrote
into a private folder of ComfyUI's user directory. The environment wins. The key is held in an
`ApiKey`, whose repr and str never show it.
"""
from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .errors import MissingApiKeyError, UnsafeUrlError

log = logging.getLogger(__name__)

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


def _clean_key(raw: str | None) -> str | None:
    if raw is None:
        return None
    key = raw.strip()
    return key or None


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
    """Store `key` with mode 0600 (written to a temp file first, so a reader never sees half)."""
    key = _clean_key(key) or ""
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
    env_key = _clean_key(os.environ.get(ENV_API_KEY))
    if env_key:
        return ApiKey(env_key, "environment")
    file_key = read_key_file(private_dir)
    if file_key:
        return ApiKey(file_key, "settings")
    return None


def resolve_api_key(private_dir: Path | None) -> ApiKey:
    key = find_api_key(private_dir)
    if key is None:
        raise MissingApiKeyError()
    return key


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, what: str = "URL") -> str:
    """Accept https://, or http:// only on a loopback host; anything else is refused."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "https" and parts.hostname:
        return url
    if scheme == "http" and is_loopback_host(parts.hostname):
        return url
    if scheme == "http":
        raise UnsafeUrlError(
            f"Refusing plain http:// for {what} {_redact(url)}: only https:// is allowed, "
            "or http:// on this machine (127.0.0.1, ::1, localhost) for a local emulator."
        )
    raise UnsafeUrlError(f"{what} {_redact(url)} is not an https:// URL.")


def _redact(url: str) -> str:
    """The URL without query string or credentials (presigned URLs carry tokens there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else url[:80]


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
