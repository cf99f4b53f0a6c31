"""Which URLs the pack connects to, and how redirects and the bearer key are handled.

One policy for the base URL, the upload URL, every download and every redirect hop:
`https://` to any host, `http://` only to a loopback host (127.0.0.0/8, ::1, `localhost`); a
host of plain letters, digits, `.-_` or an IP literal; no user-info (`user@`), no backslash, no
control character or space, no https → http downgrade on a redirect, at most `MAX_REDIRECTS` hops,
never the running ComfyUI's own port on this machine (its routes, and other packs', would bypass
the local-folder rule). URLs are parsed with `urllib3.util.parse_url`, the parser
requests itself uses to decide where to connect, so the host checked is the host connected to
(`urllib.parse` reads `http://evil\\@127.0.0.1/` as 127.0.0.1; requests connects to `evil`).

`PolicySession` is a `requests.Session` that checks every redirect hop and sends the
`Authorization` header only to the configured API origin (scheme, host and port), never to
another host a redirect names. It never reads `~/.netrc` (or `$NETRC`): requests would otherwise
send a `default` entry's login and password as Basic auth to every host a workflow names, and
replace the bearer key with it on the API host. `RedirectGuard` is the same hop check as a per-request response
hook, for sessions the pack does not own (downloads).
"""
from __future__ import annotations

import ipaddress
import logging
import re
from urllib.parse import urljoin, urlsplit

import requests
from urllib3.exceptions import LocationParseError
from urllib3.util import Url, parse_url

from .errors import UnsafeUrlError

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5  # WaveSpeed's CDN answers directly; a few hops cover a proxy in between
MAX_URL_CHARS = 8192
DEFAULT_PORTS = {"http": 80, "https": 443}
REFUSED_CHARACTERS = "\\"  # browsers read "\" as "/", urllib and urllib3 disagree on it: refuse


def is_loopback_host(host: str | None) -> bool:
    """True for `localhost` and loopback IP literals (127.0.0.0/8, ::1), brackets allowed."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def redact(url: str) -> str:
    """The URL as scheme://host[:port]/path: no user-info, query or fragment (tokens live there)."""
    try:
        parts = parse_url(url)
    except (LocationParseError, ValueError, TypeError):
        return "<an unparsable URL>"
    if not parts.scheme or not parts.host:
        return repr(url[:60])
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.host}{port}{parts.path or ''}"


def parse(url: str, *, what: str = "URL") -> Url:
    """`url` parsed the way requests will connect to it; UnsafeUrlError when it breaks a rule."""
    if not isinstance(url, str) or not url:
        raise UnsafeUrlError(f"{what} is empty or not text.")
    if len(url) > MAX_URL_CHARS:
        raise UnsafeUrlError(f"{what} is {len(url)} characters long; refusing URLs over {MAX_URL_CHARS}.")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise UnsafeUrlError(f"{what} {redact(url)} contains a space or a control character.")
    if any(c in REFUSED_CHARACTERS for c in url):
        raise UnsafeUrlError(f"{what} {redact(url)} contains a backslash; write URLs with '/' only.")
    try:
        parts = parse_url(url)
    except (LocationParseError, ValueError) as exc:
        raise UnsafeUrlError(f"{what} is not a valid URL ({type(exc).__name__}).") from None
    if parts.auth is not None or "@" in (parts.netloc or ""):
        raise UnsafeUrlError(f"{what} {redact(url)} carries a user name or password before '@'; refused.")
    if parts.host is not None and not _host_is_plain(url, parts.host):
        raise UnsafeUrlError(
            f"{what} {redact(url)} has a host with characters a host name cannot have (percent-escapes, "
            "non-ASCII: write it in its xn-- form, punctuation); refused."
        )
    return parts


_PLAIN_HOST = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]")


def _host_is_plain(url: str, host: str) -> bool:
    """Letters, digits, `.`, `-`, `_` or a bracketed IPv6 literal, read the same by urllib.

    Anything else is rewritten on the way (urllib3 decodes `%41`, requests IDNA-encodes non-ASCII
    and escapes `^`), so the host connected to would not be the host checked.
    """
    try:
        seen_by_urllib = urlsplit(url).hostname or ""
    except ValueError:
        return False
    return _PLAIN_HOST.fullmatch(host) is not None and seen_by_urllib == host.lower().strip("[]")


