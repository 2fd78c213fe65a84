"""The HTML page of a telling on a phone (390×844, touch), in a real browser.

A phone shows no ``title`` tooltips and makes up a mouseover for every tap: a tapped tag lit
its boxes, but nothing said what they were, and a second tap on it (meant to close it) left
them lit. The page was also wider than the phone (the chain-of-thought tables), so it
scrolled sideways. Now a tap opens a tooltip naming the boxes, placed where it covers
neither the frame nor its boxes, inside the screen; a second tap or a tap elsewhere closes
it with the highlight. With a mouse on a wide screen nothing changed (the browser's own
``title`` tooltips); a narrow window pins the tooltip clear of the frame for a mouse too.

Only taps on the touch screen: a click would put a mouse cursor on the page, which the page
scrolls under and which Chromium moves back to after each tap, hovering whatever lies there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from storyreasoning.format import parse_output
from storyreasoning.tell.html import write_html
from storyreasoning.testing.browser import browser_fixture
from tests import phone
from tests.phone import PHONE, SIDEWAYS, low_on_screen, tap
from tests.tell.test_html import LIGHTHOUSE, make_image, offline

TIMEOUT_MS = 30_000

browser = pytest.fixture(scope="module", name="browser")(browser_fixture)


@pytest.fixture(scope="module")
def story_page(tmp_path_factory) -> Path:
    """The lighthouse telling's page, its three frames embedded."""
    path = tmp_path_factory.mktemp("phone") / "lighthouse.html"
    return write_html(path, parse_output(LIGHTHOUSE), [make_image(k) for k in range(3)], title="Lighthouse")


@contextmanager
def opened(browser, path: Path, *, viewport: dict = PHONE, touch: bool = True) -> Iterator:
    """``path`` in a fresh page (a phone's touch screen unless ``touch`` is false); at the end it
    raised no error and asked the network for nothing."""
    context = browser.new_context(viewport=viewport, is_mobile=touch, has_touch=touch)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    try:
        page.goto(path.as_uri())
        yield page
        assert not problems and not offline(requests), (problems, requests)
    finally:
        context.close()


def next_frames(page) -> None:
    """Return after the page painted twice."""
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")


def lit(page) -> set[tuple[str, str]]:
    """``(image, id)`` of every highlighted box."""
    pairs = page.eval_on_selector_all(
        ".box.hl", "els => els.map(e => [e.closest('.frame').dataset.image, e.dataset.id])"
    )
    return {tuple(p) for p in pairs}


def assert_clear(page, frame, *, whole_frame: bool = True) -> dict:
    """The tooltip covers no lit box of ``frame`` nor its label (nor the frame, unless ``whole_frame`` is
    false), inside the screen (:func:`tests.phone.assert_clear`)."""
    return phone.assert_clear(
        page, page.locator("[role=tooltip]"), frame.locator(".box.hl"), frame, whole_frame=whole_frame
    )


def test_a_tapped_tag_names_its_boxes_clear_of_the_frame_and_a_second_tap_closes_it(browser, story_page):
    with opened(browser, story_page) as page:
        assert page.evaluate(SIDEWAYS) == 0  # the wide tables scroll within themselves
        tip = page.locator("[role=tooltip]")
        frame = page.locator("#frame-3 .frame")
        they = page.locator("#frame-3 .tag.gdo[data-ids='char1 char2']")  # two characters, two boxes

        low_on_screen(they)
        x, y = tap(page, they)
        assert {("3", "char1"), ("3", "char2")} <= lit(page)
        text = tip.inner_text()
        assert "char1 char2" in text and "Ines" in text and "Tomas" in text
        assert_clear(page, frame)

        page.touchscreen.tap(x, y)  # the same place again: closed, and the highlight with it
        expect_closed(page)
        page.touchscreen.tap(x, y)  # and a third time open again
        assert tip.is_visible() and ("3", "char2") in lit(page)
        assert_clear(page, frame)

        tap(page, page.locator("#frame-3 h3"))  # a tap elsewhere (nothing to tap there) closes it
        expect_closed(page)

        # a tag of another frame, high on the screen this time: clear of its own frame too
        first = page.locator("#frame-1")
        first.evaluate("el => el.scrollIntoView({block: 'start'})")
        tap(page, first.locator(".tag[data-ids='char1']").first)
        assert "Ines" in tip.inner_text() and "Tomas" not in tip.inner_text()
        assert_clear(page, first.locator(".frame"))
        # a tap on another tag moves the tooltip to it, the first tag's boxes no longer lit
        low_on_screen(they)
        tap(page, they)
        assert ("1", "lm1") not in lit(page) and "Tomas" in tip.inner_text()
        assert_clear(page, frame)
        # the page scrolls under it: it moves to stay clear of the frame
        page.evaluate("window.scrollBy(0, 300)")
        next_frames(page)
        moved = frame.bounding_box()
        assert assert_clear(page, frame)["y"] >= moved["y"] + moved["height"]  # below it now

        tap(page, tip)  # a tap on the tooltip closes it
        expect_closed(page)


