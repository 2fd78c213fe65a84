"""Job settings: one dataclass per job is the source of its options, its config file and its record.

A job's settings are a dataclass whose fields are declared with :func:`option` or
:func:`argument`. From that one definition come

* the command-line options (:func:`command` builds the typer command: flag names, help,
  panels, bounds and choices),
* the ``--config FILE`` a long command accepts: YAML, or JSON when the name ends in
  ``.json``, whose keys are the field names or any of their flags (``grad_accum``,
  ``grad-accum``; ``target`` or ``targets``), one file at most; flags given on the command line
  override it; its relative paths are read from the working folder, as the command line's are,
* the settings a job records in its output folder (:func:`record`, paths made absolute),
  which read back as a config file: ``--config RUN/settings.json`` repeats a run.

Every value, from the command line, a config file or a Python keyword, passes through the
same conversion (:func:`convert`): its type, its bounds, a finite number, a non-empty path
with ``~`` expanded (a model or dataset, and each item of a list, not empty either), ``none``
to unset an optional number; a wrong value is one line naming
where it came from (``--rank``, ``recipe.yaml: rank``), never a traceback. A rule across
settings that a class checks itself (:class:`SettingsError`) names them by flag, and the config
file that gave any of them.

A config file is small (at most :data:`MAX_CONFIG_BYTES`), read with YAML 1.2's plain
types: ``true``/``false`` are the booleans (``yes``, ``no``, ``on``, ``off`` are words), a
number is decimal, and a text setting gets its value exactly as written (``revision:
0123`` is ``"0123"``). Aliases (``*name``), keys given twice and nesting deeper than any
setting needs are refused.

Shared groups of options (the storyteller, sampling, model loading, training) are
dataclasses that jobs inherit, so each option is declared once. This module is light:
typer and yaml are imported only by the functions that need them.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import typing
from collections.abc import Callable, Collection
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError
from .files import write_json_atomic

_KEY = "storyreasoning.option"
_NULLS = "storyreasoning.config-nulls"
_FILE = "storyreasoning.config-values"

#: The default of a setting that must be given: ``option(REQUIRED, "--out", help=...)``.
REQUIRED: Any = MISSING

#: The largest config file read: a config holds a few settings, a few kilobytes at most.
MAX_CONFIG_BYTES = 1 << 20
_MAX_DEPTH = 16  # how deep a config file may nest (its settings are values or lists of values)
_SHOWN = 60  # the most characters of a value an error shows
_LARGEST = 2**63 - 1  # the largest whole number a setting takes


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
    clears: tuple[str, ...] = ()  # settings this one resets to their defaults when given over them
    place: bool = False  # text naming a local file or folder, or else a hub id: recorded absolute when local
    above: float | None = None  # an exclusive lower bound: the value must be more than it
    url: bool = False  # a server's base URL: never empty (an unset $URL is no server, not the default)


def option(
    default: Any = MISSING,
    *flags: str,
    help: str,
    panel: str | None = None,
    min: float | None = None,
    max: float | None = None,
    above: float | None = None,
    metavar: str | None = None,
    show_default: bool | str = True,
    secret: bool = False,
    cli: bool = True,
    operational: bool = False,
    clears: tuple[str, ...] = (),
    place: bool = False,
    url: bool = False,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """A settings field that is a command-line option (``--field-name`` unless ``flags`` say otherwise).

    ``operational``: the setting says how a job runs (where, how fast, how patiently), not
    what it makes, so a resumed job may change it (see :func:`data_record`).

    ``clears``: settings that this one overrides when it is given on a higher layer than
    they are (the command line over a config file, a Python keyword over a file): they go
    back to their defaults there, unless given on the same layer. ``--grad-accum 4`` over a
    recipe's ``global_batch: 64`` is ``clears=("global_batch",)`` on ``grad_accum``.

    ``place``: text that names a local file or folder or, when nothing is there, a hub id (a
    model, a dataset source): :func:`record` writes it as an absolute path when it is on this
    machine, so that the record (``--config settings.json``) means the same from any folder.

    ``url``: a server's base URL; given empty (``--endpoint "$URL"`` with ``URL`` unset) it is
    refused, not read as "no server" (which would load a model instead, or use a default).

    ``min`` and ``max`` bound a number, inclusive; ``above`` instead of ``min`` bounds it from below,
    exclusive (``above=0.0``: a number that must be positive, shown ``x>0.0``).
    """
    if min is not None and above is not None:
        raise ValueError("give an option min (inclusive) or above (exclusive), not both")
    spec = Spec(help, tuple(flags), panel, min, max, metavar, show_default, secret=secret, cli=cli,
                operational=operational, clears=tuple(clears), place=place, above=above, url=url)  # fmt: skip
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={_KEY: spec})
    return dataclasses.field(default=default, metadata={_KEY: spec})


def argument(
    default: Any = MISSING, *, help: str, metavar: str | None = None, operational: bool = False,
    place: bool = False,
) -> Any:  # fmt: skip
    """A settings field that is a positional argument (required unless it has a default); ``place`` as
    for :func:`option`."""
    spec = Spec(help, metavar=metavar, argument=True, operational=operational, place=place)
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
    def optional(self) -> bool:
        """Whether the setting may be unset (``X | None``)."""
        return type(None) in typing.get_args(self.type)

    @property
    def required(self) -> bool:
        return self.default is MISSING

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
    def label(self) -> str:
        """How the command line names the setting: its flag, or an argument's name (``RUN``)."""
        return self.name.upper() if self.spec.argument else self.flag

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

    @property
    def unsettable(self) -> bool:
        """An optional number: ``none`` (on the command line, in a file) unsets it."""
        return self.optional and not self.many and self.base in (int, float)


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


