"""The HTML view of a telling: its markup as a string, and the page in a real browser.

The browser tests open the written file in Chromium through Playwright and check what a
person sees: boxes where the CoT puts them, highlighting that follows the ids, model
text that stays text, and a page that asks the network for nothing.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from storyreasoning.data.sample import Frame
from storyreasoning.format import parse_output
from storyreasoning.tell.html import render_html, write_html
from storyreasoning.testing.browser import browser_fixture

EXAMPLES = Path(__file__).parents[2] / "examples" / "outputs"
LIGHTHOUSE = (EXAMPLES / "lighthouse.txt").read_text(encoding="utf-8")
MALFORMED = (EXAMPLES / "malformed.txt").read_text(encoding="utf-8")
W, H = 640, 480  # the size lighthouse.txt's boxes are written for


def make_image(seed: int) -> Image.Image:
    image = Image.new("RGB", (W, H), (40 + 50 * seed, 90, 170 - 30 * seed))
    draw = ImageDraw.Draw(image)
    draw.rectangle((100, 90, 210, 400), fill=(240, 200, 30))
    draw.ellipse((430, 20, 560, 330), outline=(255, 255, 255), width=4)
    return image


@pytest.fixture
def frames(tmp_path) -> list[Path]:
    """Three 640x480 frames on disk: PNG, JPEG, PNG."""
    paths = []
    for k, fmt in enumerate(("PNG", "JPEG", "PNG")):
        path = tmp_path / f"frame{k + 1}.{fmt.lower()}"
        make_image(k).save(path, format=fmt)
        paths.append(path)
    return paths


def box_style(page: str, image: int, entity: str) -> dict[str, float]:
    """The percent geometry of ``entity``'s box in frame ``image`` of a rendered page."""
    frame = page.split(f'data-image="{image}"', 1)[1].split("</article>", 1)[0]
    match = re.search(r'<div class="box[^"]*" style="([^"]*)" data-id="' + re.escape(entity) + '"', frame)
    assert match, f"no box for {entity} in image {image}"
    return {k: float(v) for k, v in re.findall(r"(left|top|width|height):([\d.]+)%", match.group(1))}


# -- the markup -----------------------------------------------------------------------------------


def test_images_are_embedded_as_their_own_bytes(frames):
    page = render_html(parse_output(LIGHTHOUSE), frames, title="t")
    sources = re.findall(r'<img src="data:(image/[a-z]+);base64,([^"]+)"', page)
    assert [mime for mime, _ in sources] == ["image/png", "image/jpeg", "image/png"]
    for (_, data), path in zip(sources, frames, strict=True):
        assert base64.b64decode(data) == path.read_bytes()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)
    assert "<link" not in page and "<script src" not in page


def test_pil_bytes_and_frames_are_accepted(frames):
    pil = make_image(5)
    page = render_html(
        parse_output(LIGHTHOUSE),
        [pil, frames[1].read_bytes(), Frame(path=str(frames[2]))],
        title="t",
    )
    sources = re.findall(r'<img src="data:image/[a-z]+;base64,([^"]+)"', page)
    assert len(sources) == 3
    assert Image.open(io.BytesIO(base64.b64decode(sources[0]))).size == (W, H)
    assert base64.b64decode(sources[1]) == frames[1].read_bytes()
    assert base64.b64decode(sources[2]) == frames[2].read_bytes()


def test_boxes_are_placed_in_percent_of_the_original_size(frames):
    page = render_html(parse_output(LIGHTHOUSE), frames, title="t")
    # char1 in image 1: 102,88,214,402 of 640x480
    assert box_style(page, 1, "char1") == pytest.approx(
        {"left": 100 * 102 / W, "top": 100 * 88 / H, "width": 100 * 112 / W, "height": 100 * 314 / H},
        abs=1e-3,
    )
    # bg1 in image 3 spans the full width
    assert box_style(page, 3, "bg1") == pytest.approx(
        {"left": 0, "top": 0, "width": 100, "height": 25}, abs=1e-3
    )
    # every entity with a box gets one, coloured by its kind
    assert len(re.findall(r'<div class="box ', page)) == 3 + 4 + 5
    assert 'class="box k-lm"' in page and 'class="box k-bg"' in page and 'class="box k-obj"' in page


