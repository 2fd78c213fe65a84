"""The telling commands: ``tell``, ``tell-dataset`` and ``serve`` (options from :mod:`.settings`)."""

from __future__ import annotations

from ..settings import Command
from .settings import ServeSettings, TellDatasetSettings, TellSettings

_MODULE = "storyreasoning.tell.commands"

JOBS = (
    Command(
        "tell", TellSettings, f"{_MODULE}:tell", config=False,
        help="""Tell a grounded story about images.

    Prints the story with its tags as colours and the chain-of-thought as tables. The
    baseline teller needs no model weights: storyreasoning tell examples/stories/pioneers --teller baseline
    """,
    ),
    Command(
        "tell-dataset", TellDatasetSettings, f"{_MODULE}:tell_dataset",
        help="""Tell every story of a dataset into a run folder (resumable; what evaluate and the studio read).

    Writes manifest.json, settings.json, records.jsonl (one record per story) and, once a story has failed, errors.jsonl.
    Run the same command again after a crash or Ctrl-C: finished stories are skipped.
    --samples N keeps N candidates a story (one request with n); --endpoint repeated spreads
    the stories over several servers of the same model.
    """,
    ),
    Command(
        "serve", ServeSettings, f"{_MODULE}:serve", config=False,
        help="Serve a storyteller behind an OpenAI-compatible API, with flags derived from the story length.",
    ),
)  # fmt: skip


def register(app) -> None:
    for job in JOBS:
        job.add(app)
