"""The ``storyreasoning`` command: mounts each package's commands and turns user errors into one line.

Each package owns its commands (``tell/cli.py``, ``train/cli.py``, ...); a job's options
come from its settings dataclass (:mod:`storyreasoning.settings`). Every command imports
what it runs inside its body, so ``storyreasoning --help`` and ``import storyreasoning.cli``
stay fast and never load torch or transformers.
"""

from __future__ import annotations

import sys

import typer

from . import __version__
from .errors import StoryReasoningError, UsageError

app = typer.Typer(
    name="storyreasoning",
    help="Grounded visual storytelling: parse, check, tell, train and evaluate grounded stories.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"storyreasoning {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit.", metavar=" "
    ),
) -> None:
    """Grounded visual storytelling: parse, check, tell, train and evaluate grounded stories."""


def _mount() -> None:
    from .builder import cli as builder
    from .check import cli as check
    from .data import cli as data
    from .evaluate import cli as evaluate
    from .studio import cli as studio
    from .tell import cli as tell
    from .train import cli as train

    for package in (check, tell, studio, data, train, builder, evaluate):
        package.register(app)


_mount()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line on stderr, never a traceback.

    Commands raise :class:`StoryReasoningError` with the fix in the message. What slips
    through is caught here too: a file-system error becomes one line naming the path
    (:func:`~storyreasoning.errors.file_error`), a missing optional package one naming its
    extra (:func:`~storyreasoning.errors.missing_package`). ``STORYREASONING_TRACEBACK=1``
    shows the traceback instead (for a bug report).
    """
    import os

    from .errors import file_error, missing_package

    try:
        app(args=argv, prog_name="storyreasoning")
    except StoryReasoningError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BrokenPipeError:  # the reader went away (| head): nothing more to say
        sys.stderr.close()
        sys.exit(1)
    except (OSError, ImportError) as exc:
        if os.environ.get("STORYREASONING_TRACEBACK"):
            raise
        error = missing_package(exc) if isinstance(exc, ImportError) else file_error(exc)
        if error is None:  # an import of our own that failed: a bug, keep its traceback
            raise
        _fail(str(error), error.exit_code)


def _fail(message: str, code: int) -> None:
    from rich.console import Console
    from rich.markup import escape

    # the message is plain text: brackets in it (an install extra, a path) are not markup
    # one line whatever the terminal's width: a long path is not broken across lines
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold red]error:[/bold red] {escape(message)}", markup=True
    )
    sys.exit(code)


__all__ = ["UsageError", "app", "main"]

if __name__ == "__main__":  # pragma: no cover
    main()
