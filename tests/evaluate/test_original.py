"""``--protocol original``: the original driver's numbers, quirks included, computed by hand.

Each test states the rule of the reference (``original-storyreasoning.md`` sections 1.2,
1.3 and 4) it exercises. Frames are 100 x 100 unless a test says otherwise, so a pixel
box ``x1,y1,x2,y2`` normalises to ``(x1/100, y1/100, (x2-x1)/100, (y2-y1)/100)``.
"""

from __future__ import annotations

import random
from fractions import Fraction as F

import pytest

from storyreasoning.evaluate.grounding import grounding
from storyreasoning.evaluate.original import (
    THRESHOLDS,
    OriginalDetection,
    cot_detections,
    extract_cot,
    iou,
    match,
    object_label,
    original,
    story_detections,
    story_scores,
)

from .test_grounding import EMPTY, LEFT, RIGHT, SMALL, approx, check, pair, story

VARIANTS = ("", "_characters", "_objects")


def scores_of(reference: str, candidate: str | None, sizes=None) -> dict:
    """The one story's per-story row under the original protocol."""
    result = grounding([pair(reference, candidate, sizes)], protocol="original")
    return result.per_story["s"]


def expect(row: dict, table: dict[str, float]) -> None:
    check(row, table)


# -- the edge-case table (reference 4.4), every row and every variant -------------------------------


def test_edge_row_both_empty():
    # ref = {}, cand = {}: P 1, R 1, F1 1 in every variant, and mAP 1.
    row = scores_of(EMPTY, EMPTY)
    for v in VARIANTS:
        expect(row, {f"precision{v}": 1, f"recall{v}": 1, f"f1{v}": 1})
    expect(row, {"ap": 1})


def test_edge_row_no_reference():
    # ref = {}, cand = {char1, obj1 "Lamp"}: P 0, R 1, F1 0 in every variant, mAP 0.
    cand = story([("char1", "A sailor", LEFT), ("obj1", "Lamp", RIGHT)])
    row = scores_of(EMPTY, cand)
    for v in VARIANTS:
        expect(row, {f"precision{v}": 0, f"recall{v}": 1, f"f1{v}": 0})
    expect(row, {"ap": 0})


def test_edge_row_no_candidate():
    # ref = {char1, obj1}, cand = {}: P 1 (!), R 0, F1 0 in every variant, mAP 0 (!).
    ref = story([("char1", "A sailor", LEFT), ("obj1", "Lamp", RIGHT)])
    row = scores_of(ref, EMPTY)
    for v in VARIANTS:
        expect(row, {f"precision{v}": 1, f"recall{v}": 0, f"f1{v}": 0})
    expect(row, {"ap": 0})


def test_edge_char_and_obj_variants_filter_first():
    # ref = {char1 LEFT}, cand = {obj1 "Lamp" RIGHT}.
    # all: TP 0 -> P 0/1 = 0, R 0/1 = 0, F1 0; both sides non-empty, no match -> AP 0.
    # characters: filtered cand empty -> P 1.0 whatever the reference; R 0/1; F1 2*1*0/1 = 0.
    # objects: filtered ref empty -> R 1.0; P 0/1; F1 0.
    row = scores_of(story([("char1", "A sailor", LEFT)]), story([("obj1", "Lamp", RIGHT)]))
    expect(row, {"precision": 0, "recall": 0, "f1": 0, "ap": 0})
    expect(row, {"precision_characters": 1, "recall_characters": 0, "f1_characters": 0})
    expect(row, {"precision_objects": 0, "recall_objects": 1, "f1_objects": 0})


def test_edge_variant_empty_on_both_sides_is_one():
    # ref = cand = {obj1 RIGHT}: characters are empty on both sides -> 1, 1, 1; the rest perfect.
    # AP: one candidate, matched: point (P 1, R 1) reaches all 11 thresholds -> 1.
    both = story([("obj1", "Lamp", RIGHT)])
    row = scores_of(both, both)
    for v in VARIANTS:
        expect(row, {f"precision{v}": 1, f"recall{v}": 1, f"f1{v}": 1})
    expect(row, {"ap": 1})


