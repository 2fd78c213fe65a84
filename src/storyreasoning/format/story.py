"""The grounded story: data model, canonical rendering and plain text.

A story is a list of segments, one per image (``<gdi imageN> … </gdi>``). A segment is
a sequence of plain text runs and tagged spans: ``<gdo ids>`` entity references
(characters, objects, pronouns, groups), ``<gda ids>`` actions and ``<gdl ids>``
locations, landmarks and backgrounds. Ids are bare space-separated tokens
(``<gdo char1 char2>They</gdo>``). Parsing lives in
:mod:`storyreasoning.format.story_parser`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .diagnostics import COMPILED, Diagnostic, reduce_dataclass
from .records import TYPE_CHECKING, dataclass_methods

if TYPE_CHECKING:
    from typing import Final

SPAN_KINDS: Final = ("gdo", "gda", "gdl")


@dataclass(init=False, repr=False, eq=False)
class Span:
    kind: str  # "gdo" | "gda" | "gdl"
    ids: tuple[str, ...]
    text: str  # inner text, without tags
    # the line of its opening tag in the parsed text (0: not parsed); like Segment.line, not
    # compared and not in to_dict
    line: int = field(default=0, compare=False, repr=False)

    def __init__(self, kind: str, ids: tuple[str, ...], text: str, line: int = 0):
        # sets the frozen fields directly: half the cost of the generated __init__ (see Box)
        if COMPILED:
            self.kind = kind  # type: ignore[misc]
            self.ids = ids  # type: ignore[misc]
            self.text = text  # type: ignore[misc]
            self.line = line  # type: ignore[misc]
        else:
            d = self.__dict__
            d["kind"] = kind
            d["ids"] = ids
            d["text"] = text
            d["line"] = line

    def __reduce__(self) -> tuple:
        return reduce_dataclass(self)

    def render(self) -> str:
        """The tag around its text; a ``<`` in the text that could start a tag is written ``‹``
        (see :func:`render_story`)."""
        return _tagged(self, _untag(self.text))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "ids": list(self.ids), "text": self.text}


dataclass_methods(Span, frozen=True)


Part = str | Span


@dataclass(init=False, repr=False, eq=False)
class Segment:
    image: int | None  # None: text found outside any <gdi>
    parts: list[Part] = field(default_factory=list)
    closed: bool = True
    line: int = field(default=0, compare=False, repr=False)

    def __init__(
        self, image: int | None, parts: list[Part] | None = None, closed: bool = True, line: int = 0
    ):
        self.image = image
        self.parts = [] if parts is None else parts
        self.closed = closed
        self.line = line

    def __reduce__(self) -> tuple:
        return reduce_dataclass(self)

    @property
    def spans(self) -> list[Span]:
        return [p for p in self.parts if isinstance(p, Span)]

    @property
    def text(self) -> str:
        """Inner text with tags, stripped (what the original kept per ``<gdi>``): the text as parsed,
        where ``render`` writes a tag-like ``<`` in it as ``‹``."""
        return "".join(_tagged(p, p.text) if isinstance(p, Span) else p for p in self.parts).strip()

    @property
    def plain(self) -> str:
        """Inner text without tags, stripped."""
        return "".join(p.text if isinstance(p, Span) else p for p in self.parts).strip()

    def render(self) -> str:
        """``text``, within its ``<gdi>`` tags, written to read back the same (see :func:`render_story`)."""
        text = "".join(p.render() if isinstance(p, Span) else _untag(p) for p in self.parts).strip()
        if self.image is None:
            return text
        return f"<gdi image{self.image}>\n{text}\n</gdi>"

    def to_dict(self) -> dict:
        """``image``, ``text`` (inner text with tags), ``spans``, and ``parts``: the plain runs
        (``{"text": ...}``) and spans in order, trimmed like ``text``."""
        parts: list[dict] = []
        for i, part in enumerate(self.parts):
            if isinstance(part, Span):
                parts.append(part.to_dict())
                continue
            if i == 0:
                part = part.lstrip()
            if i == len(self.parts) - 1:
                part = part.rstrip()
            if part:
                parts.append({"text": part})
        return {
            "image": self.image,
            "text": self.text,
            "spans": [s.to_dict() for s in self.spans],
            "parts": parts,
        }


dataclass_methods(Segment)


@dataclass(init=False, repr=False, eq=False)
class GroundedStory:
    segments: list[Segment] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list, compare=False, repr=False)

    def __init__(self, segments: list[Segment] | None = None, diagnostics: list[Diagnostic] | None = None):
        self.segments = [] if segments is None else segments
        self.diagnostics = [] if diagnostics is None else diagnostics

    def __reduce__(self) -> tuple:
        return reduce_dataclass(self)

    @property
    def image_segments(self) -> list[Segment]:
        """The segments that belong to an image (``<gdi>`` blocks), in text order."""
        return [s for s in self.segments if s.image is not None]

    def segment(self, image: int) -> Segment | None:
        for seg in self.segments:
            if seg.image == image:
                return seg
        return None

    def spans(self) -> list[tuple[int | None, Span]]:
        return [(seg.image, span) for seg in self.segments for span in seg.spans]

    def mentioned_ids(self) -> list[str]:
        """Every id any tag names (``char``, ``obj``, ``bg`` and ``lm`` alike), in order of first mention."""
        seen: dict[str, None] = {}
        for _, span in self.spans():
            for eid in span.ids:
                seen.setdefault(eid, None)
        return list(seen)

    def plain_text(self) -> str:
        """The story without tags: one paragraph per segment, separated by a blank line."""
        return "\n\n".join(p for p in (seg.plain for seg in self.segments) if p)

    def to_dict(self) -> dict:
        return {"segments": [s.to_dict() for s in self.segments]}


dataclass_methods(GroundedStory)


def render_story(story: GroundedStory) -> str:
    """The canonical layout: ``<gdi imageN>``, newline, text, newline, ``</gdi>``, blank line.

    Written to read back to the same segments, spans and ids: a ``<`` in a text run or a
    span's text that could start a tag (before a letter or ``/``, or ending the run, as in
    ``a <gdo char1> b`` or ``</gdi>``) is written as ``‹`` (U+2039), so the text stays text.
    """
    return "\n\n".join(seg.render() for seg in story.segments if seg.image is not None or seg.text).strip()


# a '<' the story parser could read as the start of a tag: before a letter or '/', or ending a run
_TAG_START: Final = re.compile(r"<(?=[^\W\d_]|/|\Z)")


def _tagged(span: Span, text: str) -> str:
    """``text`` within the span's tags, as it is."""
    attrs = (" " + " ".join(span.ids)) if span.ids else ""
    return f"<{span.kind}{attrs}>{text}</{span.kind}>"


def _untag(text: str) -> str:
    return _TAG_START.sub("\u2039", text) if "<" in text else text


_TAG: Final = re.compile(r"<[^<>\n]{0,256}>")
_SPACE: Final = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """Remove every ``<…>`` tag and collapse whitespace to single spaces.

    This is the cleaning the original applied before the language metrics.
    """
    return _SPACE.sub(" ", _TAG.sub("", text)).strip()
