"""`mnist-infer serve`: the draw-a-digit page and its JSON API, on the standard library's server.

One thread per connection (HTTP/1.1 keep-alive), so a slow or idle client holds only its own
thread; each connection has a socket timeout, their number is capped, and the request bodies
held in memory at once have a byte budget. The static files are read from the package once, at
start-up, and served from a dict: no request path ever reaches the file system. Optional worker
processes, forked after start-up, share the listening socket.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from mnist_infer import __version__, explore
from mnist_infer.errors import MnistInferError, NoSuchUnitError

MAX_UPLOAD = 10 * 1024 * 1024  # bytes of one request body
BODY_BUDGET = 64 * 1024 * 1024  # bytes of request bodies in memory at once (or 2 uploads)
MAX_CONNECTIONS = 256  # open connections; more are answered 503 at once
TIMEOUT = 15.0  # s a connection may stay silent (idle keep-alive, headers, each body read)
BODY_DEADLINE = 60.0  # s to send a whole request body
NAME = "request body"  # what image errors call the upload, as predict names its files

STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# The page loads nothing from anywhere else, and no other site may frame it.
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self';"
    " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


class App:
    """What requests need: the network, its description and the page's files."""

    budget_wait = 5.0  # s an upload may wait for others to leave room in the body budget

    def __init__(
        self,
        weights_path: str | os.PathLike[str] | None = None,
        max_upload: int = MAX_UPLOAD,
        body_budget: int | None = None,
    ) -> None:
        from mnist_infer.network import Network
        from mnist_infer.novelty import rule_from_metadata
        from mnist_infer.shipped import default_weights_path
        from mnist_infer.weights import describe, load_weights

        path = Path(weights_path) if weights_path is not None else default_weights_path()
        d = describe(path)
        self.net = Network(load_weights(path), copy=False)
        self.rule = rule_from_metadata(d.metadata)  # judged as `mnist-infer predict` does
        self.metadata_warning = d.metadata_error
        self.info = {
            "sizes": self.net.sizes,
            "parameters": d.parameters,
            "dtype": str(self.net.dtype),
            "sha256": d.sha256,
            "weights": str(path),
            "metadata": d.metadata or {},
            "not_a_digit": self.rule.as_dict(),
            "layers": explore.layers(self.net),  # each hidden unit's favourite digit, an order
        }
        self.info_json = _json(self.info)
        self.max_upload = max_upload
        if body_budget is None:
            body_budget = max(BODY_BUDGET, 2 * max_upload)
        self.budget = _Budget(body_budget)
        # Decoding is where the memory goes (up to predict's 50,000,000-pixel limit): one
        # image per core at a time, which is also all the CPU there is.
        self.decoding = threading.BoundedSemaphore(_cpus())
        self.files = static_files()

    def predict(self, body: bytes, raw: bool = False) -> dict[str, Any]:
        """The /api/predict answer for an image file's bytes; ImageError if it is unusable."""
        answer, digit = self._predict(body, raw)
        answer["input"] = digit.tolist()
        return answer

    def predict_json(self, body: bytes, raw: bool = False) -> bytes:
        """`predict` as JSON text, made faster by writing the 784 pixels out directly."""
        answer, digit = self._predict(body, raw)
        head = json.dumps(answer, separators=(",", ":"))[:-1]
        return f'{head},"input":{_ints(digit)}}}'.encode()

    def _predict(self, body: bytes, raw: bool) -> tuple[dict[str, Any], np.ndarray]:
        from mnist_infer.image import load_digit
        from mnist_infer.records import answer_fields

        with self.decoding:
            digit, _notes = load_digit(io.BytesIO(body), NAME, "auto", raw)
        x = np.divide(digit.reshape(1, -1), 255, dtype=np.float32)  # as predict scales it
        pre, acts = explore.forward(self.net, x)
        label = int(np.argmax(acts[-1][0]))
        is_digit = bool(self.rule.is_digit(pre[-1])[0])
        *hidden, probs = (explore.rounded(a[0]) for a in acts)
        answer = answer_fields(label, probs[label], is_digit) | {
            "probabilities": probs,
            "hidden": hidden,
            "pre_activations": [explore.rounded(a[0]) for a in pre],  # a1 … an
            "sha256": self.info["sha256"],  # which weights answered
        }
        return answer, digit

    def unit_json(self, query: str) -> bytes:
        """The /api/unit answer for a query `layer=L&unit=J`; UsageError or NoSuchUnitError."""
        layer, unit = explore.parse_unit_query(query)
        answer = explore.unit_info(self.net, layer, unit)
        answer["sha256"] = self.info["sha256"]
        return _json(answer)


