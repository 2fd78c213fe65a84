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
    #: the example's messages (``style="trl"``) and their chat as the processor's template renders them
    #: (what ``text`` counts), for a caller that looks inside the example without rendering it again
    messages: list[dict] = field(default_factory=list, repr=False, compare=False)
    chat: str = field(default="", repr=False, compare=False)

    @property
    def total(self) -> int:
        return self.text + self.vision

    @property
    def image_tokens(self) -> int:
        """Every ``<|image_pad|>`` token of the example: one placeholder a frame and the vision beyond."""
        return self.vision + self.frames


@dataclass(frozen=True)
class Fit:
    """The result of fitting one story: the example to train on, or None when even one frame is too long."""

    sample: StorySample | None
    tokens: int  # of the fitted example (of the one-frame example when it does not fit)
    frames_before: int
    frames_after: int
    #: the count of that example (its image tokens, messages and rendered chat)
    count: TokenCount | None = field(default=None, repr=False, compare=False)

    @property
    def shortened(self) -> bool:
        return self.sample is not None and self.frames_after < self.frames_before

    @property
    def image_tokens(self) -> int:
        return self.count.image_tokens if self.count is not None else 0


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
        return self._count(story, index, options, [self.image_tokens(w, h) for w, h in story.frame_sizes()])

    def _count(
        self, story: StorySample, index: int, options: MessageOptions, frames: list[int]
    ) -> TokenCount:
        """The count of a prepared story whose frames have ``frames`` image tokens each."""
        example = training_messages(story, index, replace(options, style="trl"), decode=False, prepared=True)
        chat = self.processor.apply_chat_template(
            example["messages"], tokenize=False, add_generation_prompt=False
        )
        n_text = len(self.tokenizer(chat, add_special_tokens=False)["input_ids"])
        return TokenCount(text=n_text, vision=sum(frames) - len(frames), frames=story.frame_count,
                          messages=example["messages"], chat=chat)  # fmt: skip

    def fit(
        self, sample: StorySample, max_length: int, index: int = 0, options: MessageOptions = MessageOptions()
    ) -> Fit:
        """The longest prefix of the story's frames whose example has at most ``max_length`` tokens.

        Each frame's header is read once, and each number of frames is counted (rendered and
        tokenised) once.
        """
        if sample.frame_count == 0:
            raise UsageError(f"story {sample.story_id} has no frames; there is nothing to fit or train on")
        limit = (
            sample.frame_count if options.max_images is None else min(options.max_images, sample.frame_count)
        )
        frame_tokens = [self.image_tokens(*frame.size()) for frame in sample.frames[:limit]]
        tried: dict[int, Fit] = {}

        def attempt(frames: int) -> Fit:  # the example of the first `frames` frames (cut_frames keeps them)
            if frames not in tried:
                story = prepare(sample, replace(options, max_images=frames))
                count = self._count(story, index, options, frame_tokens[:frames])
                tried[frames] = Fit(story, count.total, sample.frame_count, story.frame_count, count)
            return tried[frames]

        if attempt(limit).tokens <= max_length:
            return attempt(limit)
        lo, hi = 0, limit - 1  # the answer (frames that fit) lies in [lo, hi]; 0 = none
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if attempt(mid).tokens <= max_length:
                lo = mid
            else:
                hi = mid - 1
        if lo == 0:
            return replace(attempt(1), sample=None, frames_after=0)
        return attempt(lo)


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
