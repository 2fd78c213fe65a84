"""Our IDF1, IDP and IDR against py-motmetrics, an established multi-object tracking implementation.

How a story maps to MOT terms: frames are the story's images, object ids (ground truth)
are the reference CoT's entity ids, hypothesis ids the candidate's, and a detection is a
CoT row's box. A reference and a candidate row may pair when their IoU is at least 0.5
(motmetrics' ``1 - IoU <= 0.5``). Both sides then take IDTP as the best total, over a
one-to-one assignment of hypothesis ids to object ids, of the frames where the two are
present and pair; IDFP and IDFN are the rows left over (Ristani et al., 2016).

Where ours differs by design, the generated tracks keep to the part that is the same:

* ours scores characters and objects apart (a char id is never assigned to an obj id)
  and adds the two groups' counts: here each story and group is one motmetrics
  sequence, and our story's numbers are the sum of its two sequences';
* MOT allows one box per id per frame; a CoT may repeat an id in one image (ours then
  pairs the rows one-to-one within the frame), so the tracks here never do;
* invalid candidate boxes, empty ids and missing outputs (ours: rows that match
  nothing, tracks of their own, no rows) have no MOT counterpart and are left out.

The tracks are random but seeded: several stories whose candidates rename ids, swap two
identities from some frame on, split one identity in two, merge two identities that never
meet, miss rows, shift boxes past the IoU threshold and add false rows.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from storyreasoning.evaluate.identity import identity

from .test_grounding import pair, story

mm = pytest.importorskip("motmetrics", reason="the cross-check needs py-motmetrics: pip install motmetrics")

SIZE = 100  # frames are 100 x 100 (test_grounding.pair's default)
GROUPS = {"characters": "char", "objects": "obj"}


def random_box(rng: random.Random) -> tuple[int, int, int, int]:
    w, h = rng.randint(20, 50), rng.randint(20, 50)
    x, y = rng.randint(0, SIZE - w), rng.randint(0, SIZE - h)
    return (x, y, x + w, y + h)


def moved(box: tuple[int, int, int, int], rng: random.Random) -> tuple[int, int, int, int]:
    """The box shifted a little (usually still IoU >= 0.5) or a lot (usually not), kept in the frame."""
    x1, y1, x2, y2 = box
    reach = 2 if rng.random() < 0.8 else 18
    dx, dy = rng.randint(-reach, reach), rng.randint(-reach, reach)
    dx = max(-x1, min(SIZE - x2, dx))
    dy = max(-y1, min(SIZE - y2, dy))
    return (x1 + dx, y1 + dy, x2 + dx, y2 + dy)


def generate(rng: random.Random):
    """One story: per frame, {group: {id: box}} for the reference and for the candidate."""
    frames = rng.randint(2, 6)
    clean = rng.random() < 0.2  # now and then a candidate that only renames the ids
    reference: list[dict[str, dict[str, tuple]]] = [{g: {} for g in GROUPS} for _ in range(frames)]
    candidate: list[dict[str, dict[str, tuple]]] = [{g: {} for g in GROUPS} for _ in range(frames)]
    for group, prefix in GROUPS.items():
        count = rng.randint(1, 5) if group == "characters" else rng.randint(0, 3)
        ids = [f"{prefix}{k}" for k in range(1, count + 1)]
        for f in range(frames):
            for entity in ids:
                if rng.random() < 0.75:
                    reference[f][group][entity] = random_box(rng)
        # the candidate's name for each reference id in each frame: renamed, then swapped, split, merged
        fresh = iter(rng.sample(range(1, 60), 40))
        base = {entity: f"{prefix}{next(fresh)}" for entity in ids}
        name = [dict(base) for _ in range(frames)]
        if len(ids) >= 2 and not clean and rng.random() < 0.5:  # swap two identities from frame t on
            a, b = rng.sample(ids, 2)
            for f in range(rng.randrange(frames), frames):
                name[f][a], name[f][b] = name[f][b], name[f][a]
        if ids and not clean and rng.random() < 0.4:  # split one identity from frame t on
            a = rng.choice(ids)
            new = f"{prefix}{next(fresh)}"
            for f in range(rng.randrange(1, frames), frames):
                name[f][a] = new
        if len(ids) >= 2 and not clean and rng.random() < 0.4:  # merge a into b's name wherever b is absent
            a, b = rng.sample(ids, 2)
            for f in range(frames):
                if b not in reference[f][group]:
                    name[f][a] = name[f][b]
        for f in range(frames):
            for entity, box in reference[f][group].items():
                if clean:
                    candidate[f][group][name[f][entity]] = box
                elif rng.random() < 0.85:
                    candidate[f][group][name[f][entity]] = moved(box, rng)
            for _ in range(
                0 if clean else rng.choice((0, 0, 1, 2))
            ):  # a false row: a new id, or a known one absent here
                spare = [n for n in set(name[f].values()) if n not in candidate[f][group]]
                label = rng.choice(spare) if spare and rng.random() < 0.5 else f"{prefix}{next(fresh)}"
                candidate[f][group][label] = random_box(rng)
    return reference, candidate


def as_text(frames: list[dict[str, dict[str, tuple]]]) -> str:
    rows = [
        [
            (entity, "Something", ",".join(map(str, box)))
            for group in GROUPS
            for entity, box in frame[group].items()
        ]
        for frame in frames
    ]
    return story(*rows)


def xywh(boxes: np.ndarray) -> np.ndarray:
    """x1, y1, x2, y2 rows as motmetrics' rectangles: x, y, width, height."""
    return np.column_stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]])


