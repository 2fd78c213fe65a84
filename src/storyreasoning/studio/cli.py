"""The ``storyreasoning studio`` command (options from :mod:`.settings`)."""

from __future__ import annotations

from ..settings import command
from .settings import StudioSettings


def register(app) -> None:
    command(
        app, StudioSettings, "storyreasoning.studio.commands:studio", name="studio",
        help="""Web studio: tell a story from uploaded images (streamed), inspect outputs, browse datasets and runs.

    Serves a local page (no CDN, works offline) on 127.0.0.1 unless --host says otherwise.
    Without --teller, --endpoint or --model it only inspects and browses. The API key stays on
    the server, never in the page.
    """,
    )  # fmt: skip
