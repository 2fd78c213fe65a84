"""``--config`` files and option values on both command-line paths: the quick one and typer's.

Every value, from a flag or a file, goes through the one conversion of
:mod:`storyreasoning.settings`: both paths make the same settings, or print the same one
``error:`` line (exit 2), whatever the file holds.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest

from storyreasoning import settings as S

from .conftest import one_error_line, run_cli
from .test_cli_jobs_quick import outcome

SFT = ["train", "sft", "data", "--out", "o"]


def both(monkeypatch, capsys, args: list[str]):
    """``(outcome, stderr)`` of ``args`` on the quick path, after checking typer's path gives the same."""
    quick = outcome(monkeypatch, args, quick=True)
    quick_err = capsys.readouterr().err
    full = outcome(monkeypatch, args, quick=False)
    full_err = capsys.readouterr().err
    assert quick == full, args
    assert quick_err == full_err, args
    return quick, quick_err


def refused(monkeypatch, capsys, args: list[str]) -> str:
    """The one error line both paths print for ``args`` (exit 2)."""
    result, err = both(monkeypatch, capsys, args)
    assert result == ("exit", 2), (args, err)
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err.strip()


def made(monkeypatch, capsys, args: list[str]):
    result, _ = both(monkeypatch, capsys, args)
    assert result[0] == "settings", result
    return result[1]


