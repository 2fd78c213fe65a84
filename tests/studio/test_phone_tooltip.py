"""The story viewer's tooltip on a phone (390×844, touch), in a real browser.

A tapped tag or table id draws its boxes on the frame and opens a tooltip that names them.
Opened at the finger, the tooltip lay over the frame (the text is under the frame on a
phone, so a tag near the bottom of the screen flipped it upwards), hiding the boxes it
described. Here it must stay clear of the boxes and the frame, inside the screen, close on
a second tap or a tap elsewhere, and never make the page scroll sideways.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from storyreasoning.testing.browser import browser_fixture
from tests import phone
from tests.phone import PHONE, low_on_screen, tap
from tests.studio.test_page import (
    EXAMPLES,
    LIGHTHOUSE_TXT,
    TIMEOUT_MS,
    PageGuard,
    expect,
    inspect_lighthouse,
    next_frames,
    open_page,
    upload,
    wait_app,
)

phone_browser = pytest.fixture(scope="module", name="phone_browser")(browser_fixture)


@pytest.fixture(scope="module")
def studio() -> Iterator[str]:
    """A studio with no storyteller: the Inspect page is all these tests need."""
    from storyreasoning.studio.config import StudioConfig
    from tests.studio.conftest import running_studio

    with running_studio(StudioConfig()) as server:
        yield server.url


def phone_page(browser, url: str):
    """A fresh page on a touch screen the size of a phone, watched by a :class:`PageGuard`."""
    return open_page(browser, url, viewport=PHONE, is_mobile=True, has_touch=True)


def inspect_on_a_phone(page, url: str) -> str:
    """The Inspect page viewing the lighthouse output with its images; the viewer's selector.

    Only taps: a click would put a mouse cursor on the page, which the page scrolls under and
    which Chromium moves back to after each tap, hovering whatever lies there (a phone has none).
    """
    page.goto(url + "/#inspect")
    wait_app(page)
    upload(page, "#page-inspect", [str(p) for p in sorted((EXAMPLES / "lighthouse").glob("*.png"))])
    page.fill("#inspect-text", LIGHTHOUSE_TXT)
    page.locator("#inspect-view").tap()
    viewer = "#page-inspect .viewer"
    page.locator(f"{viewer} .story-card").nth(2).wait_for()
    return viewer


def swipe(page, x: float, y: float, dy: float) -> None:
    """A finger put down at (x, y) and moved ``dy`` pixels down (up when negative), then lifted."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
    for k in range(1, 11):
        cdp.send(
            "Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y + dy * k / 10}]}
        )
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    next_frames(page)


def assert_clear(page, frame, *, whole_frame: bool = True) -> dict:
    """The one tooltip shown covers no box drawn on ``frame`` nor its label (nor the frame, unless
    ``whole_frame`` is false), inside the screen (:func:`tests.phone.assert_clear`)."""
    tip = page.locator(".tooltip.shown")
    expect(tip).to_have_count(1)
    return phone.assert_clear(page, tip, frame.locator(".overlay .box"), frame, whole_frame=whole_frame)


