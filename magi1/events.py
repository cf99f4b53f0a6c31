"""Task events inside one process: what changed in the ledger, for whoever listens.

The ledger (and the background adoption) publish one event per task state change; the ComfyUI
glue forwards them to the front end as the websocket event `magi1.task` (the MAGI-1 panel).
Listeners run synchronously in the publishing thread and must be quick; an exception in one is
logged and never reaches the publisher (a panel must not break a paid task's bookkeeping).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

TASK_EVENT = "magi1.task"

Listener = Callable[[dict[str, Any]], None]
_listeners: list[Listener] = []
_lock = threading.Lock()


def subscribe(listener: Listener) -> Callable[[], None]:
    """Call `listener(event)` for every task event from now on; returns the unsubscribe function."""
    with _lock:
        _listeners.append(listener)

    def unsubscribe() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return unsubscribe


def publish(task_id: str, status: str, **fields: Any) -> None:
    """Tell every listener that task `task_id` is now `status` (plus any JSON-safe `fields`)."""
    event = {"task_id": task_id, "status": status, **fields}
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(event)
        except Exception:
            log.exception("a MAGI-1 task event listener failed")
