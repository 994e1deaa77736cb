"""Parameter update rules in the textbook's style: `update(params, grads)` in place.

The updates run in place on float32 arrays with one scratch array per parameter, so a step
allocates nothing of the parameters' size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

    Params = dict[str, NDArray[np.floating]]


class Optimizer:
    """Base class; `state` holds arrays to checkpoint, `step` counts updates."""

    def __init__(self, lr: float, weight_decay: float = 0.0) -> None:
        self.lr = lr
        self.weight_decay = weight_decay
        self.step = 0
        self.state: dict[str, NDArray[np.floating]] = {}
        self._scratch: dict[str, NDArray[np.floating]] = {}

    def update(self, params: Params, grads: Params, lr: float | None = None) -> None:
        """Apply one step; lr overrides the base rate (for schedules)."""
        self.step += 1
        lr = self.lr if lr is None else lr
        for k, p in params.items():
            g = grads[k]
            t = self._tmp(k, p)
            if self.weight_decay and k.startswith("W"):  # L2 penalty on weights, not biases
                g2 = self._tmp("wd." + k, p)
                np.multiply(p, p.dtype.type(self.weight_decay), out=g2)
                g2 += g
                g = g2
            self._apply(k, p, g, lr, t)

    def _apply(self, k: str, p: NDArray, g: NDArray, lr: float, t: NDArray) -> None:
        """Update p from its gradient g; t is scratch of p's shape and type."""
        raise NotImplementedError

    def _slot(self, name: str, like: NDArray) -> NDArray:
        if name not in self.state:
            self.state[name] = np.zeros_like(like)
        return self.state[name]

    def _tmp(self, name: str, like: NDArray) -> NDArray:
        t = self._scratch.get(name)
        if t is None or t.shape != like.shape or t.dtype != like.dtype:
            t = self._scratch[name] = np.empty_like(like)
        return t


class SGD(Optimizer):
    """p -= lr * g."""

    def _apply(self, k: str, p: NDArray, g: NDArray, lr: float, t: NDArray) -> None:
        np.multiply(g, p.dtype.type(lr), out=t)
        p -= t


class Momentum(Optimizer):
    """v = m*v - lr*g; p += v."""

    def __init__(self, lr: float, weight_decay: float = 0.0, momentum: float = 0.9) -> None:
        super().__init__(lr, weight_decay)
        self.momentum = momentum

    def _apply(self, k: str, p: NDArray, g: NDArray, lr: float, t: NDArray) -> None:
        v = self._slot("v." + k, p)
        v *= p.dtype.type(self.momentum)
        np.multiply(g, p.dtype.type(lr), out=t)
        v -= t
        p += v


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction."""

    def __init__(
        self, lr: float, weight_decay: float = 0.0, beta1: float = 0.9, beta2: float = 0.999
    ) -> None:
        super().__init__(lr, weight_decay)
        self.beta1, self.beta2 = beta1, beta2

    def _apply(self, k: str, p: NDArray, g: NDArray, lr: float, t: NDArray) -> None:
        f = p.dtype.type
        m = self._slot("m." + k, p)
        v = self._slot("v." + k, p)
        np.subtract(g, m, out=t)  # m += (1 - beta1) (g - m)
        t *= f(1 - self.beta1)
        m += t
        np.multiply(g, g, out=t)  # v += (1 - beta2) (g^2 - v)
        t -= v
        t *= f(1 - self.beta2)
        v += t
        a = lr * np.sqrt(1 - self.beta2**self.step) / (1 - self.beta1**self.step)
        np.sqrt(v, out=t)  # p -= a m / (sqrt(v) + eps)
        t += f(1e-8)
        np.divide(m, t, out=t)
        t *= f(a)
        p -= t


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "momentum": Momentum, "adam": Adam}