def test_a_tapped_tag_names_its_boxes_beside_the_frame_and_a_second_tap_closes_it(phone_browser, studio):
    with phone_page(phone_browser, studio) as page:
        viewer = inspect_on_a_phone(page, studio)
        tip = page.locator(".tooltip.shown")
        card = page.locator(f"{viewer} .story-card[data-image='3']")
        frame = card.locator(".frame")
        boxes = frame.locator(".overlay .box")
        they = card.locator(".tag.gdo[data-ids='char1 char2']")  # two characters, two boxes

        low_on_screen(they)
        x, y = tap(page, they)
        expect(boxes).to_have_count(2)
        assert "Tomas" in tip.inner_text() and "Ines" in tip.inner_text()
        assert_clear(page, frame)

        page.touchscreen.tap(x, y)  # the same place again: closed, and its boxes with it
        expect(tip).to_have_count(0)
        expect(boxes).to_have_count(0)
        page.touchscreen.tap(x, y)  # and a third time open again
        expect(tip).to_have_count(1)
        assert_clear(page, frame)

        # a tap elsewhere (the card's heading, nothing to tap there) closes it
        tap(page, card.locator("h3"))
        expect(tip).to_have_count(0)
        expect(boxes).to_have_count(0)

        # another tag of another frame, high on the screen this time: clear of its own frame too
        first = page.locator(f"{viewer} .story-card[data-image='1']")
        tag = first.locator(".tag[data-ids='char1']").first
        tag.evaluate("el => el.closest('.story-card').scrollIntoView({block: 'start'})")
        tap(page, tag)
        assert "Ines" in tip.inner_text()
        assert_clear(page, first.locator(".frame"))
        # a tap on another tag moves the tooltip to it, the first tag's boxes gone
        low_on_screen(they)
        tap(page, they)
        expect(first.locator(".overlay .box")).to_have_count(0)
        expect(boxes).to_have_count(2)
        assert_clear(page, frame)
        # the page scrolls under it (a swipe that began on the tag): it moves to stay clear of the frame
        page.evaluate("window.scrollBy(0, 340)")
        next_frames(page)
        moved = frame.bounding_box()
        assert assert_clear(page, frame)["y"] >= moved["y"] + moved["height"]  # below it now

        # a short screen has no room for it whole: it keeps clear of the boxes and scrolls instead
        page.set_viewport_size({"width": PHONE["width"], "height": 600})
        low_on_screen(they)
        next_frames(page)
        shown = assert_clear(page, frame, whole_frame=False)
        assert tip.evaluate("el => el.scrollHeight > el.clientHeight + 100")
        assert shown["height"] >= 200
        # a swipe on it scrolls it (it takes touches now), and leaves it open
        swipe(page, shown["x"] + shown["width"] / 2, shown["y"] + shown["height"] - 20, -120)
        assert tip.evaluate("el => el.scrollTop") > 0
        expect(tip).to_have_count(1)
        expect(boxes).to_have_count(2)
        tap(page, tip)  # a tap on it closes it
        expect(tip).to_have_count(0)
        expect(boxes).to_have_count(0)


def test_a_tapped_table_id_names_its_box_beside_the_frame(phone_browser, studio):
    with phone_page(phone_browser, studio) as page:
        viewer = inspect_on_a_phone(page, studio)
        tip = page.locator(".tooltip.shown")
        page.locator(f"{viewer} .tab[data-tab=tables]").tap()
        page.locator(f"{viewer} .subtab[data-sub='3']").tap()
        pane = page.locator(f"{viewer} .image-pane[data-sub='3']")
        frame = pane.locator(".frame")
        for row in ("char2", "obj3", "bg1"):
            cell = pane.locator(f"tr[data-id='{row}'] .id-cell")
            low_on_screen(cell)
            x, y = tap(page, cell)
            expect(frame.locator(".overlay .box")).to_have_count(1)
            assert row in tip.inner_text()
            assert_clear(page, frame)
            page.touchscreen.tap(x, y)
            expect(tip).to_have_count(0)
            expect(frame.locator(".overlay .box")).to_have_count(0)


def test_a_narrow_window_pins_the_tooltip_for_a_mouse_too(phone_browser, studio):
    """390 px wide with a mouse (no touch): hovering pins the tooltip clear of the frame, as a tap
    does, and leaving the tag closes it."""
    context = phone_browser.new_context(viewport=PHONE)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.guard = PageGuard(page, studio)
    try:
        viewer = inspect_lighthouse(page, studio)
        card = page.locator(f"{viewer} .story-card[data-image='3']")
        they = card.locator(".tag.gdo[data-ids='char1 char2']")
        low_on_screen(they)
        they.hover()
        expect(card.locator(".overlay .box")).to_have_count(2)
        before = assert_clear(page, card.locator(".frame"))
        box = they.bounding_box()
        page.mouse.move(box["x"] + 4, box["y"] + box["height"] / 2)  # moving on the tag: it stays put
        assert page.locator(".tooltip.shown").bounding_box() == before
        page.mouse.move(box["x"] + box["width"] + 60, box["y"] - 40)
        expect(page.locator(".tooltip.shown")).to_have_count(0)
        expect(card.locator(".overlay .box")).to_have_count(0)
        page.guard.check()
    finally:
        context.close()
