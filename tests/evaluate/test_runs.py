"""The run reader under ``evaluate``: a damaged line is reported with its number and counted as
missing, never taking the stories after it along."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from contextlib import ExitStack

import pytest

from storyreasoning.data import SampleList, load_stories, write_parquet
from storyreasoning.errors import UsageError
from storyreasoning.evaluate.commands import build_jobs
from storyreasoning.evaluate.runs import load_outputs
from storyreasoning.evaluate.scoring import Pool, score_jobs
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


# -- the texts are read when each story is scored, never all held at once ----------------------


@pytest.fixture()
def texts_run(tmp_path):
    """A dataset of three stories and a folder of their ``{story_id}.txt`` outputs (the references)."""
    samples = fixture_samples(3)
    write_parquet(SampleList(samples), tmp_path / "data", split="test")
    texts = tmp_path / "texts"
    texts.mkdir()
    for sample in samples:
        (texts / f"{sample.story_id}.txt").write_text(sample.output_text(), encoding="utf-8")
    return texts


def test_a_text_is_read_when_its_story_is_scored_not_when_the_run_is_loaded(texts_run):
    run = load_outputs(texts_run)
    changed = (texts_run / "s01.txt").read_text(encoding="utf-8").replace("Ines", "Sara")
    (texts_run / "s01.txt").write_text(changed, encoding="utf-8")
    jobs, total, _ = build_jobs(run, load_stories(texts_run.parent / "data", "test"))
    pairs = [job.pair() for job in jobs]
    assert total == 3 and pairs[1].candidate.raw == changed and "Ines" in pairs[0].candidate.raw
    assert run.outputs["s01"] == changed and sorted(run.outputs) == ["s00", "s01", "s02"]


def test_a_loaded_run_holds_none_of_its_texts(tmp_path):
    texts = tmp_path / "texts"
    texts.mkdir()
    for i in range(20):
        (texts / f"s{i:02d}.txt").write_text(f"story {i} " + "x" * 100_000, encoding="utf-8")
    tracemalloc.start()
    try:
        run = load_outputs(texts)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(run.outputs) == 20 and held < 200_000  # the texts: 2 MB
    assert run.outputs["s07"].startswith("story 7 x")


def test_a_record_is_read_at_its_line_when_its_story_is_scored(damaged_run, caplog):
    """Past a damaged line, and in a last line without its newline, each story's record is read
    where it was found (a rewritten record of the same size: the text read follows it)."""
    records = damaged_run / "records.jsonl"
    records.write_bytes(records.read_bytes().rstrip(b"\n"))
    with caplog.at_level("WARNING", logger="storyreasoning.run"):
        run = load_outputs(damaged_run)
    assert sorted(run.outputs) == ["s00", "s02", "s03"] and run.damaged[0].startswith("records.jsonl line 2")
    records.write_bytes(records.read_bytes().replace(b"Ines", b"Sara"))
    for story_id in run.outputs:
        assert "Sara" in run.outputs[story_id] and "Ines" not in run.outputs[story_id]


def test_a_record_moved_after_loading_is_named_with_its_line(damaged_run, caplog):
    with caplog.at_level("WARNING", logger="storyreasoning.run"):
        run = load_outputs(damaged_run)
    records = damaged_run / "records.jsonl"
    records.write_bytes(b"\n" + records.read_bytes())  # every line one byte further on
    with pytest.raises(UsageError) as caught:
        run.outputs["s03"]
    message = str(caught.value)
    assert str(records) in message and "line 4" in message and "evaluate again" in message
    assert "\n" not in message


@pytest.mark.parametrize("workers", [1, 2])
def test_a_text_gone_after_loading_ends_in_one_line_naming_it(texts_run, workers):
    """Found only when its story is scored, in a worker process or here: one line, the file named."""
    run = load_outputs(texts_run)
    (texts_run / "s01.txt").unlink()
    jobs, _, _ = build_jobs(run, load_stories(texts_run.parent / "data", "test"))
    with ExitStack() as stack:
        pool = stack.enter_context(Pool(workers)) if workers > 1 else None
        with pytest.raises(UsageError) as caught:
            score_jobs(jobs, ["consistency"], pool=pool)
    assert str(caught.value) == (
        f"cannot read {texts_run / 's01.txt'}: No such file or directory (it was there when the run was loaded); "
        "evaluate again once the run's files stay in place"
    )


def test_a_folder_named_like_an_output_is_refused_when_the_run_is_loaded(texts_run):
    (texts_run / "s03.txt").mkdir()
    with pytest.raises(UsageError, match=r"cannot read .*s03\.txt: Is a directory$"):
        load_outputs(texts_run)


def test_a_text_that_is_not_utf8_is_read_with_its_bad_bytes_replaced(texts_run):
    (texts_run / "s01.txt").write_bytes(b"a story \xff told")
    run = load_outputs(texts_run)
    assert run.outputs["s01"] == "a story \ufffd told"
