"""Incoherent sequences for contrastive preference training (QwenStoryteller2).

A contrastive sequence is a "story" whose frames come from different identity groups
(films, videos, or stories when nothing else is recorded), so nothing in it should be
re-identified across frames. Each frame keeps its own reference analysis (the CoT rows
of that frame in its source story, boxes unchanged since the frame is unchanged) and
its story segment, but every entity gets a fresh id per group: ``char1`` of frame 1 and
``char1`` of frame 2 are different people, so they become ``char1`` and ``char2``. A
reward can then penalise a model that links them.

The group of a frame is :meth:`StorySample.frame_group <.sample.StorySample.frame_group>`:
``frame_meta[i]["group"]`` when the dataset records it, else the story id (stories of
the published dataset are distinct scenes, but two may come from the same movie; record
the movie as the ``group`` to exclude that). A frame's ``source`` is provenance only and
never decides anything here.

Sequences are as long as the dataset's own stories by default (``length="real"``: each
sequence takes the frame count of a story drawn at random), not a fixed length: real
stories average 12.45 frames, and synthetic sequences of another length would let a
model learn "short means unrelated" instead of looking at the frames.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence

from ..errors import UsageError
from ..format.cot import CoT, ImageAnalysis, NarrativePhase, NarrativeRow, id_kind, phase_images, render_cot
from ..format.story import GroundedStory, Segment, Span, render_story
from .sample import StorySample

#: ``length=REAL``: each sequence as long as a story of the dataset drawn at random.
REAL = "real"


def _frames_by_group(
    stories: Sequence[StorySample], lengths: list[int] | None = None
) -> dict[str, list[tuple[int, int | None]]]:
    """Identity group -> the (story index, frame index) pairs in it; each story's frame count into ``lengths``.

    Without per-frame metadata (a column check, no rows read) every story is one group
    and its frames are counted only when a story is picked (frame index ``None``);
    ``lengths`` is then left for :func:`story_lengths` to fill.
    """
    out: dict[str, list[tuple[int, int | None]]] = {}
    if getattr(stories, "has_frame_meta", None) is False:
        ids = stories.ids() if hasattr(stories, "ids") else [s.story_id for s in stories]
        for si, sid in enumerate(ids):
            out.setdefault(sid, []).append((si, None))
        return out
    for si, story in enumerate(stories):
        if lengths is not None:
            lengths.append(story.frame_count)
        for fi in range(story.frame_count):
            out.setdefault(story.frame_group(fi), []).append((si, fi))
    return out


def story_lengths(stories: Sequence[StorySample]) -> list[int]:
    """Every story's frame count, in dataset order: the real length distribution the sequences follow."""
    return [story.frame_count for story in stories]


