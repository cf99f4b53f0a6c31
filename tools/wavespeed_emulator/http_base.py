"""HTTP mechanics of the emulator: routing table entries, bodies, answers, ranges, connections.

Nothing here knows about WaveSpeed: `BaseHandler` dispatches a request to the handler method its
`routes` name, journals it through the backend (`server.emulator`: `record`, `take_fault`,
`body_limit`, `api_key`, `stopping`) and offers the answer primitives (`_send`, `_envelope`,
`_ok`, `_serve_range`, `_reset_connection`). The API and admin handlers are mixins on top of it.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from .faults import TRANSPORT_KINDS

if TYPE_CHECKING:
    from .server import EmulatorServer

logger = logging.getLogger(__name__)

IDLE_CONNECTION_TIMEOUT_S = 30.0
STREAM_CHUNK_BYTES = 64 * 1024
MAX_DISCARDED_BYTES = 256 * 1024 * 1024
MAX_JSON_BYTES = 1024 * 1024
REDACTED = "[redacted]"


@dataclass(frozen=True)
class Route:
    name: str
    methods: frozenset[str]
    pattern: re.Pattern[str]
    handler: str
    api: bool = False  # under /api/v3: bearer required, envelope answers
    admin: bool = False  # under /_emulator: no auth, not journaled, no faults


def make_route(name: str, methods: str, pattern: str, handler: str, **flags: bool) -> Route:
    return Route(name, frozenset(methods.split()), re.compile(pattern), handler, **flags)


class _BodyTooLarge(Exception):
    pass


class _BadRequestBody(Exception):
    pass


@dataclass
class Exchange:
    """What the journal and the request log keep of one request (never its headers)."""

    method: str
    path: str
    route: str = "unknown"
    status: int | None = None
    fault: str | None = None
    json_body: Any = None
    started: float = field(default_factory=time.monotonic)
    committed: bool = False


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redact(value: Any, secrets_: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return REDACTED if any(s in value for s in secrets_) else value
    if isinstance(value, dict):
        return {k: redact(v, secrets_) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secrets_) for v in value]
    return value


class BaseHandler(BaseHTTPRequestHandler):
    server_version = "WaveSpeedEmulator/1.0"
    protocol_version = "HTTP/1.1"
    timeout = IDLE_CONNECTION_TIMEOUT_S
    server: HTTPServer
    routes: tuple[Route, ...] = ()  # set by the concrete handler: first match wins

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
        exchange = Exchange(self.command, urlsplit(self.path).path)
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
        self.emulator.record(exchange, self._bearer_token())

    def _handle(self, exchange: Exchange) -> None:
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
            self._body = self._read_body(self.emulator.body_limit(route.name))
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

    def _match(self, path: str) -> tuple[Route | None, dict[str, str], set[str]]:
        allowed: set[str] = set()
        for route in self.routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            if self.command in route.methods:
                return route, {k: unquote(v) for k, v in match.groupdict().items()}, allowed
            allowed |= route.methods
        return None, {}, allowed

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
        fault = self.emulator.take_fault(route, TRANSPORT_KINDS)
        if fault is None:
            return True
        self._exchange.fault = fault.kind
        if fault.kind == "delay":
            if self.emulator.stopping.wait(fault.params["seconds"]):
                self._reset_connection()
                return False
            return True
        if fault.kind == "reset":
            self._reset_connection()
            return False
        status = fault.params["status"]
        headers = {}
        if "retry_after_text" in fault.params:
            headers["Retry-After"] = fault.params["retry_after_text"]
        elif "retry_after" in fault.params:
            retry_after = fault.params["retry_after"]
            headers["Retry-After"] = str(int(retry_after) if float(retry_after).is_integer() else retry_after)
        message = fault.params.get("message") or default_message(status)
        self._envelope(status, message, code=fault.params.get("code"), headers=headers)
        return False

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


def multipart_field(content_type: str, body: bytes, name: str) -> EmailMessage | None:
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


def default_message(status: int) -> str:
    if status == 402:
        return "Insufficient balance"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


class HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(
        self, address: tuple[str, int], emulator: EmulatorServer, handler: type[BaseHandler]
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

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
