"""The non-digit generator: each kind alone, framing, the mix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnist_infer import outliers
from mnist_infer.outliers import DIGIT_KINDS, KINDS, WEIGHTS, elongation, frame, generate


def _digits(n: int = 40) -> np.ndarray:
    """Crude stand-ins for MNIST digits: rings and bars of varied size, uint8, flattened."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:28, 0:28]
    out = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        cy, cx, r = rng.uniform(12, 16), rng.uniform(12, 16), rng.uniform(5, 9)
        d = np.hypot(yy - cy, xx - cx)
        out[i][np.abs(d - r) < 1.5] = 255
        if i % 2:
            out[i, 4:24, int(cx)] = 255
    return out.reshape(n, 784)


def _make(name: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return KINDS[name](rng) if name in KINDS else DIGIT_KINDS[name](_digits(), rng)


ALL = [*KINDS, *DIGIT_KINDS]


def _box(img: np.ndarray) -> tuple[int, int]:
    on = img > 0.5 / 255
    rows, cols = np.flatnonzero(on.any(axis=1)), np.flatnonzero(on.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


@pytest.mark.parametrize("name", ALL)
def test_each_kind_is_in_mnist_form(name: str) -> None:
    for seed in range(5):
        img = _make(name, seed)
        assert img.shape == (28, 28)
        assert img.dtype == np.float32
        assert img.min() == 0
        assert 0.5 < img.max() <= 1
        h, w = _box(img)
        assert max(h, w) in (20, 21, 22), (seed, h, w)  # 20 px, plus the resampling's fringe
        m = img / img.sum()
        cy = (m.sum(axis=1) * np.arange(28)).sum()
        cx = (m.sum(axis=0) * np.arange(28)).sum()
        assert max(abs(cy - 14), abs(cx - 14)) < 1.5, (seed, cy, cx)


@pytest.mark.parametrize("name", ALL)
def test_each_kind_is_determined_by_the_seed(name: str) -> None:
    np.testing.assert_array_equal(_make(name, 11), _make(name, 11))
    assert not np.array_equal(_make(name, 11), _make(name, 12))


def test_frame_puts_a_drawing_in_mnist_form() -> None:
    ink = np.zeros((90, 60), np.float32)
    ink[10:70, 20:25] = 0.5  # a faint bar 60 tall, off centre
    ink[65:70, 20:50] = 0.5  # and its foot
    img = frame(ink)
    assert img.max() == pytest.approx(1, abs=0.01)  # the strongest ink is full ink
    assert _box(img)[0] in (20, 21)
    assert np.array_equal(frame(np.zeros((5, 5))), np.zeros((28, 28), np.float32))


def test_lines_are_never_upright() -> None:
    """An upright stroke is a 1: lines stay wider than tall."""
    for seed in range(30):
        h, w = _box(_make("line", seed))
        assert w > h, (seed, h, w)


def test_elongation() -> None:
    bar = np.zeros((28, 28))
    bar[4:24, 13:15] = 1
    ring = np.zeros((28, 28))
    yy, xx = np.mgrid[0:28, 0:28]
    ring[np.abs(np.hypot(yy - 14, xx - 14) - 8) < 1.5] = 1
    assert elongation(bar) > 5
    assert elongation(ring) == pytest.approx(1, abs=0.05)


def test_partial_digits_are_not_lone_strokes() -> None:
    for seed in range(20):
        assert elongation(_make("partial_digit", seed)) < 2.6


def test_generate_mixes_the_kinds() -> None:
    rng = np.random.default_rng(0)
    x = generate(300, rng, _digits())
    assert x.shape == (300, 784)
    assert x.dtype == np.float32
    assert x.min() >= 0
    assert x.max() <= 1
    assert len({row.tobytes() for row in x}) == 300
    again = generate(300, np.random.default_rng(0), _digits())
    np.testing.assert_array_equal(x, again)


def test_generate_without_digits_leaves_out_their_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    for name in DIGIT_KINDS:
        monkeypatch.setitem(DIGIT_KINDS, name, lambda *a, n=name: calls.append(n))
    generate(200, np.random.default_rng(1))
    assert calls == []
    with pytest.raises(ValueError, match="the digit kinds need digits"):
        generate(3, np.random.default_rng(1), kinds=list(DIGIT_KINDS))


def test_generate_only_the_kinds_asked_for() -> None:
    x = generate(20, np.random.default_rng(2), kinds=["dots"])
    y = np.stack([KINDS["dots"](np.random.default_rng(9)) for _ in range(3)])
    assert x.shape == (20, 784)
    assert y.shape == (3, 28, 28)


def test_every_kind_has_a_weight() -> None:
    assert set(WEIGHTS) == set(KINDS) | set(DIGIT_KINDS)


def test_glyphs_without_system_fonts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No DejaVu fonts on the machine: Pillow's own font still draws the glyphs."""
    monkeypatch.setattr(outliers, "FONT_DIR", tmp_path / "no-fonts")
    outliers.fonts.cache_clear()
    try:
        assert len(outliers.fonts()) == 1
        img = KINDS["glyph"](np.random.default_rng(0))
        assert img.shape == (28, 28)
        assert img.max() > 0.9
    finally:
        outliers.fonts.cache_clear()
