"""A real HTTP server on 127.0.0.1 with per-test routes, and small generated MNIST-like files."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from mnist_infer.catalog import FileSpec
from mnist_infer.idx import write_idx


@dataclass(frozen=True)
class Reply:
    """One canned response: status, body and how to misbehave."""

    body: bytes = b""
    status: int = 200
    content_type: str = "application/octet-stream"
    drop_after: int | None = None  # announce the full length, send this many bytes, hang up
    delay: float = 0.0  # sleep before the headers (bounded, to trip the client's read timeout)
    length: str | None = None  # the Content-Length header as sent, if not the body's length
    pace: float = 0.0  # send the body at this many bytes/s, a piece every tenth of a second
    head_gap: float = 0.0  # send the status line and headers a byte at a time, this far apart


def ok(body: bytes) -> Reply:
    """200 with `body`."""
    return Reply(body)


def status(code: int) -> Reply:
    """An HTTP error with a short text body."""
    return Reply(f"error {code}\n".encode(), status=code, content_type="text/plain")


def html_page() -> Reply:
    """An error page served with status 200, as captive portals do."""
    return Reply(b"<!DOCTYPE html><html><body>Sorry</body></html>", content_type="text/html")


def dropped(body: bytes) -> Reply:
    """Full Content-Length, then the connection closes after a tenth of the body."""
    return Reply(body, drop_after=max(1, len(body) // 10))


def trickled(body: bytes, pace: float) -> Reply:
    """The whole body, at `pace` bytes/s."""
    return Reply(body, pace=pace)


def trickled_head(body: bytes, gap: float) -> Reply:
    """The status line and headers one byte every `gap` seconds (each under the read timeout)."""
    return Reply(body, head_gap=gap)


def stalled(body: bytes, delay: float = 1.0) -> Reply:
    """A response that starts after `delay` seconds."""
    return Reply(body, delay=delay)


class Loopback:
    """Serve `routes[path]` replies in order (the last one repeats); count requests per path."""

    def __init__(self) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """Base URL ending in a slash."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def mirror(self, name: str) -> str:
        """Base URL of a folder on this server."""
        return f"{self.url}{name}/"

    def route(self, path: str, *replies: Reply) -> None:
        """Answer requests for `path` (e.g. "a/t10k-labels-idx1-ubyte.gz") with `replies`."""
        with self._lock:
            self.routes["/" + path.lstrip("/")] = list(replies)

    def serve_folder(self, mirror: str, folder: Path) -> None:
        """Serve every file of `folder` with 200 under `mirror/`."""
        for p in folder.iterdir():
            if p.is_file():
                self.route(f"{mirror}/{p.name}", ok(p.read_bytes()))

    def next_reply(self, path: str) -> Reply | None:
        with self._lock:
            self.hits[path] += 1
            replies = self.routes.get(path)
            if not replies:
                return None
            return replies.pop(0) if len(replies) > 1 else replies[0]

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hang up mid-response on purpose (timeouts, HTML pages); stay quiet


def _handler(server: Loopback) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            reply = server.next_reply(self.path) or status(404)
            if reply.delay:
                time.sleep(min(reply.delay, 5.0))
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", reply.length or str(len(reply.body)))
            if reply.drop_after is not None or reply.length is not None:
                self.send_header("Connection", "close")  # the end of the data ends the body
            try:
                if reply.head_gap:
                    head = b"".join(self._headers_buffer) + b"\r\n"  # type: ignore[attr-defined]
                    self._headers_buffer = []
                    for i in range(len(head)):
                        self.wfile.write(head[i : i + 1])
                        self.wfile.flush()
                        time.sleep(reply.head_gap)
                else:
                    self.end_headers()
                if reply.pace:
                    step = max(1, int(reply.pace / 10))
                    for i in range(0, len(reply.body), step):
                        self.wfile.write(reply.body[i : i + step])
                        self.wfile.flush()
                        time.sleep(0.1)
                elif reply.drop_after is None:
                    self.wfile.write(reply.body)
                    self.close_connection = reply.length is not None
                else:
                    self.wfile.write(reply.body[: reply.drop_after])
                    self.wfile.flush()
                    self.close_connection = True
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (e.g. after its timeout)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

    return Handler


@dataclass(frozen=True)
class MiniMnist:
    """Small generated MNIST-shaped files in `folder` (as .gz) and their pinned specs."""

    folder: Path
    files: tuple[FileSpec, ...]
    arrays: dict[str, np.ndarray]
    raw: dict[str, bytes]

    def gz(self, name: str) -> bytes:
        """The gzipped file as a mirror serves it."""
        return (self.folder / (name + ".gz")).read_bytes()

    def serve(self, server: Loopback, mirror: str) -> str:
        """Serve the four .gz files under `mirror/`; return the mirror's base URL."""
        server.serve_folder(mirror, self.folder)
        return server.mirror(mirror)


def make_mini_mnist(folder: Path, seed: int = 0) -> MiniMnist:
    """Write 60 train and 50 test random 28x28 images with labels; pin their hashes."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for prefix, n in (("train", 60), ("t10k", 50)):
        arrays[f"{prefix}-images-idx3-ubyte"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{prefix}-labels-idx1-ubyte"] = rng.integers(0, 10, n, dtype=np.uint8)
    specs, raw = [], {}
    for name, a in arrays.items():
        write_idx(folder / (name + ".gz"), a)
        write_idx(folder.parent / name, a)
        raw[name] = (folder.parent / name).read_bytes()
        (folder.parent / name).unlink()
        gz = (folder / (name + ".gz")).read_bytes()
        split = "train" if name.startswith("train") else "test"
        specs.append(FileSpec(name, split, _sha(gz), len(gz), _sha(raw[name]), len(raw[name])))
    return MiniMnist(folder, tuple(specs), arrays, raw)


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()
