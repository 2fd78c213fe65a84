"""Job commands with plain arguments run without typer, and end with the settings typer would make.

Every :class:`~storyreasoning.settings.Command` of every command module is read both ways,
one option at a time with a value of its type (and the ``=``, short-flag, repeated and
config-file forms): the settings, or the one-line error, must be the same. What the quick
path does not read goes to typer, which reads or refuses it with its own message.
"""

from __future__ import annotations

import importlib
import typing
from pathlib import Path

import pytest

from storyreasoning import cli
from storyreasoning import settings as S
from storyreasoning.cli import COMMANDS, _job_command, main
from storyreasoning.errors import StoryReasoningError


def job_commands() -> list[tuple[list[str], S.Command]]:
    """``(prefix, command)`` of every job command: the words that name it, and its record."""
    out = []
    for module_name in dict.fromkeys(module for module, _ in COMMANDS.values()):
        module = importlib.import_module(module_name)
        group = getattr(module, "GROUP", None)
        for job in getattr(module, "JOBS", ()):
            out.append(([group, job.name] if group else [job.name], job))
    return out


JOBS = job_commands()
TYPER_APP = cli.typer_app


def test_every_settings_command_is_a_job_command():
    names = {" ".join(prefix) for prefix, _ in JOBS}
    assert {"tell", "tell-dataset", "serve", "build", "studio", "evaluate run", "evaluate compare",
            "evaluate judge", "evaluate agree", "train sft", "train pairs", "train dpo", "train grpo",
            "train plan", "train push", "data push"} <= names  # fmt: skip


def test_a_group_with_a_default_has_only_job_subcommands():
    import typer
    from typer.main import get_group

    for module_name in dict.fromkeys(module for module, _ in COMMANDS.values()):
        module = importlib.import_module(module_name)
        if getattr(module, "DEFAULT", None) is None:
            continue
        root = typer.Typer()
        module.register(root)
        group = get_group(root).commands[module.GROUP]
        assert set(group.commands) == {job.name for job in module.JOBS}


@pytest.mark.parametrize(
    ("args", "name", "rest"),
    [
        (["evaluate", "RUN", "--all"], "run", ["RUN", "--all"]),
        (["evaluate", "run", "RUN"], "run", ["RUN"]),
        (["evaluate", "compare", "A", "B"], "compare", ["A", "B"]),
        (["evaluate", "--help"], "run", ["--help"]),  # then refused by the quick path: typer's
        (["tell-dataset", "D", "--out", "o"], "tell-dataset", ["D", "--out", "o"]),
        (["train", "sft", "--config", "r.yaml"], "sft", ["--config", "r.yaml"]),
        (["build", "F"], "build", ["F"]),
    ],
)
def test_the_words_name_the_job(args, name, rest):
    found = _job_command(args)
    assert found is not None and found[0].name == name and found[1] == rest


@pytest.mark.parametrize(
    "args", [[], ["chek"], ["check", "f"], ["train", "merge", "a"], ["train"], ["data", "info", "x"]]
)
def test_what_names_no_job_is_typers(args):
    assert _job_command(args) is None


def sample(field: S.Field, kind) -> str:
    """A value of ``kind`` that the field accepts, other than its default where possible."""
    choices = typing.get_args(kind) if typing.get_origin(kind) is typing.Literal else None
    if choices:
        return str(choices[-1])
    low, high = field.spec.min, field.spec.max
    if kind is int:
        value = int(low) + 1 if low is not None else 3
        return str(value if high is None or value <= high else int(low))
    if kind is float:
        value = low + 0.25 if low is not None else 0.5
        return str(value if high is None or value <= high else low)
    if kind is Path:
        return "some/place"
    return "text"


def forms(prefix: list[str], job: S.Command):
    """Argument lists for the job: its required arguments, then each option alone in every form."""
    fields = [f for f in S.settings_fields(job.cls) if f.spec.cli]
    arguments = [f for f in fields if f.spec.argument]
    base = []
    for field in arguments:
        kind = typing.get_args(field.base)[0] if field.many else field.base
        base += [sample(field, kind)] * (2 if field.many else 1)
    for field in fields:  # required options
        if not field.spec.argument and field.default is S.MISSING:
            base += [field.flag, sample(field, field.base)]
    yield base
    for field in fields:
        if field.spec.argument or field.default is S.MISSING:
            continue
        names = field.spec.flags or (field.flag,)
        if field.base is bool and not field.many:
            yield [*base, names[0]]
            yield ["--no-" + names[0].removeprefix("--"), *base]
            continue
        kind = typing.get_args(field.base)[0] if field.many else field.base
        value = sample(field, kind)
        yield [*base, names[0], value]
        yield [f"{names[0]}={value}", *base]
        for short in names[1:]:
            yield [*base, short, value]
        if field.many:
            yield [*base, names[0], value, names[0], value + "2" if kind is not int else "7"]


