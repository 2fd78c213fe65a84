"""--report-to and the story check, for real: the tiny Qwen2.5-VL with LoRA, transformers' Trainer, the example stories."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import pytest

from ..conftest import require_transformers

require_transformers()
pytest.importorskip("peft", reason="LoRA needs peft: pip install 'storyreasoning[train]'")

from storyreasoning.data import load_stories  # noqa: E402
from storyreasoning.data.messages import TrainingExamples  # noqa: E402
from storyreasoning.errors import UsageError  # noqa: E402
from storyreasoning.train import callbacks, job  # noqa: E402
from storyreasoning.train.collate import StoryCollator  # noqa: E402
from storyreasoning.train.settings import DPOSettings, SFTSettings  # noqa: E402
from storyreasoning.train.sft import prepare_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "stories"
SMALL = {"min_pixels": 28 * 28 * 4, "max_pixels": 28 * 28 * 16, "max_images": 2}


def sft_settings(tiny_qwen, out: Path, **changes) -> SFTSettings:
    base = SFTSettings(
        source=str(EXAMPLES), out=out, split=None, model=str(tiny_qwen), max_steps=4, batch_size=1, grad_accum=1,
        save_steps=100, logging_steps=1, max_length=4000, lr=1e-3, gradient_checkpointing=False,
        eval_every=2, eval_stories=2, eval_dataset=str(EXAMPLES), eval_max_new_tokens=6, **SMALL,
    )  # fmt: skip
    return replace(base, **changes)


def lora_trainer(settings: SFTSettings):
    """A LoRA trainer built as the SFT job builds it, with the story check installed."""
    _, transformers, processor, net, device, dtype = job.load_model(settings)
    job.token_budget(processor, settings)
    folder = job.TrainFolder(settings.out)
    folder.root.mkdir(parents=True, exist_ok=True)
    transformers.set_seed(settings.seed)  # the adapters' initialisation, the same in both trainers of a test
    net, _ = prepare_model(net, settings)
    examples = TrainingExamples(load_stories(str(EXAMPLES)), replace(settings.messages, style="trl"))
    args = transformers.TrainingArguments(
        **job.trainer_arguments(settings, folder, transformers, dtype=dtype, device=device),
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(
        model=net, args=args, train_dataset=examples, data_collator=StoryCollator(processor),
        callbacks=[job.json_log(transformers, folder.log)],
    )  # fmt: skip
    return trainer, callbacks.install(trainer, settings, processor), folder


def log_lines(folder) -> list[dict]:
    return [json.loads(line) for line in folder.log.read_text().splitlines()]


def test_the_check_logs_its_metrics_at_every_nth_step_and_leaves_training_as_it_was(tiny_qwen, tmp_path):
    trainer, check, folder = lora_trainer(sft_settings(tiny_qwen, tmp_path / "checked"))
    assert hasattr(trainer.model, "peft_config")  # the check tells with a PEFT-wrapped model
    trainer.train()
    lines = log_lines(folder)
    checked = [line for line in lines if "eval_well_structured" in line]
    assert [line["step"] for line in checked] == [2, 4]
    for line in checked:
        for key in (*callbacks.METRICS, "eval_truncated"):
            assert 0.0 <= line[key] <= 1.0, (key, line)
        # six new tokens never finish a story: every telling is cut short, none is well-structured
        assert line["eval_truncated"] == 1.0 and line["eval_well_structured"] == 0.0
    # the trainer's own history has them too (what a resumed run's state carries)
    assert [h["step"] for h in trainer.state.log_history if "eval_grounding_f1" in h] == [2, 4]

    # the check restores train mode, adapters' dropout included, and does not disturb training
    trainer.model.train()
    check.run()
    assert trainer.model.training and all(m.training for m in trainer.model.modules())
    plain, _, plain_folder = lora_trainer(sft_settings(tiny_qwen, tmp_path / "plain", eval_every=None))
    plain.train()
    losses = [line["loss"] for line in log_lines(folder) if "loss" in line]
    assert losses == [line["loss"] for line in log_lines(plain_folder) if "loss" in line]
    assert len(losses) == 4


def test_the_score_of_the_references_themselves_is_perfect_and_of_nothing_zero():
    settings = SFTSettings(
        source=str(EXAMPLES), out=Path("unused"), eval_dataset=str(EXAMPLES), eval_stories=3
    )
    stories = callbacks.held_out(settings)
    assert len(stories) == 3
    perfect = callbacks.score(stories, [(held.sample.output_text(), False) for held in stories])
    assert perfect == {
        "eval_well_structured": 1.0, "eval_grounding_f1": 1.0, "eval_link_recall": 1.0, "eval_truncated": 0.0,
    }  # fmt: skip
    nothing = callbacks.score(stories, [("", True)] * 3)
    assert nothing == {
        "eval_well_structured": 0.0, "eval_grounding_f1": 0.0, "eval_link_recall": 0.0, "eval_truncated": 1.0,
    }  # fmt: skip


def test_held_out_stories_are_prepared_as_training_prepares_them():
    settings = SFTSettings(
        source=str(EXAMPLES), out=Path("unused"), eval_dataset=str(EXAMPLES), eval_stories=1, max_images=2,
        box_space="model", min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16,
    )  # fmt: skip
    (held,) = callbacks.held_out(settings)
    assert len(held.sample.frames) == 2
    # boxes in the model's resized input: the sizes the metrics clip them to are those of that input
    assert all(w % 28 == 0 and h % 28 == 0 and w * h <= 28 * 28 * 16 for w, h in held.sizes)
    assert held.sizes != held.sample.frame_sizes()


def test_held_out_means_a_split_training_does_not_use(tmp_path):
    def sft(**changes):
        return SFTSettings(source="daniel3303/StoryReasoning", out=tmp_path, eval_every=10, **changes)

    with pytest.raises(UsageError, match="pass --eval-split"):
        callbacks.eval_source(sft())
    with pytest.raises(UsageError, match="not held out"):
        callbacks.eval_source(sft(split="train", eval_split="train"))
    assert callbacks.eval_source(sft(eval_split="test")) == ("daniel3303/StoryReasoning", "test")
    assert callbacks.eval_source(sft(eval_dataset="other", eval_split=None)) == ("other", None)
    # DPO: the dataset the pairs folder names
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    (pairs / "manifest.json").write_text(
        json.dumps({"dataset": {"source": "some/dataset", "split": "train"}})
    )
    dpo = DPOSettings(pairs=(str(pairs),), out=tmp_path, eval_every=5, eval_split="test")
    assert callbacks.eval_source(dpo) == ("some/dataset", "test")
    assert callbacks.eval_source(replace(dpo, dataset="mine")) == ("mine", "test")


def test_report_to_names_and_installs(tmp_path, monkeypatch):
    settings = SFTSettings(source=str(EXAMPLES), out=tmp_path)
    assert callbacks.reporters(settings) == "none"
    assert callbacks.parse_report_to(" TensorBoard , wandb,tensorboard") == ["tensorboard", "wandb"]
    with pytest.raises(UsageError, match="none alone"):
        callbacks.parse_report_to("none,wandb")
    with pytest.raises(UsageError, match="did you mean tensorboard"):
        callbacks.reporters(replace(settings, report_to="tensorbord"))
    for name, module in (("tensorboard", "tensorboard"), ("wandb", "wandb")):
        chosen = replace(settings, report_to=name)
        if importlib.util.find_spec(module) is None:
            with pytest.raises(UsageError, match=f"pip install {name}"):
                callbacks.reporters(chosen)
        else:
            monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
            assert callbacks.reporters(chosen) == [name]
            if name == "tensorboard":
                import os

                assert os.environ["TENSORBOARD_LOGGING_DIR"] == str(tmp_path / "tensorboard")


@pytest.mark.slow  # heavy end-to-end run: CI runs it in its slow pass
def test_a_missing_reporter_is_one_line_from_the_command_line(tiny_qwen, tmp_path):
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    from ..conftest import run_cli

    result = run_cli(
        "train", "sft", str(EXAMPLES), "--out", str(tmp_path / "run"), "--model", str(tiny_qwen), "--split", "train",
        "--max-steps", "1", "--max-images", "1", "--max-pixels", str(28 * 28 * 4), "--min-pixels", str(28 * 28 * 4),
        "--report-to", "wandb",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "pip install wandb" in result.stderr and "Traceback" not in result.stderr


def test_liger_on_without_liger_kernel_is_refused_before_the_model_loads(tmp_path):
    """``--liger on`` where liger-kernel is missing is said before anything loads (at 7B the load is
    minutes): here the model named is no folder at all, and the liger line still comes first."""
    if importlib.util.find_spec("liger_kernel") is not None:
        pytest.skip("liger-kernel is installed here")
    from ..conftest import run_cli

    result = run_cli(
        "train", "sft", str(EXAMPLES), "--out", str(tmp_path / "run"), "--model", str(tmp_path / "no-model"),
        "--liger", "on", "--max-steps", "1",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert (
        result.stderr.strip()
        == "error: --liger on needs liger-kernel: pip install liger-kernel (on a CUDA machine)"
    )
