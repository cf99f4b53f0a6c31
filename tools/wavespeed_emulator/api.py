"""The WaveSpeed API as the emulator answers it: submit, result, history, balance, uploads, files.

A mixin over `http_base.BaseHandler`; it talks to the service state only through
`EmulatorServer`'s public methods (`create_task`, `find_task`, `history`, `admit_submit`,
`take_fault`, `media`, `media_url`, `balance`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import mimetypes
import os
from dataclasses import replace
from typing import Any

from . import tasks as tasks_mod
from .faults import OUTPUT_KINDS, SUBMIT_RESPONSE_KINDS, TASK_OUTCOME_KINDS
from .http_base import BaseHandler, multipart_field, redact
from .media import TICKET_LIFETIME_S
from .tasks import SubmitError

SYNC_MODE_TIMEOUT_S = 120.0
HISTORY_STATUSES = ("completed", "failed", "processing")

# What a CDN error page looks like when it is served where a video (or JSON) was expected.
NOT_AN_MP4 = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>502 Bad Gateway</h1><p>The origin returned an invalid response.</p></body></html>\n"
)


class ApiHandlers(BaseHandler):
    def _json_body(self) -> Any:
        try:
            body = json.loads(self._body.decode("utf-8")) if self._body else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SubmitError(
                tasks_mod.CODE_INVALID_PARAMETER, f"the request body is not valid JSON: {exc}"
            ) from exc
        self._exchange.json_body = body
        return body

    # --- the WaveSpeed API --------------------------------------------------------------------
    def _submit(self) -> None:
        emulator = self.emulator
        try:
            request = tasks_mod.parse_submit(self._json_body(), emulator.default_resolution)
        except SubmitError as exc:
            self._envelope(400, exc.message, code=exc.code)
            return
        retry_after = emulator.admit_submit()
        if retry_after is not None:
            # Past the account's submits-per-window cap: nothing is created (WaveSpeed's 429).
            self._exchange.fault = "rate_limit"
            self._envelope(
                429,
                "Too many requests: the account's submit rate limit was reached",
                headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
            )
            return
        response_fault = emulator.take_fault("submit", SUBMIT_RESPONSE_KINDS)
        outcome = emulator.take_fault("submit", TASK_OUTCOME_KINDS)
        # What the admin API shows of the request is redacted like the journal.
        keys = tuple(k for k in (emulator.api_key, self._bearer_token()) if k)
        request = replace(request, sent=redact(request.sent, keys))
        task = emulator.create_task(request, outcome)
        if outcome is not None:
            self._exchange.fault = outcome.kind
        if response_fault is not None:
            self._exchange.fault = response_fault.kind
            self._answer_lost(response_fault)
            return
        if request.sync:
            state = task.wait_final(SYNC_MODE_TIMEOUT_S, emulator.stopping, emulator.refresh)
            data = task.view(emulator.base_url)
            if not state.final:
                data.update(code=5004, error="Sync mode timed out; query the result later")
            self._ok(data)
            return
        self._ok(task.view(self.emulator.base_url))

    def _answer_lost(self, fault: Any) -> None:
        """The task exists and is billed, but the client does not learn its id."""
        if fault.kind == "accept_then_500":
            self._envelope(500, "Internal server error")
        elif fault.kind == "accept_then_html":
            self._send(502, NOT_AN_MP4, "text/html")
        elif fault.kind == "accept_then_delay":
            # Hold the answer past the client's read timeout, then drop the connection.
            self.emulator.stopping.wait(fault.params["seconds"])
            self._reset_connection()
        else:  # accept_then_drop: the connection closes after the body arrived, without an answer
            self._reset_connection()

    def _history(self) -> None:
        """`POST /api/v3/predictions`: the account's predictions of the last 7 days, newest first."""
        try:
            body = self._json_body()
        except SubmitError as exc:
            self._envelope(400, exc.message, code=exc.code)
            return
        body = {} if body is None else body
        if not isinstance(body, dict):
            self._envelope(
                400, "the request body must be a JSON object", code=tasks_mod.CODE_INVALID_PARAMETER
            )
            return
        page, page_size = body.get("page", 1), body.get("page_size", 20)
        if isinstance(page, bool) or not isinstance(page, int) or page < 1:
            self._envelope(400, "page must be an integer >= 1", code=tasks_mod.CODE_INVALID_PARAMETER)
            return
        if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= 100:
            self._envelope(
                400, "page_size must be an integer in 1~100", code=tasks_mod.CODE_INVALID_PARAMETER
            )
            return
        status = body.get("status")
        if status is not None and status not in HISTORY_STATUSES:
            self._envelope(
                400,
                f"status must be one of {', '.join(HISTORY_STATUSES)}",
                code=tasks_mod.CODE_INVALID_PARAMETER,
            )
            return
        bounds = []
        for name in ("created_after", "created_before"):
            value = body.get(name)
            if value is None:
                bounds.append(None)
                continue
            try:
                moment = _dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            except ValueError:
                self._envelope(400, f"{name} must be an ISO 8601 time", code=tasks_mod.CODE_INVALID_PARAMETER)
                return
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=_dt.timezone.utc)
            bounds.append(moment.timestamp())
        model = body.get("model")
        items = self.emulator.history(model=model, status=status, after=bounds[0], before=bounds[1])
        start = (page - 1) * page_size
        self._ok({"page": page, "total": len(items), "items": items[start : start + page_size]})

    def _balance(self) -> None:
        self._ok({"balance": self.emulator.balance})

    def _result(self, task_id: str) -> None:
        task = self.emulator.find_task(task_id)
        if task is None:
            self._envelope(404, f"Prediction {task_id} not found")
            return
        self._ok(task.view(self.emulator.base_url))

    def _unknown_api(self) -> None:
        self._envelope(404, f"Not found: {self._exchange.path} (the emulator serves only MAGI-1 24B)")

    def _upload_ticket(self) -> None:
        emulator = self.emulator
        try:
            body = self._json_body()
        except SubmitError as exc:
            self._envelope(400, exc.message, code=exc.code)
            return
        if not isinstance(body, dict):
            self._envelope(
                400, "the request body must be a JSON object", code=tasks_mod.CODE_INVALID_PARAMETER
            )
            return
        filename, size, content_type = body.get("filename"), body.get("size"), body.get("content_type")
        if not isinstance(filename, str) or not os.path.basename(filename.replace("\\", "/")).strip():
            self._envelope(400, "filename is required", code=tasks_mod.CODE_MISSING_PARAMETER)
            return
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            self._envelope(400, "size must be a non-negative integer", code=tasks_mod.CODE_INVALID_PARAMETER)
            return
        if content_type is not None and (not isinstance(content_type, str) or not content_type.strip()):
            self._envelope(400, "content_type must be a string", code=tasks_mod.CODE_INVALID_PARAMETER)
            return
        if size > emulator.max_upload_bytes:
            self._envelope(413, f"File too large: at most {emulator.max_upload_bytes} bytes")
            return
        filename = os.path.basename(filename.replace("\\", "/")).strip()
        content_type = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        ticket = emulator.media.open_ticket(filename, size, content_type)
        self._ok(
            {
                "upload": {
                    "method": "PUT",
                    "url": f"{emulator.base_url}/_upload/{ticket.token}",
                    "headers": {"Content-Type": content_type},
                },
                "download_url": emulator.media_url(ticket.token, filename),
                "expires_in": int(TICKET_LIFETIME_S),
            }
        )

    def _upload_put(self, token: str) -> None:
        media = self.emulator.media
        ticket = media.ticket(token)
        if ticket is None:
            self._envelope(404, "No such upload (unknown or expired URL)")
            return
        if "Authorization" in self.headers:
            # A presigned URL carries its own signature; S3 refuses a second auth mechanism.
            self._envelope(400, "Presigned upload URLs take no Authorization header")
            return
        sent_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if sent_type != ticket.content_type.split(";")[0].strip().lower():
            self._envelope(
                403, f"Content-Type {sent_type or '(none)'!r} differs from the signed {ticket.content_type!r}"
            )
            return
        if len(self._body) != ticket.size:
            self._envelope(
                400, f"Size mismatch: the ticket declared {ticket.size} bytes, {len(self._body)} arrived"
            )
            return
        stored = media.redeem(token, self._body)
        self._send(
            200,
            b"",
            "text/plain",
            {"ETag": f'"{hashlib.md5(stored.data, usedforsecurity=False).hexdigest()}"'},
        )

    def _upload_binary(self) -> None:
        emulator = self.emulator
        content_type = self.headers.get("Content-Type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            self._envelope(
                400, "Expected multipart/form-data with a 'file' field", code=tasks_mod.CODE_INVALID_PARAMETER
            )
            return
        part = multipart_field(content_type, self._body, "file")
        if part is None:
            self._envelope(400, "file is required", code=tasks_mod.CODE_MISSING_PARAMETER)
            return
        data = part.get_payload(decode=True) or b""
        if len(data) > emulator.max_upload_bytes:
            self._envelope(413, f"File too large: at most {emulator.max_upload_bytes} bytes")
            return
        filename = os.path.basename((part.get_filename() or "upload").replace("\\", "/")) or "upload"
        part_type = part.get_content_type()
        if part_type in ("text/plain", "application/octet-stream"):  # what clients send when they do not know
            part_type = mimetypes.guess_type(filename)[0] or part_type
        stored = emulator.media.store(data, filename, part_type)
        self._ok(
            {
                "type": part_type.split("/")[0],
                "download_url": emulator.media_url(stored.token, filename),
                "filename": filename,
                "size": stored.size,
            }
        )

    # --- files ---------------------------------------------------------------------------------
    def _output(self, task_id: str) -> None:
        task = self.emulator.find_task(task_id)
        path = task.video_path if task is not None and task.state().status == "completed" else None
        if path is None or not os.path.exists(path):
            self._envelope(404, f"No video for {task_id}")
            return
        fault = self.emulator.take_fault("output", OUTPUT_KINDS) if self.command == "GET" else None
        if fault is not None:
            self._exchange.fault = fault.kind
        if fault is not None and fault.kind == "invalid_mp4":
            self._send(200, NOT_AN_MP4, "video/mp4")
            return
        size = os.path.getsize(path)
        if fault is not None and fault.kind == "truncate":
            self.close_connection = True
            self._send_headers_only(200, size, "video/mp4", {})
            self._stream_file(path, 0, size // 2)
            return
        self._serve_range(size, "video/mp4", lambda start, length: self._stream_file(path, start, length))

    def _media(self, token: str, filename: str) -> None:
        stored = self.emulator.media.get(token)
        if stored is None:
            self._envelope(404, "No such file")
            return

        def write(start: int, length: int) -> None:
            self.wfile.write(stored.data[start : start + length])

        self._serve_range(stored.size, stored.content_type, write)
