"""The recipe the nodes follow: first frame → upload → submit → wait → save → decode.

Everything here works on numpy arrays and plain callbacks, so it runs (and is tested) without
ComfyUI; the nodes hand it ComfyUI's directories and cancel check through `Context`.
Blocking HTTP and file work runs in worker threads, so ComfyUI's event loop keeps running other
nodes (several MAGI-1 tasks in one graph wait at the same time).
"""
from __future__ import annotations

import asyncio
import datetime as _dt
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests.adapters

from . import limiter, local_files, media, pack_settings, video
from .client import MODEL_PATH, POOL_SIZE, Prediction, WaveSpeedClient, client_for
from .config import Settings, check_url, ledger_url, load_settings
from .download import download_video, mp4_index_and_samples_present
from .errors import (
    ApiError,
    ClaimLostError,
    InputError,
    LedgerWriteError,
    Magi1Error,
    SpendLimitError,
    SubmitRateLimitedError,
    SubmitReconcileError,
    SubmitUncertainError,
    TaskFailedError,
    TaskNotFoundError,
    TaskTimeoutError,
)
from .ledger import Claim, Ledger, fingerprint
from .mp4_metadata import tag_saved_video
from .params import Magi1Request
from .task_ids import is_task_id, shown
from .urls import PolicySession
from .poller import WaitSnapshot, run_interruptible, wait_for_tasks

log = logging.getLogger(__name__)

VIDEO_SUBFOLDER = "magi1"
LEDGER_FILE = "tasks.sqlite3"
CLAIM_WAIT_TICK_S = 0.25  # how often a node waiting for another's claim looks again
MAX_RATE_LIMITED_SUBMITS = 30  # 429s in a row before a submit gives up (each waits Retry-After)
RECONCILE_ATTEMPTS = 5
RECONCILE_INTERVAL_S = 1.0
SEVERAL_CANDIDATES = "submit answer lost; several candidates: "  # a released row's error; ids follow
CLOCK_SLACK_S = 30.0
# A task is marked dead (and its inputs paid for again by the next run) only when this many checks
# in a row, NOT_FOUND_RECHECK_S apart, answer 404: one stray 404 (a proxy, a lagging replica) is
# not proof that a running, paid task is gone.
NOT_FOUND_CHECKS = 3
NOT_FOUND_RECHECK_S = 2.0  # history is asked from this long before the claim (clock differences)


@dataclass(frozen=True)
class Magi1Task:
    """What flows from Magi1Submit to Magi1Poll: the batch's task ids, in the batch's order."""

    task_ids: tuple[str, ...]
    reused: tuple[bool, ...] = ()

    def __str__(self) -> str:
        return "\n".join(self.task_ids)


@dataclass
class Context:
    """Where things go and how to notice Cancel; built by the nodes from ComfyUI's glue.

    `run_id`: the queued prompt's id (ComfyUI's prompt id), the spend guard's unit; None outside
    ComfyUI. `on_submit_status`: called with a short text while a submit waits (a slot, a 429).
    """

    output_dir: Path
    private_dir: Path
    throw_if_interrupted: Callable[[], None] = lambda: None
    run_id: str | None = None
    on_submit_status: Callable[[str], None] | None = None
    _ledger: Ledger | None = field(default=None, repr=False)
    _cancelled: BaseException | None = field(default=None, repr=False)

    def check_cancel(self) -> None:
        """Raise if Cancel was pressed during this node's run.

        ComfyUI's own check clears its flag when it raises, so the first check to see it would
        hide it from every other thread of this run (a background upload would go on to submit a
        billed task). The cancel is remembered here, so every later check raises too.
        """
        if self._cancelled is not None:
            raise self._cancelled
        try:
            self.throw_if_interrupted()
        except BaseException as exc:
            self._cancelled = exc
            raise

    @property
    def video_dir(self) -> Path:
        return Path(self.output_dir) / VIDEO_SUBFOLDER

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = ledger_for(self.private_dir)
        return self._ledger

    def sleep(self, seconds: float) -> None:
        """A blocking sleep (for worker threads) that ends early with ComfyUI's interrupt."""
        deadline = time.monotonic() + seconds
        while True:
            self.check_cancel()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.2, left))

    def settings(self) -> Settings:
        return load_settings(self.private_dir)

    def client(self) -> WaveSpeedClient:
        """The shared client of this base URL and key; pass `self.sleep` to its calls."""
        return client_for(self.settings())

    def tell(self, text: str) -> None:
        if self.on_submit_status is not None:
            self.on_submit_status(text)


