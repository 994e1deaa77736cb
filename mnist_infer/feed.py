"""Training batches: shuffled digits, augmented, with generated non-digits after them.

A batch depends only on the seed, the epoch and its number in the epoch, so a run resumed
from a checkpoint sees the same batches as one never stopped. When batches need real work
(augmentation, non-digits) a worker process makes them ahead of use in shared memory, off
the training loop's path; plain batches are gathered in place.
"""

from __future__ import annotations

import math
import queue
import signal
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.shared_memory import SharedMemory
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

    F = NDArray[np.float32]

PIXELS = 784
WORKERS = 2  # the training loop and the workers share the CPUs: a wait is a CPU given away
SLOTS = 3  # batches each worker may have made ahead (in use, ready or being made)


@dataclass(frozen=True)
class Recipe:
    """What goes into a batch besides the digits' indices."""

    seed: int
    batch_size: int
    augment: bool = False
    ink_augment: bool = False
    outliers: float = 0.0  # non-digits per training digit

    @property
    def per_batch(self) -> int:
        """Non-digits added to each batch."""
        return math.ceil(self.outliers * self.batch_size - 1e-9)

    @property
    def rows(self) -> int:
        """The largest batch: digits and non-digits."""
        return self.batch_size + self.per_batch

    @property
    def busy(self) -> bool:
        """Whether making a batch is worth a worker process."""
        return self.augment or self.ink_augment or self.per_batch > 0


def permutation(seed: int, epoch: int, tr: NDArray[np.intp]) -> NDArray[np.intp]:
    """The order of the training images in an epoch."""
    return np.random.default_rng([seed, 4, epoch]).permutation(tr)


def make_batch(
    r: Recipe,
    images: NDArray[np.uint8],
    pool: NDArray[np.uint8] | None,
    idx: NDArray[np.intp],
    epoch: int,
    batch: int,
    out: F,
) -> int:
    """Fill out[:rows] with the digits images[idx] then the batch's non-digits, scaled to
    [0, 1] and augmented as the recipe says; returns the rows filled."""
    from mnist_infer.augment import augment, low_resolution, stroke_width

    nd, k = len(idx), r.per_batch
    m = nd + k
    rng = np.random.default_rng([r.seed, 3, epoch, batch])
    x = out[:m]
    x[:nd] = images[idx]
    if k:
        from mnist_infer.outliers import generate

        np.multiply(generate(k, rng, pool), np.float32(255), out=x[nd:])
    if r.ink_augment:
        a = augment(x, rng, rotate=12.0, scale=0.1, shear=0.35)
        x[:] = low_resolution(stroke_width(a, rng), rng)
    elif r.augment:
        x[:] = augment(x, rng)
    x *= np.float32(1 / 255)
    return m


