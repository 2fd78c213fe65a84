"""The original driver's grounding metrics, reproduced exactly (``--protocol original``).

This module re-implements, from the description in the reference (sections 1.2, 1.3,
4.2 to 4.5 of ``original-storyreasoning.md``), what the original ``evaluate.py`` did to
turn two raw model outputs into precision, recall, F1 and mAP, so that numbers
published with it can be reproduced. Every defect is kept on purpose; the default
protocol (:mod:`.grounding`) fixes them. Nothing here shares code with our tolerant
parser: the original read CoT tables with its own rules, and a text the two parsers
read differently must give the original's numbers here.

The pipeline, per story:

1. **CoT extraction**: the first ``<think>…</think>`` pair (non-greedy, across lines),
   inner text stripped; no complete pair gives an empty CoT, hence no detections.
2. **Image sections**: for n = 1, 2, … the first occurrence anywhere in the CoT of
   ``## Image n`` followed by optional whitespace and a newline (so ``### Image n``
   counts and ``## Image n:`` does not); stop at the first n not found. A section runs
   to the next ``## Image <digits>`` or to the end of the CoT.
3. **Tables**: in a section, ``### Characters`` / ``### Objects`` followed by optional
   whitespace and a newline, then the block of consecutive non-empty lines each ending
   in a newline (so a last row at the very end of the CoT is dropped). Headers are the
   first line's ``|``-cells without empty and all-dash ones; the second line is skipped;
   data rows are the later lines containing ``|``, their cells everything after the
   first ``|`` (unfiltered), kept when at least as many as the headers, mapped by
   position.
4. **Detections** (section 4.2): a section numbered above the number of images raises,
   and any exception empties that side's list for the story. Character rows are label
   ``person``; object rows (obj, bg, lm alike) take the first word of their Description,
   lower-cased (``object`` when empty), so "Person walking" is a person. The box cell
   must be four comma-separated integers (Python ``int``), otherwise the row is skipped
   (decimals included). x = x1/W, y = y1/H, w = (x2-x1)/W, h = (y2-y1)/H, each clamped
   to [0, 1] on its own (x+w may exceed 1; an inverted box gets width or height 0).
5. **Matching** (4.3): pairs (reference, candidate) of the same type (both ``person`` or
   both not) with IoU >= 0.5, **whatever their images**, in the order reference-major
   then candidate, stably sorted by IoU descending, accepted greedily one-to-one.
6. **Per-story metrics** (4.4): TP = matches, P = TP/|cand| (1.0 when no candidate),
   R = TP/|ref| (1.0 when no reference), F1 = 1.0 when both sides are empty, else
   2PR/(P+R) or 0; Character and Object variants restrict both sides first.
7. **AP** (4.5): 1.0 when both sides are empty, 0.0 when either is; otherwise the
   candidates in row order (every score is 1.0 and the sort is stable), cumulative
   precision and recall after each, and the mean over thresholds
   ``[i * 0.1 for i in range(11)]`` (so 0.30000000000000004, 0.6000000000000001,
   0.7000000000000001) of the highest precision at recall >= t, or 0.
8. **Averages**: every metric is the mean of its per-story values over the stories
   that have an output (missing outputs are excluded); 0.0 when there are none.

Ambiguities
-----------

Where the reference leaves a detail open, the most literal reading was taken:

* *Which text is parsed*: the CoT extracted from ``<think>…</think>`` (the reference
  says detections come "from the reference CoT and the candidate CoT"), so an output
  without a complete ``<think>`` pair has no detections. The reference side uses the
  reference telling's raw text, which for a dataset sample is exactly the original's
  ``<think>\\n`` + CoT + ``\\n</think>\\n`` + story.
* *Non-empty line*: a line with at least one character before its newline (a line of
  spaces continues a table block; a line without ``|`` in it is then not a data row).
  Lines of whitespace directly after the heading are skipped with the blank ones.
* *Table heading*: ``### Characters`` must be followed by optional whitespace and a
  newline, like ``## Image n`` (so ``### Characters:`` is not a table heading); when
  one occurrence does not qualify, a later one in the section may.
* *Row cells*: everything after the first ``|``, split on ``|`` and stripped, the piece
  after the last ``|`` included. This is the only split consistent with the verified
  statement that a row without its leading pipe is kept, mis-aligned, with its first
  column lost. Consequence: a row without a trailing pipe keeps its last cell.
* *Malformed box*: not exactly four ``,``-separated parts, or a part Python's ``int``
  rejects (so ``12.5``, ``[1``, ``none`` and an empty cell are malformed; ``-3`` and
  `` 7 `` are integers).
* *Object label*: the first word of the Description, lower-cased, with ``_`` turned
  into ``-`` as the original ``Detection`` normalised labels; a detection is of type
  person exactly when its label equals ``person``.
* *IoU*: on the normalised (x, y, w, h) boxes; 0 when the boxes do not overlap; when
  the union is 0 (two zero-area boxes) 1.0 if their top-left corners coincide, else 0.
* *Pair order before the stable sort*: reference-major (the reference calls the pairs
  "(ref, cand)"). It only matters for exact IoU ties.
* *AP points*: one (precision, recall) point per candidate, matched or not.
* *Image sizes*: image n of the CoT uses ``image_sizes[n - 1]`` (``(width, height)``);
  a zero size raises, which empties that side's list like any other exception.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .pairs import Scores, StoryPair

#: The 11 recall thresholds exactly as the original produced them (a float range).
THRESHOLDS: tuple[float, ...] = tuple(i * 0.1 for i in range(11))
IOU_THRESHOLD = 0.5
PERSON = "person"

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_ANY_IMAGE = re.compile(r"## Image \d+")


# -- reading the text as the original did ------------------------------------------------------


def extract_cot(raw: str) -> str:
    """The inner text of the first complete ``<think>…</think>`` pair, stripped; else ``""``."""
    match = _THINK.search(raw)
    return match.group(1).strip() if match else ""


def image_sections(cot: str) -> list[tuple[int, str]]:
    """``(n, section text)`` for n = 1, 2, … up to the first missing ``## Image n``."""
    sections: list[tuple[int, str]] = []
    n = 1
    while True:
        match = re.search(rf"## Image {n}\s*\n", cot)
        if match is None:
            return sections
        start = match.end()
        following = _ANY_IMAGE.search(cot, start)
        end = following.start() if following else len(cot)
        sections.append((n, cot[start:end]))
        n += 1


