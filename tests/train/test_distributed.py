"""Two processes on the CPU (gloo, ``configs/accelerate/cpu-gloo.yaml`` with no GPU visible) train as one
process does, and resume.

The config names ``MULTI_GPU``: accelerate 1.x starts one process for ``MULTI_CPU`` (or ``--cpu``) unless an
MPI ``mpirun`` hostfile is given. Each test checks that both processes ran: each writes its own
``rng_state_N.pth``.

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
    """``accelerate launch`` of the storyreasoning command in two CPU processes (the shipped config, gloo)."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": ""}  # fmt: skip
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(LAUNCH_CONFIG),
               "-m", "storyreasoning.cli", *args]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


def two_ran(folder: Path) -> bool:
    """Whether two processes trained into ``folder``: each saves its own random state in a checkpoint."""
    return all(any((folder / "checkpoints").glob(f"checkpoint-*/rng_state_{rank}.pth")) for rank in (0, 1))


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
    assert two_ran(tmp_path / "two")
    # the main process speaks for the launch: each line once
    assert two.stderr.count("lora training of") == 1 and two.stderr.count("trained 3 steps") == 1, two.stderr
    # every trainable weight is used at every step: DDP is not asked to search the graph for unused ones
    assert "find_unused_parameters=True" not in two.stderr
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
    assert two_ran(tmp_path / "two") and two.stderr.count("trained 2 steps") == 1, two.stderr[-3000:]
    expected, got = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(expected) == len(got) == 2
    assert got == pytest.approx(expected, abs=2e-3)


def test_two_processes_resumed_between_two_records_end_as_uninterrupted(tiny_qwen, same_story, tmp_path):
    """Resumed from checkpoint-1 with a record every second step: each process gets back the loss of step 1
    it held, so the step-2 record (the mean over the processes) and ``train_loss`` are the uninterrupted run's."""
    args = sft_args(same_story, tiny_qwen, tmp_path / "run")
    args[args.index("--logging-steps") + 1] = "2"
    whole = launch(*args)
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert two_ran(tmp_path / "run")
    shutil.copytree(tmp_path / "run", tmp_path / "crashed")
    shutil.rmtree(tmp_path / "crashed" / "final")
    for step in (2, 3):
        shutil.rmtree(tmp_path / "crashed" / "checkpoints" / f"checkpoint-{step}")
    args[args.index("--out") + 1] = str(tmp_path / "crashed")
    again = launch(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("resuming from checkpoint-1") == 1

    def untimed(folder: Path) -> list[dict]:
        lines = (folder / "log.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "time" and "per_second" not in k
                 and k != "train_runtime"} for line in lines]  # fmt: skip

    assert untimed(tmp_path / "crashed") == untimed(tmp_path / "run")
