"""The studio running for real: uvicorn on a free loopback port, in a background thread.

Fixtures (session-scoped, shared by the server tests and the page's browser tests):

* ``studio_url``: ``http://127.0.0.1:PORT`` of a studio with the BASELINE storyteller
  (OpenCV, no model weights), the bundled ``examples/stories`` dataset (named
  ``stories``) and a runs folder (``studio_runs``). Its limits are small so refusals are
  cheap to provoke: at most ``STUDIO_MAX_IMAGES`` images per story and
  ``STUDIO_MAX_IMAGE_BYTES`` bytes per image;
* ``studio_server``: the :class:`~storyreasoning.studio.server.BackgroundServer` itself
  (``.url``, and ``.server.config.app`` for the app's state);
* ``studio_runs``: the runs folder, holding ``baseline`` (the baseline teller over
  examples/stories) and ``reference`` (the dataset's own outputs, told back by a teller
  that repeats them), each evaluated into ``eval/`` (grounding and identity metrics)
  when the evaluate package can be imported.

:func:`running_studio` starts another studio for one test or module (another teller,
other limits); :func:`failed_run` copies a run with one story failed (``errors.jsonl``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from storyreasoning.studio.config import DatasetSource, StudioConfig
from storyreasoning.tell.base import Prompt, Sampling, Teller
from storyreasoning.tell.settings import TellerOptions

if TYPE_CHECKING:
    from storyreasoning.studio.server import BackgroundServer

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples" / "stories"
STUDIO_MAX_IMAGES = 6
STUDIO_MAX_IMAGE_BYTES = 1024 * 1024


def require_studio() -> None:
    """Skip the calling test unless FastAPI, uvicorn and python-multipart are installed."""
    for module in ("fastapi", "uvicorn", "python_multipart"):
        pytest.importorskip(
            module,
            reason="the studio needs FastAPI, uvicorn and python-multipart: pip install 'storyreasoning[studio]'",
        )


@contextlib.contextmanager
def running_studio(config: StudioConfig, *, teller: Teller | None = None) -> Iterator[BackgroundServer]:
    """A studio for ``config`` served on a free loopback port until the block ends (skips without FastAPI)."""
    require_studio()
    from storyreasoning.studio.app import create_app
    from storyreasoning.studio.server import BackgroundServer

    server = BackgroundServer(create_app(config, teller=teller))
    with server:
        yield server


class RepeatTeller(Teller):
    """A teller that writes, for a story's frames, the output it was given for them (the reference)."""

    backend = "reference"
    model = "dataset reference outputs"

    def __init__(self, outputs: dict[tuple[str, ...], str]) -> None:
        self.outputs = outputs

    def stream(self, images: Sequence[Any], *, prompt: Prompt = Prompt(), sampling: Sampling = Sampling()):
        yield self.outputs[tuple(str(getattr(image, "path", image)) for image in images)]


class FixedTeller(Teller):
    """A teller that writes the same output (``examples/outputs/lighthouse.txt``) for any frames."""

    backend = "fixed"
    model = "the lighthouse output"

    def stream(self, images: Sequence[Any], *, prompt: Prompt = Prompt(), sampling: Sampling = Sampling()):
        yield (ROOT / "examples" / "outputs" / "lighthouse.txt").read_text(encoding="utf-8")


# Story ids a URL must carry with care: "." and ".." (a path segment the browser folds away,
# percent-encoded or not), a slash, "#" and "?", spaces and non-Latin letters, the longest id.
ODD_IDS = [".", "..", "a/b", "a#b?c=d", "灯台 の 物語", "x" * 300]
PLAIN_IDS = [f"s{k:03d}" for k in range(52)]  # after them: the lists have two pages (50 a page)
LONG_RUN = "r" * 100  # the longest name a run folder may have


