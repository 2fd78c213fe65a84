"""End-padded batches train without an attention mask in the decoder (SDPA, float32, the tiny Qwen2.5-VL).

SFT's collator pads on the right and TRL's DPO collator flushes its rows left, so every
row of their batches ends with its padding. ``collate.unmask_end_padding`` (installed by
train sft and train dpo) then gives the decoder no mask: SDPA runs causally instead of
building a rows × L × L mask and a per-layer bias. Checked here through the real jobs'
models and batches: the answer's log-probs, TRL's DPO loss and SFT's loss and gradients
are the same as with the mask, the decoder's attention gets no mask, and a batch padded
anywhere else (left, middle) keeps it.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from ..conftest import require_transformers
from .conftest import EXAMPLES, SMALL_PIXELS, log_probs

require_transformers()
pytest.importorskip("trl", reason="DPO needs trl: pip install 'storyreasoning[train]'")
pytest.importorskip("peft", reason="LoRA needs peft: pip install 'storyreasoning[train]'")

import torch  # noqa: E402
import transformers  # noqa: E402

from storyreasoning.data import load_stories  # noqa: E402
from storyreasoning.data.messages import MessageOptions, TrainingExamples  # noqa: E402
from storyreasoning.train.collate import StoryCollator, ends_padded, unmask_end_padding  # noqa: E402
from storyreasoning.train.loss import answer_loss  # noqa: E402
from storyreasoning.train.settings import SFTSettings  # noqa: E402
from storyreasoning.train.sft import train_sft  # noqa: E402


@contextmanager
def decoder_masks(rows: int, length: int):
    """The ``attn_mask`` of every SDPA call shaped as the decoder's (rows × heads × length), as they run."""
    seen: list = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(query, key, value, attn_mask=None, *args, **kwargs):
        if query.dim() == 4 and query.shape[0] == rows and query.shape[2] == length:
            seen.append((attn_mask, kwargs.get("is_causal", args[1] if len(args) > 1 else False)))
        return original(query, key, value, attn_mask, *args, **kwargs)

    torch.nn.functional.scaled_dot_product_attention = spy
    try:
        yield seen
    finally:
        torch.nn.functional.scaled_dot_product_attention = original


@contextmanager
def masked(model):
    """The model as it was before: the decoder gets the batch's mask."""
    decoder = model.get_decoder()
    decoder.end_padding_hook.remove()
    try:
        yield
    finally:
        unmask_end_padding(model)


def test_ends_padded_is_ones_then_zeros_in_every_row():
    assert ends_padded(torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]]))
    assert ends_padded(torch.ones(2, 5, dtype=torch.long))
    assert not ends_padded(torch.tensor([[1, 1, 1], [0, 1, 1]]))  # left padding
    assert not ends_padded(torch.tensor([[1, 1, 1], [1, 0, 1]]))  # a hole in the middle
    assert not ends_padded(torch.tensor([[1, 1, 2]]))  # not a padding mask
    assert not ends_padded(torch.ones(1, 1, 3, 3)) and not ends_padded(None)  # already 4D, or none


# -- DPO ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dpo(shortest_pairs):
    """``(trainer, batch)``: train dpo's trainer and a batch of its two shortest pairs (chosen, rejected padded)."""
    trainer, examples = shortest_pairs
    torch.manual_seed(1)
    with torch.no_grad():  # a trained-looking adapter, so that policy and reference differ
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    return trainer, trainer.data_collator(examples)


def test_dpo_scores_and_loss_are_the_same_without_the_mask(dpo):
    trainer, batch = dpo
    mask = batch["attention_mask"]
    rows, length = mask.shape
    assert ends_padded(mask) and int((mask == 0).sum()) > 0  # padded rows, padding at their ends
    with decoder_masks(rows, length) as seen:
        unmasked = log_probs(trainer.model, batch)
        with torch.no_grad():
            loss = trainer.compute_loss(trainer.model, batch)
    layers = trainer.model.config.get_text_config().num_hidden_layers
    # every decoder layer of the policy's and the reference's passes: causal, no mask
    assert len(seen) >= 3 * layers and all(m is None and causal for m, causal in seen)
    with masked(trainer.model), decoder_masks(rows, length) as seen:
        with_mask = log_probs(trainer.model, batch)
        with torch.no_grad():
            loss_with_mask = trainer.compute_loss(trainer.model, batch)
    assert seen and all(m is not None and m.shape[-2:] == (length, length) for m, _ in seen)
    answer = batch["completion_mask"][:, 1:].bool()
    torch.testing.assert_close(unmasked[answer], with_mask[answer], rtol=0, atol=1e-6)
    assert not unmasked[~answer].any() and not with_mask[~answer].any()  # padding scores nothing either way
    assert abs(loss.item() - 0.6931) > 1e-4  # the adapter moves the policy: a loss that can differ
    torch.testing.assert_close(loss, loss_with_mask, rtol=0, atol=1e-6)