def static_files() -> dict[str, tuple[bytes, str]]:
    """URL path -> (bytes, content type) of every file in the package's static folder."""
    from importlib.resources import files

    out = {}
    for f in files("mnist_infer").joinpath("static").iterdir():
        ctype = STATIC_TYPES.get(os.path.splitext(f.name)[1])
        if f.is_file() and ctype is not None:
            out["/static/" + f.name] = (f.read_bytes(), ctype)
    out["/"] = out["/static/index.html"]
    return out


class _Budget:
    """A byte budget for request bodies held in memory at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._cond = threading.Condition()

    def take(self, n: int, timeout: float) -> bool:
        """Reserve n bytes, waiting up to `timeout` s for others to give theirs back."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.used + n <= self.limit, timeout):
                return False
            self.used += n
            return True

    def give(self, n: int) -> None:
        with self._cond:
            self.used -= n
            self._cond.notify_all()


class _Reply(Exception):
    """Stop handling a request and answer it with this status and JSON error."""

    def __init__(self, status: HTTPStatus, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


GET = ("GET", "HEAD")


class Handler(BaseHTTPRequestHandler):
    """Routes every method to `route`; every answer is built here, errors as JSON."""

    protocol_version = "HTTP/1.1"
    server_version = f"mnist-infer/{__version__}"
    sys_version = ""
    disable_nagle_algorithm = True
    server: Server

    def __getattr__(self, name: str) -> Any:
        # BaseHTTPRequestHandler calls do_<METHOD>: every method goes to route, which
        # answers 405 or 404 itself (the default would be a 501 HTML page).
        if name.startswith("do_"):
            return self.route
        raise AttributeError(name)

    def route(self) -> None:
        app = self.server.app
        self.body_read = False
        url = urlsplit(self.path)
        path = url.path
        try:
            if path == "/api/predict":
                self.allow("POST")
                self.reply_json(HTTPStatus.OK, self.predict(app, url.query))
            elif path == "/api/info":
                self.allow(*GET)
                self.reply_json(HTTPStatus.OK, app.info_json)
            elif path == "/api/unit":
                self.allow(*GET)
                self.reply_json(HTTPStatus.OK, self.unit(app, url.query))
            elif path in app.files:
                self.allow(*GET)
                body, ctype = app.files[path]
                self.reply(HTTPStatus.OK, body, ctype, {"Content-Security-Policy": CSP})
            else:
                raise _Reply(HTTPStatus.NOT_FOUND, f"no such page: {path}")
        except _Reply as r:
            self.skip_body()
            self.reply_json(r.status, _json({"error": str(r)}), r.headers)
        except Exception as err:  # a bug: answer, keep serving, and say what happened
            import traceback

            traceback.print_exc()
            self.close_connection = True
            msg = f"internal error ({type(err).__name__}: {err})"
            self.reply_json(HTTPStatus.INTERNAL_SERVER_ERROR, _json({"error": msg}))

    def handle_expect_100(self) -> bool:
        """Answer `Expect: 100-continue` with 413 at once for a body that would be refused."""
        text = self.headers.get("Content-Length", "")
        if text.isdecimal() and int(text) > self.server.app.max_upload:
            return True  # no "100 Continue": route answers 413 before any of the body comes
        return super().handle_expect_100()

    def skip_body(self) -> None:
        """Read and drop a small unread body, so the connection can go on; else close it."""
        if self.body_read or self.close_connection:
            return
        text = self.headers.get("Content-Length", "0")
        n = int(text) if text.strip().isdecimal() else -1
        if "Transfer-Encoding" in self.headers or not 0 <= n <= 65536:
            self.close_connection = True
            return
        try:
            self.rfile.read(n)
        except OSError:
            self.close_connection = True

    def allow(self, *methods: str) -> None:
        if self.command not in methods:
            allowed = ", ".join(methods)
            raise _Reply(
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"{self.command} is not allowed on {urlsplit(self.path).path}, use {allowed}",
                {"Allow": allowed},
            )

    def predict(self, app: App, query: str) -> bytes:
        raw = parse_qs(query).get("raw", ["0"])[-1]
        if raw not in ("0", "1"):
            raise _Reply(HTTPStatus.BAD_REQUEST, f"raw must be 0 or 1, found {raw!r}")
        body = self.body(app)
        try:
            return app.predict_json(body, raw == "1")
        except MnistInferError as err:  # ImageError: the reasons predict gives
            raise _Reply(HTTPStatus.BAD_REQUEST, str(err)) from None

    def unit(self, app: App, query: str) -> bytes:
        try:
            return app.unit_json(query)
        except NoSuchUnitError as err:
            raise _Reply(HTTPStatus.NOT_FOUND, str(err)) from None
        except MnistInferError as err:
            raise _Reply(HTTPStatus.BAD_REQUEST, str(err)) from None

    def body(self, app: App) -> bytes:
        """The request body, within the size limit, the memory budget and the deadline."""
        if "Transfer-Encoding" in self.headers or "Content-Length" not in self.headers:
            self.close_connection = True
            raise _Reply(
                HTTPStatus.LENGTH_REQUIRED,
                "send the image as the request body with a Content-Length header"
                " (chunked uploads are not supported)",
            )
        text = self.headers["Content-Length"]
        n = int(text) if text.strip().isdecimal() else -1
        if n < 0:
            self.close_connection = True
            raise _Reply(
                HTTPStatus.BAD_REQUEST, f"bad Content-Length {text!r}, expected a byte count"
            )
        if n > app.max_upload:
            self.close_connection = True  # rather than read what would be thrown away
            raise _Reply(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"request body of {n:,} bytes is over the {app.max_upload:,}-byte limit;"
                " send a smaller image or start the server with a larger --max-upload",
            )
        if not app.budget.take(n, app.budget_wait):
            self.close_connection = True
            raise _Reply(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "server busy: too many large uploads at once, try again",
                {"Retry-After": "1"},
            )
        self.body_read = True
        try:
            return self.read(n)
        finally:
            app.budget.give(n)

    def read(self, n: int) -> bytes:
        deadline = time.monotonic() + BODY_DEADLINE
        parts, left = [], n
        try:
            while left:
                part = self.rfile.read1(min(left, 1 << 18))  # what has come, up to that
                if not part:
                    break
                parts.append(part)
                left -= len(part)
                if left and time.monotonic() > deadline:
                    raise TimeoutError
        except TimeoutError:
            self.close_connection = True
            raise _Reply(
                HTTPStatus.REQUEST_TIMEOUT,
                f"the request body came too slowly ({n - left:,} of {n:,} bytes)",
            ) from None
        if left:
            self.close_connection = True
            raise _Reply(
                HTTPStatus.BAD_REQUEST,
                f"the request body ended after {n - left:,} of the {n:,} bytes announced",
            )
        return b"".join(parts)

    def reply_json(
        self, status: HTTPStatus, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        self.reply(status, body, "application/json", headers)

    def reply(
        self,
        status: HTTPStatus,
        body: bytes,
        ctype: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Status line, headers and body in one write (no small packets for Nagle to hold)."""
        lines = [
            f"HTTP/1.1 {status.value} {status.phrase}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {ctype}",
            f"Content-Length: {len(body)}",
            "Cache-Control: no-cache",
            "X-Content-Type-Options: nosniff",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head if self.command == "HEAD" else head + body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's own errors (bad request line, headers too long…), as JSON."""
        self.close_connection = True  # what follows on the connection cannot be trusted
        status = HTTPStatus(code)
        self.reply_json(status, _json({"error": message or status.phrase}))

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: at a thousand requests a second it would cost more than the work."""


class Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with a connection cap and no reverse-DNS look-up at start."""

    daemon_threads = True  # connections never hold up the exit
    request_queue_size = 128  # a burst of connections waits in the kernel, not refused

    def __init__(
        self,
        address: tuple[str, int],
        app: App,
        *,
        timeout: float = TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.app = app
        self.parent: int | None = None  # in a forked worker: the serving process
        self.loads: Any = None  # with workers: each one's open connections, shared
        self.slot = 0  # this process's place in loads
        self._waited = 0.0
        self.timeout_s = timeout
        self.max_connections = max_connections
        self._open = 0
        self._lock = threading.Lock()
        self.address_family = _family(address[0])
        # StreamRequestHandler sets its class's `timeout` on each connection's socket.
        super().__init__(address, type("Handler", (Handler,), {"timeout": timeout}))

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look up the host's name, which can hang without DNS.
        import socketserver

        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def get_request(self) -> tuple[Any, Any]:
        # Workers share the socket: one with more open connections than another leaves a
        # new one to it (for up to 50 ms), so keep-alive clients spread evenly.
        if self.loads is not None and self._open > min(self.loads):
            now = time.monotonic()
            self._waited = self._waited or now
            if now - self._waited < 0.05:
                time.sleep(0.001)
                raise BlockingIOError
        self._waited = 0.0
        return super().get_request()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            full = self._open >= self.max_connections
            if not full:
                self._open += 1
                self._publish()
        if full:
            _refuse(request)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._open -= 1
                self._publish()

    def _publish(self) -> None:
        if self.loads is not None:
            self.loads[self.slot] = self._open

    def service_actions(self) -> None:
        # Called by serve_forever every poll: a worker whose parent is gone stops serving.
        if self.parent is not None and os.getppid() != self.parent:
            os._exit(0)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):  # the client went away: nothing to say
            return
        super().handle_error(request, client_address)


def _refuse(sock: socket.socket) -> None:
    """Answer 503 at once, from the accepting thread, without reading the request."""
    body = _json({"error": "server busy: too many open connections, try again"})
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    try:
        sock.settimeout(0.5)
        sock.sendall(head.encode() + body)
    except OSError:
        pass


def _family(host: str) -> socket.AddressFamily:
    try:
        return socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror:
        return socket.AF_INET  # bind then fails with the reason


_INTS = [str(i) for i in range(256)]


def _ints(a: np.ndarray) -> str:
    """JSON for a 2-D uint8 array, twice as fast as json.dumps on its list."""
    rows = ["[" + ",".join([_INTS[v] for v in row]) + "]" for row in a.tolist()]
    return "[" + ",".join(rows) + "]"


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def make_server(
    host: str = "127.0.0.1",
    port: int = 8000,
    weights_path: str | os.PathLike[str] | None = None,
    *,
    max_upload: int = MAX_UPLOAD,
    timeout: float = TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
    body_budget: int | None = None,
) -> Server:
    """A server listening on host:port (0: a free port), not yet serving."""
    app = App(weights_path, max_upload, body_budget)
    try:
        return Server((host, port), app, timeout=timeout, max_connections=max_connections)
    except OSError as err:
        why = err.strerror or str(err)
        hint = "; pick another --port, or --port 0 for a free one" if port else ""
        if isinstance(err, socket.gaierror):
            hint = "; use an IP address or a name this machine can resolve"
        raise MnistInferError(f"cannot listen on {host}:{port}: {why}{hint}") from None


def is_local(host: str) -> bool:
    """True if only this machine can reach a server listening on `host`."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_until_stopped(server: Server, workers: int = 1) -> str:
    """Serve until SIGINT (Ctrl-C) or SIGTERM, then stop within a second; returns its name.

    With workers > 1 (where processes can fork), that many processes serve: this one and
    copies forked from it, each taking connections from the same listening socket, each with
    its own threads. One Python process does about one core's worth of work (the GIL).
    """
    got: list[int] = []
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        got.append(signum)
        stop.set()

    children = _fork_workers(server, workers - 1) if hasattr(os, "fork") else []
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    thread = threading.Thread(target=server.serve_forever, args=(0.2,), daemon=True)
    thread.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.shutdown()  # the loop polls every 0.2 s; open connections' threads are daemons
        for pid in children:
            os.kill(pid, signal.SIGTERM)
        for pid in children:
            os.waitpid(pid, 0)
        server.server_close()
        for s, handler in old.items():
            signal.signal(s, handler)
    return signal.Signals(got[0]).name


def _fork_workers(server: Server, n: int) -> list[int]:
    """Fork n copies of this process that serve on the same socket; their process ids."""
    # Processes race for each new connection: the losers must not wait in accept().
    server.socket.setblocking(False)
    import mmap

    server.loads = memoryview(mmap.mmap(-1, 4 * (n + 1))).cast("i")  # shared with the forks
    parent = os.getpid()
    children = []
    for i in range(1, n + 1):
        pid = os.fork()
        if pid == 0:
            server.slot = i
            try:
                # Ctrl-C reaches every process of the terminal: the parent alone acts on it,
                # and ends its workers with SIGTERM, which ends them at once.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                server.parent = parent
                server.serve_forever(0.2)
            finally:
                os._exit(0)
        children.append(pid)
    return children
