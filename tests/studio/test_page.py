"""The studio's page in a real browser: Debian's Chromium driven by Playwright.

Every test runs against a real studio on loopback (``studio_url`` from conftest: the
baseline storyteller, examples/stories, two evaluated runs) or one started here whose
storyteller is an OpenAI-compatible endpoint: :class:`~tests.tell.servers.FakeServer`
streaming a prepared output, or a real ``transformers serve`` on the tiny Qwen2.5-VL.

Every page is watched (:class:`PageGuard`): a dialog (``alert``), an uncaught error, a
console error or a request to anything but the studio's own origin fails the test, so
the payloads in :data:`XSS` would be caught executing, and a CDN dependency would be
caught loading.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from urllib.parse import quote

import pytest

from storyreasoning.testing.browser import browser_fixture, why_no_browser

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "stories"
LIGHTHOUSE_TXT = (ROOT / "examples" / "outputs" / "lighthouse.txt").read_text(encoding="utf-8")
VIEWPORT = {"width": 1440, "height": 900}
TIMEOUT_MS = 30_000

# Payloads that would run if any text reached the page as HTML.
XSS_IMG = "<img src=x onerror=alert(1)>"
XSS_SCRIPT = "<script>alert(2)</script>"
XSS_SVG = '"><svg onload=alert(3)>'


_why_no_browser = why_no_browser


# -- watching a page --------------------------------------------------------------------------------


class PageGuard:
    """Records what must never happen on the studio's page: dialogs, errors, foreign requests."""

    def __init__(self, page, origin: str) -> None:
        self.origin = origin.rstrip("/")
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.foreign: list[str] = []
        self.allowed: list[re.Pattern] = []
        page.on("dialog", self._dialog)
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        page.on("request", self._request)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def _console(self, message) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def _request(self, request) -> None:
        url = request.url
        if not (url.startswith(self.origin + "/") or url.startswith(("data:", "blob:"))):
            self.foreign.append(url)

    def allow(self, pattern: str) -> None:
        """Console errors matching ``pattern`` are expected (Chromium logs every 4xx answer)."""
        self.allowed.append(re.compile(pattern))

    def check(self) -> None:
        errors = [e for e in self.errors if not any(p.search(e) for p in self.allowed)]
        assert not self.dialogs, f"a dialog opened (script ran): {self.dialogs}"
        assert not errors, f"console errors: {errors}"
        assert not self.foreign, f"requests outside {self.origin}: {self.foreign}"


# -- page helpers (also used by screenshots.py) ----------------------------------------------------------


def expect(locator):
    """Playwright's retrying assertions (imported here: the module must load without Playwright)."""
    from playwright.sync_api import expect as _expect

    return _expect(locator)


def wait_app(page) -> None:
    page.wait_for_selector(".topbar .nav-link.active", timeout=TIMEOUT_MS)


def upload(page, scope: str, files) -> None:
    """Choose files in the uploader of a page (``#page-tell``) and wait for them to be listed or refused."""
    items = page.locator(f"{scope} .image-item")
    before = items.count()
    page.locator(f"{scope} .uploader input[type=file]").set_input_files(files)
    page.wait_for_function(
        """([scope, before]) => {
            const root = document.querySelector(scope + ' .uploader');
            const busy = /uploading/.test(root.querySelector('.list-head').textContent);
            return !busy && (root.querySelectorAll('.image-item').length > before || root.querySelector('.message'));
        }""",
        arg=[scope, before],
        timeout=TIMEOUT_MS,
    )


def item_names(page, scope: str) -> list[str]:
    return page.locator(f"{scope} .image-item .item-name").all_inner_texts()


def wait_done(page, timeout: int = 60_000) -> str:
    """Wait until the Tell page's stream ended (done, failed or cancelled); return the progress line."""
    page.wait_for_function(
        "() => /^(done|failed|cancelled)/.test(document.querySelector('#page-tell .progress-text').textContent)",
        timeout=timeout,
    )
    return page.locator("#page-tell .progress-text").inner_text()


def tell_one_frame(page, base: str) -> str:
    """On the Tell page of the studio at ``base``: upload one frame, generate, wait for the end; the progress line."""
    page.goto(base + "/#tell")
    wait_app(page)
    upload(page, "#page-tell", [str(EXAMPLES / "lighthouse" / "01.png")])
    page.click("#generate")
    return wait_done(page)


def next_frames(page) -> None:
    """Return after the page painted twice (the console is written once per frame)."""
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")


def tell_story(page, paths) -> None:
    upload(page, "#page-tell", [str(p) for p in paths])
    page.click("#generate")
    assert wait_done(page).startswith("done")


def pick_multi_id_tag(page, scope: str = ""):
    tags = page.locator(f"{scope} .pane-story .tag[data-ids*=' ']")
    return tags.first if tags.count() else None


def inspect_lighthouse(page, studio_url: str) -> str:
    """The Inspect page viewing the lighthouse output with its images; the viewer's selector."""
    page.goto(studio_url + "/#inspect")
    wait_app(page)
    inspect = "#page-inspect"
    viewer = f"{inspect} .viewer"
    upload(page, inspect, [str(p) for p in sorted((EXAMPLES / "lighthouse").glob("*.png"))])
    page.fill("#inspect-text", LIGHTHOUSE_TXT)
    page.click("#inspect-view")
    page.locator(f"{viewer} .story-card").nth(2).wait_for()
    return viewer


def hover_tag(page, tag) -> None:
    tag.scroll_into_view_if_needed()
    tag.hover()


def box_geometry(box) -> dict:
    """Where a drawn box sits on its image, as fractions of the image's rendered size."""
    return box.evaluate(
        """el => {
            const frame = el.closest('.frame');
            const img = frame.querySelector('img').getBoundingClientRect();
            const r = el.getBoundingClientRect();
            return {id: el.dataset.id, box: el.dataset.box.split(',').map(Number),
                    width: Number(frame.dataset.width), height: Number(frame.dataset.height),
                    x: (r.left - img.left) / img.width, y: (r.top - img.top) / img.height,
                    w: r.width / img.width, h: r.height / img.height};
        }"""
    )


def assert_box_matches(geometry: dict, tolerance: float = 0.006) -> None:
    """The drawn box is the CoT's pixel box, in percent of the image's natural size."""
    x1, y1, x2, y2 = geometry["box"]
    width, height = geometry["width"], geometry["height"]
    x1, x2 = max(0, min(width, x1)), max(0, min(width, x2))
    y1, y2 = max(0, min(height, y1)), max(0, min(height, y2))
    expected = {"x": x1 / width, "y": y1 / height, "w": (x2 - x1) / width, "h": (y2 - y1) / height}
    for key, value in expected.items():
        assert abs(geometry[key] - value) < tolerance, (key, geometry, expected)


def canvas_has_picture(canvas) -> bool:
    """A character crop was painted: its pixels vary (a blank canvas is uniform)."""
    return canvas.evaluate(
        """c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            const seen = new Set();
            for (let i = 0; i < d.length; i += 37 * 4) seen.add(d[i] + ',' + d[i + 1] + ',' + d[i + 2]);
            return seen.size > 8;
        }"""
    )


def png_bytes(size=(64, 48), colour=(200, 80, 40)) -> bytes:
    from PIL import Image

    out = BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


# -- fixtures ------------------------------------------------------------------------------------------


browser = pytest.fixture(scope="module", name="browser")(browser_fixture)


@contextmanager
def open_page(browser, url: str, **context_options) -> Iterator:
    """A fresh page on ``url``, watched by a :class:`PageGuard` that is checked at the end (``context_options``
    over the desktop's: a phone's ``viewport``, ``is_mobile``, ``has_touch``)."""
    context = browser.new_context(**{"viewport": VIEWPORT, "accept_downloads": True, **context_options})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.guard = PageGuard(page, url)
    try:
        yield page
        page.guard.check()
    finally:
        context.close()


@pytest.fixture
def page(browser, studio_url):
    with open_page(browser, studio_url) as page:
        yield page


@pytest.fixture(scope="module")
def fake_endpoint():
    """An OpenAI-compatible server on loopback that streams the lighthouse output in small pieces."""
    from tests.tell.servers import FakeServer

    with FakeServer("story", text=LIGHTHOUSE_TXT, chunk=48, piece_delay=0.005, delay=20) as fake:
        yield fake


@pytest.fixture(scope="module")
def endpoint_studio(fake_endpoint) -> Iterator[str]:
    """A studio whose storyteller is ``fake_endpoint`` (the OpenAI-compatible teller, for real)."""
    from storyreasoning.studio.config import StudioConfig
    from storyreasoning.tell.settings import TellerOptions
    from tests.studio.conftest import running_studio

    config = StudioConfig(teller=TellerOptions(endpoint=fake_endpoint.url, retries=0, timeout=30))
    with running_studio(config) as server:
        yield server.url


@pytest.fixture
def fake(fake_endpoint):
    """The fake endpoint, reset to streaming the lighthouse output after the test."""
    yield fake_endpoint
    fake_endpoint.stopping.set()  # end a stalled stream now (its waiters are woken), not at teardown
    time.sleep(0.05)
    fake_endpoint.stopping.clear()
    fake_endpoint.behaviour = "story"
    fake_endpoint.text = LIGHTHOUSE_TXT
    fake_endpoint.drop_after = 3
    fake_endpoint.piece_delay = 0.005


# -- the static files ------------------------------------------------------------------------------------


STATIC = ROOT / "src" / "storyreasoning" / "studio" / "static"
HTML_SINKS = re.compile(
    r"\.(?:innerHTML|outerHTML)\s*[+]?=|insertAdjacentHTML\s*\(|document\.write|\beval\s*\(|new\s+Function\s*\(|"
    r"createContextualFragment|DOMParser"
)


def test_the_scripts_never_parse_text_as_html():
    scripts = sorted(STATIC.glob("*.js"))
    assert {p.name for p in scripts} >= {"app.js", "viewer.js", "tell.js", "dom.js"}
    for script in scripts:
        found = HTML_SINKS.findall(script.read_text(encoding="utf-8"))
        assert not found, f"{script.name} uses {found}"


