"""Datasets through every format and back, without loss; lazy reading; clear errors."""

from __future__ import annotations

import io
import json
import os
import re
import shutil

import pytest
from PIL import Image

from storyreasoning.data import (
    Frame,
    SampleList,
    StorySample,
    load_stories,
    read_story_folder,
    write_disk,
    write_folders,
    write_parquet,
)
from storyreasoning.data.sources import story_folder_id
from storyreasoning.errors import StoryReasoningError, UsageError

from .fixtures import fixture_samples, image_bytes, lighthouse_texts

pytest.importorskip("datasets", reason="needs the datasets library: pip install 'storyreasoning[data]'")


def assert_same(a: list[StorySample], b: list[StorySample]) -> None:
    assert [s.story_id for s in a] == [s.story_id for s in b]
    for x, y in zip(a, b, strict=True):
        assert x.cot_text == y.cot_text
        assert x.story_text == y.story_text
        assert x.frame_meta == y.frame_meta
        assert [f.bytes() for f in x.frames] == [f.bytes() for f in y.frames]  # byte-equal images


@pytest.fixture(scope="module")
def samples() -> list[StorySample]:
    return fixture_samples(5)


def test_every_format_and_back(samples, tmp_path):
    source = SampleList(samples)
    write_parquet(source, tmp_path / "pq", split="train", stories_per_shard=2)
    write_parquet(SampleList(samples[:2]), tmp_path / "pq", split="test")
    from_parquet = load_stories(tmp_path / "pq", "train")
    assert_same(samples, list(from_parquet))

    write_folders(from_parquet, tmp_path / "folders")
    from_folders = load_stories(tmp_path / "folders")
    assert_same(samples, list(from_folders))

    write_disk({"train": from_folders, "test": load_stories(tmp_path / "pq", "test")}, tmp_path / "disk")
    from_disk = load_stories(tmp_path / "disk", "train")
    assert_same(samples, list(from_disk))
    assert_same(samples[:2], list(load_stories(tmp_path / "disk", "test")))

    write_parquet(from_disk, tmp_path / "pq2")
    assert_same(samples, list(load_stories(tmp_path / "pq2")))


def test_parquet_layout_is_hub_ready(samples, tmp_path):
    import datasets

    write_parquet(SampleList(samples), tmp_path / "out", split="train", stories_per_shard=2)
    write_parquet(SampleList(samples[:1]), tmp_path / "out", split="test")
    names = sorted(p.name for p in (tmp_path / "out" / "data").iterdir())
    assert names == [
        "test-00000-of-00001.parquet",
        "train-00000-of-00003.parquet",
        "train-00001-of-00003.parquet",
        "train-00002-of-00003.parquet",
    ]
    card = (tmp_path / "out" / "README.md").read_text()
    assert "- split: train\n    path: data/train-*" in card and "- split: test" in card

    files = sorted(str(p) for p in (tmp_path / "out" / "data").glob("train-*.parquet"))
    loaded = datasets.load_dataset("parquet", data_files={"train": files}, split="train")
    assert loaded.column_names[:5] == ["story_id", "images", "frame_count", "chain_of_thought", "story"]
    assert loaded.features["images"].feature.__class__.__name__ == "Image"
    row = loaded[3]
    assert row["story_id"] == "s03" and row["frame_count"] == 3
    original = Image.open(io.BytesIO(samples[3].frames[0].bytes()))
    assert list(row["images"][0].convert("RGB").tobytes()) == list(original.convert("RGB").tobytes())
    assert json.loads(row["frame_meta"]) == samples[3].frame_meta
    # the folder as a whole, as load_dataset(repo) reads a hub repository
    whole = datasets.load_dataset(str(tmp_path / "out"))
    assert set(whole) == {"train", "test"} and whole["train"].num_rows == 5


