"""Names in either Unicode form: a resume finds what it built whatever form the file system lists names in.

macOS's volumes hand names back in another form than they were given (HFS+ decomposes them, NFD;
a folder copied from one keeps that form), so an input ``Café.avi`` or ``ü/01.png`` may be listed
in NFD by one run and in NFC by the next. The builder keys and compares names by their NFC form:
a resume skips what it built, reads the key frames it cut, keeps its skipped stories skipped and
settles its failures, whichever form the inputs or the build's own folders and records are in. A
folder holding one name in both forms is refused in one line (their stories would be one).

Linux keeps names as given, byte for byte, so both forms are made here: inputs renamed from one form
to the other, and a build's folder turned into what a Mac's volume holds (every name and every
recorded string in NFD).
"""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

import pytest

pytest.importorskip("cv2", reason="the builder needs OpenCV: pip install 'storyreasoning[vision]'")
pytest.importorskip("scenedetect", reason="videos need PySceneDetect: pip install 'storyreasoning[build]'")

from storyreasoning.builder.pipeline import build_dataset, find_stories
from storyreasoning.builder.video import VideoOptions
from storyreasoning.builder.writers import TemplateWriter
from storyreasoning.data import load_stories
from storyreasoning.errors import UsageError
from storyreasoning.tell.baseline import BaselineTeller

from ..conftest import one_error_line, run_cli
from .test_inputs import copy_frames, errors
from .test_video import write_video

NONE = VideoOptions(scenes="none")
FOLDER, VIDEO = "\u00fc", "Caf\u00e9.avi"  # ü and Café.avi, in NFC


def nfd(name: str) -> str:
    return unicodedata.normalize("NFD", name)


def nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


def rename_all(root: Path, form) -> None:
    """Every name under ``root`` (not ``root`` itself) in the Unicode form ``form`` gives, deepest first."""
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.name != form(path.name):
            path.rename(path.with_name(form(path.name)))


def as_a_mac_volume_holds_it(out: Path) -> None:
    """``out`` as a Mac's HFS+ volume gives it back, written there by a version that took names as they were
    listed: every file name and every string recorded in its JSON files in NFD."""

    def decomposed(value):
        if isinstance(value, str):
            return nfd(value)
        if isinstance(value, list):
            return [decomposed(v) for v in value]
        if isinstance(value, dict):
            return {nfd(k): decomposed(v) for k, v in value.items()}
        return value

    for path in out.rglob("*.json*"):
        if path.suffix == ".jsonl":
            lines = [json.dumps(decomposed(json.loads(line))) for line in path.read_text().splitlines()]
            path.write_text("".join(line + "\n" for line in lines))
        else:
            path.write_text(json.dumps(decomposed(json.loads(path.read_text(encoding="utf-8")))))
    rename_all(out, nfd)


def inputs(root: Path) -> Path:
    copy_frames("lighthouse", root / FOLDER)
    write_video(root / VIDEO, [8, 8])
    return root


def build(root: Path, out: Path, *, require_person: bool = False):
    stories, _ = find_stories(root, frames_dir=out / ".frames", video=NONE, out=out)
    report = build_dataset(
        stories, out, perceiver=BaselineTeller(), writer=TemplateWriter(), require_person=require_person
    )
    return stories, report


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("now", [nfd, nfc], ids=["nfc-then-nfd-now", "nfd-then-nfc-now"])
def test_a_resume_finds_its_stories_and_key_frames_whatever_form_the_names_are_listed_in(tmp_path, now):
    then = nfc if now is nfd else nfd
    root, out = inputs(tmp_path / "in"), tmp_path / "out"
    rename_all(root, then)
    stories, report = build(root, out)
    assert report.built == 2 and report.failed == []
    # the story ids, groups and sources are the names' NFC form, whatever form they were listed in
    assert sorted(s.story_id for s in stories) == ["Caf\u00e9-001", FOLDER]
    assert {s.group for s in stories if s.group} == {VIDEO}
    assert all(source == nfc(source) for s in stories for source in s.sources)
    index = next((out / ".frames").iterdir()) / "frames.json"
    cut = index.stat().st_mtime_ns
    before = (listing(out), listing(out / ".frames"))

    rename_all(root, now)  # the same inputs, listed in the other form
    again, report = build(root, out)
    assert (report.built, report.skipped_done, report.failed) == (0, 2, [])
    assert [s.story_id for s in again] == [s.story_id for s in stories]
    assert (listing(out), listing(out / ".frames")) == before  # nothing built or cut beside them
    assert index.stat().st_mtime_ns == cut  # the key frames read, not cut again
    assert sorted(load_stories(str(out)).ids()) == ["Caf\u00e9-001", FOLDER]