# -- values: one conversion for the command line, config files and Python ----------------------------


class _Plain(str):
    """A value a config file gives as a plain scalar, kept as written (``0123``, ``1.10``, ``no``):
    a text setting takes it as it is, a number or a switch reads it. ``kind`` is what YAML 1.2
    reads it as: ``"bool"``, ``"number"`` or ``"text"``."""

    kind = "text"

    @classmethod
    def of(cls, text: str, kind: str | None = None) -> _Plain:
        plain = cls(text)
        plain.kind = kind or (
            "bool" if _YAML_BOOL.fullmatch(text) else "number" if _YAML_NUMBER.fullmatch(text) else "text"
        )
        return plain


_YAML_NULL = re.compile(r"~|null|Null|NULL|")
_YAML_BOOL = re.compile(r"true|True|TRUE|false|False|FALSE")
_YAML_NUMBER = re.compile(
    r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|0o[0-7]+|0x[0-9a-fA-F]+"
    r"|[-+]?\.(inf|Inf|INF)|\.nan|\.NaN|\.NAN"
)
_DECIMAL = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_NOT_FINITE = re.compile(r"[-+]?(\.?(inf|infinity)|\.?nan)", re.IGNORECASE)


def convert(field: Field, value: Any, where: str | None = None) -> Any:
    """``value`` as ``field`` holds it, or one :class:`~storyreasoning.errors.UsageError` naming ``where``
    (``--rank``, ``recipe.yaml: rank``; the field's name by default).

    Text is read as the field's type (a number, true or false, a path); numbers must be
    finite and within the field's bounds; a path is text, not empty, ``~`` expanded; a
    repeatable setting takes a list (or one value); ``None`` (``null``) only where the field
    may be unset, and ``none`` unsets an optional number. Converting a converted value gives
    it back.
    """
    where = where or field.name
    if value is None:
        if field.optional:
            return None
        wanted = (
            f"a list of {_wanted(field, field.item, plural=True)}"
            if field.many
            else _wanted(field, field.item)
        )
        if field.required:
            raise UsageError(f"{where} has no value; it is required: give {wanted}")
        raise UsageError(
            f"{where} has no value; give {wanted}, or leave it out for its default ({_default_shown(field)})"
        )
    if field.many:
        if isinstance(value, (list, tuple)):
            items = value
        elif isinstance(value, (dict, set, frozenset)):
            raise UsageError(
                f"{where} must be a list of {_wanted(field, field.item, plural=True)} (got {_kind(value)})"
            )
        else:
            items = (value,)
        out = tuple(_one(field, item, where) for item in items)
        if not out and field.required:
            raise UsageError(f"{where} is an empty list; it is required: give at least one")
        return out
    return _one(field, value, where)


def validate(settings: Any) -> None:
    """Check settings built directly in Python (``SFTSettings(epochs=float("nan"), ...)``) as the command
    line, config files and :func:`from_config` check every value (:func:`convert`): one
    :class:`~storyreasoning.errors.UsageError` naming the first wrong setting. For a settings
    class's ``__post_init__``."""
    for field in settings_fields(type(settings)):
        convert(field, getattr(settings, field.name), field.name)


class SettingsError(UsageError):
    """A settings class's own check across settings (or a rule no bound says), raised by its
    ``__post_init__``: one line naming each setting by its flag (``--min-pixels 900 exceeds
    --max-pixels 800``); ``names``, the fields it is about, let the command line and
    :func:`from_config` add the config file that gave any of them (``(min_pixels from recipe.yaml)``).
    A single value's type and bounds are :func:`option`'s to say (:func:`validate`)."""

    def __init__(self, message: str, *names: str) -> None:
        super().__init__(message)
        self.names = names


def _one(field: Field, value: Any, where: str) -> Any:
    if field.unsettable and isinstance(value, str) and value.strip().lower() == "none":
        return None
    return _scalar(field, field.item, value, where)


def _scalar(field: Field, kind: Any, value: Any, where: str) -> Any:
    """One value as ``kind``: what :func:`convert` does to a single value."""
    choices = typing.get_args(kind) if typing.get_origin(kind) is typing.Literal else None
    if isinstance(value, (list, tuple, dict, set, frozenset)):  # never str() a structure: it may be huge
        raise UsageError(f"{where} must be {_wanted(field, kind)} (got {_kind(value)})")
    if choices:
        if isinstance(value, str) and value in choices:
            return str(value)
        raise UsageError(f"{where} must be one of {', '.join(map(str, choices))} (got {_got(value)})")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise UsageError(f"{where} must be true or false (got {_got(value)})")
    if kind is int or kind is float:
        number = _number(kind, value, where)
        low, above, high = field.spec.min, field.spec.above, field.spec.max
        if (
            (low is not None and number < low)
            or (above is not None and not number > above)
            or (high is not None and number > high)
        ):
            raise UsageError(f"{where} must be {_bounds(field.spec)} (got {_num(number)})")
        if kind is int and abs(number) > _LARGEST:
            raise UsageError(f"{where} is too large (got {_num(number)})")
        return number
    if kind is Path:
        if isinstance(value, os.PathLike):
            text = os.fspath(value)
        elif isinstance(value, str) and getattr(value, "kind", "text") == "text":
            text = str(value)
        elif isinstance(value, _Plain):  # out: 2024 is a number to YAML: a folder so named is quoted
            raise UsageError(
                f"{where} must be a path (got {_kind(value)} {_cut(value)}); write it in quotes if it names a file "
                "or folder"
            )
        else:
            raise UsageError(f"{where} must be a path (got {_got(value)})")
        return given_path(text, where)
    if kind is str:
        if isinstance(value, str):
            if field.spec.place and not value.strip():  # neither a folder nor a hub id (a model, a dataset)
                raise UsageError(f"{where} is empty; give a local file or folder, or a hub id")
            if field.spec.url and not value.strip():
                raise UsageError(
                    f"{where} is empty; give the server's base URL (such as http://localhost:8000/v1), or leave it out"
                )
            if field.many and not value.strip():  # -e "$URL" with URL unset: no item of a list is nothing
                raise UsageError(f"{where} has an empty value; give text, or leave it out")
            return str(value)
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        raise UsageError(f"{where} must be text (got {_got(value)})")
    return value


