"""`mnist-infer serve`: the JSON API and the page's files, against a real server on 127.0.0.1."""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

from mnist_infer import explore
from mnist_infer import serve as sv
from mnist_infer.cli import cli
from mnist_infer.functions import sigmoid, softmax
from mnist_infer.image import load_digit
from mnist_infer.network import Network, _cpus
from mnist_infer.novelty import DEFAULT_RULE, METADATA_KEY, energy
from mnist_infer.shipped import default_weights_path
from mnist_infer.weights import file_sha256, load_weights, metadata_path, read_metadata

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
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def shipped() -> Iterator[sv.Server]:
    """The server with the shipped weights, shared by the tests that only read."""
    with running() as server:
        yield server


class Reply:
    def __init__(self, res: http.client.HTTPResponse) -> None:
        self.status = res.status
        self.headers = res.headers
        self.body = res.read()

    @property
    def json(self) -> Any:
        assert self.headers["Content-Type"] == "application/json"
        return json.loads(self.body)


def call(
    server: sv.Server,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> Reply:
    c = conn or http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    try:
        c.request(method, path, body=body, headers=headers or {})
        return Reply(c.getresponse())
    finally:
        if conn is None:
            c.close()


def raw_request(server: sv.Server, data: bytes) -> tuple[int, dict[str, Any], bytes]:
    """Send bytes as they are; status, headers and body of the answer."""
    with socket.create_connection(server.server_address[:2], timeout=10) as s:
        s.sendall(data)
        f = s.makefile("rb")
        res = http.client.HTTPResponse(s)
        res.fp = f
        res.begin()
        return res.status, dict(res.headers), res.read()


def expected_hidden(weights: Path, digit: np.ndarray) -> list[np.ndarray]:
    """The textbook's forward pass, written out: sigmoid layers, then softmax."""
    p = load_weights(weights)
    n = len(p) // 2
    a = digit.reshape(1, -1).astype(np.float32) / np.float32(255)
    outs = []
    for i in range(1, n):
        a = sigmoid(a @ p[f"W{i}"] + p[f"b{i}"])
        outs.append(a[0])
    outs.append(softmax(a @ p[f"W{n}"] + p[f"b{n}"])[0])
    return outs


# --- /api/info ------------------------------------------------------------------------


def test_info_describes_the_weights(weights: Path) -> None:
    with running(weights) as server:
        r = call(server, "GET", "/api/info")
    assert r.status == 200
    assert r.json == {
        "sizes": [784, 30, 20, 10],
        "parameters": 784 * 30 + 30 + 30 * 20 + 20 + 20 * 10 + 10,
        "dtype": "float32",
        "sha256": file_sha256(weights),
        "weights": str(weights),
        "metadata": {},
        "not_a_digit": DEFAULT_RULE.as_dict(),
        "layers": explore.layers(Network(load_weights(weights))),
    }


def test_info_of_the_shipped_weights_has_their_metadata(shipped: sv.Server) -> None:
    info = call(shipped, "GET", "/api/info").json
    path = default_weights_path()
    p = load_weights(path)
    assert info["sizes"] == [784, len(p["b1"]), len(p["b2"]), 10]
    assert info["parameters"] == sum(a.size for a in p.values())
    assert info["weights"] == str(path)
    assert info["sha256"] == file_sha256(path)
    assert info["metadata"] == read_metadata(path)


# --- /api/predict -----------------------------------------------------------------------


@pytest.mark.parametrize("k", range(4))
def test_predict_answers_as_predict_would(weights: Path, k: int) -> None:
    body = drawing(k)
    with running(weights) as server:
        r = call(server, "POST", "/api/predict", body, {"Content-Type": "image/png"})
    assert r.status == 200
    got = r.json
    fields = ["digit", "confidence", "is_digit", "guess", "probabilities", "hidden"]
    assert list(got) == [*fields, "pre_activations", "sha256", "input"]
    digit, _ = load_digit(io.BytesIO(body), "x")
    assert got["input"] == digit.tolist()
    *hidden, probs = expected_hidden(weights, digit)
    assert [len(h) for h in got["hidden"]] == [30, 20]
    for h, want in zip(got["hidden"], hidden, strict=True):
        np.testing.assert_allclose(h, want, atol=1e-6)
    np.testing.assert_allclose(got["probabilities"], probs, atol=1e-6)
    assert abs(sum(got["probabilities"]) - 1) < 1e-5
    assert got["guess"] == int(np.argmax(probs))
    assert got["digit"] == (got["guess"] if got["is_digit"] else None)
    assert got["confidence"] == max(got["probabilities"])
    # the same as Network.predict, which `mnist-infer predict` runs
    net = Network(load_weights(weights))
    np.testing.assert_allclose(net.predict(digit.reshape(1, -1) / 255)[0], probs, atol=1e-6)


def test_predict_says_not_a_digit_as_predict_json_does(weights: Path, tmp_path: Path) -> None:
    bodies = [drawing(k) for k in range(4)]
    digits = np.stack([load_digit(io.BytesIO(b), "x")[0].ravel() for b in bodies])
    scores = energy(Network(load_weights(weights)).logits(digits / np.float32(255)))
    s = np.sort(scores)
    i = int(np.argmax(np.diff(s)))
    threshold = float((s[i] + s[i + 1]) / 2)  # some drawings are digits, the others not
    meta = {METADATA_KEY: {"score": "energy", "threshold": threshold}}
    metadata_path(weights).write_text(json.dumps(meta))
    files = []
    for k, body in enumerate(bodies):
        files.append(tmp_path / f"{k}.png")
        files[-1].write_bytes(body)
    res = CliRunner().invoke(
        cli, ["predict", "--weights", str(weights), "--json", *map(str, files)]
    )
    records = [json.loads(line) for line in res.stdout.splitlines()]
    with running(weights) as server:
        info = call(server, "GET", "/api/info").json
        answers = [call(server, "POST", "/api/predict", body).json for body in bodies]
    assert info["not_a_digit"] == {"score": "energy", "threshold": threshold, "source": "weights"}
    assert [a["is_digit"] for a in answers] == (scores >= threshold).tolist()
    for got, rec in zip(answers, records, strict=True):
        assert [got[k] for k in ("digit", "is_digit", "guess")] == [
            rec[k] for k in ("digit", "is_digit", "guess")
        ]
        assert got["confidence"] == pytest.approx(rec["confidence"], abs=2e-6)


def test_predict_of_a_non_digit(tmp_path: Path) -> None:
    from test_not_a_digit import GUESS, LOGITS, flat

    w = flat(tmp_path / "w.pkl", rule=("max_prob", 0.9))
    with running(w) as server:
        got = call(server, "POST", "/api/predict", drawing()).json
    probs = softmax(LOGITS)
    assert (got["digit"], got["is_digit"], got["guess"]) == (None, False, GUESS)
    assert got["confidence"] == round(float(probs[GUESS]), 6)
    np.testing.assert_allclose(got["probabilities"], probs, atol=1e-6)


def test_predict_reads_a_drawn_seven_with_the_shipped_weights(shipped: sv.Server) -> None:
    got = call(shipped, "POST", "/api/predict", drawing()).json
    assert got["digit"] == 7
    assert got["confidence"] > 0.9
    p = load_weights(default_weights_path())
    assert [len(h) for h in got["hidden"]] == [len(p["b1"]), len(p["b2"])]
    assert all(0 <= v <= 1 for h in got["hidden"] for v in h)
    assert len(got["input"]) == 28
    assert all(len(row) == 28 and all(0 <= v <= 255 for v in row) for row in got["input"])


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP"])
def test_predict_takes_every_format_predict_reads(shipped: sv.Server, fmt: str) -> None:
    img = Image.open(io.BytesIO(drawing()))
    r = call(shipped, "POST", "/api/predict", png(img, fmt))
    assert r.status == 200
    assert r.json["digit"] == 7


def test_raw_skips_preprocessing(shipped: sv.Server) -> None:
    body = mnist_like()
    got = call(shipped, "POST", "/api/predict?raw=1", body).json
    assert got["input"] == np.asarray(Image.open(io.BytesIO(body))).tolist()
    cooked = call(shipped, "POST", "/api/predict?raw=0", body).json
    assert cooked["input"] != got["input"]  # re-centred and scaled to 20 px


def test_activations_are_those_of_predict(weights: Path) -> None:
    net = Network(load_weights(weights))
    x = np.random.default_rng(0).random((5, 784), dtype=np.float32)
    acts = net.activations(x)
    assert [a.shape for a in acts] == [(5, 30), (5, 20), (5, 10)]
    np.testing.assert_array_equal(acts[-1], net.predict(x))
    assert all(a.dtype == np.float32 for a in acts)


# --- errors ------------------------------------------------------------------------------

BLANK = png(Image.new("L", (28, 28), 0))
TRUNCATED = drawing()[:200]


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/api/predict", b"hello", f"request body: not an image (expected {FORMATS})"),
        ("/api/predict", b"", "request body: empty file"),
        ("/api/predict", BLANK, "request body: no digit found (blank or single-colour image)"),
        (
            "/api/predict?raw=1",
            drawing(),
            "request body: is 280x280, --no-preprocess needs 28x28 (drop --no-preprocess"
            " to resize)",
        ),
        ("/api/predict?raw=yes", mnist_like(), "raw must be 0 or 1, found 'yes'"),
    ],
)
def test_unusable_image_is_400_with_predicts_reason(
    shipped: sv.Server, path: str, body: bytes, message: str
) -> None:
    r = call(shipped, "POST", path, body)
    assert (r.status, r.json) == (400, {"error": message})


