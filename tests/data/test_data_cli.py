"""``storyreasoning data``: info, validate, show, convert, contrastive, run as a user would."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from storyreasoning.data import SampleList, load_stories, write_folders, write_parquet

from .fixtures import fixture_samples, image_bytes

pytest.importorskip("datasets", reason="needs the datasets library: pip install 'storyreasoning[data]'")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "storyreasoning", "data", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    samples = fixture_samples(4)
    write_parquet(SampleList(samples[:3]), root / "pq", split="train")
    write_parquet(SampleList(samples[3:]), root / "pq", split="test")
    return root


def test_info_counts(dataset):
    result = run("info", dataset / "pq", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    # four copies of the lighthouse story: 3 frames; char1 and char2 in all 3 images; obj1 in 3,
    # obj2 and obj3 in one; lm1 and bg1 in one; 2+2+3 character rows, 2+2+3 object rows
    assert data["stories"] == 4 and data["frames"] == 12
    assert data["entities"] == {"char": 8, "obj": 12, "bg": 4, "lm": 4}
    assert data["persistence"]["char"][">=2"]["count"] == 8
    assert data["persistence"]["obj"][">=2"]["count"] == 4
    assert data["persistence"]["char"][">=5"]["count"] == 0
    text = run("info", dataset / "pq", "--split", "test")
    assert text.returncode == 0 and "stories" in text.stdout and "(split test)" in text.stdout


def test_validate_exit_codes_and_failures_file(dataset, tmp_path):
    ok = run("validate", dataset / "pq")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "4 of 4 stories well-structured" in ok.stdout

    broken = fixture_samples(3)
    no_conclusion = "\n".join(
        line for line in broken[1].cot_text.splitlines() if not line.startswith("| Conclusion")
    )
    broken[1] = broken[1].with_texts(no_conclusion, broken[1].story_text)
    broken[2] = broken[2].with_texts(broken[2].cot_text, broken[2].story_text, frames=broken[2].frames[:2])
    write_folders(broken, tmp_path / "broken")
    (tmp_path / "broken" / "s00" / "02.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    failures = tmp_path / "fail.jsonl"
    bad = run("validate", tmp_path / "broken", "--failures", failures)
    assert bad.returncode == 1
    assert "0 of 3 stories well-structured" in bad.stdout
    lines = [json.loads(line) for line in failures.read_text().splitlines()]
    assert [item["story_id"] for item in lines] == ["s00", "s01", "s02"]
    assert lines[0]["reasons"][0]["code"] == "image-unreadable"
    assert {r["code"] for r in lines[1]["reasons"]} == {"missing-phase"}
    assert {r["code"] for r in lines[2]["reasons"]} == {"image-count", "segment-count"}
    assert "missing-phase" in bad.stdout and "image-unreadable" in bad.stdout


def test_show(dataset):
    result = run("show", dataset / "pq", "s01")
    assert result.returncode == 0, result.stderr
    assert (
        "story s01" in result.stdout and "Ines[char1]" in result.stdout and "well-structured" in result.stdout
    )
    as_json = json.loads(run("show", dataset / "pq", "s01", "--json").stdout)
    assert as_json["story_id"] == "s01" and as_json["frame_meta"][0]["source"] == "movie1"
    assert as_json["frames"][0]["size"] == [640, 480]
    missing = run("show", dataset / "pq", "nope")
    assert missing.returncode == 2
    assert "no story 'nope'" in missing.stderr and "Traceback" not in missing.stderr


def test_convert_round_trip_and_resume(dataset, tmp_path):
    result = run("convert", dataset / "pq", tmp_path / "folders", "--to", "folder")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "folders").iterdir()) == ["test", "train"]
    again = run(
        "convert", tmp_path / "folders", tmp_path / "pq2", "--to", "parquet", "--stories-per-shard", "2"
    )
    assert again.returncode == 0, again.stderr
    original = load_stories(dataset / "pq")
    back = load_stories(tmp_path / "pq2")
    assert back.ids() == original.ids()
    for a, b in zip(original, back, strict=True):
        assert (a.cot_text, a.story_text, a.frame_meta) == (b.cot_text, b.story_text, b.frame_meta)
        assert [f.bytes() for f in a.frames] == [f.bytes() for f in b.frames]
    disk = run("convert", tmp_path / "pq2", tmp_path / "disk", "--to", "disk")
    assert disk.returncode == 0, disk.stderr
    assert load_stories(tmp_path / "disk", "test").ids() == ["s03"]
    done = run("convert", tmp_path / "pq2", tmp_path / "disk", "--to", "disk")  # the same work: done
    assert done.returncode == 0 and "already holds these 4 stories" in done.stdout, done.stderr
    other = run("convert", tmp_path / "pq2", tmp_path / "disk", "--to", "disk", "--limit", "1")
    assert other.returncode == 2 and "--limit none then, 1 now" in other.stderr, other.stderr
    assert "--overwrite" in other.stderr and len(other.stderr.strip().splitlines()) == 1
    replaced = run(
        "convert", tmp_path / "pq2", tmp_path / "disk", "--to", "disk", "--limit", "1", "--overwrite"
    )
    assert replaced.returncode == 0, replaced.stderr
    assert load_stories(tmp_path / "disk").ids() == ["s00", "s03"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    refused = run("convert", tmp_path / "pq2", tmp_path / "other", "--to", "disk", "--overwrite")
    assert refused.returncode == 2 and "not empty" in refused.stderr  # not a dataset: never replaced
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("to", ["folder", "parquet", "disk"])
def test_contrastive_command(dataset, tmp_path, to):
    args = (
        "contrastive", dataset / "pq", tmp_path / "neg", "--count", "3", "--length", "2-3", "--seed", "4",
        "--to", to,
    )  # fmt: skip
    result = run(*args)
    assert result.returncode == 0, result.stderr
    # the same work: nothing written again (a save_to_disk folder's digest is of every row)
    again = run(*args)
    assert "already holds these 3 contrastive sequences" in again.stdout, again.stdout + again.stderr
    made = load_stories(tmp_path / "neg")
    assert len(made) == 3
    for sample in made:
        assert 2 <= sample.frame_count <= 3
        groups = [m["group"] for m in sample.frame_meta]  # each frame from another story
        assert len(set(groups)) == len(groups)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("info", "/no/such/dataset"), "does not exist"),
        (
            ("validate", "{pq}", "--split", "validation"),
            "has no split 'validation'; its splits are train, test",
        ),
        (("convert", "{pq}", "{tmp}/x", "--to", "zip"), "Invalid value for '--to'"),
        (("contrastive", "{pq}", "{tmp}/y", "--length", "two"), "--length must be real, N or MIN-MAX"),
        (("contrastive", "{pq}", "{tmp}/y", "--length", "9"), "distinct frame groups"),
        (("contrastive", "{pq}", "{tmp}/y", "--length", "0"), "--length must be at least 1 frame"),
        (("contrastive", "{pq}", "{tmp}/y", "--length", "3-2"), "(MIN-MAX: MIN up to MAX), got '3-2'"),
        (
            ("contrastive", "{pq}", "{tmp}/y", "--count", "99999999999999999999"),
            "less than or equal to 1000000",
        ),
    ],
)
def test_clear_errors(dataset, tmp_path, args, message):
    args = [a.format(pq=dataset / "pq", tmp=tmp_path) for a in args]
    result = run(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_unreadable_image_in_show(tmp_path):
    samples = fixture_samples(1)
    write_folders(samples, tmp_path / "d")
    (tmp_path / "d" / "s00" / "01.png").write_bytes(image_bytes(10, 10, 1)[:30])
    result = run("show", tmp_path / "d", "s00")
    assert result.returncode == 1
    assert "unreadable image" in result.stdout


def _damaged_parquet(tmp_path, changes: dict):
    """A one-file parquet dataset of three stories whose last row has ``changes`` made to its cells."""
    import pyarrow.parquet as pq

    (path,) = write_parquet(SampleList(fixture_samples(3)), tmp_path / "src")
    table = pq.read_table(path)
    rows = table.to_pylist()
    rows[-1].update(changes)
    out = tmp_path / "damaged.parquet"
    pq.write_table(type(table).from_pylist(rows, schema=table.schema), out)
    return out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"frame_meta": "{not json"},
            "story 's02' (row 3 of {file}): its frame_meta column is not valid JSON (",
        ),
        (
            {"frame_meta": "[1, 2]"},
            "story 's02' (row 3 of {file}): its frame_meta column must be a JSON list of 3 objects, "
            "one per frame; fix it or set it to null",
        ),
        ({"story_id": None}, "row 3 of {file} has no story_id (it is null); give every row a story id"),
    ],
)
@pytest.mark.parametrize("command", ["info", "validate", "convert"])
def test_damaged_parquet_rows(tmp_path, change, message, command):
    file = _damaged_parquet(tmp_path, change)
    extra = [tmp_path / "out", "--to", "folder"] if command == "convert" else []
    # validate names the story: one failure, the rest checked
    if command == "validate" and "story_id" not in change:
        result = run(command, file, "--json")
        assert result.returncode == 1, result.stdout + result.stderr
        report = json.loads(result.stdout)
        assert report["failed"] == ["s02"] and report["reasons"] == {"story-unreadable": 1}
        assert report["stories"] == 3 and report["well_structured"] == 2
        return
    result = run(command, file, *extra)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message.format(file=file) in lines[0]
    assert not (tmp_path / "out" / "None").exists()


def test_convert_writes_progress_lines_to_a_log(dataset, tmp_path):
    """stderr a log file (``nohup … 2>log``): plain progress lines (here at every story: interval 0)."""
    log = tmp_path / "log"
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    with log.open("w") as stderr:
        result = subprocess.run(
            [sys.executable, "-m", "storyreasoning", "data", "convert", dataset / "pq", tmp_path / "f", "--to", "folder"],
            stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=120,
            env={**env, "STORYREASONING_PROGRESS_SECONDS": "0"},
        )  # fmt: skip
    assert result.returncode == 0
    lines = log.read_text().splitlines()
    assert lines[0] == "writing folder: 1/4 stories (25%)"  # no rate from one story
    assert len(lines) == 4, lines
    for n, line in ((2, lines[1]), (3, lines[2])):
        assert re.fullmatch(
            rf"writing folder: {n}/4 stories \(\d+%\), [\d.,]+/(s|min), about \d+ s left", line
        )
    assert re.fullmatch(r"writing folder: 4/4 stories \(100%\) in \d+ s, [\d.,]+/(s|min)", lines[3]), lines
    quiet = subprocess.run(
        [sys.executable, "-m", "storyreasoning", "data", "convert", dataset / "pq", tmp_path / "g", "--to", "folder"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert quiet.returncode == 0 and quiet.stderr == ""  # a short job: nothing (a line every 30 s at most)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("convert", "{pq}", "", "--to", "parquet"), "OUT"),
        (("contrastive", "{pq}", "", "--count", "2"), "OUT"),
        (("convert", "", "out", "--to", "folder"), "SOURCE"),
        (("contrastive", "", "out", "--count", "2"), "SOURCE"),
    ],
)
def test_an_empty_path_is_refused_and_nothing_is_written_here(dataset, tmp_path, args, named):
    """typer reads an empty OUT as this folder (and an empty SOURCE would read it): one line, nothing written."""
    from ..conftest import one_error_line

    here = tmp_path / "here"
    here.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "storyreasoning", "data", *(a.format(pq=dataset / "pq") for a in args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=here,
        env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    line = one_error_line(result)
    fix = (
        "a file or folder (. for this folder)"
        if named == "OUT"
        else "a dataset folder or file (. for this folder), or a hub id"
    )
    assert line == f"error: {named} is an empty path; give {fix}"
    assert list(here.iterdir()) == []


def test_a_save_to_disk_conversion_refuses_a_frame_that_is_no_image_in_one_line(tmp_path):
    """datasets wraps what the rows raise in its own error: the story's line, not a traceback."""
    write_folders(fixture_samples(2), tmp_path / "src")
    (tmp_path / "src" / "s01" / "02.jpg").write_text("not an image")
    result = run("convert", tmp_path / "src", tmp_path / "out", "--to", "disk")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "story 's01', frame 2:" in lines[0] and "not a readable image" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("to", ["parquet", "disk"])
