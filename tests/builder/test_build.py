"""The dataset builder on real frames: OpenCV perception, template and chat writers, resume, failures.

The chat writer talks to a scripted OpenAI-compatible server on loopback (the fake
server of tests/tell/servers.py) that answers each request with the next text of a
script: wrong first, right after the feedback, so the re-prompting is exercised for real.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip(
    "cv2", reason="the builder's perception needs OpenCV: pip install 'storyreasoning[vision]'"
)

from storyreasoning.builder.pipeline import build_dataset, find_stories
from storyreasoning.builder.writers import ChatWriter, TemplateWriter
from storyreasoning.data import load_stories
from storyreasoning.data.folder import frame_files
from storyreasoning.errors import StoryReasoningError, UsageError
from storyreasoning.tell.base import Sampling
from storyreasoning.tell.baseline import BaselineTeller
from storyreasoning.tell.openai import OpenAITeller

from ..conftest import one_error_line, run_cli
from ..tell.servers import FakeServer, closed_url, held_elsewhere
from .test_provenance import CountingPerceiver

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "stories"


@pytest.fixture
def raw(tmp_path) -> Path:
    """Raw frames only: one folder per story, the examples' images without their texts."""
    root = tmp_path / "raw"
    for story in ("lighthouse", "pioneers", "cat-and-coffee"):
        (root / story).mkdir(parents=True)
        for frame in frame_files(EXAMPLES / story):
            shutil.copy(frame, root / story / frame.name)
    return root


@pytest.fixture(scope="module")
def perceiver():
    return BaselineTeller()


cli = run_cli


# -- finding stories -------------------------------------------------------------------------------


def test_stories_are_found_in_both_layouts(raw, tmp_path):
    stories, notes = find_stories(raw)
    assert [s.story_id for s in stories] == ["cat-and-coffee", "lighthouse", "pioneers"]
    assert [p.name for p in stories[1].frames] == ["01.png", "02.png", "03.png"]
    one, _ = find_stories(raw / "pioneers")
    assert [s.story_id for s in one] == ["pioneers"] and len(one[0].frames) == 4
    few, notes = find_stories(raw, min_frames=4)
    assert [s.story_id for s in few] == ["pioneers"] and len(notes) == 2 and "fewer than 4" in notes[0]
    cut, notes = find_stories(raw, max_frames=2)
    assert all(len(s.frames) == 2 for s in cut) and any("first 2 kept" in n for n in notes)
    with pytest.raises(UsageError, match="does not exist"):
        find_stories(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="holds no frames"):
        find_stories(tmp_path / "empty")


# -- the template writer ---------------------------------------------------------------------------------


def test_template_build_makes_a_valid_dataset_and_resumes(raw, tmp_path, perceiver):
    stories, _ = find_stories(raw)
    out = tmp_path / "built"
    # cat-and-coffee shows no person: kept here (the rule is tested in test_provenance.py)
    report = build_dataset(stories, out, perceiver=perceiver, writer=TemplateWriter(), require_person=False)
    assert report.built == 3 and not report.failed
    dataset = load_stories(str(out))
    assert sorted(dataset.ids()) == ["cat-and-coffee", "lighthouse", "pioneers"]
    for sample in dataset:
        telling = sample.telling()
        assert telling.validate(n_images=sample.frame_count, image_sizes=sample.frame_sizes()).well_structured
        # a source names the frame from the folder given (raw/story/01.jpg), never by a local path
        assert all(m["source"].startswith(f"raw/{sample.story_id}/") for m in sample.frame_meta)
        sources = [raw.parent / m["source"] for m in sample.frame_meta]
        assert [f.bytes() for f in sample.frames] == [p.read_bytes() for p in sources]  # frames byte-equal
        assert sample.meta["build"]["writer"] == "template" and sample.meta["build"]["well_structured"]
    lighthouse = next(s for s in dataset if s.story_id == "lighthouse")
    # the detector's people are in the tables with its boxes, one id across frames
    people = [[p.char_id for p in f.people] for f in perceiver.see(frame_files(raw / "lighthouse"))]
    assert [[c.id for c in image.characters] for image in lighthouse.cot.images] == people
    stamp = (out / "lighthouse" / "cot.md").stat().st_mtime_ns
    again = build_dataset(stories, out, perceiver=perceiver, writer=TemplateWriter(), require_person=False)
    assert again.skipped_done == 3 and again.built == 0
    assert (out / "lighthouse" / "cot.md").stat().st_mtime_ns == stamp