def test_story_spans_carry_their_kind_and_ids(frames):
    page = render_html(parse_output(LIGHTHOUSE), frames, title="t")
    assert re.search(r'<span class="tag gdo" data-ids="char1 char2"[^>]*>They</span>', page)
    assert re.search(r'<span class="tag gda" data-ids="char1"[^>]*>climbed</span>', page)
    assert re.search(r'<span class="tag gdl" data-ids="bg1"[^>]*>the dark sea</span>', page)
    # the CoT rows are mentions too
    assert '<tr class="entity k-char" data-ids="char2">' in page


def test_model_text_is_escaped_everywhere(frames):
    text = LIGHTHOUSE.replace(
        "Young woman in a yellow raincoat carrying a lantern", "<script>window.pwned=1</script> in a 'coat'"
    ).replace(
        "<gdo char2>Tomas</gdo>",
        '<gdo char2 x" onmouseover="window.pwned=3">Tomas "<img src=x onerror=alert(1)>"</gdo>',
    )
    page = render_html(parse_output(text), frames, title='A "title" <b>', teller_label="<i>me</i>")
    assert "<script>window.pwned" not in page and "<img src=x" not in page and "<i>me" not in page
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt; in a &#x27;coat&#x27;" in page
    assert 'onmouseover="' not in page  # the parser drops the attribute; its finding quotes it, escaped
    assert "attribute &#x27;onmouseover=&quot;window.pwned=3&quot;&#x27; in &lt;gdo&gt; ignored" in page
    assert "<title>A &quot;title&quot; &lt;b&gt;</title>" in page
    assert page.count("<script") == 1  # only the page's own


