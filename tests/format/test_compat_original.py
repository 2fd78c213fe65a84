"""Everything the original parser reads, ours reads the same way.

Hypothesis writes CoTs and stories in the published layout and in the variants the
original also accepts (``### Image n`` headings, blank lines after headings, other
separator widths, padded cells, reordered and extra columns, extra cells, free text
between tables, enum values in other cases); the oracle in ``original_rules.py``
follows the original's documented rules. Every table row, box, segment and span
must agree.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storyreasoning.format import parse_cot, parse_output, parse_story

from .original_rules import extract_story_original, parse_cot_original, parse_story_original

WORDS = [
    "Elena",
    "red",
    "coat",
    "door",
    "the",
    "a",
    "of",
    "rain",
    "letter",
    "Tense",
    "Night",
    "-",
    "None",
    "(hat)",
    "it's",
    "1920s",
]
# COMPAT_EXAMPLES=5000 pytest tests/format/test_compat_original.py for a long run.
EXAMPLES = int(os.environ.get("COMPAT_EXAMPLES", "80"))
SETTINGS = [
    "Location",
    "Environment",
    "Lighting",
    "Weather",
    "Time Period",
    "Architecture",
    "Interior Design",
    "Atmosphere",
    "Background",
]
PHASES = ["Introduction", "Development", "Conflict", "Turning Point", "Conclusion"]

CHAR_HEADERS = [
    "Character ID",
    "Name",
    "Description",
    "Emotions",
    "Actions",
    "Narrative Function",
    "Bounding Box",
]
OBJ_HEADERS = ["Object ID", "Description", "Function", "Interaction", "Narrative Function", "Bounding Box"]
SET_HEADERS = ["Setting Element", "Description", "Mood", "Time", "Narrative Function"]
NAR_HEADERS = ["Narrative Phase", "Description", "Key Events", "Images"]

text_cell = st.lists(st.sampled_from(WORDS), min_size=0, max_size=4).map(" ".join)


@st.composite
def box_cell(draw):
    x1, y1 = draw(st.integers(0, 500)), draw(st.integers(0, 400))
    x2, y2 = x1 + draw(st.integers(1, 300)), y1 + draw(st.integers(1, 300))
    sep = draw(st.sampled_from([",", ", ", " ,", " , "]))
    return sep.join(str(v) for v in (x1, y1, x2, y2))


@st.composite
def enum_cell(draw, values):
    value = draw(st.sampled_from(values))
    form = draw(st.sampled_from(["as is", "upper", "lower"]))
    if form == "upper":
        return value.upper().replace(" ", "_")
    if form == "lower":
        return value.lower()
    return value


@st.composite
def table(draw, headers, make_row, n_rows):
    """Header line, separator, rows; columns possibly reordered, padded, with an extra column."""
    order = list(range(len(headers)))
    if draw(st.booleans()):
        order = draw(st.permutations(order))
    extra = draw(st.booleans())
    cols = [headers[i] for i in order] + (["Notes"] if extra else [])
    pad = draw(st.sampled_from(["", " ", "  "]))
    sep = "|" + "|".join("-" * draw(st.integers(1, 12)) for _ in cols) + "|"
    lines = ["| " + " | ".join(cols) + " |", sep]
    rows = [draw(make_row(i)) for i in range(n_rows)]
    for row in rows:
        cells = [row[i] for i in order] + ([draw(text_cell)] if extra else [])
        if draw(st.integers(0, 5)) == 0:
            cells.append(draw(text_cell) or "x")  # an extra trailing cell
        lines.append("|" + "|".join(f"{pad}{c}{pad}" if c else f"{pad}" for c in cells) + "|")
    return lines


def char_row(i):
    return st.tuples(
        st.just(f"char{i + 1}"), text_cell, text_cell, text_cell, text_cell, text_cell, box_cell()
    ).map(list)


def obj_row(i):
    prefix = st.sampled_from(["obj", "bg", "lm"])
    return st.tuples(
        prefix.map(lambda p: f"{p}{i + 1}"), text_cell, text_cell, text_cell, text_cell, box_cell()
    ).map(list)


def set_row(i):
    return st.tuples(enum_cell(SETTINGS), text_cell, text_cell, text_cell, text_cell).map(list)


def nar_row(i):
    images = st.sampled_from(["1", "1, 2", "Image 2", "2,3", "3"])
    return st.tuples(st.just(PHASES[i % 5]), text_cell, text_cell, images).map(list)


@st.composite
def cot_text(draw):
    n_images = draw(st.integers(1, 4))
    blank_after_heading = draw(st.sampled_from(["", "\n"]))
    lines: list[str] = []
    for n in range(1, n_images + 1):
        level = draw(st.sampled_from(["##", "###"]))
        lines.append(f"{level} Image {n}" + draw(st.sampled_from(["", " ", "  "])))
        lines.append("")
        for title, headers, make_row, lo in (
            ("Characters", CHAR_HEADERS, char_row, 0),
            ("Objects", OBJ_HEADERS, obj_row, 0),
            ("Setting", SET_HEADERS, set_row, 1),
        ):
            lines.append(f"### {title}" + blank_after_heading)
            lines += draw(table(headers, make_row, draw(st.integers(lo, 3))))
            lines.append("")
            if draw(st.integers(0, 6)) == 0:
                lines += ["Some free text the model added.", ""]
        lines.append("")
    lines += ["## Narrative Structure", ""]
    lines += draw(table(NAR_HEADERS, nar_row, 5))
    return "\n".join(lines)


def ours_as_original(text: str) -> dict:
    cot = parse_cot(text)
    return {
        "images": [
            {
                "number": image.number,
                "characters": [
                    [c.id, c.name, c.description, c.emotions, c.actions, c.narrative_function, c.box_text]
                    for c in image.characters
                ],
                "objects": [
                    [o.id, o.description, o.function, o.interaction, o.narrative_function, o.box_text]
                    for o in image.objects
                ],
                "settings": [
                    [
                        s.kind.value if s.kind else "Location",
                        s.description,
                        s.mood,
                        s.time,
                        s.narrative_function,
                    ]
                    for s in image.settings
                ],
            }
            for image in cot.images
        ],
        "narrative": None
        if cot.narrative is None
        else [
            [r.kind.value if r.kind else "Introduction", r.description, r.key_events, r.images_text]
            for r in cot.narrative
        ],
    }


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cot_text())
def test_cot_rows_agree_with_the_original(text):
    assert ours_as_original(text) == parse_cot_original(text)
    # and inside the <think> envelope, where the original strips the CoT
    assert ours_as_original(parse_output(f"<think>\n{text}\n</think>\n").cot_text) == parse_cot_original(
        text.strip()
    )


@settings(max_examples=EXAMPLES, deadline=None)
@given(cot_text())
def test_boxes_agree_with_the_original(text):
    original = parse_cot_original(text)
    cot = parse_cot(text)
    for ours, theirs in zip(cot.images, original["images"], strict=True):
        for row, cells in zip(
            [*ours.characters, *ours.objects], [*theirs["characters"], *theirs["objects"]], strict=True
        ):
            assert row.box is not None
            assert row.box.to_list() == [int(v) for v in cells[-1].split(",")]


@st.composite
def story_text(draw):
    n = draw(st.integers(1, 5))
    segments = []
    for i in range(1, n + 1):
        parts = []
        for _ in range(draw(st.integers(1, 6))):
            if draw(st.booleans()):
                kind = draw(st.sampled_from(["gdo", "gda", "gdl"]))
                ids = draw(
                    st.lists(
                        st.sampled_from(["char1", "char2", "obj1", "bg1", "lm1"]),
                        min_size=1,
                        max_size=3,
                        unique=True,
                    )
                )
                parts.append(f"<{kind} {' '.join(ids)}>{draw(text_cell) or 'he'}</{kind}>")
            else:
                parts.append(draw(text_cell))
        body = " ".join(parts)
        nl = draw(st.sampled_from(["\n", "", " "]))
        segments.append(f"<gdi image{i}>{nl}{body}{nl}</gdi>")
    return draw(st.sampled_from(["\n\n", "\n", " "])).join(segments)


@settings(max_examples=EXAMPLES, deadline=None)
@given(story_text())
def test_story_segments_and_spans_agree_with_the_original(text):
    ours = parse_story(text)
    theirs = parse_story_original(text)
    assert [(s.image, s.text) for s in ours.segments] == [(n, inner) for n, inner, _ in theirs]
    assert [[(sp.kind, list(sp.ids), sp.text) for sp in s.spans] for s in ours.segments] == [
        spans for _, _, spans in theirs
    ]
    assert not [d for d in ours.diagnostics if d.severity.value != "info"]


def test_the_character_after_think_is_not_lost():
    text = "<think>\n## Image 1\n</think><gdi image1>\nHi\n</gdi>"
    assert extract_story_original(text) == "gdi image1>\nHi\n</gdi>"  # the original's off-by-one
    assert parse_output(text).story_text == "<gdi image1>\nHi\n</gdi>"
    assert [s.image for s in parse_output(text).story.segments] == [1]
