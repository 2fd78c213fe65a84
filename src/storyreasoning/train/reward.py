"""The reward of contrastive preference training: structure, re-identification and grounding.

QwenStoryteller2 (its model card) trains with DPO on "offline preference pairs generated
from the reward function", a "dual-component reward" that "combined entity
re-identification (R_reid) and grounding (R_ground) rewards with structural
validation": re-identification "tracks character and object persistence across
frames, promoting connections in real stories while penalizing them in synthetic ones";
grounding "evaluates pronoun and proper noun grounding to visual entities"; structure
"ensures generated outputs maintain required format and consistency". The paper's
formulas and weights are not public (``reference/field-notes.md``, section 1.2), so what
follows is **our reconstruction**. Every choice below is ours, every part is reported
separately and the weights are options.

The reward compares an output with the story's reference (the dataset's own CoT and
story: written by people or, in a built dataset, by the builder on automatic
detections) and uses each frame's identity group
(:meth:`~storyreasoning.data.sample.StorySample.frame_group`: the film, video or story
the frame belongs to). Every part is in [0, 1] (grounding may be not applicable).

``structure`` (a gate by default, 0 or 1)
    The format validator's well-structured verdict for the story's frames (CoT and
    story present, one section and one segment per image, tables parse, five phases,
    every story id defined in the CoT, boxes valid for the frame sizes): the card's
    "structural validation". An output that fails it scores 0 overall whatever its
    other parts. ``gate=False`` makes it a plain component:
    ``total = (mix + structure) / 2``, ``mix`` being the weighted mean below.
``reid`` (the card's R_reid)
    Judged on the identity structure, not on box precision: the output's CoT rows are
    matched to the reference's rows of the same image and group (characters; objects,
    backgrounds and landmarks) by IoU >= ``reid_iou`` (0.3 by default, looser than the
    0.5 of detection metrics, because the reference boxes are themselves automatic and
    a storyteller's box for the right person is often a little off), greedily by IoU,
    one to one. Then, with :func:`storyreasoning.evaluate.identity.story_counts`:

    * ``idf1``: the identity F1 of tracks (an id and its rows over the frames), predicted
      ids assigned to reference ids by SciPy's Hungarian method; ``2·IDTP / (predicted
      rows + reference rows)``. It falls when one person gets several ids (a track is
      assigned once) and when several people share one id, and it is 0 for an output
      without rows when the reference has some: leaving the characters out cannot score.
    * ``link_f1``: the F1 of cross-frame links (two rows of one id in two frames),
      a predicted link correct when its two rows match rows of one reference entity;
      1 when neither side links anything (the right answer for a sequence of
      unrelated frames, whose reference links nothing).

    ``reid = clip(idf1 × link_f1 − cross_group × share of the predicted links joining
    frames of different groups)``. The product asks for both: keeping each entity's
    track and drawing the right links. A story that never re-identifies anyone has
    link_f1 = 0 on a real story with links, hence reid 0; one that merges everyone
    under one id keeps its true links but loses precision in both factors; an output
    with no rows has idf1 = 0, hence reid 0, on synthetic sequences too. In a synthetic
    sequence every link across groups is a wrong re-identification, so it is punished
    on top of the lost link precision, while linking frames of one film is not.
    Backgrounds are left out of the cross-group share (two skies are not an identity
    claim).
``grounding`` (the card's R_ground)
    The mean of two shares:

    * mention precision: of the story's pronouns (he, she, they, his, her, their, its,
      him, them, it) and character names (the output CoT's Name column), the share
      inside a ``<gdo>`` span naming an entity listed in that segment's image. **0 when
      the story has none**: a story that avoids pronouns and names does not get the
      grounding score for free.
    * character recall: of the characters the reference story grounds in a frame (a
      ``<gdo>`` naming them in that frame's segment), the share whose matching output
      row (same matching as ``reid``) the output's story also grounds in that frame's
      segment. It keeps one well-tagged pronoun from earning the whole component.
      Left out (grounding = mention precision) when the reference grounds no character.

    Not applicable (``None``, its weight left out of the mix) when the reference itself
    has nothing to ground: no pronoun, no name and no grounded character (a story of
    empty rooms and landscapes). Scoring mention precision there would pay an output
    for inventing a person to tag.
``boxes`` (optional, weight 0 by default)
    The CoT rows' detection F1 against the reference (same image and group,
    IoU >= ``iou_threshold`` = 0.5, one-to-one; invalid boxes are false positives; 1
    when both sides have no rows). Not one of the card's components; it is always
    reported, and ``--w-boxes`` adds it to the mix.

``total = structure × (w_reid·reid + w_grounding·grounding + w_boxes·boxes) / (w_reid + w_grounding + w_boxes)``

with ``w_reid = w_grounding = 1`` and ``w_boxes = 0`` by default; a component that is
not applicable is left out of both sums (and when no weighted component applies, the
structure alone decides). A reference scores ``reid = 1`` against itself on a real
story, a built one included (its frames share one group). Grounding depends on the
reference's own mention precision, so a reference does not always score 1 overall: the
reward ranks candidates of one story, and only differences within a story matter.

Everything is deterministic: the same output and reference always get the same reward.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction

from ..evaluate.detections import Detection, telling_detections
from ..evaluate.grounding import IOU_THRESHOLD, iou_exact, match_detections
from ..evaluate.identity import story_counts
from ..evaluate.pronouns import find_pronouns, segment_layout
from ..format.cot import id_kind
from ..format.story import Span
from ..format.stream import Telling, parse_output

#: IoU at which output rows match reference rows for re-identification and grounding.
REID_IOU = 0.3


@dataclass(frozen=True)
class RewardWeights:
    """How the components add up (see the module docstring)."""

    reid: float = 1.0
    grounding: float = 1.0
    boxes: float = 0.0
    cross_group: float = 1.0
    gate: bool = True
    reid_iou: float = REID_IOU
    iou_threshold: float = IOU_THRESHOLD

    def __post_init__(self) -> None:
        for name in ("reid", "grounding", "boxes", "cross_group"):
            if getattr(self, name) < 0:
                raise ValueError(f"reward weight {name} must not be negative, got {getattr(self, name)}")
        if self.reid + self.grounding + self.boxes <= 0:
            raise ValueError("at least one of the reid, grounding and boxes weights must be positive")
        for name in ("reid_iou", "iou_threshold"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")


@dataclass
class Reward:
    """One output's reward and its parts (all in [0, 1])."""

    total: float
    structure: float
    reid: float
    grounding: float | None  # None: the reference has nothing to ground
    boxes: float
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _f1(correct: int, predicted: int, reference: int) -> float:
    if predicted == 0 and reference == 0:
        return 1.0
    return 2 * correct / (predicted + reference)