def outcome(monkeypatch, args: list[str], quick: bool, *, typer: bool = True):
    """What ``main(args)`` makes: ("settings", the settings) or ("exit", status); ``typer=False``:
    and typer is not used."""
    made = []
    monkeypatch.setattr(S, "_job", lambda run: lambda settings: made.append(settings) or 0)
    if not typer:

        def refuse():
            raise AssertionError(f"typer read {args}")

        monkeypatch.setattr(cli, "typer_app", refuse)
    else:
        monkeypatch.setattr(cli, "typer_app", TYPER_APP)
    try:
        main(args, quick=quick)
    except SystemExit as exc:
        if made:
            return ("settings", made[0])
        return ("exit", exc.code)
    except StoryReasoningError as exc:  # pragma: no cover  (main turns these into SystemExit)
        return ("error", str(exc))
    raise AssertionError("main returned without exiting")


@pytest.mark.parametrize(("prefix", "job"), JOBS, ids=[" ".join(p) for p, _ in JOBS])
def test_plain_arguments_make_the_settings_typer_makes(monkeypatch, capsys, prefix, job):
    for args in forms(prefix, job):
        assert S.quick_values(job.cls, args, config=job.config) is not None, args  # the quick path reads it
        quick = outcome(monkeypatch, [*prefix, *args], quick=True, typer=False)
        quick_err = capsys.readouterr().err
        full = outcome(monkeypatch, [*prefix, *args], quick=False)
        full_err = capsys.readouterr().err
        assert quick == full, args
        assert quick_err == full_err, args


def test_a_config_file_and_the_flags_over_it_make_what_typer_makes(monkeypatch, capsys, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "split: validation\nworkers: 2\nlimit: null\nmetrics: grounding,identity\nplots: false\n"
    )
    for args in (
        ["evaluate", "RUN", "--config", str(config)],
        ["evaluate", "RUN", "-c", str(config), "--workers", "1", "--plots"],
        ["evaluate", f"--config={config}", "RUN", "--split", "test"],
    ):
        quick = outcome(monkeypatch, args, quick=True, typer=False)
        quick_err = capsys.readouterr().err
        full = outcome(monkeypatch, args, quick=False)
        full_err = capsys.readouterr().err
        assert quick[0] == "settings" and quick == full, args
        assert "settings from" in quick_err and quick_err == full_err, args


@pytest.mark.parametrize(
    "args",
    [
        ["RUN", "--help"],
        ["RUN", "-h"],
        ["--", "RUN"],
        ["RUN", "--colour"],  # unknown
        ["RUN", "--workers", "-1"],  # below the bounds: refused (by typer's path, with the same message)
        ["RUN", "--workers", "--1"],
        ["RUN", "--split", "-x"],  # a value like a flag
        ["RUN", "--limit", "1_000"],
        ["RUN", "--workers", "0x2"],
        ["RUN", "--workers", "٣"],  # a digit neither path reads
        ["RUN", "--workers"],  # no value
        ["RUN", "--workers", "1", "--workers", "2"],  # twice
        ["RUN", "--split", ""],
        ["RUN", "-s=test"],  # -s with the value "=test" to typer
        ["RUN", "--plots=yes"],
        ["RUN", "--protocol", "ORIGINAL"],
        ["RUN", "RUN2"],  # one argument too many
        ["RUN", "--config", "a.yaml", "--config", "b.yaml"],
    ],
)
def test_anything_else_is_left_to_typer(args):
    from storyreasoning.evaluate.settings import EvaluateSettings

    assert S.quick_values(EvaluateSettings, args) is None


def test_bounds_are_checked_alike_on_both_paths(monkeypatch, capsys):
    from storyreasoning.evaluate.settings import EvaluateSettings

    field = next(f for f in S.settings_fields(EvaluateSettings) if f.spec.min is not None)
    below = str(int(field.spec.min) - 1)
    args = ["evaluate", "RUN", field.flag, below]
    quick = outcome(monkeypatch, args, quick=True)
    quick_err = capsys.readouterr().err
    full = outcome(monkeypatch, args, quick=False)
    assert quick == full == ("exit", 2) and quick_err == capsys.readouterr().err
    assert quick_err == f"error: {field.flag} must be at least {int(field.spec.min)} (got {below})\n"