def _bounds(spec: Spec) -> str:
    """A setting's bounds in words: ``at least 1``, ``more than 0``, ``between 0 and 0.99``."""
    if spec.min is not None and spec.max is not None:
        return f"between {_num(spec.min)} and {_num(spec.max)}"
    low = (
        f"more than {_num(spec.above)}" if spec.above is not None
        else f"at least {_num(spec.min)}" if spec.min is not None else None
    )  # fmt: skip
    high = f"at most {_num(spec.max)}" if spec.max is not None else None
    return " and ".join(b for b in (low, high) if b)


def _number(kind: type, value: Any, where: str) -> int | float:
    whole = kind is int
    wanted = "a whole number" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UsageError(f"{where} must be {wanted} (got {_got(value)})")
    if isinstance(value, str):
        text = value.strip()
        if _NOT_FINITE.fullmatch(text):
            raise UsageError(f"{where} must be a finite number (got {_got(value)})")
        if not _DECIMAL.fullmatch(text):
            raise UsageError(f"{where} must be {wanted} (got {_got(value)})")
        if len(text) > 40:
            raise UsageError(f"{where} has too many digits (got {_got(value)})")
        if whole:
            from decimal import Decimal

            exact = Decimal(text)
            if exact.adjusted() > 40:  # 1e999: never a setting's value, and a huge number to make
                raise UsageError(f"{where} is too large (got {_got(value)})")
            if exact != exact.to_integral_value():
                raise UsageError(f"{where} must be a whole number (got {_got(value)})")
            value = int(exact)
        else:
            number = float(text)
            if not math.isfinite(number):  # 1e400
                raise UsageError(f"{where} must be a finite number (got {_got(value)})")
            value = number
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{where} must be a finite number (got {_got(value)})")
    if whole:
        if isinstance(value, float):
            if not value.is_integer():
                raise UsageError(f"{where} must be a whole number (got {_got(value)})")
            value = int(value)
        return value
    try:
        return float(value)
    except OverflowError:
        raise UsageError(f"{where} is too large (got {_got(value)})") from None


def given_path(text: str, where: str) -> Path:
    """A path as a person gave it (``where`` names the flag or argument), ``~`` expanded; one clear
    error for an empty one (which ``Path`` would take for this folder). The ``parser`` of a typer
    path argument that no settings class declares."""
    if not text:
        raise UsageError(f"{where} is an empty path; give a file or folder (. for this folder)")
    return _expanded(text)


def _expanded(text: str) -> Path:
    """``text`` as a path, ``~`` expanded (as the data loaders do; a shell expands ``--out ~/x`` but
    neither ``--out=~/x`` nor a config file's ``out: ~/x``)."""
    path = Path(text)
    if text.startswith("~"):
        try:
            path = path.expanduser()
        except RuntimeError:  # no home folder to expand to: the path as written
            pass
    return path


def _wanted(field: Field, kind: Any, *, plural: bool = False) -> str:
    """What a setting takes, in words: ``a whole number``, ``a path``, ``one of lora, full``."""
    choices = typing.get_args(kind) if typing.get_origin(kind) is typing.Literal else None
    if choices:
        return f"{'each ' if plural else ''}one of {', '.join(map(str, choices))}"
    words = {int: ("a whole number", "whole numbers"), float: ("a number", "numbers"), bool: ("true or false", "true or false"),
             Path: ("a path", "paths"), str: ("text", "texts")}  # fmt: skip
    single, several = words.get(kind, (f"a {getattr(kind, '__name__', kind)}", "values"))
    return several if plural else single


def _default_shown(field: Field) -> str:
    default = field.default
    if isinstance(default, (tuple, list)):
        return ", ".join(map(str, default)) or "none"
    return default if isinstance(default, str) else _got(plain(default))


def _kind(value: Any) -> str:
    """What a value is, in words: ``a list``, ``a mapping``, ``the number``, ``text``."""
    if value is None:
        return "null"
    if isinstance(value, _Plain):
        return {"bool": "the boolean", "number": "the number"}.get(value.kind, "the text")
    if isinstance(value, bool):
        return "the boolean"
    if isinstance(value, (int, float)):
        return "the number"
    if isinstance(value, str):
        return "the text"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (set, frozenset)):
        return "a set"
    if isinstance(value, os.PathLike):
        return "the path"
    name = type(value).__name__
    return f"a{'n' if name[:1] in 'aeiou' else ''} {name}"


