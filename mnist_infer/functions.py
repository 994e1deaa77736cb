"""The book's activation and loss functions, numerically stable, batched over the first axis.

`step_function`, `sigmoid`, `relu`, `identity_function` and `softmax` take a number or an array
of any shape, as the chapter-3 code calls them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

    Array = NDArray[np.floating]


def _exp_limit(dtype: np.dtype) -> float:
    """Largest |x| for which exp(x) is finite in this float type."""
    return float(np.floor(np.log(np.finfo(dtype).max)))


def step_function(x: ArrayLike) -> Any:
    """1 where x > 0, else 0, as ints: an int for a number, an int array for an array."""
    y = np.asarray(x) > 0
    return y.astype(int) if y.ndim else int(y)


def identity_function(x: Any) -> Any:
    """x unchanged (the output layer's activation for regression)."""
    return x


def relu(x: ArrayLike) -> Any:
    """max(0, x)."""
    return np.maximum(0, x)


def sigmoid(x: ArrayLike) -> Any:
    """1 / (1 + exp(-x)), without overflow for any finite x."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    # Clipping where exp would overflow keeps the textbook's formula (and its exact
    # rounding) everywhere else; the clipped values are 0 or 1 to within 1e-38.
    lim = _exp_limit(x.dtype)
    return 1 / (1 + np.exp(-np.clip(x, -lim, lim)))


def softmax(x: ArrayLike) -> Any:
    """Softmax of a vector, or of each row; subtracting the max keeps exp from overflowing."""
    x = np.asarray(x)
    z = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=-1, keepdims=True)


def cross_entropy_error(y: Array, t: NDArray) -> float:
    """Mean cross-entropy of probabilities y against labels t (one-hot or class indices)."""
    if y.ndim == 1:
        y = y.reshape(1, -1)
        t = np.asarray(t).reshape(1, -1) if np.ndim(t) == 1 and np.size(t) == y.size else t
    t = np.asarray(t)
    if t.size == y.size:
        t = t.argmax(axis=1)
    n = y.shape[0]
    eps = np.finfo(y.dtype).tiny
    return float(-np.sum(np.log(y[np.arange(n), t] + eps)) / n)