def test_the_page_loads_only_its_own_files_and_no_inline_code():
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    assert re.findall(r"<script\b[^>]*>", html) == ['<script type="module" src="/static/app.js">']
    assert "<style" not in html and not re.search(r"\sstyle\s*=", html)
    assert not re.search(r"\son\w+\s*=", html)  # no inline event handlers
    for url in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert url.startswith("/static/"), url
    assert set(re.findall(r'href="(/static/[^"]+\.css)"', html)) == {"/static/app.css"}


# -- Tell with the baseline ----------------------------------------------------------------------------


def test_tell_with_the_baseline_reorders_streams_and_draws(page, studio_url):
    page.goto(studio_url + "/#tell")
    wait_app(page)
    tell = "#page-tell"
    pioneers = sorted((EXAMPLES / "pioneers").glob("*.jpg"))
    upload(page, tell, [str(p) for p in pioneers])
    assert item_names(page, tell) == ["01.jpg", "02.jpg", "03.jpg", "04.jpg"]

    # drag the first image onto the second: they swap, and the labels are renumbered
    items = page.locator(f"{tell} .image-item")
    items.nth(0).drag_to(items.nth(1))
    assert item_names(page, tell) == ["02.jpg", "01.jpg", "03.jpg", "04.jpg"]
    assert page.locator(f"{tell} .image-item .item-label").all_inner_texts() == [
        f"Image {k}" for k in range(1, 5)
    ]
    # the keyboard way: "move later" on the third image
    page.click(f"{tell} .image-item:nth-child(3) .icon-btn.down")
    assert item_names(page, tell) == ["02.jpg", "01.jpg", "04.jpg", "03.jpg"]
    shown_ids = [items.nth(k).get_attribute("data-id") for k in range(4)]

    with page.expect_request(lambda r: r.url.endswith("/api/tell") and r.method == "POST") as sent:
        page.click("#generate")
    body = sent.value.post_data_json
    assert body["images"] == shown_ids  # the order on screen is the story order
    assert body["temperature"] == 0.7 and body["seed"] is None  # defaults from /api/config
    assert page.locator("#cancel").is_enabled()
    progress = wait_done(page)
    # the baseline has no tokens: its progress counts what it did (its chunks are not tokens)
    assert re.fullmatch(r"done · 4 images analysed, [\d,]+ characters written in [\d.]+ s", progress), (
        progress
    )
    assert (
        page.locator("#page-tell .progress").get_attribute("aria-valuenow") == "8"
    )  # 4 analysed + 4 written
    assert page.locator("#cancel").is_disabled() and page.locator("#generate").is_enabled()
    assert "<think>" in page.locator(f"{tell} .console").inner_text()  # the raw stream, as text

    viewer = f"{tell} .viewer"
    # a tab per image with its tables filled, then the narrative structure
    subtabs = page.locator(f"{viewer} .subtab").all_inner_texts()
    assert [t.strip() for t in subtabs] == ["Image 1", "Image 2", "Image 3", "Image 4", "Narrative Structure"]
    for k in range(1, 5):
        rows = page.locator(f"{viewer} .image-pane[data-sub='{k}'] tbody tr")
        assert rows.count() > 0, f"image {k} has no CoT rows"
    assert page.locator(f"{viewer} .narrative-pane tbody tr").count() == 5
    # the story: one card per frame, each showing its frame (the reordered upload)
    cards = page.locator(f"{viewer} .story-card")
    assert cards.count() == 4
    for k in range(4):
        src = cards.nth(k).locator(".frame img").get_attribute("src")
        assert src.endswith(shown_ids[k])
    assert page.locator(f"{viewer} .legend").is_visible()

    # hover a tag whose entity has a box: the box is drawn where the CoT says
    tag = page.locator(f"{viewer} .story-card .tag.gdo:not(.unknown)").first
    hover_tag(page, tag)
    boxes = tag.locator("xpath=ancestor::article[contains(@class,'story-card')]").locator(".overlay .box")
    assert boxes.count() >= 1 and boxes.first.is_visible()
    ids = tag.get_attribute("data-ids").split()
    for k in range(boxes.count()):
        geometry = box_geometry(boxes.nth(k))
        assert geometry["id"] in ids
        assert_box_matches(geometry)
    tooltip = page.locator(".tooltip.shown")
    assert tooltip.is_visible() and ids[0] in tooltip.inner_text()
    page.mouse.move(2, 2)
    assert page.locator(f"{viewer} .story-card .overlay .box").count() == 0
    assert not page.locator(".tooltip.shown").count()

    # character cards: a crop painted from the first appearance, and the frames they appear in
    card = page.locator(f"{viewer} .char-card").first
    card.locator("canvas[data-drawn]").wait_for()
    assert canvas_has_picture(card.locator("canvas"))
    assert card.locator(".frame-chip").count() >= 1

    # diagnostics: the baseline writes a well-structured output
    page.click(f"{viewer} .tab[data-tab=diagnostics]")
    assert page.locator(f"{viewer} .pane-diagnostics .verdict").inner_text().startswith("Well-structured")

    # export: one self-contained HTML file
    with page.expect_download() as download:
        page.click(f"{viewer} .viewer-toolbar .btn")
    html = Path(download.value.path()).read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "data:image/jpeg;base64," in html


def test_upload_checks_and_literal_file_names(page, studio_url):
    page.guard.allow(r"status of 415")  # Chromium logs the refused upload's answer
    page.goto(studio_url + "/#tell")
    wait_app(page)
    tell = "#page-tell"
    name = XSS_IMG + ".png"
    upload(page, tell, [{"name": name, "mimeType": "image/png", "buffer": png_bytes()}])
    assert item_names(page, tell) == [name]  # shown as text, not as an element
    assert page.locator(f"{tell} .image-item img").count() == 1  # only the thumbnail

    # a text file renamed .png passes the browser's check; the server's refusal is shown
    upload(
        page,
        tell,
        [{"name": "notes.png", "mimeType": "image/png", "buffer": b"just some notes, no image\n" * 4}],
    )
    refusal = page.locator(f"{tell} .messages .message.server")
    assert refusal.count() == 1
    text = refusal.inner_text()
    assert text.startswith("notes.png") and "rejected" in text and len(text) > 30
    assert item_names(page, tell) == [name]

    # checked before any upload: the type, and the size against /api/config's limit
    upload(page, tell, [{"name": "story.txt", "mimeType": "text/plain", "buffer": b"hello"}])
    assert "is a text/plain file" in page.locator(f"{tell} .messages").inner_text()
    limit = page.evaluate("window.studio.config.limits.max_image_bytes")
    big = {"name": "huge.png", "mimeType": "image/png", "buffer": png_bytes() + b"\0" * limit}
    upload(page, tell, [big])
    assert "the limit is" in page.locator(f"{tell} .messages").inner_text()
    assert item_names(page, tell) == [name]


def test_a_number_the_field_cannot_read_is_refused_next_to_it(page, studio_url):
    """ "-" or "1e" typed in a number field leave its value empty (validity.badInput): refused, never
    sent as the default."""
    page.goto(studio_url + "/#tell")
    wait_app(page)
    upload(page, "#page-tell", [str(EXAMPLES / "lighthouse" / "01.png")])
    sent = []
    page.on(
        "request", lambda r: sent.append(r) if r.url.endswith("/api/tell") and r.method == "POST" else None
    )
    for field, typed, words in [
        ("max_new_tokens", "-", "Max tokens is not a whole number: type a whole number from 1 to 32768"),
        ("temperature", "1e", "Temperature is not a number: type a number from 0 to 2 (e.g. 0.7)"),
        ("seed", "-", "Seed is not a whole number"),
    ]:
        field_input = page.locator(f"#tell-{field}")
        field_input.fill("")
        field_input.press_sequentially(typed)
        assert field_input.evaluate("el => el.validity.badInput")
        page.click("#generate")
        error = page.locator(f"#tell-{field}-error")
        expect(error).to_be_visible()
        assert error.inner_text().startswith(words), error.inner_text()
        assert field_input.get_attribute("aria-invalid") == "true"
        assert page.evaluate("document.activeElement.id") == f"tell-{field}"
        field_input.fill("")  # typing again clears the message
        expect(error).to_be_hidden()
        assert field_input.get_attribute("aria-invalid") is None
    page.fill("#tell-top_p", "1.5")
    page.click("#generate")
    expect(page.locator("#tell-top_p-error")).to_have_text("Top-p must be above 0 and at most 1, not 1.5.")
    page.wait_for_timeout(200)
    assert sent == []  # nothing was sent
    page.fill("#tell-top_p", "")
    with page.expect_request(lambda r: r.url.endswith("/api/tell")) as request:
        page.click("#generate")
    assert request.value.post_data_json["max_new_tokens"] == 4096  # empty: the default
    assert wait_done(page).startswith("done")


@pytest.mark.parametrize("width", [360, 400])
def test_a_phone_sees_every_page_without_scrolling_sideways(browser, studio_url, width):
    context = browser.new_context(viewport={"width": width, "height": 800}, is_mobile=True, has_touch=True)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.guard = PageGuard(page, studio_url)
    sideways = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    try:
        page.goto(studio_url + "/#tell")
        wait_app(page)
        for link in page.locator(".topbar .nav-link").all():  # every page's link is on screen
            box = link.bounding_box()
            assert 0 <= box["x"] and box["x"] + box["width"] <= width, link.inner_text()
        upload(page, "#page-tell", [str(EXAMPLES / "lighthouse" / "01.png")])
        page.click("#generate")  # a real tap: nothing lies over the button
        assert wait_done(page).startswith("done")
        assert page.evaluate(sideways) == 0
        viewer = page.locator("#page-tell .viewer").bounding_box()
        for tab in page.locator("#page-tell .viewer .tab").all():  # all four tabs in sight (wrapped)
            box = tab.bounding_box()
            assert viewer["x"] <= box["x"] and box["x"] + box["width"] <= viewer["x"] + viewer["width"], (
                tab.inner_text()
            )
        page.click("#page-tell .viewer .tab[data-tab=raw]")
        assert page.locator("#page-tell .viewer .pane-raw").is_visible()
        for route, ready in [
            ("#datasets/stories/pioneers", "#page-datasets .viewer .story-card"),
            ("#runs/baseline/lighthouse/vs/reference", "#page-runs .compare-side .story-card"),
            ("#runs", "#page-runs .run-card"),
            ("#inspect", "#inspect-text"),
        ]:
            page.goto(f"{studio_url}/{route}")
            page.locator(ready).first.wait_for()
            assert page.evaluate(sideways) == 0, route
        page.guard.check()
    finally:
        context.close()