_ledgers: dict[str, Ledger] = {}
_ledgers_lock = threading.Lock()
# Downloads carry no key (result URLs are public CDN links), so one plain session serves them all.
_download_session = PolicySession()  # the URL policy on every hop, never a ~/.netrc login
# As many connections as worker threads; a thread waits for a free one instead of opening one the
# pool then discards ("Connection pool is full", seen with a batch of 32 downloads).
_download_session.mount("https://", requests.adapters.HTTPAdapter(pool_maxsize=POOL_SIZE, pool_block=True))
_download_session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=POOL_SIZE, pool_block=True))
# Bumped whenever a task fails or dies: Magi1Submit's fingerprint includes it, so ComfyUI never
# serves a failed fixed-seed task again from its cache (the ledger then submits afresh).
_failures = 0


def failure_generation() -> int:
    """A number that changes whenever a task of this process failed or was found dead."""
    return _failures


def _note_failure() -> None:
    global _failures
    _failures += 1


def ledger_for(private_dir: Path) -> Ledger:
    """The process's ledger: `MAGI1_LEDGER_URL` when set, else SQLite in the private folder."""
    target = ledger_url() or str((Path(private_dir) / LEDGER_FILE).resolve())
    return ledger_at(target)


def ledger_at(target: Path | str) -> Ledger:
    key = str(target if "://" in str(target) else Path(target).resolve())
    with _ledgers_lock:
        if key not in _ledgers:
            _ledgers[key] = Ledger(key)
        return _ledgers[key]


# --- submit -----------------------------------------------------------------------------------------
def first_frame_digest(pixels: np.ndarray) -> str:
    return hashlib.sha256(repr(pixels.shape).encode() + pixels.tobytes()).hexdigest()


@dataclass
class _Slot:
    """One batch item on its way to a task id."""

    index: int
    pixels: np.ndarray | None
    digest: str | None
    key: str
    claim: Claim


def _iso(epoch: float) -> str:
    return _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc).isoformat(timespec="milliseconds")


def spend_limit_message(count: int, limit: int, *, earlier: int = 0) -> str:
    already = f" ({earlier} already created by this queued prompt)" if earlier else ""
    return (
        f"This would create {count} billed MAGI-1 task(s){already}, more than the limit of {limit} "
        "per queued prompt. Nothing was uploaded or billed. If you meant it, raise 'max tasks per "
        "run' in ComfyUI's settings (WaveSpeed MAGI-1) or set MAGI1_MAX_TASKS_PER_RUN; otherwise "
        "check what is wired into 'image' (a batch of B images submits B tasks)."
    )


async def submit(ctx: Context, request: Magi1Request, first_frames: np.ndarray | None) -> Magi1Task:
    """Submit one task per first frame (or one text-to-video task), all at once.

    Each request is claimed in the ledger before it is paid for: a fixed seed (>= 0) with inputs
    identical to a task that has not failed reuses that task (or waits for the node, process or
    machine that is submitting it), so it is billed once. Seed -1 always submits.
    More than `max_tasks_per_run` new tasks for one queued prompt is refused before any upload
    (SpendLimitError). A 429 waits `Retry-After` and submits again; an ambiguous answer is never
    re-sent but reconciled through the prediction history (SubmitReconcileError if that fails).
    """
    if first_frames is not None:
        media.validate_first_frames(first_frames)
        if first_frames.ndim == 3:
            first_frames = first_frames[None]
    frames: Sequence[np.ndarray | None] = list(first_frames) if first_frames is not None else [None]
    limit = pack_settings.load(ctx.private_dir).max_tasks_per_run
    if len(frames) > limit:
        raise SpendLimitError(spend_limit_message(len(frames), limit))
    client = ctx.client()
    ctx.check_cancel()
    slots = await run_interruptible(lambda: _claim_all(ctx, client, request, frames, limit), ctx.check_cancel)
    outcomes = await asyncio.gather(
        *(run_interruptible(lambda s=s: _settle(ctx, client, request, s, len(frames)), ctx.check_cancel)
          for s in slots),
        return_exceptions=True,
    )
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    if failures:
        raise _batch_failure(ctx, failures, [o for o in outcomes if not isinstance(o, BaseException)])
    return Magi1Task(task_ids=tuple(o[0] for o in outcomes), reused=tuple(o[1] for o in outcomes))


