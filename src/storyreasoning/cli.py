"""The ``storyreasoning`` command: mounts each package's commands and turns user errors into one line.

Each package owns its commands (``tell/cli.py``, ``train/cli.py``, ...): its ``register(app)``
declares them to typer, their options coming from the job's settings dataclass
(:mod:`storyreasoning.settings`). Starting the command stays cheap because nothing is
imported before it is used:

* :data:`COMMANDS` names every command, the module that declares it and its one-line
  help, so ``storyreasoning --help`` lists them all without importing any of those
  modules (nor their settings); a command's module is imported when that command runs
  or shows its own help;
* ``storyreasoning check`` with plain arguments runs without typer at all
  (:func:`storyreasoning.check.cli.quick`), and ``--version`` is answered at once;
* so does every job command declared as a :class:`~storyreasoning.settings.Command` (a
  module's ``JOBS``) when its arguments are plain (:func:`storyreasoning.settings.run_quick`):
  typer, which builds its parameters through pydantic, costs about 0.2 s a start;
* help and errors are drawn with rich (typer's panels) only on a terminal; printed to a
  file or a pipe they are plain text, and rich is not imported.

``app`` (the typer application, built on first use) is what tests and plug-ins extend.
"""

from __future__ import annotations

import sys

from . import __version__
from .errors import StoryReasoningError, UsageError

HELP = "Grounded visual storytelling: parse, check, tell, train and evaluate grounded stories."

#: Every command, in the order ``--help`` lists them: the module whose ``register(app)``
#: declares it, and the first paragraph of its help. ``tests/test_cli_startup.py`` checks
#: this table against what the modules declare.
COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("storyreasoning.check.cli", "Parse a model output and say whether it is well-structured."),
    "tell": ("storyreasoning.tell.cli", "Tell a grounded story about images."),
    "tell-dataset": (
        "storyreasoning.tell.cli",
        "Tell every story of a dataset into a run folder (resumable; what evaluate and the studio read).",
    ),
    "serve": (
        "storyreasoning.tell.cli",
        "Serve a storyteller behind an OpenAI-compatible API, with flags derived from the story length.",
    ),
    "studio": (
        "storyreasoning.studio.cli",
        "Web studio: tell a story from uploaded images (streamed), inspect outputs, browse datasets and runs.",
    ),
    "build": (
        "storyreasoning.builder.cli",
        "Build a StoryReasoning dataset from raw frames: people, re-identification, CoT tables, grounded "
        "story.",
    ),
    "data": (
        "storyreasoning.data.cli",
        "Datasets: statistics, validation, one story, conversion between formats, contrastive sequences.",
    ),
    "train": (
        "storyreasoning.train.cli",
        "Train storytellers: supervised fine-tuning, reward-ranked preference pairs, DPO, online RL (GRPO), "
        "adapter merging.",
    ),
    "evaluate": (
        "storyreasoning.evaluate.cli",
        "Score a run against its dataset (grounding, identity, consistency, language), compare "
        "evaluated runs, judge stories with a model, or measure how far judges agree.",
    ),
}

_APP = None


def typer_app():
    """The typer application (built once): the root options, a placeholder per command of
    :data:`COMMANDS` and whatever was added to it with ``app.command``."""
    global _APP
    if _APP is None:
        _APP = _build_app()
    return _APP