def test_a_build_copied_from_a_mac_volume_resumes_from_inputs_in_nfc(tmp_path):
    """Story folders, key frames folder and every record in NFD (a Mac's HFS+ volume); the inputs in NFC."""
    root, out = inputs(tmp_path / "in"), tmp_path / "out"
    assert build(root, out)[1].built == 2
    as_a_mac_volume_holds_it(out)
    before = (listing(out), listing(out / ".frames"))
    assert nfd(FOLDER) in before[0] and nfd(FOLDER) != FOLDER
    index = out / ".frames" / nfd("Caf\u00e9") / "frames.json"
    cut = index.stat().st_mtime_ns

    _, report = build(root, out)
    assert (report.built, report.skipped_done, report.failed) == (0, 2, [])
    assert (listing(out), listing(out / ".frames")) == before and index.stat().st_mtime_ns == cut


def test_a_story_skipped_for_want_of_a_person_stays_skipped_in_the_other_form(tmp_path):
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    write_video(root / VIDEO, [8, 8])
    _, report = build(root, out, require_person=True)  # the baseline sees no one in the video's colours
    assert (report.built, report.skipped_no_person) == (0, 1)
    recorded = (out / "skipped.jsonl").read_text()
    assert [json.loads(line)["story_id"] for line in recorded.splitlines()] == ["Caf\u00e9-001"]
    rename_all(root, nfd)
    _, report = build(root, out, require_person=True)
    assert (report.built, report.skipped_no_person) == (0, 1)
    assert (out / "skipped.jsonl").read_text() == recorded  # not perceived, nor noted, again


@pytest.mark.parametrize("now", [nfd, nfc], ids=["nfc-then-nfd-now", "nfd-then-nfc-now"])
def test_a_failure_is_settled_by_its_input_read_again_in_the_other_form(tmp_path, now):
    then = nfc if now is nfd else nfd
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    write_video(root / "a.avi", [8, 8])
    (root / then(VIDEO)).write_text("not a video\n")
    _, report = build(root, out)
    assert report.failed == [VIDEO] and [e["story_id"] for e in errors(out)] == [VIDEO]  # in NFC
    (root / then(VIDEO)).unlink()
    write_video(root / now(VIDEO), [8, 8])  # mended, and listed in the other form
    _, report = build(root, out)
    assert (report.built, report.failed) == (1, []) and not (out / "errors.jsonl").exists()


@pytest.mark.parametrize("name", [FOLDER, VIDEO])
def test_a_folder_holding_one_name_in_both_forms_is_refused_in_one_line(tmp_path, name):
    root = tmp_path / "in"
    for form in (nfc, nfd):
        if name.endswith(".avi"):
            root.mkdir(exist_ok=True)
            write_video(root / form(name), [8, 8])
        else:
            copy_frames("lighthouse", root / form(name))
    if len(os.listdir(root)) != 2:
        pytest.skip("this file system keeps one form of a name (macOS's): no two names to refuse")
    with pytest.raises(UsageError) as refused:
        find_stories(root, frames_dir=tmp_path / "out" / ".frames", video=NONE)
    first, second = sorted([nfc(name), nfd(name)])
    assert str(refused.value) == (
        f"{root} holds {first!a} and {second!a}, one name in two Unicode forms: they would be one "
        "story, and one file on macOS; rename one of them"
    )
    out = tmp_path / "out"
    line = one_error_line(run_cli("build", str(root), "--out", str(out), "--scenes", "none"))
    assert line == f"error: {refused.value}"
    assert not any(out.glob("*/story.md"))
