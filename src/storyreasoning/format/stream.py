"""Parse a model's output, whole or as it streams.

A storyteller writes ``<think>`` + CoT + ``</think>`` + story. :class:`StreamParser`
takes the output in chunks of any size and returns :mod:`events` as soon as each piece
is complete (a table row when its line ends, a span when it closes). Its total cost is
linear in the output: each chunk is scanned once, each line is assembled once, and
nothing is re-parsed when a chunk arrives. :func:`parse_output` is the same parser fed
the whole text at once (the published envelope, ``<think>`` CoT ``</think>`` story, is
cut at its markers directly and each part given to its builder, as the router would), so
a streamed parse and a batch parse always agree (``tests/format/test_fast_paths.py``).

The envelope is read tolerantly:

* ``<think> … </think> story``: the published form;
* ``… </think> story`` with no ``<think>`` (some chat templates put it in the prompt),
  reported as ``missing-think-open``;
* ``<think> …`` cut off before ``</think>``: a CoT and no story;
* ``<think> … <gdi image1> …`` with no ``</think>``: split at the first ``<gdi>``;
* CoT tables and a story with no envelope at all: split at the first ``<gdi>``;
* a story alone: no CoT.

Unlike the original, the character after ``</think>`` is never lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .cot import CoT
from .cot_parser import CotBuilder, heading_section
from .diagnostics import COMPILED, Diagnostic, info, reduce_dataclass, warning
from .events import Event, ThinkClosed, ThinkOpened
from .records import TYPE_CHECKING, dataclass_methods
from .story import GroundedStory
from .story_parser import StoryBuilder

if TYPE_CHECKING:
    from typing import Final

THINK_OPEN: Final = "<think>"
THINK_CLOSE: Final = "</think>"
STORY_START: Final = "<gdi"
_TAIL: Final = max(len(m) for m in (THINK_OPEN, THINK_CLOSE, STORY_START)) - 1

_PRE: Final = "pre"
_COT: Final = "cot"
_STORY: Final = "story"
_MARKERS: Final = (THINK_OPEN, THINK_CLOSE, STORY_START)
_COT_END: Final = (THINK_CLOSE, STORY_START)
_THINK: Final = (THINK_OPEN,)
# Streamed chunks seen to hold no line end, '<' or '>': as Python, a set lookup answers for a
# token seen before, cheaper than the three 'in' tests (bounded: cleared when full); compiled,
# feed reads a short chunk's characters instead and never looks here
_QUIET: Final[set[str]] = set()
_QUIET_SIZE: Final = 8192
_QUIET_CHUNK: Final = 32  # longer chunks are not kept
# what a marker split across two chunks leaves at the end of the first
_PREFIXES: Final = frozenset(marker[:i] for marker in _MARKERS for i in range(1, len(marker)))


def _cot_like(line: str) -> bool:
    """A line that can only belong to a CoT: a table row or a ``#`` section heading."""
    s = line.strip()
    if s.startswith("|"):
        return True
    return s.startswith("#") and heading_section(s) is not None


@dataclass(init=False, repr=False, eq=False)
class Telling:
    """One model output: the raw text, its parsed parts and every finding.

    ``cot`` is None when the output has no chain-of-thought, ``story`` is None when it
    has no story. ``cot_text`` and ``story_text`` are the two parts as written.
    """

    raw: str
    cot: CoT | None = None
    story: GroundedStory | None = None
    cot_text: str | None = None
    story_text: str | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    # who produced it and how (a storyteller fills it: backend, model, timing, token counts)
    meta: dict = field(default_factory=dict, compare=False)

    def __init__(
        self,
        raw: str,
        cot: CoT | None = None,
        story: GroundedStory | None = None,
        cot_text: str | None = None,
        story_text: str | None = None,
        diagnostics: list[Diagnostic] | None = None,
        meta: dict | None = None,
    ):
        self.raw = raw
        self.cot = cot
        self.story = story
        self.cot_text = cot_text
        self.story_text = story_text
        self.diagnostics = [] if diagnostics is None else diagnostics
        self.meta = {} if meta is None else meta

    def __reduce__(self) -> tuple:
        return reduce_dataclass(self)

    def validate(
        self, n_images: int | None = None, image_sizes: list[tuple[int, int]] | None = None, **kwargs
    ):
        """Structural verdict; see :func:`storyreasoning.format.validate.validate`."""
        from .validate import validate

        return validate(self, n_images=n_images, image_sizes=image_sizes, **kwargs)

    def to_dict(self, verdict=None, **validate_kwargs) -> dict:
        """The JSON shape of ``storyreasoning check --json``.

        ``verdict`` is a :class:`~storyreasoning.format.validate.Verdict` already
        computed; without it, ``validate(**validate_kwargs)`` is run.
        """
        if verdict is None:
            verdict = self.validate(**validate_kwargs)
        return {
            "cot": self.cot.to_dict() if self.cot is not None else None,
            "story": self.story.to_dict() if self.story is not None else None,
            "diagnostics": [d.to_dict() for d in verdict.findings],
            "well_structured": verdict.well_structured,
            "reasons": [d.to_dict() for d in verdict.reasons],
        }


