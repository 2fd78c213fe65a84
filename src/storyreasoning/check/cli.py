"""The ``storyreasoning check`` command."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer


class Kind(str, Enum):
    auto = "auto"
    output = "output"
    cot = "cot"
    story = "story"


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
        False, "--json", help="Print the parse as one JSON object instead of the summary.", metavar=" "
    ),
    kind: Kind = typer.Option(Kind.auto, "--kind", help="What the file holds; auto detects it."),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="Also require non-empty Characters and Objects tables (the original validate_dataset rule).",
        metavar=" ",
    ),
) -> None:
    """Parse a model output and say whether it is well-structured.

    Prints entities per image, story segments and tags, and every finding of the
    parser and the validator. Exit status: 0 well-structured, 1 not, 2 usage error.
    """
    from .commands import run_check

    code = run_check(
        output_file, images or [], n_images=n_images, as_json=as_json, kind=kind.value, strict=strict
    )
    raise typer.Exit(code)


def register(app) -> None:
    app.command("check")(check)
