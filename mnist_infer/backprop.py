"""The training kernel: forward and backward passes of the sigmoid MLP in preallocated buffers.

All arrays are float32 and every step writes into buffers made once for the largest batch,
so a training step allocates nothing of the batch's size. The input layer's gradient with
respect to the images is never needed and never computed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

    F = NDArray[np.float32]

CLASSES = 10


class Backprop:
    """Gradients of the mean loss over a batch: cross-entropy for digits, and for non-digits
    cross-entropy against the uniform distribution over the classes (mean of -log softmax)."""

    def __init__(self, params: dict[str, F], rows: int) -> None:
        """params: the live W1..Wn, b1..bn (float32, updated in place by the optimizer)."""
        n = len(params) // 2
        self.W = [params[f"W{i}"] for i in range(1, n + 1)]
        self.b = [params[f"b{i}"] for i in range(1, n + 1)]
        for a in (*self.W, *self.b):
            if a.dtype != np.float32 or not a.flags.c_contiguous:
                raise ValueError("training needs C-ordered float32 parameters")
        self.rows = rows
        f32 = np.float32
        self.grads: dict[str, F] = {k: np.zeros_like(v) for k, v in params.items()}
        self.gW = [self.grads[f"W{i}"] for i in range(1, n + 1)]
        self.gb = [self.grads[f"b{i}"] for i in range(1, n + 1)]
        widths = [w.shape[1] for w in self.W]
        self.h = [np.empty((rows, k), f32) for k in widths]  # activations; the last: logits
        self.d = [np.empty((rows, k), f32) for k in widths]  # deltas (dL/d pre-activation)
        self.s = [np.empty((rows, k), f32) for k in widths[:-1]]  # scratch: y * (1 - y)
        self.top = np.empty(rows, f32)
        self.total = np.empty(rows, f32)
        self.row_loss = np.empty(rows, f32)
        self.pred = np.empty(rows, np.intp)
        self.ar = np.arange(rows)

    def forward(self, x: F) -> F:
        """Logits for x (rows, inputs) float32, in self.h[-1] (a view of it is returned)."""
        m = len(x)
        a = x
        with np.errstate(over="ignore"):  # exp(-a) = inf for very negative a: sigmoid 0
            for i, (W, b) in enumerate(zip(self.W, self.b, strict=True)):
                h = self.h[i][:m]
                np.matmul(a, W, out=h)
                h += b
                if i < len(self.W) - 1:
                    np.negative(h, out=h)
                    np.exp(h, out=h)
                    h += 1
                    np.reciprocal(h, out=h)
                a = h
        return a

    def gradient(
        self, x: F, labels: NDArray[np.integer], outliers: int = 0
    ) -> tuple[float, int, float]:
        """Fill self.grads for x: the digits labelled first, then `outliers` non-digits.

        Returns the sum of the digits' losses, how many digits were classified right, and the
        sum of the non-digits' losses; the gradients are those of the mean over all rows.
        """
        m = len(x)
        nd = m - outliers
        z = self.forward(x)
        d = self.d[-1][:m]
        top, total, loss = self.top[:m], self.total[:m], self.row_loss[:m]
        # softmax and log-sum-exp, shifted by the row maximum
        np.max(z, axis=1, out=top)
        np.subtract(z, top[:, None], out=d)
        np.exp(d, out=d)
        np.sum(d, axis=1, out=total)
        d /= total[:, None]
        np.log(total, out=total)
        total += top  # now logsumexp(z)
        ar = self.ar[:nd]
        np.subtract(total[:nd], z[ar, labels], out=loss[:nd])
        d[ar, labels] -= 1
        if outliers:
            np.mean(z[nd:], axis=1, out=loss[nd:])
            np.subtract(total[nd:], loss[nd:], out=loss[nd:])
            d[nd:] -= np.float32(1 / CLASSES)
        d *= np.float32(1 / m)
        np.argmax(z[:nd], axis=1, out=self.pred[:nd])
        hits = int(np.count_nonzero(self.pred[:nd] == labels))
        digit_loss = float(loss[:nd].sum(dtype=np.float64))
        other_loss = float(loss[nd:].sum(dtype=np.float64))
        self.backward(x, m)
        return digit_loss, hits, other_loss

    def backward(self, x: F, m: int) -> None:
        """Gradients from the output deltas in self.d[-1][:m] back to the first layer's weights."""
        for i in range(len(self.W) - 1, -1, -1):
            d = self.d[i][:m]
            a = x if i == 0 else self.h[i - 1][:m]
            np.matmul(a.T, d, out=self.gW[i])
            np.sum(d, axis=0, out=self.gb[i])
            if i:
                below, y, s = self.d[i - 1][:m], self.h[i - 1][:m], self.s[i - 1][:m]
                np.matmul(d, self.W[i].T, out=below)
                np.multiply(y, y, out=s)
                np.subtract(y, s, out=s)  # sigmoid' = y (1 - y)
                below *= s


def logits(params: dict[str, NDArray[np.float32]], images: NDArray[Any], chunk: int = 1000) -> F:
    """The network's output scores (n, 10) float32 for images (n, 784) with values 0..255."""
    kernel = Backprop(params, min(chunk, max(len(images), 1)))
    out = np.empty((len(images), kernel.W[-1].shape[1]), np.float32)
    x = np.empty((kernel.rows, images.shape[1]), np.float32)
    for i in range(0, len(images), chunk):
        part = images[i : i + chunk]
        xs = x[: len(part)]
        np.multiply(part, np.float32(1 / 255), out=xs)
        out[i : i + len(part)] = kernel.forward(xs)
    return out
