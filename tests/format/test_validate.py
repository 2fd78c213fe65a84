"""The well-structured verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

from storyreasoning.format import parse_cot, parse_output, parse_story, validate

EXAMPLE = (Path(__file__).parents[2] / "examples" / "outputs" / "lighthouse.txt").read_text()
SIZES = [(640, 480)] * 3


def reasons(verdict):
    return [d.code for d in verdict.reasons]


def test_the_example_is_well_structured():
    verdict = parse_output(EXAMPLE).validate(n_images=3, image_sizes=SIZES)
    assert verdict.well_structured and bool(verdict)
    assert verdict.reasons == []


def test_wrong_image_count():
    verdict = parse_output(EXAMPLE).validate(n_images=4)
    assert reasons(verdict) == ["image-count", "segment-count"]


def test_cot_and_story_counts_must_agree_without_an_image_count():
    text = EXAMPLE.replace("<gdi image3>", "<gdi image2>")
    verdict = parse_output(text).validate()
    assert "segment-number-order" in reasons(verdict)
    text = EXAMPLE[: EXAMPLE.index("<gdi image3>")]
    assert reasons(parse_output(text).validate()) == ["segment-count"]


def test_missing_parts():
    cot_only = EXAMPLE[: EXAMPLE.index("</think>")]
    assert reasons(parse_output(cot_only).validate(n_images=3)) == [
        "no-story",
        "segment-count",
    ] or "no-story" in reasons(parse_output(cot_only).validate(n_images=3))
    story_only = EXAMPLE[EXAMPLE.index("</think>") + 8 :]
    assert reasons(parse_output(story_only).validate(n_images=3)) == ["no-cot"]


def test_missing_phase_and_missing_narrative():
    text = EXAMPLE.replace("| Conflict |", "| Rising Action |")
    verdict = parse_output(text).validate(n_images=3)
    assert reasons(verdict) == ["missing-phase"]
    assert "Conflict" in verdict.reasons[0].message
    text = EXAMPLE[: EXAMPLE.index("## Narrative Structure")] + "</think>" + EXAMPLE.split("</think>")[1]
    assert "no-narrative" in reasons(parse_output(text).validate(n_images=3))


def test_unknown_story_id_fails_and_off_screen_id_warns():
    text = EXAMPLE.replace("<gdo obj2>the heavy door</gdo>", "<gdo obj9>the heavy door</gdo>")
    verdict = parse_output(text).validate(n_images=3)
    assert reasons(verdict) == ["unknown-story-id"]
    text = EXAMPLE.replace("<gdo obj2>the heavy door</gdo>", "<gdo obj3>the heavy door</gdo>")
    verdict = parse_output(text).validate(n_images=3)
    assert verdict.well_structured
    assert "id-not-in-image" in [d.code for d in verdict.findings]


def test_boxes_against_image_sizes():
    verdict = parse_output(EXAMPLE).validate(image_sizes=[(200, 200)] * 3)
    assert "box-out-of-image" in reasons(verdict)
    with pytest.raises(ValueError):
        parse_output(EXAMPLE).validate(n_images=2, image_sizes=SIZES)


def test_unparseable_box_fails():
    text = EXAMPLE.replace("102,88,214,402", "somewhere left")
    assert reasons(parse_output(text).validate(n_images=3)) == ["box-unparseable"]


def test_setting_rows_required_and_strict_mode():
    cot = parse_cot(
        "## Image 1\n\n### Setting\n| Setting Element | Description | Mood | Time | Narrative Function |\n|-|-|-|-|-|\n"
        "| Location | Hall | Calm | Day | Start |\n\n## Narrative Structure\n\n| Narrative Phase | Description | Key Events | Images |\n|-|-|-|-|\n"
        + "\n".join(
            f"| {p} | a | b | 1 |"
            for p in ("Introduction", "Development", "Conflict", "Turning Point", "Conclusion")
        )
    )
    story = parse_story("<gdi image1>\nA calm hall.\n</gdi>")
    assert validate(cot=cot, story=story, n_images=1).well_structured  # empty Characters/Objects are allowed
    assert reasons(validate(cot=cot, story=story, n_images=1, strict=True)) == ["empty-table", "empty-table"]
    cot.images[0].settings.clear()
    assert reasons(validate(cot=cot, story=story, n_images=1)) == ["empty-table"]


def test_lone_cot_or_story_can_be_judged():
    cot_text, story_text = parse_output(EXAMPLE).cot_text, parse_output(EXAMPLE).story_text
    assert validate(cot=parse_cot(cot_text), n_images=3, require_story=False).well_structured
    assert validate(story=parse_story(story_text), n_images=3, require_cot=False).well_structured


def test_findings_include_parse_warnings_but_only_errors_decide():
    text = EXAMPLE.replace("## Image 2", "## Image 2:")
    verdict = parse_output(text).validate(n_images=3)
    assert verdict.well_structured
    assert "heading-style" in [d.code for d in verdict.findings]


def test_to_dict_shape():
    data = parse_output(EXAMPLE).to_dict(n_images=3)
    assert set(data) >= {"cot", "story", "diagnostics", "well_structured"}
    image = data["cot"]["images"][0]
    assert set(image) == {"number", "characters", "objects", "settings"}
    assert set(image["characters"][0]) == {
        "id",
        "name",
        "description",
        "emotions",
        "actions",
        "narrative_function",
        "box",
    }
    assert set(image["objects"][0]) == {
        "id",
        "description",
        "function",
        "interaction",
        "narrative_function",
        "box",
    }
    assert set(image["settings"][0]) == {"element", "description", "mood", "time", "narrative_function"}
    assert set(data["cot"]["narrative"][0]) == {"phase", "description", "key_events", "images"}
    assert data["cot"]["narrative"][3]["images"] == [3]
    segment = data["story"]["segments"][0]
    assert set(segment) == {"image", "text", "spans", "parts"}
    assert segment["text"].startswith("<gdo char1>Ines</gdo>")
    assert segment["spans"][0] == {"kind": "gdo", "ids": ["char1"], "text": "Ines"}
    # parts: plain runs and spans in order; rendered back they give the segment's text
    rendered = "".join(
        f"<{p['kind']} {' '.join(p['ids'])}>{p['text']}</{p['kind']}>" if "kind" in p else p["text"]
        for p in segment["parts"]
    )
    assert rendered == segment["text"]
    assert [p for p in segment["parts"] if "kind" in p] == segment["spans"]
    assert data["well_structured"] is True


# -- issue 14: wrong verdicts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["hello world\n", "not an image at all, just prose", "<gdo char1>Ines</gdo> ran."],
)
def test_text_without_a_cot_or_a_gdi_segment_is_not_well_structured(text):
    telling = parse_output(text)
    assert telling.cot is None
    verdict = telling.validate(require_cot=False)  # judged as a story alone, as check's auto kind does
    assert not verdict.well_structured
    assert reasons(verdict) == ["no-segments"]
    # with an image count, one reason, not a second one counting the missing segments
    assert reasons(parse_output(text).validate(n_images=2, require_cot=False)) == ["no-segments"]


def test_a_story_with_one_segment_is_still_judged_on_its_own():
    story = parse_story("<gdi image1>\nA quiet harbour.\n</gdi>")
    assert validate(story=story, require_cot=False).well_structured


def test_missing_think_is_reported_and_stays_well_structured():
    text = EXAMPLE.removeprefix("<think>\n")  # a chat template put <think> in the prompt
    telling = parse_output(text)
    missing = [d for d in telling.diagnostics if d.code == "missing-think-open"]
    assert len(missing) == 1 and missing[0].line == 1
    assert telling.validate(n_images=3).well_structured  # repaired, and said


def test_ten_thousand_images():
    cot = EXAMPLE.split("</think>")[0].replace("## Image 3", "## Image 10000")
    story = EXAMPLE.split("</think>")[1].replace("<gdi image3>", "<gdi image10000>")
    telling = parse_output(cot + "</think>" + story)
    assert [image.number for image in telling.cot.images] == [1, 2, 10000]
    assert [segment.image for segment in telling.story.segments] == [1, 2, 10000]
    assert "image-number-gap" in [d.code for d in telling.diagnostics]
