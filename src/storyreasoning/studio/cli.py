"""The ``storyreasoning studio`` command (options from :mod:`.settings`)."""

from __future__ import annotations

from ..settings import Command
from .settings import StudioSettings

JOBS = (
    Command(
        "studio", StudioSettings, "storyreasoning.studio.commands:studio",
        help="""Web studio: tell a story from uploaded images (streamed), inspect outputs, browse datasets and runs.

    Serves a local page (no CDN, works offline) on 127.0.0.1 unless --host says otherwise.
    Without --teller, --endpoint or --model it only inspects and browses. The API key stays on
    the server, never in the page.
    """,
    ),
)  # fmt: skip


def register(app) -> None:
    for job in JOBS:
        job.add(app)
