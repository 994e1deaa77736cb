"""The draw-a-digit page in a real headless Chromium (Debian's `chromium`), driven by Playwright.

Set MNIST_INFER_SCREENSHOT=docs/serve.png to save the README's screenshot on the way.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serving import drawing, running

CHROMIUM = next(
    (p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and os.path.exists(p)), None
)
if CHROMIUM is None:
    pytest.skip(
        "no chromium found (apt-get install chromium; .ci/run does it)", allow_module_level=True
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
)

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


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with running() as server:  # the shipped weights
        yield server.url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        # --no-sandbox: Chromium's sandbox refuses to run as root, as CI does.
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, url: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1180, "height": 860}, has_touch=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(url)
    pg.wait_for_selector("body[data-ready='1']")
    yield pg
    context.close()
    assert errors == []


def _points(page: Any, stroke: Stroke, steps: int = 12) -> list[tuple[float, float]]:
    """Page coordinates along a stroke, `steps` per segment."""
    box = page.locator("#canvas").bounding_box()
    out = [stroke[0]]
    for (x0, y0), (x1, y1) in itertools.pairwise(stroke):
        out += [(x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps) for i in range(1, steps)]
        out.append((x1, y1))
    return [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in out]


def draw(page: Any, strokes: list[Stroke], device: str) -> None:
    """Draw with a mouse, a finger (touch events) or a pen (pointer events of type pen)."""
    cdp = page.context.new_cdp_session(page) if device != "mouse" else None
    for stroke in strokes:
        pts = _points(page, stroke)
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


def winner(page: Any) -> int:
    return page.evaluate(
        "[...document.querySelectorAll('#bars li')].findIndex(li => li.classList.contains('win'))"
    )


@pytest.mark.parametrize(
    ("digit", "strokes", "device"),
    [(7, SEVEN, "mouse"), (1, ONE, "touch"), (7, SEVEN, "pen"), (3, THREE, "mouse")],
)
def test_drawing_a_digit_shows_the_forward_pass(
    page: Any, digit: int, strokes: list[Stroke], device: str
) -> None:
    assert page.text_content("#digit") == NO_DIGIT
    assert lit_pixels(page, "#input") == 0
    empty = [colours(page, f"#maps figure:nth-child({i}) canvas") for i in (1, 2)]
    draw(page, strokes, device)
    settled(page)
    assert page.text_content("#digit") == str(digit)
    assert winner(page) == digit
    assert page.text_content("#confidence").endswith("% sure")
    assert lit_pixels(page, "#input") > 40  # the 28x28 digit the network saw
    captions = page.locator("#maps figcaption").all_text_contents()
    assert captions == ["Hidden layer 1: 800 sigmoid units", "Hidden layer 2: 300 sigmoid units"]
    for i in (1, 2):  # a grey grid before, many colours now
        assert empty[i - 1] <= 2
        assert colours(page, f"#maps figure:nth-child({i}) canvas") > 10
    shot = os.environ.get("MNIST_INFER_SCREENSHOT")
    if shot and digit == 3:
        Path(shot).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=shot, full_page=True)


def test_a_chosen_file_is_predicted(page: Any) -> None:
    page.set_input_files(
        "#file", files=[{"name": "seven.png", "mimeType": "image/png", "buffer": drawing(2)}]
    )
    settled(page)
    assert page.text_content("#digit") == "7"
    assert "seven.png" in page.text_content("#status")
    assert lit_pixels(page, "#input") > 40


def test_an_unusable_file_shows_the_reason(page: Any) -> None:
    page.set_input_files(
        "#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}]
    )
    settled(page)
    status = page.locator("#status")
    assert status.text_content() == (
        "notes.txt: not an image (expected PNG, JPEG, BMP, GIF, TIFF or WebP)"
    )
    assert "error" in status.get_attribute("class")
    assert page.text_content("#digit") == NO_DIGIT


def test_keyboard_clears_and_reaches_the_file_chooser(page: Any) -> None:
    draw(page, SEVEN, "mouse")
    settled(page)
    assert page.text_content("#digit") == "7"
    focused = []
    for _ in range(2):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.id"))
    assert focused == ["clear", "file"]
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")  # on Clear
    assert page.text_content("#digit") == NO_DIGIT
    assert lit_pixels(page, "#input") == 0
    draw(page, ONE, "mouse")
    settled(page)
    page.keyboard.press("Escape")
    assert page.text_content("#digit") == NO_DIGIT
    assert page.get_by_label("Choose an image…").get_attribute("type") == "file"
    assert page.get_by_role("button", name="Clear").is_visible()


def test_the_facts_about_the_weights_are_shown(page: Any) -> None:
    text = page.text_content("#info")
    assert "784 → 800 → 300 → 10" in text  # the shipped default weights
    assert "871,310" in text
    assert "float32" in text
    assert "mnist-mlp-784-800-300-10.pkl" in text


def test_a_phone_screen_needs_no_sideways_scrolling(browser: Any, url: str) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 740}, has_touch=True)
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")
    draw(page, ONE, "touch")
    settled(page)
    assert page.text_content("#digit") == "1"
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    box = page.locator("#canvas").bounding_box()
    assert 250 <= box["width"] <= 360
    context.close()
