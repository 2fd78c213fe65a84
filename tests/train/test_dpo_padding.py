"""DPO's padded batches score every sequence as it scores alone (SDPA, float32, the tiny Qwen2.5-VL).

A DPO batch holds the chosen and the rejected answer of each pair, so one of them is
always padded, and pairs of different stories pad their prompts too. TRL's vision
collator pads prompts on the left, answers on the right and flushes every row left, so the
padding ends each row; Qwen2.5-VL's multimodal positions come from the attention mask.
Checked here through our job (``build_trainer``: our pixel-budget collator around TRL's,
TRL's fused LM head): each row's per-token log-probs in a batch of two pairs equal those
of the same sequence alone, unpadded, with only its own frames, to 1e-5 (measured: under
1e-6); and the batch's sums are TRL's reference log-probs.
"""

from __future__ import annotations

import pytest

from ..conftest import require_transformers
from .conftest import log_probs

require_transformers()
pytest.importorskip("trl", reason="DPO needs trl: pip install 'storyreasoning[train]'")
pytest.importorskip("peft", reason="LoRA needs peft: pip install 'storyreasoning[train]'")

import torch  # noqa: E402


@pytest.fixture(scope="module")
def scored(shortest_pairs):
    """``(trainer, batch, frames of each pair)``: a batch of the two shortest example pairs.

    Their rejected answers are shorter than the chosen ones: every pair pads one of its two rows.
    """
    trainer, examples = shortest_pairs
    frames = [len(e["images"]) for e in examples]
    batch = trainer.data_collator(examples)  # rows: chosen 0, 1, then rejected 0, 1
    return trainer, batch, frames


def alone(batch: dict, row: int, frames: list[int]) -> dict:
    """Row ``row`` of the batch by itself: no padding, its own frames (pair ``row % pairs``'s)."""
    length = int(batch["attention_mask"][row].sum())
    images = frames * 2  # the collator repeats each pair's frames for its rejected row
    first = sum(images[:row])
    grid = batch["image_grid_thw"]
    patches = torch.cat([torch.zeros(1, dtype=torch.long), grid.prod(dim=1).cumsum(0)])
    inputs = {
        key: batch[key][row : row + 1, :length]
        for key in batch
        if batch[key].dim() == 2 and key != "pixel_values"
    }
    inputs["pixel_values"] = batch["pixel_values"][patches[first] : patches[first + images[row]]]
    inputs["image_grid_thw"] = grid[first : first + images[row]]
    return inputs


def test_a_padded_batch_scores_each_sequence_as_it_scores_alone(scored):
    trainer, batch, frames = scored
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    width = batch["input_ids"].shape[1]
    assert len(lengths) == 4 and sum(n < width for n in lengths) == 3  # padded rows, of several lengths
    ends = all(bool(batch["attention_mask"][row, :n].all()) for row, n in enumerate(lengths))
    assert ends  # each row: its tokens, then its padding (TRL flushes rows left)
    assert int((batch["input_ids"] == trainer.model.config.image_token_id).sum()) > 0
    batched = log_probs(trainer.model, batch)
    for row, n in enumerate(lengths):
        single = log_probs(trainer.model, alone(batch, row, frames))[0]
        assert single.shape[0] == n - 1
        torch.testing.assert_close(batched[row, : n - 1], single, rtol=0, atol=1e-5, msg=f"row {row}")
        assert not batched[row, n - 1 :].any()  # padding scores nothing
    # the sums are TRL's own reference log-probs of the batch (a new adapter is the identity)
    chosen, rejected = trainer.compute_ref_log_probs(trainer.model, batch)
    torch.testing.assert_close(torch.cat([chosen, rejected]), batched.sum(dim=1), rtol=0, atol=1e-3)


def test_left_padding_scores_the_same_and_attended_padding_would_be_seen(scored):
    """Padding in front (masked) changes nothing either; the same padding attended changes the scores."""
    trainer, batch, frames = scored
    row = int(batch["attention_mask"].sum(dim=1).argmin())  # the shortest row
    inputs = alone(batch, row, frames)
    pad_id = trainer.processing_class.tokenizer.pad_token_id

    def left_padded(mask: int) -> dict:
        fills = {"input_ids": pad_id, "attention_mask": mask, "completion_mask": 0, "mm_token_type_ids": 0}
        out = {
            key: torch.cat([torch.full((1, 16), fill, dtype=inputs[key].dtype), inputs[key]], dim=1)
            for key, fill in fills.items()
            if key in inputs
        }
        return {**out, "pixel_values": inputs["pixel_values"], "image_grid_thw": inputs["image_grid_thw"]}

    clean = log_probs(trainer.model, inputs)[0]
    torch.testing.assert_close(log_probs(trainer.model, left_padded(0))[0, 16:], clean, rtol=0, atol=1e-5)
    assert (log_probs(trainer.model, left_padded(1))[0, 16:] - clean).abs().max() > 1e-3
