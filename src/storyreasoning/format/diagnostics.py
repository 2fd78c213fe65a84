"""Findings reported by the parsers and the validator.

Every parse returns its findings instead of printing them. A finding has a 1-based line
number in the text that was parsed (0 when it concerns the whole text), a stable code
(documented in ``CODES``), a severity and a human sentence.

Severities:

* ``error``: something is missing or unusable (a row could not be read, a box is not a
  box, a required part is absent). The validator counts these against the verdict.
* ``warning``: the text departs from the published format and was repaired or kept as
  written (a heading with a colon, a decimal box, an unknown setting element).
* ``info``: harmless differences worth knowing (free text between tables, a tag
  attribute in an older syntax).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum
from types import FunctionType

from .records import TYPE_CHECKING, dataclass_methods

if TYPE_CHECKING:
    from typing import Any, Final


def _probe() -> None:
    """A function whose type tells whether this module runs compiled."""


# True when the parser modules run compiled by mypyc (their functions are then native, not
# Python functions). The few places that set a frozen dataclass's fields directly need to
# know: compiled code sets them natively, Python writes the instance dict.
COMPILED: Final = not isinstance(_probe, FunctionType)

# each parser dataclass's field names, in order (what reduce_dataclass reads)
_FIELD_NAMES: Final[dict[type, tuple[str, ...]]] = {}


def reduce_dataclass(obj: Any) -> tuple:
    """``__reduce__`` of the parser's dataclasses, whose ``__init__`` takes their fields in order:
    ``(class, field values)``. Compiled instances have no ``__dict__`` for pickle and copy to
    read; with this both builds pickle alike, and a field added to a class is pickled with it."""
    cls = type(obj)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(obj))
    return (cls, tuple(getattr(obj, name) for name in names))


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.value


@dataclass(init=False, repr=False, eq=False)
class Diagnostic:
    line: int
    code: str
    severity: Severity
    message: str

    def __init__(self, line: int, code: str, severity: Severity, message: str):
        # sets the frozen fields natively (compiled) or writes the instance dict (Python): half
        # the cost of the generated __init__ (a malformed output has a finding on most lines)
        if COMPILED:
            self.line = line  # type: ignore[misc]
            self.code = code  # type: ignore[misc]
            self.severity = severity  # type: ignore[misc]
            self.message = message  # type: ignore[misc]
        else:
            d = self.__dict__
            d["line"] = line
            d["code"] = code
            d["severity"] = severity
            d["message"] = message

    def __reduce__(self) -> tuple:
        return reduce_dataclass(self)

    def to_dict(self) -> dict:
        return {
            "line": self.line,
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
        }

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "text"
        return f"{where}: {self.severity.value} [{self.code}] {self.message}"


dataclass_methods(Diagnostic, frozen=True)


# the members once looked up (an enum member's lookup through its class costs more than a global)
_ERROR, _WARNING, _INFO = Severity.ERROR, Severity.WARNING, Severity.INFO


def error(line: int, code: str, message: str) -> Diagnostic:
    return Diagnostic(line, code, _ERROR, message)


def warning(line: int, code: str, message: str) -> Diagnostic:
    return Diagnostic(line, code, _WARNING, message)


def info(line: int, code: str, message: str) -> Diagnostic:
    return Diagnostic(line, code, _INFO, message)


def has_errors(diagnostics: list[Diagnostic]) -> bool:
    return any(d.severity is Severity.ERROR for d in diagnostics)


# Every code the library emits, with what it means. Tests check that nothing outside
# this table is ever emitted, so the table stays the documentation.
CODES: Final[dict[str, str]] = {
    # envelope
    "missing-think-open": "the CoT ends with </think> but never opened with <think> (some chat templates put <think> in the prompt)",
    "missing-think": "the output has a CoT but no <think>…</think> envelope around it",
    "unclosed-think": "<think> was never closed; the output stops inside the CoT",
    "think-closed-by-story": "<think> was never closed but the story starts with <gdi>; split there",
    "text-before-think": "text before <think> was ignored",
    "extra-think": "a second <think> or </think> tag was ignored",
    "no-cot": "the output has no chain-of-thought",
    "no-story": "the output has no story after the chain-of-thought",
    # headings and sections
    "heading-style": "a heading departs from the published style (level, colon, bold) and was accepted",
    "image-number-gap": "image sections are not numbered 1, 2, 3, … without gaps",
    "image-number-order": "an image section number is out of order",
    "image-number-duplicate": "an image section number appears twice; its rows were merged",
    "content-before-image": "table content before the first image section",
    "missing-table-heading": "a table without its ### heading; its kind was inferred from its header row",
    "missing-table": "an image section lacks one of its three tables",
    "free-text": "free text inside the CoT was ignored",
    "no-narrative": "the CoT has no Narrative Structure section",
    # tables
    "no-header-row": "a table starts without a header row; the published column order was assumed",
    "unknown-column": "a column name is not one of the table's published columns; it was ignored",
    "missing-column": "a published column is absent from the header row",
    "duplicate-column": "a header row names a column twice; its last column was read (as the original did)",
    "column-order": "columns are not in the published order (read by name)",
    "header-case": "a column name differs from the published one in case or spacing (read by name)",
    "no-separator": "a table header is not followed by a --- separator row",
    "missing-outer-pipes": "a table row lacks its leading or trailing pipe",
    "missing-cells": "a row has fewer cells than the header; the missing cells are empty",
    "extra-cells": "a row has more cells than the header; the extra cells were ignored",
    "empty-row": "a table row with no content was ignored",
    "blank-line-in-table": "a blank line inside a table was skipped",
    "unknown-setting-element": "a Setting Element is none of the nine published values; kept as written",
    "fuzzy-setting-element": "a Setting Element is not a published value but contains one; recognised as that value",
    "unknown-narrative-phase": "a Narrative Phase is none of the five published values; kept as written",
    "fuzzy-narrative-phase": "a Narrative Phase is not a published value but contains one; recognised as that value",
    "narrative-images-empty": "a Narrative Structure row names no image number",
    "bad-id": "an entity id does not have the form char#, obj#, bg# or lm#",
    "id-table-mismatch": "an id sits in the wrong table (a char# among objects or the reverse)",
    "duplicate-id": "the same id appears twice in one image",
    # boxes
    "box-missing": "an entity has no bounding box",
    "box-unparseable": "a bounding box cell is not four numbers",
    "box-decimal": "a bounding box had decimals; rounded to whole pixels",
    "box-brackets": "a bounding box was wrapped in brackets or parentheses",
    "box-separators": "a bounding box used separators other than commas",
    "box-normalized": "a bounding box looks normalised to [0,1] instead of pixels",
    "box-inverted": "a bounding box has x2 <= x1 or y2 <= y1",
    "box-negative": "a bounding box has a negative coordinate",
    "box-out-of-image": "a bounding box reaches beyond the image (more than the 10% tolerance)",
    "box-beyond-edge": "a bounding box reaches past the image edge, within the 10% tolerance",
    # story
    "unclosed-segment": "a <gdi> segment was not closed with </gdi>",
    "stray-closer": "a closing tag with no open tag was ignored",
    "mismatched-closer": "a closing tag does not match the open tag",
    "nested-tag": "a grounding tag opens inside another one",
    "unclosed-span": "a grounding tag was not closed",
    "unknown-tag": "a tag that is none of gdi, gdo, gda, gdl was kept as text",
    "text-outside-segment": "story text outside any <gdi> segment",
    "no-segments": "the story has no <gdi imageN> segment, so none of its text is tied to an image",
    "malformed-tag": "a '<' and a tag name (<gdo, </gdi, …) that never reach their '>' (a '<' or a line end comes first, or the text ends; an opening <gdo|gda|gdl may run over up to three line ends); kept as text",
    "segment-attribute": "a <gdi> attribute is not written as imageN; it was read anyway",
    "segment-without-image": "a <gdi> tag names no image number",
    "segment-number-order": "story segments are not numbered 1, 2, 3, … in order",
    "segment-number-duplicate": "two story segments name the same image",
    "span-without-ids": "a grounding tag names no entity id",
    "span-attribute": "a grounding tag carries attribute text that is not an id (older GroundCap syntax); ignored",
    "id-separators": "a grounding tag separates its ids with commas instead of spaces; read as separate ids",
    "overlong-tag": "a '<' starts something too long to be a tag; kept as text",
    "empty-span": "a grounding tag encloses no text",
    # validation
    "image-count": "the number of CoT image sections differs from the number of images",
    "segment-count": "the number of story segments differs from the number of images",
    "missing-phase": "a narrative phase is missing from the Narrative Structure",
    "unknown-story-id": "the story uses an id that the CoT does not define",
    "id-not-in-image": "a story segment uses an id that the CoT does not list for that image",
    "empty-table": "a table has no rows",
    "input-decode": "the input is not valid UTF-8; undecodable bytes were replaced",
}
