"""Identity: does the storyteller keep each entity's id from frame to frame?

Grounding asks whether each box is right; identity asks whether the ids tie the right
boxes together over the whole story. Two measures, in the spirit of IDF1 (Ristani et
al., 2016) and of link-based coreference scores:

**ID precision, recall, F1.** Per story and per group (``characters``: char ids;
``objects``: obj, bg and lm ids together, as they share the Objects table), every
predicted id and every reference id is a track: its rows, one per frame it appears
in. The similarity of a predicted track and a reference track is the number of their
rows that overlap, frame by frame, with IoU >= 0.5 (one-to-one within a frame; with one
row per id per frame, the number of frames where both appear and their boxes overlap).
An optimal assignment (:func:`max_total`, SciPy's ``linear_sum_assignment`` for large ones) pairs predicted and reference
ids one-to-one so as to maximise the total similarity, whatever the ids are called
(``char7`` may stand for ``char1``).
IDTP is that total; IDFP = predicted rows - IDTP; IDFN = reference rows - IDTP;
IDP = IDTP/(IDTP+IDFP), IDR = IDTP/(IDTP+IDFN), IDF1 = 2 IDTP/(2 IDTP+IDFP+IDFN).

**Cross-frame links.** A link is a pair of rows in *different* frames with the same id.
A predicted link is correct when both its rows are matched (the grounding default's
per-image matching, :func:`.grounding.match_detections`) to reference rows that share a
reference id; link precision = correct predicted links / predicted links. Symmetrically,
link recall = reference links whose two rows are matched to rows sharing a predicted id
/ reference links (the two counts are equal, as the matching is one-to-one).

Rows are those of :mod:`.detections`: an invalid candidate box counts as a predicted
row (and its links as predicted links) but never overlaps anything; invalid reference
boxes are left out. A row with an empty id is a track of its own. A missing output is
scored as an output with no rows. Empty sets follow the grounding rule: a ratio with
denominator 0 is undefined (None) for the story and left out of macro averages; micro
averages use counts summed over stories.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from fractions import Fraction

from ..errors import UsageError
from .detections import GROUPS, Detection
from .grounding import (
    IOU_THRESHOLD,
    PackedRow,
    StoryDetections,
    greedy_one_to_one,
    match_detections,
    overlap,
    ratio,
    story_detections,
)
from .pairs import Scores, StoryPair

VARIANTS = ("", "_characters", "_objects")

CONVENTIONS = [
    "identity: per story and per group (characters = char ids; objects = obj, bg and lm ids together); "
    "track similarity = rows overlapping frame by frame with IoU >= 0.5; Hungarian assignment of predicted "
    "to reference ids maximising total similarity",
    "IDTP = assigned similarity; IDFP = predicted rows - IDTP; IDFN = reference rows - IDTP",
    "links: pairs of rows in different frames with the same id; a predicted link is correct when both rows "
    "match (per-image grounding matching, IoU >= 0.5) reference rows sharing a reference id",
    "invalid candidate boxes count as predicted rows that match nothing; invalid reference boxes are left "
    "out; a row with an empty id is its own track",
    "empty sets: a ratio with denominator 0 is undefined (None) for that story and left out of macro "
    "averages; micro ratios use summed counts",
    "missing outputs: scored as an output with no rows",
]


# -- assignment ---------------------------------------------------------------------------------


def assign(weights: Sequence[Sequence[float]]) -> list[tuple[int, int]]:
    """A maximum-weight one-to-one assignment of rows to columns (SciPy's ``linear_sum_assignment``).

    ``weights`` is a rectangular matrix; the result lists ``(row, column)`` pairs, one
    per row or per column, whichever is fewer (pairs of weight 0 included), sorted by row.
    """
    if not weights or not weights[0]:
        return []
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        raise UsageError(
            "identity metrics need SciPy to assign ids: pip install scipy "
            "(it comes with pip install 'storyreasoning[eval]' and 'storyreasoning[train]')"
        ) from None
    rows, columns = linear_sum_assignment(weights, maximize=True)
    return sorted(zip(rows.tolist(), columns.tolist(), strict=True))


SMALL_ASSIGNMENT = 64
"""Matrices up to this many rows and columns are assigned by :func:`max_total` (our Kuhn-Munkres, in
Python: 0.1 ms at 8 x 8, about 25 ms at 64 x 64), larger ones by SciPy, whose import
(``scipy.optimize``) costs about a second of CPU a process: a story has a few ids a group."""


def max_total(weights: Sequence[Sequence[int]]) -> int:
    """The largest total of a one-to-one assignment of integer weights (one pair per row or per
    column, whichever is fewer): the Hungarian method with potentials, O(n²m) for n ≤ m, exact
    (integers throughout). :func:`assign`'s optimum without SciPy."""
    rows = [list(row) for row in weights]
    if not rows or not rows[0]:
        return 0
    if len(rows) > len(rows[0]):
        rows = [list(column) for column in zip(*rows, strict=True)]
    n, m = len(rows), len(rows[0])
    # minimise the cost -weight: row potentials u, column potentials v, match[j] the row (1-based)
    # holding column j, column 0 a free start (the e-maxx formulation)
    u, v = [0] * (n + 1), [0] * (m + 1)
    match, way = [0] * (m + 1), [0] * (m + 1)
    for i in range(1, n + 1):
        match[0] = i
        j0 = 0
        slack: list[int | None] = [None] * (m + 1)  # None: infinite
        used = [False] * (m + 1)
        while True:
            used[j0] = True
            i0 = match[j0]
            row, ui = rows[i0 - 1], u[i0]
            delta: int | None = None
            j1 = 0
            for j in range(1, m + 1):
                if used[j]:
                    continue
                cost = -row[j - 1] - ui - v[j]
                s = slack[j]
                if s is None or cost < s:
                    slack[j] = s = cost
                    way[j] = j0
                if delta is None or s < delta:
                    delta, j1 = s, j
            assert delta is not None  # some column is unused while a row is unmatched (n <= m)
            for j in range(m + 1):
                if used[j]:
                    u[match[j]] += delta
                    v[j] -= delta
                else:
                    slack[j] -= delta  # type: ignore[operator]  # set for every unused column above
            j0 = j1
            if match[j0] == 0:
                break
        while j0:  # flip the augmenting path
            j1 = way[j0]
            match[j0] = match[j1]
            j0 = j1
    return sum(rows[match[j] - 1][j - 1] for j in range(1, m + 1) if match[j])


def best_total(weights: Sequence[Sequence[int]]) -> int:
    """The largest total of a one-to-one assignment of non-negative weights (``assign``'s optimum).

    No assignment can total more than the sum of its rows' maxima (nor of its columns'
    maxima). When every row with a positive maximum has it in a column of its own, taking
    those cells reaches that bound, so it is the optimum; likewise by columns. That is the
    usual case here (a predicted id overlaps one reference id); any other matrix goes to
    :func:`max_total`, or to :func:`assign` (SciPy) past :data:`SMALL_ASSIGNMENT`.
    """
    if not weights or not weights[0]:
        return 0
    for matrix in (weights, list(zip(*weights, strict=True))):
        taken: set[int] = set()
        total = 0
        for row in matrix:
            best = max(row)
            if best <= 0:
                continue
            column = row.index(best)
            if column in taken:
                break
            taken.add(column)
            total += best
        else:
            return total
    if len(weights) <= SMALL_ASSIGNMENT and len(weights[0]) <= SMALL_ASSIGNMENT:
        return max_total(weights)
    return sum(weights[r][c] for r, c in assign(weights))


# -- tracks ---------------------------------------------------------------------------------------


def _track_key(d: Detection) -> str:
    return d.entity_id if d.entity_id else f"#row{d.row}"


def tracks(detections: Sequence[Detection]) -> dict[str, list[Detection]]:
    """Id -> its rows, ids in order of first appearance (an empty id is a track of its own)."""
    out: dict[str, list[Detection]] = {}
    for d in detections:
        out.setdefault(_track_key(d), []).append(d)
    return out


def _links(rows: Sequence[Detection]) -> list[tuple[Detection, Detection]]:
    return [(a, b) for k, a in enumerate(rows) for b in rows[k + 1 :] if a.image != b.image]


def track_similarity(
    ref_tracks: list[list[Detection]], pred_tracks: list[list[Detection]], iou_threshold: float
) -> list[list[int]]:
    """``[p][r]``: rows of predicted track p and reference track r that overlap frame by frame.

    The same number as ``len(match_detections(ref_tracks[r], pred_tracks[p]))``, with
    every IoU computed once.
    """
    threshold = Fraction(iou_threshold)
    by_image: dict[int, list[tuple[int, int, Detection]]] = defaultdict(list)
    for r, rows in enumerate(ref_tracks):
        for k, row in enumerate(rows):
            if row.valid:
                by_image[row.image].append((r, k, row))
    candidates: dict[tuple[int, int], list[tuple[int, int, int, int]]] = defaultdict(list)
    for p, rows in enumerate(pred_tracks):
        for k_pred, cand in enumerate(rows):
            if not cand.valid:
                continue
            for r, k_ref, ref in by_image.get(cand.image, ()):
                found = overlap(ref, cand, threshold)
                if found is not None:
                    candidates[(p, r)].append((*found, k_ref, k_pred))
    similarity = [[0] * len(ref_tracks) for _ in pred_tracks]
    for (p, r), pairs in candidates.items():
        similarity[p][r] = len(greedy_one_to_one(pairs))
    return similarity


def _group_counts(
    refs: Sequence[Detection],
    cands: Sequence[Detection],
    matched_ref: dict[int, Detection],  # candidate row number -> matched reference row
    iou_threshold: float,
) -> dict[str, int]:
    """ID and link counts of one group of one story."""
    ref_tracks = tracks(refs)
    pred_tracks = tracks(cands)
    similarity = track_similarity(list(ref_tracks.values()), list(pred_tracks.values()), iou_threshold)
    idtp = best_total(similarity)
    links_predicted = links_correct = 0
    for rows in pred_tracks.values():
        for a, b in _links(rows):
            links_predicted += 1
            ra, rb = matched_ref.get(a.row), matched_ref.get(b.row)
            if ra is not None and rb is not None and _track_key(ra) == _track_key(rb):
                links_correct += 1
    links_reference = sum(len(_links(rows)) for rows in ref_tracks.values())
    return {
        "idtp": idtp,
        "idfp": len(cands) - idtp,
        "idfn": len(refs) - idtp,
        "links_predicted": links_predicted,
        "links_reference": links_reference,
        "links_correct": links_correct,
    }


def _metrics(counts: dict[str, int]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for suffix in VARIANTS:
        tp, fp, fn = counts[f"idtp{suffix}"], counts[f"idfp{suffix}"], counts[f"idfn{suffix}"]
        out[f"idp{suffix}"] = ratio(tp, tp + fp)
        out[f"idr{suffix}"] = ratio(tp, tp + fn)
        out[f"idf1{suffix}"] = ratio(2 * tp, 2 * tp + fp + fn)
        correct = counts[f"links_correct{suffix}"]
        out[f"link_precision{suffix}"] = ratio(correct, counts[f"links_predicted{suffix}"])
        out[f"link_recall{suffix}"] = ratio(correct, counts[f"links_reference{suffix}"])
    return out


def story_counts(
    references: Sequence[Detection],
    candidates: Sequence[Detection],
    iou_threshold: float = IOU_THRESHOLD,
    *,
    matches: list[tuple[int, int]] | None = None,
) -> dict[str, int]:
    """ID and link counts of one story, overall and per group (``idtp``, ``idtp_characters``, …).

    ``references`` should hold valid rows only; ``candidates`` every row (their ``row``
    numbers must be distinct, as :func:`.detections.telling_detections` makes them).
    ``matches``: their :func:`.grounding.match_detections` when already computed.
    """
    if matches is None:
        matches = match_detections(references, candidates, iou_threshold)
    matched_ref = {candidates[j].row: references[i] for i, j in matches}
    counts: dict[str, int] = defaultdict(int)
    for group, suffix in zip(GROUPS, VARIANTS[1:], strict=True):
        refs = [d for d in references if d.group == group]
        cands = [d for d in candidates if d.group == group]
        for key, value in _group_counts(refs, cands, matched_ref, iou_threshold).items():
            counts[f"{key}{suffix}"] = value
            counts[key] += value
    return dict(counts)


def _mean(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


COUNT_KEYS = ("idtp", "idfp", "idfn", "links_predicted", "links_reference", "links_correct")
METRIC_KEYS = ("idp", "idr", "idf1", "link_precision", "link_recall")


class IdentityRow(PackedRow):
    """A story's :func:`story_row` as the run holds it (:class:`.grounding.PackedRow`)."""

    __slots__ = ()
    # story_counts' order: each group's counts, the characters' with the sums (first made there), then
    # the objects'; then the rates; then whether the output is missing
    KEYS = (
        *(key for count in COUNT_KEYS for key in (f"{count}_characters", count)),
        *(f"{count}_objects" for count in COUNT_KEYS),
        *(f"{metric}{suffix}" for suffix in VARIANTS for metric in METRIC_KEYS),
        "missing",
    )
    RATES = frozenset(f"{metric}{suffix}" for suffix in VARIANTS for metric in METRIC_KEYS)


def story_row(
    pair: StoryPair, iou_threshold: float = IOU_THRESHOLD, *, found: StoryDetections | None = None
) -> dict[str, float | None]:
    """One story's ID and link counts and rates (its row of ``per_story``, where it is held as an
    :class:`IdentityRow`).

    ``found``: the story's :func:`.grounding.story_detections` when already computed (same threshold).
    """
    if found is None or found.iou_threshold != iou_threshold:
        found = story_detections(pair, iou_threshold)
    counts = story_counts(found.valid_references, found.candidates, iou_threshold, matches=found.matches)
    row: dict[str, float | None] = dict(counts)
    row.update(_metrics(counts))
    row["missing"] = int(pair.missing)
    return row


def identity(pairs: Sequence[StoryPair], *, iou_threshold: float = IOU_THRESHOLD) -> Scores:
    """ID precision/recall/F1 and cross-frame link precision/recall (family ``identity``).

    Overall keys: ``{idp,idr,idf1,link_precision,link_recall}[_characters|_objects]_{micro,macro}``,
    the summed counts ``idtp``, ``idfp``, ``idfn``, ``links_predicted``, ``links_reference``,
    ``links_correct`` (and per group), ``stories`` and ``missing``.
    """
    return summarize([(pair.story_id, story_row(pair, iou_threshold)) for pair in pairs], iou_threshold)


def summarize(
    items: Sequence[tuple[str, Mapping[str, float | None]]], iou_threshold: float = IOU_THRESHOLD
) -> Scores:
    """The identity scores from each story's :func:`story_row` (``(story_id, row)`` in order, a row as
    a dict or an :class:`IdentityRow`); ``per_story`` holds the rows as :class:`IdentityRow`."""
    per_story: dict[str, IdentityRow] = {}
    totals: dict[str, int] = defaultdict(int)
    missing = 0
    for story_id, given in items:
        row = IdentityRow.of(given)
        values = row.as_dict()
        for count in COUNT_KEYS:
            for suffix in VARIANTS:
                totals[f"{count}{suffix}"] += values[f"{count}{suffix}"]  # type: ignore[operator]
        missing += values["missing"]  # type: ignore[operator]
        per_story[story_id] = row
    overall: dict[str, float | None] = {}
    micro = _metrics(dict(totals)) if per_story else {}
    rates = IdentityRow.columns(per_story.values(), sorted(IdentityRow.RATES))
    for metric in METRIC_KEYS:
        for suffix in VARIANTS:
            key = f"{metric}{suffix}"
            overall[f"{key}_micro"] = micro.get(key)
            overall[f"{key}_macro"] = _mean(rates[key])
    for count in COUNT_KEYS:
        for suffix in VARIANTS:
            overall[f"{count}{suffix}"] = totals[f"{count}{suffix}"]
    overall["stories"] = len(per_story)
    overall["missing"] = missing
    conventions = list(CONVENTIONS)
    if iou_threshold != IOU_THRESHOLD:
        conventions.append(f"IoU threshold {iou_threshold} instead of 0.5")
    return Scores(
        family="identity",
        overall=overall,
        per_story=per_story,  # type: ignore[arg-type]  # read-only mappings
        conventions=conventions,
        extra={"iou_threshold": iou_threshold},
    )


__all__ = [
    "SMALL_ASSIGNMENT",
    "IdentityRow",
    "assign",
    "best_total",
    "identity",
    "max_total",
    "story_counts",
    "story_row",
    "summarize",
    "track_similarity",
    "tracks",
]
