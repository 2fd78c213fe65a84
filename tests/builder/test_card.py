"""The dataset card a build writes (OUT/README.md), and build --push-to-hub.

Real builds of the example photographs through the CLI; the card's YAML is read with
huggingface_hub's and datasets' own parsers (what the Hub reads), its prose checked against the
folder's counts, and the push goes through huggingface_hub's client to a small Hub on loopback
(tests/data/hub_server.py), whose files are read back through our loader.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip(
    "cv2", reason="the builder's perception needs OpenCV: pip install 'storyreasoning[vision]'"
)

from storyreasoning.data import load_stories
from storyreasoning.data.card import dataset_card, gather, write_dataset_card
from storyreasoning.data.folder import frame_files
from storyreasoning.data.hub import CARD_MARKER

from ..conftest import run_cli
from ..data.hub_server import FakeHub

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "stories"
FRACTION = "0.68"  # pioneers is train, lighthouse test (see test_split.py)


def _raw(root: Path, names=("lighthouse", "pioneers")) -> Path:
    for story in names:
        (root / story).mkdir(parents=True, exist_ok=True)
        for frame in frame_files(EXAMPLES / story):
            shutil.copy(frame, root / story / frame.name)
    return root


def _build(raw: Path, out: Path, *extra: str, env: dict | None = None):
    return run_cli("build", str(raw), "--out", str(out), "--faces", "none", *extra, env=env)


def _front(card: str) -> dict:
    import yaml

    assert card.startswith("---\n")
    return yaml.safe_load(card[4:].split("\n---\n", 1)[0])


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("card")
    out = tmp / "built"
    result = _build(_raw(tmp / "raw"), out, "--split", FRACTION)
    assert result.returncode == 0, result.stderr
    return out


def test_the_card_says_what_the_folder_holds(built):
    card = (built / "README.md").read_text()
    front = _front(card)
    assert front["license"] == "unknown" and front["task_categories"] == ["image-text-to-text"]
    assert {"storyreasoning", "baseline"} <= set(front["tags"]) and front["size_categories"] == ["n<1K"]
    assert front["configs"] == [{"config_name": "default", "data_files": [
        {"split": "train", "path": "data/train-*"}, {"split": "test", "path": "data/test-*"}]}]  # fmt: skip
    counts = {s["name"]: s["num_examples"] for s in front["dataset_info"]["splits"]}
    assert counts == {"train": 1, "test": 1}
    # huggingface_hub reads the same metadata
    from huggingface_hub import DatasetCard

    hub_card = DatasetCard.load(built / "README.md")
    assert hub_card.data.license == "unknown" and len(hub_card.data.configs[0]["data_files"]) == 2
    # the counts table, from the stories themselves
    for split in ("train", "test"):
        stories = load_stories(built, split)
        frames = sum(s.frame_count for s in stories)
        characters = sum(len({c.id for i in s.cot.images for c in i.characters}) for s in stories)
        assert f"| {split} | {len(stories)} | {frames} | {characters} |" in card
    assert "| all | 2 | 7 |" in card
    # how it was built: the template writer named a baseline, the perception, the validator, the source
    assert "> **Baseline texts.**" in card and "not written by a language model" in card
    assert "OpenCV Haar cascades" in card and "opencv " in card
    assert "stories that failed it were left out" in card and "image folders (`raw`)" in card
    assert f"`build --split {FRACTION}`" in card and "50.0 % train" in card
    assert "eprint={2505.10292}" in card and card.rstrip().endswith(CARD_MARKER)
    assert str(built.parent) not in card  # no local path goes public
    for story in load_stories(built):  # and every story's record says it is a baseline's
        assert story.meta["build"]["writer"] == "template" and story.meta["build"]["baseline"] is True


def test_the_card_is_rewritten_on_resume_and_someone_elses_is_kept(built, tmp_path):
    out = tmp_path / "built"
    shutil.copytree(built, out)
    raw = _raw(tmp_path / "raw", ("pioneers",))
    result = _build(raw, out, "--split", FRACTION)  # resumed: nothing new, the card afresh
    assert result.returncode == 0, result.stderr
    card = (out / "README.md").read_text()
    assert card.count(CARD_MARKER) == 1 and card.count("\n# built\n") == 1
    assert card == (built / "README.md").read_text()
    # without --split: the card says so and its YAML has one split
    assert _build(raw, out).returncode == 0
    card = (out / "README.md").read_text()
    assert "There is no test split" in card
    assert _front(card)["configs"][0]["data_files"] == [{"split": "train", "path": "data/train-*"}]
    mine = "# my own card\n"
    (out / "README.md").write_text(mine)
    kept = _build(raw, out)
    assert kept.returncode == 0 and "a card storyreasoning did not write: left as it is" in kept.stderr
    assert (out / "README.md").read_text() == mine


def test_a_license_given_to_a_resumed_build_goes_into_the_card(built, tmp_path):
    out = tmp_path / "built"
    shutil.copytree(built, out)
    assert (
        "set it before you publish (`storyreasoning build … --license ID`" in (out / "README.md").read_text()
    )
    result = _build(_raw(tmp_path / "raw"), out, "--split", FRACTION, "--license", "cc-by-4.0")
    assert result.returncode == 0, result.stderr  # operational: the build resumes, nothing is rebuilt
    card = (out / "README.md").read_text()
    assert _front(card)["license"] == "cc-by-4.0"
    from huggingface_hub import DatasetCard

    assert DatasetCard.load(out / "README.md").data.license == "cc-by-4.0"
    assert "`cc-by-4.0` (set with `storyreasoning build --license`)" in card and "Not set" not in card
    assert card.replace("cc-by-4.0", "unknown") != (built / "README.md").read_text()  # the prose changed too
    bad = _build(_raw(tmp_path / "raw"), out, "--license", "CC BY 4.0")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--license 'CC BY 4.0' is not a license id as the Hub names them" in bad.stderr


def test_the_card_names_stories_kept_although_invalid_and_the_models_of_every_entry(built, tmp_path):
    out = tmp_path / "built"
    shutil.copytree(built, out)
    meta = json.loads((out / "lighthouse" / "meta.json").read_text())
    meta["build"]["well_structured"] = False
    (out / "lighthouse" / "meta.json").write_text(json.dumps(meta))
    settings = json.loads((out / "settings.json").read_text())
    (out / "settings.json").write_text(json.dumps({**settings, "keep_invalid": True}))
    chat = {
        "writer": {"writer": "chat", "endpoint": {"backend": "openai", "model": "Qwen/Qwen2.5-VL-72B-Instruct"},
                   "sampling": {"temperature": 0.7}, "max_tries": 4,
                   "models": {"language_model": {"id": "Qwen/Qwen2.5-VL-72B-Instruct", "revision": None}}},
        "perceiver": {"perceiver": "models", "detector": "facebook/detr-resnet-50",
                      "models": {"detector": {"id": "facebook/detr-resnet-50", "revision": "1d5f47bd3bdd2c4b"}}},
        "settings": settings,
    }  # fmt: skip
    (out / "build.json").write_text(json.dumps({"entries": [{"entry": 0, **chat}]}))
    assert write_dataset_card(out, repo_id="me/stories") == out / "README.md"
    card = (out / "README.md").read_text()
    assert (
        "1 of 2 stories (50.0 %) were kept although not well-structured (`--keep-invalid`): `lighthouse`"
        in card
    )
    assert "**Writer: the language model `Qwen/Qwen2.5-VL-72B-Instruct`**" in card
    assert "| language_model | Qwen/Qwen2.5-VL-72B-Instruct | not reported by the endpoint |" in card
    assert "| detector | facebook/detr-resnet-50 | 1d5f47bd3bdd2c4b |" in card
    assert 'load_dataset("me/stories")' in card
    # a pure function of the facts: the same facts, the same card
    facts = gather(out)
    assert dataset_card(facts, repo_id="me/stories") == card


def test_build_push_to_hub_uploads_the_splits_and_the_card(tmp_path):
    raw, out = _raw(tmp_path / "raw"), tmp_path / "built"
    with FakeHub() as hub:
        result = _build(raw, out, "--split", FRACTION, "--push-to-hub", "me/built-stories", env=hub.env())
        assert result.returncode == 0, result.stderr
        assert "pushed" in result.stderr and "me/built-stories" in result.stderr
        repo = hub.repos["me/built-stories"]
    assert repo["type"] == "dataset" and repo["private"] is False
    assert repo["files"]["README.md"].decode() == (out / "README.md").read_text()
    assert 'load_dataset("me/built-stories")' in (out / "README.md").read_text()
    received = tmp_path / "received"
    for path, data in repo["files"].items():
        (received / path).parent.mkdir(parents=True, exist_ok=True)
        (received / path).write_bytes(data)
    for split in ("train", "test"):
        ours, theirs = load_stories(out, split), load_stories(received, split)
        assert ours.ids() == theirs.ids()
        for a, b in zip(ours, theirs, strict=True):
            assert [f.bytes() for f in a.frames] == [f.bytes() for f in b.frames]
            assert (a.cot_text, a.story_text, a.frame_meta) == (b.cot_text, b.story_text, b.frame_meta)
    datasets = pytest.importorskip("datasets")
    view = datasets.load_dataset(str(received), cache_dir=str(tmp_path / "cache"))
    assert {k: v.num_rows for k, v in view.items()} == {"train": 1, "test": 1}


def test_a_push_that_cannot_happen_is_said_before_the_build(tmp_path):
    raw, out = _raw(tmp_path / "raw", ("pioneers",)), tmp_path / "built"
    offline = _build(raw, out, "--push-to-hub", "me/stories")
    assert offline.returncode == 1 and "Traceback" not in offline.stderr
    assert "HF_HUB_OFFLINE is set, so nothing can be pushed to me/stories" in offline.stderr
    assert not any(out.glob("*/cot.md"))  # no story was built
    bad = _build(raw, out, "--push-to-hub", "stories")
    assert bad.returncode == 2 and "must be owner/name" in bad.stderr
    alone = _build(raw, out, "--private")
    assert alone.returncode == 2 and "--private and --token are for --push-to-hub REPO_ID" in alone.stderr