def _word_re(name: str) -> re.Pattern | None:
    name = " ".join(name.split())
    if len(name) < 2 or name.lower() in {"unknown", "none", "n/a", "-", "unnamed"}:
        return None
    return re.compile(rf"(?<!\w){re.escape(name)}(?!\w)", re.IGNORECASE)


def _present(telling: Telling) -> dict[int, set[str]]:
    """Image number -> the entity ids its CoT section lists."""
    cot = telling.cot
    return {image.number: {i.strip() for i in image.entity_ids()} for image in cot.images} if cot else {}


def grounded_entities(telling: Telling) -> set[tuple[int, str]]:
    """``(image, id)`` of every entity a ``<gdo>`` span of image's segment names, when the CoT lists it there."""
    out: set[tuple[int, str]] = set()
    if telling.story is None:
        return out
    present = _present(telling)
    for segment in telling.story.segments:
        here = present.get(segment.image, set())
        for part in segment.parts:
            if isinstance(part, Span) and part.kind == "gdo":
                out.update((segment.image, i) for i in part.ids if i in here)
    return out


def mention_counts(telling: Telling) -> dict[str, int]:
    """Pronouns and character names in the story, and how many are grounded in their own image."""
    story, cot = telling.story, telling.cot
    counts = {"pronouns": 0, "pronouns_grounded": 0, "names": 0, "names_grounded": 0}
    if story is None:
        return counts
    present = _present(telling)
    names: list[re.Pattern] = []
    if cot is not None:
        for image in cot.images:
            for row in image.characters:
                pattern = _word_re(row.name or "")
                if pattern is not None and all(p.pattern != pattern.pattern for p in names):
                    names.append(pattern)
    for segment in story.segments:
        plain, ranges = segment_layout(segment.parts)
        here = present.get(segment.image, set())

        def grounded(start: int, end: int, ranges=ranges, here=here) -> bool:
            for a, b, span in ranges:
                if a <= start and end <= b and isinstance(span, Span) and span.kind == "gdo":
                    return any(i in here and id_kind(i) is not None for i in span.ids)
            return False

        for _, start, end in find_pronouns(plain):
            counts["pronouns"] += 1
            counts["pronouns_grounded"] += grounded(start, end)
        for pattern in names:
            for m in pattern.finditer(plain):
                counts["names"] += 1
                counts["names_grounded"] += grounded(m.start(), m.end())
    return counts


