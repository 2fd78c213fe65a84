"""Grounding: are the CoT's boxes where the reference's are?

Precision, recall and F1 over the CoT rows (all, characters, objects) and a mean average
precision, in two protocols:

* ``protocol="default"`` (this module): a candidate row matches a reference row of the
  **same image** and the same group (characters, or objects/backgrounds/landmarks)
  with IoU >= 0.5, greedily one-to-one by IoU descending, ties broken by reference row,
  then candidate row. Rows come from our tolerant parser (:mod:`.detections`); an
  invalid candidate box can never match and counts as a false positive; an invalid
  reference box is left out of the reference. A missing output is scored as an empty
  candidate (every reference row a false negative). Micro averages sum TP/FP/FN over
  stories; macro averages are means of per-story values.
* ``protocol="original"``: the original driver's numbers, defects included
  (:mod:`.original`).

**Empty sets** (one rule for every ratio): a ratio whose denominator is 0 is undefined
(None) for that story and left out of the macro average; the micro ratio uses the
summed counts, and is None only when its summed denominator is 0. So precision is
undefined for a story without candidate rows, recall for a story without reference
rows, and F1 = 2TP/(2TP+FP+FN) only for a story with neither.

**AP**: the storyteller gives no confidences, so all its rows tie and form a single
block: the precision-recall curve is one operating point, and its all-point
(area-under-curve) AP is precision x recall. That does not depend on row order. It is
defined when the story has reference rows (0 when it has no candidate rows: its
recall is 0). The
11-point variant (``map_11point_*``) interpolates the same curve at recalls
0, 1/10, …, 1 compared exactly (a recall of 3/10 reaches 0.3): precision x (number of
thresholds <= recall) / 11. ``map`` is the macro value, ``map_micro`` pools every
story's rows as one block.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from .detections import GROUPS, Detection, telling_detections
from .pairs import Scores, StoryPair

IOU_THRESHOLD = 0.5
PROTOCOLS = ("default", "original")
VARIANTS = ("", "_characters", "_objects")  # all rows, then each group

CONVENTIONS = [
    "protocol default: rows of the CoT tables read by the tolerant parser, one detection per row",
    "matching: same image and same group (characters = char ids; objects = obj, bg and lm ids; an id of "
    "another form takes its table's group), IoU >= 0.5, greedy one-to-one by IoU descending, ties broken "
    "by reference row then candidate row",
    "invalid boxes (missing, unparseable, inverted, outside the image beyond 10 %, or in an image the "
    "story lacks) never match: candidate ones count as false positives, reference ones are left out; "
    "valid boxes are clipped to the image",
    "empty sets: a ratio with denominator 0 is undefined (None) for that story and left out of macro "
    "averages; micro ratios use summed counts (None only when the summed denominator is 0)",
    "missing outputs: scored as an output with no rows (zero recall)",
    "micro: TP/FP/FN summed over stories; macro: mean of the per-story values where defined",
    "AP: no confidences, so all rows tie in one block; AP = precision x recall (all-point, independent of "
    "row order), defined when the story has reference rows; map = macro, map_micro pools all stories",
    "11-point AP: thresholds i/10 compared exactly (recall 0.3 reaches 0.3)",
]


# -- matching ---------------------------------------------------------------------------------


def iou_exact(a: Detection, b: Detection) -> Fraction:
    """IoU of two valid detections' boxes as an exact fraction (0 when the union is empty)."""
    assert a.box is not None and b.box is not None
    inter = a.box.intersection(b.box)
    union = a.box.area + b.box.area - inter
    return Fraction(inter, union) if union > 0 else Fraction(0)


def overlap(a: Detection, b: Detection, threshold: Fraction) -> tuple[int, int] | None:
    """``(intersection, union)`` of two valid detections' boxes when their IoU is positive and at
    least ``threshold``, else None; decided exactly on integers (``inter * q >= p * union`` for
    ``threshold = p/q``). :func:`ious` makes the IoUs to rank."""
    assert a.box is not None and b.box is not None
    inter = a.box.intersection(b.box)
    if inter <= 0:
        return None
    union = a.box.area + b.box.area - inter
    if inter * threshold.denominator < threshold.numerator * union:
        return None
    return inter, union


EXACT_FLOAT_UNION = 1 << 26
"""Below this union (in pixels², an 8,192 × 8,192 frame), IoUs as floats rank exactly as the fractions:
two different fractions of denominators under 2**26 differ by more than 2**-52, and each quotient of
two integers is rounded by at most 2**-54 below 1 (Python divides integers correctly rounded)."""


def ious(pairs: list[tuple[int, int, int, int]]) -> list[tuple[float | Fraction, int, int]]:
    """``(iou, i, j)`` from ``(intersection, union, i, j)``: floats when every union is under
    :data:`EXACT_FLOAT_UNION` (they rank as the exact fractions, ties included, and cost a tenth),
    else exact fractions; never a mix."""
    if all(union < EXACT_FLOAT_UNION for _, union, _, _ in pairs):
        return [(inter / union, i, j) for inter, union, i, j in pairs]
    return [(Fraction(inter, union), i, j) for inter, union, i, j in pairs]


