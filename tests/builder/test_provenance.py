"""Honest provenance: what built each story, resumes that keep to it (or say they mix), the person rule.

Real frames (examples/stories), the real CLI in a subprocess, real model folders built
offline (the tiny DETR), a real hub-cache layout, real loopback servers for the writer.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip(
    "cv2", reason="the builder's perception needs OpenCV: pip install 'storyreasoning[vision]'"
)

from storyreasoning.builder.pipeline import (
    MANIFEST,
    SKIPPED,
    build_dataset,
    check_resume,
    find_stories,
    frame_meta,
    read_entries,
)
from storyreasoning.builder.provenance import (
    differences,
    folder_revision,
    model_revision,
    models_in,
)
from storyreasoning.builder.raw import RawStory
from storyreasoning.builder.settings import BuildSettings
from storyreasoning.builder.writers import ChatWriter, TemplateWriter
from storyreasoning.data import load_stories
from storyreasoning.data.folder import frame_files
from storyreasoning.errors import UsageError
from storyreasoning.models import hub_commit
from storyreasoning.settings import data_record, record
from storyreasoning.tell.base import Sampling
from storyreasoning.tell.baseline import BaselineTeller
from storyreasoning.tell.openai import OpenAITeller

from ..conftest import require_transformers, run_cli
from ..tell.servers import FakeServer
from .reading_model import answer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "stories"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def copy_story(name: str, root: Path) -> Path:
    (root / name).mkdir(parents=True)
    for frame in frame_files(EXAMPLES / name):
        shutil.copy(frame, root / name / frame.name)
    return root


@pytest.fixture(scope="module")
def perceiver():
    return BaselineTeller()


class CountingPerceiver(BaselineTeller):
    """The baseline's perception, counting the stories it is asked to see."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def see(self, frames):
        self.seen.append(Path(frames[0]).parent.name)
        return super().see(frames)


# -- revisions ------------------------------------------------------------------------------------------------


def test_a_model_folder_file_and_hub_cache_each_have_a_revision(tmp_path, monkeypatch):
    require_transformers()
    from storyreasoning.builder.perceive import ModelPerceiver
    from storyreasoning.testing import build_tiny_detector

    folder = build_tiny_detector(tmp_path / "detr", labels=("person",))
    weights = folder / "model.safetensors"
    config_sha = hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()
    revision = folder_revision(folder)
    assert (
        revision == f"config.json sha256 {config_sha[:12]}; model.safetensors {weights.stat().st_size} bytes"
    )
    # the perceiver names its model and that revision; a rewritten config is another revision
    described = ModelPerceiver(str(folder), threshold=0.0).describe()
    assert described["models"] == {"detector": {"id": str(folder), "revision": revision}}
    assert models_in({"perceiver": described}) == {
        "perceiver/detector": {"id": str(folder), "revision": revision}
    }
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_queries": 9}))
    assert model_revision(folder) != revision
    assert model_revision(weights) == f"sha256 {hashlib.sha256(weights.read_bytes()).hexdigest()}"
    # a hub id: the commit the cache holds for it (what transformers loads offline)
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    snapshot = cache / "models--someone--tiny-detr" / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    shutil.copy(folder / "config.json", snapshot / "config.json")
    (cache / "models--someone--tiny-detr" / "refs").mkdir()
    (cache / "models--someone--tiny-detr" / "refs" / "main").write_text(COMMIT)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert hub_commit("someone/tiny-detr") == COMMIT and model_revision("someone/tiny-detr") == COMMIT
    assert model_revision("someone/not-cached") is None


