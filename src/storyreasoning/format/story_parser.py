"""A tolerant, incremental parser for grounded stories.

It reads ``<gdi imageN>`` segments and ``<gdo|gda|gdl ids>`` spans and tolerates what
models get wrong: an unclosed last segment, stray or missing closers, nested or
overlapping tags, unknown tag names, text outside any segment, attributes in other
forms (``image 1``, ``image="1"``, GroundCap's ``class="person"``).

Nested and overlapping spans are flattened: the text is cut into runs and each run is
attributed to the innermost open tag, so every tag keeps its ids and no text is lost.

Its cost is linear in the input however the input is split into chunks and whatever
it holds. The lexer moves from ``<`` to ``<`` with ``str.find``, looks at most 256
characters ahead of one and never backtracks. A closer finds the innermost open tag of
its kind at the end of that kind's own stack, and a tag closed below the top of the
stack is only marked closed (the top is kept open), so a closer costs the same whatever
is open. Whitespace held before the first segment is kept as a list of pieces.
"""

from __future__ import annotations

import re

from .cot import id_kind
from .diagnostics import COMPILED, Diagnostic, error, info, warning
from .events import (
    Event,
    SegmentClosed,
    SegmentStarted,
    SpanClosed,
    SpanOpened,
    TextAppended,
)
from .records import TYPE_CHECKING
from .story import SPAN_KINDS, GroundedStory, Segment, Span

if TYPE_CHECKING:
    from typing import Final

MAX_TAG: Final = 256
# an opening span tag may run over line ends (<gdo char1\nchar2>, as the original's regex reads
# it), at most this many, within its MAX_TAG characters; any other tag ends on its line
MAX_TAG_LINES: Final = 3
_INCOMPLETE: Final = -1
_NOT_TAG: Final = -2
_TAG_NAMES: Final = {"gdi", *SPAN_KINDS, "think"}
# the tags as the published format writes them, told at a glance
_OPENERS: Final = {"gdi ": "gdi", **{f"{kind} ": kind for kind in SPAN_KINDS}}
_CLOSERS: Final = {"/gdi": "gdi", **{f"/{kind}": kind for kind in SPAN_KINDS}}
# plain text, then a span as the published format writes it, with some text in it
_SPAN: Final = re.compile(rf"([^<]*+)<(gd[oal]) ([^<>\n]{{0,{MAX_TAG - 4}}})>([^<]++)</\2>")
# what a span's attribute text says, by (kind, attributes): the same ids recur all along a story
_CLOSE_TAGS: Final = {kind: f"</{kind}>" for kind in SPAN_KINDS}
_SPAN_ATTRS: Final[dict[tuple[str, str], tuple[tuple[str, ...], tuple[tuple, ...]]]] = {}
_CACHE_SIZE: Final = 1024


def _published_span(buf: str, pos: int) -> tuple[str, str, str, str, int] | None:
    """``_SPAN.match(buf, pos)``: ``(before, kind, attrs, inner, end)`` or None.

    Compiled, these few native string searches cost a third of the regex's three Python
    method calls (match, groups, end); as Python the regex is the cheaper, and is used.
    """
    if not COMPILED:
        m = _SPAN.match(buf, pos)
        if m is None:
            return None
        return (m.group(1), m.group(2), m.group(3), m.group(4), m.end())
    lt = buf.find("<", pos)
    if lt == -1 or buf.find(" ", lt + 4, lt + 5) == -1:
        return None
    kind = buf[lt + 1 : lt + 4]
    closer = _CLOSE_TAGS.get(kind)
    if closer is None:
        return None
    gt = buf.find(">", lt + 5, lt + 5 + MAX_TAG - 3)  # attributes: at most MAX_TAG - 4 characters
    if gt == -1 or buf.find("<", lt + 5, gt) != -1 or buf.find("\n", lt + 5, gt) != -1:
        return None
    close = buf.find("<", gt + 1)
    if close <= gt + 1 or not buf.startswith(closer, close):  # some text, then its closer
        return None
    return (buf[pos:lt], kind, buf[lt + 5 : gt], buf[gt + 1 : close], close + len(kind) + 3)


