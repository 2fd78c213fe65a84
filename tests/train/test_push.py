"""train push and train merge on a real tiny training: the card from its record, the upload plan, bf16 merges.

The hub is not reachable here: the upload itself is exercised up to the hub client's
refusal (offline mode), and everything before it (the card, the files) for real.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ..conftest import require_transformers, run_cli

require_transformers()
pytest.importorskip("peft", reason="LoRA needs peft: pip install 'storyreasoning[train]'")

import torch  # noqa: E402
from huggingface_hub.repocard import metadata_load  # noqa: E402

from storyreasoning.errors import UsageError  # noqa: E402
from storyreasoning.train import push  # noqa: E402
from storyreasoning.train.push import MARKER, CardFacts, PushSettings, base_license, model_card  # noqa: E402
from storyreasoning.train.settings import SFTSettings  # noqa: E402
from storyreasoning.train.sft import train_sft  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "stories"
SMALL = {"min_pixels": 28 * 28 * 4, "max_pixels": 28 * 28 * 16, "max_images": 2}


@pytest.fixture(scope="module")
def run(tiny_qwen, tmp_path_factory) -> Path:
    """A finished tiny LoRA SFT training folder (read-only for the tests: each copies what it changes)."""
    out = tmp_path_factory.mktemp("push") / "sft"
    train_sft(
        SFTSettings(
            source=str(EXAMPLES), out=out, split=None, model=str(tiny_qwen), max_steps=2, batch_size=1, grad_accum=1,
            save_steps=100, logging_steps=1, max_length=4000, lr=1e-3, gradient_checkpointing=False, **SMALL,
        )
    )  # fmt: skip
    return out


@pytest.fixture
def own_run(run, tmp_path) -> Path:
    """A copy of the run this test may write into (the card goes into final/)."""
    import shutil

    copy = tmp_path / "sft"
    shutil.copytree(run, copy)
    return copy


def cli(*args: str):
    return run_cli(*args, env={"HF_HUB_OFFLINE": "1"})


def real_report(out: Path) -> Path:
    """An evaluate report of the example references against themselves, written by evaluate's own writer."""
    from storyreasoning.data import load_stories
    from storyreasoning.evaluate.pairs import StoryPair
    from storyreasoning.evaluate.report import Report, evaluate_pairs, write_report

    stories = list(load_stories(str(EXAMPLES)))
    pairs = [StoryPair.from_sample(s, s.output_text()) for s in stories]
    results = evaluate_pairs(pairs, ("grounding", "identity", "consistency"))
    report = Report(run={"path": "runs/x", "outputs": len(pairs)}, dataset={"source": str(EXAMPLES), "split": None},
                    protocol="default", results=results, story_ids=[s.story_id for s in stories])  # fmt: skip
    write_report(report, out, plots=False)
    return out


def test_the_card_of_a_real_training_says_what_was_trained_on_what(own_run, tmp_path):
    report = real_report(tmp_path / "eval")
    what = push.plan(
        PushSettings(folder=own_run, repo_id="me/tiny-storyteller", eval_report=report, dry_run=True)
    )
    assert what.model == own_run / "final" and what.card == own_run / "final" / "README.md"
    names = {p.as_posix() for p in what.files}
    assert {"README.md", "adapter_config.json", "adapter_model.safetensors", "storyreasoning.json"} <= names
    assert not any(name.endswith(".tmp") for name in names)

    card = what.card.read_text()
    meta = metadata_load(what.card)
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "image-text-to-text"
    assert meta["license"] == "other"  # the tiny base has no card: said, not guessed
    assert "base_model" not in meta  # a local folder is not a hub id
    assert {"storyreasoning", "sft", "lora"} <= set(meta["tags"])
    manifest = json.loads((own_run / "final" / "storyreasoning.json").read_text())
    assert f"| optimiser steps | {manifest['steps']} |" in card
    assert "| LoRA | rank 16, alpha 32, dropout 0.1, targets q_proj, k_proj, v_proj, o_proj |" in card
    assert f"- dataset `{EXAMPLES}`, all splits" in card
    assert "3 stories, 3 kept" in card  # fit.json
    assert "train_loss" in card and json.dumps(manifest["settings"], indent=2) in card  # resolved settings
    # the evaluation: the references against themselves score 1
    assert "## Evaluation" in card and "| F1 | 1 |" in card and "| Well-structured | 1 |" in card
    assert "grounding.tp" in card  # every number, folded away
    assert "2505.10292" in card and "2507.07340" not in card  # SFT: StoryReasoning's citation only
    assert card.rstrip().endswith(MARKER)


