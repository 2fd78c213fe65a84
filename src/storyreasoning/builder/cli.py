"""The ``storyreasoning build`` command (options from :mod:`.settings`)."""

from __future__ import annotations

from ..settings import Command
from .settings import BuildSettings

JOBS = (
    Command(
        "build", BuildSettings, "storyreasoning.builder.commands:build",
        help="""Build a StoryReasoning dataset from raw frames: people, re-identification, CoT tables, grounded story.

    Writes one story folder per story (frames, cot.md, story.md, meta.json), build.json,
    settings.json, report.json and, when a story failed, errors.jsonl. Run the same command again to continue an
    interrupted build. Exit status 1 when a story failed.
    """,
    ),
)  # fmt: skip


def register(app) -> None:
    for job in JOBS:
        job.add(app)