# -- a prepared output, streamed by an OpenAI-compatible endpoint -----------------------------------------


def test_a_streamed_output_fills_tables_story_boxes_and_cards(browser, endpoint_studio, fake):
    with open_page(browser, endpoint_studio) as page:
        page.goto(endpoint_studio + "/#tell")
        wait_app(page)
        tell = "#page-tell"
        viewer = f"{tell} .viewer"
        upload(page, tell, [str(p) for p in sorted((EXAMPLES / "lighthouse").glob("*.png"))])
        page.evaluate(WATCH_MUTATIONS)
        page.click("#generate")
        assert wait_done(page).startswith("done")
        chunks = int(page.locator(f"{tell} .progress").get_attribute("aria-valuenow"))
        assert chunks > 50  # ~100 pieces of 48 characters

        # while streaming, each chunk only appended to the page: nothing was rebuilt or re-parsed
        mutations = page.evaluate("window.__mutations")
        streaming = [m for m in mutations if m["tokens"] > 0 and not m["final"]]
        assert len(streaming) > 50
        assert sum(m["removed"] for m in streaming) == 0, [m for m in streaming if m["removed"]][:3]
        assert max(m["added"] for m in streaming) < 120  # an image tab with its empty tables is the most
        assert sum(m["added"] for m in streaming) < 2 * page.locator(f"{viewer} *").count()

        assert page.locator(f"{viewer} .image-pane[data-sub='1'] .cot-table.characters tbody tr").count() == 1
        assert page.locator(f"{viewer} .image-pane[data-sub='3'] .cot-table.objects tbody tr").count() == 3
        assert page.locator(f"{viewer} .narrative-pane tbody tr").count() == 5
        cards = page.locator(f"{viewer} .story-card")
        assert cards.count() == 3
        assert (
            cards.nth(0).locator(".story-text").inner_text().startswith("Ines climbed toward the lighthouse")
        )

        # the multi-id tag: both boxes on image 3, each where the CoT puts it, and both rows in the tooltip
        page.click(f"{viewer} .tab[data-tab=story]")
        tag = page.locator(f"{viewer} .story-card[data-image='3'] .tag.gdo[data-ids='char1 char2']")
        assert tag.inner_text() == "They"
        hover_tag(page, tag)
        boxes = page.locator(f"{viewer} .story-card[data-image='3'] .overlay .box")
        assert sorted(boxes.evaluate_all("els => els.map(e => e.dataset.id)")) == ["char1", "char2"]
        geometry = {g["id"]: g for g in (box_geometry(boxes.nth(k)) for k in range(2))}
        assert geometry["char2"]["box"] == [80, 120, 230, 420] and geometry["char1"]["box"] == [
            330,
            110,
            450,
            420,
        ]
        for g in geometry.values():
            assert_box_matches(g)
        tip = page.locator(".tooltip.shown").inner_text()
        assert "Tomas" in tip and "Ines" in tip and "Old keeper lighting the great lamp" in tip

        # hovering an id in the tables draws that box on the image of the tab
        page.click(f"{viewer} .tab[data-tab=tables]")
        page.click(f"{viewer} .subtab[data-sub='2']")
        page.hover(f"{viewer} .image-pane[data-sub='2'] tr[data-id='char2'] .id-cell")
        drawn = page.locator(f"{viewer} .image-pane[data-sub='2'] .overlay .box")
        assert drawn.count() == 1 and box_geometry(drawn.first)["box"] == [300, 60, 450, 415]
        assert "Tomas" in page.locator(".tooltip.shown").inner_text()

        # character cards: crops from the first appearance, the frames they appear in
        page.click(f"{viewer} .tab[data-tab=story]")
        chars = page.locator(f"{viewer} .char-card")
        assert chars.locator(".char-name").all_inner_texts() == ["Ines", "Tomas"]
        assert chars.nth(0).locator(".frame-chip").all_inner_texts() == ["Image 1", "Image 2", "Image 3"]
        assert chars.nth(1).locator(".frame-chip").all_inner_texts() == ["Image 2", "Image 3"]
        chars.nth(1).locator("canvas[data-drawn]").wait_for()
        assert chars.nth(1).locator("canvas").get_attribute("data-drawn") == "2:300,60,450,415"
        assert canvas_has_picture(chars.nth(0).locator("canvas"))


def test_tables_fill_while_streaming_and_cancel_keeps_them(browser, endpoint_studio, fake):
    fake.behaviour, fake.drop_after = "stall", 40  # the CoT's first images, then silence
    with open_page(browser, endpoint_studio) as page:
        page.goto(endpoint_studio + "/#tell")
        wait_app(page)
        viewer = "#page-tell .viewer"
        upload(page, "#page-tell", [str(p) for p in sorted((EXAMPLES / "lighthouse").glob("*.png"))])
        page.locator("#generate").focus()
        page.keyboard.press("Enter")  # the keyboard's way: the focus goes to Cancel, not to the page's start
        expect(page.locator("#cancel")).to_be_focused()
        page.locator(f"{viewer} .image-pane[data-sub='2'] .cot-table.characters tbody tr").nth(1).wait_for(
            state="attached"
        )
        expect(page.locator("#page-tell .progress-text")).to_contain_text("40 /")  # then the stream stalls
        assert page.locator(f"{viewer} .subtab.active").inner_text().strip() in {
            "Image 2",
            "Image 3",
        }  # it follows
        page.keyboard.press("Enter")  # Cancel
        assert wait_done(page).startswith("cancelled")
        expect(page.locator("#generate")).to_be_focused()  # back to Generate, ready for the next story
        assert "Cancelled" in page.locator(f"{viewer} .viewer-message").inner_text()
        # what arrived is parsed exactly once the stream ends: tables kept, findings listed
        expect(page.locator(f"{viewer} .tab[data-tab=diagnostics]")).to_have_text(
            re.compile(r"Diagnostics \(\d+\)")
        )
        assert page.locator(f"{viewer} .image-pane[data-sub='1'] tbody tr").count() >= 3
        assert "Cancelled" in page.locator(f"{viewer} .viewer-message").inner_text()
        assert page.locator("#generate").is_enabled()


def test_a_backend_error_is_shown(browser, endpoint_studio, fake):
    fake.behaviour, fake.drop_after = "error-event", 5
    with open_page(browser, endpoint_studio) as page:
        assert tell_one_frame(page, endpoint_studio) == "failed"
        alert = page.locator("#page-tell .setup .alert.error")
        assert alert.is_visible() and "CUDA out of memory" in alert.inner_text()
        viewer = "#page-tell .viewer"
        expect(page.locator(f"{viewer} .tab[data-tab=diagnostics]")).to_have_text(
            re.compile(r"Diagnostics \(\d+\)")
        )
        page.click(f"{viewer} .tab[data-tab=raw]")
        assert (
            page.locator(f"{viewer} .raw-text").inner_text().startswith("1<think>")
        )  # line numbers, then the text


def test_a_failure_before_any_output_says_nothing_arrived(browser, endpoint_studio, fake):
    fake.behaviour = "status"  # a 500 before the first token
    with open_page(browser, endpoint_studio) as page:
        assert tell_one_frame(page, endpoint_studio) == "failed"
        expect(page.locator("#page-tell .setup .alert.error")).to_contain_text("500")
        message = page.locator("#page-tell .viewer .viewer-message")
        expect(message).to_have_text("The storyteller stopped with an error before it wrote anything.")
        assert page.locator("#page-tell .viewer .story-card").count() == 0


def test_a_reload_mid_stream_follows_the_story_again(browser, endpoint_studio, fake):
    fake.behaviour, fake.drop_after = "stall", 20  # 20 pieces, then the model is at work
    lighthouse = sorted((EXAMPLES / "lighthouse").glob("*.png"))
    with open_page(browser, endpoint_studio) as page:
        page.goto(endpoint_studio + "/#tell")
        wait_app(page)
        tell = "#page-tell"
        viewer = f"{tell} .viewer"
        progress = page.locator(f"{tell} .progress-text")
        upload(page, tell, [str(p) for p in lighthouse])
        page.click("#generate")
        expect(progress).to_contain_text("20 / 4096 tokens")
        next_frames(page)
        console = page.locator(f"{tell} .console").inner_text()
        rows = page.locator(f"{viewer} .image-pane[data-sub='1'] tbody tr").count()
        assert console.startswith("<think>") and rows >= 1

        page.reload()
        wait_app(page)
        # the page asks for the job's events again from the first: the story is where it was
        expect(progress).to_contain_text("20 / 4096 tokens")
        next_frames(page)
        assert page.locator(f"{tell} .console").inner_text() == console
        assert page.locator(f"{viewer} .image-pane[data-sub='1'] tbody tr").count() == rows
        assert item_names(page, tell) == [p.name for p in lighthouse]
        assert page.locator("#generate").is_disabled() and page.locator("#cancel").is_enabled()

        # reloaded on another page, it still follows the story (its job keeps a reader)
        page.goto(endpoint_studio + "/#inspect")
        page.reload()
        wait_app(page)
        page.click(".nav-link[data-page=tell]")
        expect(progress).to_contain_text("20 / 4096 tokens")

        page.click("#cancel")
        assert wait_done(page) == "cancelled after 20 tokens"
        page.reload()  # an ended story is shown again too, as the server still keeps it
        wait_app(page)
        assert wait_done(page) == "cancelled after 20 tokens"
        assert page.locator(f"{tell} .console").inner_text() == console
        assert page.locator("#generate").is_enabled()


