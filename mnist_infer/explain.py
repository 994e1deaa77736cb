"""`mnist-infer explain`: one image's forward pass, step by step, as text or as JSON."""

from __future__ import annotations

import os
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from mnist_infer import explore
from mnist_infer.errors import ImageError

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from mnist_infer.image import Invert
    from mnist_infer.network import Network
    from mnist_infer.preprocess import Digit

STRONGEST = 3  # units named per step in the text
TOP_JSON = 5  # units listed per step in the JSON
FOR, AGAINST = 5, 3  # contributions to the winning score shown for and against it


class Step:
    """One quantity of the forward pass: its name, operation, shape and values."""

    __slots__ = ("name", "op", "output", "shape", "values", "weights")

    def __init__(self, spec: dict[str, Any], values: NDArray[np.floating], output: bool) -> None:
        self.name, self.op, self.shape = spec["name"], spec["op"], spec["shape"]
        self.weights: list[int] | None = spec.get("weights")
        self.values = values
        self.output = output  # a quantity of the output layer: its units are digits

    @property
    def squashed(self) -> bool:
        """True for x and the activations (values in 0..1), False for the pre-activations."""
        return not self.name.startswith("a")

    def strongest(self, k: int) -> list[tuple[int, float]]:
        """The k largest values with their unit numbers, largest first."""
        idx = np.argsort(-self.values, kind="stable")[:k]
        return [(int(i), float(self.values[i])) for i in idx]

    def above_half(self) -> int:
        return int(np.count_nonzero(self.values > 0.5))


class Explanation:
    """The forward pass of one image, step by step, and why the winner won."""

    def __init__(
        self, path: str, digit: Digit, net: Network, notes: tuple[str, ...], is_digit: bool = True
    ) -> None:
        """is_digit: the not-a-digit rule's verdict, as predict gives it."""
        self.path, self.digit, self.notes, self.is_digit = path, digit, notes, is_digit
        self.warning: str | None = None
        x = np.divide(digit.reshape(1, -1), 255, dtype=np.float32)  # as predict scales it
        pre, post = explore.forward(net, x)
        values = [x[0]]
        for a, z in zip(pre, post, strict=True):
            values += [a[0], z[0]]
        specs = explore.steps(net.sizes)
        self.steps = [
            Step(s, v, i >= len(specs) - 2)
            for i, (s, v) in enumerate(zip(specs, values, strict=True))
        ]
        self.probs = post[-1][0]
        self.label = int(self.probs.argmax())
        last = net.affines[-1]
        self.bias = float(last.b[self.label])
        self.column = last.W[:, self.label]  # weights into the winning score
        self.terms = self.steps[-3].values * self.column  # the score = their sum + the bias

    @property
    def score(self) -> Step:
        return self.steps[-2]

    def contributions(self, k: int, sign: int) -> list[dict[str, Any]]:
        """The k terms z_j · w_j of the winning score pushing it most up (+1) or down (-1)."""
        idx = np.argsort(-sign * self.terms, kind="stable")[:k]
        below = self.steps[-3].values
        return [
            {"unit": int(j), "z": float(below[j]), "weight": float(self.column[j]), "product": t}
            for j in idx
            if sign * (t := float(self.terms[j])) > 0
        ]


def explain_image(
    path: str,
    weights: str | os.PathLike[str] | None = None,
    *,
    invert: Invert = "auto",
    raw: bool = False,
    stdin: IO[bytes] | None = None,
) -> Explanation:
    """The forward pass of the image file at `path` (`-`: standard input) through the weights,
    judged digit or not by their not-a-digit rule as predict judges it."""
    from mnist_infer.predict import STDIN, Failure, load_model, predict_files

    net, rule, problem = load_model(weights)
    if path != STDIN and os.path.isdir(path):
        raise ImageError(f"{path}: is a folder, expected one image file")
    [result] = predict_files([path], net, invert=invert, raw=raw, stdin=stdin, rule=rule)
    if isinstance(result, Failure):
        raise ImageError(result.message)
    e = Explanation(path, result.digit, net, result.notes, result.is_digit)
    e.warning = problem  # why the weights' metadata (and its rule) could not be used
    return e


# --- as text --------------------------------------------------------------------