def test_corrupt_image_is_400(shipped: sv.Server) -> None:
    r = call(shipped, "POST", "/api/predict", TRUNCATED)
    assert r.status == 400
    assert r.json["error"].startswith("request body: truncated or corrupt image (")


def test_body_over_the_limit_is_413(weights: Path) -> None:
    with running(weights, max_upload=1000) as server:
        r = call(server, "POST", "/api/predict", b"x" * 1001)
        assert (r.status, r.json) == (
            413,
            {
                "error": "request body of 1,001 bytes is over the 1,000-byte limit; send a"
                " smaller image or start the server with a larger --max-upload"
            },
        )
        assert r.headers["Connection"] == "close"  # the body was not read
        assert call(server, "POST", "/api/predict", mnist_like()[:1000]).status in (200, 400)


@pytest.mark.parametrize(("length", "first"), [(1001, "413"), (1000, "100")])
def test_expect_100_continue_is_refused_before_the_body(
    weights: Path, length: int, first: str
) -> None:
    with running(weights, max_upload=1000) as server:
        head = (
            f"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
            "Expect: 100-continue\r\n\r\n"
        )
        with _half_open(server, 1, head.encode())[0] as s:
            assert s.recv(100).split(b" ")[1] == first.encode()


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/api/predict", "POST"),
        ("PUT", "/api/predict", "POST"),
        ("POST", "/api/info", "GET, HEAD"),
        ("DELETE", "/", "GET, HEAD"),
        ("POST", "/static/app.js", "GET, HEAD"),
        ("BREW", "/api/info", "GET, HEAD"),
    ],
)
def test_wrong_method_is_405(shipped: sv.Server, method: str, path: str, allow: str) -> None:
    r = call(shipped, method, path)
    assert r.status == 405
    assert r.headers["Allow"] == allow
    assert r.json == {"error": f"{method} is not allowed on {path}, use {allow}"}