dataclass_methods(Telling)


class StreamParser:
    """Feed model output as it arrives; receive events; get the :class:`Telling` at the end."""

    def __init__(self, *, events: bool = True) -> None:
        self._with_events = events  # False: build no events (parse_output does not read them)
        self._mode = _PRE
        self._chunks: list[str] = []
        self._held = 0  # the chunks from this index on are kept, not yet routed
        self._pos = 0  # characters routed so far
        self._line: list[str] = []  # pieces of the line being assembled (PRE and COT)
        self._line_start = 0  # offset where that line starts
        self._line_no = 1  # its line number
        self._partial = ""  # the end of the text routed so far when it begins a marker ("<thi")
        self._pre_lines: list[str] = []  # complete lines read before the mode was known
        self._implicit_open = False
        self._extra_think = False
        self._cot: CotBuilder | None = None
        self._story: StoryBuilder | None = None
        self._cot_start: int | None = None
        self._cot_line = 1
        self._cot_end: int | None = None
        self._story_start: int | None = None
        self._closed = False
        self._telling: Telling | None = None
        self.diagnostics: list[Diagnostic] = []

    # -- public ------------------------------------------------------------------------------
    def feed(self, chunk: str) -> list[Event]:
        """Parse the next piece of output; return the events it completes.

        A chunk with no line end and no ``>`` (nor a ``<``, before the story) completes
        nothing (no line, no marker, no tag): it is only kept, and read with the next
        chunk that holds one of them, so most chunks of a token stream cost a list
        append. In the story a tag is complete at its ``>``: story text is reported when
        the next tag is complete or a line ends.
        """
        if self._closed:
            raise RuntimeError("feed() after close()")
        n = len(chunk)
        if COMPILED and n <= _QUIET_CHUNK:  # one pass over a token's characters, read as integers
            i = 0
            opens = self._mode is not _STORY
            while i < n:
                c = ord(chunk[i])
                if c == 62 or c == 10 or (c == 60 and opens):  # '>', '\n', '<'
                    break
                i += 1
            if i == n:
                self._chunks.append(chunk)
                return []
            loud = True
        elif chunk in _QUIET:  # a chunk seen before to hold none of them (a token recurs)
            self._chunks.append(chunk)
            return []
        else:
            loud = ">" in chunk or "\n" in chunk or ("<" in chunk and self._mode is not _STORY)
        if loud:
            chunks = self._chunks
            held = self._held
            chunks.append(chunk)
            self._held = len(chunks)
            if held < len(chunks) - 1:
                chunk = "".join(chunks[held:])
            mode = self._mode
            if mode is _STORY:
                self._pos += len(chunk)
                return self._story.feed(chunk)  # type: ignore[union-attr]
            if mode is _COT and "<" not in chunk and not self._partial:
                return self._cot_lines(chunk)
            events: list[Event] = []
            self._route(chunk, events)
            return events
        self._chunks.append(chunk)
        if "<" not in chunk and len(chunk) <= _QUIET_CHUNK:  # quiet in every mode
            if len(_QUIET) >= _QUIET_SIZE:
                _QUIET.clear()
            _QUIET.add(chunk)
        return []

    def _cot_lines(self, text: str) -> list[Event]:
        """CoT text with no marker in it (no ``<``, nothing held): what ``_lines`` does, in short."""
        start = self._pos
        self._pos += len(text)
        last = text.rfind("\n")
        if last == -1:
            self._line.append(text)
            return []
        line = self._line
        if line:
            line.append(text[:last])
            body = "".join(line)
            self._line = []
        else:
            body = text[:last]
        lines = body.split("\n")
        events = self._cot.feed_lines(lines)  # type: ignore[union-attr]
        self._line_no += len(lines)
        self._line_start = start + last + 1
        if last + 1 < len(text):
            self._line.append(text[last + 1 :])
        return events

    def _release(self, events: list[Event]) -> None:
        """Route the chunks kept since the last one that completed something."""
        chunks = self._chunks
        held = self._held
        if held < len(chunks):
            self._held = len(chunks)
            self._route("".join(chunks[held:]), events)

    def close(self) -> list[Event]:
        """The output is complete: finish the parse and return the last events."""
        if self._closed:
            return []
        events: list[Event] = []
        self._release(events)
        self._closed = True
        if self._mode == _PRE:
            text = "".join(self._pre_lines) + "".join(self._line)
            if text.strip():
                self._start_story(0, 1)
                assert self._story is not None
                events += self._story.feed(text)
        elif self._mode == _COT:
            assert self._cot is not None
            if self._line:
                events += self._cot.feed_line("".join(self._line))
            events += self._cot.finish()
            self._cot_end = self._pos
            if self._implicit_open:
                self.diagnostics.append(
                    warning(0, "missing-think", "the CoT is not wrapped in <think>…</think>")
                )
            else:
                self.diagnostics.append(
                    warning(
                        self._line_no,
                        "unclosed-think",
                        "<think> was never closed: the output stops inside the CoT",
                    )
                )
        if self._story is not None:
            events += self._story.finish()
        return events

    @property
    def text(self) -> str:
        """Everything fed so far."""
        return "".join(self._chunks)

    def result(self) -> Telling:
        """The parse of the whole output (closes the parser)."""
        if not self._closed:
            self.close()
        if self._telling is None:
            self._telling = self._build()
        return self._telling

    # -- routing -------------------------------------------------------------------------------
    def _route(self, text: str, events: list[Event]) -> None:
        """Route ``text``, the next piece of the output, by mode; markers switch the mode.

        Each turn of the loop ends in a change of mode, so ``text`` is cut a bounded
        number of times however many markers it holds.
        """
        while text:
            if self._mode == _STORY:
                assert self._story is not None
                events += self._story.feed(text)
                self._pos += len(text)
                return
            if self._mode == _COT:  # a <think> here is CoT text (said once); </think> or <gdi ends it
                found = self._next_marker(text, _COT_END)
                if not self._extra_think:
                    think = self._next_marker(text, _THINK, len(text) if found is None else found[0])
                    if think is not None:
                        self._extra_think = True
                        self.diagnostics.append(
                            info(
                                self._line_no + text.count("\n", 0, max(think[0], 0)),
                                "extra-think",
                                "a second <think> inside the CoT was ignored",
                            )
                        )
            else:
                found = self._next_marker(text, _MARKERS)
            if found is None:
                self._lines(text, events)
                return
            at, marker = found  # ``at``: where the marker starts in ``text``; below 0 in the held partial
            if at > 0:
                self._lines(text[:at], events)
                text = text[at:]
                at = 0
                if marker == THINK_OPEN and self._mode == _COT:  # the lines before it opened the CoT
                    continue
            partial = self._partial
            offset = self._pos + at  # of the marker in the whole output
            line = "".join(self._line)
            before = line[: offset - self._line_start]
            start = self._pos - len(partial)  # the offset of partial + text
            resume = self._marker(marker, offset, before, events)
            text = (partial + text)[resume - start :]

    def _next_marker(
        self, text: str, markers: tuple[str, ...], limit: int | None = None
    ) -> tuple[int, str] | None:
        """The first of ``markers`` in the held partial marker + ``text`` (starting before ``limit``):
        (where it starts in ``text``, which)."""
        partial = self._partial
        if partial:
            window = partial + text[: _TAIL + 1]
            for marker in markers:
                if window.startswith(marker):
                    return -len(partial), marker
        end = len(text) if limit is None else limit
        if end <= 0 or "<" not in text:
            return None
        best: tuple[int, str] | None = None
        for marker in markers:
            at = text.find(marker, 0, end + len(marker) - 1)
            if at != -1:
                best = (at, marker)
                end = at
        return best

    def _lines(self, text: str, events: list[Event]) -> None:
        """Text with no marker to act on: complete the lines it ends, hold the rest of the last."""
        start = self._pos
        self._pos += len(text)
        nl = text.find("\n")
        if nl == -1:
            self._line.append(text)
        else:
            if self._line:
                self._line.append(text[: nl + 1])
                first = "".join(self._line)
                self._line = []
            else:
                first = text[: nl + 1]
            self._end_line(first, start + nl + 1, events)
            i = nl + 1
            last = text.rfind("\n")
            while i <= last and self._mode == _PRE:
                nl = text.find("\n", i)
                self._end_line(text[i : nl + 1], start + nl + 1, events)
                i = nl + 1
            if i <= last:  # CoT lines, read in a row
                assert self._cot is not None
                lines = text[i:last].split("\n")
                events += self._cot.feed_lines(lines)
                self._line_no += len(lines)
                self._line_start = start + last + 1
            if last + 1 < len(text):
                self._line.append(text[last + 1 :])
        # a marker may start at the end of this text and end in the next piece
        lt = text.rfind("<", max(0, len(text) - _TAIL))
        if lt != -1:
            held = text[lt:]
        elif self._partial and len(text) < _TAIL and "<" not in text:
            held = self._partial + text
        else:
            held = ""
        self._partial = held if held in _PREFIXES else ""

    def _end_line(self, line: str, next_start: int, events: list[Event]) -> None:
        if self._mode == _PRE and _cot_like(line):
            self._implicit_open = True
            self._preamble()
            self._start_cot(self._line_start)
            if self._with_events:
                events.append(ThinkOpened())
        if self._mode == _PRE:
            self._pre_lines.append(line)
        else:
            assert self._cot is not None
            events += self._cot.feed_lines((line,))  # its fast path: a data row read at once
        self._line_start = next_start
        self._line_no += 1

    def _marker(self, marker: str, at: int, before: str, events: list[Event]) -> int:
        """Switch mode at a marker starting at offset ``at``. Returns the offset where routing resumes."""
        self._line = []
        self._partial = ""
        if self._mode == _PRE:
            if marker == THINK_OPEN:
                self._preamble(before)
                self._start_cot(at + len(THINK_OPEN))
                if self._with_events:
                    events.append(ThinkOpened())
                return self._resume(at + len(THINK_OPEN))
            if marker == THINK_CLOSE:
                self.diagnostics.append(
                    warning(1, "missing-think-open", "the CoT ends with </think> but has no <think>")
                )
                self._start_cot(0, first_line=1)
                if self._with_events:
                    events.append(ThinkOpened())
                assert self._cot is not None
                for line in self._pre_lines:
                    events += self._cot.feed_lines((line,))  # its fast path: a data row read at once
                self._pre_lines = []
            else:  # the story starts; whatever came before is story text outside any segment
                self._start_story(0, 1)
                assert self._story is not None
                events += self._story.feed("".join(self._pre_lines) + before)
                self._pre_lines = []
                return self._resume(at)
        assert self._cot is not None
        if before:
            events += self._cot.feed_line(before)
        events += self._cot.finish()
        self._cot_end = at
        if self._with_events:
            events.append(ThinkClosed())
        if marker == THINK_CLOSE:
            if self._implicit_open:  # CoT lines, then </think>: the <think> is missing (repaired, and said)
                self.diagnostics.append(
                    warning(
                        self._cot_line,
                        "missing-think-open",
                        "the CoT ends with </think> but has no <think>; read from its first table or heading",
                    )
                )
            self._start_story(at + len(THINK_CLOSE), self._line_no)
            return self._resume(at + len(THINK_CLOSE))
        code, message = (
            (
                "missing-think",
                "the CoT is not wrapped in <think>…</think>; the story starts at the first <gdi>",
            )
            if self._implicit_open
            else ("think-closed-by-story", "<think> was never closed; the story starts at the first <gdi>")
        )
        self.diagnostics.append(warning(self._line_no, code, message))
        self._start_story(at, self._line_no)
        return self._resume(at)

    def _resume(self, offset: int) -> int:
        self._pos = offset
        self._line_start = offset
        return offset

    def _preamble(self, before: str = "") -> None:
        if "".join(self._pre_lines).strip() or before.strip():
            self.diagnostics.append(info(1, "text-before-think", "text before the CoT was ignored"))
        self._pre_lines = []

    def _start_cot(self, offset: int, first_line: int | None = None) -> None:
        self._mode = _COT
        self._cot_start = offset
        self._cot_line = first_line or self._line_no
        self._cot = CotBuilder(first_line=self._cot_line, events=self._with_events)

    def _start_story(self, offset: int, first_line: int) -> None:
        self._mode = _STORY
        self._story_start = offset
        self._story = StoryBuilder(first_line=first_line, events=self._with_events)

    def _build(self) -> Telling:
        return _telling(
            self.text,
            self._cot if self._cot_start is not None else None,
            self._cot_start,
            self._cot_end,
            self._story if self._story_start is not None else None,
            self._story_start,
            self.diagnostics,
        )