def accumulator(reference, candidate, group: str):
    """The story's ``group`` as a motmetrics sequence (None when neither side has a row)."""
    if not any(frame[group] for frame in reference) and not any(frame[group] for frame in candidate):
        return None
    acc = mm.MOTAccumulator(auto_id=True)
    number: dict[str, int] = {}  # ids as numbers: motmetrics' frames (with pandas 3) want numeric ids
    for ref, cand in zip(reference, candidate, strict=True):
        gt_ids, gt = list(ref[group]), np.array(list(ref[group].values()), dtype=float).reshape(-1, 4)
        hyp_ids, hyp = list(cand[group]), np.array(list(cand[group].values()), dtype=float).reshape(-1, 4)
        # motmetrics' rectangles are x, y, w, h; its boxiou, as iou_matrix uses it (iou_matrix itself calls
        # np.asfarray, gone in NumPy 2), and its rule: pairable when 1 - IoU <= 0.5
        distance = 1 - mm.distances.boxiou(xywh(gt)[:, None], xywh(hyp)[None, :])
        distance = np.where(distance > 0.5, np.nan, distance)
        gt_numbers = [number.setdefault(f"gt {i}", len(number)) for i in gt_ids]
        hyp_numbers = [number.setdefault(f"hyp {i}", len(number)) for i in hyp_ids]
        acc.update(gt_numbers, hyp_numbers, distance.reshape(len(gt_ids), len(hyp_ids)))
    return acc


def test_motmetrics_counts_a_hand_made_swap_like_ours():
    # the swap of test_identity.test_swap_in_frame_two: two people, ids exchanged in frame 2 of 3
    left, right = (0, 0, 40, 100), (60, 0, 100, 100)
    reference = [{"characters": {"char1": left, "char2": right}, "objects": {}} for _ in range(3)]
    candidate = [dict(frame, characters=dict(frame["characters"])) for frame in reference]
    candidate[1]["characters"] = {"char2": left, "char1": right}
    summary = mm.metrics.create().compute(
        accumulator(reference, candidate, "characters"), metrics=["idtp", "idfp", "idfn", "idf1"]
    )
    assert summary.iloc[0].to_dict() == pytest.approx({"idtp": 4, "idfp": 2, "idfn": 2, "idf1": 2 / 3})
    ours = identity([pair(as_text(reference), as_text(candidate), story_id="swap")]).per_story["swap"]
    assert (ours["idtp"], ours["idfp"], ours["idfn"]) == (4, 2, 2)


