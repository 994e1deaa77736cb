"""Worker processes: results in input order; a process that dies costs only its input."""

from __future__ import annotations

import os
import signal
import time

import pytest

from mnist_infer import workers

pytestmark = pytest.mark.skipif(not workers.can_fork(), reason="worker processes are forked")

PARENT = os.getpid()


def square(x: int) -> int:
    return x * x


def dies_on_multiples_of_7(x: int) -> int:
    if x % 7 == 0 and os.getpid() != PARENT:
        os.kill(os.getpid(), signal.SIGKILL)
    return x * x


def lost(x: int) -> int:
    return -x


@pytest.mark.parametrize(("count", "jobs", "chunk"), [(0, 2, 4), (1, 2, 4), (50, 2, 3), (9, 3, 1)])
def test_results_come_in_input_order(count: int, jobs: int, chunk: int) -> None:
    got = list(workers.ordered(square, iter(range(count)), jobs, lost, chunk))
    assert got == [x * x for x in range(count)]


@pytest.mark.parametrize("chunk", [1, 5, 16])
def test_a_dying_process_costs_only_the_input_it_was_on(chunk: int) -> None:
    got = list(workers.ordered(dies_on_multiples_of_7, range(1, 40), 2, lost, chunk))
    assert got == [-x if x % 7 == 0 else x * x for x in range(1, 40)]


def big_answer(x: bytes) -> bytes:
    return x * 4


@pytest.mark.parametrize("size", [10, 40_000, 300_000])  # bytes per input
def test_big_inputs_and_answers_never_wait_on_each_other(size: int) -> None:
    """Chunks and results larger than a pipe holds: sent only when they cannot block."""
    items = [bytes([i]) * size for i in range(40)]
    got = list(workers.ordered(big_answer, items, 2, lost, 8))
    assert got == [x * 4 for x in items]


def _children() -> set[int]:
    import multiprocessing as mp

    return {p.pid for p in mp.active_children() if p.pid is not None}


def slow(x: int) -> int:
    time.sleep(30 if x > 3 else 0)
    return x


def test_stopping_early_ends_the_workers_at_once() -> None:
    before = _children()
    results = workers.ordered(slow, range(100), 2, lost, 2)
    assert next(results) == 0
    t = time.monotonic()
    results.close()
    assert time.monotonic() - t < 10  # bounded: not the 30 s a busy worker needs to finish
    assert _children() <= before
