"""A tolerant, line-by-line parser for the chain-of-thought tables.

It accepts everything the original parser accepts and also the malformed variants that
models write: headings at another level, with a colon or in bold; numbering gaps; a
last row without a newline; rows without outer pipes; blank lines inside tables;
reordered or differently cased headers; missing or extra cells; unknown enum values
(kept as written and flagged); tables without a heading (their kind is read from the
header row). Every departure is reported as a :class:`Diagnostic`.

The parser sees each line once and keeps constant state per line, so its cost is
linear in the text. :class:`CotBuilder` is fed line by line (the streaming parser uses
it directly); :func:`parse_cot` feeds it a whole text.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence

from .box import Box, parse_box
from .cot import (
    NARRATIVE,
    TABLES,
    Character,
    CoT,
    ImageAnalysis,
    NarrativePhase,
    NarrativeRow,
    SceneObject,
    Setting,
    SettingElement,
    TableSpec,
    id_kind,
    match_enum,
    norm_header,
)
from .diagnostics import Diagnostic, error, info, warning
from .events import (
    Event,
    ImageSectionStarted,
    NarrativeRowCompleted,
    NarrativeStarted,
    TableRowCompleted,
)
from .records import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Final

# Only the first characters of a line are looked at to classify it; a hostile
# multi-megabyte line costs one slice, never a scan that depends on anything else.
_HEAD: Final = 200
# any number of images (up to nine digits: a number longer than that is not an image number)
_IMAGE_RE: Final = re.compile(r"(?:image|frame|img)\s*#?\s*(\d{1,9})\b", re.IGNORECASE | re.ASCII)
_SEPARATOR_CHARS: Final = set("-:= ")
# a table line is cut here before it is split (a hostile line costs no more than this)
_MAX_ROW: Final = 100_000
_ABSENT: Final = sys.maxsize  # the column index of a field the header lacks


def _pixel(text: str) -> int:
    """A box coordinate as a well-formed row writes it, ``0`` to ``9999`` (ASCII digits, no sign,
    no leading zero): its value; anything else -1 (read by ``parse_box`` instead).

    Compiled, reading the digits natively costs less than ``int()`` or a lookup in a table of
    the 10,000 spellings (which took 4 to 11 ms to build, on every process's first parse).
    """
    n = len(text)
    if n == 0 or n > 4:
        return -1
    value = ord(text[0]) - 48
    if value < 0 or value > 9 or (value == 0 and n > 1):
        return -1
    for i in range(1, n):
        digit = ord(text[i]) - 48
        if digit < 0 or digit > 9:
            return -1
        value = value * 10 + digit
    return value


def _separator_line(s: str) -> bool:
    """True when ``s`` holds a dash and nothing but ``|``, ``-``, ``:``, ``=`` and spaces: a table's
    separator line.

    Stripping a separator line with that set of characters searches the set for each of its
    characters (remembering them took a lighthouse parse, ten separators, from about 608 k to
    464 k instructions), and the same separator comes back under every image's table: the
    lines found to be separators are remembered (bounded, as the other caches). A line that is
    not one stops the strip at once.
    """
    if s in _SEPARATORS:
        return True
    if "-" not in s or s.strip("|-:= "):
        return False
    if len(s) <= _CACHE_LINE:
        if len(_SEPARATORS) >= _CACHE_SIZE:
            _SEPARATORS.clear()
        _SEPARATORS.add(s)
    return True


def _heading_text(line: str) -> tuple[str, bool, int] | None:
    """Classify a heading line: ``(text, styled, level)`` or None.

    ``styled`` is False only for the published form ``## …``/``### …``. A heading is a
    line starting with ``#``, or a line that is entirely bold (``**Image 1**``), or a
    short line ending with a colon (``Characters:``) that names a known section.
    """
    s = line.strip()
    if not s:
        return None
    head = s[:_HEAD]
    if head.startswith("#"):
        level = len(head) - len(head.lstrip("#"))
        text = head[level:].strip()
        # the published form has one space after the '#'s ('##\tImage 1' and '##  Image 1' do not)
        styled = head[level : level + 1] != " " or head[level + 1 : level + 2].isspace()
        if text.startswith(("**", "__")) and text.endswith(("**", "__")) and len(text) > 4:
            text, styled = text[2:-2].strip(), True
        if text.endswith(":"):
            text, styled = text[:-1].strip(), True
        return text, styled, level
    if len(s) <= 80 and (
        (s.startswith("**") and s.endswith("**") and len(s) > 4)
        or (s.startswith("__") and s.endswith("__") and len(s) > 4)
    ):
        text = s[2:-2].strip().rstrip(":").strip()
        return text, True, 0
    if len(s) <= 40 and s.endswith(":") and "|" not in s:
        return s[:-1].strip(), True, 0
    return None


def _section_of(text: str) -> tuple[str, int | None] | None:
    """What a heading names: ``("image", n)``, ``("characters", None)``, …, or None."""
    norm = norm_header(text)
    m = _IMAGE_RE.match(text.strip())
    if m:
        return "image", int(m.group(1))
    if norm.startswith("narrative"):
        return "narrative", None
    if norm.startswith("character"):
        return "characters", None
    if norm.startswith("object"):
        return "objects", None
    if norm.startswith("setting"):
        return "settings", None
    return None


def heading_section(line: str) -> tuple[str, int | None] | None:
    """What a heading line names (``("image", 2)``, ``("objects", None)``), or None if it is not one."""
    heading = _heading_text(line)
    return _section_of(heading[0]) if heading is not None else None


def _split_row(line: str) -> tuple[list[str], bool]:
    """Cells of a table line, and whether an outer pipe was missing."""
    s = line.strip()
    missing = False
    if s.startswith("|"):
        s = s[1:]
    else:
        missing = True
    if s.endswith("|") and not s.endswith("\\|"):
        s = s[:-1]
    else:
        missing = True
    return [c.strip() for c in s.split("|")], missing


def _is_separator(cells: list[str]) -> bool:
    return (
        any("-" in c for c in cells)
        and all(c and set(c) <= _SEPARATOR_CHARS for c in cells if c)
        and any(cells)
    )


def _header_fields(cells: list[str], spec: TableSpec) -> list[str | None]:
    return [spec.aliases.get(_norm(c)) for c in cells]


# every normalised column name of every published table
_ALIASES: Final = frozenset(n for spec in TABLES.values() for n in spec.aliases)
# cells seen lately, normalised: column names, and the values of Setting Element, Mood, Time
# and Narrative Phase recur
_NORMS: Final[dict[str, str]] = {}
_NORMS_SIZE: Final = 4096
# each table's published column names, by their normalised form
_PUBLISHED_HEADERS: Final = {kind: {norm_header(h): h for h in spec.headers} for kind, spec in TABLES.items()}


def _norm(cell: str) -> str:
    """``norm_header(cell)``, remembered for short cells."""
    norm = _NORMS.get(cell)
    if norm is None:
        norm = norm_header(cell)
        if len(cell) <= 200:
            if len(_NORMS) >= _NORMS_SIZE:
                _NORMS.clear()
            _NORMS[cell] = norm
    return norm


_SHORT_CELL: Final = 32


def _looks_like_header(cells: list[str]) -> bool:
    """True when most cells are column names of some published table.

    A data row is told apart after a few cells: it fails as soon as too many of its
    cells are no column name at all for the rest to make a majority.
    """
    if id_kind(cells[0]) is not None:
        return False
    filled = len(cells) - cells.count("")
    need = max(2, (filled + 1) // 2)
    spare = len(cells) - need  # cells that may fail to be a column name
    if spare < 0:
        return False
    # short cells first: a data row's recurring short values (an element, a mood, a time) are
    # remembered and fail cheaply, so its long unique descriptions are seldom normalised at all
    for cell in cells:
        if len(cell) <= _SHORT_CELL:
            norm = _NORMS.get(cell)
            if norm is None:
                norm = _norm(cell)
            if norm not in _ALIASES:
                spare -= 1
                if spare < 0:
                    return False
    norms: list[str] = []
    for cell in cells:
        if len(cell) <= _SHORT_CELL:
            norm = _NORMS.get(cell)
            if norm is None:
                norm = _norm(cell)
        else:
            norm = _norm(cell)
            if norm not in _ALIASES:
                spare -= 1
                if spare < 0:
                    return False
        norms.append(norm)
    best = max(len({spec.aliases[n] for n in norms if n in spec.aliases}) for spec in TABLES.values())
    return best >= need


_DISTINCTIVE: Final = {
    "characters": {"id:char", "name", "emotions", "actions"},
    "objects": {"id:obj", "function", "interaction"},
    "settings": {"element", "mood", "time"},
    "narrative": {"phase", "key_events", "images_text"},
}


def _header_kind(cells: list[str], expected: str | None) -> TableSpec | None:
    """Pick the table a header row belongs to, preferring the kind its heading announced."""
    norms = [_norm(c) for c in cells]
    scores: dict[str, int] = {}
    for kind, spec in TABLES.items():
        fields = [spec.aliases.get(n) for n in norms]
        distinct = set()
        for n, f in zip(norms, fields, strict=True):
            if f is None:
                continue
            if f == "id":
                if n.startswith("char"):
                    distinct.add("id:char")
                elif n.startswith("obj"):
                    distinct.add("id:obj")
            distinct.add(f)
        scores[kind] = len(distinct & _DISTINCTIVE[kind]) * 10 + len({f for f in fields if f})
    if expected in scores and scores[expected] >= max(scores.values()) - 5:
        return TABLES[expected]
    best = max(scores, key=lambda k: scores[k])
    return TABLES[best]


# the published values, which match_enum reads as exact
_SETTING_VALUES: Final = frozenset(member.value for member in SettingElement)
_PHASE_VALUES: Final = frozenset(member.value for member in NarrativePhase)
_ASCII_DIGITS: Final = frozenset("0123456789")

_CANONICAL_HEADINGS: Final = {
    "characters": "Characters",
    "objects": "Objects",
    "settings": "Setting",
    "narrative": "Narrative Structure",
}


class _Layout:
    """How a table's columns map to its fields: worked out once per header row and kind."""

    __slots__ = ("canonical", "columns", "findings", "index", "kind", "n_cols", "spec")

    def __init__(self, spec: TableSpec, columns: list[str | None], findings: list[tuple]):
        self.spec = spec
        self.kind = spec.kind
        self.columns = columns
        self.n_cols = len(columns)
        # (severity, code, message) of the header row's findings, without their line
        self.findings = findings
        # the column of each field (_ABSENT where there is none; the last one where the header
        # names it twice, as the original's dict of header -> cell): a row's values in field
        # order are cells[i] for i in index, "" where the row is shorter
        last = {f: i for i, f in enumerate(columns)}
        self.index = [last.get(f, _ABSENT) for f in spec.fields]
        self.canonical = columns == list(spec.fields)


def _header_findings(cells: list[str], columns: list[str | None], spec: TableSpec) -> list[tuple]:
    findings: list[tuple] = []
    for cell, col in zip(cells, columns, strict=True):
        if col is None and cell:
            findings.append(
                (warning, "unknown-column", f"column {cell!r} is not a {spec.title} column; ignored")
            )
    present = [c for c in columns if c is not None]
    for f, h in zip(spec.fields, spec.headers, strict=True):
        if present.count(f) > 1:
            findings.append(
                (
                    warning,
                    "duplicate-column",
                    f"{spec.title} table names column {h!r} {present.count(f)} times; its last one was read",
                )
            )
    missing = [h for f, h in zip(spec.fields, spec.headers, strict=True) if f not in present]
    if missing:
        findings.append(
            (warning, "missing-column", f"{spec.title} table lacks column(s) {', '.join(missing)}")
        )
    order = [f for f in spec.fields if f in present]
    seen = []
    for c in present:
        if c not in seen:
            seen.append(c)
    if seen != order:
        findings.append((info, "column-order", f"{spec.title} columns are not in the published order"))
    published = _PUBLISHED_HEADERS[spec.kind]
    for cell in cells:
        canon = published.get(_norm(cell))
        if canon is not None and cell != canon:
            findings.append((info, "header-case", f"column {cell!r} read as {canon!r}"))
    return findings


class _Header:
    """A header row, read once per distinct line: the same header opens every image's table."""

    __slots__ = ("cells", "layouts")

    def __init__(self, cells: list[str]):
        self.cells = cells
        self.layouts: dict[str | None, _Layout] = {}  # by the kind the last heading announced

    def layout(self, expected: str | None) -> _Layout:
        layout = self.layouts.get(expected)
        if layout is None:
            spec = _header_kind(self.cells, expected)
            assert spec is not None
            columns = _header_fields(self.cells, spec)
            layout = self.layouts[expected] = _Layout(
                spec, columns, _header_findings(self.cells, columns, spec)
            )
        return layout


# Header rows and headings seen lately, by their stripped line (bounded: cleared when full).
_HEADERS: Final[dict[str, _Header]] = {}
_SEPARATORS: Final[set[str]] = set()  # lines found to be separators (see _separator_line)
_HEADINGS: Final[dict[str, tuple[tuple[str, bool, int], tuple[str, int | None]]]] = {}
_CACHE_SIZE: Final = 256
_CACHE_LINE: Final = 1000  # longer lines are not kept
# the published column order of each table, for a table without a header row
_PUBLISHED: Final = {kind: _Layout(spec, list(spec.fields), []) for kind, spec in TABLES.items()}


class _Table:
    """A table being read: its kind and the field each column maps to."""

    __slots__ = ("blank_pending", "expect_separator", "layout", "spec")

    def __init__(self, layout: _Layout, has_header: bool):
        self.layout = layout
        self.spec = layout.spec
        self.expect_separator = has_header  # a header row is followed by its --- separator
        self.blank_pending = False


class CotBuilder:
    """Incremental CoT parser: ``feed_line`` each line, then ``finish``.

    A line is classified once, by its first character before anything else: blank, a
    table line (a pipe), a heading, or free text. A table line is a separator (only
    pipes, dashes, colons and spaces), a header row (a line seen before as a header, or
    one whose cells are mostly column names; a data row fails that test after a few
    cells) or a data row, whose cells go to their fields by the header's column layout.
    """

    def __init__(self, first_line: int = 1, *, events: bool = True):
        self.cot = CoT()
        self._with_events = events  # False: build no events (a batch parse does not read them)
        self.diagnostics: list[Diagnostic] = self.cot.diagnostics
        self.line_no = first_line - 1
        self._image: ImageAnalysis | None = None
        self._images: dict[int, ImageAnalysis] = {}  # by number
        self._section: str | None = None  # "image" | "narrative"
        self._expected: str | None = None  # table kind announced by the last ### heading
        self._table: _Table | None = None
        self._free_text_reported = False
        self._last_image_number = 0
        self._finished = False
        self._ids: dict[int, set[str]] = {}  # image number -> ids already listed

    # -- public ------------------------------------------------------------------------------
    def feed_line(self, raw: str) -> list[Event]:
        """Read the next line; return the events it completes."""
        events: list[Event] | None = [] if self._with_events else None
        self._feed(raw, events)
        return events if events is not None else []

    def feed_lines(self, lines: Sequence[str]) -> list[Event]:
        """``feed_line`` for each line in turn.

        The lines a well-formed CoT is mostly made of are read here in a row: blank
        lines, a header row seen before (under its heading), the separator under a
        header, and data rows of an open table in its
        published layout (an id row's box four whole numbers of at most four digits).
        Any other line goes the general way. A streamed parse feeds most lines one at a
        time through ``feed_line``, so the tests' streamed-equals-batch checks hold this
        path to the general one.
        """
        events: list[Event] | None = [] if self._with_events else None
        headers = _HEADERS
        for raw in lines:
            s = raw.strip()
            table = self._table
            if not s:
                self.line_no += 1
                if table is not None:
                    table.blank_pending = True
                continue
            if table is None or s[0] != "|" or table.blank_pending or len(raw) > _MAX_ROW:
                if table is None and s[0] == "|" and len(raw) <= _MAX_ROW:
                    header = headers.get(s)  # a header row seen before (what _table_line does first)
                    if header is not None:
                        self.line_no += 1
                        self._start_table(header, events)
                        continue
                self._feed(raw, events)
            elif table.expect_separator:
                if _separator_line(s):  # the separator under the header
                    self.line_no += 1
                    table.expect_separator = False
                else:
                    self._feed(raw, events)
            elif s[-1] != "|" or len(s) < 3 or s[-2] == "\\" or not self._data_row(table, s, events):
                self._feed(raw, events)
        return events if events is not None else []

    def _data_row(self, table: _Table, s: str, events: list[Event] | None) -> bool:
        """Read ``s`` as a data row of ``table`` if it is one in the published layout (see ``feed_lines``)."""
        layout = table.layout
        if not layout.canonical:
            return False
        cells = [cell.strip() for cell in s[1:-1].split("|")]
        first = cells[0]
        if len(cells) != layout.n_cols or not first or first[0] in "-:=":
            return False
        kind = layout.kind
        if kind == "characters" or kind == "objects":
            id_of = id_kind(first)
            if id_of is None:
                return False
            box_text = cells[-1]
            parts = box_text.split(",")
            if len(parts) != 4:
                return False
            x1 = _pixel(parts[0])
            y1 = _pixel(parts[1])
            x2 = _pixel(parts[2])
            y2 = _pixel(parts[3])
            if x1 < 0 or y1 < 0 or x2 < 0 or y2 < 0:
                return False
            self.line_no += 1
            line = self.line_no
            box = Box(x1, y1, x2, y2)
            if x2 <= x1 or y2 <= y1:
                self.diagnostics.append(
                    error(line, "box-inverted", f"bounding box {box} has x2 <= x1 or y2 <= y1")
                )
            image = self._image
            assert image is not None
            row: Character | SceneObject
            if kind == "characters":
                character = Character(
                    first, cells[1], cells[2], cells[3], cells[4], cells[5], box, box_text, line
                )
                image.characters.append(character)
                row = character
                mismatch = id_of != "char"
            else:
                scene_object = SceneObject(first, cells[1], cells[2], cells[3], cells[4], box, box_text, line)
                image.objects.append(scene_object)
                row = scene_object
                mismatch = id_of == "char"
            if mismatch:
                self._check_id(first, kind, image)
            else:
                seen = self._ids.get(image.number)
                if seen is None or first in seen:
                    self._seen(first, image)
                else:
                    seen.add(first)
            if events is not None:
                events.append(TableRowCompleted(image.number, kind, row))
            return True
        if _looks_like_header(cells):
            return False
        self.line_no += 1
        self._row(table, cells, events)
        return True

    def _feed(self, raw: str, events: list[Event] | None) -> None:
        self.line_no += 1
        s = raw.strip()
        if not s:
            if self._table is not None:
                self._table.blank_pending = True
            return
        if s[0] == "|" or s.find("|", 0, _HEAD) != -1:
            if len(raw) > _MAX_ROW:
                s = raw.rstrip("\r\n")[:_MAX_ROW].strip()
            self._table_line(s, events)
            return
        found = _HEADINGS.get(s)
        if found is None:
            heading = _heading_text(s)
            if heading is not None:
                section = _section_of(heading[0])
                if section is not None:
                    found = (heading, section)
                    if len(s) <= _CACHE_LINE:
                        if len(_HEADINGS) >= _CACHE_SIZE:
                            _HEADINGS.clear()
                        _HEADINGS[s] = found
        if found is not None:
            self._heading(s, found[0], found[1], events)
            return
        self._free_text(s)

    def finish(self) -> list[Event]:
        if self._finished:
            return []
        self._finished = True
        self._close_table()
        for image in self.cot.images:
            missing = [
                TABLES[k].title
                for k in ("characters", "objects", "settings")
                if k not in image.tables_present
            ]
            if missing:
                self.diagnostics.append(
                    warning(
                        image.line,
                        "missing-table",
                        f"Image {image.number} has no {' or '.join(missing)} table",
                    )
                )
        if self.cot.images and self.cot.narrative is None:
            self.diagnostics.append(
                warning(self.line_no, "no-narrative", "the CoT has no Narrative Structure section")
            )
        return []

    # -- sections ----------------------------------------------------------------------------
    def _heading(
        self,
        raw: str,
        heading: tuple[str, bool, int],
        section: tuple[str, int | None],
        events: list[Event] | None,
    ) -> None:
        text, styled, level = heading
        kind, number = section
        canonical_level = 2 if kind == "image" or kind == "narrative" else 3
        canonical = f"Image {number}" if kind == "image" else _CANONICAL_HEADINGS[kind]
        if styled or level != canonical_level or text != canonical:
            self.diagnostics.append(
                warning(
                    self.line_no,
                    "heading-style",
                    f"heading {raw[:80]!r} read as '{'#' * canonical_level} {canonical}'",
                )
            )
        self._close_table()
        if kind == "image":
            assert number is not None
            self._start_image(number, events)
        elif kind == "narrative":
            self._start_narrative(events)
        else:
            if self._section != "image":
                self._implicit_image(events)
            self._expected = kind

    def _start_image(self, number: int, events: list[Event] | None) -> None:
        self._section = "image"
        self._expected = None
        existing = self._images.get(number)
        if existing is not None:
            self.diagnostics.append(
                warning(
                    self.line_no,
                    "image-number-duplicate",
                    f"Image {number} appears twice; its rows were merged",
                )
            )
            self._image = existing
            return
        if number != self._last_image_number + 1:
            if number > self._last_image_number + 1:
                missing = ", ".join(
                    str(n)
                    for n in range(self._last_image_number + 1, min(number, self._last_image_number + 6))
                )
                self.diagnostics.append(
                    warning(
                        self.line_no,
                        "image-number-gap",
                        f"Image {number} follows Image {self._last_image_number}; missing {missing}",
                    )
                )
            else:
                self.diagnostics.append(
                    warning(
                        self.line_no,
                        "image-number-order",
                        f"Image {number} comes after Image {self._last_image_number}",
                    )
                )
        self._last_image_number = max(self._last_image_number, number)
        self._image = ImageAnalysis(number=number, line=self.line_no)
        self._images[number] = self._image
        self.cot.images.append(self._image)
        if events is not None:
            events.append(ImageSectionStarted(number))

    def _implicit_image(self, events: list[Event] | None) -> None:
        if self._image is None:
            self.diagnostics.append(
                warning(
                    self.line_no,
                    "content-before-image",
                    "tables before any '## Image N' heading were read as Image 1",
                )
            )
            self._start_image(1, events)
        else:
            self._section = "image"

    def _start_narrative(self, events: list[Event] | None) -> None:
        self._section = "narrative"
        self._expected = "narrative"
        if self.cot.narrative is None:
            self.cot.narrative = []
            if events is not None:
                events.append(NarrativeStarted())

    def _free_text(self, stripped: str) -> None:
        self._close_table()
        if not self._free_text_reported:
            self._free_text_reported = True
            preview = stripped[:60] + ("…" if len(stripped) > 60 else "")
            self.diagnostics.append(
                info(self.line_no, "free-text", f"free text in the CoT was ignored: {preview!r}")
            )

    # -- tables ------------------------------------------------------------------------------
    def _close_table(self) -> None:
        self._table = None

    def _table_line(self, s: str, events: list[Event] | None) -> None:
        table = self._table
        if table is not None and table.blank_pending:
            table.blank_pending = False
            self.diagnostics.append(
                info(self.line_no, "blank-line-in-table", "a blank line inside a table was skipped")
            )
        if _separator_line(s):  # the usual separator, told without splitting
            if table is not None and table.expect_separator:
                table.expect_separator = False
            return
        header = _HEADERS.get(s)
        if header is not None:
            self._start_table(header, events)
            return
        if s[0] == "|" and s[-1] == "|" and len(s) > 1 and s[-2] != "\\":
            cells = [cell.strip() for cell in s[1:-1].split("|")]
            missing_pipes = False
        else:
            cells, missing_pipes = _split_row(s)
        first = cells[0]
        if not first:
            first = next((c for c in cells if c), "")
        if first and first[0] in "-:=" and _is_separator(cells):  # one with tabs or the like
            if table is not None and table.expect_separator:
                table.expect_separator = False
            return
        if _looks_like_header(cells):
            header = _Header(cells)
            if len(s) <= _CACHE_LINE:
                if len(_HEADERS) >= _CACHE_SIZE:
                    _HEADERS.clear()
                _HEADERS[s] = header
            self._start_table(header, events)
            return
        if table is None:
            table = self._headerless_table(cells, events)
            if table is None:
                return
        if table.expect_separator:
            table.expect_separator = False
            self.diagnostics.append(
                info(self.line_no, "no-separator", "table header not followed by a --- separator row")
            )
        if missing_pipes:
            self.diagnostics.append(
                warning(self.line_no, "missing-outer-pipes", "table row lacks its leading or trailing pipe")
            )
        self._row(table, cells, events)

    def _start_table(self, header: _Header, events: list[Event] | None) -> None:
        layout = header.layout(self._expected)
        spec = layout.spec
        if spec.kind == "narrative":
            if self._section != "narrative":
                self.diagnostics.append(
                    warning(
                        self.line_no, "missing-table-heading", "Narrative Structure table without its heading"
                    )
                )
                self._start_narrative(events)
        else:
            if self._section != "image":
                self._implicit_image(events)
            if self._expected != spec.kind:
                if self._expected is None:
                    self.diagnostics.append(
                        warning(
                            self.line_no,
                            "missing-table-heading",
                            f"{spec.title} table without its '### {spec.title}' heading",
                        )
                    )
                else:
                    self.diagnostics.append(
                        warning(
                            self.line_no,
                            "missing-table-heading",
                            f"the header row is that of a {spec.title} table, under a {TABLES[self._expected].title} heading",
                        )
                    )
            assert self._image is not None
            self._image.tables_present.add(spec.kind)
        self._expected = None if spec.kind != "narrative" else "narrative"
        for severity, code, message in layout.findings:
            self.diagnostics.append(severity(self.line_no, code, message))
        self._table = _Table(layout, True)

    def _headerless_table(self, cells: list[str], events: list[Event] | None) -> _Table | None:
        """A data row with no table open: assume the published columns of the expected kind."""
        kind = self._expected
        if kind is None:
            first = id_kind(cells[0]) if cells else None
            if self._section == "narrative":
                kind = "narrative"
            elif first == "char":
                kind = "characters"
            elif first in ("obj", "bg", "lm"):
                kind = "objects"
            elif cells and match_enum(SettingElement, cells[0])[1]:
                kind = "settings"
            elif cells and match_enum(NarrativePhase, cells[0])[1]:
                kind = "narrative"
            else:
                self.diagnostics.append(
                    info(self.line_no, "free-text", "a table row outside any table was ignored")
                )
                return None
        spec = TABLES[kind]
        if kind == "narrative":
            if self._section != "narrative":
                self._start_narrative(events)
        else:
            if self._section != "image":
                self._implicit_image(events)
            assert self._image is not None
            self._image.tables_present.add(kind)
        self.diagnostics.append(
            warning(
                self.line_no,
                "no-header-row",
                f"{spec.title} table has no header row; the published column order was assumed",
            )
        )
        self._expected = None if kind != "narrative" else "narrative"
        self._table = _Table(_PUBLISHED[kind], False)
        return self._table

    def _row(self, table: _Table, cells: list[str], events: list[Event] | None) -> None:
        if not any(cells):
            self.diagnostics.append(info(self.line_no, "empty-row", "an empty table row was ignored"))
            return
        layout = table.layout
        spec = layout.spec
        line = self.line_no
        n_cols = len(layout.columns)
        n = len(cells)
        if n != n_cols:
            if n < n_cols:
                self.diagnostics.append(
                    warning(
                        line,
                        "missing-cells",
                        f"{spec.title} row has {n} of {n_cols} cells; the rest are empty",
                    )
                )
            else:
                self.diagnostics.append(
                    warning(
                        line,
                        "extra-cells",
                        f"{spec.title} row has {n} cells for {n_cols} columns; extra ignored",
                    )
                )
        # the row's values in field order (cells are already stripped)
        if layout.canonical:
            v = cells if n >= n_cols else cells + [""] * (n_cols - n)
        else:
            v = [cells[i] if i < n else "" for i in layout.index]
        kind = spec.kind
        if kind == "characters" or kind == "objects":
            image = self._image
            assert image is not None
            box_text = v[len(spec.fields) - 1]  # the box is the last field
            box, box_diags = parse_box(box_text, line)
            if box_diags:
                self.diagnostics.extend(box_diags)
            row: Character | SceneObject
            if kind == "characters":
                character = Character(v[0], v[1], v[2], v[3], v[4], v[5], box, box_text, line)
                self._check_id(character.id, kind, image)
                image.characters.append(character)
                row = character
            else:
                scene_object = SceneObject(v[0], v[1], v[2], v[3], v[4], box, box_text, line)
                self._check_id(scene_object.id, kind, image)
                image.objects.append(scene_object)
                row = scene_object
            if events is not None:
                events.append(TableRowCompleted(image.number, kind, row))
        elif kind == "settings":
            image = self._image
            assert image is not None
            setting = Setting(v[0], v[1], v[2], v[3], v[4], line)
            if setting.element not in _SETTING_VALUES:  # a published value is exact: nothing to say
                self._check_enum(setting.element, SettingElement, "setting-element", "Setting Element")
            image.settings.append(setting)
            if events is not None:
                events.append(TableRowCompleted(image.number, "settings", setting))
        else:
            phase = NarrativeRow(v[0], v[1], v[2], v[3], line)
            if phase.phase not in _PHASE_VALUES:
                self._check_enum(phase.phase, NarrativePhase, "narrative-phase", "Narrative Phase")
            if phase.images_text[:1] not in _ASCII_DIGITS and not phase.images:  # a leading digit is an image
                self.diagnostics.append(
                    warning(
                        line,
                        "narrative-images-empty",
                        f"narrative row {phase.phase!r} names no image number",
                    )
                )
            assert self.cot.narrative is not None
            self.cot.narrative.append(phase)
            if events is not None:
                events.append(NarrativeRowCompleted(phase))

    def _check_enum(self, text: str, enum, code: str, label: str) -> None:
        member, exact = match_enum(enum, text)
        if member is None:
            self.diagnostics.append(
                warning(
                    self.line_no,
                    f"unknown-{code}",
                    f"{label} {text!r} is not one of: {', '.join(m.value for m in enum)}",
                )
            )
        elif not exact:
            self.diagnostics.append(
                warning(self.line_no, f"fuzzy-{code}", f"{label} {text!r} recognised as {member.value!r}")
            )

    def _check_id(self, entity_id: str, table: str, image: ImageAnalysis) -> None:
        kind = id_kind(entity_id)
        if kind is None:
            self.diagnostics.append(
                error(
                    self.line_no, "bad-id", f"{entity_id!r} is not an id of the form char#, obj#, bg# or lm#"
                )
                if not entity_id
                else warning(
                    self.line_no, "bad-id", f"{entity_id!r} is not an id of the form char#, obj#, bg# or lm#"
                )
            )
        elif (table == "characters") != (kind == "char"):
            where = "Characters" if table == "characters" else "Objects"
            self.diagnostics.append(
                warning(self.line_no, "id-table-mismatch", f"{entity_id} is listed in the {where} table")
            )
        self._seen(entity_id, image)

    def _seen(self, entity_id: str, image: ImageAnalysis) -> None:
        seen = self._ids.get(image.number)
        if seen is None:
            seen = self._ids[image.number] = set()
        if entity_id in seen and entity_id:
            self.diagnostics.append(
                warning(self.line_no, "duplicate-id", f"{entity_id} appears twice in Image {image.number}")
            )
        seen.add(entity_id)


def parse_cot(text: str, first_line: int = 1) -> CoT:
    """Parse a CoT text. Never raises; findings are in ``cot.diagnostics``."""
    builder = CotBuilder(first_line, events=False)
    builder.feed_lines(text.split("\n"))
    builder.finish()
    return builder.cot


__all__ = ["NARRATIVE", "CotBuilder", "parse_cot"]