def test_dry_run_from_the_command_line_lists_the_files_and_a_real_push_stops_at_the_hub(own_run):
    result = cli("train", "push", str(own_run), "--repo-id", "me/tiny", "--dry-run")
    assert result.returncode == 0, result.stderr
    listed = [line.split("\t")[0] for line in result.stdout.splitlines()]
    assert "README.md" in listed and "adapter_model.safetensors" in listed
    assert all(int(line.split("\t")[1]) > 0 for line in result.stdout.splitlines())
    assert (own_run / "final" / "README.md").is_file()
    # the real path: huggingface_hub's create_repo, refused because the hub is off
    real = cli(
        "train", "push", str(own_run / "final"), "--repo-id", "me/tiny", "--private", "--revision", "v1"
    )
    assert real.returncode != 0 and "HF_HUB_OFFLINE is set" in real.stderr and "Traceback" not in real.stderr


def test_a_card_someone_wrote_is_never_overwritten(own_run, tmp_path):
    mine = own_run / "final" / "README.md"
    mine.write_text("# my own card\n")
    settings = PushSettings(folder=own_run, repo_id="me/tiny", dry_run=True)
    with pytest.raises(UsageError, match="--card"):
        push.plan(settings)
    assert push.plan(replace(settings, card=mine)).card.read_text() == "# my own card\n"
    other = tmp_path / "card.md"
    other.write_text("# another card\n")
    assert push.plan(replace(settings, card=other)).card.read_text() == "# another card\n"


def test_only_finished_trainings_and_models_are_pushed(tmp_path):
    (tmp_path / "running").mkdir()
    (tmp_path / "running" / "settings.json").write_text("{}")
    with pytest.raises(UsageError, match="not finished"):
        push.locate(tmp_path / "running")
    with pytest.raises(UsageError, match="no trained model"):
        push.locate(tmp_path)
    with pytest.raises(UsageError, match="owner/name"):
        push.plan(PushSettings(folder=tmp_path, repo_id="justaname", dry_run=True))


# -- merge -------------------------------------------------------------------------------------------------


@pytest.mark.slow  # heavy end-to-end run: CI runs it in its slow pass
def test_merge_writes_bfloat16_by_default_that_loads_and_tells(run, tmp_path):
    from safetensors import safe_open

    from storyreasoning.tell import Sampling
    from storyreasoning.tell.local import TransformersTeller

    merged = tmp_path / "merged"
    result = cli("train", "merge", str(run / "final"), "--out", str(merged))
    assert result.returncode == 0, result.stderr
    assert "bfloat16" in result.stderr
    with safe_open(str(merged / "model.safetensors"), "pt") as f:
        dtypes = {f.get_slice(name).get_dtype() for name in f.keys()}
    assert dtypes == {"BF16"}
    record = json.loads((merged / "storyreasoning.json").read_text())
    assert record["dtype"] == "bfloat16" and record["adapter"] is False
    assert record["merged_from"] == str(run / "final")
    import transformers

    assert (
        transformers.AutoModelForImageTextToText.from_pretrained(merged, dtype="auto").dtype == torch.bfloat16
    )
    with TransformersTeller(str(merged), device="cpu", dtype="bfloat16") as teller:
        telling = teller.tell(
            [EXAMPLES / "lighthouse" / "01.png"], sampling=Sampling(temperature=0, max_new_tokens=5)
        )
    assert telling.meta["usage"]["completion_tokens"] == 5

    # the merged folder's card finds the training behind it (through merged_from)
    what = push.plan(PushSettings(folder=merged, repo_id="me/merged", dry_run=True))
    card = what.card.read_text()
    meta = metadata_load(what.card)
    assert meta["library_name"] == "transformers" and "model.safetensors" in {
        p.as_posix() for p in what.files
    }
    assert "adapter merged into the base, saved in bfloat16" in card and '"rank": 16' in card

    # --dtype still chooses
    wide = tmp_path / "merged32"
    assert cli("train", "merge", str(run / "final"), "--out", str(wide), "--dtype", "float32").returncode == 0
    assert json.loads((wide / "storyreasoning.json").read_text())["dtype"] == "float32"
    with safe_open(str(wide / "model.safetensors"), "pt") as f:
        assert {f.get_slice(name).get_dtype() for name in f.keys()} == {"F32"}
    bad = cli("train", "merge", str(run / "final"), "--out", str(tmp_path / "m"), "--dtype", "int8")
    assert bad.returncode == 2 and "unknown dtype" in bad.stderr and "Traceback" not in bad.stderr


# -- the card as a pure function, and licenses ---------------------------------------------------------------


