"""Consistency: the numbers QwenStoryteller2 reports besides grounding and language.

Its model card reports four kinds of number; each is computed here on the candidate
outputs, and the same numbers for the references go to ``extra["reference"]`` so a
report can put them side by side:

* **persistence**, "Character persistence on ≥5 frames increased from 37.7% to 49.3%",
  "Object persistence on ≥5 frames improved from 20.9% to 21.3%": the share of a
  story's characters (``char`` ids) and objects (``obj`` ids) present in at least N
  frames, N = 1 … the most frames of any story. As in the original statistics code
  (``calculate_frame_distribution``), an entity's frames are the CoT image sections
  that list its id, ``bg`` ids are left out, the share is taken per story and averaged
  over stories (macro). ``lm`` ids are left out too (no code ever assigned them; they
  are setting, not objects). The pooled share over all entities (micro) and the same
  curves from the *story's* mentions (the ``<gdi imageN>`` segments whose tags name the
  id) are in ``extra["persistence"]``;
* **pronoun grounding**, "he: 90.1%→99.1%, she: 91.1%→98.6%, they: 47.6%→68.8%": the
  share of occurrences of each pronoun that lie inside a ``<gdo>`` span, under the
  character-only rule of the original and an any-entity rule (see :mod:`.pronouns`),
  pooled over stories;
* **well-structured rate**, "Well-structured stories increased from 79.1% to 97.5%":
  the share of stories whose output :func:`~storyreasoning.format.validate.validate`
  accepts, given the story's image sizes;
* **hallucinations** (the paper's "fewer hallucinations", never computed by the original
  code): ids the story uses that the CoT never defines (``unknown_ids``); ids a
  ``<gdi imageN>`` segment names that the CoT defines, but not in Image N
  (``off_image_ids``); and CoT boxes that are invalid (``invalid_boxes``: unparsable,
  degenerate, or outside the image beyond the validator's 10 % tolerance). Each is
  counted once per story: an id once, an (image, id) pair once, a box once.

Missing outputs are counted (``n_missing``, ``extra["missing"]``). By default
(``missing="zero"``) a missing output is a story that is not well-structured, as grounding
scores it an output with no rows: a crashed or partial run must not look like a whole one.
The other numbers are about what an output holds (its ids, its pronouns, its
hallucinations), and a missing output holds nothing: it is left out of them, as grounding
leaves a story without candidate rows out of its precision. Counting it as an output with
no hallucinations would make a partial run look better. ``missing="exclude"`` (the original
protocol) leaves it out of the well-structured rate too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from ..format.box import check_box_in_image, parse_box
from ..format.cot import id_kind
from ..format.diagnostics import Severity
from ..format.stream import Telling
from .language import MISSING_POLICIES  # how a missing output counts: as language's, one policy per protocol
from .pairs import Scores, StoryPair
from .pronouns import PRONOUNS, RULES, PronounCounts, pronoun_counts

KINDS = {"characters": ("char",), "objects": ("obj",), "entities": ("char", "obj")}
"""Which id kinds each persistence curve counts."""

BOX_PROBLEMS = ("unparsable", "degenerate", "out_of_image")
"""The kinds of invalid CoT box, in the order a box is checked (it counts under the first)."""

HEADLINE_N = (2, 5)
"""The thresholds reported in ``overall`` (the full curves are in ``extra``)."""


@dataclass
class TellingStats:
    """The raw consistency counts of one output (a candidate or a reference)."""

    well_structured: bool
    n_frames: int
    # source ("cot" | "story") -> entity id -> the frames it appears in
    frames: dict[str, dict[str, set[int]]]
    pronouns: dict[str, PronounCounts]
    unknown_ids: list[str] = field(default_factory=list)
    off_image_ids: list[tuple[int, str]] = field(default_factory=list)
    # "unparsable" | "degenerate" | "out_of_image" -> ["image 2 obj3: 1,2,3", ...]
    invalid_boxes: dict[str, list[str]] = field(default_factory=dict)
    missing_boxes: int = 0

    @property
    def n_invalid_boxes(self) -> int:
        return sum(len(v) for v in self.invalid_boxes.values())

    @property
    def hallucinations(self) -> int:
        return len(self.unknown_ids) + len(self.off_image_ids) + self.n_invalid_boxes

    def frame_counts(self, kind: str, source: str = "cot") -> list[int]:
        """Frames per entity of a kind in :data:`KINDS`."""
        allowed = KINDS[kind]
        return [len(f) for eid, f in self.frames[source].items() if id_kind(eid) in allowed and f]

    def counts(self, *, details: bool = False) -> TellingCounts:
        """The numbers :func:`summarize` reads of this output (:class:`TellingCounts`); ``details``:
        with the names of its hallucinations, when it has any (a candidate's, for the report)."""
        return TellingCounts(
            self.well_structured,
            self.n_frames,
            tuple(
                tuple(self.frame_counts(kind, source))
                for source in SOURCES
                for kind in ("characters", "objects")
            ),
            tuple(n for c in (self.pronouns[p] for p in PRONOUNS) for n in (c.total, c.char, c.any)),
            len(self.unknown_ids),
            len(self.off_image_ids),
            tuple(len(self.invalid_boxes.get(problem, ())) for problem in BOX_PROBLEMS),
            self.missing_boxes,
            _details(self) if details and self.hallucinations else None,
        )


SOURCES = ("cot", "story")
"""Where an entity's frames are read: the CoT image sections that list it, the story segments that name it."""


class TellingCounts(NamedTuple):
    """What the consistency summary needs of one output, and no more: :meth:`TellingStats.counts`.

    A large run holds one per output until its report is written, so this is a few small tuples of
    integers (a :class:`TellingStats` holds every entity id and its frames: ten times the memory).
    """

    well_structured: bool
    n_frames: int
    # frames per entity: cot characters, cot objects, story characters, story objects
    frames: tuple[tuple[int, ...], ...]
    pronouns: tuple[int, ...]  # total, char, any of each of PRONOUNS in turn (30 numbers)
    unknown_ids: int
    off_image_ids: int
    invalid_boxes: tuple[int, ...]  # of each of BOX_PROBLEMS, in order
    missing_boxes: int
    details: dict | None = None  # the hallucinations named (:func:`_details`), when asked for and any

    def frame_counts(self, kind: str, source: str = "cot") -> tuple[int, ...]:
        """Frames per entity of a kind in :data:`KINDS` (characters first for ``entities``)."""
        at = 2 * SOURCES.index(source)
        if kind == "characters":
            return self.frames[at]
        if kind == "objects":
            return self.frames[at + 1]
        return self.frames[at] + self.frames[at + 1]

    @property
    def n_invalid_boxes(self) -> int:
        return sum(self.invalid_boxes)

    @property
    def hallucinations(self) -> int:
        return self.unknown_ids + self.off_image_ids + self.n_invalid_boxes

    def pronoun_total(self) -> tuple[int, int, int]:
        """``(total, char, any)`` over every pronoun."""
        n = self.pronouns
        return sum(n[0::3]), sum(n[1::3]), sum(n[2::3])


def _box_problem(row, size: tuple[int, int] | None) -> str | None:
    """``"missing"``, one of :data:`BOX_PROBLEMS`, or None for a valid box."""
    box = row.box
    if box is None:
        text = row.box_text.strip()
        if not text:
            return "missing"
        _, diags = parse_box(text)
        return "missing" if any(d.code == "box-missing" for d in diags) else "unparsable"
    if not box.is_proper:
        return "degenerate"
    if min(box.x1, box.y1) < 0:
        return "out_of_image"
    if size is not None:
        width, height = size
        if any(d.severity is Severity.ERROR for d in check_box_in_image(box, width, height)):
            return "out_of_image"
    return None


def telling_stats(
    telling: Telling, image_sizes: Sequence[tuple[int, int]] = (), *, pronoun_match: str = "inside"
) -> TellingStats:
    """Consistency counts for one output. ``image_sizes`` empty: the frame count is unknown.

    Frames outside ``1 … len(image_sizes)`` (a CoT section or a segment for an image the
    story does not have) are not counted for persistence.
    """
    sizes = list(image_sizes)
    n_images = len(sizes) or None
    verdict = telling.validate(image_sizes=sizes or None)
    cot, story = telling.cot, telling.story

    def in_range(n: int | None) -> bool:
        return n is not None and n >= 1 and (n_images is None or n <= n_images)

    cot_frames: dict[str, set[int]] = {}
    story_frames: dict[str, set[int]] = {}
    invalid: dict[str, list[str]] = {p: [] for p in BOX_PROBLEMS}
    missing_boxes = 0
    unknown: list[str] = []
    off_image: list[tuple[int, str]] = []
    if cot is not None:
        for image in cot.images:
            number = image.number
            size = sizes[number - 1] if n_images and 1 <= number <= n_images else None
            counted = in_range(number)
            for row in (*image.characters, *image.objects):
                if counted:
                    cot_frames.setdefault(row.id, set()).add(number)
                problem = _box_problem(row, size)
                if problem == "missing":
                    missing_boxes += 1
                elif problem is not None:
                    invalid[problem].append(f"image {image.number} {row.id}: {row.box_text or row.box}")
    if story is not None:
        known = cot.entity_ids() if cot is not None else set()
        per_image = {image.number: set(image.entity_ids()) for image in cot.images} if cot else {}
        seen_unknown: set[str] = set()
        seen_off: set[tuple[int, str]] = set()
        for segment in story.segments:
            number = segment.image
            counted = in_range(number)
            listed = per_image.get(number, set()) if number is not None else set()
            for span in segment.spans:
                for eid in span.ids:
                    if counted:
                        story_frames.setdefault(eid, set()).add(number)  # type: ignore[arg-type]
                    if eid not in known:
                        if eid not in seen_unknown:
                            seen_unknown.add(eid)
                            unknown.append(eid)
                    elif number is not None and eid not in listed:
                        key = (number, eid)
                        if key not in seen_off:
                            seen_off.add(key)
                            off_image.append(key)
    if n_images is None:
        n_frames = max([len(cot.images) if cot else 0, len(story.image_segments) if story else 0])
    else:
        n_frames = n_images
    return TellingStats(
        well_structured=verdict.well_structured,
        n_frames=n_frames,
        frames={"cot": cot_frames, "story": story_frames},
        pronouns=(
            pronoun_counts(story, match=pronoun_match)
            if story is not None
            else {p: PronounCounts() for p in PRONOUNS}
        ),
        unknown_ids=unknown,
        off_image_ids=off_image,
        invalid_boxes=invalid,
        missing_boxes=missing_boxes,
    )


# -- aggregation ---------------------------------------------------------------------------------


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def _share_at_least(counts: Sequence[int], n: int) -> float | None:
    return sum(c >= n for c in counts) / len(counts) if counts else None


def persistence_curve(per_story_counts: Sequence[Sequence[int]], max_frames: int) -> dict:
    """Share of entities present in ≥N frames, N = 1 … ``max_frames``, macro and micro.

    ``per_story_counts`` holds, per story, the frame count of each of its entities.
    Stories without an entity of the kind are left out of the macro average (their
    share is undefined); a story shorter than N frames contributes 0 at N.
    """
    stories = [c for c in per_story_counts if c]
    pooled = [n for c in stories for n in c]
    ns = list(range(1, max_frames + 1))
    return {
        "n": ns,
        "macro": [_mean(_share_at_least(c, n) for c in stories) for n in ns],  # type: ignore[misc]
        "micro": [_share_at_least(pooled, n) for n in ns],
        "stories": len(stories),
        "entities": len(pooled),
        "mean_frames": _mean(pooled),
    }


def _aggregate(
    stats: list[TellingCounts], stories: int | None = None
) -> tuple[dict[str, float | None], dict]:
    """``(overall, extra)`` for a list of outputs (no missing ones); ``stories``: how many stories the
    well-structured rate is over (those beyond ``stats`` have no output), ``len(stats)`` when None."""
    max_frames = max((s.n_frames for s in stats), default=0)
    persistence = {
        source: {
            kind: persistence_curve([s.frame_counts(kind, source) for s in stats], max_frames)
            for kind in KINDS
        }
        for source in SOURCES
    }
    columns = [sum(column) for column in zip(*(s.pronouns for s in stats), strict=True)]  # as TellingCounts'
    pronouns = {p: PronounCounts(*columns[3 * i : 3 * i + 3]) for i, p in enumerate(PRONOUNS)}
    total = PronounCounts()
    for c in pronouns.values():
        total.add(c)

    stories = len(stats) if stories is None else stories
    overall: dict[str, float | None] = {
        "well_structured_rate": sum(s.well_structured for s in stats) / stories if stories else None,
    }
    short = {"characters": "char", "objects": "obj", "entities": "entity"}
    for kind, curve in persistence["cot"].items():
        for n in HEADLINE_N:
            overall[f"{short[kind]}_persistence_ge{n}"] = curve["macro"][n - 1] if n <= max_frames else None
        overall[f"{short[kind]}_mean_frames"] = curve["mean_frames"]
    for rule in RULES:
        overall[f"pronoun_grounding_{rule}"] = total.rate(rule)
    for rule in RULES:
        for p in PRONOUNS:
            overall[f"pronoun_grounding_{rule}_{p}"] = pronouns[p].rate(rule)
    overall["pronouns"] = total.total
    sums = {
        "unknown_ids": sum(s.unknown_ids for s in stats),
        "off_image_ids": sum(s.off_image_ids for s in stats),
        "invalid_boxes": sum(s.n_invalid_boxes for s in stats),
    }
    overall.update(sums)
    for i, problem in enumerate(BOX_PROBLEMS):
        overall[f"box_{problem}"] = sum(s.invalid_boxes[i] for s in stats)
    overall["box_missing"] = sum(s.missing_boxes for s in stats)
    overall["hallucinations"] = sum(sums.values())
    overall["hallucinations_per_story"] = sum(sums.values()) / len(stats) if stats else None  # per output
    extra = {
        "persistence": persistence,
        "pronouns": {p: c.to_dict() for p, c in pronouns.items()},
    }
    return overall, extra


PER_STORY_KEYS = (
    "missing",
    "well_structured",
    "characters",
    "objects",
    "char_mean_frames",
    "char_persistence_ge2",
    "obj_persistence_ge2",
    "pronouns",
    "pronouns_grounded_char",
    "pronouns_grounded_any",
    "unknown_ids",
    "off_image_ids",
    "invalid_boxes",
    "box_missing",
    "hallucinations",
)


def _story_row(s: TellingCounts) -> dict[str, float | None]:
    chars = s.frame_counts("characters")
    objs = s.frame_counts("objects")
    pronouns, grounded_char, grounded_any = s.pronoun_total()
    return {
        "missing": 0.0,
        "well_structured": float(s.well_structured),
        "characters": len(chars),
        "objects": len(objs),
        "char_mean_frames": _mean(chars),
        "char_persistence_ge2": _share_at_least(chars, 2),
        "obj_persistence_ge2": _share_at_least(objs, 2),
        "pronouns": pronouns,
        "pronouns_grounded_char": grounded_char,
        "pronouns_grounded_any": grounded_any,
        "unknown_ids": s.unknown_ids,
        "off_image_ids": s.off_image_ids,
        "invalid_boxes": s.n_invalid_boxes,
        "box_missing": s.missing_boxes,
        "hallucinations": s.hallucinations,
    }


def _details(s: TellingStats) -> dict:
    return {
        "unknown_ids": list(s.unknown_ids),
        "off_image_ids": [f"image{n}:{eid}" for n, eid in s.off_image_ids],
        "invalid_boxes": {k: list(v) for k, v in s.invalid_boxes.items() if v},
    }


def _check_match(pronoun_match: str) -> None:
    if pronoun_match not in ("inside", "whole"):
        raise ValueError(f"unknown pronoun_match {pronoun_match!r}; use 'inside' or 'whole'")


def _check_missing(missing: str) -> None:
    if missing not in MISSING_POLICIES:
        raise ValueError(f"unknown missing policy {missing!r}; use one of {', '.join(MISSING_POLICIES)}")


def story_stats(
    pair: StoryPair, *, pronoun_match: str = "inside"
) -> tuple[TellingStats, TellingStats | None]:
    """One story's counts: the reference's and the candidate's (None when it is missing)."""
    _check_match(pronoun_match)
    ref = telling_stats(pair.reference, pair.image_sizes, pronoun_match=pronoun_match)
    if pair.candidate is None:
        return ref, None
    return ref, telling_stats(pair.candidate, pair.image_sizes, pronoun_match=pronoun_match)


def story_counts(
    pair: StoryPair, *, pronoun_match: str = "inside"
) -> tuple[TellingCounts, TellingCounts | None]:
    """:func:`story_stats` as :func:`summarize` keeps them (:class:`TellingCounts`: the candidate's
    with the names of its hallucinations)."""
    ref, cand = story_stats(pair, pronoun_match=pronoun_match)
    return ref.counts(), None if cand is None else cand.counts(details=True)


def consistency(
    pairs: Iterable[StoryPair], *, pronoun_match: str = "inside", missing: str = "zero"
) -> Scores:
    """Persistence, pronoun grounding, well-structured rate and hallucinations of the candidates.

    ``pronoun_match="whole"`` counts a pronoun as grounded only when a tag's whole text
    is the pronoun, as the original statistics code did; the default counts any pronoun
    inside a tag. ``missing="zero"`` counts a missing output as a story that is not well-structured,
    ``"exclude"`` (the original protocol) leaves it out (module docstring). The references' numbers are
    in ``extra["reference"]``.
    """
    _check_match(pronoun_match)
    _check_missing(missing)
    return summarize(
        [(pair.story_id, story_counts(pair, pronoun_match=pronoun_match)) for pair in pairs],
        pronoun_match=pronoun_match,
        missing=missing,
    )


def _counted(stats: TellingStats | TellingCounts, *, details: bool = False) -> TellingCounts:
    return stats if isinstance(stats, TellingCounts) else stats.counts(details=details)


def summarize(
    items: Sequence[tuple[str, tuple[TellingStats | TellingCounts, TellingStats | TellingCounts | None]]],
    *,
    pronoun_match: str = "inside",
    missing: str = "zero",
) -> Scores:
    """The consistency scores from each story's :func:`story_counts` or :func:`story_stats`
    (``(story_id, (reference, candidate))`` in order); ``missing``: as in :func:`consistency`.

    ``n_evaluated`` is the well-structured rate's denominator (every story, or with ``exclude``
    the stories that have an output), ``n_well_structured`` its numerator."""
    _check_missing(missing)
    cand_stats: list[TellingCounts] = []
    ref_stats: list[TellingCounts] = []
    per_story: dict[str, dict[str, float | None]] = {}
    details: dict[str, dict] = {}
    absent: list[str] = []
    # a missing output's row: a story that is not well-structured, unless it is left out
    counted_as = {"missing": 1.0} | ({"well_structured": 0.0} if missing == "zero" else {})
    for story_id, (ref, cand) in items:
        ref_stats.append(_counted(ref))
        if cand is None:
            absent.append(story_id)
            per_story[story_id] = {key: None for key in PER_STORY_KEYS} | counted_as
            continue
        s = _counted(cand, details=True)
        cand_stats.append(s)
        per_story[story_id] = _story_row(s)
        if s.hallucinations:
            details[story_id] = s.details

    rated = len(items) if missing == "zero" else len(cand_stats)
    overall, extra = _aggregate(cand_stats, rated)
    counts = {
        "n_stories": len(items),
        "n_missing": len(absent),
        "n_evaluated": rated,
        "n_well_structured": sum(s.well_structured for s in cand_stats),
    }
    ref_overall, ref_extra = _aggregate(ref_stats)
    extra.update(
        {
            "hallucination_details": details,
            "missing": absent,
            "reference": {"overall": ref_overall, **ref_extra},
            "options": {"pronoun_match": pronoun_match},
        }
    )
    return Scores(
        family="consistency",
        overall={**counts, **overall},
        per_story=per_story,
        conventions=_conventions(pronoun_match, missing),
        extra=extra,
    )


def _conventions(pronoun_match: str, missing: str = "zero") -> list[str]:
    match = (
        "a pronoun is grounded when a <gdo> tag's whole text is the pronoun (the original's match)"
        if pronoun_match == "whole"
        else "a pronoun is grounded when it lies inside a <gdo> tag"
    )
    return [
        "computed on the candidates; the references' numbers are in extra['reference']",
        *(
            [
                "missing outputs count as not well-structured, as grounding scores them as outputs with no "
                "rows: well_structured_rate = n_well_structured / n_evaluated, n_evaluated = every story "
                "scored, n_missing of them without an output",
                "a missing output holds no ids, pronouns or hallucinations: persistence, mean_frames, pronoun "
                "grounding and the hallucination totals are those of the outputs there are, and "
                "hallucinations_per_story is per output (n_stories - n_missing), so that no missing output "
                "lowers it",
            ]
            if missing == "zero"
            else ["missing outputs are counted (n_missing) and left out of every rate, mean and total"]
        ),
        "persistence: share of a story's char (resp. obj) ids listed in ≥N CoT image sections, "
        "averaged over the stories that have such ids (macro); bg and lm ids are not counted; "
        "frames beyond the story's images are ignored",
        "mean_frames: CoT image sections per entity, pooled over all entities",
        "pronouns (he she they his her their its him them it): found case-insensitively as whole "
        "words in the tag-stripped story, contractions included (it's counts as it, its as its)",
        f"{match}; rule char: the tag names a char id (the original's rule); rule any: any entity id; "
        "rates pool all occurrences (micro)",
        "well_structured: format.validate with the story's image sizes",
        "unknown_ids: distinct story ids the CoT never defines; off_image_ids: distinct (image, id) "
        "where segment N names an id the CoT defines but not in Image N",
        "invalid_boxes: CoT boxes unparsable, degenerate (x2<=x1 or y2<=y1), or out of the image "
        "(negative, or beyond the 10% edge tolerance); missing boxes are counted apart (box_missing)",
        "hallucinations = unknown_ids + off_image_ids + invalid_boxes",
    ]
