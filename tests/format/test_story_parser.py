"""The story parser on the published tags and on malformed model output."""

from __future__ import annotations

from storyreasoning.format import GroundedStory, Span, clean_text, parse_story, render_story

STORY = (
    "<gdi image1>\n"
    "In <gdl bg1>the rain-streaked kitchen</gdl>, <gdo char1>Elena</gdo> <gda char1>unfolded</gda> <gdo obj1>the letter</gdo>.\n"
    "</gdi>\n\n"
    "<gdi image2>\n"
    "<gdo char1 char2>They</gdo> <gda char1 char2>stared</gda> past <gdl lm1>the old tower</gdl>.\n"
    "</gdi>"
)


def codes(story: GroundedStory) -> list[str]:
    return [d.code for d in story.diagnostics]


def spans(story: GroundedStory) -> list[tuple[str, tuple[str, ...], str]]:
    return [(s.kind, s.ids, s.text) for _, s in story.spans()]


def test_published_story_round_trips():
    story = parse_story(STORY)
    assert story.diagnostics == []
    assert render_story(story) == STORY
    assert [s.image for s in story.segments] == [1, 2]
    assert spans(story)[:2] == [("gdl", ("bg1",), "the rain-streaked kitchen"), ("gdo", ("char1",), "Elena")]
    assert ("gdo", ("char1", "char2"), "They") in spans(story)
    assert story.segments[0].text.startswith("In <gdl bg1>the rain-streaked kitchen</gdl>")
    assert story.segments[1].plain == "They stared past the old tower."


def test_mentioned_ids_include_landmarks_and_every_id_of_a_group():
    assert parse_story(STORY).mentioned_ids() == ["bg1", "char1", "obj1", "char2", "lm1"]


def test_plain_text_matches_the_original_stripping():
    assert parse_story(STORY).plain_text() == (
        "In the rain-streaked kitchen, Elena unfolded the letter.\n\nThey stared past the old tower."
    )
    assert (
        clean_text(STORY)
        == "In the rain-streaked kitchen, Elena unfolded the letter. They stared past the old tower."
    )


def test_unclosed_last_segment_is_kept():
    story = parse_story("<gdi image1>\nOne.\n</gdi>\n<gdi image2>\nTwo <gdo char1>Ana</gdo> left")
    assert [(s.image, s.closed) for s in story.segments] == [(1, True), (2, False)]
    assert story.segments[1].plain == "Two Ana left"
    assert "unclosed-segment" in codes(story)


def test_segment_opened_inside_an_open_segment_closes_it():
    story = parse_story("<gdi image1>\nOne.\n<gdi image2>\nTwo.\n</gdi>")
    assert [(s.image, s.plain, s.closed) for s in story.segments] == [(1, "One.", False), (2, "Two.", True)]
    assert "unclosed-segment" in codes(story)


def test_stray_and_missing_closers():
    story = parse_story("<gdi image1>\n<gdo char1>Ana</gdo></gdo> ran</gda>.\n</gdi></gdi>")
    assert spans(story) == [("gdo", ("char1",), "Ana")]
    assert story.segments[0].plain == "Ana ran."
    assert codes(story).count("stray-closer") == 3
    story = parse_story("<gdi image1>\n<gdo char1>Ana walked.\n</gdi>")
    assert spans(story) == [("gdo", ("char1",), "Ana walked.\n")]
    assert "unclosed-span" in codes(story)


def test_nested_tags_are_flattened_without_losing_ids():
    story = parse_story("<gdi image1><gdo char1>the man <gda char1>ran</gda> away</gdo></gdi>")
    assert spans(story) == [
        ("gdo", ("char1",), "the man "),
        ("gda", ("char1",), "ran"),
        ("gdo", ("char1",), " away"),
    ]
    assert story.segments[0].plain == "the man ran away"
    assert "nested-tag" in codes(story)


def test_tag_nested_at_the_start_keeps_the_outer_ids():
    story = parse_story("<gdi image1><gdo char1><gda char2>ran</gda></gdo></gdi>")
    assert ("gdo", ("char1",), "") in spans(story)
    assert ("gda", ("char2",), "ran") in spans(story)
    assert set(story.mentioned_ids()) == {"char1", "char2"}


def test_overlapping_tags():
    story = parse_story("<gdi image1><gdo char1>x <gda char2>y</gdo> z</gda></gdi>")
    assert spans(story) == [("gdo", ("char1",), "x "), ("gda", ("char2",), "y"), ("gda", ("char2",), " z")]
    assert story.segments[0].plain == "x y z"
    assert "mismatched-closer" in codes(story)


def test_mismatched_closer_closes_the_open_tag():
    story = parse_story("<gdi image1><gdo char1>Ana</gda> left</gdi>")
    assert spans(story) == [("gdo", ("char1",), "Ana")]
    assert "mismatched-closer" in codes(story)


def test_unknown_tags_and_angle_brackets_stay_text():
    story = parse_story("<gdi image1>She said <b>no</b> and 3 < 4 > 2 <gdx char1>!</gdi>")
    assert story.segments[0].plain == "She said <b>no</b> and 3 < 4 > 2 <gdx char1>!"
    assert codes(story).count("unknown-tag") == 3
    assert spans(story) == []