def check_url(url: str, *, what: str = "URL", previous: str | None = None) -> str:
    """Accept https://, or http:// only on a loopback host; return `url` unchanged.

    `previous` is the URL that redirected here: a hop from https:// to http:// is refused even
    to a loopback host. Raises UnsafeUrlError naming `what` and the URL without its query.
    """
    parts = parse(url, what=what)
    scheme = (parts.scheme or "").lower()
    if scheme not in DEFAULT_PORTS or not parts.host:
        raise UnsafeUrlError(f"{what} {redact(url)} is not an https:// URL.")
    if previous is not None and scheme == "http" and (parse_url(previous).scheme or "").lower() == "https":
        raise UnsafeUrlError(
            f"Refusing the redirect from https:// to plain http:// ({redact(url)}) for {what}."
        )
    if scheme == "http" and not is_loopback_host(parts.host):
        raise UnsafeUrlError(
            f"Refusing plain http:// for {what} {redact(url)}: only https:// is allowed, "
            "or http:// on this machine (127.0.0.1, ::1, localhost) for a local emulator."
        )
    if _is_comfyui_itself(parts, scheme):
        raise UnsafeUrlError(
            f"Refusing {what} {redact(url)}: it points at ComfyUI itself. A URL may not reach "
            "ComfyUI's own routes (or another pack's); give a local path for a file in ComfyUI's "
            "input, output or temp folder instead."
        )
    return url


def _is_comfyui_itself(parts: Url, scheme: str) -> bool:
    """True when `parts` names the running ComfyUI's port on this machine (a loopback or
    unspecified address, or a name it listens on). False outside a running ComfyUI."""
    from . import comfy_glue  # late: the glue is the only module that looks at ComfyUI

    own_port = comfy_glue.server_port()
    if own_port is None or (parts.port or DEFAULT_PORTS[scheme]) != own_port:
        return False
    host = (parts.host or "").lower().strip("[]")
    if is_loopback_host(host) or host in comfy_glue.server_host_names():
        return True
    try:
        return ipaddress.ip_address(host).is_unspecified  # 0.0.0.0 and :: reach this machine
    except ValueError:
        return False


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) with the default port filled in: what "same origin" compares."""
    parts = parse_url(url)
    scheme = (parts.scheme or "").lower()
    return scheme, (parts.host or "").lower(), parts.port or DEFAULT_PORTS.get(scheme, 0)


def redirect_target(response: requests.Response) -> str | None:
    """The absolute URL a redirect answer points to, resolved the way requests resolves it;
    UnsafeUrlError (the answer closed) when the Location cannot be parsed."""
    if not response.is_redirect:
        return None
    location = response.headers["location"].encode("latin1").decode("utf8", "replace")
    try:
        if location.startswith("//"):
            location = f"{parse_url(response.url).scheme}:{location}"
        return urljoin(response.url, location)
    except (LocationParseError, ValueError):  # e.g. "http://[::1/x": an unclosed or bad IP literal
        response.close()
        raise UnsafeUrlError("a redirect names a URL that cannot be parsed; refused.") from None


def check_redirect(response: requests.Response, *, what: str = "a redirect") -> None:
    """Refuse (and close) a redirect answer whose target breaks the policy."""
    target = redirect_target(response)
    if target is None:
        return
    try:
        check_url(target, what=what, previous=response.url)
    except UnsafeUrlError:
        response.close()
        raise


class RedirectGuard:
    """A requests response hook: checks each redirect hop of one call and counts them.

        session.get(url, hooks={"response": RedirectGuard()})
    """

    def __init__(self, max_hops: int = MAX_REDIRECTS, *, what: str = "a redirect") -> None:
        self.max_hops = max_hops
        self.hops = 0
        self.what = what

    def __call__(self, response: requests.Response, *args, **kwargs) -> requests.Response:
        if response.is_redirect:
            self.hops += 1
            if self.hops > self.max_hops:
                response.close()
                raise UnsafeUrlError(f"{self.what}: more than {self.max_hops} redirects; stopped.")
            check_redirect(response, what=self.what)
        return response


def keep_headers(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """A requests `auth` that changes nothing: with one set, requests never looks in ~/.netrc."""
    return request


class PolicySession(requests.Session):
    """A session whose redirects follow the policy and whose key goes only to `key_origin`.

    No credential from ~/.netrc is ever added (the session's `auth` is `keep_headers`); the only
    one sent is the `Authorization` header a caller sets, on the first request and on hops that
    stay at `key_origin`.

    `key_origin` is the API base URL; a redirect anywhere else (another host, port or scheme)
    loses the `Authorization` header. Without one, no hop after the first carries it. More than
    `MAX_REDIRECTS` hops raise requests.TooManyRedirects; a refused hop raises UnsafeUrlError.
    """

    def __init__(self, key_origin: str | None = None) -> None:
        super().__init__()
        self.max_redirects = MAX_REDIRECTS
        self.auth = keep_headers  # requests consults ~/.netrc only when no auth is set
        self.key_origin = origin(key_origin) if key_origin else None
        self.hooks["response"].append(_check_redirect_hook)

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        # Replaces requests' own rule (and its .netrc lookup): the key stays with the API origin.
        check_url(prepared_request.url or "", what="a redirect", previous=response.url)
        if self.key_origin is None or origin(prepared_request.url or "") != self.key_origin:
            if prepared_request.headers.pop("Authorization", None) is not None:
                log.info("a redirect to %s: the API key is not sent there", redact(prepared_request.url or ""))


def _check_redirect_hook(response: requests.Response, *args, **kwargs) -> requests.Response:
    check_redirect(response)
    return response