def test_edge_variant_partial():
    # ref = {char1 LEFT, obj1 RIGHT}, cand = {char1 LEFT, char2 SMALL}.
    # all: TP 1 -> P 1/2, R 1/2, F1 1/2.
    # characters: ref {char1}, cand {char1, char2}: TP 1 -> P 1/2, R 1, F1 2/3.
    # objects: ref {obj1}, cand {} -> P 1 (empty candidate), R 0, F1 0.
    # AP: rows [hit, miss]: points (1, 1/2), (1/2, 1/2): thresholds 0..0.5 (6) at precision 1 -> 6/11.
    ref = story([("char1", "A sailor", LEFT), ("obj1", "Lamp", RIGHT)])
    cand = story([("char1", "A sailor", LEFT), ("char2", "A ghost", SMALL)])
    row = scores_of(ref, cand)
    expect(row, {"precision": F(1, 2), "recall": F(1, 2), "f1": F(1, 2), "ap": F(6, 11)})
    expect(row, {"precision_characters": F(1, 2), "recall_characters": 1, "f1_characters": F(2, 3)})
    expect(row, {"precision_objects": 1, "recall_objects": 0, "f1_objects": 0})


# -- averaging and missing outputs ----------------------------------------------------------------


def test_macro_average_over_stories():
    # s1: ref = cand = {char1 LEFT, char2 RIGHT} -> all 1, AP 1.
    # s2: ref the same, cand {char1 LEFT, three misses}: TP 1 -> P 1/4, R 1/2,
    #     F1 2*(1/4)*(1/2)/(3/4) = 1/3; AP: points (1,.5), (.5,.5), (1/3,.5), (1/4,.5) -> 6/11.
    # macro: P 5/8, R 3/4, F1 2/3, mAP (1 + 6/11)/2 = 17/22. (Default: micro P 1/2, map 9/16.)
    ref = story([("char1", "A sailor", LEFT), ("char2", "A child", RIGHT)])
    cand2 = story(
        [
            ("char1", "A sailor", LEFT),
            ("char3", "A ghost", SMALL),
            ("char4", "A ghost", "90,90,100,100"),
            ("char5", "A ghost", "45,0,55,10"),
        ]
    )
    scores = original([pair(ref, ref, story_id="s1"), pair(ref, cand2, story_id="s2")])
    check(
        scores.overall,
        {
            "precision_macro": F(5, 8),
            "recall_macro": F(3, 4),
            "f1_macro": F(2, 3),
            "precision_characters_macro": F(5, 8),
            "precision_objects_macro": 1,
            "map": F(17, 22),
            "map_macro": F(17, 22),
            "stories": 2,
            "missing": 0,
        },
    )
    assert "precision_micro" not in scores.overall


def test_missing_outputs_are_excluded():
    # s1 perfect, s2 missing: only s1 is averaged -> every metric 1.0, stories 1, missing 1.
    # (Default protocol: recall_macro 1/2, see test_grounding.py.)
    ref = story([("char1", "A sailor", LEFT)])
    scores = original([pair(ref, ref, story_id="s1"), pair(ref, None, story_id="s2")])
    check(scores.overall, {"precision_macro": 1, "recall_macro": 1, "f1_macro": 1, "map": 1})
    assert scores.overall["stories"] == 1 and scores.overall["missing"] == 1
    assert list(scores.per_story) == ["s1"]


def test_no_story_averages_to_zero():
    ref = story([("char1", "A sailor", LEFT)])
    scores = original([pair(ref, None)])
    check(scores.overall, {"precision_macro": 0, "recall_macro": 0, "map": 0, "stories": 0, "missing": 1})


# -- matching quirks --------------------------------------------------------------------------------


def test_boxes_match_across_images():
    # ref: image 1 (200x100) char1 0,0,100,50 -> (0, 0, .5, .5).
    # cand: image 2 (100x100) char1 0,0,50,50 -> (0, 0, .5, .5). Same normalised box: IoU 1, a match.
    # P = R = F1 = 1, AP 1. (Default protocol: no match, everything 0.)
    sizes = [(200, 100), (100, 100)]
    ref = story([("char1", "A sailor", "0,0,100,50")], [])
    cand = story([], [("char1", "A sailor", "0,0,50,50")])
    expect(scores_of(ref, cand, sizes), {"tp": 1, "precision": 1, "recall": 1, "f1": 1, "ap": 1})