def _claim_all(
    ctx: Context, client: WaveSpeedClient, request: Magi1Request, frames: Sequence[np.ndarray | None], limit: int
) -> list[_Slot]:
    """Claim every item (ledger only, nothing sent); refuse the lot past the spend guard."""
    slots: list[_Slot] = []
    asked = request.payload(None)
    try:
        for index, image in enumerate(frames):
            ctx.check_cancel()
            pixels = media.to_uint8(image) if image is not None else None
            digest = first_frame_digest(pixels) if pixels is not None else None
            key = fingerprint(client.base_url, asked, digest)
            claim = ctx.ledger.claim(
                key, dedupe=request.seed >= 0, base_url=client.base_url, payload=asked, run_id=ctx.run_id
            )
            slots.append(_Slot(index, pixels, digest, key, claim))
        new = sum(1 for s in slots if s.claim.won)
        if ctx.run_id is not None and new:
            in_run = ctx.ledger.count_run(ctx.run_id)
            if in_run > limit:
                raise SpendLimitError(spend_limit_message(new, limit, earlier=in_run - new))
    except BaseException:
        for slot in slots:
            if slot.claim.won:
                ctx.ledger.drop_unsent(slot.claim.record.row_id, claimed_at=slot.claim.record.claimed_at)
        raise
    return slots


def _settle(
    ctx: Context, client: WaveSpeedClient, request: Magi1Request, slot: _Slot, batch: int
) -> tuple[str, bool]:
    """The task id of one batch item: reused, waited for, or submitted now (worker thread).

    A claim taken over while this node was slow (ClaimLostError before the POST) is not paid
    again: the item goes back to waiting for the new holder's task id.
    """
    waited: int | None = None  # the row of another node this item waited for
    while True:
        while not slot.claim.won:
            holder = slot.claim.record
            waited = holder.row_id
            if holder.task_id:
                log.info("reusing MAGI-1 task %s: same inputs and fixed seed %d, so it is not billed again",
                         holder.task_id, request.seed)
                return holder.task_id, True
            ctx.tell("waiting for the same request from another node or machine")
            ctx.sleep(CLAIM_WAIT_TICK_S)
            slot.claim = ctx.ledger.claim(
                slot.key, dedupe=True, base_url=client.base_url, payload=request.payload(None), run_id=ctx.run_id
            )
        if waited is not None and waited != slot.claim.record.row_id:
            _refuse_after_an_ambiguous_twin(ctx, slot, waited)
        try:
            task_id = _submit_claimed(ctx, client, request, slot)
        except ClaimLostError:
            log.warning("MAGI-1: another node took over the claim of this request while this one was slow; "
                        "waiting for its task instead of submitting (and paying) again")
            slot.claim = ctx.ledger.claim(
                slot.key, dedupe=True, base_url=client.base_url, payload=request.payload(None), run_id=ctx.run_id
            )
            continue
        break
    if batch > 1:
        log.info("batch item %d/%d is task %s", slot.index + 1, batch, task_id)
    return task_id, False


def _refuse_after_an_ambiguous_twin(ctx: Context, slot: _Slot, waited: int) -> None:
    """The node this item waited for ended with a submit it could not match to one task: that task
    may exist (billed), so this item must not pay for the same request again. Raises
    SubmitReconcileError naming the candidates (this item's fresh claim is dropped first)."""
    holder = ctx.ledger.get_row(waited)
    if holder is None or holder.status != "failed" or not holder.error.startswith(SEVERAL_CANDIDATES):
        return
    candidates = tuple(c.strip() for c in holder.error[len(SEVERAL_CANDIDATES):].split(",") if c.strip())
    ctx.ledger.drop_unsent(slot.claim.record.row_id, claimed_at=slot.claim.record.claimed_at)
    raise SubmitReconcileError(
        "Another node submitted these same inputs and got no clear answer; the account's history "
        f"shows new MAGI-1 prediction(s) no ledger row owns: {', '.join(candidates)}. One of them "
        "may be that task (billed), so this node did not submit it again. Paste the right id into "
        "Magi1Poll's task_id to collect it (check the times on wavespeed.ai).",
        candidates=candidates,
    )


