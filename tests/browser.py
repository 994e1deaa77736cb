"""Driving the draw-a-digit page in a real Chromium (Debian's `chromium`) through Playwright."""

from __future__ import annotations

import itertools
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serving import running

from mnist_infer.shipped import SMALL_NAME, default_weights_path

CHROMIUM = next(
    (p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and os.path.exists(p)), None
)
SKIP_REASON = "no chromium found (apt-get install chromium; .ci/run does it)"
try:
    from playwright import sync_api
except ImportError:  # pragma: no cover - the test extras bring it
    sync_api = None  # type: ignore[assignment]

NO_DIGIT = "\u2013"  # the en dash shown before a prediction
Stroke = list[tuple[float, float]]  # points as fractions of the drawing box

SEVEN: list[Stroke] = [[(0.28, 0.22), (0.72, 0.22), (0.45, 0.85)]]
ONE: list[Stroke] = [[(0.52, 0.15), (0.48, 0.85)]]
THREE: list[Stroke] = [
    [
        (0.5 + 0.18 * math.sin(t), 0.33 - 0.15 * math.cos(t))
        for t in (i / 12 * 1.25 * math.pi - 0.45 * math.pi for i in range(13))
    ]
    + [
        (0.5 + 0.2 * math.sin(t), 0.66 - 0.18 * math.cos(t))
        for t in (i / 14 * 1.35 * math.pi - 0.1 * math.pi for i in range(15))
    ]
]

WEIGHTS = {"default": None, "small": default_weights_path(name=SMALL_NAME)}
HIDDEN = {"default": [800, 300], "small": [50, 100]}


def require() -> None:
    """Skip the calling test module without Chromium or Playwright."""
    if CHROMIUM is None:
        pytest.skip(SKIP_REASON, allow_module_level=True)
    if sync_api is None:
        pytest.skip(
            "playwright is not installed (pip install -e '.[test]')", allow_module_level=True
        )


@pytest.fixture(scope="module")
def urls() -> Iterator[dict[str, str]]:
    """A server per shipped weights, started when first asked for."""
    with running(WEIGHTS["default"]) as default, running(WEIGHTS["small"]) as small:
        yield {"default": default.url, "small": small.url}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        # --no-sandbox: Chromium's sandbox refuses to run as root, as CI does.
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def open_page(
    browser: Any, url: str, width: int = 1180, height: int = 860, init: str | None = None
) -> tuple[Any, list[str]]:
    """A page at url, ready; the list collects its script errors."""
    context = browser.new_context(viewport={"width": width, "height": height}, has_touch=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    if init:
        pg.add_init_script(init)
    pg.goto(url)
    pg.wait_for_selector("body[data-ready='1']")
    return pg, errors


def _points(page: Any, stroke: Stroke, steps: int = 12) -> list[tuple[float, float]]:
    """Page coordinates along a stroke, `steps` per segment."""
    box = page.locator("#canvas").bounding_box()
    out = [stroke[0]]
    for (x0, y0), (x1, y1) in itertools.pairwise(stroke):
        out += [(x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps) for i in range(1, steps)]
        out.append((x1, y1))
    return [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in out]


def draw(page: Any, strokes: list[Stroke], device: str, steps: int = 12) -> None:
    """Draw with a mouse, a finger (touch events) or a pen (pointer events of type pen)."""
    cdp = page.context.new_cdp_session(page) if device != "mouse" else None
    for stroke in strokes:
        pts = _points(page, stroke, steps)
        if device == "mouse":
            page.mouse.move(*pts[0])
            page.mouse.down()
            for p in pts[1:]:
                page.mouse.move(*p)
            page.mouse.up()
        elif device == "touch":
            for i, (x, y) in enumerate(pts):
                kind = "touchStart" if i == 0 else "touchMove"
                cdp.send(
                    "Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": y}]}
                )
            cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        else:
            for i, (x, y) in enumerate(pts):
                kind = "mousePressed" if i == 0 else "mouseMoved"
                cdp.send(
                    "Input.dispatchMouseEvent",
                    {"type": kind, "x": x, "y": y, "button": "left", "buttons": 1,
                     "clickCount": 1, "pointerType": "pen"},
                )  # fmt: skip
            x, y = pts[-1]
            cdp.send(
                "Input.dispatchMouseEvent",
                {"type": "mouseReleased", "x": x, "y": y, "button": "left", "buttons": 0,
                 "clickCount": 1, "pointerType": "pen"},
            )  # fmt: skip


def settled(page: Any) -> None:
    """Wait until the answer for what is on the pad is shown."""
    page.wait_for_function("() => document.body.dataset.pending === '0'", timeout=10_000)


def lit_pixels(page: Any, selector: str) -> int:
    """Pixels of a canvas that are not black."""
    return page.evaluate(
        """sel => {
            const c = document.querySelector(sel);
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 0) n++;
            return n;
        }""",
        selector,
    )


def colours(page: Any, selector: str) -> int:
    """Distinct colours in a canvas."""
    return page.evaluate(
        """sel => {
            const c = document.querySelector(sel);
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            const seen = new Set();
            for (let i = 0; i < d.length; i += 4) {
                seen.add(d[i] * 65536 + d[i + 1] * 256 + d[i + 2]);
            }
            return seen.size;
        }""",
        selector,
    )


def pad_pixels(page: Any) -> list[int]:
    """The red channel of every pixel of the drawing pad."""
    return page.evaluate(
        """() => {
            const c = document.getElementById('canvas');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            return Array.from(d.filter((_, i) => i % 4 === 0));
        }"""
    )


def winner(page: Any) -> int:
    return page.evaluate(
        "[...document.querySelectorAll('#bars li')].findIndex(li => li.classList.contains('win'))"
    )


def save_screenshot(page: Any, env: str = "MNIST_INFER_SCREENSHOT") -> None:
    """Save the page to the path in $env, if set (the README's screenshot)."""
    shot = os.environ.get(env)
    if shot:
        Path(shot).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=shot)