def test_object_labels_are_ignored_except_person():
    # ref obj1 "Red car" (label "red"), cand obj1 "Blue car" (label "blue"), same box: both
    # non-person, so they match: P = R = 1.
    ref = story([("obj1", "Red car", RIGHT)])
    cand = story([("obj1", "Blue car", RIGHT)])
    expect(scores_of(ref, cand), {"precision": 1, "recall": 1, "precision_objects": 1})


def test_description_starting_with_person_counts_as_character():
    # cand obj1 "Person walking" -> label "person": it is a character and matches ref char1.
    # all: 1/1/1; characters: TP 1 -> 1/1/1; objects: both sides empty -> 1/1/1.
    # (Default protocol: an object, no match.)
    ref = story([("char1", "A sailor", LEFT)])
    cand = story([("obj1", "Person walking", LEFT)])
    row = scores_of(ref, cand)
    for v in VARIANTS:
        expect(row, {f"precision{v}": 1, f"recall{v}": 1, f"f1{v}": 1})
    assert object_label("Person walking") == "person"
    assert object_label("Red car") == "red"
    assert object_label("") == "object"
    assert object_label("person_shadow on wall") == "person-shadow"


def test_iou_on_clamped_boxes_lets_x_plus_w_pass_one():
    # cand 60,0,200,100 -> x .6, w (200-60)/100 = 1.4 clamped to 1.0, so it spans .6 .. 1.6.
    # ref 50,0,100,100 -> x .5, w .5. Intersection .4 x 1, union .5 + 1.0 - .4 = 1.1:
    # IoU 4/11 < 1/2, no match (clipping to the frame would have given .4/.5 = 0.8).
    ref = story([("obj1", "Door", "50,0,100,100")])
    cand = story([("obj1", "Door", "60,0,200,100")])
    (d,) = cot_detections(cand, [(100, 100)])
    assert (d.x, d.y, d.w, d.h) == (approx(0.6), 0.0, 1.0, 1.0)
    (r,) = cot_detections(ref, [(100, 100)])
    assert iou(r, d) == approx(F(4, 11))
    expect(scores_of(ref, cand), {"tp": 0, "precision": 0, "recall": 0})


def test_inverted_and_negative_boxes_are_clamped_not_skipped():
    # "80,0,20,100": w = -0.6 -> 0 (kept, zero area). "-10,0,50,100": x -0.1 -> 0, w 0.6.
    cand = story([("obj1", "Door", "80,0,20,100"), ("obj2", "Wall", "-10,0,50,100")])
    inverted, negative = cot_detections(cand, [(100, 100)])
    assert (inverted.x, inverted.w, inverted.h) == (0.8, 0.0, 1.0)
    assert (negative.x, negative.w) == (0.0, approx(0.6))
    # Both count as candidates: ref {obj1 0,0,60,100}: the negative box matches it
    # (IoU .6/.6 = 1 on the clamped box); the inverted one is a false positive. P 1/2, R 1.
    expect(scores_of(story([("obj1", "Wall", "0,0,60,100")]), cand), {"precision": F(1, 2), "recall": 1})


def test_two_zero_area_boxes_at_the_same_corner_have_iou_one():
    a = OriginalDetection("lamp", "1", 0.5, 0.5, 0.0, 0.0, 0)
    b = OriginalDetection("lamp", "2", 0.5, 0.5, 0.0, 0.0, 1)
    c = OriginalDetection("lamp", "2", 0.4, 0.5, 0.0, 0.0, 2)
    assert iou(a, b) == 1.0 and iou(a, c) == 0.0


# -- the 11-point AP ------------------------------------------------------------------------------


def test_thresholds_come_from_a_float_range():
    assert THRESHOLDS[3] == 0.30000000000000004
    assert THRESHOLDS[6] == 0.6000000000000001
    assert THRESHOLDS[7] == 0.7000000000000001
    assert len(THRESHOLDS) == 11 and THRESHOLDS[0] == 0.0 and THRESHOLDS[10] == 1.0