class Feed:
    """Batches for epochs in order, made inline or by worker processes taking turns."""

    def __init__(
        self,
        recipe: Recipe,
        images: NDArray[np.uint8],
        labels: NDArray[np.uint8],
        tr: NDArray[np.intp],
        workers: int = WORKERS,
    ) -> None:
        self.r = recipe
        self.images, self.labels, self.tr = images, labels, tr
        self.per_epoch = -(-len(tr) // recipe.batch_size)
        self.workers = workers
        self._x = np.empty((recipe.rows, PIXELS), np.float32)
        self._u = np.empty((recipe.batch_size, PIXELS), np.uint8)
        self._shm: SharedMemory | None = None
        self._procs: list[Any] = []
        self._ready: list[Any] = []
        self._free: list[Any] = []
        self._first = 0  # the batch, counted over all epochs, the workers started from

    def batches(self, epoch: int, start: int) -> Iterator[tuple[F, NDArray[np.uint8], int]]:
        """(images, labels of the digits, non-digits) for the epoch's batches from `start`.

        The images are a view into a buffer that the next batch reuses.
        """
        perm = permutation(self.r.seed, epoch, self.tr)
        bs = self.r.batch_size
        if not self.r.busy:
            for b in range(start, self.per_epoch):
                idx = perm[b * bs : (b + 1) * bs]
                x, u = self._x[: len(idx)], self._u[: len(idx)]
                np.take(self.images, idx, axis=0, out=u)
                np.multiply(u, np.float32(1 / 255), out=x)
                yield x, self.labels[idx], 0
            return
        if not self._procs:
            self._start(epoch, start)
        slots = self._slots()
        for b in range(start, self.per_epoch):
            w = (epoch * self.per_epoch + b - self._first) % self.workers
            slot, m = self._get(w, epoch, b)
            idx = perm[b * bs : (b + 1) * bs]
            try:
                yield slots[slot][:m], self.labels[idx], m - len(idx)
            finally:
                self._free[w].put(slot)

    def _slots(self) -> list[F]:
        assert self._shm is not None
        n = SLOTS * self.workers
        arr = np.ndarray((n, self.r.rows, PIXELS), np.float32, buffer=self._shm.buf)
        return list(arr)

    def _start(self, epoch: int, start: int) -> None:
        from mnist_infer.train import _ignoring_interrupts

        ctx = get_context("spawn")
        self._shm = SharedMemory(create=True, size=SLOTS * self.workers * self.r.rows * PIXELS * 4)
        self._first = epoch * self.per_epoch + start
        for w in range(self.workers):
            ready, free = ctx.Queue(), ctx.Queue()
            for s in range(SLOTS):
                free.put(w * SLOTS + s)
            turn = (w, self.workers)
            args = (self.r, self.images, self.tr, self._shm.name, epoch, start, turn, ready, free)
            proc = ctx.Process(target=_work, args=args, daemon=True, name=f"batches-{w}")
            self._procs.append(proc)
            self._ready.append(ready)
            self._free.append(free)
        with _ignoring_interrupts():  # Ctrl-C is the training loop's to handle
            for proc in self._procs:
                proc.start()

    def _get(self, w: int, epoch: int, batch: int) -> tuple[int, int]:
        while True:
            try:
                msg = self._ready[w].get(timeout=1.0)
                break
            except queue.Empty:
                if not self._procs[w].is_alive():
                    raise RuntimeError(
                        f"the batch worker stopped (exit code {self._procs[w].exitcode})"
                    ) from None
        if msg[0] == "error":
            raise RuntimeError(f"the batch worker failed:\n{msg[1]}")
        _, e, b, slot, m = msg
        assert (e, b) == (epoch, batch), f"batch {(e, b)} came for {(epoch, batch)}"
        return slot, m

    def close(self) -> None:
        """Stop the workers and free the shared memory."""
        for proc in self._procs:
            proc.terminate()
        for proc in self._procs:
            proc.join()
        for q in (*self._ready, *self._free):
            q.close()
            q.join_thread()
        self._procs, self._ready, self._free = [], [], []
        if self._shm is not None:
            self._shm.close()
            self._shm.unlink()
            self._shm = None

    def __enter__(self) -> Feed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _work(
    r: Recipe,
    images: NDArray[np.uint8],
    tr: NDArray[np.intp],
    shm_name: str,
    epoch: int,
    start: int,
    turn: tuple[int, int],
    ready: Any,
    free: Any,
) -> None:
    """A worker: from (epoch, start) on, every batch that is its turn (j of every k), in order."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    shm = SharedMemory(name=shm_name)
    j, k = turn
    slots = np.ndarray((SLOTS * k, r.rows, PIXELS), np.float32, buffer=shm.buf)
    try:
        pool = images[tr] if r.per_batch else None
        per_epoch = -(-len(tr) // r.batch_size)
        bs = r.batch_size
        first = epoch * per_epoch + start
        while True:
            perm = permutation(r.seed, epoch, tr)
            for b in range(start, per_epoch):
                if (epoch * per_epoch + b - first) % k != j:
                    continue
                slot = free.get()
                idx = perm[b * bs : (b + 1) * bs]
                m = make_batch(r, images, pool, idx, epoch, b, slots[slot])
                ready.put(("batch", epoch, b, slot, m))
            epoch, start = epoch + 1, 0
    except Exception:
        ready.put(("error", traceback.format_exc()))
    finally:
        del slots
        shm.close()
