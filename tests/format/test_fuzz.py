"""Fuzzing the parsers: random and mutated outputs never raise, and cost stays linear.

Three properties, over thousands of generated inputs:

* no exception from ``parse_output``, ``parse_cot``, ``parse_story``, ``validate`` or
  ``to_dict`` whatever the text, and every diagnostic code is one of ``CODES``;
* the streaming parse equals the batch parse however the text is cut into chunks;
* the work grows linearly: the number of Python lines executed (counted with
  ``sys.settrace``, so the measure is deterministic and not a timing) for an input
  repeated 8 times is at most ~8 times that of the input, for adversarial shapes
  (unclosed tags, pipe storms, deep nesting, endless lookalike markers).

Wall-clock growth is timed in ``test_growth.py`` (as a ratio) and ``bench/parse.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storyreasoning.format import CODES, StreamParser, parse_cot, parse_output, parse_story

EXAMPLES = Path(__file__).parents[2] / "examples" / "outputs"
SEEDS = [(EXAMPLES / name).read_text(encoding="utf-8") for name in ("lighthouse.txt", "malformed.txt")]

# Pieces of the format, the raw material of the mutations and of the random outputs.
MARKUP = [
    "<think>",
    "</think>",
    "<think",
    "</thi",
    "\n",
    "\n\n",
    "|",
    " | ",
    "|---|",
    "## Image 1",
    "## Image 2:",
    "**Image 3**",
    "### Characters",
    "### Objects",
    "### Setting",
    "## Narrative Structure",
    "| char1 | Ines | a | b | c | d | 1,2,3,4 |",
    "| obj1 | x | y | z | w | [1.5, 2, 30, 40] |",
    "| Introduction | a | b | 1, 2 |",
    "<gdi image1>",
    "<gdi image2>",
    "</gdi>",
    "<gdi",
    "<gdo char1>",
    "<gdo char1 char2>",
    "</gdo>",
    "<gda char1>",
    "</gda>",
    "<gdl lm1>",
    "</gdl>",
    "<gdx foo>",
    "</gdx>",
    "<",
    ">",
    "</",
    "<gd",
    "char",
    "obj",
    "lm1",
    "bg2",
    ",",
    "0",
    "9999",
    "-5",
    "1e9",
    "nan",
    "é",
    "\u200b",
    "\t",
    "\r\n",
    "```",
    "</gdi image1>",
    "<gdo ",
    "<gdo char1 They",
    "<gdo char1\nchar2>",
    "<gda\n",
    "<gdl lm1,\n",
    "## Image 10000",
]

mutation = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(0, 400)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.sampled_from(MARKUP)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.text(max_size=20)),
    st.tuples(st.just("duplicate"), st.integers(0, 10**6), st.integers(0, 300)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
)


def mutate(text: str, mutations: list[tuple[str, int, object]]) -> str:
    for kind, at, arg in mutations:
        at = at % (len(text) + 1)
        if kind == "delete":
            text = text[:at] + text[at + int(arg) :]
        elif kind == "insert":
            text = text[:at] + str(arg) + text[at:]
        elif kind == "duplicate":
            text = text[:at] + text[at : at + int(arg)] + text[at:]
        else:
            text = text[:at]
    return text


mutated_outputs = st.builds(mutate, st.sampled_from(SEEDS), st.lists(mutation, max_size=12))
random_outputs = st.lists(st.one_of(st.sampled_from(MARKUP), st.text(max_size=12)), max_size=80).map("".join)
any_output = st.one_of(mutated_outputs, random_outputs, st.text(max_size=300))


def assert_sane(telling, n_images: int | None = None) -> dict:
    for d in telling.diagnostics:
        assert d.code in CODES, d
        assert d.line >= 0
    data = telling.to_dict(n_images=n_images)
    json.dumps(data)  # serialisable as is
    for d in data["diagnostics"]:
        assert d["code"] in CODES, d
    assert isinstance(data["well_structured"], bool)
    return data


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_output, st.one_of(st.none(), st.integers(0, 6)))
def test_parse_output_never_raises(text: str, n_images: int | None) -> None:
    telling = parse_output(text)
    assert telling.raw == text
    assert_sane(telling, n_images)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_output)
def test_cot_and_story_parsers_never_raise(text: str) -> None:
    cot = parse_cot(text)
    story = parse_story(text)
    json.dumps(cot.to_dict())
    json.dumps(story.to_dict())
    for d in [*cot.diagnostics, *story.diagnostics]:
        assert d.code in CODES, d


@st.composite
def chunked(draw):
    text = draw(any_output)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=40)))
    pieces, last = [], 0
    for cut in cuts:
        pieces.append(text[last:cut])
        last = cut
    pieces.append(text[last:])
    return text, pieces


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunked())
def test_stream_equals_batch_under_any_chunking(case) -> None:
    text, pieces = case
    parser = StreamParser()
    for piece in pieces:
        parser.feed(piece)
    parser.close()
    streamed = parser.result()
    whole = parse_output(text)
    assert streamed.raw == text
    assert (streamed.cot, streamed.story) == (whole.cot, whole.story)
    assert streamed.diagnostics == whole.diagnostics
    assert (streamed.cot_text, streamed.story_text) == (whole.cot_text, whole.story_text)
    assert span_lines(streamed) == span_lines(whole)  # not compared by ==


def span_lines(telling) -> list[int]:
    return [span.line for _, span in telling.story.spans()] if telling.story is not None else []


def test_one_character_chunks_equal_batch() -> None:
    for text in SEEDS:
        parser = StreamParser()
        for ch in text:
            parser.feed(ch)
        parser.close()
        assert parser.result().to_dict(n_images=3) == parse_output(text).to_dict(n_images=3)
        assert span_lines(parser.result()) == span_lines(parse_output(text))


# -- linear work ---------------------------------------------------------------------------------

ADVERSARIAL = {
    "unclosed gdo": "<gdi image1>" + "<gdo char1>word " * 1,
    "lone angle brackets": "<think>\n" + "< <g <gd <gdo " * 1,
    "pipe storm": "<think>\n## Image 1\n### Characters\n" + "|" * 200 + "\n",
    "nested tags": "<gdi image1>" + "<gdo char1><gda char1><gdl lm1>x",
    "closers only": "</gdo></gda></gdl></gdi></think>",
    "think lookalikes": "<thin <thi </thin </th <think",
    "long table row": "<think>\n## Image 1\n### Objects\n| obj1 | " + "a, " * 100 + " |\n",
    "headings": "<think>\n## Image 1\n## Image 1:\n**Image 2**\n### Setting\n",
    "boxes": "<think>\n## Image 1\n### Characters\n| char1 | a | b | c | d | e | [1.5, 2.5, -3, 1e9] |\n",
    "no newline": "x" * 300,
    "story segments": "</think>\n<gdi image1>\n<gdo char1 char2 char3>They</gdo> ran.\n</gdi>\n",
    "tag fragments": "<gdi image1>" + "<gdo <gdo </gda char1 <gdl\n",
    "tag fragments, one line": "<gdo <gda char1 </gdi ",
    "openers over line ends": "<gdi image1>" + "<gdo char1\n\nchar2\n\n" + "<gda\nchar1\n>x ",
}


def count_lines(fn) -> int:
    """Python lines executed by ``fn()`` (a deterministic measure of work)."""
    counter = [0]

    def local(frame, event, arg):
        if event == "line":
            counter[0] += 1
        return local

    def global_(frame, event, arg):
        return local

    sys.settrace(global_)
    try:
        fn()
    finally:
        sys.settrace(None)
    return counter[0]


def work(text: str) -> int:
    def run() -> None:
        parser = StreamParser()
        for i in range(0, len(text), 7):
            parser.feed(text[i : i + 7])
        parser.close()
        parser.result().to_dict(n_images=3)

    return count_lines(run)


def test_work_grows_linearly_on_adversarial_inputs() -> None:
    for name, unit in ADVERSARIAL.items():
        small, large = unit * 40, unit * 320  # 8 times longer
        ratio = work(large) / max(1, work(small))
        assert ratio < 10, f"{name}: 8x the input cost {ratio:.1f}x the work"


def test_work_grows_linearly_on_real_outputs() -> None:
    for seed in SEEDS:
        ratio = work(seed * 16) / work(seed * 2)
        assert ratio < 10, f"8x the input cost {ratio:.1f}x the work"
