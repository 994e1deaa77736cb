"""The draw-a-digit page in a real headless Chromium: drawing, answers, failures, the phone.

The unit panels are tested in test_serve_explore_browser.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser import (
    HIDDEN,
    NO_DIGIT,
    ONE,
    SEVEN,
    THREE,
    Stroke,
    browser,
    colours,
    draw,
    lit_pixels,
    open_page,
    pad_pixels,
    require,
    settled,
    urls,
    winner,
)
from serving import drawing

require()
__all__ = ["browser", "urls"]  # fixtures


@pytest.fixture
def page(browser: Any, urls: dict[str, str]) -> Iterator[Any]:
    pg, errors = open_page(browser, urls["default"])
    yield pg
    pg.context.close()
    assert errors == []


def unit_colours(page: Any, layer: int) -> int:
    """Distinct background colours of a hidden layer's units."""
    return page.evaluate(
        f"new Set([...document.querySelectorAll('#step-{layer} .unit')]"
        ".map(b => getComputedStyle(b).backgroundColor)).size"
    )


@pytest.mark.parametrize(
    ("weights", "digit", "strokes", "device"),
    [
        ("default", 7, SEVEN, "mouse"),
        ("default", 1, ONE, "touch"),
        ("small", 7, SEVEN, "pen"),
        ("small", 3, THREE, "mouse"),
    ],
)
def test_drawing_a_digit_shows_the_forward_pass(
    browser: Any, urls: dict[str, str], weights: str, digit: int, strokes: list[Stroke], device: str
) -> None:
    page, errors = open_page(browser, urls[weights])
    assert page.text_content("#digit") == NO_DIGIT
    assert lit_pixels(page, "#input") == 0
    assert [unit_colours(page, i) for i in (1, 2)] == [1, 1]  # all blank before
    draw(page, strokes, device)
    settled(page)
    assert page.text_content("#digit") == str(digit)
    assert winner(page) == digit
    assert page.text_content("#confidence").endswith("% sure")
    assert lit_pixels(page, "#input") > 40  # the 28x28 digit the network saw
    h1, h2 = HIDDEN[weights]
    heads = page.locator("#steps > li > h3").all_text_contents()
    assert heads == [
        "Input x (1, 784)",
        f"Hidden layer 1: {h1} sigmoid units",
        f"Hidden layer 2: {h2} sigmoid units",
        "Output layer: 10 units, one per digit",
    ]
    formula = page.text_content("#formula")
    assert formula == (
        f"x (1, 784) · W1 (784, {h1}) + b1 → a1 (1, {h1}) → sigmoid → z1 (1, {h1})"
        f" · W2 ({h1}, {h2}) + b2 → a2 (1, {h2}) → sigmoid → z2 (1, {h2})"
        f" · W3 ({h2}, 10) + b3 → a3 (1, 10) → softmax → y (1, 10)"
    )
    assert [page.locator(f"#step-{i} .unit").count() for i in (1, 2)] == [h1, h2]
    assert all(unit_colours(page, i) > 5 for i in (1, 2))
    logits = page.locator("#bars .logit").all_text_contents()
    assert max(range(10), key=lambda d: float(logits[d])) == digit
    assert page.evaluate("document.body.dataset.stale") == "0"
    page.context.close()
    assert errors == []


def test_pen_up_sends_the_drawing_at_once(browser: Any, urls: dict[str, str]) -> None:
    """With the pointer at rest after pen-up, the request leaves within 300 ms (20 strokes)."""
    log = """
        window.__log = [];
        addEventListener('pointerup', () => __log.push(['up', performance.now()]), true);
        const f = window.fetch;
        window.fetch = function (url, ...rest) {
            if (String(url).includes('/api/predict')) __log.push(['sent', performance.now()]);
            return f.call(this, url, ...rest);
        };
    """
    page, errors = open_page(browser, urls["default"], init=log)
    devices = ["mouse", "touch", "pen"]
    delays = []
    for i in range(20):
        page.evaluate("window.__log = []")
        draw(page, SEVEN if i % 2 else ONE, devices[i % 3], steps=6)
        settled(page)
        events = page.evaluate("window.__log")
        up = next(t for kind, t in events if kind == "up")
        sent = [t for kind, t in events if kind == "sent" and t >= up]
        assert sent, f"stroke {i}: no request after pen-up ({events})"
        delays.append(sent[0] - up)
        page.keyboard.press("Escape")
    assert max(delays) <= 300, [round(d) for d in delays]
    page.context.close()
    assert errors == []


