"""Links in a downloaded dataset: one leading out of the dataset's folder is refused, naming the file,
before anything is read (``01.png -> ~/.ssh/id_rsa``); links inside it, and a Hugging Face hub
snapshot's links to its repository's blobs, are followed. A folder of frames given to ``tell`` is the
user's own: its links are followed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from storyreasoning.data import load_stories
from storyreasoning.data.folder import read_story_folder
from storyreasoning.errors import UsageError

from ..conftest import one_error_line, run_cli
from .fixtures import image_bytes, lighthouse_texts

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "stories"


def story(folder: Path, seed: int = 1) -> Path:
    """A story folder of two PNG frames made with PIL and the lighthouse texts."""
    folder.mkdir(parents=True)
    cot, text = lighthouse_texts()
    for k in (1, 2):
        (folder / f"0{k}.png").write_bytes(image_bytes(64, 48, seed + k))
    (folder / "cot.md").write_text(cot, encoding="utf-8")
    (folder / "story.md").write_text(text, encoding="utf-8")
    return folder


def secret(tmp_path: Path) -> Path:
    """This machine's private file, outside every dataset (a PNG, so that it would be read as a frame)."""
    path = tmp_path / "home" / "private.png"
    path.parent.mkdir()
    path.write_bytes(image_bytes(32, 32, 9))
    return path


def link(at: Path, to: Path | str) -> Path:
    at.unlink(missing_ok=True)
    os.symlink(to, at)
    return at


@pytest.mark.parametrize("name", ["01.png", "02.png", "cot.md", "story.md", "meta.json"])
def test_a_story_file_linked_out_of_the_dataset_is_refused_naming_it(tmp_path, name):
    private = secret(tmp_path)
    folder = story(tmp_path / "ds" / "lighthouse")
    link(folder / name, private)
    with pytest.raises(UsageError) as caught:
        load_stories(tmp_path / "ds")[0]
    message = str(caught.value)
    assert message == (
        f"story folder {folder}: {name} is a link to a file outside the dataset's folder {tmp_path / 'ds'}, "
        "so it is not read; put the file itself (a copy, or a hard link: ln without -s) in the story folder in place of the link"
    )
    # the same story read as a story folder of its own, and with the default root (its parent)
    with pytest.raises(UsageError, match=f"{name} is a link to a file outside"):
        load_stories(folder)[0]
    with pytest.raises(UsageError, match=f"{name} is a link to a file outside"):
        read_story_folder(folder)


def test_a_link_to_a_private_file_is_never_copied_into_a_conversion(tmp_path):
    private = secret(tmp_path)
    folder = story(tmp_path / "ds" / "lighthouse")
    link(folder / "01.png", private)
    for to in ("parquet", "folder"):
        result = run_cli("data", "convert", str(tmp_path / "ds"), str(tmp_path / to), "--to", to)
        line = one_error_line(result)
        assert "01.png is a link to a file outside the dataset's folder" in line
        assert (
            "put the file itself (a copy, or a hard link: ln without -s) in the story folder in place of the link"
            in line
        )
        written = [p.read_bytes() for p in (tmp_path / to).rglob("*") if p.is_file()]
        assert not any(private.read_bytes() in data for data in written)


def test_a_story_folder_linked_out_of_the_dataset_is_refused(tmp_path):
    elsewhere = story(tmp_path / "home" / "diary")
    (tmp_path / "ds").mkdir()
    story(tmp_path / "ds" / "own")
    link(tmp_path / "ds" / "diary", elsewhere)
    stories = load_stories(tmp_path / "ds")
    assert stories.ids() == ["diary", "own"]  # listed by name alone: nothing of it read
    with pytest.raises(UsageError, match=r"story folder .*diary is a link to a folder outside the dataset's"):
        stories[0]
    assert stories[1].story_id == "own"


def test_a_meta_json_linked_out_of_the_dataset_gives_no_story_id(tmp_path):
    private = tmp_path / "home" / "settings.json"
    private.parent.mkdir()
    private.write_text(json.dumps({"story_id": "a private value"}), encoding="utf-8")
    folder = story(tmp_path / "ds" / "lighthouse")
    link(folder / "meta.json", private)
    assert load_stories(tmp_path / "ds").ids() == ["lighthouse"]


def test_links_inside_the_dataset_are_followed(tmp_path):
    """A frame shared by two stories of one dataset, and a split folder's story linking into another
    split: the dataset's own files, read through the link."""
    first = story(tmp_path / "ds" / "train" / "a", seed=1)
    second = story(tmp_path / "ds" / "test" / "b", seed=5)
    link(second / "02.png", "../../train/a/01.png")  # relative, as a tarball holds it
    stories = load_stories(tmp_path / "ds")
    assert [s.story_id for s in stories] == ["a", "b"]
    b = stories.get("b")
    assert b.frames[1].bytes() == (first / "01.png").read_bytes()
    assert b.frames[1].path == str(second / "02.png")  # the frame keeps its name (02.png), not its target's


def hub_snapshot(cache: Path, repo: str, files: dict[str, bytes]) -> Path:
    """A Hugging Face hub cache repository made by hand, as huggingface_hub lays it out: each file's
    bytes in ``blobs/SHA``, the snapshot ``snapshots/REV/`` holding relative links to them."""
    import hashlib

    snapshot = cache / repo / "snapshots" / "0123abcd"
    (cache / repo / "blobs").mkdir(parents=True)
    (cache / repo / "refs").mkdir()
    (cache / repo / "refs" / "main").write_text("0123abcd")
    for rel, data in files.items():
        blob = cache / repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        at = snapshot / rel
        at.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, at.parent), at)  # ../../../blobs/SHA
    return snapshot


