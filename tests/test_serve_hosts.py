"""`mnist-infer serve`: who may ask (the Host and Origin checks) and how HTTP/1.x is spoken."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from serving import address, answers, call, drawing, raw_request, running

from mnist_infer import serve as sv
from mnist_infer.serve_http import HostCheck


@pytest.fixture(scope="module")
def shipped() -> Iterator[sv.Server]:
    with running() as server:
        yield server


# --- where requests come from -----------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "LOCALHOST:1234", "[::1]:80", "app.localhost"]
)
def test_loopback_names_are_this_server(shipped: sv.Server, host: str) -> None:
    assert call(shipped, "GET", "/api/info", headers={"Host": host}).status == 200


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "10.0.0.1", "[::2]"]
)
def test_other_host_names_are_refused(shipped: sv.Server, host: str) -> None:
    # A page at evil.example whose name is made to resolve to 127.0.0.1 (DNS rebinding)
    # reaches the port, but its requests carry its own name.
    for method, path in [("GET", "/api/info"), ("GET", "/"), ("POST", "/api/predict")]:
        r = call(shipped, method, path, drawing() if method == "POST" else None, {"Host": host})
        assert (r.status, r.json) == (
            403,
            {
                "error": f"Host {host!r} is not this server's address (it answers to 127.0.0.1,"
                " ::1, localhost); start it with --allow-host NAME to add a name"
            },
        )


def test_allowed_host_names(weights: Path) -> None:
    with running(weights, allowed_hosts=("digits.lan",)) as server:
        assert call(server, "GET", "/api/info", headers={"Host": "Digits.LAN:80"}).status == 200
        assert call(server, "GET", "/api/info", headers={"Host": "other.lan"}).status == 403


@pytest.mark.parametrize(
    ("bound", "name", "ok"),
    [
        ("0.0.0.0", "192.168.1.5:8000", True),
        ("0.0.0.0", "[fe80::1]", True),
        ("0.0.0.0", "localhost", True),
        ("0.0.0.0", socket.gethostname(), True),
        ("0.0.0.0", "evil.example", False),
        ("192.168.1.5", "192.168.1.5:8000", True),
        ("192.168.1.5", "localhost", False),
        ("192.168.1.5", "192.168.1.6", False),
        ("127.0.0.2", "127.0.0.2", True),
        ("127.0.0.2", "localhost", True),
        ("127.0.0.2", "[::1]", True),
        ("127.0.0.1", "::1", False),  # an IPv6 address must be in brackets
        ("127.0.0.1", "", False),
        ("127.0.0.1", "localhost:port", False),
    ],
)
def test_host_check(bound: str, name: str, ok: bool) -> None:
    assert HostCheck(bound).allows(name) is ok


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        (None, 200),  # not from a browser
        ("http://{host}", 200),  # the page itself
        ("http://localhost:{port}", 403),  # another origin, even on this machine
        ("http://evil.example", 403),
        ("https://{host}", 403),
        ("null", 403),  # a sandboxed frame or a file
    ],
)
def test_posts_from_another_origin_are_refused(
    shipped: sv.Server, origin: str | None, status: int
) -> None:
    host = f"127.0.0.1:{address(shipped)[1]}"
    headers = {"Content-Type": "text/plain"}  # what any page may send without asking
    if origin is not None:
        headers["Origin"] = origin.format(host=host, port=address(shipped)[1])
    r = call(shipped, "POST", "/api/predict", drawing(), headers)
    assert r.status == status
    if status == 403:
        assert r.json == {
            "error": f"cross-origin request refused: Origin {headers['Origin']!r} is not this"
            f" server's page (http://{host})"
        }
    assert (
        call(shipped, "GET", "/api/info", headers={"Origin": "http://evil.example"}).status == 200
    )


def test_http_1_0_closes_unless_asked_to_keep_alive(shipped: sv.Server) -> None:
    status, headers, _ = raw_request(shipped, b"GET /api/info HTTP/1.0\r\n\r\n")
    assert (status, headers["Connection"]) == (200, "close")
    with socket.create_connection(address(shipped), timeout=10) as s:
        s.sendall(b"GET /api/info HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2)
        for status, headers, body in answers(s, 2):
            assert (status, headers["connection"]) == (200, "keep-alive")
            assert json.loads(body)["sizes"]


def test_pipelined_requests_are_answered_in_order(shipped: sv.Server) -> None:
    one = b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    post = b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello"
    with socket.create_connection(address(shipped), timeout=10) as s:
        s.sendall(one + post + b"\r\n" + one)
        statuses = [status for status, _, _ in answers(s, 3)]
    assert statuses == [200, 400, 200]