def test_a_corrupt_frame_fails_its_story_only_and_a_rerun_finishes(raw, tmp_path):
    good = (raw / "pioneers" / "02.jpg").read_bytes()
    (raw / "pioneers" / "02.jpg").write_bytes(b"not a jpeg at all")
    out = tmp_path / "built"
    result = cli("build", str(raw), "--out", str(out), "--no-require-person")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "built 2 stories" in result.stderr and "1 failed" in result.stderr
    (error,) = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert error["story_id"] == "pioneers" and "02.jpg" in error["error"]
    assert not (out / "pioneers").exists()
    (raw / "pioneers" / "02.jpg").write_bytes(good)
    rerun = cli("build", str(raw), "--out", str(out), "--no-require-person")
    assert rerun.returncode == 0, rerun.stderr
    assert "built 1 story into" in rerun.stderr and "(2 already there)" in rerun.stderr
    assert len(load_stories(str(out))) == 3
    assert not (out / "errors.jsonl").exists()  # built at last: its failure is no longer unresolved


def test_a_torn_skipped_line_is_cut_and_a_damaged_one_said_never_glued_or_dropped(raw, tmp_path):
    stories, _ = find_stories(raw)
    out = tmp_path / "built"
    first = build_dataset(stories, out, perceiver=CountingPerceiver(), writer=TemplateWriter())
    assert (first.built, first.skipped_no_person) == (2, 1)  # cat-and-coffee: no person in view
    skipped = out / "skipped.jsonl"
    whole = skipped.read_bytes()
    skipped.write_bytes(whole[: len(whole) // 2])  # a crash mid-append
    perceiver = CountingPerceiver()
    again = build_dataset(stories, out, perceiver=perceiver, writer=TemplateWriter())
    # its line was lost: seen again, and written as one whole line, nothing glued onto the fragment
    assert perceiver.seen == ["cat-and-coffee"] and again.skipped_no_person == 1
    assert [json.loads(line)["story_id"] for line in skipped.read_text().splitlines()] == ["cat-and-coffee"]
    perceiver = CountingPerceiver()
    build_dataset(stories, out, perceiver=perceiver, writer=TemplateWriter())
    assert perceiver.seen == []  # and not perceived again after that
    skipped.write_text("{garbage\n" + skipped.read_text(), encoding="utf-8")
    said: list[str] = []
    build_dataset(stories, out, perceiver=CountingPerceiver(), writer=TemplateWriter(), say=said.append)
    assert said == [
        f"{skipped} line 1 is not JSON (Expecting property name enclosed in double quotes: column 2); "
        f"moved it to {out / 'skipped.corrupt.jsonl'}, its story is perceived again"
    ]
    assert [
        json.loads(line)["text"] for line in (out / "skipped.corrupt.jsonl").read_text().splitlines()
    ] == ["{garbage"]


def test_a_second_build_into_a_folder_at_work_is_refused_in_one_line(raw, tmp_path):
    out = tmp_path / "built"
    with held_elsewhere(out) as holder:
        line = one_error_line(cli("build", str(raw / "pioneers"), "--out", str(out)))
    assert line == (
        f"error: another storyreasoning process (pid {holder.pid}) is writing to {out}; "
        "wait for it or choose another --out"
    )
    assert not out.exists()  # nothing was written; the folder made for the lock is gone with it


# -- the chat writer -------------------------------------------------------------------------------------------


def scripted_texts(perceiver, frames: list[Path]) -> tuple[str, str, str, str, dict]:
    """A bad CoT, a good CoT (one box deliberately off), a bad story and a good story for ``frames``."""
    seen = list(perceiver.see(frames))
    sections = []
    for frame in seen:
        rows = []
        for k, person in enumerate(frame.people):
            b = person.box
            box = (
                f"{b.x1 + 5},{b.y1},{b.x2},{b.y2}"
                if (frame.number, k) == (1, 0)
                else f"{b.x1},{b.y1},{b.x2},{b.y2}"
            )
            rows.append(f"| {person.char_id} | Ines | A woman | calm | walking | hero | {box} |")
        sections.append(
            f"## Image {frame.number}\n\n### Characters\n"
            "| Character ID | Name | Description | Emotions | Actions | Narrative Function | Bounding Box |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n### Objects\n"
            "| Object ID | Description | Function | Interaction | Narrative Function | Bounding Box |\n|---|---|---|---|---|---|\n\n"
            "### Setting\n| Setting Element | Description | Mood | Time | Narrative Function |\n|---|---|---|---|---|\n"
            "| Location | A cliff | tense | dusk | place |\n\n"
        )
    narrative = (
        "## Narrative Structure\n\n| Narrative Phase | Description | Key Events | Images |\n|---|---|---|---|\n"
        + "".join(
            f"| {p} | a | b | 1 |\n"
            for p in ("Introduction", "Development", "Conflict", "Turning Point", "Conclusion")
        )
    )
    good_cot = "".join(sections) + narrative
    bad_cot = sections[0] + narrative  # one image section for three frames
    segments = []
    for frame in seen:
        ids = [p.char_id for p in frame.people]
        who = f"<gdo {ids[0]}>Ines</gdo> <gda {ids[0]}>walks</gda> on." if ids else "The sea roars."
        segments.append(f"<gdi image{frame.number}>\n{who}\n</gdi>")
    good_story = "\n".join(segments)
    bad_story = segments[0]
    first = seen[0].people[0]
    return bad_cot, good_cot, bad_story, good_story, {"id": first.char_id, "box": first.box}


def test_the_chat_writer_is_told_what_was_wrong_until_it_passes(raw, tmp_path, perceiver):
    frames = frame_files(raw / "lighthouse")
    bad_cot, good_cot, bad_story, good_story, first = scripted_texts(perceiver, frames)
    script = [bad_cot, "<think>checking the boxes</think>\n" + good_cot, bad_story, good_story]
    with FakeServer(script=script, chunk=500) as server:
        writer = ChatWriter(
            OpenAITeller(server.url, retries=0), sampling=Sampling(0.7, 0.9, 2048, None), max_tries=3
        )
        stories, _ = find_stories(raw / "lighthouse")
        report = build_dataset(stories, tmp_path / "built", perceiver=perceiver, writer=writer)
        requests = [r["body"] for r in server.chat_requests()]
    assert report.built == 1 and not report.failed
    assert len(requests) == 4
    # the CoT request: the system prompt, each frame as an image with its entities, a closing request
    first_request = requests[0]["messages"]
    assert first_request[0]["role"] == "system" and "## Image 1" in first_request[0]["content"]
    frame_parts = [m for m in first_request if m["role"] == "user" and isinstance(m["content"], list)]
    assert len(frame_parts) == 3 and frame_parts[0]["content"][0]["image_url"]["url"].startswith(
        "data:image/png;base64,"
    )
    assert f"- {first['id']} (person" in frame_parts[0]["content"][1]["text"]
    # the second CoT request carries the first answer and what was wrong with it
    feedback = requests[1]["messages"][-1]["content"]
    assert requests[1]["messages"][-2] == {"role": "assistant", "content": bad_cot}
    assert "image sections [1]" in feedback and "1 to 3" in feedback
    # the story request holds the corrected CoT; its retry names the missing segments
    assert "## Image 3" in requests[2]["messages"][1]["content"][0]["text"]
    assert "the story has 1 <gdi> segments for 3 images" in requests[3]["messages"][-1]["content"]
    (sample,) = list(load_stories(str(tmp_path / "built")))
    build = sample.meta["build"]
    assert build["attempts"] == {"cot": 2, "story": 2} and build["writer"] == "chat"
    assert len(build["boxes_restored"]) == 1 and first["id"] in build["boxes_restored"][0]
    assert sample.cot.image(1).characters[0].box == first["box"]  # the detector's box, not the model's
    assert "checking the boxes" not in sample.cot_text  # the reasoning is not part of the CoT
    assert sample.story_text.strip() == good_story


def test_the_chat_writer_may_not_invent_a_person_perception_did_not_see(raw, tmp_path, perceiver):
    """A char id the detector did not give in that frame would be a box nothing grounded and an identity
    nothing re-identified: the CoT is sent back naming it, and the kept CoT has only perceived people."""
    frames = frame_files(raw / "lighthouse")
    _, good_cot, _, good_story, _ = scripted_texts(perceiver, frames)
    # image 2's Characters table gains a person no one detected, with the model's own box
    head, _, tail = good_cot.partition("## Image 2")
    end = tail.index("\n\n### Objects")
    row = "| char9 | Ghost | A man who is not there | calm | waiting | extra | 10,10,60,90 |"
    invented = f"{head}## Image 2{tail[:end]}\n{row}{tail[end:]}"
    with FakeServer(script=[invented, good_cot, good_story]) as server:
        writer = ChatWriter(OpenAITeller(server.url, retries=0), sampling=Sampling(), max_tries=2)
        stories, _ = find_stories(raw / "lighthouse")
        report = build_dataset(stories, tmp_path / "built", perceiver=perceiver, writer=writer)
        requests = [r["body"] for r in server.chat_requests()]
    assert report.built == 1 and not report.failed
    assert "Image 2: char9 was not detected in this frame" in requests[1]["messages"][-1]["content"]
    (sample,) = list(load_stories(str(tmp_path / "built")))
    assert sample.meta["build"]["attempts"]["cot"] == 2
    assert "char9" not in sample.cot_text


def test_an_id_written_twice_in_one_frame_is_sent_back(raw, tmp_path, perceiver):
    """One person, two rows: the validator only warns of it in a published output; a writer must fix it."""
    from storyreasoning.builder.writers import cot_problems

    frames = frame_files(raw / "lighthouse")
    _, good_cot, *_ = scripted_texts(perceiver, frames)
    sizes = [(640, 480)] * 3
    assert cot_problems(good_cot, sizes)[1] == []
    row = next(line for line in good_cot.splitlines() if line.startswith("| char"))
    twice = good_cot.replace(row, f"{row}\n{row}", 1)
    (problem,) = cot_problems(twice, sizes)[1]
    assert "appears twice in Image 1" in problem


def test_a_writer_that_never_passes_fails_the_story_with_the_reason(raw, tmp_path, perceiver):
    frames = frame_files(raw / "lighthouse")
    bad_cot, *_ = scripted_texts(perceiver, frames)
    with FakeServer(script=[bad_cot]) as server:
        writer = ChatWriter(OpenAITeller(server.url, retries=0), sampling=Sampling(), max_tries=2)
        stories, _ = find_stories(raw / "lighthouse")
        report = build_dataset(stories, tmp_path / "built", perceiver=perceiver, writer=writer)
        assert len(server.chat_requests()) == 2
    assert report.failed == ["lighthouse"]
    (error,) = [json.loads(line) for line in (tmp_path / "built" / "errors.jsonl").read_text().splitlines()]
    assert "still fails after 2 attempts" in error["error"] and "image sections" in error["error"]
    assert "trace" not in error  # a known failure, not a crash


def test_keep_invalid_keeps_a_chat_writers_last_answer_from_the_command_line(raw, tmp_path, perceiver):
    """``build --writer chat --keep-invalid``: the writer's own checks failed the story before the
    build could keep it; now it is kept, marked, and the writer's findings are in its meta.json."""
    frames = frame_files(raw / "lighthouse")
    bad_cot, *_ = scripted_texts(perceiver, frames)
    single = tmp_path / "one"
    shutil.copytree(raw / "lighthouse", single / "lighthouse")
    with FakeServer(script=[bad_cot] * 8) as server:
        args = ("build", str(single), "--out", str(tmp_path / "built"), "--writer", "chat", "--endpoint",
                server.url, "--max-tries", "2", "--keep-invalid", "--no-require-person", "--faces", "none")  # fmt: skip
        result = cli(*args)
    assert result.returncode == 0, result.stderr
    (sample,) = load_stories(str(tmp_path / "built"))
    build = sample.meta["build"]
    assert build.get("writer_problems") and "image sections" in " ".join(build["writer_problems"]), build


def test_an_endpoint_that_is_down_fails_before_any_story(raw, tmp_path):
    result = cli(
        "build",
        str(raw),
        "--out",
        str(tmp_path / "built"),
        "--writer",
        "chat",
        "--endpoint",
        closed_url(),
        "--retries",
        "0",
    )
    assert result.returncode == 1 and "no server at" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "built").exists()


def test_an_endpoint_that_keeps_failing_stops_the_build_after_three_stories(raw, tmp_path, perceiver):
    extra = tmp_path / "raw2" / "fourth"
    shutil.copytree(raw / "lighthouse", extra)
    stories = find_stories(raw)[0] + find_stories(tmp_path / "raw2")[0]
    with FakeServer("status", status=500) as server:
        writer = ChatWriter(OpenAITeller(server.url, retries=0), sampling=Sampling(), max_tries=1)
        with pytest.raises(
            StoryReasoningError, match="stopped after 3 stories in a row failed at the endpoint"
        ):
            build_dataset(
                stories, tmp_path / "built", perceiver=perceiver, writer=writer, require_person=False
            )
    errors = [json.loads(line) for line in (tmp_path / "built" / "errors.jsonl").read_text().splitlines()]
    assert [e["story_id"] for e in errors] == ["cat-and-coffee", "lighthouse", "pioneers"]
    assert all("internal error" in e["error"] for e in errors)


def test_cli_checks_its_options(raw, tmp_path):
    no_endpoint = cli("build", str(raw), "--out", str(tmp_path / "o"), "--writer", "chat")
    assert (
        no_endpoint.returncode == 2
        and "--endpoint" in no_endpoint.stderr
        and "Traceback" not in no_endpoint.stderr
    )
    missing = cli("build", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    first = cli("build", str(raw / "pioneers"), "--out", str(tmp_path / "t"))
    assert first.returncode == 0, first.stderr
    other = cli(
        "build",
        str(raw / "pioneers"),
        "--out",
        str(tmp_path / "t"),
        "--writer",
        "chat",
        "--endpoint",
        closed_url(),
    )
    assert other.returncode == 2 and "--writer 'template' then, 'chat' now" in other.stderr


class HalfWriter(TemplateWriter):
    """The template writer, with the story's last segment left out (a writer that is not checked)."""

    name = "half"

    def write(self, frames, images, sizes):
        written = super().write(frames, images, sizes)
        written.story = written.story.rsplit("<gdi", 1)[0].strip()
        return written


def test_invalid_stories_are_refused_unless_kept(raw, tmp_path, perceiver):
    stories, _ = find_stories(raw / "lighthouse")
    refused = build_dataset(stories, tmp_path / "strict", perceiver=perceiver, writer=HalfWriter())
    assert refused.failed == ["lighthouse"] and refused.built == 0
    (error,) = [json.loads(line) for line in (tmp_path / "strict" / "errors.jsonl").read_text().splitlines()]
    assert "not well-structured" in error["error"] and "--keep-invalid" in error["error"]
    kept = build_dataset(
        stories, tmp_path / "loose", perceiver=perceiver, writer=HalfWriter(), keep_invalid=True
    )
    assert kept.built == 1 and kept.invalid_kept == 1
    (sample,) = list(load_stories(str(tmp_path / "loose")))
    assert sample.meta["build"]["well_structured"] is False
    assert sample.meta["build"]["reasons"] == ["the story has 2 <gdi> segments for 3 images"]


@pytest.mark.slow  # heavy end-to-end run: the slow pass (.ci/run) keeps it
def test_the_chat_writer_holds_its_conversation_with_a_real_server(raw, tmp_path, perceiver, request):
    """``transformers serve`` on the tiny Qwen2.5-VL accepts every message the writer sends (system text,
    frames as data URLs, its own answers and the feedback); six random tokens never pass, so the story
    fails with the writer's reason, not with a server error."""
    from ..conftest import require_transformers
    from ..tell.servers import transformers_serve

    require_transformers()
    model = request.getfixturevalue("tiny_qwen")
    stories, _ = find_stories(raw / "lighthouse")
    with transformers_serve(model) as url:
        writer = ChatWriter(OpenAITeller(url, retries=0), sampling=Sampling(0, 1.0, 6, 0), max_tries=2)
        report = build_dataset(stories, tmp_path / "built", perceiver=perceiver, writer=writer)
    assert report.failed == ["lighthouse"]
    (error,) = [json.loads(line) for line in (tmp_path / "built" / "errors.jsonl").read_text().splitlines()]
    assert (
        error["kind"] == "StoryReasoningError"
        and "the analysis still fails after 2 attempts" in error["error"]
    )


# -- story names that are one folder on a Mac ---------------------------------------------------------------


def test_stories_that_are_one_folder_on_a_mac_are_refused_before_anything_is_built(raw, tmp_path):
    """Frames folders ``Film`` and ``film`` built two folders here, one on a Mac or Windows (the second
    replacing the first); and a build into an --out holding ``Film`` built ``film`` beside it."""
    two = tmp_path / "two"
    for story in ("Film", "film"):
        shutil.copytree(raw / "pioneers", two / story)
    out = tmp_path / "built"
    line = one_error_line(cli("build", str(two), "--out", str(out), "--no-require-person"))
    assert line == (
        f"error: cannot build into {out}: the stories 'Film' and 'film' would be one folder on file systems "
        "that ignore case or Unicode form, as macOS's and Windows' do by default; give the stories ids that "
        "differ otherwise"
    )
    assert not out.exists()
    first = cli("build", str(two / "Film"), "--out", str(out), "--no-require-person")
    assert first.returncode == 0, first.stderr
    before = sorted(p.name for p in out.iterdir())
    line = one_error_line(cli("build", str(two / "film"), "--out", str(out), "--no-require-person"))
    assert line == (
        f"error: {out} holds the story folder Film: the stories 'Film' and 'film' would be one folder on file "
        "systems that ignore case or Unicode form, as macOS's and Windows' do by default; give the stories "
        "ids that differ otherwise, or build into another --out"
    )
    assert sorted(p.name for p in out.iterdir()) == before and "film" not in before
    again = cli("build", str(two / "Film"), "--out", str(out), "--no-require-person")  # its own folder
    assert again.returncode == 0, again.stderr
