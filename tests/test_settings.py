"""One settings dataclass per job: its options, its --config file and its record come from that one place."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from storyreasoning.errors import UsageError
from storyreasoning.settings import from_config, option, read_config, record, settings_fields

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
        ("epochs: null\n", "epochs has no value; give a number, or leave it out for its default"),
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


def test_from_config_converts_and_checks_keywords_as_the_options_are(tmp_path):
    from storyreasoning.train.settings import SFTSettings

    recipe = ROOT / "recipes" / "qwenstoryteller-sft.yaml"
    made = from_config(SFTSettings, recipe, out="o", rank="8", targets=["q_proj"], epochs=2)
    assert (made.out, made.rank, made.targets, made.epochs) == (Path("o"), 8, ("q_proj",), 2.0)
    for wrong, says in (
        ({"warmup_ratio": 5.0}, "warmup_ratio must be between 0 and 0.99 (got 5)"),
        ({"rank": "eight"}, "rank must be a whole number (got 'eight')"),
        ({"epochs": float("nan")}, "epochs must be a finite number (got nan)"),
        ({"out": ""}, "out is an empty path"),
        ({"rnak": 8}, "SFTSettings has no setting 'rnak'; did you mean rank?"),
    ):
        with pytest.raises(UsageError, match=re.escape(says)):
            from_config(SFTSettings, recipe, **{"out": "o", **wrong})
    with pytest.raises(
        UsageError, match=re.escape("SFTSettings needs out: give out=… (or a config file that does)")
    ):
        from_config(SFTSettings, recipe)


def test_the_readme_python_example_reads_the_shipped_recipe(monkeypatch):
    from storyreasoning.train.settings import SFTSettings

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    call = re.search(r"`(from_config\(SFTSettings, [^`]*\))`", readme)
    assert call is not None
    monkeypatch.chdir(ROOT)
    made = eval(call.group(1), {"from_config": from_config, "SFTSettings": SFTSettings})
    assert made.learning_rate == 1e-5 and made.out == Path("runs/sft") and made.rank == 16


@dataclass(frozen=True, kw_only=True)
class Batching:
    """A job whose --accum, given over a file's --batch, clears it (as train's --grad-accum and global_batch)."""

    batch: int | None = option(None, min=1, help="Examples per step.")
    accum: int = option(1, min=1, help="Batches per step.", clears=("batch",))
    seed: int = option(0, help="Seed.")


def test_a_setting_given_over_another_clears_it_on_every_path(tmp_path, capsys):
    import typer
    from typer.main import get_command

    from storyreasoning.settings import Command, command, run_quick

    config = tmp_path / "c.yaml"
    config.write_text("batch: 64\nseed: 3\n")
    made = []
    app = typer.Typer()
    command(app, Batching, made.append, name="job")
    for args, wanted in (
        (["--config", str(config)], Batching(batch=64, seed=3)),
        (["--config", str(config), "--accum", "4"], Batching(accum=4, seed=3)),
        (["--config", str(config), "--accum", "4", "--batch", "8"], Batching(batch=8, accum=4, seed=3)),
        (["--accum", "4", "--batch", "8"], Batching(batch=8, accum=4)),
    ):
        assert run_quick(Command("job", Batching, made.append), args) == 0
        quick_err = capsys.readouterr().err
        get_command(app).main(args=args, standalone_mode=False)
        assert made == [wanted, wanted] and capsys.readouterr().err == quick_err, args
        if args[2:4] == ["--accum", "4"] and len(args) == 4:
            assert quick_err.endswith(
                "from the command line: --accum (over the file's batch, back to its default)\n"
            )
        made.clear()
    assert from_config(Batching, config, accum=4) == Batching(accum=4, seed=3)


def test_records_hold_absolute_paths_and_older_relative_records_still_resume(tmp_path, monkeypatch):
    from storyreasoning.train.job import TrainFolder
    from storyreasoning.train.settings import SFTSettings

    monkeypatch.chdir(tmp_path)
    settings = from_config(SFTSettings, source="data", out="runs/../runs/sft")
    held = record(settings)
    assert held["out"] == str(tmp_path / "runs" / "sft")
    folder = TrainFolder(settings.out)
    folder.root.mkdir(parents=True)
    # a record an older version wrote, its paths as given: the same training, resumed
    (folder.root / "settings.json").write_text(json.dumps({**held, "out": "runs/sft"}))
    folder.claim(settings)
    (folder.root / "settings.json").write_text(json.dumps(held))
    folder.claim(settings)


def test_a_model_or_dataset_on_this_machine_is_recorded_absolute_a_hub_id_as_given(tmp_path, monkeypatch):
    """``--config runs/x/settings.json`` from another folder read ``source: data`` as a hub id: a place
    (a model, a dataset) that is here is recorded absolute; one that is not (a hub id) as typed."""
    from storyreasoning.tell.settings import TellDatasetSettings
    from storyreasoning.train.settings import DPOSettings, SFTSettings

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "base").mkdir()
    (tmp_path / "p1").mkdir()
    held = record(from_config(SFTSettings, source="./data", model="base", out="o"))
    assert held["source"] == str(tmp_path / "data") and held["model"] == str(tmp_path / "base")
    hub = record(from_config(SFTSettings, source="daniel3303/StoryReasoning", out="o"))
    assert hub["source"] == "daniel3303/StoryReasoning" and hub["model"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    dpo = record(from_config(DPOSettings, pairs=["p1", "org/pairs"], out="o"))
    assert dpo["pairs"] == [str(tmp_path / "p1"), "org/pairs"]
    told = record(from_config(TellDatasetSettings, source="data", out="r"))
    assert told["source"] == str(tmp_path / "data")
    monkeypatch.chdir(tmp_path / "base")  # the record read back from elsewhere names the same places
    again = from_config(SFTSettings, **{k: v for k, v in held.items() if k not in ("alpha", "lr")})
    assert record(again)["source"] == held["source"] and record(again)["model"] == held["model"]


def test_settings_built_directly_can_be_checked_as_the_options_are():
    from storyreasoning.settings import validate
    from storyreasoning.train.settings import SFTSettings

    validate(SFTSettings(source="data", out=Path("o")))
    with pytest.raises(UsageError, match=re.escape("epochs must be a finite number (got nan)")):
        validate(SFTSettings(source="data", out=Path("o"), epochs=float("nan"), max_steps=1))


def test_grad_accum_given_over_a_recipe_clears_its_global_batch(tmp_path):
    """The published SFT recipe sets global_batch: 64; --grad-accum on the command line is what trains."""
    from storyreasoning.train.job import accumulation
    from storyreasoning.train.settings import SFTSettings

    recipe = Path(__file__).parents[1] / "recipes" / "qwenstoryteller-sft.yaml"
    assert from_config(SFTSettings, recipe, out=tmp_path / "a").global_batch == 64
    settings = from_config(SFTSettings, recipe, out=tmp_path / "b", grad_accum=4)
    assert settings.global_batch is None and accumulation(settings, processes=1) == 4
    both = from_config(SFTSettings, recipe, out=tmp_path / "c", grad_accum=4, global_batch=16)
    assert both.global_batch == 16 and accumulation(both, processes=1) == 16


def test_same_place_resolves_what_is_here_and_takes_a_gone_folder_for_one_moved(tmp_path, monkeypatch):
    from storyreasoning.settings import same_place

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    (tmp_path / "n").mkdir()
    assert same_place("m", str(tmp_path / "m")) and same_place("./m", "m")
    assert not same_place("m", "n") and not same_place(str(tmp_path / "m"), str(tmp_path / "n"))
    assert same_place("org/model", "org/model") and not same_place("org/model", "org/other")
    assert same_place("/gone/project/m", "m")  # moved with its project: gone there, the same name here
    assert not same_place("/gone/project/m", "n") and not same_place("/gone/project/m", "org/m")
    assert same_place(["m", "org/x"], (str(tmp_path / "m"), "org/x")) and not same_place(["m"], ["m", "n"])


@dataclass(frozen=True, kw_only=True)
class Sampling:
    """A job with exclusive lower bounds and a rule across two settings (as train's pixel budget)."""

    rate: float = option(1.0, above=0.0, help="A rate.")
    share: float = option(0.5, above=0.0, max=1.0, help="A share.")
    low: int = option(1, min=1, help="Lower bound.")
    high: int = option(2, min=1, help="Upper bound.")

    def __post_init__(self) -> None:
        from storyreasoning.settings import SettingsError, validate

        validate(self)
        if self.low > self.high:
            raise SettingsError(f"--low {self.low} exceeds --high {self.high}", "low", "high")


def test_an_exclusive_bound_is_checked_and_shown_and_a_rule_names_the_file(tmp_path, capsys):
    """``option(above=0.0)``: 0 is refused ("more than 0") wherever it comes from, and the help shows
    it in words (typer shows inclusive bounds only); a :class:`SettingsError` names the config file that gave a
    setting it is about, on both command-line paths and from Python."""
    import typer
    from typer.main import get_command

    from storyreasoning.settings import Command, command, run_quick

    for wrong, says in (({"rate": 0}, "rate must be more than 0 (got 0)"),
                        ({"rate": -1e-9}, "rate must be more than 0 (got -1e-09)"),
                        ({"share": 0.0}, "share must be more than 0 and at most 1 (got 0)"),
                        ({"share": 1.5}, "share must be more than 0 and at most 1 (got 1.5)")):  # fmt: skip
        with pytest.raises(UsageError, match=re.escape(says)):
            Sampling(**wrong)
        with pytest.raises(UsageError, match=re.escape(says)):
            from_config(Sampling, **wrong)
    assert Sampling(rate=1e-9, share=1.0).share == 1.0
    with pytest.raises(ValueError, match="not both"):
        option(1.0, min=0.0, above=0.0, help="Both.")
    config = tmp_path / "c.yaml"
    config.write_text("low: 5\nrate: 0\n")
    with pytest.raises(UsageError, match=re.escape(f"{config}: rate must be more than 0 (got 0)")):
        from_config(Sampling, config)
    config.write_text("low: 5\n")
    with pytest.raises(UsageError) as named:
        from_config(Sampling, config, high=3)
    assert str(named.value) == f"--low 5 exceeds --high 3 (low from {config})"
    with pytest.raises(UsageError) as unnamed:  # the keyword is over the file's: not the file's to fix
        from_config(Sampling, config, low=5, high=3)
    assert str(unnamed.value) == "--low 5 exceeds --high 3"
    app = typer.Typer()
    command(app, Sampling, lambda settings: 0, name="job")
    for args, says in ((["--rate", "0"], "--rate must be more than 0 (got 0)"),
                       (["--config", str(config), "--high", "3"], f"--low 5 exceeds --high 3 (low from {config})")):  # fmt: skip
        with pytest.raises(UsageError) as quick:
            run_quick(Command("job", Sampling, lambda settings: 0), args)
        with pytest.raises(UsageError) as typers:
            get_command(app).main(args=args, standalone_mode=False)
        assert str(quick.value) == str(typers.value) == says
    capsys.readouterr()
    get_command(app).main(args=["--help"], standalone_mode=False)
    shown = " ".join(capsys.readouterr().out.split())
    assert (
        "A rate. More than 0." in shown and "A share. More than 0, at" in shown and "x>=0.0" not in shown
    ), shown
