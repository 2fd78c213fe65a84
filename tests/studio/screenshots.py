"""Take the README's screenshots of the studio (a script, not a test).

Starts the studio on a free loopback port with the baseline storyteller and the bundled
``examples/stories`` dataset, drives Debian's Chromium with Playwright through a Tell
of ``examples/stories/pioneers`` and writes:

* ``docs/images/studio-tell.png``: the Tell page after the story streamed in;
* ``docs/images/studio-story.png``: the story with a multi-id tag hovered (its boxes and tooltip);
* ``docs/images/studio-tables.png``: the chain-of-thought tables of one image, an id hovered.

Run it from the repository root: ``python tests/studio/screenshots.py [--out docs/images]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make `tests` importable
    sys.path.insert(0, str(ROOT))

from storyreasoning.testing.browser import launch  # noqa: E402
from tests.studio.test_page import (  # noqa: E402
    EXAMPLES,
    pick_multi_id_tag,
    tell_story,
    wait_app,
)

VIEWPORT = {"width": 1500, "height": 1250}


def scroll_below_topbar(page, locator, above: int = 0) -> None:
    """Scroll so that ``locator`` starts just below the sticky top bar (``above`` pixels more of what precedes it)."""
    top = locator.evaluate("el => el.getBoundingClientRect().top + window.scrollY")
    bar = page.evaluate("document.querySelector('.topbar').getBoundingClientRect().height")
    page.evaluate(f"window.scrollTo(0, {max(0, top - bar - 12 - above)})")


def shot(page, selector: str, path: Path) -> None:
    """The part of the viewport that ``selector`` covers, below the top bar (no scrolling, so hovers stay)."""
    box = page.locator(selector).bounding_box()
    bar = page.evaluate("document.querySelector('.topbar').getBoundingClientRect().height")
    top = max(box["y"], bar) - 8
    bottom = min(box["y"] + box["height"] + 8, VIEWPORT["height"])
    clip = {"x": box["x"] - 8, "y": top, "width": box["width"] + 16, "height": bottom - top}
    page.screenshot(path=str(path), clip=clip)
    print("wrote", path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="folder for the PNG files")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from storyreasoning.studio.app import create_app
    from storyreasoning.studio.config import DatasetSource, StudioConfig
    from storyreasoning.studio.server import BackgroundServer
    from storyreasoning.tell.settings import TellerOptions

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as runs:
        config = StudioConfig(
            teller=TellerOptions(teller="baseline"),
            datasets=[DatasetSource("stories", str(EXAMPLES))],
            runs=Path(runs),
        )
        with BackgroundServer(create_app(config)) as server, sync_playwright() as pw:
            browser = launch(pw)
            page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
            page.goto(server.url + "/#tell")
            wait_app(page)
            tell_story(page, sorted((EXAMPLES / "pioneers").glob("*.jpg")))
            page.evaluate("window.scrollTo(0, 0)")
            page.mouse.move(2, 2)
            page.screenshot(path=str(out / "studio-tell.png"))
            print("wrote", out / "studio-tell.png")

            # the story: a multi-id tag hovered draws every box it names, with the tooltip
            tag = pick_multi_id_tag(page) or page.locator(".pane-story .tag.gdo").first
            scroll_below_topbar(page, page.locator("#page-tell .viewer"))
            tag.hover()
            shot(page, "#page-tell .result", out / "studio-story.png")

            # the tables of one image: an id hovered draws its box
            page.mouse.move(2, 2)
            page.locator("#page-tell .viewer .tab[data-tab=tables]").click()
            page.locator("#page-tell .subtab[data-sub='3']").click()
            scroll_below_topbar(page, page.locator("#page-tell .viewer"))
            pane = page.locator("#page-tell .image-pane[data-sub='3']")
            pane.locator("tr[data-id='char2'] .id-cell").hover()
            shot(page, "#page-tell .result", out / "studio-tables.png")
            browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
