"""Story folder names: any script's letters kept, nothing unsafe, never too long, distinct or refused."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import pytest

from storyreasoning.data import StorySample, load_stories, write_folders
from storyreasoning.data.folder import (
    folder_name,
    folding_clash,
    frame_files,
    story_folder,
    write_story_folder,
)
from storyreasoning.errors import UsageError

from ..conftest import one_error_line, run_cli
from .fixtures import fixture_samples

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "stories"


def renamed(sample: StorySample, story_id: str) -> StorySample:
    return StorySample(story_id, sample.frames, sample.cot_text, sample.story_text, sample.frame_meta)


@pytest.mark.parametrize(
    ("story_id", "name"),
    [
        ("日本", "日本"),
        ("中国", "中国"),
        ("Ελληνικά", "Ελληνικά"),
        ("हिन्दी", "हिन्दी"),  # its vowel signs and virama are marks, not letters: kept
        ("می\u200cخواهم", "می\u200cخواهم"),  # a Persian word's zero-width non-joiner
        ("café au lait", "café_au_lait"),
        ("story one", "story_one"),
        ("a__b", "a__b"),
        ("../../etc", "etc"),
        ("..", "story"),
        (".hidden", "hidden"),
        ("a/b\\c", "a_b_c"),
        ("tab\tnew\nline\x00", "tab_new_line"),
        ("\u202eevil\u2066", "evil"),  # bidirectional overrides: never in a name
        ("x\uff0f\u2215y", "x_y"),  # slashes of other scripts
        ("😀", "story"),
        ("\udce9t\udce9", "t"),  # bytes that were not UTF-8 (surrogate escapes)
    ],
)
def test_a_folder_name_keeps_letters_of_any_script_and_nothing_unsafe(story_id, name):
    assert folder_name(story_id) == name


def test_an_ascii_id_keeps_the_folder_name_it_had():
    """Datasets written before are found again: ASCII ids map as the ASCII-only rule mapped them."""
    old = re.compile(r"[^A-Za-z0-9._-]+")
    chars = "abcXYZ019._- /\\:*?\"<>|\t~!@#$%^&()[]{}'`+=,;"
    rng = random.Random(7)
    for _ in range(2000):
        story_id = "".join(rng.choice(chars) for _ in range(rng.randint(0, 12)))
        assert folder_name(story_id) == (old.sub("_", story_id).strip("._") or "story"), story_id


@pytest.mark.parametrize(("unit", "limit"), [("a", 255), ("日", 246), ("é", 246), ("😀a", 255)])
def test_a_long_name_is_cut_on_a_character_and_stays_distinct(unit, limit):
    one, two = unit * 300 + "1", unit * 300 + "2"
    names = folder_name(one), folder_name(two)
    assert names[0] != names[1]
    for name in names:
        assert len(name.encode("utf-8")) <= limit
        assert re.fullmatch(r".+-[0-9a-f]{8}", name)
        name.encode("utf-8").decode("utf-8")  # whole characters
    assert folder_name("日" * 82) == "日" * 82  # 246 bytes: whole


def test_unicode_and_long_stories_are_written_and_read_back(tmp_path):
    base = fixture_samples(1)[0]
    ids = ["日本", "中国", "café", "日" * 200, "日" * 200 + "x", "é" * 130]
    write_folders([renamed(base, i) for i in ids], tmp_path / "out")
    names = sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir())
    assert names == sorted(folder_name(i) for i in ids) and {"日本", "中国", "café"} <= set(names)
    assert sorted(load_stories(str(tmp_path / "out")).ids()) == sorted(ids)
    # a name that changed keeps its story's id in meta.json; one that did not needs none
    long = tmp_path / "out" / folder_name("日" * 200)
    assert json.loads((long / "meta.json").read_text(encoding="utf-8"))["story_id"] == "日" * 200
    assert not (tmp_path / "out" / "日本" / "meta.json").exists()


def test_ids_that_give_one_name_are_still_refused(tmp_path):
    base = fixture_samples(1)[0]
    with pytest.raises(UsageError, match="two stories map to the folder"):
        write_folders([renamed(base, "日本 語"), renamed(base, "日本/語")], tmp_path / "out")


def test_a_story_written_under_its_old_ascii_name_is_found(tmp_path):
    """A build begun before names kept other scripts' letters wrote ``café`` to ``caf``."""
    base = fixture_samples(1)[0]
    old = write_story_folder(renamed(base, "café"), tmp_path).rename(tmp_path / "caf")
    (old / "meta.json").write_text('{"story_id": "café"}', encoding="utf-8")  # as that version wrote it
    assert story_folder(tmp_path, "café") == tmp_path / "caf"
    assert story_folder(tmp_path, "cafë") == tmp_path / "cafë"  # not its story: the new name
    assert story_folder(tmp_path, "caf") == tmp_path / "caf"
    assert story_folder(tmp_path, "日本") == tmp_path / "日本"


