"""Prompts and chat messages.

``SYSTEM_PROMPT`` is the storyteller system prompt word for word: QwenStoryteller and
QwenStoryteller2 were trained with it. ``TRAINING_PROMPTS`` are the ten user prompts the
original training adapter drew from (one of them empty); :func:`choose_prompt` draws from
them reproducibly from a seed and a sample index.

The message builders put the images before the text by default, as the published model
cards do; ``order="text-first"`` gives the layout the original training adapter used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Literal

from .images import ImageLike, image_data_url

SYSTEM_PROMPT = (
    "You are an AI storyteller that can analyze sequences of images and create creative narratives. "
    "First think step-by-step to analyze characters, objects, settings, and narrative structure. "
    "Then create a grounded story that maintains consistent character identity and object references across frames. "
    "Use <think></think> tags to show your reasoning process before writing the final story."
)

# The user prompt of the published model cards' examples.
DEFAULT_PROMPT = "Generate a story based on these images."

TRAINING_PROMPTS: tuple[str, ...] = (
    "",
    "Create a story based on these images.",
    "Tell me a story that connects these images.",
    "Generate a narrative that ties these images together.",
    "Craft a cohesive story from this sequence of images.",
    "Looking at these images, what story could they tell?",
    "Can you create a narrative that explains the progression in these images?",
    "These images form a sequence - please tell the story they represent.",
    "Write a story that captures what's happening across these images.",
    "These images tell a story - what is it?",
)
# The original inference script drew from the same list without the empty prompt.
INFERENCE_PROMPTS: tuple[str, ...] = TRAINING_PROMPTS[1:]

Order = Literal["images-first", "text-first"]
ORDERS: tuple[str, ...] = ("images-first", "text-first")


def choose_prompt(index: int, seed: int = 0, prompts: Sequence[str] = TRAINING_PROMPTS) -> str:
    """The prompt for sample ``index`` under ``seed``: uniform over ``prompts``, the same in every run and process."""
    if not prompts:
        raise ValueError("prompts must not be empty")
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return prompts[int.from_bytes(digest, "big") % len(prompts)]


def _check_order(order: str) -> None:
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")


def _user_content(image_parts: list[dict], prompt: str | None, order: str) -> list[dict]:
    _check_order(order)
    text = [] if prompt is None else [{"type": "text", "text": prompt}]
    return image_parts + text if order == "images-first" else text + image_parts


def transformers_messages(
    images: Sequence[Any],
    prompt: str | None = DEFAULT_PROMPT,
    *,
    system_prompt: str | None = SYSTEM_PROMPT,
    order: Order = "images-first",
    assistant: str | None = None,
) -> list[dict]:
    """Chat messages for a transformers processor's ``apply_chat_template``.

    Each image becomes ``{"type": "image", "image": image}`` (a PIL image, path or URL,
    whatever the processor accepts). ``prompt=None`` sends no text part; ``""`` sends an
    empty one (as the training adapter did for its empty prompt). ``assistant`` appends
    the answer turn (for training).
    """
    messages: list[dict] = []
    if system_prompt is not None:
        messages.append({"role": "system", "content": system_prompt})
    parts = [{"type": "image", "image": image} for image in images]
    messages.append({"role": "user", "content": _user_content(parts, prompt, order)})
    if assistant is not None:
        messages.append({"role": "assistant", "content": assistant})
    return messages


def openai_messages(
    images: Sequence[ImageLike],
    prompt: str | None = DEFAULT_PROMPT,
    *,
    system_prompt: str | None = SYSTEM_PROMPT,
    order: Order = "images-first",
    image_format: str | None = None,
) -> list[dict]:
    """Chat messages for an OpenAI-compatible API (vLLM, ``transformers serve``).

    Images become ``image_url`` parts holding ``data:`` URLs; files already in PNG,
    JPEG, GIF or WebP are sent byte for byte (see :func:`image_data_url`).
    """
    messages: list[dict] = []
    if system_prompt is not None:
        messages.append({"role": "system", "content": system_prompt})
    parts = [
        {"type": "image_url", "image_url": {"url": image_data_url(image, image_format=image_format)}}
        for image in images
    ]
    messages.append({"role": "user", "content": _user_content(parts, prompt, order)})
    return messages


def assistant_target(cot_text: str, story_text: str) -> str:
    """The training target / expected output: ``<think>`` envelope around the CoT, then the story."""
    return f"<think>\n{cot_text}\n</think>\n{story_text}"
