"""The account limiter: every process on one ledger queues its submits instead of hammering WaveSpeed.

WaveSpeed limits an account's video submits a minute (429 past it) and its tasks running at once
(a task past that waits on the server); see ../shared/notes/wavespeed-api.md. The limiter reads
its state from the shared ledger, so several ComfyUI processes and machines on one account agree:

- tasks running: rows `submitting`/`submitted`/`created`/`processing` of the same service,
  against `account_max_running` (settings, or `MAGI1_ACCOUNT_MAX_RUNNING`). No cap by default;
- submits a minute: rows submitted in the last 60 s, against `account_submits_per_minute`
  (`MAGI1_ACCOUNT_SUBMITS_PER_MINUTE`); no cap by default;
- learned: a 429's `Retry-After` blocks every process on the ledger until it has passed (the
  submits of the minute before it are recorded beside it, for the log and the panel).

With nothing set and no 429 seen, `wait_for_slot` returns at once: a higher-tier account is
never slowed by a default it did not ask for. Two processes may both pass the check in the same
instant (the limiter is advisory); the service's 429 then catches the extra submit, which waits
and is sent again (it created nothing).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .ledger import Ledger
from .pack_settings import PackSettings

log = logging.getLogger(__name__)

MINUTE_S = 60.0
RUNNING_WINDOW_S = 1800.0  # a row not updated for this long no longer counts as running
TICK_S = 0.5
HEARTBEAT_S = 20.0
_gate = threading.Lock()
REFRESH_S = 5.0  # WaveSpeed asks for 5 s or more between polls of a video task


def account_key(base_url: str, api_key: str) -> str:
    """The limiter's account: the service and a digest of the key (never the key itself)."""
    return hashlib.sha256(f"{base_url}\n{api_key}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Limits:
    max_running: int | None = None
    submits_per_minute: float | None = None

    @classmethod
    def from_settings(cls, settings: PackSettings) -> Limits:
        return cls(settings.account_max_running, settings.account_submits_per_minute)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def wait_for_slot(
    ledger: Ledger,
    *,
    account: str,
    base_url: str,
    limits: Limits,
    claimed_at: float,
    sleep: Callable[[float], None],
    tell: Callable[[str], None] = lambda text: None,
    heartbeat: Callable[[], None] = lambda: None,
    refresh: Callable[[], None] = lambda: None,
    then: Callable[[], None] = lambda: None,
) -> float:
    """Block (with the run's cancel-aware `sleep`) until this submit may go; returns seconds waited.

    `then` runs as soon as a slot is free, under a process-wide lock (mark the row `submitting`
    there), so two threads of one process never take the same last slot.
    """
    started = last_beat = time.monotonic()
    last_refresh = 0.0
    told = ""
    while True:
        with _gate:
            reason, at_running_cap = _why_wait(ledger, account, base_url, limits, claimed_at)
            if not reason:
                then()
                return time.monotonic() - started
        if at_running_cap:  # nobody may be polling those tasks yet (their Poll waits for this node)
            if time.monotonic() - last_refresh > REFRESH_S:
                refresh()  # ask the service, so a finished task frees its slot
                last_refresh = time.monotonic()
        text = f"waiting for a slot · {reason}"
        if text != told:
            log.info("MAGI-1 submit %s", text)
            tell(text)
            told = text
        sleep(TICK_S)
        if time.monotonic() - last_beat > HEARTBEAT_S:
            heartbeat()  # keeps this claim's lease while it waits
            last_beat = time.monotonic()


def _why_wait(ledger: Ledger, account: str, base_url: str, limits: Limits, claimed_at: float) -> tuple[str, bool]:
    """("", False) when a submit may go now; else why not, and whether it is the running cap."""
    now = ledger.now()  # the ledger's clock: every machine compares the same times
    blocked_until, _learned, _ = ledger.limit_state(account)
    if blocked_until > now:
        return f"rate-limited by WaveSpeed, {blocked_until - now:.0f} s", False
    per_minute = limits.submits_per_minute
    if limits.max_running is None and per_minute is None:
        return "", False
    running, recent, ahead = ledger.account_load(
        base_url, running_since=now - RUNNING_WINDOW_S, submits_since=now - MINUTE_S, claimed_at=claimed_at
    )
    if limits.max_running is not None and running >= limits.max_running:
        return f"{running} of {limits.max_running} running, {_ordinal(ahead + 1)} in line", True
    if per_minute is not None and recent >= per_minute:
        return f"{recent} submits this minute (limit {per_minute:g}), {_ordinal(ahead + 1)} in line", False
    return "", False


def learn_from_429(ledger: Ledger, *, account: str, base_url: str, retry_after: float) -> None:
    """Share a 429: everyone waits `retry_after`; the submits of the last minute become the pace."""
    now = ledger.now()  # the ledger's clock: every machine compares the same times
    _, recent, _ = ledger.account_load(base_url, running_since=now, submits_since=now - MINUTE_S, claimed_at=0.0)
    ledger.record_rate_limit(account, blocked_until=now + retry_after, learned_per_minute=float(max(1, recent)))
