"""Stopping and resuming a training for real: Ctrl-C (a real process, a real SIGINT) says what is kept and how
to go on; a checkpoint's files are checked before it is resumed; ``log.jsonl`` is cut back to the checkpoint.

The resumes of a crashed run on the tiny model (the same log, loss and weights as an uninterrupted run, a
damaged checkpoint passed over) are in ``test_sft.py``, beside the run they copy.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import require_transformers

require_transformers()
pytest.importorskip("peft", reason="LoRA needs peft: pip install 'storyreasoning[train]'")

import torch  # noqa: E402

from storyreasoning.errors import UsageError  # noqa: E402
from storyreasoning.train import checkpoints  # noqa: E402
from storyreasoning.train.job import TrainFolder  # noqa: E402
from storyreasoning.train.runlog import cut_back  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "stories"
#: The figures that time the run: they differ between any two runs.
TIMING = {"time", "train_runtime", "train_samples_per_second", "train_steps_per_second"}


def recipe(path: Path, model: Path, steps: int) -> Path:
    """LoRA steps of the example stories, a checkpoint every two, a log line every step."""
    path.write_text(
        f"source: {EXAMPLES}\nsplit: null\nmodel: {model}\nrank: 4\nmax_steps: {steps}\nbatch_size: 1\n"
        "grad_accum: 1\nsave_steps: 2\nlogging_steps: 1\nmax_length: 4000\nmax_images: 1\nmin_pixels: 3136\n"
        "max_pixels: 3136\nlr: 1.0e-3\ndevice: cpu\ndtype: float32\n",
        encoding="utf-8",
    )
    return path


def interrupt(config: Path, out: Path, lines: int) -> subprocess.CompletedProcess:
    """``train sft --config CONFIG --out OUT`` in a real process, sent SIGINT (Ctrl-C) once ``log.jsonl`` has
    ``lines`` lines."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable,
        "-m",
        "storyreasoning.cli",
        "train",
        "sft",
        "--config",
        str(config),
        "--out",
        str(out),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    log, deadline = out / "log.jsonl", time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if log.is_file() and log.read_bytes().count(b"\n") >= lines:
            process.send_signal(signal.SIGINT)
            break
        time.sleep(0.005)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def error_line(process: subprocess.CompletedProcess) -> str:
    """The one ``error:`` line (a progress bar may share its line: what is before it is left out)."""
    lines = [line for line in process.stderr.replace("\r", "\n").splitlines() if "error:" in line]
    assert len(lines) == 1, process.stderr[-3000:]
    return lines[0][lines[0].index("error:") :]


def test_ctrl_c_says_the_checkpoints_are_kept_and_how_to_resume(tiny_qwen, tmp_path):
    out = tmp_path / "run"
    stopped = interrupt(recipe(tmp_path / "recipe.yaml", tiny_qwen, steps=100), out, lines=3)
    assert stopped.returncode == 130 and "Traceback" not in stopped.stderr, stopped.stderr[-3000:]
    kept = TrainFolder(out).last_checkpoint()
    assert kept is not None and kept.name in ("checkpoint-2", "checkpoint-4")
    assert error_line(stopped) == (
        f"error: interrupted; the checkpoints in {out / 'checkpoints'} are kept: run the same command again to "
        f"resume from {kept.name}"
    )