def table_rows(section: str, heading: str) -> list[dict[str, str]]:
    """The rows of the table under ``heading`` (``### Characters``), keyed by header text."""
    match = re.search(re.escape(heading) + r"\s*\n((?:.+\n)+)", section)
    if match is None:
        return []
    lines = match.group(1).split("\n")
    headers = [cell.strip() for cell in lines[0].split("|")]
    headers = [h for h in headers if h and set(h) != {"-"}]
    rows = []
    for line in lines[2:]:
        if "|" not in line:
            continue
        cells = [cell.strip() for cell in line.split("|")[1:]]
        if len(cells) >= len(headers):
            rows.append(dict(zip(headers, cells, strict=False)))
    return rows


def parse_int_box(text: str) -> tuple[int, int, int, int] | None:
    """``x1,y1,x2,y2`` as four integers, or None when the cell is malformed."""
    parts = text.split(",")
    if len(parts) != 4:
        return None
    try:
        x1, y1, x2, y2 = (int(part) for part in parts)
    except ValueError:
        return None
    return x1, y1, x2, y2


def _clamp(value: float) -> float:
    return max(0.0, min(1.0, value))


@dataclass(frozen=True)
class OriginalDetection:
    """One CoT row as the original ``Detection``: label, image and normalised x, y, w, h."""

    label: str
    image_id: str
    x: float
    y: float
    w: float
    h: float
    row: int  # position in the CoT, 0-based (the original's running id)

    @property
    def is_person(self) -> bool:
        return self.label == PERSON


def object_label(description: str) -> str:
    """The label the original gave an object row: its description's first word, lower-cased."""
    words = description.split()
    label = words[0].lower() if words else "object"
    return label.replace("_", "-")  # the original Detection turned "_" (and spaces) into "-"


def cot_detections(raw: str, image_sizes: list[tuple[int, int]]) -> list[OriginalDetection]:
    """The detections of one raw model output, exactly as the original built them.

    Raises ``ValueError`` when the CoT has an image section numbered above
    ``len(image_sizes)`` (and whatever a degenerate image size raises), as the original
    did; :func:`story_detections` turns any exception into an empty list.
    """
    detections: list[OriginalDetection] = []
    for n, section in image_sections(extract_cot(raw)):
        if n > len(image_sizes):
            raise ValueError(f"image {n} not in a story of {len(image_sizes)} images")
        width, height = image_sizes[n - 1]
        rows = [(PERSON, row) for row in table_rows(section, "### Characters")]
        rows += [
            (object_label(row.get("Description", "")), row) for row in table_rows(section, "### Objects")
        ]
        for label, row in rows:
            box = parse_int_box(row.get("Bounding Box", ""))
            if box is None:
                continue  # the original printed a message and skipped the row
            x1, y1, x2, y2 = box
            detections.append(
                OriginalDetection(
                    label=label,
                    image_id=str(n),
                    x=_clamp(x1 / width),
                    y=_clamp(y1 / height),
                    w=_clamp((x2 - x1) / width),
                    h=_clamp((y2 - y1) / height),
                    row=len(detections),
                )
            )
    return detections


