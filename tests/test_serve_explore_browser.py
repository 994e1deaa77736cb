"""The serve page's units in a real headless Chromium: opened by click and by keyboard.

Set MNIST_INFER_SCREENSHOT=docs/serve.png to save the README's screenshot on the way.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from browser import (
    HIDDEN,
    NO_DIGIT,
    THREE,
    browser,
    draw,
    open_page,
    require,
    save_screenshot,
    settled,
    urls,
)

require()
M = "\u2212"  # the minus sign the page shows
__all__ = ["browser", "urls"]  # fixtures


def drawn(browser: Any, url: str, **size: int) -> tuple[Any, list[str]]:
    page, errors = open_page(browser, url, **size)
    draw(page, THREE, "mouse")
    settled(page)
    assert page.text_content("#digit") == "3"
    return page, errors


def opened(page: Any) -> None:
    page.wait_for_selector("#unit[data-state='open']")


def info(page: Any) -> Any:
    return page.evaluate("fetch('/api/info').then(r => r.json())")


def favourite(page: Any, layer: int, unit: int) -> int:
    return info(page)["layers"][layer - 1]["favours"][unit]


@pytest.mark.parametrize("weights", ["default", "small"])
def test_units_are_shown_in_the_order_the_page_states(
    browser: Any, urls: dict[str, str], weights: str
) -> None:
    page, errors = open_page(browser, urls[weights])
    layers = info(page)["layers"]
    for g in layers:
        step = f"#step-{g['layer']}"
        assert "grouped by the digit they push up most" in page.text_content(f"{step} .order")
        shown = page.eval_on_selector_all(f"{step} .unit", "bs => bs.map(b => +b.dataset.unit)")
        assert shown == g["order"]
        rows = page.locator(f"{step} .group")
        assert rows.count() == 10
        for d in range(10):
            members = rows.nth(d).locator(".unit")
            units = members.evaluate_all("bs => bs.map(b => +b.dataset.unit)")
            assert {g["favours"][j] for j in units} <= {d}
            assert rows.nth(d).get_attribute("aria-label") == f"{len(units)} units that favour {d}"
    assert [g["units"] for g in layers] == HIDDEN[weights]
    page.context.close()
    assert errors == []


@pytest.mark.parametrize("weights", ["default", "small"])
def test_a_first_layer_unit_opens_by_click(
    browser: Any, urls: dict[str, str], weights: str
) -> None:
    page, errors = drawn(browser, urls[weights], width=1280, height=1000)
    cell = page.locator("#step-1 .unit").nth(5)
    j = int(cell.get_attribute("data-unit"))
    cell.click()
    opened(page)
    assert page.locator("#step-1 #unit").count() == 1  # under its layer
    assert cell.get_attribute("aria-expanded") == "true"
    assert page.text_content("#unit-title") == f"Hidden layer 1, unit {j}"
    unit = page.evaluate(f"fetch('/api/unit?layer=1&unit={j}').then(r => r.json())")
    bias = f"{abs(unit['bias']):.2f}"
    text = page.text_content("#unit .sum")
    assert re.fullmatch(
        rf"a1\[{j}\] = x · W1\[:, {j}\] \+ b1\[{j}\] = {M}?\d+\.\d\d [+{M}] {bias} = {M}?\d+\.\d\d,"
        rf" then sigmoid: z1\[{j}\] = [01]\.\d{{3}}",
        text,
    ), text
    captions = page.locator("#unit .map figcaption").all_text_contents()
    assert captions == [
        f"Its 784 weights W1[:, {j}]: red raises a1, blue lowers it",
        "Your input x",
        "x \u00d7 w: what it sees in your digit",
    ]
    sizes = [colours_of(page, i) for i in range(3)]
    assert sizes[0] > 50  # the weights as a picture
    assert sizes[1] > 5  # the digit
    assert sizes[2] > 5  # their product, where the ink is
    fav = favourite(page, 1, j)
    assert f"it favours {fav} most" in page.text_content("#unit")
    assert page.locator("#unit .outgoing li").count() == 6
    strongest = page.locator("#step-1 .live .chip").first  # the unit most on for this digit
    k = int(strongest.text_content().split()[1])
    strongest.click()
    opened(page)
    assert page.text_content("#unit-title") == f"Hidden layer 1, unit {k}"
    assert page.text_content("#unit .sum").endswith(f"z1[{k}] = 1.000")
    if weights == "default":  # the README's picture: a digit drawn, one unit of layer 1 open
        page.evaluate("document.getElementById('step-1').scrollIntoView()")
        save_screenshot(page)
    page.context.close()
    assert errors == []


def colours_of(page: Any, i: int) -> int:
    return page.evaluate(
        """i => {
            const c = document.querySelectorAll('#unit .map canvas')[i];
            const d = c.getContext('2d').getImageData(0, 0, 28, 28).data;
            const seen = new Set();
            for (let k = 0; k < d.length; k += 4) seen.add(d.slice(k, k + 3).join());
            return seen.size;
        }""",
        i,
    )


def test_a_unit_opens_and_closes_by_keyboard(browser: Any, urls: dict[str, str]) -> None:
    page, errors = drawn(browser, urls["small"])
    for _ in range(12):  # Clear, Choose, Pen width, then the first layer's units
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('unit')"):
            break
    focused = "document.activeElement.dataset"
    assert page.evaluate(f"{focused}.layer") == "1"
    first = page.evaluate(f"+{focused}.unit")
    for key in ("ArrowRight", "ArrowRight", "ArrowDown", "ArrowLeft"):
        page.keyboard.press(key)
    j = page.evaluate(f"+{focused}.unit")
    assert j != first
    page.keyboard.press("Enter")
    opened(page)
    assert page.text_content("#unit-title") == f"Hidden layer 1, unit {j}"
    assert page.evaluate(f"+{focused}.unit") == j  # the focus stays, for the next unit
    page.keyboard.press("Escape")  # closes the panel, not the drawing
    assert page.is_hidden("#unit")
    assert page.evaluate(f"+{focused}.unit") == j
    assert page.text_content("#digit") == "3"
    page.keyboard.press("ArrowRight")
    page.keyboard.press(" ")  # Space works as Enter does
    opened(page)
    assert page.text_content("#unit-title") != f"Hidden layer 1, unit {j}"
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")  # with no panel open: clears the pad
    assert page.text_content("#digit") == NO_DIGIT
    page.context.close()
    assert errors == []


@pytest.mark.parametrize(("weights", "layer", "unit"), [("default", 1, 7), ("small", 2, 99)])
def test_a_unit_opens_by_its_number(
    browser: Any, urls: dict[str, str], weights: str, layer: int, unit: int
) -> None:
    page, errors = drawn(browser, urls[weights])
    box = page.locator(f"#step-{layer} .find-unit")
    box.fill(str(unit))
    box.press("Enter")
    opened(page)
    assert page.text_content("#unit-title") == f"Hidden layer {layer}, unit {unit}"
    cell = page.locator(f"#step-{layer} .unit[data-unit='{unit}']")
    assert cell.get_attribute("aria-expanded") == "true"
    box.fill(str(HIDDEN[weights][layer - 1]))  # one past the last: the form does not send it
    box.press("Enter")
    assert page.text_content("#unit-title") == f"Hidden layer {layer}, unit {unit}"
    assert page.evaluate("el => el.validity.valid", box.element_handle()) is False
    page.context.close()
    assert errors == []


@pytest.mark.parametrize("weights", ["default", "small"])
def test_deeper_and_output_units(browser: Any, urls: dict[str, str], weights: str) -> None:
    page, errors = drawn(browser, urls[weights])
    h1, h2 = HIDDEN[weights]
    cell = page.locator("#step-2 .unit").nth(2)
    j = int(cell.get_attribute("data-unit"))
    cell.click()
    opened(page)
    assert page.locator("#step-2 #unit").count() == 1
    assert page.text_content("#unit-title") == f"Hidden layer 2, unit {j}"
    caption = page.text_content("#unit .incoming caption")
    assert caption == f"Strongest of its {h1} incoming weights (from hidden layer 1)"
    rows = page.locator("#unit .incoming tbody tr")
    assert rows.count() == 8
    weights_shown = [
        abs(float(w.replace(M, "-"))) for w in rows.locator("td:nth-child(2)").all_text_contents()
    ]
    assert weights_shown == sorted(weights_shown, reverse=True)
    assert (
        page.text_content("#unit h4:not(#unit-title)")
        == f"What it does to each digit's score: W3[{j}, :]"
    )
    assert page.locator("#unit .pushes li").count() == 10
    assert "For your digit the biggest pushes up come from unit " in page.text_content("#unit")
    k = int(rows.first.locator(".chip").text_content().split()[1])
    rows.first.locator(".chip").click()  # follow an incoming weight down to layer 1
    opened(page)
    assert page.text_content("#unit-title") == f"Hidden layer 1, unit {k}"
    assert page.locator("#step-1 #unit").count() == 1
    assert page.evaluate("document.activeElement.id") == "unit"
    page.locator("#bars .digit-unit").nth(3).click()
    opened(page)
    assert page.locator("#step-3 #unit").count() == 1
    assert page.text_content("#unit-title") == "Output unit 3 (digit 3)"
    y = re.search(r"then softmax: y\[3\] = ([01]\.\d{3})$", page.text_content("#unit .sum"))
    shown = page.text_content("#bars li:nth-child(4) .p")
    assert y is not None
    assert abs(float(y[1]) * 100 - float(shown.rstrip("%"))) <= 0.1
    assert "No outgoing weights: this is the output." in page.text_content("#unit")
    caption = page.text_content("#unit .incoming caption")
    assert caption == f"Strongest of its {h2} incoming weights (from hidden layer 2)"
    page.context.close()
    assert errors == []
