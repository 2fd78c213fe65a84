"""DPO for real: pairs from the example stories, TRL's DPOTrainer on the tiny Qwen2.5-VL."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ..conftest import require_transformers, run_cli

require_transformers()
pytest.importorskip("trl", reason="DPO needs trl: pip install 'storyreasoning[train]'")
pytest.importorskip("peft", reason="LoRA needs peft: pip install 'storyreasoning[train]'")

from contextlib import nullcontext  # noqa: E402

from storyreasoning.data import load_stories  # noqa: E402
from storyreasoning.data.messages import MessageOptions  # noqa: E402
from storyreasoning.errors import StoryReasoningError, UsageError  # noqa: E402
from storyreasoning.evaluate.runs import RunOutputs  # noqa: E402
from storyreasoning.train.dpo import build_trainer, train_dpo  # noqa: E402
from storyreasoning.train.job import TrainFolder  # noqa: E402
from storyreasoning.train.pairs import build_pairs  # noqa: E402
from storyreasoning.train.settings import DPOSettings  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "stories"
SMALL = MessageOptions(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16)


def no_progress(total, label):
    return nullcontext(lambda n=1: None)


def without_story(text: str) -> str:
    """The same CoT with a one-line untagged story: not well-structured, reward 0."""
    return text.split("</think>")[0] + "</think>\nThey went home."


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    stories = load_stories(str(EXAMPLES))
    bad = RunOutputs(Path("bad"), "bad", {s.story_id: without_story(s.output_text()) for s in stories})
    out = tmp_path_factory.mktemp("pairs") / "pairs"
    report = build_pairs(stories, [bad], out, include_reference=True, dataset={"source": str(EXAMPLES)})
    assert report.pairs == 3
    return out


def settings(tiny_qwen, pairs: Path | tuple[str, ...], out: Path, **changes) -> DPOSettings:
    base = DPOSettings(
        pairs=(str(pairs),) if isinstance(pairs, Path) else pairs,
        out=out,
        model=str(tiny_qwen),
        rank=4,
        max_steps=2,
        batch_size=1,
        grad_accum=1,
        save_steps=1,
        logging_steps=1,
        max_length=6000,
        lr=1e-3,
        min_pixels=SMALL.min_pixels,
        max_pixels=SMALL.max_pixels,
    )
    return replace(base, **changes)


def test_lora_dpo_writes_an_adapter_and_its_log(tiny_qwen, pairs, tmp_path):
    result = train_dpo(settings(tiny_qwen, pairs, tmp_path / "dpo"))
    assert result.steps == 2 and not result.skipped
    assert (result.final / "adapter_config.json").is_file()
    manifest = json.loads((result.final / "storyreasoning.json").read_text())
    assert (
        manifest["kind"] == "dpo"
        and manifest["settings"]["beta"] == 0.1
        and manifest["settings"]["alpha"] == 8
    )
    assert manifest["fit"]["pairs"] == 3 and manifest["fit"]["kept"] == 3 and manifest["versions"]["trl"]
    # one adapter: the reference is the policy with it off, not a frozen copy saved beside it
    assert manifest["parameters"]["adapters"] == ["default"]
    assert manifest["parameters"]["dropout"] == {"lora": 0.05, "model": 0.0}
    saved = [result.final, *sorted((tmp_path / "dpo" / "checkpoints").glob("checkpoint-*"))]
    assert len(saved) == 3
    for folder in saved:
        assert (folder / "adapter_model.safetensors").is_file() and not (folder / "ref").exists(), folder
    log = [json.loads(line) for line in (tmp_path / "dpo" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2]
    assert all("rewards/margins" in r for r in log if "loss" in r)
    # the shared log: each step once, then one end record with the whole run's metrics (train_loss the mean)
    assert [r["step"] for r in log] == [1, 2, 2] and log[-1]["end"] is True and "end" not in log[0]
    assert (
        log[-1]["train_loss"]
        == manifest["metrics"]["train_loss"]
        == pytest.approx((log[0]["loss"] + log[1]["loss"]) / 2)
    )
    again = train_dpo(settings(tiny_qwen, pairs, tmp_path / "dpo"))
    assert again.skipped and again.steps == 2


def test_full_dpo_learns_to_prefer_the_chosen_output(tiny_qwen, pairs, tmp_path):
    result = train_dpo(settings(tiny_qwen, pairs, tmp_path / "full", mode="full", max_steps=4, lr=2e-3))
    log = [json.loads(line) for line in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    assert steps[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # policy = reference at the start
    assert steps[-1]["rewards/margins"] > 0 and steps[-1]["loss"] < steps[0]["loss"], steps
    assert (result.final / "model.safetensors").is_file()


#: What transformers shows while a model's weights load.
LOADING_WEIGHTS = "Loading weights"


def test_pairs_over_the_length_are_left_out(tiny_qwen, pairs, tmp_path, capfd):
    """Counted in fit.json and refused before the weights load (minutes at 7B): the processor alone fits
    them; with room for them the weights load and the job trains."""
    with pytest.raises(UsageError, match="no pair to train on"):
        train_dpo(settings(tiny_qwen, pairs, tmp_path / "short", max_length=500))
    assert LOADING_WEIGHTS not in capfd.readouterr().err
    fit = json.loads((tmp_path / "short" / "fit.json").read_text())
    assert sorted(fit["too_long"]) == ["cat-and-coffee", "lighthouse", "pioneers"] and fit["kept"] == 0
    assert not (tmp_path / "short" / "settings.json").exists()  # not claimed: a longer limit may use it
    assert train_dpo(settings(tiny_qwen, pairs, tmp_path / "short", max_steps=1)).steps == 1
    assert LOADING_WEIGHTS in capfd.readouterr().err  # what the refusal above never reached


def test_pairs_whose_chosen_is_their_rejected_are_left_out(tiny_qwen, pairs, tmp_path, capfd):
    """A pair with one answer on both sides teaches nothing (loss log 2, no gradient): left out, counted."""
    import shutil

    same = tmp_path / "same"
    shutil.copytree(pairs, same)
    rows = [json.loads(line) for line in (same / "pairs.jsonl").read_text().splitlines()]
    (same / "pairs.jsonl").write_text(
        "".join(json.dumps({**r, "rejected": r["chosen"]}) + "\n" for r in rows)
    )
    with pytest.raises(UsageError, match="no pair to train on"):
        train_dpo(settings(tiny_qwen, same, tmp_path / "dpo"))
    assert LOADING_WEIGHTS not in capfd.readouterr().err  # refused before the weights load
    fit = json.loads((tmp_path / "dpo" / "fit.json").read_text())
    assert sorted(fit["identical"]) == ["cat-and-coffee", "lighthouse", "pioneers"] and fit["kept"] == 0
    assert not (tmp_path / "dpo" / "settings.json").exists()


def test_an_adapter_must_be_merged_first(tiny_qwen, pairs, tmp_path):
    import transformers
    from peft import LoraConfig, get_peft_model

    net = transformers.AutoModelForImageTextToText.from_pretrained(tiny_qwen)
    get_peft_model(net, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(tmp_path / "adapter")
    with pytest.raises(UsageError, match="train merge"):
        train_dpo(settings(tiny_qwen, pairs, tmp_path / "x", model=str(tmp_path / "adapter")))


def test_a_damaged_pairs_folder_is_refused_before_the_model_loads(tiny_qwen, pairs, tmp_path, monkeypatch):
    import shutil

    from storyreasoning.train import job

    damaged = tmp_path / "damaged"
    shutil.copytree(pairs, damaged)
    with (damaged / "pairs.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"garbage": 1}\n')
    message = f"{damaged / 'pairs.jsonl'} line 4 is not a pair (no story_id); rebuild the pairs"
    result = run_cli("train", "dpo", str(pairs), "--eval-pairs", str(damaged), "--model", str(tiny_qwen),
                     "--out", str(tmp_path / "cli"), "--device", "cpu")  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        f"error: {message} with storyreasoning train pairs"
    ]

    def loaded(*args, **kwargs):
        raise AssertionError("the model loaded before the pairs were read")

    monkeypatch.setattr(job, "load_weights", loaded)
    with pytest.raises(UsageError, match="line 4 is not a pair"):
        train_dpo(settings(tiny_qwen, damaged, tmp_path / "x"))
    # so is a dataset that is not there (the pairs' frames come from it)
    with pytest.raises(StoryReasoningError, match="does not exist"):
        train_dpo(settings(tiny_qwen, pairs, tmp_path / "y", dataset="/no/such/dataset"))


cli = run_cli


@pytest.mark.slow  # heavy end-to-end run: CI runs it in its slow pass
def test_cli_pairs_then_dpo(tiny_qwen, tmp_path):
    texts = tmp_path / "outputs"
    texts.mkdir()
    for sample in load_stories(str(EXAMPLES)):
        (texts / f"{sample.story_id}.txt").write_text(without_story(sample.output_text()), encoding="utf-8")
    made = cli(
        "train",
        "pairs",
        str(EXAMPLES),
        "--run",
        str(texts),
        "--include-reference",
        "--out",
        str(tmp_path / "p"),
    )
    assert made.returncode == 0, made.stderr
    assert "3 pairs from 3 stories" in made.stderr
    trained = cli(
        "train", "dpo", str(tmp_path / "p"), "--out", str(tmp_path / "d"), "--model", str(tiny_qwen),
        "--rank", "2", "--max-steps", "1", "--grad-accum", "1", "--max-length", "0", "--mix", "p=1",
        "--min-pixels", str(28 * 28 * 4), "--max-pixels", str(28 * 28 * 16),
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert f"--model {tmp_path / 'd' / 'final'}" in trained.stderr
    none = cli("train", "pairs", str(EXAMPLES), "--out", str(tmp_path / "q"))
    assert none.returncode == 2 and "no candidates" in none.stderr and "Traceback" not in none.stderr
    missing = cli(
        "train", "dpo", str(tmp_path / "nowhere"), "--out", str(tmp_path / "e"), "--model", str(tiny_qwen)
    )
    assert (
        missing.returncode == 2
        and "not a pairs folder" in missing.stderr
        and "Traceback" not in missing.stderr
    )


def test_dpo_on_real_and_contrastive_pairs_reads_each_folders_frames(tiny_qwen, pairs, tmp_path):
    from storyreasoning.data.contrastive import contrastive_sequences
    from storyreasoning.data.writers import write_folders

    synthetic = contrastive_sequences(load_stories(str(EXAMPLES)), 2, length=3, seed=1)
    write_folders(synthetic, tmp_path / "contrastive")
    stories = load_stories(str(tmp_path / "contrastive"))
    bad = RunOutputs(Path("bad"), "bad", {s.story_id: without_story(s.output_text()) for s in stories})
    made = build_pairs(stories, [bad], tmp_path / "synth", include_reference=True,
                       dataset={"source": str(tmp_path / "contrastive")})  # fmt: skip
    assert made.pairs == 2
    both = replace(
        settings(tiny_qwen, pairs, tmp_path / "both", max_steps=1),
        pairs=(str(pairs), str(tmp_path / "synth")),
    )
    result = train_dpo(both)
    assert result.fit["pairs"] == 5 and result.fit["kept"] == 5 and not result.fit["missing_story"]


def test_the_reference_is_the_policy_with_its_adapter_off(tiny_qwen, pairs, tmp_path):
    import torch

    chosen = settings(
        tiny_qwen, pairs, tmp_path / "ref", dropout=0.2, targets=("q_proj", "v_proj"), warmup_ratio=0.25,
        weight_decay=0.05, loss_type="ipo", beta=0.2,
    )  # fmt: skip
    trainer = build_trainer(chosen, TrainFolder(chosen.out), no_progress).trainer
    model = trainer.model
    # one adapter, on the chosen modules of the language model, its dropout the one asked for and recorded
    assert list(model.peft_config) == ["default"]
    adapted = {n.split(".lora_A")[0] for n, _ in model.named_modules() if n.endswith("lora_A.default")}
    assert adapted and {n.rsplit(".", 1)[-1] for n in adapted} == {"q_proj", "v_proj"}
    assert not any(".visual." in n for n in adapted)
    dropouts = {n: m.p for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert {p for n, p in dropouts.items() if "lora_dropout" in n} == {0.2}
    assert {p for n, p in dropouts.items() if "lora_dropout" not in n} <= {0.0}
    # the recipe's options reach TRL's configuration and the record
    args = trainer.args
    assert (args.loss_type, args.beta, args.weight_decay, args.warmup_steps) == (["ipo"], 0.2, 0.05, 0.25)
    held = json.loads((tmp_path / "ref" / "settings.json").read_text())
    assert (held["loss_type"], held["warmup_ratio"], held["weight_decay"], held["targets"], held["dropout"]) == (
        "ipo", 0.25, 0.05, ["q_proj", "v_proj"], 0.2,
    )  # fmt: skip
    # at step 0, with the adapter made non-zero: TRL's reference log-probs are the policy's with the adapter off
    batch = next(iter(trainer.get_train_dataloader()))
    model.eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    reference = torch.cat(trainer.compute_ref_log_probs(model, batch))

    def log_probs(adapter: bool):
        inputs = {k: v for k, v in batch.items() if k != "completion_mask"}
        with torch.no_grad(), nullcontext() if adapter else model.disable_adapter():
            logits = model(**inputs, use_cache=False).logits[:, :-1].float()
        tokens = torch.log_softmax(logits, -1).gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
        return (tokens * batch["completion_mask"][:, 1:]).sum(1)

    off = log_probs(adapter=False)
    torch.testing.assert_close(reference, off, rtol=1e-4, atol=1e-3)
    assert (log_probs(adapter=True) - off).abs().max() > 1e-2  # the adapter does change the policy


def test_each_pair_is_scored_under_the_prompt_and_pixels_its_run_told_it_with(tiny_qwen, pairs, tmp_path):
    from transformers import AutoProcessor
    from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

    from storyreasoning.data.budget import TokenBudget
    from storyreasoning.format.prompts import DEFAULT_PROMPT, SYSTEM_PROMPT
    from storyreasoning.models import set_pixel_budget
    from storyreasoning.tell.base import Prompt
    from storyreasoning.train.dpo import PixelBudgetCollator, pair_rows, preference_dataset

    from .test_pairs import told

    stories = load_stories(str(EXAMPLES))
    asked = Prompt(text="Tell what happens.", system=None, order="text-first")
    small = (28 * 28 * 4, 28 * 28 * 4)
    good = told(tmp_path / "good", [s.output_text() for s in stories], prompt=asked, pixels=small)
    bad = told(
        tmp_path / "bad", [without_story(s.output_text()) for s in stories], prompt=asked, pixels=small
    )
    build_pairs(stories, [good, bad], tmp_path / "told", dataset={"source": str(EXAMPLES)})
    job = settings(tiny_qwen, (str(tmp_path / "told"), str(pairs)), tmp_path / "d")
    processor = AutoProcessor.from_pretrained(tiny_qwen)
    set_pixel_budget(processor, job.min_pixels, job.max_pixels)
    by_folder, fit = pair_rows(job, processor, no_progress)
    row, plain = by_folder[str(tmp_path / "told")][0], by_folder[str(pairs)][0]
    images = [{"type": "image", "text": None}] * row["sample"].frame_count
    assert row["prompt"] == [
        {"role": "user", "content": [{"type": "text", "text": "Tell what happens."}, *images]}
    ]
    assert (row["min_pixels"], row["max_pixels"]) == small
    # pairs of a folder of texts: the default prompt, the job's pixel budget, and said so
    assert plain["prompt"][0] == {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]}
    assert plain["prompt"][1]["content"][-1] == {"type": "text", "text": DEFAULT_PROMPT}
    assert (plain["min_pixels"], plain["max_pixels"]) == (job.min_pixels, job.max_pixels)
    assert fit["pixels_from_settings"] == 3 and fit["conditioning_assumed"] == 0
    assert fit["folders"] == {
        str(tmp_path / "told"): {"pairs": 3, "kept": 3},
        str(pairs): {"pairs": 3, "kept": 3},
    }
    # the collator resizes each pair's frames with its run's budget, then gives the processor the job's back
    data = preference_dataset([row, plain], tmp_path / "cache")
    collate = PixelBudgetCollator(
        DataCollatorForVisionPreference(processor), processor, (job.min_pixels, job.max_pixels)
    )
    for k, r in enumerate((row, plain)):
        batch = collate([dict(data[k])])
        budget = TokenBudget(processor, min_pixels=r["min_pixels"], max_pixels=r["max_pixels"])
        frames = [budget.image_tokens(w, h) for w, h in r["sample"].frame_sizes()]
        expected = frames * 2  # chosen and rejected
        assert (batch["image_grid_thw"].prod(-1) // 4).tolist() == expected
        text = processor.tokenizer.decode(batch["input_ids"][0])
        assert ("Tell what happens." in text) == (k == 0) and (SYSTEM_PROMPT in text) == (k == 1)
    assert small[1] < job.max_pixels and processor.image_processor.size["longest_edge"] == job.max_pixels
    # one batch has one budget: pairs of two budgets need a batch of one
    with pytest.raises(UsageError, match="different pixel budgets"):
        build_trainer(replace(job, batch_size=2), TrainFolder(job.out), no_progress)
    assert not (job.out / "settings.json").exists()


@pytest.mark.slow  # heavy end-to-end run: CI runs it in its slow pass
def test_mixed_folders_and_held_out_pairs_are_evaluated_at_each_save(tiny_qwen, pairs, tmp_path):
    from storyreasoning.data.contrastive import contrastive_sequences
    from storyreasoning.data.writers import write_folders

    made = {}
    for name, count, seed in (("synth", 4, 1), ("held", 2, 2)):
        write_folders(
            contrastive_sequences(load_stories(str(EXAMPLES)), count, length=3, seed=seed), tmp_path / name
        )
        stories = load_stories(str(tmp_path / name))
        bad = RunOutputs(Path("bad"), "bad", {s.story_id: without_story(s.output_text()) for s in stories})
        build_pairs(stories, [bad], tmp_path / f"{name}-pairs", include_reference=True,
                    dataset={"source": str(tmp_path / name)})  # fmt: skip
        made[name] = str(tmp_path / f"{name}-pairs")
    job = settings(
        tiny_qwen, (str(pairs), made["synth"]), tmp_path / "mixed", mix=("pairs=2,synth-pairs=1",),
        eval_fraction=0.34, eval_pairs=(made["held"],), max_steps=2,
    )  # fmt: skip
    result = train_dpo(job)
    fit = json.loads((tmp_path / "mixed" / "fit.json").read_text())
    # a third of each folder's stories held out; then 2:1 of what is left (real 2 of 2, synthetic 1 of 3)
    assert fit["folders"][str(pairs)] == {
        "pairs": 3,
        "kept": 3,
        "held_out": 1,
        "available": 2,
        "weight": 2.0,
        "used": 2,
    }
    assert fit["folders"][made["synth"]] == {
        "pairs": 4, "kept": 4, "held_out": 1, "available": 3, "weight": 1.0, "used": 1,
    }  # fmt: skip
    assert (fit["train"], fit["eval"], fit["eval_pairs"]["kept"]) == (3, 4, 2)
    log = [json.loads(line) for line in (tmp_path / "mixed" / "log.jsonl").read_text().splitlines()]
    evaluated = [r for r in log if "eval_loss" in r]
    assert {r["step"] for r in evaluated} == {1, 2} and all("eval_rewards/margins" in r for r in evaluated)
    assert "eval_loss" in result.metrics


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mix": ("real=2",)}, "gives no weight to the pairs folder p/synth"),
        ({"mix": ("real=two,synth=1",)}, "NAME=WEIGHT"),
        ({"mix": ("real=2,synth=1,other=1",)}, "names other, which is not one of the pairs folders"),
        ({"mix": ("real=0", "synth=0")}, "every pairs folder a weight of 0"),
        ({"loss_type": "sigmoidal"}, "unknown DPO loss type 'sigmoidal'"),
        ({"eval_fraction": 0.7}, "eval_fraction must be between 0 and 0.5"),
    ],
)
def test_bad_dpo_options_are_one_clear_error(changes, message):
    with pytest.raises(UsageError, match=message):
        DPOSettings(pairs=("p/real", "p/synth"), out=Path("o"), **changes)


def test_mix_weights_name_folders_by_name_or_path():
    both = ("pairs/real", "pairs/synth")
    by_name = DPOSettings(pairs=both, out=Path("o"), mix=("real=2", "synth=1"))
    by_path = DPOSettings(pairs=both, out=Path("o"), mix=("pairs/real=2,pairs/synth/=1",))
    assert by_name.mix_weights() == by_path.mix_weights() == {"pairs/real": 2.0, "pairs/synth": 1.0}
    assert DPOSettings(pairs=both, out=Path("o")).mix_weights() is None
    undone = DPOSettings(pairs=both, out=Path("o"), mix=("none",))  # a recipe's mix undone
    assert undone.mix_weights() is None
