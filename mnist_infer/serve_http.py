"""HTTP/1.1 for `serve`: limits, requests, responses, routes, head parsing and the Host check.

The transport (serve_conn.py, serve_server.py) speaks this; the application (serve.py) only
sees Request, Response, HTTPError and Route.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Callable, Iterable
from http import HTTPStatus
from urllib.parse import parse_qs

MAX_LINE = 8 * 1024  # bytes of the request line
MAX_HEAD = 16 * 1024  # bytes of the whole head (request line and headers)
MAX_HEADERS = 100
SAFE = frozenset(("GET", "HEAD", "OPTIONS"))  # methods a page elsewhere may send without Origin
PHRASES = {s.value: s.phrase for s in HTTPStatus}
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


class Limits:
    """What one serving process allows (deadlines in s, sizes in bytes)."""

    def __init__(
        self,
        *,
        max_connections: int = 1024,
        head_timeout: float = 10.0,
        idle_timeout: float = 15.0,
        body_timeout: float = 60.0,
        send_timeout: float = 30.0,
        max_upload: int = 10 * 1024 * 1024,
        body_budget: int | None = None,
        decode_wait: float = 10.0,
    ) -> None:
        self.max_connections = max_connections
        self.head_timeout, self.idle_timeout = head_timeout, idle_timeout
        self.body_timeout, self.send_timeout = body_timeout, send_timeout
        self.max_upload = max_upload
        if body_budget is None:
            body_budget = max(32 * 1024 * 1024, 2 * max_upload)
        self.body_budget = body_budget  # bytes of request bodies in memory at once, as received
        self.decode_wait = decode_wait  # s a request may wait for room in the decode budget

    @property
    def tick(self) -> float:
        """How often deadlines are checked."""
        shortest = min(self.head_timeout, self.idle_timeout, self.body_timeout, self.send_timeout)
        return max(0.01, min(0.25, shortest / 5))


class Request:
    """A request whose head (and body, for an upload route) is in."""

    __slots__ = ("body", "headers", "method", "path", "query", "version")

    def __init__(
        self, method: str, path: str, query: str, version: str, headers: dict[str, str]
    ) -> None:
        self.method, self.path, self.query, self.version = method, path, query, version
        self.headers = headers  # names in lower case
        self.body = b""

    def param(self, name: str, default: str) -> str:
        """The last value of a query parameter, or default."""
        return parse_qs(self.query).get(name, [default])[-1] if self.query else default


class Response:
    """What a handler answers: body, content type, status and extra headers."""

    __slots__ = ("body", "ctype", "headers", "status")

    def __init__(
        self,
        body: bytes,
        ctype: str = "application/json",
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.body, self.ctype, self.status, self.headers = body, ctype, status, headers


class HTTPError(Exception):
    """Answer the request with this status and a JSON {"error": message}."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers


class Route:
    """The methods a path takes and its handler. An `upload` route reads a request body;
    its `cost` says how many pixels decoding it takes, reserved from the machine-wide decode
    budget while the handler runs."""

    __slots__ = ("cost", "handler", "methods", "upload")

    def __init__(
        self,
        methods: tuple[str, ...],
        handler: Callable[[Request], Response],
        *,
        upload: bool = False,
        cost: Callable[[Request], int] | None = None,
    ) -> None:
        self.methods, self.handler, self.upload, self.cost = methods, handler, upload, cost