def test_a_split_datasets_cannot_name_is_refused_before_any_split_is_written(tmp_path, to):
    samples = fixture_samples(2)
    write_folders(samples[:1], tmp_path / "src" / "train")
    write_folders(samples[1:], tmp_path / "src" / "my split")
    result = run("convert", tmp_path / "src", tmp_path / "out", "--to", to)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and "split 'my split' cannot name parquet shards or a save_to_disk split" in lines[0]
    )
    assert not (tmp_path / "out").exists()  # not even the train split


def test_two_stories_of_one_id_are_named_as_such(tmp_path):
    (sample,) = fixture_samples(1)
    write_parquet(SampleList([sample, sample]), tmp_path / "src")
    result = run("convert", tmp_path / "src", tmp_path / "out", "--to", "folder")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == "error: two stories have the id 's00'; give every story an id of its own"


def test_a_hub_id_not_cached_with_hf_hub_offline_set_names_the_setting(tmp_path):
    """HF_HUB_OFFLINE is the user's choice: the line says so, not "connect to the internet"."""
    result = run("info", "nobody-here/NoSuchStories")
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "HF_HUB_OFFLINE is set" in lines[0] and "unset HF_HUB_OFFLINE" in lines[0]
    assert "connect to the internet" not in lines[0]


def test_contrastive_of_one_length_says_it_once(dataset, tmp_path):
    result = run("contrastive", dataset / "pq", tmp_path / "neg", "--count", "2", "--length", "2")
    assert result.returncode == 0, result.stderr
    assert f"wrote 2 contrastive sequences of 2 frames to {tmp_path / 'neg'}" in result.stdout


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ({"images": "01.png"}, "its images column holds str, not a list of images, one per frame"),
        ({"chain_of_thought": 3}, "its chain_of_thought column holds int, not text"),
        (
            {"images": [{"bytes": None, "path": None}]},
            "a dataset row has an image with neither bytes nor a path",
        ),
    ],
)
def test_a_parquet_of_other_column_types_is_one_line_naming_the_story(tmp_path, cells, message):
    """A text ``images`` cell was read letter by letter (frames '0', '1', '.', …); the others named no story."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = {"story_id": "a", "images": [], "frame_count": 1, "chain_of_thought": "c", "story": "s", **cells}
    pq.write_table(pa.Table.from_pylist([row]), tmp_path / "train.parquet")
    result = run("info", tmp_path / "train.parquet")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip() == (
        f"error: story 'a' (row 1 of {tmp_path / 'train.parquet'}): {message}"
        + (
            "; re-export the dataset in the StoryReasoning columns"
            if "column" in message
            else "; re-export the dataset"
        )
    )


def test_validate_names_every_story_it_cannot_read_and_checks_the_rest(tmp_path):
    """A story folder without cot.md, or with a story.md that is not UTF-8, is a failure of its own in the
    report (story-unreadable, with its message in --failures); validation goes on to the other stories."""
    write_folders(fixture_samples(4), tmp_path / "ds")
    folders = sorted(p for p in (tmp_path / "ds").iterdir() if p.is_dir())
    (folders[1] / "cot.md").unlink()
    (folders[2] / "story.md").write_bytes(b"\xff\xfe not text")
    result = run("validate", tmp_path / "ds", "--json", "--failures", tmp_path / "failed.jsonl")
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["stories"] == 4 and report["well_structured"] == 2
    assert report["reasons"] == {"story-unreadable": 2}
    lines = [json.loads(line) for line in (tmp_path / "failed.jsonl").read_text().splitlines()]
    assert [line["reasons"][0]["code"] for line in lines] == ["story-unreadable"] * 2
    assert "cot.md" in lines[0]["reasons"][0]["message"]


def test_validate_fails_a_story_id_held_by_two_stories(tmp_path):
    """A story in both train and test (a test the model was trained on), or twice in one split (every run
    and score keyed by id keeps one of them), fails validation as id-repeated, naming where it is."""
    samples = fixture_samples(3)
    write_parquet(samples, tmp_path / "pq", split="train")
    write_parquet([samples[0], samples[1], samples[1]], tmp_path / "pq", split="test")
    result = run("validate", tmp_path / "pq", "--json", "--failures", tmp_path / "failed.jsonl")
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["stories"] == 6 and report["well_structured"] == 1
    assert report["reasons"] == {"id-repeated": 5} and sorted(report["failed"]) == ["s00"] * 2 + ["s01"] * 3
    said = {json.loads(line)["story_id"]: json.loads(line)["reasons"][0]["message"]
            for line in (tmp_path / "failed.jsonl").read_text().splitlines()}  # fmt: skip
    assert (
        said["s00"]
        == "story id s00 is held by 2 stories: split train and split test; give each story its own id"
    )
    assert "held by 3 stories: split train and 2 times in split test" in said["s01"]
    # one split alone holds no repeated id of the other
    assert run("validate", tmp_path / "pq", "--split", "train").returncode == 0


#: ``python -c STOPPED AT TARGET ARGS…``: ``storyreasoning ARGS…``, which, as it checks its AT-th story,
#: says which temporary files are beside TARGET (on stderr) and sends itself SIGINT, as Ctrl-C does.
STOPPED = """
import os, runpy, signal, sys
from pathlib import Path
from storyreasoning.data.sample import StorySample