@pytest.mark.parametrize(
    ("n_ref", "n_hit", "ap"),
    [
        (10, 3, F(3, 11)),  # recall 0.3 < 0.30000000000000004: thresholds 0, .1, .2 only
        (5, 3, F(6, 11)),  # recall 0.6 < 0.6000000000000001: 0 .. .5
        (10, 7, F(7, 11)),  # recall 0.7 < 0.7000000000000001: 0 .. .6
        (10, 4, F(5, 11)),  # recall 0.4 reaches 0.4: 0 .. .4
    ],
)
def test_exact_recalls_miss_their_float_threshold(n_ref, n_hit, ap):
    # n_ref characters in 10 px strips; the candidate lists the first n_hit: precision 1 at
    # every rank, recall n_hit/n_ref at the end. AP = #(thresholds reached)/11.
    # (Default protocol 11-point: 4/11, 7/11, 8/11, see test_grounding.py.)
    strips = [(f"char{k + 1}", "A sailor", f"{10 * k},0,{10 * k + 10},100") for k in range(n_ref)]
    expect(scores_of(story(strips), story(strips[:n_hit])), {"precision": 1, "ap": ap})


def test_ap_depends_on_row_order():
    # ref {char1 LEFT, char2 RIGHT}; cand rows hit (LEFT) and miss (SMALL).
    # [hit, miss]: points (1, .5), (.5, .5) -> thresholds 0 .. .5 at precision 1 -> 6/11.
    # [miss, hit]: points (0, 0), (.5, .5) -> thresholds 0 .. .5 at precision .5 -> 3/11.
    # (Default protocol: 1/4 in both orders.)
    ref = story([("char1", "A sailor", LEFT), ("char2", "A child", RIGHT)])
    hit, miss = ("char1", "A sailor", LEFT), ("char3", "A ghost", SMALL)
    expect(scores_of(ref, story([hit, miss])), {"ap": F(6, 11), "precision": F(1, 2)})
    expect(scores_of(ref, story([miss, hit])), {"ap": F(3, 11), "precision": F(1, 2)})


# -- the original's reading of the CoT ------------------------------------------------------------


def test_an_image_section_beyond_the_images_drops_every_candidate_row():
    # Two frames; cand repeats the reference and adds "## Image 3": ValueError -> cand = {}.
    # Edge row "ref non-empty, cand empty": P 1, R 0, F1 0, AP 0.
    # (Default protocol: P 2/3, R 1.)
    ref = story([("char1", "A sailor", LEFT)], [("char1", "A sailor", LEFT)])
    cand = story([("char1", "A sailor", LEFT)], [("char1", "A sailor", LEFT)], [("char2", "A child", RIGHT)])
    sizes = [(100, 100)] * 2
    expect(scores_of(ref, cand, sizes), {"candidates": 0, "precision": 1, "recall": 0, "f1": 0, "ap": 0})
    with pytest.raises(ValueError):
        cot_detections(cand, sizes)
    assert story_detections(cand, sizes) == []


def test_decimal_box_is_skipped():
    # "10.4,10,50,50" is not four integers: the row is skipped -> cand = {} -> P 1, R 0.
    # (Default protocol: rounded and matched, P = R = 1.)
    ref = story([("char1", "A sailor", "10,10,50,50")])
    cand = story([("char1", "A sailor", "10.4,10,50,50")])
    expect(scores_of(ref, cand), {"candidates": 0, "precision": 1, "recall": 0})


def test_malformed_boxes_are_skipped_and_spaces_tolerated():
    cand = story(
        [
            ("char1", "A", "[10,10,50,50]"),
            ("char2", "A", "10,10,50"),
            ("char3", "A", "none"),
            ("char4", "A", "10, 10, 50, 50"),
        ]
    )
    (kept,) = cot_detections(cand, [(100, 100)])
    assert (kept.x, kept.y, kept.w, kept.h) == (0.1, 0.1, 0.4, 0.4)


LITERAL = """<think>
## Image 1

### Characters
| Character ID | Name | Description | Emotions | Actions | Narrative Function | Bounding Box |
|--------------|------|-------------|----------|---------|-------------------|--------------|
| char1 | Ines | Young woman in a raincoat | Determined | Climbing | Protagonist | 0,0,40,100 |
char2 | Tomas | Old keeper | Calm | Waiting | Mentor | 60,0,100,100 |
| char3 | Ana | Girl at the door | Shy | Waving | Helper | 40,0,60,50

### Objects
| Object ID | Description | Function | Interaction | Narrative Function | Bounding Box |
|-----------|-------------|----------|------------|-------------------|--------------|
| obj1 | Brass lantern | Light | Held by Ines | Hope | 10,10,20,20 |
| lm1 | White lighthouse | Landmark | Goal | Destination | 70,0,90,60 |
</think>
<gdi image1>
Ines climbs.
</gdi>"""