def __getattr__(name: str):
    if name == "app":
        return typer_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _build_app():
    import importlib

    import typer
    from typer.core import TyperCommand, TyperGroup
    from typer.main import get_group

    from .terminal import is_terminal

    class Placeholder(TyperCommand):  # what --help lists of a command not loaded: its name and help
        pass

    class LazyGroup(TyperGroup):
        """The root group: each command a placeholder until it is resolved, then the real one."""

        def __init__(self, **attrs) -> None:
            super().__init__(**attrs)
            added = dict(self.commands)  # app.command(...) on the root: already real
            self.commands = {
                name: Placeholder(name, help=help, rich_markup_mode=self.rich_markup_mode)
                for name, (_, help) in COMMANDS.items()
            }
            self.commands.update(added)

        def resolve_command(self, ctx, args):
            name, command, rest = super().resolve_command(ctx, args)
            if isinstance(command, Placeholder):
                command = self.commands[name] = self.load(name)
            return name, command, rest

        def load(self, name: str):
            module = importlib.import_module(COMMANDS[name][0])
            scratch = typer.Typer(rich_markup_mode=self.rich_markup_mode)
            module.register(scratch)
            return get_group(scratch).commands[name]

    app = typer.Typer(
        name="storyreasoning",
        cls=LazyGroup,
        help=HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        # typer's panels for a person at a terminal; plain text (and no rich import) for a pipe
        rich_markup_mode="rich" if is_terminal(sys.stdout) else None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    def show_version(value: bool) -> None:
        if value:
            typer.echo(_version())
            raise typer.Exit()

    @app.callback()
    def root(
        version: bool = typer.Option(
            False,
            "--version",
            callback=show_version,
            is_eager=True,
            help="Show the version and exit.",
            metavar=" ",
        ),
    ) -> None:
        """The root's own options (its help is HELP, given to the app)."""

    return app


def main(argv: list[str] | None = None, *, quick: bool = True) -> None:
    """Console entry point: user errors become one line on stderr, never a traceback.

    Commands raise :class:`StoryReasoningError` with the fix in the message. What slips
    through is caught here too: a file-system error becomes one line naming the path
    (:func:`~storyreasoning.errors.file_error`), a missing optional package one naming its
    extra (:func:`~storyreasoning.errors.missing_package`). ``STORYREASONING_TRACEBACK=1``
    shows the traceback instead (for a bug report).

    ``quick=False`` sends every invocation through typer (the fast paths are compared
    with it in the tests).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = _quick(args) if quick else None
        if code is not None:
            sys.exit(code)
        _typer(args)
    except StoryReasoningError as exc:
        suited = _suited_command(exc)  # the command a config file holds the settings of: no nearest names
        _fail(
            (str(exc).removesuffix(getattr(exc, "hint", "")) + suited) if suited else str(exc), exc.exit_code
        )
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BrokenPipeError:  # the reader went away (| head): nothing more to say
        sys.stderr.close()
        sys.exit(1)
    except (OSError, ImportError) as exc:
        import os

        from .errors import file_error, missing_package

        if os.environ.get("STORYREASONING_TRACEBACK"):
            raise
        error = missing_package(exc) if isinstance(exc, ImportError) else file_error(exc)
        if error is None:  # an import of our own that failed: a bug, keep its traceback
            raise
        _fail(str(error), error.exit_code)


def _quick(args: list[str]) -> int | None:
    """The exit status of a command answered without typer, or None to hand it to typer."""
    if args == ["--version"]:
        sys.stdout.write(_version() + "\n")
        return 0
    if args[:1] == ["check"]:
        from .check.cli import quick

        return quick(args[1:])
    found = _job_command(args)
    if found is None:
        return None
    from .settings import run_quick

    return run_quick(*found)


def _job_command(args: list[str]):
    """The job command ``args`` name (a :class:`~storyreasoning.settings.Command` of its module's
    ``JOBS``) and the arguments it reads, or None (typer's to resolve).

    A module that declares a group names it ``GROUP``, and ``DEFAULT`` the subcommand that
    a group's arguments mean when they name none (``evaluate RUN`` is ``evaluate run RUN``).
    """
    import importlib

    if not args or args[0] not in COMMANDS:
        return None
    module = importlib.import_module(COMMANDS[args[0]][0])
    jobs = {entry.name: entry for entry in getattr(module, "JOBS", ())}
    if getattr(module, "GROUP", None) != args[0]:
        return (jobs[args[0]], args[1:]) if args[0] in jobs else None
    rest = args[1:]
    if rest and rest[0] in jobs:
        return jobs[rest[0]], rest[1:]
    default = getattr(module, "DEFAULT", None)  # a group with a default has only job subcommands (tested)
    return None if default is None else (jobs[default], rest)


def _suited_command(exc: StoryReasoningError) -> str:
    """For a config file naming settings its command lacks: the command whose settings it holds, when
    one holds them all (a ``train sft`` record given to ``train dpo``); else nothing."""
    from .settings import ConfigKeysError, suits

    if not isinstance(exc, ConfigKeysError):
        return ""
    import importlib

    found = []
    for module_name in dict.fromkeys(module for module, _ in COMMANDS.values()):
        try:
            module = importlib.import_module(module_name)
        except Exception:  # a hint only: a command whose module does not load is not the one
            continue
        group = getattr(module, "GROUP", None)
        for job in getattr(module, "JOBS", ()):
            if job.config and suits(job.cls, exc.keys):
                found.append(f"{group} {job.name}" if group else job.name)
    if not found:
        return ""
    if len(found) > 1 and "train plan" in found:  # plan reads any training recipe: the training it is for
        found.remove("train plan")
    named = " or ".join(f"`storyreasoning {words}`" for words in found[:3])
    return f"; the file holds the settings of {named}: use it with {'that command' if len(found) == 1 else 'one of those'}"


def _version() -> str:
    """``storyreasoning X.Y.Z (parser: ...)``: whether the parser runs compiled (see storyreasoning.format)."""
    from .format import COMPILED

    return f"storyreasoning {__version__} (parser: {'compiled with mypyc' if COMPILED else 'pure Python'})"


def _typer(args: list[str]) -> None:
    """Run ``args`` through typer, its own refusals (a missing option, an unknown flag) one ``error:`` line
    like ours, not typer's usage lines and box (which a narrow terminal wraps over many lines)."""
    try:
        code = typer_app()(args=args, prog_name="storyreasoning", standalone_mode=False)
    except Exception as exc:
        # click's classes (typer vendors click in its newer versions): known by name, as typer knows them
        names = {kind.__name__ for kind in type(exc).__mro__}
        if "NoArgsIsHelpError" in names:  # a group given no command: its help (rich drew it already)
            if exc.format_message():  # type: ignore[attr-defined]
                exc.show()  # type: ignore[attr-defined]
            sys.exit(2)
        if "Abort" in names:  # older typers' word for Ctrl-C (ours: 130), or the end of the input at a prompt
            _fail(*(("interrupted", 130) if isinstance(exc.__cause__, KeyboardInterrupt) else ("aborted", 1)))
        if "ClickException" not in names:
            raise
        message = " ".join(exc.format_message().split()).rstrip(".")  # type: ignore[attr-defined]
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            message += f"; see `{ctx.command_path} --help`"
        _fail(message, getattr(exc, "exit_code", 2))
    if code == 130:  # Ctrl-C, as newer typers return it (no command of ours exits so: it raises Interrupted)
        _fail("interrupted", 130)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    from .terminal import is_terminal

    if not is_terminal(sys.stderr):  # what rich would print there, without rich
        sys.stderr.write(f"error: {message}\n")
        sys.exit(code)
    from rich.console import Console
    from rich.markup import escape

    # the message is plain text: brackets in it (an install extra, a path) are not markup
    # one line whatever the terminal's width: a long path is not broken across lines
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold red]error:[/bold red] {escape(message)}", markup=True
    )
    sys.exit(code)


__all__ = ["COMMANDS", "UsageError", "main", "typer_app"]  # and app, built on first use

if __name__ == "__main__":  # pragma: no cover
    main()
