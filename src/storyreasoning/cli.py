"""The ``storyreasoning`` command.

Every subcommand imports what it needs inside its body, so ``storyreasoning --help``
and ``import storyreasoning.cli`` stay fast and never load torch or transformers.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path

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
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Grounded visual storytelling: parse, check, tell, train and evaluate grounded stories."""


class Kind(str, Enum):
    auto = "auto"
    output = "output"
    cot = "cot"
    story = "story"


@app.command()
def check(
    output_file: Path = typer.Argument(
        ...,
        help="A model output (<think> CoT </think> story), a CoT file or a story file; '-' reads standard input.",
        show_default=False,
    ),
    images: list[Path] = typer.Argument(
        None,
        help="The images the output describes, in order: their number and sizes are checked.",
        show_default=False,
    ),
    n_images: int | None = typer.Option(
        None,
        "--images",
        "-n",
        min=1,
        help="Number of images, when the image files are not given.",
        show_default=False,
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the parse as one JSON object instead of the summary."
    ),
    kind: Kind = typer.Option(Kind.auto, "--kind", help="What the file holds; auto detects it."),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="Also require non-empty Characters and Objects tables (the original validate_dataset rule).",
    ),
) -> None:
    """Parse a model output and say whether it is well-structured.

    Prints entities per image, story segments and tags, and every finding of the
    parser and the validator. Exit status: 0 well-structured, 1 not, 2 usage error.
    """
    from .check import run_check

    code = run_check(
        output_file, images or [], n_images=n_images, as_json=as_json, kind=kind.value, strict=strict
    )
    raise typer.Exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line on stderr, never a traceback."""
    try:
        app(args=argv, prog_name="storyreasoning")
    except StoryReasoningError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)


def _fail(message: str, code: int) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False).print(f"[bold red]error:[/bold red] {message}", markup=True)
    sys.exit(code)


__all__ = ["UsageError", "app", "main"]

if __name__ == "__main__":  # pragma: no cover
    main()
