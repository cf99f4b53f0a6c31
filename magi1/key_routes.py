"""HTTP routes for the front end's key setting.

The key is written to a 0600 file in a private folder of ComfyUI's user directory (never in
the workflow, browser storage or ComfyUI's settings file). No route ever answers with the key:
only whether one is set, where it comes from, and its last 4 characters.

ComfyUI listens on a port every web page in the user's browser can reach, so the routes answer
only the ComfyUI page itself (`request_refusal`):
- `Host` must be an IP literal, `localhost` or a name ComfyUI was told to `--listen` on: a page
  that rebinds its own DNS name to 127.0.0.1 sends its own name and is refused (DNS rebinding);
- POST and DELETE (anything but GET) must carry `X-Magi1-Request: 1`, a header no simple
  cross-site request (form, `no-cors` fetch) can set and that ComfyUI's CORS answer never allows,
  and an `Origin` equal to that Host (missing, `null` or foreign is refused); a GET, which only
  reads the status, is refused when it carries a foreign Origin;
- POST must be `application/json` and small; the key is validated (config.check_key) before it
  is stored, and no answer, error or log line contains it.
"""
from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from . import config
from .errors import InvalidApiKeyError

log = logging.getLogger(__name__)

ROUTE = "/magi1/api_key"
MAX_KEY_CHARS = config.KEY_MAX_CHARS
MAX_BODY_BYTES = 4096
GUARD_HEADER = "X-Magi1-Request"
GUARD_VALUE = "1"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def key_status(private_dir: Path) -> dict[str, Any]:
    """What the front end may know: set or not, where from, the last 4 characters; or the problem."""
    problem = ""
    try:
        key = config.find_api_key(private_dir)
    except InvalidApiKeyError as exc:
        key, problem = None, str(exc)
    file_key = config.read_key_file(private_dir)
    status = {
        "set": key is not None,
        "source": key.source if key else None,
        "last4": key.last4 if key else "",
        "stored": file_key is not None,
        "environment_overrides": key is not None and key.source == "environment" and file_key is not None,
    }
    if problem:
        status["problem"] = problem
    return status


def _host_and_port(host_header: str) -> tuple[str, int | None] | None:
    try:
        parts = parse_url("//" + host_header)
    except (LocationParseError, ValueError):
        return None
    if not parts.host or parts.auth or parts.path not in (None, ""):
        return None
    return parts.host.lower().strip("[]"), parts.port


def _is_own_host_name(host: str, own_names: Collection[str]) -> bool:
    if host == "localhost" or host in own_names:
        return True
    try:
        ipaddress.ip_address(host)  # DNS rebinding needs a name: an IP literal cannot be rebound
        return True
    except ValueError:
        return False


def request_refusal(method: str, headers: Mapping[str, str], *, own_names: Collection[str] = (),
                    content_type: str = "") -> str | None:
    """Why this request to one of the pack's routes (the key, the panel) is refused, or None.

    `headers` is case-insensitive (aiohttp's CIMultiDict); `own_names` the host names ComfyUI
    listens on besides IP literals and localhost; `content_type` the body's media type.
    """
    host = _host_and_port(headers.get("Host", ""))
    if host is None or not _is_own_host_name(host[0], own_names):
        return "the Host header is not this ComfyUI's address (open ComfyUI by its IP address or localhost)"
    changes = method not in ("GET", "HEAD")
    if changes and headers.get(GUARD_HEADER) != GUARD_VALUE:
        return f"the request lacks the {GUARD_HEADER} header that ComfyUI's own page sends"
    origin = headers.get("Origin")
    if changes or origin is not None:
        if not origin or origin == "null":
            return "the request has no Origin: only ComfyUI's own page may change this"
        try:
            parts = parse_url(origin)
        except (LocationParseError, ValueError):
            return "the request's Origin is not a URL"
        scheme = (parts.scheme or "").lower()
        if scheme not in _DEFAULT_PORTS or not parts.host or parts.auth or parts.path not in (None, ""):
            return "the request's Origin is not an http(s) origin"
        # A Host without a port is the scheme's default port: a page on another port of the same
        # machine is another origin even when ComfyUI listens on 80 or 443.
        origin_port = parts.port or _DEFAULT_PORTS[scheme]
        if parts.host.lower().strip("[]") != host[0] or origin_port != (host[1] or _DEFAULT_PORTS[scheme]):
            return "the request comes from another site (its Origin is not this ComfyUI)"
    site = headers.get("Sec-Fetch-Site")
    if site and site not in ("same-origin", "none"):
        return "the request comes from another site (Sec-Fetch-Site)"
    if method == "POST" and content_type != "application/json":
        return "send a JSON body (Content-Type: application/json)"
    return None


def make_register(private_dir: Callable[[], Path],
                  own_names: Callable[[], Collection[str]] | None = None) -> Callable[[Any], None]:
    """A function that adds the routes to ComfyUI's route table (given by the glue).

    `own_names` gives the host names ComfyUI listens on (default: comfy_glue.server_host_names).
    """

    def register(routes: Any) -> None:
        from aiohttp import web

        from . import comfy_glue

        names = own_names or comfy_glue.server_host_names

        def refused(request) -> web.Response | None:
            why = request_refusal(request.method, request.headers, own_names=names(),
                                  content_type=request.content_type)
            if why is None:
                return None
            log.warning("refused a %s to %s: %s", request.method, ROUTE, why)
            return web.json_response({"error": f"Refused: {why}."}, status=403)

        @routes.get(ROUTE)
        async def get_key_status(request):
            return refused(request) or web.json_response(key_status(private_dir()))

        @routes.post(ROUTE)
        async def store_key(request):
            answer = refused(request)
            if answer is not None:
                return answer
            if request.content_length is None or request.content_length > MAX_BODY_BYTES:
                return web.json_response({"error": f"send at most {MAX_BODY_BYTES} bytes of JSON"}, status=413)
            try:
                body = await request.json()
            except ValueError:
                return web.json_response({"error": "send JSON {\"key\": \"...\"}"}, status=400)
            key = body.get("key") if isinstance(body, dict) else None
            if not isinstance(key, str):
                return web.json_response({"error": "send JSON {\"key\": \"...\"} with the key as text"}, status=400)
            try:
                checked = config.check_key(key, source="the settings")
            except InvalidApiKeyError as exc:
                return web.json_response({"error": str(exc)}, status=400)
            if not checked:
                return web.json_response({"error": "the key is empty"}, status=400)
            config.write_key_file(private_dir(), checked)
            log.info("stored a WaveSpeed API key from the settings (ending …%s)", config.ApiKey(checked, "").last4)
            return web.json_response(key_status(private_dir()))

        @routes.delete(ROUTE)
        async def delete_key(request):
            answer = refused(request)
            if answer is not None:
                return answer
            config.delete_key_file(private_dir())
            log.info("deleted the stored WaveSpeed API key")
            return web.json_response(key_status(private_dir()))

    return register