def test_a_long_line_goes_to_the_console_once_a_frame(browser, endpoint_studio, fake):
    """120,000 characters on one line, in 48-character chunks: the console is written once per
    frame, a long line in blocks, so the page keeps up (written chunk by chunk into one ever
    longer line, this took half a minute)."""
    line = "The long tale goes on and on. " * 4000
    fake.text = LIGHTHOUSE_TXT.replace("the dark sea</gdl>.", f"the dark sea</gdl>. {line}", 1)
    fake.piece_delay = 0
    with open_page(browser, endpoint_studio) as page:
        page.goto(endpoint_studio + "/#tell")
        wait_app(page)
        tell = "#page-tell"
        upload(page, tell, [str(p) for p in sorted((EXAMPLES / "lighthouse").glob("*.png"))])
        page.evaluate(
            """() => { window.__writes = 0;
                new MutationObserver(() => { window.__writes += 1; })
                    .observe(document.querySelector('#page-tell .console'), {childList: true, subtree: true}); }"""
        )
        started = time.monotonic()
        page.click("#generate")
        assert wait_done(page, timeout=60_000).startswith("done")
        seconds = time.monotonic() - started
        chunks = int(page.locator(f"{tell} .progress").get_attribute("aria-valuenow"))
        assert chunks > 2500
        assert seconds < 20, seconds
        writes = page.evaluate("window.__writes")
        assert writes * 4 < chunks, (writes, chunks)  # batched: a write per frame, not per chunk
        blocks = page.evaluate(
            "() => Array.from(document.querySelectorAll('#page-tell .console > div'), d => d.textContent.length)"
        )
        assert max(blocks) <= 4096 and sum(blocks) == len(fake.text) - fake.text.count("\n")
        assert page.locator(f"{tell} .console").evaluate("c => c.textContent") == fake.text.replace("\n", "")
        assert (
            page.locator(f"{tell} .story-card[data-image='3'] .story-text")
            .inner_text()
            .endswith("on and on.")
        )


# Records, per event the page handles, how many elements it added to and removed from the
# Tell page's viewer, with the chunk count at that moment and whether the story was done.
WATCH_MUTATIONS = """() => {
    window.__mutations = [];
    const progress = document.querySelector('#page-tell .progress');
    const line = document.querySelector('#page-tell .progress-text');
    new MutationObserver(records => {
        let added = 0, removed = 0;
        for (const r of records) {
            for (const n of r.addedNodes) if (n.nodeType === 1) added += 1 + n.querySelectorAll('*').length;
            for (const n of r.removedNodes) if (n.nodeType === 1 && !n.classList.contains('empty')) removed += 1;
        }
        window.__mutations.push({tokens: Number(progress.getAttribute('aria-valuenow')) || 0,
                                 final: /^done/.test(line.textContent), added, removed});
    }).observe(document.querySelector('#page-tell .viewer'), {childList: true, subtree: true});
}"""


def xss_output() -> str:
    """The lighthouse output with script and HTML payloads in cells, the story and the free text."""
    text = LIGHTHOUSE_TXT.replace("Young woman in a yellow raincoat carrying a lantern", XSS_IMG, 1)
    text = text.replace("| char2 | Tomas |", f"| char2 | {XSS_SVG} |", 1)
    text = text.replace("Rocky cliff path above the sea", XSS_SCRIPT, 1)
    text = text.replace("## Image 2", f"Note {XSS_SCRIPT} {XSS_IMG}\n\n## Image 2", 1)
    text = text.replace("with <gdo obj1>", f"with {XSS_SCRIPT} <gdo obj1>", 1)
    text = text.replace("<gdo char2>Tomas</gdo>", f"<gdo char2>{XSS_SVG}</gdo>", 1)
    return text.replace("the dark sea</gdl>.", f"the dark sea</gdl>. {XSS_IMG}", 1)


def assert_payloads_are_text(page, viewer: str) -> None:
    """The payloads are on the page as text, and none became an element."""
    counts = page.evaluate(
        """() => ({scripts: document.scripts.length, svgs: document.querySelectorAll('svg').length,
                   xs: document.querySelectorAll('img[src="x"]').length})"""
    )
    assert counts == {"scripts": 1, "svgs": 0, "xs": 0}, counts
    story = page.locator(f"{viewer} .pane-story").inner_text()
    assert XSS_SCRIPT in story and XSS_IMG in story and XSS_SVG in story
    page.click(f"{viewer} .tab[data-tab=tables]")
    page.click(f"{viewer} .subtab[data-sub='1']")
    tables = page.locator(f"{viewer} .image-pane[data-sub='1']").inner_text()
    assert XSS_IMG in tables and XSS_SCRIPT in tables
    page.hover(f"{viewer} .image-pane[data-sub='1'] tr[data-id='char1'] .id-cell")
    assert XSS_IMG in page.locator(".tooltip.shown").inner_text()
    page.click(f"{viewer} .tab[data-tab=raw]")
    assert XSS_SVG in page.locator(f"{viewer} .raw-text").inner_text()


def test_payloads_in_a_streamed_output_stay_text(browser, endpoint_studio, fake):
    fake.text = xss_output()
    with open_page(browser, endpoint_studio) as page:
        page.goto(endpoint_studio + "/#tell")
        wait_app(page)
        upload(page, "#page-tell", [str(p) for p in sorted((EXAMPLES / "lighthouse").glob("*.png"))])
        page.click("#generate")
        assert wait_done(page).startswith("done")
        assert XSS_SCRIPT in page.locator("#page-tell .console").inner_text()
        assert_payloads_are_text(page, "#page-tell .viewer")


# -- Inspect ------------------------------------------------------------------------------------------


def test_inspect_a_pasted_output_with_its_images(page, studio_url):
    viewer = inspect_lighthouse(page, studio_url)
    tag = page.locator(f"{viewer} .story-card[data-image='3'] .tag[data-ids='char1 char2']").first
    hover_tag(page, tag)
    boxes = page.locator(f"{viewer} .story-card[data-image='3'] .overlay .box")
    assert sorted(boxes.evaluate_all("els => els.map(e => e.dataset.id)")) == ["char1", "char2"]
    for k in range(2):
        assert_box_matches(box_geometry(boxes.nth(k)))
    assert page.locator(f"{viewer} .char-card").count() == 2
    assert page.locator(f"{viewer} .tab[data-tab=diagnostics]").inner_text() == "Diagnostics (0)"


def test_inspect_payloads_from_a_loaded_file_stay_text(page, studio_url):
    page.goto(studio_url + "/#inspect")
    wait_app(page)
    inspect = "#page-inspect"
    viewer = f"{inspect} .viewer"
    upload(page, inspect, [str(p) for p in sorted((EXAMPLES / "lighthouse").glob("*.png"))])
    page.set_input_files(
        "#inspect-file",
        [{"name": XSS_IMG + ".txt", "mimeType": "text/plain", "buffer": xss_output().encode()}],
    )
    page.wait_for_function("() => document.querySelector('#inspect-text').value.length > 1000")
    assert page.locator(f"{inspect} .file-row .muted").inner_text() == XSS_IMG + ".txt"
    page.click("#inspect-view")
    page.locator(f"{viewer} .story-card").nth(2).wait_for()
    assert page.locator(f"{viewer} .viewer-title").inner_text() == XSS_IMG + ".txt"
    assert_payloads_are_text(page, viewer)


def test_inspect_a_malformed_output_lists_the_findings(page, studio_url):
    page.goto(studio_url + "/#inspect")
    wait_app(page)
    viewer = "#page-inspect .viewer"
    page.fill("#inspect-text", (ROOT / "examples" / "outputs" / "malformed.txt").read_text(encoding="utf-8"))
    page.click("#inspect-view")
    tab = page.locator(f"{viewer} .tab[data-tab=diagnostics]")
    page.wait_for_function(
        "sel => /Diagnostics \\(\\d+\\)/.test(document.querySelector(sel).textContent)",
        arg=f"{viewer} .tab[data-tab=diagnostics]",
    )
    tab.click()
    rows = page.locator(f"{viewer} table.diagnostics tbody tr")
    assert rows.count() >= 1
    first = rows.first.locator("td")
    assert first.nth(1).text_content() in {"error", "warning", "info"} and first.nth(2).text_content()
    assert page.locator(f"{viewer} .verdict").inner_text().startswith("Not well-structured")
    line = rows.locator("button[data-goto-line]").first
    if line.count():
        number = line.get_attribute("data-goto-line")
        line.click()
        assert page.locator(f"{viewer} .raw-line.hl").get_attribute("data-line") == number


def test_inspect_titles_a_view_after_the_file_only_while_the_text_is_the_files(page, studio_url):
    page.goto(studio_url + "/#inspect")
    wait_app(page)
    viewer = "#page-inspect .viewer"
    name = "Geschichte – Öl & 灯台 story.txt"
    page.set_input_files(
        "#inspect-file", [{"name": name, "mimeType": "text/plain", "buffer": LIGHTHOUSE_TXT.encode()}]
    )
    page.wait_for_function("() => document.querySelector('#inspect-text').value.length > 1000")
    page.click("#inspect-view")
    expect(page.locator(f"{viewer} .viewer-title")).to_have_text(name)
    with page.expect_download() as download:
        page.click(f"{viewer} .viewer-toolbar .btn")
    assert download.value.suggested_filename == "Geschichte-Öl-灯台-story.txt.html"  # every script's letters
    # another output pasted over it is not that file any more: it is not named after it
    page.fill("#inspect-text", (ROOT / "examples" / "outputs" / "malformed.txt").read_text(encoding="utf-8"))
    assert page.locator("#page-inspect .file-row .muted").inner_text() == ""
    page.click("#inspect-view")
    expect(page.locator(f"{viewer} .viewer-title")).to_have_text("Inspected output")
    with page.expect_download() as download:
        page.click(f"{viewer} .viewer-toolbar .btn")
    assert download.value.suggested_filename == "Inspected-output.html"


def odd_output(sizes: list[tuple[int, int]]) -> str:
    """An output whose char1 spans the middle of each image (a box in its pixels), told in one line each."""
    sections, story = [], []
    for k, (w, h) in enumerate(sizes, 1):
        box = f"{w // 4},{h // 4},{3 * w // 4},{3 * h // 4}"
        sections += [
            f"## Image {k}",
            "",
            "### Characters",
            "| Character ID | Name | Description | Emotions | Actions | Narrative Function | Bounding Box |",
            "|---|---|---|---|---|---|---|",
            f"| char1 | Ana | A woman | Calm | Standing | Protagonist | {box} |",
            "",
        ]
        story.append(f"<gdi image{k}>\n<gdo char1>Ana</gdo> stands in frame {k}.\n</gdi>")
    return "<think>\n" + "\n".join(sections) + "\n</think>\n" + "\n".join(story)