def greedy_one_to_one(pairs: list[tuple[int, int, int, int]]) -> list[tuple[int, int]]:
    """Accept ``(intersection, union, i, j)`` pairs (:func:`overlap`'s) by IoU descending, then i,
    then j, each i and j once; the IoUs ranked exactly (:func:`ious`)."""
    used_i: set[int] = set()
    used_j: set[int] = set()
    out = []
    for _, i, j in sorted(ious(pairs), key=lambda p: (-p[0], p[1], p[2])):
        if i in used_i or j in used_j:
            continue
        used_i.add(i)
        used_j.add(j)
        out.append((i, j))
    return out


def match_detections(
    references: Sequence[Detection],
    candidates: Sequence[Detection],
    iou_threshold: float = IOU_THRESHOLD,
) -> list[tuple[int, int]]:
    """Greedy one-to-one matches ``(reference index, candidate index)`` within image and group.

    Pairs with IoU >= ``iou_threshold`` (compared exactly) are taken by IoU descending,
    ties by reference index, then candidate index. Invalid detections never match.
    """
    threshold = Fraction(iou_threshold)
    by_place: dict[tuple[int, str], list[int]] = defaultdict(list)
    for i, ref in enumerate(references):
        if ref.valid:
            by_place[(ref.image, ref.group)].append(i)
    pairs: list[tuple[int, int, int, int]] = []
    for j, cand in enumerate(candidates):
        if not cand.valid:
            continue
        for i in by_place.get((cand.image, cand.group), ()):
            found = overlap(references[i], cand, threshold)
            if found is not None:
                pairs.append((*found, i, j))
    return greedy_one_to_one(pairs)


# -- per-story counts ---------------------------------------------------------------------------


def ratio(numerator: int, denominator: int) -> float | None:
    """``numerator / denominator``, or None when the denominator is 0 (undefined)."""
    return numerator / denominator if denominator else None


def _counts(
    refs: Sequence[Detection],
    cands: Sequence[Detection],
    iou_threshold: float,
    matches: list[tuple[int, int]] | None = None,
) -> dict[str, int]:
    if matches is None:
        matches = match_detections(refs, cands, iou_threshold)
    counts: dict[str, int] = {}
    for suffix, group in zip(VARIANTS, (None, *GROUPS), strict=True):
        n_ref = sum(1 for d in refs if group is None or d.group == group)
        n_cand = sum(1 for d in cands if group is None or d.group == group)
        tp = sum(1 for i, _ in matches if group is None or refs[i].group == group)
        counts[f"tp{suffix}"] = tp
        counts[f"fp{suffix}"] = n_cand - tp
        counts[f"fn{suffix}"] = n_ref - tp
    return counts


