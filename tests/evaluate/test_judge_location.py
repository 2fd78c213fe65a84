"""``RUN/judge-location.json`` (written by ``evaluate judge RUN --out ELSEWHERE``) in a run folder that
came from elsewhere: followed only to a folder the judge wrote, and only its ``summary.json`` read,
bounded; anything else is one line naming the pointer and the fix."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from storyreasoning.errors import UsageError
from storyreasoning.evaluate.judge import record_location
from storyreasoning.evaluate.report import (
    MAX_POINTER_BYTES,
    MAX_SUMMARY_BYTES,
    judge_summary_path,
    read_judge_summary,
)

SUMMARY = {"judge": {"model": "m"}, "stories": 1, "judged": 1, "scores": {"creativity": {"mean": 3.0}}}


def judge_folder(folder: Path, *, settings: bool = True) -> Path:
    """A folder as ``evaluate judge --out`` leaves it: settings.json, judgements.jsonl, summary.json."""
    folder.mkdir(parents=True)
    if settings:
        (folder / "settings.json").write_text(json.dumps({"run": "/x/run", "endpoint": "http://h"}))
    (folder / "judgements.jsonl").write_text("")
    (folder / "summary.json").write_text(json.dumps(SUMMARY))
    return folder


def run_folder(path: Path, pointer: object | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "manifest.json").write_text("{}")
    if pointer is not None:
        text = pointer if isinstance(pointer, str) else json.dumps(pointer)
        (path / "judge-location.json").write_text(text)
    return path


def refused(run: Path) -> str:
    with pytest.raises(UsageError) as caught:
        judge_summary_path(run)
    message = str(caught.value)
    assert "\n" not in message and str(run / "judge-location.json") in message
    return message


def test_the_judge_written_elsewhere_is_found_and_read(tmp_path):
    out = judge_folder(tmp_path / "judges" / "a")
    run = run_folder(tmp_path / "run")
    assert judge_summary_path(run) == run / "judge" / "summary.json"  # no pointer: the run's own
    assert record_location(run, out) is None  # as evaluate judge --out writes it
    assert judge_summary_path(run) == out.resolve() / "summary.json"
    assert read_judge_summary(judge_summary_path(run)) == SUMMARY


def test_a_pointer_to_a_folder_the_judge_did_not_write_is_refused(tmp_path):
    """A downloaded run cannot point evaluate or the studio at any folder holding a summary.json."""
    other = judge_folder(tmp_path / "someone-elses", settings=False)  # another tool's summary.json
    message = refused(run_folder(tmp_path / "r1", {"out": str(other)}))
    assert f"names {other}, which is not a folder evaluate judge wrote" in message
    assert "so it is not read" in message and "--out FOLDER again, or delete" in message
    # a run folder (evaluate judge never writes into one: check_out) is no judge's folder either
    for name in ("manifest.json", "records.jsonl"):
        runlike = judge_folder(tmp_path / f"run-with-{name}")
        (runlike / name).write_text("")
        pointing = run_folder(tmp_path / f"r-{name}", {"out": str(runlike)})
        assert "which is not a folder evaluate judge wrote" in refused(pointing)


@pytest.mark.parametrize(
    "pointer",
    [
        {"out": "judges/a"},  # relative: the judge writes its resolved path; from here it would be anywhere
        {"out": "/tmp/x\0y"},
        {"out": 3},
        "not json",
        "[]",
        json.dumps({"out": "/" + "x" * MAX_POINTER_BYTES}),  # larger than any path: not read whole
    ],
)
def test_a_pointer_evaluate_judge_did_not_write_is_refused(tmp_path, monkeypatch, pointer):
    judge_folder(tmp_path / "judges" / "a")
    monkeypatch.chdir(tmp_path)  # where a relative path would lead
    message = refused(run_folder(tmp_path / "run", pointer))
    assert "cannot be read" in message or "not a folder evaluate judge wrote (an absolute path)" in message


def test_a_pointer_to_nothing_still_says_so(tmp_path):
    message = refused(run_folder(tmp_path / "run", {"out": str(tmp_path / "gone")}))
    assert f"says the run was judged into {tmp_path / 'gone'}, which holds no summary.json" in message


def test_a_summary_is_read_bounded_and_never_from_a_fifo(tmp_path):
    out = judge_folder(tmp_path / "judge")
    big = out / "summary.json"
    with big.open("r+b") as f:  # sparse: 64 MiB that a whole read would take in
        f.truncate(64 << 20)
    with pytest.raises(UsageError, match=r"larger than 1 MiB, so it is no judge summary and is not read"):
        read_judge_summary(big)
    big.write_text(json.dumps(SUMMARY) + " " * (MAX_SUMMARY_BYTES - 200))  # under the bound: read
    assert read_judge_summary(big) == SUMMARY
    os.mkfifo(tmp_path / "fifo.json")  # opened without a writer: read, it would wait forever
    with pytest.raises(UsageError, match=r"fifo\.json cannot be read \(not a regular file\)"):
        read_judge_summary(tmp_path / "fifo.json")
    for text, reason in (("{oops", "Expecting property name"), ("[1]", "holds no JSON object")):
        big.write_text(text)
        with pytest.raises(UsageError, match=reason):
            read_judge_summary(big)
    big.write_bytes(b"\xff{}")
    with pytest.raises(UsageError, match="not UTF-8"):
        read_judge_summary(big)