def test_stories_in_non_latin_folders_are_built(tmp_path):
    """The build refused: both folders became ``story`` (the stories 中国 and 日本 would share it)."""
    pytest.importorskip("cv2", reason="the builder's perception needs OpenCV")
    raw = tmp_path / "raw"
    for story in ("日本", "中国", "story one"):
        (raw / story).mkdir(parents=True)
        for frame in frame_files(EXAMPLES / "lighthouse"):
            shutil.copy(frame, raw / story / frame.name)
    result = run_cli("build", str(raw), "-o", str(tmp_path / "out"), "--no-require-person")
    assert result.returncode == 0, result.stderr
    assert "built 3 stories" in result.stdout + result.stderr
    assert {"日本", "中国", "story_one"} <= {p.name for p in (tmp_path / "out").iterdir()}
    assert sorted(load_stories(str(tmp_path / "out")).ids()) == sorted(["日本", "中国", "story one"])


def test_a_folder_output_of_the_version_before_keeps_its_story_under_its_old_name(tmp_path):
    """``--to folder`` output written when ``café`` was named ``caf``: the same stories again keep it
    there (not refused as another conversion's folder, nor written twice); changed, it moves to ``café``."""
    from storyreasoning.data import SampleList

    samples = [renamed(s, sid) for s, sid in zip(fixture_samples(2), ("café", "plain"), strict=True)]
    write_folders(SampleList(samples), tmp_path / "out")
    old = (tmp_path / "out" / "café").rename(tmp_path / "out" / "caf")  # as the version before named it
    (old / "meta.json").write_text('{"story_id": "café"}', encoding="utf-8")  # and said whose it is
    write_folders(SampleList(samples), tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == [
        "caf",
        "plain",
    ]
    assert sorted(load_stories(str(tmp_path / "out")).ids()) == ["café", "plain"]
    first = samples[0]
    changed = [
        StorySample(first.story_id, first.frames, first.cot_text, first.story_text + " More."),
        samples[1],
    ]
    write_folders(SampleList(changed), tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == [
        "café",
        "plain",
    ]


# -- names one folder where the file system ignores case or Unicode form (macOS, Windows) ------------------


def test_names_that_fold_to_one_are_found_in_one_pass():
    nfd = "cafe\u0301"
    assert folding_clash(["Film", "x", "film"]) == ("Film", "film")
    assert folding_clash(["café", nfd]) == ("café", nfd)
    assert folding_clash(["a", "b"], ["B", "c", "a"]) == ("B", "b")  # one already there, then the new one
    assert folding_clash(["Film", "b"], ["Film", "a"]) is None  # its own folder; another story's
    assert folder_name("Casablanca-001") == "Casablanca-001"  # an ordinary name keeps its case


def test_ids_that_are_one_folder_on_a_mac_are_refused_before_anything_is_written(tmp_path):
    """``Film`` and ``film`` were two folders here and one on a Mac or Windows: the second replaced the first."""
    base = fixture_samples(1)[0]
    source = tmp_path / "source"
    for folder, story_id in (("one", "Film"), ("two", "film")):
        write_story_folder(renamed(base, folder), source)
        (source / folder / "meta.json").write_text(json.dumps({"story_id": story_id}), encoding="utf-8")
    out = tmp_path / "out"
    line = one_error_line(run_cli("data", "convert", str(source), str(out), "--to", "folder"))
    assert line == (
        f"error: cannot write {out}: the stories 'Film' and 'film' would be one folder on file systems that "
        "ignore case or Unicode form, as macOS's and Windows' do by default; give the stories ids that "
        "differ otherwise"
    )
    assert not out.exists()
    # NFC and NFD café: one folder on a Mac; shown escaped, else the two would look alike
    with pytest.raises(UsageError, match=r"the stories 'caf\\xe9' and 'cafe\\u0301' would be one folder"):
        write_folders([renamed(base, "café"), renamed(base, "cafe\u0301")], out)
    assert not out.exists()


def test_a_story_that_is_one_folder_with_another_already_written_is_refused(tmp_path):
    from storyreasoning.data import SampleList

    first, second = fixture_samples(2)
    out = tmp_path / "out"
    write_folders(SampleList([renamed(first, "Film")]), out)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(UsageError) as refused:
        write_folders(SampleList([renamed(second, "film")]), out)
    assert str(refused.value) == (
        f"{out} holds the story folder Film: the stories 'Film' and 'film' would be one folder on file "
        "systems that ignore case or Unicode form, as macOS's and Windows' do by default; give the stories "
        "ids that differ otherwise, or pass --overwrite to replace the story folders"
    )
    assert sorted(p.name for p in out.iterdir()) == before
    assert load_stories(str(out)).ids() == ["Film"]
    write_folders(SampleList([renamed(second, "film")]), out, overwrite=True)  # the old story goes first
    assert load_stories(str(out)).ids() == ["film"]


# -- names Windows keeps for devices ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("story_id", "name"),
    [
        ("CON", "_CON"),
        ("nul", "_nul"),
        ("Aux.1", "_Aux.1"),  # before an extension too: AUX.1 is the device on Windows
        ("nul.tar.gz", "_nul.tar.gz"),
        ("COM1", "_COM1"),
        ("lpt\u00b9", "_lpt\u00b9"),  # superscript digits are ports too
        (" prn ", "_prn"),  # trailing spaces and dots never reach a name: the device it would be
        ("aux_", "_aux"),
        ("CONSOLE", "CONSOLE"),  # not a device: kept
        ("COM10", "COM10"),
        ("a.CON", "a.CON"),
        ("CONIN$", "CONIN"),
    ],
)
def test_a_windows_device_name_is_never_a_folder_name(story_id, name):
    assert folder_name(story_id) == name


def test_stories_named_like_windows_devices_are_written_read_and_found_again(tmp_path):
    """``CON`` cannot be a folder on Windows: a dataset written here with it could not be unpacked there.
    Its folder is ``_CON`` (no other id's name begins with ``_``), with the id in meta.json; one an
    earlier version wrote as ``CON`` is still found (not written twice, nor refused as another's)."""
    from storyreasoning.data import SampleList

    samples = [
        renamed(s, sid) for s, sid in zip(fixture_samples(3), ("CON", "nul.txt", "plain"), strict=True)
    ]
    out = tmp_path / "out"
    write_folders(SampleList(samples), out)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "_CON",
        "_nul.txt",
        "plain",
    ]
    assert json.loads((out / "_CON" / "meta.json").read_text(encoding="utf-8"))["story_id"] == "CON"
    assert sorted(load_stories(str(out)).ids()) == ["CON", "nul.txt", "plain"]
    # as the version before wrote it: CON/, no meta.json (its name was its id)
    (out / "_CON").rename(out / "CON")
    (out / "CON" / "meta.json").unlink()
    assert story_folder(out, "CON") == out / "CON"
    write_folders(SampleList(samples), out)  # the same stories again: kept where they are
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["CON", "_nul.txt", "plain"]
    assert sorted(load_stories(str(out)).ids()) == ["CON", "nul.txt", "plain"]
    assert story_folder(out, "con") == out / "_con"  # another story: its own name
