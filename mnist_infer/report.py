"""Evaluation metrics, a text summary and PNG pictures (confusion heat map, mistakes)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mnist_infer.errors import UsageError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray
    from PIL import Image, ImageDraw, ImageFont

    from mnist_infer.novelty import Rule

N_CLASSES = 10

# Colours: a white -> dark blue ramp for the heat map; digits black on white.
_WHITE = (255, 255, 255)
_INK = (33, 33, 33)
_FAINT = (185, 185, 185)
_GREY = (110, 110, 110)
_DARK_BLUE = (8, 48, 107)
_RED = (190, 30, 45)
# Space around the confusion grid in pixels: left, top, right, bottom.
_CM_MARGINS = (64, 70, 24, 56)


# --- metrics -----------------------------------------------------------------


def confusion_matrix(
    labels: ArrayLike, preds: ArrayLike, n_classes: int = N_CLASSES
) -> NDArray[np.int64]:
    """Counts (n_classes, n_classes): rows are true labels, columns predicted labels."""
    t = np.asarray(labels).ravel()
    p = np.asarray(preds).ravel()
    if t.shape != p.shape:
        raise UsageError(
            f"labels and predictions differ in length: {t.size} labels, {p.size} predictions"
        )
    for name, a in (("labels", t), ("predictions", p)):
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise UsageError(f"{name} must be integers, found dtype {a.dtype}")
        if a.size and (a.min() < 0 or a.max() >= n_classes):
            raise UsageError(f"{name} must lie in 0..{n_classes - 1}, found {a.min()}..{a.max()}")
    idx = t.astype(np.int64) * n_classes + p.astype(np.int64)
    counts = np.bincount(idx, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes).astype(np.int64)


def _ratio(num: NDArray, den: NDArray) -> NDArray[np.float64]:
    """num / den elementwise, 0.0 where den is 0 (no warning)."""
    out = np.zeros(np.shape(num), dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def per_class(cm: ArrayLike) -> dict[str, NDArray]:
    """Precision, recall, F1 (float64) and support (int64) per class from a confusion matrix.

    A ratio with nothing to count is undefined, NaN: precision of a class never predicted,
    recall of a class that never occurs, F1 of a class that does neither.
    """
    m = np.asarray(cm, dtype=np.int64)
    hits = np.diag(m)
    support = m.sum(axis=1)
    predicted = m.sum(axis=0)
    precision = np.where(predicted > 0, _ratio(hits, predicted), np.nan)
    recall = np.where(support > 0, _ratio(hits, support), np.nan)
    # 2 tp / (2 tp + fp + fn): the harmonic mean of the two, also where one is undefined.
    both = predicted + support
    f1 = np.where(both > 0, _ratio(2 * hits, both), np.nan)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def _defined(v: float) -> float | None:
    """v, or None (JSON null) where it is undefined."""
    return None if np.isnan(v) else float(v)


ECE_BINS = 15


def calibration_error(
    confidences: ArrayLike, correct: ArrayLike, bins: int = ECE_BINS
) -> float | None:
    """Expected calibration error: the mean |accuracy - confidence| over equal-width
    confidence bins, weighted by their share of the images (None for no images)."""
    conf = np.asarray(confidences, np.float64)
    hit = np.asarray(correct, np.float64)
    if conf.size == 0:
        return None
    b = np.minimum((conf * bins).astype(np.intp), bins - 1)
    gap = np.bincount(b, weights=hit - conf, minlength=bins)  # sum of (hit - conf) per bin
    return float(np.abs(gap).sum() / conf.size)


def summary(
    labels: ArrayLike,
    preds: ArrayLike,
    *,
    batch_size: int,
    seconds: float,
    weights_path: str | os.PathLike[str],
    weights_sha256: str,
    confidences: ArrayLike | None = None,
    is_digit: ArrayLike | None = None,
    rule: Rule | None = None,
) -> dict[str, Any]:
    """All evaluation results as plain JSON-serialisable values; with is_digit and rule,
    what the not-a-digit rule rejects (see `rejections`)."""
    cm = confusion_matrix(labels, preds)
    pc = per_class(cm)
    total = int(cm.sum())
    correct = int(np.trace(cm))
    rows = [
        {
            "digit": d,
            "precision": _defined(pc["precision"][d]),
            "recall": _defined(pc["recall"][d]),
            "f1": _defined(pc["f1"][d]),
            "support": int(pc["support"][d]),
        }
        for d in range(cm.shape[0])
    ]
    return (
        {
            "accuracy": correct / total if total else 0.0,
            "correct": correct,
            "total": total,
            "per_class": rows,
            "confusion_matrix": cm.tolist(),
            "batch_size": int(batch_size),
            "seconds": float(seconds),
            "images_per_second": total / seconds if seconds > 0 else None,
            "weights": {"path": str(weights_path), "sha256": weights_sha256},
        }
        | (
            {}
            if confidences is None
            else {
                "ece": calibration_error(
                    confidences, np.asarray(labels) == np.asarray(preds), ECE_BINS
                ),
                "ece_bins": ECE_BINS,
            }
        )
        | (
            {}
            if is_digit is None or rule is None
            else {"not_a_digit": rejections(labels, preds, is_digit, rule)}
        )
    )


def rejections(
    labels: ArrayLike, preds: ArrayLike, is_digit: ArrayLike, rule: Rule
) -> dict[str, Any]:
    """How many images the not-a-digit rule rejects, and the accuracy on the others."""
    ok = np.asarray(is_digit, bool)
    hit = np.asarray(labels) == np.asarray(preds)
    total, accepted = ok.size, int(np.count_nonzero(ok))
    correct = int(np.count_nonzero(hit & ok))
    return {
        "rule": rule.as_dict(),
        "rejected": total - accepted,
        "rejected_share": (total - accepted) / total if total else 0.0,
        "accepted": accepted,
        "accepted_correct": correct,
        "accepted_accuracy": correct / accepted if accepted else None,
    }


def rejection_lines(nd: dict[str, Any], total: int) -> list[str]:
    """`Not a digit: 37/10000 rejected (0.37%); accuracy on the other 9963: 0.9940 (…)`,
    then the rule."""
    acc = nd["accepted_accuracy"]
    rest = "-" if acc is None else f"{acc:.4f} ({nd['accepted_correct']}/{nd['accepted']})"
    from mnist_infer.novelty import rule_text

    return [
        f"Not a digit: {nd['rejected']}/{total} rejected ({nd['rejected_share']:.2%});"
        f" accuracy on the other {nd['accepted']}: {rest}",
        f"Rule: {rule_text(nd['rule'])}",
    ]


# --- text --------------------------------------------------------------------


def _table_row(label: str, cells: Sequence[str], width: int) -> str:
    return f"{label:<11}" + "".join(f"{c:>{width}}" for c in cells)


def format_summary(s: dict[str, Any]) -> str:
    """Human-readable summary: accuracy line, timing, per-class table, confusion matrix."""
    cm = s["confusion_matrix"]
    pc = s["per_class"]
    digits = [str(r["digit"]) for r in pc]
    width = max(6, len(str(max((max(r) for r in cm), default=0))) + 2)
    lines = [f"Accuracy: {s['accuracy']:.4f} ({s['correct']}/{s['total']})"]
    rate = s.get("images_per_second")
    speed = f"{rate:,.0f} images/s" if rate else "rate n/a"
    lines.append(f"Time: {s['seconds']:.3f} s ({speed}, batch size {s['batch_size']})")
    w = s.get("weights") or {}
    if w:
        lines.append(f"Weights: {w.get('path')} (sha256 {str(w.get('sha256'))[:12]})")
    if "not_a_digit" in s:
        lines += rejection_lines(s["not_a_digit"], s["total"])
    lines += ["", _table_row("digit", digits, width)]
    for key in ("precision", "recall", "f1"):
        cells = ["-" if r[key] is None else f"{r[key]:.3f}" for r in pc]
        lines.append(_table_row(key, cells, width))
    lines.append(_table_row("support", [str(r["support"]) for r in pc], width))
    lines += ["", "Confusion matrix (rows: true digit, columns: predicted digit)"]
    lines.append(_table_row("true\\pred", digits, width))
    for d, row in zip(digits, cm, strict=True):
        lines.append(_table_row(f"{d:>5}", [str(v) for v in row], width))
    return "\n".join(lines)


# --- pictures ----------------------------------------------------------------


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _save_png(img: Image.Image, path: str | os.PathLike[str]) -> None:
    """Write img as PNG atomically."""
    from mnist_infer.files import atomic_write

    atomic_write(path, lambda f: img.save(f, format="PNG"))


def _text(
    draw: ImageDraw.ImageDraw,
    xy: tuple[float, float],
    text: str,
    font: Any,
    fill: tuple[int, int, int],
    anchor: str = "mm",
) -> None:
    draw.text(xy, text, font=font, fill=fill, anchor=anchor)


def _shade(v: float) -> tuple[int, int, int]:
    """Heat-map colour for v in [0, 1]; sqrt keeps rare confusions visible."""
    t = float(np.sqrt(np.clip(v, 0.0, 1.0)))
    r, g, b = (round(lo + (hi - lo) * t) for lo, hi in zip(_WHITE, _DARK_BLUE, strict=True))
    return (r, g, b)


def _ink_on(bg: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white text, whichever contrasts more with bg."""
    lum = 0.2126 * bg[0] + 0.7152 * bg[1] + 0.0722 * bg[2]
    return _WHITE if lum < 150 else _INK


