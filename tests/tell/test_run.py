"""Batch runs: one record per story, resume after a crash, a kill or Ctrl-C, never twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from ..conftest import require_transformers
from ..data.fixtures import image_bytes, lighthouse_texts

require_transformers()

from storyreasoning.data import StorySample, load_stories, write_folders  # noqa: E402
from storyreasoning.errors import UsageError  # noqa: E402
from storyreasoning.tell import Sampling, TellError  # noqa: E402
from storyreasoning.tell.local import TransformersTeller  # noqa: E402
from storyreasoning.tell.run import RunLines, iter_lines, read_done, read_run, tell_dataset  # noqa: E402

GREEDY = Sampling(temperature=0, max_new_tokens=8)


def make_dataset(root, n: int):
    cot, story = lighthouse_texts()
    samples = [
        StorySample(
            f"st{i:03d}", [image_bytes(60 + i, 40, i), image_bytes(50, 44, i + 1, "JPEG")], cot, story
        )
        for i in range(n)
    ]
    write_folders(samples, root)
    return load_stories(root)


@pytest.fixture(scope="module")
def teller(tiny_qwen):
    return TransformersTeller(str(tiny_qwen), batch_size=2)


def ids_in(path) -> Counter:
    return Counter(json.loads(line)["story_id"] for line in path.read_text().splitlines() if line.strip())


def test_run_writes_records_and_manifest(teller, tmp_path):
    stories = make_dataset(tmp_path / "ds", 5)
    summary = tell_dataset(stories, teller, tmp_path / "run", sampling=GREEDY)
    assert (summary.done, summary.skipped, summary.failed) == (5, 0, 0)
    manifest, records = read_run(tmp_path / "run")
    assert [r["story_id"] for r in records] == stories.ids()
    record = records[0]
    assert set(record) >= {"story_id", "raw", "parse", "well_structured", "meta"}
    assert record["parse"]["story"] is None or "segments" in record["parse"]["story"]
    assert record["meta"]["usage"]["completion_tokens"] == 8
    assert manifest["teller"]["model"] == teller.model and manifest["teller"]["max_pixels"] == 28 * 28 * 16
    assert (
        manifest["sampling"]["max_new_tokens"] == 8 and manifest["finished"] == 5 and manifest["total"] == 5
    )
    assert manifest["dataset"]["source"] == str(tmp_path / "ds")
    assert "storyreasoning" in manifest["versions"] and "transformers" in manifest["versions"]
    # nothing left to do: a second run skips everything
    again = tell_dataset(stories, teller, tmp_path / "run", sampling=GREEDY)
    assert (again.done, again.skipped) == (0, 5)
    assert ids_in(tmp_path / "run" / "records.jsonl") == Counter(stories.ids())


class Interrupting:
    """A real teller that gets Ctrl-C after ``after`` stories."""

    def __init__(self, inner, after: int):
        self.inner, self.after = inner, after

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def tell_many(self, stories, **kw):
        for n, item in enumerate(self.inner.tell_many(stories, **kw)):
            if n == self.after:
                raise KeyboardInterrupt
            yield item


def test_interrupted_run_resumes_without_repeats(teller, tmp_path):
    stories = make_dataset(tmp_path / "ds", 7)
    with pytest.raises(KeyboardInterrupt):
        tell_dataset(stories, Interrupting(teller, 3), tmp_path / "run", sampling=GREEDY)
    assert len(read_done(tmp_path / "run" / "records.jsonl")) == 3
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["finished"] == 3
    # a crash mid-write leaves half a line: it is cut off, and that story told again
    with (tmp_path / "run" / "records.jsonl").open("a") as f:
        f.write('{"story_id": "st005", "raw": "half a reco')
    summary = tell_dataset(stories, teller, tmp_path / "run", sampling=GREEDY)
    assert (summary.skipped, summary.done) == (3, 4)
    assert ids_in(tmp_path / "run" / "records.jsonl") == Counter(stories.ids())
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["finished"] == 7


def test_other_options_are_not_mixed_into_a_run(teller, tmp_path):
    stories = make_dataset(tmp_path / "ds", 2)
    tell_dataset(stories, teller, tmp_path / "run", sampling=GREEDY)
    with pytest.raises(UsageError, match="another sampling"):
        tell_dataset(stories, teller, tmp_path / "run", sampling=Sampling(temperature=0, max_new_tokens=9))


class Named:
    """``teller`` described as a model given as ``model`` (a path as typed)."""

    def __init__(self, teller, model: str) -> None:
        self.teller, self.model, self.backend = teller, model, teller.backend

    def describe(self):
        return {**self.teller.describe(), "model": self.model}

    def tell_many(self, stories, **kw):
        return self.teller.tell_many(stories, **kw)


def test_a_local_model_is_known_by_where_it_is_not_as_typed(teller, tmp_path, monkeypatch):
    """``--model ./m`` then ``--model m`` was refused as another teller; another folder's ``m`` is one."""
    stories = make_dataset(tmp_path / "ds", 3)
    for where in ("a", "b"):
        (tmp_path / where / "m").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a")
    tell_dataset(stories, Named(teller, "./m"), tmp_path / "run", sampling=GREEDY, limit=1)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["teller"]["model"] == "./m" and manifest["teller"]["model_path"] == str(
        tmp_path / "a" / "m"
    )
    assert tell_dataset(stories, Named(teller, "m"), tmp_path / "run", sampling=GREEDY, limit=2).done == 1
    monkeypatch.chdir(tmp_path / "b")
    with pytest.raises(UsageError, match=r"another teller \(model '[^']*/a/m' then, '[^']*/b/m' now\)"):
        tell_dataset(stories, Named(teller, "m"), tmp_path / "run", sampling=GREEDY)