def test_frames_of_extreme_shapes_are_capped_and_keep_their_boxes_on_the_picture(page, studio_url):
    """A 200×2000 picture is drawn narrow, no taller than the cap; a 4000×200 one no flatter than the
    floor (its column scrolls); neither is stretched, so the boxes stay on the picture."""
    sizes = [(200, 2000), (4000, 200), (640, 480)]
    page.goto(studio_url + "/#inspect")
    wait_app(page)
    inspect = "#page-inspect"
    viewer = f"{inspect} .viewer"
    upload(
        page,
        inspect,
        [{"name": f"{w}x{h}.png", "mimeType": "image/png", "buffer": png_bytes((w, h))} for w, h in sizes],
    )
    page.fill("#inspect-text", odd_output(sizes))
    page.click("#inspect-view")
    cards = page.locator(f"{viewer} .story-card")
    expect(cards).to_have_count(3)
    for k, (w, h) in enumerate(sizes):
        frame = cards.nth(k).locator(".frame")
        frame.locator("img").evaluate("img => img.decode()")
        shape = frame.bounding_box()
        assert abs(shape["width"] / shape["height"] - w / h) < 0.02 * w / h, (k, shape)  # never stretched
        assert 63 <= shape["height"] <= 561, (k, shape)  # the floor and the cap (560 px)
        assert cards.nth(k).bounding_box()["height"] < 640
        hover_tag(page, cards.nth(k).locator(".tag[data-ids='char1']"))
        box = cards.nth(k).locator(".overlay .box")
        expect(box).to_have_count(1)
        assert_box_matches(box_geometry(box))
        shape, picture = frame.bounding_box(), frame.locator("img").bounding_box()
        assert all(abs(picture[key] - shape[key]) < 1 for key in ("x", "y", "width", "height"))  # it fills it
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def test_the_keyboard_does_what_the_pointer_does(page, studio_url):
    viewer = inspect_lighthouse(page, studio_url)
    tooltip = page.locator(".tooltip.shown")
    # a focused tag draws its boxes and opens the tooltip; Escape closes the tooltip
    page.locator(f"{viewer} .story-card[data-image='3'] .tag.gdo[data-ids='char1 char2']").focus()
    expect(page.locator(f"{viewer} .story-card[data-image='3'] .overlay .box")).to_have_count(2)
    expect(tooltip).to_have_count(1)
    page.keyboard.press("Escape")
    expect(tooltip).to_have_count(0)
    # a focused character card draws its box on every frame it appears in, as hovering does
    page.locator(f"{viewer} .char-card[data-id='char2']").focus()
    drawn = page.locator(f"{viewer} .story-card .overlay .box[data-id='char2']")
    expect(drawn).to_have_count(2)  # Tomas is in images 2 and 3
    page.keyboard.press("Shift+Tab")  # to Ines's card: her boxes instead
    expect(page.locator(f"{viewer} .story-card .overlay .box[data-id='char1']")).to_have_count(3)
    expect(drawn).to_have_count(0)
    page.locator("#inspect-view").focus()
    expect(page.locator(f"{viewer} .story-card .overlay .box")).to_have_count(0)
    # the tabs: one in the Tab order; the arrows, Home and End move along it and show the panel
    tabs = page.locator(f"{viewer} .tabs .tab")
    assert tabs.evaluate_all("ts => ts.map(t => t.tabIndex)") == [0, -1, -1, -1]
    active = page.locator(f"{viewer} .tabs .tab[aria-selected=true]")
    focused = "() => document.activeElement.dataset.tab"
    tabs.first.focus()
    for key, tab in [
        ("ArrowRight", "tables"),
        ("End", "raw"),
        ("ArrowRight", "story"),
        ("ArrowLeft", "raw"),
        ("Home", "story"),
    ]:
        page.keyboard.press(key)
        expect(active).to_have_attribute("data-tab", tab)
        assert page.evaluate(focused) == tab
        assert page.locator(f"{viewer} .pane-{tab}").is_visible()
        assert page.get_attribute(f"{viewer} .pane-{tab}", "aria-labelledby") == active.get_attribute("id")
    assert tabs.evaluate_all("ts => ts.map(t => t.tabIndex)") == [0, -1, -1, -1]
    # the image tabs of the tables too
    page.keyboard.press("ArrowRight")
    page.locator(f"{viewer} .subtab[aria-selected=true]").focus()
    page.keyboard.press("End")
    expect(page.locator(f"{viewer} .subtab[aria-selected=true]")).to_have_attribute("data-sub", "narrative")
    assert page.locator(f"{viewer} .narrative-pane").is_visible()
    page.keyboard.press("Home")
    expect(page.locator(f"{viewer} .subtab[aria-selected=true]")).to_have_attribute("data-sub", "1")
    assert (
        page.locator(f"{viewer} .subtab").evaluate_all("ts => ts.filter(t => t.tabIndex === 0).length") == 1
    )


# -- Datasets and Runs ------------------------------------------------------------------------------------


def test_datasets_page_opens_a_story(page, studio_url):
    page.goto(studio_url + "/#datasets")
    wait_app(page)
    datasets = "#page-datasets"
    page.locator(f"{datasets} .dataset-list .list-item.active").wait_for()
    rows = page.locator(f"{datasets} .story-row")
    rows.first.wait_for()
    # the panel's title reads well whatever the dataset is called (this one is named "stories")
    assert page.locator(f"{datasets} .story-list h3").inner_text() == "Stories"
    assert sorted(rows.evaluate_all("els => els.map(e => e.dataset.story)")) == [
        "cat-and-coffee",
        "lighthouse",
        "pioneers",
    ]
    page.click(f"{datasets} .story-row[data-story='pioneers']")
    assert page.url.endswith("#datasets/stories/pioneers")
    viewer = f"{datasets} .viewer"
    page.locator(f"{viewer} .story-card").nth(3).wait_for()
    assert page.locator(f"{viewer} .viewer-title").inner_text() == "stories · pioneers"
    tag = page.locator(f"{viewer} .story-card .tag.gdo:not(.unknown)").first
    hover_tag(page, tag)
    box = tag.locator("xpath=ancestor::article[contains(@class,'story-card')]").locator(".overlay .box").first
    assert_box_matches(box_geometry(box))
    # a deep link opens the same story
    page.goto(studio_url + "/#datasets/stories/lighthouse")
    page.locator(f"{viewer} .story-card").nth(2).wait_for()
    assert page.locator(f"{viewer} .viewer-title").inner_text() == "stories · lighthouse"


FOLLOWED_KEY = "storyreasoning.studio.tell"


def seed_storage(page, value: str) -> None:
    """Put ``value`` in the Tell page's sessionStorage entry before the page's first load only."""
    page.add_init_script(
        "if (!sessionStorage.getItem('seeded')) { sessionStorage.setItem('seeded', '1'); "
        f"sessionStorage.setItem({json.dumps(FOLLOWED_KEY)}, {json.dumps(value)}); }}"
    )


@pytest.mark.parametrize(
    "entry",
    [
        {"job": "j" + "1" * 24, "body": {}, "items": []},
        {"job": "j" + "2" * 24, "body": {"images": ["u" + "0" * 24]}, "items": [1, None, "x"]},
        {
            "job": "j" + "3" * 24,
            "body": {"images": ["u" + "0" * 24]},
            "items": [{"id": "u" + "0" * 24, "url": "javascript:alert(1)"}],
        },
        {
            "job": "../../api/config",
            "body": {"images": ["u" + "0" * 24]},
            "items": [{"id": "u" + "0" * 24, "url": "/api/uploads/u" + "0" * 24}],
        },
        {"job": "j" + "4" * 24, "body": {"images": 5}, "items": []},
        "{{{",
        '"hello"',
    ],
    ids=[
        "no-images",
        "items-garbage",
        "javascript-url",
        "path-job",
        "images-not-list",
        "not-json",
        "a-string",
    ],
)
def test_a_malformed_saved_entry_is_dropped_and_the_studio_loads(browser, studio_url, entry):
    for route in ("#tell", "#datasets"):
        with open_page(browser, studio_url) as page:
            seed_storage(page, entry if isinstance(entry, str) else json.dumps(entry))
            page.goto(studio_url + "/" + route)
            wait_app(page)
            if route == "#tell":
                expect(page.locator("#page-tell .progress-text")).to_have_text("idle")
                assert page.locator("#page-tell .image-item").count() == 0
            else:
                page.locator("#page-datasets .list-item").first.wait_for()
            assert page.evaluate(f"sessionStorage.getItem({json.dumps(FOLLOWED_KEY)})") is None


def test_after_a_restart_the_images_the_server_lost_are_dropped(browser, studio_url):
    """A studio restarted has neither the job nor the uploads a reloaded page remembers."""
    lost = "u" + "f" * 24
    entry = {
        "job": "j" + "e" * 24,
        "body": {
            "images": [lost],
            "prompt": "Tell it",
            "temperature": 0.5,
            "top_p": 0.9,
            "max_new_tokens": 64,
            "seed": 7,
        },
        "items": [{"id": lost, "url": f"/api/uploads/{lost}", "name": "01.png", "width": 64, "height": 48}],
        "at": 0,
        "finished": False,
    }
    with open_page(browser, studio_url) as page:
        page.guard.allow(r"404")
        seed_storage(page, json.dumps(entry))
        page.goto(studio_url + "/#tell")
        wait_app(page)
        alert = page.locator("#page-tell .setup .alert.error")
        expect(alert).to_contain_text("upload them again")
        assert page.locator("#page-tell .image-item").count() == 0
        assert page.locator("#generate").is_disabled()
        assert page.evaluate(f"sessionStorage.getItem({json.dumps(FOLLOWED_KEY)})") is None


def test_a_reload_brings_back_the_settings_with_the_images(page, studio_url):
    page.goto(studio_url + "/#tell")
    wait_app(page)
    page.fill("#tell-prompt", "A story about the sea")
    page.fill("#tell-temperature", "0.35")
    page.fill("#tell-seed", "1234")
    tell_story(page, [EXAMPLES / "lighthouse" / "01.png"])
    page.reload()
    wait_app(page)
    assert wait_done(page).startswith("done")
    assert page.input_value("#tell-prompt") == "A story about the sea"
    assert page.input_value("#tell-temperature") == "0.35"
    assert page.input_value("#tell-seed") == "1234"
    assert item_names(page, "#page-tell") == ["01.png"]


