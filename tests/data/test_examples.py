"""The bundled stories of ``examples/stories``: real frames, valid CoT and story, honest stats.

The expected numbers below were counted by hand from the files; each test also recounts
them independently (regular expressions over ``cot.md`` and ``story.md``, the frame files
on disk), so a wrong expectation and a wrong statistic both fail.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from storyreasoning.data import load_stories
from storyreasoning.format import parse_output

STORIES = Path(__file__).parents[2] / "examples" / "stories"
LIGHTHOUSE_OUTPUT = Path(__file__).parents[2] / "examples" / "outputs" / "lighthouse.txt"

# Counted by hand from each folder's frames, cot.md and story.md.
EXPECTED = {
    "cat-and-coffee": {
        "sizes": [(451, 300), (600, 400), (600, 300)],
        "characters": {"char1": [1, 3]},  # Chelsea
        "objects": {"obj1": [2, 3], "obj2": [2], "obj3": [2, 3]},
        "backgrounds": {"bg1": [1], "bg2": [2]},
        "landmarks": {},
        "character_rows": 2,
        "object_rows": 7,
        "tags": {"gdo": 10, "gda": 5, "gdl": 2},
    },
    "lighthouse": {
        "sizes": [(640, 480)] * 3,
        "characters": {"char1": [1, 2, 3], "char2": [2, 3]},  # Ines, Tomas
        "objects": {"obj1": [1, 2, 3], "obj2": [2], "obj3": [3]},
        "backgrounds": {"bg1": [3]},
        "landmarks": {"lm1": [1]},
        "character_rows": 5,
        "object_rows": 7,
        "tags": {"gdo": 11, "gda": 5, "gdl": 2},
    },
    "pioneers": {
        "sizes": [(512, 512), (512, 600), (640, 400), (480, 480)],
        "characters": {"char1": [1, 3, 4], "char2": [2, 3]},  # Eileen Collins, Grace Hopper
        "objects": {
            "obj1": [1, 3],
            "obj2": [1, 3],
            "obj3": [1, 3],
            "obj4": [2, 3],
            "obj5": [2, 3],
            "obj6": [2],
            "obj7": [4],
        },
        "backgrounds": {"bg1": [1], "bg2": [2]},
        "landmarks": {},
        "character_rows": 5,
        "object_rows": 14,
        "tags": {"gdo": 19, "gda": 6, "gdl": 2},
    },
}

_SECTION = re.compile(r"^## Image (\d+)\s*$", re.MULTILINE)
_ROW_ID = re.compile(r"^\|\s*((?:char|obj|bg|lm)\d+)\s*\|", re.MULTILINE)
_FRAME = re.compile(r"^\d+\.(?:jpg|png)$")


def recount(folder: Path) -> dict:
    """The same numbers as EXPECTED, read with regular expressions from the files alone."""
    cot = (folder / "cot.md").read_text(encoding="utf-8")
    story = (folder / "story.md").read_text(encoding="utf-8")
    cot = cot.split("## Narrative Structure")[0]
    starts = list(_SECTION.finditer(cot))
    appearances: dict[str, list[int]] = {}
    character_rows = object_rows = 0
    for i, match in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(cot)
        for entity in _ROW_ID.findall(cot[match.end() : end]):
            appearances.setdefault(entity, []).append(int(match.group(1)))
            if entity.startswith("char"):
                character_rows += 1
            else:
                object_rows += 1
    by_kind = {
        kind: {e: frames for e, frames in appearances.items() if re.fullmatch(prefix + r"\d+", e)}
        for kind, prefix in (
            ("characters", "char"),
            ("objects", "obj"),
            ("backgrounds", "bg"),
            ("landmarks", "lm"),
        )
    }
    return {
        "frames": len([p for p in folder.iterdir() if _FRAME.match(p.name)]),
        "sections": [int(m.group(1)) for m in starts],
        "segments": len(re.findall(r"<gdi image\d+>", story)),
        **by_kind,
        "character_rows": character_rows,
        "object_rows": object_rows,
        "tags": {tag: len(re.findall(rf"<{tag}\s", story)) for tag in ("gdo", "gda", "gdl")},
    }


def run_data(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "storyreasoning", "data", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"HF_HUB_OFFLINE": "1", "COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture(scope="module")
def stories():
    return {sample.story_id: sample for sample in load_stories(STORIES)}


def test_the_bundled_stories_are_the_expected_ones(stories):
    assert sorted(stories) == sorted(EXPECTED)
    assert sorted(p.name for p in STORIES.iterdir() if (p / "cot.md").is_file()) == sorted(EXPECTED)


@pytest.mark.parametrize("story_id", sorted(EXPECTED))
def test_hand_counts_match_the_files(story_id):
    expected, counted = EXPECTED[story_id], recount(STORIES / story_id)
    n = len(expected["sizes"])
    assert counted["frames"] == n
    assert counted["sections"] == list(range(1, n + 1))
    assert counted["segments"] == n
    for key in ("characters", "objects", "backgrounds", "landmarks", "character_rows", "object_rows", "tags"):
        assert counted[key] == expected[key], key


@pytest.mark.parametrize("story_id", sorted(EXPECTED))
def test_frames_decode_and_match_the_cot(stories, story_id):
    sample, expected = stories[story_id], EXPECTED[story_id]
    cot = sample.cot
    assert sample.frame_count == len(cot.images) == len(sample.story.image_segments) == len(expected["sizes"])
    for frame, image, size in zip(sample.frames, cot.images, expected["sizes"], strict=True):
        decoded = frame.open()
        decoded.load()  # decodes every pixel, not just the header
        assert decoded.size == frame.size() == size
        assert max(size) <= 640
        width, height = size
        for row in (*image.characters, *image.objects):
            box = row.box
            assert box is not None, f"{story_id} image {image.number} {row.id} has no box"
            assert 0 <= box.x1 < box.x2 <= width and 0 <= box.y1 < box.y2 <= height, (
                f"{story_id} image {image.number} {row.id} box {box} is not inside {width}x{height}"
            )


@pytest.mark.parametrize("story_id", sorted(EXPECTED))
def test_each_story_validates_without_findings(stories, story_id):
    sample = stories[story_id]
    telling = sample.telling()
    assert telling.diagnostics == []
    verdict = telling.validate(image_sizes=sample.frame_sizes())
    assert verdict.well_structured, [str(d) for d in verdict.reasons]
    assert verdict.findings == [], [str(d) for d in verdict.findings]  # not even a warning
    # every id the story uses is listed in the CoT section of the image it is told for
    for segment in sample.story.image_segments:
        listed = set(sample.cot.images[segment.image - 1].entity_ids())
        assert {eid for span in segment.spans for eid in span.ids} <= listed
    # as one model output, the `check` command's input, it is well-structured too
    output = parse_output(f"<think>\n{sample.cot_text}\n</think>\n{sample.story_text}")
    assert output.validate(image_sizes=sample.frame_sizes()).well_structured


def test_data_validate_command():
    result = run_data("validate", str(STORIES), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["stories"] == data["well_structured"] == 3
    assert data["failed"] == [] and data["reasons"] == {}


def test_data_info_numbers_equal_the_counts():
    result = run_data("info", str(STORIES), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)

    # by hand: 3 stories of 3 + 3 + 4 frames; 5 characters (Chelsea, Ines, Tomas, Eileen,
    # Grace), each in at least 2 frames, none in 5; objects 3 + 3 + 7, of which in >= 2
    # frames: cat-and-coffee 2 (cup, spoon), lighthouse 1 (lantern), pioneers 5
    hand = {
        "stories": 3,
        "frames": 10,
        "image_sections": 10,
        "character_rows": 12,
        "object_rows": 28,
        "entities": {"char": 5, "obj": 13, "bg": 5, "lm": 1},
        "char>=2": 5,
        "obj>=2": 8,
        "segments": 10,
        "tags": {"gdo": 40, "gda": 16, "gdl": 6},
    }
    counts = [recount(STORIES / name) for name in sorted(EXPECTED)]
    regex = {
        "stories": len(counts),
        "frames": sum(c["frames"] for c in counts),
        "image_sections": sum(len(c["sections"]) for c in counts),
        "character_rows": sum(c["character_rows"] for c in counts),
        "object_rows": sum(c["object_rows"] for c in counts),
        "entities": {
            kind: sum(len(c[key]) for c in counts)
            for kind, key in (
                ("char", "characters"),
                ("obj", "objects"),
                ("bg", "backgrounds"),
                ("lm", "landmarks"),
            )
        },
        "char>=2": sum(1 for c in counts for frames in c["characters"].values() if len(set(frames)) >= 2),
        "obj>=2": sum(1 for c in counts for frames in c["objects"].values() if len(set(frames)) >= 2),
        "segments": sum(c["segments"] for c in counts),
        "tags": {tag: sum(c["tags"][tag] for c in counts) for tag in ("gdo", "gda", "gdl")},
    }
    reported = {
        "stories": info["stories"],
        "frames": info["frames"],
        "image_sections": info["image_sections"],
        "character_rows": info["character_rows"],
        "object_rows": info["object_rows"],
        "entities": info["entities"],
        "char>=2": info["persistence"]["char"][">=2"]["count"],
        "obj>=2": info["persistence"]["obj"][">=2"]["count"],
        "segments": info["segments"],
        "tags": info["tags"],
    }
    assert hand == regex
    assert reported == hand
    assert info["frames_per_story"] == {"min": 3, "mean": 10 / 3, "max": 4}
    assert info["persistence"]["char"][">=5"]["count"] == info["persistence"]["obj"][">=5"]["count"] == 0
    assert info["persistence"]["char"][">=2"]["share"] == 1.0
    assert info["persistence"]["obj"][">=2"]["share"] == pytest.approx(8 / 13)
    # macro: the mean of the per-story shares 2/3 (cat-and-coffee), 1/3 (lighthouse), 5/7 (pioneers)
    assert info["persistence"]["obj"][">=2"]["macro_share"] == pytest.approx((2 / 3 + 1 / 3 + 5 / 7) / 3)


def test_lighthouse_texts_are_the_bundled_output():
    telling = parse_output(LIGHTHOUSE_OUTPUT.read_text(encoding="utf-8"))
    folder = STORIES / "lighthouse"
    assert (folder / "cot.md").read_text(encoding="utf-8").strip() == telling.cot_text.strip()
    assert (folder / "story.md").read_text(encoding="utf-8").strip() == telling.story_text.strip()


def test_lighthouse_draw_reproduces_the_frames(tmp_path):
    folder = STORIES / "lighthouse"
    result = subprocess.run(
        [sys.executable, str(folder / "draw.py"), str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in folder.glob("*.png"))
    assert names == ["01.png", "02.png", "03.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    for name in names:
        with Image.open(folder / name) as committed, Image.open(tmp_path / name) as drawn:
            assert committed.mode == drawn.mode == "RGB" and committed.size == drawn.size == (640, 480)
            assert committed.tobytes() == drawn.tobytes(), (
                f"{name} differs from what draw.py draws now; if the drawing changed on purpose, "
                "run `python examples/stories/lighthouse/draw.py` and check the boxes again"
            )


def test_pioneers_frames_show_frontal_faces_inside_the_character_boxes(stories):
    """The Haar-cascade baseline storyteller needs a detectable frontal face in every frame."""
    cv2 = pytest.importorskip("cv2")
    np = pytest.importorskip("numpy")
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_alt2.xml")
    sample = stories["pioneers"]
    for frame, image in zip(sample.frames, sample.cot.images, strict=True):
        gray = cv2.cvtColor(np.asarray(frame.open().convert("RGB")), cv2.COLOR_RGB2GRAY)
        faces = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
        assert len(faces) == len(image.characters), f"image {image.number}: {len(faces)} faces"
        for x, y, w, h in faces:
            cx, cy = x + w / 2, y + h / 2
            assert any(c.box.x1 <= cx <= c.box.x2 and c.box.y1 <= cy <= c.box.y2 for c in image.characters), (
                f"image {image.number}: face at {(x, y, w, h)} outside every character box"
            )
