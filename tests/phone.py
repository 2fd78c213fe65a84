"""What the phone tests of the studio's viewer and of the exported page share: the screen, taps,
and the check that a tooltip covers neither the frame nor the boxes it names.

Only taps on a touch screen: a click would put a mouse cursor on the page, which the page scrolls
under and which Chromium moves back to after each tap, hovering whatever lies there (a phone has none).
"""

from __future__ import annotations

PHONE = {"width": 390, "height": 844}
SIDEWAYS = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


def overlap(a: dict, b: dict) -> float:
    """The area two rectangles (``bounding_box()`` dictionaries) share."""
    w = min(a["x"] + a["width"], b["x"] + b["width"]) - max(a["x"], b["x"])
    h = min(a["y"] + a["height"], b["y"] + b["height"]) - max(a["y"], b["y"])
    return max(0.0, w) * max(0.0, h)


def on_screen(rect: dict, screen: dict) -> dict:
    """The part of ``rect`` inside the screen (``page.viewport_size``)."""
    x, y = max(0.0, rect["x"]), max(0.0, rect["y"])
    right = min(screen["width"], rect["x"] + rect["width"])
    bottom = min(screen["height"], rect["y"] + rect["height"])
    return {"x": x, "y": y, "width": max(0.0, right - x), "height": max(0.0, bottom - y)}


def low_on_screen(target) -> None:
    """Scroll so ``target`` sits near the bottom of the screen, its frame above it: where a tooltip
    opened at the finger had no room below and turned up over the frame."""
    target.evaluate("el => window.scrollBy(0, el.getBoundingClientRect().bottom - (innerHeight - 40))")


def tap(page, target) -> tuple[float, float]:
    """A finger's tap on the middle of ``target``; where it landed."""
    box = target.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.touchscreen.tap(x, y)
    return x, y


def assert_clear(page, tip, boxes, frame, *, whole_frame: bool = True) -> dict:
    """The tooltip ``tip`` is shown inside the screen and covers none of ``boxes`` (locators of the boxes
    drawn on ``frame``) nor their labels (nor the frame's visible part, unless ``whole_frame`` is false);
    nothing scrolls sideways. The tooltip's rectangle."""
    assert tip.is_visible()
    assert boxes.count() >= 1
    screen = page.viewport_size
    shown = tip.bounding_box()
    assert shown["x"] >= 0 and shown["x"] + shown["width"] <= screen["width"], shown
    assert shown["y"] >= 0 and shown["y"] + shown["height"] <= screen["height"], shown
    for k in range(boxes.count()):
        box = boxes.nth(k)
        where = (box.get_attribute("data-id"), shown, box.bounding_box())
        assert overlap(shown, box.bounding_box()) == 0, where
        assert overlap(shown, box.locator(".box-label").bounding_box()) == 0, where
    if whole_frame:
        assert overlap(shown, on_screen(frame.bounding_box(), screen)) == 0, (shown, frame.bounding_box())
    assert page.evaluate(SIDEWAYS) == 0
    return shown