def test_listing_and_lookup_decode_no_image(samples, tmp_path, monkeypatch):
    write_parquet(SampleList(samples), tmp_path / "pq", stories_per_shard=2)
    write_folders(samples, tmp_path / "folders")
    write_disk({"train": SampleList(samples)}, tmp_path / "disk")

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was opened")

    monkeypatch.setattr(Image, "open", no_decoding)
    for path in ("pq", "folders", "disk"):
        stories = load_stories(tmp_path / path)
        assert stories.ids() == [s.story_id for s in samples]
        story = stories.get("s03")
        assert story.frame_count == 3 and story.cot.images[0].characters[0].id == "char1"
        assert [s.story_id for s in stories if s.frame_meta] == ["s01", "s03"]


def test_splits(samples, tmp_path):
    write_parquet(SampleList(samples), tmp_path / "pq", split="train")
    write_parquet(SampleList(samples[:2]), tmp_path / "pq", split="test")
    both = load_stories(tmp_path / "pq")
    assert len(both) == 7 and both.ids()[5:] == ["s00", "s01"]
    assert both.splits == ["train", "test"]
    assert len(load_stories(tmp_path / "pq", "test")) == 2
    assert load_stories(tmp_path / "pq", "test").splits == ["test"]
    with pytest.raises(UsageError, match=r"has no split 'validation'; its splits are train, test"):
        load_stories(tmp_path / "pq", "validation")
    # split folders of story folders
    write_folders(samples[:3], tmp_path / "f" / "train")
    write_folders(samples[3:], tmp_path / "f" / "test")
    assert load_stories(tmp_path / "f", "test").ids() == ["s03", "s04"]
    assert len(load_stories(tmp_path / "f")) == 5
    assert load_stories(tmp_path / "f").splits == ["train", "test"]


