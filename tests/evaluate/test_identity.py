"""Identity: ID precision/recall/F1 and cross-frame links, on stories with hand-computed answers.

The stories have three 100 x 100 frames and two people who stand apart: L at the
left (``0,0,40,100``) and R at the right (``60,0,100,100``); their boxes never overlap.
"""

from __future__ import annotations

import itertools
import random
import subprocess
import sys
from fractions import Fraction as F

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storyreasoning.errors import UsageError
from storyreasoning.evaluate.detections import telling_detections
from storyreasoning.evaluate.grounding import match_detections
from storyreasoning.evaluate.identity import (
    SMALL_ASSIGNMENT,
    assign,
    best_total,
    identity,
    max_total,
    track_similarity,
    tracks,
)
from storyreasoning.format.stream import parse_output

from .test_grounding import LEFT, RIGHT, check, pair, story

SIZES = [(100, 100)] * 3


def two_people(ids_per_frame: list[tuple[str, str]]) -> str:
    """Three frames; frame k lists (id of the person at L, id of the person at R)."""
    return story(*[[(left, "A person", LEFT), (right, "A person", RIGHT)] for left, right in ids_per_frame])


REFERENCE = two_people([("char1", "char2")] * 3)


def scores_of(reference: str, candidate: str | None) -> dict:
    return identity([pair(reference, candidate, SIZES)]).per_story["s"]


def test_perfect_prediction_scores_one():
    # 6 rows, every id's track equals the reference's: IDTP 6, IDFP 0, IDFN 0.
    # Links: each id is in 3 frames -> 3 pairs; 6 predicted, 6 reference, all correct.
    row = scores_of(REFERENCE, REFERENCE)
    check(row, {"idtp": 6, "idfp": 0, "idfn": 0, "idp": 1, "idr": 1, "idf1": 1})
    check(row, {"links_predicted": 6, "links_reference": 6, "link_precision": 1, "link_recall": 1})


def test_renamed_ids_still_score_one():
    # The prediction calls them char7 and char9: the assignment pairs char7-char1, char9-char2.
    row = scores_of(REFERENCE, two_people([("char7", "char9")] * 3))
    check(row, {"idf1": 1, "idf1_characters": 1, "link_precision": 1, "link_recall": 1})


def test_swap_in_frame_two():
    # Prediction: frame 1 (char1 L, char2 R), frame 2 (char2 L, char1 R), frame 3 (char1 L, char2 R).
    # Similarity (frames where the boxes agree):
    #            ref char1  ref char2
    #   char1        2          1        (frames 1, 3 at L; frame 2 at R)
    #   char2        1          2
    # Best assignment: the diagonal, IDTP 4; IDFP 6 - 4 = 2; IDFN 6 - 4 = 2.
    # IDP = IDR = 4/6 = 2/3, IDF1 = 8/(8+2+2) = 2/3.
    # Links: char1 pairs (f1 L, f2 R) wrong, (f1 L, f3 L) right, (f2 R, f3 L) wrong: 1 of 3;
    # char2 likewise 1 of 3 -> precision 2/6 = 1/3; reference links 6, recovered 2 -> 1/3.
    row = scores_of(REFERENCE, two_people([("char1", "char2"), ("char2", "char1"), ("char1", "char2")]))
    check(row, {"idtp": 4, "idfp": 2, "idfn": 2, "idp": F(2, 3), "idr": F(2, 3), "idf1": F(2, 3)})
    check(row, {"links_predicted": 6, "links_correct": 2, "link_precision": F(1, 3), "link_recall": F(1, 3)})


def test_split_identity():
    # Reference: one person, char1 at L in frames 1-3. Prediction: char1 in frames 1-2, char3 in frame 3.
    # Similarity char1-char1 = 2, char3-char1 = 1; one reference id -> char1 assigned: IDTP 2.
    # IDFP 3 - 2 = 1, IDFN 3 - 2 = 1 -> IDP = IDR = IDF1 = 2/3.
    # Links: predicted 1 (char1 f1-f2), correct -> precision 1; reference 3 pairs, 1 recovered -> 1/3.
    ref = story(*[[("char1", "A person", LEFT)]] * 3)
    cand = story([("char1", "A person", LEFT)], [("char1", "A person", LEFT)], [("char3", "A person", LEFT)])
    row = scores_of(ref, cand)
    check(row, {"idtp": 2, "idfp": 1, "idfn": 1, "idp": F(2, 3), "idr": F(2, 3), "idf1": F(2, 3)})
    check(row, {"links_predicted": 1, "links_reference": 3, "link_precision": 1, "link_recall": F(1, 3)})