def write_confusion_png(
    cm: ArrayLike, path: str | os.PathLike[str], *, title: str = "Confusion matrix", cell: int = 48
) -> None:
    """Labelled heat map of cm: cells shaded by row share, each with its count."""
    from PIL import Image, ImageDraw

    m = np.asarray(cm, dtype=np.int64)
    n = m.shape[0]
    share = _ratio(m, m.sum(axis=1, keepdims=True))
    big, small = _font(18), _font(14)
    size = 15
    while size > 8 and small.getlength(str(int(m.max(initial=0)))) > cell - 6:
        size -= 1
        small = _font(size)
    count_font = _font(size)

    left, top, right, bottom = _CM_MARGINS
    w, h = left + n * cell + right, top + n * cell + bottom
    img = Image.new("RGB", (w, h), _WHITE)
    draw = ImageDraw.Draw(img)
    _text(draw, (w / 2, 20), title, big, _INK)
    _text(draw, (w / 2, 44), "shade: share of the true digit's row (sqrt scale)", _font(12), _GREY)
    for i in range(n):
        for j in range(n):
            x0, y0 = left + j * cell, top + i * cell
            bg = _shade(share[i, j])
            draw.rectangle((x0, y0, x0 + cell - 1, y0 + cell - 1), fill=bg)
            ink = _ink_on(bg) if m[i, j] else _FAINT
            _text(draw, (x0 + cell / 2, y0 + cell / 2), str(m[i, j]), count_font, ink)
    draw.rectangle((left - 1, top - 1, left + n * cell, top + n * cell), outline=_FAINT)
    for k in range(n):
        c = k * cell + cell / 2
        _text(draw, (left - 12, top + c), str(k), small, _INK)
        _text(draw, (left + c, top + n * cell + 12), str(k), small, _INK)
    _text(draw, (left + n * cell / 2, h - 18), "predicted", big, _INK)
    label = Image.new("RGB", (n * cell, 24), _WHITE)
    _text(ImageDraw.Draw(label), (n * cell / 2, 12), "true", big, _INK)
    img.paste(label.rotate(90, expand=True), (10, top))
    _save_png(img, path)