@pytest.mark.slow  # heavy end-to-end run: the slow pass (.ci/run) keeps it
def test_a_build_from_the_hub_cache_records_the_commit_it_loaded(tmp_path):
    """The CLI loads a detector by hub id from a cache (offline); build.json and every story's meta.json
    name it with the commit transformers read it from."""
    require_transformers()
    from storyreasoning.testing import build_tiny_detector

    folder = build_tiny_detector(tmp_path / "detr", labels=("person",))
    repo = tmp_path / "hub" / "models--someone--tiny-detr"
    shutil.copytree(folder, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    raw = copy_story("lighthouse", tmp_path / "raw")
    out = tmp_path / "built"
    result = run_cli(
        "build", str(raw), "--out", str(out), "--detector", "someone/tiny-detr", "--detector-threshold", "0",
        "--faces", "none", "--no-require-person", "--device", "cpu",
        env={"HF_HUB_CACHE": str(tmp_path / "hub")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (entry,) = read_entries(out)
    assert entry["models"] == {"perceiver/detector": {"id": "someone/tiny-detr", "revision": COMMIT}}
    assert entry["settings"]["detector"] == "someone/tiny-detr" and "limit" not in entry["settings"]
    (sample,) = list(load_stories(str(out)))
    build = sample.meta["build"]
    assert build["entry"] == 0 and build["models"] == entry["models"]
    assert build["settings"] == entry["settings"]


# -- resuming --------------------------------------------------------------------------------------------------


def test_a_resume_with_other_settings_is_refused_naming_each_unless_mixed(tmp_path):
    raw = copy_story("pioneers", tmp_path / "raw")
    out = tmp_path / "built"
    base = ("build", str(raw), "--out", str(out), "--faces", "none")
    first = run_cli(*base)
    assert first.returncode == 0, first.stderr
    recorded = (out / MANIFEST).read_bytes()
    refused = run_cli(*base, "--reid-threshold", "0.8", "--max-new-tokens", "100")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    line = refused.stderr.strip()
    assert "\n" not in line, line
    assert "--max-new-tokens 8192 then, 100 now" in line and "--reid-threshold 0.85 then, 0.8 now" in line
    assert "--allow-mixed" in line
    # what only changes how the build runs or which stories it keeps never blocks a resume
    same = run_cli(
        *base, "--limit", "5", "--concurrency", "2", "--keep-invalid", "--max-tries", "2", "--retries", "1",
        "--no-require-person", "--min-frames", "1", "--device", "cpu",
    )  # fmt: skip
    assert same.returncode == 0 and "(1 already there)" in same.stderr, same.stderr
    assert (out / MANIFEST).read_bytes() == recorded  # build.json is not rewritten by a resume
    # --allow-mixed: the new settings become entry 1, and the stories they build say so
    copy_story("lighthouse", raw)
    mixed = run_cli(*base, "--reid-threshold", "0.8", "--allow-mixed")
    assert mixed.returncode == 0, mixed.stderr
    entries = read_entries(out)
    assert [(e["entry"], e["settings"]["reid_threshold"]) for e in entries] == [(0, 0.85), (1, 0.8)]
    meta = {s.story_id: s.meta["build"] for s in load_stories(str(out))}
    assert meta["pioneers"]["entry"] == 0 and meta["pioneers"]["settings"]["reid_threshold"] == 0.85
    assert meta["lighthouse"]["entry"] == 1 and meta["lighthouse"]["settings"]["reid_threshold"] == 0.8
    # either recorded set continues the mixed build without --allow-mixed
    assert run_cli(*base).returncode == 0
    assert run_cli(*base, "--reid-threshold", "0.8").returncode == 0
    assert len(read_entries(out)) == 2


def test_an_older_build_record_of_a_model_folder_as_typed_resumes(tmp_path, monkeypatch):
    """build.json of the version before held ``--detector det`` as typed; this one records it absolute:
    the same detector, read from the build's folder, resumes; another refuses."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "det").mkdir()
    (tmp_path / "other").mkdir()
    settings = BuildSettings(frames=Path("frames"), out=Path("out"), detector="det")
    older = {**data_record(settings), "detector": "det"}
    assert data_record(settings)["detector"] == str(tmp_path / "det")
    shutil.copytree(EXAMPLES / "lighthouse", tmp_path / "out" / "lighthouse")
    (tmp_path / "out" / MANIFEST).write_text(json.dumps({"entries": [{"entry": 0, "settings": older}]}))
    check_resume(tmp_path / "out", {"settings": data_record(settings)})
    other = BuildSettings(frames=Path("frames"), out=Path("out"), detector="other")
    with pytest.raises(UsageError, match=r"--detector 'det' then, '[^']*/other' now"):
        check_resume(tmp_path / "out", {"settings": data_record(other)})


def test_a_changed_model_refuses_a_resume_and_another_server_with_the_same_model_does_not(
    tmp_path, perceiver
):
    raw = copy_story("lighthouse", tmp_path / "raw")
    stories, _ = find_stories(raw)
    out = tmp_path / "built"
    build_dataset(stories, out, perceiver=perceiver, writer=TemplateWriter())
    with pytest.raises(UsageError, match=r"perceiver detector\.max_side 400 then, 300 now") as caught:
        build_dataset(stories, out, perceiver=BaselineTeller(max_side=300), writer=TemplateWriter())
    assert "\n" not in str(caught.value)

    def writer(url: str) -> ChatWriter:
        return ChatWriter(OpenAITeller(url, retries=0), sampling=Sampling(), max_tries=1)

    chat = tmp_path / "chat"
    with FakeServer(respond=answer, models=("org/model-a",)) as server:
        assert build_dataset(stories, chat, perceiver=perceiver, writer=writer(server.url)).built == 1
    with FakeServer(models=("org/model-a",)) as other:  # another port, the same model
        check_resume(chat, {"writer": writer(other.url).describe()})
    with FakeServer(models=("org/model-b",)) as other:
        with pytest.raises(UsageError, match=r"writer endpoint\.model 'org/model-a' then, 'org/model-b' now"):
            check_resume(chat, {"writer": writer(other.url).describe()})


def test_a_folder_with_no_story_yet_starts_afresh(tmp_path, perceiver):
    """A first run that built nothing (every story failed) does not hold the next to its settings."""
    raw = copy_story("lighthouse", tmp_path / "raw")
    stories, _ = find_stories(raw)
    out = tmp_path / "built"
    with FakeServer("status", status=500) as server:
        writer = ChatWriter(OpenAITeller(server.url, retries=0), sampling=Sampling(), max_tries=1)
        assert build_dataset(stories, out, perceiver=perceiver, writer=writer).failed == ["lighthouse"]
    report = build_dataset(stories, out, perceiver=perceiver, writer=TemplateWriter())
    assert report.built == 1
    (entry,) = read_entries(out)
    assert entry["writer"]["writer"] == "template"


def test_a_build_record_of_an_earlier_version_is_its_first_entry(tmp_path, perceiver):
    raw = copy_story("lighthouse", tmp_path / "raw")
    stories, _ = find_stories(raw)
    out = tmp_path / "built"
    build_dataset(stories, out, perceiver=perceiver, writer=TemplateWriter())
    (entry,) = read_entries(out)
    legacy = {"writer": entry["writer"], "perceiver": entry["perceiver"], "settings": {}}
    (out / MANIFEST).write_text(json.dumps(legacy))
    assert read_entries(out) == [{"entry": 0, **legacy}]
    check_resume(out, {"writer": TemplateWriter().describe(), "perceiver": perceiver.describe()})
    with pytest.raises(UsageError, match=r"writer writer 'template' then, 'half' now"):
        check_resume(out, {"writer": {**TemplateWriter().describe(), "writer": "half"}})
    (out / MANIFEST).write_text("[1, 2]")
    with pytest.raises(UsageError, match="is not a build record; remove it"):
        read_entries(out)


def test_operational_settings_are_declared_on_the_fields(tmp_path):
    settings = BuildSettings(frames=tmp_path, out=tmp_path / "o", writer="chat", endpoint="http://x:1")
    kept = data_record(settings)
    for name in ("out", "frames", "limit", "concurrency", "allow_mixed", "require_person", "keep_invalid",
                 "endpoint", "timeout", "deadline", "retries", "max_tries", "device", "min_frames"):  # fmt: skip
        assert name not in kept, name
    for name in ("writer", "temperature", "seed", "max_new_tokens", "served_model", "detector", "faces"):
        assert name in kept, name
    assert "api_key" not in record(settings)  # a secret is never recorded at all
    assert (
        record(settings)["concurrency"] == 4
    )  # the default resolved: 4 for the chat writer, 1 for templates
    assert BuildSettings(frames=tmp_path, out=tmp_path).stories_at_once == 1


def test_differences_name_each_leaf_and_ignore_what_says_how_it_ran():
    old = {"a": {"b": 1, "device": "cpu"}, "c": [1, 2], "gone": None}
    new = {"a": {"b": 2, "device": "cuda"}, "c": [1, 2], "new": "x"}
    assert differences(old, new, ignore={"device"}) == [("a.b", 1, 2), ("new", None, "x")]


# -- the person rule ---------------------------------------------------------------------------------------------


def test_a_story_without_a_person_is_skipped_noted_and_not_perceived_again(tmp_path):
    raw = copy_story("lighthouse", copy_story("cat-and-coffee", tmp_path / "raw"))
    stories, _ = find_stories(raw)
    out = tmp_path / "built"
    seer, said = CountingPerceiver(), []
    first = build_dataset(stories, out, perceiver=seer, writer=TemplateWriter(), say=said.append)
    assert first.built == 1 and first.skipped_no_person == 1 and not first.failed
    assert said == ["cat-and-coffee: no person in any frame; skipped (--no-require-person keeps it)"]
    (note,) = [json.loads(line) for line in (out / SKIPPED).read_text().splitlines()]
    assert note["story_id"] == "cat-and-coffee" and note["entry"] == 0 and note["frames"] == 3
    assert not (out / "cat-and-coffee").exists() and not (out / "errors.jsonl").exists()
    # resumed with the same settings: neither story is perceived again
    again = build_dataset(stories, out, perceiver=seer, writer=TemplateWriter())
    assert again.skipped_no_person == 1 and again.skipped_done == 1 and again.built == 0
    assert sorted(seer.seen) == ["cat-and-coffee", "lighthouse"]
    # without the rule (an operational choice: the same build) the story is perceived and built
    kept = build_dataset(stories, out, perceiver=seer, writer=TemplateWriter(), require_person=False)
    assert kept.built == 1 and seer.seen[-1] == "cat-and-coffee"
    cat = next(s for s in load_stories(str(out)) if s.story_id == "cat-and-coffee")
    assert cat.meta["build"]["people"] == [0, 0, 0] and cat.meta["build"]["entry"] == 0


def test_skipped_stories_are_perceived_again_by_other_settings(tmp_path):
    raw = copy_story("lighthouse", copy_story("cat-and-coffee", tmp_path / "raw"))
    stories, _ = find_stories(raw)
    out = tmp_path / "built"
    build_dataset(stories, out, perceiver=CountingPerceiver(), writer=TemplateWriter())
    other = CountingPerceiver()
    other.background_threshold = 0.7  # another perception: its verdict on people may differ
    report = build_dataset(stories, out, perceiver=other, writer=TemplateWriter(), allow_mixed=True)
    assert other.seen == ["cat-and-coffee"] and report.entry == 1 and report.skipped_no_person == 1
    notes = [json.loads(line)["entry"] for line in (out / SKIPPED).read_text().splitlines()]
    assert notes == [0, 1]


# -- per-frame records ---------------------------------------------------------------------------------------------


def test_frame_meta_keeps_group_source_and_scene():
    plain = RawStory("s", [Path("a/01.png"), Path("a/02.png")])
    assert frame_meta(plain) == [{"group": "s", "source": "a/01.png"}, {"group": "s", "source": "a/02.png"}]
    cut = RawStory("film-3", [Path("k/1.png")], sources=["film.mp4@12.40s"], group="film.mp4")
    cut.scene = 3
    assert frame_meta(cut) == [{"group": "film.mp4", "source": "film.mp4@12.40s", "scene": 3}]
