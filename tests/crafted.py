"""Pickles made to order, for the tests of the weights loader."""

from __future__ import annotations

import numpy as np


class Call:
    """Pickles as fn(*args), then BUILD with state if given: any pickle, made to order."""

    def __init__(self, fn: object, *args: object, state: object = None) -> None:
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self) -> tuple[object, ...]:
        return (self.fn, self.args) if self.state is None else (self.fn, self.args, self.state)


# What numpy's pickles call to rebuild arrays and scalars.
RECONSTRUCT = np.zeros(1).__reduce__()[0]
SCALAR = np.float64(1).__reduce__()[0]
