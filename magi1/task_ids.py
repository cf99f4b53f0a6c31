"""What a WaveSpeed task id may look like, checked before an id touches a path or the ledger.

WaveSpeed's ids are 32 hex characters (the emulator makes the same); the pattern allows any
letters, digits, `-` and `_`, starting with a letter or digit, up to 128 characters: enough for
any id format the service may adopt, and nothing that can climb out of a folder (`/`, `\\`,
`..`), hide (spaces, controls) or address another file (`:`, `%`).
"""
from __future__ import annotations

import re

TASK_ID_MAX_CHARS = 128
TASK_ID_PATTERN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_-]{{0,{TASK_ID_MAX_CHARS - 1}}}")


def is_task_id(value: object) -> bool:
    """True when `value` is a str that matches TASK_ID_PATTERN entirely (ASCII only)."""
    return isinstance(value, str) and TASK_ID_PATTERN.fullmatch(value) is not None


def shown(value: object) -> str:
    """A possibly hostile id, safe to put in a message: repr, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
