"""The run reader under ``evaluate``: a damaged line is reported with its number and counted as
missing, never taking the stories after it along."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from storyreasoning.data import SampleList, load_stories, write_parquet
from storyreasoning.evaluate.runs import load_outputs
from storyreasoning.tell.base import Teller
from storyreasoning.tell.run import tell_dataset

from ..data.fixtures import fixture_samples

pytest.importorskip("datasets", reason="needs the datasets library: pip install 'storyreasoning[data]'")


class Replay(Teller):
    """A teller that answers every story with one prepared output."""

    backend = "replay"
    model = "replay-model"

    def __init__(self, text: str):
        self.text = text

    def stream(self, images, *, prompt=None, sampling=None):
        yield self.text


@pytest.fixture()
def damaged_run(tmp_path):
    """A run of four stories whose second record line is cut short (a disk or an editor damaged it)."""
    samples = fixture_samples(4)
    write_parquet(SampleList(samples), tmp_path / "data", split="test")
    run = tmp_path / "run"
    tell_dataset(load_stories(tmp_path / "data", "test"), Replay(samples[0].output_text()), run)
    lines = (run / "records.jsonl").read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1][:40]
    (run / "records.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return run


def test_a_damaged_line_is_named_and_the_stories_after_it_are_read(damaged_run, caplog):
    with caplog.at_level("WARNING", logger="storyreasoning.run"):
        run = load_outputs(damaged_run)
    assert sorted(run.outputs) == ["s00", "s02", "s03"]
    assert len(run.damaged) == 1 and run.damaged[0].startswith("records.jsonl line 2: not JSON (")
    assert run.describe()["damaged_lines"] == run.damaged
    assert "records.jsonl line 2 is not JSON" in caplog.text


def test_evaluate_scores_the_stories_after_a_damaged_line_and_says_which_line(damaged_run):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "storyreasoning",
            "evaluate",
            str(damaged_run),
            "--metrics",
            "grounding",
            "--no-plots",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert f"{damaged_run / 'records.jsonl'} line 2 is not JSON" in result.stderr
    assert "Traceback" not in result.stderr
    metrics = json.loads((damaged_run / "eval" / "metrics.json").read_text())
    assert metrics["dataset"]["missing"] == 1  # only the damaged story, not every story after it


def test_a_story_written_twice_is_read_once_and_a_failure_without_a_record_counts(damaged_run, caplog):
    """``evaluate`` keeps only each story's first raw text (read a line at a time) and the failures of
    the stories without one."""
    first = json.loads((damaged_run / "records.jsonl").read_text(encoding="utf-8").splitlines()[0])
    with (damaged_run / "records.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps({**first, "raw": "a second telling"}) + "\n")
    with (damaged_run / "errors.jsonl").open("w", encoding="utf-8") as f:
        for story_id in ("s00", "s01"):
            f.write(json.dumps({"story_id": story_id, "error": "server went away"}) + "\n")
    with caplog.at_level("WARNING", logger="storyreasoning.run"):
        run = load_outputs(damaged_run)
    assert sorted(run.outputs) == ["s00", "s02", "s03"] and run.outputs["s00"] == first["raw"]
    assert run.failed == {"s01": "server went away"}
    assert "records.jsonl holds 1 more lines of stories it already has" in caplog.text
