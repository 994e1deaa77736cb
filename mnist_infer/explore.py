"""What each unit of the network does: the forward pass step by step, one unit's weights, an order.

Layers are numbered as the weights are: layer L is computed by W_L and b_L (layer 1 is the
first hidden layer, the last one is the output); units are numbered from 0.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import numpy as np

from mnist_infer.errors import NoSuchUnitError, UsageError
from mnist_infer.functions import sigmoid, softmax

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

    from mnist_infer.network import Network

    Array = NDArray[np.floating]

DECIMALS = 6  # what the JSON answers keep: float32 has about 7 significant digits


def forward(net: Network, x: ArrayLike) -> tuple[list[Array], list[Array]]:
    """The pre-activations a1..an and the activations z1..z(n-1), y of the input rows x."""
    z = np.asarray(x, dtype=net.dtype)
    pre: list[Array] = []
    post: list[Array] = []
    last = len(net.affines) - 1
    for i, affine in enumerate(net.affines):
        a = z @ affine.W + affine.b
        z = softmax(a) if i == last else sigmoid(a)
        pre.append(a)
        post.append(z)
    return pre, post


def steps(sizes: list[int]) -> list[dict[str, Any]]:
    """The forward pass in the book's notation: one step per quantity, from x to y."""
    out: list[dict[str, Any]] = [{"name": "x", "op": "input", "shape": [1, sizes[0]]}]
    n = len(sizes) - 1
    below = "x"
    for i in range(1, n + 1):
        out.append(
            {
                "name": f"a{i}",
                "op": f"{below} · W{i} + b{i}",
                "shape": [1, sizes[i]],
                "weights": [sizes[i - 1], sizes[i]],
            }
        )
        name, op = (f"z{i}", "sigmoid") if i < n else ("y", "softmax")
        out.append({"name": name, "op": f"{op}(a{i})", "shape": [1, sizes[i]]})
        below = name
    return out


def leanings(net: Network) -> list[Array]:
    """For each hidden layer, (units, outputs): its weights followed on to the output scores.

    The product W_(L+1) · … · W_n, which ignores the sigmoids in between: a rough measure of
    how much each unit pushes each digit's score up (positive) or down (negative).
    """
    ws = [a.W.astype(np.float64) for a in net.affines]
    out: list[Array] = [ws[-1]]
    for w in reversed(ws[1:-1]):
        out.insert(0, w @ out[0])
    return out


def pixel_view(net: Network, layer: int, unit: int) -> Array:
    """A unit's incoming weights followed back to the pixels: W_1 · … · W_L[:, unit].

    For layer 1 these are its own weights; deeper, a rough picture (the sigmoids ignored)
    of the input that raises the unit's pre-activation most.
    """
    v = net.affines[layer - 1].W[:, unit].astype(np.float64)
    for affine in reversed(net.affines[: layer - 1]):
        v = affine.W @ v
    return v


def unit_order(leaning: Array) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Each unit's favourite digit (the one it pushes up most), and the units grouped by it,
    the strongest pushers first within each group."""
    favours = leaning.argmax(axis=1)
    strength = leaning.max(axis=1)
    return favours, np.lexsort((-strength, favours))


def layers(net: Network) -> list[dict[str, Any]]:
    """The hidden layers for /api/info: each unit's favourite digit and the units in order."""
    out = []
    for layer, leaning in enumerate(leanings(net), 1):
        favours, order = unit_order(leaning)
        out.append(
            {
                "layer": layer,
                "units": len(favours),
                "favours": favours.tolist(),
                "order": order.tolist(),
            }
        )
    return out


def unit_info(net: Network, layer: int, unit: int) -> dict[str, Any]:
    """Everything about one unit: bias, incoming and outgoing weights, its rough leanings."""
    sizes = net.sizes
    n = len(sizes) - 1
    check_unit(sizes, layer, unit)
    affine = net.affines[layer - 1]
    info: dict[str, Any] = {
        "layer": layer,
        "unit": unit,
        "bias": rounded(affine.b[unit]),
        "incoming": rounded(affine.W[:, unit]),
        "outgoing": [],
        "pixels": rounded(pixel_view(net, layer, unit)),
        "digits": None,
    }
    if layer < n:
        w = net.affines[layer].W[unit].astype(np.float64)
        strongest = np.argsort(-np.abs(w), kind="stable")
        info["outgoing"] = [{"unit": int(k), "weight": rounded(w[k])} for k in strongest]
        info["digits"] = rounded(leanings(net)[layer - 1][unit])
    return info


def check_unit(sizes: list[int], layer: int, unit: int) -> None:
    """NoSuchUnitError unless the network has this layer and unit."""
    n = len(sizes) - 1
    if not 1 <= layer <= n:
        raise NoSuchUnitError(f"no layer {layer}: the network's layers are 1 to {n}")
    if not 0 <= unit < sizes[layer]:
        raise NoSuchUnitError(
            f"no unit {unit} in layer {layer}: its units are 0 to {sizes[layer] - 1}"
        )


_WHOLE = re.compile(r"[+-]?[0-9]{1,18}")


def parse_unit_query(query: str) -> tuple[int, int]:
    """(layer, unit) from a query string `layer=L&unit=J`; UsageError if it is malformed."""
    fields = parse_qs(query, keep_blank_values=True)
    values = []
    for key in ("layer", "unit"):
        got = fields.get(key)
        if got is None:
            raise UsageError(f"give the layer and the unit, as in ?layer=1&unit=0 (no {key})")
        if len(got) > 1:
            raise UsageError(f"give {key} once, found it {len(got)} times")
        if not _WHOLE.fullmatch(got[0]):
            shown = got[0] if len(got[0]) <= 40 else got[0][:40] + "…"
            raise UsageError(f"{key} must be a whole number, found {shown!r}")
        values.append(int(got[0]))
    return values[0], values[1]


def rounded(a: ArrayLike) -> Any:
    """Floats rounded as float64, so that each prints in as few digits as it can."""
    return np.round(np.asarray(a, dtype=np.float64), DECIMALS).tolist()
