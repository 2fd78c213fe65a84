"""The build loop with several stories in flight against a real (loopback) OpenAI-compatible server.

The server (tests/tell/servers.py's FakeServer) answers like a model that reads its
prompt: the CoT from the entities the writer lists per frame, the story from the CoT it
is given. Its answers depend only on what was asked, never on the order requests
arrive in, so a build with four stories in flight must give the very bytes a build with
one gives; each answer waits a while first, as a model at work does, so writing several
at once must be faster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip(
    "cv2", reason="the builder's perception needs OpenCV: pip install 'storyreasoning[vision]'"
)

from storyreasoning.builder.pipeline import ERRORS, build_dataset, find_stories, read_frames
from storyreasoning.builder.writers import ChatWriter
from storyreasoning.data.folder import frame_files
from storyreasoning.errors import StoryReasoningError
from storyreasoning.tell.base import Sampling
from storyreasoning.tell.baseline import BaselineTeller
from storyreasoning.tell.openai import OpenAITeller

from ..conftest import signal_when
from ..tell.servers import FakeServer
from .reading_model import answer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "stories"


# -- stories ----------------------------------------------------------------------------------------------------


def make_stories(root: Path, count: int = 8) -> Path:
    """``count`` two-frame stories of small photographs (people in every story; perception is quick)."""
    from PIL import Image, ImageOps

    sources = frame_files(EXAMPLES / "pioneers") + frame_files(EXAMPLES / "lighthouse")[:2]
    for k in range(count):
        folder = root / f"story{k}"
        folder.mkdir(parents=True)
        for j in range(2):
            image = Image.open(sources[(k + j) % len(sources)]).convert("RGB")
            image.thumbnail((200, 200))
            if k >= len(sources):
                image = ImageOps.mirror(image)
            image.save(folder / f"{j + 1:02d}.png")
    return root


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    return make_stories(tmp_path_factory.mktemp("raw"))


@pytest.fixture(scope="module")
def perceiver():
    return BaselineTeller()


def folder_bytes(out: Path) -> dict[str, dict[str, bytes]]:
    """Every story folder of a built dataset, file by file."""
    return {
        story.name: {f.name: f.read_bytes() for f in sorted(story.iterdir())}
        for story in sorted(out.iterdir())
        if story.is_dir() and not story.name.startswith(".")
    }


def chat_writer(url: str) -> ChatWriter:
    return ChatWriter(OpenAITeller(url, retries=0), sampling=Sampling(0.7, 0.9, 2048, 7), max_tries=2)


# -- tests ------------------------------------------------------------------------------------------------------


def test_four_stories_in_flight_finish_sooner_with_the_same_bytes(raw, tmp_path, perceiver):
    stories, _ = find_stories(raw)
    assert len(stories) == 8
    seconds, peaks = {}, {}
    for concurrency in (1, 4):
        with FakeServer(respond=answer, answer_delay=0.3, chunk=400) as server:
            began = time.perf_counter()
            report = build_dataset(
                stories,
                tmp_path / f"c{concurrency}",
                perceiver=perceiver,
                writer=chat_writer(server.url),
                concurrency=concurrency,
            )
            seconds[concurrency] = time.perf_counter() - began
            peaks[concurrency] = server.max_active
            assert len(server.chat_requests()) == 16  # a CoT and a story each, every answer right first time
        assert report.built == 8 and not report.failed, report
    assert peaks[1] == 1 and peaks[4] >= 3, peaks  # the requests really were in flight together
    # a generous bound (16 answers of 0.3 s: 4.8 s one at a time, about 1.3 s four at a time)
    assert seconds[4] < 0.6 * seconds[1], seconds
    one, four = folder_bytes(tmp_path / "c1"), folder_bytes(tmp_path / "c4")
    assert sorted(one) == [f"story{k}" for k in range(8)]
    for name in one:
        assert one[name] == four[name], name  # story by story, byte for byte


class WatchedPerceiver(BaselineTeller):
    """The baseline's perception, noting each time it has seen a story how many perceived stories are held
    (being written or waiting for a writer, this one included)."""

    def __init__(self) -> None:
        super().__init__()
        self.perceived = 0
        self.finished = 0
        self.held: list[int] = []

    def see(self, frames):
        seen = super().see(frames)
        self.perceived += 1
        self.held.append(self.perceived - self.finished)
        return seen


def test_perception_runs_ahead_of_the_writers_but_only_one_story_ahead(raw, tmp_path):
    """With two writers busy, perception keeps one more story ready and no more: what waits in memory is bound."""
    stories, _ = find_stories(raw)
    seer = WatchedPerceiver()

    def finished(n: int) -> None:
        seer.finished += n

    with FakeServer(respond=answer, answer_delay=0.3) as server:
        report = build_dataset(
            stories,
            tmp_path / "b",
            perceiver=seer,
            writer=chat_writer(server.url),
            concurrency=2,
            progress=finished,
        )
    assert report.built == 8 and seer.perceived == 8
    assert max(seer.held) == 3, seer.held  # two being written and one ready, never more


def test_failures_at_the_endpoint_count_in_the_order_stories_finish(raw, tmp_path, perceiver):
    """Two answers fail, the rest pass: no three in a row, so nothing stops; a server that always fails
    stops the build after three, with the stories never started left for the next run."""
    stories, _ = find_stories(raw)
    with FakeServer("status", status=500, fail=2, respond=answer) as server:
        report = build_dataset(
            stories, tmp_path / "some", perceiver=perceiver, writer=chat_writer(server.url), concurrency=4
        )
    assert report.built == 6 and len(report.failed) == 2
    with FakeServer("status", status=500) as server:
        with pytest.raises(
            StoryReasoningError, match="stopped after 3 stories in a row failed at the endpoint"
        ):
            build_dataset(
                stories, tmp_path / "none", perceiver=perceiver, writer=chat_writer(server.url), concurrency=4
            )
        tried = len(server.chat_requests())
    errors = [json.loads(line) for line in (tmp_path / "none" / ERRORS).read_text().splitlines()]
    assert len(errors) == 3 and all("internal error" in e["error"] for e in errors)
    assert tried < 8  # the build stopped: not every story was sent
    assert not [p for p in (tmp_path / "none").iterdir() if p.is_dir()]  # nothing half-written


def test_keep_invalid_keeps_the_last_answer_of_a_chat_writer_that_never_passes(raw, tmp_path, perceiver):
    """A model that answers junk: without --keep-invalid the story fails (naming the option); with it the
    last answers are kept, marked as the validator marks any kept story, the writer's findings with them."""
    from storyreasoning.data import load_stories

    stories = find_stories(raw)[0][:1]
    junk = "## Image 1\n\nnothing useful here"
    with FakeServer(text=junk) as server:
        refused = build_dataset(
            stories,
            tmp_path / "strict",
            perceiver=perceiver,
            writer=chat_writer(server.url),
            keep_invalid=True,
        )
        assert refused.failed == ["story0"] and refused.built == 0
        (error,) = [json.loads(line) for line in (tmp_path / "strict" / ERRORS).read_text().splitlines()]
        assert (
            "the analysis still fails after 2 attempts" in error["error"]
            and "--keep-invalid" in error["error"]
        )
        keeping = ChatWriter(
            OpenAITeller(server.url, retries=0),
            sampling=Sampling(0.7, 0.9, 2048, 7),
            max_tries=2,
            keep_invalid=True,
        )
        requests = len(server.chat_requests())
        kept = build_dataset(
            stories, tmp_path / "loose", perceiver=perceiver, writer=keeping, keep_invalid=True
        )
        assert len(server.chat_requests()) - requests == 4  # the CoT twice, then the story twice
        _, sizes = read_frames(stories[0].frames)
        written = keeping.write(list(perceiver.see(stories[0].frames)), stories[0].frames, sizes)
    assert kept.built == 1 and kept.invalid_kept == 1 and not kept.failed
    (sample,) = list(load_stories(str(tmp_path / "loose")))
    build = sample.meta["build"]
    assert (
        build["well_structured"] is False and build["reasons"] and build["attempts"] == {"cot": 2, "story": 2}
    )
    assert sample.cot_text.strip() == junk and sample.story_text.strip() == junk  # as the model wrote them
    # what the writer still found wrong, said per text
    assert {p.split(":")[0] for p in written.problems} == {"analysis", "story"}


