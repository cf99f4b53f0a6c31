"""Every failure the pack can report, as one exception type per kind.

Messages say what failed, name the task id when there is one, and say what to do next.
They never contain the API key: nothing here is ever given it.
"""
from __future__ import annotations


class Magi1Error(Exception):
    """Base of every error this pack raises on purpose."""


# --- before anything is sent ----------------------------------------------------------------------
class ConfigError(Magi1Error):
    """The pack is not set up to talk to WaveSpeed (no key, a refused base URL)."""


class MissingApiKeyError(ConfigError):
    def __init__(self) -> None:
        super().__init__(
            "No WaveSpeed API key is set. Either set the WAVESPEED_API_KEY environment variable "
            "before starting ComfyUI, or enter the key in ComfyUI's Settings under "
            "'WaveSpeed MAGI-1' (it is stored server-side, never in your workflow)."
        )


class InvalidApiKeyError(ConfigError):
    """The key has a line break, an invisible or non-ASCII character, or a wrong length.

    The message names the character and its position and where the key came from, never the key.
    """


class UnsafeUrlError(ConfigError):
    """A URL the pack will not connect to: not https:// (nor http:// on a loopback host),
    with user-info or a backslash, a redirect that downgrades or goes on too long."""


class InputError(Magi1Error):
    """A node input the service would refuse; raised before anything is uploaded or billed."""


class SpendLimitError(InputError):
    """One queued prompt would create more billed tasks than `max_tasks_per_run` allows."""


class LedgerWriteError(Magi1Error):
    """The task ledger could not be written; `task_id` names the paid task concerned, if any."""

    def __init__(self, message: str, *, task_id: str | None = None) -> None:
        super().__init__(message)
        self.task_id = task_id


class ClaimLostError(Magi1Error):
    """This node's claim on a request was taken over (its lease ran out while it was slow, or
    another machine's clock runs ahead): it must not POST. The pipeline catches it and waits for
    the new holder's task instead; a user sees it only if the ledger keeps changing."""


# --- talking to the service -----------------------------------------------------------------------
class ApiError(Magi1Error):
    """WaveSpeed answered, but not with success.

    `status` is the HTTP status, `code` and `service_message` WaveSpeed's own (when it sent any),
    `task_id` the task concerned (None when there is none yet).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        service_message: str | None = None,
        task_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.service_message = service_message
        self.task_id = task_id


class AuthError(ApiError):
    """401/403: the key is wrong, revoked, or the account has never been topped up."""


class InsufficientBalanceError(ApiError):
    """The account has no credit left for this task."""


class InvalidRequestError(ApiError):
    """400: the service refused the request's parameters (nothing was billed)."""


class TaskNotFoundError(ApiError):
    """404 on a task id: mistyped, from another account, or older than the service keeps (7 days)."""


class RateLimitedError(ApiError):
    """429 that outlasted every retry."""


class SubmitRateLimitedError(RateLimitedError):
    """429 on the submit POST: nothing was created. `retry_after` is the service's wait in seconds
    (finite, capped) or None when it named none."""

    def __init__(self, message: str, *, retry_after: float | None = None, **fields: object) -> None:
        super().__init__(message, **fields)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx that outlasted every retry, or an answer that is not WaveSpeed's envelope."""


class TransportError(ApiError):
    """The connection failed or timed out (after retries, where retrying is safe)."""


class SubmitUncertainError(ApiError):
    """The submit POST got no clear answer (5xx, timeout, reset): the task may exist and be billed.

    Never retried automatically, because every accepted POST is billed.
    """


class UnexpectedTaskIdError(ApiError):
    """The service answered about a task id other than the one asked for, or one that is not an id.

    `task_id` is the id asked for; `answered_id` what the answer carried (shown with repr, cut).
    """

    def __init__(self, message: str, *, answered_id: str | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.answered_id = answered_id


class SubmitReconcileError(SubmitUncertainError):
    """An ambiguous submit whose task could not be identified in the prediction history.

    `candidates`: ids of the account's new predictions no ledger row owns (none, or several).
    """

    def __init__(self, message: str, *, candidates: tuple[str, ...] = (), **fields: object) -> None:
        super().__init__(message, **fields)  # type: ignore[arg-type]
        self.candidates = candidates


class UploadError(ApiError):
    """The first frame could not be uploaded."""


# --- the task itself ------------------------------------------------------------------------------
class TaskFailedError(ApiError):
    """The task reached a final state other than `completed` (failed, cancelled, timeout, deleted)."""


class TaskTimeoutError(Magi1Error):
    """The node stopped waiting; the task may still finish on the service."""

    def __init__(self, message: str, *, task_ids: list[str]) -> None:
        super().__init__(message)
        self.task_ids = task_ids


# --- the result -----------------------------------------------------------------------------------
class DownloadError(Magi1Error):
    """The finished video could not be fetched whole (truncated, too large, not an MP4)."""


class VideoDecodeError(Magi1Error):
    """A saved file could not be decoded as a video."""
