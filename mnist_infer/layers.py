"""Layers in the textbook's style: `params`, `forward`, `backward` and `grads`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mnist_infer.functions import cross_entropy_error, sigmoid, softmax

if TYPE_CHECKING:
    from numpy.typing import NDArray

    Array = NDArray[np.floating]


class Layer:
    """A step of the network; layers without parameters keep `params` and `grads` empty."""

    def __init__(self) -> None:
        self.params: dict[str, Array] = {}
        self.grads: dict[str, Array] = {}

    def forward(self, x: Array) -> Array:
        """Output for input x (and remember what backward needs)."""
        raise NotImplementedError

    def backward(self, dout: Array) -> Array:
        """Gradient with respect to the input; fills `grads` for the parameters."""
        raise NotImplementedError


class Affine(Layer):
    """x @ W + b."""

    def __init__(self, W: Array, b: Array) -> None:
        super().__init__()
        self.params = {"W": W, "b": b}
        self.x: Array | None = None

    def forward(self, x: Array) -> Array:
        """x @ W + b."""
        self.x = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, dout: Array) -> Array:
        """dL/dx, with dL/dW and dL/db stored in `grads`."""
        assert self.x is not None, "backward before forward"
        self.grads = {"W": self.x.T @ dout, "b": dout.sum(axis=0)}
        return dout @ self.params["W"].T


class Sigmoid(Layer):
    """Logistic sigmoid."""

    def __init__(self) -> None:
        super().__init__()
        self.out: Array | None = None

    def forward(self, x: Array) -> Array:
        """1 / (1 + exp(-x))."""
        self.out = sigmoid(x)
        return self.out

    def backward(self, dout: Array) -> Array:
        """dout * y * (1 - y)."""
        assert self.out is not None, "backward before forward"
        return dout * self.out * (1 - self.out)


class Relu(Layer):
    """max(0, x)."""

    def __init__(self) -> None:
        super().__init__()
        self.mask: NDArray[np.bool_] | None = None

    def forward(self, x: Array) -> Array:
        """max(0, x)."""
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout: Array) -> Array:
        """dout where x > 0, else 0."""
        assert self.mask is not None, "backward before forward"
        dx = dout.copy()
        dx[self.mask] = 0
        return dx


class Softmax(Layer):
    """Row-wise softmax (inference only)."""

    def forward(self, x: Array) -> Array:
        """Class probabilities."""
        return softmax(x)


class SoftmaxWithLoss(Layer):
    """Softmax followed by mean cross-entropy; its backward is simply (y - t) / n."""

    def __init__(self) -> None:
        super().__init__()
        self.y: Array | None = None
        self.t: NDArray | None = None

    def forward(self, x: Array, t: NDArray | None = None) -> Array:
        """Probabilities for x; with labels t call `loss` instead."""
        self.y = softmax(x)
        self.t = t
        return self.y

    def loss(self, x: Array, t: NDArray) -> float:
        """Mean cross-entropy of softmax(x) against labels t (indices or one-hot)."""
        self.forward(x, t)
        assert self.y is not None
        return cross_entropy_error(self.y, t)

    def backward(self, dout: Array | float = 1.0) -> Array:
        """(softmax(x) - t) / batch size, times dout."""
        assert self.y is not None and self.t is not None, "backward before loss"
        n = self.y.shape[0]
        dx = self.y.copy()
        t = np.asarray(self.t)
        if t.size == dx.size:
            dx -= t.astype(dx.dtype)
        else:
            dx[np.arange(n), t] -= 1
        return dx * (np.asarray(dout, dtype=dx.dtype) / n)
