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

from storyreasoning.data import load_stories  # noqa: E402
from storyreasoning.data.messages import MessageOptions  # noqa: E402
from storyreasoning.errors import UsageError  # noqa: E402
from storyreasoning.evaluate.runs import RunOutputs  # noqa: E402
from storyreasoning.train.dpo import train_dpo  # noqa: E402
from storyreasoning.train.pairs import build_pairs  # noqa: E402
from storyreasoning.train.settings import DPOSettings  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "stories"
SMALL = MessageOptions(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16)


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


def settings(tiny_qwen, pairs: Path, out: Path, **changes) -> DPOSettings:
    base = DPOSettings(
        pairs=(str(pairs),),
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
    log = [json.loads(line) for line in (tmp_path / "dpo" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2]
    assert all("rewards/margins" in r for r in log if "loss" in r)
    again = train_dpo(settings(tiny_qwen, pairs, tmp_path / "dpo"))
    assert again.skipped and again.steps == 2


def test_full_dpo_learns_to_prefer_the_chosen_output(tiny_qwen, pairs, tmp_path):
    result = train_dpo(settings(tiny_qwen, pairs, tmp_path / "full", mode="full", max_steps=4, lr=2e-3))
    log = [json.loads(line) for line in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    assert steps[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # policy = reference at the start
    assert steps[-1]["rewards/margins"] > 0 and steps[-1]["loss"] < steps[0]["loss"], steps
    assert (result.final / "model.safetensors").is_file()


def test_pairs_over_the_length_are_left_out(tiny_qwen, pairs, tmp_path):
    with pytest.raises(UsageError, match="no pair to train on"):
        train_dpo(settings(tiny_qwen, pairs, tmp_path / "short", max_length=500))
    fit = json.loads((tmp_path / "short" / "fit.json").read_text())
    assert sorted(fit["too_long"]) == ["cat-and-coffee", "lighthouse", "pioneers"] and fit["kept"] == 0
    assert not (tmp_path / "short" / "settings.json").exists()  # not claimed: a longer limit may use it


def test_an_adapter_must_be_merged_first(tiny_qwen, pairs, tmp_path):
    import transformers
    from peft import LoraConfig, get_peft_model

    net = transformers.AutoModelForImageTextToText.from_pretrained(tiny_qwen)
    get_peft_model(net, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(tmp_path / "adapter")
    with pytest.raises(UsageError, match="train merge"):
        train_dpo(settings(tiny_qwen, pairs, tmp_path / "x", model=str(tmp_path / "adapter")))


cli = run_cli


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
        "--rank", "2", "--max-steps", "1", "--grad-accum", "1", "--max-length", "0",
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
