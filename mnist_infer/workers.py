"""Worker processes: a function over many inputs in chunks, the results in input order.

A worker process that dies (killed, out of memory, a crash inside a decoder) costs only the
input it was on: the chunks it held are run again one input at a time, each in a process
of its own, and the input that kills its process gets a stand-in result instead.

Each worker is a forked process with a pipe of its own, driven from the calling thread: no
threads here, so stopping early (Ctrl-C, an exception, a closed generator) ends the
processes at once and nothing is left waiting on a message a killed process cut short.
"""

from __future__ import annotations

import itertools
import pickle
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

T = TypeVar("T")
R = TypeVar("R")

CHUNK = 128  # inputs per message: fewer messages each way
AHEAD = 4  # chunks a worker holds: work queued while the caller classifies and writes
# A chunk is sent ahead to a busy worker only when the pipe's buffer surely holds it (a
# send to a process busy sending its own results would otherwise wait for ever); a
# larger one (long paths, standard input's bytes) waits for a worker with nothing to do.
SMALL = 16 * 1024


def ordered(
    fn: Callable[[T], R],
    items: Iterable[T],
    jobs: int,
    lost: Callable[[T], R],
    chunk: int = CHUNK,
) -> Iterator[R]:
    """fn(item) for every item, in order, computed by `jobs` forked processes.

    lost(item) stands for the result of an item whose process died while on it. Stopping
    early (an exception, Ctrl-C, the consumer closing the generator) ends the worker
    processes at once.
    """
    todo = iter(items)
    pool = [_Worker(fn) for _ in range(jobs)]
    order: deque[tuple[list[T], _Worker[T, R]]] = deque()
    waiting: tuple[list[T], bytes] | None = None  # a chunk too big to send ahead
    done = False
    try:
        while True:
            while True:  # hand out chunks while workers may take them
                if waiting is None:
                    if not (block := list(itertools.islice(todo, chunk))):
                        break
                    waiting = (block, pickle.dumps(block, pickle.HIGHEST_PROTOCOL))
                if (w := _free(pool, len(waiting[1]))) is None:
                    break
                w.send(waiting[1])
                order.append((waiting[0], w))
                waiting = None
            if not order:  # nothing held: nothing was waiting either
                done = True
                return
            block, w = order.popleft()
            results = w.receive()
            if results is None:  # its process died: what it held, one input at a time
                if w in pool:
                    pool[pool.index(w)] = _Worker(fn)
                yield from _alone(fn, block, lost)
            else:
                yield from results
    finally:
        for w in pool:
            w.stop(kill=not done)


def _free(pool: list[_Worker[T, R]], size: int) -> _Worker[T, R] | None:
    """The least busy worker that may be sent a chunk of `size` bytes now, if any."""
    w = min(pool, key=lambda w: w.held)
    if w.held < (AHEAD if size <= SMALL else 1):
        return w
    return None


def _alone(fn: Callable[[T], R], block: list[T], lost: Callable[[T], R]) -> Iterator[R]:
    """The items one at a time, each in a process nothing else runs in."""
    w: _Worker[T, R] = _Worker(fn)
    try:
        for item in block:
            w.send(pickle.dumps([item], pickle.HIGHEST_PROTOCOL))
            results = w.receive()
            if results is None:
                w = _Worker(fn)
                yield lost(item)
            else:
                yield results[0]
    finally:
        w.stop(kill=True)


class _Worker(Generic[T, R]):
    """A forked process with a pipe: chunks go in, their results come back in turn."""

    def __init__(self, fn: Callable[[T], R]) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("fork")  # the modules are inherited: it starts in milliseconds
        self.conn, theirs = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(theirs, fn), daemon=True)
        self.proc.start()
        theirs.close()  # the process's end: its death then reads as the end of the pipe
        self.held = 0  # chunks sent whose results have not come back
        self.dead = False

    def send(self, data: bytes) -> None:
        if not self.dead:
            try:
                self.conn.send_bytes(data)
            except OSError:  # it died: receive says so
                self.dead = True
        self.held += 1

    def receive(self) -> list[R] | None:
        """The results of the oldest chunk sent, or None if the process died first."""
        from multiprocessing.connection import wait

        self.held -= 1
        if not self.dead:
            ready = wait([self.conn, self.proc.sentinel])
            if self.conn in ready:  # results, or the end of the pipe
                try:
                    results: list[R] = self.conn.recv()
                    return results
                except (EOFError, OSError):
                    pass
        self.dead = True
        return None

    def stop(self, kill: bool) -> None:
        """End the process: at once with kill, else when it has read that there is no more."""
        if kill or self.dead:
            self.proc.kill()
        else:
            try:
                self.conn.send(None)
            except OSError:
                self.proc.kill()
        self.proc.join()
        self.conn.close()
        self.proc.close()


def _serve(conn: Connection, fn: Callable[[Any], Any]) -> None:
    """A worker's life: chunks in, results out, until told to stop. Ctrl-C is the main
    process's business: it stops the workers."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        while (block := conn.recv()) is not None:
            conn.send([fn(item) for item in block])
    except (EOFError, OSError):  # the main process is gone
        pass


def can_fork() -> bool:
    """True where worker processes can be forked (not on Windows)."""
    import multiprocessing as mp

    return "fork" in mp.get_all_start_methods()
