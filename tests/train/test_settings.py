"""Training settings are checked before anything loads; the CLI turns each problem into one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storyreasoning.errors import UsageError
from storyreasoning.train.job import TrainFolder
from storyreasoning.train.settings import DPOSettings, SFTSettings
from storyreasoning.train.sft import language_target_pattern

SFT = {"source": "s", "out": Path("o")}
DPO = {"pairs": ("p",), "out": Path("o")}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"mode": "half"}, "unknown mode 'half'"),
        ({"rank": 0}, "rank must be at least 1"),
        ({"dropout": 1.0}, "dropout must be in [0, 1)"),
        ({"targets": ()}, "target module"),
        ({"grad_accum": 0}, "gradient accumulation"),
        ({"max_steps": 0}, "max steps must be at least 1"),
        ({"epochs": 0}, "epochs must be positive"),
        ({"max_length": 8}, "too small"),
        ({"save_steps": 0}, "save steps"),
    ],
)
def test_both_jobs_refuse_the_same_bad_settings(change, words):
    for base in (SFT, DPO):
        kind = SFTSettings if "source" in base else DPOSettings
        with pytest.raises(
            UsageError, match=words.replace("[", r"\[").replace(")", r"\)").replace("(", r"\(")
        ):
            kind(**base, **change)


def test_job_specific_checks_and_defaults():
    with pytest.raises(UsageError, match="unknown loss"):
        SFTSettings(**SFT, loss="prompt")
    with pytest.raises(UsageError, match="beta must be positive"):
        DPOSettings(**DPO, beta=0)
    with pytest.raises(UsageError, match="pairs folder"):
        DPOSettings(pairs=(), out=Path("o"))
    # the published recipes: SFT LoRA 2e-4, full 2e-5; DPO rank 2048, alpha 4096, 5e-6, beta 0.1
    assert SFTSettings(**SFT).learning_rate == 2e-4 and SFTSettings(**SFT, mode="full").learning_rate == 2e-5
    assert SFTSettings(**SFT, rank=8).lora_alpha == 16 and SFTSettings(**SFT, rank=8, alpha=4).lora_alpha == 4
    dpo = DPOSettings(**DPO)
    assert (dpo.rank, dpo.lora_alpha, dpo.learning_rate, dpo.beta) == (2048, 4096, 5e-6, 0.1)


def test_the_lora_pattern_never_names_the_vision_tower():
    import re

    pattern = re.compile(language_target_pattern(("q_proj", "gate_proj")))
    assert pattern.fullmatch("model.language_model.layers.0.self_attn.q_proj")
    assert pattern.fullmatch("model.language_model.layers.3.mlp.gate_proj")
    assert not pattern.fullmatch("model.visual.blocks.0.mlp.gate_proj")
    assert not pattern.fullmatch("model.language_model.layers.0.self_attn.q_proj.lora_A")


def test_the_newest_complete_checkpoint_is_resumed(tmp_path):
    folder = TrainFolder(tmp_path)
    for name, complete in (
        ("checkpoint-9", True),
        ("checkpoint-10", True),
        ("checkpoint-11", False),
        ("checkpoint-x", True),
    ):
        (folder.checkpoints / name).mkdir(parents=True)
        if complete:
            (folder.checkpoints / name / "trainer_state.json").write_text("{}")
    assert folder.last_checkpoint().name == "checkpoint-10"  # numeric order; the half-written 11 is skipped


def test_a_folder_keeps_its_settings(tmp_path):
    folder = TrainFolder(tmp_path / "run")
    folder.claim(SFTSettings(source="s", out=tmp_path / "run"), write=False)
    assert not folder.root.exists()  # checking writes nothing
    folder.claim(SFTSettings(source="s", out=tmp_path / "run"))
    held = json.loads(folder.settings.read_text())
    assert held["source"] == "s" and held["lr"] == 2e-4
    folder.claim(SFTSettings(source="s", out=tmp_path / "moved", device="cpu"))  # operational: allowed
    with pytest.raises(UsageError, match=r"other settings \(rank: 16 there, 8 now"):
        folder.claim(SFTSettings(source="s", out=tmp_path / "run", rank=8))
