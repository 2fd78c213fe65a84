"""data push: a dataset as StoryReasoning parquet per split with its card, read back equal, and uploaded.

The upload runs huggingface_hub's real client against a small Hub on loopback (tests/data/hub_server.py:
create_repo, the card's YAML check, preupload, commit), so what arrives is read back through our own
loader. The real Hub is out of reach here; its refusals (offline mode, no token, a refused token, no
network) are each checked to end in one line naming the fix.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("pyarrow", reason="parquet needs pyarrow: pip install 'storyreasoning[data]'")
pytest.importorskip(
    "huggingface_hub", reason="pushing needs huggingface_hub: pip install 'storyreasoning[data]'"
)

from storyreasoning.data import load_stories, write_folders
from storyreasoning.data.hub import CARD_MARKER, stage
from storyreasoning.data.splits import split_folder_dataset
from storyreasoning.errors import UsageError

from ..conftest import run_cli
from ..tell.servers import closed_url
from .fixtures import fixture_samples
from .hub_server import FakeHub


@pytest.fixture
def folder(tmp_path) -> Path:
    """Five story folders of real PNG and JPEG frames, two of them from one film, split by group."""
    root = tmp_path / "stories"
    write_folders(fixture_samples(5), root)
    assigned = split_folder_dataset(root, 0.5)
    assert set(assigned.values()) == {"train", "test"}  # both splits hold stories at this fraction
    return root


def _same(a, b) -> None:
    """Two datasets hold the same stories, row for row: ids, frames byte for byte, texts, frame_meta."""
    assert a.ids() == b.ids()
    for x, y in zip(a, b, strict=True):
        assert [f.bytes() for f in x.frames] == [f.bytes() for f in y.frames]
        assert (x.cot_text, x.story_text, x.frame_meta) == (y.cot_text, y.story_text, y.frame_meta)


def _round_trip(source: Path, staged: Path) -> None:
    for split in load_stories(source).splits:
        _same(load_stories(source, split), load_stories(staged, split))


def test_stage_writes_the_published_layout_that_reads_back_equal(folder, tmp_path):
    datasets = pytest.importorskip("datasets")
    loaded = load_stories(folder)
    splits = {name: load_stories(folder, name) for name in loaded.splits}
    out = tmp_path / "upload"
    counts = stage(splits, out, card=None, stories_per_shard=2)
    assert counts == {name: len(s) for name, s in splits.items()}
    shards = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet"))
    assert all(p.startswith(("data/train-", "data/test-")) for p in shards)
    _round_trip(folder, out)
    # the published columns, and the card's YAML maps each split to its shards for datasets itself
    import pyarrow.parquet as pq

    names = pq.ParquetFile(out / shards[0]).schema_arrow.names
    assert names == ["story_id", "images", "frame_count", "chain_of_thought", "story", "frame_meta"]
    hub_view = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    assert {k: v.num_rows for k, v in hub_view.items()} == counts
    # a folder already holding something is refused before anything is written
    with pytest.raises(UsageError, match="not empty"):
        stage(splits, out, card=None)


def test_dry_run_writes_what_would_go_up_with_the_folders_card(folder, tmp_path):
    card = '---\nlicense: cc-by-4.0\n---\n\n# my stories\n\nload_dataset("OWNER/NAME")\n' + CARD_MARKER + "\n"
    (folder / "README.md").write_text(card)
    out = tmp_path / "upload"
    result = run_cli("data", "push", str(folder), "me/stories", "--dry-run", "--out", str(out))
    assert result.returncode == 0, result.stderr
    listed = dict(line.split("\t") for line in result.stdout.splitlines())
    assert "README.md" in listed and any(p.startswith("data/test-") for p in listed)
    assert all(int(size) == (out / path).stat().st_size for path, size in listed.items())
    # the dataset folder's own card goes up, with the repository named where a generated card left it open
    assert (out / "README.md").read_text() == card.replace("OWNER/NAME", "me/stories")
    _round_trip(folder, out)
    # without a card of its own, a generated one (its YAML lists the splits)
    (folder / "README.md").unlink()
    plain = tmp_path / "plain"
    assert (
        run_cli("data", "push", str(folder), "me/stories", "--dry-run", "--out", str(plain)).returncode == 0
    )
    text = (plain / "README.md").read_text()
    assert "- split: test\n    path: data/test-*" in text and "- split: train" in text


def test_wrong_inputs_are_one_line(folder, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    cases = [
        (("--dry-run", "--out", str(tmp_path / "full")), "exists and is not empty"),
        (("--dry-run", "--card", str(tmp_path / "none.md")), "is not a file"),
    ]
    for extra, message in cases:
        result = run_cli("data", "push", str(folder), "me/stories", *extra)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    bad = run_cli("data", "push", str(folder), "not-a-repo-id", "--dry-run")
    assert bad.returncode == 2 and "must be owner/name" in bad.stderr


def test_a_card_that_is_not_utf8_is_one_line_naming_it(folder, tmp_path):
    card = tmp_path / "card.md"
    card.write_bytes(b"\xff\xfe not utf-8 \x80")
    out = tmp_path / "staged"
    result = run_cli(
        "data", "push", str(folder), "me/stories", "--dry-run", "--out", str(out), "--card", str(card)
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: the dataset card {card} is not UTF-8 text (invalid start byte); save it as UTF-8 (a README.md)"
    ]
    assert not out.exists()  # refused before anything was written


def test_the_hub_out_of_reach_is_one_line_naming_the_fix(folder, tmp_path):
    out = tmp_path / "upload"
    offline = run_cli("data", "push", str(folder), "me/stories", "--out", str(out))
    assert offline.returncode == 1 and "Traceback" not in offline.stderr
    assert "HF_HUB_OFFLINE is set, so nothing can be pushed to me/stories; unset it" in offline.stderr
    assert not out.exists()  # said before any shard was written
    no_token = run_cli(
        "data", "push", str(folder), "me/stories",
        env={"HF_HUB_OFFLINE": "0", "HF_TOKEN": "", "HF_HOME": str(tmp_path / "hf-home")},
    )  # fmt: skip
    assert no_token.returncode == 1 and "Traceback" not in no_token.stderr
    assert "no Hugging Face token to push me/stories with: set HF_TOKEN, pass --token" in no_token.stderr
    unreachable = run_cli(
        "data", "push", str(folder), "me/stories", "--token", "hf_test",
        env={"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": closed_url(), "HF_HOME": str(tmp_path / "hf-home")},
    )  # fmt: skip
    assert unreachable.returncode == 1 and "Traceback" not in unreachable.stderr
    assert "cannot reach the Hub" in unreachable.stderr and "check the network" in unreachable.stderr
    with FakeHub(refuse=401) as hub:
        refused = run_cli("data", "push", str(folder), "me/stories", env=hub.env())
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "the Hub refused the push to me/stories: the token is missing or invalid" in refused.stderr


def test_push_uploads_every_split_and_replaces_an_earlier_push(folder, tmp_path):
    card = "---\nlicense: cc-by-4.0\ntask_categories:\n- image-text-to-text\n---\n\n# stories\n"
    (folder / "README.md").write_text(card)
    with FakeHub() as hub:
        first = run_cli("data", "push", str(folder), "me/stories", "--private", "--stories-per-shard", "1",
                        env=hub.env())  # fmt: skip
        assert first.returncode == 0, first.stderr
        assert "pushed" in first.stderr and "/datasets/me/stories/commit/" in first.stderr
        repo = hub.repos["me/stories"]
        assert repo["type"] == "dataset" and repo["private"] is True
        assert repo["files"]["README.md"].decode() == card and hub.cards  # the card's YAML was checked
        shards = sorted(p for p in repo["files"] if p.endswith(".parquet"))
        assert len(shards) == 5  # one story per shard
        received = tmp_path / "received"
        for path, data in repo["files"].items():
            (received / path).parent.mkdir(parents=True, exist_ok=True)
            (received / path).write_bytes(data)
        _round_trip(folder, received)
        # pushed again with bigger shards: the earlier shards this push does not replace are deleted
        again = run_cli("data", "push", str(folder), "me/stories", env=hub.env())
        assert again.returncode == 0, again.stderr
        now = sorted(p for p in repo["files"] if p.endswith(".parquet"))
        assert now == ["data/test-00000-of-00001.parquet", "data/train-00000-of-00001.parquet"]
        assert len(repo["commits"]) == 2 and not [u for u in hub.unknown if u[0] != "GET"]


def test_push_settings_come_from_a_config_file_and_the_token_is_never_read_from_one(folder, tmp_path):
    config = tmp_path / "push.yaml"
    config.write_text(json.dumps({"dry_run": True, "out": str(tmp_path / "o"), "stories_per_shard": 1}))
    result = run_cli("data", "push", str(folder), "me/stories", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "o" / "data").glob("*.parquet"))) == 5
    config.write_text(json.dumps({"token": "hf_secret"}))
    refused = run_cli("data", "push", str(folder), "me/stories", "--config", str(config))
    assert refused.returncode == 2 and "'token' is a secret" in refused.stderr
