"""Parameter update rules in the textbook's style: `update(params, grads)` in place."""

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

    def update(self, params: Params, grads: Params, lr: float | None = None) -> None:
        """Apply one step; lr overrides the base rate (for schedules)."""
        self.step += 1
        lr = self.lr if lr is None else lr
        for k, p in params.items():
            g = grads[k]
            if self.weight_decay and k.startswith("W"):
                g = g + self.weight_decay * p  # L2 penalty on weights only, not biases
            self._apply(k, p, g, lr)

    def _apply(self, k: str, p: NDArray, g: NDArray, lr: float) -> None:
        raise NotImplementedError

    def _slot(self, name: str, like: NDArray) -> NDArray:
        if name not in self.state:
            self.state[name] = np.zeros_like(like)
        return self.state[name]


class SGD(Optimizer):
    """p -= lr * g."""

    def _apply(self, k: str, p: NDArray, g: NDArray, lr: float) -> None:
        p -= (lr * g).astype(p.dtype)


class Momentum(Optimizer):
    """v = m*v - lr*g; p += v."""

    def __init__(self, lr: float, weight_decay: float = 0.0, momentum: float = 0.9) -> None:
        super().__init__(lr, weight_decay)
        self.momentum = momentum

    def _apply(self, k: str, p: NDArray, g: NDArray, lr: float) -> None:
        v = self._slot("v." + k, p)
        v *= self.momentum
        v -= lr * g
        p += v


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction."""

    def __init__(
        self, lr: float, weight_decay: float = 0.0, beta1: float = 0.9, beta2: float = 0.999
    ) -> None:
        super().__init__(lr, weight_decay)
        self.beta1, self.beta2 = beta1, beta2

    def _apply(self, k: str, p: NDArray, g: NDArray, lr: float) -> None:
        m = self._slot("m." + k, p)
        v = self._slot("v." + k, p)
        m += (1 - self.beta1) * (g - m)
        v += (1 - self.beta2) * (g * g - v)
        a = lr * np.sqrt(1 - self.beta2**self.step) / (1 - self.beta1**self.step)
        p -= (a * m / (np.sqrt(v) + 1e-8)).astype(p.dtype)


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "momentum": Momentum, "adam": Adam}
