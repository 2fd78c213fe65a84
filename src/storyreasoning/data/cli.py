"""The ``storyreasoning data`` command group: info, validate, show, convert, contrastive, push."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from ..errors import UsageError
from ..settings import Command
from .hub import DataPushSettings

_SOURCE_HELP = (
    "A dataset: a hub id (daniel3303/StoryReasoning), a save_to_disk folder, parquet files or a folder of "
    "story folders (see README, Data)."
)


app = typer.Typer(
    help="Datasets: statistics, validation, one story, conversion between formats, contrastive sequences.",
    no_args_is_help=True,
)


def _source() -> str:
    return typer.Argument(..., help=_SOURCE_HELP, show_default=False)


def _split() -> str | None:
    return typer.Option(
        None, "--split", "-s", help="Split to read (train, test, ...); all splits when omitted."
    )


def _limit() -> int | None:
    return typer.Option(None, "--limit", min=1, help="Only the first N stories.", show_default=False)


@app.command("info")
def data_info(
    source: str = _source(),
    split: str | None = _split(),
    limit: int | None = _limit(),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON.", metavar=" "),
) -> None:
    """Statistics: stories, frames, entities per image, persistence across frames, tags."""
    from .commands import info

    raise typer.Exit(info(source, split=split, limit=limit, as_json=as_json))


@app.command("validate")
def data_validate(
    source: str = _source(),
    split: str | None = _split(),
    limit: int | None = _limit(),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="Also require non-empty Characters and Objects tables (the original rule).",
        metavar=" ",
    ),
    failures: Path | None = typer.Option(
        None, "--failures", help="Write each failing story and its reasons to this JSON-lines file."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON.", metavar=" "),
) -> None:
    """Run the structural validator over every story (boxes checked against the frame sizes).

    Exit status 0 when every story is well-structured, 1 otherwise.
    """
    from .commands import validate

    raise typer.Exit(
        validate(source, split=split, limit=limit, strict=strict, as_json=as_json, failures=failures)
    )


@app.command("show")
def data_show(
    source: str = _source(),
    story_id: str = typer.Argument(..., help="The story's id.", show_default=False),
    split: str | None = _split(),
    strict: bool = typer.Option(
        False, "--strict", help="Validate with the original, stricter rule.", metavar=" "
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the parsed story as JSON (check --json's fields but kind, with story_id, frames and frame_meta).",
        metavar=" ",
    ),
) -> None:
    """Show one story: frames, the coloured story, entities per image and the validator's findings."""
    from .commands import show

    raise typer.Exit(show(source, story_id, split=split, strict=strict, as_json=as_json))


def _given_out(text: str) -> Path:
    """OUT as given; an empty one refused (typer's Path would take it for this folder)."""
    from ..settings import given_path

    return given_path(text, "OUT")


def _overwrite() -> bool:
    return typer.Option(
        False,
        "--overwrite",
        help="Write OUT afresh: its shards or story folders are rewritten (story folders of other stories "
        "removed), a save_to_disk folder replaced, even when another source or other options made them.",
        metavar=" ",
    )


class Format(str, Enum):
    parquet = "parquet"
    folder = "folder"
    disk = "disk"


@app.command("convert")
def data_convert(
    source: str = _source(),
    out: Path = typer.Argument(
        ..., help="Output folder.", show_default=False, parser=_given_out, metavar="OUT"
    ),
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
    overwrite: bool = _overwrite(),
) -> None:
    """Convert a dataset to another format, images byte for byte.

    OUT records what it is made from (the source, --split, --limit, --stories-per-shard). Run the
    same command again and an interrupted conversion resumes (finished shards and story folders
    are kept, a disk conversion starts over) or a finished one says so; another source or other
    options are refused, naming what differs, unless --overwrite.
    """
    from .commands import convert

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


@app.command("contrastive")
def data_contrastive(
    source: str = _source(),
    out: Path = typer.Argument(
        ..., help="Output folder.", show_default=False, parser=_given_out, metavar="OUT"
    ),
    count: int = typer.Option(
        100, "--count", min=1, max=1_000_000, help="How many sequences (at most 1,000,000)."
    ),
    length: str = typer.Option(
        "real",
        "--length",
        help="Frames per sequence: real (each as long as a story of the dataset drawn at random), N, or MIN-MAX.",
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed (the same seed gives the same sequences)."),
    split: str | None = _split(),
    to: Format = typer.Option(
        Format.folder,
        "--to",
        help="folder (story folders), parquet (shards) or disk (a save_to_disk folder).",
    ),
    overwrite: bool = _overwrite(),
) -> None:
    """Build incoherent sequences (each frame from a different film, video or story) for contrastive training.

    As with convert, OUT records what it is made from: the same command again resumes, other options
    (--seed, --count, --length, --split) or another source are refused unless --overwrite.
    """
    from .commands import contrastive

    bounds: tuple[int, int] | str = "real"
    if length.strip().lower() != "real":
        try:
            lo, _, hi = length.partition("-")
            bounds = (int(lo), int(hi or lo))
        except ValueError:
            raise UsageError(f"--length must be real, N or MIN-MAX, got {length!r}") from None
        if not 1 <= bounds[0] <= bounds[1]:
            raise UsageError(f"--length must be at least 1 frame (MIN-MAX: MIN up to MAX), got {length!r}")
    raise typer.Exit(
        contrastive(
            source, out, split=split, count=count, length=bounds, seed=seed, to=to.value, overwrite=overwrite
        )
    )


GROUP = "data"
JOBS = (
    Command(
        "push", DataPushSettings, "storyreasoning.data.commands:push",
        help="""Upload a dataset to the Hugging Face Hub as StoryReasoning parquet with its dataset card.

        Every split goes up as data/SPLIT-NNNNN-of-MMMMM.parquet in the published columns (story_id,
        images, frame_count, chain_of_thought, story, frame_meta), read back through the loader
        before anything is sent. The card is --card, the dataset folder's README.md (storyreasoning
        build writes one), or a generated one. The token: --token, HF_TOKEN or the saved login.
        --dry-run --out FOLDER writes what would go up and sends nothing.
        """,
    ),
)  # fmt: skip
for _job in JOBS:
    _job.add(app)


def register(root) -> None:
    root.add_typer(app, name="data")