def test_a_chosen_file_is_predicted(page: Any) -> None:
    page.set_input_files(
        "#file", files=[{"name": "seven.png", "mimeType": "image/png", "buffer": drawing(2)}]
    )
    settled(page)
    assert page.text_content("#digit") == "7"
    assert "seven.png" in page.text_content("#status")
    assert lit_pixels(page, "#input") > 40


def test_an_unusable_file_shows_the_reason(page: Any) -> None:
    draw(page, SEVEN, "mouse")
    settled(page)
    page.set_input_files(
        "#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}]
    )
    settled(page)
    status = page.locator("#status")
    assert status.text_content() == (
        "notes.txt: not an image (expected PNG, JPEG, BMP, GIF, TIFF or WebP)"
    )
    assert "error" in status.get_attribute("class")
    assert page.text_content("#digit") == NO_DIGIT  # no old answer beside it
    assert page.text_content("#announce") == status.text_content()


def test_an_answer_that_does_not_come_is_marked_old(page: Any) -> None:
    draw(page, SEVEN, "mouse")
    settled(page)
    page.route("**/api/predict", lambda route: route.abort())  # the server is gone
    draw(page, ONE, "mouse")
    settled(page)
    assert page.text_content("#digit") == "7"  # still there, but marked as old
    assert page.get_attribute("#verdict", "data-state") == "stale"
    assert page.text_content("#verdict-note") == "old answer, for an earlier drawing"
    status = page.text_content("#status")
    assert status.startswith("No answer from the server (")
    assert status.endswith("Is the server still running? The next stroke asks again.")
    page.unroute("**/api/predict")
    draw(page, ONE, "mouse")
    settled(page)
    assert page.get_attribute("#verdict", "data-state") == "fresh"


def test_a_silent_server_shows_waiting_then_gives_up(page: Any) -> None:
    draw(page, SEVEN, "mouse")
    settled(page)
    page.route("**/api/predict", lambda route: None)  # never answered
    draw(page, ONE, "mouse")
    page.wait_for_selector("#waiting", state="visible", timeout=2000)
    assert page.text_content("#waiting") == "waiting for the server…"
    page.wait_for_selector("#waiting", state="hidden", timeout=8000)
    assert page.text_content("#status").startswith("The server did not answer within 5 s.")
    assert page.get_attribute("#verdict", "data-state") == "stale"


def test_other_weights_served_are_noticed(browser: Any, urls: dict[str, str]) -> None:
    """A restart with other weights: the page reads /api/info again and rebuilds its steps."""
    page, errors = open_page(browser, urls["default"])
    draw(page, SEVEN, "mouse")
    settled(page)
    assert page.locator("#step-1 .unit").count() == 800
    other = urls["small"].rstrip("/")

    def elsewhere(route: Any) -> None:
        path = route.request.url.split("/", 3)[3]
        # The other server accepts POSTs only from its own page, as a restarted server would.
        headers = {**route.request.headers, "origin": other}
        route.fulfill(response=route.fetch(url=f"{other}/{path}", headers=headers))

    page.route("**/api/**", elsewhere)
    page.keyboard.press("Escape")
    draw(page, ONE, "mouse")
    settled(page)
    assert page.locator("#step-1 .unit").count() == 50
    assert "784 → 50 → 100 → 10" in page.text_content("#info")
    assert page.text_content("#digit") == "1"
    assert colours(page, "#input") > 2
    page.context.close()
    assert errors == []


def test_screen_readers_hear_one_answer_per_pen_up(page: Any) -> None:
    page.evaluate(
        """() => {
            window.__said = [];
            new MutationObserver(() => __said.push(document.getElementById('announce').textContent))
                .observe(document.getElementById('announce'), {childList: true, subtree: true});
        }"""
    )
    for strokes in (SEVEN, ONE, SEVEN):
        draw(page, strokes, "mouse", steps=40)  # slow strokes: many answers while drawing
        settled(page)
        page.keyboard.press("Escape")
    said = page.evaluate("window.__said")
    assert len(said) == 3, said
    live = "[aria-live], [role=status], [role=alert], [role=log], output"  # <output> is live
    assert page.eval_on_selector_all(live, "es => es.map(e => e.id)") == ["announce"]
    assert [s.split(",")[0] for s in said] == ["7", "1", "7"]
    assert all(s.endswith("% sure") for s in said)