def test_merged_identity():
    # Reference: char1 at L in frames 1-2, char2 (someone else) at R in frame 3.
    # Prediction: char1 for all three rows.
    # Similarity char1-char1 = 2, char1-char2 = 1 -> char1-char1: IDTP 2, IDFP 1, IDFN 1 -> 2/3.
    # Links: predicted 3 pairs, only (f1, f2) correct -> 1/3; reference 1 pair, recovered -> 1.
    ref = story([("char1", "A person", LEFT)], [("char1", "A person", LEFT)], [("char2", "A person", RIGHT)])
    cand = story([("char1", "A person", LEFT)], [("char1", "A person", LEFT)], [("char1", "A person", RIGHT)])
    row = scores_of(ref, cand)
    check(row, {"idtp": 2, "idfp": 1, "idfn": 1, "idf1": F(2, 3)})
    check(row, {"links_predicted": 3, "links_reference": 1, "link_precision": F(1, 3), "link_recall": 1})


def test_objects_group_spans_obj_bg_and_lm():
    # Reference bg1 (sea) in frames 1-3; the prediction calls it obj4: same track, objects group.
    # A character id for the same box is in the other group and matches nothing.
    ref = story(*[[("bg1", "Sea", "0,0,100,30")]] * 3)
    row = scores_of(ref, story(*[[("obj4", "Sea", "0,0,100,30")]] * 3))
    check(row, {"idf1_objects": 1, "idf1": 1, "link_precision_objects": 1, "idf1_characters": None})
    row = scores_of(ref, story(*[[("char4", "Sea", "0,0,100,30")]] * 3))
    check(row, {"idtp": 0, "idfp_characters": 3, "idfn_objects": 3, "idf1": 0, "link_precision": 0})


def test_invalid_candidate_rows_count_as_predictions():
    # The prediction repeats the reference but gives char2 no box in frame 3:
    # that row cannot match. IDTP 5, IDFP 1, IDFN 1 -> IDF1 10/12 = 5/6.
    # Links: char2's 3 pairs, two of them through the box-less row -> wrong: 4 of 6 correct -> 2/3.
    cand = story(
        [("char1", "A person", LEFT), ("char2", "A person", RIGHT)],
        [("char1", "A person", LEFT), ("char2", "A person", RIGHT)],
        [("char1", "A person", LEFT), ("char2", "A person", "none")],
    )
    row = scores_of(REFERENCE, cand)
    check(row, {"idtp": 5, "idfp": 1, "idfn": 1, "idf1": F(5, 6)})
    check(row, {"links_predicted": 6, "links_correct": 4, "link_precision": F(2, 3), "link_recall": F(2, 3)})


def test_missing_output_and_micro_macro():
    # s1: split identity (IDTP 2, IDFP 1, IDFN 1; links pred 1 correct 1, ref 3).
    # s2: perfect two-person story (IDTP 6; links 6 of 6).
    # s3: missing, reference = the two-person story: IDTP 0, IDFP 0, IDFN 6; links pred 0, ref 6.
    # micro IDF1 = 2*8/(2*8 + 1 + 7) = 16/24 = 2/3; macro (2/3 + 1 + 0)/3 = 5/9.
    # micro IDP = 8/9; macro IDP = (2/3 + 1)/2 = 5/6 (s3 undefined).
    # links: micro precision (1+6)/(1+6) = 1, recall 7/(3+6+6) = 7/15;
    #        macro precision 1 (s3 undefined), recall (1/3 + 1 + 0)/3 = 4/9.
    ref1 = story(*[[("char1", "A person", LEFT)]] * 3)
    cand1 = story([("char1", "A person", LEFT)], [("char1", "A person", LEFT)], [("char3", "A person", LEFT)])
    scores = identity(
        [
            pair(ref1, cand1, SIZES, "s1"),
            pair(REFERENCE, REFERENCE, SIZES, "s2"),
            pair(REFERENCE, None, SIZES, "s3"),
        ]
    )
    check(
        scores.overall,
        {
            "idf1_micro": F(2, 3),
            "idf1_macro": F(5, 9),
            "idp_micro": F(8, 9),
            "idp_macro": F(5, 6),
            "idr_micro": F(8, 15),
            "link_precision_micro": 1,
            "link_recall_micro": F(7, 15),
            "link_precision_macro": 1,
            "link_recall_macro": F(4, 9),
            "idtp": 8,
            "stories": 3,
            "missing": 1,
        },
    )
    check(
        scores.per_story["s3"], {"idp": None, "idr": 0, "idf1": 0, "link_precision": None, "link_recall": 0}
    )
    assert scores.family == "identity"


def test_empty_story_is_undefined():
    row = scores_of(story([], [], []), story([], [], []))
    check(row, {"idp": None, "idr": None, "idf1": None, "link_precision": None, "link_recall": None})


# -- the assignment ---------------------------------------------------------------------------------


def brute_force(weights: list[list[int]]) -> int:
    n, m = len(weights), len(weights[0])
    if n <= m:
        return max(
            sum(weights[i][c] for i, c in enumerate(cols)) for cols in itertools.permutations(range(m), n)
        )
    return max(sum(weights[r][j] for j, r in enumerate(rows)) for rows in itertools.permutations(range(n), m))


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (3, 2), (3, 3), (4, 2), (4, 5), (5, 5)])
def test_assignment_is_optimal(shape):
    rng = random.Random(sum(shape))
    for _ in range(40):
        weights = [[rng.randint(0, 4) for _ in range(shape[1])] for _ in range(shape[0])]
        pairs = assign(weights)
        assert len(pairs) == min(shape)
        assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == len(pairs)
        assert sum(weights[r][c] for r, c in pairs) == brute_force(weights)