def _build_command(raw: Path, out: Path, url: str) -> list[str]:
    return [
        sys.executable, "-m", "storyreasoning", "build", str(raw), "--out", str(out),
        "--writer", "chat", "--endpoint", url, "--faces", "none", "--concurrency", "4", "--seed", "7",
    ]  # fmt: skip


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "200"}


def test_ctrl_c_ends_a_build_in_one_line(raw, tmp_path):
    out = tmp_path / "built"
    with FakeServer(respond=answer, answer_delay=3.0) as server:
        process = subprocess.Popen(
            _build_command(raw, out, server.url), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        # a story is being written
        stderr = signal_when(process, server.chat_requests, signal.SIGINT, within=120,
                             failure="no story was written in two minutes")  # fmt: skip
    assert process.returncode == 130 and "Traceback" not in stderr
    said = [line for line in stderr.splitlines() if "interrupted" in line]
    assert said == [
        f"error: interrupted; the finished stories are kept in {out}, run the same command again to continue"
    ], stderr


#: The CLI's main in a child whose interpreter, when it exits with the perceiving thread still alive,
#: takes a while to finalize (a large program's teardown does: torch, CUDA), as in the reported aborts.
LINGERING_EXIT = """
import sys, threading, time
from storyreasoning.cli import main

class Linger:
    seconds = 0.0
    def __del__(self):  # while __main__ is cleared: the runtime is finalizing
        time.sleep(self.seconds)

linger = Linger()
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
if any(t.name == "storyreasoning-perceive" and t.is_alive() for t in threading.enumerate()):
    Linger.seconds = 15.0
sys.exit(code)
"""


@pytest.mark.slow  # heavy end-to-end run: the slow pass (.ci/run) keeps it
def test_ctrl_c_waits_for_the_story_being_perceived_instead_of_aborting(tmp_path):
    """Ctrl-C while dlib looks for faces: the build waits for that story's perception to end. It used to
    exit with the perceiving thread inside dlib, which (its GIL taken back while the interpreter
    finalized) ended in a C++ abort, exit 134: ``terminate called without an active exception``."""
    pytest.importorskip("dlib", reason="faces need dlib: pip install 'storyreasoning[faces]'")
    from PIL import Image

    photo = Image.open(ROOT / "tests" / "builder" / "data" / "faces" / "obama-1.jpg").convert("RGB")
    raw = tmp_path / "raw"
    for k in range(3):  # one large frame per story: dlib, upsampling it 8 times, takes seconds on it
        (raw / f"story{k}").mkdir(parents=True)
        photo.resize((900, 1125)).save(raw / f"story{k}" / "01.png")
    out = tmp_path / "built"
    command = [
        sys.executable, "-c", LINGERING_EXIT, "build", str(raw), "--out", str(out), "--min-frames", "1",
        "--faces", "dlib", "--face-upsample", "3", "--no-require-person",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    # story0 is built: story1 is being perceived
    stderr = signal_when(process, (out / "story0").is_dir, signal.SIGINT, within=180,
                         failure="no story was built in three minutes", timeout=120)  # fmt: skip
    assert process.returncode == 130, stderr
    assert "terminate called" not in stderr and "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if line.strip()] == [
        f"error: interrupted; the finished stories are kept in {out}, run the same command again to continue"
    ]
    assert (out / "story0" / "story.md").is_file() and not list(out.glob(".*.partial"))


@pytest.fixture(scope="module")
def uninterrupted(raw, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("whole") / "built"
    with FakeServer(respond=answer, answer_delay=0.2) as server:
        done = subprocess.run(
            _build_command(raw, out, server.url), env=_env(), capture_output=True, text=True, timeout=300
        )
    assert done.returncode == 0, done.stderr
    return folder_bytes(out)


@pytest.mark.slow  # heavy end-to-end run: the slow pass (.ci/run) keeps it
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill"])
def test_a_killed_build_resumes_to_the_same_dataset_writing_no_story_twice(raw, tmp_path, uninterrupted, sig):
    out = tmp_path / "built"
    with FakeServer(respond=answer, answer_delay=0.4) as server:
        process = subprocess.Popen(
            _build_command(raw, out, server.url),
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        stderr = signal_when(process, lambda: len(folder_bytes(out) if out.is_dir() else {}) >= 2, sig,
                             within=120, failure="no story was built in two minutes")  # fmt: skip
        if sig == signal.SIGINT:
            assert process.returncode == 130 and "interrupted; the finished stories are kept" in stderr, (
                stderr
            )
            assert stderr.count("interrupted") == 1, stderr  # one line
            assert "Traceback" not in stderr
            assert not list(out.glob(".*.partial"))  # Ctrl-C leaves no half-written story behind
        first = folder_bytes(out)
        assert 2 <= len(first) < 8, sorted(first)
        stamps = {name: (out / name / "story.md").stat().st_mtime_ns for name in first}
        again = subprocess.run(
            _build_command(raw, out, server.url), env=_env(), capture_output=True, text=True, timeout=300
        )
    assert again.returncode == 0, again.stderr
    assert f"({len(first)} already there)" in again.stderr
    assert {name: (out / name / "story.md").stat().st_mtime_ns for name in first} == stamps  # not rewritten
    assert folder_bytes(out) == uninterrupted  # the same folders, the same files, byte for byte
    assert not list(out.glob(".*.partial"))