def story_detections(raw: str | None, image_sizes: list[tuple[int, int]]) -> list[OriginalDetection]:
    """:func:`cot_detections`, with an empty list for no text or for any exception."""
    if raw is None:
        return []
    try:
        return cot_detections(raw, image_sizes)
    except Exception:  # the original driver caught every exception here
        return []


# -- matching and metrics -----------------------------------------------------------------------


def iou(a: OriginalDetection, b: OriginalDetection) -> float:
    """IoU of two normalised boxes as the original ``Detection`` computed it."""
    left = max(a.x, b.x)
    top = max(a.y, b.y)
    right = min(a.x + a.w, b.x + b.w)
    bottom = min(a.y + a.h, b.y + b.h)
    inter = 0.0 if right < left or bottom < top else (right - left) * (bottom - top)
    union = a.w * a.h + b.w * b.h - inter
    if union == 0:
        return 1.0 if (a.x == b.x and a.y == b.y) else 0.0
    return inter / union


def match(
    references: list[OriginalDetection],
    candidates: list[OriginalDetection],
    iou_threshold: float = IOU_THRESHOLD,
) -> list[tuple[int, int]]:
    """Greedy one-to-one matches ``(reference index, candidate index)``, across images."""
    pairs = []
    cand_person = [cand.is_person for cand in candidates]
    for i, ref in enumerate(references):
        ref_person = ref.is_person
        for j, cand in enumerate(candidates):
            if ref_person != cand_person[j]:
                continue
            value = iou(ref, cand)
            if value >= iou_threshold:
                pairs.append((i, j, value))
    pairs.sort(key=lambda pair: pair[2], reverse=True)  # stable: ties keep their order
    used_ref: set[int] = set()
    used_cand: set[int] = set()
    matches = []
    for i, j, _ in pairs:
        if i in used_ref or j in used_cand:
            continue
        used_ref.add(i)
        used_cand.add(j)
        matches.append((i, j))
    return matches


def _prf(n_ref: int, n_cand: int, tp: int) -> tuple[float, float, float]:
    precision = tp / n_cand if n_cand else 1.0
    recall = tp / n_ref if n_ref else 1.0
    if not n_ref and not n_cand:
        return 1.0, 1.0, 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f1


def average_precision(
    references: list[OriginalDetection],
    candidates: list[OriginalDetection],
    iou_threshold: float = IOU_THRESHOLD,
    *,
    matches: list[tuple[int, int]] | None = None,
) -> float:
    """The original 11-point AP of one story (row order decides the ranking).

    ``matches`` is :func:`match` of the same lists when already computed.
    """
    if not references and not candidates:
        return 1.0
    if not references or not candidates:
        return 0.0
    if matches is None:
        matches = match(references, candidates, iou_threshold)
    matched = {j for _, j in matches}
    points = []
    tp = 0
    # every score is 1.0 and the sort by score is stable: the ranking is the row order
    for rank, j in enumerate(range(len(candidates))):
        if j in matched:
            tp += 1
        points.append((tp / (rank + 1), tp / len(references)))
    total = 0.0
    for t in THRESHOLDS:
        reached = [p for p, r in points if r >= t]
        total += max(reached) if reached else 0.0
    return total / len(THRESHOLDS)


_VARIANTS = (("", None), ("_characters", True), ("_objects", False))


def story_scores(
    references: list[OriginalDetection],
    candidates: list[OriginalDetection],
    iou_threshold: float = IOU_THRESHOLD,
) -> dict[str, float]:
    """Every per-story number of the original: P, R, F1 (all, characters, objects) and AP.

    The original matched again after restricting both sides to one type; as a pair
    always joins two detections of the same type, and the stable sort keeps the
    relative order of the restricted pairs, that matching is exactly the full matching
    restricted to the type, which is what is counted here (one matching per story).
    """
    matches = match(references, candidates, iou_threshold)
    row: dict[str, float] = {}
    for suffix, person in _VARIANTS:
        n_ref = sum(1 for d in references if person is None or d.is_person == person)
        n_cand = sum(1 for d in candidates if person is None or d.is_person == person)
        tp = sum(1 for i, _ in matches if person is None or references[i].is_person == person)
        precision, recall, f1 = _prf(n_ref, n_cand, tp)
        row[f"tp{suffix}"] = tp
        row[f"fp{suffix}"] = n_cand - tp
        row[f"fn{suffix}"] = n_ref - tp
        row[f"precision{suffix}"] = precision
        row[f"recall{suffix}"] = recall
        row[f"f1{suffix}"] = f1
    row["ap"] = average_precision(references, candidates, iou_threshold, matches=matches)
    return row


