"""Faults on demand: a queue of misbehaviours, each affecting the next `count` matching requests.

A fault names a `route` and a `kind`. Transport faults (`status`, `reset`, `delay`) apply to any
route before anything else happens, like a gateway would. The others apply where they make sense:
on the submit route to the task the next accepted submit creates, on the output route to the next
MP4 served.
"""

from __future__ import annotations

import copy
import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

ROUTES = ("submit", "result", "upload", "upload_put", "upload_binary", "output", "media")

TRANSPORT_KINDS = frozenset({"status", "reset", "delay", "rate_limit"})
# The task is created (and billed) but its id never reaches the client: a 500, a dropped
# connection, a proxy's HTML page, or an answer held past the client's read timeout.
SUBMIT_RESPONSE_KINDS = frozenset(
    {"accept_then_500", "accept_then_drop", "accept_then_html", "accept_then_delay"}
)
TASK_OUTCOME_KINDS = frozenset({"fail_task", "final_status", "never_complete"})
OUTPUT_KINDS = frozenset({"truncate", "invalid_mp4"})
KINDS = TRANSPORT_KINDS | SUBMIT_RESPONSE_KINDS | TASK_OUTCOME_KINDS | OUTPUT_KINDS

_ONLY_ON = {
    **dict.fromkeys(SUBMIT_RESPONSE_KINDS | TASK_OUTCOME_KINDS | {"rate_limit"}, "submit"),
    **dict.fromkeys(OUTPUT_KINDS, "output"),
}
FINAL_STATUSES = ("cancelled", "timeout", "deleted")
MAX_DELAY_SECONDS = 600.0
DEFAULT_TASK_ERROR = "Task execution failed (injected by the emulator)"
DEFAULT_TASK_ERROR_CODE = 1403


class FaultSpecError(ValueError):
    """A fault description the emulator cannot honour."""


@dataclass
class Fault:
    id: int
    route: str
    kind: str
    count: int
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "route": self.route, "kind": self.kind, "count": self.count, **self.params}


def _number(spec: dict[str, Any], name: str, *, required: bool, low: float, high: float) -> float | None:
    value = spec.get(name)
    if value is None:
        if required:
            raise FaultSpecError(f"'{name}' is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise FaultSpecError(f"'{name}' must be a number in {low}…{high}")
    return value


def _integer(spec: dict[str, Any], name: str, *, required: bool, low: int, high: int) -> int | None:
    value = spec.get(name)
    if value is None:
        if required:
            raise FaultSpecError(f"'{name}' is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FaultSpecError(f"'{name}' must be an integer in {low}…{high}")
    return value


def _text(spec: dict[str, Any], name: str) -> str | None:
    value = spec.get(name)
    if value is not None and not isinstance(value, str):
        raise FaultSpecError(f"'{name}' must be a string")
    return value


def parse_params(route: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Validate a fault description; returns the parameters that kind keeps."""
    if route not in ROUTES:
        raise FaultSpecError(f"unknown route {route!r}; one of {', '.join(ROUTES)}")
    if kind not in KINDS:
        raise FaultSpecError(f"unknown kind {kind!r}; one of {', '.join(sorted(KINDS))}")
    only_on = _ONLY_ON.get(kind)
    if only_on is not None and route != only_on:
        raise FaultSpecError(f"a {kind!r} fault applies only to the {only_on!r} route")
    if kind in ("status", "rate_limit"):
        if kind == "rate_limit":  # "429 on submit": nothing is created, come back after Retry-After
            params: dict[str, Any] = {"status": 429, "retry_after": 1}
        else:
            params = {"status": _integer(spec, "status", required=True, low=100, high=599)}
        retry_after = _number(spec, "retry_after", required=False, low=0, high=86400)
        retry_after_text = _text(spec, "retry_after_text")  # sent verbatim, e.g. "nan" or "-5"
        if retry_after_text is not None:
            if not retry_after_text.isprintable() or len(retry_after_text) > 200:
                raise FaultSpecError("'retry_after_text' must be a short printable string")
            params["retry_after_text"] = retry_after_text
        code = _integer(spec, "code", required=False, low=-(2**31), high=2**31 - 1)
        message = _text(spec, "message")
        params.update(
            {
                k: v
                for k, v in (("retry_after", retry_after), ("code", code), ("message", message))
                if v is not None
            }
        )
        return params
    if kind == "accept_then_delay":
        return {"seconds": _number(spec, "seconds", required=True, low=0, high=MAX_DELAY_SECONDS)}
    if kind == "delay":
        return {"seconds": _number(spec, "seconds", required=True, low=0, high=MAX_DELAY_SECONDS)}
    if kind == "fail_task":
        error = _text(spec, "error") or DEFAULT_TASK_ERROR
        code = _integer(spec, "code", required=False, low=-(2**31), high=2**31 - 1)
        return {"error": error, "code": DEFAULT_TASK_ERROR_CODE if code is None else code}
    if kind == "final_status":
        status = spec.get("status")
        if status not in FINAL_STATUSES:
            raise FaultSpecError(f"'status' must be one of {', '.join(FINAL_STATUSES)}")
        return {"status": status}
    return {}


class FaultBook:
    """Thread-safe first-in-first-out list of pending faults."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(self, spec: dict[str, Any]) -> Fault:
        route = spec.get("route")
        kind = spec.get("kind", "status")
        count = spec.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise FaultSpecError("'count' must be a positive integer")
        params = parse_params(route, kind, spec)
        with self._lock:
            fault = Fault(id=next(self._ids), route=route, kind=kind, count=count, params=params)
            self._faults.append(fault)
        return fault

    def take(self, route: str, kinds: frozenset[str]) -> Fault | None:
        """The oldest pending fault on `route` among `kinds`, with one use consumed; or None."""
        with self._lock:
            for fault in self._faults:
                if fault.route == route and fault.kind in kinds:
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                    return copy.deepcopy(fault)
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [fault.as_dict() for fault in self._faults]
