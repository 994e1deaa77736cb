"""`serve` under slow, idle, greedy and many clients: real sockets against a real server.

Each test is bounded in time: deadlines are set to fractions of a second, and every wait has
a cap. What they pin is behaviour (who gets answered, how), not speed.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from PIL import Image
from serving import (
    FORMATS,
    address,
    answer,
    call,
    closed_by_server,
    drawing,
    half_open,
    png,
    raw_request,
    running,
    timed,
)

from mnist_infer import serve as sv
from mnist_infer.serve_procs import Shared

POST_HEAD = "POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n"


def post_head(n: int) -> bytes:
    return POST_HEAD.format(n).encode()


class Trickle:
    """Sends one more byte on each socket every `every` s, from a thread, until stopped."""

    def __init__(self, socks: list[socket.socket], every: float, byte: bytes = b"X") -> None:
        self.socks, self.every, self.byte = socks, every, byte
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            for s in self.socks:
                with contextlib.suppress(OSError):
                    s.send(self.byte)

    def __enter__(self) -> Trickle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        for s in self.socks:
            s.close()


def test_clients_trickling_headers_do_not_lock_others_out(weights: Path) -> None:
    # Once: 256 connections sending a header byte every 8 s made everyone else get 503.
    with running(weights, head_timeout=30) as server:
        socks = half_open(server, 256, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        with Trickle(socks, 0.2):
            time.sleep(0.3)
            for _ in range(5):
                r, took = timed(call, server, "POST", "/api/predict", drawing())
                assert r.status == 200
                assert took < 5
            assert len(server.conns) >= 256  # the tricklers are still there, waiting


def test_idle_connections_do_not_lock_others_out(weights: Path) -> None:
    # Once: 300 idle connections made everyone else get 503 for 15 s.
    with running(weights) as server:
        socks = half_open(server, 300, b"")
        try:
            time.sleep(0.3)
            r, took = timed(call, server, "GET", "/api/info")
            assert (r.status, took < 5) == (200, True)
        finally:
            for s in socks:
                s.close()


def test_at_the_cap_the_longest_waiting_connection_makes_room(weights: Path) -> None:
    with running(weights, max_connections=3) as server:
        socks = half_open(server, 3)
        time.sleep(0.2)
        assert call(server, "GET", "/api/info").status == 200
        assert closed_by_server(socks[0]) == b""  # the oldest, half a request in 0.2 s
        for s in socks:
            s.close()


def test_at_the_cap_with_nobody_waiting_a_new_connection_gets_503(weights: Path) -> None:
    with running(weights, max_connections=3) as server:
        socks = half_open(server, 3, post_head(100) + b"x")  # uploading, slowly
        time.sleep(0.2)
        status, headers, body = raw_request(
            server, b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )
        assert (status, headers["Retry-After"], json.loads(body)) == (
            503,
            "1",
            {"error": "server busy: too many open connections, try again"},
        )
        for s in socks:
            s.close()
        deadline = time.monotonic() + 5
        while (r := call(server, "GET", "/api/info")).status == 503:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert r.status == 200


@pytest.mark.parametrize("every", [None, 0.05])  # nothing at all, or a byte now and then
def test_the_head_has_a_deadline_whether_bytes_come_or_not(weights: Path, every: float) -> None:
    with running(weights, head_timeout=0.5) as server:
        (s,) = half_open(server, 1, b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        with Trickle([] if every is None else [s], every or 1):
            (status, _, body), took = timed(answer, s)
        s.close()
    assert status == 408
    assert json.loads(body)["error"].startswith("the request head came too slowly (")
    assert 0.4 < took < 5


def test_a_new_connection_that_sends_nothing_is_closed_silently(weights: Path) -> None:
    with running(weights, head_timeout=0.5) as server:
        (s,) = half_open(server, 1, b"")
        got, took = timed(closed_by_server, s)
        assert (got, 0.4 < took < 5) == (b"", True)
        s.close()


def test_an_idle_keep_alive_connection_is_closed_after_its_timeout(weights: Path) -> None:
    with running(weights, idle_timeout=0.5) as server:
        with socket.create_connection(address(server), timeout=10) as s:
            s.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert answer(s)[0] == 200
            got, took = timed(closed_by_server, s)
        assert (got, 0.4 < took < 5) == (b"", True)


@pytest.mark.parametrize("every", [None, 0.05])
def test_the_body_has_a_deadline_whether_bytes_come_or_not(weights: Path, every: float) -> None:
    with running(weights, body_timeout=0.5) as server:
        (s,) = half_open(server, 1, post_head(100) + b"x" * 10)
        with Trickle([] if every is None else [s], every or 1):
            (status, _, body), took = timed(answer, s)
        s.close()
    assert status == 408
    got = json.loads(body)["error"]
    assert got.startswith("the request body came too slowly (")
    assert got.endswith(" of 100 bytes)")
    assert 0.4 < took < 5


def test_http_0_9_is_refused_at_once(weights: Path) -> None:
    # Once: an HTTP/0.9 request waited 15 s for the rest of a head that never comes.
    with running(weights, head_timeout=30) as server:
        (status, _, body), took = timed(raw_request, server, b"GET /\r\n")
    assert (status, json.loads(body)) == (
        400,
        {"error": "HTTP/0.9 requests are not supported; send GET / HTTP/1.1"},
    )
    assert took < 10  # once its line is in, not after the 30 s deadline


# --- memory -------------------------------------------------------------------------


def test_uploads_announced_but_not_sent_take_no_budget(weights: Path) -> None:
    # Once: 7 connections announcing 64 MiB of bodies made every upload wait 5 s, then 503.
    with running(weights) as server:
        socks = half_open(server, 7, post_head(64 * 2**20 // 7) + b"x")
        with Trickle(socks, 0.2):
            time.sleep(0.2)
            r, took = timed(call, server, "POST", "/api/predict", b"y" * 89)
            assert (r.status, r.json) == (
                400,
                {"error": f"request body: not an image (expected {FORMATS})"},
            )
            assert took < 4  # once: 5 s, then 503


def test_bodies_in_memory_have_a_budget_of_bytes_received(weights: Path) -> None:
    with running(weights, max_upload=1000, body_budget=1000) as server:
        (hog,) = half_open(server, 1, post_head(900) + b"x" * 800)  # 800 bytes held
        time.sleep(0.2)
        r = call(server, "POST", "/api/predict", b"y" * 300)
        assert (r.status, r.headers["Retry-After"], r.json) == (
            503,
            "1",
            {"error": "server busy: too many uploads at once, try again"},
        )
        assert r.headers["Connection"] == "close"
        r = call(server, "POST", "/api/predict", b"y" * 150)  # fits beside the 800
        assert r.status == 400
        hog.close()  # its bytes come back
        time.sleep(0.2)
        r = call(server, "POST", "/api/predict", b"y" * 500)
        assert (r.status, r.json["error"]) == (
            400,
            f"request body: not an image (expected {FORMATS})",
        )
        assert server.body_bytes == 0


def big_png(side: int) -> bytes:
    return png(Image.new("L", (side, side), 255))


def test_an_image_over_the_pixel_budget_is_refused_before_decoding(weights: Path) -> None:
    with running(weights, pixel_budget=1000 * 1000) as server:
        r = call(server, "POST", "/api/predict", big_png(1001))
        assert (r.status, r.json) == (
            400,
            {
                "error": "request body: image too large (1,002,001 pixels; the limit is"
                " 1,000,000 pixels); scale it down or crop it to the digit first"
            },
        )
        assert call(server, "POST", "/api/predict", drawing()).status == 200


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"])
def test_the_pixels_an_image_declares(fmt: str) -> None:
    img = Image.new("L", (37, 23), 200)
    assert sv.image_pixels(png(img, fmt)) == 37 * 23
    assert sv.image_pixels(b"not an image") == 0


def test_decodes_wait_for_room_in_the_machine_wide_budget(weights: Path) -> None:
    with running(weights, pixel_budget=1000 * 1000, decode_wait=0.5) as server:
        shared = server.shared
        assert shared.take(1000 * 1000 - 100)  # as another worker's big image would
        r, took = timed(call, server, "POST", "/api/predict", drawing())
        assert (r.status, r.json) == (
            503,
            {"error": "server busy: too many large images being decoded, try again"},
        )
        assert 0.4 < took < 5
        release = threading.Timer(0.2, shared.give, (1000 * 1000 - 100,))
        release.start()
        r, took = timed(call, server, "POST", "/api/predict", drawing())
        assert (r.status, len(r.json["probabilities"])) == (200, 10)
        assert shared.in_use() == (0, 0)


def test_the_decode_cap_is_shared_by_processes_and_freed_when_one_dies() -> None:
    shared = Shared(decode_slots=2, pixel_budget=1000)
    shared.share(3)
    pid = os.fork()
    if pid == 0:  # a worker that takes 600 pixels and one slot, and is killed holding them
        shared.me = 1
        os._exit(0 if shared.take(600) else 1)
    assert os.waitpid(pid, 0)[1] == 0
    assert shared.in_use() == (1, 600)
    assert not shared.take(500)  # 1,100 pixels would be over the budget
    assert shared.take(400)
    shared.me = 2
    assert not shared.take(1)  # two decodes already: the cap
    shared.clear(1)  # the parent forgets the dead worker's
    assert shared.take(1)
    assert shared.in_use() == (2, 401)
    shared.close()


def test_concurrent_clients_get_their_own_answers(weights: Path) -> None:
    with running(weights) as server:
        bodies = [drawing(k % 6) for k in range(6)]
        want = [server.app.predict(b) for b in bodies]
        errors: list[str] = []

        def client(i: int) -> None:
            c = http.client.HTTPConnection(*address(server), timeout=10)
            for j in range(15):
                k = (i + j) % 6
                r = call(server, "POST", "/api/predict", bodies[k], conn=c)
                if r.status != 200 or r.json != want[k]:
                    errors.append(f"client {i} request {j}: {r.status}")
            c.close()

        threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


def test_a_client_that_does_not_read_its_answers_is_dropped(weights: Path) -> None:
    with running(weights, send_timeout=0.5, idle_timeout=60) as server:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting
        s.connect(address(server))
        req = b"GET /static/app.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        s.sendall(req * 2000)  # answers pile up unread: far more than the kernel's buffers
        deadline = time.monotonic() + 10
        while len(server.conns) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(server.conns) == 0  # dropped after the send deadline, not the idle one
        s.close()
        assert call(server, "GET", "/api/info").status == 200


def test_an_unwanted_small_body_is_skipped_and_the_connection_goes_on(weights: Path) -> None:
    with running(weights) as server:
        c = http.client.HTTPConnection(*address(server), timeout=10)
        assert call(server, "POST", "/api/info", b"{}" * 1000, conn=c).status == 405
        assert call(server, "GET", "/api/info", conn=c).status == 200
        c.close()
        status, headers, _ = raw_request(
            server,
            b"POST /nothing HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
        )
        assert (status, headers["Connection"]) == (404, "close")


def test_a_body_over_the_limit_is_413_before_it_is_read(weights: Path) -> None:
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


@pytest.mark.parametrize(("length", "first"), [(1001, "413"), (1000, "100")])
def test_expect_100_continue_is_refused_before_the_body(
    weights: Path, length: int, first: str
) -> None:
    with running(weights, max_upload=1000) as server:
        head = post_head(length)[:-2] + b"Expect: 100-continue\r\n\r\n"
        with half_open(server, 1, head)[0] as s:
            assert s.recv(100).split(b" ")[1] == first.encode()


def test_a_large_decode_does_not_hold_up_the_other_requests(
    weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running(weights) as server:
        started = threading.Event()

        def slow(body: bytes, raw: bool = False) -> bytes:
            started.set()
            time.sleep(3.0)  # as seconds of decoding would
            return b"{}"

        monkeypatch.setattr(server.app, "predict_json", slow)
        big = threading.Thread(target=call, args=(server, "POST", "/api/predict", big_png(1000)))
        big.start()
        assert started.wait(10)
        r, took = timed(call, server, "GET", "/api/info")
        assert (r.status, big.is_alive()) == (200, True)
        assert took < 2
        big.join()
        assert server.shared.in_use() == (0, 0)
