"""Grounding under the default protocol, on hand-built stories with hand-computed answers.

Frames are 100 x 100 pixels unless a test says otherwise, so a box ``x1,y1,x2,y2`` is
also its percentage of the frame. Every expected number is worked out in a comment.
The original protocol's answers for the same situations are in ``test_original.py``.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction as F

import pytest

from storyreasoning.evaluate.detections import telling_detections
from storyreasoning.evaluate.grounding import (
    EXACT_FLOAT_UNION,
    grounding,
    iou_exact,
    ious,
    match_detections,
    overlap,
)
from storyreasoning.evaluate.pairs import StoryPair
from storyreasoning.format.stream import parse_output

CHAR_HEADER = (
    "| Character ID | Name | Description | Emotions | Actions | Narrative Function | Bounding Box |\n"
    "|--------------|------|-------------|----------|---------|-------------------|--------------|"
)
OBJ_HEADER = (
    "| Object ID | Description | Function | Interaction | Narrative Function | Bounding Box |\n"
    "|-----------|-------------|----------|------------|-------------------|--------------|"
)
SETTING = (
    "| Setting Element | Description | Mood | Time | Narrative Function |\n"
    "|-----------------|-------------|------|------|-------------------|\n"
    "| Location | A quiet harbour | Calm | Dusk | Opening scene |"
)
NARRATIVE = (
    "## Narrative Structure\n\n"
    "| Narrative Phase | Description | Key Events | Images |\n"
    "|-----------------|-------------|-----------|--------|\n"
    "| Introduction | The harbour at dusk | Arrival | 1 |"
)


def story(*images: list[tuple[str, str, str]], narrative: bool = True) -> str:
    """A complete model output: ``<think>`` CoT ``</think>`` story, in the published layout.

    Each image is a list of rows ``(id, description, box)``; ``char…`` ids go to the
    Characters table, every other id to the Objects table, in the order given.
    """
    parts = ["<think>"]
    for n, rows in enumerate(images, 1):
        parts += [f"## Image {n}", "", "### Characters", CHAR_HEADER]
        parts += [
            f"| {i} | Someone | {d} | Calm | Waiting | Protagonist | {b} |"
            for i, d, b in rows
            if i.startswith("char")
        ]
        parts += ["", "### Objects", OBJ_HEADER]
        parts += [
            f"| {i} | {d} | Prop | None | Detail | {b} |" for i, d, b in rows if not i.startswith("char")
        ]
        parts += ["", "### Setting", SETTING, "", ""]
    if narrative:
        parts.append(NARRATIVE)
    parts += ["</think>", "<gdi image1>", "A quiet evening.", "</gdi>"]
    return "\n".join(parts)


def pair(reference: str, candidate: str | None, sizes=None, story_id: str = "s") -> StoryPair:
    """A story pair; frames are 100 x 100 unless ``sizes`` says otherwise."""
    n = reference.count("## Image ")
    sizes = sizes if sizes is not None else [(100, 100)] * max(n, 1)
    return StoryPair.from_texts(story_id, reference, candidate, sizes)


def approx(value):
    return pytest.approx(float(value), rel=1e-12, abs=0)


def check(row: dict, expected: dict) -> None:
    for key, value in expected.items():
        if value is None:
            assert row[key] is None, key
        else:
            assert row[key] == approx(value), key


# Boxes used throughout (100 x 100 frames).
LEFT = "0,0,40,100"  # area 4000
RIGHT = "60,0,100,100"  # area 4000, disjoint from LEFT
SMALL = "0,0,10,10"  # IoU with LEFT = 100/4000: never a match
EMPTY = story([])


# -- the edge-case table, default protocol ---------------------------------------------------


def test_both_empty_is_undefined_everywhere():
    # ref = {}, cand = {}: every ratio is 0/0 -> None; AP has no recall axis -> None.
    scores = grounding([pair(EMPTY, EMPTY)])
    row = scores.per_story["s"]
    for variant in ("", "_characters", "_objects"):
        check(row, {f"precision{variant}": None, f"recall{variant}": None, f"f1{variant}": None})
    check(row, {"ap": None, "ap_11point": None, "tp": 0, "fp": 0, "fn": 0})
    overall = scores.overall
    check(overall, {"precision_micro": None, "precision_macro": None, "f1_micro": None, "map": None})


def test_no_reference_rows_but_candidates():
    # ref = {}, cand = {char1, obj1}: TP 0, FP 2, FN 0.
    # P = 0/2 = 0, R = 0/0 undefined, F1 = 0/(0+2+0) = 0; per group the same with 1 FP each.
    cand = story([("char1", "A sailor", LEFT), ("obj1", "Lamp", RIGHT)])
    row = grounding([pair(EMPTY, cand)]).per_story["s"]
    for variant in ("", "_characters", "_objects"):
        check(row, {f"precision{variant}": 0, f"recall{variant}": None, f"f1{variant}": 0})
    check(row, {"ap": None, "tp": 0, "fp": 2, "fn": 0, "fp_characters": 1, "fp_objects": 1})


def test_reference_rows_but_no_candidates():
    # ref = {char1, obj1}, cand = {}: TP 0, FP 0, FN 2.
    # P = 0/0 undefined, R = 0/2 = 0, F1 = 0/(0+0+2) = 0; AP = 0 (an empty curve).
    ref = story([("char1", "A sailor", LEFT), ("obj1", "Lamp", RIGHT)])
    row = grounding([pair(ref, EMPTY)]).per_story["s"]
    for variant in ("", "_characters", "_objects"):
        check(row, {f"precision{variant}": None, f"recall{variant}": 0, f"f1{variant}": 0})
    check(row, {"ap": 0, "ap_11point": 0, "fn": 2})


def test_groups_each_follow_the_same_rule():
    # ref = {char1 LEFT}, cand = {obj1 RIGHT}: the groups never meet.
    # all: TP 0, FP 1, FN 1 -> P 0, R 0, F1 0, AP = 0*0 = 0.
    # characters: cand empty -> P undefined, R 0/1 = 0, F1 0.
    # objects: ref empty -> P 0/1 = 0, R undefined, F1 0.
    ref = story([("char1", "A sailor", LEFT)])
    cand = story([("obj1", "Lamp", RIGHT)])
    row = grounding([pair(ref, cand)]).per_story["s"]
    check(row, {"precision": 0, "recall": 0, "f1": 0, "ap": 0})
    check(row, {"precision_characters": None, "recall_characters": 0, "f1_characters": 0})
    check(row, {"precision_objects": 0, "recall_objects": None, "f1_objects": 0})


def test_undefined_stories_are_left_out_of_macro_and_add_nothing_to_micro():
    # s1: both empty (all undefined). s2: ref {char1 LEFT, char2 RIGHT}, cand {char1 LEFT}:
    # TP 1, FP 0, FN 1 -> P 1, R 1/2, F1 2/3, AP 1/2.
    # macro = s2 alone (s1 undefined); micro = s2's counts (s1 adds zeros).
    ref2 = story([("char1", "A sailor", LEFT), ("char2", "A child", RIGHT)])
    cand2 = story([("char1", "A sailor", LEFT)])
    scores = grounding([pair(EMPTY, EMPTY, story_id="s1"), pair(ref2, cand2, story_id="s2")])
    check(
        scores.overall,
        {
            "precision_macro": 1,
            "precision_micro": 1,
            "recall_macro": F(1, 2),
            "recall_micro": F(1, 2),
            "f1_macro": F(2, 3),
            "f1_micro": F(2, 3),
            "map": F(1, 2),
            "stories": 2,
        },
    )


# -- micro and macro ----------------------------------------------------------------------------


def test_micro_and_macro_differ_as_computed_by_hand():
    # s1: ref {char1 LEFT, char2 RIGHT}, cand the same -> TP 2, FP 0, FN 0.
    # s2: ref {char1 LEFT, char2 RIGHT}, cand {char1 LEFT, three misses} -> TP 1, FP 3, FN 1.
    # micro: TP 3, FP 3, FN 1 -> P 3/6 = 1/2, R 3/4, F1 6/(6+3+1) = 3/5.
    # macro: P (1 + 1/4)/2 = 5/8, R (1 + 1/2)/2 = 3/4, F1 (1 + 2/6)/2 = 2/3.
    # AP: s1 1*1 = 1, s2 1/4 * 1/2 = 1/8 -> map (macro) 9/16; map_micro = 1/2 * 3/4 = 3/8.
    # 11-point: s1 1; s2 1/4 * (thresholds <= 1/2: 6)/11 = 3/22 -> macro 25/44;
    #           micro 1/2 * (thresholds <= 3/4: 8)/11 = 4/11.
    ref = story([("char1", "A sailor", LEFT), ("char2", "A child", RIGHT)])
    cand2 = story(
        [
            ("char1", "A sailor", LEFT),
            ("char3", "A ghost", SMALL),
            ("char4", "A ghost", "90,90,100,100"),
            ("char5", "A ghost", "45,0,55,10"),
        ]
    )
    scores = grounding([pair(ref, ref, story_id="s1"), pair(ref, cand2, story_id="s2")])
    check(
        scores.overall,
        {
            "precision_micro": F(1, 2),
            "recall_micro": F(3, 4),
            "f1_micro": F(3, 5),
            "precision_macro": F(5, 8),
            "recall_macro": F(3, 4),
            "f1_macro": F(2, 3),
            "precision_characters_micro": F(1, 2),
            "f1_characters_macro": F(2, 3),
            "precision_objects_micro": None,
            "map": F(9, 16),
            "map_macro": F(9, 16),
            "map_micro": F(3, 8),
            "map_11point_macro": F(25, 44),
            "map_11point_micro": F(4, 11),
            "tp": 3,
            "fp": 3,
            "fn": 1,
        },
    )
    check(scores.per_story["s2"], {"tp": 1, "fp": 3, "fn": 1, "precision": F(1, 4), "f1": F(1, 3)})


# -- the differences from the original ------------------------------------------------------------


def test_boxes_match_within_their_own_image_only():
    # ref: image 1 (200x100) char1 at 0,0,100,50; cand: image 2 (100x100) char1 at 0,0,50,50.
    # Normalised they are the same box, but they are in different images: no match.
    # TP 0, FP 1, FN 1 -> P 0, R 0, F1 0, AP 0.  (The original scores 1.0: test_original.py.)
    sizes = [(200, 100), (100, 100)]
    ref = story([("char1", "A sailor", "0,0,100,50")], [])
    cand = story([], [("char1", "A sailor", "0,0,50,50")])
    row = grounding([pair(ref, cand, sizes)]).per_story["s"]
    check(row, {"tp": 0, "fp": 1, "fn": 1, "precision": 0, "recall": 0, "f1": 0, "ap": 0})


@pytest.mark.parametrize(
    ("n_ref", "n_hit", "recall", "ap11"),
    [
        (10, 3, F(3, 10), F(4, 11)),  # thresholds 0, .1, .2, .3 reached: 4
        (5, 3, F(3, 5), F(7, 11)),  # 0 .. .6 reached: 7
        (10, 7, F(7, 10), F(8, 11)),  # 0 .. .7 reached: 8
    ],
)
def test_exact_recalls_reach_their_11_point_threshold(n_ref, n_hit, recall, ap11):
    # n_ref characters in vertical strips 10 px wide; the candidate gives the first n_hit.
    # P = 1, R = n_hit/n_ref; AP = P*R = R; 11-point AP = P * #(i/10 <= R)/11.
    strips = [(f"char{k + 1}", "A sailor", f"{10 * k},0,{10 * k + 10},100") for k in range(n_ref)]
    row = grounding([pair(story(strips), story(strips[:n_hit]))]).per_story["s"]
    check(row, {"precision": 1, "recall": recall, "ap": recall, "ap_11point": ap11})


def test_ap_does_not_depend_on_row_order():
    # ref {char1 LEFT, char2 RIGHT}; cand {char1 LEFT (hit), char3 SMALL (miss)} in both orders.
    # TP 1, FP 1, FN 1 -> AP = 1/2 * 1/2 = 1/4; 11-point = 1/2 * 6/11 = 3/11, either order.
    ref = story([("char1", "A sailor", LEFT), ("char2", "A child", RIGHT)])
    hit, miss = ("char1", "A sailor", LEFT), ("char3", "A ghost", SMALL)
    for rows in ([hit, miss], [miss, hit]):
        row = grounding([pair(ref, story(rows))]).per_story["s"]
        check(row, {"ap": F(1, 4), "ap_11point": F(3, 11)})


def test_missing_output_scores_as_empty():
    # s1 perfect (ref = cand = {char1 LEFT}); s2 missing, ref {char1 LEFT}.
    # s2: TP 0, FP 0, FN 1 -> P undefined, R 0, F1 0, AP 0.
    # macro P = 1 (s2 undefined), R (1+0)/2 = 1/2, F1 1/2, map 1/2;
    # micro TP 1, FP 0, FN 1 -> P 1, R 1/2, F1 2/3; map_micro 1 * 1/2 = 1/2.
    ref = story([("char1", "A sailor", LEFT)])
    scores = grounding([pair(ref, ref, story_id="s1"), pair(ref, None, story_id="s2")])
    check(
        scores.overall,
        {
            "stories": 2,
            "missing": 1,
            "precision_macro": 1,
            "recall_macro": F(1, 2),
            "f1_macro": F(1, 2),
            "map": F(1, 2),
            "precision_micro": 1,
            "recall_micro": F(1, 2),
            "f1_micro": F(2, 3),
            "map_micro": F(1, 2),
        },
    )
    check(scores.per_story["s2"], {"missing": 1, "precision": None, "recall": 0, "fn": 1})


def test_an_extra_image_section_only_invalidates_its_own_rows():
    # Two frames. ref: char1 LEFT in both. cand: the same, plus "## Image 3" with char2.
    # The image-3 row is invalid (no such frame): FP. TP 2, FP 1, FN 0 -> P 2/3, R 1, F1 4/5.
    ref = story([("char1", "A sailor", LEFT)], [("char1", "A sailor", LEFT)])
    cand = story([("char1", "A sailor", LEFT)], [("char1", "A sailor", LEFT)], [("char2", "A child", RIGHT)])
    scores = grounding([pair(ref, cand, [(100, 100)] * 2)])
    check(scores.per_story["s"], {"tp": 2, "fp": 1, "precision": F(2, 3), "recall": 1, "f1": F(4, 5)})
    assert scores.overall["invalid_boxes"] == 1


def test_decimal_box_is_rounded_and_matched():
    # "10.4,10,50,50" reads as 10,10,50,50 (rounded), which is the reference box: P = R = 1.
    ref = story([("char1", "A sailor", "10,10,50,50")])
    cand = story([("char1", "A sailor", "10.4,10,50,50")])
    check(grounding([pair(ref, cand)]).per_story["s"], {"precision": 1, "recall": 1})


def test_group_comes_from_the_id_not_the_description():
    # cand obj1 "Person walking" at the reference character's box: an object, so no match.
    # all: TP 0, FP 1, FN 1; characters: P undefined, R 0; objects: P 0, R undefined.
    ref = story([("char1", "A sailor", LEFT)])
    cand = story([("obj1", "Person walking", LEFT)])
    row = grounding([pair(ref, cand)]).per_story["s"]
    check(row, {"tp": 0, "precision_characters": None, "recall_characters": 0, "precision_objects": 0})


def test_objects_backgrounds_and_landmarks_form_one_group():
    # ref bg1 and lm1; cand calls them obj1 and obj2 at the same boxes: TP 2 in the objects group.
    ref = story([("bg1", "Sea", "0,0,100,30"), ("lm1", "Lighthouse", RIGHT)])
    cand = story([("obj1", "Sea", "0,0,100,30"), ("obj2", "Tower", RIGHT)])
    row = grounding([pair(ref, cand)]).per_story["s"]
    check(row, {"tp_objects": 2, "precision_objects": 1, "recall_objects": 1, "tp_characters": 0})


# -- invalid boxes and matching ----------------------------------------------------------------------


def test_invalid_candidate_boxes_are_counted_and_never_match():
    # Five candidate rows at the reference box's place, each invalid in its own way, plus one good row.
    # TP 1 (the good row), FP 5, FN 0 -> P 1/6, R 1; invalid_boxes 5.
    ref = story([("char1", "A sailor", LEFT)])
    cand = story(
        [
            ("char2", "A sailor", "none"),  # no box
            ("char3", "A sailor", "40,0,0,100"),  # inverted
            ("char4", "A sailor", "0.0,0.0,0.4,1.0"),  # normalised, not pixels
            ("char5", "A sailor", "100,0,140,100"),  # starts at the right edge
            ("char6", "A sailor", "0,0,40,120"),  # ends 20 % below the bottom edge
            ("char1", "A sailor", LEFT),
        ]
    )
    scores = grounding([pair(ref, cand)])
    check(scores.per_story["s"], {"tp": 1, "fp": 5, "fn": 0, "precision": F(1, 6), "recall": 1})
    assert scores.overall["invalid_boxes"] == 5
    assert scores.overall["invalid_boxes_reference"] == 0
    problems = [d.problem for d in telling_detections(parse_output(cand), [(100, 100)])]
    assert problems == ["no-box", "empty-box", "no-box", "outside-image", "outside-image", None]


def test_boxes_within_tolerance_are_clipped():
    # "-5,0,40,105" is clipped to 0,0,40,100 = LEFT: a match.
    cand = story([("char1", "A sailor", "-5,0,40,105")])
    (detection,) = telling_detections(parse_output(cand), [(100, 100)])
    assert detection.valid and str(detection.box) == "0,0,40,100"
    check(grounding([pair(story([("char1", "A sailor", LEFT)]), cand)]).per_story["s"], {"tp": 1})


def test_invalid_reference_boxes_are_left_out():
    # ref {char1 LEFT, char2 "none"}: char2 cannot be scored; cand {char1 LEFT} -> TP 1, FN 0.
    ref = story([("char1", "A sailor", LEFT), ("char2", "A child", "none")])
    scores = grounding([pair(ref, story([("char1", "A sailor", LEFT)]))])
    check(scores.per_story["s"], {"tp": 1, "fn": 0, "recall": 1})
    assert scores.overall["invalid_boxes_reference"] == 1


def test_threshold_is_inclusive_and_exact():
    # ref 0,0,50,100 (area 5000); cand 0,0,100,100 (area 10000): IoU 5000/10000 = 1/2 exactly -> match.
    # ref 0,0,25,100 (area 2500) vs cand 0,0,51,100 (area 5100): IoU 2500/5100 = 25/51 < 1/2.
    ref = story([("char1", "A sailor", "0,0,50,100")])
    check(grounding([pair(ref, story([("char1", "A", "0,0,100,100")]))]).per_story["s"], {"tp": 1})
    ref2 = story([("char1", "A sailor", "0,0,25,100")])
    check(grounding([pair(ref2, story([("char1", "A", "0,0,51,100")]))]).per_story["s"], {"tp": 0})


@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.7, 1 / 3, 0.0, 1.0])
def test_overlap_decides_the_threshold_exactly_as_iou_exact(threshold):
    rng = random.Random(int(threshold * 1000))
    limit = F(threshold)
    sizes = [(100, 100)]
    for _ in range(400):
        boxes = []
        for _ in range(2):
            x1, y1 = rng.randint(0, 60), rng.randint(0, 60)
            boxes.append(f"{x1},{y1},{x1 + rng.randint(1, 40)},{y1 + rng.randint(1, 40)}")
        a, b = (telling_detections(parse_output(story([("char1", "A", box)])), sizes)[0] for box in boxes)
        exact = iou_exact(a, b)
        expected = exact if exact >= limit and exact > 0 else None
        found = overlap(a, b, limit)  # (intersection, union)
        assert (F(*found) if found is not None else None) == expected, boxes


def test_float_ious_rank_exactly_as_the_fractions_below_the_union_limit():
    """Neighbours in the Farey sequence (the closest two fractions of such denominators can be) and
    equal fractions written differently: the floats keep every order and every tie."""
    rng = random.Random(7)
    limit = EXACT_FLOAT_UNION
    cases = []
    for _ in range(3000):
        q1 = rng.randrange(limit // 64, limit)
        p1 = rng.randrange(1, q1)
        # p1/q1's neighbour p2/q2 with p2*q1 - p1*q2 = 1 (when gcd(p1, q1) = 1): the gap is 1/(q1*q2)
        if math.gcd(p1, q1) != 1:
            continue
        q2 = pow(p1, -1, q1) * -1 % q1  # p2*q1 = 1 + p1*q2  =>  p1*q2 = -1 (mod q1)
        if q2 == 0:
            continue
        p2 = (1 + p1 * q2) // q1
        assert F(p2, q2) - F(p1, q1) == F(1, q1 * q2)
        k = rng.randrange(1, max(2, limit // q1))
        cases.append([(p1, q1, 0, 0), (p2, q2, 1, 1), (p1 * k, q1 * k, 2, 2)])
    assert len(cases) > 1000
    for pairs in cases:
        pairs = [p for p in pairs if p[1] < limit]
        fast = ious(pairs)
        assert all(isinstance(iou, float) for iou, _, _ in fast)
        exact = [(F(inter, union), i, j) for inter, union, i, j in pairs]
        assert sorted(range(len(pairs)), key=lambda k: (-fast[k][0], k)) == sorted(
            range(len(pairs)), key=lambda k: (-exact[k][0], k)
        )
        for x in range(len(pairs)):
            for y in range(len(pairs)):
                assert (fast[x][0] == fast[y][0]) == (exact[x][0] == exact[y][0])


def test_a_union_past_the_limit_ranks_every_pair_as_a_fraction():
    pairs = [(1, 3, 0, 0), (EXACT_FLOAT_UNION, EXACT_FLOAT_UNION * 3 + 1, 1, 1)]
    assert [type(iou) for iou, _, _ in ious(pairs)] == [F, F]
    assert [type(iou) for iou, _, _ in ious(pairs[:1])] == [float]
    # boxes on a 10,000-pixel frame: matched as before, through fractions
    big = [(10_000, 10_000)]
    refs = telling_detections(parse_output(story([("char1", "A", "0,0,9000,9000")])), big)
    cands = telling_detections(
        parse_output(story([("char1", "A", "0,0,9000,8999"), ("char2", "A", "0,0,9000,9000")])), big
    )
    assert match_detections(refs, cands) == [(0, 1)]


def test_greedy_matching_takes_the_best_overlap_first_and_breaks_ties_by_row():
    # ref r0 = 0,0,40,100; cands c0 = 0,0,50,100 (IoU 40/50 = 0.8), c1 = 0,0,40,100 (IoU 1).
    # c1 is taken first. Two identical candidates: the earlier row wins.
    refs = telling_detections(parse_output(story([("char1", "A", LEFT)])), [(100, 100)])
    cands = telling_detections(
        parse_output(story([("char1", "A", "0,0,50,100"), ("char2", "A", LEFT)])), [(100, 100)]
    )
    assert match_detections(refs, cands) == [(0, 1)]
    twins = telling_detections(
        parse_output(story([("char1", "A", LEFT), ("char2", "A", LEFT)])), [(100, 100)]
    )
    assert match_detections(refs, twins) == [(0, 0)]


def test_unknown_protocol_is_refused():
    with pytest.raises(ValueError, match="unknown grounding protocol"):
        grounding([], protocol="paper")


def test_no_stories_and_scores_shape():
    scores = grounding([])
    assert scores.family == "grounding"
    assert scores.overall["stories"] == 0 and scores.overall["precision_micro"] is None
    assert any("empty sets" in line for line in scores.conventions)
    assert scores.to_dict()["extra"]["protocol"] == "default"