def _show(value: Any) -> str:
    """A value for an error message: short (at most about 60 characters, ``…`` where cut)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if value.bit_length() < 128 else "a very large number"
    if isinstance(value, float):
        return _num(value)
    if isinstance(value, _Plain) and value.kind != "text":  # a number or a boolean, as written
        return _cut(value)
    if isinstance(value, (str, os.PathLike)):
        text = str(value)
        return repr(text) if len(text) <= _SHOWN else repr(text[:_SHOWN])[:-1] + "…" + repr(text[:1])[-1]
    return ""  # anything else is named by _kind


def comma_items(given: str | Collection[str]) -> list[str]:
    """The items of a repeatable option whose values may each be a comma list (``--target q_proj,k_proj
    --target v_proj``): in order, spaces stripped, empty items dropped."""
    values = [given] if isinstance(given, str) else given
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def then_now(name: str, old: Any, new: Any) -> str:
    """How a refusal to resume names one setting that differs: ``NAME OLD then, NEW now``, each value
    short (text quoted, ``unset`` for none, anything else as JSON)."""
    return f"{name} {shown(old)} then, {shown(new)} now"


def shown(value: Any) -> str:
    """A recorded value as a refusal shows it: ``unset`` for none, text quoted, a number or boolean as
    written, a list or mapping as JSON; about 60 characters at most, ``…`` where cut (text in its
    middle, so that two long paths still show where they differ)."""
    if value is None:
        return "unset"
    if isinstance(value, (str, os.PathLike)) and not isinstance(value, _Plain):
        text = os.fspath(value)
        if len(text) > _SHOWN:  # cut in the middle: two long paths differ at their ends
            text = text[: _SHOWN // 3] + "…" + text[len(text) - (_SHOWN - _SHOWN // 3) :]
        return repr(text)
    if isinstance(value, (str, os.PathLike, bool, int, float)):
        return _show(value)
    import json

    try:
        return _cut(json.dumps(value, ensure_ascii=False, sort_keys=True))
    except (TypeError, ValueError):
        return _cut(repr(value))


def _cut(text: Any) -> str:
    """``text`` cut to about 60 characters, ``…`` where cut."""
    text = str(text)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"


def _got(value: Any) -> str:
    """What an error says a wrong value was: the value, short, or what it is (``a list``)."""
    return _show(value) or _kind(value)


def _num(value: float | int) -> str:
    """A number as a person writes it: ``1``, ``0.99``, ``1e+20``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


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
    """The settings as a job records them (secrets left out; derived values resolved by ``resolved()``;
    paths absolute, and a ``place`` (a model, a dataset) that is on this machine too, so that the
    record means the same from any working folder).

    The record reads back as a config file of the same job.
    """
    out = {}
    for f in settings_fields(type(settings)):
        if f.spec.secret:
            continue
        value = getattr(settings, f.name)
        if f.item is Path and value is not None:
            value = tuple(map(absolute, value)) if f.many else absolute(value)
        elif f.spec.place and value is not None:
            value = tuple(map(_local_absolute, value)) if f.many else _local_absolute(value)
        out[f.name] = plain(value)
    resolved = getattr(settings, "resolved", None)
    if callable(resolved):
        out.update({k: plain(v) for k, v in resolved().items()})
    return out


def absolute(path: str | os.PathLike) -> Path:
    """``path`` from the working folder, ``~`` expanded, ``..`` folded, symbolic links kept."""
    return Path(os.path.abspath(_expanded(os.fspath(path))))


def _local_absolute(text: str) -> str:
    """A ``place`` as a record writes it: absolute when something is there on this machine, else as
    given (a hub id)."""
    try:
        return str(absolute(text)) if text and _expanded(text).exists() else text
    except (OSError, ValueError):
        return text


def place_fields(cls: type) -> frozenset[str]:
    """The settings of ``cls`` that name a model or a folder (``option(place=True)``, and paths): what
    a resumed job compares by :func:`same_place`."""
    return frozenset(f.name for f in settings_fields(cls) if f.spec.place or f.item is Path)


def same_place(old: Any, new: Any) -> bool:
    """Whether a recorded place (a model, a dataset, a run; see ``option(place=True)``) and the one
    given now are the same: each compared resolved when it is on this machine (an older record's
    relative path read from the current folder), else as given (a hub id); lists item by item. A
    recorded absolute path that is gone, and a folder of the same name here now, are the same moved
    (a project moved whole)."""
    if isinstance(old, (list, tuple)) or isinstance(new, (list, tuple)):
        olds = list(old) if isinstance(old, (list, tuple)) else [old]
        news = list(new) if isinstance(new, (list, tuple)) else [new]
        return len(olds) == len(news) and all(same_place(a, b) for a, b in zip(olds, news, strict=True))
    then, now = _resolved_place(old), _resolved_place(new)
    if then == now:
        return True
    if not (isinstance(old, str) and isinstance(now, Path) and os.path.isabs(old)):
        return False
    return then == old and not os.path.exists(old) and Path(old).name == now.name


def _resolved_place(value: Any) -> Any:
    """``value`` resolved when it names something on this machine (a Path), else as it is."""
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        return value
    try:
        path = _expanded(os.fspath(value))
        return path.resolve() if path.exists() else os.fspath(value)
    except (OSError, ValueError):
        return os.fspath(value)


def data_record(settings: Any) -> dict:
    """:func:`record` without the operational settings: what decides a job's output, so what a resumed
    job must keep (its values resolved as :func:`record` resolves them)."""
    kept = {f.name for f in settings_fields(type(settings)) if not f.spec.operational}
    return {k: v for k, v in record(settings).items() if k in kept}


def write_record(settings: Any, path: Path) -> None:
    """Write :func:`record` as JSON, atomically; never over another job's record (:func:`check_record`)."""
    check_record(type(settings), path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, record(settings))


