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
AHEAD = 4  # batches the worker may have ready


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
    """Batches for epochs in order, made inline or by a worker process."""

    def __init__(
        self,
        recipe: Recipe,
        images: NDArray[np.uint8],
        labels: NDArray[np.uint8],
        tr: NDArray[np.intp],
    ) -> None:
        self.r = recipe
        self.images, self.labels, self.tr = images, labels, tr
        self.per_epoch = -(-len(tr) // recipe.batch_size)
        self._x = np.empty((recipe.rows, PIXELS), np.float32)
        self._shm: SharedMemory | None = None
        self._proc: Any = None
        self._ready: Any = None
        self._free: Any = None

    def batches(self, epoch: int, start: int) -> Iterator[tuple[F, NDArray[np.uint8], int]]:
        """(images, labels of the digits, non-digits) for the epoch's batches from `start`.

        The images are a view into a buffer that the next batch reuses.
        """
        perm = permutation(self.r.seed, epoch, self.tr)
        bs = self.r.batch_size
        if not self.r.busy:
            for b in range(start, self.per_epoch):
                idx = perm[b * bs : (b + 1) * bs]
                x = self._x[: len(idx)]
                np.multiply(self.images[idx], np.float32(1 / 255), out=x)
                yield x, self.labels[idx], 0
            return
        if self._proc is None:
            self._start(epoch, start)
        slots = self._slots()
        for b in range(start, self.per_epoch):
            slot, m = self._get(epoch, b)
            idx = perm[b * bs : (b + 1) * bs]
            try:
                yield slots[slot][:m], self.labels[idx], m - len(idx)
            finally:
                self._free.put(slot)

    def _slots(self) -> list[F]:
        assert self._shm is not None
        n = AHEAD + 2
        arr = np.ndarray((n, self.r.rows, PIXELS), np.float32, buffer=self._shm.buf)
        return list(arr)

    def _start(self, epoch: int, start: int) -> None:
        from mnist_infer.train import _ignoring_interrupts

        ctx = get_context("spawn")
        n = AHEAD + 2
        self._shm = SharedMemory(create=True, size=n * self.r.rows * PIXELS * 4)
        self._ready, self._free = ctx.Queue(), ctx.Queue()
        for s in range(n):
            self._free.put(s)
        args = (self.r, self.images, self.tr, self._shm.name, epoch, start)
        self._proc = ctx.Process(
            target=_work, args=(*args, self._ready, self._free), daemon=True, name="batches"
        )
        with _ignoring_interrupts():  # Ctrl-C is the training loop's to handle
            self._proc.start()

    def _get(self, epoch: int, batch: int) -> tuple[int, int]:
        while True:
            try:
                msg = self._ready.get(timeout=1.0)
                break
            except queue.Empty:
                if not self._proc.is_alive():
                    raise RuntimeError(
                        f"the batch worker stopped (exit code {self._proc.exitcode})"
                    ) from None
        if msg[0] == "error":
            raise RuntimeError(f"the batch worker failed:\n{msg[1]}")
        _, e, b, slot, m = msg
        assert (e, b) == (epoch, batch), f"batch {(e, b)} came for {(epoch, batch)}"
        return slot, m

    def close(self) -> None:
        """Stop the worker and free the shared memory."""
        if self._proc is not None:
            self._proc.terminate()
            self._proc.join()
            self._proc = None
        for q in (self._ready, self._free):
            if q is not None:
                q.close()
                q.join_thread()
        self._ready = self._free = None
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
    ready: Any,
    free: Any,
) -> None:
    """The worker: every batch from (epoch, start) on, in order, until stopped."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    shm = SharedMemory(name=shm_name)
    slots = np.ndarray((AHEAD + 2, r.rows, PIXELS), np.float32, buffer=shm.buf)
    try:
        pool = images[tr] if r.per_batch else None
        per_epoch = -(-len(tr) // r.batch_size)
        bs = r.batch_size
        while True:
            perm = permutation(r.seed, epoch, tr)
            for b in range(start, per_epoch):
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
