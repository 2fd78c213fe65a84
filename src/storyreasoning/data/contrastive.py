"""Incoherent sequences for contrastive preference training (QwenStoryteller2).

A contrastive sequence is a "story" whose frames come from different sources (movies,
or stories when no source is recorded), so nothing in it should be re-identified
across frames. Each frame keeps its own reference analysis (the CoT rows of that frame
in its source story, boxes unchanged since the frame is unchanged) and its story
segment, but every entity gets a fresh id per source: ``char1`` of frame 1 and ``char1``
of frame 2 are different people, so they become ``char1`` and ``char2``. A reward can
then penalise a model that links them.

The sources of a frame come from the sample's ``frame_meta[i]["source"]`` when the
dataset records them, else from its story id (stories of the published dataset are
distinct scenes, but two may come from the same movie; record the movie in
``frame_meta`` to exclude that).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence

from ..errors import UsageError
from ..format.cot import CoT, ImageAnalysis, NarrativePhase, NarrativeRow, id_kind, phase_images, render_cot
from ..format.story import GroundedStory, Segment, Span, render_story
from .sample import StorySample


def _frames_by_source(stories: Sequence[StorySample]) -> dict[str, list[tuple[int, int | None]]]:
    """Source -> the (story index, frame index) pairs from it.

    Without per-frame metadata (a column check, no rows read) every story is one source
    and its frames are counted only when a story is picked (frame index ``None``).
    """
    out: dict[str, list[tuple[int, int | None]]] = {}
    if getattr(stories, "has_frame_meta", None) is False:
        ids = stories.ids() if hasattr(stories, "ids") else [s.story_id for s in stories]
        for si, sid in enumerate(ids):
            out.setdefault(sid, []).append((si, None))
        return out
    for si, story in enumerate(stories):
        for fi in range(story.frame_count):
            out.setdefault(story.frame_source(fi), []).append((si, fi))
    return out


def contrastive_sequences(
    stories: Sequence[StorySample],
    count: int,
    *,
    length: int | tuple[int, int] = 5,
    seed: int = 0,
    id_prefix: str = "contrastive",
) -> list[StorySample]:
    """``count`` sequences of ``length`` frames (or a length drawn from ``(min, max)``), each frame from a distinct source.

    Deterministic for a given dataset, ``count``, ``length`` and ``seed``. Each sample's
    ``frame_meta`` records, per frame, ``source``, ``story_id`` and ``frame`` (1-based in
    its source story); ``meta`` has ``{"contrastive": True, "seed": seed}``.
    """
    lo, hi = (length, length) if isinstance(length, int) else length
    if lo < 1 or hi < lo:
        raise UsageError(f"length must be at least 1 (and min <= max), got {length}")
    if count < 0:
        raise UsageError(f"count must not be negative, got {count}")
    by_source = _frames_by_source(stories)
    names = sorted(by_source)
    if len(names) < hi:
        raise UsageError(
            f"the dataset has {len(names)} distinct frame sources but sequences of {hi} frames need {hi}; "
            "lower --length or add stories"
        )
    rng = random.Random(f"contrastive:{seed}")
    samples: list[StorySample] = []
    cache: dict[int, StorySample] = {}
    for n in range(count):
        size = rng.randint(lo, hi)
        resolved = []
        for source in rng.sample(names, size):
            si, fi = rng.choice(by_source[source])
            story = cache.get(si)
            if story is None:
                story = cache[si] = stories[si]
                if len(cache) > 256:
                    cache.pop(next(iter(cache)))
            resolved.append((story, rng.randrange(story.frame_count) if fi is None else fi, source))
        samples.append(_assemble(f"{id_prefix}-{seed}-{n:05d}", resolved, seed))
    return samples


def _assemble(story_id: str, picks: list[tuple[StorySample, int, str]], seed: int) -> StorySample:
    mapping: dict[tuple[str, str, str], str] = {}
    counters: dict[str, int] = {}

    def new_id(source: str, story: str, old: str) -> str:
        key = (source, story, old)
        if key not in mapping:
            kind = id_kind(old) or "obj"
            counters[kind] = counters.get(kind, 0) + 1
            mapping[key] = f"{kind}{counters[kind]}"
        return mapping[key]

    images: list[ImageAnalysis] = []
    segments: list[Segment] = []
    frame_meta = []
    for k, (story, frame, source) in enumerate(picks, start=1):
        number = frame + 1
        analysis = copy.deepcopy(story.cot.image(number)) or ImageAnalysis(number=number)
        analysis.number = k
        defined = set(analysis.entity_ids())
        for row in (*analysis.characters, *analysis.objects):
            row.id = new_id(source, story.story_id, row.id)
        images.append(analysis)
        original = story.story.segment(number)
        parts: list = []
        for part in original.parts if original is not None else []:
            if isinstance(part, Span):
                # an id this frame does not list (a recall of another frame of the source
                # story) names nothing in the sequence: its tag goes, its text stays
                ids = tuple(new_id(source, story.story_id, i) for i in part.ids if i in defined)
                parts.append(Span(part.kind, ids, part.text) if ids else part.text)
            else:
                parts.append(part)
        segments.append(Segment(image=k, parts=parts))
        frame_meta.append({"source": source, "story_id": story.story_id, "frame": number})
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
