"""Batches for supervised fine-tuning: chat template, images, labels.

One :class:`StoryCollator` turns training examples (the ``style="trl"`` dicts of
:mod:`storyreasoning.data.messages`: ``messages`` with ``{"type": "image"}``
placeholders and decoded ``images``) into model inputs and labels.

What the labels hold, and how this differs from the original collator (section 5.3 of
the reference):

* ``loss="assistant"`` (default): only the assistant turn is learned, that is the
  ``<think>`` CoT ``</think>`` story text and the end-of-turn token that closes it.
  System prompt, user prompt, image placeholders and the template's trailing newline
  are masked (``-100``). The original learned the prompts too.
* ``loss="all"``: the original's rule: every token except padding and the vision
  tokens (``<|vision_start|>``, ``<|vision_end|>``, ``<|vision_pad|>``,
  ``<|image_pad|>``, ``<|video_pad|>``).

Nothing is ever truncated here: a sequence longer than the budget is the job of
:func:`storyreasoning.data.budget.fit_stories`, which drops trailing frames with their
sections before training starts.

Where the assistant turn starts is found exactly: the chat template is rendered with and
without the assistant turn, the difference is tokenised on its own, and the collator
checks that those tokens are the ones at the end of the sequence. A template whose
tokens merge across that boundary is refused with a clear message (``loss="all"`` still
works with it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from ..errors import StoryReasoningError

Loss = Literal["assistant", "all"]
IGNORE = -100
VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")


class StoryCollator:
    """Collate training examples into ``input_ids``, ``attention_mask``, pixels and ``labels``."""

    def __init__(self, processor: Any, *, loss: Loss = "assistant") -> None:
        if loss not in ("assistant", "all"):
            raise ValueError(f"loss must be 'assistant' or 'all', got {loss!r}")
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.loss = loss
        self.tokenizer.padding_side = "right"  # labels are aligned from the left; generation pads left
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            raise StoryReasoningError(
                "the model's tokenizer has no padding token; set one (tokenizer.pad_token) before training"
            )
        vocab = self.tokenizer.get_vocab()
        self.vision_ids = sorted({vocab[t] for t in VISION_TOKENS if t in vocab})
        self.eos = self.tokenizer.eos_token

    # -- text ------------------------------------------------------------------------------
    def render(self, messages: Sequence[dict]) -> tuple[str, str]:
        """``(full text, assistant part)`` of one conversation whose last turn is the assistant's."""
        if not messages or messages[-1].get("role") != "assistant":
            raise StoryReasoningError("a training example must end with the assistant turn")
        full = self.processor.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=False)
        prompt = self.processor.apply_chat_template(
            list(messages[:-1]), tokenize=False, add_generation_prompt=True
        )
        if not full.startswith(prompt):
            raise StoryReasoningError(
                "the chat template renders the conversation differently with and without its last turn, "
                "so the assistant turn cannot be located; train with --loss all"
            )
        return full, full[len(prompt) :]

    def _answer_ids(self, completion: str) -> tuple[list[int], int]:
        """Token ids of the completion, and how many of them (from the start) are learned."""
        learned = completion
        if self.eos and self.eos in completion:
            learned = completion[: completion.rfind(self.eos) + len(self.eos)]
        ids = self.tokenizer(learned, add_special_tokens=False)["input_ids"]
        tail = self.tokenizer(completion[len(learned) :], add_special_tokens=False)["input_ids"]
        return list(ids) + list(tail), len(ids)

    # -- batches ---------------------------------------------------------------------------
    def __call__(self, examples: Sequence[dict]) -> dict:
        import torch

        texts, completions, images = [], [], []
        for example in examples:
            full, completion = self.render(example["messages"])
            texts.append(full)
            completions.append(completion)
            images.extend(example.get("images") or [])
        batch = self.processor(
            text=texts, images=images or None, return_tensors="pt", padding=True, add_special_tokens=False
        )
        input_ids = batch["input_ids"]
        labels = torch.full_like(input_ids, IGNORE)
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        for row, (completion, length) in enumerate(zip(completions, lengths, strict=True)):
            ids = input_ids[row, :length]
            if self.loss == "all":
                keep = ids != self.pad_id
                for vid in self.vision_ids:
                    keep &= ids != vid
                labels[row, :length] = torch.where(keep, ids, torch.full_like(ids, IGNORE))
                continue
            answer, learned = self._answer_ids(completion)
            start = length - len(answer)
            if start < 0 or ids[start:].tolist() != answer:
                raise StoryReasoningError(
                    "the assistant turn does not tokenise the same inside the conversation and on its own "
                    "with this tokenizer, so its tokens cannot be located; train with --loss all"
                )
            labels[row, start : start + learned] = ids[start : start + learned]
        batch["labels"] = labels
        return dict(batch)


# -- the attention mask of end-padded batches -------------------------------------------------------


def ends_padded(attention_mask: Any) -> bool:
    """Whether every row of a 2D ``attention_mask`` is its tokens, then its padding (ones, then zeros only)."""
    if attention_mask is None or getattr(attention_mask, "dim", lambda: 0)() != 2:
        return False
    binary = bool(((attention_mask == 0) | (attention_mask == 1)).all())
    return binary and bool((attention_mask[:, 1:] <= attention_mask[:, :-1]).all())


def unmask_end_padding(net: Any) -> Any:
    """Give ``net``'s decoder no attention mask when every row's padding ends it (the training forward only).

    Our SFT batches pad on the right, and TRL's DPO batches (prompts padded left, answers
    right, rows flushed left) end every row with its padding too. With a mask, SDPA gets a
    ``rows × 1 × L × L`` boolean mask that every layer turns into a bias of the query's
    dtype (GiBs at 7B with 15k-token stories) and the key and value heads repeated; without
    it, SDPA runs causally with no mask. A causal token never sees the positions after it,
    so every real token's output is the same; the padding's own outputs change, and no
    loss reads them (SFT labels and DPO's completion mask leave padding out). The batch
    keeps its mask (the trainers count tokens with it), and the model still computes its
    multimodal positions from it, before the decoder: only the decoder's copy is dropped.
    A batch padded anywhere else (left, middle), or a forward with a KV cache
    (generation), keeps its mask. Calling it again replaces the hook; its handle is the
    decoder's ``end_padding_hook`` (``.remove()`` restores the mask). Returns the handle,
    or None for a model without a decoder to hook.
    """
    decoder = net.get_decoder() if hasattr(net, "get_decoder") else None
    if decoder is None or not hasattr(decoder, "register_forward_pre_hook"):
        return None
    if getattr(decoder, "end_padding_hook", None) is not None:
        decoder.end_padding_hook.remove()

    def drop(module, args, kwargs):
        cached = kwargs.get("cache") is not None or kwargs.get("past_key_values") is not None
        if not cached and ends_padded(kwargs.get("attention_mask")):
            kwargs["attention_mask"] = None
        return args, kwargs

    decoder.end_padding_hook = decoder.register_forward_pre_hook(drop, with_kwargs=True)
    return decoder.end_padding_hook


__all__ = ["IGNORE", "VISION_TOKENS", "Loss", "StoryCollator", "ends_padded", "unmask_end_padding"]