def _submit_claimed(ctx: Context, client: WaveSpeedClient, request: Magi1Request, slot: _Slot) -> str:
    ledger = ctx.ledger
    row = slot.claim.record.row_id
    held = slot.claim.record.claimed_at  # the claim's fence: a takeover changes it
    sent = False  # once the POST may have left, the claim is never dropped
    try:
        if slot.claim.takeover:
            # The previous owner died while its POST may have been on the wire: look before paying.
            adopted = _reconcile(ctx, client, row, slot.claim.record.submitted_at, give_up_quietly=True)
            if adopted is not None:
                return adopted
            ledger.mark_claimed(row, claimed_at=held)
        image_url = None
        if slot.pixels is not None:
            ctx.check_cancel()
            png = media.encode_png(slot.pixels)
            ctx.check_cancel()
            ledger.renew(row, claimed_at=held)
            image_url = client.upload(png, f"magi1_first_frame_{slot.digest[:16]}.png", "image/png",
                                      sleep=ctx.sleep)
        payload = request.payload(image_url)
        limits = limiter.Limits.from_settings(pack_settings.load(ctx.private_dir))
        account = limiter.account_key(client.base_url, ctx.settings().api_key.reveal())
        for _ in range(MAX_RATE_LIMITED_SUBMITS):
            limiter.wait_for_slot(
                ledger, account=account, base_url=client.base_url, limits=limits,
                claimed_at=slot.claim.record.claimed_at, sleep=ctx.sleep, tell=ctx.tell,
                heartbeat=lambda: ledger.renew(row, claimed_at=held),
                refresh=lambda: _refresh_running(ctx, client),
                then=lambda: (ctx.check_cancel(), ledger.mark_submitting(row, payload, claimed_at=held)),
            )  # the cancel check there is the last moment to cancel before the billed POST
            sent = True
            started = ledger.now()  # the ledger's clock, as `submitted_at`
            try:
                prediction = client.submit(payload)
            except SubmitRateLimitedError as exc:
                ledger.mark_claimed(row, claimed_at=held)  # a 429 created nothing
                sent = False
                wait = exc.retry_after or 1.0
                log.warning("submit rate-limited by WaveSpeed; every process on the ledger waits %.0f s", wait)
                limiter.learn_from_429(ledger, account=account, base_url=client.base_url, retry_after=wait)
                continue
            except SubmitUncertainError as exc:
                log.warning("submit answer lost (%s); reconciling through the prediction history", exc.status)
                return _reconcile(ctx, client, row, started, cause=exc)
            except ApiError:
                sent = False  # a clear refusal: nothing was created
                raise
            break
        else:
            raise SubmitRateLimitedError(
                f"WaveSpeed kept answering 429 to {MAX_RATE_LIMITED_SUBMITS} submits; nothing was "
                "created for this item. Queue again later, or lower the account limiter's submits a minute.",
                status=429,
            )
        ledger.record_submitted(row, prediction.id, status=prediction.status)
        _hand_over_if_cancelled(ctx, prediction.id)
        return prediction.id
    except LedgerWriteError:
        raise
    except BaseException:
        if not sent:
            ledger.drop_unsent(row, claimed_at=held)
        raise


def confirmed_result(client: WaveSpeedClient, task_id: str, *, sleep: Callable[[float], None]) -> Prediction:
    """`client.get_result`, raising TaskNotFoundError only when NOT_FOUND_CHECKS checks in a row say
    404 (each NOT_FOUND_RECHECK_S apart, with the run's cancel-aware `sleep`)."""
    for check in range(1, NOT_FOUND_CHECKS + 1):
        try:
            return client.get_result(task_id, sleep=sleep)
        except TaskNotFoundError:
            if check == NOT_FOUND_CHECKS:
                raise
            log.warning("WaveSpeed answered 404 for MAGI-1 task %s (check %d of %d); asking again",
                        task_id, check, NOT_FOUND_CHECKS)
            sleep(NOT_FOUND_RECHECK_S)
    raise AssertionError("unreachable")


def _hand_over_if_cancelled(ctx: Context, task_id: str) -> None:
    """The run was cancelled while this task's POST was out: it is paid, but no Poll will wait for
    it, so the background adoption saves its video."""
    if ctx._cancelled is not None:
        log.warning("MAGI-1 task %s was created while its run was being cancelled (it is billed); "
                    "its video will be saved in the background", task_id)
        _adopt_later(ctx, [task_id])


