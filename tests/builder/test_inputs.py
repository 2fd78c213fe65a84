"""What ``storyreasoning build`` reads: every kind of input in a folder, what it leaves out (said, never
silently), an input that cannot be read (failing alone, its failure settled once it is read again, even
when it gives no story), ``--limit`` (no video cut past it), and a resume that only skips a story built
from the same frames.

Inputs are real files: the examples' frames, videos written with OpenCV (``test_video.write_video``),
a file of zeros and a text file named ``.mp4``, links made with ``os.symlink``, a video made unreadable
with ``chmod 000`` (for root too: the command then runs without the capabilities that let root read
anything, as in tests/test_cli_errors.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("cv2", reason="the builder needs OpenCV: pip install 'storyreasoning[vision]'")
pytest.importorskip("scenedetect", reason="videos need PySceneDetect: pip install 'storyreasoning[build]'")

from storyreasoning.builder.pipeline import build_dataset, find_stories
from storyreasoning.builder.video import VideoOptions
from storyreasoning.builder.writers import TemplateWriter
from storyreasoning.data import load_stories
from storyreasoning.data.folder import folder_name, frame_files
from storyreasoning.errors import UsageError
from storyreasoning.tell.baseline import BaselineTeller

from ..conftest import one_error_line, run_cli
from .test_video import write_video

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "stories"
NONE = VideoOptions(scenes="none")  # solid-colour shots: each would be a scene of its own
VIDEO_OPTIONS = ("--scenes", "none", "--no-require-person")


def copy_frames(story: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for frame in frame_files(EXAMPLES / story):
        shutil.copy(frame, folder / frame.name)
    return folder


def errors(out: Path) -> list[dict]:
    path = out / "errors.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_folder_of_every_kind_builds_them_all_and_says_what_it_leaves_out(tmp_path):
    root = tmp_path / "mix"
    root.mkdir()
    write_video(root / "film.avi", [8, 8])
    copy_frames("lighthouse", root / "storyA")
    # one numbered image of the folder itself: a story of one frame, too short, but nothing else is lost
    shutil.copy(EXAMPLES / "pioneers" / "01.jpg", root / "cover1.jpg")
    shutil.copy(EXAMPLES / "pioneers" / "02.jpg", root / "storyA" / "cover.jpg")
    (root / "s2").mkdir()  # a folder of images without numbers
    shutil.copy(EXAMPLES / "pioneers" / "01.jpg", root / "s2" / "first.jpg")
    shutil.copy(EXAMPLES / "pioneers" / "02.jpg", root / "s2" / "second.jpg")
    (root / "notes.txt").write_text("not an input\n")
    (root / "storyA" / "caption.txt").write_text("not a frame\n")
    (root / ".DS_Store").write_bytes(b"hidden: passed over")

    result = run_cli("build", str(root), "--out", str(tmp_path / "out"), *VIDEO_OPTIONS)
    assert result.returncode == 0, result.stderr
    built = sorted(p.name for p in (tmp_path / "out").iterdir() if (p / "story.md").exists())
    assert built == sorted(map(folder_name, ["film-001", "storyA"]))  # the video and the story folder, both
    said = " ".join(result.stderr.split())  # the console wraps long lines
    assert "mix: 1 frames, fewer than 2; skipped" in said
    assert (
        "3 images without a number in the name left out (s2/first.jpg, s2/second.jpg, storyA/cover.jpg)"
        in said
    )
    assert "1 folder without frames left out (s2)" in said
    assert "2 files neither frames nor videos left out (notes.txt, storyA/caption.txt)" in said
    assert ".DS_Store" not in said

    stories, _ = find_stories(root, frames_dir=tmp_path / "frames", video=NONE)
    assert [(s.story_id, len(s.frames)) for s in stories] == [("mix", 1), ("film-001", 2), ("storyA", 3)]
    assert stories[0].sources == ["mix/cover1.jpg"]  # the folder's own frames: a story named after it


def test_a_video_or_a_story_folder_that_cannot_be_read_fails_alone(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "a.avi", [8, 8])
    good = write_video(tmp_path / "good.avi", [8, 8, 8])
    (videos / "broken.mp4").write_bytes(b"\0" * 3000)
    (videos / "text.mp4").write_text("hello, not a video\n")
    out = tmp_path / "out"
    result = run_cli("build", str(videos), "--out", str(out), *VIDEO_OPTIONS)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    said = " ".join(result.stderr.split())
    assert "built 1 story into" in said and "2 failed" in said
    assert f"text.mp4: cannot read the video {videos / 'text.mp4'}: OpenCV does not decode it" in said
    assert [(e["story_id"], e["kind"]) for e in errors(out)] == [
        ("broken.mp4", "StoryReasoningError"),
        ("text.mp4", "StoryReasoningError"),
    ]
    assert (out / "a-001").is_dir()
    # the video made readable, the build goes on from there and its failure is settled
    shutil.copy(good, videos / "text.mp4")
    again = run_cli("build", str(videos), "--out", str(out), *VIDEO_OPTIONS)
    assert again.returncode == 1 and "built 1 story into" in again.stderr
    assert [e["story_id"] for e in errors(out)] == ["broken.mp4"] and (out / "text-001").is_dir()

    frames = tmp_path / "frames"
    copy_frames("pioneers", frames / "s1")
    copy_frames("lighthouse", frames / "s2")
    shutil.copy(frames / "s2" / "02.png", frames / "s2" / "b1.png")  # two frames numbered 1
    out = tmp_path / "out2"
    result = run_cli("build", str(frames), "--out", str(out), "--no-require-person")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (out / "s1").is_dir() and not (out / "s2").exists()
    (error,) = errors(out)
    assert error["story_id"] == "s2" and "frames 01.png and b1.png have the same number 1" in error["error"]
    (frames / "s2" / "b1.png").unlink()
    again = run_cli("build", str(frames), "--out", str(out), "--no-require-person")
    assert again.returncode == 0, again.stderr
    assert (out / "s2").is_dir() and not (out / "errors.jsonl").exists()
    # the one input given, unreadable: nothing else to build, its error ends the build in one line
    shutil.copy(frames / "s2" / "02.png", frames / "s2" / "b1.png")
    line = one_error_line(run_cli("build", str(frames / "s2"), "--out", str(tmp_path / "out3")))
    assert "have the same number 1; rename one" in line


def test_limit_stops_reading_the_inputs(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "a.avi", [8, 8, 8, 8])
    write_video(videos / "b.avi", [8, 8])
    out = tmp_path / "out"
    options = (*VIDEO_OPTIONS, "--frames-per-story", "2")
    result = run_cli("build", str(videos), "--out", str(out), "--limit", "1", *options)
    assert result.returncode == 0, result.stderr
    assert "limit 1 reached: 1 more input not read (b.avi)" in " ".join(result.stderr.split())
    assert sorted(p.name for p in (out / ".frames").iterdir()) == ["a"]  # b.avi was not cut
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".") and p.is_dir()) == ["a-001"]
    stories, _ = find_stories(
        videos, frames_dir=out / ".frames", video=VideoOptions(scenes="none", frames_per_story=2), limit=3
    )
    assert [s.story_id for s in stories] == ["a-001", "a-002", "b-001"]  # the first 3 stories in order


def test_a_resume_skips_only_a_story_built_from_the_same_frames(tmp_path):
    first = copy_frames("lighthouse", tmp_path / "bad" / "ok")
    out = tmp_path / "out"
    perceiver, writer = BaselineTeller(), TemplateWriter()

    def build(stories):
        return build_dataset(stories, out, perceiver=perceiver, writer=writer, require_person=False)

    stories, _ = find_stories(first.parent)
    assert build(stories).built == 1
    meta = json.loads((out / "ok" / "meta.json").read_text())
    assert meta["build"]["source_bytes"] == [p.stat().st_size for p in frame_files(first)]
    assert build(stories).skipped_done == 1  # the same frames: skipped
    moved = (tmp_path / "bad").rename(tmp_path / "renamed")  # the folder given, renamed: the same frames
    assert build(find_stories(moved)[0]).skipped_done == 1
    moved.rename(tmp_path / "bad")

    other = copy_frames("pioneers", tmp_path / "other" / "ok")  # another folder, a story of the same name
    stories, _ = find_stories(other.parent)
    with pytest.raises(UsageError) as refused:
        build(stories)
    assert str(refused.value) == (
        f"{out} holds 1 of these stories built from other frames (ok frames 3 then, 4 now); "
        f"build into another --out, or remove {out / 'ok'} to build them again"
    )
    shutil.copy(EXAMPLES / "pioneers" / "01.jpg", first / "01.png")  # same names, another photo
    stories, _ = find_stories(first.parent)
    with pytest.raises(UsageError, match=r"\(ok bad/ok/01.png bytes \d+ then, \d+ now\)"):
        build(stories)
    assert json.loads((out / "ok" / "meta.json").read_text()) == meta  # nothing was touched


def test_a_link_to_itself_and_a_linked_copy_of_a_folder_are_said(tmp_path):
    root = tmp_path / "loop"
    s1 = copy_frames("lighthouse", root / "s1")
    (s1 / "03.png").unlink()
    os.symlink("03.png", s1 / "03.png")  # a link that points to itself
    os.symlink("s1", root / "a-link")  # the same folder again, sorted before it
    stories, notes = find_stories(root)
    assert [(s.story_id, [p.name for p in s.frames]) for s in stories] == [("s1", ["01.png", "02.png"])]
    assert notes == [
        "1 link to no file left out (s1/03.png): a link that points to itself or to nothing",
        "1 link to a folder or video already read left out (a-link = s1): built once",
    ]


def test_a_story_an_earlier_version_built_under_its_ascii_name_is_not_built_twice(tmp_path):
    """``café`` was built into ``caf`` before story folders kept other scripts' letters: a resume finds it
    there (one story, not two folders of one id)."""
    first = copy_frames("lighthouse", tmp_path / "in" / "café")
    out = tmp_path / "out"

    def build():
        stories, _ = find_stories(first.parent)
        return build_dataset(
            stories, out, perceiver=BaselineTeller(), writer=TemplateWriter(), require_person=False
        )

    assert build().built == 1
    old = (out / "café").rename(out / "caf")  # as the version before named it, its id in meta.json
    meta = json.loads((old / "meta.json").read_text())
    (old / "meta.json").write_text(json.dumps({**meta, "story_id": "café"}))
    assert build().skipped_done == 1
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")) == ["caf"]
    assert load_stories(str(out)).ids() == ["café"]


# -- a video this user may not read, and a failure settled by an input that gives no story --------------------

_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _PR_CAPBSET_DROP = 1, 2, 24


def _without_root_read_override() -> None:  # runs in the child, before exec: root then obeys chmod 000
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _as_user(*args: str) -> subprocess.CompletedProcess:
    """``python ARGS`` where file permissions hold, for root too (without the capabilities that let it read
    anything)."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "HF_HUB_OFFLINE": "1"}
    preexec = _without_root_read_override if os.geteuid() == 0 else None
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, preexec_fn=preexec, timeout=300
    )