def test_a_second_finger_does_not_draw(page: Any) -> None:
    box = page.locator("#canvas").bounding_box()
    cdp = page.context.new_cdp_session(page)
    x0, x1, y = box["x"] + 0.3 * box["width"], box["x"] + 0.8 * box["width"], box["y"]

    def fingers(kind: str, t: float) -> None:
        points = [
            {"x": x0, "y": y + (0.2 + 0.6 * t) * box["height"], "id": 1},
            {"x": x1, "y": y + (0.2 + 0.6 * t) * box["height"], "id": 2},
        ]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    fingers("touchStart", 0)
    for i in range(1, 11):
        fingers("touchMove", i / 10)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    settled(page)
    pixels = pad_pixels(page)
    width = 280
    column = [pixels[r * width + round(0.3 * width)] for r in range(width)]
    second = [pixels[r * width + round(0.8 * width)] for r in range(width)]
    assert min(column) < 60  # the first finger's line
    assert min(second) == 255  # nothing where the second finger went
    assert page.text_content("#digit") == "1"


def test_a_stroke_is_one_path_without_seams(page: Any) -> None:
    """Many small moves leave the same line as one long one (no darker overlaps)."""
    line = [[(0.2, 0.5), (0.8, 0.5)]]
    draw(page, line, "mouse", steps=1)
    once = pad_pixels(page)
    page.keyboard.press("Escape")
    draw(page, line, "mouse", steps=80)
    many = pad_pixels(page)
    assert sum(v < 128 for v in once) > 1000
    assert max(abs(a - b) for a, b in zip(once, many, strict=True)) <= 8


def test_the_pen_width_control(page: Any) -> None:
    widths = {}
    for value in ("8", "40"):
        page.fill("#pen", value)
        assert page.text_content("#pen-value") == f"{value} px"
        draw(page, ONE, "mouse")
        settled(page)
        widths[value] = sum(v < 128 for v in pad_pixels(page))
        page.keyboard.press("Escape")
    assert widths["40"] > 3 * widths["8"]


def test_keyboard_clears_and_reaches_the_file_chooser(page: Any) -> None:
    draw(page, SEVEN, "mouse")
    settled(page)
    assert page.text_content("#digit") == "7"
    focused = []
    for _ in range(3):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.id"))
    assert focused == ["clear", "file", "pen"]
    page.keyboard.press("Shift+Tab")
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


def _contrast(page: Any, selector: str, prop: str, against: str) -> float:
    """WCAG contrast ratio between a colour of an element and a background colour."""
    return page.evaluate(
        """([sel, prop, against]) => {
            const e = document.querySelector(sel);
            const parse = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
            const lum = ([r, g, b]) => [r, g, b].map((v) => {
                v /= 255;
                return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
            }).reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
            const a = lum(parse(getComputedStyle(e)[prop]));
            const bg = document.querySelector(against);
            const b = lum(parse(getComputedStyle(bg).backgroundColor));
            return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
        }""",
        [selector, prop, against],
    )


@pytest.mark.parametrize(
    ("selector", "prop", "against"),
    [
        ("#canvas", "borderTopColor", "#draw"),
        ("#clear", "borderTopColor", "#draw"),
        ("#steps .unit", "borderTopColor", ".flow"),
        (".bars .track", "borderTopColor", ".flow"),
        ("#steps .step", "borderLeftColor", ".flow"),
    ],
)
def test_edges_of_controls_and_maps_have_contrast(
    page: Any, selector: str, prop: str, against: str
) -> None:
    assert _contrast(page, selector, prop, against) >= 3


@pytest.mark.parametrize("width", [390, 360])
def test_on_a_phone_the_verdict_stays_in_view_while_drawing(
    browser: Any, urls: dict[str, str], width: int
) -> None:
    page, errors = open_page(browser, urls["default"], width, 844)
    for scroll in (0, 260):  # as loaded, and scrolled so the pad's top is off screen
        page.evaluate(f"window.scrollTo(0, {scroll})")
        box = page.locator("#canvas").bounding_box()
        cdp = page.context.new_cdp_session(page)
        x = box["x"] + box["width"] / 2
        y0 = max(box["y"], 0) + 90  # below the verdict, when it is pinned over the pad
        start = {"x": x, "y": y0}
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [start]})
        for i in range(1, 12):
            point = {"x": x - i, "y": y0 + 10 * i}
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
        page.wait_for_function("document.getElementById('digit').textContent !== '\u2013'")
        digit = page.locator("#digit").bounding_box()  # the finger is still down
        assert digit["y"] >= 0
        assert digit["y"] + digit["height"] <= 844
        assert page.evaluate("window.scrollY") == scroll  # drawing does not scroll
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        settled(page)
        page.keyboard.press("Escape")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    box = page.locator("#canvas").bounding_box()
    assert 250 <= box["width"] <= 360
    page.context.close()
    assert errors == []