at, target = int(sys.argv[1]), Path(sys.argv[2])
sizes, calls = StorySample.frame_sizes, [0]

def frame_sizes(self):
    calls[0] += 1
    if calls[0] == at:
        beside = sorted(p.name for p in target.parent.iterdir() if p.name.endswith(".tmp"))
        print("beside:", beside, file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGINT)
    return sizes(self)

StorySample.frame_sizes = frame_sizes
sys.argv = ["storyreasoning", *sys.argv[3:]]
runpy.run_module("storyreasoning", run_name="__main__")
"""


def test_validate_writes_failures_as_it_goes_and_an_interrupted_run_keeps_the_old_file(tmp_path):
    samples = fixture_samples(4)
    cut = ["\n".join(x for x in s.cot_text.splitlines() if not x.startswith("| Conclusion")) for s in samples]
    write_folders(
        [s.with_texts(c, s.story_text) for s, c in zip(samples, cut, strict=True)], tmp_path / "broken"
    )
    failures = tmp_path / "out" / "fail.jsonl"
    failures.parent.mkdir()
    failures.write_text("the last run's\n")
    stopped = subprocess.run(
        [sys.executable, "-c", STOPPED, "3", str(failures), "data", "validate", str(tmp_path / "broken"),
         "--failures", str(failures)],
        capture_output=True, text=True, timeout=120, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert stopped.returncode != 0 and "Traceback" not in stopped.stderr, stopped.stderr
    # the failures went to a temporary file beside the target as they came, not held to the end
    assert re.search(r"beside: \['\.fail\.jsonl\.[0-9a-f]{12}\.tmp'\]", stopped.stderr), stopped.stderr
    assert failures.read_text() == "the last run's\n" and sorted(failures.parent.iterdir()) == [failures]
    done = run("validate", tmp_path / "broken", "--failures", failures)
    assert done.returncode == 1 and sorted(failures.parent.iterdir()) == [failures]
    lines = [json.loads(line) for line in failures.read_text().splitlines()]
    assert [item["story_id"] for item in lines] == [s.story_id for s in samples]
    assert all({r["code"] for r in item["reasons"]} == {"missing-phase"} for item in lines)