def test_a_video_this_user_may_not_read_fails_alone(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "a.avi", [8, 8])
    locked = write_video(videos / "film.avi", [8, 8, 8])
    locked.chmod(0)
    try:
        try:
            probe = _as_user("-c", f"open({str(locked)!r}, 'rb')")
        except (OSError, subprocess.SubprocessError) as exc:  # no CAP_SETPCAP to drop capabilities
            pytest.skip(f"cannot make a file unreadable for the command here ({exc})")
        if "PermissionError" not in probe.stderr:
            pytest.skip("a chmod 000 file stays readable here (a file system that ignores permissions)")
        out = tmp_path / "out"
        result = _as_user("-m", "storyreasoning.cli", "build", str(videos), "--out", str(out), *VIDEO_OPTIONS)
    finally:
        locked.chmod(0o644)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    said = " ".join(result.stderr.split())
    assert "built 1 story into" in said and "1 failed" in said and (out / "a-001").is_dir()
    (error,) = errors(out)
    assert (error["story_id"], error["kind"]) == ("film.avi", "StoryReasoningError")
    assert error["error"] == (
        f"cannot read the video {locked} (permission denied); make it readable for this user (chmod, chown), "
        "or use another path"
    )
    # readable again: built, and its failure settled
    again = run_cli("build", str(videos), "--out", str(out), *VIDEO_OPTIONS)
    assert again.returncode == 0, again.stderr
    assert (out / "film-001").is_dir() and not (out / "errors.jsonl").exists()


