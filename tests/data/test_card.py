"""The dataset card ``data convert --to parquet`` writes: the builder's card, from the shards it wrote.

Real story folders with real PNG and JPEG frames are converted through the CLI; the card's YAML is
read with yaml.safe_load and huggingface_hub's own parser (what the Hub reads), its counts checked
against the shards read back through our loader, and what no record says is called unknown.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("pyarrow", reason="parquet needs pyarrow: pip install 'storyreasoning[data]'")
pytest.importorskip("datasets", reason="parquet needs datasets: pip install 'storyreasoning[data]'")

from storyreasoning.data import load_stories, write_folders
from storyreasoning.data.card import CARD_MARKER
from storyreasoning.data.splits import split_folder_dataset

from ..conftest import run_cli
from .fixtures import fixture_samples


def _front(card: str) -> dict:
    import yaml

    assert card.startswith("---\n")
    return yaml.safe_load(card[4:].split("\n---\n", 1)[0])


def _counts(out: Path) -> dict[str, tuple[int, int, int]]:
    """``split -> (stories, frames, characters)`` of what the shards hold, read back through our loader."""
    counts = {}
    for split in load_stories(out).splits:
        stories = load_stories(out, split)
        frames = sum(s.frame_count for s in stories)
        characters = sum(len({c.id for i in s.cot.images for c in i.characters}) for s in stories)
        counts[split] = (len(stories), frames, characters)
    return counts


@pytest.fixture
def built(tmp_path) -> Path:
    """Five story folders split by group, with the build record a build leaves (settings.json, build.json)."""
    root = tmp_path / "stories"
    write_folders(fixture_samples(5), root)
    split_folder_dataset(root, 0.5)
    (root / "settings.json").write_text(json.dumps({"license": "cc-by-4.0", "writer": "template"}))
    record = {
        "writer": {"writer": "template"},
        "perceiver": {"models": {"detector": {"id": "example/detector", "revision": "abc123"}}},
    }
    (root / "build.json").write_text(json.dumps(record))
    return root


def test_convert_writes_the_full_card_of_what_it_wrote(built, tmp_path):
    out = tmp_path / "pq"
    result = run_cli("data", "convert", str(built), str(out), "--to", "parquet", "--stories-per-shard", "2")
    assert result.returncode == 0, result.stderr
    card = (out / "README.md").read_text()
    front = _front(card)
    counts = _counts(out)
    assert set(counts) == {"train", "test"} and sum(c[0] for c in counts.values()) == 5
    # the Hub metadata: each split mapped to its shards and counted as written
    assert front["configs"] == [{"config_name": "default", "data_files": [
        {"split": "train", "path": "data/train-*"}, {"split": "test", "path": "data/test-*"}]}]  # fmt: skip
    assert {s["name"]: s["num_examples"] for s in front["dataset_info"]["splits"]} == {
        name: c[0] for name, c in counts.items()
    }
    # and datasets reads them (it ignores a split without num_bytes, with a warning)
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCard

    infos = DatasetInfosDict.from_dataset_card_data(DatasetCard.load(out / "README.md").data)
    split_infos = infos["default"].splits
    assert split_infos is not None and {k: v.num_examples for k, v in split_infos.items()} == {
        name: c[0] for name, c in counts.items()
    }
    assert all(v.num_bytes > 0 for v in split_infos.values())
    # the source's build record: its license, its template writer (a baseline), its models
    assert front["license"] == "cc-by-4.0" and "baseline" in front["tags"]
    assert front["size_categories"] == ["n<1K"]
    for split, (stories, frames, characters) in counts.items():
        assert f"| {split} | {stories} | {frames} | {characters} |" in card
    assert f"| all | 5 | {sum(c[1] for c in counts.values())} |" in card
    assert "`data convert` from `stories`, which storyreasoning `build` made" in card
    assert "| detector | example/detector | abc123 |" in card and "Baseline texts" in card
    assert "Validation: unknown" in card and CARD_MARKER in card
    assert DatasetCard.load(out / "README.md").data.license == "cc-by-4.0"


def test_what_no_record_says_is_unknown(built, tmp_path):
    # a parquet source has no build record; --split and --limit write a part of it
    source = tmp_path / "pq"
    assert run_cli("data", "convert", str(built), str(source), "--to", "parquet").returncode == 0
    out = tmp_path / "part"
    result = run_cli(
        "data", "convert", str(source), str(out), "--to", "parquet", "--split", "test", "--limit", "2"
    )
    assert result.returncode == 0, result.stderr
    n = min(2, len(load_stories(source, "test")))
    card = (out / "README.md").read_text()
    front = _front(card)
    assert _counts(out) == {"test": (n, 3 * n, 2 * n)}  # three-frame lighthouse stories, two characters each
    assert [s["num_examples"] for s in front["dataset_info"]["splits"]] == [n]
    assert front["configs"][0]["data_files"] == [{"split": "test", "path": "data/test-*"}]
    assert front["license"] == "unknown" and "baseline" not in front["tags"]
    assert f"| test | {n} | {3 * n} | {2 * n} |" in card and "| all |" not in card
    assert "- Unknown: `data convert` from `pq` read no build record" in card
    assert "Validation: unknown" in card and "Not known (`unknown` above)" in card
    assert "recorded settings" not in card  # nothing recorded, nothing shown
    # a card of one's own (no marker) is kept when the conversion resumes
    own = "---\nlicense: mit\n---\n\n# mine\n"
    (out / "README.md").write_text(own)
    again = run_cli(
        "data", "convert", str(source), str(out), "--to", "parquet", "--split", "test", "--limit", "2"
    )
    assert again.returncode == 0, again.stderr
    assert (out / "README.md").read_text() == own


#: ``python -c RERUN ARGS…``: ``storyreasoning ARGS…``, then whether it imported datasets, on stderr.
RERUN = """
import atexit, runpy, sys
atexit.register(lambda: print("datasets imported:", "datasets" in sys.modules, file=sys.stderr))
sys.argv = ["storyreasoning", *sys.argv[1:]]
runpy.run_module("storyreasoning.cli", run_name="__main__")
"""


def test_a_rerun_with_nothing_to_write_keeps_its_card_and_never_imports_datasets(built, tmp_path):
    import os
    import subprocess
    import sys

    out = tmp_path / "pq"
    args = ["data", "convert", str(built), str(out), "--to", "parquet"]
    assert run_cli(*args).returncode == 0
    card = out / "README.md"
    # still ours (the marker), and newer than the shards
    card.write_text(card.read_text() + "\nkept as it is\n")

    def rerun() -> str:
        env = {**os.environ, "NO_COLOR": "1", "HF_HUB_OFFLINE": "1"}
        done = subprocess.run(
            [sys.executable, "-c", RERUN, *args], capture_output=True, text=True, env=env, timeout=300
        )
        assert done.returncode == 0, done.stderr
        assert "nothing to write" in done.stdout, done.stdout
        return done.stderr

    assert "datasets imported: False" in rerun()
    assert card.read_text().endswith("\nkept as it is\n")  # nothing written: the card not read again
    # shards newer than the card (a run killed after its last shard, before its card): written afresh
    shard = sorted((out / "data").glob("*.parquet"))[-1]
    later = card.stat().st_mtime_ns + 2_000_000_000
    os.utime(shard, ns=(later, later))
    rerun()
    assert CARD_MARKER in card.read_text() and "kept as it is" not in card.read_text()
