"""One client connection of `serve`: requests read as their bytes arrive, then answered.

A connection is always waiting for one thing (its `state`) until its `deadline`: the next
request (IDLE), the rest of a head (HEAD), a body (BODY), an unwanted body to drop (SKIP), or
its own answer (BUSY, the only state without a deadline: the handler runs at once, or waits
a bounded time for room in the decode budget). The server's sweep calls `expire` past the
deadline, so a deadline holds whether or not bytes come.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import traceback
from typing import TYPE_CHECKING

from mnist_infer.serve_http import (
    MAX_HEAD,
    MAX_LINE,
    PHRASES,
    SAFE,
    HTTPError,
    Request,
    Response,
    Route,
    check_request_line,
    content_length,
    error_body,
    json_bytes,
    parse_head,
    same_origin,
)
from mnist_infer.serve_procs import give_back_memory

if TYPE_CHECKING:
    from mnist_infer.serve_server import Server

IDLE, HEAD, BODY, SKIP, BUSY, CLOSED = range(6)
SKIP_LIMIT = 64 * 1024  # an unwanted body up to this size is read and dropped; larger: close
GATE_POLL = 0.005  # s between tries for room in the decode budget
BIG = 1_000_000  # pixels: an image this big is decoded off the event loop, then memory trimmed
NEVER = float("inf")
WRITE_HIGH = 16 * 1024  # unsent bytes past which a connection's requests wait (then 30 s)


class Connection(asyncio.Protocol):
    """The state of one connection, fed by the event loop."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.limits = server.limits
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()  # bytes of heads not parsed yet
        now = time.monotonic()
        self.state, self.since, self.deadline = HEAD, now, now + self.limits.head_timeout
        self.line_ok = False  # the buffered head's request line has been checked
        self.req: Request | None = None
        self.route: Route | None = None
        self.parts: list[bytes] = []  # the body so far
        self.need = self.got = self.held = self.skip = 0
        self.keep = True  # keep the connection after this answer
        self.eof = self.write_paused = self.read_paused = self.dropped = False
        self.retry: asyncio.TimerHandle | None = None

    # --- the event loop's calls ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH)
        if self.dropped:  # evicted or stopped before it was set up
            transport.abort()

    def data_received(self, data: bytes) -> None:
        st = self.state
        if st == BODY:
            self._body(data)
        elif st == SKIP:
            n = min(self.skip, len(data))
            self.skip -= n
            if not self.skip:
                self.buf += data[n:]
                self._wait_next()
        elif st != CLOSED:
            self.buf += data
            if st == BUSY:
                if len(self.buf) > MAX_HEAD:
                    self._pause_reading()  # pipelined requests wait their turn
            else:
                self._advance()

    def eof_received(self) -> bool:
        self.eof = True
        if self.state == BODY:
            self._fail(
                400,
                f"the request body ended after {self.got:,} of the {self.need:,} bytes announced",
            )
            return True
        if self.state == HEAD and self.buf.strip():
            self._fail(400, "the connection was half-closed in the middle of a request head")
            return True
        return self.state == BUSY  # answer, then close

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = CLOSED
        self.server.forget(self)
        self._release()
        if self.retry is not None:
            self.retry.cancel()

    def pause_writing(self) -> None:
        """The client is not reading its answers: stop reading its requests, for a while."""
        self.write_paused = True
        self._pause_reading()
        self.deadline = time.monotonic() + self.limits.send_timeout

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.state == SKIP:
            self._set(SKIP, self.limits.body_timeout)
            self._resume_reading()
        elif self.state == IDLE:
            self._wait_next()

    # --- deadlines and closing ----------------------------------------------------------

    def expire(self) -> None:
        """Past the deadline: say so if a request was under way, and close."""
        st = self.state
        if self.write_paused or st == CLOSED:  # an answer the client does not take
            self.abort()
        elif st in (IDLE, SKIP, BUSY) or (st == HEAD and not self.buf):
            self._close()
        elif st == HEAD:
            took = time.monotonic() - self.since
            self._fail(
                408,
                f"the request head came too slowly ({len(self.buf):,} bytes in {took:.1f} s)",
            )
        elif st == BODY:
            self._fail(
                408, f"the request body came too slowly ({self.got:,} of {self.need:,} bytes)"
            )

    def abort(self) -> None:
        """Close at once, dropping what is unsent."""
        self.dropped = True
        if self.transport is not None:
            self.transport.abort()

    def _close(self) -> None:
        self.state = CLOSED
        self.deadline = time.monotonic() + self.limits.send_timeout  # for the last answer
        self._release()
        if self.transport is not None:
            self.transport.close()  # after what is buffered has been sent

    def _set(self, state: int, timeout: float) -> None:
        """Wait for `state` for up to timeout s (an answer not yet sent has its own)."""
        now = time.monotonic()
        self.state, self.since = state, now
        if not self.write_paused:
            self.deadline = now + timeout

    def _pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None:
            self.transport.pause_reading()
            self.read_paused = True

    def _resume_reading(self) -> None:
        if self.read_paused and not self.write_paused and self.transport is not None:
            self.transport.resume_reading()
            self.read_paused = False

    # --- reading ------------------------------------------------------------------------

    def _advance(self) -> None:
        """Parse what is buffered up to the next complete head, and start on it."""
        buf = self.buf
        if self.state == CLOSED or self.write_paused or not buf:
            return
        if self.state == IDLE:
            while buf.startswith(b"\r\n"):  # stray line ends between requests are allowed
                del buf[:2]
            if not buf:
                return
            self._set(HEAD, self.limits.head_timeout)
        end = buf.find(b"\r\n\r\n")
        try:
            if not self.line_ok:
                nl = buf.find(b"\n")
                if nl > MAX_LINE or (nl < 0 and len(buf) > MAX_LINE):
                    raise HTTPError(414, f"request line over {MAX_LINE:,} bytes")
                if nl >= 0:  # refuse what is not HTTP/1.x before the rest of its head comes
                    check_request_line(bytes(buf[:nl]))
                    self.line_ok = True
            if (end < 0 and len(buf) > MAX_HEAD) or end > MAX_HEAD:
                raise HTTPError(431, f"request head over {MAX_HEAD:,} bytes")
            if end < 0:
                return
            head = bytes(buf[:end])
            del buf[: end + 4]
            self.line_ok = False
            req = parse_head(head)
        except HTTPError as e:
            self._fail(e.status, str(e))
            return
        self._start(req)

    def _start(self, req: Request) -> None:
        conn = req.headers.get("connection", "").lower()
        self.keep = "close" not in conn if req.version == "HTTP/1.1" else "keep-alive" in conn
        self.req = req
        try:
            route = self._route(req)
        except HTTPError as e:
            self._unwanted_body(req)
            self._answer(req, Response(error_body(str(e)), status=e.status, headers=e.headers))
            return
        if not route.upload:
            self._unwanted_body(req)
            self._dispatch(req, route)
            return
        try:
            n = content_length(req)
            if n > self.limits.max_upload:
                raise HTTPError(
                    413,
                    f"request body of {n:,} bytes is over the {self.limits.max_upload:,}-byte"
                    " limit; send a smaller image or start the server with a larger --max-upload",
                )
        except HTTPError as e:
            self.keep = False  # rather than read what would be thrown away
            self._answer(req, Response(error_body(str(e)), status=e.status))
            return
        if req.headers.get("expect", "").lower() == "100-continue" and self.transport:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.route, self.need, self.got, self.parts = route, n, 0, []
        self._set(BODY, self.limits.body_timeout)
        if self.buf:
            data, self.buf = bytes(self.buf), bytearray()
            self._body(data)
        elif n == 0:
            self._dispatch(req, route)

    def _route(self, req: Request) -> Route:
        """The route for a request from an allowed Host (and Origin, for what changes things)."""
        srv = self.server
        host = req.headers.get("host")
        if host is None:
            if req.version == "HTTP/1.1":
                self.keep = False  # a malformed request: what follows cannot be trusted
                raise HTTPError(400, "no Host header, which HTTP/1.1 requires")
        elif not srv.hosts.allows(host):
            raise HTTPError(403, srv.hosts.refusal(host))
        route = srv.routes.get(req.path)
        if route is None:
            raise HTTPError(404, f"no such page: {req.path}")
        if req.method not in route.methods:
            allowed = ", ".join(route.methods)
            raise HTTPError(
                405,
                f"{req.method} is not allowed on {req.path}, use {allowed}",
                {"Allow": allowed},
            )
        origin = req.headers.get("origin")
        unsafe = req.method not in SAFE and origin is not None
        if unsafe and (host is None or not same_origin(origin or "", host)):
            raise HTTPError(
                403,
                f"cross-origin request refused: Origin {origin!r:.100} is not this"
                f" server's page (http://{host})",
            )
        return route

    def _unwanted_body(self, req: Request) -> None:
        """Drop a small body the answer does not need (as it comes); close after a big one."""
        text = req.headers.get("content-length", "0")
        if "transfer-encoding" in req.headers or not text.isdecimal() or not text.isascii():
            self.keep = False
            return
        n = int(text)
        if n > SKIP_LIMIT:
            self.keep = False
            return
        take = min(n, len(self.buf))
        del self.buf[:take]
        self.skip = n - take

    def _body(self, data: bytes) -> None:
        """Take body bytes as they come, each charged to the process's byte budget."""
        left = self.need - self.got
        chunk = data if len(data) <= left else data[:left]
        srv = self.server
        if srv.body_bytes + len(chunk) > self.limits.body_budget:
            self._fail(
                503, "server busy: too many uploads at once, try again", {"Retry-After": "1"}
            )
            return
        srv.body_bytes += len(chunk)
        self.held += len(chunk)
        self.got += len(chunk)
        self.parts.append(chunk)
        if self.got < self.need:
            return
        if len(data) > left:
            self.buf += data[left:]
        req, route = self.req, self.route
        assert req is not None and route is not None
        req.body = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        self.parts = []
        self._dispatch(req, route)

    def _release(self) -> None:
        """Give the body's bytes back to the budget."""
        self.server.body_bytes -= self.held
        self.held = 0
        self.parts = []

    # --- answering ----------------------------------------------------------------------

    def _dispatch(self, req: Request, route: Route, pixels: int = -1) -> None:
        """Run the handler, once its decoding fits in the machine-wide budget."""
        self.state, self.deadline = BUSY, NEVER
        if route.cost is not None and pixels < 0:
            try:
                pixels = route.cost(req)
            except HTTPError as e:
                self._answer(req, Response(error_body(str(e)), status=e.status))
                return
            except Exception:
                self._answer(req, self._internal(req))
                return
            self.since = time.monotonic()
        if pixels > 0 and not self.server.shared.take(pixels):
            if time.monotonic() - self.since > self.limits.decode_wait:
                msg = "server busy: too many large images being decoded, try again"
                self._answer(req, Response(error_body(msg), status=503, headers=_RETRY))
                return
            loop = asyncio.get_running_loop()
            self.retry = loop.call_later(GATE_POLL, self._dispatch, req, route, pixels)
            return
        self.retry = None
        if pixels >= BIG:  # seconds of decoding: in the process's helper thread, so that
            # the loop goes on serving the others meanwhile (Pillow lets go of the GIL)
            job = asyncio.get_running_loop().run_in_executor(
                self.server.helper(), self._run, req, route
            )
            job.add_done_callback(lambda done: self._done(req, done.result(), pixels))
            return
        self._done(req, self._run(req, route), pixels)

    def _run(self, req: Request, route: Route) -> Response:
        try:
            return route.handler(req)
        except HTTPError as e:
            return Response(error_body(str(e)), status=e.status, headers=e.headers)
        except Exception:
            return self._internal(req)

    def _done(self, req: Request, resp: Response, pixels: int) -> None:
        """Give back the body's bytes and the decode's pixels, and answer."""
        self._release()
        if pixels > 0:
            if pixels >= BIG:
                give_back_memory()
            self.server.shared.give(pixels)
        if self.state != CLOSED:
            self._answer(req, resp)

    def _internal(self, req: Request) -> Response:
        """A bug: log it with an id, answer 500 with that id only, and close."""
        err_id = os.urandom(4).hex()
        sys.stderr.write(
            f"internal error {err_id} on {req.method} {req.path}:\n{traceback.format_exc()}"
        )
        sys.stderr.flush()
        self.keep = False
        return Response(
            json_bytes({"error": f"internal error (id {err_id})", "id": err_id}), status=500
        )

    def _fail(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        """Answer an error the connection cannot go on after, and close."""
        self.keep = False
        self._answer(self.req, Response(error_body(message), status=status, headers=headers))

    def _answer(self, req: Request | None, resp: Response) -> None:
        """Status line, headers and body in one write; then wait for the next request."""
        srv = self.server
        body = resp.body
        head = (
            f"HTTP/1.1 {resp.status} {PHRASES.get(resp.status, '')}\r\nServer: {srv.name}\r\n"
            f"Date: {srv.date()}\r\nContent-Type: {resp.ctype}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n"
        )
        if resp.headers:
            head += "".join(f"{k}: {v}\r\n" for k, v in resp.headers.items())
        if not self.keep or self.eof:
            head += "Connection: close\r\n"
        elif req is not None and req.version == "HTTP/1.0":
            head += "Connection: keep-alive\r\n"
        data = (head + "\r\n").encode("latin-1")
        if self.transport is not None and self.state != CLOSED:
            self.transport.write(data if req is not None and req.method == "HEAD" else data + body)
        self.req = self.route = None
        if not self.keep or self.eof:
            self._close()
        elif self.skip:
            self._set(SKIP, self.limits.body_timeout)
        else:
            self._wait_next()

    def _wait_next(self) -> None:
        """Wait for the next request; one already buffered is started on the next turn."""
        self._set(IDLE, self.limits.idle_timeout)
        self._resume_reading()
        if self.buf and not self.write_paused:
            asyncio.get_running_loop().call_soon(self._advance)


_RETRY = {"Retry-After": "1"}
