"""The reward of contrastive preference training: structure, grounding and re-identification.

QwenStoryteller2 (its model card) trains with DPO on "offline preference pairs generated
from the reward function", a "dual-component reward" of entity re-identification
(R_reid: "promoting connections in real stories while penalizing them in synthetic
ones") and grounding (R_ground: "pronoun and proper noun grounding to visual
entities"), "with structural validation". The paper's formulas and weights are not
public (``reference/field-notes.md``, section 1.2), so this is our reconstruction, every
part of it configurable and reported separately:

``structure`` (a gate, 0 or 1)
    the format validator's well-structured verdict for the story's frames (CoT and
    story present, one section and one segment per image, tables parse, five phases,
    every story id defined in the CoT, boxes valid for the frame sizes). An output that
    fails it scores 0 overall whatever its other parts (``gate=False`` turns the gate
    into a plain weighted component).
``boxes``
    the CoT rows' detection F1 against the reference (same image, IoU ≥ 0.5, one-to-one;
    invalid boxes are false positives; 1 when both sides have no rows).
``reid``
    cross-frame link F1 against the reference: a link is two rows of one id in two
    frames, correct when both rows match rows of one reference entity (1 when neither
    side links anything). Minus ``cross_source`` times the share of the predicted links
    that join frames from different sources (``frame_meta[i]["source"]``): in a synthetic
    sequence of unrelated frames, any such link is a wrong re-identification. Clipped
    to [0, 1].
``mentions``
    the share of pronouns (he, she, they, his, her, their, its, him, them, it) and of
    character names (the CoT's Name column) in the story that sit inside a ``<gdo>`` span
    naming an entity present in that segment's image (1 when there are none).

``total = structure × (w_boxes·boxes + w_reid·reid + w_mentions·mentions) / (w_boxes + w_reid + w_mentions)``

Everything is deterministic and pure Python: the same output and reference always get
the same reward.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from ..evaluate.detections import telling_detections
from ..evaluate.grounding import IOU_THRESHOLD, match_detections
from ..evaluate.identity import story_counts
from ..evaluate.pronouns import find_pronouns, segment_layout
from ..format.cot import id_kind
from ..format.story import Span
from ..format.stream import Telling, parse_output


@dataclass(frozen=True)
class RewardWeights:
    """How the components add up (see the module docstring)."""

    boxes: float = 1.0
    reid: float = 1.0
    mentions: float = 1.0
    cross_source: float = 1.0
    gate: bool = True
    iou_threshold: float = IOU_THRESHOLD

    def __post_init__(self) -> None:
        for name in ("boxes", "reid", "mentions", "cross_source"):
            if getattr(self, name) < 0:
                raise ValueError(f"reward weight {name} must not be negative, got {getattr(self, name)}")
        if self.boxes + self.reid + self.mentions <= 0:
            raise ValueError("at least one of the boxes, reid and mentions weights must be positive")


@dataclass
class Reward:
    """One output's reward and its parts (all in [0, 1])."""

    total: float
    structure: float
    boxes: float
    reid: float
    mentions: float
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


def mention_counts(telling: Telling) -> dict[str, int]:
    """Pronouns and character names in the story, and how many are grounded in their own image."""
    story, cot = telling.story, telling.cot
    counts = {"pronouns": 0, "pronouns_grounded": 0, "names": 0, "names_grounded": 0}
    if story is None:
        return counts
    present: dict[int, set[str]] = {}
    names: list[re.Pattern] = []
    if cot is not None:
        for image in cot.images:
            present[image.number] = set(image.entity_ids())
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


def cross_source_links(telling: Telling, sources: Sequence[str | None]) -> tuple[int, int]:
    """``(links, cross)``: cross-frame links of the CoT, and those joining frames of different sources."""
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
                sa = sources[a - 1] if 0 < a <= len(sources) else None
                sb = sources[b - 1] if 0 < b <= len(sources) else None
                cross += sa is not None and sb is not None and sa != sb
    return links, cross