def story_files(story_id: str, seed: int) -> dict[str, bytes]:
    cot, text = lighthouse_texts()
    return {
        f"{story_id}/01.png": image_bytes(64, 48, seed),
        f"{story_id}/02.png": image_bytes(64, 48, seed + 1),
        f"{story_id}/cot.md": cot.encode(),
        f"{story_id}/story.md": text.encode(),
    }


@pytest.mark.parametrize("repo", ["datasets--owner--stories", "models--owner--storyteller"])
def test_a_hub_snapshot_of_story_folders_is_read_through_its_blob_links(tmp_path, repo):
    snapshot = hub_snapshot(tmp_path / "hub", repo, {**story_files("a", 1), **story_files("b", 3)})
    assert os.readlink(snapshot / "a" / "01.png").startswith("../../../blobs/")
    stories = load_stories(snapshot)
    assert [s.story_id for s in stories] == ["a", "b"]
    assert stories.get("b").frames[0].bytes() == image_bytes(64, 48, 3)
    # a subfolder of the snapshot is still the repository's: its blobs are its own
    assert load_stories(snapshot / "a")[0].frames[1].bytes() == image_bytes(64, 48, 2)
    # the cache reached through a link of its own (HF_HOME on another disk) is the same cache
    link(tmp_path / "cache-link", tmp_path / "hub")
    assert len(load_stories(tmp_path / "cache-link" / repo / "snapshots" / "0123abcd")) == 2


def test_a_hub_snapshot_link_out_of_its_repository_is_refused(tmp_path):
    private = secret(tmp_path)
    other = hub_snapshot(tmp_path / "hub", "datasets--someone--else", story_files("x", 7))
    snapshot = hub_snapshot(tmp_path / "hub", "datasets--owner--stories", story_files("a", 1))
    other_blob = (other / "x" / "01.png").resolve()
    for target in (private, other_blob):  # this machine's file; another repository's blob
        link(snapshot / "a" / "01.png", os.path.relpath(target, snapshot / "a"))
        with pytest.raises(UsageError, match=r"01\.png is a link to a file outside the dataset's folder"):
            load_stories(snapshot)[0]
    # a folder named like a snapshot outside a repository's folder (no models--/datasets--) has no blobs
    fake = tmp_path / "downloads" / "stuff" / "snapshots" / "rev"
    story(fake / "a")
    (tmp_path / "downloads" / "stuff" / "blobs").mkdir()
    shutil.copy(private, tmp_path / "downloads" / "stuff" / "blobs" / "sha")
    link(fake / "a" / "01.png", "../../../blobs/sha")
    with pytest.raises(UsageError, match=r"01\.png is a link to a file outside the dataset's folder"):
        load_stories(fake)[0]


def path_only_parquet(folder: Path, paths: list[str]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cot, text = lighthouse_texts()
    row = {"story_id": "s1", "images": [{"bytes": None, "path": p} for p in paths]}
    row |= {"chain_of_thought": cot, "story": text}
    pq.write_table(pa.Table.from_pylist([row]), folder / "train.parquet")
    return folder / "train.parquet"


def test_a_parquet_frame_named_inside_the_dataset_but_linked_out_of_it_is_refused(tmp_path):
    private = secret(tmp_path)
    (tmp_path / "ds" / "images").mkdir(parents=True)
    link(tmp_path / "ds" / "images" / "01.png", private)
    source = path_only_parquet(tmp_path / "ds", ["images/01.png"])
    with pytest.raises(UsageError) as caught:
        load_stories(source)[0]
    message = str(caught.value)
    assert "frame 1 names 'images/01.png', a link to a file outside the dataset's folder" in message
    assert "is not read" in message and "\n" not in message
    # a folder linked into the dataset: the same
    shutil.rmtree(tmp_path / "ds" / "images")
    link(tmp_path / "ds" / "images", private.parent)
    path_only_parquet(tmp_path / "ds", ["images/private.png"])
    with pytest.raises(UsageError, match="a link to a file outside the dataset's folder"):
        load_stories(source)[0]


def test_a_parquet_frame_in_a_hub_snapshot_is_read_through_its_blob_link(tmp_path):
    snapshot = hub_snapshot(
        tmp_path / "hub", "datasets--owner--paths", {"images/01.png": image_bytes(40, 30, 4)}
    )
    path_only_parquet(snapshot, ["images/01.png"])
    assert load_stories(snapshot)[0].frames[0].bytes() == image_bytes(40, 30, 4)


def test_a_folder_of_frames_given_to_tell_is_the_users_own_links_and_all(tmp_path):
    """``tell FOLDER``: the user chose the folder; frames linked from elsewhere are told."""
    pytest.importorskip("cv2", reason="the baseline storyteller needs OpenCV")
    frames = tmp_path / "mine"
    frames.mkdir()
    for frame in sorted((EXAMPLES / "lighthouse").glob("0*.png")):
        link(frames / frame.name, frame)  # outside this folder, through links
    result = run_cli("tell", str(frames), "--teller", "baseline", "--json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["cot"]["images"]) == 3
