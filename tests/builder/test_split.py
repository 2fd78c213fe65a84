"""build --split: train and test by identity group (splits.json), read by every command that takes --split.

The rule (storyreasoning.data.splits): stories sharing a group are one unit; a unit is train when
the hash of its smallest group name falls below the fraction. Checked on the rule itself (stable as
a dataset grows, never splitting a group, close to the fraction over many groups) and on real builds
of the example photographs through the CLI, resumed and re-split.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from storyreasoning.data import StorySample, load_stories, write_story_folder
from storyreasoning.data.folder import frame_files
from storyreasoning.data.splits import (
    SPLITS_FILE,
    assign_splits,
    split_folder_dataset,
    unit_position,
    units,
)
from storyreasoning.errors import UsageError

from ..conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "stories"
FACES = Path(__file__).resolve().parent / "data" / "faces"
STORIES = ("lighthouse", "pioneers")  # the examples with people (the build skips a story without one)
FRACTION = "0.68"  # pioneers' group falls below it (0.663), lighthouse's above (0.701)


# -- the rule ------------------------------------------------------------------------------------------------


def test_a_unit_goes_by_its_hash_alone():
    groups = {f"story{i}": [f"film{i % 40}.mp4"] for i in range(400)}
    assigned = assign_splits(groups, 0.85)
    for story, split in assigned.items():
        position = unit_position(groups[story][0])
        assert split == ("train" if position < 0.85 else "test")
    # stable as the dataset grows: a subset is assigned as it is within the whole, in any order
    part = dict(reversed(list(groups.items())[:37]))
    assert assign_splits(part, 0.85) == {k: assigned[k] for k in part}
    # a group never straddles the splits
    by_group: dict[str, set[str]] = {}
    for story, split in assigned.items():
        by_group.setdefault(groups[story][0], set()).add(split)
    assert all(len(s) == 1 for s in by_group.values())
    # raising the fraction only moves units from test to train
    more = assign_splits(groups, 0.95)
    assert all(more[k] == "train" for k, v in assigned.items() if v == "train")
    assert sum(v == "train" for v in more.values()) > sum(v == "train" for v in assigned.values())


def test_the_share_is_close_to_the_fraction_over_many_groups():
    groups = {f"s{i}": [f"video-{i}"] for i in range(4000)}
    for fraction in (0.5, 0.85):
        share = sum(v == "train" for v in assign_splits(groups, fraction).values()) / len(groups)
        assert abs(share - fraction) < 0.02, (fraction, share)


def test_stories_sharing_a_group_are_joined_transitively():
    groups = {"a": ["film1"], "b": ["film1", "film2"], "c": ["film2"], "d": ["film3"]}
    keys = units(groups)
    assert keys == {"a": "film1", "b": "film1", "c": "film1", "d": "film3"}
    for fraction in (0.1, 0.3, 0.5, 0.7, 0.9):
        assigned = assign_splits(groups, fraction)
        assert assigned["a"] == assigned["b"] == assigned["c"]


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5, 1.5])
def test_a_fraction_outside_zero_to_one_is_refused(fraction):
    with pytest.raises(UsageError, match="between 0 and 1"):
        assign_splits({"a": ["g"]}, fraction)


def test_stories_of_one_video_stay_together_in_a_folder_dataset(tmp_path):
    """Story folders made from real photographs, several cut from one film (their frame_meta group)."""
    photos = sorted(FACES.glob("*.jpg"))
    root = tmp_path / "stories"
    root.mkdir()
    films = {f"film{k}.mp4" for k in range(12)}
    for i in range(36):
        film = f"film{i % 12}.mp4"
        frames = [photos[(i + j) % len(photos)] for j in range(2)]
        meta = [{"group": film, "source": f"{film}@{i * 3 + j}.00s"} for j in range(2)]
        cot = "## Image 1\n\n## Image 2\n"
        write_story_folder(StorySample(f"clip{i:02d}", frames, cot, "", frame_meta=meta), root)
    assigned = split_folder_dataset(root, 0.7)
    splits_of = {
        film: {assigned[f"clip{i:02d}"] for i in range(36) if f"film{i % 12}.mp4" == film} for film in films
    }
    assert all(len(s) == 1 for s in splits_of.values())
    assert {next(iter(s)) for s in splits_of.values()} == {"train", "test"}  # 12 films: both splits hold some
    for film, (split,) in splits_of.items():
        assert split == ("train" if unit_position(film) < 0.7 else "test")
    train, test = load_stories(root, "train"), load_stories(root, "test")
    assert sorted(train.ids() + test.ids()) == sorted(assigned)
    for sample in train:  # the loader's splits are the file's
        assert assigned[sample.story_id] == "train"
    assert load_stories(root).splits == ["train", "test"]


def test_the_loader_names_a_story_the_file_does_not_list(tmp_path):
    photos = sorted(FACES.glob("*.jpg"))
    root = tmp_path / "stories"
    root.mkdir()
    for name in ("one", "two"):
        write_story_folder(StorySample(name, photos[:1], "## Image 1\n", ""), root)
    (root / SPLITS_FILE).write_text(json.dumps({"stories": {"one": "train"}}))
    with pytest.raises(UsageError, match=r"gives no split for the story folder two; run the build again"):
        load_stories(root)
    (root / SPLITS_FILE).write_text("{not json")
    with pytest.raises(UsageError, match="is not valid JSON"):
        load_stories(root)
    (root / SPLITS_FILE).write_text(json.dumps({"stories": ["one"]}))
    with pytest.raises(UsageError, match="must hold"):
        load_stories(root)


# -- real builds through the CLI -----------------------------------------------------------------------------


def _raw(root: Path, names=STORIES) -> Path:
    for story in names:
        (root / story).mkdir(parents=True, exist_ok=True)
        for frame in frame_files(EXAMPLES / story):
            shutil.copy(frame, root / story / frame.name)
    return root


def _build(raw: Path, out: Path, *extra: str):
    result = run_cli("build", str(raw), "--out", str(out), "--faces", "none", *extra)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return result


def test_build_split_is_read_by_data_tell_dataset_and_train_alike(tmp_path):
    pytest.importorskip("cv2")
    expected = {name: ("train" if unit_position(name) < float(FRACTION) else "test") for name in STORIES}
    assert expected == {"lighthouse": "test", "pioneers": "train"}
    raw, out = _raw(tmp_path / "raw"), tmp_path / "built"
    result = _build(raw, out, "--split", FRACTION)
    assert f"split {FRACTION}: 1 stories train, 1 test" in result.stderr
    recorded = json.loads((out / SPLITS_FILE).read_text())
    assert recorded["stories"] == expected and recorded["train_fraction"] == float(FRACTION)
    assert json.loads((out / "settings.json").read_text())["split"] == float(FRACTION)
    assert load_stories(out, "train").ids() == ["pioneers"] and load_stories(out, "test").ids() == [
        "lighthouse"
    ]
    # the data commands and tell-dataset read it (evaluate and train sft too: load_stories(source, split))
    info = run_cli("data", "info", str(out), "--split", "test", "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["stories"] == 1 and "(split test)" in json.loads(info.stdout)["source"]
    missing = run_cli("data", "info", str(out), "--split", "validation")
    assert (
        missing.returncode == 2 and "has no split 'validation'; its splits are train, test" in missing.stderr
    )
    run = tmp_path / "run"
    told = run_cli("tell-dataset", str(out), "--split", "test", "--teller", "baseline", "--out", str(run))
    assert told.returncode == 0, told.stderr
    records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    assert [r["story_id"] for r in records] == ["lighthouse"]


def test_a_resumed_build_keeps_every_story_in_its_split_and_without_split_has_none(tmp_path):
    pytest.importorskip("cv2")
    raw, out = _raw(tmp_path / "raw", ["pioneers"]), tmp_path / "built"
    _build(raw, out, "--split", FRACTION)
    assert json.loads((out / SPLITS_FILE).read_text())["stories"] == {"pioneers": "train"}
    _raw(raw, ["lighthouse"])  # the dataset grows
    result = _build(raw, out, "--split", FRACTION)
    assert "(1 already there)" in result.stderr
    grown = json.loads((out / SPLITS_FILE).read_text())["stories"]
    assert grown == {"pioneers": "train", "lighthouse": "test"}
    again = _build(raw, out)  # no --split: no split, as the command asked
    assert "splits of an earlier run (splits.json) are removed" in again.stderr
    assert not (out / SPLITS_FILE).exists() and len(load_stories(out, "train")) == 2
    with pytest.raises(UsageError, match="has no split 'test'"):
        load_stories(out, "test")


@pytest.mark.parametrize("value", ["0", "1", "1.5"])
def test_build_refuses_a_split_outside_zero_to_one(tmp_path, value):
    result = run_cli("build", str(tmp_path), "--out", str(tmp_path / "o"), "--split", value)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--split" in result.stderr and not (tmp_path / "o").exists()