def test_the_iou_threshold_is_inclusive_on_both_sides():
    # frame 1: IoU 2000/4000 = 0.5 exactly, a pair for both; frame 2: IoU 1900/4000 = 0.475, none
    reference = [{"characters": {"char1": (0, 0, 40, 100)}, "objects": {}} for _ in range(2)]
    candidate = [
        {"characters": {"char9": (0, 0, 20, 100)}, "objects": {}},
        {"characters": {"char9": (0, 0, 19, 100)}, "objects": {}},
    ]
    summary = mm.metrics.create().compute(accumulator(reference, candidate, "characters"), metrics=["idtp"])
    ours = identity([pair(as_text(reference), as_text(candidate), story_id="edge")]).per_story["edge"]
    assert ours["idtp"] == summary.iloc[0]["idtp"] == 1


def test_idf1_idp_idr_equal_motmetrics_on_generated_tracks():
    rng = random.Random(16)
    pairs, sequences, names = [], [], []
    for k in range(30):
        reference, candidate = generate(rng)
        for frames in (reference, candidate):  # MOT's rule, kept by construction: one box per id per frame
            for frame in frames:
                labels = [entity for group in GROUPS for entity in frame[group]]
                assert len(labels) == len(set(labels))
        pairs.append(pair(as_text(reference), as_text(candidate), story_id=f"s{k}"))
        for group in GROUPS:
            acc = accumulator(reference, candidate, group)
            if acc is not None:
                sequences.append(acc)
                names.append((f"s{k}", group))
    ours = identity(pairs)
    metrics = mm.metrics.create()
    summary = metrics.compute_many(
        sequences,
        metrics=["idtp", "idfp", "idfn", "idp", "idr", "idf1"],
        names=[f"{story_id}/{group}" for story_id, group in names],
        generate_overall=True,
    )
    # the tracks are varied: swaps, splits and merges cost identity, and some stories are perfect
    per_story_f1 = [row["idf1"] for row in ours.per_story.values() if row["idf1"] is not None]
    assert min(per_story_f1) < 0.6 and max(per_story_f1) == 1.0
    assert ours.overall["idfp"] > 0 and ours.overall["idfn"] > 0

    # every story and group: the same counts, and the same rates where both are defined
    for (story_id, group), (_, row) in zip(names, summary.iloc[:-1].iterrows(), strict=True):
        mine = ours.per_story[story_id]
        for count in ("idtp", "idfp", "idfn"):
            assert mine[f"{count}_{group}"] == row[count], (story_id, group, count)
        for rate in ("idp", "idr", "idf1"):
            value = mine[f"{rate}_{group}"]
            if value is None:
                assert math.isnan(row[rate]) or row[rate] == 0, (story_id, group, rate)
            else:
                assert value == pytest.approx(row[rate], abs=1e-9), (story_id, group, rate)

    # every story, both groups together: the sum of its two sequences
    for story_id, mine in ours.per_story.items():
        rows = [
            row for (s, _), (_, row) in zip(names, summary.iloc[:-1].iterrows(), strict=True) if s == story_id
        ]
        tp, fp, fn = (sum(row[c] for row in rows) for c in ("idtp", "idfp", "idfn"))
        assert (mine["idtp"], mine["idfp"], mine["idfn"]) == (tp, fp, fn)
        assert mine["idf1"] == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-9)

    # the whole test set: our micro averages are motmetrics' OVERALL
    overall = summary.loc["OVERALL"]
    assert ours.overall["idtp"] == overall["idtp"]
    assert ours.overall["idf1_micro"] == pytest.approx(overall["idf1"], abs=1e-9)
    assert ours.overall["idp_micro"] == pytest.approx(overall["idp"], abs=1e-9)
    assert ours.overall["idr_micro"] == pytest.approx(overall["idr"], abs=1e-9)
