"""The processes of `serve`: what they share, and a parent that keeps their number up.

`Shared` lives in memory mapped before the workers are forked: each process's open
connections (so new ones go to the least loaded) and the images each is decoding, under
one machine-wide cap on concurrent decodes and on their pixels. Its lock is a POSIX record
lock, which the kernel releases when its holder dies; a dead worker's holdings are cleared
by the parent, which forks a new worker in its place.
"""

from __future__ import annotations

import mmap
import os
import signal
import sys
import tempfile
import time
from contextlib import contextmanager, suppress
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mnist_infer.serve_server import Server

MAX_WORKERS = 256
QUICK_DEATH = 1.0  # s: a worker dying sooner than this after its start is replaced after a pause


class Shared:
    """Counters every serving process sees: open connections per process, and the images
    being decoded (their number and pixels) per process, capped machine-wide."""

    def __init__(self, decode_slots: int, pixel_budget: int) -> None:
        self.decode_slots = decode_slots  # images decoded at once, machine-wide
        self.pixel_budget = pixel_budget  # their pixels, machine-wide
        self._mem = mmap.mmap(-1, 8 * 3 * MAX_WORKERS)
        a = memoryview(self._mem).cast("q")
        n = MAX_WORKERS
        self._loads, self._slots, self._pixels = a[:n], a[n : 2 * n], a[2 * n :]
        self._lockfile: IO[bytes] | None = None  # made before forking: the processes' lock
        self.processes = 1  # how many serve (slots 0..processes-1)
        self.me = 0  # this process's slot

    def share(self, processes: int) -> None:
        """Get ready for that many processes, before they are forked."""
        self.processes = processes
        if self._lockfile is None:
            self._lockfile = tempfile.TemporaryFile()  # noqa: SIM115  (closed by close())

    def close(self) -> None:
        if self._lockfile is not None:
            self._lockfile.close()
            self._lockfile = None

    def set_load(self, n: int) -> None:
        self._loads[self.me] = n

    def least_load(self) -> int:
        return min(self._loads[: self.processes])

    def take(self, pixels: int) -> bool:
        """Reserve one decode of `pixels` if it fits under both caps."""
        with self._locked():
            n = self.processes
            if sum(self._slots[:n]) >= self.decode_slots:
                return False
            if sum(self._pixels[:n]) + pixels > self.pixel_budget:
                return False
            self._slots[self.me] += 1
            self._pixels[self.me] += pixels
            return True

    def give(self, pixels: int) -> None:
        with self._locked():
            self._slots[self.me] -= 1
            self._pixels[self.me] -= pixels

    def in_use(self) -> tuple[int, int]:
        """(decodes, pixels) under way, machine-wide."""
        with self._locked():
            n = self.processes
            return sum(self._slots[:n]), sum(self._pixels[:n])

    def clear(self, slot: int) -> None:
        """Forget what a dead process held."""
        with self._locked():
            self._loads[slot] = self._slots[slot] = self._pixels[slot] = 0

    @contextmanager
    def _locked(self) -> Iterator[None]:
        if self._lockfile is None:  # one process, one event loop thread: nothing to race
            yield
            return
        import fcntl  # only where processes fork, which is where it exists

        fcntl.lockf(self._lockfile, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self._lockfile, fcntl.LOCK_UN)


def give_back_memory() -> None:
    """Return freed heap memory to the system (glibc keeps it otherwise, so each process
    would hold on to its largest decode ever, and the machine-wide budget would not bound
    what the processes hold together)."""
    global _trim
    if _trim is None:
        try:
            import ctypes

            _trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc
            _trim = False
    if _trim:
        _trim(0)


_trim: Any = None


def serve_until_stopped(server: Server, workers: int = 1) -> str:
    """Serve until SIGINT (Ctrl-C) or SIGTERM; returns the signal's name.

    With workers > 1 (where processes can fork), this process forks that many workers that
    serve the same socket, replaces any that dies, and on the signal stops them all.
    """
    if workers <= 1 or not hasattr(os, "fork"):
        return server.serve_forever(signals=True)
    return _Parent(server, min(workers, MAX_WORKERS)).run()


class _Parent:
    """Forks the workers and keeps one running in every slot until told to stop."""

    def __init__(self, server: Server, n: int) -> None:
        self.server, self.n = server, n
        self.pids: dict[int, tuple[int, float]] = {}  # pid -> (slot, start time)
        self.due: dict[int, float] = {}  # slot -> when to start its next worker
        self.got: list[int] = []

    def run(self) -> str:
        def on_signal(signum: int, frame: object) -> None:
            self.got.append(signum)

        self.server.shared.share(self.n)
        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for slot in range(self.n):
                self._start(slot)
            while not self.got:
                self._reap()
                now = time.monotonic()
                for slot, when in list(self.due.items()):
                    if when <= now:
                        del self.due[slot]
                        self._start(slot)
                time.sleep(0.05)
        finally:
            self._stop_all()
            for s, handler in old.items():
                signal.signal(s, handler)
        return signal.Signals(self.got[0]).name

    def _start(self, slot: int) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            _worker(self.server, slot, parent)
        self.pids[pid] = (slot, time.monotonic())

    def _reap(self) -> None:
        """Collect the workers that ended (no zombies) and plan their replacements."""
        while self.pids:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot, started = self.pids.pop(pid, (-1, 0.0))
            if slot < 0:
                continue
            self.server.shared.clear(slot)
            lived = time.monotonic() - started
            pause = QUICK_DEATH if lived < QUICK_DEATH else 0.0
            sys.stderr.write(
                f"Worker {pid} {_how(status)}; starting another"
                f"{f' in {pause:g} s' if pause else ''}.\n"
            )
            sys.stderr.flush()
            self.due[slot] = time.monotonic() + pause

    def _stop_all(self) -> None:
        for pid in self.pids:
            _kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 2.0
        for pid in list(self.pids):
            while time.monotonic() < deadline:
                try:
                    if os.waitpid(pid, os.WNOHANG)[0]:
                        break
                except ChildProcessError:
                    break
                time.sleep(0.01)
            else:
                _kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        self.pids.clear()
        self.server.close()


def _worker(server: Server, slot: int, parent: int) -> None:
    """A forked worker's life: serve until SIGTERM or the parent's end; never returns."""
    code = 0
    try:
        # Ctrl-C reaches every process of the terminal: the parent alone acts on it, and
        # ends its workers with SIGTERM, which ends them at once.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        server.shared.me = slot
        server.parent = parent
        server.serve_forever()
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return f"was killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"was killed by signal {sig}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"


def _kill(pid: int, sig: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, sig)