def test_cancel_while_starting_cancels_the_story_once_it_has_an_id(browser, endpoint_studio, fake):
    fake.behaviour, fake.drop_after = "stall", 20  # it would go on for ever
    with open_page(browser, endpoint_studio) as page:
        # the answer to POST /api/tell comes late: Cancel is clicked while the page says "starting…"
        page.add_init_script(
            """(() => {
              const fetch0 = window.fetch;
              window.fetch = (url, init) => String(url).endsWith('/api/tell') && init && init.method === 'POST'
                ? new Promise((done) => setTimeout(done, 800)).then(() => fetch0(url, init))
                : fetch0(url, init);
            })();"""
        )
        page.goto(endpoint_studio + "/#tell")
        wait_app(page)
        upload(page, "#page-tell", [str(EXAMPLES / "lighthouse" / "01.png")])
        page.click("#generate")
        assert page.locator("#page-tell .progress-text").inner_text() == "starting…"
        page.click("#cancel")
        assert page.locator("#page-tell .progress-text").inner_text() == "cancelling…"
        assert page.locator("#cancel").is_disabled()
        assert wait_done(page, timeout=10_000).startswith("cancelled")
        assert page.locator("#generate").is_enabled()


@pytest.fixture(scope="module")
def split_studio(tmp_path_factory) -> Iterator[str]:
    """A studio over a parquet dataset of two splits, ``two``: train (the three examples) and test
    (one), and over the examples themselves, ``stories``."""
    from storyreasoning.data import load_stories
    from storyreasoning.data.writers import write_parquet
    from storyreasoning.studio.config import DatasetSource, StudioConfig
    from tests.studio.conftest import running_studio

    out = tmp_path_factory.mktemp("splits")
    stories = load_stories(str(EXAMPLES))
    write_parquet(stories, out, split="train")
    write_parquet([s for s in stories if s.story_id == "lighthouse"], out, split="test")
    datasets = [DatasetSource("two", str(out)), DatasetSource("stories", str(EXAMPLES))]
    with running_studio(StudioConfig(datasets=datasets)) as server:
        yield server.url


def test_datasets_page_switches_splits(browser, split_studio):
    with open_page(browser, split_studio) as page:
        page.goto(split_studio + "/#datasets")
        wait_app(page)
        root = "#page-datasets"
        select = page.locator(f"{root} select[aria-label=Split]")
        select.wait_for()
        assert select.locator("option").all_inner_texts() == ["train", "test"]
        rows = page.locator(f"{root} .story-row")
        expect(rows).to_have_count(3)
        page.select_option(f"{root} select[aria-label=Split]", "test")
        expect(rows).to_have_count(1)
        assert rows.first.get_attribute("data-story") == "lighthouse"
        assert page.locator(f"{root} select[aria-label=Split]").input_value() == "test"
        rows.first.click()
        page.locator(f"{root} .viewer .story-card").nth(2).wait_for()
        assert "lighthouse" in page.locator(f"{root} .viewer .viewer-title").inner_text()


def test_an_unknown_split_in_the_route_shows_the_first_with_one_note(browser, split_studio):
    with open_page(browser, split_studio) as page:
        page.goto(split_studio + "/#datasets/two/lighthouse?split=nope")
        wait_app(page)
        root = "#page-datasets"
        page.locator(f"{root} .viewer .story-card").nth(2).wait_for()
        assert page.locator(f"{root} select[aria-label=Split]").input_value() == "train"
        expect(page.locator(f"{root} .story-row")).to_have_count(3)
        notes = page.locator(f"{root} .alert")
        assert notes.count() == 1 and 'no split "nope"' in notes.first.inner_text()


def test_the_split_is_in_the_route(browser, split_studio):
    """A story of the test split keeps its split through a reload, Back and a link; the older
    route without a split still opens the first one."""
    with open_page(browser, split_studio) as page:
        page.guard.allow(r"status of 404")  # the last link: a story that split does not have
        page.goto(split_studio + "/#datasets/two")
        wait_app(page)
        root = "#page-datasets"
        select = page.locator(f"{root} select[aria-label=Split]")
        rows = page.locator(f"{root} .story-row")
        title = page.locator(f"{root} .viewer .viewer-title")
        expect(rows).to_have_count(3)
        page.select_option(f"{root} select[aria-label=Split]", "test")
        expect(rows).to_have_count(1)
        assert page.url.endswith("#datasets/two?split=test")
        rows.first.click()
        expect(title).to_have_text("two · lighthouse")
        assert page.url.endswith("#datasets/two/lighthouse?split=test")
        page.locator(f"{root} .viewer .story-card").nth(2).wait_for()
        assert page.locator(f"{root} .viewer .story-card").count() == 3

        page.reload()
        wait_app(page)
        expect(title).to_have_text("two · lighthouse")
        assert select.input_value() == "test" and rows.count() == 1
        expect(page.locator(f"{root} .story-row.active")).to_have_attribute("data-story", "lighthouse")

        page.select_option(f"{root} select[aria-label=Split]", "train")
        expect(rows).to_have_count(3)
        page.click(f"{root} .story-row[data-story='pioneers']")
        expect(title).to_have_text("two · pioneers")
        page.go_back()
        expect(rows).to_have_count(3)
        assert select.input_value() == "train" and page.locator(f"{root} .viewer").count() == 0
        page.go_back()
        expect(title).to_have_text("two · lighthouse")
        assert select.input_value() == "test" and rows.count() == 1

        page.goto(split_studio + "/#datasets/two/pioneers")  # no split: the first
        expect(title).to_have_text("two · pioneers")
        assert select.input_value() == "train"
        page.goto(split_studio + "/#datasets/two/cat-and-coffee?split=test")  # not in that split
        expect(page.locator(f"{root} .result .alert.error")).to_contain_text("no story 'cat-and-coffee'")


def test_another_dataset_or_split_shows_none_of_the_last_ones_stories(browser, split_studio):
    with open_page(browser, split_studio) as page:
        page.goto(split_studio + "/#datasets/stories/lighthouse")
        wait_app(page)
        root = "#page-datasets"
        title = page.locator(f"{root} .viewer .viewer-title")
        active = page.locator(f"{root} .story-row.active")
        expect(title).to_have_text("stories · lighthouse")
        expect(active).to_have_attribute("data-story", "lighthouse")
        # the dataset "two" has a lighthouse too: another story, neither shown nor marked
        page.click(f"{root} .dataset-list .list-item[data-name='two']")
        expect(page.locator(f"{root} .story-row")).to_have_count(3)
        assert page.url.endswith("#datasets/two")
        expect(active).to_have_count(0)
        expect(page.locator(f"{root} .result .empty")).to_have_text("Choose a story to view it.")
        # nor is the train split's lighthouse the test split's
        page.click(f"{root} .story-row[data-story='lighthouse']")
        expect(title).to_have_text("two · lighthouse")
        page.select_option(f"{root} select[aria-label=Split]", "test")
        expect(page.locator(f"{root} .story-row")).to_have_count(1)
        expect(active).to_have_count(0)
        assert page.locator(f"{root} .viewer").count() == 0


def frames_drawn(page, scope: str) -> int:
    """How many pictures of a viewer's story cards were loaded and decoded (not broken)."""
    images = page.locator(f"{scope} .story-card .frame img")
    images.first.wait_for()
    return sum(
        images.nth(k).evaluate("img => img.decode().then(() => img.naturalWidth > 0, () => false)")
        for k in range(images.count())
    )


SIDEWAYS = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


def test_story_ids_a_url_must_carry_with_care_open_on_every_page(browser, odd_ids_studio):
    """ "." and ".." (a path segment the browser folds away), a slash, "#" and "?", non-Latin letters
    and 300 characters: each story opens from its list with its frames, on the Datasets page and on
    the Runs page beside its reference, and the longest id wraps instead of widening the page."""
    from tests.studio.conftest import LONG_RUN, ODD_IDS

    url = odd_ids_studio
    with open_page(browser, url) as page:
        page.goto(url + "/#datasets/odd")
        wait_app(page)
        root = "#page-datasets"
        title = page.locator(f"{root} .viewer .viewer-title")
        rows = page.locator(f"{root} .story-row")
        rows.first.wait_for()
        shown = rows.evaluate_all("els => els.map(e => e.dataset.story)")
        for sid in ODD_IDS:
            rows.nth(shown.index(sid)).click()
            expect(title).to_have_text(f"odd · {sid}")
            assert frames_drawn(page, f"{root} .viewer") == 3, sid
            expect(page.locator(f"{root} .story-row.active")).to_have_attribute("data-story", sid)
        assert page.evaluate(SIDEWAYS) == 0  # the 300 characters wrap
        right = page.locator("#page-runs .compare-side").nth(1)
        for sid in [".", "..", ODD_IDS[-1]]:
            page.goto(f"{url}/#runs/told/{quote(sid, safe='')}/vs/reference")
            expect(right.locator(".viewer-title")).to_have_text(f"reference · odd · {sid}")
            assert frames_drawn(page, "#page-runs .compare-side:first-child") == 3, sid
            assert frames_drawn(page, "#page-runs .compare-side:last-child") == 3, sid
        expect(page.locator("#page-runs tr.active")).to_have_attribute("data-story", ODD_IDS[-1])
        assert page.evaluate(SIDEWAYS) == 0
        card = page.locator(f"#page-runs .run-card[data-run='{LONG_RUN}']")  # the longest run name
        name, box = card.locator(".card-head h3").bounding_box(), card.bounding_box()
        assert name["x"] + name["width"] <= box["x"] + box["width"], (name, box)  # wraps within its card
        link = page.locator("#page-runs tr.active .story-id .link").bounding_box()
        assert link["width"] < 500 and link["height"] > 100  # wrapped, not one line of 2,300 px