def test_a_dpo_card_names_its_pairs_checks_license_and_both_papers():
    facts = CardFacts(
        repo_id="me/storyteller2",
        manifest={"kind": "dpo", "base_model": "daniel3303/QwenStoryteller", "adapter": True, "steps": 1500,
                  "metrics": {"train_loss": 0.41}},
        settings={"mode": "lora", "rank": 2048, "alpha": 4096, "dropout": 0.05, "targets": ["q_proj"], "beta": 0.1,
                  "pairs": ["pairs/real", "pairs/synth"], "eval_every": 100, "eval_stories": 4,
                  "eval_max_new_tokens": 2048},
        pairs=[{"folder": "pairs/real", "pairs": 3000, "dataset": {"source": "daniel3303/StoryReasoning",
                                                                    "split": "train"}, "runs": ["a", "b"]},
               {"folder": "pairs/synth", "pairs": 1500, "dataset": {"source": "data/contrastive"}}],
        checks=[{"step": 100, "eval_well_structured": 0.5}, {"step": 200, "eval_well_structured": 0.75,
                                                               "eval_grounding_f1": 0.25, "eval_link_recall": 0.5}],
        fit={"pairs": 4500, "kept": 4400, "too_long": ["s1"], "max_length": 32768,
             "folders": {"pairs/real": {"pairs": 3000, "kept": 2950}}},
        license="apache-2.0", license_source="the card of daniel3303/QwenStoryteller",
        local=frozenset({"data/contrastive"}),
    )  # fmt: skip
    card = model_card(facts)
    assert card == model_card(facts)  # pure
    header = card.split("---")[1]
    assert "base_model: daniel3303/QwenStoryteller" in header and "base_model_relation: adapter" in header
    assert "- daniel3303/StoryReasoning" in header and "data/contrastive" not in header  # hub datasets only
    assert "license: apache-2.0" in header and "- dpo" in header
    assert "- pairs `pairs/real`: 3000 pairs, frames from `daniel3303/StoryReasoning` split `train`, " \
           "candidates from 2 runs" in card  # fmt: skip
    assert (
        "- fitted to 32768 tokens: 4500 pairs, 4400 kept, 1 too long to fit (pairs too long are left out"
        in card
    )
    assert "- from `pairs/real`: pairs 3000, kept 2950" in card
    assert "`daniel3303/StoryReasoning` is licensed CC-BY-ND-4.0" in card
    assert "the last check, at step 200 (2 in all)" in card and "| Grounding F1 | 0.25 |" in card
    assert "| β | 0.1 |" in card and "2505.10292" in card and "2507.07340" in card
    assert "## Evaluation" not in card  # no report given


def test_the_base_models_license_comes_from_its_card_our_record_or_what_is_known(tmp_path):
    assert base_license("Qwen/Qwen2.5-VL-7B-Instruct")[0] == "apache-2.0"
    base = tmp_path / "base"
    base.mkdir()
    assert base_license(str(base)) == (None, "")
    (base / "README.md").write_text("---\nlicense: mit\n---\n# a base\n")
    assert base_license(str(base)) == ("mit", f"the card of {base}")
    merged = tmp_path / "merged"  # one of ours: its base's license
    merged.mkdir()
    (merged / "storyreasoning.json").write_text(json.dumps({"base_model": str(base)}))
    assert base_license(str(merged))[0] == "mit"


def test_a_local_dataset_a_pairs_folder_names_as_typed_is_no_hub_dataset(own_run, tmp_path, monkeypatch):
    """Pairs built from ``data/contrastive`` (a folder, typed relative) and pushed from another folder: the
    pairs manifest resolved it, so the card's metadata does not list it as a Hub dataset (it did: the name
    looks like ``user/dataset`` and no such folder is where ``push`` runs)."""
    import shutil

    from storyreasoning.data import load_stories
    from storyreasoning.data.identity import dataset_record
    from storyreasoning.evaluate.runs import RunOutputs
    from storyreasoning.train.pairs import build_pairs

    project = tmp_path / "project"
    shutil.copytree(EXAMPLES, project / "data" / "contrastive")
    monkeypatch.chdir(project)
    stories = load_stories("data/contrastive")
    bad = RunOutputs(Path("bad"), "bad", {s.story_id: "No." for s in stories})
    build_pairs(stories, [bad], project / "pairs", include_reference=True, dataset=dataset_record(stories))
    record = own_run / "final" / "storyreasoning.json"
    manifest = json.loads(record.read_text())
    manifest["kind"] = "dpo"
    manifest["settings"] = {**manifest["settings"], "pairs": [str(project / "pairs")]}
    record.write_text(json.dumps(manifest))
    monkeypatch.chdir(tmp_path)
    header = model_card(push.gather(push.locate(own_run), repo_id="me/x")).split("---")[1]
    assert "data/contrastive" not in header, header