def contrastive_sequences(
    stories: Sequence[StorySample],
    count: int,
    *,
    length: int | tuple[int, int] | str = REAL,
    seed: int = 0,
    id_prefix: str = "contrastive",
) -> list[StorySample]:
    """``count`` sequences, each frame from a distinct group, of ``length`` frames.

    ``length`` is ``"real"`` (the default): each sequence's length drawn from the
    dataset's own stories (a story picked uniformly, its frame count taken), so the
    synthetic sequences are as long as the real ones on average and in spread and a
    model cannot tell them apart by length; lengths above the number of distinct groups
    cannot be drawn and are left out of the distribution. An int fixes the length; a
    ``(min, max)`` pair draws it uniformly.

    Deterministic for a given dataset, ``count``, ``length`` and ``seed``. Each sample's
    ``frame_meta`` records, per frame, its ``group`` (the identity group it was drawn
    from), its ``source`` (the provenance the source story recorded for it, else that
    story's id), ``story_id`` and ``frame`` (1-based in its source story); ``meta`` has
    ``{"contrastive": True, "seed": seed}``.
    """
    real = length == REAL
    if isinstance(length, str) and not real:
        raise UsageError(f"length must be {REAL!r}, a number of frames or (min, max), got {length!r}")
    lo, hi = (1, 1) if real else (length, length) if isinstance(length, int) else length
    if lo < 1 or hi < lo:
        raise UsageError(f"length must be at least 1 (and min <= max), got {length}")
    if count < 0:
        raise UsageError(f"count must not be negative, got {count}")
    lengths: list[int] = []
    by_group = _frames_by_group(stories, lengths if real else None)
    names = sorted(by_group)
    if real:
        lengths = lengths or story_lengths(stories)
        drawable = [n for n in lengths if 1 <= n <= len(names)]
        if not drawable:
            raise UsageError(
                f"the dataset has {len(names)} distinct frame groups but every story has more frames; "
                "give --length a number of frames up to that"
            )
    if len(names) < hi:
        raise UsageError(
            f"the dataset has {len(names)} distinct frame groups but sequences of {hi} frames need {hi}; "
            "lower --length or add stories"
        )
    rng = random.Random(f"contrastive:{seed}")
    samples: list[StorySample] = []
    cache: dict[int, StorySample] = {}
    for n in range(count):
        size = rng.choice(drawable) if real else rng.randint(lo, hi)
        resolved = []
        for group in rng.sample(names, size):
            si, fi = rng.choice(by_group[group])
            story = cache.get(si)
            if story is None:
                story = cache[si] = stories[si]
                if len(cache) > 256:
                    cache.pop(next(iter(cache)))
            resolved.append((story, rng.randrange(story.frame_count) if fi is None else fi, group))
        samples.append(_assemble(f"{id_prefix}-{seed}-{n:05d}", resolved, seed))
    return samples


def _assemble(story_id: str, picks: list[tuple[StorySample, int, str]], seed: int) -> StorySample:
    mapping: dict[tuple[str, str, str], str] = {}
    counters: dict[str, int] = {}

    def new_id(group: str, story: str, old: str) -> str:
        key = (group, story, old)
        if key not in mapping:
            kind = id_kind(old) or "obj"
            counters[kind] = counters.get(kind, 0) + 1
            mapping[key] = f"{kind}{counters[kind]}"
        return mapping[key]

    images: list[ImageAnalysis] = []
    segments: list[Segment] = []
    frame_meta = []
    for k, (story, frame, group) in enumerate(picks, start=1):
        number = frame + 1
        analysis = copy.deepcopy(story.cot.image(number)) or ImageAnalysis(number=number)
        analysis.number = k
        defined = set(analysis.entity_ids())
        for row in (*analysis.characters, *analysis.objects):
            row.id = new_id(group, story.story_id, row.id)
        images.append(analysis)
        original = story.story.segment(number)
        parts: list = []
        for part in original.parts if original is not None else []:
            if isinstance(part, Span):
                # an id this frame does not list (a recall of another frame of the source
                # story) names nothing in the sequence: its tag goes, its text stays
                ids = tuple(new_id(group, story.story_id, i) for i in part.ids if i in defined)
                parts.append(Span(part.kind, ids, part.text) if ids else part.text)
            else:
                parts.append(part)
        segments.append(Segment(image=k, parts=parts))
        frame_meta.append(
            {"group": group, "source": story.frame_source(frame), "story_id": story.story_id, "frame": number}
        )
    # The narrative says what the sequence is: unrelated scenes, nothing carried over.
    narrative = []
    for phase, numbers in zip(NarrativePhase, phase_images(len(picks)), strict=True):
        listed = ", ".join(str(n) for n in numbers)
        narrative.append(
            NarrativeRow(
                phase=phase.value,
                description=f"Image{'s' if len(numbers) > 1 else ''} {listed}: "
                + ("scenes" if len(numbers) > 1 else "a scene")
                + " unrelated to the other images",
                key_events="No character or object carries over from another image",
                images_text=listed,
            )
        )
    cot_text = render_cot(CoT(images=images, narrative=narrative)).strip()
    story_text = render_story(GroundedStory(segments=segments)).strip()
    frames = [story.frames[frame] for story, frame, _ in picks]
    return StorySample(
        story_id,
        frames,
        cot_text,
        story_text,
        frame_meta=frame_meta,
        meta={"contrastive": True, "seed": seed},
    )
