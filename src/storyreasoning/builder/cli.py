"""The ``storyreasoning build`` command (options from :mod:`.settings`)."""

from __future__ import annotations

from ..settings import command
from .settings import BuildSettings


def register(app) -> None:
    command(
        app, BuildSettings, "storyreasoning.builder.commands:build", name="build",
        help="""Build a StoryReasoning dataset from raw frames: people, re-identification, CoT tables, grounded story.

    Writes one story folder per story (frames, cot.md, story.md, meta.json), build.json,
    settings.json, report.json and errors.jsonl. Run the same command again to continue an
    interrupted build. Exit status 1 when a story failed.
    """,
    )  # fmt: skip
