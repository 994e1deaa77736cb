"""The draw-a-digit page says "That doesn't look like a digit", in headless Chromium."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from test_not_a_digit import GUESS, LOGITS, flat
from test_serve import running
from test_serve_browser import NO_DIGIT, SEVEN, browser, draw, settled, winner

from mnist_infer.functions import softmax

__all__ = ["browser"]  # the Chromium fixture, shared with test_serve_browser.py

MESSAGE = "That doesn't look like a digit"


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server whose weights call everything a non-digit (best guess 4)."""
    w = flat(tmp_path_factory.mktemp("weights") / "w.pkl", rule=("max_prob", 0.9))
    with running(w) as server:
        yield server.url


@pytest.fixture
def page(browser: Any, url: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1180, "height": 860})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(url)
    pg.wait_for_selector("body[data-ready='1']")
    yield pg
    context.close()
    assert errors == []


def font_px(page: Any, selector: str) -> float:
    return float(page.eval_on_selector(selector, "e => parseFloat(getComputedStyle(e).fontSize)"))


def test_a_non_digit_shows_the_message_and_the_guess_in_small_print(page: Any) -> None:
    big = font_px(page, "#digit")
    normal = font_px(page, "#confidence")
    draw(page, SEVEN, "mouse")
    settled(page)
    percent = f"{softmax(LOGITS)[GUESS] * 100:.1f}%"
    assert page.text_content("#digit") == MESSAGE
    assert page.text_content("#confidence") == f"Looks most like {GUESS} ({percent})"
    assert font_px(page, "#digit") < big / 2  # a sentence, not a huge digit
    assert font_px(page, "#confidence") < normal  # small print
    assert winner(page) == GUESS  # the bars still show what the network thinks
    assert "Not a digit" in page.text_content("#info")
    page.keyboard.press("Escape")
    assert page.text_content("#digit") == NO_DIGIT
    assert font_px(page, "#digit") == big


def test_a_digit_after_a_non_digit_looks_as_before(page: Any) -> None:
    big, normal = font_px(page, "#digit"), font_px(page, "#confidence")
    draw(page, SEVEN, "mouse")
    settled(page)
    assert page.text_content("#digit") == MESSAGE

    def as_digit(route: Any) -> None:  # the same answer, as weights that accept it give it
        answer = json.loads(route.fetch().text())
        answer |= {"digit": answer["guess"], "is_digit": True}
        route.fulfill(json=answer)

    page.route("**/api/predict", as_digit)
    draw(page, [[(0.2, 0.5), (0.8, 0.5)]], "mouse")
    settled(page)
    assert page.text_content("#digit") == str(GUESS)
    assert page.text_content("#confidence").endswith("% sure")
    assert font_px(page, "#digit") == big
    assert font_px(page, "#confidence") == normal