def test_an_input_read_since_it_failed_settles_its_error_though_it_gives_no_story(tmp_path):
    """A video replaced by one of a single shot, a folder mended down to one frame: both read now, every story
    too short; their old failures are no longer unresolved."""
    root = tmp_path / "in"
    root.mkdir()
    write_video(root / "a.avi", [8, 8])
    (root / "film.mp4").write_text("hello, not a video\n")
    s2 = copy_frames("lighthouse", root / "s2")
    shutil.copy(s2 / "02.png", s2 / "b1.png")  # two frames numbered 1
    out = tmp_path / "out"

    def build():
        stories, _ = find_stories(root, min_frames=2, frames_dir=out / ".frames", video=NONE, out=out)
        return stories, build_dataset(
            stories, out, perceiver=BaselineTeller(), writer=TemplateWriter(), require_person=False
        )

    _, report = build()
    assert sorted(report.failed) == ["film.mp4", "s2"] and report.built == 1
    assert sorted(e["story_id"] for e in errors(out)) == ["film.mp4", "s2"]
    write_video(tmp_path / "one.avi", [8])  # one shot: one key frame, fewer than 2
    shutil.copy(tmp_path / "one.avi", root / "film.mp4")
    for frame in ("02.png", "03.png", "b1.png"):
        (s2 / frame).unlink()
    stories, report = build()
    assert [s.story_id for s in stories] == ["a-001"] and stories.passed == {"film.mp4", "s2"}
    assert report.failed == [] and report.skipped_done == 1
    assert not (out / "errors.jsonl").exists()


def test_a_bmp_frame_is_kept_byte_for_byte_under_its_own_suffix(tmp_path):
    """A frame of a format without a known signature (BMP) was written as ``02.png`` holding BMP bytes."""
    from PIL import Image

    story = copy_frames("pioneers", tmp_path / "raw" / "pioneers")
    second = story / "02.jpg"
    with Image.open(second) as image:
        image.save(story / "02.bmp")
    second.unlink()
    stories, _ = find_stories(tmp_path / "raw")
    out = tmp_path / "built"
    report = build_dataset(stories, out, perceiver=BaselineTeller(), writer=TemplateWriter())
    assert report.built == 1, report
    written = sorted(p.name for p in (out / "pioneers").iterdir() if p.suffix not in (".md", ".json"))
    assert written == ["01.jpg", "02.bmp", "03.jpg", "04.jpg"]
    assert (out / "pioneers" / "02.bmp").read_bytes() == (story / "02.bmp").read_bytes()
    (sample,) = load_stories(str(out))
    assert sample.frame_sizes()[1] == (512, 600)
