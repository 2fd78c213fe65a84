"""The CoT parser on the published layout and on every malformed variant of §8.2."""

from __future__ import annotations

from pathlib import Path

import pytest

from storyreasoning.format import Box, NarrativePhase, SettingElement, parse_cot, parse_output, render_cot
from storyreasoning.format.diagnostics import CODES

EXAMPLE = (Path(__file__).parents[2] / "examples" / "outputs" / "lighthouse.txt").read_text()
COT = parse_output(EXAMPLE).cot_text

CHAR_HEADER = "| Character ID | Name | Description | Emotions | Actions | Narrative Function | Bounding Box |"
CHAR_SEP = "|--------------|------|-------------|----------|---------|-------------------|--------------|"
OBJ_HEADER = "| Object ID | Description | Function | Interaction | Narrative Function | Bounding Box |"
OBJ_SEP = "|-----------|-------------|----------|------------|-------------------|--------------|"
SET_HEADER = "| Setting Element | Description | Mood | Time | Narrative Function |"
SET_SEP = "|-----------------|-------------|------|------|-------------------|"


def codes(cot):
    return [d.code for d in cot.diagnostics]


def one_image(
    characters="| char1 | Elena | Woman | Calm | Reading | Lead | 10,20,110,220 |", heading="## Image 1"
):
    return "\n".join(
        [
            heading,
            "",
            "### Characters",
            CHAR_HEADER,
            CHAR_SEP,
            characters,
            "",
            "### Objects",
            OBJ_HEADER,
            OBJ_SEP,
            "| obj1 | Letter | Message | Held | Clue | 5,5,50,50 |",
            "",
            "### Setting",
            SET_HEADER,
            SET_SEP,
            "| Location | Kitchen | Tense | Evening | Privacy |",
        ]
    )


def test_canonical_text_round_trips_exactly():
    cot = parse_cot(COT)
    assert cot.diagnostics == []
    assert render_cot(cot) == COT
    assert [im.number for im in cot.images] == [1, 2, 3]
    assert [c.id for c in cot.images[1].characters] == ["char1", "char2"]
    ines = cot.images[0].characters[0]
    assert (ines.name, ines.emotions, ines.box) == ("Ines", "Determined", Box(102, 88, 214, 402))
    assert cot.images[0].objects[1].kind == "lm"
    assert cot.images[2].settings[0].kind is SettingElement.INTERIOR_DESIGN
    assert [r.kind for r in cot.narrative] == list(NarrativePhase)
    assert cot.narrative[1].images == [2]
    assert cot.appearances()["obj1"] == [1, 2, 3]
    assert cot.entity_ids() == {"char1", "char2", "obj1", "obj2", "obj3", "lm1", "bg1"}


def test_render_writes_empty_tables_and_drops_free_text():
    text = (
        "## Image 1\n\nSome prose.\n\n### Setting\n"
        + SET_HEADER
        + "\n"
        + SET_SEP
        + "\n| Location | Hall | Calm | Day | Start |"
    )
    cot = parse_cot(text)
    rendered = render_cot(cot)
    assert "### Characters\n" + CHAR_HEADER + "\n" + CHAR_SEP + "\n\n### Objects" in rendered
    assert "Some prose" not in rendered
    assert "free-text" in codes(cot)


@pytest.mark.parametrize(
    "heading",
    [
        "## Image 1:",
        "# Image 1",
        "### Image 1",
        "**Image 1**",
        "## **Image 1**",
        "## Image 1 - The letter",
        "Image 1:",
        "## IMAGE 1",
    ],
)
def test_image_heading_variants(heading):
    cot = parse_cot(one_image(heading=heading))
    assert [im.number for im in cot.images] == [1]
    assert cot.images[0].characters[0].name == "Elena"
    assert "heading-style" in codes(cot)


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("### Characters:", "characters"),
        ("**Characters**", "characters"),
        ("## Objects", "objects"),
        ("#### Settings", "settings"),
    ],
)
def test_table_heading_variants(heading, expected):
    text = one_image().replace(
        {"characters": "### Characters", "objects": "### Objects", "settings": "### Setting"}[expected],
        heading,
    )
    cot = parse_cot(text)
    image = cot.images[0]
    assert len(getattr(image, expected)) == 1
    assert "heading-style" in codes(cot)


def test_numbering_gap_keeps_both_images():
    text = one_image() + "\n\n" + one_image(heading="## Image 3")
    cot = parse_cot(text)
    assert [im.number for im in cot.images] == [1, 3]  # the original stopped after image 1
    assert "image-number-gap" in codes(cot)


