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

import struct
from collections import defaultdict
from collections.abc import ItemsView, Iterable, Iterator, Mapping, Sequence, ValuesView
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar, Self

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


def _mean(values: Sequence[float | None]) -> float | None:
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


class PackedRow(Mapping[str, float | None]):
    """One story's row of a family (its :func:`story_row`), packed: the values in one ``bytes`` and the
    keys held once, by the class.

    A run holds every story's rows until its report is written; as dicts, a grounding row took about
    2.2 kB and an identity row 3 kB (20,000 stories: about 100 MB, a fifth of the run's peak memory),
    packed about 0.3 kB each. It reads as the dict it was packed from (keys in its order, counts as
    ints, rates as floats or None), and :meth:`as_dict` makes that dict again. A subclass names its
    ``KEYS`` in the row's order and which of them are ``RATES`` (floats, or None where undefined,
    stored as NaN: a rate is a ratio of counts, never NaN itself); every other key is an int.
    """

    __slots__ = ("_packed",)
    KEYS: ClassVar[tuple[str, ...]] = ()
    RATES: ClassVar[frozenset[str]] = frozenset()
    _struct: ClassVar[struct.Struct]
    _index: ClassVar[dict[str, int]]
    _rates: ClassVar[tuple[int, ...]]

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls._index = {key: i for i, key in enumerate(cls.KEYS)}
        cls._struct = struct.Struct("=" + "".join("d" if key in cls.RATES else "q" for key in cls.KEYS))
        cls._rates = tuple(i for i, key in enumerate(cls.KEYS) if key in cls.RATES)

    def __init__(self, packed: bytes) -> None:
        self._packed = packed

    @classmethod
    def of(cls, row: Mapping[str, float | None]) -> Self:
        """``row`` packed (itself when it already is); its keys must be ``KEYS``, in that order."""
        if isinstance(row, cls):
            return row
        if tuple(row) != cls.KEYS:
            raise ValueError(f"a {cls.__name__} has the keys {', '.join(cls.KEYS)}, not {', '.join(row)}")
        values = list(row.values())
        for i in cls._rates:
            if values[i] is None:
                values[i] = _NAN
        return cls(cls._struct.pack(*values))

    @classmethod
    def columns(cls, rows: Iterable[Self], keys: Sequence[str]) -> dict[str, list[float | None]]:
        """The values of each of ``keys`` over ``rows``, in order (each row unpacked once)."""
        out: dict[str, list[float | None]] = {key: [] for key in keys}
        wanted = [(cls._index[key], out[key]) for key in keys]
        for row in rows:
            values = row.unpacked()
            for i, column in wanted:
                column.append(values[i])
        return out

    def unpacked(self) -> tuple[float | None, ...]:
        """The values, in ``KEYS``' order."""
        values = self._struct.unpack(self._packed)
        if _NAN_BYTES not in self._packed:  # no rate is undefined (a false match, across two values: no harm)
            return values  # type: ignore[no-any-return]
        return tuple([None if value != value else value for value in values])  # only a rate can be NaN

    def as_dict(self) -> dict[str, float | None]:
        return dict(zip(self.KEYS, self.unpacked(), strict=True))

    def __getitem__(self, key: str) -> float | None:
        return self.unpacked()[self._index[key]]

    def __iter__(self) -> Iterator[str]:
        return iter(self.KEYS)

    def __len__(self) -> int:
        return len(self.KEYS)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def items(self) -> ItemsView[str, float | None]:
        return dict(zip(self.KEYS, self.unpacked(), strict=True)).items()  # one unpacking, not one a key

    def values(self) -> ValuesView[float | None]:
        return dict(zip(self.KEYS, self.unpacked(), strict=True)).values()

    def __reduce__(self):
        return type(self), (self._packed,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.as_dict()!r})"


_NAN = float("nan")
_NAN_BYTES = struct.pack("=d", _NAN)


class GroundingRow(PackedRow):
    """A story's :func:`story_row` as the run holds it (:class:`PackedRow`)."""

    __slots__ = ()
    KEYS = (
        *COUNT_KEYS,
        *(f"{metric}{suffix}" for suffix in VARIANTS for metric in ("precision", "recall", "f1")),
        "ap",
        "ap_11point",
        "missing",
        "invalid_boxes",
        "invalid_boxes_reference",
    )
    RATES = frozenset(KEYS[len(COUNT_KEYS) : len(COUNT_KEYS) + 3 * len(VARIANTS) + 2])


def default(pairs: Sequence[StoryPair], *, iou_threshold: float = IOU_THRESHOLD) -> Scores:
    """Grounding under the default protocol (see the module docstring)."""
    return summarize([(pair.story_id, story_row(pair, iou_threshold)) for pair in pairs], iou_threshold)


def summarize(
    items: Sequence[tuple[str, Mapping[str, float | None]]], iou_threshold: float = IOU_THRESHOLD
) -> Scores:
    """The default protocol's scores from each story's :func:`story_row` (``(story_id, row)`` in order,
    a row as a dict or a :class:`GroundingRow`); ``per_story`` holds the rows as :class:`GroundingRow`."""
    per_story: dict[str, GroundingRow] = {}
    totals: dict[str, int] = defaultdict(int)
    missing = invalid = invalid_ref = 0
    for story_id, given in items:
        row = GroundingRow.of(given)
        values = row.as_dict()
        for key in COUNT_KEYS:
            totals[key] += values[key]  # type: ignore[operator]
        missing += values["missing"]  # type: ignore[operator]
        invalid += values["invalid_boxes"]  # type: ignore[operator]
        invalid_ref += values["invalid_boxes_reference"]  # type: ignore[operator]
        per_story[story_id] = row

    overall: dict[str, float | None] = {}
    micro = _metrics(dict(totals)) if items else {}
    rates = GroundingRow.columns(per_story.values(), sorted(GroundingRow.RATES))
    for suffix in VARIANTS:
        for metric in ("precision", "recall", "f1"):
            key = f"{metric}{suffix}"
            overall[f"{key}_micro"] = micro.get(key)
            overall[f"{key}_macro"] = _mean(rates[key])
    overall["map_macro"] = _mean(rates["ap"])
    overall["map_micro"] = micro.get("ap")
    overall["map"] = overall["map_macro"]
    overall["map_11point_macro"] = _mean(rates["ap_11point"])
    overall["map_11point_micro"] = micro.get("ap_11point")
    for suffix in VARIANTS:
        for count in ("tp", "fp", "fn"):
            overall[f"{count}{suffix}"] = totals[f"{count}{suffix}"]
    overall["stories"] = len(per_story)
    overall["missing"] = missing
    overall["invalid_boxes"] = invalid
    overall["invalid_boxes_reference"] = invalid_ref
    conventions = list(CONVENTIONS)
    if iou_threshold != IOU_THRESHOLD:
        conventions.append(f"IoU threshold {iou_threshold} instead of 0.5")
    return Scores(
        family="grounding",
        overall=overall,
        per_story=per_story,  # type: ignore[arg-type]  # read-only mappings
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
    "GroundingRow",
    "PackedRow",
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