@pytest.fixture(scope="session")
def odd_ids_studio(tmp_path_factory) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a studio over ``odd``, a parquet dataset (split test) of
    :data:`ODD_IDS` then :data:`PLAIN_IDS`, each with the lighthouse's frames and output, and
    the runs folder holding ``told`` and :data:`LONG_RUN`: that dataset told by :class:`FixedTeller`."""
    require_studio()
    from storyreasoning.data import SampleList, StorySample, load_stories
    from storyreasoning.data.writers import write_parquet
    from storyreasoning.tell.run import tell_dataset

    root = tmp_path_factory.mktemp("odd-ids")
    lighthouse = next(s for s in load_stories(str(EXAMPLES)) if s.story_id == "lighthouse")
    frames = [Path(frame.path).read_bytes() for frame in lighthouse.frames]
    cot, _, story = lighthouse.output_text().partition("\n</think>\n")
    samples = [StorySample(sid, frames, cot.removeprefix("<think>\n"), story) for sid in ODD_IDS + PLAIN_IDS]
    write_parquet(SampleList(samples), root / "odd", split="test")
    told = load_stories(str(root / "odd"))
    for run in ("told", LONG_RUN):
        tell_dataset(told, FixedTeller(), root / "runs" / run)
    config = StudioConfig(datasets=[DatasetSource("odd", str(root / "odd"))], runs=root / "runs")
    with running_studio(config) as server:
        yield server.url


FAILED_STORY = "pioneers"
FAILED_ERROR = "the server at http://127.0.0.1:9/v1 answered 500 (CUDA out of memory); check the server's log"


def failed_run(run: Path, to: Path) -> Path:
    """A copy of ``run`` at ``to`` in which :data:`FAILED_STORY` failed: its record moved to
    ``errors.jsonl`` with :data:`FAILED_ERROR`, as ``tell-dataset`` writes a story that failed."""
    shutil.copytree(run, to)
    records = (to / "records.jsonl").read_text(encoding="utf-8").splitlines()
    kept = [line for line in records if json.loads(line)["story_id"] != FAILED_STORY]
    assert len(kept) == len(records) - 1
    (to / "records.jsonl").write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    error = {
        "story_id": FAILED_STORY,
        "error": FAILED_ERROR,
        "partial": "",
        "at": "2026-01-01T00:00:00+00:00",
    }
    (to / "errors.jsonl").write_text(json.dumps(error) + "\n", encoding="utf-8")
    return to


def _evaluate(run: Path) -> None:
    try:
        from storyreasoning.evaluate.commands import evaluate
        from storyreasoning.evaluate.settings import EvaluateSettings
    except ImportError:
        return  # the evaluate package is optional for these tests: the runs just have no metrics
    evaluate(EvaluateSettings(run=run, metrics="grounding,identity", plots=False))


@pytest.fixture(scope="session")
def studio_runs(tmp_path_factory) -> Path:
    """A runs folder: ``baseline`` and ``reference`` over examples/stories, evaluated when possible."""
    pytest.importorskip(
        "cv2", reason="the baseline teller needs OpenCV: pip install 'storyreasoning[vision]'"
    )
    from storyreasoning.data import load_stories
    from storyreasoning.tell.baseline import BaselineTeller
    from storyreasoning.tell.run import tell_dataset

    runs = tmp_path_factory.mktemp("studio-runs")
    stories = load_stories(str(EXAMPLES))
    with BaselineTeller() as teller:
        tell_dataset(stories, teller, runs / "baseline")
    outputs = {tuple(str(f.path) for f in sample.frames): sample.output_text() for sample in stories}
    tell_dataset(stories, RepeatTeller(outputs), runs / "reference")
    for run in ("baseline", "reference"):
        _evaluate(runs / run)
    return runs


@pytest.fixture(scope="session")
def studio_server(studio_runs) -> Iterator[BackgroundServer]:
    require_studio()
    config = StudioConfig(
        teller=TellerOptions(teller="baseline"),
        datasets=[DatasetSource("stories", str(EXAMPLES))],
        runs=studio_runs,
        max_images=STUDIO_MAX_IMAGES,
        max_image_bytes=STUDIO_MAX_IMAGE_BYTES,
    )
    with running_studio(config) as server:
        yield server


@pytest.fixture(scope="session")
def studio_url(studio_server) -> str:
    """``http://127.0.0.1:PORT`` of the shared studio (no trailing slash)."""
    return studio_server.url