def config(tmp_path: Path, text: str, name: str = "c.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# 1, 2, 16: a config file cannot exhaust memory or the stack


ALIAS_BOMB = (
    'out: [&a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], '
    "&c [*b,*b,*b,*b,*b,*b,*b,*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c,*c], &e [*d,*d,*d,*d,*d,*d,*d,*d,*d], "
    "&f [*e,*e,*e,*e,*e,*e,*e,*e,*e], &g [*f,*f,*f,*f,*f,*f,*f,*f,*f], &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]]\n"
)


@pytest.mark.parametrize("key", ["out", "rank", "model", "targets"])
def test_a_yaml_alias_bomb_is_refused_before_it_grows(monkeypatch, capsys, tmp_path, key):
    line = refused(
        monkeypatch, capsys, [*SFT, "--config", config(tmp_path, ALIAS_BOMB.replace("out:", f"{key}:"))]
    )
    assert "alias *a" in line and len(line) < 200, line


@pytest.mark.parametrize(
    "text",
    [
        "rank: " + "[" * 500 + "\n",
        "rank: " + "[" * 100_000,
        "a:\n" + "".join(" " * i + "b:\n" for i in range(1, 60)),
    ],
)
def test_deep_nesting_is_one_line(monkeypatch, capsys, tmp_path, text):
    line = refused(monkeypatch, capsys, [*SFT, "--config", config(tmp_path, text)])
    assert "nests deeper" in line or "nesting depth" in line, line


def test_deep_json_is_one_line(monkeypatch, capsys, tmp_path):
    line = refused(monkeypatch, capsys, [*SFT, "--config", config(tmp_path, "[" * 200_000, "c.json")])
    assert "c.json" in line


def test_a_config_file_is_at_most_a_mebibyte(monkeypatch, capsys, tmp_path):
    big = config(tmp_path, "# " + "x" * S.MAX_CONFIG_BYTES + "\nrank: 8\n")
    assert "larger than 1 MiB" in refused(monkeypatch, capsys, [*SFT, "--config", big])
    if os.path.exists("/dev/zero"):  # a device is read up to the limit, not forever
        assert "larger than 1 MiB" in refused(monkeypatch, capsys, [*SFT, "--config", "/dev/zero"])


def test_a_long_or_huge_value_is_shown_short(monkeypatch, capsys, tmp_path):
    line = refused(monkeypatch, capsys, [*SFT, "--config", config(tmp_path, "rank: " + "x" * 100_000 + "\n")])
    assert "rank must be a whole number" in line and "…" in line and len(line) < 200
    listed = config(tmp_path, "rank: [" + ", ".join(["lol"] * 50_000) + "]\n")
    assert refused(monkeypatch, capsys, [*SFT, "--config", listed]).endswith(
        "rank must be a whole number (got a list)"
    )


def test_the_yaml_loader_is_libyamls_when_installed():
    import yaml

    if yaml.__with_libyaml__:
        assert issubclass(S._yaml_loader(), yaml.CSafeLoader)


# 3: paths


@pytest.mark.parametrize(
    ("text", "got"),
    [("out: [a, b]", "got a list"), ("out: {a: 1}", "got a mapping"), ("out: true", "got the boolean true"),
     ("out: 12", "got the number 12"), ('out: ""', "empty path"), ("out: null", "it is required")],
)  # fmt: skip
def test_a_path_setting_takes_only_a_path(monkeypatch, capsys, tmp_path, text, got):
    line = refused(monkeypatch, capsys, ["train", "sft", "data", "--config", config(tmp_path, text + "\n")])
    assert "c.yaml: out " in line and got in line, line


def test_an_empty_path_on_the_command_line_is_refused(monkeypatch, capsys):
    assert refused(monkeypatch, capsys, ["train", "sft", "data", "--out", ""]) == (
        "error: --out is an empty path; give a file or folder (. for this folder)"
    )


def test_a_path_starting_with_a_tilde_is_the_home_folder(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    for args in (["train", "sft", "data", "--out=~/runs/x"],
                 ["train", "sft", "data", "--config", config(tmp_path, "out: ~/runs/x\n")]):  # fmt: skip
        assert made(monkeypatch, capsys, args).out == tmp_path / "runs" / "x"


# 4: YAML 1.2's plain types; a text setting gets what was written


@pytest.mark.parametrize(
    ("text", "name", "value"),
    [("model: no", "model", "no"), ("model: true", "model", "true"), ("revision: 0123", "revision", "0123"),
     ("revision: 1.10", "revision", "1.10"), ("liger: on", "liger", "on"), ("liger: off", "liger", "off"),
     ("model: 2020-01-01", "model", "2020-01-01"), ("rank: 0123", "rank", 123), ("gradient_checkpointing: false",
     "gradient_checkpointing", False), ("gradient-checkpointing: True", "gradient_checkpointing", True)],
)  # fmt: skip
def test_yaml_is_read_with_yaml_1_2_plain_types(monkeypatch, capsys, tmp_path, text, name, value):
    settings = made(monkeypatch, capsys, [*SFT, "--config", config(tmp_path, text + "\n")])
    assert getattr(settings, name) == value and type(getattr(settings, name)) is type(value)


def test_yes_and_no_are_not_booleans(monkeypatch, capsys, tmp_path):
    line = refused(monkeypatch, capsys, [*SFT, "--config", config(tmp_path, "gradient_checkpointing: yes\n")])
    assert line.endswith("gradient_checkpointing must be true or false (got 'yes')")


# 5, 13: wrong values in words


@pytest.mark.parametrize(
    ("text", "says"),
    [("source: null", "source has no value; it is required: give text"),
     ("rank: 1.5", "rank must be a whole number (got 1.5)"),
     ("rank: 1e3x", "rank must be a whole number (got '1e3x')"),
     ("rank: {a: 1}", "rank must be a whole number (got a mapping)"),
     ("seed: 2020-01-01", "seed must be a whole number (got '2020-01-01')"),
     ("rank: 99999999999999999999", "rank is too large"),
     ("mode: LoRA", "mode must be one of lora, full, language (got 'LoRA')"),
     ("targets: [[a]]", "targets must be text (got a list)"),
     ("targets: null", "targets has no value; give a list of texts, or leave it out for its default (q_proj, k_proj")],
)  # fmt: skip
def test_a_wrong_value_is_said_in_words(monkeypatch, capsys, tmp_path, text, says):
    line = refused(
        monkeypatch, capsys, ["train", "sft", "--out", "o", "--config", config(tmp_path, text + "\n")]
    )
    assert f"c.yaml: {says}" in line, line
    assert "object at 0x" not in line and "invalid literal" not in line and "datetime" not in line


def test_a_whole_number_may_be_written_as_a_decimal_anywhere(monkeypatch, capsys, tmp_path):
    for text in ("rank: 1000.0", "rank: 1e3", "rank: 1.0e3", "rank: 1E+3"):
        assert made(monkeypatch, capsys, [*SFT, "--config", config(tmp_path, text + "\n")]).rank == 1000
    assert made(monkeypatch, capsys, [*SFT, "--rank", "1e3"]).rank == 1000


def test_a_file_must_hold_a_mapping(monkeypatch, capsys, tmp_path):
    line = refused(monkeypatch, capsys, [*SFT, "--config", config(tmp_path, "3\n")])
    assert line.endswith(
        "must hold a mapping of setting names to values (lines like `rank: 8`), not a single value"
    )


# 6: numbers are finite


@pytest.mark.parametrize(
    "args",
    [
        ["--epochs", "nan"],
        ["--epochs", "1e400"],
        ["--lr", "1e999"],
        ["--warmup-ratio", "nan"],
        ["--epochs=-inf"],
    ],
)
def test_nan_and_infinity_are_refused_on_the_command_line(monkeypatch, capsys, args):
    assert "must be a finite number" in refused(monkeypatch, capsys, [*SFT, *args])


@pytest.mark.parametrize(
    "text", ["epochs: .nan", "epochs: .inf", "epochs: -.Inf", "lr: 1e400", "epochs: nan"]
)
def test_nan_and_infinity_are_refused_in_a_file(monkeypatch, capsys, tmp_path, text):
    line = refused(monkeypatch, capsys, [*SFT, "--config", config(tmp_path, text + "\n")])
    assert "c.yaml: " in line and "must be a finite number" in line


def test_nan_in_a_json_file_is_refused(monkeypatch, capsys, tmp_path):
    line = refused(monkeypatch, capsys, [*SFT, "--config", config(tmp_path, '{"epochs": NaN}', "c.json")])
    assert "holds NaN" in line


def test_a_sampling_setting_is_finite(monkeypatch, capsys):
    line = refused(monkeypatch, capsys, ["tell-dataset", "data", "--out", "o", "--temperature", "nan"])
    assert line == "error: --temperature must be a finite number (got 'nan')"


# 7: none unsets an optional number; a setting may clear another given below it


@pytest.mark.parametrize("flag", ["--global-batch", "--alpha", "--max-steps", "--eval-every", "--lr"])
def test_none_unsets_an_optional_number(monkeypatch, capsys, tmp_path, flag):
    name = flag[2:].replace("-", "_")
    recipe = config(tmp_path, f"{name}: 4\n")
    assert getattr(made(monkeypatch, capsys, [*SFT, "--config", recipe]), name) == 4
    assert getattr(made(monkeypatch, capsys, [*SFT, "--config", recipe, flag, "none"]), name) is None
    assert (
        getattr(made(monkeypatch, capsys, [*SFT, "--config", config(tmp_path, f"{name}: none\n")]), name)
        is None
    )


def test_the_help_says_none_unsets_an_optional_number():
    shown = run_cli("train", "sft", "--help").stdout
    assert "twice the rank). Give none to unset it." in " ".join(shown.split())


# 8: JSON is JSON; a key given twice is refused


def test_json_is_read_as_json(monkeypatch, capsys, tmp_path):
    assert (
        made(monkeypatch, capsys, [*SFT, "--config", config(tmp_path, '{\n\t"rank": 8\n}\n', "c.json")]).rank
        == 8
    )
    line = refused(monkeypatch, capsys, [*SFT, "--config", config(tmp_path, '{"rank": 1,}', "c.json")])
    assert line.endswith("c.json is not valid JSON at line 1, column 12 (Expecting property name enclosed in "
                         "double quotes); fix the file")  # fmt: skip


@pytest.mark.parametrize(
    ("text", "name", "says"),
    [("rank: 8\nrank: 16\n", "c.yaml", "'rank' is given twice (lines 1 and 2); keep one"),
     ("target: [a]\ntargets: [b]\n", "c.yaml", "target and targets both give targets; keep one of them"),
     ("grad-accum: 2\ngrad_accum: 4\n", "c.yaml", "grad-accum and grad_accum both give grad_accum"),
     ('{"rank": 8, "rank": 16}', "c.json", "'rank' is given twice in one object; keep one")],
)  # fmt: skip
def test_a_setting_given_twice_is_refused(monkeypatch, capsys, tmp_path, text, name, says):
    assert says in refused(monkeypatch, capsys, [*SFT, "--config", config(tmp_path, text, name)])


# 11: both paths read a file the same way


def test_an_empty_required_list_is_the_same_error_on_both_paths(monkeypatch, capsys, tmp_path):
    for args, name in ((["evaluate", "compare"], "runs"), (["train", "dpo", "--out", "o"], "pairs"),
                       (["train", "grpo", "--out", "o"], "sources")):  # fmt: skip
        line = refused(monkeypatch, capsys, [*args, "--config", config(tmp_path, f"{name}: []\n")])
        assert line.endswith(f"c.yaml: {name} is an empty list; it is required: give at least one")


def test_the_config_file_and_paths_are_the_settings_to_check_not_typers(monkeypatch, capsys, tmp_path):
    assert refused(monkeypatch, capsys, [*SFT, "--config", str(tmp_path)]).endswith(
        "is a folder; give the YAML or JSON file of settings"
    )
    if os.geteuid() != 0:  # root reads anything
        locked = Path(config(tmp_path, "rank: 8\n"))
        locked.chmod(0)
        assert "permission denied" in refused(monkeypatch, capsys, [*SFT, "--config", str(locked)])
        assert made(monkeypatch, capsys, ["evaluate", "compare", str(locked), str(locked)]).runs == (
            locked,
            locked,
        )


# 12: a file of another command; every flag spelling is a key; secrets


def test_a_record_of_another_command_says_which(monkeypatch, capsys, tmp_path):
    from storyreasoning.train.settings import SFTSettings

    recorded = tmp_path / "settings.json"
    S.write_record(SFTSettings(source="data", out=tmp_path / "sft"), recorded)
    line = refused(monkeypatch, capsys, ["train", "dpo", "pairs", "--out", "o", "--config", str(recorded)])
    assert "not settings of this job" in line
    assert line.endswith(
        "the file holds the settings of `storyreasoning train sft`: use it with that command"
    )
    # a training recipe is also a config of train plan: the training it is for is named, alone
    recipe = Path(__file__).parents[1] / "recipes" / "qwenstoryteller2-dpo.yaml"
    line = refused(monkeypatch, capsys, ["train", "sft", "data", "--out", "o", "--config", str(recipe)])
    assert line.endswith(
        "the file holds the settings of `storyreasoning train dpo`: use it with that command"
    )


def test_every_flag_of_a_setting_is_a_key(monkeypatch, capsys, tmp_path):
    for text in ("group_size: 4", "group-size: 4", "num_generations: 4"):
        grpo = made(
            monkeypatch, capsys, ["train", "grpo", "data", "--out", "o", "--config", config(tmp_path, text)]
        )
        assert grpo.num_generations == 4


def test_a_secret_in_a_file_names_the_flag_and_the_variable(monkeypatch, capsys, tmp_path):
    line = refused(monkeypatch, capsys, ["tell-dataset", "--config", config(tmp_path, "api_key: sk-1\n")])
    assert line.endswith("'api_key' is a secret, so it is never read from a file; give it with --api-key on the "
                         "command line or the OPENAI_API_KEY environment variable")  # fmt: skip
    line = refused(monkeypatch, capsys, ["build", "--config", config(tmp_path, "token: hf_1\n")])
    assert "--token" in line and "HF_TOKEN" in line


# 14: the note names arguments as arguments, on one line


def test_the_note_names_arguments_as_arguments_on_one_line(tmp_path):
    recipe = config(tmp_path, "all: true\n")
    told = run_cli("evaluate", "compare", "a" * 40, "b" * 40, "--out", str(tmp_path / ("x" * 60)), "--config", recipe,
                   "--metrics", "grounding", env={"COLUMNS": "80"})  # fmt: skip
    notes = [line for line in told.stderr.splitlines() if line.startswith("settings from")]
    assert notes == [f"settings from {recipe}; from the command line: RUNS, --out, --metrics"], told.stderr


def test_only_the_main_process_of_a_launch_says_the_note(tmp_path):
    """Each process of ``accelerate launch`` reads the same --config: the note comes once, from rank 0."""
    recipe = config(tmp_path, "all: true\n")
    args = ("evaluate", "compare", "a", "b", "--out", str(tmp_path / "x"), "--config", recipe)
    main, other = (run_cli(*args, env={"RANK": rank}) for rank in ("0", "1"))
    assert "settings from" in main.stderr
    assert "settings from" not in other.stderr and main.returncode == other.returncode


# 9, 10: bounds name the file and key; records hold absolute paths


def test_a_record_holds_absolute_paths_and_repeats_the_job_from_anywhere(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    settings = made(monkeypatch, capsys, ["evaluate", "runs/one", "--out", "reports/../eval"])
    recorded = S.record(settings)
    assert recorded["run"] == str(tmp_path / "runs" / "one") and recorded["out"] == str(tmp_path / "eval")
    (tmp_path / "settings.json").write_text(json.dumps(recorded))
    monkeypatch.chdir(Path(sys.prefix))
    again = made(monkeypatch, capsys, ["evaluate", "--config", str(tmp_path / "settings.json")])
    assert again.run == tmp_path / "runs" / "one" and not math.isnan(again.workers or 0)


# 15: a value out of its bounds, or against another setting, is named by flag and by the file that gave it


def test_a_value_out_of_bounds_names_its_flag_or_its_file(tmp_path):
    """Real runs: ``--beta 0`` names ``--beta``; a recipe's ``epochs: -1`` names the file and the key; nothing
    is made."""
    out = tmp_path / "o"
    assert one_error_line(run_cli("train", "dpo", "p", "--out", str(out), "--beta", "0")) == (
        "error: --beta must be more than 0 (got 0)"
    )
    recipe = config(tmp_path, "epochs: -1\n", "bad.yaml")
    assert one_error_line(run_cli("train", "sft", "data", "--out", str(out), "--config", recipe)) == (
        f"error: {recipe}: epochs must be more than 0 (got -1)"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [(["train", "dpo", "p", "--out", "o", "--beta", "0"], "--beta must be more than 0 (got 0)"),
     ([*SFT, "--lr", "-1e-5"], "--lr must be more than 0 (got -1e-05)"),
     ([*SFT, "--lr", "0"], "--lr must be more than 0 (got 0)"),
     ([*SFT, "--epochs", "0", "--max-steps", "5"], "--epochs must be more than 0 (got 0)"),
     (["train", "grpo", "data", "--out", "o", "--epochs", "-1"], "--epochs must be more than 0 (got -1)"),
     (["train", "plan", "--gpu-memory", "0"], "--gpu-memory must be more than 0 (got 0)")],
)  # fmt: skip
def test_an_exclusive_bound_is_one_line_on_both_paths(monkeypatch, capsys, args, says):
    assert refused(monkeypatch, capsys, args) == f"error: {says}"


def test_a_rule_across_settings_names_the_flags_and_the_file_that_gave_them(monkeypatch, capsys, tmp_path):
    pixels = config(tmp_path, "min_pixels: 900\nmax_pixels: 800\n", "px.yaml")
    rule = "exceeds --max-pixels {}; give a lower bound at most the upper"
    assert refused(monkeypatch, capsys, [*SFT, "--config", pixels]) == (
        f"error: --min-pixels 900 {rule.format(800)} (min_pixels, max_pixels from {pixels})"
    )
    assert refused(monkeypatch, capsys, [*SFT, "--config", pixels, "--max-pixels", "700"]) == (
        f"error: --min-pixels 900 {rule.format(700)} (min_pixels from {pixels})"
    )
    given = [*SFT, "--config", pixels, "--min-pixels", "900", "--max-pixels", "800"]  # the file gives neither
    assert refused(monkeypatch, capsys, given) == f"error: --min-pixels 900 {rule.format(800)}"
    batch = config(tmp_path, "global_batch: 63\n", "gb.yaml")
    assert refused(monkeypatch, capsys, [*SFT, "--config", batch, "--batch-size", "2"]) == (
        f"error: --global-batch 63 is not a multiple of --batch-size 2 (global_batch from {batch})"
    )
    lengths = config(tmp_path, "max_length: 2000\n", "grpo.yaml")
    assert refused(monkeypatch, capsys, ["train", "grpo", "data", "--out", "o", "--config", lengths]) == (
        "error: --max-completion-length 6144 leaves no room for the prompt in --max-length 2000; raise "
        f"--max-length (0: no limit) or lower --max-completion-length (max_length from {lengths})"
    )


def test_the_help_shows_an_exclusive_bound():
    shown = " ".join(run_cli("train", "dpo", "--help").stdout.split())
    for says in ("--beta <float> DPO temperature β. More than 0. [default: 0.1]",
                 "--lr <float> Learning rate. Give none to unset it. More than 0. [default: 5e-06]",
                 "--epochs <float> Training epochs. More than 0. [default: 3.0]"):  # fmt: skip
        assert says in shown, shown


def test_a_job_never_writes_its_settings_over_another_jobs(tmp_path):
    """A folder another job resumes from (a training's settings.json) is refused by evaluate, tell-dataset
    and build before any work, the record kept byte for byte; each job's own record, and one an earlier
    version wrote with a setting since removed, pass."""
    from storyreasoning.builder.settings import BuildSettings
    from storyreasoning.evaluate.settings import EvaluateSettings
    from storyreasoning.tell.settings import TellDatasetSettings
    from storyreasoning.train.settings import SFTSettings

    examples = Path(__file__).parents[1] / "examples" / "stories"
    training = tmp_path / "sft"
    S.write_record(SFTSettings(source=str(examples), out=training), training / "settings.json")
    held = (training / "settings.json").read_bytes()
    for args in (
        ["evaluate", str(training), "--dataset", str(examples), "--out", str(training)],
        ["tell-dataset", str(examples), "--teller", "baseline", "--out", str(training)],
        ["build", str(examples / "pioneers"), "--out", str(training)],
    ):
        result = run_cli(*args)
        assert result.returncode == 2, result.stdout + result.stderr
        (line,) = [line for line in result.stderr.splitlines() if line.strip()]
        assert line.startswith(f"error: {training} holds the settings of another job (") and line.endswith(
            "are no settings of this one); choose another --out"
        ), line
    assert (training / "settings.json").read_bytes() == held
    assert sorted(p.name for p in training.iterdir()) == ["settings.json"]
    for cls, made in ((EvaluateSettings, dict(run=tmp_path)), (TellDatasetSettings, dict(source="d", out=tmp_path)),
                      (BuildSettings, dict(frames=tmp_path, out=tmp_path))):  # fmt: skip
        own = tmp_path / cls.__name__ / "settings.json"
        S.write_record(cls(**made), own)
        S.write_record(cls(**made), own)  # its own: written again
        older = {**json.loads(own.read_text()), "a_setting_since_removed": 1}
        own.write_text(json.dumps(older))
        S.check_record(cls, own)


# the audit of the shared command line: a second file, an empty place, a record of another command


def test_a_config_file_given_twice_is_refused_not_half_read(monkeypatch, capsys, tmp_path):
    """typer kept the last ``--config`` and dropped the first unsaid (its lr lost, the note naming one)."""
    first, second = config(tmp_path, "lr: 1e-3\n", "a.yaml"), config(tmp_path, "rank: 4\n", "b.yaml")
    for args in (["-c", first, "-c", second], ["--config", first, f"--config={second}"]):
        line = refused(monkeypatch, capsys, [*SFT, *args])
        assert line.startswith("error: --config is given 2 times (") and "give one file" in line
    assert made(monkeypatch, capsys, [*SFT, "-c", first]).lr == 1e-3  # one file: read as before


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        ([*SFT, "--model="], "--model"),
        (["train", "sft", "", "--out", "o"], "SOURCE"),
        (["tell-dataset", "data", "--out", "o", "--model", "  "], "--model"),
        (["evaluate", "run", "r", "--dataset="], "--dataset"),
        (["build", "frames", "--out", "o", "--detector="], "--detector"),
    ],
)
def test_an_empty_model_or_dataset_is_refused_not_taken_for_the_default(monkeypatch, capsys, args, flag):
    """An empty ``place`` (a model, a dataset: a folder or a hub id) was text like any other: tell-dataset
    and evaluate took it for "not given" (the default model downloaded), train for a hub id to look up."""
    assert (
        refused(monkeypatch, capsys, args)
        == f"error: {flag} is empty; give a local file or folder, or a hub id"
    )


def test_an_empty_model_in_a_file_names_the_file_and_key(monkeypatch, capsys, tmp_path):
    line = refused(monkeypatch, capsys, [*SFT, "--config", config(tmp_path, 'model: ""\n')])
    assert line.endswith("c.yaml: model is empty; give a local file or folder, or a hub id")


def test_a_record_of_another_command_guesses_no_setting(monkeypatch, capsys, tmp_path):
    """A tell-dataset record given to train sft said "did you mean dropout?; the file holds the settings of
    `storyreasoning tell-dataset`": the nearest name to 'prompt' is no help when the command is wrong."""
    from storyreasoning.tell.settings import TellDatasetSettings

    recorded = tmp_path / "settings.json"
    S.write_record(TellDatasetSettings(source="data", out=tmp_path / "run", teller="baseline"), recorded)
    line = refused(monkeypatch, capsys, [*SFT, "--config", str(recorded)])
    assert "did you mean" not in line
    assert line.endswith(
        "the file holds the settings of `storyreasoning tell-dataset`: use it with that command"
    )
    # a file of this command with a typo keeps its guess
    line = refused(monkeypatch, capsys, [*SFT, "--config", config(tmp_path, "rnak: 8\n")])
    assert line.endswith("'rnak' is not a setting of this job; did you mean rank?")


def test_an_off_flag_as_a_key_says_how_a_switch_is_written(monkeypatch, capsys, tmp_path):
    for key in ("no_plots", "no-plots"):
        line = refused(
            monkeypatch, capsys, ["evaluate", "run", "r", "--config", config(tmp_path, f"{key}: true\n")]
        )
        assert line.endswith(
            f"'{key}' is not a setting of this job; did you mean plots (plots: false is --no-plots)?"
        )


URL_FIX = "give the server's base URL (such as http://localhost:8000/v1), or leave it out"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["tell-dataset", "data", "--out", "o", "--endpoint="], f"--endpoint is empty; {URL_FIX}"),
        (["tell-dataset", "data", "--out", "o", "-e", "http://127.0.0.1:9/v1", "-e", ""], f"--endpoint is empty; {URL_FIX}"),
        ([*SFT, "--target", " "], "--target has an empty value; give text, or leave it out"),
    ],
)  # fmt: skip
def test_an_empty_item_of_a_list_is_refused(monkeypatch, capsys, args, said):
    """``-e "$URL"`` with URL unset was no endpoint at all: tell-dataset went on to download the default
    7B model; ``--target=`` a LoRA module named ''."""
    assert refused(monkeypatch, capsys, args) == f"error: {said}"


def test_an_empty_item_of_a_list_in_a_file_names_the_file_and_key(monkeypatch, capsys, tmp_path):
    line = refused(monkeypatch, capsys, [*SFT, "--config", config(tmp_path, 'target: [q_proj, ""]\n')])
    assert line.endswith("c.yaml: target has an empty value; give text, or leave it out")


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["build", "frames", "--out", "o", "--landmarks-endpoint="], "--landmarks-endpoint"),
        (["build", "frames", "--out", "o", "--writer", "chat", "--endpoint", " "], "--endpoint"),
        (["evaluate", "judge", "run", "--endpoint="], "--endpoint"),
    ],
)  # fmt: skip
def test_an_empty_server_url_is_refused_wherever_one_is_named(monkeypatch, capsys, args, flag):
    """A server's URL given empty (an unset ``$URL``) is no server: landmarks went unsought, the judge took
    $OPENAI_BASE_URL; every URL option is declared ``url=True`` and refuses it in one line."""
    assert refused(monkeypatch, capsys, args) == f"error: {flag} is empty; {URL_FIX}"