def test_duplicate_and_out_of_order_numbers():
    cot = parse_cot(
        one_image(heading="## Image 2")
        + "\n\n"
        + one_image(heading="## Image 1")
        + "\n\n"
        + one_image(heading="## Image 1")
    )
    assert [im.number for im in cot.images] == [2, 1]
    assert "image-number-gap" in codes(cot)  # 2 without 1
    assert "image-number-order" in codes(cot)
    assert "image-number-duplicate" in codes(cot)
    assert len(cot.images[1].characters) == 2  # merged


def test_last_row_without_newline_is_kept():
    text = one_image()
    assert not text.endswith("\n")
    cot = parse_cot(text)
    assert cot.images[0].settings[0].description == "Kitchen"


def test_rows_without_outer_pipes_keep_their_first_column():
    row = "char1 | Elena | Woman | Calm | Reading | Lead | 10,20,110,220"
    cot = parse_cot(one_image(characters=row))
    c = cot.images[0].characters[0]
    assert (c.id, c.name, c.box) == ("char1", "Elena", Box(10, 20, 110, 220))
    assert "missing-outer-pipes" in codes(cot)


def test_table_without_any_pipes_at_the_edges():
    text = "### Setting\nSetting Element | Description | Mood | Time | Narrative Function\n---|---|---|---|---\nWeather | Storm | Grim | Night | Omen"
    cot = parse_cot(text)
    assert cot.images[0].settings[0].kind is SettingElement.WEATHER
    assert "content-before-image" in codes(cot)


def test_blank_lines_inside_a_table_are_skipped():
    text = one_image().replace("| obj1 |", "\n| obj0 | Cup | Drink | - | - | 1,1,9,9 |\n\n| obj1 |")
    cot = parse_cot(text)
    assert [o.id for o in cot.images[0].objects] == ["obj0", "obj1"]
    assert "blank-line-in-table" in codes(cot)


def test_reordered_and_differently_cased_headers_are_read_by_name():
    header = "| name | CHARACTER ID | bounding box | Description | Emotions | Actions | Narrative Function |"
    row = "| Elena | char1 | 10,20,110,220 | Woman | Calm | Reading | Lead |"
    text = (
        one_image()
        .replace(CHAR_HEADER, header)
        .replace("| char1 | Elena | Woman | Calm | Reading | Lead | 10,20,110,220 |", row)
    )
    cot = parse_cot(text)
    c = cot.images[0].characters[0]
    assert (c.id, c.name, c.description, c.box) == ("char1", "Elena", "Woman", Box(10, 20, 110, 220))
    assert {"column-order", "header-case"} <= set(codes(cot))


def test_missing_and_extra_cells():
    cot = parse_cot(one_image(characters="| char1 | Elena | Woman |"))
    c = cot.images[0].characters[0]
    assert (c.id, c.name, c.emotions, c.box) == ("char1", "Elena", "", None)
    assert {"missing-cells", "box-missing"} <= set(codes(cot))
    cot = parse_cot(
        one_image(characters="| char1 | Elena | Woman | Calm | Reading | Lead | 10,20,110,220 | extra |")
    )
    assert cot.images[0].characters[0].box == Box(10, 20, 110, 220)
    assert "extra-cells" in codes(cot)


def test_unknown_and_missing_columns():
    header = "| Character ID | Name | Age | Bounding Box |"
    sep = "|---|---|---|---|"
    text = one_image().replace(CHAR_HEADER, header).replace(CHAR_SEP, sep)
    text = text.replace(
        "| char1 | Elena | Woman | Calm | Reading | Lead | 10,20,110,220 |",
        "| char1 | Elena | 30 | 10,20,110,220 |",
    )
    cot = parse_cot(text)
    c = cot.images[0].characters[0]
    assert (c.name, c.box) == ("Elena", Box(10, 20, 110, 220))
    assert {"unknown-column", "missing-column"} <= set(codes(cot))


def test_unknown_enum_values_are_flagged_and_kept():
    text = one_image().replace("| Location | Kitchen", "| Soundscape | Rain")
    text += "\n\n## Narrative Structure\n\n| Narrative Phase | Description | Key Events | Images |\n|---|---|---|---|\n"
    text += "| Rising Action | x | y | 1 |\n| Climax/Turning Point | x | y | 1 |"
    cot = parse_cot(text)
    setting = cot.images[0].settings[0]
    assert (setting.element, setting.kind) == ("Soundscape", None)  # the original silently said Location
    assert cot.narrative[0].phase == "Rising Action" and cot.narrative[0].kind is None  # not "Introduction"
    assert cot.narrative[1].kind is NarrativePhase.TURNING_POINT
    assert {"unknown-setting-element", "unknown-narrative-phase", "fuzzy-narrative-phase"} <= set(codes(cot))
    assert "| Soundscape | Rain |" in render_cot(cot)
    assert "| Rising Action |" in render_cot(cot)