def _refresh_running(ctx: Context, client: WaveSpeedClient) -> None:
    """Ask the service about the tasks the limiter counts as running; record the final ones."""
    since = ctx.ledger.now() - limiter.RUNNING_WINDOW_S
    for task_id in ctx.ledger.in_flight_ids(client.base_url, running_since=since):
        try:
            prediction = confirmed_result(client, task_id, sleep=ctx.sleep)
        except TaskNotFoundError:
            ctx.ledger.mark_dead(task_id, "unknown to the service")
            continue
        except ApiError as exc:
            log.debug("limiter: could not refresh task %s: %s", task_id, exc)
            continue
        if prediction.status != ctx.ledger.get(task_id).status:
            ctx.ledger.update_status(
                task_id, prediction.status, error=prediction.error,
                video_url=prediction.outputs[0] if prediction.outputs else None,
                inference_ms=prediction.inference_ms, has_nsfw_contents=_nsfw(prediction),
            )


def _reconcile(
    ctx: Context,
    client: WaveSpeedClient,
    row: int,
    since: float,
    *,
    cause: SubmitUncertainError | None = None,
    give_up_quietly: bool = False,
) -> str | None:
    """Find the task an ambiguous submit created: the one new prediction of this model since the
    claim that no ledger row owns. Adopts it (returns its id); else raises SubmitReconcileError
    (or returns None with `give_up_quietly`, when nothing was found)."""
    ledger = ctx.ledger
    created_after = _iso(since - CLOCK_SLACK_S)
    unowned: list[str] = []
    for attempt in range(RECONCILE_ATTEMPTS):
        if attempt:
            ctx.sleep(RECONCILE_INTERVAL_S)
        try:
            items = client.history(created_after=created_after, model=MODEL_PATH, sleep=ctx.sleep)
        except ApiError as exc:
            log.warning("could not list recent predictions to reconcile a submit: %s", exc)
            continue
        ids = [p.id for p in items]
        known = ledger.known_task_ids(ids)
        unowned = [i for i in ids if i not in known]
        if len(unowned) == 1 and ledger.submitting_since(since, exclude_row=row) == 0:
            if ledger.adopt(row, unowned[0]):
                log.warning("adopted MAGI-1 task %s: the submit's answer was lost, the history shows it",
                            unowned[0])
                _hand_over_if_cancelled(ctx, unowned[0])
                return unowned[0]
    if give_up_quietly and not unowned:
        return None
    why = f" ({cause})" if cause is not None else ""
    if not unowned:
        ledger.release(row, "failed", error="submit answer lost; no new prediction in the history")
        _note_failure()
        raise SubmitReconcileError(
            "The submit request got no clear answer and no new MAGI-1 prediction appeared in the "
            f"account's history since then{why}, so it was most likely not created. Nothing was "
            "sent again. Queue again to submit it anew; if a task shows up later on wavespeed.ai, "
            "paste its id into Magi1Poll's task_id instead.",
            candidates=(),
        )
    ledger.release(row, "failed", error=SEVERAL_CANDIDATES + ", ".join(unowned))
    _note_failure()
    raise SubmitReconcileError(
        "The submit request got no clear answer, and the account's history shows new MAGI-1 "
        f"prediction(s) that no ledger row owns, or that another node was still recording: "
        f"{', '.join(unowned)}{why}. This task may be one of them (billed). "
        "Nothing was sent again: paste the right id into Magi1Poll's task_id to "
        "collect it (check the times on wavespeed.ai), and do not queue again, or it is paid twice.",
        candidates=tuple(unowned),
    )


def reconcile_orphans(ctx: Context, client: WaveSpeedClient, *, newer_than: float) -> list[str]:
    """Give the rows an owner left `submitting` (it died between the billed POST and writing the
    id) their task from the prediction history, as an ambiguous submit would; returns the adopted
    ids. A row with no new prediction is released as failed; several candidates are logged (the
    row is released, its message names them). Never raises Magi1Error (it logs)."""
    adopted = []
    for orphan in ctx.ledger.orphaned_submits(newer_than=newer_than):
        record = ctx.ledger.take_orphan(orphan)
        if record is None:
            continue
        try:
            task_id = _reconcile(ctx, client, record.row_id, record.submitted_at, give_up_quietly=True)
        except Magi1Error as exc:
            log.warning("MAGI-1: a submit whose owner stopped could not be matched to one task: %s", exc)
            continue
        if task_id is None:
            ctx.ledger.release(record.row_id, "failed", error="submit owner stopped; no new prediction in the history")
            log.warning("MAGI-1: a submit whose owner stopped created no task (none in the history); released")
        else:
            adopted.append(task_id)
    return adopted


