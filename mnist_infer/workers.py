"""Worker processes: a function over many inputs in chunks, the results in input order.

A worker process that dies (killed, out of memory, a crash inside a decoder) costs only the
input it was on: the inputs it may have held are run again one at a time, each in a process
of its own, and the one that kills its process gets a stand-in result instead.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor

T = TypeVar("T")
R = TypeVar("R")

CHUNK = 128  # inputs per message: fewer messages each way
AHEAD = 4  # chunks in flight per worker: work queued while the caller classifies and writes


def ordered(
    fn: Callable[[T], R],
    items: Iterable[T],
    jobs: int,
    lost: Callable[[T], R],
    chunk: int = CHUNK,
) -> Iterator[R]:
    """fn(item) for every item, in order, computed by `jobs` forked processes.

    lost(item) stands for the result of an item whose process died while on it. At most
    AHEAD * jobs chunks are in flight. Stopping early (an exception, Ctrl-C, the consumer
    closing the generator) ends the worker processes at once.
    """
    from concurrent.futures.process import BrokenProcessPool

    todo = iter(items)
    pool = _start(jobs)
    flight: deque[tuple[list[T], Future[list[R]]]] = deque()
    done = False
    try:
        while True:
            while len(flight) < AHEAD * jobs and (block := list(itertools.islice(todo, chunk))):
                flight.append((block, _submit(pool, _each, fn, block)))
            if not flight:
                done = True
                return
            block, future = flight.popleft()
            try:
                results = future.result()
            except BrokenProcessPool:
                _stop(pool, kill=True)
                for b, f in [(block, future), *flight]:
                    yield from _finished(f) or _alone(fn, b, lost)
                flight.clear()
                pool = _start(jobs)
                continue
            yield from results
    finally:
        _stop(pool, kill=not done)


def _each(fn: Callable[[T], R], block: list[T]) -> list[R]:
    return [fn(item) for item in block]


def _finished(future: Future[list[R]]) -> list[R]:
    """The results of a chunk that finished before its pool broke (else none)."""
    if future.done() and not future.cancelled() and future.exception() is None:
        return future.result()
    return []


def _alone(fn: Callable[[T], R], block: list[T], lost: Callable[[T], R]) -> Iterator[R]:
    """The items one at a time, each in a process nothing else runs in."""
    from concurrent.futures.process import BrokenProcessPool

    pool = _start(1)
    try:
        for item in block:
            try:
                result = _submit(pool, fn, item).result()
            except BrokenProcessPool:
                _stop(pool, kill=True)
                pool = _start(1)
                result = lost(item)
            yield result
    finally:
        _stop(pool, kill=True)


def _submit(pool: ProcessPoolExecutor, fn: Callable[..., R], *args: object) -> Future[R]:
    """pool.submit; a pool already broken gives a future holding that error."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    try:
        return pool.submit(fn, *args)
    except BrokenProcessPool as err:
        future: Future[R] = Future()
        future.set_exception(err)
        return future


def _start(jobs: int) -> ProcessPoolExecutor:
    """Forked workers inherit the imported modules, so they start in milliseconds. They
    ignore Ctrl-C: the main process handles it and stops them."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(jobs, mp_context=mp.get_context("fork"), initializer=_no_sigint)


def _stop(pool: ProcessPoolExecutor, kill: bool) -> None:
    """Shut the pool down; with kill, end its processes first instead of letting them finish."""
    if kill:
        end = getattr(pool, "terminate_workers", None)  # Python 3.14
        if end is not None:
            end()
        else:
            for p in list((getattr(pool, "_processes", None) or {}).values()):
                p.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def _no_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def can_fork() -> bool:
    """True where worker processes can be forked (not on Windows)."""
    import multiprocessing as mp

    return "fork" in mp.get_all_start_methods()
