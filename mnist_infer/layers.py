"""Layers as in the book's sequel: `params` and `grads` are lists, `forward` and `backward`.

Each layer keeps its parameters in `params` (Affine: [W, b]) and their gradients, in the same
order, in `grads`; backward writes the gradients into those arrays in place, so a list
gathered once (`params += layer.params`) stays valid. The first book's names work too:
`Affine.W`, `.b`, `.dW`, `.db`, and `SoftmaxWithLoss.forward(x, t)` returns the loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mnist_infer.functions import cross_entropy_error, sigmoid, softmax

if TYPE_CHECKING:
    from numpy.typing import NDArray

    Array = NDArray[np.floating]


class Layer:
    """A step of a network; layers without parameters keep `params` and `grads` empty."""

    def __init__(self) -> None:
        self.params: list[Array] = []
        self.grads: list[Array] = []

    def forward(self, x: Array) -> Array:
        """Output for input x (and remember what backward needs)."""
        raise NotImplementedError

    def backward(self, dout: Array) -> Array:
        """Gradient with respect to the input; fills `grads` for the parameters."""
        raise NotImplementedError


class Affine(Layer):
    """x @ W + b; params [W, b], grads [dW, db]."""

    def __init__(self, W: Array, b: Array) -> None:
        super().__init__()
        self.params = [W, b]
        self.grads = [np.zeros_like(W), np.zeros_like(b)]
        self.x: Array | None = None

    @property
    def W(self) -> Array:
        """The weights, params[0]."""
        return self.params[0]

    @property
    def b(self) -> Array:
        """The bias, params[1]."""
        return self.params[1]

    @property
    def dW(self) -> Array:
        """The weights' gradient from the last backward, grads[0]."""
        return self.grads[0]

    @property
    def db(self) -> Array:
        """The bias's gradient from the last backward, grads[1]."""
        return self.grads[1]

    def forward(self, x: Array) -> Array:
        """x @ W + b; images of shape (n, 1, 28, 28) are flattened to (n, 784) first."""
        W, b = self.params
        if x.ndim > 2:
            x = x.reshape(len(x), -1)
        self.x = x
        return x @ W + b

    def backward(self, dout: Array) -> Array:
        """dL/dx; dL/dW and dL/db go into `grads` (in place)."""
        assert self.x is not None, "backward before forward"
        W, _ = self.params
        x = self.x.reshape(1, -1) if self.x.ndim == 1 else self.x
        d = dout.reshape(1, -1) if dout.ndim == 1 else dout
        self.grads[0][...] = x.T @ d
        self.grads[1][...] = np.sum(d, axis=0)
        return dout @ W.T


class Sigmoid(Layer):
    """Logistic sigmoid; no parameters."""

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
        return dout * (1.0 - self.out) * self.out


class Relu(Layer):
    """max(0, x); no parameters."""

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
    """Softmax of each row (the output layer at inference); no parameters."""

    def forward(self, x: Array) -> Array:
        """Class probabilities."""
        out: Array = softmax(x)
        return out


class SoftmaxWithLoss(Layer):
    """Softmax, then the mean cross-entropy; its backward is simply (y - t) / n."""

    def __init__(self) -> None:
        super().__init__()
        self.loss: float | None = None
        self.y: Array | None = None  # the probabilities
        self.t: NDArray | None = None  # the labels as given: class indices or one-hot

    def forward(self, x: Array, t: NDArray) -> float:  # type: ignore[override]
        """The loss of scores x against labels t (class indices or one-hot rows)."""
        self.t = np.asarray(t)
        self.y = softmax(x)
        self.loss = cross_entropy_error(self.y, self.t)
        return self.loss

    def backward(self, dout: Array | float = 1.0) -> Array:
        """(softmax(x) - t) / batch size, times dout."""
        assert self.y is not None and self.t is not None, "backward before forward"
        y = self.y.reshape(1, -1) if self.y.ndim == 1 else self.y
        n = len(y)
        dx = y.copy()
        t = self.t
        if t.size == dx.size:
            dx -= t.reshape(dx.shape).astype(dx.dtype)
        else:
            dx[np.arange(n), t.reshape(-1)] -= 1
        dx *= np.asarray(dout, dtype=dx.dtype) / n
        return dx.reshape(self.y.shape)
