"""The pack's own settings file: limits the user sets in ComfyUI's settings dialog.

`<private_dir>/settings.json` (the same private folder as the key file, never served by
ComfyUI's /userdata). The front end writes it through the pack's settings route; the pipeline
reads it on each run. An environment variable named in the contract wins over the file.

| key | environment variable | meaning | default |
| --- | --- | --- | --- |
| `max_tasks_per_run` | `MAGI1_MAX_TASKS_PER_RUN` | spend guard: billed tasks one queued prompt may create | 8 |
| `account_max_running` | `MAGI1_ACCOUNT_MAX_RUNNING` | tasks running at once for the account | none |
| `account_submits_per_minute` | `MAGI1_ACCOUNT_SUBMITS_PER_MINUTE` | submits a minute for the account | learned |
| `price_per_task_usd` | — | what the user says one task costs (the panel's spend figure) | none |
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FILE_NAME = "settings.json"
DEFAULT_MAX_TASKS_PER_RUN = 8

# key -> (environment variable or None, type, minimum, maximum)
FIELDS: dict[str, tuple[str | None, type, float, float]] = {
    "max_tasks_per_run": ("MAGI1_MAX_TASKS_PER_RUN", int, 1, 10_000),
    "account_max_running": ("MAGI1_ACCOUNT_MAX_RUNNING", int, 1, 100_000),
    "account_submits_per_minute": ("MAGI1_ACCOUNT_SUBMITS_PER_MINUTE", float, 0.01, 1_000_000),
    "price_per_task_usd": (None, float, 0.0, 1_000.0),
}


class SettingsValueError(ValueError):
    """A setting's value is not a number in its range; the message names the setting."""


@dataclass(frozen=True)
class PackSettings:
    max_tasks_per_run: int = DEFAULT_MAX_TASKS_PER_RUN
    account_max_running: int | None = None
    account_submits_per_minute: float | None = None
    price_per_task_usd: float | None = None
    sources: tuple[tuple[str, str], ...] = ()  # (key, "environment" | "settings") for what was set

    def source_of(self, key: str) -> str:
        return dict(self.sources).get(key, "default")


def coerce(key: str, value: Any) -> int | float | None:
    """`value` as the setting's type within its range; None/"" clears it. Raises SettingsValueError."""
    if key not in FIELDS:
        raise SettingsValueError(f"unknown MAGI-1 setting {key!r}")
    _, kind, low, high = FIELDS[key]
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = kind(float(value)) if kind is int else float(value)
    except (TypeError, ValueError, OverflowError):
        raise SettingsValueError(f"{key} must be a number, not {str(value)[:40]!r}") from None
    if isinstance(value, bool) or number != number or not low <= number <= high:
        raise SettingsValueError(f"{key} must be between {low:g} and {high:g}")
    if kind is int and float(value) != int(number):
        raise SettingsValueError(f"{key} must be a whole number")
    return number


def settings_file(private_dir: Path) -> Path:
    return Path(private_dir) / FILE_NAME


def read_file(private_dir: Path | None) -> dict[str, Any]:
    """The stored values (only valid ones; a bad file is logged and ignored)."""
    if private_dir is None:
        return {}
    path = settings_file(private_dir)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring the MAGI-1 settings file %s: %s", path, exc)
        return {}
    stored: dict[str, Any] = {}
    for key, value in (raw.items() if isinstance(raw, dict) else ()):
        try:
            number = coerce(key, value)
        except SettingsValueError as exc:
            log.warning("ignoring %s in %s: %s", key, path, exc)
            continue
        if number is not None:
            stored[key] = number
    return stored


def write_file(private_dir: Path, values: dict[str, Any]) -> dict[str, Any]:
    """Merge `values` (validated; None clears a key) into the file, atomically. Returns the new file."""
    stored = read_file(private_dir)
    for key, value in values.items():
        number = coerce(key, value)
        if number is None:
            stored.pop(key, None)
        else:
            stored[key] = number
    private_dir = Path(private_dir)
    private_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = settings_file(private_dir)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(stored, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
    return stored


def load(private_dir: Path | None) -> PackSettings:
    """The settings in force: environment variable, else the file, else the default."""
    stored = read_file(private_dir)
    values: dict[str, Any] = {}
    sources = []
    for key, (variable, _, _, _) in FIELDS.items():
        raw = os.environ.get(variable, "").strip() if variable else ""
        if raw:
            try:
                values[key] = coerce(key, raw)
                sources.append((key, "environment"))
                continue
            except SettingsValueError as exc:
                log.warning("ignoring %s=%r: %s", variable, raw, exc)
        if key in stored:
            values[key] = stored[key]
            sources.append((key, "settings"))
    return PackSettings(**values, sources=tuple(sources))
