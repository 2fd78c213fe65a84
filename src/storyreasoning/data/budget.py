"""Token budgets: how long a training example is, and making it fit by dropping frames.

A Qwen2.5-VL example costs its text tokens plus, for every frame, as many
``<|image_pad|>`` tokens as the processor's grid gives it: the frame resized by
``smart_resize`` (sides multiples of 28, pixels within the budget) covers
``(height / 28) * (width / 28)`` merged patches. :class:`TokenBudget` computes that from
the image headers (nothing is decoded) and the text from the processor's own chat
template and tokenizer, so the count equals the length of ``processor(...)["input_ids"]``.

Too long an example is never cut in the middle of its tokens (that desynchronises image
tokens and pixel values and is the source of many trainer crashes): :meth:`fit` drops
trailing frames, with their CoT sections, story segments and narrative rows, until the
example fits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from ..errors import UsageError
from ..format.box import QWEN_FACTOR, QWEN_MAX_PIXELS, QWEN_MIN_PIXELS, smart_resize
from .messages import MessageOptions, prepare, training_messages
from .sample import StorySample
from .transform import cut_frames


@dataclass(frozen=True)
class TokenCount:
    text: int  # tokens of the rendered chat, one placeholder token per image included
    vision: int  # image tokens beyond those placeholders
    frames: int

    @property
    def total(self) -> int:
        return self.text + self.vision


@dataclass(frozen=True)
class Fit:
    """The result of fitting one story: the example to train on, or None when even one frame is too long."""

    sample: StorySample | None
    tokens: int  # of the fitted example (of the one-frame example when it does not fit)
    frames_before: int
    frames_after: int

    @property
    def shortened(self) -> bool:
        return self.sample is not None and self.frames_after < self.frames_before


@dataclass
class FitReport:
    stories: int = 0
    shortened: int = 0
    too_long: list[str] = field(default_factory=list)  # story ids that do not fit even with one frame
    frames_dropped: int = 0
    max_tokens: int = 0  # longest fitted example

    def summary(self) -> str:
        return (
            f"{self.stories} stories: {self.shortened} shortened ({self.frames_dropped} frames dropped), "
            f"{len(self.too_long)} too long even with one frame; longest example {self.max_tokens} tokens"
        )


class TokenBudget:
    """Counts the tokens of training examples for one processor and pixel budget.

    ``min_pixels`` / ``max_pixels`` default to the processor's own (what it will use);
    give them to count for another budget, and pass the same to the processor.
    """

    def __init__(self, processor, *, min_pixels: int | None = None, max_pixels: int | None = None) -> None:
        self.processor = processor
        image_processor = getattr(processor, "image_processor", None)
        size = dict(getattr(image_processor, "size", None) or {})
        self.min_pixels = int(
            min_pixels
            or getattr(image_processor, "min_pixels", None)
            or size.get("shortest_edge")
            or QWEN_MIN_PIXELS
        )
        self.max_pixels = int(
            max_pixels
            or getattr(image_processor, "max_pixels", None)
            or size.get("longest_edge")
            or QWEN_MAX_PIXELS
        )
        patch = getattr(image_processor, "patch_size", None) or 14
        merge = getattr(image_processor, "merge_size", None) or 2
        self.factor = int(patch * merge) or QWEN_FACTOR
        self.tokenizer = getattr(processor, "tokenizer", processor)

    def image_tokens(self, width: int, height: int) -> int:
        """``<|image_pad|>`` tokens for one frame of ``width`` x ``height``."""
        rh, rw = smart_resize(
            height, width, factor=self.factor, min_pixels=self.min_pixels, max_pixels=self.max_pixels
        )
        return (rh // self.factor) * (rw // self.factor)

    def count(
        self,
        sample: StorySample,
        index: int = 0,
        options: MessageOptions = MessageOptions(),
        *,
        prepared: bool = False,
    ) -> TokenCount:
        """Tokens of the training example of ``sample`` (after ``options``, unless ``prepared``)."""
        story = sample if prepared else prepare(sample, options)
        example = training_messages(story, index, replace(options, style="trl"), decode=False, prepared=True)
        text = self.processor.apply_chat_template(
            example["messages"], tokenize=False, add_generation_prompt=False
        )
        n_text = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        vision = sum(self.image_tokens(w, h) - 1 for w, h in story.frame_sizes())
        return TokenCount(text=n_text, vision=vision, frames=story.frame_count)

    def fit(
        self, sample: StorySample, max_length: int, index: int = 0, options: MessageOptions = MessageOptions()
    ) -> Fit:
        """The longest prefix of the story's frames whose example has at most ``max_length`` tokens."""
        if sample.frame_count == 0:
            raise UsageError(f"story {sample.story_id} has no frames; there is nothing to fit or train on")
        limit = (
            sample.frame_count if options.max_images is None else min(options.max_images, sample.frame_count)
        )

        def attempt(frames: int) -> tuple[StorySample, int]:
            story = prepare(sample, replace(options, max_images=frames))
            return story, self.count(story, index, options, prepared=True).total

        story, tokens = attempt(limit)
        if tokens <= max_length:
            return Fit(story, tokens, sample.frame_count, story.frame_count)
        lo, hi = 0, limit - 1  # the answer (frames that fit) lies in [lo, hi]; 0 = none
        best: tuple[StorySample, int] | None = None
        while lo < hi:
            mid = (lo + hi + 1) // 2
            candidate = attempt(mid)
            if candidate[1] <= max_length:
                lo, best = mid, candidate
            else:
                hi = mid - 1
        if lo == 0:
            return Fit(None, attempt(1)[1], sample.frame_count, 0)
        if best is None or best[0].frame_count != lo:
            best = attempt(lo)
        return Fit(best[0], best[1], sample.frame_count, lo)


def fit_stories(
    stories: Iterable[StorySample],
    budget: TokenBudget,
    max_length: int,
    options: MessageOptions = MessageOptions(),
    *,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[StorySample], FitReport]:
    """Fit every story (dropping those that cannot fit); returns the fitted stories and a report.

    The stories come back cut to the frames that fit but otherwise as given (not
    prepared): hand them to :class:`~storyreasoning.data.messages.TrainingExamples` with
    the same ``options``, which filters entities and converts boxes exactly once.

    Each story is counted with the prompt of its position in the returned list (the
    index :class:`~storyreasoning.data.messages.TrainingExamples` gives it), so a story
    after a dropped one is fitted with the prompt it will be trained with.
    """
    report = FitReport()
    kept: list[StorySample] = []
    for sample in stories:
        report.stories += 1
        fit = budget.fit(sample, max_length, len(kept), options)
        if fit.sample is None:
            report.too_long.append(sample.story_id)
        else:
            kept.append(
                sample if fit.frames_after == sample.frame_count else cut_frames(sample, fit.frames_after)
            )
            report.max_tokens = max(report.max_tokens, fit.tokens)
            if fit.shortened:
                report.shortened += 1
                report.frames_dropped += fit.frames_before - fit.frames_after
        if progress:
            progress(1)
    return kept, report