def test_literal_cot_is_read_with_the_original_rules():
    # char1: a normal row -> person (0, 0, .4, 1).
    # char2: no leading pipe -> its first column is lost, the box column reads the empty
    #        piece after the last pipe -> malformed -> skipped.
    # char3: no trailing pipe -> kept (its box is the piece after the last pipe).
    # obj1: label "brass". lm1: the last line of the stripped CoT has no newline -> dropped.
    detections = cot_detections(LITERAL, [(100, 100)])
    assert [(d.label, d.x, d.y, d.w, d.h) for d in detections] == [
        ("person", 0.0, 0.0, 0.4, 1.0),
        ("person", 0.4, 0.0, 0.2, 0.5),
        ("brass", 0.1, 0.1, 0.1, 0.1),
    ]


def test_only_the_think_block_and_exact_image_headings_count():
    body = story([("char1", "A sailor", LEFT)])
    assert cot_detections(body, [(100, 100)])  # the published form is read
    # no <think> pair: no CoT, no detections
    assert extract_cot(body.replace("<think>", "")) == ""
    assert cot_detections(body.replace("<think>", ""), [(100, 100)]) == []
    # "## Image 1:" is not an image heading
    assert cot_detections(body.replace("## Image 1", "## Image 1:"), [(100, 100)]) == []
    # "### Image 1" is (it contains "## Image 1")
    assert len(cot_detections(body.replace("## Image 1", "### Image 1"), [(100, 100)])) == 1


def test_sections_stop_at_the_first_missing_number():
    # Images 1 and 3 (no 2): only image 1 is read, so image 3's row is not even an error.
    text = story([("char1", "A", LEFT)], [("char2", "B", RIGHT)], [("char3", "C", SMALL)])
    text = text.replace("## Image 2", "## Scene 2")
    labels = [(d.image_id, d.x) for d in cot_detections(text, [(100, 100)] * 3)]
    assert labels == [("1", 0.0)]


def test_heading_followed_by_heading_gives_phantom_rows_without_boxes():
    # "### Characters" directly followed by "### Objects": the Characters "table" swallows the
    # Objects table; its rows have no "Bounding Box" column and are skipped, and the Objects
    # table is still read on its own: one detection, the lamp.
    text = story([("char1", "A sailor", LEFT), ("obj1", "Lamp", RIGHT)])
    start = text.index("### Characters")
    end = text.index("### Objects")
    text = text[:start] + "### Characters\n" + text[end:]
    assert [d.label for d in cot_detections(text, [(100, 100)])] == ["lamp"]


def test_reports_shape():
    scores = grounding([], protocol="original")
    assert scores.family == "grounding" and scores.extra["protocol"] == "original"
    assert scores.extra["labels"]["map"] == "mAP"
    assert any("11-point" in line for line in scores.conventions)


def test_one_matching_per_story_equals_matching_each_type_again():
    # The original re-matched after filtering to one type; story_scores counts the type's
    # pairs in the full matching. Same result on random stories with many ties and overlaps.
    rng = random.Random(7)
    for _ in range(300):
        dets = []
        for _side in range(2):
            rows = []
            for k in range(rng.randint(0, 7)):
                x, y = rng.choice([0, 10, 20]) / 100, rng.choice([0, 10]) / 100
                w, h = rng.choice([30, 40, 50]) / 100, rng.choice([50, 60]) / 100
                label = rng.choice(["person", "lamp", "sea"])
                rows.append(OriginalDetection(label, str(rng.randint(1, 3)), x, y, w, h, k))
            dets.append(rows)
        refs, cands = dets
        row = story_scores(refs, cands)
        for suffix, person in (("_characters", True), ("_objects", False)):
            r = [d for d in refs if d.is_person == person]
            c = [d for d in cands if d.is_person == person]
            assert row[f"tp{suffix}"] == len(match(r, c))
