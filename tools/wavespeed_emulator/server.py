"""A WaveSpeed-compatible HTTP server for MAGI-1: the v3 API, upload targets, outputs, admin API.

Routes (names are what faults, the journal and the stats call them):

| route | call |
| --- | --- |
| submit | `POST /api/v3/wavespeed-ai/magi-1-24b` |
| result | `GET /api/v3/predictions/{id}/result` (and `GET /api/v3/predictions/{id}`) |
| upload | `POST /api/v3/media/uploads` → a presigned-style `PUT` target and a `download_url` |
| upload_put | `PUT /_upload/{token}` (no bearer, exactly the ticket's Content-Type and size) |
| upload_binary | `POST /api/v3/media/upload/binary` (multipart field `file`) |
| output | `GET /outputs/{id}.mp4` (no bearer, Range supported) |
| media | `GET /media/{token}/{filename}` (no bearer) |

Admin API under `/_emulator/` (no auth, never journaled): `faults` (GET, POST, DELETE), `reset`
(POST), `journal` (GET), `stats` (GET), `config` (GET, POST `{latency, default_resolution}`),
`tasks` and `tasks/{id}` (GET), `uploads` (GET).

Everything is bounded (bodies, stored uploads, tasks, journal, render threads), every thread is a
daemon, and `EmulatorServer.stop()` returns within about a second even with clients connected.
The Authorization header is read only to check it: it is never logged, journaled or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import mimetypes
import os
import re
import shutil
import socket
import socketserver
import struct
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from . import tasks as tasks_mod
from . import videogen
from .faults import OUTPUT_KINDS, SUBMIT_RESPONSE_KINDS, TASK_OUTCOME_KINDS, TRANSPORT_KINDS, FaultBook
from .media import TICKET_LIFETIME_S, MediaStore, UploadedMedia
from .tasks import MediaUnreachableError, SubmitError, Task

logger = logging.getLogger(__name__)

DEFAULT_LATENCY_S = 6.0
DEFAULT_MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_STORED_MEDIA_BYTES = 512 * 1024 * 1024
MAX_JSON_BYTES = 1024 * 1024
MULTIPART_OVERHEAD_BYTES = 64 * 1024
MAX_TASKS = 1000
MAX_JOURNAL_ENTRIES = 5000
MAX_PARALLEL_RENDERS = 4
STOP_BUDGET_S = 0.9
MAX_LATENCY_S = 24 * 3600.0
SYNC_MODE_TIMEOUT_S = 120.0
IMAGE_FETCH_TIMEOUT_S = 10.0
IDLE_CONNECTION_TIMEOUT_S = 30.0
STREAM_CHUNK_BYTES = 64 * 1024
MAX_DISCARDED_BYTES = 256 * 1024 * 1024
REDACTED = "[redacted]"

# What a CDN error page looks like when it is served where a video was expected.
NOT_AN_MP4 = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>502 Bad Gateway</h1><p>The origin returned an invalid response.</p></body></html>\n"
)

MEDIA_PATH = re.compile(r"^/media/(?P<token>[0-9a-f]{32})/(?P<filename>[^/]+)$")


@dataclass(frozen=True)
class _Route:
    name: str
    methods: frozenset[str]
    pattern: re.Pattern[str]
    handler: str
    api: bool = False  # under /api/v3: bearer required, envelope answers
    admin: bool = False  # under /_emulator: no auth, not journaled, no faults


def _route(name: str, methods: str, pattern: str, handler: str, **flags: bool) -> _Route:
    return _Route(name, frozenset(methods.split()), re.compile(pattern), handler, **flags)


ROUTES = (
    _route("submit", "POST", r"^/api/v3/wavespeed-ai/magi-1-24b/?$", "_submit", api=True),
    _route("result", "GET", r"^/api/v3/predictions/(?P<task_id>[^/]+)(?:/result)?/?$", "_result", api=True),
    _route("upload", "POST", r"^/api/v3/media/uploads/?$", "_upload_ticket", api=True),
    _route("upload_binary", "POST", r"^/api/v3/media/upload/binary/?$", "_upload_binary", api=True),
    _route("api", "GET POST PUT DELETE", r"^/api/v3/.*$", "_unknown_api", api=True),
    _route("upload_put", "PUT", r"^/_upload/(?P<token>[0-9a-f]{32})$", "_upload_put"),
    _route("output", "GET HEAD", r"^/outputs/(?P<task_id>[0-9a-f]{32})\.mp4$", "_output"),
    _route("media", "GET HEAD", MEDIA_PATH.pattern, "_media"),
    _route("admin", "GET POST DELETE", r"^/_emulator/faults/?$", "_admin_faults", admin=True),
    _route("admin", "POST", r"^/_emulator/reset/?$", "_admin_reset", admin=True),
    _route("admin", "GET", r"^/_emulator/journal/?$", "_admin_journal", admin=True),
    _route("admin", "GET", r"^/_emulator/stats/?$", "_admin_stats", admin=True),
    _route("admin", "GET POST", r"^/_emulator/config/?$", "_admin_config", admin=True),
    _route("admin", "GET", r"^/_emulator/tasks/?$", "_admin_tasks", admin=True),
    _route("admin", "GET", r"^/_emulator/tasks/(?P<task_id>[^/]+)$", "_admin_task", admin=True),
    _route("admin", "GET", r"^/_emulator/uploads/?$", "_admin_uploads", admin=True),
)


class _BodyTooLarge(Exception):
    pass


class _BadRequestBody(Exception):
    pass


@dataclass
class _Exchange:
    """What the journal and the request log keep of one request (never its headers)."""

    method: str
    path: str
    route: str = "unknown"
    status: int | None = None
    fault: str | None = None
    json_body: Any = None
    started: float = field(default_factory=time.monotonic)
    committed: bool = False


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _redact(value: Any, secrets_: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return REDACTED if any(s in value for s in secrets_) else value
    if isinstance(value, dict):
        return {k: _redact(v, secrets_) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, secrets_) for v in value]
    return value


class _Handler(BaseHTTPRequestHandler):
    server_version = "WaveSpeedEmulator/1.0"
    protocol_version = "HTTP/1.1"
    timeout = IDLE_CONNECTION_TIMEOUT_S
    server: _HTTPServer

    # --- plumbing -----------------------------------------------------------------------------
    @property
    def emulator(self) -> EmulatorServer:
        return self.server.emulator

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # one line per request is logged by _dispatch, with the time taken

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

    def _dispatch(self) -> None:
        exchange = _Exchange(self.command, urlsplit(self.path).path)
        self._exchange = exchange
        self._body = b""
        try:
            self._handle(exchange)
        except OSError as exc:  # the client went away, timed out, or stop() closed the socket
            self.close_connection = True
            logger.debug("connection lost during %s %s: %s", exchange.method, exchange.path, exc)
        except Exception:
            logger.exception("%s %s failed", exchange.method, exchange.path)
            if not exchange.committed:
                self.close_connection = True
                try:
                    self._envelope(500, "Internal server error (emulator bug)")
                except OSError:
                    pass
        finally:
            self._commit(exchange.status)
            millis = (time.monotonic() - exchange.started) * 1000.0
            logger.info("%s %s %s %.0fms", exchange.method, exchange.path, exchange.status or "-", millis)

    def _commit(self, status: int | None) -> None:
        """Journal the request once its answer is decided, before the client can see that answer,
        so that `journal()` and `stats()` are complete as soon as a client has its response."""
        exchange = self._exchange
        if exchange.committed:
            return
        exchange.status, exchange.committed = status, True
        self.emulator._record(exchange, self._bearer_token())

    def _handle(self, exchange: _Exchange) -> None:
        route, params, allowed = self._match(exchange.path)
        if route is None:
            if allowed:
                self._envelope(
                    405,
                    f"Method {exchange.method} not allowed",
                    headers={"Allow": ", ".join(sorted(allowed))},
                )
            else:
                self._envelope(404, f"Not found: {exchange.path}")
            self._drain_or_close()
            return
        exchange.route = route.name
        try:
            self._body = self._read_body(self._body_limit(route))
        except _BodyTooLarge:
            self._discard_body()
            self._envelope(413, "Request body too large")
            return
        except _BadRequestBody as exc:
            self.close_connection = True
            self._envelope(400, f"Malformed request body: {exc}")
            return
        if not route.admin and not self._apply_transport_fault(route.name):
            return
        if route.api and not self._authorized():
            self._envelope(401, "Unauthorized: missing or invalid API key (Authorization: Bearer <key>)")
            return
        getattr(self, route.handler)(**params)

    def _match(self, path: str) -> tuple[_Route | None, dict[str, str], set[str]]:
        allowed: set[str] = set()
        for route in ROUTES:
            match = route.pattern.match(path)
            if match is None:
                continue
            if self.command in route.methods:
                return route, {k: unquote(v) for k, v in match.groupdict().items()}, allowed
            allowed |= route.methods
        return None, {}, allowed

    def _body_limit(self, route: _Route) -> int:
        if route.name == "upload_put":
            return self.emulator.max_upload_bytes
        if route.name == "upload_binary":
            return self.emulator.max_upload_bytes + MULTIPART_OVERHEAD_BYTES
        return MAX_JSON_BYTES

    def _read_body(self, limit: int) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        length_text = self.headers.get("Content-Length")
        if not length_text:
            return b""
        try:
            length = int(length_text)
        except ValueError as exc:
            raise _BadRequestBody("Content-Length is not a number") from exc
        if length < 0:
            raise _BadRequestBody("negative Content-Length")
        if length > limit:
            raise _BodyTooLarge()
        body = self.rfile.read(length)
        if len(body) != length:
            raise _BadRequestBody("the connection closed before the whole body arrived")
        return body

    def _read_chunked(self, limit: int) -> bytes:
        body = bytearray()
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise _BadRequestBody("bad chunk size") from exc
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(body)
            if len(body) + size > limit:
                raise _BodyTooLarge()
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                raise _BadRequestBody("the connection closed inside a chunk")
            body += chunk
            self.rfile.readline(1024)

    def _discard_body(self) -> None:
        """Read and drop a refused body (bounded), so the client reads our 413 rather than a reset."""
        self.close_connection = True
        try:
            remaining = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return
        if remaining > MAX_DISCARDED_BYTES:
            return
        while remaining > 0:
            chunk = self.rfile.read(min(STREAM_CHUNK_BYTES, remaining))
            if not chunk:
                return
            remaining -= len(chunk)

    def _drain_or_close(self) -> None:
        """Unrouted requests: read a small body so the connection stays usable, else close it."""
        try:
            self._read_body(MAX_JSON_BYTES)
        except (_BodyTooLarge, _BadRequestBody):
            self.close_connection = True

    def _bearer_token(self) -> str | None:
        header = self.headers.get("Authorization", "") if hasattr(self, "headers") else ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return token.strip()

    def _authorized(self) -> bool:
        token = self._bearer_token()
        if token is None:
            return False
        expected = self.emulator.api_key
        return expected is None or hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8"))

    # --- answers ------------------------------------------------------------------------------
    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self._commit(status)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _envelope(
        self,
        status: int,
        message: str,
        data: Any = None,
        *,
        code: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        body = json.dumps({"code": status if code is None else code, "message": message, "data": data})
        self._send(status, body.encode("utf-8"), "application/json", headers)

    def _ok(self, data: Any) -> None:
        self._envelope(200, "success", data)

    def _reset_connection(self) -> None:
        """Close without any answer; SO_LINGER 0 makes the close a TCP reset."""
        self._commit(None)
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.connection.close()

    def _apply_transport_fault(self, route: str) -> bool:
        """Apply a pending status/reset/delay fault; False when the request was answered by it."""
        fault = self.emulator._faults.take(route, TRANSPORT_KINDS)
        if fault is None:
            return True
        self._exchange.fault = fault.kind
        if fault.kind == "delay":
            if self.emulator._stopping.wait(fault.params["seconds"]):
                self._reset_connection()
                return False
            return True
        if fault.kind == "reset":
            self._reset_connection()
            return False
        status = fault.params["status"]
        headers = {}
        if "retry_after" in fault.params:
            retry_after = fault.params["retry_after"]
            headers["Retry-After"] = str(int(retry_after) if float(retry_after).is_integer() else retry_after)
        message = fault.params.get("message") or _default_message(status)
        self._envelope(status, message, code=fault.params.get("code"), headers=headers)
        return False

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
        response_fault = emulator._faults.take("submit", SUBMIT_RESPONSE_KINDS)
        outcome = emulator._faults.take("submit", TASK_OUTCOME_KINDS)
        # What the admin API shows of the request is redacted like the journal.
        keys = tuple(k for k in (emulator.api_key, self._bearer_token()) if k)
        request = replace(request, sent=_redact(request.sent, keys))
        task = emulator._create_task(request, outcome)
        if outcome is not None:
            self._exchange.fault = outcome.kind
        if response_fault is not None:
            self._exchange.fault = response_fault.kind
            self._envelope(500, "Internal server error")
            return
        if request.sync:
            state = task.wait_final(SYNC_MODE_TIMEOUT_S, emulator._stopping)
            data = task.view(emulator.base_url)
            if not state.final:
                data.update(code=5004, error="Sync mode timed out; query the result later")
            self._ok(data)
            return
        self._ok(task.view(self.emulator.base_url))

    def _result(self, task_id: str) -> None:
        task = self.emulator._task(task_id)
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
        ticket = emulator._media.open_ticket(filename, size, content_type)
        self._ok(
            {
                "upload": {
                    "method": "PUT",
                    "url": f"{emulator.base_url}/_upload/{ticket.token}",
                    "headers": {"Content-Type": content_type},
                },
                "download_url": emulator._media_url(ticket.token, filename),
                "expires_in": int(TICKET_LIFETIME_S),
            }
        )

    def _upload_put(self, token: str) -> None:
        media = self.emulator._media
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
        part = _multipart_field(content_type, self._body, "file")
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
        stored = emulator._media.store(data, filename, part_type)
        self._ok(
            {
                "type": part_type.split("/")[0],
                "download_url": emulator._media_url(stored.token, filename),
                "filename": filename,
                "size": stored.size,
            }
        )

    # --- files ---------------------------------------------------------------------------------
    def _output(self, task_id: str) -> None:
        task = self.emulator._task(task_id)
        path = task.video_path if task is not None and task.state().status == "completed" else None
        if path is None or not os.path.exists(path):
            self._envelope(404, f"No video for {task_id}")
            return
        fault = self.emulator._faults.take("output", OUTPUT_KINDS) if self.command == "GET" else None
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
        stored = self.emulator._media.get(token)
        if stored is None:
            self._envelope(404, "No such file")
            return

        def write(start: int, length: int) -> None:
            self.wfile.write(stored.data[start : start + length])

        self._serve_range(stored.size, stored.content_type, write)

    def _send_headers_only(
        self, status: int, length: int, content_type: str, headers: dict[str, str]
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self._commit(status)
        self.end_headers()

    def _serve_range(self, size: int, content_type: str, write: Callable[[int, int], None]) -> None:
        """200 with the whole body, or 206 for one `Range: bytes=a-b` (CDNs allow resuming)."""
        start, end = 0, size - 1
        status, headers = 200, {}
        range_header = self.headers.get("Range")
        if range_header:
            match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", range_header)
            if match is None or match.group(1) == match.group(2) == "":
                match = None
            elif match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:
                start, end = max(0, size - int(match.group(2))), size - 1
            if match is None or start > end or start >= size:
                self._envelope(416, "Range not satisfiable", headers={"Content-Range": f"bytes */{size}"})
                return
            status, headers = 206, {"Content-Range": f"bytes {start}-{end}/{size}"}
        self._send_headers_only(status, end - start + 1, content_type, headers)
        if self.command != "HEAD":
            write(start, end - start + 1)

    def _stream_file(self, path: str, start: int, length: int) -> None:
        with open(path, "rb") as video:
            video.seek(start)
            remaining = length
            while remaining > 0:
                chunk = video.read(min(STREAM_CHUNK_BYTES, remaining))
                if not chunk:
                    break
                self.wfile.write(chunk)
                remaining -= len(chunk)

    # --- admin API ------------------------------------------------------------------------------
    def _admin_body(self) -> dict[str, Any]:
        try:
            body = json.loads(self._body.decode("utf-8")) if self._body else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = None
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body

    def _admin_faults(self) -> None:
        emulator = self.emulator
        if self.command == "GET":
            self._ok(emulator.faults())
        elif self.command == "DELETE":
            emulator.clear_faults()
            self._ok([])
        else:
            try:
                self._ok(emulator.add_fault(**self._admin_body()))
            except (ValueError, TypeError) as exc:
                self._envelope(400, str(exc))

    def _admin_reset(self) -> None:
        self.emulator.reset()
        self._ok(self.emulator.config())

    def _admin_journal(self) -> None:
        self._ok(self.emulator.journal())

    def _admin_stats(self) -> None:
        self._ok(self.emulator.stats())

    def _admin_config(self) -> None:
        if self.command == "POST":
            try:
                self.emulator.configure(**self._admin_body())
            except (ValueError, TypeError) as exc:
                self._envelope(400, str(exc))
                return
        self._ok(self.emulator.config())

    def _admin_tasks(self) -> None:
        self._ok(self.emulator.tasks())

    def _admin_task(self, task_id: str) -> None:
        described = self.emulator.task(task_id)
        if described is None:
            self._envelope(404, f"Task {task_id} not found")
        else:
            self._ok(described)

    def _admin_uploads(self) -> None:
        self._ok(
            [
                {**stored.describe(), "download_url": self.emulator._media_url(stored.token, stored.filename)}
                for stored in self.emulator.uploads.values()
            ]
        )


def _multipart_field(content_type: str, body: bytes, name: str) -> EmailMessage | None:
    """The part called `name` of a multipart/form-data body (the stdlib's cgi module is gone)."""
    message = BytesParser(policy=policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        return None
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == name:
            return part
    return None


def _default_message(status: int) -> str:
    if status == 402:
        return "Insufficient balance"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], emulator: EmulatorServer) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = host, port

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)


