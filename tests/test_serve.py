"""`mnist-infer serve`: the JSON API and the page's files, against a real server on 127.0.0.1."""

from __future__ import annotations

import http.client
import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from serving import (
    FORMATS,
    STATIC,
    address,
    call,
    drawing,
    half_open,
    mnist_like,
    png,
    raw_request,
    running,
)

from mnist_infer import explore
from mnist_infer import serve as sv
from mnist_infer.cli import cli
from mnist_infer.functions import sigmoid, softmax
from mnist_infer.image import load_digit
from mnist_infer.network import Network
from mnist_infer.novelty import DEFAULT_RULE, METADATA_KEY, energy
from mnist_infer.shipped import default_weights_path
from mnist_infer.weights import file_sha256, load_weights, metadata_path, read_metadata


@pytest.fixture(scope="module")
def shipped() -> Iterator[sv.Server]:
    """The server with the shipped weights, shared by the tests that only read."""
    with running() as server:
        yield server


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
        "weights": "w.pkl",  # its name: the path would tell about the machine
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
    assert info["weights"] == path.name
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
            f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n"
            "Expect: 100-continue\r\n\r\n"
        )
        with half_open(server, 1, head.encode())[0] as s:
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
    assert r.json == {"error": f"no such page: {path}"}


@pytest.mark.parametrize(
    ("request_bytes", "status", "error"),
    [
        (
            b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            411,
            "send the image as the request body with a Content-Length header (chunked uploads"
            " are not supported)",
        ),
        (
            b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
            411,
            "send the image as the request body with a Content-Length header (chunked uploads"
            " are not supported)",
        ),
        (
            b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n",
            400,
            "bad Content-Length '-5', expected a byte count",
        ),
        (
            b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: \xb2\r\n\r\n",
            400,
            "bad Content-Length '\xb2', expected a byte count",
        ),
        (
            b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\nabc",
            400,
            "the request body ended after 3 of the 10 bytes announced",
        ),
        (b"NONSENSE\r\n\r\n", 400, "bad request line 'NONSENSE', expected METHOD /path HTTP/1.1"),
        (
            b"GET / HTTP/1.1 extra\r\n\r\n",
            400,
            "bad request line 'GET / HTTP/1.1 extra', expected METHOD /path HTTP/1.1",
        ),
        (b"GET / HTTP/2.0\r\n\r\n", 505, "HTTP version '2.0' is not supported, use 1.1"),
        (b"GET nowhere HTTP/1.1\r\n\r\n", 400, "bad request target 'nowhere', expected a path"),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414, "request line over 8,192 bytes"),
        (
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-A: " + b"a" * 17_000 + b"\r\n\r\n",
            431,
            "request head over 16,384 bytes",
        ),
        (
            b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
            400,
            "bad header line 'Host x', expected Name: value",
        ),
        (b"GET / HTTP/1.1\r\n\r\n", 400, "no Host header, which HTTP/1.1 requires"),
        (
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n",
            400,
            "two different Host headers",
        ),
    ],
)
def test_malformed_requests_get_json_errors(
    shipped: sv.Server, request_bytes: bytes, status: int, error: str
) -> None:
    if b"abc" in request_bytes:  # the client hangs up after sending part of the body
        with socket.create_connection(address(shipped), timeout=10) as s:
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


def test_a_bug_is_500_with_an_id_the_log_carries(
    weights: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    with running(weights) as server:

        def broken(body: bytes, raw: bool = False) -> bytes:
            raise RuntimeError("secret detail")

        monkeypatch.setattr(server.app, "predict_json", broken)
        r = call(server, "POST", "/api/predict", drawing())
        assert call(server, "GET", "/api/info").status == 200  # and the server goes on
    err_id = r.json["id"]
    assert (r.status, r.json) == (500, {"error": f"internal error (id {err_id})", "id": err_id})
    assert r.headers["Connection"] == "close"
    assert "secret" not in r.body.decode()
    log = capfd.readouterr().err
    assert f"internal error {err_id} on POST /api/predict:\n" in log
    assert "RuntimeError: secret detail" in log


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
    c = http.client.HTTPConnection(*address(shipped), timeout=10)
    r = call(shipped, "HEAD", "/", conn=c)
    assert (r.status, r.body) == (200, b"")
    assert int(r.headers["Content-Length"]) == len((STATIC / "index.html").read_bytes())
    assert call(shipped, "GET", "/api/info", conn=c).status == 200  # same connection
    c.close()


def test_static_files_come_from_the_package() -> None:
    files = sv.static_files()
    names = {p.name for p in STATIC.iterdir()}
    assert names >= {"index.html", "app.js", "style.css"}
    assert set(files) == {"/"} | {f"/static/{n}" for n in names}