def test_resume_keeps_finished_work(samples, tmp_path):
    out = tmp_path / "pq"
    write_parquet(SampleList(samples), out, stories_per_shard=2)
    first = out / "data" / "train-00000-of-00003.parquet"
    last = out / "data" / "train-00002-of-00003.parquet"
    stamp = first.stat().st_mtime_ns
    last.unlink()  # as if the run had died before the last shard
    # and had been killed while writing it: its temporary file (as storyreasoning.files names it) is left
    (out / "data" / ".train-00002-of-00003.parquet.0123456789ab.tmp").write_bytes(b"half a shard")
    done = []
    write_parquet(SampleList(samples), out, stories_per_shard=2, progress=done.append)
    assert first.stat().st_mtime_ns == stamp  # not rewritten
    assert sum(done) == 5
    assert_same(samples, list(load_stories(out)))
    assert not list((out / "data").glob(".*"))  # the killed write's leftover is gone, and no other

    folders = tmp_path / "folders"
    write_folders(samples, folders)
    kept = (folders / "s00" / "cot.md").stat().st_mtime_ns
    for name in ("s02", "s03", "s04"):  # as if the run had died after two stories
        shutil.rmtree(folders / name)
    (folders / ".s02.partial").mkdir()  # and while writing the third
    found = []
    write_folders(samples, folders, kept=found.append)
    assert (folders / "s00" / "cot.md").stat().st_mtime_ns == kept and found == [2]
    assert sorted(p.name for p in folders.iterdir() if p.is_dir()) == ["s00", "s01", "s02", "s03", "s04"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names a descriptor's file through /proc")
def test_story_folders_are_synced_once_after_the_last_one_not_one_by_one(samples, tmp_path, monkeypatch):
    from ..test_files import synced_folders

    out = tmp_path / "folders"
    events, replace = [], os.replace
    synced = synced_folders(monkeypatch)  # the folders fsync'd, as they are (appended to as they come)

    def watched(src, dst):
        events.append(("rename", os.path.basename(dst), len(synced)))
        return replace(src, dst)

    monkeypatch.setattr(os, "replace", watched)
    write_folders(samples, out)
    folder = str(out.resolve())
    story_renames = [at for kind, name, at in events if name in {s.story_id for s in samples}]
    assert len(story_renames) == len(samples)
    # the output folder synced after the last story's rename (and so before the record that follows),
    # not after each story's
    assert folder in synced[story_renames[-1] :]
    assert synced.count(folder) < len(samples), synced
    assert [s.story_id for s in load_stories(out)] == [s.story_id for s in samples]


def test_other_shard_count_is_refused(samples, tmp_path):
    write_parquet(SampleList(samples), tmp_path / "pq", stories_per_shard=2)
    with pytest.raises(UsageError, match="--stories-per-shard 2 then, 5 now"):
        write_parquet(SampleList(samples), tmp_path / "pq", stories_per_shard=5)
    write_parquet(SampleList(samples), tmp_path / "pq", stories_per_shard=5, overwrite=True)
    assert [p.name for p in (tmp_path / "pq" / "data").iterdir()] == ["train-00000-of-00001.parquet"]


def test_story_folder_layout(tmp_path):
    cot, story = lighthouse_texts()
    folder = tmp_path / "my story"
    folder.mkdir()
    for number in (10, 2, 1):  # ordered by number, not by name
        (folder / f"frame_{number}.png").write_bytes(image_bytes(40 + number, 30, number))
    (folder / "notes.txt").write_text("not a frame")
    (folder / "cot.md").write_text(cot + "\n")
    (folder / "story.md").write_text(story)
    (folder / "meta.json").write_text(
        json.dumps({"story_id": "L-1", "frames": [{"source": "a"}] * 3, "title": "x"})
    )
    sample = read_story_folder(folder)
    assert sample.story_id == "L-1" and sample.meta == {"title": "x"}
    assert [f.size()[0] for f in sample.frames] == [41, 42, 50]
    assert sample.cot_text == cot and sample.story_text == story
    # a single story folder is a dataset of one story
    assert load_stories(folder).ids() == ["L-1"]
    # unsafe ids become safe folder names and survive the round trip
    write_folders([sample.with_texts(cot, story, story_id="a/b c")], tmp_path / "out")
    assert load_stories(tmp_path / "out").ids() == ["a/b c"]
    assert (tmp_path / "out" / "a_b_c").is_dir()
    # one folder's id without reading its frames: meta.json's, else (none, or not JSON) the folder's name
    assert story_folder_id(tmp_path / "out" / "a_b_c") == "a/b c"
    (tmp_path / "out" / "a_b_c" / "meta.json").write_text("{not json", encoding="utf-8")
    assert story_folder_id(tmp_path / "out" / "a_b_c") == "a_b_c"
    (tmp_path / "out" / "a_b_c" / "meta.json").unlink()
    assert story_folder_id(tmp_path / "out" / "a_b_c") == "a_b_c"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: (d / "cot.md").unlink(), "has no cot.md"),
        (lambda d: [p.unlink() for p in d.glob("*.png")], "has no frames"),
        (lambda d: (d / "meta.json").write_text("{oops"), "is not valid JSON"),
        (lambda d: (d / "meta.json").write_text('{"frames": [{}]}'), "must be a list of 3 objects"),
        (lambda d: (d / "03.jpg").write_bytes(b"x"), "have the same number 3"),
    ],
)
def test_story_folder_errors(tmp_path, setup, message):
    cot, story = lighthouse_texts()
    folder = tmp_path / "s"
    folder.mkdir()
    for k in (1, 2, 3):
        (folder / f"0{k}.png").write_bytes(image_bytes(30, 20, k))
    (folder / "cot.md").write_text(cot)
    (folder / "story.md").write_text(story)
    setup(folder)
    with pytest.raises(UsageError, match=message):
        read_story_folder(folder)


def test_a_folder_of_frames_alone_is_told_what_to_do_with_them(tmp_path):
    """Frames without cot.md and story.md are no dataset; the refusal says how to tell them or build one
    from them (a folder of frames, or of folders of frames); an empty folder gets no such hint."""
    from PIL import Image

    for kind in ("flat", "nested"):
        root = tmp_path / kind
        folder = root if kind == "flat" else root / "a"
        folder.mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(folder / "01.png")
        with pytest.raises(UsageError) as info:
            load_stories(root)
        assert str(info.value).endswith(
            f"; frames alone are told with `storyreasoning tell FOLDER`, or made a dataset with "
            f"`storyreasoning build {root} --out DATASET`"
        )
    (tmp_path / "empty" / "x").mkdir(parents=True)
    with pytest.raises(UsageError) as info:
        load_stories(tmp_path / "empty")
    assert "frames alone" not in str(info.value)