@pytest.mark.parametrize(
    "path",
    [
        "/nothing",
        "/api",
        "/api/",
        "/api/predict/",
        "/static/",
        "/static/missing.js",
        "/index.html",
        "/static/../serve.py",
        "/static/%2e%2e/serve.py",
        "/static/..%2fserve.py",
        "/../../../../etc/passwd",
        "//etc/passwd",
        "/static//etc/passwd",
        "/static/app.js/",
        "/static/APP.JS",
        "/static/app.js%00.png",
        "/static/__init__.py",
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_anything_else_is_404(shipped: sv.Server, path: str, method: str) -> None:
    r = call(shipped, method, path)
    assert r.status == 404
    shown = "/" + path.lstrip("/")  # the standard library turns a leading // into /
    assert r.json == {"error": f"no such page: {shown}"}


@pytest.mark.parametrize(
    ("request_bytes", "status", "error"),
    [
        (
            b"POST /api/predict HTTP/1.1\r\nHost: x\r\n\r\n",
            411,
            "send the image as the request body with a Content-Length header (chunked uploads"
            " are not supported)",
        ),
        (
            b"POST /api/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
            411,
            "send the image as the request body with a Content-Length header (chunked uploads"
            " are not supported)",
        ),
        (
            b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
            400,
            "bad Content-Length '-5', expected a byte count",
        ),
        (
            b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\n",
            400,
            "bad Content-Length '\xb2', expected a byte count",
        ),
        (
            b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
            400,
            "the request body ended after 3 of the 10 bytes announced",
        ),
        (b"NONSENSE\r\n\r\n", 400, "Bad request syntax ('NONSENSE')"),
        (b"GET / HTTP/2.0\r\n\r\n", 505, "Invalid HTTP version (2.0)"),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414, "Request-URI Too Long"),
    ],
)
def test_malformed_requests_get_json_errors(
    shipped: sv.Server, request_bytes: bytes, status: int, error: str
) -> None:
    if b"abc" in request_bytes:  # the client hangs up after sending part of the body
        with socket.create_connection(shipped.server_address[:2], timeout=10) as s:
            s.sendall(request_bytes)
            s.shutdown(socket.SHUT_WR)
            answer = s.makefile("rb").read()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {status} ".encode())
        assert json.loads(body) == {"error": error}
        return
    got_status, headers, body = raw_request(shipped, request_bytes)
    assert (got_status, headers["Content-Type"], json.loads(body)) == (
        status,
        "application/json",
        {"error": error},
    )
    assert headers["Connection"] == "close"


def test_a_bug_is_500_and_the_server_keeps_going(
    weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running(weights) as server:

        def broken(body: bytes, raw: bool = False) -> bytes:
            raise RuntimeError("boom")

        monkeypatch.setattr(server.app, "predict_json", broken)
        r = call(server, "POST", "/api/predict", drawing())
        assert (r.status, r.json) == (500, {"error": "internal error (RuntimeError: boom)"})
        assert call(server, "GET", "/api/info").status == 200


# --- static files ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in STATIC.iterdir()))
def test_every_static_file_is_served_with_its_type(shipped: sv.Server, name: str) -> None:
    r = call(shipped, "GET", f"/static/{name}")
    assert r.status == 200
    assert r.body == (STATIC / name).read_bytes()
    assert r.headers["Content-Type"] == sv.STATIC_TYPES[Path(name).suffix]
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]


def test_the_page_is_at_the_root_and_needs_nothing_from_elsewhere(shipped: sv.Server) -> None:
    r = call(shipped, "GET", "/")
    assert (r.status, r.headers["Content-Type"]) == (200, "text/html; charset=utf-8")
    html = r.body.decode()
    assert html == (STATIC / "index.html").read_text()
    for p in STATIC.iterdir():
        assert "http://" not in p.read_text(), p.name
        assert "https://" not in p.read_text(), p.name
    assert '<script src="/static/app.js"' in html
    assert '<link rel="stylesheet" href="/static/style.css">' in html


def test_head_sends_headers_only(shipped: sv.Server) -> None:
    c = http.client.HTTPConnection(*shipped.server_address[:2], timeout=10)
    r = call(shipped, "HEAD", "/", conn=c)
    assert (r.status, r.body) == (200, b"")
    assert int(r.headers["Content-Length"]) == len((STATIC / "index.html").read_bytes())
    assert call(shipped, "GET", "/api/info", conn=c).status == 200  # same connection
    c.close()


# --- connections -------------------------------------------------------------------------


def test_one_connection_serves_many_requests(shipped: sv.Server) -> None:
    c = http.client.HTTPConnection(*shipped.server_address[:2], timeout=10)
    statuses = [
        call(shipped, m, p, b, conn=c).status
        for m, p, b in [
            ("GET", "/", None),
            ("POST", "/api/predict", drawing()),
            ("POST", "/api/predict", b"not an image"),
            ("GET", "/nothing", None),
            ("POST", "/api/info", b"{}"),  # 405 with a body: the body is skipped
            ("GET", "/api/info", None),
        ]
    ]
    c.close()
    assert statuses == [200, 200, 400, 404, 405, 200]


def test_a_chunked_body_that_is_not_read_ends_the_connection(shipped: sv.Server) -> None:
    status, headers, _ = raw_request(
        shipped,
        b"POST /nothing HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
    )
    assert (status, headers["Connection"]) == (404, "close")


def test_concurrent_clients_get_their_own_answers(shipped: sv.Server) -> None:
    bodies = [drawing(k % 6) for k in range(6)]
    want = [shipped.app.predict(b) for b in bodies]
    errors: list[str] = []

    def client(i: int) -> None:
        c = http.client.HTTPConnection(*shipped.server_address[:2], timeout=10)
        for j in range(15):
            k = (i + j) % 6
            r = call(shipped, "POST", "/api/predict", bodies[k], conn=c)
            if r.status != 200 or r.json != want[k]:
                errors.append(f"client {i} request {j}: {r.status}")
        c.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def _half_open(server: sv.Server, n: int, data: bytes = b"GET / HTTP/1.1\r\nHost: x\r\n") -> list:
    """n connections that send part of a request and then nothing."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(server.server_address[:2], timeout=10)
        s.sendall(data)
        socks.append(s)
    return socks


def test_idle_clients_do_not_block_others(shipped: sv.Server) -> None:
    socks = _half_open(shipped, 100)
    try:
        start = time.monotonic()
        r = call(shipped, "POST", "/api/predict", drawing())
        took = time.monotonic() - start
        assert (r.status, r.json["digit"]) == (200, 7)
        assert took < 2, f"took {took:.2f} s"
        assert call(shipped, "GET", "/api/info").status == 200
    finally:
        for s in socks:
            s.close()


def test_silent_connections_are_closed_after_the_timeout(weights: Path) -> None:
    with running(weights, timeout=0.5) as server:
        idle = socket.create_connection(server.server_address[:2], timeout=10)
        partial = _half_open(server, 1)[0]
        start = time.monotonic()
        assert idle.recv(100) == b""  # closed by the server
        assert partial.recv(100) == b""
        assert 0.4 < time.monotonic() - start < 5
        idle.close()
        partial.close()


def test_a_body_that_stops_coming_is_408(weights: Path) -> None:
    with running(weights, timeout=0.5) as server:
        head = b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
        with _half_open(server, 1, head + b"x" * 10)[0] as s:
            answer = s.makefile("rb").read()
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert json.loads(body) == {"error": "the request body came too slowly (10 of 100 bytes)"}


def test_connections_over_the_cap_get_503_at_once(weights: Path) -> None:
    with running(weights, max_connections=3) as server:
        socks = _half_open(server, 3)
        time.sleep(0.2)  # accepted, each in its thread
        status, headers, body = raw_request(server, b"GET /api/info HTTP/1.1\r\n\r\n")
        assert (status, json.loads(body)) == (
            503,
            {"error": "server busy: too many open connections, try again"},
        )
        assert headers["Retry-After"] == "1"
        for s in socks:
            s.close()
        deadline = time.monotonic() + 5
        while (r := call(server, "GET", "/api/info")).status == 503:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert r.status == 200


def test_bodies_in_memory_have_a_budget(weights: Path) -> None:
    with running(weights, max_upload=1000, body_budget=1000) as server:
        server.app.budget_wait = 0.3
        head = b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 800\r\n\r\n"
        hog = _half_open(server, 1, head + b"x")[0]  # holds 800 bytes of the budget
        time.sleep(0.1)
        r = call(server, "POST", "/api/predict", b"y" * 500)
        assert (r.status, r.json) == (
            503,
            {"error": "server busy: too many large uploads at once, try again"},
        )
        hog.close()  # its budget comes back
        time.sleep(0.2)
        r = call(server, "POST", "/api/predict", b"y" * 500)
        assert (r.status, r.json["error"]) == (
            400,
            f"request body: not an image (expected {FORMATS})",
        )


# --- the command ---------------------------------------------------------------------------


def _start(*args: str, **popen: Any) -> tuple[subprocess.Popen[str], str]:
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


def _workers(pid: int, n: int) -> list[int]:
    """The n child processes of pid (Linux), once it has forked them."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            found = [int(c) for c in f.read().split()]
        if len(found) >= n:
            return found
        time.sleep(0.05)
    return found


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _gone(pid: int, within: float = 5.0) -> bool:
    """True once pid has exited (a zombie nobody reaps counts as exited)."""
    deadline = time.monotonic() + within
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


needs_proc = pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")


@pytest.mark.parametrize(("sig", "name"), [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_command_serves_and_stops_on_a_signal(
    sig: signal.Signals, name: str, workers: str
) -> None:
    proc, url = _start("--workers", workers)
    try:
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        assert host == "127.0.0.1"
        c = http.client.HTTPConnection(host, int(port), timeout=10)
        c.request("GET", "/api/info")
        assert c.getresponse().status == 200  # and the connection stays open
        start = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
        took = time.monotonic() - start
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert took < 2, f"took {took:.2f} s"
    assert (out, err) == ("", f"Stopped ({name}).\n")


@needs_proc
def test_workers_take_equal_shares_of_keep_alive_connections() -> None:
    proc, url = _start("--workers", "2")
    try:
        (child,) = _workers(proc.pid, 1)
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        conns = []
        for _ in range(8):
            c = http.client.HTTPConnection(host, int(port), timeout=10)
            c.request("GET", "/api/info")
            assert c.getresponse().read()
            conns.append(c)
        time.sleep(0.2)
        # one thread per open connection; the server also has its main and accepting threads
        assert (_threads(proc.pid) - 2, _threads(child) - 1) == (4, 4)
        for c in conns:
            c.close()
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


@needs_proc
def test_workers_share_the_socket_and_stop_with_the_server() -> None:
    # Its own session: Ctrl-C in a terminal reaches every process of the group.
    proc, url = _start("--workers", "3", start_new_session=True)
    try:
        children = _workers(proc.pid, 2)
        assert len(children) == 2
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        pids = [proc.pid, *children]
        before = [_cpu_ticks(p) for p in pids]
        for _ in range(150):  # new connections go to whichever process accepts first
            c = http.client.HTTPConnection(host, int(port), timeout=10)
            c.request("POST", "/api/predict", body=drawing())
            r = c.getresponse()
            assert (r.status, json.loads(r.read())["digit"]) == (200, 7)
            c.close()
        busy = [_cpu_ticks(p) - b for p, b in zip(pids, before, strict=True)]
        assert sum(t > 0 for t in busy) >= 2, busy
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert (proc.returncode, err) == (0, "Stopped (SIGINT).\n")
    assert all(_gone(pid, 0) for pid in children)


@needs_proc
def test_workers_stop_when_the_server_is_killed() -> None:
    proc, _ = _start("--workers", "2")
    try:
        (child,) = _workers(proc.pid, 1)
        proc.kill()
        proc.wait()
        assert _gone(child), "the worker kept serving without its parent"
    finally:
        proc.kill()


def test_a_host_others_can_reach_gets_a_warning() -> None:
    proc, url = _start("--host", "0.0.0.0")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    port = url.rstrip("/").rsplit(":", 1)[1]
    assert url == f"http://0.0.0.0:{port}/"
    assert err.splitlines()[0] == (
        f"Warning: listening on 0.0.0.0: everyone who can reach this machine on port {port}"
        " can use the server (there is no login)"
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_local_hosts(host: str) -> None:
    assert sv.is_local(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.org"])
def test_other_hosts(host: str) -> None:
    assert not sv.is_local(host)


@pytest.fixture
def no_serving(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The command runs up to serving, which then returns at once; what it got is kept."""
    seen: dict[str, Any] = {}

    def serve_until_stopped(server: sv.Server, workers: int = 1) -> str:
        seen["server"] = server
        seen["workers"] = workers
        server.server_close()
        return "SIGTERM"

    monkeypatch.setattr(sv, "serve_until_stopped", serve_until_stopped)
    monkeypatch.setattr("webbrowser.open", lambda url: seen.setdefault("opened", url))
    return seen


@pytest.mark.parametrize(
    ("value", "size"), [("10M", 10 * 2**20), ("512K", 512 * 1024), ("1000", 1000), ("2MiB", 2**21)]
)
def test_max_upload_sizes(no_serving: dict[str, Any], value: str, size: int) -> None:
    res = CliRunner().invoke(cli, ["serve", "--port", "0", "--max-upload", value])
    assert res.exit_code == 0, res.output
    assert no_serving["server"].app.max_upload == size
    assert no_serving["workers"] == _cpus()  # one process per CPU by default
    assert "opened" not in no_serving


def test_open_opens_the_browser(no_serving: dict[str, Any]) -> None:
    res = CliRunner().invoke(cli, ["serve", "--port", "0", "--open"])
    assert res.exit_code == 0
    assert no_serving["opened"] == no_serving["server"].url
    assert res.stdout == f"Serving on {no_serving['server'].url}  (Ctrl-C to stop)\n"


@pytest.mark.parametrize("value", ["0", "10G", "abc", "-5", ""])
def test_bad_max_upload_is_a_usage_error(value: str) -> None:
    res = CliRunner().invoke(cli, ["serve", "--max-upload", value])
    assert res.exit_code == 2
    assert (
        "Invalid value for '--max-upload': expected a positive size in bytes, optionally with"
        f" K or M (KiB, MiB), found {value!r}" in res.output
    )


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = CliRunner().invoke(cli, ["serve", "--port", str(port)])
    assert res.exit_code == 1
    assert res.output == (
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use; pick another"
        " --port, or --port 0 for a free one\n"
    )


def test_bad_weights_are_exit_5(tmp_path: Path) -> None:
    bad = tmp_path / "w.pkl"
    bad.write_bytes(b"not a pickle")
    res = CliRunner().invoke(cli, ["serve", "--port", "0", "--weights", str(bad)])
    assert res.exit_code == 5
    assert res.output.startswith("Error: ")
    assert str(bad) in res.output


def test_static_files_come_from_the_package() -> None:
    files = sv.static_files()
    names = {p.name for p in STATIC.iterdir()}
    assert names >= {"index.html", "app.js", "style.css"}
    assert set(files) == {"/"} | {f"/static/{n}" for n in names}
