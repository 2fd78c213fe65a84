"""Reshape a story for training: fewer frames, fewer entities, boxes in another space.

These are pure functions from a :class:`StorySample` to a new one. Whenever a
transformation changes the CoT or the story, the changed text is re-rendered in the
canonical published layout (as the original training adapter did).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

from ..format.box import QWEN_MAX_PIXELS, QWEN_MIN_PIXELS
from ..format.cot import id_kind, render_cot
from ..format.story import render_story
from .sample import StorySample

BoxSpace = Literal["original", "model"]
BOX_SPACES = ("original", "model")


@dataclass(frozen=True)
class EntityFilter:
    """Which kinds of entity to drop from the CoT when the story never mentions them.

    The defaults are the original adapter's: unmentioned backgrounds (``bg#``) are
    dropped, everything else is kept. Landmarks (``lm#``), which the original could not
    filter, are switchable too.
    """

    characters: bool = False
    objects: bool = False
    backgrounds: bool = True
    landmarks: bool = False

    @property
    def active(self) -> bool:
        return self.characters or self.objects or self.backgrounds or self.landmarks

    def drops(self, kind: str | None) -> bool:
        return {
            "char": self.characters,
            "obj": self.objects,
            "bg": self.backgrounds,
            "lm": self.landmarks,
        }.get(kind or "", False)


NO_FILTER = EntityFilter(backgrounds=False)


def cut_frames(sample: StorySample, max_images: int) -> StorySample:
    """Keep the first ``max_images`` frames, with their CoT sections, story segments and narrative rows.

    Narrative rows keep only the kept image numbers; a row whose images all went points
    at the last kept frame instead, so the five phases stay (a target without them
    would teach the model to skip phases). The original kept the narrative unchanged,
    pointing at frames that were no longer there. Text outside any ``<gdi>`` after the
    last kept segment goes too.
    """
    if max_images < 1:
        raise ValueError(f"max_images must be at least 1, got {max_images}")
    if sample.frame_count <= max_images:
        return sample
    cot = copy.deepcopy(sample.cot)
    cot.images = [image for image in cot.images if image.number <= max_images]
    if cot.narrative is not None:
        for row in cot.narrative:
            images = row.images
            kept = [n for n in images if n <= max_images] or ([max_images] if images else [])
            if kept != images:
                row.images_text = ", ".join(str(n) for n in kept)
    story = copy.deepcopy(sample.story)
    segments = []
    for segment in story.segments:
        if segment.image is not None and segment.image > max_images:
            break
        segments.append(segment)
    story.segments = segments
    frame_meta = sample.frame_meta[:max_images] if sample.frame_meta is not None else None
    return sample.with_texts(
        render_cot(cot).strip(),
        render_story(story).strip(),
        frames=sample.frames[:max_images],
        frame_meta=frame_meta,
    )


def filter_entities(sample: StorySample, which: EntityFilter = EntityFilter()) -> StorySample:
    """Drop CoT rows of the chosen kinds whose ids the story never mentions (anywhere in it)."""
    if not which.active:
        return sample
    mentioned = set(sample.story.mentioned_ids())
    cot = copy.deepcopy(sample.cot)
    for image in cot.images:
        image.characters = [
            c for c in image.characters if c.id in mentioned or not which.drops(id_kind(c.id) or "char")
        ]
        image.objects = [o for o in image.objects if o.id in mentioned or not which.drops(id_kind(o.id))]
    return sample.with_texts(render_cot(cot).strip(), sample.story_text)


def boxes_to_model_space(
    sample: StorySample, *, min_pixels: int = QWEN_MIN_PIXELS, max_pixels: int = QWEN_MAX_PIXELS
) -> StorySample:
    """Rewrite every box in the coordinates of Qwen2.5-VL's resized input (``smart_resize``).

    Frame sizes come from the image headers; nothing is decoded. A section for an image
    number without a frame keeps its boxes.
    """
    sizes = sample.frame_sizes()
    cot = copy.deepcopy(sample.cot)
    for image in cot.images:
        if not 1 <= image.number <= len(sizes):
            continue
        width, height = sizes[image.number - 1]
        for row in (*image.characters, *image.objects):
            if row.box is not None:
                row.box = row.box.to_model_space(width, height, min_pixels=min_pixels, max_pixels=max_pixels)
    return sample.with_texts(render_cot(cot).strip(), sample.story_text)


def canonical(sample: StorySample) -> StorySample:
    """The CoT re-rendered in the canonical layout (what the original's targets always were)."""
    return sample.with_texts(render_cot(sample.cot).strip(), sample.story_text)