def _batch_failure(ctx: Context, failures: list[BaseException], done: list[tuple[str, bool]]) -> BaseException:
    """The first failure, telling which tasks of the batch were submitted (they are billed)."""
    first = next((f for f in failures if not isinstance(f, Exception)), None) or failures[0]
    submitted = [task_id for task_id, reused in done if not reused]
    if submitted and isinstance(first, Exception) and first.args:
        text = str(first.args[0]).replace("nothing was billed", "this item was not billed").replace(
            "Nothing was submitted or billed", "This item was not submitted or billed"
        )
        text += (
            f" The other {len(submitted)} task(s) of this batch were submitted and are billed: "
            f"{', '.join(submitted)}. They are in the task ledger and will be saved under output/magi1/ "
            "in the background; paste the ids into Magi1Poll's task_id to collect them now."
        )
        first.args = (text, *first.args[1:])
    return first


# --- wait and save ----------------------------------------------------------------------------------
async def wait_and_save(
    ctx: Context,
    task_ids: Sequence[str],
    *,
    timeout_s: float,
    interval_s: float,
    on_update: Callable[[WaitSnapshot], None] | None = None,
) -> list[tuple[str, Path]]:
    """Wait for the tasks, save each finished MP4 under the output directory, return (url, path).

    A task whose video was saved before (this run or an earlier one) is not polled again, and a
    saved video is never downloaded twice. A task the service no longer knows is marked dead in
    the ledger (TaskNotFoundError): the next run with the same inputs submits afresh. When the
    wait gives up (TaskTimeoutError), the tasks are handed to the background adoption, which
    saves their videos when they finish.
    """
    if not task_ids:
        raise InputError("Magi1Poll got no task: connect Magi1Submit's task output or paste a task_id.")
    settings = ctx.settings()

    def already_saved() -> dict[str, tuple[str, Path]]:
        saved = {}
        for task_id in task_ids:
            record = ctx.ledger.ensure(task_id, base_url=settings.base_url)
            if record.status in ("completed", "saved") and record.video_url and record.saved_video:
                saved[task_id] = (record.video_url, record.saved_video)
        return saved

    saved = await run_interruptible(already_saved, ctx.check_cancel)
    pending = [t for t in task_ids if t not in saved]
    if pending:
        client = ctx.client()

        def get_result(task_id: str) -> Prediction:
            try:
                return confirmed_result(client, task_id, sleep=ctx.sleep)
            except TaskNotFoundError as exc:
                ctx.ledger.mark_dead(task_id, exc.service_message or "unknown to the service")
                _note_failure()
                raise TaskNotFoundError(
                    f"WaveSpeed does not know MAGI-1 task {task_id} (expired after 7 days, another "
                    "account's, or mistyped). It is marked dead in the task ledger, so queueing the "
                    "same inputs again submits a new task (billed once more).",
                    status=exc.status, code=exc.code, service_message=exc.service_message, task_id=task_id,
                ) from None

        async def record_final(prediction: Prediction) -> None:
            if prediction.has_failed:
                _note_failure()
            await run_interruptible(
                lambda: ctx.ledger.update_status(
                    prediction.id, prediction.status, error=prediction.error,
                    video_url=prediction.outputs[0] if prediction.outputs else None,
                    inference_ms=prediction.inference_ms,
                    has_nsfw_contents=_nsfw(prediction),
                ),
                ctx.check_cancel,
            )

        try:
            predictions = await wait_for_tasks(
                get_result,
                pending,
                timeout_s=timeout_s,
                interval_s=interval_s,
                throw_if_interrupted=ctx.check_cancel,
                on_update=on_update,
                on_final=record_final,
            )
        except TaskTimeoutError as exc:
            _adopt_later(ctx, list(exc.task_ids))
            raise
        except BaseException:
            if ctx._cancelled is not None:  # Cancel: the tasks are billed and go on; save them anyway
                _adopt_later(ctx, pending)
            raise

        async def save(prediction: Prediction) -> None:
            if not prediction.outputs:
                raise TaskFailedError(
                    f"MAGI-1 task {prediction.id} completed without an output URL. Paste the id into "
                    "Magi1Poll's task_id to try again later; contact WaveSpeed support if it persists.",
                    task_id=prediction.id,
                )
            url = prediction.outputs[0]
            path = await run_interruptible(
                lambda: save_video(ctx, url, task_id=prediction.id), ctx.check_cancel
            )
            saved[prediction.id] = (url, path)

        await asyncio.gather(*(save(p) for p in predictions))
    return [saved[t] for t in task_ids]


