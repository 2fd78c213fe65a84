"""Training settings are checked before anything loads; the CLI turns each problem into one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from storyreasoning.errors import UsageError
from storyreasoning.train.job import TrainFolder
from storyreasoning.train.settings import DPOSettings, GRPOSettings, SFTSettings
from storyreasoning.train.sft import language_target_pattern

SFT = {"source": "s", "out": Path("o")}
DPO = {"pairs": ("p",), "out": Path("o")}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"mode": "half"}, "mode must be one of lora, full, language (got 'half')"),
        ({"rank": 0}, "rank must be at least 1 (got 0)"),
        ({"dropout": 1.0}, "dropout must be between 0 and 0.99 (got 1)"),
        ({"targets": ()}, "--target: LoRA needs at least one target module name"),
        ({"grad_accum": 0}, "grad_accum must be at least 1 (got 0)"),
        ({"max_steps": 0}, "max_steps must be at least 1 (got 0)"),
        ({"epochs": 0}, "epochs must be more than 0 (got 0)"),
        ({"epochs": -1, "max_steps": 5}, "epochs must be more than 0 (got -1)"),
        ({"lr": 0.0}, "lr must be more than 0 (got 0)"),
        ({"max_length": 8}, "--max-length 8 is too small to hold any story; give at least 16 (0: no limit)"),
        ({"save_steps": 0}, "save_steps must be at least 1 (got 0)"),
        ({"min_pixels": 900, "max_pixels": 800}, "--min-pixels 900 exceeds --max-pixels 800"),
        ({"global_batch": 63, "batch_size": 2}, "--global-batch 63 is not a multiple of --batch-size 2"),
    ],
)
def test_both_jobs_refuse_the_same_bad_settings(change, words):
    """Settings built in Python are checked as the options are (their bounds named by field), and the
    rules across settings name the flags."""
    for base in (SFT, DPO):
        kind = SFTSettings if "source" in base else DPOSettings
        with pytest.raises(UsageError, match=re.escape(words)):
            kind(**base, **change)


def test_job_specific_checks_and_defaults():
    with pytest.raises(UsageError, match=re.escape("loss must be one of assistant, all (got 'prompt')")):
        SFTSettings(**SFT, loss="prompt")
    with pytest.raises(UsageError, match=re.escape("beta must be more than 0 (got 0)")):
        DPOSettings(**DPO, beta=0)
    with pytest.raises(UsageError, match="pairs folder"):
        DPOSettings(pairs=(), out=Path("o"))
    # the published recipes: SFT LoRA 2e-4, full 2e-5; DPO rank 2048, alpha 4096, 5e-6, beta 0.1
    assert SFTSettings(**SFT).learning_rate == 2e-4 and SFTSettings(**SFT, mode="full").learning_rate == 2e-5
    assert SFTSettings(**SFT, rank=8).lora_alpha == 16 and SFTSettings(**SFT, rank=8, alpha=4).lora_alpha == 4
    dpo = DPOSettings(**DPO)
    assert (dpo.rank, dpo.lora_alpha, dpo.learning_rate, dpo.beta) == (2048, 4096, 5e-6, 0.1)


def test_the_lora_pattern_never_names_the_vision_tower():
    import re

    pattern = re.compile(language_target_pattern(("q_proj", "gate_proj")))
    assert pattern.fullmatch("model.language_model.layers.0.self_attn.q_proj")
    assert pattern.fullmatch("model.language_model.layers.3.mlp.gate_proj")
    assert not pattern.fullmatch("model.visual.blocks.0.mlp.gate_proj")
    assert not pattern.fullmatch("model.language_model.layers.0.self_attn.q_proj.lora_A")


def test_the_newest_complete_checkpoint_is_resumed(tmp_path):
    import zipfile

    folder = TrainFolder(tmp_path)
    for name, complete in (
        ("checkpoint-9", True),
        ("checkpoint-10", True),
        ("checkpoint-11", False),
        ("checkpoint-x", True),
    ):
        path = folder.checkpoints / name
        path.mkdir(parents=True)
        # what a resume reads, whole and tiny: weights (a header of no tensors), torch.save archives
        (path / "adapter_model.safetensors").write_bytes((2).to_bytes(8, "little") + b"{}")
        for archive in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
            with zipfile.ZipFile(path / archive, "w") as f:
                f.writestr("archive/data.pkl", b"")
        if complete:
            (path / "trainer_state.json").write_text("{}")
    assert folder.last_checkpoint().name == "checkpoint-10"  # numeric order; the half-written 11 is skipped


def test_a_folder_keeps_its_settings(tmp_path):
    folder = TrainFolder(tmp_path / "run")
    folder.claim(SFTSettings(source="s", out=tmp_path / "run"), write=False)
    assert not folder.root.exists()  # checking writes nothing
    folder.claim(SFTSettings(source="s", out=tmp_path / "run"))
    held = json.loads(folder.settings.read_text())
    assert held["source"] == "s" and held["lr"] == 2e-4
    folder.claim(SFTSettings(source="s", out=tmp_path / "moved", device="cpu"))  # operational: allowed
    with pytest.raises(UsageError, match=r"other settings \(rank 16 then, 8 now"):
        folder.claim(SFTSettings(source="s", out=tmp_path / "run", rank=8))


def test_a_refused_folder_names_each_difference_then_and_now(tmp_path):
    """Every setting that differs is named with its value then and now (the derived ones last), the first
    five when there are more."""
    folder = TrainFolder(tmp_path / "run")
    folder.claim(SFTSettings(source="s", out=folder.root))
    fix = "; resume it with the same options or choose another --out"
    with pytest.raises(UsageError) as two:
        folder.claim(SFTSettings(source="s", out=folder.root, rank=8, epochs=2.0))
    assert str(two.value) == (
        f"{folder.root} holds a training started with other settings (epochs 3 then, 2 now; "
        f"rank 16 then, 8 now; alpha 32 then, 16 now){fix}"
    )
    changes = {"rank": 8, "epochs": 2.0, "seed": 1, "weight_decay": 0.0, "warmup_ratio": 0.1, "dropout": 0.2}
    with pytest.raises(UsageError) as many:
        folder.claim(SFTSettings(source="s", out=folder.root, **changes))
    assert str(many.value) == (
        f"{folder.root} holds a training started with other settings (dropout 0.1 then, 0.2 now; epochs 3 "
        "then, 2 now; rank 16 then, 8 now; seed 0 then, 1 now; warmup_ratio 0.03 then, 0.1 now; and 2 more)"
        f"{fix}"
    )


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "stories"


def sft_claim(folder: TrainFolder, source: str, model: str) -> None:
    """How train sft claims its folder: checked as it begins, then once its stories loaded (written)."""
    from storyreasoning.train.sft import load_splits

    settings = SFTSettings(source=source, model=model, split=None, out=folder.root)
    folder.claim(settings, write=False)
    folder.claim(settings, dataset=load_splits(settings)[1])


def test_a_training_folder_knows_its_dataset_and_model_by_where_they_are(tmp_path, monkeypatch):
    """``./c_ref`` and ``./m`` are the ``c_ref`` and ``m`` a training began with; from another folder they are
    others, refused with the paths."""
    import shutil

    for where in ("a", "b"):
        shutil.copytree(EXAMPLES, tmp_path / where / "c_ref")
        (tmp_path / where / "m").mkdir()
    shutil.rmtree(tmp_path / "b" / "c_ref" / "pioneers")  # another c_ref: two of the three stories
    folder = TrainFolder(tmp_path / "run")
    monkeypatch.chdir(tmp_path / "a")
    sft_claim(folder, "c_ref", "m")
    held = json.loads(folder.settings.read_text())
    assert held["source"] == str(tmp_path / "a" / "c_ref")  # recorded absolute
    assert held["model"] == str(tmp_path / "a" / "m")
    recorded = json.loads(folder.dataset.read_text())
    assert recorded["source"] == "c_ref" and recorded["path"] == str((tmp_path / "a" / "c_ref").resolve())
    assert recorded["fingerprint"]["stories"] == 3
    sft_claim(folder, "./c_ref", "./m")  # the same dataset and model, typed otherwise
    monkeypatch.chdir(tmp_path / "b")
    with pytest.raises(UsageError) as other:
        sft_claim(folder, "c_ref", str(tmp_path / "a" / "m"))
    assert str(other.value).startswith(
        f"{folder.root} holds a training started with other settings (dataset: path "
        f"{(tmp_path / 'a' / 'c_ref').resolve()} then, {(tmp_path / 'b' / 'c_ref').resolve()} now; "
        "dataset: content stories 3 then, 2 now; dataset: content ids_sha256 '"
    )
    assert str(other.value).endswith("' now); resume it with the same options or choose another --out")
    with pytest.raises(UsageError, match=r"other settings \(model '[^']*/a/m' then, '[^']*/b/m' now\)"):
        sft_claim(folder, str(tmp_path / "a" / "c_ref"), "m")


def test_an_older_training_folder_with_its_paths_as_typed_still_resumes(tmp_path, monkeypatch):
    """A folder of an older version recorded the source and model as typed and no dataset.json: read from the
    folder they were typed in, the same ones; its dataset is recorded then, so that from elsewhere another
    ``c_ref`` is refused."""
    import shutil

    for where in ("a", "b"):
        shutil.copytree(EXAMPLES, tmp_path / where / "c_ref")
        (tmp_path / where / "m").mkdir()
    shutil.rmtree(tmp_path / "b" / "c_ref" / "pioneers")  # another c_ref: two of the three stories
    folder = TrainFolder(tmp_path / "run")
    folder.root.mkdir()
    older = SFTSettings(source="c_ref", model="m", split=None, out=folder.root).to_dict()
    folder.settings.write_text(json.dumps({**older, "model": "m"}))
    monkeypatch.chdir(tmp_path / "a")
    sft_claim(folder, str(tmp_path / "a" / "c_ref"), str(tmp_path / "a" / "m"))
    assert json.loads(folder.dataset.read_text())["path"] == str((tmp_path / "a" / "c_ref").resolve())
    monkeypatch.chdir(tmp_path / "b")
    with pytest.raises(
        UsageError, match=r"other settings \(dataset: path [^ ]*/a/c_ref then, [^ ]*/b/c_ref now"
    ):
        sft_claim(folder, "c_ref", "m")  # its model as recorded, read from here: the same


def test_a_training_moved_with_its_project_resumes(tmp_path, monkeypatch):
    """The model and the dataset recorded absolute: a project moved whole resumes (its dataset by its
    content, its model, gone from where it was, by the same folder in the new place)."""
    import shutil

    shutil.copytree(EXAMPLES, tmp_path / "p1" / "c_ref")
    (tmp_path / "p1" / "m").mkdir()
    monkeypatch.chdir(tmp_path / "p1")
    sft_claim(TrainFolder(Path("run")), "c_ref", "m")
    assert json.loads((tmp_path / "p1" / "run" / "settings.json").read_text())["model"] == str(
        tmp_path / "p1" / "m"
    )
    monkeypatch.chdir(tmp_path)
    shutil.move(tmp_path / "p1", tmp_path / "p2")
    monkeypatch.chdir(tmp_path / "p2")
    sft_claim(TrainFolder(Path("run")), "c_ref", "m")
    (tmp_path / "p2" / "other").mkdir()  # another model, though the recorded one is gone: refused
    with pytest.raises(UsageError, match=r"other settings \(model '[^']*/p1/m' then, '[^']*/p2/other' now\)"):
        sft_claim(TrainFolder(Path("run")), "c_ref", "other")


def grpo_claim(folder: TrainFolder, *sources: str) -> None:
    """How train grpo claims its folder: checked as it begins, then once its datasets loaded (written)."""
    from storyreasoning.train.grpo import dataset_records, load_datasets

    settings = GRPOSettings(sources=sources, split=None, out=folder.root)
    folder.claim(settings, write=False)
    folder.claim(settings, dataset=dataset_records(settings, load_datasets(settings)))


def test_a_grpo_folder_knows_each_dataset_by_its_identity(tmp_path, monkeypatch):
    """GRPO records each dataset as SFT records its one: ``./c_ref`` is ``c_ref``, a project copied whole
    elsewhere is the same, other stories where a dataset was are refused naming it; another number of
    datasets is another setting; a folder of an older version (no dataset.json) resumes as before."""
    import shutil

    for name in ("c_ref", "more"):
        shutil.copytree(EXAMPLES, tmp_path / "p1" / name)
    monkeypatch.chdir(tmp_path / "p1")
    folder = TrainFolder(Path("run"))
    grpo_claim(folder, "c_ref", "more")
    recorded = json.loads(folder.dataset.read_text())
    assert [(r["source"], r["path"], r["fingerprint"]["stories"]) for r in recorded] == [
        (name, str((tmp_path / "p1" / name).resolve()), 3) for name in ("c_ref", "more")
    ]
    grpo_claim(folder, "./c_ref", "more")
    older = TrainFolder(Path("older"))
    grpo_claim(older, "c_ref", "more")
    older.dataset.unlink()  # as an older version left it: its datasets compared by where they are
    grpo_claim(older, "c_ref", "more")
    assert json.loads(older.dataset.read_text()) == recorded  # and recorded from now on
    shutil.copytree(tmp_path / "p1", tmp_path / "p2")
    monkeypatch.chdir(tmp_path / "p2")
    grpo_claim(folder, "c_ref", "more")
    assert json.loads(folder.dataset.read_text())[1]["path"] == str((tmp_path / "p2" / "more").resolve())
    shutil.rmtree(tmp_path / "p2" / "more" / "pioneers")
    with pytest.raises(UsageError) as fewer:
        grpo_claim(folder, "c_ref", "more")
    assert str(fewer.value).startswith(
        "run holds a training started with other settings (dataset more: content stories 3 then, 2 now; "
        "dataset more: content ids_sha256 '"
    )
    with pytest.raises(UsageError, match=r"other settings \(sources \[.* then, \[.* now\)"):
        grpo_claim(folder, "c_ref")
    # a hub dataset is compared as given, before anything is fetched
    hub = TrainFolder(Path("hub"))
    hub.claim(
        GRPOSettings(sources=("someone/a",), out=hub.root),
        dataset=[{"source": "someone/a", "split": "train"}],
    )
    with pytest.raises(
        UsageError, match=r"other settings \(dataset: source 'someone/a' then, 'someone/b' now\)"
    ):
        hub.claim(GRPOSettings(sources=("someone/b",), out=hub.root), write=False)


def test_a_folders_dataset_changes_leave_its_split_to_the_settings_when_it_is_one(tmp_path):
    """The helper SFT and train pairs share: the record in dataset.json against the dataset read now."""
    from storyreasoning.data import load_stories
    from storyreasoning.data.identity import dataset_record
    from storyreasoning.train.settings import folder_dataset_changes

    record = dataset_record(load_stories(str(EXAMPLES)))
    (tmp_path / "dataset.json").write_text(json.dumps(record))
    other = {**record, "split": "test"}
    assert folder_dataset_changes(tmp_path / "dataset.json", {}, record) == []
    assert folder_dataset_changes(tmp_path / "dataset.json", {}, other) == ["split unset then, 'test' now"]
    assert folder_dataset_changes(tmp_path / "dataset.json", {}, other, split_setting=True) == []
    assert folder_dataset_changes(tmp_path / "none.json", {}, other) == []  # a folder that names none
    # an older folder: its settings name the source; the stories it scored must all be in the dataset now
    held = {"source": str(EXAMPLES), "split": None}
    found = folder_dataset_changes(
        tmp_path / "none.json", held, record, recorded=lambda: ["pioneers", "gone"], ids=lambda: ["pioneers"]
    )
    assert found == [f"content: 1 stories of the run are not in {EXAMPLES.resolve()} now (first: gone)"]


def test_a_training_into_another_jobs_folder_names_that_job(tiny_qwen, tmp_path):
    """``--out`` a pairs folder or an SFT training by mistake: the job whose folder it is is named with what it
    holds there, not its settings as so many changes; its folder is left as it was."""
    from storyreasoning.data import load_stories

    from ..conftest import one_error_line, require_transformers, run_cli

    require_transformers()
    texts = tmp_path / "texts"
    texts.mkdir()
    for story in load_stories(str(EXAMPLES)):  # its CoT with an untagged story: the worse candidate
        (texts / f"{story.story_id}.txt").write_text(
            story.output_text().split("</think>")[0] + "</think>\nNo."
        )
    pairs, sft = tmp_path / "pairs", tmp_path / "sft"
    made = run_cli(
        "train", "pairs", str(EXAMPLES), "--run", str(texts), "--include-reference", "--out", str(pairs)
    )
    assert made.returncode == 0, made.stderr
    model = ("--model", str(tiny_qwen), "--device", "cpu", "--min-pixels", "3136", "--max-pixels", "12544")
    made = run_cli(
        "train", "sft", str(EXAMPLES), *model, "--max-steps", "1", "--max-images", "1", "--out", str(sft)
    )
    assert made.returncode == 0, made.stderr
    for out, job, holds in [
        (pairs, "train pairs", "manifest.json, pairs.jsonl, stories.jsonl"),
        (sft, "train sft", "checkpoints/, final/, fit.json, log.jsonl"),
    ]:
        record = (out / "settings.json").read_bytes()
        for command in (("dpo", str(pairs)), ("grpo", str(EXAMPLES))):
            refused = run_cli("train", *command, *model, "--out", str(out))
            assert one_error_line(refused) == (
                f"error: {out} holds the settings of another job ({job}: its {holds}); choose another --out"
            ), command
        assert (out / "settings.json").read_bytes() == record
    assert not (pairs / "log.jsonl").exists() and not (sft / "cache").exists()


def test_a_comma_list_of_targets_is_split_into_module_names(tmp_path):
    """``--target q_proj,k_proj`` (or ``target: q_proj,k_proj`` in a config) was one module named
    'q_proj,k_proj': it is two, on the command line, in a config file and in Python alike."""
    from storyreasoning.testing.published import write_qwen25vl_7b_config

    from ..conftest import require_transformers, run_cli

    for kind, base in ((SFTSettings, SFT), (DPOSettings, DPO)):
        assert kind(**base, targets=("q_proj, k_proj", "v_proj,", "q_proj")).targets == (
            "q_proj",
            "k_proj",
            "v_proj",
        )
    require_transformers()
    model = write_qwen25vl_7b_config(tmp_path / "7b")
    config = tmp_path / "plan.yaml"
    config.write_text("target: q_proj, k_proj\n", encoding="utf-8")
    plans = []
    for given in (
        ("--target", "q_proj", "--target", "k_proj"),
        ("--target", "q_proj,k_proj"),
        ("--config", str(config)),
    ):
        result = run_cli("train", "plan", "--model", str(model), "--max-length", "1024", *given, "--json")
        assert result.returncode in (0, 1), result.stderr
        plan = json.loads(result.stdout)
        plans.append((plan["setup"]["targets"], plan["architecture"]["lora_parameters"]))
    assert plans == [(["q_proj", "k_proj"], plans[0][1])] * 3 and plans[0][1] > 0


@pytest.mark.parametrize("option", ["--judge-endpoint", "--vllm-server"])
def test_an_empty_server_url_is_refused_not_taken_for_none(option):
    """``--judge-endpoint "$URL"`` with URL unset trained without the judge; ``--vllm-server`` took the default."""
    from ..conftest import one_error_line, run_cli

    result = run_cli("train", "grpo", "stories", "--out", "o", f"{option}=")
    assert (
        one_error_line(result)
        == f"error: {option} is empty; give the server's base URL (such as http://localhost:8000/v1), or leave it out"
    )