METRIC_KEYS = (
    *(f"{metric}{suffix}" for suffix, _ in _VARIANTS for metric in ("precision", "recall", "f1")),
    "ap",
)

#: Our overall key -> the original's printed name.
LABELS = {
    "precision_macro": "Precision",
    "recall_macro": "Recall",
    "f1_macro": "F1",
    "precision_characters_macro": "Character Precision",
    "recall_characters_macro": "Character Recall",
    "f1_characters_macro": "Character F1",
    "precision_objects_macro": "Object Precision",
    "recall_objects_macro": "Object Recall",
    "f1_objects_macro": "Object F1",
    "map": "mAP",
}

CONVENTIONS = [
    "protocol original: reproduces the original evaluate.py, defects included",
    "detections: every parsable CoT row (original parser rules); characters are 'person', objects are "
    "labelled by the first word of their description, so 'Person …' objects count as characters",
    "rows with a malformed or decimal box are skipped; an '## Image N' with N above the number of images "
    "drops all of that side's detections for the story",
    "boxes normalised by the image size, x, y, w and h each clamped to [0, 1]",
    "matching: greedy one-to-one by IoU >= 0.5 descending, person vs non-person only, across images",
    "empty sets: P = 1 with no candidates, R = 1 with no references, F1 = 1 only when both are empty; "
    "AP = 1 when both are empty, 0 when either is",
    "mAP: 11-point interpolation with float-range thresholds (recall exactly 0.3, 0.6 or 0.7 misses its "
    "threshold); candidates ranked in CoT row order (all scores 1.0)",
    "averages: macro (mean of per-story values); missing outputs excluded; 0.0 when no story",
]


def story_row(pair: StoryPair, iou_threshold: float = IOU_THRESHOLD) -> dict[str, float] | None:
    """One story's row of the original's numbers, or None for a missing output (excluded)."""
    if pair.candidate is None:
        return None
    references = story_detections(pair.reference.raw, pair.image_sizes)
    candidates = story_detections(pair.candidate.raw, pair.image_sizes)
    row = story_scores(references, candidates, iou_threshold)
    row["references"] = len(references)
    row["candidates"] = len(candidates)
    return row


def original(pairs: list[StoryPair], *, iou_threshold: float = IOU_THRESHOLD) -> Scores:
    """Grounding scores exactly as the original driver computed them (family ``grounding``).

    ``overall`` has ``precision_macro``, ``recall_macro``, ``f1_macro``, the same with
    ``_characters`` and ``_objects``, ``map`` (and ``map_macro``, the same value),
    ``stories`` (scored) and ``missing`` (excluded). ``per_story`` has every scored
    story's tp/fp/fn, metrics and ``ap``.
    """
    return summarize([(pair.story_id, story_row(pair, iou_threshold)) for pair in pairs], iou_threshold)


def summarize(
    items: Sequence[tuple[str, dict[str, float] | None]], iou_threshold: float = IOU_THRESHOLD
) -> Scores:
    """The original's scores from each story's :func:`story_row` (``(story_id, row)`` in order)."""
    per_story: dict[str, dict[str, float | None]] = {}
    missing = 0
    for story_id, row in items:
        if row is None:
            missing += 1
            continue
        per_story[story_id] = row  # type: ignore[assignment]
    rows = list(per_story.values())
    overall: dict[str, float | None] = {}
    for key in METRIC_KEYS:
        values = [row[key] for row in rows]
        mean = sum(values) / len(values) if values else 0.0
        overall["map" if key == "ap" else f"{key}_macro"] = mean
    overall["map_macro"] = overall["map"]
    overall["stories"] = len(rows)
    overall["missing"] = missing
    conventions = list(CONVENTIONS)
    if iou_threshold != IOU_THRESHOLD:
        conventions.append(f"IoU threshold {iou_threshold} instead of the original's 0.5")
    return Scores(
        family="grounding",
        overall=overall,
        per_story=per_story,
        conventions=conventions,
        extra={"protocol": "original", "labels": dict(LABELS)},
    )


__all__ = [
    "THRESHOLDS",
    "OriginalDetection",
    "average_precision",
    "cot_detections",
    "extract_cot",
    "image_sections",
    "iou",
    "match",
    "object_label",
    "original",
    "story_detections",
    "story_row",
    "story_scores",
    "summarize",
    "table_rows",
]