class Failing:
    backend, model = "failing", "none"
    last_usage = None

    def describe(self):
        return {"backend": self.backend, "model": self.model}

    def tell_many(self, stories, **kw):
        for story in stories:
            yield story, TellError("server went away", partial="<think>\n## Image 1")


def test_failures_are_kept_apart_and_retried(teller, tmp_path):
    stories = make_dataset(tmp_path / "ds", 3)
    summary = tell_dataset(stories, Failing(), tmp_path / "run", sampling=GREEDY)
    assert summary.failed == 3 and summary.done == 0
    errors = [json.loads(line) for line in (tmp_path / "run" / "errors.jsonl").read_text().splitlines()]
    assert errors[0]["partial"] == "<think>\n## Image 1" and "server went away" in errors[0]["error"]
    assert not (tmp_path / "run" / "records.jsonl").exists()


@pytest.mark.slow  # heavy end-to-end run: CI runs it in its slow pass
def test_killed_process_resumes_with_each_story_once(tiny_qwen, tmp_path):
    make_dataset(tmp_path / "ds", 30)
    command = [
        sys.executable,
        "-m",
        "storyreasoning",
        "tell-dataset",
        str(tmp_path / "ds"),
        "--out",
        str(tmp_path / "run"),
        "--model",
        str(tiny_qwen),
        "--temperature",
        "0",
        "--max-new-tokens",
        "24",
        "--batch-size",
        "1",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    records = tmp_path / "run" / "records.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if records.exists() and len(records.read_bytes().splitlines()) >= 4:
            os.killpg(process.pid, signal.SIGKILL)  # no clean-up, no flush: a hard crash
            break
        time.sleep(0.02)
    process.wait(timeout=30)
    killed_at = len(read_done(records))
    assert 0 < killed_at < 30, "the run finished before it could be killed; make it longer"
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert f"{killed_at} already done" in finished.stdout
    counts = ids_in(records)
    assert len(counts) == 30 and set(counts.values()) == {1}


def test_a_story_whose_images_the_processor_refuses_fails_alone_in_its_batch(teller, tmp_path):
    """A frame of 300:1 (the Qwen processor takes at most 200:1) fails its own story, not its batch-mates:
    else they would fail again on every resume, batched with it again."""
    cot, story = lighthouse_texts()
    samples = [
        StorySample(f"st{i}", [image_bytes(60, 40, i), image_bytes(3000 if i == 1 else 50, 10 if i == 1 else 44, i)],
                    cot, story)
        for i in range(4)
    ]  # fmt: skip
    write_folders(samples, tmp_path / "ds")
    summary = tell_dataset(load_stories(tmp_path / "ds"), teller, tmp_path / "run", sampling=GREEDY)
    assert (summary.done, summary.failed) == (3, 1)  # batches of 2: st1's batch-mate st0 is told
    (error,) = [json.loads(line) for line in (tmp_path / "run" / "errors.jsonl").read_text().splitlines()]
    assert (
        error["story_id"] == "st1" and "the model's processor could not take these images" in error["error"]
    )
    assert "aspect ratio" in error["error"]


# a line of each kind the run reader meets: whole, blank, not JSON, no raw text, whole, repeated, torn
DAMAGED = [
    b'{"story_id": "a", "raw": "x"}\n',
    b"\n",
    b"not json\n",
    b'{"story_id": "b"}\n',
    b'{"story_id": "c", "raw": "y"}\n',
    b'{"story_id": "a", "raw": "again"}\n',
    b'{"story_id": "d", "raw": "hal',
]


def test_the_run_reader_streams_a_damaged_file_one_entry_at_a_time(tmp_path):
    """``iter_lines`` gives each entry as soon as its line is in (a run of many stories is never held
    whole): read from a pipe, the first entry comes while the rest is still unwritten."""
    path = tmp_path / "records.jsonl"
    os.mkfifo(path)
    first_taken, waited = threading.Event(), []

    def writer():
        with path.open("wb") as f:
            f.write(DAMAGED[0])
            f.flush()
            waited.append(first_taken.wait(60))  # a reader of the whole file waits for its end: False
            f.writelines(DAMAGED[1:])

    thread = threading.Thread(target=writer)
    thread.start()
    found = RunLines(path)
    entries = iter_lines(path, "record", found)
    first = next(entries)
    first_taken.set()
    rest = list(entries)
    thread.join()
    assert waited == [True], "the first entry came only once the whole file was written"
    assert first == (1, {"story_id": "a", "raw": "x"}, DAMAGED[0][:-1])
    assert [(number, item["raw"]) for number, item, _ in rest] == [(5, "y"), (6, "again")]
    assert [(d.line, d.problem, d.text) for d in found.damaged] == [
        (3, "not JSON (Expecting value: column 1)", "not json"),
        (4, "a record without its raw output", '{"story_id": "b"}'),
    ]
    assert found.torn and not found.unterminated and found.end == len(b"".join(DAMAGED[:-1]))


@pytest.mark.parametrize("last", [DAMAGED[-1], b'{"story_id": "d", "raw": "z"}'])
def test_a_resume_repairs_damaged_repeated_and_torn_lines_in_one_pass(tmp_path, last):
    path = tmp_path / "records.jsonl"
    path.write_bytes(b"".join(DAMAGED[:-1]) + last)
    said: list[str] = []
    whole = last.endswith(b"}")
    assert read_done(path, said.append) == ({"a", "c", "d"} if whole else {"a", "c"})
    # what is left: the first line of each story, a whole last record ended by its newline
    assert path.read_bytes() == DAMAGED[0] + DAMAGED[4] + (last + b"\n" if whole else b"")
    aside = [json.loads(line) for line in (tmp_path / "records.corrupt.jsonl").read_text().splitlines()]
    assert [(a["line"], a["text"]) for a in aside] == [(3, "not json"), (4, '{"story_id": "b"}')]
    assert len(said) == 3 and "line 3 is not JSON" in said[0] and "line 4 is a record without" in said[1]
    assert said[2] == (
        f"{path} held 1 more lines of stories it already had (two jobs wrote to it at once); "
        f"kept the first line of each of its {3 if whole else 2} stories and dropped the 1 others"
    )
    assert not list(tmp_path.glob(".*.tmp"))  # the streamed rewrite left no temporary file
    before = path.stat()
    assert read_done(path, said.append) == ({"a", "c", "d"} if whole else {"a", "c"})
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # whole: not rewritten
