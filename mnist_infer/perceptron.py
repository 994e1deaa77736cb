"""The book's logic gates as perceptrons: 1 when w1*x1 + w2*x2 + b > 0, else 0.

AND, NAND and OR differ only in their weights and bias; XOR, which no single perceptron can
draw, is two layers of them: AND(NAND(x1, x2), OR(x1, x2)).
"""

from __future__ import annotations

import numpy as np


def perceptron(x1: float, x2: float, w: tuple[float, float], b: float) -> int:
    """1 if the weighted sum of the inputs plus the bias is above 0, else 0."""
    x = np.array([x1, x2])
    tmp = np.sum(np.array(w) * x) + b
    return 0 if tmp <= 0 else 1


def AND(x1: float, x2: float) -> int:
    """1 only when both inputs are 1."""
    return perceptron(x1, x2, (0.5, 0.5), -0.7)


def NAND(x1: float, x2: float) -> int:
    """0 only when both inputs are 1."""
    return perceptron(x1, x2, (-0.5, -0.5), 0.7)


def OR(x1: float, x2: float) -> int:
    """1 when either input is 1."""
    return perceptron(x1, x2, (0.5, 0.5), -0.2)


def XOR(x1: float, x2: float) -> int:
    """1 when exactly one input is 1: a two-layer perceptron."""
    return AND(NAND(x1, x2), OR(x1, x2))
