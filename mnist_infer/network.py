"""The textbook's multi-layer perceptron: sigmoid hidden layers, softmax output."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from mnist_infer.errors import UsageError
from mnist_infer.layers import Affine, Layer, Sigmoid, SoftmaxWithLoss
from mnist_infer.weights import check_params

Array = NDArray[np.floating]


class Network:
    """Affine -> Sigmoid -> ... -> Affine -> softmax, built from W1..Wn and b1..bn."""

    def __init__(self, params: Mapping[str, ArrayLike], dtype: DTypeLike = np.float32) -> None:
        n = check_params(params, "network parameters", inputs=None, outputs=None)
        self.dtype = np.dtype(dtype)
        # Own C-ordered copies: training updates them in place through `params`.
        self.affines = [
            Affine(
                np.array(params[f"W{i}"], dtype=self.dtype, order="C"),
                np.array(params[f"b{i}"], dtype=self.dtype, order="C"),
            )
            for i in range(1, n + 1)
        ]
        self.layers: list[Layer] = []
        for a in self.affines:
            self.layers += [a, Sigmoid()]
        self.layers.pop()
        self.last = SoftmaxWithLoss()

    @property
    def params(self) -> dict[str, Array]:
        """The live parameter arrays W1..Wn, b1..bn (update them in place)."""
        out: dict[str, Array] = {}
        for i, a in enumerate(self.affines, 1):
            out[f"W{i}"] = a.params["W"]
            out[f"b{i}"] = a.params["b"]
        return out

    @property
    def sizes(self) -> list[int]:
        """Units per layer, inputs first, e.g. [784, 50, 100, 10]."""
        return [self.affines[0].params["W"].shape[0]] + [
            a.params["W"].shape[1] for a in self.affines
        ]

    def logits(self, x: ArrayLike) -> Array:
        """Scores before the softmax for inputs x (n, inputs)."""
        out = np.asarray(x, dtype=self.dtype)
        for layer in self.layers:
            out = layer.forward(out)
        return out

    def predict(self, x: ArrayLike) -> Array:
        """Class probabilities (n, classes) for inputs x (n, inputs) scaled to [0, 1]."""
        return self.last.forward(self.logits(x))

    def loss(self, x: ArrayLike, t: ArrayLike) -> float:
        """Mean cross-entropy against labels t (class indices or one-hot)."""
        return self.last.loss(self.logits(x), np.asarray(t))

    def gradient(self, x: ArrayLike, t: ArrayLike) -> dict[str, Array]:
        """Gradients of `loss` by backpropagation, keyed like `params`."""
        self.loss(x, t)
        dout = self.last.backward()
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        grads: dict[str, Array] = {}
        for i, a in enumerate(self.affines, 1):
            grads[f"W{i}"] = a.grads["W"]
            grads[f"b{i}"] = a.grads["b"]
        return grads

    def accuracy(self, x: ArrayLike, t: ArrayLike) -> float:
        """Share of inputs whose most probable class is the label (indices or one-hot)."""
        t = np.asarray(t)
        if t.ndim == 2:
            t = t.argmax(axis=1)
        return float(np.mean(self.predict(x).argmax(axis=1) == t))

    def classify(
        self,
        images: ArrayLike,
        batch_size: int = 100,
        on_batch: Callable[[int], object] | None = None,
    ) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
        """Labels and their probabilities for uint8 images (n, inputs), batch by batch.

        Computes exactly what `predict(images / 255)` does, in place in buffers reused across
        batches; `on_batch(count)` is called after each batch (for a progress bar).
        """
        x = np.asarray(images)
        d = self.sizes[0]
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != d:
            raise UsageError(
                f"classify needs uint8 images of shape (n, {d}), found {x.dtype} {x.shape}"
            )
        if batch_size < 1:
            raise UsageError(f"batch size must be at least 1, found {batch_size}")
        n = len(x)
        labels = np.empty(n, dtype=np.intp)
        conf = np.empty(n, dtype=np.float32)
        bs = max(1, min(batch_size, n))
        dt = self.dtype
        xs = np.empty((bs, d), dtype=dt)
        hs = [np.empty((bs, a.params["W"].shape[1]), dtype=dt) for a in self.affines]
        ws = [(a.params["W"], a.params["b"]) for a in self.affines]
        top = np.empty(bs, dtype=dt)
        total = np.empty(bs, dtype=dt)
        last = len(ws) - 1
        # exp(-a) overflows to inf for very negative a; 1 / (1 + inf) is then exactly 0.
        with np.errstate(over="ignore"):
            for start in range(0, n, bs):
                m = min(bs, n - start)
                h = xs[:m]
                np.divide(x[start : start + m], 255.0, out=h, dtype=dt)
                for k, (w, b) in enumerate(ws):
                    a = hs[k][:m]
                    np.matmul(h, w, out=a)
                    np.add(a, b, out=a)
                    if k < last:
                        np.negative(a, out=a)
                        np.exp(a, out=a)
                        np.add(a, 1, out=a)
                        np.reciprocal(a, out=a)
                    h = a
                # Softmax: exp(a - max) peaks at exactly 1, so the top probability is 1 / sum.
                mx = top[:m]
                np.max(h, axis=1, out=mx)
                np.subtract(h, mx[:, None], out=h)
                np.exp(h, out=h)
                s = total[:m]
                np.sum(h, axis=1, out=s)
                np.argmax(h, axis=1, out=labels[start : start + m])
                np.divide(1, s, out=conf[start : start + m])
                if on_batch is not None:
                    on_batch(m)
        return labels, conf