def _as_digits(images: ArrayLike) -> NDArray[np.uint8]:
    """(n, 28, 28) uint8 from (n, 784) or (n, 28, 28), uint8 or floats in [0, 1]."""
    a = np.asarray(images)
    if a.ndim not in (2, 3) or a.shape[1:] not in ((784,), (28, 28)):
        raise UsageError(f"images must have shape (n, 784) or (n, 28, 28), found {a.shape}")
    if np.issubdtype(a.dtype, np.floating):
        a = np.clip(np.rint(a * 255), 0, 255)
    return a.astype(np.uint8, copy=False).reshape(-1, 28, 28)


def _arrow(draw: ImageDraw.ImageDraw, x: float, y: float, length: float) -> None:
    """A right arrow drawn as lines (the bundled font has no arrow glyph)."""
    draw.line((x, y, x + length, y), fill=_INK, width=1)
    draw.polygon(((x + length, y), (x + length - 4, y - 3), (x + length - 4, y + 3)), fill=_INK)


def _caption(
    draw: ImageDraw.ImageDraw, cx: float, y: float, true: int, pred: int, conf: float, font: Any
) -> None:
    """'true -> pred  97%' centred on cx: true in ink, pred in red."""
    a, b, c = str(true), str(pred), f"{conf * 100:.0f}%"
    gap, arrow = 3, 12
    widths = [font.getlength(a), arrow, font.getlength(b), font.getlength(c)]
    x = cx - (sum(widths) + 2 * gap + 8) / 2
    _text(draw, (x, y), a, font, _INK, "lm")
    x += widths[0] + gap
    _arrow(draw, x, y, arrow)
    x += arrow + gap
    _text(draw, (x, y), b, font, _RED, "lm")
    x += widths[2] + 8
    _text(draw, (x, y), c, font, _INK, "lm")