def _telling(
    raw: str,
    cot_builder: CotBuilder | None,
    cot_start: int | None,
    cot_end: int | None,
    story_builder: StoryBuilder | None,
    story_start: int | None,
    findings: list[Diagnostic],
) -> Telling:
    """The :class:`Telling` of ``raw``, read by these builders from these offsets."""
    cot = story = None
    cot_text = story_text = None
    if cot_builder is not None and cot_start is not None:
        end = cot_end if cot_end is not None else len(raw)
        cot_text = raw[cot_start:end].strip() or None
        cot = cot_builder.cot if cot_text else None
    if story_builder is not None and story_start is not None:
        story_text = raw[story_start:].strip() or None
        story = story_builder.story if story_builder.story.segments else None
    diagnostics = list(findings)
    if cot is not None:
        diagnostics += cot.diagnostics
    if story is not None:
        diagnostics += story.diagnostics
    diagnostics.sort(key=_line_of)
    return Telling(
        raw=raw, cot=cot, story=story, cot_text=cot_text, story_text=story_text, diagnostics=diagnostics
    )


def _line_of(finding: Diagnostic) -> int:
    return finding.line


def _parse_published(text: str, end: int) -> Telling:
    """``<think>`` CoT ``</think>`` story, with ``</think>`` at ``end``, and no ``<think>`` or
    ``<gdi`` inside the CoT: what :class:`StreamParser` reads from such a text, without routing
    it (the tests hold the two to the same result)."""
    cot = CotBuilder(1, events=False)
    lines = text[len(THINK_OPEN) : end].split("\n")
    story_line = len(lines)  # the line </think> is on: 1 + the line ends before it (none in <think>)
    last = lines.pop()  # the CoT's last line, when it does not end with a line end
    cot.feed_lines(lines)
    if last:
        cot.feed_line(last)
    cot.finish()
    start = end + len(THINK_CLOSE)
    story = StoryBuilder(story_line, events=False)
    story.feed(text[start:])
    story.finish()
    return _telling(text, cot, len(THINK_OPEN), end, story, start, [])


def parse_output(text: str) -> Telling:
    """Parse a whole model output. Never raises; findings are in ``telling.diagnostics``."""
    if text.startswith(THINK_OPEN):  # the published envelope, read without routing
        end = text.find(THINK_CLOSE, len(THINK_OPEN))
        if end != -1 and (
            text.find("<", len(THINK_OPEN), end) == -1  # a CoT seldom holds a '<': one quick search
            or (
                text.find(STORY_START, len(THINK_OPEN), end) == -1
                and text.find(THINK_OPEN, len(THINK_OPEN), end) == -1
            )
        ):
            return _parse_published(text, end)
    parser = StreamParser(events=False)
    parser.feed(text)
    return parser.result()


def split_output(text: str) -> tuple[str | None, str | None]:
    """``(cot_text, story_text)`` of a model output, each None when absent."""
    telling = parse_output(text)
    return telling.cot_text, telling.story_text
