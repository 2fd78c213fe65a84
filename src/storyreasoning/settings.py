"""Job settings: one dataclass per job is the source of its options, its config file and its record.

A job's settings are a dataclass whose fields are declared with :func:`option` or
:func:`argument`. From that one definition come

* the command-line options (:func:`command` builds the typer command: flag names, help,
  panels, bounds and choices),
* the ``--config FILE`` a long command accepts: YAML (or JSON) whose keys are the field
  names (``grad_accum`` or ``grad-accum``); flags given on the command line override it,
* the settings a job records in its output folder (:func:`record`), which read back
  as a config file: ``--config RUN/settings.json`` repeats a run.

Shared groups of options (the storyteller, sampling, model loading, training) are
dataclasses that jobs inherit, so each option is declared once. This module is light:
typer and yaml are imported only by the functions that need them.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError
from .files import write_json_atomic

_KEY = "storyreasoning.option"
_NULLS = "storyreasoning.config-nulls"

#: The default of a setting that must be given: ``option(REQUIRED, "--out", help=...)``.
REQUIRED: Any = MISSING


@dataclass(frozen=True)
class Spec:
    """How a settings field appears on the command line."""

    help: str
    flags: tuple[str, ...] = ()  # default: --field-name
    panel: str | None = None
    min: float | None = None
    max: float | None = None
    metavar: str | None = None
    show_default: bool | str = True
    argument: bool = False
    secret: bool = False  # never recorded, never read from a config file (API keys)
    cli: bool = True  # False: settable from Python and config files only
    operational: bool = False  # how a job runs, not what it makes: may change when a job resumes


def option(
    default: Any = MISSING,
    *flags: str,
    help: str,
    panel: str | None = None,
    min: float | None = None,
    max: float | None = None,
    metavar: str | None = None,
    show_default: bool | str = True,
    secret: bool = False,
    cli: bool = True,
    operational: bool = False,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """A settings field that is a command-line option (``--field-name`` unless ``flags`` say otherwise).

    ``operational``: the setting says how a job runs (where, how fast, how patiently), not
    what it makes, so a resumed job may change it (see :func:`data_record`).
    """
    spec = Spec(help, tuple(flags), panel, min, max, metavar, show_default, False, secret, cli, operational)
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={_KEY: spec})
    return dataclasses.field(default=default, metadata={_KEY: spec})


def argument(
    default: Any = MISSING, *, help: str, metavar: str | None = None, operational: bool = False
) -> Any:
    """A settings field that is a positional argument (required unless it has a default)."""
    spec = Spec(help, metavar=metavar, argument=True, operational=operational)
    return dataclasses.field(default=default, metadata={_KEY: spec})


@dataclass(frozen=True)
class Field:
    name: str
    type: Any  # the resolved annotation
    spec: Spec
    default: Any  # MISSING when required

    @property
    def base(self) -> Any:
        """The annotation without ``| None``."""
        args = [a for a in typing.get_args(self.type) if a is not type(None)]
        if typing.get_origin(self.type) in (typing.Union, _UnionType) and len(args) == 1:
            return args[0]
        return self.type

    @property
    def many(self) -> bool:
        return typing.get_origin(self.base) in (tuple, list)

    @property
    def choices(self) -> tuple[str, ...] | None:
        base = self.base
        return tuple(typing.get_args(base)) if typing.get_origin(base) is typing.Literal else None

    @property
    def flag(self) -> str:
        return self.spec.flags[0] if self.spec.flags else "--" + self.name.replace("_", "-")

    @property
    def flags(self) -> tuple[str, ...]:
        """Every flag of an option, :attr:`flag` first."""
        return self.spec.flags or (self.flag,)

    @property
    def item(self) -> Any:
        """The type of one value: a repeatable field's element type, else :attr:`base`."""
        return typing.get_args(self.base)[0] if self.many else self.base

    @property
    def switch(self) -> bool:
        """An on/off option: ``--flag`` and ``--no-flag`` (:attr:`off_flag`), no value."""
        return self.base is bool and not self.many

    @property
    def off_flag(self) -> str:
        return "--no-" + self.flag.removeprefix("--")


try:
    from types import UnionType as _UnionType
except ImportError:  # pragma: no cover  (Python 3.9)
    _UnionType = typing.Union  # type: ignore[assignment,misc]