def check_record(cls: type, path: Path, *, given_as: str = "--out") -> None:
    """Refuse, in one line, a folder whose settings record ``path`` (its ``settings.json``) another job
    wrote: one where more than half the keys are no settings of ``cls`` (a training's record in an
    ``evaluate --out``; the job resumes from it, so it must not be overwritten). A record an earlier
    version of the same job wrote shares nearly all its keys and passes; an unreadable one is not judged."""
    import json

    try:
        held = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return
    if not isinstance(held, dict) or not held:
        return
    names = {f.name for f in settings_fields(cls)}
    foreign = [key for key in held if key not in names]
    if 2 * len(foreign) > len(held):
        shown = ", ".join(map(str, foreign[:3])) + (", …" if len(foreign) > 3 else "")
        raise UsageError(
            f"{path.parent} holds the settings of another job ({shown} are no settings of this one); choose "
            f"another {given_as}"
        )


class ConfigKeysError(UsageError):
    """A config file naming settings its job does not have (``keys``: every setting the file names,
    spelled as field names; ``unknown``: those this job lacks). The command line adds which
    command the file suits, when one does (:func:`suits`)."""

    def __init__(self, message: str, path: Path, keys: set[str], unknown: list[str], hint: str = "") -> None:
        super().__init__(message + hint)
        self.path, self.keys, self.unknown = path, keys, unknown
        self.hint = hint  # "; did you mean …?": no help when the file holds another command's settings


def read_config(path: str | Path, cls: type) -> dict[str, Any]:
    """The settings a config file gives for ``cls``, keyed by field name and converted as the options
    are (:func:`convert`); one clear error, naming the file and the key, when wrong.

    A name ending in ``.json`` is read as JSON (strict), any other as YAML (1.2 plain types:
    see the module's help). At most :data:`MAX_CONFIG_BYTES` are read.
    """
    if not os.fspath(path):
        raise UsageError("--config needs a file: give the path of a YAML or JSON file")
    path = _expanded(os.fspath(path))
    data = _load(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(
            f"{path} must hold a mapping of setting names to values (lines like `rank: 8`), not "
            f"{'a single value' if isinstance(data, (str, int, float)) else _kind(data)}"
        )
    fields = {f.name: f for f in settings_fields(cls)}
    aliases = _aliases(fields.values())
    named: dict[str, tuple[Any, str]] = {}  # field name -> the key that gives it, and that key as written
    unknown: list[str] = []
    for key in data:
        written = "null" if key is None else str(key)
        name = _field_name(written, fields, aliases)
        if name is None:
            unknown.append(written)
        elif name in named:
            raise UsageError(
                f"{path}: {_cut(named[name][1])} and {_cut(written)} both give {name}; keep one of them"
            )
        else:
            named[name] = (key, written)
    if unknown:
        keys = set(named) | {k.replace("-", "_") for k in unknown}
        message, hint = _unknown_message(path, unknown, fields, aliases)
        raise ConfigKeysError(message, path, keys, unknown, hint)
    for name, (_, written) in named.items():
        if fields[name].spec.secret:
            raise UsageError(
                f"{path}: {_cut(written)!r} is a secret, so it is never read from a file; {_secret_fix(fields[name])}"
            )
    return {
        name: convert(fields[name], data[key], f"{path}: {_cut(written)}")
        for name, (key, written) in named.items()
    }


def _aliases(fields) -> dict[str, str]:
    """Every flag spelling of every field (``group_size`` for ``--group-size``) -> the field's name."""
    names = {f.name for f in fields}
    out: dict[str, str] = {}
    for field in fields:
        for flag in field.flags:
            if flag.startswith("--"):
                alias = flag[2:].replace("-", "_")
                if alias not in names:
                    out.setdefault(alias, field.name)
    return out


def _field_name(key: str, fields: dict, aliases: dict[str, str]) -> str | None:
    name = key.replace("-", "_")
    return name if name in fields else aliases.get(name)


def _unknown_message(
    path: Path, unknown: list[str], fields: dict, aliases: dict[str, str]
) -> tuple[str, str]:
    """The message about keys that are no settings, and its hint (the nearest names), apart."""
    shown = ", ".join(repr(_cut(k)) for k in unknown[:5]) + (
        f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
    )
    verb = "is not a setting" if len(unknown) == 1 else "are not settings"
    first = unknown[0].replace("-", "_")
    switch = fields.get(_field_name(first.removeprefix("no_"), fields, aliases) or "")
    if first.startswith("no_") and switch is not None and switch.switch:  # no_plots: true, as --no-plots
        hint = f"; did you mean {switch.name} ({switch.name}: false is {switch.off_flag})?"
    else:
        close = difflib.get_close_matches(first, [*fields, *aliases], n=3)
        hint = f"; did you mean {', '.join(dict.fromkeys(close))}?" if close else ""
    return f"{path}: {shown} {verb} of this job", hint


def _secret_fix(field: Field) -> str:
    """How to give a secret instead: its flag, and the environment variable its help names."""
    env = re.search(r"\$?\b([A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9])\b", field.spec.help)
    also = f" or the {env.group(1)} environment variable" if env else " or the environment"
    return f"give it with {field.flag} on the command line{also}"


def suits(cls: type, keys: set[str]) -> bool:
    """Whether every one of ``keys`` (spelled as field names or flags) is a setting of ``cls``."""
    fields = {f.name: f for f in settings_fields(cls)}
    aliases = _aliases(fields.values())
    names = [_field_name(key, fields, aliases) for key in keys]
    return bool(keys) and all(name is not None and not fields[name].spec.secret for name in names)


def _load(path: Path) -> Any:
    """The data of a config file: JSON for ``*.json``, else YAML; one line when it cannot be read."""
    try:
        with open(path, "rb") as stream:  # a pipe or a device too (/dev/stdin): at most the limit, once
            raw = stream.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist; check the path") from None
    except IsADirectoryError:
        raise UsageError(f"config file {path} is a folder; give the YAML or JSON file of settings") from None
    except OSError as exc:
        from .errors import file_error

        exc.filename = exc.filename or str(path)
        raise file_error(exc, "read the config file") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise UsageError(
            f"config file {path} is larger than {MAX_CONFIG_BYTES // (1 << 20)} MiB, the most a config file may "
            "be (a few settings are a few kilobytes); check the path"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"config file {path} is not UTF-8 text (byte {exc.start + 1} is not); save it as UTF-8"
        ) from None
    if path.suffix.lower() == ".json":
        return _load_json(text, path)
    return _load_yaml(text, path)


def _load_json(text: str, path: Path) -> Any:
    import json

    def mapping(pairs: list) -> dict:
        seen: dict = {}
        for key, value in pairs:
            if key in seen:
                raise _Refused(f"{path}: {_cut(key)!r} is given twice in one object; keep one")
            seen[key] = value
        return seen

    def constant(name: str) -> Any:
        raise _Refused(
            f"{path} holds {name}, which is not a JSON number (nor a setting's value); fix the file"
        )

    try:
        return json.loads(
            text, object_pairs_hook=mapping, parse_constant=constant,
            parse_int=lambda t: _Plain.of(t, "number"), parse_float=lambda t: _Plain.of(t, "number"),
        )  # fmt: skip
    except _Refused as exc:
        raise UsageError(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{path} is not valid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg}); fix the file"
        ) from None
    except RecursionError:
        raise UsageError(f"{path} nests deeper than any setting does; fix the file") from None


