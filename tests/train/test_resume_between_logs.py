"""A run resumed from a checkpoint that is not on a logging step (``--save-steps`` not a multiple of
``--logging-steps``, or the last step's checkpoint) ends as an uninterrupted run: the same ``log.jsonl``
(times aside), the same ``train_loss``, and for DPO the same ``num_tokens`` and ``rewards/*``.

Before, the loss and TRL's numbers of the steps between the last record and the checkpoint were lost: the
first record after the resume covered fewer steps, ``train_loss`` left them out (or was missing altogether
when the run resumed from its last step), and DPO's running ``num_tokens`` started again from 0.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from ..conftest import require_transformers
from .conftest import SMALL_PIXELS, short_answer_pairs

require_transformers()
pytest.importorskip("peft", reason="LoRA needs peft: pip install 'storyreasoning[train]'")

from storyreasoning.train.dpo import train_dpo  # noqa: E402
from storyreasoning.train.settings import DPOSettings, SFTSettings  # noqa: E402
from storyreasoning.train.sft import train_sft  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "stories"
TIMING = {"time", "train_runtime", "train_samples_per_second", "train_steps_per_second"}
#: Three steps, a record every second one, a checkpoint at each: checkpoint-1 and checkpoint-3 are not on a
#: logging step (the last step is saved whatever --save-steps says).
STEPS = {"max_steps": 3, "logging_steps": 2, "save_steps": 1, "batch_size": 1, "grad_accum": 1, "lr": 1e-3}


def untimed_log(folder: Path) -> list[dict]:
    lines = (folder / "log.jsonl").read_text(encoding="utf-8").splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def crashed_at(run: Path, step: int, path: Path) -> Path:
    """A copy of the finished ``run`` as a kill just after its checkpoint at ``step`` leaves it."""
    shutil.copytree(run, path)
    shutil.rmtree(path / "final")
    for checkpoint in (path / "checkpoints").glob("checkpoint-*"):
        if int(checkpoint.name.split("-")[1]) > step:
            shutil.rmtree(checkpoint)
    return path


@pytest.fixture(scope="module")
def sft(tiny_qwen, tmp_path_factory):
    """``(settings, result)`` of an uninterrupted SFT run."""
    base = SFTSettings(
        source=str(EXAMPLES), out=tmp_path_factory.mktemp("sft") / "run", split=None, model=str(tiny_qwen),
        rank=2, max_length=4000, max_images=1, **SMALL_PIXELS, **STEPS, device="cpu", dtype="float32",
    )  # fmt: skip
    return base, train_sft(base)


@pytest.mark.parametrize("step", [1, 3])
def test_sft_resumed_between_two_records_logs_and_counts_every_step(sft, tmp_path, step, capsys):
    base, whole = sft
    assert [r["step"] for r in untimed_log(base.out)] == [2, 3]  # step 3 is in the end record only
    crashed = crashed_at(base.out, step, tmp_path / "crashed")
    capsys.readouterr()
    resumed = train_sft(replace(base, out=crashed))
    assert resumed.resumed_from == f"checkpoint-{step}"
    assert untimed_log(crashed) == untimed_log(base.out)
    assert resumed.metrics["train_loss"] == pytest.approx(whole.metrics["train_loss"], abs=1e-9)
    if step == 1:  # a call that trained: the summary under the progress bar is the whole run's, as recorded
        printed = [line for line in capsys.readouterr().out.splitlines() if "'train_runtime'" in line]
        assert len(printed) == 1
        for key in ("train_runtime", "train_steps_per_second", "train_loss"):
            assert f"'{key}': '{resumed.metrics[key]:.4g}'" in printed[0], (key, printed[0])


@pytest.fixture(scope="module")
def dpo(tiny_qwen, tmp_path_factory):
    """``(settings, result)`` of an uninterrupted DPO run on pairs of the example stories."""
    pytest.importorskip("trl", reason="DPO needs trl: pip install 'storyreasoning[train]'")
    tmp = tmp_path_factory.mktemp("dpo")
    base = DPOSettings(
        pairs=(str(short_answer_pairs(tmp / "pairs")),), out=tmp / "run", model=str(tiny_qwen), rank=2,
        max_length=6000, **SMALL_PIXELS, **STEPS, device="cpu", dtype="float32",
    )  # fmt: skip
    return base, train_dpo(base)


@pytest.mark.parametrize("step", [1, 3])
def test_dpo_resumed_between_two_records_keeps_its_running_numbers(dpo, tmp_path, step):
    base, whole = dpo
    log = untimed_log(base.out)
    assert "rewards/margins" in log[0] and log[0]["num_tokens"] > 0
    crashed = crashed_at(base.out, step, tmp_path / "crashed")
    resumed = train_dpo(replace(base, out=crashed))
    assert resumed.resumed_from == f"checkpoint-{step}"
    assert untimed_log(crashed) == untimed_log(base.out)  # num_tokens, rewards/* and the loss of each record
    assert resumed.metrics["train_loss"] == pytest.approx(whole.metrics["train_loss"], abs=1e-9)


def test_the_sample_rate_counts_the_examples_trained_on_not_whole_batches(tiny_qwen, tmp_path):
    """Three stories, a batch of 1 × 4 and one epoch: one step of three examples (it said four: 4 / runtime,
    where transformers' own rate, printed beside it, said 3 / runtime)."""
    once = SFTSettings(
        source=str(EXAMPLES), out=tmp_path / "run", split=None, model=str(tiny_qwen), rank=2, max_length=4000,
        max_images=1, **SMALL_PIXELS, epochs=1, batch_size=1, grad_accum=4, device="cpu", dtype="float32",
    )  # fmt: skip
    run = train_sft(once)
    assert run.steps == 1
    rate, runtime = run.metrics["train_samples_per_second"], run.metrics["train_runtime"]
    assert rate == pytest.approx(3 / runtime, rel=0.01, abs=2e-3)