def test_a_batch_padded_elsewhere_keeps_its_mask(dpo):
    trainer, batch = dpo
    n = int(batch["attention_mask"][0].sum())  # the first row (pair 0's chosen) alone, with pair 0's frames
    images = int((batch["input_ids"][0] == trainer.model.config.vision_start_token_id).sum())
    grid = batch["image_grid_thw"][:images]
    pad_id = trainer.processing_class.tokenizer.pad_token_id
    inputs = {k: v[:1, :n] for k, v in batch.items() if v.dim() == 2 and k != "pixel_values"}
    inputs["pixel_values"] = batch["pixel_values"][: int(grid.prod(dim=1).sum())]
    inputs["image_grid_thw"] = grid

    def padded(where: str) -> dict:
        fills = {"input_ids": pad_id, "attention_mask": 0, "completion_mask": 0, "mm_token_type_ids": 0}
        out = dict(inputs)
        for key, fill in fills.items():
            if key in inputs:
                pad = torch.full((1, 16), fill, dtype=inputs[key].dtype)
                out[key] = torch.cat([pad, inputs[key]] if where == "left" else [inputs[key], pad], dim=1)
        return out

    clean = log_probs(trainer.model, inputs)[0]
    left = padded("left")
    assert not ends_padded(left["attention_mask"])
    with decoder_masks(1, n + 16) as seen:
        scored = log_probs(trainer.model, left)[0, 16:]
    assert seen and all(m is not None for m, _ in seen)  # left padding: the mask stays, and it is needed
    torch.testing.assert_close(scored, clean, rtol=0, atol=1e-5)
    middle = {k: v.clone() if torch.is_tensor(v) else v for k, v in padded("right").items()}
    middle["attention_mask"][0, n // 2] = 0  # a hole: nothing ends-padded about it
    with decoder_masks(1, n + 16) as seen:
        log_probs(trainer.model, middle)
    assert seen and all(m is not None for m, _ in seen)
    with decoder_masks(1, n + 16) as seen:  # the same row padded at its end: no mask
        right = log_probs(trainer.model, padded("right"))[0, : n - 1]
    assert seen and all(m is None for m, _ in seen)
    torch.testing.assert_close(right, clean, rtol=0, atol=1e-6)


# -- SFT ---------------------------------------------------------------------------------------------------


def test_sft_loss_and_gradients_are_the_same_without_the_mask(tiny_qwen):
    processor = transformers.AutoProcessor.from_pretrained(tiny_qwen)
    examples = TrainingExamples(
        load_stories(str(EXAMPLES)), MessageOptions(max_images=2, style="trl", **SMALL_PIXELS)
    )
    batch = StoryCollator(processor)([examples[0], examples[1]])  # two stories: the shorter padded right
    mask = batch["attention_mask"]
    assert ends_padded(mask) and int((mask == 0).sum()) > 0
    assert not (batch["labels"][mask == 0] != -100).any()  # padding is never learned
    torch.manual_seed(0)
    net = transformers.AutoModelForImageTextToText.from_pretrained(tiny_qwen, dtype=torch.float32)
    net.train()

    def loss_and_grads():
        net.zero_grad()
        with decoder_masks(*mask.shape) as seen:
            loss = answer_loss(net, batch)[0]
        loss.backward()
        return (
            loss.detach(),
            {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None},
            seen,
        )

    loss_masked, grads_masked, seen = loss_and_grads()
    assert seen and all(m is not None for m, _ in seen)
    unmask_end_padding(net)
    loss, grads, seen = loss_and_grads()
    assert seen and all(m is None and causal for m, causal in seen)
    torch.testing.assert_close(loss, loss_masked, rtol=0, atol=1e-6)
    assert grads.keys() == grads_masked.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, grads_masked[name], rtol=1e-5, atol=1e-6, msg=name)


def test_train_sft_runs_its_batches_without_the_mask(tiny_qwen, tmp_path):
    settings = SFTSettings(source=str(EXAMPLES), split=None, out=tmp_path / "sft", model=str(tiny_qwen), rank=4,
                           max_steps=1, batch_size=2, grad_accum=1, max_images=2, dtype="float32", device="cpu",
                           attn_implementation="sdpa", limit=2, **SMALL_PIXELS)  # fmt: skip
    seen: list = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(query, key, value, attn_mask=None, *args, **kwargs):
        if query.dim() == 4 and query.shape[0] == 2:  # the decoder's rows (the vision tower's are one)
            seen.append(attn_mask)
        return original(query, key, value, attn_mask, *args, **kwargs)

    torch.nn.functional.scaled_dot_product_attention = spy
    try:
        result = train_sft(settings)
    finally:
        torch.nn.functional.scaled_dot_product_attention = original
    assert result.steps == 1 and seen and all(m is None for m in seen)
