"""The studio opens only the datasets and runs it was started with.

A run's ``manifest.json`` names the dataset the run was told from. The studio shows
that name and matches it, as text, against its own ``--dataset`` sources; it never
opens it. A run whose manifest names another program's folder, or the file-system
root, gets no frames and no reference, quickly, and the folder it names never becomes
a dataset of the studio.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from storyreasoning.studio.config import DatasetSource, StudioConfig

from .conftest import EXAMPLES, running_studio
from .test_server import call, post_json


def _run_told_from(studio_runs: Path, runs: Path, name: str, source: str) -> None:
    """A copy of the baseline run whose manifest says it was told from ``source``."""
    folder = runs / name
    shutil.copytree(studio_runs / "baseline", folder)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    manifest["dataset"] = {"source": source, "split": None}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


@pytest.fixture(scope="module")
def shared_folder(tmp_path_factory) -> Path:
    """A folder other programs share: their own folders, and a dataset nobody gave the studio."""
    shared = tmp_path_factory.mktemp("shared")
    for program in ("fonts", "mime", "zoneinfo"):
        (shared / program).mkdir()
        (shared / program / "index.txt").write_text("not the studio's\n", encoding="utf-8")
    shutil.copytree(EXAMPLES, shared / "private-stories")
    return shared


@pytest.fixture(scope="module")
def confined_studio(studio_runs, shared_folder, tmp_path_factory):
    runs = tmp_path_factory.mktemp("confined-runs")
    _run_told_from(studio_runs, runs, "shared-folder", str(shared_folder))
    _run_told_from(studio_runs, runs, "shared-dataset", str(shared_folder / "private-stories"))
    _run_told_from(studio_runs, runs, "root", "/")
    _run_told_from(studio_runs, runs, "not-text", "")
    (runs / "not-text" / "manifest.json").write_text(
        json.dumps({"dataset": {"source": {"path": "/"}, "split": ["a"]}}), encoding="utf-8"
    )
    # the configured dataset, spelled otherwise in the manifest: still recognised, as text
    _run_told_from(studio_runs, runs, "respelled", f"{EXAMPLES.parent}/./{EXAMPLES.name}/")
    config = StudioConfig(datasets=[DatasetSource("stories", str(EXAMPLES))], runs=runs)
    with running_studio(config) as server:
        yield server.url


@pytest.mark.parametrize("run", ["shared-folder", "shared-dataset", "root", "not-text"])
def test_a_manifest_naming_another_folder_is_shown_never_opened(confined_studio, shared_folder, run):
    started = time.monotonic()
    story = call(f"{confined_studio}/api/runs/{run}/stories/lighthouse")
    assert time.monotonic() - started < 5  # nothing was walked
    assert story.status == 200, story.body
    detail = story.json()
    assert detail["frames"] is None and detail["reference"] is None
    assert detail["raw"].startswith("<think>")  # the run's own output is still shown
    assert str(shared_folder) not in story.body.decode()
    # the folder never became a dataset of this studio
    datasets = call(f"{confined_studio}/api/datasets").json()["datasets"]
    assert [d["name"] for d in datasets] == ["stories"]
    assert "from_run" not in datasets[0]
    assert [d["name"] for d in call(f"{confined_studio}/api/config").json()["datasets"]] == ["stories"]
    for name in ("shared", shared_folder.name, "private-stories", "root"):
        assert call(f"{confined_studio}/api/datasets/{name}/stories").status == 404


def test_the_manifest_is_shown_as_it_is(confined_studio, shared_folder):
    runs = {run["name"]: run for run in call(f"{confined_studio}/api/runs").json()["runs"]}
    assert runs["shared-folder"]["manifest"]["dataset"]["source"] == str(shared_folder)
    assert runs["root"]["manifest"]["dataset"]["source"] == "/"


def test_a_configured_dataset_is_recognised_in_another_spelling(confined_studio):
    detail = call(f"{confined_studio}/api/runs/respelled/stories/lighthouse").json()
    assert detail["reference"] == {"dataset": "stories", "split": None, "story_id": "lighthouse"}
    frame = call(confined_studio + detail["frames"][0]["url"])
    assert frame.body == (EXAMPLES / "lighthouse" / "01.png").read_bytes()


def test_the_command_names_the_datasets_runs_were_told_from(studio_runs):
    from storyreasoning.studio.catalog import Datasets, Runs
    from storyreasoning.studio.commands import unshown_datasets

    runs = Runs(studio_runs)
    assert unshown_datasets(runs, Datasets([])) == [
        f"runs baseline, reference were told from {EXAMPLES}: add --dataset {EXAMPLES} to see the frames"
    ]
    assert unshown_datasets(runs, Datasets([DatasetSource("stories", str(EXAMPLES))])) == []


def test_a_runs_dataset_is_found_by_the_path_it_resolved_as_text(tmp_path, monkeypatch):
    """A run told from ``data`` in another folder records the path it resolved: that path names the
    configured dataset, where its source as typed does not; neither is opened."""
    from storyreasoning.studio.catalog import Datasets

    folder = tmp_path / "stories"
    folder.mkdir()
    datasets = Datasets([DatasetSource("mine", str(folder))])
    monkeypatch.chdir(tmp_path.parent)  # "data" typed elsewhere means nothing here
    told = {"dataset": {"source": "data", "split": "test", "path": str(folder.resolve())}}
    assert datasets.find_recorded(told) == ("mine", "test")
    assert datasets.find_recorded({"dataset": {"source": "data"}}) == (None, None)
    assert datasets.find_recorded({"dataset": {"source": str(folder)}}) == ("mine", None)
    assert datasets.find_recorded({"dataset": ["not", "an", "object"]}) == (None, None)


def test_run_folders_left_out_for_their_names_are_said(tmp_path):
    from storyreasoning.studio.catalog import Runs
    from storyreasoning.studio.commands import unnamed_runs

    for name in ("good-run", "a b", "run:x", "ünï"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text("{}")
    (tmp_path / "not a run").mkdir()  # no manifest: not a run, nothing to say
    runs = Runs(tmp_path)
    assert list(runs.listing()) == ["good-run"]
    (line,) = unnamed_runs(runs)
    assert line.startswith("not shown: run folders 'a b', 'run:x', 'ünï'; a run's folder name is letters")
    assert unnamed_runs(Runs(tmp_path / "good-run")) == []


def test_a_dataset_frame_named_outside_its_folder_is_never_served(tmp_path):
    """A parquet row may give a frame by path alone: one outside the dataset's folder (this machine's
    private image) is refused in the page, the story's detail and the export, never read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..data.fixtures import image_bytes, lighthouse_texts

    secret = tmp_path / "private" / "photo.png"
    secret.parent.mkdir()
    secret.write_bytes(image_bytes(64, 48, 9))
    cot, story = lighthouse_texts()
    rows = [
        {"story_id": sid, "images": [{"bytes": None, "path": path}], "chain_of_thought": cot, "story": story}
        for sid, path in (("absolute", str(secret)), ("dotdot", "../private/photo.png"))
    ]
    (tmp_path / "ds").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "ds" / "train.parquet")
    config = StudioConfig(datasets=[DatasetSource("ds", str(tmp_path / "ds"))])
    with running_studio(config) as server:
        for sid in ("absolute", "dotdot"):
            frame = call(f"{server.url}/api/datasets/ds/stories/{sid}/frames/0")
            detail = call(f"{server.url}/api/datasets/ds/stories/{sid}")
            export = post_json(f"{server.url}/api/export", {"dataset": "ds", "story_id": sid})
            for answer in (frame, detail, export):
                assert answer.status == 400, (sid, answer.status)
                assert secret.read_bytes() not in answer.body
                assert "outside the dataset's folder" in answer.json()["error"]
