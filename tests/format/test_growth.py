"""Hostile inputs cost time in proportion to their size.

Each shape below once made the parser quadratic, or could have: nested spans closed by
mismatched closers (each closer scanned the whole stack of open spans), alternating
``<gda><gdo>`` openers with one kind of closer (each closer deleted from the middle of
that stack), whitespace streamed before the first ``<gdi>`` (held by string
concatenation), thousands of image headings (each looked its number up in a list),
``<think>`` repeated inside the CoT (each one cut the rest of the text again). The
measure is a ratio, the time for an input 4 times longer over the time for the input
(about 4 when the cost is linear, 16 when quadratic), so it holds on a loaded machine;
absolute seconds per MB are in ``bench/parse.py``.

``test_fuzz.py`` counts the Python lines a parse executes, which misses work done in C
(a list deletion, a string concatenation); this times it.
"""

from __future__ import annotations

import gc
import time

import pytest

from storyreasoning.format import StreamParser, parse_output

SIZE = 32 * 1024  # characters; the larger input is 4 times this
BOUND = 8  # between linear (4) and quadratic (16)
# a quadratic cost in C (copying a string, moving a list's tail) shows only on larger inputs
SIZES = {
    "whitespace before the first <gdi>, in 7-character chunks": 256 * 1024,
    "<gda><gdo> openers, one kind of closer": 96 * 1024,
}


def _halves(head: str, first: str, second: str, size: int) -> str:
    half = (size - len(head)) // 2
    return head + first * (half // len(first)) + second * (half // len(second))


def _repeat(head: str, unit: str, size: int, tail: str = "") -> str:
    return head + unit * ((size - len(head) - len(tail)) // len(unit)) + tail


def _numbered(head: str, line: str, size: int) -> str:
    """``head``, then ``line`` formatted with 1, 2, 3, … until ``size`` characters."""
    lines, total, i = [head], len(head), 0
    while total < size:
        i += 1
        lines.append(line.format(i))
        total += len(lines[-1])
    return "".join(lines)


# name -> (text of about ``size`` characters, chunk size to stream it in, or None: one batch parse)
HOSTILE = {
    "nested spans closed by mismatched closers": lambda n: (
        _halves("</think>\n<gdi image1>", "<gdo char1>x", "</gda>", n),
        None,
    ),
    "<gda><gdo> openers, one kind of closer": lambda n: (
        _halves("</think>\n<gdi image1>", "<gda char1><gdo char1>", "</gda>", n),
        None,
    ),
    "whitespace before the first <gdi>, in 7-character chunks": lambda n: (
        _repeat("</think>", " ", n, "<gdi image1>x</gdi>"),
        7,
    ),
    "image headings": lambda n: (_numbered("<think>\n", "## Image {}\n", n), None),
    "<think> inside the CoT": lambda n: (_repeat("<think>\n## Image 1\n", "<think> ", n), None),
    "unclosed spans": lambda n: (_repeat("</think>\n<gdi image1>", "<gdo char1>x", n), None),
    "overlapping spans": lambda n: (
        _repeat("</think>\n<gdi image1>", "<gdo char1>a<gda char1>b</gdo>c</gda>", n),
        None,
    ),
    "header rows, each different": lambda n: (
        _numbered(
            "<think>\n## Image 1\n",
            "| Character ID | Name | Description | Emotions | Actions | Column {} |\n",
            n,
        ),
        None,
    ),
}


def _seconds(text: str, chunk: int | None, repeats: int = 2) -> float:
    def run() -> None:
        if chunk is None:
            parse_output(text)
            return
        parser = StreamParser()
        for i in range(0, len(text), chunk):
            parser.feed(text[i : i + chunk])
        parser.result()

    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - start)
        finally:
            gc.enable()
    return best


def growth(name: str) -> float:
    """Time for 4 times the input over time for the input."""
    size = SIZES.get(name, SIZE)
    (small, chunk), (large, _) = HOSTILE[name](size), HOSTILE[name](4 * size)
    assert 3.9 < len(large) / len(small) < 4.1
    return _seconds(large, chunk) / _seconds(small, chunk)


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_input_costs_time_in_proportion_to_its_size(name: str) -> None:
    # a busy moment on a shared machine can slow one measurement: measured up to three times
    ratios = []
    for _ in range(3):
        ratios.append(growth(name))
        if ratios[-1] < BOUND:
            break
    assert min(ratios) < BOUND, (
        f"{name}: 4x the input took {min(ratios):.1f}x the time (linear: 4, quadratic: 16)"
    )


def test_the_shapes_are_what_they_say() -> None:
    """Each shape parses to the findings it is meant to provoke (a shape that stopped doing so would time nothing)."""
    expected = {
        "nested spans closed by mismatched closers": {"nested-tag", "mismatched-closer"},
        "<gda><gdo> openers, one kind of closer": {"nested-tag", "mismatched-closer"},
        "image headings": {"missing-table"},
        "<think> inside the CoT": {"extra-think"},
        "unclosed spans": {"nested-tag", "unclosed-span"},
        "overlapping spans": {"mismatched-closer"},
        "header rows, each different": {"unknown-column", "missing-table-heading"},
    }
    for name, codes in expected.items():
        text, _ = HOSTILE[name](2000)
        found = {d.code for d in parse_output(text).diagnostics}
        assert codes <= found, (name, found)
    text, chunk = HOSTILE["whitespace before the first <gdi>, in 7-character chunks"](2000)
    parser = StreamParser()
    for i in range(0, len(text), chunk):
        parser.feed(text[i : i + chunk])
    assert [s.image for s in parser.result().story.segments] == [1]
