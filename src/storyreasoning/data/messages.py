"""Chat messages for training, from a story.

A training example is the system prompt, a user turn (the frames and one of the ten
training prompts) and an assistant turn (``<think>`` CoT ``</think>`` story). What the
original adapter did, and what differs here on purpose:

* the prompt is chosen from the sample's index and a seed (:func:`choose_prompt`), so
  two runs see the same prompts; the original drew a new one at every access;
* images come before the prompt by default, as at inference (the published model
  cards); ``order="text-first"`` gives the original training layout;
* ``max_images`` also cuts the narrative rows (see :func:`cut_frames`);
* landmarks can be filtered like the other kinds; boxes can be written in the model's
  resized input space (``box_space="model"``) instead of original pixels.

Two shapes are produced. ``style="trl"`` (default) is what TRL's vision trainers take:
``{"type": "image"}`` placeholders in the user turn, the frames in ``images``, the
assistant turn as text parts. ``style="inline"`` puts each image inside its part
(``{"type": "image", "image": …}``), for ``processor.apply_chat_template`` directly,
with a plain-string assistant turn, as the original adapter did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..format.box import QWEN_MAX_PIXELS, QWEN_MIN_PIXELS
from ..format.prompts import SYSTEM_PROMPT, TRAINING_PROMPTS, Order, choose_prompt
from .sample import StorySample
from .transform import BoxSpace, EntityFilter, boxes_to_model_space, cut_frames, filter_entities

Style = Literal["trl", "inline"]


@dataclass(frozen=True)
class MessageOptions:
    """How a story becomes a training example (the CLI's options have the same names)."""

    max_images: int | None = None
    filter: EntityFilter = field(default_factory=EntityFilter)
    box_space: BoxSpace = "original"
    min_pixels: int = QWEN_MIN_PIXELS
    max_pixels: int = QWEN_MAX_PIXELS
    order: Order = "images-first"
    seed: int = 0
    prompts: tuple[str, ...] = TRAINING_PROMPTS
    system_prompt: str | None = SYSTEM_PROMPT
    style: Style = "trl"

    def __post_init__(self) -> None:
        if self.box_space not in ("original", "model"):
            raise ValueError(f"box_space must be 'original' or 'model', got {self.box_space!r}")
        if self.style not in ("trl", "inline"):
            raise ValueError(f"style must be 'trl' or 'inline', got {self.style!r}")
        if self.max_images is not None and self.max_images < 1:
            raise ValueError(f"max_images must be at least 1, got {self.max_images}")


def prepare(sample: StorySample, options: MessageOptions = MessageOptions()) -> StorySample:
    """The story as it will be trained on: cut, filtered, boxes converted.

    Without any change requested the texts stay as stored; with one, the CoT is
    re-rendered canonically.
    """
    out = sample
    if options.max_images is not None:
        out = cut_frames(out, options.max_images)
    if options.filter.active:
        out = filter_entities(out, options.filter)
    if options.box_space == "model":
        out = boxes_to_model_space(out, min_pixels=options.min_pixels, max_pixels=options.max_pixels)
    return out


def training_messages(
    sample: StorySample,
    index: int,
    options: MessageOptions = MessageOptions(),
    *,
    decode: bool = True,
    prepared: bool = False,
) -> dict:
    """``{"id", "messages", "images", "prompt"}`` for sample number ``index`` of a dataset.

    ``images`` are decoded RGB PIL images (``decode=False`` keeps the :class:`Frame`
    objects). ``prepared=True`` says ``sample`` already went through :func:`prepare`.
    """
    story = sample if prepared else prepare(sample, options)
    prompt = choose_prompt(index, options.seed, options.prompts)
    images = [f.open() for f in story.frames] if decode else list(story.frames)
    target = story.output_text()
    if options.style == "trl":
        image_parts: list[dict] = [{"type": "image"} for _ in images]
        assistant: str | list[dict] = [{"type": "text", "text": target}]
    else:
        image_parts = [{"type": "image", "image": image} for image in images]
        assistant = target
    text = [{"type": "text", "text": prompt}]
    user = image_parts + text if options.order == "images-first" else text + image_parts
    messages: list[dict] = []
    if options.system_prompt is not None:
        messages.append({"role": "system", "content": options.system_prompt})
    messages.append({"role": "user", "content": user})
    messages.append({"role": "assistant", "content": assistant})
    return {"id": story.story_id, "messages": messages, "images": images, "prompt": prompt}


class TrainingExamples:
    """A dataset of training examples over a story dataset (lazy; what a trainer iterates).

    ``examples[i]`` is :func:`training_messages` of story ``i``.
    """

    def __init__(self, stories: Sequence[StorySample], options: MessageOptions = MessageOptions()) -> None:
        self.stories = stories
        self.options = options

    def __len__(self) -> int:
        return len(self.stories)

    def __getitem__(self, index: int) -> dict:
        return training_messages(self.stories[index], index, self.options)

    def __iter__(self):
        for i, story in enumerate(self.stories):
            yield training_messages(story, i, self.options)


__all__ = [
    "MessageOptions",
    "TrainingExamples",
    "prepare",
    "training_messages",
]
