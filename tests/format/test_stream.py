"""The envelope and the streaming parser."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from storyreasoning.format import (
    ImageSectionStarted,
    NarrativeRowCompleted,
    SegmentStarted,
    SpanClosed,
    StreamParser,
    TableRowCompleted,
    TextAppended,
    ThinkClosed,
    ThinkOpened,
    parse_output,
    render_output,
    split_output,
)

EXAMPLE = (Path(__file__).parents[2] / "examples" / "outputs" / "lighthouse.txt").read_text()
COT, STORY = EXAMPLE.split("\n</think>\n")
COT = COT.removeprefix("<think>\n")


def codes(telling):
    return [d.code for d in telling.diagnostics]


def test_published_output():
    telling = parse_output(EXAMPLE)
    assert telling.cot_text == COT and telling.story_text == STORY.strip()
    assert telling.diagnostics == []
    assert render_output(telling.cot, telling.story) == EXAMPLE.strip()


@pytest.mark.parametrize(
    ("text", "cot", "story", "code"),
    [
        ("<think>\nA\n</think>\nB", "A", "B", None),
        ("<think>A</think>B", "A", "B", None),
        ("A\n</think>\nB", "A", "B", "missing-think-open"),
        ("<think>\nA", "A", None, "unclosed-think"),
        (
            "<think>\n## Image 1\n<gdi image1>x</gdi>",
            "## Image 1",
            "<gdi image1>x</gdi>",
            "think-closed-by-story",
        ),
        (
            "## Image 1\n| a |\n<gdi image1>x</gdi>",
            "## Image 1\n| a |",
            "<gdi image1>x</gdi>",
            "missing-think",
        ),
        ("## Image 1\n| a |", "## Image 1\n| a |", None, "missing-think"),
        ("<gdi image1>x</gdi>", None, "<gdi image1>x</gdi>", None),
        ("Just prose.", None, "Just prose.", None),
        ("Sure! Here it is.\n<think>\nA\n</think>\nB", "A", "B", "text-before-think"),
        ("<think>\nA\n<think>\nB\n</think>\nC", "A\n<think>\nB", "C", "extra-think"),
        ("<think></think>", None, None, None),
        ("", None, None, None),
    ],
)
def test_envelope(text, cot, story, code):
    telling = parse_output(text)
    assert (telling.cot_text, telling.story_text) == (cot, story)
    assert split_output(text) == (cot, story)
    if code:
        assert code in codes(telling)


def test_markers_split_across_chunks():
    text = "<think>\n## Image 1\n</think>\n<gdi image1>\n<gdo char1>Ana</gdo>\n</gdi>"
    whole = parse_output(text)
    for cut in range(1, len(text)):
        parser = StreamParser()
        parser.feed(text[:cut])
        parser.feed(text[cut:])
        telling = parser.result()
        assert (telling.cot_text, telling.story_text) == (whole.cot_text, whole.story_text), cut
        assert telling.story == whole.story and telling.cot == whole.cot


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 100, 10_000])
def test_streamed_parse_equals_batch_parse(size):
    whole = parse_output(EXAMPLE)
    parser = StreamParser()
    for i in range(0, len(EXAMPLE), size):
        parser.feed(EXAMPLE[i : i + size])
    telling = parser.result()
    assert telling.cot == whole.cot and telling.story == whole.story
    assert telling.diagnostics == whole.diagnostics
    assert (telling.cot_text, telling.story_text, telling.raw) == (whole.cot_text, whole.story_text, EXAMPLE)


def test_events_arrive_as_soon_as_each_piece_is_complete():
    parser = StreamParser()
    assert parser.feed("<thi") == []
    assert [e.name for e in parser.feed("nk>\n## Image 1\n")] == ["think_opened", "image_section_started"]
    header = "| Character ID | Name | Description | Emotions | Actions | Narrative Function | Bounding Box |\n|---|---|---|---|---|---|---|\n"
    assert parser.feed(header) == []
    row = "| char1 | Ana | A girl | Calm | Walks | Lead | 1,2,30,40 |"
    assert parser.feed(row) == []  # the row is not complete until its line ends
    [event] = parser.feed("\n")
    assert (
        isinstance(event, TableRowCompleted)
        and event.row.name == "Ana"
        and event.image == 1
        and event.table == "characters"
    )
    events = parser.feed(
        "## Narrative Structure\n| Narrative Phase | Description | Key Events | Images |\n|-|-|-|-|\n| Introduction | a | b | 1 |\n"
    )
    assert isinstance(events[-1], NarrativeRowCompleted) and events[-1].row.images == [1]
    assert any(isinstance(e, ThinkClosed) for e in parser.feed("</think>\n"))
    events = parser.feed("<gdi image1>\n<gdo char1>An")
    assert [type(e) for e in events[:1]] == [SegmentStarted]
    assert isinstance(events[-1], TextAppended) and events[-1].text == "An"
    events = parser.feed("a</gdo> left.")
    closed = [e for e in events if isinstance(e, SpanClosed)]
    assert closed[0].span.text == "Ana" and closed[0].span.ids == ("char1",)
    events = parser.close()
    assert [e.name for e in events] == ["segment_closed"]
    assert parser.result().story.segments[0].closed is False


def test_event_dicts_are_json():
    parser = StreamParser()
    events = parser.feed(EXAMPLE) + parser.close()
    dicts = [e.to_dict() for e in events]
    json.dumps(dicts)
    kinds = {d["event"] for d in dicts}
    assert {
        "think_opened",
        "image_section_started",
        "table_row_completed",
        "narrative_row_completed",
        "think_closed",
    } <= kinds
    assert {"segment_started", "span_opened", "text_appended", "span_closed", "segment_closed"} <= kinds
    row = next(d for d in dicts if d["event"] == "table_row_completed")
    assert row["row"]["box"] == [102, 88, 214, 402]
    assert isinstance(events[0], ThinkOpened) and isinstance(events[1], ImageSectionStarted)


def test_feed_after_close_is_an_error():
    parser = StreamParser()
    parser.close()
    for chunk in ("x", "", "a\n", "<gdi", ">"):  # a chunk that completes nothing too
        with pytest.raises(RuntimeError):
            parser.feed(chunk)
    assert parser.close() == []


def test_each_piece_is_reported_by_the_chunk_that_completes_it():
    """A chunk that completes nothing is only kept; the chunk that ends a row or a tag
    returns its event at once, in 4-character chunks as a token stream sends them."""
    whole = parse_output(EXAMPLE).cot
    row_lines = [
        row.line for image in whole.images for row in (*image.characters, *image.objects, *image.settings)
    ] + [row.line for row in whole.narrative]
    parser = StreamParser()
    rows = spans = segments = 0
    text = ""
    for i in range(0, len(EXAMPLE), 4):
        chunk = EXAMPLE[i : i + 4]
        text += chunk
        for event in parser.feed(chunk):
            rows += isinstance(event, TableRowCompleted | NarrativeRowCompleted)
            spans += isinstance(event, SpanClosed)
            segments += isinstance(event, SegmentStarted)
        ended = text.count("\n")  # a row is complete when its line has ended
        assert rows == sum(1 for line in row_lines if line <= ended), (i, chunk)
        assert spans == sum(text.count(f"</{kind}>") for kind in ("gdo", "gda", "gdl")), (i, chunk)
        assert segments == len(re.findall(r"<gdi image\d+>", text)), (i, chunk)
    assert rows == len(row_lines) > 20 and spans > 15 and segments == 3
    text_events = [e.text for e in parser.close() if isinstance(e, TextAppended)]
    assert parser.result().story == parse_output(EXAMPLE).story
    assert "".join(text_events).strip() == ""  # the last text was read with the last '>'


def test_line_numbers_are_those_of_the_whole_output():
    text = "<think>\n## Image 1\n\n### Characters\n| Character ID | Name | Bounding Box |\n|--|--|--|\n| char1 | Ana | 1,2 |\n</think>\n<gdi image1>\n<gdo char1>x</gda>\n</gdi>"
    telling = parse_output(text)
    lines = {d.code: d.line for d in telling.diagnostics}
    assert lines["box-unparseable"] == 7
    assert lines["mismatched-closer"] == 10


def test_regressions_found_by_fuzzing():
    # a carriage return alone in one chunk, text in the next: the same parse as in one piece
    text = "000</think>\r0"
    parser = StreamParser()
    parser.feed("000</think>\r")
    parser.feed("0")
    parser.close()
    assert parser.result().story == parse_output(text).story
    # non-ASCII digits in a segment's attributes do not crash ("²".isdigit() is True)
    telling = parse_output("</think><gdi im²age1>x</gdi><gdi image1²>y</gdi>")
    assert [s.image for s in telling.story.segments] == [1, 1]


def test_a_missing_think_is_said_when_the_cot_is_recognised_by_its_tables():
    """CoT lines then </think>: repaired, and reported (every repair is), streamed or not."""
    text = "Here you go.\n## Image 1\n| a |\n</think>\n<gdi image1>x</gdi>"
    whole = parse_output(text)
    assert (whole.cot_text, whole.story_text) == ("## Image 1\n| a |", "<gdi image1>x</gdi>")
    found = [d for d in whole.diagnostics if d.code == "missing-think-open"]
    assert [d.line for d in found] == [2]
    for size in (1, 4, 9):
        parser = StreamParser()
        for i in range(0, len(text), size):
            parser.feed(text[i : i + size])
        assert parser.result().diagnostics == whole.diagnostics