def expect_closed(page) -> None:
    assert not page.locator("[role=tooltip]").is_visible()
    assert lit(page) == set() and not page.evaluate("document.body.classList.contains('lit')")


def test_a_tapped_box_names_itself_clear_of_the_frame(browser, story_page):
    with opened(browser, story_page) as page:
        frame = page.locator("#frame-3 .frame")
        lamp = frame.locator(".box[data-id='obj3']")
        frame.evaluate("el => el.scrollIntoView({block: 'center'})")
        x, y = tap(page, lamp)
        assert lit(page) == {("3", "obj3")}
        assert "obj3 (objects)" in page.locator("[role=tooltip]").inner_text()
        assert_clear(page, frame)
        page.touchscreen.tap(x, y)
        expect_closed(page)


def test_a_phone_on_its_side_keeps_the_tooltip_off_the_boxes(browser, story_page):
    """844×390, wider than a narrow screen but touch: a tap still pins the tooltip, and where the
    frame fills the screen's height it goes beside the boxes, inside the screen."""
    side = {"width": PHONE["height"], "height": PHONE["width"]}
    with opened(browser, story_page, viewport=side) as page:
        frame = page.locator("#frame-3 .frame")
        they = page.locator("#frame-3 .tag.gdo[data-ids='char1 char2']")
        low_on_screen(they)
        x, y = tap(page, they)
        assert_clear(page, frame, whole_frame=False)
        page.touchscreen.tap(x, y)
        expect_closed(page)


def test_a_narrow_window_pins_the_tooltip_for_a_mouse_too(browser, story_page):
    """390 px wide with a mouse: hovering shows the tooltip clear of the frame (the browser's own,
    at the pointer, is held back meanwhile) and leaving the tag closes it."""
    with opened(browser, story_page, touch=False) as page:
        tip = page.locator("[role=tooltip]")
        they = page.locator("#frame-3 .tag.gdo[data-ids='char1 char2']")
        low_on_screen(they)
        they.hover()
        before = assert_clear(page, page.locator("#frame-3 .frame"))
        assert they.get_attribute("title") is None
        box = they.bounding_box()
        page.mouse.move(box["x"] + 4, box["y"] + box["height"] / 2)  # moving on the tag: it stays put
        assert tip.bounding_box() == before
        page.mouse.move(box["x"] + box["width"] + 60, box["y"] - 40)
        expect_closed(page)
        assert they.get_attribute("title").startswith("gdo (entity): char1 char2")


def test_a_wide_window_with_a_mouse_keeps_the_browsers_own_tooltips(browser, story_page):
    with opened(browser, story_page, viewport={"width": 1280, "height": 900}, touch=False) as page:
        they = page.locator("#frame-3 .tag.gdo[data-ids='char1 char2']")
        they.hover()
        assert ("3", "char2") in lit(page)
        assert not page.locator("[role=tooltip]").is_visible()
        assert they.get_attribute("title").startswith("gdo (entity): char1 char2")
        they.click()  # a click pins the highlight, as before
        page.mouse.move(2, 2)
        assert ("3", "char2") in lit(page) and not page.locator("[role=tooltip]").is_visible()


def test_a_tooltip_too_long_for_the_screen_scrolls_within_itself(browser, tmp_path):
    """Descriptions long enough that no free part of a short screen holds the tooltip whole: it
    keeps clear of the boxes all the same, scrolls within itself, and a tap on it closes it."""
    long = " and ".join(["an old keeper with a grey beard, a wool cap and a lamp crank in his hand"] * 8)
    text = LIGHTHOUSE.replace("Old keeper lighting the great lamp", long).replace(
        "Young woman holding up the lantern", long.replace("old keeper", "young woman")
    )
    path = write_html(
        tmp_path / "long.html", parse_output(text), [make_image(k) for k in range(3)], title="t"
    )
    with opened(browser, path, viewport={"width": PHONE["width"], "height": 600}) as page:
        tip = page.locator("[role=tooltip]")
        they = page.locator("#frame-3 .tag.gdo[data-ids='char1 char2']")
        low_on_screen(they)
        tap(page, they)
        shown = assert_clear(page, page.locator("#frame-3 .frame"), whole_frame=False)
        assert tip.evaluate("el => el.scrollHeight > el.clientHeight + 100")
        assert shown["height"] >= 48
        tap(page, tip)
        expect_closed(page)