class EmulatorServer:
    """A WaveSpeed-compatible MAGI-1 service on loopback, for tests and credit-free demos.

    >>> with EmulatorServer(port=0, latency=0.5) as emulator:
    ...     emulator.base_url  # e.g. 'http://127.0.0.1:40123'

    `api_key`: the only bearer key accepted; None takes `WAVESPEED_API_KEY` from the environment at
    construction, and when that is unset too, any non-empty key is accepted.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: float = DEFAULT_LATENCY_S,
        default_resolution: str = "720p",
        api_key: str | None = None,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    ) -> None:
        _check_latency(latency)
        _check_resolution(default_resolution)
        self.host = host
        self._requested_port = port
        self._initial_config = {"latency": float(latency), "default_resolution": default_resolution}
        self._latency = float(latency)
        self.default_resolution = default_resolution
        self._api_key = api_key if api_key is not None else (os.environ.get("WAVESPEED_API_KEY") or None)
        self.max_upload_bytes = max_upload_bytes
        self._faults = FaultBook()
        self._media = MediaStore(max_upload_bytes, max(MAX_STORED_MEDIA_BYTES, max_upload_bytes))
        self._lock = threading.Lock()
        self._tasks: OrderedDict[str, Task] = OrderedDict()
        self._journal: deque[dict[str, Any]] = deque(maxlen=MAX_JOURNAL_ENTRIES)
        self._stats: Counter[str] = Counter()
        self._stopping = threading.Event()
        self._render_slots = threading.BoundedSemaphore(MAX_PARALLEL_RENDERS)
        self._renders: set[threading.Thread] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._workdir: str | None = None
        self._port: int | None = None

    # --- life cycle -------------------------------------------------------------------------------
    def start(self) -> EmulatorServer:
        if self._httpd is not None:
            raise RuntimeError("the emulator is already running")
        videogen.video_codec()  # probe the encoder once, before any request waits on it
        if not _is_loopback(self.host):
            logger.warning("serving on %s, which is not a loopback address", self.host)
        self._stopping.clear()
        self._workdir = tempfile.mkdtemp(prefix="wavespeed-emulator-")
        self._httpd = _HTTPServer((self.host, self._requested_port), self)
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="wavespeed-emulator",
            daemon=True,
        )
        self._thread.start()
        logger.info("WaveSpeed emulator listening: WAVESPEED_BASE_URL=%s", self.base_url)
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        deadline = time.monotonic() + STOP_BUDGET_S
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
        # Renders stop at their next frame. Waiting for them keeps OpenCV's encoder out of the
        # interpreter's exit, where a daemon thread inside it aborts the process (SIGABRT).
        with self._lock:
            renders = list(self._renders)
        for render in renders:
            render.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            for task in self._tasks.values():
                task.discard()
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
        logger.info("WaveSpeed emulator stopped")

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def port(self) -> int:
        """The port it listens on (still answered after `stop()`, for messages and restarts)."""
        if self._port is None:
            raise RuntimeError("the emulator has not been started")
        return self._port

    @property
    def base_url(self) -> str:
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def api_key(self) -> str | None:
        return self._api_key

    def auth_headers(self) -> dict[str, str]:
        """Headers a client would send; a placeholder key when the emulator accepts any key."""
        return {"Authorization": f"Bearer {self._api_key or 'any-key'}"}

    # --- configuration ----------------------------------------------------------------------------
    @property
    def latency(self) -> float:
        return self._latency

    def set_latency(self, seconds: float) -> None:
        """Latency for tasks submitted from now on."""
        _check_latency(seconds)
        self._latency = float(seconds)

    def configure(
        self, *, latency: float | None = None, default_resolution: str | None = None
    ) -> dict[str, Any]:
        if default_resolution is not None:
            _check_resolution(default_resolution)
        if latency is not None:
            self.set_latency(latency)
        if default_resolution is not None:
            self.default_resolution = default_resolution
        return self.config()

    def config(self) -> dict[str, Any]:
        return {
            "latency": self._latency,
            "default_resolution": self.default_resolution,
            "max_upload_bytes": self.max_upload_bytes,
            "codec": videogen.video_codec(),
            "key_required": self._api_key is not None,
        }

    # --- faults -----------------------------------------------------------------------------------
    def add_fault(self, route: str, kind: str = "status", *, count: int = 1, **params: Any) -> dict[str, Any]:
        """Queue a fault; e.g. `add_fault("result", "status", status=429, retry_after=1, count=2)`.

        Raises faults.FaultSpecError (a ValueError) for a description the emulator cannot honour.
        """
        return self._faults.add({"route": route, "kind": kind, "count": count, **params}).as_dict()

    def clear_faults(self) -> None:
        self._faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        return self._faults.pending()

    def reset(self) -> None:
        """Forget faults, journal, stats, tasks and uploads; restore the constructor's configuration."""
        self._faults.clear()
        self._media.clear()
        with self._lock:
            self._journal.clear()
            self._stats.clear()
            dropped = list(self._tasks.values())
            self._tasks.clear()
        for task in dropped:
            task.discard()
        self._latency = self._initial_config["latency"]
        self.default_resolution = self._initial_config["default_resolution"]

    # --- what happened ----------------------------------------------------------------------------
    def journal(self) -> list[dict[str, Any]]:
        """Requests seen (admin calls excluded), oldest first; headers and keys are never kept."""
        with self._lock:
            return [dict(entry) for entry in self._journal]

    def stats(self) -> dict[str, int]:
        """Requests seen per route name (admin calls excluded)."""
        with self._lock:
            return dict(self._stats)

    def tasks(self) -> list[dict[str, Any]]:
        with self._lock:
            known = list(self._tasks.values())
        return [task.describe() for task in known]

    def task(self, task_id: str) -> dict[str, Any] | None:
        task = self._task(task_id)
        return task.describe() if task is not None else None

    @property
    def uploads(self) -> dict[str, UploadedMedia]:
        """Stored uploads by token (a snapshot)."""
        return self._media.snapshot()

    def uploaded_bytes(self, download_url: str) -> bytes:
        """The stored bytes behind one of this emulator's `download_url`s; KeyError if none."""
        match = MEDIA_PATH.match(urlsplit(download_url).path)
        stored = self._media.get(match.group("token")) if match else None
        if stored is None:
            raise KeyError(download_url)
        return stored.data

    def wait_for_task(self, task_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """Block until the task is final (or `timeout`); returns its prediction object."""
        task = self._task(task_id)
        if task is None:
            raise KeyError(task_id)
        task.wait_final(timeout, self._stopping)
        return task.view(self.base_url)

    # --- internals used by the handler ---------------------------------------------------------------
    def _record(self, exchange: _Exchange, bearer: str | None) -> None:
        if exchange.route == "admin":
            return
        millis = (time.monotonic() - exchange.started) * 1000.0
        entry: dict[str, Any] = {
            "time": tasks_mod.iso_now(),
            "method": exchange.method,
            "path": exchange.path,
            "route": exchange.route,
            "status": exchange.status,
            "duration_ms": round(millis, 1),
        }
        if exchange.fault:
            entry["fault"] = exchange.fault
        if exchange.json_body is not None:
            keys = tuple(k for k in (self._api_key, bearer) if k)
            entry["json_body"] = _redact(exchange.json_body, keys)
        with self._lock:
            self._journal.append(entry)
            self._stats[exchange.route] += 1

    def _media_url(self, token: str, filename: str) -> str:
        return f"{self.base_url}/media/{token}/{quote(filename, safe='')}"

    def _task(self, task_id: str) -> Task | None:
        with self._lock:
            return self._tasks.get(task_id)

    def _create_task(self, request: tasks_mod.TaskRequest, outcome: Any) -> Task:
        task = Task(request, self._latency, outcome)
        with self._lock:
            self._tasks[task.id] = task
            evicted = []
            while len(self._tasks) > MAX_TASKS:
                evicted.append(self._tasks.popitem(last=False)[1])
        for old in evicted:
            old.discard()
        if request.seed < 0:
            logger.info("task %s: seed -1, the emulator picked %d", task.id, task.seed)
        if task.needs_render:
            render = threading.Thread(
                target=self._render, args=(task,), name=f"render-{task.id[:8]}", daemon=True
            )
            with self._lock:
                self._renders.add(render)
            render.start()
        return task

    def _render(self, task: Task) -> None:
        try:
            while not self._render_slots.acquire(timeout=0.1):
                if self._stopping.is_set():
                    return
            try:
                workdir = self._workdir
                if self._stopping.is_set() or task.discarded or workdir is None:
                    return
                tasks_mod.render(task, workdir, self._load_image, self._stopping.is_set)
            finally:
                self._render_slots.release()
        finally:
            with self._lock:
                self._renders.discard(threading.current_thread())

    def _load_image(self, url: str) -> bytes:
        """The first frame's bytes: from this emulator's own store, or another loopback server."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise MediaUnreachableError(
                f"unsupported image URL scheme {parts.scheme or '(none)'!r}: upload the image and pass its URL"
            )
        if not _is_loopback(parts.hostname):
            raise MediaUnreachableError(
                f"{parts.hostname} is not reachable (the emulator fetches loopback URLs only)"
            )
        own = self._port is not None and parts.port == self._port
        match = MEDIA_PATH.match(parts.path)
        if own and match:
            stored = self._media.get(match.group("token"))
            if stored is None:
                raise MediaUnreachableError(f"no uploaded file at {url}")
            return stored.data
        # Loopback only, so never through a proxy from the environment.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(url, timeout=IMAGE_FETCH_TIMEOUT_S) as answer:
                data = answer.read(self.max_upload_bytes + 1)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise MediaUnreachableError(f"{url}: {exc}") from exc
        if len(data) > self.max_upload_bytes:
            raise MediaUnreachableError(f"{url}: larger than {self.max_upload_bytes} bytes")
        return data


def _check_latency(seconds: Any) -> None:
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not 0 <= seconds <= MAX_LATENCY_S
    ):
        raise ValueError(f"latency must be a number of seconds in 0…{MAX_LATENCY_S:g}")


def _check_resolution(resolution: Any) -> None:
    if resolution not in videogen.RESOLUTIONS:
        raise ValueError(f"default_resolution must be one of {', '.join(videogen.RESOLUTIONS)}")
