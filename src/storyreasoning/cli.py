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


data_app = typer.Typer(
    help="Datasets: statistics, validation, one story, conversion between formats, contrastive sequences.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")

_SOURCE_HELP = (
    "A dataset: a hub id (daniel3303/StoryReasoning), a save_to_disk folder, parquet files or a folder of "
    "story folders (see README, Data)."
)


def _source() -> str:
    return typer.Argument(..., help=_SOURCE_HELP, show_default=False)


def _split() -> str | None:
    return typer.Option(
        None, "--split", "-s", help="Split to read (train, test, ...); all splits when omitted."
    )


def _limit() -> int | None:
    return typer.Option(None, "--limit", min=1, help="Only the first N stories.", show_default=False)


@data_app.command("info")
def data_info(
    source: str = _source(),
    split: str | None = _split(),
    limit: int | None = _limit(),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
) -> None:
    """Statistics: stories, frames, entities per image, persistence across frames, tags."""
    from .data.commands import info

    raise typer.Exit(info(source, split=split, limit=limit, as_json=as_json))


@data_app.command("validate")
def data_validate(
    source: str = _source(),
    split: str | None = _split(),
    limit: int | None = _limit(),
    strict: bool = typer.Option(
        False, "--strict", help="Also require non-empty Characters and Objects tables (the original rule)."
    ),
    failures: Path | None = typer.Option(
        None, "--failures", help="Write each failing story and its reasons to this JSON-lines file."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Run the structural validator over every story (boxes checked against the frame sizes).

    Exit status 0 when every story is well-structured, 1 otherwise.
    """
    from .data.commands import validate

    raise typer.Exit(
        validate(source, split=split, limit=limit, strict=strict, as_json=as_json, failures=failures)
    )


@data_app.command("show")
def data_show(
    source: str = _source(),
    story_id: str = typer.Argument(..., help="The story's id.", show_default=False),
    split: str | None = _split(),
    strict: bool = typer.Option(False, "--strict", help="Validate with the original, stricter rule."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the parsed story as JSON (the check --json shape)."
    ),
) -> None:
    """Show one story: frames, the coloured story, entities per image and the validator's findings."""
    from .data.commands import show

    raise typer.Exit(show(source, story_id, split=split, strict=strict, as_json=as_json))


class Format(str, Enum):
    parquet = "parquet"
    folder = "folder"
    disk = "disk"


@data_app.command("convert")
def data_convert(
    source: str = _source(),
    out: Path = typer.Argument(..., help="Output folder.", show_default=False),
    to: Format = typer.Option(
        ...,
        "--to",
        help="parquet: hub-ready shards (data/SPLIT-NNNNN-of-MMMMM.parquet + README.md); folder: one folder "
        "per story; disk: a datasets save_to_disk folder.",
        show_default=False,
    ),
    split: str | None = _split(),
    limit: int | None = _limit(),
    stories_per_shard: int = typer.Option(
        256, "--stories-per-shard", min=1, help="Stories per parquet shard."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Rewrite story folders that already exist."),
) -> None:
    """Convert a dataset to another format, images byte for byte.

    Interrupted conversions resume: finished shards and story folders are kept and skipped.
    """
    from .data.commands import convert

    raise typer.Exit(
        convert(
            source,
            out,
            to=to.value,
            split=split,
            limit=limit,
            stories_per_shard=stories_per_shard,
            overwrite=overwrite,
        )
    )


@data_app.command("contrastive")
def data_contrastive(
    source: str = _source(),
    out: Path = typer.Argument(..., help="Output folder.", show_default=False),
    count: int = typer.Option(100, "--count", min=1, help="How many sequences."),
    length: str = typer.Option("5", "--length", help="Frames per sequence: N, or MIN-MAX."),
    seed: int = typer.Option(0, "--seed", help="Random seed (the same seed gives the same sequences)."),
    split: str | None = _split(),
    to: Format = typer.Option(Format.folder, "--to", help="parquet or folder."),
) -> None:
    """Build incoherent sequences (each frame from a different source) for contrastive training."""
    from .data.commands import contrastive

    try:
        lo, _, hi = length.partition("-")
        bounds = (int(lo), int(hi or lo))
    except ValueError:
        raise UsageError(f"--length must be N or MIN-MAX, got {length!r}") from None
    raise typer.Exit(
        contrastive(source, out, split=split, count=count, length=bounds, seed=seed, to=to.value)
    )


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