def test_load_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_stories(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="holds no StoryReasoning dataset"):
        load_stories(tmp_path / "empty")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(UsageError, match="not a parquet file"):
        load_stories(tmp_path / "x.txt")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 nope")
    with pytest.raises(UsageError, match="not a readable parquet file"):
        load_stories(tmp_path / "bad.parquet")

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["1"], "text": ["x"]}), tmp_path / "other.parquet")
    with pytest.raises(UsageError, match="not a StoryReasoning dataset: no column story_id, images"):
        load_stories(tmp_path / "other.parquet")


def test_hub_unreachable_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(StoryReasoningError) as info:
        load_stories("nobody-here/NoSuchStories")
    assert "nobody-here/NoSuchStories" in str(info.value)
    assert "local folder" in str(info.value)


def test_a_hub_out_of_reach_without_offline_set_is_said_at_once(tmp_path):
    """No HF_HUB_OFFLINE, no network: datasets retried for half a minute ("Retrying in 8s [Retry 5/5]")
    before our line. The hub is asked once; out of reach, only the cache is read."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:  # a loopback port where nothing listens: the hub refuses at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # nothing that turns the hub off (./scripts/test sets HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE")) and "OFFLINE" not in k
    }
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HOME=str(tmp_path / "hf"), COLUMNS="200")
    result = subprocess.run(
        [sys.executable, "-m", "storyreasoning", "data", "info", "nobody-here/NoSuchStories"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert "cannot reach the Hugging Face Hub for nobody-here/NoSuchStories" in lines[0]
    assert "not in the local cache" in lines[0] and "Retrying" not in result.stderr


def test_frames_stay_encoded_and_report_corruption(tmp_path):
    jpeg = image_bytes(50, 40, 1, "JPEG")
    frame = Frame(data=jpeg)
    assert frame.extension() == ".jpg" and frame.size() == (50, 40) and frame.bytes() is jpeg
    assert Frame.coerce({"bytes": jpeg, "path": "a.jpg"}).to_hf() == {"bytes": jpeg, "path": "a.jpg"}
    broken = Frame(data=b"\x89PNG\r\n\x1a\n" + b"\0" * 20, path="broken.png")
    with pytest.raises(UsageError, match=r"broken\.png"):
        broken.size()
    with pytest.raises(UsageError, match="not a readable image"):
        broken.open()
    missing = Frame(path=str(tmp_path / "gone.png"))
    with pytest.raises(UsageError, match="does not exist"):
        missing.bytes()
    assert os.fspath(tmp_path)  # keep tmp_path used on every platform


def test_a_split_name_is_read_back_as_written_or_refused(tmp_path):
    """Shards are named after their split; a split with word characters comes back whole
    (``my_split``, not ``my``), and one a shard's name could not give back is refused."""
    from storyreasoning.data import load_stories

    samples = fixture_samples(3)
    write_parquet(SampleList(samples[:2]), tmp_path / "d", split="my_split")
    write_parquet(SampleList(samples[2:]), tmp_path / "d", split="test")
    assert [s.story_id for s in load_stories(str(tmp_path / "d"), "my_split")] == [
        s.story_id for s in samples[:2]
    ]
    assert len(load_stories(str(tmp_path / "d"), "test")) == 1
    for bad in ("my split", "a+b", "100%", "tëst&x", ""):
        with pytest.raises(UsageError, match="cannot name parquet shards"):
            write_parquet(SampleList(samples), tmp_path / "e", split=bad)


def test_a_dataset_below_a_hidden_folder_or_reached_through_dotdot_is_read(tmp_path, monkeypatch):
    """Hidden names inside a dataset are passed over, not those above it: a hub snapshot lives in
    ~/.cache/huggingface, and ``../pq`` is a path like any other (both held "no dataset")."""
    out = tmp_path / ".cache" / "snapshot"
    write_parquet(SampleList(fixture_samples(3), split="train"), out)
    (out / ".partial").mkdir()
    (out / ".partial" / "train-00000-of-00001.parquet").write_bytes(b"not read")
    assert len(load_stories(out, "train")) == 3
    monkeypatch.chdir(out / "data")
    assert len(load_stories("../../snapshot", "train")) == 3
    with pytest.raises(UsageError, match="SOURCE is an empty path"):
        load_stories("")