def test_assignment_of_nothing():
    assert assign([]) == [] and assign([[]]) == [] and assign([[], []]) == []


def test_assignment_keeps_pairs_of_zero_weight():
    # one pair per row or per column, whichever is fewer, even where nothing overlaps
    assert assign([[0, 0], [0, 0]]) in ([(0, 0), (1, 1)], [(0, 1), (1, 0)])
    assert assign([[0, 3, 0]]) == [(0, 1)]
    assert len(assign([[0], [0], [0]])) == 1


def test_assignment_without_scipy_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)  # as if SciPy were not installed
    with pytest.raises(UsageError, match=r"pip install 'storyreasoning\[eval\]'"):
        assign([[1]])
    assert assign([]) == []  # nothing to assign needs no SciPy


def matrices(low: int, high: int):
    """Integer matrices of 1 to 5 rows and columns, values from ``low`` to ``high``."""
    return st.integers(1, 5).flatmap(
        lambda n: st.integers(1, 5).flatmap(
            lambda m: st.lists(
                st.lists(st.integers(low, high), min_size=m, max_size=m), min_size=n, max_size=n
            )
        )
    )


@settings(max_examples=300, deadline=None)
@given(matrices(-3, 6))
def test_assignment_matches_brute_force(weights):
    pairs = assign(weights)
    assert pairs == sorted(pairs)
    assert len(pairs) == min(len(weights), len(weights[0]))
    assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == len(pairs)
    assert sum(weights[r][c] for r, c in pairs) == brute_force(weights)


@settings(max_examples=400, deadline=None)
@given(matrices(0, 4))
def test_best_total_is_the_optimum(weights):
    # rows or columns whose maxima sit in distinct places need no solver; the rest go to assign
    assert best_total(weights) == brute_force(weights)


def test_best_total_needs_scipy_only_for_contested_maxima_past_the_small_size(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)  # as if SciPy were not installed
    assert best_total([[3, 0, 1], [0, 2, 0]]) == 5  # each row's maximum in its own column
    assert best_total([[3, 0], [2, 0], [1, 0]]) == 3  # rows collide, each column's maximum in its own row
    assert best_total([[0, 0], [0, 0]]) == 0 and best_total([]) == 0 and best_total([[]]) == 0
    assert best_total([[2, 2], [2, 1]]) == 4  # both maxima contested: our solver decides
    big = SMALL_ASSIGNMENT + 1
    with pytest.raises(UsageError, match="SciPy"):
        best_total([[1] * big for _ in range(big)])  # contested and larger: SciPy's


def test_track_similarity_counts_per_frame_matches():
    # Random stories with repeated ids in a frame: the similarity matrix equals, entry by
    # entry, the number of per-image matches between the two tracks' rows.
    rng = random.Random(3)
    for _ in range(100):
        texts = []
        for _side in range(2):
            frames = []
            for _f in range(3):
                rows = []
                for _k in range(rng.randint(0, 4)):
                    x = rng.choice([0, 10, 20, 60])
                    rows.append((f"char{rng.randint(1, 3)}", "A person", f"{x},0,{x + 40},100"))
                frames.append(rows)
            texts.append(story(*frames))
        refs, cands = (telling_detections(parse_output(t), SIZES) for t in texts)
        ref_tracks, pred_tracks = list(tracks(refs).values()), list(tracks(cands).values())
        expected = [[len(match_detections(r, p)) for r in ref_tracks] for p in pred_tracks]
        assert track_similarity(ref_tracks, pred_tracks, 0.5) == expected


@settings(max_examples=300, deadline=None)
@given(matrices(-3, 6))
def test_our_assignment_total_matches_brute_force(weights):
    assert max_total(weights) == brute_force(weights)


def test_our_assignment_total_is_scipys_on_larger_matrices():
    rng = random.Random(11)
    for _ in range(150):
        n, m = rng.randint(1, 30), rng.randint(1, 30)
        top = rng.choice([1, 3, 8, 1000])  # few values: many ties; many: few
        weights = [[rng.randint(0, top) for _ in range(m)] for _ in range(n)]
        assert max_total(weights) == sum(weights[r][c] for r, c in assign(weights)), (n, m)
    assert max_total([]) == 0 and max_total([[]]) == 0


def test_identity_needs_no_scipy_for_a_story_whose_ids_cross():
    """A matrix whose row maxima share a column (two predicted ids on one reference id) goes past the
    fast path; up to SMALL_ASSIGNMENT rows and columns, SciPy (a second to import) is not loaded."""
    code = (
        "import sys\n"
        "from storyreasoning.evaluate.identity import best_total\n"
        "assert best_total([[3, 0], [2, 1]]) == 4\n"
        "assert best_total([[5, 4, 0], [5, 0, 0], [0, 5, 1]]) == 10\n"
        "print('scipy.optimize' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    assert SMALL_ASSIGNMENT >= 32