@pytest.mark.parametrize(("value", "read"), [("+1", 1), ("02", 2), ("1.0", 1), ("1e1", 10)])
def test_numbers_typer_once_refused_are_read_alike_on_both_paths(monkeypatch, capsys, value, read):
    args = ["evaluate", "RUN", "--limit", value]
    quick = outcome(monkeypatch, args, quick=True, typer=False)
    full = outcome(monkeypatch, args, quick=False)
    assert quick[0] == "settings" and quick == full and quick[1].limit == read


def test_a_required_setting_not_given_goes_to_typer(monkeypatch, capsys):
    for args, missing in (
        (["tell-dataset", "SOURCE"], "Missing option '--out'"),
        (["evaluate", "run", "--all"], "Missing argument 'RUN'"),
    ):
        entry, rest = _job_command(args)
        assert S.run_quick(entry, rest) is None
        assert outcome(monkeypatch, args, quick=True) == ("exit", 2)
        assert missing in capsys.readouterr().err


def test_a_required_argument_may_come_from_the_config_file(monkeypatch, capsys, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"run: {tmp_path / 'run'}\nworkers: 1\n")
    args = ["evaluate", "--config", str(config)]
    quick = outcome(monkeypatch, args, quick=True, typer=False)
    quick_err = capsys.readouterr().err
    full = outcome(monkeypatch, args, quick=False)
    assert quick[0] == "settings" and quick == full and quick_err == capsys.readouterr().err


def test_a_value_out_of_bounds_in_a_config_file_is_one_line_naming_the_file_and_key(
    monkeypatch, capsys, tmp_path
):
    from storyreasoning.evaluate.settings import EvaluateSettings

    field = next(f for f in S.settings_fields(EvaluateSettings) if f.spec.min is not None and f.spec.min > 0)
    config = tmp_path / "c.yaml"
    config.write_text(f"{field.name}: {int(field.spec.min) - 1}\n")
    args = ["evaluate", "RUN", "--config", str(config)]
    quick = outcome(monkeypatch, args, quick=True, typer=False)
    quick_err = capsys.readouterr().err
    full = outcome(monkeypatch, args, quick=False)
    assert quick == full == ("exit", 2) and quick_err == capsys.readouterr().err
    assert (
        quick_err
        == f"error: {config}: {field.name} must be at least {int(field.spec.min)} (got {int(field.spec.min) - 1})\n"
    )


@pytest.mark.parametrize(
    ("value", "read"),
    [("12", 12.0), ("1.5", 1.5), (".5", 0.5), ("5.", 5.0), ("1e-5", 1e-5), ("2.5E+3", 2500.0), ("-0.75", -0.75),
     ("+1", 1.0), ("1e999", "a finite"), ("inf", "a finite"), ("nan", "a finite"), ("-Infinity", "a finite"),
     (".nan", "a finite"), ("1e", "a number"), (".", "a number"), ("1.2.3", "a number"), ("0x1", "a number"),
     ("--1", "a number"), ("1,5", "a number"), ("1_0", "a number"), ("٣", "a number")],
)  # fmt: skip
def test_decimals_are_read_alike_from_the_command_line_and_files(value, read):
    field = S.Field("x", float, S.Spec("a number, unbounded"), 0.0)
    try:
        got = S.convert(field, value, "--x")
    except StoryReasoningError as exc:
        assert isinstance(read, str) and str(exc).startswith(f"--x must be {read}"), exc
    else:
        assert got == read and isinstance(got, float)


RECIPES = Path(__file__).parents[1] / "recipes"


@pytest.mark.parametrize("recipe", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.stem)
def test_the_published_recipes_make_what_typer_makes(monkeypatch, capsys, recipe):
    objective = next(o for o in ("sft", "dpo", "grpo") if o in recipe.stem)
    job, _ = _job_command(["train", objective])
    given = S.read_config(recipe, job.cls)
    needed = []  # what the recipe leaves to the command line (the data, the output folder)
    mixed = [str(part).split("=")[0] for part in given.get("mix") or ()]  # the datasets --mix names
    for field in S.settings_fields(job.cls):
        if field.default is S.MISSING and field.name not in given:
            if field.spec.argument and field.many and mixed:
                needed += [f"data/{name}" for name in mixed]
                continue
            value = sample(field, typing.get_args(field.base)[0] if field.many else field.base)
            needed += [value] if field.spec.argument else [field.flag, value]
    for args in (
        ["train", objective, *needed, "--config", str(recipe)],
        ["train", objective, "--config", str(recipe), *needed, "--seed", "7", "--no-gradient-checkpointing"],
    ):
        quick = outcome(monkeypatch, args, quick=True, typer=False)
        quick_err = capsys.readouterr().err
        full = outcome(monkeypatch, args, quick=False)
        assert quick[0] == "settings" and quick == full, args
        assert quick_err == capsys.readouterr().err, args