def settings_fields(cls: type) -> list[Field]:
    """The declared fields of a settings class (those made by :func:`option` or :func:`argument`)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(_KEY)
        if spec is None:
            continue
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else MISSING
        )  # fmt: skip
        out.append(Field(f.name, hints[f.name], spec, default))
    return out


# -- records and config files -------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A value as JSON holds it: paths as strings, tuples as lists, dataclasses as dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def record(settings: Any) -> dict:
    """The settings as a job records them (secrets left out; derived values resolved by ``resolved()``).

    The record reads back as a config file of the same job.
    """
    out = {
        f.name: plain(getattr(settings, f.name)) for f in settings_fields(type(settings)) if not f.spec.secret
    }
    resolved = getattr(settings, "resolved", None)
    if callable(resolved):
        out.update({k: plain(v) for k, v in resolved().items()})
    return out


def data_record(settings: Any) -> dict:
    """:func:`record` without the operational settings: what decides a job's output, so what a resumed
    job must keep (its values resolved as :func:`record` resolves them)."""
    kept = {f.name for f in settings_fields(type(settings)) if not f.spec.operational}
    return {k: v for k, v in record(settings).items() if k in kept}


def write_record(settings: Any, path: Path) -> None:
    """Write :func:`record` as JSON, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, record(settings))


def read_config(path: str | Path, cls: type) -> dict[str, Any]:
    """The settings a YAML or JSON file gives for ``cls``, keyed by field name; one clear error when wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"cannot read the config file {path} ({exc.__class__.__name__}); check the file"
        ) from None
    try:
        import yaml
    except ImportError:  # pragma: no cover  (pyyaml is a dependency)
        raise UsageError("config files need PyYAML: pip install pyyaml") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise UsageError(f"{path} is not valid YAML{at}; fix the file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(
            f"{path} must hold a mapping of setting names to values, not a {type(data).__name__}"
        )
    known = {f.name: f for f in settings_fields(cls)}
    aliases = {f.flag.lstrip("-").replace("-", "_"): f.name for f in known.values()}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        name = name if name in known else aliases.get(name, name)
        field = known.get(name)
        if field is None or field.spec.secret:
            why = (
                "a secret, so it is never read from a file"
                if field is not None
                else "not a setting of this job"
            )
            close = difflib.get_close_matches(name, list(known), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close and field is None else ""
            raise UsageError(f"{path}: {key!r} is {why}{hint}")
        if value is None and field.default is not None and type(None) not in typing.get_args(field.type):
            raise UsageError(f"{path}: {key} cannot be empty (its default is {plain(field.default)!r})")
        out[name] = _typed(field, value, f"{path}: {key}")
    return out


def _typed(field: Field, value: Any, where: str) -> Any:
    """A config value as the field's type holds it (YAML reads ``1e-5`` as text), or one clear error."""
    if value is None:
        return None
    if field.many:
        items = value if isinstance(value, (list, tuple)) else [value]
        return tuple(_scalar(field.item, item, where) for item in items)
    return _scalar(field.base, value, where)


