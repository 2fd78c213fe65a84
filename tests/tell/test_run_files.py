"""Run folders under damage and a failing server: one reader and one rule for damaged lines,
``errors.jsonl`` kept to the failures still unresolved, an early stop when the endpoint is down.

Every run here is told by the real OpenAI-compatible teller against a server on loopback.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter

import pytest

from storyreasoning.data import load_stories, write_folders
from storyreasoning.errors import UsageError
from storyreasoning.tell import Sampling
from storyreasoning.tell.openai import OpenAITeller
from storyreasoning.tell.run import (
    ERRORS,
    RECORDS,
    EndpointDown,
    load_run,
    read_done,
    read_lines,
    read_run,
    tell_dataset,
)

from ..conftest import one_error_line, run_cli
from ..data.fixtures import fixture_samples
from .servers import LIGHTHOUSE, FakeServer, closed_url, held_elsewhere

GREEDY = Sampling(temperature=0, max_new_tokens=16)
FAST = {"retries": 0, "backoff": 0.0}


@pytest.fixture(scope="module")
def stories(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset")
    write_folders(fixture_samples(6), root)
    return load_stories(root)


def told(stories, out, *, say=None, **server) -> object:
    with FakeServer(**server) as fake, OpenAITeller(fake.url, concurrency=1, **FAST) as teller:
        kwargs = {"say": say} if say is not None else {}
        return tell_dataset(stories, teller, out, sampling=GREEDY, **kwargs)


def ids_in(path) -> Counter:
    return Counter(json.loads(line)["story_id"] for line in path.read_text().splitlines() if line.strip())


def damage(path, number: int, text: str) -> str:
    """Replace line ``number`` (1-based) of ``path`` with ``text``; return the story id it held."""
    lines = path.read_text(encoding="utf-8").splitlines()
    story_id = json.loads(lines[number - 1])["story_id"]
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return story_id


# -- damaged lines ------------------------------------------------------------------------------


def test_a_resume_sets_a_corrupt_line_aside_and_tells_its_story_again(stories, tmp_path):
    run = tmp_path / "run"
    told(stories, run)
    lost = damage(run / RECORDS, 2, '{"story_id": "s01", "raw": "cut sho')
    no_raw = damage(run / RECORDS, 4, json.dumps({"story_id": "s03"}))
    heard: list[str] = []
    summary = told(stories, run, say=heard.append)
    assert (summary.done, summary.skipped) == (2, 4)
    assert ids_in(run / RECORDS) == Counter(stories.ids())  # every story once, the two told again
    assert all(r["raw"] == LIGHTHOUSE for r in read_run(run)[1])
    assert len(heard) == 2 and "line 2 is not JSON" in heard[0] and "line 4 is a record without" in heard[1]
    assert all("records.corrupt.jsonl" in line and "told again" in line for line in heard)
    aside = [json.loads(line) for line in (run / "records.corrupt.jsonl").read_text().splitlines()]
    assert [(a["line"], a["text"]) for a in aside] == [
        (2, '{"story_id": "s01", "raw": "cut sho'),
        (4, json.dumps({"story_id": "s03"})),
    ]
    assert {lost, no_raw} == {"s01", "s03"}
    assert not list(run.glob(".*.tmp"))  # the rewrite left no temporary file


def test_readers_skip_a_corrupt_line_with_its_number_and_read_every_other(stories, tmp_path, caplog):
    run = tmp_path / "run"
    told(stories, run)
    damage(run / RECORDS, 3, "\x00\x00garbage")
    before = (run / RECORDS).read_bytes()
    with caplog.at_level(logging.WARNING, logger="storyreasoning.run"):
        _, records = read_run(run)
    # the stories after the damaged line are read (they were all lost before)
    assert [r["story_id"] for r in records] == ["s00", "s01", "s03", "s04", "s05"]
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert f"{run / RECORDS} line 3 is not JSON" in message and "tell-dataset" in message
    assert (run / RECORDS).read_bytes() == before  # a reader never changes the run
    found = load_run(run, say=None)
    assert [(d.line, d.text) for d in found.damaged] == [(3, "\x00\x00garbage")]


def test_a_torn_last_line_is_passed_over_by_readers_and_cut_by_a_resume(stories, tmp_path, caplog):
    run = tmp_path / "run"
    told(stories, run)
    with (run / RECORDS).open("a") as f:
        f.write('{"story_id": "s09", "raw": "half a rec')
    with caplog.at_level(logging.WARNING, logger="storyreasoning.run"):
        assert len(read_run(run)[1]) == 6
        assert len(read_done(run / RECORDS)) == 6
    assert not caplog.records  # a crash mid-write is not damage
    assert (run / RECORDS).read_bytes().endswith(b"}\n")


def test_a_whole_last_record_without_its_newline_is_kept(tmp_path):
    path = tmp_path / RECORDS
    path.write_text('{"story_id": "a", "raw": "x"}\n{"story_id": "b", "raw": "y"}', encoding="utf-8")
    assert [r["story_id"] for r in read_lines(path).items] == ["a", "b"]
    assert read_done(path) == {"a", "b"}
    assert path.read_text(encoding="utf-8").endswith('"y"}\n')  # ended, so the next record starts a line


def test_a_damaged_manifest_is_one_clear_error(stories, tmp_path):
    run = tmp_path / "run"
    told(stories, run)
    (run / "manifest.json").write_text('{"teller": ', encoding="utf-8")
    with pytest.raises(UsageError, match=r"manifest\.json is damaged"):
        read_run(run)
    with pytest.raises(UsageError, match=r"manifest\.json is damaged"):
        told(stories, run)


# -- errors.jsonl: only the failures still unresolved -------------------------------------------


def test_errors_keep_only_the_failures_still_unresolved(stories, tmp_path):
    run = tmp_path / "run"
    # the first two stories break mid-stream, the others are told
    first = told(stories, run, behaviour="drop", drop_after=1, fail=2)
    assert (first.done, first.failed) == (4, 2)
    assert len(read_lines(run / ERRORS, "error").items) == 2
    # a server that rejects every story: the failures are kept, each story's latest once
    again = told(stories, run, behaviour="status", status=400, error_body={"error": {"message": "no"}})
    assert (again.done, again.failed) == (0, 2)
    errors = read_lines(run / ERRORS, "error").items
    assert sorted(e["story_id"] for e in errors) == ["s00", "s01"] and all(
        "HTTP 400" in e["error"] for e in errors
    )
    assert load_run(run).failures.keys() == {"s00", "s01"}
    # told at last: nothing is left unresolved
    last = told(stories, run)
    assert (last.done, last.failed, last.skipped) == (2, 0, 4)
    assert not (run / ERRORS).exists()
    assert ids_in(run / RECORDS) == Counter(stories.ids())


# -- an endpoint that is down -------------------------------------------------------------------


def test_a_dead_endpoint_stops_the_run_before_the_first_story(stories, tmp_path):
    start = time.perf_counter()
    with OpenAITeller(closed_url(), model="m", **FAST) as teller, pytest.raises(EndpointDown) as info:
        tell_dataset(stories, teller, tmp_path / "run", sampling=GREEDY)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert (
        "no server at" in message
        and "nothing was told" in message
        and "run the same command again" in message
    )
    assert not (tmp_path / "run").exists()  # nothing made for a run that could not start


def test_a_hanging_endpoint_stops_the_run_after_a_few_stories(stories, tmp_path):
    run = tmp_path / "run"
    with (
        FakeServer("slow", delay=30) as server,
        OpenAITeller(server.url, timeout=0.3, concurrency=1, **FAST) as teller,
    ):
        start = time.perf_counter()
        with pytest.raises(EndpointDown) as info:
            tell_dataset(stories, teller, run, sampling=GREEDY)
        took = time.perf_counter() - start
        asked = len(server.chat_requests())
    assert asked == 3 and took < 5  # three stories tried, not six
    message = str(info.value)
    assert "stopped after 3 stories in a row failed at the endpoint" in message
    assert "sent nothing for 0.3 seconds" in message and "run the same command again" in message
    assert len(read_lines(run / ERRORS, "error").items) == 3
    # the server is back: the same call finishes the run
    summary = told(stories, run)
    assert (summary.done, summary.failed) == (6, 0) and not (run / ERRORS).exists()


@pytest.mark.parametrize("status", [501, 507, 405])
def test_a_server_answering_any_5xx_stops_the_run_after_a_few_stories(stories, tmp_path, status):
    """Not only the retried 500, 502, 503 and 504: a server that answers 501 or 405 (it takes no POST) fails
    every story the same way, so the run stops as the README says of 5xx, instead of failing all of them."""
    with pytest.raises(EndpointDown, match=rf"stopped after 3 stories in a row failed .*HTTP {status}"):
        told(stories, tmp_path / "run", behaviour="status", status=status)
    assert len(read_lines(tmp_path / "run" / ERRORS, "error").items) == 3


def test_failures_of_the_stories_themselves_do_not_stop_a_run(stories, tmp_path):
    body = {"error": {"message": "At most 1 image(s) may be provided in one request."}}
    summary = told(stories, tmp_path / "run", behaviour="status", status=400, error_body=body)
    assert (summary.done, summary.failed) == (0, 6)  # every story tried: another may have fewer images


def test_a_run_folder_that_is_a_file_is_refused_before_any_story(stories, tmp_path):
    out = tmp_path / "run"
    out.write_text("not a folder")
    with FakeServer() as server, OpenAITeller(server.url, **FAST) as teller:
        with pytest.raises(UsageError, match="is a file"):
            tell_dataset(stories, teller, out, sampling=GREEDY)
        assert not server.chat_requests()
    assert out.read_text() == "not a folder"


# -- the same dataset, one writer, each story once ------------------------------------------------


def test_a_run_knows_its_dataset_by_its_path_and_content_not_as_typed(tmp_path, monkeypatch):
    import dataclasses

    write_folders(fixture_samples(3), tmp_path / "ds")
    strangers = [dataclasses.replace(s, story_id=f"B{k}") for k, s in enumerate(fixture_samples(3))]
    write_folders(strangers, tmp_path / "elsewhere" / "ds")  # another dataset, the same name
    run = tmp_path / "run"
    monkeypatch.chdir(tmp_path)
    told(load_stories("ds"), run)
    dataset = read_run(run)[0]["dataset"]
    assert dataset["source"] == "ds" and dataset["path"] == str((tmp_path / "ds").resolve())
    assert dataset["fingerprint"]["stories"] == 3
    # the same dataset typed otherwise resumes the run
    for typed in ("./ds", str(tmp_path / "ds")):
        assert told(load_stories(typed), run).skipped == 3
    # another dataset of the same name is refused, both paths named
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(UsageError) as refused:
        told(load_stories("ds"), run)
    # (a dataset moved with its content is the same one: it is the content that refuses it)
    assert (
        f"another dataset (path {tmp_path / 'ds'} then, {tmp_path / 'elsewhere' / 'ds'} now; content"
        in str(refused.value)
    )
    # in the same place but with other stories in it: refused by its content
    (tmp_path / "ds").rename(tmp_path / "ds-before")
    (tmp_path / "elsewhere" / "ds").rename(tmp_path / "ds")
    with pytest.raises(
        UsageError, match=r"another dataset \(content ids_sha256 '[0-9a-f]{12}…' then, '[0-9a-f]{12}…' now\)"
    ):
        told(load_stories(tmp_path / "ds"), run)
    assert ids_in(run / RECORDS) == Counter({"s00": 1, "s01": 1, "s02": 1})  # nothing mixed in


def test_a_manifest_of_an_older_version_is_still_resumed_by_what_it_recorded(tmp_path, monkeypatch):
    import dataclasses

    write_folders(fixture_samples(3), tmp_path / "ds")
    run = tmp_path / "run"
    monkeypatch.chdir(tmp_path)
    told(load_stories("ds"), run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["dataset"] = {"source": "ds", "split": None}  # all an older version recorded
    (run / "manifest.json").write_text(json.dumps(manifest))
    # another dataset that the recorded source names from another folder: its stories are not the run's
    (tmp_path / "elsewhere").mkdir()
    strangers = [dataclasses.replace(s, story_id=f"B{k}") for k, s in enumerate(fixture_samples(3))]
    write_folders(strangers, tmp_path / "elsewhere" / "ds")
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(UsageError, match=r"another dataset \(content: 3 stories of the run are not in"):
        told(load_stories("ds"), run)
    monkeypatch.chdir(tmp_path)
    assert told(load_stories(str(tmp_path / "ds")), run).skipped == 3
    assert read_run(run)[0]["dataset"]["path"] == str((tmp_path / "ds").resolve())  # recorded from now on


def test_a_servers_model_is_a_name_not_a_folder_of_where_the_run_started(stories, tmp_path, monkeypatch):
    """The model a server lists (``vllm serve ./m`` lists ``./m``) was resolved against the client's folder
    when one there had its name, so the same run against the same server was refused from anywhere else."""
    (tmp_path / "a" / "m").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    run = tmp_path / "run"
    monkeypatch.chdir(tmp_path / "a")
    with FakeServer(models=("m",)) as fake:
        with OpenAITeller(fake.url, concurrency=1, **FAST) as teller:
            tell_dataset(stories, teller, run, sampling=GREEDY, limit=2)
        teller_record = read_run(run)[0]["teller"]
        assert teller_record["model"] == "m" and "model_path" not in teller_record
        monkeypatch.chdir(tmp_path / "b")  # where no m is: the same server, the same run
        with OpenAITeller(fake.url, concurrency=1, **FAST) as teller:
            assert tell_dataset(stories, teller, run, sampling=GREEDY, limit=4).skipped == 2
        # a run recorded by a version that resolved it is resumed as well
        manifest = json.loads((run / "manifest.json").read_text())
        manifest["teller"]["model_path"] = str(tmp_path / "a" / "m")
        (run / "manifest.json").write_text(json.dumps(manifest))
        with OpenAITeller(fake.url, concurrency=1, **FAST) as teller:
            assert tell_dataset(stories, teller, run, sampling=GREEDY).skipped == 4
    assert ids_in(run / RECORDS) == Counter(stories.ids())


def test_a_run_that_told_nothing_is_begun_again_with_corrected_options(stories, tmp_path):
    """Every story failed (``--min-pixels`` on ``transformers serve``, a mistyped ``--served-model``): the run
    then refused the corrected command as "a run with another teller", though it held nothing to mix with."""
    run, said = tmp_path / "run", []

    def refuse(body: dict) -> dict | None:  # what transformers serve answers a pixel budget
        if "mm_processor_kwargs" in body:
            return {"error": "Unexpected fields in the request: {'mm_processor_kwargs'}"}
        return None

    with FakeServer(refuse=refuse) as fake:
        with OpenAITeller(fake.url, concurrency=1, min_pixels=3136, **FAST) as teller:
            with pytest.raises(EndpointDown):
                tell_dataset(stories, teller, run, sampling=GREEDY)
        assert not (run / RECORDS).exists() and len(read_lines(run / ERRORS, "error").entries) == 3
        with OpenAITeller(fake.url, concurrency=1, **FAST) as teller:
            summary = tell_dataset(stories, teller, run, sampling=GREEDY, limit=2, say=said.append)
        assert (summary.done, summary.failed) == (2, 0)
        assert said == [
            f"{run} held no story told, with another teller (min_pixels 3136 then, unset now); its 3 failures "
            "are dropped; begun again with these"
        ]
        assert not (run / ERRORS).exists()  # the failures of the options given up are not this run's
        assert "min_pixels" not in read_run(run)[0]["teller"]
        # once a story is told, the run is bound to its options again
        with OpenAITeller(fake.url, concurrency=1, min_pixels=3136, **FAST) as teller:
            with pytest.raises(UsageError, match=r"holds a run with another teller \(min_pixels unset then"):
                tell_dataset(stories, teller, run, sampling=GREEDY)


def test_a_second_run_into_a_folder_at_work_is_refused_in_one_line(stories, tmp_path):
    run = tmp_path / "run"
    with held_elsewhere(run) as holder:
        result = run_cli("tell-dataset", stories.source, "--out", str(run), "--teller", "baseline")
        line = one_error_line(result)
        assert line == (
            f"error: another storyreasoning process (pid {holder.pid}) is writing to {run}; "
            "wait for it or choose another --out"
        )
        assert sorted(p.name for p in run.iterdir()) == [".storyreasoning.lock"]  # nothing written
    told(stories, run)  # let go: the run goes ahead
    assert ids_in(run / RECORDS) == Counter(stories.ids())


def test_a_second_run_is_refused_before_its_storyteller_loads(stories, tmp_path):
    """Not after minutes of loading weights: the model folder (missing here) is never reached."""
    run = tmp_path / "run"
    with held_elsewhere(run) as holder:
        result = run_cli(
            "tell-dataset", stories.source, "--out", str(run), "--model", str(tmp_path / "no-model")
        )
        assert one_error_line(result) == (
            f"error: another storyreasoning process (pid {holder.pid}) is writing to {run}; "
            "wait for it or choose another --out"
        )


def test_a_resume_keeps_the_first_record_of_a_story_written_twice(stories, tmp_path):
    run = tmp_path / "run"
    told(stories, run)
    lines = (run / RECORDS).read_text(encoding="utf-8").splitlines(keepends=True)
    doubled = [json.loads(line) for line in lines[:2]]
    for record in doubled:
        record["raw"] = "a second telling"
    with (run / RECORDS).open("a", encoding="utf-8") as f:  # what two runs at once left
        f.writelines(json.dumps(record) + "\n" for record in doubled)
    records = read_run(run)[1]  # readers read each story's first record too
    assert len(records) == 6 and "a second telling" not in {r["raw"] for r in records}
    said: list[str] = []
    assert told(stories, run, say=said.append).skipped == 6
    assert said == [
        f"{run / RECORDS} held 2 more lines of stories it already had (two jobs wrote to it at once); "
        "kept the first line of each of its 6 stories and dropped the 2 others"
    ]
    assert (run / RECORDS).read_text(encoding="utf-8").splitlines(keepends=True) == lines


def test_a_dataset_moved_with_its_content_is_the_same_dataset():
    from storyreasoning.data.identity import dataset_changes

    content = {"stories": 3, "ids_sha256": "a", "files": 1, "files_sha256": "b"}
    then = {"source": "data", "split": "test", "path": "/old/project/data", "fingerprint": content}
    moved = {**then, "path": "/new/project/data"}
    assert dataset_changes(then, moved) == []
    other = {**moved, "fingerprint": {**content, "ids_sha256": "c"}}
    changes = dataset_changes(then, other)
    assert changes[0] == "path /old/project/data then, /new/project/data now" and len(changes) == 2