def _adopt_later(ctx: Context, task_ids: list[str]) -> None:
    """A Poll gave up on these tasks: the background adoption saves their videos when they finish."""
    from . import adoption  # imported late: it imports this module

    log.info("MAGI-1: the video(s) of %s will be saved in the background when ready", ", ".join(task_ids))
    adoption.adopt_in_background(ctx.output_dir, ctx.private_dir, task_ids=task_ids)


def _nsfw(prediction: Prediction) -> bool:
    """`has_nsfw_contents` of a prediction (a list of booleans from the service, or a boolean)."""
    value = getattr(prediction, "has_nsfw_contents", False)
    return any(value) if isinstance(value, (list, tuple)) else bool(value)


def save_video(ctx: Context, url: str, *, task_id: str | None = None) -> Path:
    """The local copy of a result video: the saved one when there is one, else downloaded now."""
    if task_id is not None and not is_task_id(task_id):  # before it reaches the ledger or a file name
        raise InputError(f"{shown(task_id)} is not a WaveSpeed task id; no file was written.")
    record = ctx.ledger.get(task_id) if task_id else ctx.ledger.find_by_video_url(url)
    if record is not None and record.saved_video is not None and mp4_index_and_samples_present(record.saved_video):
        return record.saved_video
    if task_id is None and record is not None:
        task_id = record.task_id
    if task_id is not None and not is_task_id(task_id):  # from the ledger: it becomes a file name
        raise InputError(f"{shown(task_id)} is not a WaveSpeed task id; no file was written.")
    name = task_id or "url_" + hashlib.sha256(url.encode()).hexdigest()[:16]
    dest = ctx.video_dir / f"magi1_{name}.mp4"
    if not (dest.is_file() and mp4_index_and_samples_present(dest)):
        download_video(
            url, dest, session=_download_session, what=f"the video of task {task_id}" if task_id else "the video",
            throw_if_interrupted=ctx.check_cancel, sleep=ctx.sleep,
        )
        tag_saved_video(dest, ctx.ledger.get(task_id) if task_id else None)
    if task_id:
        ctx.ledger.record_video(task_id, url, dest)
    return dest


# --- load ---------------------------------------------------------------------------------------------
def resolve_source(ctx: Context, source: str) -> Path:
    """A local MP4 for a URL (saved copy, or downloaded now) or a local path.

    Local paths follow magi1.local_files (videos inside ComfyUI's input, output or temp folder);
    URLs follow magi1.urls.
    """
    source = local_files.unquote(source)
    if "://" not in source:
        return local_files.resolve_local_video(source, local_files.allowed_roots(ctx.output_dir))
    check_url(source, what="video_url")
    return save_video(ctx, source)


async def load_videos(ctx: Context, sources: Sequence[str], *, frame_load_cap: int = 0,
                      skip_first_frames: int = 0, select_every_nth: int = 1) -> tuple[list[Path], video.DecodedFrames]:
    if not sources:
        raise InputError("Magi1LoadVideo got no video_url: connect Magi1Poll's video_url or paste a URL or path.")
    paths = []
    for source in sources:
        paths.append(await run_interruptible(lambda s=source: resolve_source(ctx, s), ctx.check_cancel))
    decoded = await run_interruptible(
        lambda: video.decode(paths, frame_load_cap=frame_load_cap, skip_first_frames=skip_first_frames,
                             select_every_nth=select_every_nth,
                             # stops the decode thread itself on Cancel, instead of leaving it allocating
                             on_progress=lambda done, expected: ctx.check_cancel()),
        ctx.check_cancel,
    )
    return paths, decoded