class _Open:
    """An open span. ``closed``: closed while a span above it stays open (removed when it surfaces)."""

    __slots__ = ("closed", "emitted", "ids", "kind", "line")

    def __init__(self, kind: str, ids: tuple[str, ...], line: int):
        self.kind = kind
        self.ids = ids
        self.line = line
        self.emitted = False
        self.closed = False


class StoryBuilder:
    """Incremental story parser: ``feed`` text chunks, then ``finish``."""

    def __init__(self, first_line: int = 1, *, events: bool = True):
        self.story = GroundedStory()
        self._with_events = events  # False: build no events (a batch parse does not read them)
        self.diagnostics: list[Diagnostic] = self.story.diagnostics
        self.line = first_line
        self._pending = ""
        self._segment: Segment | None = None
        # open spans, innermost last; the last entry is never a closed one
        self._stack: list[_Open] = []
        self._kinds: dict[str, list[_Open]] = {kind: [] for kind in SPAN_KINDS}  # open spans by kind
        self._frag: list[str] = []  # text of the innermost open span
        self._run: list[str] = []  # plain text since the last span
        self._blank: list[str] = []  # whitespace seen outside any segment, not yet known to start loose text
        self._blank_line = first_line
        self._last_number = 0
        self._numbers: set[int] = set()
        self._finished = False
        self._fragment_line = 0  # the line of the last malformed-tag finding

    # -- lexing ------------------------------------------------------------------------------
    def feed(self, text: str) -> list[Event]:
        pending = self._pending
        if pending:
            if (
                len(pending) > 1  # its first character was found fit to start a tag
                and len(pending) + len(text) < MAX_TAG + 2
                and ">" not in text
                and "<" not in text
                and "\n" not in text
            ):  # a tag still incomplete: nothing to read yet (a stream sends a tag in pieces)
                self._pending = pending + text
                return []
            buf = pending + text
            self._pending = ""
        else:
            buf = text
            if text and "<" not in text and self._segment is not None:  # text inside a segment: _text
                (self._frag if self._stack else self._run).append(text)
                if "\n" in text:
                    self.line += text.count("\n")
                return [TextAppended(text)] if self._with_events else []
        events: list[Event] | None = [] if self._with_events else None
        pos, n = 0, len(buf)
        stack = self._stack
        while pos < n:
            if events is None and not stack and self._segment is not None:
                # text and a whole span in the published form: read at once (a batch parse;
                # with events, the same goes through the general path below, piece by piece)
                m = _published_span(buf, pos)
                if m is not None:
                    before, span_kind, attrs, inner, end = m
                    parts = self._segment.parts
                    if before:
                        if self._run:
                            self._run.append(before)
                            self._flush_run()
                        else:
                            parts.append(before)
                        if "\n" in before:
                            self.line += before.count("\n")
                    elif self._run:
                        self._flush_run()
                    known = _SPAN_ATTRS.get((span_kind, attrs))
                    ids = known[0] if known is not None and not known[1] else self._ids(span_kind, attrs)
                    span_line = self.line
                    if "\n" in inner:
                        self.line += inner.count("\n")
                    parts.append(Span(span_kind, ids, inner, span_line))
                    pos = end
                    continue
            lt = buf.find("<", pos)
            if lt == -1:
                self._text(buf[pos:] if pos else buf, events)
                break
            if lt > pos:
                piece = buf[pos:lt]
                if self._segment is not None:  # _text, for text inside a segment
                    (self._frag if stack else self._run).append(piece)
                    if events is not None:
                        events.append(TextAppended(piece))
                    if "\n" in piece:
                        self.line += piece.count("\n")
                else:
                    self._text(piece, events)
            # the tag's end: a '>' within MAX_TAG characters, with no '<' or line end before it
            # (a span opener's line ends are read by _tag_end)
            gt = buf.find(">", lt + 1, lt + 2 + MAX_TAG)
            tag_lines = 0
            if gt == -1 or buf.find("<", lt + 1, gt) != -1 or buf.find("\n", lt + 1, gt) != -1:
                end = self._tag_end(buf, lt)
                if end == _INCOMPLETE:
                    self._pending = buf[lt:]
                    break
                if end == _NOT_TAG:
                    self._text("<", events)
                    pos = lt + 1
                    continue
                gt = end
                tag_lines = buf.count("\n", lt + 1, gt)
            first = buf[lt + 1]
            if not (first.isalpha() or first == "/"):
                self._text("<", events)
                pos = lt + 1
                continue
            inner = buf[lt + 1 : gt]
            pos = gt + 1
            # the published forms, in the usual places, read here; anything else by _tag
            kind = _CLOSERS.get(inner)
            if kind is not None and stack and stack[-1].kind == kind:  # closes the innermost span
                self._close_top(events)
                continue
            kind = _OPENERS.get(inner[:4])
            if kind is not None and kind != "gdi" and not stack and self._segment is not None:
                ids = self._ids(kind, inner[3:])
                entry = _Open(kind, ids, self.line)
                stack.append(entry)
                self._kinds[kind].append(entry)
                if events is not None:
                    events.append(SpanOpened(kind, ids))
            else:
                self._tag(inner, events)
            if tag_lines:  # the line ends inside a span opener (its findings are on its first line)
                self.line += tag_lines
        return events if events is not None else []

    def _tag_end(self, buf: str, lt: int) -> int:
        n = len(buf)
        if lt + 1 >= n:
            return _INCOMPLETE
        first = buf[lt + 1]
        if not (first.isalpha() or first == "/"):
            return _NOT_TAG
        limit = min(n, lt + 2 + MAX_TAG)
        gt = buf.find(">", lt + 1, limit)
        stop_at = gt if gt != -1 else limit
        nl = buf.find("\n", lt + 1, stop_at)
        if buf.find("<", lt + 1, stop_at) != -1 or (nl != -1 and not _opener_lines(buf, lt, nl, stop_at)):
            # the name ends before that '<' or line end, so it is all in ``buf``: chunking cannot
            # change this (nor the line ends of a span opener, which more text can only add to)
            self._fragment(buf[lt + 1 : lt + 12])
            return _NOT_TAG
        if gt != -1:
            return gt
        if limit == n and n < lt + 2 + MAX_TAG:
            return _INCOMPLETE
        name = _name(buf[lt + 1 : lt + 12].lstrip("/"))
        if name in _TAG_NAMES:
            self.diagnostics.append(
                warning(
                    self.line,
                    "overlong-tag",
                    f"'<{name}' starts a tag longer than {MAX_TAG} characters; kept as text",
                )
            )
        return _NOT_TAG

    def _fragment(self, head: str) -> None:
        """A '<' and a tag name that never reach their '>': one finding per line (linear on any input)."""
        name = _name(head.lstrip("/"))
        if name.lower() not in _TAG_NAMES or self._fragment_line == self.line:
            return
        self._fragment_line = self.line
        slash = "/" if head.startswith("/") else ""
        self.diagnostics.append(
            warning(
                self.line,
                "malformed-tag",
                f"'<{slash}{name}' is not closed by '>' before the next '<', the end of the line or the "
                "end of the text; kept as text",
            )
        )

    def _tag(self, inner: str, events: list[Event] | None) -> None:
        if self._blank:
            self._blank = []
        lname = _OPENERS.get(inner[:4])
        if lname is not None:  # <gdo char1>, <gdi image1>
            closing, attrs = False, inner[3:]
        else:
            lname = _CLOSERS.get(inner)
            if lname is not None:  # </gdo>, </gdi>
                closing, attrs = True, ""
            else:
                closing = inner.startswith("/")
                body = inner[1:] if closing else inner
                name = _name(body)
                attrs = body[len(name) :]
                lname = name.lower()
                if lname not in _TAG_NAMES or (attrs and not attrs[0].isspace() and attrs.strip() != "/"):
                    if name:
                        self.diagnostics.append(
                            warning(
                                self.line, "unknown-tag", f"<{inner[:40]}> is not a story tag; kept as text"
                            )
                        )
                    self._text("<" + inner + ">", events)
                    return
                if lname != name:
                    self.diagnostics.append(
                        info(
                            self.line,
                            "segment-attribute" if lname == "gdi" else "span-attribute",
                            f"tag <{inner[:40]}> is not lower-case",
                        )
                    )
                if lname == "think":
                    self.diagnostics.append(
                        info(self.line, "extra-think", f"<{inner}> inside the story was ignored")
                    )
                    return
        if lname == "gdi":
            if closing:
                self._close_segment(events)
            else:
                self._open_segment(attrs, events)
        elif closing:
            self._close_span(lname, events)
        else:
            self._open_span(lname, attrs, events)

    # -- segments ----------------------------------------------------------------------------
    def _open_segment(self, attrs: str, events: list[Event] | None) -> None:
        if self._segment is not None:
            if self._segment.image is not None:
                self.diagnostics.append(
                    warning(
                        self.line,
                        "unclosed-segment",
                        f"<gdi image{self._segment.image}> was not closed before the next <gdi>",
                    )
                )
                self._segment.closed = False
            self._end_segment(events, closed=self._segment.image is None)
        image = self._image_number(attrs)
        if image is not None:
            if image in self._numbers:
                self.diagnostics.append(
                    warning(self.line, "segment-number-duplicate", f"a second segment for image {image}")
                )
            elif image != self._last_number + 1:
                self.diagnostics.append(
                    warning(
                        self.line,
                        "segment-number-order",
                        f"segment for image {image} follows image {self._last_number}",
                    )
                )
            self._numbers.add(image)
            self._last_number = max(self._last_number, image)
        self._segment = Segment(image=image, closed=False, line=self.line)
        self.story.segments.append(self._segment)
        if events is not None:
            events.append(SegmentStarted(image))

    def _image_number(self, attrs: str) -> int | None:
        a = attrs.strip()
        # any number of images, up to nine digits (as the CoT's '## Image N' headings)
        if a.startswith("image") and a[5:].isascii() and a[5:].isdigit() and len(a) <= 14:
            return int(a[5:])
        digits = "".join(c for c in a[:40] if c in "0123456789")[:9]  # ASCII only: "²".isdigit() is True
        if digits:
            self.diagnostics.append(
                warning(self.line, "segment-attribute", f"<gdi {a[:40]}> read as image {int(digits)}")
            )
            return int(digits)
        self.diagnostics.append(
            error(self.line, "segment-without-image", f"<gdi{(' ' + a[:40]) if a else ''}> names no image")
        )
        return None

    def _close_segment(self, events: list[Event] | None) -> None:
        if self._segment is None or self._segment.image is None:
            self.diagnostics.append(
                warning(self.line, "stray-closer", "</gdi> without an open <gdi> was ignored")
            )
            return
        self._end_segment(events, closed=True)

    def _end_segment(self, events: list[Event] | None, closed: bool) -> None:
        seg = self._segment
        assert seg is not None
        while self._stack:
            top = self._stack[-1]
            self.diagnostics.append(
                warning(self.line, "unclosed-span", f"<{top.kind} {' '.join(top.ids)}> was not closed")
            )
            self._pop(top, events)
        self._flush_run()
        seg.closed = closed
        self._segment = None
        if events is not None:
            events.append(SegmentClosed(seg.image))

    def _loose_segment(self, events: list[Event] | None) -> None:
        self.diagnostics.append(
            warning(self.line, "text-outside-segment", "story text outside any <gdi> segment")
        )
        self._segment = Segment(image=None, closed=True, line=self.line)
        self.story.segments.append(self._segment)
        if events is not None:
            events.append(SegmentStarted(None))

    # -- spans -------------------------------------------------------------------------------
    def _open_span(self, kind: str, attrs: str, events: list[Event] | None) -> None:
        ids = self._ids(kind, attrs)
        if self._segment is None:
            self._loose_segment(events)
        if self._stack:
            top = self._stack[-1]
            self.diagnostics.append(
                warning(
                    self.line,
                    "nested-tag",
                    f"<{kind} {' '.join(ids)}> opens inside <{top.kind} {' '.join(top.ids)}>",
                )
            )
            self._flush(top, events, keep_empty=False)
        entry = _Open(kind, ids, self.line)
        self._stack.append(entry)
        self._kinds[kind].append(entry)
        if events is not None:
            events.append(SpanOpened(kind, ids))

    def _ids(self, kind: str, attrs: str) -> tuple[str, ...]:
        key = (kind, attrs)
        known = _SPAN_ATTRS.get(key)
        if known is None:
            ids: list[str] = []
            findings: list[tuple] = []
            if "," in attrs:  # <gdo char1,char2>: read as <gdo char1 char2> (the original read one id)
                findings.append(
                    (
                        warning,
                        "id-separators",
                        f"<{kind} {attrs.strip()[:40]}> separates its ids with commas; read as separate ids",
                    )
                )
                attrs = attrs.replace(",", " ")
            for token in attrs.split():
                if "=" in token or '"' in token or "'" in token or token == "/":
                    findings.append((info, "span-attribute", f"attribute {token[:40]!r} in <{kind}> ignored"))
                    continue
                if id_kind(token) is None:
                    findings.append(
                        (
                            warning,
                            "bad-id",
                            f"{token[:40]!r} in <{kind}> is not an id of the form char#, obj#, bg# or lm#",
                        )
                    )
                ids.append(token)
            if not ids:
                findings.append((warning, "span-without-ids", f"<{kind}> names no entity id"))
            known = (tuple(ids), tuple(findings))
            if len(_SPAN_ATTRS) >= _CACHE_SIZE:
                _SPAN_ATTRS.clear()
            _SPAN_ATTRS[key] = known
        for severity, code, message in known[1]:
            self.diagnostics.append(severity(self.line, code, message))
        return known[0]

    def _close_span(self, kind: str, events: list[Event] | None) -> None:
        if not self._stack:
            self.diagnostics.append(
                warning(self.line, "stray-closer", f"</{kind}> without an open <{kind}> was ignored")
            )
            return
        same = self._kinds[kind]
        top = self._stack[-1]
        if not same:
            self.diagnostics.append(warning(self.line, "mismatched-closer", f"</{kind}> closes <{top.kind}>"))
            closing = top
        else:
            closing = same[-1]
            if closing is not top:
                self.diagnostics.append(
                    warning(
                        self.line,
                        "mismatched-closer",
                        f"</{kind}> closes <{kind}> while <{top.kind}> is still open (overlapping tags)",
                    )
                )
        self._pop(closing, events)

    def _close_top(self, events: list[Event] | None) -> None:
        """Close the innermost open span (what ``_pop`` does when the closer matches it)."""
        stack = self._stack
        top = stack.pop()
        self._kinds[top.kind].pop()
        frag = self._frag
        if frag:
            text = frag[0] if len(frag) == 1 else "".join(frag)
            self._frag = []
        else:
            text = ""
        if text or not top.emitted:
            if not text:
                self.diagnostics.append(
                    warning(self.line, "empty-span", f"<{top.kind} {' '.join(top.ids)}> encloses no text")
                )
            self._emit(Span(top.kind, top.ids, text, top.line), events)
        while stack and stack[-1].closed:
            stack.pop()
        if stack and events is not None:
            resumed = stack[-1]
            events.append(SpanOpened(resumed.kind, resumed.ids))

    def _pop(self, closing: _Open, events: list[Event] | None) -> None:
        """Close an open span; the spans above it (if any) continue."""
        stack = self._stack
        top = stack[-1]
        self._flush(top, events, keep_empty=(top is closing))
        self._kinds[closing.kind].pop()  # the innermost open span of its kind
        if closing is not top:
            closing.closed = True  # removed from the stack when it surfaces
            if not closing.emitted:
                self._emit(Span(closing.kind, closing.ids, "", closing.line), events)
                closing.emitted = True
            if events is not None:
                events.append(SpanOpened(top.kind, top.ids))
            return
        stack.pop()
        while stack and stack[-1].closed:
            stack.pop()
        if stack:
            resumed = stack[-1]
            if events is not None:
                events.append(SpanOpened(resumed.kind, resumed.ids))

    def _flush(self, entry: _Open, events: list[Event] | None, keep_empty: bool) -> None:
        frag = self._frag
        if frag:
            text = frag[0] if len(frag) == 1 else "".join(frag)
            self._frag = []
        else:
            text = ""
        if text or (keep_empty and not entry.emitted):
            if not text:
                self.diagnostics.append(
                    warning(self.line, "empty-span", f"<{entry.kind} {' '.join(entry.ids)}> encloses no text")
                )
            self._emit(Span(entry.kind, entry.ids, text, entry.line), events)
            entry.emitted = True

    def _emit(self, span: Span, events: list[Event] | None) -> None:
        segment = self._segment
        assert segment is not None
        if self._run:
            self._flush_run()
        segment.parts.append(span)
        if events is not None:
            events.append(SpanClosed(span))

    # -- text --------------------------------------------------------------------------------
    def _text(self, text: str, events: list[Event] | None) -> None:
        if not text:
            return
        if self._segment is None:
            if not text.strip():
                # held, not dropped: if text follows, it belongs to it (however the input was chunked)
                if not self._blank:
                    self._blank_line = self.line
                self._blank.append(text)
                self.line += text.count("\n")
                return
            if self._blank:  # the loose text starts where the held whitespace did
                self.line = self._blank_line
                self._blank.append(text)
                text = "".join(self._blank)
                self._blank = []
            self._loose_segment(events)
        (self._frag if self._stack else self._run).append(text)
        if events is not None:
            events.append(TextAppended(text))
        if "\n" in text:
            self.line += text.count("\n")

    def _flush_run(self) -> None:
        if self._run:
            assert self._segment is not None
            self._segment.parts.append("".join(self._run))
            self._run = []

    def finish(self) -> list[Event]:
        if self._finished:
            return []
        self._finished = True
        events: list[Event] | None = [] if self._with_events else None
        if self._pending:  # a '<' the text ended in: a tag cut off (an output stopped at its token limit)
            pending, self._pending = self._pending, ""
            self._fragment(pending[1:12])
            self._text(pending, events)
        if self._segment is not None:
            if self._segment.image is not None:
                self.diagnostics.append(
                    warning(
                        self.line,
                        "unclosed-segment",
                        f"<gdi image{self._segment.image}> was not closed before the end",
                    )
                )
                self._end_segment(events, closed=False)
            else:
                self._end_segment(events, closed=True)
        return events if events is not None else []


def _opener_lines(buf: str, lt: int, nl: int, stop_at: int) -> bool:
    """True when the tag at ``lt``, whose first line end is at ``nl``, is a span opener
    (``<gdo`` and a space or a line end) with at most MAX_TAG_LINES line ends before ``stop_at``."""
    head = buf[lt + 1 : min(nl, lt + 12)]
    name = _name(head)
    if name.lower() not in SPAN_KINDS or (len(name) < len(head) and not head[len(name)].isspace()):
        return False
    return buf.count("\n", nl, stop_at) <= MAX_TAG_LINES


def _name(text: str) -> str:
    end = 0
    for c in text[:16]:
        if not c.isalpha():
            break
        end += 1
    return text[:end]


def parse_story(text: str, first_line: int = 1) -> GroundedStory:
    """Parse a grounded story. Never raises; findings are in ``story.diagnostics``."""
    builder = StoryBuilder(first_line, events=False)
    builder.feed(text)
    builder.finish()
    return builder.story