def test_a_lists_page_and_search_are_in_the_route(browser, odd_ids_studio):
    """Page 2 of a list, and a search, survive a reload and Back beside the story shown; the pager's
    button keeps the focus for the keyboard (the list is drawn anew) and the list's top comes into view."""
    url = odd_ids_studio
    with open_page(browser, url) as page:
        page.goto(url + "/#datasets/odd")
        wait_app(page)
        root = "#page-datasets"
        pages = page.locator(f"{root} .pager span")
        expect(pages).to_have_text("1–50 of 58")
        page.locator(f"{root} .pager [data-turn=next]").focus()
        page.keyboard.press("Enter")
        expect(pages).to_have_text("51–58 of 58")
        assert page.url.endswith("#datasets/odd?offset=50")
        # the new page's last: its Next is off, so its Previous has the focus
        assert page.evaluate("document.activeElement.dataset.turn") == "previous"
        page.click(f"{root} .story-row[data-story='s050']")
        expect(page.locator(f"{root} .viewer .viewer-title")).to_have_text("odd · s050")
        assert page.url.endswith("#datasets/odd/s050?offset=50")
        page.reload()
        wait_app(page)
        expect(page.locator(f"{root} .story-row.active")).to_have_attribute("data-story", "s050")
        assert pages.inner_text() == "51–58 of 58"
        search = page.locator(f"{root} input[type=search]")
        search.fill("s04")
        search.press("Enter")
        expect(pages).to_have_text("1–10 of 10")
        assert page.url.endswith("#datasets/odd/s050?q=s04")
        assert page.locator(f"{root} .viewer .viewer-title").inner_text() == "odd · s050"  # still shown
        page.go_back()
        expect(pages).to_have_text("51–58 of 58")
        assert page.locator(f"{root} input[type=search]").input_value() == ""

        # a run's list: its page stays when a story is opened and put beside another
        page.goto(url + "/#runs/told/s000")
        root = "#page-runs"
        page.locator(f"{root} .run-detail .story-card").first.wait_for()
        next_page = page.locator(f"{root} .pager [data-turn=next]")
        next_page.focus()
        page.keyboard.press("Enter")
        expect(page.locator(f"{root} .pager span")).to_have_text("51–58 of 58")
        assert page.url.endswith("#runs/told/s000?offset=50")
        assert page.locator(f"{root} .run-stories").bounding_box()["y"] >= 0  # the list's top in view
        page.click(f"{root} tr[data-story='s051']")
        page.select_option("#compare-with", "reference")
        expect(page.locator(f"{root} .compare-side").nth(1).locator(".viewer-title")).to_have_text(
            "reference · odd · s051"
        )
        assert page.url.endswith("#runs/told/s051/vs/reference?offset=50")
        page.reload()
        wait_app(page)
        expect(page.locator(f"{root} tr.active")).to_have_attribute("data-story", "s051")
        assert page.locator(f"{root} .pager span").inner_text() == "51–58 of 58"


# The answers to the stories lists named by ``window.__slow`` (a regular expression) are held back in
# the page's fetch, as a slow dataset or server would hold them; ``window.__slowDone`` once one arrived.
SLOW_LISTS = """
window.__slowDone = false;
const fetchNow = window.fetch;
window.fetch = async (url, init) => {
  if (window.__slow && window.__slow.test(String(url))) {
    await new Promise((resolve) => setTimeout(resolve, 700));
    try { return await fetchNow(url, init); } finally { setTimeout(() => { window.__slowDone = true; }, 50); }
  }
  return fetchNow(url, init);
};"""


def test_a_slow_list_answer_does_not_replace_a_newer_one(browser, studio_url):
    with open_page(browser, studio_url) as page:
        page.add_init_script(SLOW_LISTS + r"window.__slow = /\/api\/datasets\/stories\/stories\?(?!.*q=)/;")
        page.goto(f"{studio_url}/#datasets/stories")
        wait_app(page)
        root = "#page-datasets"
        search = page.locator(f"{root} input[type=search]")
        search.fill("light")
        search.press("Enter")  # while the whole list is still on its way
        expect(page.locator(f"{root} .story-row")).to_have_count(1)
        page.wait_for_function("() => window.__slowDone")
        page.wait_for_timeout(150)  # the late answer has been read: it changed nothing
        assert page.locator(f"{root} .story-row").count() == 1
        assert page.locator(f"{root} input[type=search]").input_value() == "light"

    with open_page(browser, studio_url) as page:
        page.add_init_script(SLOW_LISTS + r"window.__slow = /\/api\/runs\/baseline\/stories\?/;")
        page.goto(f"{studio_url}/#runs/baseline")
        wait_app(page)
        root = "#page-runs"
        page.click(f"{root} .run-card[data-run='reference'] .run-open")  # before baseline's list came
        heading = page.locator(f"{root} .run-stories h3")
        expect(heading).to_have_text("Stories in run reference")
        page.wait_for_function("() => window.__slowDone")
        page.wait_for_timeout(150)
        assert heading.inner_text() == "Stories in run reference"
        assert page.locator(f"{root} .run-card.active").get_attribute("data-run") == "reference"


def test_a_run_named_reference_can_be_put_beside_a_run(page, studio_url):
    """The runs here are named baseline and reference: that run and the dataset's reference are two choices."""
    page.goto(studio_url + "/#runs/baseline/lighthouse")
    wait_app(page)
    root = "#page-runs"
    page.locator(f"{root} .run-detail .story-card").first.wait_for()
    options = page.locator("#compare-with option").evaluate_all("os => os.map(o => [o.value, o.textContent])")
    assert options == [
        ["", "nothing (this run alone)"],
        ["reference", "the reference (stories)"],
        ["run:reference", "run reference"],
    ]
    right = page.locator(f"{root} .compare-side").nth(1)
    page.select_option("#compare-with", label="run reference")
    expect(right.locator(".viewer-title")).to_have_text("run reference · lighthouse")
    assert page.url.endswith("#runs/baseline/lighthouse/vs/run/reference")
    page.reload()
    wait_app(page)
    expect(right.locator(".viewer-title")).to_have_text("run reference · lighthouse")
    assert page.locator("#compare-with").input_value() == "run:reference"
    page.select_option("#compare-with", "reference")
    expect(right.locator(".viewer-title")).to_have_text("reference · stories · lighthouse")
    assert page.url.endswith("#runs/baseline/lighthouse/vs/reference")
    page.go_back()
    expect(right.locator(".viewer-title")).to_have_text("run reference · lighthouse")
    page.goto(studio_url + "/#runs/reference/pioneers/vs/baseline")  # the older route of a run
    expect(right.locator(".viewer-title")).to_have_text("run baseline · pioneers")
    assert page.locator("#compare-with").input_value() == "run:baseline"


def test_a_runs_failed_stories_are_on_its_card_and_in_its_list(browser, studio_runs, tmp_path):
    from storyreasoning.studio.config import StudioConfig
    from tests.studio.conftest import FAILED_ERROR, FAILED_STORY, failed_run, running_studio

    partial = failed_run(studio_runs / "baseline", tmp_path / "runs" / "partial")
    evaluated = (partial / "eval").is_dir()
    if evaluated:  # scored again without the failed story, and with the language metrics
        from storyreasoning.evaluate.commands import evaluate
        from storyreasoning.evaluate.settings import EvaluateSettings

        evaluate(
            EvaluateSettings(
                run=partial, metrics="grounding,language", language_backend="python", plots=False
            )
        )
    with (
        running_studio(StudioConfig(runs=tmp_path / "runs")) as server,
        open_page(browser, server.url) as page,
    ):
        page.guard.allow(r"status of 404")  # the failed story's detail: a 404 that says why
        page.goto(server.url + "/#runs/partial")
        wait_app(page)
        root = "#page-runs"
        card = page.locator(f"{root} .run-card[data-run='partial']")
        expect(card.locator(".card-head")).to_contain_text("2 stories")
        expect(card.locator(".failed-count")).to_have_text("1 failed")
        if evaluated:  # under the headline, what the API serves: the story without an output, the backend
            expect(card.locator(".outputs-line")).to_have_text(
                "2 of 3 stories have an output; the 1 missing is scored as empty outputs "
                "(not well-structured, zero recall)"
            )
            expect(card.locator(".language-signature")).to_contain_text(
                "language: python|regex-ptb|meteor_exact|"
            )
        rows = page.locator(f"{root} .metrics-table tbody tr")
        expect(rows).to_have_count(3)
        failed = page.locator(f"{root} .metrics-table tr.failed")
        assert failed.get_attribute("data-story") == FAILED_STORY
        assert failed.locator(".badge").inner_text() == "failed"
        assert failed.locator(".story-error").inner_text() == FAILED_ERROR
        assert page.locator(f"{root} .metrics-table tr.failed").count() == 1
        expect(page.locator(f"{root} .run-stories h3 .failed-count")).to_have_text("1 failed")
        failed.click()
        expect(page.locator(f"{root} .run-detail .alert.error")).to_contain_text("CUDA out of memory")