class _Refused(Exception):
    """What a config file may not hold (an alias, a key given twice): its one-line message."""


_PLAIN_TAG = "tag:storyreasoning,2025:plain"
_NULL_TAG = "tag:yaml.org,2002:null"
_YAML_LOADER: Any = None


def _yaml_loader() -> Any:
    """A safe YAML loader (libyaml's when installed) with YAML 1.2's plain types: ``null`` (``~``,
    nothing) is None, every other plain scalar a :class:`_Plain` kept as written; keys given
    twice are refused."""
    global _YAML_LOADER
    if _YAML_LOADER is not None:
        return _YAML_LOADER
    import yaml

    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        def resolve(self, kind, value, implicit):
            if kind is yaml.ScalarNode and implicit[0]:
                return _NULL_TAG if _YAML_NULL.fullmatch(value) else _PLAIN_TAG
            return super().resolve(kind, value, implicit)

        def construct_mapping(self, node, deep=False):
            seen: dict[str, int] = {}
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode):
                    line = key.start_mark.line + 1
                    if key.value in seen:
                        raise _Refused(
                            f"{_cut(key.value)!r} is given twice (lines {seen[key.value]} and {line}); keep one"
                        )
                    seen[key.value] = line
            return super().construct_mapping(node, deep=deep)

    Loader.add_constructor(_PLAIN_TAG, lambda loader, node: _Plain.of(node.value))
    Loader.add_constructor(_NULL_TAG, lambda loader, node: None)
    _YAML_LOADER = Loader
    return Loader


def _load_yaml(text: str, path: Path) -> Any:
    try:
        import yaml
    except ImportError:  # pragma: no cover  (pyyaml is a dependency)
        raise UsageError("config files need PyYAML: pip install pyyaml") from None
    loader = _yaml_loader()
    try:
        # first the events: an alias (*name) repeats what it names, as often as it is used, and a
        # file of a few hundred bytes so grows to gigabytes; nesting beyond any setting is refused too
        depth = 0
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, yaml.AliasEvent):
                raise _Refused(
                    f"uses the YAML alias *{_cut(event.anchor)} (line {event.start_mark.line + 1}); aliases are not "
                    "read in a config file: write the value out"
                )
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > _MAX_DEPTH:
                    raise _Refused(
                        f"nests deeper than any setting does (line {event.start_mark.line + 1}); settings are "
                        "values or lists of values"
                    )
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
        return yaml.load(text, Loader=loader)  # a safe loader (CSafeLoader's rules)
    except _Refused as exc:
        raise UsageError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
        why = f" ({_cut(problem)})" if problem else ""
        raise UsageError(f"{path} is not valid YAML{at}{why}; fix the file") from None
    except (ValueError, RecursionError, TypeError) as exc:  # a value YAML's own constructors refuse
        raise UsageError(f"{path} is not valid YAML ({_cut(exc)}); fix the file") from None