def cross_group_links(telling: Telling, groups: Sequence[str | None]) -> tuple[int, int]:
    """``(links, cross)``: cross-frame links of the CoT (characters, objects, landmarks), and those joining frames of different groups."""
    by_id: dict[str, set[int]] = {}
    if telling.cot is not None:
        for image in telling.cot.images:
            for eid in image.entity_ids():
                if id_kind(eid) in ("char", "obj", "lm"):
                    by_id.setdefault(eid, set()).add(image.number)
    links = cross = 0
    for frames in by_id.values():
        ordered = sorted(frames)
        for k, a in enumerate(ordered):
            for b in ordered[k + 1 :]:
                links += 1
                ga = groups[a - 1] if 0 < a <= len(groups) else None
                gb = groups[b - 1] if 0 < b <= len(groups) else None
                cross += ga is not None and gb is not None and ga != gb
    return links, cross


class _Reference:
    """What the reward needs of a reference, computed once per story."""

    def __init__(self, reference: str | Telling, image_sizes: Sequence[tuple[int, int]]) -> None:
        self.telling = parse_output(reference) if isinstance(reference, str) else reference
        self.sizes = [tuple(s) for s in image_sizes]
        self.rows: list[Detection] = [d for d in telling_detections(self.telling, self.sizes) if d.valid]
        grounded = grounded_entities(self.telling)
        # the reference's grounded character appearances, as indices into its rows
        self.grounded_characters = [
            k for k, d in enumerate(self.rows) if d.kind == "character" and (d.image, d.entity_id) in grounded
        ]
        mentions = mention_counts(self.telling)
        self.groundable = bool(self.grounded_characters or mentions["pronouns"] or mentions["names"])


def _score(
    candidate: str | Telling | None, ref: _Reference, groups: Sequence[str | None], weights: RewardWeights
) -> Reward:
    if candidate is None or (isinstance(candidate, str) and not candidate.strip()):
        return Reward(0.0, 0.0, 0.0, 0.0, 0.0, {"empty": True})
    cand = parse_output(candidate) if isinstance(candidate, str) else candidate
    sizes = ref.sizes
    verdict = cand.validate(n_images=len(sizes), image_sizes=sizes)
    structure = 1.0 if verdict.well_structured else 0.0
    rows = telling_detections(cand, sizes)

    # One greedy matching at the lower of the two thresholds serves both: greedy takes pairs by
    # IoU descending, so its pairs at or above the higher threshold are exactly the matching
    # it makes at that threshold.
    low = min(weights.iou_threshold, weights.reid_iou)
    matches = [(i, j, iou_exact(ref.rows[i], rows[j])) for i, j in match_detections(ref.rows, rows, low)]

    # boxes: detection F1 at the detection threshold (reported always, weighted 0 by default)
    box_threshold, reid_threshold = Fraction(weights.iou_threshold), Fraction(weights.reid_iou)
    tp = sum(1 for _, _, iou in matches if iou >= box_threshold)
    boxes = _f1(tp, len(rows), len(ref.rows))

    # re-identification: identity F1 and link F1 at the looser matching, minus cross-group links
    ids = story_counts(ref.rows, rows, weights.reid_iou)
    idf1 = _f1(ids["idtp"], len(rows), len(ref.rows))
    link_f1 = _f1(ids["links_correct"], ids["links_predicted"], ids["links_reference"])
    links, cross = cross_group_links(cand, groups)
    cross_share = cross / links if links else 0.0
    reid = min(1.0, max(0.0, idf1 * link_f1 - weights.cross_group * cross_share))

    # grounding: pronouns and names grounded (0 without any), and the reference's grounded characters found
    m = mention_counts(cand)
    mentions = m["pronouns"] + m["names"]
    precision = (m["pronouns_grounded"] + m["names_grounded"]) / mentions if mentions else 0.0
    found = 0
    recall: float | None = None
    grounding: float | None = precision
    if ref.grounded_characters:
        matched = {i: j for i, j, iou in matches if iou >= reid_threshold}
        tagged = grounded_entities(cand)
        for k in ref.grounded_characters:
            j = matched.get(k)
            found += j is not None and (rows[j].image, rows[j].entity_id) in tagged
        recall = found / len(ref.grounded_characters)
        grounding = (precision + recall) / 2
    if not ref.groundable:
        grounding = None

    w = weights
    parts = [(w.reid, reid), (w.boxes, boxes)] + ([(w.grounding, grounding)] if grounding is not None else [])
    weight = sum(weight for weight, _ in parts)
    mix = sum(weight * value for weight, value in parts) / weight if weight else 1.0
    total = structure * mix if w.gate else (mix + structure) / 2
    details = {
        "well_structured": verdict.well_structured,
        "reasons": [d.message for d in verdict.reasons[:5]],
        "rows": len(rows),
        "reference_rows": len(ref.rows),
        "matched_rows": tp,
        "idf1": idf1,
        "link_f1": link_f1,
        "links": ids["links_predicted"],
        "links_reference": ids["links_reference"],
        "links_correct": ids["links_correct"],
        "cross_group_links": cross,
        **m,
        "mention_precision": precision,
        "characters_grounded_reference": len(ref.grounded_characters),
        "characters_grounded_found": found,
        "character_recall": recall,
    }
    return Reward(round(total, 12), structure, reid, grounding, boxes, details)


