"""The listening side of `serve`: one event loop per process accepts and sweeps connections.

Reading requests holds no thread: every connection of a process is served from one asyncio
loop (serve_conn.Connection does the reading and answering). Open connections are capped;
at the cap, the one that has waited longest for its request is closed to make room, so idle
or trickling clients cannot lock others out. A sweep every `Limits.tick` enforces every
connection's deadline. Worker processes (serve_procs.py) share the listening socket.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from typing import Any

from mnist_infer import __version__
from mnist_infer.serve_conn import HEAD, IDLE, SKIP, Connection
from mnist_infer.serve_http import HostCheck, Limits, Route, error_body
from mnist_infer.serve_procs import Shared


class Server:
    """Connections to one listening socket, served from an event loop in one thread."""

    def __init__(
        self,
        routes: dict[str, Route],
        address: tuple[str, int],
        limits: Limits,
        shared: Shared,
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        self.routes, self.limits, self.shared = routes, limits, shared
        host, port = address
        family = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][0]
        self.socket = socket.create_server((host, port), family=family, backlog=1024)
        self.socket.setblocking(False)  # processes race for each connection: losers move on
        self.server_address: tuple[Any, ...] = self.socket.getsockname()
        self.hosts = HostCheck(host, allowed_hosts)
        self.conns: set[Connection] = set()
        self.body_bytes = 0  # request bodies held in memory, as received
        self.parent: int | None = None  # in a forked worker: the parent, whose end ends it
        self.name = f"mnist-infer/{__version__}"
        self.app: Any = None  # what answers the routes (for the command and tests)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Future[str] | None = None
        self._deferred = 0.0
        self._date = (0, "")
        self._helper: ThreadPoolExecutor | None = None

    def helper(self) -> ThreadPoolExecutor:
        """The thread that runs this process's large decodes (made in the serving process)."""
        if self._helper is None:
            self._helper = ThreadPoolExecutor(1, thread_name_prefix="decode")
        return self._helper

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    # --- running ----------------------------------------------------------------------

    def serve_forever(self, signals: bool = False) -> str:
        """Serve until stop() (from any thread) or, with signals, SIGINT or SIGTERM; returns
        the signal's name ("stop" for stop())."""
        loop = self._loop = asyncio.new_event_loop()
        done = self._done = loop.create_future()
        stoppers = (signal.SIGINT, signal.SIGTERM) if signals else ()
        plain: dict[int, Any] = {}  # where the loop cannot take signals (Windows)
        for s in stoppers:
            try:
                loop.add_signal_handler(s, self._finish, s.name)
            except NotImplementedError:
                plain[s] = signal.signal(s, self._on_signal)
        loop.add_reader(self.socket, self._accept)
        sweep = loop.call_later(self.limits.tick, self._sweep)
        try:
            return loop.run_until_complete(done)
        finally:
            sweep.cancel()
            loop.remove_reader(self.socket)
            for conn in list(self.conns):
                conn.abort()
            loop.run_until_complete(asyncio.sleep(0))  # the transports' last callbacks
            for s in stoppers:
                if s in plain:
                    signal.signal(s, plain[s])
                else:
                    loop.remove_signal_handler(s)
            if self._helper is not None:
                self._helper.shutdown(wait=False)
                self._helper = None
            self._loop = None
            loop.close()

    def stop(self) -> None:
        """Make serve_forever return (from any thread)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._finish, "stop")

    def close(self) -> None:
        self.socket.close()
        self.shared.close()

    def _on_signal(self, signum: int, frame: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._finish, signal.Signals(signum).name)

    def _finish(self, name: str) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(name)

    def _sweep(self) -> None:
        """Close the connections past their deadline; leave when the parent is gone."""
        assert self._loop is not None
        now = time.monotonic()
        for conn in [c for c in self.conns if c.deadline < now]:
            conn.expire()
        if self.parent is not None and os.getppid() != self.parent:
            os._exit(0)
        self._loop.call_later(self.limits.tick, self._sweep)

    # --- connections --------------------------------------------------------------------

    def _accept(self) -> None:
        loop = self._loop
        assert loop is not None
        if self.shared.processes > 1 and len(self.conns) > self.shared.least_load():
            # Workers share the socket: one with more open connections than another leaves
            # new ones to it (for up to 50 ms), so keep-alive clients spread evenly.
            now = time.monotonic()
            self._deferred = self._deferred or now
            if now - self._deferred < 0.05:
                self._pause_accepting(0.002)
                return
        self._deferred = 0.0
        for _ in range(16):
            try:
                sock, _addr = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # out of file descriptors: try again in a moment
                self._pause_accepting(0.1)
                return
            if len(self.conns) >= self.limits.max_connections and not self._make_room():
                _refuse(sock)
                continue
            conn = Connection(self)
            self.conns.add(conn)
            self.shared.set_load(len(self.conns))
            loop.create_task(self._connect(conn, sock))

    def _pause_accepting(self, seconds: float) -> None:
        assert self._loop is not None
        self._loop.remove_reader(self.socket)
        self._loop.call_later(seconds, self._resume_accepting)

    def _resume_accepting(self) -> None:
        if self._loop is not None and self.socket.fileno() >= 0:
            self._loop.add_reader(self.socket, self._accept)

    async def _connect(self, conn: Connection, sock: socket.socket) -> None:
        assert self._loop is not None
        try:
            await self._loop.connect_accepted_socket(lambda: conn, sock)
        except OSError:
            self.forget(conn)
            sock.close()

    def _make_room(self) -> bool:
        """Close the connection that has waited longest for a request; False if none does."""
        waiting = [c for c in self.conns if c.state in (IDLE, HEAD, SKIP) and not c.dropped]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c.since)
        oldest.abort()
        self.forget(oldest)
        return True

    def forget(self, conn: Connection) -> None:
        self.conns.discard(conn)
        self.shared.set_load(len(self.conns))

    def date(self) -> str:
        now = int(time.time())
        if now != self._date[0]:
            self._date = (now, formatdate(now, usegmt=True))
        return self._date[1]


def _refuse(sock: socket.socket) -> None:
    """Answer 503 at once, without reading the request, and close."""
    body = error_body("server busy: too many open connections, try again")
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    try:
        sock.setblocking(False)
        sock.send(head.encode() + body)
    except OSError:
        pass
    sock.close()