MAX_MISTAKES = 100  # digits in mistakes.png; its header says how many there were


def write_mistakes_png(
    images: ArrayLike,
    labels: ArrayLike,
    preds: ArrayLike,
    confidences: ArrayLike,
    path: str | os.PathLike[str],
    max_count: int = MAX_MISTAKES,
    *,
    scale: int = 3,
    columns: int = 10,
) -> None:
    """Grid of the first max_count misclassified digits, each captioned 'true -> pred  conf'."""
    from PIL import Image, ImageDraw

    x = _as_digits(images)
    t, p = np.asarray(labels).ravel(), np.asarray(preds).ravel()
    conf = np.asarray(confidences, dtype=np.float64).ravel()
    if not len(x) == t.size == p.size == conf.size:
        raise UsageError(
            f"images, labels, predictions and confidences differ in length: "
            f"{len(x)}, {t.size}, {p.size}, {conf.size}"
        )
    wrong = np.flatnonzero(t != p)
    shown = wrong[: max(max_count, 0)]
    which = "all" if shown.size == wrong.size else "the first"
    header = (
        f"{wrong.size} of {t.size} images misclassified; showing {which} {shown.size}"
        if wrong.size
        else f"No mistakes: all {t.size} images classified correctly"
    )
    big, small = _font(18), _font(14)
    side = 28 * scale
    tile_w, tile_h = side + 16, side + 28
    cols = max(1, min(columns, shown.size))
    rows = -(-shown.size // cols)
    top, pad = 64, 12
    w = max(pad * 2 + cols * tile_w, int(big.getlength(header)) + 2 * pad)
    h = top + rows * tile_h + pad if shown.size else 40
    img = Image.new("RGB", (w, h), _WHITE)
    draw = ImageDraw.Draw(img)
    _text(draw, (w / 2, 20), header, big, _INK)
    if shown.size:
        legend = "caption: true digit, predicted digit (red), confidence"
        _text(draw, (w / 2, 44), legend, small, _GREY)
    x0 = (w - cols * tile_w) / 2
    for k, i in enumerate(shown):
        r, c = divmod(k, cols)
        left, upper = int(x0 + c * tile_w + 8), top + r * tile_h
        digit = Image.fromarray(255 - x[i]).resize((side, side), Image.Resampling.NEAREST)
        img.paste(digit, (left, upper))
        draw.rectangle((left - 1, upper - 1, left + side, upper + side), outline=_FAINT)
        _caption(draw, left + side / 2, upper + side + 12, int(t[i]), int(p[i]), conf[i], small)
    _save_png(img, path)
