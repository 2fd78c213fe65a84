"""Defects of the parser found by the audit of ``check`` and the format API, fixed: each first test
below was a strict expected failure until its fix; the tests after it hold the fix's edges."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from storyreasoning.format import (
    CODES,
    Box,
    Character,
    CoT,
    GroundedStory,
    ImageAnalysis,
    NarrativeRow,
    Segment,
    Severity,
    Span,
    StreamParser,
    parse_cot,
    parse_output,
    parse_story,
    render_cot,
    render_story,
)

from .original_rules import parse_cot_original, parse_story_original

EXAMPLE = Path(__file__).parents[2] / "examples" / "outputs" / "lighthouse.txt"

HEADER = "| Character ID | Name | Description | Emotions | Actions | Narrative Function | Bounding Box |\n"
SEPARATOR = "|---|---|---|---|---|---|---|\n"
ROW = "| char1 | Ann | d | e | a | n | 1,2,3,4 |\n"


def _spans(story) -> list:
    return [(span.kind, list(span.ids), span.text) for segment in story.segments for span in segment.spans]


def _streamed(text: str, size: int = 1):
    parser = StreamParser()
    for i in range(0, len(text), size):
        parser.feed(text[i : i + size])
    parser.close()
    return parser.result()


def _codes(found) -> list[tuple[str, int]]:
    return [(d.code, d.line) for d in found.diagnostics]


def test_a_tag_whose_ids_run_over_a_line_end_is_read_as_the_original_reads_it():
    text = "<gdi image1>\n<gdo char1\nchar2>They</gdo> ran\n</gdi>"
    theirs = [(kind, ids, inner) for _, _, spans in parse_story_original(text) for kind, ids, inner in spans]
    assert theirs == [("gdo", ["char1", "char2"], "They")]
    assert _spans(parse_story(text)) == theirs
    parser = StreamParser()
    for char in text:
        parser.feed(char)
    parser.close()
    assert _spans(parser.result().story) == theirs


def test_a_duplicated_column_is_read_as_the_original_reads_it_and_reported():
    text = (
        "## Image 1\n\n### Characters\n"
        "| Character ID | Character ID | Name | Description | Emotions | Actions | Narrative Function "
        "| Bounding Box | Bounding Box |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
        "| 1 | char1 | Ann | d | e | a | n | 1,2,3,4 | 5,6,70,80 |\n\n"
    )
    assert parse_cot_original(text)["images"][0]["characters"][0][0] == "char1"
    assert parse_cot_original(text)["images"][0]["characters"][0][-1] == "5,6,70,80"
    cot = parse_cot(text)
    character = cot.images[0].characters[0]
    assert (character.id, character.box) == ("char1", Box(5, 6, 70, 80))
    assert any(d.line == 4 for d in cot.diagnostics)  # the header line: the repair is reported


def test_comma_separated_ids_are_a_reported_repair():
    story = parse_story("<gdi image1>\n<gdo char1,char2>They</gdo> ran\n</gdi>")
    assert _spans(story) == [("gdo", ["char1", "char2"], "They")]
    assert [d.line for d in story.diagnostics] == [2]


def test_a_tab_in_an_image_heading_is_a_reported_repair():
    cot = parse_cot("##\tImage 1\n\n### Characters\n" + HEADER + SEPARATOR + ROW)
    assert [image.number for image in cot.images] == [1]
    assert "heading-style" in {d.code for d in cot.diagnostics}  # as '## Image  1' (two spaces) is


def test_render_cot_of_a_cell_with_a_pipe_or_line_end_reads_back_its_box():
    character = Character("char1", name="Ann | Bo", description="tall\nand thin", box=Box(1, 2, 3, 4))
    cot = CoT(images=[ImageAnalysis(1, characters=[character])])
    read = parse_cot(render_cot(cot)).images[0].characters[0]
    assert (read.id, read.box) == ("char1", Box(1, 2, 3, 4))


def test_an_undefined_id_is_reported_on_the_line_that_uses_it():
    text = EXAMPLE.read_text(encoding="utf-8").replace("<gdo char2>Tomas</gdo>", "<gdo char9>Tomas</gdo>")
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "char9" in row)
    assert line == 79  # the second segment's text; its <gdi image2> is line 78
    reasons = parse_output(text).validate(n_images=3).reasons
    assert [(d.code, d.line) for d in reasons] == [("unknown-story-id", line)]


# -- F1: an opening span tag over line ends ------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_a_span_opener_over_line_ends_keeps_the_lines_after_it_and_streams_as_batch(size):
    text = "<gdi image1>\n<gdo\nchar1\nchar2\n>They</gdo> ran\n<gdo char9,char1>x</gdo> y\n</gdi>"
    story = parse_story(text)
    assert _spans(story) == [("gdo", ["char1", "char2"], "They"), ("gdo", ["char9", "char1"], "x")]
    assert [span.line for segment in story.segments for span in segment.spans] == [2, 6]
    assert _codes(story) == [("id-separators", 6)]  # on its own line: the opener's line ends were counted
    streamed = _streamed(text, size)
    assert streamed.story == parse_output(text).story
    assert streamed.diagnostics == parse_output(text).diagnostics
    assert [s.line for g in streamed.story.segments for s in g.spans] == [2, 6]


def test_an_opener_over_more_than_three_line_ends_or_another_tag_over_one_is_malformed_and_text():
    for text in (
        "<gdi image1>\n<gdo char1\n\n\n\nchar2>They</gdo>\n</gdi>",  # four line ends
        "<gdi image1>\n<gdx char1\nchar2>They</gdx>\n</gdi>",  # not a story tag
        "<gdi image1>\n<gdo char1\nchar2 <gda char1>They</gda>\n</gdi>",  # a '<' first
        "<gdi\nimage1>\n<gdo char1>They</gdo>\n</gdi>",  # a segment's tag ends on its line
        "<gdi image1>\n<gdochar1\n>They</gdo>\n</gdi>",
    ):
        batch = parse_output(text)
        assert "<g" in "".join(seg.plain for seg in batch.story.segments), text  # kept as text
        for size in (1, 4):
            streamed = _streamed(text, size)
            assert (streamed.story, streamed.diagnostics) == (batch.story, batch.diagnostics), text
    assert ("malformed-tag", 2) in _codes(parse_story("<gdi image1>\n<gdo char1\n\n\n\nchar2>They</gdo>"))


def test_an_opener_cut_off_over_a_line_end_is_held_at_most_a_tag_long():
    parser = StreamParser()
    parser.feed("<gdi image1>\n<gdo char1\n")
    for _ in range(100):
        parser.feed("a" * 50)  # no '>' ever comes: the tag ends as text after MAX_TAG characters
    parser.close()
    story = parser.result().story
    assert story.segments[0].plain.startswith("<gdo char1\naaa")
    assert "overlong-tag" in {d.code for d in story.diagnostics}


# -- F2, F3, F4: repairs are reported ------------------------------------------------------------


def test_the_duplicated_column_finding_is_a_documented_warning_on_the_header_line():
    text = "## Image 1\n\n### Characters\n" + HEADER.replace("| Name |", "| Name | Name |")
    text += SEPARATOR + "| char1 | Ann | Bo | d | e | a | n | 1,2,3,4 |\n"
    cot = parse_cot(text)
    assert cot.images[0].characters[0].name == "Bo"
    found = [d for d in cot.diagnostics if d.code == "duplicate-column"]
    assert [(d.line, d.severity) for d in found] == [(4, Severity.WARNING)]
    assert "duplicate-column" in CODES
    assert "duplicate-column" not in {
        d.code for d in parse_cot(text.replace("| Name | Name |", "| Name |")).diagnostics
    }


def test_comma_separated_ids_are_a_documented_warning_and_spaced_ids_are_not():
    story = parse_story("<gdi image1>\n<gdo char1, char2>They</gdo> ran\n</gdi>")
    assert _spans(story) == [("gdo", ["char1", "char2"], "They")]
    assert [(d.code, d.severity) for d in story.diagnostics] == [("id-separators", Severity.WARNING)]
    assert "id-separators" in CODES
    assert parse_story("<gdi image1>\n<gdo char1 char2>They</gdo>\n</gdi>").diagnostics == []


@pytest.mark.parametrize("heading", ["##\tImage 1", "##  Image 1", "##Image 1", "## \tImage 1"])
def test_an_image_heading_spaced_otherwise_than_by_one_space_is_reported(heading):
    cot = parse_cot(heading + "\n\n### Characters\n" + HEADER + SEPARATOR + ROW)
    assert [image.number for image in cot.images] == [1]
    assert [d.line for d in cot.diagnostics if d.code == "heading-style"] == [1]
    assert "heading-style" not in {
        d.code for d in parse_cot("## Image 1\n\n### Characters\n" + HEADER).diagnostics
    }


# -- F5: rendering reads back --------------------------------------------------------------------


def test_render_cot_writes_pipes_as_slashes_and_line_ends_as_spaces_in_every_table():
    character = Character("char1", name="A|B", description="x\r\ny\rz\u2028w", box=Box(1, 2, 3, 4))
    cot = CoT(
        images=[ImageAnalysis(1, characters=[character])], narrative=[NarrativeRow("Introduction", "a|b\nc")]
    )
    read = parse_cot(render_cot(cot))
    row = read.images[0].characters[0]
    assert (row.id, row.name, row.description, row.box) == ("char1", "A/B", "x y z w", Box(1, 2, 3, 4))
    assert read.narrative is not None and read.narrative[0].description == "a/b c"


def test_render_story_keeps_tag_like_text_as_text():
    text_part = "See <gdo char9>x</gdo> and </gdi><gdi image5> here <"
    story = GroundedStory(
        [
            Segment(1, [text_part, Span("gdo", ("char1",), "Ann <gda char2>ran</GDA> <b> 1<2"), " end <"]),
            Segment(2, ["<think>b</think> <gdl lm1>"]),
        ]
    )
    read = parse_story(render_story(story))
    assert [seg.image for seg in read.segments] == [1, 2]
    assert [(s.kind, s.ids) for _, s in read.spans()] == [("gdo", ("char1",))]
    assert (
        read.segments[0].plain
        == "See \u2039gdo char9>x\u2039/gdo> and \u2039/gdi>\u2039gdi image5> here \u2039"
        "Ann \u2039gda char2>ran\u2039/GDA> \u2039b> 1<2 end \u2039"
    )
    assert read.diagnostics == []
    malformed = parse_story("<gdi image1>\nx <gdo char1 y\n</gdi>").segments[0]
    assert (
        malformed.text == "x <gdo char1 y" and "x \u2039gdo char1 y" in malformed.render()
    )  # text: as parsed
    plain = GroundedStory([Segment(1, ["a ", Span("gdo", ("char1",), "b"), " c < d <1"])])
    assert render_story(plain) == "<gdi image1>\na <gdo char1>b</gdo> c < d <1\n</gdi>"


# -- F6: a span's own line -----------------------------------------------------------------------


def test_a_span_carries_the_line_of_its_tag_streamed_as_batch_without_changing_equality_or_json():
    text = EXAMPLE.read_text(encoding="utf-8")
    story = parse_output(text).story
    assert [{s.line for s in segment.spans} for segment in story.segments] == [{75}, {79}, {83}]
    lines = [s.line for _, s in story.spans()]
    for size in (1, 5, 64):
        assert [s.line for _, s in _streamed(text, size).story.spans()] == lines
    nested = "<gdi image1>\n<gdo char1>a\n<gda char1>b</gda>\nc</gdo> <gdl lm1>d\n</gdi>"
    batch = [(s.text, s.line) for _, s in parse_story(nested).spans()]
    assert batch == [("a\n", 2), ("b", 3), ("\nc", 2), ("d\n", 4)]
    assert [(s.text, s.line) for _, s in _streamed(nested).story.spans()] == batch
    span = parse_story(nested).spans()[0][1]
    assert span == Span("gdo", ("char1",), "a\n") and "line" not in span.to_dict()
    assert pickle.loads(pickle.dumps(span)).line == 2


def test_an_id_missing_from_its_image_is_reported_on_the_line_that_uses_it():
    text = EXAMPLE.read_text(encoding="utf-8").replace("<gdo obj1>the lantern's</gdo>", "the lantern's")
    text = text.replace("<gdo char1 char2>They</gdo>", "They").replace(
        "<gdl bg1>the dark sea</gdl>", "<gdl bg1>the dark sea</gdl>\n<gdo obj2>door</gdo>"
    )
    verdict = parse_output(text).validate(n_images=3)
    assert [(d.code, d.line) for d in verdict.findings if d.code == "id-not-in-image"] == [
        ("id-not-in-image", 84)
    ]
