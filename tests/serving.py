"""Helpers for the `serve` tests: a real server on a free loopback port, clients, images."""

from __future__ import annotations

import http.client
import io
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from mnist_infer import serve as sv

STATIC = Path(sv.__file__).parent / "static"
FORMATS = "PNG, JPEG, BMP, GIF, TIFF or WebP"


def png(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def drawing(k: int = 0, size: int = 280) -> bytes:
    """Dark strokes on white, as the page sends them; the shape varies with k."""
    img = Image.new("L", (size, size), 255)
    s = size / 280
    pts = [(70 * s, (60 + 5 * k) * s), (210 * s, 60 * s), ((120 - 4 * k) * s, 240 * s)]
    ImageDraw.Draw(img).line(pts, fill=20, width=round(20 * s), joint="curve")
    return png(img)


def mnist_like() -> bytes:
    """A 28x28 white-on-black digit (generated)."""
    img = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(img).line([(7, 6), (21, 6), (12, 23)], fill=255, width=3)
    return png(img)


@contextmanager
def running(weights: Path | None = None, **options: Any) -> Iterator[sv.Server]:
    """A real server on a free loopback port, serving from a thread."""
    server = sv.make_server("127.0.0.1", 0, weights, **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(10)
        server.close()


class Reply:
    def __init__(self, res: http.client.HTTPResponse) -> None:
        self.status = res.status
        self.headers = res.headers
        self.body = res.read()

    @property
    def json(self) -> Any:
        assert self.headers["Content-Type"] == "application/json"
        return json.loads(self.body)


def address(server: sv.Server) -> tuple[str, int]:
    return server.server_address[0], server.server_address[1]


def call(
    server: sv.Server,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> Reply:
    c = conn or http.client.HTTPConnection(*address(server), timeout=10)
    try:
        c.request(method, path, body=body, headers=headers or {})
        return Reply(c.getresponse())
    finally:
        if conn is None:
            c.close()


def answer(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the answer coming on a socket."""
    res = http.client.HTTPResponse(s)
    res.begin()
    return res.status, dict(res.headers), res.read()


def answers(s: socket.socket, n: int) -> list[tuple[int, dict[str, str], bytes]]:
    """The next n answers on a kept-alive connection: status, headers (lower-case), body."""
    f = s.makefile("rb")
    out = []
    for _ in range(n):
        status = int(f.readline().split()[1])
        headers = {}
        while (line := f.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.lower()] = value.strip()
        out.append((status, headers, f.read(int(headers["content-length"]))))
    return out


def raw_request(server: sv.Server, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; status, headers and body of the answer."""
    with socket.create_connection(address(server), timeout=10) as s:
        s.sendall(data)
        return answer(s)


def half_open(
    server: sv.Server, n: int, data: bytes = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
) -> list:
    """n connections that send part of a request and then nothing."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(address(server), timeout=10)
        if data:
            s.sendall(data)
        socks.append(s)
    return socks


def closed_by_server(s: socket.socket) -> bytes:
    """What the server sends until it closes the connection (b"" for a silent close)."""
    chunks = []
    while chunk := s.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def timed(f: Any, *args: Any) -> tuple[Any, float]:
    start = time.monotonic()
    out = f(*args)
    return out, time.monotonic() - start


def start_command(*args: str, **popen: Any) -> tuple[subprocess.Popen[str], str]:
    """`mnist-infer serve --port 0 ARGS` as a child process, and its URL once it serves."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mnist_infer", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("Serving on http://"), (line, proc.stderr.read() if proc.stderr else "")
    return proc, line.split()[2]