@pytest.mark.slow  # two trainings and a third process: about a minute here
def test_a_run_stopped_by_ctrl_c_and_torn_ends_as_an_uninterrupted_run(tiny_qwen, tmp_path):
    from storyreasoning.settings import from_config
    from storyreasoning.train.settings import SFTSettings
    from storyreasoning.train.sft import train_sft

    config = recipe(tmp_path / "recipe.yaml", tiny_qwen, steps=6)
    whole = train_sft(from_config(SFTSettings, config, out=tmp_path / "whole"))
    stopped = interrupt(config, tmp_path / "stopped", lines=3)
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    log = tmp_path / "stopped" / "log.jsonl"
    data = log.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    log.write_bytes(
        data[: last + (len(data) - last) // 2]
    )  # a write the crash cut: half a record, no newline
    resumed = train_sft(from_config(SFTSettings, config, out=tmp_path / "stopped"))
    assert resumed.resumed_from in ("checkpoint-2", "checkpoint-4") and resumed.steps == 6

    def untimed(folder: Path) -> list[dict]:
        lines = (folder / "log.jsonl").read_text(encoding="utf-8").splitlines()
        return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]

    assert untimed(tmp_path / "stopped") == untimed(tmp_path / "whole")
    assert [r["step"] for r in untimed(tmp_path / "whole")] == [1, 2, 3, 4, 5, 6, 6]
    assert resumed.metrics["train_loss"] == pytest.approx(whole.metrics["train_loss"], abs=1e-9)
    from safetensors.torch import load_file

    a = load_file(whole.final / "adapter_model.safetensors")
    b = load_file(resumed.final / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


# -- pieces, without a model ------------------------------------------------------------------------------------


def checkpoint(folder: Path, step: int) -> Path:
    """A checkpoint as transformers writes one, small: real ``torch.save`` archives, real safetensors files."""
    from safetensors.torch import save_file

    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    save_file({"a.weight": torch.ones(4, 4), "b.weight": torch.zeros(3)}, path / "adapter_model.safetensors")
    torch.save({"state": {0: {"exp_avg": torch.ones(16)}}}, path / "optimizer.pt")
    torch.save({"python": 1, "cpu": torch.get_rng_state()}, path / "rng_state.pth")
    torch.save({"last_epoch": step}, path / "scheduler.pt")
    (path / "adapter_config.json").write_text('{"r": 4}')
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    return path


def cut(path: Path) -> None:
    """Cut ``path`` to two thirds of its length (a copy or a write stopped short)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("optimizer.pt", "optimizer.pt is cut short or damaged (no zip directory at the end of its"),
        ("rng_state.pth", "rng_state.pth is cut short or damaged (no zip directory at the end of its"),
        ("trainer_state.json", "trainer_state.json is not whole JSON"),
        ("adapter_config.json", "adapter_config.json is not whole JSON"),
        ("adapter_model.safetensors", "adapter_model.safetensors is cut short ("),
    ],
)
def test_a_damaged_checkpoint_is_named_and_the_one_before_resumed(tmp_path, name, problem):
    folder = TrainFolder(tmp_path)
    for step in (3, 6):
        checkpoint(folder.checkpoints, step)
    assert checkpoints.problem(folder.checkpoints / "checkpoint-6") == ""
    assert folder.last_checkpoint() == folder.checkpoints / "checkpoint-6"
    cut(folder.checkpoints / "checkpoint-6" / name)
    said: list[str] = []
    assert folder.last_checkpoint(said.append) == folder.checkpoints / "checkpoint-3"
    assert len(said) == 1
    assert said[0].startswith(f"warning: {folder.checkpoints / 'checkpoint-6'} is damaged: {problem}")
    assert said[0].endswith("; resuming from checkpoint-3 (it is saved again at its step)")


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("optimizer.pt", "optimizer.pt (the optimizer's state) is missing"),
        ("scheduler.pt", "scheduler.pt (the learning-rate schedule) is missing"),
        ("rng_state.pth", "rng_state.pth (the random states) is missing"),
        (
            "adapter_model.safetensors",
            "the weights (model.safetensors or adapter_model.safetensors) are missing",
        ),
    ],
)
def test_a_checkpoint_missing_a_file_a_resume_reads_is_damaged(tmp_path, name, problem):
    """transformers resumes without it in silence (no optimiser state, another schedule, other random draws)."""
    folder = TrainFolder(tmp_path)
    for step in (3, 6):
        checkpoint(folder.checkpoints, step)
    (folder.checkpoints / "checkpoint-6" / name).unlink()
    said: list[str] = []
    assert folder.last_checkpoint(said.append) == folder.checkpoints / "checkpoint-3"
    assert said == [
        f"warning: {folder.checkpoints / 'checkpoint-6'} is damaged: {problem}; resuming from checkpoint-3 (it is "
        "saved again at its step)"
    ]
    (folder.checkpoints / "checkpoint-3" / name).unlink()
    with pytest.raises(UsageError) as caught:
        folder.last_checkpoint()
    assert str(caught.value).startswith(
        f"the checkpoint {folder.checkpoints / 'checkpoint-6'} is damaged: {problem}, and the older one is not whole"
    )


def test_a_safetensors_file_must_end_where_its_header_says(tmp_path):
    path = checkpoint(tmp_path, 1) / "adapter_model.safetensors"
    whole = path.read_bytes()
    path.write_bytes(whole + b"\0")
    assert "is longer than its header says" in checkpoints.problem(path.parent)
    path.write_bytes(whole[:5])
    assert checkpoints.problem(path.parent) == "adapter_model.safetensors is cut short (5 bytes)"
    path.write_bytes((10**6).to_bytes(8, "little") + whole[8:])
    assert "its header alone says" in checkpoints.problem(path.parent)


def test_a_save_that_never_finished_is_passed_over_with_a_warning(tmp_path):
    folder = TrainFolder(tmp_path)
    checkpoint(folder.checkpoints, 3)
    (folder.checkpoints / "checkpoint-5").mkdir()
    (folder.checkpoints / "checkpoint-5" / "adapter_model.safetensors").write_bytes(b"\0" * 8)
    said: list[str] = []
    assert folder.last_checkpoint(said.append).name == "checkpoint-3"
    assert said == [
        f"warning: {folder.checkpoints / 'checkpoint-5'} is unfinished: no trainer_state.json, the run stopped "
        "while saving it; resuming from checkpoint-3 (it is saved again at its step)"
    ]
    shutil.rmtree(folder.checkpoints / "checkpoint-3")
    said.clear()
    assert folder.last_checkpoint(said.append) is None  # only an unfinished save: a fresh start, as before
    assert said and said[0].endswith("starting from the beginning (it is saved again at its step)")
    (folder.checkpoints / "checkpoint-4").mkdir()
    (folder.checkpoints / "checkpoint-4" / "trainer_state.json").write_text("[1]")
    with pytest.raises(UsageError) as caught:
        folder.last_checkpoint()
    assert str(caught.value) == (
        f"the checkpoint {folder.checkpoints / 'checkpoint-4'} is damaged: trainer_state.json does not hold a JSON "
        f"object, and there is no older one; move {folder.checkpoints} away to train from the start, "
        "or put a whole copy back"
    )


def test_the_log_is_cut_back_to_the_checkpoint(tmp_path):
    log = tmp_path / "log.jsonl"
    records = [{"step": n, "loss": 1.0 / n} for n in range(1, 6)] + [
        {"end": True, "step": 5, "train_loss": 0.5}
    ]
    text = "".join(json.dumps(r) + "\n" for r in records)
    log.write_text(text + '{"step": 6, "lo', encoding="utf-8")  # torn
    assert cut_back(log, 5) == 2  # the end record and the torn line
    assert log.read_text() == "".join(json.dumps(r) + "\n" for r in records[:5])
    assert cut_back(log, 3) == 2 and [json.loads(x)["step"] for x in log.read_text().splitlines()] == [
        1,
        2,
        3,
    ]
    assert cut_back(log, 3) == 0
    # a line an older version merged with the next (a torn record, then a whole one) is not a record
    log.write_text('{"step": 1}\n{"step": 2, "grad_norm": 0.33{"step": 2, "x": 1}\n{"step": 3}\n')
    assert cut_back(log, 3) == 1 and log.read_text() == '{"step": 1}\n{"step": 3}\n'
    assert cut_back(log, 0) == 2 and log.read_text() == ""
    assert cut_back(tmp_path / "none.jsonl", 3) == 0


def test_a_checkpoint_saved_without_the_sums_gives_its_loss_from_its_history(tmp_path):
    """A checkpoint of an older version (no ``RunTotals``): the loss of its logged steps, each record weighed by
    the steps it covers; its runtime is unknown (0), so the rates cover the steps timed."""
    from storyreasoning.train.runlog import Totals

    path = checkpoint(tmp_path, 4)
    history = [{"loss": 2.0, "step": 2}, {"eval_loss": 9.0, "step": 2}, {"loss": 1.0, "step": 4}]
    (path / "trainer_state.json").write_text(json.dumps({"global_step": 4, "log_history": history}))
    totals = Totals.of_checkpoint(path)
    assert (totals.loss_sum, totals.loss_steps, totals.runtime, totals.timed_steps) == (6.0, 4, 0.0, 0)
    saved = {"calls": 2, "loss_steps": 4, "loss_sum": 5.0, "runtime": 3.5, "timed_steps": 4}
    state = {
        "global_step": 4,
        "log_history": history,
        "stateful_callbacks": {"RunTotals": {"attributes": saved}},
    }
    (path / "trainer_state.json").write_text(json.dumps(state))
    assert Totals.of_checkpoint(path).to_dict() == {**Totals().to_dict(), **saved}
