"""How each answer of `predict` is written out: the text line, the JSON record, the CSV row.

An answer is a digit, or "not a digit" (novelty.py's rule) with the network's best guess; every
format says it the same way, and serve's /api/predict answers with `answer_fields` too.
"""

from __future__ import annotations

import os

from mnist_infer.predict import Failure, Prediction, escape


def answer_fields(guess: int, confidence: float, is_digit: bool) -> dict[str, object]:
    """{"digit", "confidence", "is_digit", "guess"}; "digit" is None for a non-digit."""
    return {
        "digit": guess if is_digit else None,
        "confidence": round(confidence, 6),
        "is_digit": is_digit,
        "guess": guess,
    }


def unsure(p: Prediction, min_confidence: float | None) -> bool:
    """True if a digit's confidence is below min_confidence (never for a non-digit or None)."""
    return p.is_digit and min_confidence is not None and p.confidence < min_confidence


def text_line(p: Prediction, k: int = 1, min_confidence: float | None = None) -> str:
    """`path  digit  confidence`, or `path  ?  not a digit (looks most like 4, 0.410)`, then
    `digit:probability` for the k-1 runners-up.

    `unsure` ends the line when a digit's confidence is below min_confidence. Control
    characters in the path are escaped, so one file is always one line.
    """
    if p.is_digit:
        answer = f"{p.label}  {p.confidence:.3f}"
    else:
        answer = f"?  not a digit (looks most like {p.label}, {p.confidence:.3f})"
    runners = "".join(f"  {d}:{q:.3f}" for d, q in p.top(k)[1:]) if k > 1 else ""
    mark = "  unsure" if unsure(p, min_confidence) else ""
    return f"{escape(p.path)}  {answer}{runners}{mark}"


def _json_path(path: str) -> dict[str, object]:
    """ "path" (U+FFFD for bytes that are not UTF-8) and then "path_base64" with the bytes."""
    raw = os.fsencode(path)
    text = raw.decode("utf-8", "replace")
    rec: dict[str, object] = {"path": text}
    if text.encode("utf-8") != raw:
        import base64

        rec["path_base64"] = base64.b64encode(raw).decode("ascii")
    return rec


def json_record(
    p: Prediction | Failure, k: int = 1, min_confidence: float | None = None
) -> dict[str, object]:
    """One JSON object per input: {"path", "digit", "confidence", "is_digit", "guess"
    [, "unsure"][, "top"]}; `top` lists the k best when k > 1.

    A path that is not valid UTF-8 shows U+FFFD for the bytes it cannot decode, and
    `path_base64` then holds its exact bytes. A failure is `{"path", "error", "exit_code"}`;
    `unsure` is there when min_confidence is given.
    """
    rec = _json_path(p.path)
    if isinstance(p, Failure):
        return rec | {"error": p.reason, "exit_code": p.exit_code}
    rec |= answer_fields(p.label, p.confidence, p.is_digit)
    if min_confidence is not None:
        rec["unsure"] = unsure(p, min_confidence)
    if k > 1:
        rec["top"] = [{"digit": d, "probability": round(q, 6)} for d, q in p.top(k)]
    return rec


def csv_header(k: int = 1, min_confidence: float | None = None) -> list[str]:
    """Columns: path, digit, confidence, is_digit, guess, then digit_2, probability_2, … up
    to k, [unsure,] error."""
    extra = [c for i in range(2, k + 1) for c in (f"digit_{i}", f"probability_{i}")]
    mark = ["unsure"] if min_confidence is not None else []
    return ["path", "digit", "confidence", "is_digit", "guess", *extra, *mark, "error"]


def _flag(value: bool) -> str:
    return "true" if value else "false"


def csv_row(p: Prediction | Failure, k: int = 1, min_confidence: float | None = None) -> list[str]:
    """A prediction with an empty error (and an empty digit when it is not one), or a
    failure with only path and error filled in."""
    if isinstance(p, Failure):
        return [p.path, *[""] * (len(csv_header(k, min_confidence)) - 2), p.reason]
    label = str(p.label)
    head = [p.path, label if p.is_digit else "", f"{p.confidence:.6f}", _flag(p.is_digit), label]
    runners = [v for d, q in p.top(k)[1:] for v in (str(d), f"{q:.6f}")] if k > 1 else []
    mark = [] if min_confidence is None else [_flag(unsure(p, min_confidence))]
    return [*head, *runners, *mark, ""]