def to_text(e: Explanation, art: str) -> str:
    """The digit as `art`, one line per step, why the winner won, the probabilities."""
    sure = f"{e.probs[e.label]:.1%}"
    head = (
        f"{e.label} ({sure} sure)"
        if e.is_digit
        else f"not a digit (looks most like {e.label}, {sure})"
    )
    lines = [f"{e.path}: {head}", "", art, ""]
    lines.append("The forward pass, in the book's notation (#k is unit k, from 0):")
    rows = [_step_row(s) for s in e.steps]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        cells = [c.ljust(w) for c, w in zip(r, widths, strict=False)]
        lines.append("  " + "  ".join([*cells, r[3]]).rstrip())
    lines += ["", *_why(e), "", "Probabilities:", *_bars(e.probs)]
    return "\n".join(lines)


def _step_row(s: Step) -> tuple[str, str, str, str]:
    """name, shape, operation, summary."""
    shape = f"({s.shape[0]}, {s.shape[1]})"
    if s.name == "x":
        return s.name, shape, "input: pixels / 255", f"{s.above_half()} of {s.shape[1]} above 0.5"
    op = f"= {s.op}"
    if s.weights is not None:
        op += f"  with W{s.name[1:]} ({s.weights[0]}, {s.weights[1]})"
    top = s.strongest(STRONGEST)
    if not s.squashed:
        return s.name, shape, op, "largest " + ", ".join(_unit(k, s) + f" {v:+.2f}" for k, v in top)
    if s.name == "y":
        return s.name, shape, op, "most probable " + ", ".join(f"{k} {v:.3f}" for k, v in top)
    names = ", ".join(_unit(k, s) for k, _ in top)
    return s.name, shape, op, f"{s.above_half()} of {s.shape[1]} above 0.5; strongest {names}"


def _unit(k: int, s: Step) -> str:
    return str(k) if s.output else f"#{k}"


def _why(e: Explanation) -> list[str]:
    import textwrap

    n, d = e.score.name[1:], e.label
    below = e.steps[-3].name
    term = f"{below}[j] · W{n}[j, {d}]"
    head = (
        f"Why {d}: its score a{n}[{d}] = {e.score.values[d]:+.2f} is the bias b{n}[{d}]"
        f" ({e.bias:+.2f}) plus {term} summed over the {e.steps[-3].shape[1]} units j of {below}."
    )
    out = textwrap.wrap(head, 88)
    for kind, sign, k in (("largest", 1, FOR), ("most negative", -1, AGAINST)):
        terms = e.contributions(k, sign)
        out.append(f"  The {kind} terms {term}:" + ("" if terms else " none"))
        out += [
            f"    #{t['unit']:<5} {t['product']:+.2f} = {t['z']:.2f} · {t['weight']:+.2f}"
            for t in terms
        ]
    return out


def _bars(probs: NDArray[np.floating], width: int = 40) -> list[str]:
    return [f"  {d}  {p:.3f}  {'#' * round(p * width)}".rstrip() for d, p in enumerate(probs)]


# --- as JSON --------------------------------------------------------------------


def to_json(e: Explanation) -> dict[str, Any]:
    """{"path", "steps": [{"name", "op", "shape", …}], "digit", "confidence", "is_digit",
    "guess", "probabilities", "contributions"}; "digit" is None for a non-digit, as in
    predict's JSON."""
    from mnist_infer.records import answer_fields

    return {
        "path": e.path,
        "steps": [_step_json(s) for s in e.steps],
        **answer_fields(e.label, float(e.probs[e.label]), e.is_digit),
        "probabilities": explore.rounded(e.probs),
        "contributions": {
            "digit": e.label,
            "score": explore.rounded(e.score.values[e.label]),
            "bias": explore.rounded(e.bias),
            "for": _rounded_terms(e.contributions(FOR, 1)),
            "against": _rounded_terms(e.contributions(AGAINST, -1)),
        },
    }


def _step_json(s: Step) -> dict[str, Any]:
    out: dict[str, Any] = {"name": s.name, "op": s.op, "shape": s.shape}
    if s.weights is not None:
        out["weights"] = s.weights
    if s.squashed:
        out["above_half"] = s.above_half()
    if s.name != "x":
        out["strongest"] = [
            {"unit": k, "value": explore.rounded(v)} for k, v in s.strongest(TOP_JSON)
        ]
    out["values"] = explore.rounded(s.values)
    return out


def _rounded_terms(terms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: explore.rounded(v) if k != "unit" else v for k, v in t.items()} for t in terms]
