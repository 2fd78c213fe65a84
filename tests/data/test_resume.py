"""Conversions killed and run again: the same work resumes, other work is refused, nothing is left behind.

The crashes are real: the command runs in a subprocess that sends itself SIGKILL (or SIGINT, as
Ctrl-C does) while it writes the N-th story, so the moment is the same on every machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from storyreasoning.data import SampleList, load_stories, write_folders, write_parquet
from storyreasoning.data.commands import contrastive, convert
from storyreasoning.data.resume import RECORD
from storyreasoning.errors import UsageError
from storyreasoning.files import LOCK_NAME

from .fixtures import fixture_samples

pytest.importorskip("datasets", reason="needs the datasets library: pip install 'storyreasoning[data]'")

#: ``python -c KILLER AT SIGNAL ARGS…``: ``storyreasoning ARGS…``, which sends itself SIGNAL as it
#: starts writing its AT-th story (every writer checks a story's frames first).
KILLER = """
import os, sys
from storyreasoning.data.sample import StorySample

at, sig = int(sys.argv[1]), int(sys.argv[2])
check, calls = StorySample.check_frames, [0]

def check_frames(self):
    calls[0] += 1
    if calls[0] == at:
        os.kill(os.getpid(), sig)
    return check(self)

StorySample.check_frames = check_frames
from storyreasoning.cli import main
main(sys.argv[3:])
"""


def _env(**more: str) -> dict:
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "TTY_COMPATIBLE": "",
        "FORCE_COLOR": "",
        **more,
    }


def run(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "storyreasoning", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env or _env(),
    )


def crash(at: int, sig: int, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    """``storyreasoning ARGS`` signalled with ``sig`` as it starts writing its ``at``-th story."""
    return subprocess.run(
        [sys.executable, "-c", KILLER, str(at), str(int(sig)), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env or _env(),
    )


def error_line(result: subprocess.CompletedProcess, code: int = 2) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, lines
    return lines[0]


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """``alpha`` (12 stories s00…s11) and ``beta`` (12 others, b00…b11): two story-folder datasets."""
    root = tmp_path_factory.mktemp("sources")
    samples = fixture_samples(12)
    write_folders(samples, root / "alpha")
    others = [s.with_texts(s.cot_text, s.story_text, story_id=f"b{i:02d}") for i, s in enumerate(samples)]
    write_folders(others, root / "beta")
    return root


def shards(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted((out / "data").glob("*.parquet"))}


def same_tables(a: Path, b: Path) -> bool:
    import pyarrow.parquet as pq

    names = sorted(shards(a))
    return names == sorted(shards(b)) and all(
        pq.read_table(a / "data" / n).equals(pq.read_table(b / "data" / n)) for n in names
    )


def test_a_killed_parquet_conversion_resumes_and_another_source_is_refused(sources, tmp_path, capsys):
    alpha, beta, out = sources / "alpha", sources / "beta", tmp_path / "out"
    args = ("--to", "parquet", "--stories-per-shard", 2)
    killed = crash(7, signal.SIGKILL, "data", "convert", alpha, out, *args)
    assert killed.returncode == -signal.SIGKILL
    written = shards(out)
    assert len(written) == 3  # six stories in three finished shards; the fourth was being written
    assert (out / RECORD).is_file()

    line = error_line(run("data", "convert", beta, out, *args))
    assert "of another conversion: source 'alpha' then, 'beta' now; content ids_sha256 '" in line
    assert "Choose a new folder, or pass --overwrite to replace the train shards" in line
    assert shards(out) == written  # refused before anything was touched

    again = run("data", "convert", alpha, out, *args)
    assert again.returncode == 0, again.stderr
    assert "wrote 6 stories" in again.stdout and "kept the 6 an earlier run wrote" in again.stdout
    assert {k: v for k, v in shards(out).items() if k in written} == written  # not rewritten
    write_parquet(load_stories(alpha), tmp_path / "ref", stories_per_shard=2)  # one run, never killed
    assert same_tables(tmp_path / "ref", out)
    assert not [p.name for p in (out / "data").iterdir() if p.name.startswith(".")]  # the torn shard is gone

    assert (
        convert(str(alpha), out, to="parquet", split=None, limit=None, stories_per_shard=2, overwrite=False)
        == 0
    )
    assert "already holds these 12 stories" in capsys.readouterr().out
    assert shards(out) == {**written, **shards(out)} and len(shards(out)) == 6


def test_shards_without_a_record_are_checked_story_by_story(tmp_path):
    """Output of an older version (no record): a shard is kept only when it holds, by id and text, the
    stories this run writes there; a row count proves nothing."""
    samples = fixture_samples(4)
    out = tmp_path / "old"
    write_parquet(SampleList(samples), out, stories_per_shard=2)
    (out / RECORD).unlink()
    others = [s.with_texts(s.cot_text, s.story_text, story_id=f"x{i}") for i, s in enumerate(samples)]
    with pytest.raises(
        UsageError, match=r"train-00000-of-00002.parquet holds s00…s01, this run writes x0…x1"
    ):
        write_parquet(SampleList(others), out, stories_per_shard=2)
    rewritten = [s.with_texts(s.cot_text, s.story_text + " And then?") for s in samples]  # same ids
    with pytest.raises(UsageError, match=r"story 's00' in train-00000-of-00002\.parquet differs"):
        write_parquet(SampleList(rewritten), out, stories_per_shard=2)
    assert not (out / RECORD).exists()  # a refused run records nothing

    stamps = shards(out)
    found = []
    write_parquet(SampleList(samples), out, stories_per_shard=2, kept=found.append)
    assert found == [4] and shards(out) == stamps and (out / RECORD).is_file()


def test_contrastive_with_another_seed_is_refused(sources, tmp_path, capsys):
    def again(seed: int, *, overwrite: bool = False) -> str:
        code = contrastive(
            str(sources / "alpha"), con, split=None, count=4, length=(3, 3), seed=seed, to="parquet",
            overwrite=overwrite,
        )  # fmt: skip
        assert code == 0
        return capsys.readouterr().out

    con = tmp_path / "con"
    again(0)
    made = [s.frame_meta for s in load_stories(con)]
    with pytest.raises(UsageError, match=r"--seed 0 then, 1 now\. Choose a new folder, or pass --overwrite"):
        again(1)
    assert "already holds these 4 contrastive sequences" in again(0)
    again(1, overwrite=True)
    assert [s.frame_meta for s in load_stories(con)] != made


def test_a_folder_laid_out_by_another_conversion_is_refused(sources, tmp_path, capsys):
    out = tmp_path / "out"
    convert(
        str(sources / "alpha"), out, to="folder", split="train", limit=2, stories_per_shard=2, overwrite=False
    )
    assert (out / "train" / "s00").is_dir()
    with pytest.raises(UsageError, match=r"in .*/out/train, and this run writes parquet shards: both would"):
        convert(
            str(sources / "alpha"),
            out,
            to="parquet",
            split=None,
            limit=2,
            stories_per_shard=2,
            overwrite=False,
        )
    with pytest.raises(
        UsageError, match=r"this run writes story folders in .*/out: both would be read as one"
    ):
        convert(
            str(sources / "alpha"), out, to="folder", split=None, limit=2, stories_per_shard=2, overwrite=True
        )


def test_story_folders_of_another_source_are_not_kept(sources, tmp_path):
    alpha, beta = load_stories(sources / "alpha"), load_stories(sources / "beta")
    out = tmp_path / "folders"
    write_folders(alpha[:3], out, source=sources / "alpha", options={"limit": 3})
    with pytest.raises(
        UsageError, match="holds the story folders of another conversion: source 'alpha' then"
    ):
        write_folders(beta[:3], out, source=sources / "beta", options={"limit": 3})

    (out / RECORD).unlink()  # as an older version left it
    with pytest.raises(UsageError, match=r"holds 3 story folders this run does not write \(s00, s01, s02\)"):
        write_folders(beta[:3], out, source=sources / "beta", options={"limit": 3})
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["s00", "s01", "s02"]
    changed = [s.with_texts(s.cot_text, "Another story.") if s.story_id == "s01" else s for s in alpha[:3]]
    with pytest.raises(UsageError, match="differs from the story 's01' this run writes"):
        write_folders(changed, out, source=sources / "alpha", options={"limit": 3})
    found = []
    write_folders(alpha[:4], out, source=sources / "alpha", options={"limit": 4}, kept=found.append)
    assert found == [3]

    write_folders(beta[:2], out, source=sources / "beta", options={"limit": 2}, overwrite=True)
    assert load_stories(out).ids() == ["b00", "b01"]  # the other source's folders are gone, not mixed in


def test_a_killed_disk_conversion_leaves_no_copy_behind_and_a_rerun_says_it_is_done(
    sources, tmp_path, capsys
):
    temp = tmp_path / "temp"
    temp.mkdir()
    env = _env(TMPDIR=str(temp))
    out = tmp_path / "disk"
    killed = crash(5, signal.SIGKILL, "data", "convert", sources / "alpha", out, "--to", "disk", env=env)
    assert killed.returncode == -signal.SIGKILL
    assert (tmp_path / ".disk.partial").is_dir()  # the work in progress, beside it
    assert [p.name for p in out.iterdir()] == [LOCK_NAME]  # OUT holds nothing but the killed run's lock
    assert list(temp.iterdir()) == []  # no copy of the data in the system's temporary folder

    first = run("data", "convert", sources / "alpha", out, "--to", "disk", env=env)
    assert first.returncode == 0 and "wrote 12 stories" in first.stdout, first.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk", "temp"]  # the killed run's folder removed
    assert load_stories(out).ids() == [f"s{i:02d}" for i in range(12)]
    assert not (out / ".cache").exists() and list(temp.iterdir()) == []

    options = {"to": "disk", "split": None, "limit": None, "stories_per_shard": 256, "overwrite": False}
    assert convert(str(sources / "alpha"), out, **options) == 0
    assert "already holds these 12 stories (train: 12) as disk: nothing to write" in capsys.readouterr().out
    with pytest.raises(UsageError, match=r"split train: source 'alpha' then, 'beta' now; .*pass --overwrite"):
        convert(str(sources / "beta"), out, **options)


def test_ctrl_c_says_what_is_kept_and_the_same_command_continues(sources, tmp_path):
    out = tmp_path / "out"
    args = ("data", "convert", sources / "alpha", out, "--to", "parquet", "--stories-per-shard", "2")
    stopped = crash(7, signal.SIGINT, *args)
    line = error_line(stopped, code=130)
    assert line == (
        f"error: interrupted; {out} keeps the 6 of 12 stories written so far: run the same command again "
        "to continue"
    )
    again = run(*args)
    assert again.returncode == 0 and "kept the 6 an earlier run wrote" in again.stdout, again.stderr


def test_a_conversion_into_its_source_or_another_formats_output_is_refused(tmp_path):
    from ..conftest import one_error_line, run_cli

    examples = Path(__file__).resolve().parents[2] / "examples" / "stories"
    src = tmp_path / "src"
    assert run_cli("data", "convert", str(examples), str(src), "--to", "folder").returncode == 0
    before = sorted(p.name for p in src.iterdir())
    for out in (src, src / "inner", tmp_path):
        line = one_error_line(run_cli("data", "convert", str(src), str(out), "--to", "folder", "--overwrite"))
        assert "is the source dataset" in line and "a folder of its own" in line, line
    assert sorted(p.name for p in src.iterdir()) == before
    other = tmp_path / "other"
    assert run_cli("data", "convert", str(src), str(other), "--to", "folder").returncode == 0
    line = one_error_line(run_cli("data", "convert", str(src), str(other), "--to", "disk", "--overwrite"))
    assert "this run writes a save_to_disk dataset" in line, line
    assert (other / "lighthouse").is_dir()


@pytest.mark.parametrize(
    "damage",
    [
        b'{"format": "parquet", "parts": {"train": 5}}',
        b'{"format": "parquet", "parts": {"train": {"options": 5}}}',
        b'{"format": "parquet", "parts": {"train": {"stories": "x"}}}',
        b'{"parts": {}}',
        b'{"format": "", "parts": {}}',
        b'{"format": "parquet", "parts": {"train": {"dataset": "ds"}}}',
        b"\xff\xfe not text",
    ],
    ids=["part", "options", "stories", "format", "empty format", "dataset", "bytes"],
)
def test_a_damaged_record_is_one_line(tmp_path, damage):
    from storyreasoning.data.resume import read_record

    (tmp_path / RECORD).write_bytes(damage)
    with pytest.raises(UsageError, match=r"is damaged or was written by another version .* delete it"):
        read_record(tmp_path)


def _stopped(at: int, *args) -> subprocess.Popen:
    """``storyreasoning ARGS`` in a subprocess that stops itself (SIGSTOP) as it starts writing its ``at``-th
    story, returned once it has stopped: it holds OUT, with part of its work written."""
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLER, str(at), str(int(signal.SIGSTOP)), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), f"the conversion ended (status {status}) instead of stopping"
    return proc


@pytest.mark.parametrize("to", ["parquet", "folder", "disk"])
def test_a_second_conversion_into_a_held_folder_is_refused_naming_the_first(sources, tmp_path, to):
    out = tmp_path / "out"
    args = ("data", "convert", sources / "alpha", out, "--to", to, "--stories-per-shard", 2)
    first = _stopped(5, *args)
    try:
        for second in (
            args,
            ("data", "convert", sources / "beta", out, "--to", to, "--overwrite"),
            ("data", "contrastive", sources / "beta", out, "--count", 2, "--to", to),
        ):
            line = error_line(run(*second))
            assert line == (
                f"error: another storyreasoning process (pid {first.pid}) is writing to {out}; wait for it "
                "or choose another OUT"
            )
    finally:
        os.kill(first.pid, signal.SIGCONT)
        stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0 and "wrote 12 stories" in stdout, stderr
    assert load_stories(out).ids() == [f"s{i:02d}" for i in range(12)]  # nothing of beta mixed in
    assert not (out / LOCK_NAME).exists() and not list(tmp_path.glob(".*"))  # no lock, no partial left
    again = run(*args)
    assert again.returncode == 0 and "already holds these 12 stories" in again.stdout, again.stderr

    # a lock a killed conversion left (in a save_to_disk folder too): no reader takes it for data
    (out / LOCK_NAME).write_text("12345\n")
    assert load_stories(out).ids() == [f"s{i:02d}" for i in range(12)]
    if to == "disk":
        import datasets

        assert len(datasets.load_from_disk(str(out))["train"]) == 12
    again = run(*args)
    assert again.returncode == 0 and "already holds these 12 stories" in again.stdout, again.stderr
    assert not (out / LOCK_NAME).exists()


def test_contrastive_holds_its_folder_too(sources, tmp_path):
    out = tmp_path / "con"
    args = ("data", "contrastive", sources / "alpha", out, "--count", 4, "--length", 3, "--to", "parquet")
    first = _stopped(2, *args)
    try:
        line = error_line(run("data", "convert", sources / "beta", out, "--to", "parquet"))
        assert f"(pid {first.pid}) is writing to {out}" in line
    finally:
        os.kill(first.pid, signal.SIGCONT)
        stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0 and "wrote 4 contrastive sequences" in stdout, stderr
    assert len(load_stories(out)) == 4 and not (out / LOCK_NAME).exists()


def _copy(folder: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(folder, to)
    return to


@pytest.mark.parametrize("to", ["parquet", "disk", "folder"])
def test_a_source_whose_texts_or_images_changed_is_written_again(sources, tmp_path, to, capsys):
    src = _copy(sources / "alpha", tmp_path / "src")
    out = tmp_path / "out"

    def again() -> str:
        options = {"to": to, "split": None, "limit": None, "stories_per_shard": 2, "overwrite": False}
        assert convert(str(src), out, **options) == 0
        return capsys.readouterr().out

    again()
    (src / "s03" / "story.md").write_text("A story told again.\n", encoding="utf-8")
    line = again()
    assert load_stories(out).get("s03").story_text == "A story told again."
    assert ("wrote 2 stories" in line and "kept the 10" in line) if to == "parquet" else "wrote" in line
    assert "already holds" in again()

    (src / "s07" / "01.png").write_bytes((src / "s00" / "01.png").read_bytes())
    again()
    assert load_stories(out).get("s07").frames[0].bytes() == (src / "s00" / "01.png").read_bytes()
    assert "already holds" in again()


def test_the_same_dataset_however_typed_or_moved_and_another_one(sources, tmp_path, monkeypatch, capsys):
    project = tmp_path / "project"
    _copy(sources / "alpha", project / "ds")
    options = {"to": "parquet", "split": None, "limit": None, "stories_per_shard": 4, "overwrite": False}
    monkeypatch.chdir(project)
    assert convert("./ds", Path("out"), **options) == 0
    for typed in ("ds", str(project / "ds"), "../project/ds"):
        assert convert(typed, Path("out"), **options) == 0
        assert "already holds these 12 stories" in capsys.readouterr().out

    moved = tmp_path / "moved"
    project.rename(moved)  # the project moved whole: the same dataset, resumed
    monkeypatch.chdir(moved)
    assert convert("ds", Path("out"), **options) == 0
    assert "already holds these 12 stories" in capsys.readouterr().out

    other = _copy(sources / "beta", tmp_path / "elsewhere" / "ds")  # another folder's ds
    with pytest.raises(
        UsageError,
        match=r"source 'ds' at another path then, here now; content ids_sha256 '.*pass --overwrite",
    ):
        convert(str(other), Path("out"), **options)


def test_a_record_of_the_version_before_names_its_source_by_a_hash_of_its_path(sources, tmp_path, capsys):
    import json

    from storyreasoning.data.resume import source_key

    out = tmp_path / "out"
    options = {"to": "folder", "split": None, "limit": None, "stories_per_shard": 2, "overwrite": False}
    assert convert(str(sources / "alpha"), out, **options) == 0
    record = json.loads((out / RECORD).read_text())
    part = record["parts"]["stories"]
    del part["dataset"]
    part.update(source="alpha", source_key=source_key(sources / "alpha"))  # as the version before wrote it
    (out / RECORD).write_text(json.dumps(record))
    with pytest.raises(UsageError, match=r"source 'alpha' then, 'beta' now"):
        convert(str(sources / "beta"), out, **options)
    moved = _copy(sources / "alpha", tmp_path / "moved" / "alpha")  # the project moved: its record cannot say
    with pytest.raises(
        UsageError, match=r"of another conversion: source 'alpha' at another path then, here now\."
    ):
        convert(str(moved), out, **options)
    capsys.readouterr()
    assert convert(str(sources / "alpha"), out, **options) == 0
    assert "already holds these 12 stories" in capsys.readouterr().out
    assert "dataset" in json.loads((out / RECORD).read_text())["parts"]["stories"]  # renewed


def test_a_hand_edited_option_is_shown_and_one_story_is_one(sources, tmp_path, capsys):
    import json

    con = tmp_path / "con"
    options = {"split": None, "count": 1, "length": (3, 3), "seed": 0, "to": "folder"}
    assert contrastive(str(sources / "alpha"), con, **options) == 0
    assert "wrote 1 contrastive sequence of 3 frames" in capsys.readouterr().out
    assert contrastive(str(sources / "alpha"), con, **options) == 0
    assert "already holds this 1 contrastive sequence of 3 frames" in capsys.readouterr().out
    record = json.loads((con / RECORD).read_text())
    record["parts"]["stories"]["options"]["length"] = [1]  # by hand
    (con / RECORD).write_text(json.dumps(record))
    with pytest.raises(UsageError, match=r"of another conversion: --length \[1\] then, 3 now\. Choose"):
        contrastive(str(sources / "alpha"), con, **options)

    out = tmp_path / "one"
    again = {"to": "parquet", "split": None, "limit": 1, "stories_per_shard": 2, "overwrite": False}
    assert convert(str(sources / "alpha"), out, **again) == 0
    assert "wrote 1 story (train: 1)" in capsys.readouterr().out
    assert convert(str(sources / "alpha"), out, **again) == 0
    assert (
        f"{out} already holds this 1 story (train: 1) as parquet: nothing to write" in capsys.readouterr().out
    )


def _age(folder: Path, seconds: int) -> None:
    """Every file of ``folder`` last changed ``seconds`` ago (a dataset made a while before it is converted)."""
    import time

    then = time.time() - seconds
    for path in folder.rglob("*"):
        os.utime(path, (then, then))


def _same_size_edit(path: Path) -> None:
    """Another text of the same size in ``path``, its size and time kept: what no stat can tell."""
    before = path.stat()
    text = path.read_text(encoding="utf-8")
    at = next(i for i, c in enumerate(text) if c.isalpha() and i > text.index(">"))  # a word, not a tag
    path.write_text(text[:at] + text[at].swapcase() + text[at + 1 :], encoding="utf-8")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


@pytest.mark.parametrize("to", ["parquet", "disk", "folder"])
def test_a_finished_conversion_is_rerun_from_the_stat_of_its_files(sources, tmp_path, to, capsys):
    """Files unchanged since (names, sizes, times): a rerun takes each unit holding its ids as done, no
    image read; a file changed since (its time): the units are checked story by story again."""
    import json

    src = _copy(sources / "alpha", tmp_path / "src")
    _age(src, 3600)
    out = tmp_path / "out"

    def again() -> str:
        options = {"to": to, "split": None, "limit": None, "stories_per_shard": 2, "overwrite": False}
        assert convert(str(src), out, **options) == 0
        return capsys.readouterr().out

    assert "wrote 12 stories" in again()
    parts = json.loads((out / RECORD).read_text())["parts"]
    assert all(part["source_stat"].startswith("sha256:") for part in parts.values())
    told = load_stories(out).get("s03").story_text
    _same_size_edit(src / "s03" / "story.md")
    assert "already holds these 12 stories" in again()  # the stat alone: not read
    assert load_stories(out).get("s03").story_text == told

    os.utime(src / "s03" / "story.md", (1_000_000_000, 1_000_000_000))  # touched: read again
    assert "wrote" in again()
    assert load_stories(out).get("s03").story_text == load_stories(src).get("s03").story_text != told
    assert "already holds these 12 stories" in again()


@pytest.mark.parametrize("to", ["parquet", "folder"])
def test_a_run_killed_after_its_source_changed_leaves_no_stat_that_hides_it(sources, tmp_path, to):
    """The record takes the files' stat only when every unit comes from those files: a run killed before
    it wrote the story that changed leaves none, and the next run finds the story by its content."""
    src = _copy(sources / "alpha", tmp_path / "src")
    _age(src, 3600)
    out = tmp_path / "out"
    args = ("data", "convert", src, out, "--to", to, "--stories-per-shard", 2)
    assert run(*args).returncode == 0
    story = src / "s03" / "story.md"
    story.write_text("Told again, at another length.\n", encoding="utf-8")
    os.utime(story, (1_000_000_000, 1_000_000_000))
    killed = crash(1, signal.SIGKILL, *args)  # as it starts writing the changed story
    assert killed.returncode == -signal.SIGKILL
    _same_size_edit(src / "s05" / "story.md")  # (with the stat recorded, this and s03 were kept)
    again = run(*args)
    assert again.returncode == 0 and "wrote" in again.stdout, again.stdout + again.stderr
    written, now = load_stories(out), load_stories(src)
    assert [written.get(i).story_text for i in ("s03", "s05")] == [
        now.get(i).story_text for i in ("s03", "s05")
    ]


def test_one_split_of_a_hub_dataset_is_loaded_once(tmp_path, monkeypatch, capsys):
    """``--split`` of a hub id: the hub asked and the dataset loaded once (the record names the whole)."""
    import json

    import datasets

    from storyreasoning.data.writers import features

    def split(samples) -> datasets.Dataset:
        return datasets.Dataset.from_list(
            [{"frame_meta": None, **s.to_row()} for s in samples], features=features()
        )

    samples = fixture_samples(5)
    calls = []

    def load_dataset(repo_id, **kwargs):  # the hub's dataset, as datasets gives it from its cache
        calls.append(repo_id)
        return datasets.DatasetDict({"train": split(samples[:3]), "test": split(samples[3:])})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    out = tmp_path / "out"
    options = {"to": "parquet", "split": "test", "limit": None, "stories_per_shard": 2, "overwrite": False}
    assert convert("someone/stories", out, **options) == 0
    assert calls == ["someone/stories"] and load_stories(out).ids() == ["s03", "s04"]
    record = json.loads((out / RECORD).read_text())["parts"]["test"]
    assert record["dataset"] == {"source": "someone/stories", "split": None} and record["source_stat"] is None
    capsys.readouterr()
    assert convert("someone/stories", out, **{**options, "split": None}) == 0  # the same work, whole
    line = capsys.readouterr().out
    assert "wrote 3 stories" in line and "kept the 2 an earlier run wrote" in line
    assert convert("someone/stories", out, **options) == 0
    assert "already holds these 2 stories (test: 2)" in capsys.readouterr().out
    assert len(calls) == 3


@pytest.mark.parametrize("to", ["parquet", "folder"])
def test_a_run_refused_at_its_first_story_leaves_no_record_that_blocks_the_fixed_source(tmp_path, to):
    """The first story is refused (no frames) after the record is written: the user takes it out and
    runs the same command again. Nothing was written, so nothing is guarded: the record is replaced."""
    import shutil

    src, out = tmp_path / "src", tmp_path / "out"
    write_folders(fixture_samples(3), src)
    for frame in [p for p in (src / "s00").iterdir() if p.suffix in (".png", ".jpg")]:
        frame.unlink()
    assert "s00 has no frames" in error_line(run("data", "convert", src, out, "--to", to))
    shutil.rmtree(src / "s00")
    again = run("data", "convert", src, out, "--to", to)
    assert again.returncode == 0, again.stderr
    assert load_stories(out).ids() == ["s01", "s02"]
