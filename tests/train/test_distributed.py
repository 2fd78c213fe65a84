"""Two processes on the CPU (gloo, ``accelerate launch``) train as one process does, and resume.

The data are two copies of one story and a step takes two examples, so every step sees
both, whichever process draws which: what is compared is the arithmetic of a distributed step (gradients
averaged over processes, the loss normalised by the tokens of the whole step). A wrong
scale shows in the later steps' losses, after updates at a high learning rate. LoRA
dropout is off: each process draws its own masks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from ..conftest import require_transformers, run_cli

require_transformers()
pytest.importorskip("peft", reason="LoRA needs peft: pip install 'storyreasoning[train]'")

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "stories"
LAUNCH_CONFIG = ROOT / "configs" / "accelerate" / "cpu-gloo.yaml"
SMALL = ["--min-pixels", str(28 * 28 * 4), "--max-pixels", str(28 * 28 * 16)]


@pytest.fixture(scope="module")
def same_story(tmp_path_factory) -> Path:
    """Two copies of one example story (each gets its own training prompt), as parquet."""
    from storyreasoning.data import load_stories
    from storyreasoning.data.writers import write_parquet

    story = next(s for s in load_stories(str(EXAMPLES)) if s.story_id == "lighthouse")
    out = tmp_path_factory.mktemp("same") / "data"
    write_parquet([replace(story, story_id=f"copy{i}") for i in range(2)], out, split="train")
    return out


def launch(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``accelerate launch`` of the storyreasoning command in two CPU processes."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(LAUNCH_CONFIG),
               "--num_processes", "2", "-m", "storyreasoning.cli", *args]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


def losses(folder: Path) -> list[float]:
    lines = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in lines if "loss" in r]


def sft_args(data: Path, model: Path, out: Path) -> list[str]:
    return ["train", "sft", str(data), "--out", str(out), "--model", str(model), "--rank", "4",
            "--dropout", "0", "--warmup-ratio", "0", "--max-steps", "3", "--global-batch", "2", "--lr", "2e-2",
            "--logging-steps", "1",
            "--save-steps", "1", "--max-images", "2", "--max-length", "0", "--seed", "1", *SMALL]  # fmt: skip


def test_two_processes_train_sft_as_one_and_resume(tiny_qwen, same_story, tmp_path):
    one = run_cli(*sft_args(same_story, tiny_qwen, tmp_path / "one"), timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = launch(*sft_args(same_story, tiny_qwen, tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    expected, got = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(expected) == len(got) == 3
    assert expected[2] < expected[1] - 0.05 < expected[0] - 0.05  # the steps really change the model
    assert got == pytest.approx(expected, abs=2e-3)  # a tenth of a step's change
    # the settings record one accumulation step per process, the global batch kept
    fit = json.loads((tmp_path / "two" / "final" / "storyreasoning.json").read_text())
    assert fit["settings"]["global_batch"] == 2 and fit["steps"] == 3
    # a crash after step 2: the newest checkpoint and the final folder are lost; the same command resumes
    shutil.rmtree(tmp_path / "two" / "final")
    shutil.rmtree(tmp_path / "two" / "checkpoints" / "checkpoint-3")
    (tmp_path / "two" / "log.jsonl").write_text(
        "".join(line + "\n" for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines()[:2])
    )
    again = launch(*sft_args(same_story, tiny_qwen, tmp_path / "two"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from checkpoint-2" in again.stderr
    assert losses(tmp_path / "two") == pytest.approx(expected, abs=2e-3)


def test_two_processes_train_dpo_as_one(tiny_qwen, same_story, tmp_path):
    pytest.importorskip("trl", reason="DPO needs trl: pip install 'storyreasoning[train]'")
    from storyreasoning.data import load_stories

    outputs = tmp_path / "outputs"
    outputs.mkdir()
    for sample in load_stories(str(same_story)):  # a worse candidate for each story: the CoT, no story
        (outputs / f"{sample.story_id}.txt").write_text(
            sample.output_text().split("</think>")[0] + "</think>\nThey went home.", encoding="utf-8"
        )
    made = run_cli("train", "pairs", str(same_story), "--run", str(outputs), "--include-reference",
                   "--out", str(tmp_path / "pairs"))  # fmt: skip
    assert made.returncode == 0, made.stderr

    def dpo_args(out: Path) -> list[str]:
        return ["train", "dpo", str(tmp_path / "pairs"), "--out", str(out), "--model", str(tiny_qwen),
                "--rank", "4", "--dropout", "0", "--warmup-ratio", "0", "--max-steps", "2", "--global-batch", "2",
                "--lr", "2e-2", "--logging-steps", "1", "--save-steps", "5", "--max-length", "0", "--seed", "1", *SMALL]  # fmt: skip

    one = run_cli(*dpo_args(tmp_path / "one"), timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = launch(*dpo_args(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    expected, got = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(expected) == len(got) == 2
    assert got == pytest.approx(expected, abs=2e-3)