def from_config(cls: type, path: str | Path | None = None, **overrides: Any):
    """Settings from a config file with keyword overrides: the Python face of ``--config``.

    The keywords are converted and checked as the options are (``rank="8"`` is 8,
    ``warmup_ratio=5.0`` is refused, ``out="runs/x"`` a path) and override the file; a
    setting no layer gives keeps its default, and a required one not given is an error.
    """
    fields = {f.name: f for f in settings_fields(cls)}
    values = read_config(path, cls) if path is not None else {}
    given: dict[str, Any] = {}
    names = {f.name for f in dataclasses.fields(cls)}
    for name, value in overrides.items():
        field = fields.get(name)
        if field is not None:
            given[name] = convert(field, value, name)
        elif name in names:  # a field that is not a setting: as given
            given[name] = value
        else:
            close = difflib.get_close_matches(name, list(fields), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UsageError(f"{cls.__name__} has no setting {name!r}{hint}")
    from_file = set(values)
    values, cleared = _layered(fields, values, given)
    return _build(cls, values, path, from_file - set(given) - set(cleared))


def _layered(
    fields: dict[str, Field], below: dict[str, Any], above: dict[str, Any]
) -> tuple[dict, list[str]]:
    """``above`` over ``below``; a setting of ``above`` that clears others (:func:`option` ``clears``)
    takes them out of ``below``, unless ``above`` gives them too. Also the cleared names."""
    values = dict(below)
    cleared = []
    for name in above:
        for other in fields[name].spec.clears if name in fields else ():
            if other not in above and other in values:
                del values[other]
                cleared.append(other)
    values.update(above)
    return values, cleared


def _build(
    cls: type, values: dict[str, Any], config_file: str | os.PathLike | None = None, filed: Collection[str] = ()
):  # fmt: skip
    """``cls`` from converted values; a required setting none gives is one error. ``filed``: the settings
    ``config_file`` gave (and nothing over it), which a :class:`SettingsError` about them names."""
    missing = [f.name for f in settings_fields(cls) if f.required and f.name not in values]
    if missing:
        keywords = ", ".join(f"{name}=…" for name in missing)
        raise UsageError(
            f"{cls.__name__} needs {', '.join(missing)}: give {keywords} (or a config file that does)"
        )
    try:
        return cls(**values)
    except SettingsError as exc:
        named = [name for name in exc.names if name in filed]
        if config_file is None or not named:
            raise
        raise UsageError(f"{exc} ({', '.join(named)} from {_expanded(os.fspath(config_file))})") from None
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


def _quick_text(field: Field, kind: Any, value: str) -> str:
    """``value`` as the command line gives it to :func:`convert`, where typer would read it the same
    way (it gives its text to the same conversion; a choice typer would refuse in three lines,
    convert refuses in one); else :class:`_Unread`."""
    numeric = kind is int or kind is float
    if not value or (value.startswith("-") and not numeric):  # an empty value, a flag: typer's
        raise _Unread
    return value  # a wrong choice too: convert's one line names the flag and the choices


def quick_values(
    cls: type, args: list[str], *, config: bool = True
) -> tuple[dict[str, Any], Path | None] | None:
    """The values ``args`` give ``cls``'s fields, and the ``--config`` file, when every argument is
    plain: what typer would read the same way. Else None, and typer reads them.

    Plain: positional arguments that do not start with ``-``; ``--flag VALUE``,
    ``--flag=VALUE`` or a declared short flag ``-x VALUE``, with VALUE a choice, a number
    (``-`` its only sign) or text (neither empty nor starting with ``-``) that
    :func:`convert` accepts; ``--switch``/``--no-switch``; a repeatable option as often as
    wanted, any other at most once. ``--help``, ``--``, an unknown flag, a short flag with
    its value attached, anything else: typer's; and so is a required setting that neither
    the arguments nor the config file give (:func:`run_quick` checks).
    """
    fields = _cli_fields(cls)
    parsed = _read_plain(fields, args, config)
    if parsed is None:
        return None
    texts, config_file = parsed
    try:
        return _converted({f.name: f for f in fields}, texts), config_file
    except UsageError:
        return None  # typer refuses it, with the same message


def _cli_fields(cls: type) -> list[Field]:
    return [f for f in settings_fields(cls) if f.spec.cli]


def _read_plain(
    fields: list[Field], args: list[str], config: bool
) -> tuple[dict[str, Any], Path | None] | None:
    """The texts plain ``args`` give the command-line fields of a settings class (a switch's value, a
    repeatable option's texts), options in the order first given and arguments after them (the
    order typer reads them in), and the ``--config`` file; None when typer must read them."""
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
                given[field.name] = (*given.get(field.name, ()), _quick_text(field, field.item, value))
            elif field.name in given:
                raise _Unread
            else:
                given[field.name] = _quick_text(field, field.item, value)
        arguments = [f for f in fields if f.spec.argument]
        if any(f.many for f in arguments[:-1]):
            raise _Unread
        for field in arguments:  # one not given may come from --config: run_quick checks
            if field.many:
                if positional:
                    given[field.name] = tuple(_quick_text(field, field.item, v) for v in positional)
                    positional = []
            elif positional:
                given[field.name] = _quick_text(field, field.item, positional.pop(0))
        if positional:
            raise _Unread  # more than the command takes
    except _Unread:
        return None
    return given, config_file


def _converted(fields: dict[str, Field], texts: dict[str, Any]) -> dict[str, Any]:
    """The command line's texts converted (:func:`convert`, named by flag), in the order given."""
    out = {}
    for name, text in texts.items():
        field = fields[name]
        out[name] = text if field.switch else convert(field, text, field.label)
    return out


def run_quick(entry: Command, args: list[str]) -> int | None:
    """Run ``entry`` on ``args`` without typer when :func:`quick_values` can read them, as typer would
    (command line over config file over defaults); None when it cannot."""
    cli_fields = _cli_fields(entry.cls)
    parsed = _read_plain(cli_fields, args, entry.config)
    if parsed is None:
        return None
    texts, config_file = parsed
    fields = {f.name: f for f in settings_fields(entry.cls)}
    from_file = read_config(config_file, entry.cls) if config_file is not None else {}  # typer: first
    given = _converted(fields, texts)
    values, cleared = _layered(fields, from_file, given)
    if any(f.required and f.name not in values for f in cli_fields):
        return None  # a required argument or option not given: typer says which
    settings = _build(entry.cls, values, config_file, set(from_file) - set(given) - set(cleared))
    if config_file is not None:
        _say_config(config_file, [f.label for f in cli_fields if f.name in given], cleared)
    return _job(entry.run)(settings) or 0


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
    imported only when the command runs (so ``--help`` stays light). Typer reads the
    arguments; their values go through :func:`convert`, as on the quick path.
    """
    import inspect

    import typer

    fields = _cli_fields(cls)
    every = {f.name: f for f in settings_fields(cls)}
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

        def load(ctx: typer.Context, value: list[str] | None) -> list[str] | None:
            # repeatable only to be refused: typer would keep the last file and drop the others unsaid
            if value and len(value) > 1:
                files = ", ".join(_show(v) for v in value[:3]) + (", …" if len(value) > 3 else "")
                raise UsageError(
                    f"--config is given {len(value)} times ({files}); give one file (its settings together), "
                    "and any setting over it as an option"
                )
            if value:
                given = read_config(value[0], cls)
                ctx.meta[_FILE] = given
                # click reads an empty default as "no default": keep the file's nulls apart
                ctx.meta[_NULLS] = {k for k, v in given.items() if v is None}
                shown = {k: v for k, v in given.items() if v is not None and every[k].spec.cli}
                ctx.default_map = {**(ctx.default_map or {}), **shown}
            return value

        load.__annotations__ = {"ctx": typer.Context, "value": list[Path] | None, "return": list[Path] | None}
        option = typer.Option(
            None,
            "--config",
            "-c",
            help="A YAML file of settings (keys as the option names; a .json file, such as a run's "
            f"settings.json, is read as JSON; at most {MAX_CONFIG_BYTES // (1 << 20)} MiB); options given on "
            "the command line override it.",
            is_eager=True,
            callback=load,
            parser=str,  # the file is read_config's to check, with its own messages
            show_default=False,
            metavar="FILE",
            rich_help_panel="Config",
        )
        params.append(inspect.Parameter("config_file", inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=list[Path] | None))  # fmt: skip
        annotations["config_file"] = list[Path] | None

    def callback(ctx, **values):
        config_file = (values.pop("config_file", None) or [None])[0]  # one file at most: load refuses more
        from_file = ctx.meta.get(_FILE, {})
        typed = {f.name for f in fields if _from_command_line(ctx, f.name)}
        for key in ctx.meta.get(_NULLS, ()):
            if key not in typed:
                values[key] = None
        for key in [k for k, v in values.items() if v is None and k in many]:
            del values[key]  # a repeatable option not given: the field's own default
        for key, value in values.items():
            if key in enums and value is not None:
                values[key] = value.value
            elif isinstance(value, list):
                values[key] = tuple(v.value if key in enums else v for v in value)
        for key, value in from_file.items():  # settings without a flag: as the file gives them
            if not every[key].spec.cli:
                values[key] = value
        cleared = []
        for key in typed:
            for other in every[key].spec.clears:
                if other not in typed and other in from_file:
                    values.pop(other, None)
                    if every[other].spec.cli and not every[other].required:
                        values[other] = every[other].default
                    cleared.append(other)
        settings = _build(cls, values, config_file, set(from_file) - typed - set(cleared))
        if config_file is not None:
            _say_config(Path(config_file), [f.label for f in fields if f.name in typed], cleared)
        raise typer.Exit(_job(run)(settings) or 0)

    callback.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    callback.__annotations__ = annotations
    callback.__doc__ = help or cls.__doc__
    callback.__name__ = name.replace("-", "_")
    group.command(name, epilog=epilog)(callback)


def _say_config(config_file: Path, given: list[str], cleared: list[str] | None = None) -> None:
    """The note a command given ``--config`` prints: the file, the options and arguments given over it
    (and the file's settings they cleared), as one plain line (never wrapped: a pipe, a log and a
    terminal get the same line, and rich is not needed to print it). A distributed launch's other
    processes (``RANK`` > 0) say nothing: the main one speaks for the launch."""
    import os
    import sys

    if os.environ.get("RANK", "0") not in ("", "0"):
        return
    note = f"; from the command line: {', '.join(given)}" if given else ""
    if cleared:
        back = "its default" if len(cleared) == 1 else "their defaults"
        note += f" (over the file's {', '.join(cleared)}, back to {back})"
    sys.stderr.write(f"settings from {config_file}{note}\n")
    sys.stderr.flush()


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
    """The annotation and the ``typer.Option``/``typer.Argument`` of one field.

    A choice is typer's (an enum: its help lists them), a switch too; any other value is
    given to :func:`convert` as the quick path gives it (``parser``), so both say the same.
    """
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
    help = spec.help + (" Give none to unset it." if field.unsettable else "")
    kwargs: dict[str, Any] = {
        "help": help,
        "show_default": spec.show_default if default not in (None, ...) else False,
    }
    if not choices and not field.switch:
        where = field.label
        kwargs["parser"] = lambda value: _one(field, value, where)
    if spec.metavar or spec.argument:
        kwargs["metavar"] = spec.metavar or field.name.upper()
    if spec.argument:
        return annotation, typer.Argument(default, **kwargs)
    if (
        spec.above is not None
    ):  # typer shows inclusive bounds only (x>=0.0): an exclusive one is said in words
        most = f", at most {_num(spec.max)}" if spec.max is not None else ""
        kwargs["help"] = f"{help} More than {_num(spec.above)}{most}."
    else:  # shown in the help; checked by convert
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
    "MAX_CONFIG_BYTES",
    "REQUIRED",
    "Command",
    "ConfigKeysError",
    "Field",
    "SettingsError",
    "Spec",
    "absolute",
    "argument",
    "check_record",
    "comma_items",
    "command",
    "convert",
    "data_record",
    "from_config",
    "option",
    "place_fields",
    "plain",
    "quick_values",
    "read_config",
    "record",
    "run_quick",
    "same_place",
    "settings_fields",
    "suits",
    "validate",
    "write_record",
]