def json_bytes(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def error_body(message: str) -> bytes:
    return json_bytes({"error": message})


# --- parsing ----------------------------------------------------------------------------


def check_request_line(line: bytes) -> tuple[str, str, str]:
    """(method, target, version) of a request line; HTTPError if it is not HTTP/1.x."""
    text = line.decode("latin-1").rstrip("\r")
    parts = text.split(" ")
    if len(parts) == 2 and parts[0] and parts[1].startswith("/"):
        raise HTTPError(400, f"HTTP/0.9 requests are not supported; send {text} HTTP/1.1")
    if len(parts) != 3 or not parts[0] or not set(parts[0]) <= _TOKEN:
        raise HTTPError(400, f"bad request line {text[:100]!r}, expected METHOD /path HTTP/1.1")
    method, target, version = parts
    if not version.startswith("HTTP/") or version[5:] not in ("1.0", "1.1"):
        if version[5:6].isdigit() and version.startswith("HTTP/"):
            raise HTTPError(505, f"HTTP version {version[5:]!r} is not supported, use 1.1")
        raise HTTPError(400, f"bad request line {text[:100]!r}, expected METHOD /path HTTP/1.1")
    if not target.startswith("/"):
        raise HTTPError(400, f"bad request target {target[:100]!r}, expected a path")
    return method, target, version


def parse_head(head: bytes) -> Request:
    """The request of a head (request line and headers, without the blank line)."""
    lines = head.split(b"\r\n")
    method, target, version = check_request_line(lines[0])
    if len(lines) - 1 > MAX_HEADERS:
        raise HTTPError(431, f"more than {MAX_HEADERS} header lines")
    headers: dict[str, str] = {}
    for raw in lines[1:]:
        line = raw.decode("latin-1")
        name, sep, value = line.partition(":")
        if not sep or not name or not set(name) <= _TOKEN:
            raise HTTPError(400, f"bad header line {line[:100]!r}, expected Name: value")
        key, value = name.lower(), value.strip(" \t")
        if key in headers:
            if key in ("content-length", "host") and headers[key] != value:
                raise HTTPError(400, f"two different {name} headers")
            if key not in ("content-length", "host"):
                value = f"{headers[key]}, {value}"
        headers[key] = value
    path, _, query = target.partition("?")
    return Request(method, path, query, version, headers)


def content_length(req: Request) -> int:
    """The announced body size; HTTPError if there is none (or it is chunked) or it is bad."""
    text = req.headers.get("content-length")
    if "transfer-encoding" in req.headers or text is None:
        raise HTTPError(
            411,
            "send the image as the request body with a Content-Length header"
            " (chunked uploads are not supported)",
        )
    if not text.isdecimal() or not text.isascii():
        raise HTTPError(400, f"bad Content-Length {text!r}, expected a byte count")
    return int(text)


# --- where requests may come from ------------------------------------------------------------


def split_host(value: str) -> tuple[str, int | None] | None:
    """(name, port) of a Host header's value (port None if absent); None if malformed."""
    value = value.lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None if not rest else "x"
    else:
        name, sep, port_text = value.rpartition(":")
        name, port = (name, port_text) if sep else (value, None)
    if not name or (port is not None and not (port.isdecimal() and port.isascii())):
        return None
    return name, None if port is None else int(port)


class HostCheck:
    """The Host names this server answers to (a page whose name resolved here by a DNS trick
    names its own host): the bound address, and loopback names when bound to loopback; any
    IP address, localhost and this machine's name when bound to every interface; plus any
    names allowed explicitly."""

    def __init__(self, bound: str, extra: Iterable[str] = ()) -> None:
        self.bound = bound
        self.names = {bound.lower().strip("[]"), *(n.lower() for n in extra)}
        self.any_ip = False
        ip = _ip(bound)
        if bound == "localhost" or (ip is not None and ip.is_loopback):
            self.names |= {"localhost", "127.0.0.1", "::1"}
        elif ip is not None and ip.is_unspecified:
            self.any_ip = True
            name = socket.gethostname().lower()
            self.names |= {"localhost", name, f"{name}.local"}
        self._seen: dict[str, bool] = {}

    def allows(self, value: str) -> bool:
        ok = self._seen.get(value)
        if ok is None:
            parts = split_host(value)
            ok = parts is not None and self.name_ok(parts[0])
            if len(self._seen) < 256:
                self._seen[value] = ok
        return ok

    def name_ok(self, name: str) -> bool:
        if name in self.names or (name.endswith(".localhost") and "localhost" in self.names):
            return True
        return self.any_ip and _ip(name) is not None

    def refusal(self, value: str) -> str:
        shown = ", ".join(sorted(self.names - {""})) if not self.any_ip else "its IP addresses"
        return (
            f"Host {value[:100]!r} is not this server's address (it answers to {shown});"
            " start it with --allow-host NAME to add a name"
        )


def same_origin(origin: str, host: str) -> bool:
    """True if a request's Origin is the page of the server it was sent to (its Host)."""
    scheme, sep, rest = origin.lower().partition("://")
    if scheme != "http" or not sep:
        return False
    a, b = split_host(rest), split_host(host)
    return a is not None and b is not None and (a[0], a[1] or 80) == (b[0], b[1] or 80)


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return None