def story_reward(
    candidate: str | Telling | None,
    reference: str | Telling,
    image_sizes: Sequence[tuple[int, int]],
    *,
    sources: Sequence[str | None] | None = None,
    weights: RewardWeights = RewardWeights(),
) -> Reward:
    """The reward of one output for a story (reference output, frame sizes, frame sources)."""
    if candidate is None or (isinstance(candidate, str) and not candidate.strip()):
        return Reward(0.0, 0.0, 0.0, 0.0, 0.0, {"empty": True})
    cand = parse_output(candidate) if isinstance(candidate, str) else candidate
    ref = parse_output(reference) if isinstance(reference, str) else reference
    sizes = [tuple(s) for s in image_sizes]
    verdict = cand.validate(n_images=len(sizes), image_sizes=sizes)
    structure = 1.0 if verdict.well_structured else 0.0

    refs = [d for d in telling_detections(ref, sizes) if d.valid]
    cands = telling_detections(cand, sizes)
    tp = len(match_detections(refs, cands, weights.iou_threshold))
    boxes = _f1(tp, len(cands), len(refs))

    ids = story_counts(refs, cands, weights.iou_threshold)
    link_f1 = _f1(ids.get("links_correct", 0), ids.get("links_predicted", 0), ids.get("links_reference", 0))
    links, cross = cross_source_links(cand, list(sources) if sources else [None] * len(sizes))
    cross_share = cross / links if links else 0.0
    reid = min(1.0, max(0.0, link_f1 - weights.cross_source * cross_share))

    m = mention_counts(cand)
    total_mentions = m["pronouns"] + m["names"]
    mentions = (m["pronouns_grounded"] + m["names_grounded"]) / total_mentions if total_mentions else 1.0

    w = weights
    mix = (w.boxes * boxes + w.reid * reid + w.mentions * mentions) / (w.boxes + w.reid + w.mentions)
    total = structure * mix if w.gate else (mix + structure) / 2
    details = {
        "well_structured": verdict.well_structured,
        "reasons": [d.message for d in verdict.reasons[:5]],
        "rows": len(cands),
        "reference_rows": len(refs),
        "matched_rows": tp,
        "links": ids.get("links_predicted", 0),
        "links_reference": ids.get("links_reference", 0),
        "links_correct": ids.get("links_correct", 0),
        "cross_source_links": cross,
        **m,
    }
    return Reward(round(total, 12), structure, boxes, reid, mentions, details)


class StoryScorer:
    """The reward of many outputs for one story: its reference, frame sizes and sources read once."""

    def __init__(self, sample, weights: RewardWeights = RewardWeights()) -> None:
        self.reference = sample.telling()
        self.sizes = sample.frame_sizes()
        self.sources = (
            [(meta or {}).get("source") for meta in sample.frame_meta] if sample.frame_meta else None
        )
        self.weights = weights

    def __call__(self, candidate: str | Telling | None) -> Reward:
        return story_reward(candidate, self.reference, self.sizes, sources=self.sources, weights=self.weights)


def sample_reward(
    candidate: str | Telling | None, sample, weights: RewardWeights = RewardWeights()
) -> Reward:
    """:func:`story_reward` against a :class:`~storyreasoning.data.StorySample` (its sources from ``frame_meta``).

    Scoring several outputs of one story? :class:`StoryScorer` reads the story once.
    """
    return StoryScorer(sample, weights)(candidate)


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
            if isinstance(completion, list):  # conversational: [{"role": "assistant", "content": ...}]
                content = completion[-1].get("content", "") if completion else ""
                if isinstance(content, list):
                    content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
                completion = content
            if sid not in scorers:
                scorers[sid] = StoryScorer(stories[sid], weights)
            out.append(scorers[sid](completion).total)
        return out

    return storyreasoning_reward


__all__ = [
    "Reward",
    "RewardWeights",
    "StoryScorer",
    "cross_source_links",
    "mention_counts",
    "sample_reward",
    "story_reward",
    "trl_reward",
]