def _scalar(kind: Any, value: Any, where: str) -> Any:
    choices = typing.get_args(kind) if typing.get_origin(kind) is typing.Literal else None
    try:
        if choices:
            if value not in choices:
                raise ValueError(f"choose one of {', '.join(map(str, choices))}")
            return value
        if kind is bool:
            if isinstance(value, bool):
                return value
            raise ValueError("write true or false")
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("a whole number is needed")
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError("a number is needed")
            return float(value)
        if kind is Path:
            return Path(str(value))
        if kind is str:
            if isinstance(value, (dict, list)):
                raise ValueError("text is needed")
            return str(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{where} = {value!r} is not valid ({exc})") from None
    return value


def from_config(cls: type, path: str | Path | None = None, **overrides: Any):
    """Settings from a config file with keyword overrides: the Python face of ``--config``."""
    values = read_config(path, cls) if path is not None else {}
    values.update(overrides)
    fields = {f.name: f for f in settings_fields(cls)}
    for name, value in list(values.items()):
        if fields.get(name) is not None and fields[name].many and isinstance(value, list):
            values[name] = tuple(value)
    try:
        return cls(**values)
    except TypeError as exc:
        raise UsageError(f"{cls.__name__}: {exc}") from None


# -- the command-line face --------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """A job's command as its module declares it, without importing typer: :meth:`add` gives it to a
    typer group (:func:`command`), :func:`run_quick` runs it on plain arguments without typer."""

    name: str
    cls: type
    run: str  # "module:function", imported when the command runs
    help: str | None = None
    config: bool = True
    epilog: str | None = None

    def add(self, group: Any) -> None:
        command(
            group, self.cls, self.run, name=self.name, help=self.help, config=self.config, epilog=self.epilog
        )


class _Unread(Exception):
    """An argument the quick path leaves to typer (to read, or to refuse with its own message)."""


def _quick_scalar(field: Field, kind: Any, value: str) -> Any:
    """``value`` as ``kind``, where typer would read it the same way; else :class:`_Unread`."""
    numeric = kind is int or kind is float
    if not value or (value.startswith("-") and not numeric):  # an empty value, a flag: typer's
        raise _Unread
    choices = typing.get_args(kind) if typing.get_origin(kind) is typing.Literal else None
    if choices:
        if value not in choices:
            raise _Unread
        return value
    if kind is str:
        return value
    if kind is Path:
        return Path(value)
    digits = value.removeprefix("-")  # a negative number is a value, to typer as here
    if kind is int:
        if not (digits.isascii() and digits.isdigit()) or (digits[0] == "0" and digits != "0"):
            raise _Unread
        number: float = int(value)
    elif kind is float:
        if not (digits.isascii() and _plain_decimal(digits)):
            raise _Unread
        number = float(value)
        if number in (float("inf"), float("-inf")):  # 1e999: typer's to read
            raise _Unread
    else:
        raise _Unread
    if not _within(field, number):
        raise _Unread
    return number


def _plain_decimal(text: str) -> bool:
    """``12``, ``1.5``, ``.5``, ``5.``, ``1e-5``, ``2.5E+3``: digits, one point, an exponent."""
    mantissa, e, exponent = text.lower().partition("e")
    if e:
        exponent = exponent[1:] if exponent[:1] in ("+", "-") else exponent
        if not exponent.isdigit():
            return False
    whole, _, fraction = mantissa.partition(".")
    return bool(whole or fraction) and (not whole or whole.isdigit()) and (not fraction or fraction.isdigit())


def _within(field: Field, value: Any) -> bool:
    """Whether a number is within the field's bounds (what typer checks); anything else is."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return True
    low, high = field.spec.min, field.spec.max
    return (low is None or value >= low) and (high is None or value <= high)


def quick_values(
    cls: type, args: list[str], *, config: bool = True
) -> tuple[dict[str, Any], Path | None] | None:
    """The values ``args`` give ``cls``'s fields, and the ``--config`` file, when every argument is
    plain: what typer would read the same way. Else None, and typer reads them.

    Plain: positional arguments that do not start with ``-``; ``--flag VALUE``,
    ``--flag=VALUE`` or a declared short flag ``-x VALUE``, with VALUE a choice, a whole
    number or decimal (``-`` its only sign, no leading zeros), within the bounds, text or a
    path (neither empty nor starting with ``-``); ``--switch``/``--no-switch``; a
    repeatable option as often as wanted, any other at most once. ``--help``, ``--``, an
    unknown flag, a short flag with its value attached, anything else: typer's; and so is
    a required setting that neither the arguments nor the config file give
    (:func:`run_quick` checks).
    """
    return _read_plain(_cli_fields(cls), args, config)


def _cli_fields(cls: type) -> list[Field]:
    return [f for f in settings_fields(cls) if f.spec.cli]


def _read_plain(
    fields: list[Field], args: list[str], config: bool
) -> tuple[dict[str, Any], Path | None] | None:
    """:func:`quick_values` on the command-line fields of a settings class."""
    flags: dict[str, tuple[Field, bool | None]] = {}  # flag → its field, and a switch's value
    for field in fields:
        if field.spec.argument:
            continue
        for name in field.flags:
            flags[name] = (field, True if field.switch else None)
        if field.switch:
            flags[field.off_flag] = (field, False)
    given: dict[str, Any] = {}
    positional: list[str] = []
    config_file: Path | None = None
    i = 0
    try:
        while i < len(args):
            token = args[i]
            i += 1
            if not token.startswith("-"):
                if not token:
                    raise _Unread
                positional.append(token)
                continue
            flag, equals, value = token.partition("=")
            if equals and not flag.startswith("--"):
                raise _Unread  # -x=1 is -x with the value "=1" to typer
            if config and flag in ("--config", "-c"):
                field, switch = None, None
            elif flag in flags:
                field, switch = flags[flag]
            else:
                raise _Unread  # --help, --, an unknown flag, -xVALUE
            if switch is not None:
                if equals or field is None or field.name in given:
                    raise _Unread
                given[field.name] = switch
                continue
            if not equals:
                if i == len(args):
                    raise _Unread
                value = args[i]
                i += 1
            if field is None:  # --config FILE
                if config_file is not None or not value or value.startswith("-"):
                    raise _Unread
                config_file = Path(value)
                continue
            if field.many:
                given[field.name] = (*given.get(field.name, ()), _quick_scalar(field, field.item, value))
            elif field.name in given:
                raise _Unread
            else:
                given[field.name] = _quick_scalar(field, field.item, value)
        arguments = [f for f in fields if f.spec.argument]
        if any(f.many for f in arguments[:-1]):
            raise _Unread
        for field in arguments:  # one not given may come from --config: run_quick checks
            if field.many:
                if positional:
                    given[field.name] = tuple(_quick_scalar(field, field.item, v) for v in positional)
                    positional = []
            elif positional:
                given[field.name] = _quick_scalar(field, field.item, positional.pop(0))
        if positional:
            raise _Unread  # more than the command takes
    except _Unread:
        return None
    return given, config_file


def run_quick(entry: Command, args: list[str]) -> int | None:
    """Run ``entry`` on ``args`` without typer when :func:`quick_values` can read them, as typer would
    (command line over config file over defaults); None when it cannot."""
    cli_fields = _cli_fields(entry.cls)
    parsed = _read_plain(cli_fields, args, entry.config)
    if parsed is None:
        return None
    given, config_file = parsed
    fields = {f.name: f for f in cli_fields}
    values: dict[str, Any] = {}
    if config_file is not None:
        for name, value in read_config(config_file, entry.cls).items():
            if value is None and fields[name].many:
                continue  # typer: an empty repeatable option is the field's own default
            if name not in given and not all(_within(fields[name], v) for v in _items(value)):
                return None  # typer checks a file's values against the bounds too, with its message
            values[name] = value
    values.update(given)
    if any(f.default is MISSING and name not in values for name, f in fields.items()):
        return None  # a required argument or option not given: typer says which
    settings = from_config(entry.cls, **values)
    if config_file is not None:
        _say_config(config_file, [f.flag for f in fields.values() if f.name in given])
    return _job(entry.run)(settings) or 0


def _items(value: Any) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def command(
    group: Any,
    cls: type,
    run: Callable[[Any], int | None] | str,
    *,
    name: str,
    help: str | None = None,
    config: bool = True,
    epilog: str | None = None,
) -> None:
    """Add ``name`` to the typer ``group``: options from ``cls``'s fields, ``--config`` when ``config``.

    The command builds ``cls`` from the options (command line over config file over
    defaults) and exits with ``run(settings)``; ``run`` may be ``"module:function"``,
    imported only when the command runs (so ``--help`` stays light).
    """
    import inspect

    import typer

    fields = _cli_fields(cls)
    many = {f.name for f in fields if f.many}
    params: list[inspect.Parameter] = [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    ]
    annotations: dict[str, Any] = {"ctx": typer.Context, "return": None}
    enums: dict[str, type] = {}
    # arguments first, in declaration order; options after, as declared
    for field in sorted(fields, key=lambda f: not f.spec.argument):
        annotation, default = _typer_param(field, enums, typer)
        params.append(inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=annotation))  # fmt: skip
        annotations[field.name] = annotation
    if config:

        def load(ctx: typer.Context, value: Path | None) -> Path | None:
            if value is not None:
                given = read_config(value, cls)
                # click reads an empty default as "no default": keep the file's nulls apart
                ctx.meta[_NULLS] = {k for k, v in given.items() if v is None}
                given = {k: v for k, v in given.items() if v is not None}
                ctx.default_map = {**(ctx.default_map or {}), **given}
            return value

        load.__annotations__ = {"ctx": typer.Context, "value": Path | None, "return": Path | None}
        option = typer.Option(
            None,
            "--config",
            "-c",
            help="A YAML file of settings (keys as the option names; a run's settings.json works too); "
            "options given on the command line override it.",
            is_eager=True,
            callback=load,
            show_default=False,
            rich_help_panel="Config",
        )
        params.append(inspect.Parameter("config_file", inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=Path | None))  # fmt: skip
        annotations["config_file"] = Path | None

    def callback(ctx, **values):
        config_file = values.pop("config_file", None)
        for key in ctx.meta.get(_NULLS, ()):
            if not _from_command_line(ctx, key):
                values[key] = None
        for key in [k for k, v in values.items() if v is None and k in many]:
            del values[key]  # a repeatable option not given: the field's own default
        for key, value in values.items():
            if key in enums and value is not None:
                values[key] = value.value
            elif isinstance(value, list):
                values[key] = tuple(v.value if key in enums else v for v in value)
        settings = from_config(cls, **values)
        if config_file is not None:
            _say_config(config_file, [f.flag for f in fields if _from_command_line(ctx, f.name)])
        raise typer.Exit(_job(run)(settings) or 0)

    callback.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    callback.__annotations__ = annotations
    callback.__doc__ = help or cls.__doc__
    callback.__name__ = name.replace("-", "_")
    group.command(name, epilog=epilog)(callback)