def test_enum_spellings_render_canonically():
    cot = parse_cot(one_image().replace("| Location | Kitchen", "| TIME_PERIOD | 1920s"))
    assert cot.images[0].settings[0].kind is SettingElement.TIME_PERIOD
    assert "| Time Period | 1920s |" in render_cot(cot)
    assert "unknown-setting-element" not in codes(cot)


def test_table_without_heading_is_recognised_by_its_header_row():
    text = one_image().replace("### Objects\n", "")
    cot = parse_cot(text)
    assert [o.id for o in cot.images[0].objects] == ["obj1"]
    assert "missing-table-heading" in codes(cot)


def test_table_without_header_row_assumes_published_columns():
    text = "## Image 1\n\n### Characters\n| char1 | Elena | Woman | Calm | Reading | Lead | 10,20,110,220 |"
    cot = parse_cot(text)
    assert cot.images[0].characters[0].box == Box(10, 20, 110, 220)
    assert "no-header-row" in codes(cot)


def test_heading_followed_by_heading_makes_no_phantom_rows():
    text = one_image().replace(
        "### Objects\n",
        "### Objects\n### Setting\n"
        + SET_HEADER
        + "\n"
        + SET_SEP
        + "\n| Weather | Rain | Grim | Night | Omen |\n\n### Objects\n",
    )
    cot = parse_cot(text)
    image = cot.images[0]
    assert [s.element for s in image.settings] == ["Weather", "Location"]
    assert [o.id for o in image.objects] == ["obj1"]


def test_missing_table_and_missing_narrative():
    text = (
        "## Image 1\n\n### Setting\n"
        + SET_HEADER
        + "\n"
        + SET_SEP
        + "\n| Location | Hall | Calm | Day | Start |"
    )
    cot = parse_cot(text)
    assert cot.narrative is None
    assert {"missing-table", "no-narrative"} <= set(codes(cot))


def test_bad_ids_and_misplaced_ids():
    text = one_image(characters="| person-0 | Elena | Woman | Calm | Reading | Lead | 10,20,110,220 |")
    text = text.replace("| obj1 | Letter", "| char9 | Letter")
    cot = parse_cot(text)
    assert {"bad-id", "id-table-mismatch"} <= set(codes(cot))
    cot = parse_cot(one_image(characters="| char1 | A | | | | | 1,1,5,5 |\n| char1 | B | | | | | 2,2,6,6 |"))
    assert "duplicate-id" in codes(cot)


def test_box_findings_carry_the_row_line():
    cot = parse_cot(
        one_image(characters="| char1 | Elena | Woman | Calm | Reading | Lead | [10.5, 20, 110, 220] |")
    )
    found = {d.code: d.line for d in cot.diagnostics}
    assert found["box-brackets"] == 6 and found["box-decimal"] == 6
    assert cot.images[0].characters[0].box == Box(11, 20, 110, 220)


def test_empty_and_hostile_inputs_never_raise():
    for text in [
        "",
        "\n\n",
        "|",
        "||||",
        "#",
        "## Image",
        "## Image 99999999",
        "| a | b |\n|---|",
        "\x00\x01|\r\n",
        "## Image 1\n|" * 50,
    ]:
        cot = parse_cot(text)
        assert all(d.code in CODES for d in cot.diagnostics)


def test_crlf_line_endings():
    cot = parse_cot(one_image().replace("\n", "\r\n"))
    assert cot.images[0].settings[0].narrative_function == "Privacy"
    assert cot.images[0].characters[0].box == Box(10, 20, 110, 220)


def test_any_number_of_images():
    cot = parse_cot(
        "## Image 10000\n\n### Setting\n| Setting Element | Description | Mood | Time | Narrative Function |\n|---|---|---|---|---|\n| Location | Pier | Calm | Dawn | Opens |\n"
    )
    assert [image.number for image in cot.images] == [10000]
    assert "content-before-image" not in [d.code for d in cot.diagnostics]
    big = parse_cot("## Image 123456789\n")
    assert [image.number for image in big.images] == [123456789]


def test_appearances_keep_first_order_and_each_number_once():
    """Image numbers out of order or repeated (a model numbering sections 2, 1, 2): each entity's images in
    order of first appearance, each once."""
    cot = parse_cot(
        "".join(
            f"## Image {n}\n\n### Characters\n| Character ID | Name | Bounding Box |\n|---|---|---|\n"
            f"| char1 | A | 1,2,3,4 |\n\n"
            for n in (2, 1, 2, 3)
        )
    )
    assert cot.appearances() == {"char1": [2, 1, 3]}