def story_reward(
    candidate: str | Telling | None,
    reference: str | Telling,
    image_sizes: Sequence[tuple[int, int]],
    *,
    groups: Sequence[str | None] | None = None,
    weights: RewardWeights = RewardWeights(),
) -> Reward:
    """The reward of one output for a story: its reference output, frame sizes and frames' identity groups.

    ``groups`` holds one identity group per frame (None, or no list: one group for all).
    """
    ref = _Reference(reference, image_sizes)
    return _score(candidate, ref, list(groups) if groups else [None] * len(ref.sizes), weights)


class StoryScorer:
    """The reward of many outputs for one story: its reference, frame sizes and groups read once."""

    def __init__(self, sample, weights: RewardWeights = RewardWeights()) -> None:
        self.reference = _Reference(sample.telling(), sample.frame_sizes())
        self.groups = [sample.frame_group(i) for i in range(sample.frame_count)]
        self.weights = weights

    def __call__(self, candidate: str | Telling | None) -> Reward:
        return _score(candidate, self.reference, self.groups, self.weights)


def sample_reward(
    candidate: str | Telling | None, sample, weights: RewardWeights = RewardWeights()
) -> Reward:
    """:func:`story_reward` against a :class:`~storyreasoning.data.StorySample` (its groups from ``frame_meta``).

    Scoring several outputs of one story? :class:`StoryScorer` reads the story once.
    """
    return StoryScorer(sample, weights)(candidate)


def completion_text(completion):
    """The text of a TRL completion: a string, or chat messages (``[{"role": "assistant", "content": ...}]``)."""
    if isinstance(completion, list):
        content = completion[-1].get("content", "") if completion else ""
        if isinstance(content, list):
            content = "".join(p.get("text", "") or "" for p in content if isinstance(p, dict))
        return content or ""
    return completion


def trl_reward(
    stories: Mapping[str, object], weights: RewardWeights = RewardWeights()
) -> Callable[..., list[float]]:
    """A reward callable with TRL's signature, ``f(completions, story_id, **kwargs) -> list[float]``.

    ``stories`` maps story ids to :class:`~storyreasoning.data.StorySample`; the training
    dataset needs a ``story_id`` column. Completions may be strings or chat messages.
    """

    scorers: dict[str, StoryScorer] = {}

    def storyreasoning_reward(completions, story_id, **kwargs) -> list[float]:
        out = []
        for completion, sid in zip(completions, story_id, strict=True):
            if sid not in scorers:
                scorers[sid] = StoryScorer(stories[sid], weights)
            out.append(scorers[sid](completion_text(completion)).total)
        return out

    return storyreasoning_reward


__all__ = [
    "REID_IOU",
    "Reward",
    "RewardWeights",
    "StoryScorer",
    "completion_text",
    "cross_group_links",
    "grounded_entities",
    "mention_counts",
    "sample_reward",
    "story_reward",
    "trl_reward",
]