def _say_config(config_file: Path, flags: list[str]) -> None:
    """The note a command given ``--config`` prints: the file, and the flags given over it."""
    from rich.console import Console

    note = f"; from the command line: {', '.join(flags)}" if flags else ""
    Console(stderr=True, highlight=False).print(f"[dim]settings from {config_file}{note}[/dim]")


def _job(run: Callable[[Any], int | None] | str) -> Callable[[Any], int | None]:
    """The job function, imported from ``"module:function"``."""
    if not isinstance(run, str):
        return run
    import importlib

    module, _, function = run.partition(":")
    return getattr(importlib.import_module(module), function)  # type: ignore[no-any-return]


def _from_command_line(ctx: Any, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and getattr(source, "name", "") in ("COMMANDLINE", "ENVIRONMENT")


def _typer_param(field: Field, enums: dict[str, type], typer: Any) -> tuple[Any, Any]:
    """The annotation and the ``typer.Option``/``typer.Argument`` of one field."""
    from enum import Enum

    spec = field.spec
    inner = field.item
    choices = tuple(typing.get_args(inner)) if typing.get_origin(inner) is typing.Literal else None
    if choices:
        enum = Enum(f"{field.name.title()}Choice", {c: c for c in choices}, type=str)  # type: ignore[misc]
        enums[field.name] = enum
        inner = enum
    if field.many:
        annotation: Any = list[inner]
    elif field.default is None:
        annotation = inner | None
    else:
        annotation = inner
    default = field.default
    if default is MISSING:
        default = ...
    elif choices and default is not None:
        default = enums[field.name](default)
    elif field.many:
        default = list(default) if default else None
    kwargs: dict[str, Any] = {
        "help": spec.help,
        "show_default": spec.show_default if default not in (None, ...) else False,
    }
    if spec.metavar or spec.argument:
        kwargs["metavar"] = spec.metavar or field.name.upper()
    if spec.argument:
        return annotation, typer.Argument(default, **kwargs)
    if spec.min is not None:
        kwargs["min"] = spec.min
    if spec.max is not None:
        kwargs["max"] = spec.max
    if spec.panel:
        kwargs["rich_help_panel"] = spec.panel
    flags = field.flags
    if field.switch:
        kwargs["metavar"] = " "  # a flag takes no value: show none (typer would print <bool>)
        flags = (f"{flags[0]}/{field.off_flag}", *flags[1:])
    return annotation, typer.Option(default, *flags, **kwargs)


__all__ = [
    "REQUIRED",
    "Command",
    "Field",
    "Spec",
    "argument",
    "command",
    "data_record",
    "from_config",
    "option",
    "plain",
    "quick_values",
    "read_config",
    "record",
    "run_quick",
    "settings_fields",
    "write_record",
]