def _metrics(counts: dict[str, int]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for suffix in VARIANTS:
        tp, fp, fn = counts[f"tp{suffix}"], counts[f"fp{suffix}"], counts[f"fn{suffix}"]
        out[f"precision{suffix}"] = ratio(tp, tp + fp)
        out[f"recall{suffix}"] = ratio(tp, tp + fn)
        out[f"f1{suffix}"] = ratio(2 * tp, 2 * tp + fp + fn)
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    n_ref, n_cand = tp + fn, tp + fp
    if not n_ref:  # no recall axis: undefined
        out["ap"] = out["ap_11point"] = None
    elif not n_cand:  # an empty curve
        out["ap"] = out["ap_11point"] = 0.0
    else:  # one operating point (recall tp/n_ref, precision tp/n_cand)
        out["ap"] = tp * tp / (n_cand * n_ref)
        # thresholds i/10 <= tp/n_ref, i = 0..10, compared exactly
        out["ap_11point"] = tp * (10 * tp // n_ref + 1) / (n_cand * 11)
    return out


def _mean(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


@dataclass(frozen=True)
class StoryDetections:
    """A story's rows and their matching (:func:`match_detections`), found once for grounding and identity."""

    references: list[Detection]  # every reference row, invalid ones included
    valid_references: list[Detection]
    candidates: list[Detection]
    matches: list[tuple[int, int]]  # (index in valid_references, index in candidates)
    iou_threshold: float


def story_detections(pair: StoryPair, iou_threshold: float = IOU_THRESHOLD) -> StoryDetections:
    """The story's rows on both sides and their matches."""
    refs_all = telling_detections(pair.reference, pair.image_sizes)
    refs = [d for d in refs_all if d.valid]
    cands = telling_detections(pair.candidate, pair.image_sizes)
    return StoryDetections(refs_all, refs, cands, match_detections(refs, cands, iou_threshold), iou_threshold)


def story_row(
    pair: StoryPair, iou_threshold: float = IOU_THRESHOLD, *, found: StoryDetections | None = None
) -> dict[str, float | None]:
    """One story's counts and rates under the default protocol (its row of ``per_story``).

    ``found``: the story's :func:`story_detections` when already computed (same threshold).
    """
    if found is None or found.iou_threshold != iou_threshold:
        found = story_detections(pair, iou_threshold)
    refs_all, refs, cands = found.references, found.valid_references, found.candidates
    counts = _counts(refs, cands, iou_threshold, found.matches)
    row: dict[str, float | None] = dict(counts)
    row.update(_metrics(counts))
    row["missing"] = int(pair.missing)
    row["invalid_boxes"] = sum(1 for d in cands if not d.valid)
    row["invalid_boxes_reference"] = len(refs_all) - len(refs)
    return row


COUNT_KEYS = tuple(f"{count}{suffix}" for suffix in VARIANTS for count in ("tp", "fp", "fn"))


def default(pairs: Sequence[StoryPair], *, iou_threshold: float = IOU_THRESHOLD) -> Scores:
    """Grounding under the default protocol (see the module docstring)."""
    return summarize([(pair.story_id, story_row(pair, iou_threshold)) for pair in pairs], iou_threshold)


def summarize(
    items: Sequence[tuple[str, dict[str, float | None]]], iou_threshold: float = IOU_THRESHOLD
) -> Scores:
    """The default protocol's scores from each story's :func:`story_row` (``(story_id, row)`` in order)."""
    per_story: dict[str, dict[str, float | None]] = {}
    totals: dict[str, int] = defaultdict(int)
    missing = invalid = invalid_ref = 0
    for story_id, row in items:
        for key in COUNT_KEYS:
            totals[key] += row[key]  # type: ignore[operator]
        missing += row["missing"]  # type: ignore[operator]
        invalid += row["invalid_boxes"]  # type: ignore[operator]
        invalid_ref += row["invalid_boxes_reference"]  # type: ignore[operator]
        per_story[story_id] = row

    overall: dict[str, float | None] = {}
    micro = _metrics(dict(totals)) if items else {}
    rows = list(per_story.values())
    for suffix in VARIANTS:
        for metric in ("precision", "recall", "f1"):
            key = f"{metric}{suffix}"
            overall[f"{key}_micro"] = micro.get(key)
            overall[f"{key}_macro"] = _mean([row[key] for row in rows])
    overall["map_macro"] = _mean([row["ap"] for row in rows])
    overall["map_micro"] = micro.get("ap")
    overall["map"] = overall["map_macro"]
    overall["map_11point_macro"] = _mean([row["ap_11point"] for row in rows])
    overall["map_11point_micro"] = micro.get("ap_11point")
    for suffix in VARIANTS:
        for count in ("tp", "fp", "fn"):
            overall[f"{count}{suffix}"] = totals[f"{count}{suffix}"]
    overall["stories"] = len(rows)
    overall["missing"] = missing
    overall["invalid_boxes"] = invalid
    overall["invalid_boxes_reference"] = invalid_ref
    conventions = list(CONVENTIONS)
    if iou_threshold != IOU_THRESHOLD:
        conventions.append(f"IoU threshold {iou_threshold} instead of 0.5")
    return Scores(
        family="grounding",
        overall=overall,
        per_story=per_story,
        conventions=conventions,
        extra={"protocol": "default", "iou_threshold": iou_threshold},
    )


def grounding(
    pairs: Sequence[StoryPair], *, protocol: str = "default", iou_threshold: float = IOU_THRESHOLD
) -> Scores:
    """Grounding precision, recall, F1 (all, characters, objects) and mAP (family ``grounding``).

    ``protocol="default"``: matching within each image, micro and macro averages, one
    empty-set rule, missing outputs scored as empty (module docstring). Overall keys:
    ``{precision,recall,f1}[_characters|_objects]_{micro,macro}``, ``map`` (macro),
    ``map_micro``, ``map_macro``, ``map_11point_{micro,macro}``, ``tp``/``fp``/``fn``
    (and per group), ``stories``, ``missing``, ``invalid_boxes``,
    ``invalid_boxes_reference``.

    ``protocol="original"``: :func:`storyreasoning.evaluate.original.original`, the
    original driver's numbers (macro only, missing outputs excluded).
    """
    if protocol == "original":
        from .original import original

        return original(list(pairs), iou_threshold=iou_threshold)
    if protocol != "default":
        raise ValueError(f"unknown grounding protocol {protocol!r}; use one of: {', '.join(PROTOCOLS)}")
    return default(pairs, iou_threshold=iou_threshold)


__all__ = [
    "EXACT_FLOAT_UNION",
    "PROTOCOLS",
    "StoryDetections",
    "default",
    "greedy_one_to_one",
    "grounding",
    "iou_exact",
    "ious",
    "match_detections",
    "overlap",
    "ratio",
    "story_detections",
    "story_row",
    "summarize",
]