def test_runs_page_shows_metrics_and_puts_runs_side_by_side(page, studio_url):
    runs = json.loads(page.request.get(studio_url + "/api/runs").text())["runs"]
    page.goto(studio_url + "/#runs")
    wait_app(page)
    root = "#page-runs"
    cards = page.locator(f"{root} .run-card")
    cards.first.wait_for()
    assert sorted(cards.evaluate_all("els => els.map(e => e.dataset.run)")) == ["baseline", "reference"]
    if any(r["metrics"] for r in runs):  # evaluated (the evaluate package is importable)
        assert page.locator(f"{root} .run-card .metric").count() > 0
        # each card leads with evaluate's headline, as the API serves it: label, value, in its order
        served = next(r for r in runs if r["name"] == "baseline")["headline"]
        table = page.locator(f"{root} .run-card[data-run='baseline'] .headline-table")
        rows = [
            [cell.strip() for cell in row.split("\t")] for row in table.locator("tbody tr").all_inner_texts()
        ]
        assert rows == [[row["label"], row["text"]] for row in served]
        assert [row["label"] for row in served] == ["grounding F1", "grounding mAP", "identity F1"]
        # every story has an output, no language metrics: neither line under the headline
        assert (
            page.locator(f"{root} .run-card .outputs-line, {root} .run-card .language-signature").count() == 0
        )

    page.click(f"{root} .run-card[data-run='baseline'] .run-open")
    rows = page.locator(f"{root} .metrics-table tbody tr")
    rows.first.wait_for()
    assert page.locator(f"{root} .run-stories h3").inner_text() == "Stories in run baseline"
    assert rows.count() == 3
    search = page.locator(f"{root} .run-stories input[type=search]")
    search.fill("HOUSE")
    search.press("Enter")
    expect(rows).to_have_count(1)
    assert rows.first.get_attribute("data-story") == "lighthouse"
    search = page.locator(f"{root} .run-stories input[type=search]")  # the list was redrawn
    search.fill("no such story")
    search.press("Enter")
    expect(page.locator(f"{root} .run-stories .empty")).to_have_text("No story id matches.")
    search = page.locator(f"{root} .run-stories input[type=search]")
    search.fill("")
    search.press("Enter")
    expect(rows).to_have_count(3)
    if any(r["metrics"] for r in runs):
        headline = page.locator(f"{root} .metrics-table th.num").all_inner_texts()
        assert headline == ["grounding F1", "identity F1"]  # the headline (no language metrics here)
        page.check(f"{root} .run-stories input.all-columns")
        expect(page.locator(f"{root} .metrics-table th.num")).not_to_have_count(2)
        assert page.locator(f"{root} .metrics-table th.num").count() > 20
        page.uncheck(f"{root} .run-stories input.all-columns")
        expect(page.locator(f"{root} .metrics-table th.num")).to_have_count(2)

    page.click(f"{root} .metrics-table tr[data-story='lighthouse']")
    page.locator(f"{root} .run-detail .story-card").first.wait_for()
    page.select_option("#compare-with", "reference")
    sides = page.locator(f"{root} .compare .compare-side")
    sides.nth(1).locator(".story-card").first.wait_for()
    assert page.url.endswith("#runs/baseline/lighthouse/vs/reference")
    assert sides.count() == 2
    right = sides.nth(1)
    assert right.locator(".viewer-label").text_content().startswith("reference")
    assert right.locator(".story-card").count() == 3
    assert "Ines" in right.locator(".story-text").first.inner_text()
    tag = right.locator(".tag[data-ids='char1 char2']").first
    hover_tag(page, tag)
    assert right.locator(".story-card[data-image='3'] .overlay .box").count() == 2

    page.goto(studio_url + "/#runs/reference/pioneers/vs/baseline")
    expect(sides.nth(0).locator(".viewer-label")).to_have_text("run reference")
    expect(sides.nth(1).locator(".viewer-label")).to_have_text("run baseline")
    expect(sides.nth(1).locator(".viewer-title")).to_have_text("run baseline · pioneers")
    assert sides.nth(1).locator(".story-card").count() == 4


def test_a_run_story_opens_above_the_fold_under_a_short_headline(browser, studio_url, studio_runs):
    """At 1280×800 an opened story is on screen at once: a few key numbers lead, the rest are folded."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.guard = PageGuard(page, studio_url)
    try:
        runs = json.loads(page.request.get(studio_url + "/api/runs").text())["runs"]
        page.goto(studio_url + "/#runs/baseline/lighthouse")
        wait_app(page)
        root = "#page-runs"
        first = page.locator(f"{root} .run-detail .story-card").first
        first.locator(".story-text").wait_for()
        page.wait_for_timeout(200)  # the scroll that brings the story up
        box = first.bounding_box()
        bar = page.locator(".topbar").bounding_box()
        assert bar["height"] <= box["y"] < 800 - 150, box  # its frame and text are on screen
        assert first.locator(".story-text").is_visible()
        text = first.locator(".story-text").bounding_box()
        assert text["y"] < 800, text
        if any(r["metrics"] for r in runs):
            # a story leads with at most four numbers; its ~80 others are folded, closed
            headline = page.locator(f"{root} .story-metrics .metrics.headline .metric")
            assert 1 <= headline.count() <= 4
            assert headline.all_inner_texts()[0].startswith("grounding F1")
            folded = page.locator(f"{root} .story-metrics details.all-metrics")
            assert folded.get_attribute("open") is None
            assert re.fullmatch(r"all metrics \(\d+\)", folded.locator("summary").inner_text())
            on_screen = page.locator(f"{root} .run-detail .metric:visible").count()
            assert on_screen <= 4, on_screen
            folded.locator("summary").click()
            assert page.locator(f"{root} .story-metrics .metric:visible").count() > 20
            # a run card leads with its headline table; its other numbers are folded
            card = page.locator(f"{root} .run-card[data-run='baseline']")
            assert card.locator(".headline-table tbody tr").count() == 3
            assert card.locator(".metric:visible").count() == 0
        page.guard.check()
    finally:
        context.close()


def test_a_run_whose_dataset_the_studio_lacks_says_how_to_see_its_frames(browser, studio_runs):
    from storyreasoning.studio.config import StudioConfig
    from tests.studio.conftest import running_studio

    with running_studio(StudioConfig(runs=studio_runs)) as server, open_page(browser, server.url) as page:
        page.goto(server.url + "/#runs/baseline/lighthouse")
        wait_app(page)
        note = page.locator("#page-runs .run-detail .missing-frames")
        note.wait_for()
        assert f"--dataset {EXAMPLES}" in note.inner_text()
        assert page.locator("#page-runs .run-detail .story-card").count() == 3  # the story, without frames


# -- a real OpenAI-compatible server: transformers serve on the tiny Qwen2.5-VL ---------------------------


@pytest.fixture(scope="module", autouse=True)
def _serve_early(request):
    """Launch ``transformers serve`` when this module starts, if its test is to run.

    Its start (~10 s, mostly importing torch) then overlaps the other tests of the module.
    """
    from tests.tell.servers import TransformersServe, serve_available

    wanted = any(
        "served" in item.fixturenames for item in request.session.items if item.module is request.module
    )
    if not wanted or not serve_available() or _why_no_browser():
        yield None
        return
    try:
        model = request.getfixturevalue("tiny_qwen")
    except pytest.skip.Exception:
        yield None
        return
    server = TransformersServe(model).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def served(_serve_early) -> str:
    """The URL of a real ``transformers serve`` pinned to the tiny Qwen2.5-VL."""
    from tests.tell.servers import require_serve

    require_serve()
    if _serve_early is None:
        pytest.skip("needs the ML stack for the tiny Qwen2.5-VL: pip install 'storyreasoning[train]'")
    return _serve_early.wait()


def test_tell_against_transformers_serve(browser, served):
    from storyreasoning.studio.config import StudioConfig
    from storyreasoning.tell.settings import TellerOptions
    from tests.studio.conftest import running_studio

    config = StudioConfig(teller=TellerOptions(endpoint=served, retries=0, timeout=120))
    with running_studio(config) as server, open_page(browser, server.url) as page:
        page.goto(server.url + "/#tell")
        wait_app(page)
        assert "openai" in page.locator(".teller-chip").inner_text()
        picture = {"name": "red.png", "mimeType": "image/png", "buffer": png_bytes((96, 64))}
        upload(page, "#page-tell", [picture])
        page.fill("#tell-max_new_tokens", "24")
        page.fill("#tell-temperature", "0")
        with page.expect_request(lambda r: r.url.endswith("/api/tell")) as sent:
            page.click("#generate")
        assert sent.value.post_data_json["max_new_tokens"] == 24
        # random weights write arbitrary text: the stream still ends, parsed, with its findings
        assert wait_done(page, timeout=120_000).startswith("done")
        assert int(page.locator("#page-tell .progress").get_attribute("aria-valuenow")) > 1
        assert page.locator("#page-tell .console").inner_text().strip()
        viewer = "#page-tell .viewer"
        page.click(f"{viewer} .tab[data-tab=diagnostics]")
        assert page.locator(f"{viewer} .verdict").inner_text().startswith("Not well-structured")
        assert page.locator(f"{viewer} table.diagnostics tbody tr").count() >= 1
        page.click(f"{viewer} .tab[data-tab=raw]")
        assert page.locator(f"{viewer} .raw-text").inner_text().strip()


def test_a_run_page_leads_with_the_headline_the_reference_and_the_judge(browser, studio_runs, tmp_path):
    """A run scored for consistency and judged: its card leads with evaluate's headline, the
    reference's own values beside it, the judge's means with their intervals."""
    import shutil

    from storyreasoning.studio.config import StudioConfig
    from tests.studio.conftest import running_studio

    pytest.importorskip("storyreasoning.evaluate.commands")
    from storyreasoning.evaluate.commands import evaluate
    from storyreasoning.evaluate.settings import EvaluateSettings

    runs = tmp_path / "runs"
    shutil.copytree(studio_runs / "baseline", runs / "judged")
    evaluate(EvaluateSettings(run=runs / "judged", metrics="grounding,consistency", plots=False))
    (runs / "judged" / "judge").mkdir()
    summary = {
        "judge": {
            "endpoint": "http://127.0.0.1:1/v1",
            "model": "m",
            "prompt_version": "v1",
            "prompt_sha256": "0",
        },
        "scores": {"creativity": {"mean": 2.75, "low": 2.0, "high": 3.5, "n": 3}},
    }
    (runs / "judged" / "judge" / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    with running_studio(StudioConfig(runs=runs)) as server, open_page(browser, server.url) as page:
        page.goto(server.url + "/#runs/judged")
        wait_app(page)
        table = page.locator("#page-runs .run-card[data-run='judged'] .headline-table")
        table.wait_for()
        assert table.locator("thead th").all_inner_texts() == ["metric", "value", "reference"]
        rows = {
            cells[0]: cells[1:]
            for cells in (
                [c.strip() for c in row.split("\t")] for row in table.locator("tbody tr").all_inner_texts()
            )
        }
        assert list(rows)[:3] == ["well-structured", "grounding F1", "grounding mAP"]
        assert rows["well-structured"][1] == "100.0%"  # the dataset's own outputs are well-structured
        assert rows["creativity (judge, 1-5)"] == ["2.75 [2.00, 3.50]", "–"]
        assert "identity F1" not in rows and "METEOR" not in rows  # families not scored: no rows
        # the page leads with it: the card's headline comes before its folded numbers
        first = page.locator("#page-runs .run-card[data-run='judged'] .run-metrics > *").first
        assert first.evaluate("el => el.className") == "headline-table"
