"""What the training tests share: preference pairs of the example stories, and train dpo's trainer on them.

Nothing heavy is imported here: the modules that use these skip themselves first when
transformers, trl or peft are missing.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "stories"
#: Four to sixteen image tokens a frame: rows stay short on the tiny model.
SMALL_PIXELS = {"min_pixels": 28 * 28 * 4, "max_pixels": 28 * 28 * 16}


def no_progress(total, label):
    """A job's ``progress`` that shows nothing."""
    return nullcontext(lambda n=1: None)


def short_answer_pairs(out: Path, source: Path = EXAMPLES) -> Path:
    """``out`` holding a pair per story of ``source``: its reference against its own CoT with the story ``No.``

    The rejected answer is untagged (reward 0) and shorter than the chosen one, so a batch
    of pairs always pads one of each pair's two rows.
    """
    from storyreasoning.data import load_stories
    from storyreasoning.evaluate.runs import RunOutputs
    from storyreasoning.train.pairs import build_pairs

    stories = load_stories(str(source))
    bad = RunOutputs(Path("bad"), "bad", {s.story_id: s.output_text().split("</think>")[0] + "</think>\nNo."
                                          for s in stories})  # fmt: skip
    build_pairs(stories, [bad], out, include_reference=True, dataset={"source": str(source)})
    return out


@pytest.fixture(scope="module")
def shortest_pairs(tiny_qwen, tmp_path_factory):
    """``(trainer, examples)``: train dpo's trainer on :func:`short_answer_pairs`, in eval mode, and its two
    shortest training rows (not collated).

    LoRA rank 4, batch 2, SDPA, float32 on the CPU, :data:`SMALL_PIXELS`. One per test
    module, which may change its model.
    """
    from storyreasoning.train.dpo import build_trainer
    from storyreasoning.train.job import TrainFolder
    from storyreasoning.train.settings import DPOSettings

    tmp = tmp_path_factory.mktemp("dpo-pairs")
    settings = DPOSettings(
        pairs=(str(short_answer_pairs(tmp / "pairs")),), out=tmp / "dpo", model=str(tiny_qwen), rank=4,
        max_steps=1, batch_size=2, grad_accum=1, max_length=6000, dtype="float32", device="cpu",
        attn_implementation="sdpa", **SMALL_PIXELS,
    )  # fmt: skip
    trainer = build_trainer(settings, TrainFolder(settings.out), no_progress).trainer
    trainer.model.eval()
    examples = sorted((dict(row) for row in trainer.train_dataset), key=lambda e: len(str(e["chosen"])))[:2]
    return trainer, examples


def log_probs(model, inputs: dict):
    """Per-token log-probs of the answer tokens, as TRL's DPO computes them (its fused LM head)."""
    import torch

    labels = inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)
    kwargs = {k: v for k, v in inputs.items() if k != "completion_mask"}
    with torch.no_grad():
        return model(**kwargs, labels=labels, fused_lm_head=True, use_cache=False).log_probs