def test_text_outside_segments_is_kept_in_a_loose_segment():
    story = parse_story("Here is your story:\n<gdi image1>\nOne.\n</gdi>\nThe end.")
    assert [(s.image, s.plain) for s in story.segments] == [
        (None, "Here is your story:"),
        (1, "One."),
        (None, "The end."),
    ]
    assert codes(story).count("text-outside-segment") == 2
    assert len(story.image_segments) == 1


def test_story_without_any_gdi():
    story = parse_story("<gdo char1>Ana</gdo> ran home.")
    assert [s.image for s in story.segments] == [None]
    assert spans(story) == [("gdo", ("char1",), "Ana")]


def test_attribute_variants():
    story = parse_story('<gdi image 1>a</gdi><gdi image="2">b</gdi><gdi 3>c</gdi><gdi>d</gdi>')
    assert [s.image for s in story.segments] == [1, 2, 3, None]
    assert codes(story).count("segment-attribute") == 3
    assert "segment-without-image" in codes(story)
    story = parse_story(
        '<gdi image1><gdo class="person" person-0>He</gdo> and <gdo char1,char2>they</gdo> <gda>ran</gda></gdi>'
    )
    assert spans(story) == [
        ("gdo", ("person-0",), "He"),
        ("gdo", ("char1", "char2"), "they"),
        ("gda", (), "ran"),
    ]
    assert {"span-attribute", "bad-id", "span-without-ids"} <= set(codes(story))


def test_numbering_problems_are_reported():
    story = parse_story("<gdi image2>b</gdi><gdi image1>a</gdi><gdi image1>a</gdi>")
    assert {"segment-number-order", "segment-number-duplicate"} <= set(codes(story))


def test_think_tags_inside_the_story_are_ignored():
    story = parse_story("<gdi image1>a</think>b</gdi>")
    assert story.segments[0].plain == "ab"
    assert "extra-think" in codes(story)


def test_overlong_tag_is_text():
    story = parse_story("<gdi image1><gdo " + "x" * 400 + ">hi</gdo></gdi>")
    assert "overlong-tag" in codes(story)
    assert story.segments[0].plain.startswith("<gdo xxx")


def test_line_numbers():
    story = parse_story(
        "<gdi image1>\nfine\n</gdi>\n\n<gdi image2>\n<gdo char1>x</gda>\n</gdi>", first_line=40
    )
    [d] = [d for d in story.diagnostics if d.code == "mismatched-closer"]
    assert d.line == 45


def test_span_render():
    assert Span("gdo", ("char1", "char2"), "They").render() == "<gdo char1 char2>They</gdo>"
    assert Span("gda", (), "ran").render() == "<gda>ran</gda>"


def test_chunking_never_changes_the_parse():
    text = STORY + "\n<gdi image3><gdo char1>x <gda char2>y</gdo> z</gda> 3 < 4 <b>!</b>"
    whole = parse_story(text)
    from storyreasoning.format import StoryBuilder

    for size in (1, 2, 3, 7, 64):
        builder = StoryBuilder()
        for i in range(0, len(text), size):
            builder.feed(text[i : i + size])
        builder.finish()
        assert builder.story == whole
        assert builder.story.diagnostics == whole.diagnostics


# -- malformed tag fragments (issue 14) -----------------------------------------------------------


def test_tag_fragments_are_reported_once_per_line():
    story = parse_story("<gdi image1>\n" + "<gdo " * 50 + "\n<gda char1 ran\n</gdi>")
    found = [d for d in story.diagnostics if d.code == "malformed-tag"]
    assert [(d.line, d.severity.value) for d in found] == [(2, "warning"), (3, "warning")]
    assert "'<gdo'" in found[0].message and "'<gda'" in found[1].message
    assert story.segments[0].plain.count("<gdo") == 50  # the text is kept


def test_a_tag_cut_by_the_next_tag_or_the_end_is_reported():
    story = parse_story("<gdi image1><gdo char1 Ines</gdo> waved.</gdi>")
    assert "malformed-tag" in codes(story)
    assert "malformed-tag" not in codes(parse_story("<gdi image1>\nopened </gd"))  # not a tag name yet
    cut = parse_story("<gdi image1>\n<gdo char1>Ines</gdo> opened <gdo obj1")
    assert [d.line for d in cut.diagnostics if d.code == "malformed-tag"] == [2]


def test_angle_brackets_in_prose_are_not_tag_fragments():
    story = parse_story("<gdi image1>\nThe score was 3 < 4 and <b <gdx x\n</gdi>")
    assert "malformed-tag" not in codes(story)


def test_fragments_are_the_same_however_the_text_is_chunked():
    from storyreasoning.format.story_parser import StoryBuilder

    text = "<gdi image1>\n<gdo <gdo char1 x\n<gda\n</gdi>\n<gdi image2>a <gdl"
    whole = parse_story(text)
    for size in (1, 2, 3, 5, 8):
        builder = StoryBuilder()
        for i in range(0, len(text), size):
            builder.feed(text[i : i + size])
        builder.finish()
        assert builder.story.diagnostics == whole.diagnostics


def test_ten_thousand_images_in_the_story():
    story = parse_story("<gdi image9999>a</gdi><gdi image10000>b</gdi><gdi image 123456789>c</gdi>")
    assert [s.image for s in story.segments] == [9999, 10000, 123456789]