def test_a_save_to_disk_folder_of_a_plain_list_records_every_story(samples, tmp_path):
    """datasets shards a list given to its generator (one call per shard): the record's digest must still
    be of every story, or the same list written again is taken for other stories and rewritten."""
    from storyreasoning.data.resume import RECORD, content

    out = tmp_path / "disk"
    write_disk({"train": list(samples)}, out)
    assert json.loads((out / RECORD).read_text())["parts"]["train"]["content"] == content(samples)
    stamp = (out / "dataset_dict.json").stat().st_mtime_ns
    found = []
    write_disk({"train": list(samples)}, out, kept=found.append)
    assert found == [5] and (out / "dataset_dict.json").stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    ("source", "reason"),
    [("user/my--ds", "Cannot have -- or .. in repo_id"), ("user/ds.git", "cannot end by '.git'")],
)
def test_a_malformed_hub_id_is_said_to_be_one(tmp_path, source, reason):
    """Not "cannot reach the Hub": the id could be no repository's, reachable or not, offline or not."""
    import subprocess
    import sys

    with pytest.raises(
        UsageError, match=rf"^{re.escape(source)} is not a valid hub id \(.*{re.escape(reason)}"
    ):
        load_stories(source)  # (offline, as every test is)
    # nothing that turns the hub off (./scripts/test sets HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE")) and "OFFLINE" not in k
    }
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"), COLUMNS="300")
    result = subprocess.run(
        [sys.executable, "-m", "storyreasoning", "data", "convert", source, str(tmp_path / "out"), "--to", "parquet"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {source} is not a valid hub id (") and reason in lines[0]
    assert lines[0].endswith("; give owner/name, or a local folder that exists") and "reach" not in lines[0]
    assert not (tmp_path / "out").exists()
    with pytest.raises(UsageError, match=r"user/ds\n does not exist; pass a dataset folder"):
        load_stories("user/ds\n")  # a trailing newline is no hub id's


def _path_only_parquet(folder, paths: list[str]):
    """A parquet file in ``folder`` whose one story names its frames by path alone (no bytes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cot, story = lighthouse_texts()
    images = [{"bytes": None, "path": p} for p in paths]
    row = {"story_id": "s1", "images": images, "chain_of_thought": cot, "story": story}
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([row]), folder / "train.parquet")
    return folder / "train.parquet"


@pytest.mark.parametrize("named", ["absolute", "dotdot", "nul"])
def test_a_frame_path_leaving_the_dataset_folder_is_never_read(tmp_path, monkeypatch, named):
    secret = tmp_path / "secret" / "private.png"
    secret.parent.mkdir()
    secret.write_bytes(image_bytes(64, 48, 7))
    monkeypatch.chdir(tmp_path / "secret")  # a relative path is not taken from the working folder
    path = {"absolute": str(secret), "dotdot": "../secret/private.png", "nul": "01.png\0/etc"}[named]
    source = _path_only_parquet(tmp_path / "ds", [path])
    with pytest.raises(UsageError) as caught:
        load_stories(source)[0]
    message = str(caught.value)
    assert "story 's1'" in message and "frame 1" in message and "is not read" in message
    assert "\n" not in message
    if named == "absolute":  # rows a program builds itself name its own files: read as given
        cot, story = lighthouse_texts()
        row = {"story_id": "s1", "images": [str(secret)], "chain_of_thought": cot, "story": story}
        assert StorySample.from_row(row).frames[0].bytes() == secret.read_bytes()


def test_a_frame_path_inside_the_dataset_folder_is_read_from_there(tmp_path, monkeypatch):
    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    (ds / "images" / "a.png").write_bytes(image_bytes(64, 48, 1))
    os.mkfifo(ds / "fifo.png")
    source = _path_only_parquet(ds, ["images/a.png", str(ds / "images" / "a.png")])
    monkeypatch.chdir(tmp_path)  # elsewhere: the relative path is the dataset folder's
    sample = load_stories(source)[0]
    assert [f.bytes() for f in sample.frames] == [image_bytes(64, 48, 1)] * 2
    # a FIFO or a device is not read (it would never end): refused before any read
    _path_only_parquet(ds, ["fifo.png"])
    with pytest.raises(UsageError, match="not a regular file"):
        load_stories(source)[0]


def old_fingerprint_files(path):
    """The shard files ``dataset_fingerprint`` listed before it walked the folder itself (rglob)."""
    return sorted(
        (found.relative_to(path).as_posix(), found.stat().st_size)
        for found in path.rglob("*")
        if found.suffix in (".parquet", ".arrow")
        and not any(part.startswith(".") for part in found.relative_to(path).parts)
        and found.is_file()
    )


def test_a_dataset_fingerprint_lists_the_shard_files_it_always_did(samples, tmp_path):
    """Manifests already recorded name a local dataset by the fingerprint of its shard files: walking
    the folder faster must list exactly the files rglob did (hidden ones and symlinked folders left out)."""
    import hashlib

    from storyreasoning.data.identity import dataset_fingerprint

    root = tmp_path / "ds"
    write_folders(samples[:2], root / "train")
    write_parquet(samples[2:], root / "pq", stories_per_shard=1)
    (root / "train" / "s00" / "frame.arrow").write_bytes(b"arrow")  # a shard suffix deep down
    (root / "train" / ".hidden.parquet").write_bytes(b"hidden")
    (root / ".cache" / "sub").mkdir(parents=True)
    (root / ".cache" / "sub" / "x.parquet").write_bytes(b"cached")
    (root / "odd.parquet").mkdir()  # a folder named as a shard
    (root / "odd.parquet" / "in.arrow").write_bytes(b"in a folder named .parquet")
    (root / "a.b.").write_bytes(b"")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "far.parquet").write_bytes(b"far")
    (root / "linked").symlink_to(outside, target_is_directory=True)  # not entered
    (root / "link.parquet").symlink_to(outside / "far.parquet")  # a link to a file: that file
    (root / "broken.arrow").symlink_to(tmp_path / "missing.arrow")
    old = old_fingerprint_files(root)
    assert len(old) == 6, old  # 3 shards, frame.arrow, odd.parquet/in.arrow, link.parquet
    listed = "\n".join(f"{name}\t{size}" for name, size in old)
    stories = load_stories(root / "train")
    found = dataset_fingerprint(stories, root)
    assert found["files"] == len(old)
    assert found["files_sha256"] == hashlib.sha256(listed.encode("utf-8")).hexdigest()


def test_a_limit_is_a_view_that_reads_each_story_when_asked(samples, tmp_path):
    """``--limit N`` holds no story in memory: the first N rows are read from the dataset on demand."""
    from storyreasoning.data.sources import limited

    write_folders(samples[:3], tmp_path / "ds" / "train")
    write_folders(samples[3:], tmp_path / "ds" / "test")
    write_parquet(samples, tmp_path / "pq", stories_per_shard=2, rows_per_group=1)
    for source in (tmp_path / "ds", tmp_path / "pq"):
        whole = load_stories(source)
        first = limited(whole, 4)
        assert len(first) == 4 and first.source == whole.source and first.split == whole.split
        assert first.ids() == whole.ids()[:4] == [s.story_id for s in first]
        assert first.row_splits() == whole.row_splits()[:4] and first.files() == whole.files()
        assert [s.story_id for s in first[1:3]] == whole.ids()[1:3] and first[-1].story_id == whole.ids()[3]
        with pytest.raises(IndexError):
            first[4]
        assert limited(whole, None) is whole and limited(whole, 9) is whole and len(limited(whole, 0)) == 0
    first = limited(load_stories(tmp_path / "ds"), 2)
    assert first.splits == ["train"] and limited(load_stories(tmp_path / "ds"), 4).splits == ["train", "test"]
    # read when asked, not when limited: a story changed since is read as it is now
    (tmp_path / "ds" / "train" / "s01" / "story.md").write_text("Told again.\n", encoding="utf-8")
    assert first[1].story_text == "Told again." and list(first)[1].story_text == "Told again."
