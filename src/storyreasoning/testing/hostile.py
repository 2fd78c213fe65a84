"""Shapes of malformed model output that made the parser quadratic, or could have.

Each shape is a function of a size in characters returning ``(text, chunk)``: a text of
about that size (within one repeated unit) and the chunk size to stream it in, or None
for one batch parse. ``tests/format/test_growth.py`` times each shape at a size and at
4 times that size (linear: about 4x the time, quadratic: 16x) and
``bench/parse.py`` reports seconds per MB; both use these generators, so they time the
same inputs.

Pure string building, no parser import: cheap to import and deterministic.
"""

from __future__ import annotations

from collections.abc import Callable

# a Characters table opened in Image 1, ready for data rows
_HEADER = "| Character ID | Name | Description | Emotions | Actions | Narrative Function | Bounding Box |\n"
CHARACTER_TABLE = "<think>\n## Image 1\n\n### Characters\n" + _HEADER + "|---|---|---|---|---|---|---|\n"
STORY_HEAD = "</think>\n<gdi image1>"


def repeat(head: str, unit: str, size: int, tail: str = "") -> str:
    """``head``, ``unit`` as many times as fits in ``size`` characters (at least once), ``tail``."""
    return head + unit * max(1, (size - len(head) - len(tail)) // len(unit)) + tail


def halves(head: str, first: str, second: str, size: int) -> str:
    """``head``, then ``first`` repeated over half the size and ``second`` over the other half."""
    half = max(1, (size - len(head)) // 2)
    return head + first * max(1, half // len(first)) + second * max(1, half // len(second))


def numbered(head: str, line: str, size: int) -> str:
    """``head``, then ``line`` formatted with 1, 2, 3, … until ``size`` characters (at least one line)."""
    lines, total, i = [head], len(head), 0
    while total < size or i == 0:
        i += 1
        lines.append(line.format(i))
        total += len(lines[-1])
    return "".join(lines)


Shape = Callable[[int], tuple[str, int | None]]

# name -> size -> (text, chunk size to stream it in, or None: one batch parse)
HOSTILE: dict[str, Shape] = {
    "nested spans closed by mismatched closers": lambda n: (
        halves(STORY_HEAD, "<gdo char1>x", "</gda>", n),
        None,
    ),
    "<gda><gdo> openers, one kind of closer": lambda n: (
        halves(STORY_HEAD, "<gda char1><gdo char1>", "</gda>", n),
        None,
    ),
    "whitespace before the first <gdi>, in 7-character chunks": lambda n: (
        repeat("</think>", " ", n, "<gdi image1>x</gdi>"),
        7,
    ),
    "image headings": lambda n: (numbered("<think>\n", "## Image {}\n", n), None),
    "<think> inside the CoT": lambda n: (repeat("<think>\n## Image 1\n", "<think> ", n), None),
    "unclosed spans": lambda n: (repeat(STORY_HEAD, "<gdo char1>x", n), None),
    "overlapping spans": lambda n: (
        repeat(STORY_HEAD, "<gdo char1>a<gda char1>b</gdo>c</gda>", n),
        None,
    ),
    "tag fragments": lambda n: (repeat(STORY_HEAD, "<gdo <gda </gdl char1 ", n), None),
    # span openers whose ids run over line ends, never closed: each one read over its lines
    "openers over line ends, in 7-character chunks": lambda n: (
        repeat(STORY_HEAD, "<gdo char1\nchar2\n\n", n),
        7,
    ),
    "segments": lambda n: (numbered("</think>\n", "<gdi image{}>x</gdi>\n", n), None),
    "table rows, one image": lambda n: (
        numbered(CHARACTER_TABLE, "| char{} | A | b | c | d | e | 1,2,30,40 |\n", n),
        None,
    ),
    "header rows, each different": lambda n: (
        numbered(
            "<think>\n## Image 1\n",
            "| Character ID | Name | Description | Emotions | Actions | Column {} |\n",
            n,
        ),
        None,
    ),
    "one line of pipes": lambda n: (repeat("<think>\n## Image 1\n### Characters\n", "|", n, "\n"), None),
}

# the findings each shape is meant to provoke (a shape that stopped provoking them would time nothing)
FINDINGS: dict[str, set[str]] = {
    "nested spans closed by mismatched closers": {"nested-tag", "mismatched-closer"},
    "<gda><gdo> openers, one kind of closer": {"nested-tag", "mismatched-closer"},
    "image headings": {"missing-table"},
    "<think> inside the CoT": {"extra-think"},
    "unclosed spans": {"nested-tag", "unclosed-span"},
    "overlapping spans": {"mismatched-closer"},
    "tag fragments": {"malformed-tag"},
    "openers over line ends, in 7-character chunks": {"malformed-tag"},
    "header rows, each different": {"unknown-column", "missing-table-heading"},
    "one line of pipes": {"empty-row"},
}

__all__ = ["CHARACTER_TABLE", "FINDINGS", "HOSTILE", "STORY_HEAD", "Shape", "halves", "numbered", "repeat"]
