"""Gradient checkpointing with a frozen vision tower: nothing runs backward through it.

transformers' ``enable_input_require_grads`` (called by the Trainer, PEFT and TRL whenever
checkpointing is on) hooks every input embedding, the vision tower's patch embedding
included, so a frozen tower built its graph and was recomputed and back-propagated for
nothing. ``job.text_input_grads`` keeps the hook on the token embeddings alone. Checked on
the tiny Qwen2.5-VL with real batches of the example stories: the same loss and gradients
as before, no backward pass through a frozen tower (LoRA, language), gradients in a trained
one (full), and the real SFT and DPO jobs run that way.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest

from ..conftest import require_transformers
from .conftest import no_progress, short_answer_pairs

require_transformers()
pytest.importorskip("peft", reason="LoRA needs peft: pip install 'storyreasoning[train]'")

import torch  # noqa: E402
import transformers  # noqa: E402

from storyreasoning.data import load_stories  # noqa: E402
from storyreasoning.data.messages import MessageOptions, TrainingExamples  # noqa: E402
from storyreasoning.train.collate import StoryCollator  # noqa: E402
from storyreasoning.train.job import text_input_grads  # noqa: E402
from storyreasoning.train.settings import SFTSettings  # noqa: E402
from storyreasoning.train.sft import prepare_model, train_sft  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "stories"
SMALL = MessageOptions(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16, max_images=2, style="trl")


@contextmanager
def backward_calls():
    """Count backward passes through each kind of module (every module, by class name), as they run."""
    counts: dict[str, int] = {}

    def count(module, grad_input, grad_output) -> None:
        name = type(module).__name__
        counts[name] = counts.get(name, 0) + 1

    handle = torch.nn.modules.module.register_module_full_backward_hook(count)
    try:
        yield counts
    finally:
        handle.remove()


def tower_of(net):
    return next(module for name, module in net.named_modules() if name.split(".")[-1] == "visual")


@pytest.fixture(scope="module")
def batch(tiny_qwen):
    processor = transformers.AutoProcessor.from_pretrained(tiny_qwen)
    examples = TrainingExamples(load_stories(str(EXAMPLES)), SMALL)
    return StoryCollator(processor)([examples[0], examples[1]])  # two stories, padded, with their frames


def step(tiny_qwen, batch, mode: str, *, ours: bool):
    """One checkpointed forward and backward as the Trainer runs it: ``(loss, grads, backward calls, tower output)``."""
    torch.manual_seed(0)
    net = transformers.AutoModelForImageTextToText.from_pretrained(tiny_qwen, dtype=torch.float32)
    if ours:
        text_input_grads(net)  # what job.load_model does
    settings = SFTSettings(source="x", out=Path("x"), model=str(tiny_qwen), mode=mode, rank=4, dropout=0.0)
    net, _ = prepare_model(net, settings)  # LoRA: also calls enable_input_require_grads, as PEFT users do
    net.train()
    # checkpointing as the Trainer turns it on
    net.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    outputs = []
    handle = tower_of(net).merger.register_forward_hook(lambda module, args, output: outputs.append(output))
    with backward_calls() as calls:
        loss = net(**batch).loss
        loss.backward()
    handle.remove()
    grads = {name: p.grad.detach().clone() for name, p in net.named_parameters() if p.grad is not None}
    return loss.item(), grads, calls, outputs[0]  # the image features


@pytest.mark.parametrize("mode", ["lora", "language"])
def test_a_frozen_tower_is_not_back_propagated_and_the_gradients_are_unchanged(tiny_qwen, batch, mode):
    loss, grads, calls, features = step(tiny_qwen, batch, mode, ours=True)
    before_loss, before_grads, before_calls, before_features = step(tiny_qwen, batch, mode, ours=False)
    # transformers' own hook put the frozen tower in the graph (if this fails, it no longer does so and
    # text_input_grads could go)
    assert before_calls.get("Qwen2_5_VLVisionBlock", 0) > 0 and before_features.requires_grad
    # ours: no graph through the tower, no backward pass through it, its blocks not recomputed
    assert not features.requires_grad
    assert calls.get("Qwen2_5_VLVisionBlock", 0) == 0 and calls.get("Qwen2_5_VLPatchMerger", 0) == 0, calls
    assert calls.get("Qwen2_5_VLDecoderLayer", 0) > 0  # the language model still is
    # ... with the same loss and the same gradients, every trained parameter's
    assert loss == pytest.approx(before_loss, abs=1e-6)
    assert grads.keys() == before_grads.keys() and len(grads) > 0
    assert not any("visual" in name for name in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, before_grads[name], rtol=0, atol=1e-6, msg=name)
    if mode == "lora":
        assert all("lora_" in name for name in grads)


def test_a_trained_tower_still_gets_its_gradients(tiny_qwen, batch):
    loss, grads, calls, features = step(tiny_qwen, batch, "full", ours=True)
    before_loss, before_grads, _, _ = step(tiny_qwen, batch, "full", ours=False)
    assert features.requires_grad and calls.get("Qwen2_5_VLVisionBlock", 0) > 0
    tower = [name for name in grads if "visual" in name]
    assert tower and all(grads[name].abs().sum() > 0 for name in tower if ".blocks.0." in name), tower
    assert any("patch_embed" in name for name in tower)
    assert loss == pytest.approx(before_loss, abs=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, before_grads[name], rtol=0, atol=1e-6, msg=name)


def test_one_hook_however_often_it_is_asked_for(tiny_qwen):
    net = transformers.AutoModelForImageTextToText.from_pretrained(tiny_qwen)
    text_input_grads(net)
    for _ in range(3):  # our prepare_model, PEFT or TRL, and the Trainer each ask
        net.enable_input_require_grads()
    assert len(net._require_grads_hooks) == 1
    assert len(tower_of(net).patch_embed._forward_hooks) == 0
    assert len(net.get_input_embeddings()._forward_hooks) == 1
    net.disable_input_require_grads()  # transformers' own switch still removes it
    assert len(net.get_input_embeddings()._forward_hooks) == 0


# -- the real jobs ---------------------------------------------------------------------------------------------


def test_lora_sft_with_checkpointing_never_runs_backward_through_the_tower(tiny_qwen, tmp_path):
    settings = SFTSettings(
        source=str(EXAMPLES), out=tmp_path / "sft", split=None, model=str(tiny_qwen), rank=4, max_steps=1,
        batch_size=1, grad_accum=1, save_steps=1, logging_steps=1, max_length=4000, max_images=2,
        min_pixels=SMALL.min_pixels, max_pixels=SMALL.max_pixels, lr=1e-3, gradient_checkpointing=True,
    )  # fmt: skip
    with backward_calls() as calls:
        result = train_sft(settings)
    assert result.steps == 1
    assert calls.get("Qwen2_5_VLDecoderLayer", 0) > 0 and calls.get("Qwen2_5_VLVisionBlock", 0) == 0, calls


def test_lora_dpo_with_checkpointing_never_runs_backward_through_the_tower(tiny_qwen, tmp_path):
    pytest.importorskip("trl", reason="DPO needs trl: pip install 'storyreasoning[train]'")
    from storyreasoning.train.dpo import build_trainer
    from storyreasoning.train.job import TrainFolder
    from storyreasoning.train.settings import DPOSettings

    pairs = short_answer_pairs(tmp_path / "pairs")
    settings = DPOSettings(
        pairs=(str(pairs),), out=tmp_path / "dpo", model=str(tiny_qwen), rank=4, max_steps=1,
        batch_size=1, grad_accum=1, save_steps=1, logging_steps=1, max_length=6000, lr=1e-3,
        min_pixels=SMALL.min_pixels, max_pixels=SMALL.max_pixels, gradient_checkpointing=True,
    )  # fmt: skip
    built = build_trainer(settings, TrainFolder(settings.out), no_progress)
    with backward_calls() as calls:
        built.trainer.train()  # TRL and the Trainer both ask for input gradients on the way
    assert calls.get("Qwen2_5_VLDecoderLayer", 0) > 0 and calls.get("Qwen2_5_VLVisionBlock", 0) == 0, calls
    assert len(tower_of(built.trainer.model).patch_embed._forward_hooks) == 0
