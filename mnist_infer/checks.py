"""Checks that arrays W1..Wn, b1..bn form a network's layers, finite in its dtype."""

from __future__ import annotations

import math
import reprlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from mnist_infer.errors import WeightsError

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

INPUTS = 784
OUTPUTS = 10


def _shape(a: np.ndarray) -> str:
    return str(tuple(a.shape))


def _ends(a: np.ndarray, dtype: np.dtype | None = None) -> tuple[float, float]:
    """a's maximum and minimum as floats (once converted to dtype, if given)."""
    if dtype is not None:
        with np.errstate(over="ignore"):  # too large for dtype: inf, which is the answer
            a = a.astype(dtype)
    return float(a.max()), float(a.min())


def _check_finite(a: np.ndarray, name: str, dtype: np.dtype) -> tuple[float, float]:
    """a's maximum and minimum; WeightsError unless a is finite, also in the network's dtype."""
    # The usual case, fast: NaN spreads to the maximum, and an inf is the maximum or minimum.
    if a.size:
        ends = _ends(a)
        if all(map(math.isfinite, ends)) and (
            a.dtype == dtype or all(map(math.isfinite, _ends(a, dtype)))
        ):
            return ends
    bad = a.size - int(np.count_nonzero(np.isfinite(a)))
    if bad:
        raise WeightsError(
            f"{name} holds {bad} non-finite value{'s' * (bad > 1)} (NaN or inf),"
            " expected finite numbers"
        )
    with np.errstate(over="ignore"):
        big = a.size - int(np.count_nonzero(np.isfinite(a.astype(dtype, copy=False))))
    if big:
        top, limit = float(np.abs(a).max()), float(np.finfo(dtype).max)
        raise WeightsError(
            f"{name} holds {big} value{'s' * (big > 1)} too large for {dtype}"
            f" (largest magnitude {top:.3g}), expected magnitudes up to {limit:.3g}"
        )
    return _ends(a) if a.size else (0.0, 0.0)


def check_params(
    params: object,
    source: str,
    *,
    inputs: int | None = INPUTS,
    outputs: int | None = OUTPUTS,
    dtype: DTypeLike = np.float32,
) -> int:
    """Check W1..Wn, b1..bn form a chain of layers, finite in `dtype`; return n or raise."""
    dt = np.dtype(dtype)
    if not isinstance(params, Mapping):
        raise WeightsError(
            f"{source}: expected a dict of arrays W1..Wn, b1..bn, found {type(params).__name__}"
        )
    n = 0
    while f"W{n + 1}" in params:
        n += 1
    if n == 0:
        found = _some(sorted(_show(k) for k in params)) or "none"
        raise WeightsError(
            f"{source}: missing key 'W1' (expected arrays W1..Wn and b1..bn, found keys: {found})"
        )
    names = [f"{c}{i}" for i in range(1, n + 1) for c in "Wb"]
    want = f"W1..W{n} and b1..b{n}" if n > 1 else "W1 and b1"
    for k in names:
        if k not in params:
            raise WeightsError(f"{source}: missing key {k!r} (expected {want})")
    for k in params:
        if k not in names:
            raise WeightsError(f"{source}: unexpected key {_show(k)} (expected only {want})")
    prev: np.ndarray | None = None
    for i in range(1, n + 1):
        w, b = params[f"W{i}"], params[f"b{i}"]
        for k, a in ((f"W{i}", w), (f"b{i}", b)):
            if not isinstance(a, np.ndarray):
                raise WeightsError(f"{source}: {k} is a {type(a).__name__}, expected a numpy array")
            if not np.issubdtype(a.dtype, np.floating):
                raise WeightsError(
                    f"{source}: {k} has dtype {a.dtype}, expected a real floating dtype"
                    " (float32 or float64)"
                )
        if w.ndim != 2 or 0 in w.shape:
            raise WeightsError(
                f"{source}: W{i} has shape {_shape(w)}, expected a non-empty 2-D array"
                " (inputs, outputs)"
            )
        if prev is not None and w.shape[0] != prev.shape[1]:
            raise WeightsError(
                f"{source}: W{i} has shape {_shape(w)}, expected ({prev.shape[1]}, *)"
                f" to follow W{i - 1} {_shape(prev)}"
            )
        if i == 1 and inputs is not None and w.shape[0] != inputs:
            raise WeightsError(
                f"{source}: W1 has shape {_shape(w)}, expected ({inputs}, *): one row per pixel"
            )
        if i == n and outputs is not None and w.shape[1] != outputs:
            raise WeightsError(
                f"{source}: W{i} has shape {_shape(w)}, expected (*, {outputs}):"
                " one column per digit"
            )
        if b.shape != (w.shape[1],):
            raise WeightsError(
                f"{source}: b{i} has shape {_shape(b)}, expected ({w.shape[1]},)"
                f" to match W{i} {_shape(w)}"
            )
        w_ends = _check_finite(w, f"{source}: W{i}", dt)
        b_ends = _check_finite(b, f"{source}: b{i}", dt)
        _check_range(w, b, f"{source}: W{i} and b{i}", dt, w_ends, b_ends)
        prev = w
    return n


def _some(items: Iterable[str], most: int = 10) -> str:
    """The first `most` items joined by commas, then how many more there are."""
    items = list(items)
    more = f", …and {len(items) - most:,} more" if len(items) > most else ""
    return ", ".join(items[:most]) + more


def _check_range(
    w: np.ndarray,
    b: np.ndarray,
    name: str,
    dtype: np.dtype,
    w_ends: tuple[float, float],
    b_ends: tuple[float, float],
) -> None:
    """Raise WeightsError if a unit's input can overflow `dtype` (ends: (max, min) of w, b).

    Every layer's inputs lie in [0, 1] (pixels, then sigmoids), so no unit's weighted sum,
    in whatever order it is added up, exceeds the sum of |w| over its column plus |b|.
    """
    limit = float(np.finfo(dtype).max)
    # Each column's sum is at most rows times the largest |w|: far below the limit, it passes.
    most = max(map(abs, w_ends)) * w.shape[0] + max(map(abs, b_ends))
    if 2 * most <= limit:
        return
    with np.errstate(over="ignore"):
        top = float((np.abs(w).sum(axis=0, dtype=np.float64) + np.abs(b)).max())
    if not top <= limit:
        raise WeightsError(
            f"{name} can make a unit's input as large as {top:.3g} (the sum of |weights|"
            f" plus |bias|), expected at most {limit:.3g} so that {dtype} does not overflow"
        )


def _show(obj: object) -> str:
    """A short repr of a key, even an int too long to print."""
    try:
        return reprlib.repr(obj)
    except ValueError:  # int too long to convert to text, perhaps inside a container
        return f"<{type(obj).__name__} too long to show>"