def test_the_script_is_the_only_one_the_policy_admits(frames):
    page = render_html(parse_output(LIGHTHOUSE), frames, title="t")
    script = re.search(r"<script>(.*)</script>", page, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert f"script-src 'sha256-{digest}'" in policy
    assert "default-src 'none'" in policy and "img-src data:" in policy


def test_baseline_badge_only_for_a_baseline():
    telling = parse_output(LIGHTHOUSE)
    assert 'class="badge baseline"' in render_html(
        telling, [], title="t", teller_label="baseline storyteller"
    )
    assert 'class="badge baseline"' not in render_html(telling, [], title="t", teller_label="transformers: m")


def test_missing_and_unreadable_images_become_placeholders(tmp_path, frames):
    page = render_html(
        parse_output(LIGHTHOUSE), [frames[0], tmp_path / "gone.png", b"not an image"], title="t"
    )
    assert page.count('<div class="placeholder">') == 2
    assert "gone.png does not exist" in page
    assert "the image bytes is not a readable image" in page
    assert "box 60,70,190,410 not drawn, the image size is unknown" in page
    # a known size draws the boxes over the placeholder
    page = render_html(
        parse_output(LIGHTHOUSE),
        [frames[0], tmp_path / "gone.png", frames[2]],
        title="t",
        image_sizes=[None, (W, H), None],
    )
    assert box_style(page, 2, "char2")["left"] == pytest.approx(100 * 300 / W, abs=1e-3)


def test_boxes_beyond_the_image_are_clipped_and_flagged(frames):
    text = LIGHTHOUSE.replace("430,20,560,330", "600,400,700,520").replace("188,190,226,246", "700,10,800,50")
    page = render_html(parse_output(text), frames, title="t")
    geometry = box_style(page, 1, "lm1")
    assert geometry == pytest.approx(
        {"left": 100 * 600 / W, "top": 100 * 400 / H, "width": 100 * 40 / W, "height": 100 * 80 / H}, abs=1e-3
    )
    assert 'class="box k-lm clipped"' in page
    assert "lm1: box 600,400,700,520 reaches beyond the 640x480 image, clipped" in page
    assert "obj1: box 700,10,800,50 lies outside the 640x480 image, not drawn" in page
    assert 'data-id="obj1" data-ids="obj1" data-box="700,10,800,50"' not in page
    assert "box-out-of-image" in page and "not well-structured" in page


def test_malformed_output_renders_what_exists_and_the_raw_text(frames):
    page = render_html(parse_output(MALFORMED), frames, title="t")
    assert "not well-structured: 4 errors" in page
    for code in ("box-unparseable", "unknown-story-id", "unclosed-segment", "missing-phase"):
        assert f"<code>{code}</code>" in page
    assert "&lt;b&gt;shouted&lt;/b&gt;" in page  # an unknown tag stays text
    assert '<pre class="raw-text">Here is my analysis of the images.' in page

    cut = parse_output(LIGHTHOUSE.split("## Image 3")[0])  # stops inside the CoT: no story
    page = render_html(cut, frames, title="t")
    assert cut.story is None and "The output has no grounded story." in page
    assert '<details class="raw" open>' in page and "unclosed-think" in page

    story_only = parse_output(LIGHTHOUSE.split("</think>")[1])
    page = render_html(story_only, frames, title="t")
    assert "The output has no chain-of-thought." in page and '<details class="raw" open>' in page
    assert "no-cot" in page and '<div class="box' not in page

    garbage = parse_output("I cannot help with that <script>alert(1)</script>")
    page = render_html(garbage, [], title="t")
    assert "I cannot help with that &lt;script&gt;" in page


def test_write_html_replaces_the_file_atomically(tmp_path, frames):
    out = tmp_path / "sub" / "story.html"
    out.parent.mkdir()
    out.write_text("old", encoding="utf-8")
    written = write_html(out, parse_output(LIGHTHOUSE), frames, title="Lighthouse", teller_label="baseline x")
    assert written == out
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "Lighthouse" in text
    assert sorted(p.name for p in out.parent.iterdir()) == ["story.html"]
    assert write_html(tmp_path / "new" / "dir" / "s.html", parse_output(LIGHTHOUSE), [], title="t").exists()


# -- the page in a real browser ---------------------------------------------------------------------


browser = pytest.fixture(scope="module", name="browser")(browser_fixture)


class View:
    """A page with everything it requested and every error or console complaint it raised."""

    def __init__(self, browser, path: Path, width: int) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.problems: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("pageerror", lambda e: self.problems.append(str(e)))
        self.page.on(
            "console", lambda m: self.problems.append(m.text) if m.type in ("error", "warning") else None
        )
        self.page.goto(path.as_uri())

    def lit(self) -> set[tuple[str, str]]:
        """``(image, id)`` of every highlighted box."""
        pairs = self.page.eval_on_selector_all(
            ".box.hl", "els => els.map(e => [e.closest('.frame').dataset.image, e.dataset.id])"
        )
        return {tuple(p) for p in pairs}


@pytest.fixture
def view(browser, tmp_path):
    views: list[View] = []

    def open_page(telling, images, *, width: int = 1280, name: str = "story.html", **kwargs) -> View:
        path = write_html(tmp_path / name, telling, images, title=kwargs.pop("title", "Lighthouse"), **kwargs)
        views.append(View(browser, path, width))
        return views[-1]

    yield open_page
    for v in views:
        v.context.close()


def offline(requests: list[str]) -> list[str]:
    return [url for url in requests if not url.startswith(("file:", "data:"))]


@pytest.mark.parametrize("width", [1280, 480])
def test_boxes_sit_where_the_cot_puts_them(view, frames, width):
    v = view(parse_output(LIGHTHOUSE), frames, width=width)
    measured = v.page.evaluate(
        """() => [...document.querySelectorAll('.frame')].flatMap(frame => {
            const img = frame.querySelector('img').getBoundingClientRect();
            return [...frame.querySelectorAll('.box')].map(box => {
                const r = box.getBoundingClientRect();
                return {image: frame.dataset.image, id: box.dataset.id, box: box.dataset.box,
                        x: (r.left - img.left) / img.width, y: (r.top - img.top) / img.height,
                        w: r.width / img.width, h: r.height / img.height, iw: img.width, ih: img.height};
            });
        })"""
    )
    assert len(measured) == 12
    for m in measured:
        x1, y1, x2, y2 = (int(c) for c in m["box"].split(","))
        tol = 1.5 / m["iw"], 1.5 / m["ih"]  # a pixel and a half of subpixel rounding
        assert m["x"] == pytest.approx(x1 / W, abs=tol[0]), m
        assert m["y"] == pytest.approx(y1 / H, abs=tol[1]), m
        assert m["w"] == pytest.approx((x2 - x1) / W, abs=tol[0]), m
        assert m["h"] == pytest.approx((y2 - y1) / H, abs=tol[1]), m
        assert m["ih"] == pytest.approx(m["iw"] * H / W, abs=1)  # the image keeps its aspect ratio
    assert not v.problems and not offline(v.requests)


def test_hovering_a_span_lights_its_boxes_in_every_frame(view, frames):
    v = view(parse_output(LIGHTHOUSE), frames)
    assert v.lit() == set()
    v.page.hover("#frame-3 .tag.gdo >> text=They")
    assert v.lit() == {("1", "char1"), ("2", "char1"), ("2", "char2"), ("3", "char1"), ("3", "char2")}
    assert v.page.evaluate("document.body.classList.contains('lit')")
    v.page.hover("#frame-1 .tag.gdl")  # toward the lighthouse
    assert v.lit() == {("1", "lm1")}
    v.page.mouse.move(2, 2)
    assert v.lit() == set() and not v.page.evaluate("document.body.classList.contains('lit')")


def test_hovering_a_box_lights_its_mentions(view, frames):
    v = view(parse_output(LIGHTHOUSE), frames)
    v.page.hover('#frame-3 .box[data-id="obj3"]')
    lit = v.page.eval_on_selector_all(".tag.hl", "els => els.map(e => e.textContent)")
    assert lit == ["the great lamp"]
    assert v.lit() == {("3", "obj3")}
    rows = v.page.eval_on_selector_all("tr.hl", "els => els.map(e => e.dataset.ids)")
    assert rows == ["obj3"]


def test_a_click_pins_the_highlight(view, frames):
    v = view(parse_output(LIGHTHOUSE), frames)
    v.page.click("#frame-2 .tag.gdo >> text=Tomas")
    v.page.mouse.move(2, 2)
    assert v.lit() == {("2", "char2"), ("3", "char2")}
    v.page.hover("#frame-1 .tag.gdl")  # hovering elsewhere does not move a pin
    assert v.lit() == {("2", "char2"), ("3", "char2")}
    v.page.mouse.click(2, 2)
    assert v.lit() == set()


def test_model_text_never_runs(view, frames):
    text = LIGHTHOUSE.replace(
        "Young woman in a yellow raincoat carrying a lantern", "<script>window.pwned=1</script>"
    ).replace("<gdo char2>Tomas</gdo>", '<gdo char2>"Tomas<img src=x onerror="window.pwned=2"></gdo>')
    v = view(parse_output(text), frames)
    v.page.hover("#frame-2 .tag.gdo >> nth=1")
    assert v.page.evaluate("typeof window.pwned") == "undefined"
    assert v.page.locator("tr.entity >> nth=0").inner_text().count("<script>window.pwned=1</script>") == 1
    assert '"Tomas<img src=x onerror="window.pwned=2">' in v.page.locator("#frame-2 .story").inner_text()
    assert v.page.locator("img").count() == 3
    assert not offline(v.requests)


def test_malformed_output_shows_the_raw_text(view, frames, tmp_path):
    cut = parse_output("<think>\n## Image 1\n### Characters\n| Character ID | Name |\n| char1 | <b>Ines")
    v = view(cut, [frames[0], tmp_path / "missing.png"], title="cut off")
    raw = v.page.locator("pre.raw-text")
    assert raw.is_visible() and raw.inner_text() == cut.raw
    assert "The output has no grounded story." in v.page.inner_text("main")
    assert v.page.locator(".placeholder").inner_text().endswith("missing.png does not exist; check the path")
    assert "not well-structured" in v.page.locator(".verdict").inner_text()
    assert not v.problems and not offline(v.requests)


def test_the_page_asks_the_network_for_nothing(view, frames):
    v = view(parse_output(LIGHTHOUSE), [*frames, make_image(3)], teller_label="baseline storyteller")
    v.page.hover("#frame-1 .tag >> nth=0")
    v.page.wait_for_load_state("networkidle")
    assert v.requests and v.requests[0].startswith("file:")
    assert offline(v.requests) == []
    assert v.page.locator(".badge.baseline").is_visible()
    assert v.page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth === 640)")
    assert not v.problems
