"""One settings dataclass per job: its options, its --config file and its record come from that one place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storyreasoning.errors import UsageError
from storyreasoning.settings import from_config, read_config, record, settings_fields

from .conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "stories"


def test_every_long_command_takes_a_config_file():
    for command in (("tell-dataset",), ("build",), ("train", "sft"), ("train", "pairs"), ("train", "dpo"),
                    ("evaluate", "run"), ("studio",)):  # fmt: skip
        shown = run_cli(*command, "--help")
        assert shown.returncode == 0, shown.stderr
        assert "--config" in shown.stdout, command


def test_options_and_config_keys_come_from_the_settings_fields():
    from storyreasoning.train.settings import DPOSettings, SFTSettings

    shown = run_cli("train", "sft", "--help").stdout
    for field in settings_fields(SFTSettings):
        assert (field.name.upper() if field.spec.argument else field.flag) in shown, field.name
    # the shared training group is declared once: SFT and DPO differ only by their own fields and defaults
    from storyreasoning.train.settings import TrainingOptions

    shared = {f.name for f in settings_fields(TrainingOptions)}
    sft = {f.name for f in settings_fields(SFTSettings)}
    dpo = {f.name for f in settings_fields(DPOSettings)}
    assert shared <= sft & dpo and {"rank", "lr", "gradient_checkpointing", "global_batch"} <= shared
    assert {"source", "split", "loss"} <= sft - dpo and {"pairs", "beta", "loss_type"} <= dpo - sft


def test_a_record_reads_back_as_the_same_settings(tmp_path):
    from storyreasoning.train.settings import DPOSettings, SFTSettings

    for settings in (
        SFTSettings(source="s", out=tmp_path / "o", mode="full", targets=("q_proj",), max_length=0),
        DPOSettings(pairs=("a", "b"), out=tmp_path / "d", rank=8),
    ):
        path = tmp_path / "settings.json"
        path.write_text(json.dumps(record(settings)))
        again = from_config(type(settings), path)
        assert again == settings or record(again) == record(settings)
        assert record(again) == record(settings)


def test_secrets_are_never_recorded_nor_read(tmp_path):
    from storyreasoning.tell.settings import TellDatasetSettings

    settings = TellDatasetSettings(source="s", out=tmp_path, api_key="sk-secret")
    assert "api_key" not in record(settings) and "sk-secret" not in json.dumps(record(settings))
    config = tmp_path / "c.yaml"
    config.write_text("api_key: sk-secret\n")
    with pytest.raises(UsageError, match="secret"):
        read_config(config, TellDatasetSettings)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("rnak: 8\n", "'rnak' is not a setting of this job; did you mean rank"),
        ("rank: [\n", "not valid YAML at line"),
        ("- rank\n", "must hold a mapping"),
        ("epochs: null\n", "epochs cannot be empty"),
    ],
)
def test_bad_config_files_say_what_is_wrong(tmp_path, text, words):
    from storyreasoning.train.settings import SFTSettings

    config = tmp_path / "recipe.yaml"
    config.write_text(text)
    with pytest.raises(UsageError, match=words.replace("[", r"\[")):
        read_config(config, SFTSettings)


def test_config_errors_on_the_command_line_are_one_line(tmp_path):
    config = tmp_path / "recipe.yaml"
    config.write_text("rnak: 8\n")
    bad = run_cli("train", "sft", "--config", str(config))
    assert bad.returncode == 2 and "did you mean rank" in bad.stderr and "Traceback" not in bad.stderr
    missing = run_cli("train", "sft", "--config", str(tmp_path / "nowhere.yaml"))
    assert (
        missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    )
    config.write_text(
        "rank: many\n"
    )  # a value of the wrong type: the option's own check, as on the command line
    typed = run_cli("train", "sft", "--config", str(config), "x", "--out", str(tmp_path / "o"))
    assert typed.returncode == 2 and "rank" in typed.stderr and "Traceback" not in typed.stderr


def test_the_shipped_recipes_are_valid_configs():
    from storyreasoning.train.settings import DPOSettings, SFTSettings

    sft = from_config(SFTSettings, ROOT / "recipes" / "qwenstoryteller-sft.yaml", out=Path("o"))
    assert (sft.mode, sft.rank, sft.lora_alpha, sft.learning_rate) == ("lora", 16, 32, 2e-4)
    # an effective batch of 64 whatever the number of processes
    from storyreasoning.train.job import accumulation

    assert [accumulation(sft, n) for n in (1, 2, 4)] == [64, 32, 16]
    assert sft.gradient_checkpointing and sft.targets == ("q_proj", "k_proj", "v_proj", "o_proj")
    dpo = from_config(
        DPOSettings,
        ROOT / "recipes" / "qwenstoryteller2-dpo.yaml",
        out=Path("o"),
        pairs=("pairs/real", "pairs/synth"),
    )
    assert (dpo.rank, dpo.lora_alpha, dpo.learning_rate, dpo.beta, dpo.epochs) == (2048, 4096, 5e-6, 0.1, 3.0)
    # QwenStoryteller2's 2:1 of real to synthetic pairs, by the mixing option
    assert dpo.mix_weights() == {"pairs/real": 2.0, "pairs/synth": 1.0} and dpo.loss_type == "sigmoid"
    assert [accumulation(dpo, n) for n in (1, 2, 8)] == [
        8,
        4,
        1,
    ]  # the card's batch of 8 on any number of GPUs


def test_tell_dataset_and_evaluate_record_their_settings(tmp_path):
    pytest.importorskip(
        "cv2", reason="the baseline teller needs OpenCV: pip install 'storyreasoning[vision]'"
    )
    config = tmp_path / "tell.yaml"
    config.write_text(f"source: {EXAMPLES}\nteller: baseline\nlimit: 2\ntemperature: 0.5\n")
    run = tmp_path / "run"
    told = run_cli("tell-dataset", "--config", str(config), "--out", str(run), "--limit", "1")
    assert told.returncode == 0, told.stderr
    assert "settings from" in told.stderr and "--limit" in told.stderr
    held = json.loads((run / "settings.json").read_text())
    assert held["limit"] == 1 and held["temperature"] == 0.5 and held["teller"] == "baseline"
    # the record repeats the run: a second telling from it resumes the same folder, nothing told twice
    again = run_cli("tell-dataset", "--config", str(run / "settings.json"))
    assert again.returncode == 0, again.stderr
    assert len((run / "records.jsonl").read_text().splitlines()) == 1
    scored = run_cli("evaluate", str(run), "--metrics", "grounding", "--no-plots")
    assert scored.returncode == 0, scored.stderr
    assert json.loads((run / "eval" / "settings.json").read_text())["metrics"] == "grounding"
