"""``storyreasoning check``: parse a model output, print a summary or JSON, judge it."""

from __future__ import annotations

import codecs
import json
import sys
from pathlib import Path

from ..errors import UsageError
from ..format import Telling, parse_cot, parse_output, parse_story
from ..format.diagnostics import warning

#: how PNG, JPEG and GIF files start (WebP: RIFF....WEBP): an image given where the output goes
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")


def read_text(path: Path) -> tuple[str, list]:
    """The file's text ('-' is stdin), or the output a page of ours shows (:func:`from_page`), with
    universal line ends, and a finding if it was not valid UTF-8."""
    if str(path) == "-":
        data = sys.stdin.buffer.read()
        name = "standard input"
    else:
        if not path.exists():
            raise UsageError(f"{path} does not exist; check the path")
        if path.is_dir():
            raise UsageError(f"{path} is a folder; pass the output file itself")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {path} ({exc.strerror}); check its permissions") from exc
        name = str(path)
    if data.startswith(IMAGE_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        raise UsageError(
            f"{name} is an image, not a model output; give the output file first, then its images"
        )
    findings = []
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0  # exc.start counts from after the BOM
        # the same text as a valid file would give (BOM dropped, a page's output taken), bad bytes replaced
        text = data.decode("utf-8-sig", errors="replace")
        findings.append(
            warning(
                0,
                "input-decode",
                f"{name} is not valid UTF-8 (byte {exc.start + bom}); undecodable bytes were replaced",
            )
        )
    text = from_page(text, name)
    if "\r" in text:  # line ends as Python's text files read them: a lone CR (old Mac) ends a line too
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text, findings


#: where a page of ``tell`` or the studio's export (:func:`storyreasoning.tell.html.render_html`) keeps the output
RAW_OPEN, RAW_CLOSE = '<pre class="raw-text">', "</pre>"


def from_page(text: str, name: str) -> str:
    """``text`` itself, or, when it is an HTML page, the model output it shows: the page ``tell`` writes
    beside an output and the studio exports hold it whole (escaped) in their one ``raw-text`` block;
    another page is refused (its markup read as a chain-of-thought gave findings about the page)."""
    if not text[:1024].lstrip()[:14].lower().startswith(("<!doctype html", "<html")):
        return text
    start = text.find(RAW_OPEN)
    end = text.find(RAW_CLOSE, start + len(RAW_OPEN)) if start >= 0 else -1
    if end < 0 or text.find(RAW_OPEN, end) >= 0:
        raise UsageError(
            f"{name} is an HTML page that does not hold one model output; check the output's text file instead"
        )
    import html

    return html.unescape(text[start + len(RAW_OPEN) : end])


def detect_kind(text: str, telling: Telling) -> str:
    """``output`` for anything with a <think> envelope or both parts, else ``cot`` or ``story``."""
    if "<think>" in text or "</think>" in text:
        return "output"
    if telling.cot is not None and telling.story is None:
        return "cot"
    if telling.story is not None and telling.cot is None:
        return "story"
    return "output"


def parse_as(text: str, kind: str) -> tuple[Telling, str]:
    """Parse ``text`` as ``kind`` (``auto`` detects it); returns the telling and the kind used."""
    telling = parse_output(text)
    if kind == "auto":
        kind = detect_kind(text, telling)
    if kind == "cot":
        cot = parse_cot(text)
        telling = Telling(
            raw=text,
            cot=cot if text.strip() else None,
            cot_text=text.strip() or None,
            diagnostics=list(cot.diagnostics),
        )
    elif kind == "story":
        story = parse_story(text)
        telling = Telling(
            raw=text,
            story=story if story.segments else None,
            story_text=text.strip() or None,
            diagnostics=list(story.diagnostics),
        )
    return telling, kind


def run_check(
    path: Path, images: list[Path], *, n_images: int | None, as_json: bool, kind: str, strict: bool
) -> int:
    text, extra = read_text(path)
    sizes = None
    if images:
        from ..format.images import image_size

        sizes = [image_size(p) for p in images]
    if sizes is not None and n_images is not None and n_images != len(sizes):
        raise UsageError(
            f"--images {n_images} disagrees with the {len(sizes)} image files given; give one or the other"
        )
    telling, kind = parse_as(text, kind)
    telling.diagnostics[:0] = extra
    options = {"strict": strict, "require_cot": kind != "story", "require_story": kind != "cot"}
    verdict = telling.validate(n_images=n_images, image_sizes=sizes, **options)
    if as_json:
        data = telling.to_dict(verdict)
        data["kind"] = kind
        # characters as they are where the output is UTF-8, else \u escapes: the same JSON, which a
        # cp1252 or ASCII stdout (a Windows pipe, LANG=C) can hold, not a UnicodeEncodeError
        utf8 = codecs.lookup(sys.stdout.encoding or "ascii").name == "utf-8"
        sys.stdout.write(json.dumps(data, ensure_ascii=not utf8, indent=2) + "\n")
    else:
        from rich.console import Console

        from ..terminal import print_summary

        title = "standard input" if str(path) == "-" else str(path)  # text, brackets and all
        count = len(sizes) if sizes is not None else n_images
        if count is not None:
            title += f" ({count} images)"
        print_summary(Console(highlight=False), telling, verdict, title=title, kind=kind)
    return 0 if verdict.well_structured else 1
