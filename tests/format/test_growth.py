"""Hostile inputs cost time in proportion to their size.

Each shape of :mod:`storyreasoning.testing.hostile` once made the parser quadratic, or could
have: nested spans closed by
mismatched closers (each closer scanned the whole stack of open spans), alternating
``<gda><gdo>`` openers with one kind of closer (each closer deleted from the middle of
that stack), whitespace streamed before the first ``<gdi>`` (held by string
concatenation), thousands of image headings (each looked its number up in a list),
``<think>`` repeated inside the CoT (each one cut the rest of the text again). The
measure is a ratio, the time for an input 4 times longer over the time for the input
(about 4 when the cost is linear, 16 when quadratic), in this process's CPU time, so it
holds on a loaded machine (time the process waited for a core is not counted: in wall
time, a run four times longer is more often pre-empted, and under load the ratio read 8
where CPU time read 4); absolute seconds per MB are in ``bench/parse.py``.

``test_fuzz.py`` counts the Python lines a parse executes, which misses work done in C
(a list deletion, a string concatenation); this times it.
"""

from __future__ import annotations

import gc
import time

import pytest

from storyreasoning.format import StreamParser, parse_output
from storyreasoning.testing.hostile import FINDINGS, HOSTILE

SIZE = 32 * 1024  # characters; the larger input is 4 times this
BOUND = 8  # between linear (4) and quadratic (16)
# a quadratic cost in C (copying a string, moving a list's tail) shows only on larger inputs
SIZES = {
    "whitespace before the first <gdi>, in 7-character chunks": 256 * 1024,
    "<gda><gdo> openers, one kind of closer": 96 * 1024,
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
        # no collection is made first: in a test worker that has loaded models, gc.collect()
        # walks a million objects, about a second, four times a shape (a minute of the suite)
        gc.disable()
        try:
            start = time.process_time()
            run()
            best = min(best, time.process_time() - start)
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
    for name, codes in FINDINGS.items():
        text, _ = HOSTILE[name](2000)
        found = {d.code for d in parse_output(text).diagnostics}
        assert codes <= found, (name, found)
    text, chunk = HOSTILE["whitespace before the first <gdi>, in 7-character chunks"](2000)
    parser = StreamParser()
    for i in range(0, len(text), chunk):
        parser.feed(text[i : i + chunk])
    assert [s.image for s in parser.result().story.segments] == [1]


def test_each_shape_is_about_its_size() -> None:
    for name, make in HOSTILE.items():
        small, large = make(SIZE)[0], make(4 * SIZE)[0]
        assert 0.9 * SIZE < len(small) < 1.1 * SIZE, name
        assert 3.9 < len(large) / len(small) < 4.1, name


# span openers that run over line ends (read up to MAX_TAG_LINES of them), complete or never closed
OVER_LINES = {
    "openers over line ends, never closed": "<gdo char1\nchar2\n\n",
    "openers over line ends, closed": "<gdo char1\nchar2>x</gdo>\n",
    "openers over too many line ends": "<gdo char1\n\n\n\nchar2>x\n",
}


@pytest.mark.parametrize("unit", OVER_LINES.values(), ids=list(OVER_LINES))
def test_openers_over_line_ends_cost_time_in_proportion_to_their_size(unit: str) -> None:
    small = "<think>\n</think>\n<gdi image1>\n" + unit * (SIZE // len(unit))
    large = "<think>\n</think>\n<gdi image1>\n" + unit * (4 * SIZE // len(unit))
    ratios = []
    for _ in range(3):
        ratios.append(max(_seconds(large, c) / _seconds(small, c) for c in (None, 7)))
        if ratios[-1] < BOUND:
            break
    assert min(ratios) < BOUND, f"4x the input took {min(ratios):.1f}x the time (linear: 4, quadratic: 16)"
