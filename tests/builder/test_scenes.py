"""Shots grouped into scenes (by a shared face or a similar look, two back at most) and scenes cut into stories.

The rules on hand-made looks with known answers, then on the film of real photographs in
``video_scenes.py`` (two scenes: a medium shot, its reverse angle and a close-up of the
first man from another photograph; then two women on another set).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

cv2 = pytest.importorskip("cv2", reason="scenes need OpenCV: pip install 'storyreasoning[vision]'")
np = pytest.importorskip("numpy")

from storyreasoning.builder.faces import faces_available  # noqa: E402
from storyreasoning.builder.scenes import (  # noqa: E402
    Chunk,
    ShotLook,
    group_scenes,
    look_similarity,
    resolve_rule,
    signature,
    split_scene,
)
from storyreasoning.builder.video import VideoOptions, video_stories  # noqa: E402
from storyreasoning.errors import UsageError  # noqa: E402

from . import video_scenes  # noqa: E402

needs_scenedetect = pytest.mark.skipif(
    importlib.util.find_spec("scenedetect") is None,
    reason="needs PySceneDetect: pip install 'storyreasoning[build]'",
)
needs_dlib = pytest.mark.skipif(
    not faces_available(), reason="needs dlib: pip install 'storyreasoning[faces]'"
)


def solid(rgb, size=(64, 48)):
    image = np.zeros((size[1], size[0], 3), np.uint8)
    image[:] = rgb
    image[10:30, 20:40] = (255, 255, 255)  # something in the middle
    return image


def person(k: int):
    """A made-up face descriptor of person ``k``: one unit axis each, so two people lie 1.41 apart."""
    vector = np.zeros(128)
    vector[k] = 1.0
    return vector


RED, GREEN, BLUE = (200, 40, 40), (40, 180, 40), (40, 40, 200)


def look(colour, *people):
    return ShotLook(signature(solid(colour)), [person(k) for k in people])


# -- stories from a scene ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "most", "least", "expected"),
    [
        (5, 5, 2, [(0, 5, True)]),
        (7, 5, 2, [(0, 4, True), (4, 7, True)]),  # 4 + 3, not 5 + 2
        (11, 5, 2, [(0, 4, True), (4, 8, True), (8, 11, True)]),
        (1, 5, 2, [(0, 1, False)]),  # shorter than min_frames
        (6, 5, 5, [(0, 5, True), (5, 6, False)]),  # 3 + 3 would both be too short: one story of 5
        (9, 4, 4, [(0, 4, True), (4, 8, True), (8, 9, False)]),
        (10, 3, 2, [(0, 3, True), (3, 6, True), (6, 8, True), (8, 10, True)]),
        (4, 1, 2, [(0, 4, False)]),  # no story can be long enough
        (0, 5, 2, []),
    ],
)
def test_a_scene_is_cut_into_balanced_stories(count, most, least, expected):
    chunks = split_scene(count, frames_per_story=most, min_frames=least)
    assert chunks == [Chunk(*c) for c in expected]
    assert all(least <= len(c) <= most for c in chunks if c.kept)


def test_split_scene_refuses_nonsense():
    with pytest.raises(UsageError, match="at least 1"):
        split_scene(5, frames_per_story=0)


# -- grouping on hand-made looks --------------------------------------------------------------------------


def test_the_look_is_the_colours_wherever_they_are():
    image = solid(RED)
    flipped = image[::-1, ::-1].copy()
    same = look_similarity(ShotLook(signature(image)), ShotLook(signature(flipped)))
    assert same == pytest.approx(1.0)
    assert look_similarity(ShotLook(signature(image)), ShotLook(signature(solid(BLUE)))) < 0.5
    assert signature(image).sum() == pytest.approx(1.0)
    big = cv2.resize(image, (640, 480), interpolation=cv2.INTER_NEAREST)  # the size does not matter
    assert look_similarity(ShotLook(signature(image)), ShotLook(signature(big))) > 0.95


def test_visual_scenes_are_runs_of_alike_shots():
    looks = [look(RED), look(RED), look(BLUE), look(BLUE), look(GREEN)]
    grouping = group_scenes(looks, rule="visual")
    assert grouping.scenes == [1, 1, 2, 2, 3]
    assert grouping.reasons[0] == "first shot" and grouping.reasons[2] == "new scene"
    assert grouping.reasons[1].startswith("look 1.00 with shot 1")


def test_a_b_a_is_one_scene_and_two_back_is_the_whole_memory():
    a_b_a = group_scenes([look(RED), look(GREEN), look(RED), look(BLUE)], rule="visual")
    assert a_b_a.scenes == [1, 1, 1, 2]
    assert a_b_a.reasons[1:3] == ["between shots 1 and 3", "look 1.00 with shot 1"]
    three_back = group_scenes([look(RED), look(GREEN), look(BLUE), look(RED)], rule="visual")
    assert three_back.scenes == [1, 2, 3, 4]


def test_faces_join_shots_that_look_different_and_the_look_still_joins_a_dialogue():
    looks = [look(RED, 0), look(BLUE, 0), look(BLUE, 1), look(GREEN, 2), look(RED, 3, 2)]
    by_faces = group_scenes(looks, rule="faces", face_threshold=0.6)
    # 1-2: one man on two sets (a face); 2-3: two people on one set (a look, shot-reverse-shot);
    # 3-4: nothing in common; 4-5: a woman seen again on another set
    assert by_faces.scenes == [1, 1, 1, 2, 2]
    assert by_faces.reasons[1] == "face 0.00 with shot 1" and by_faces.reasons[2].startswith("look")
    assert group_scenes(looks, rule="visual").scenes == [1, 2, 2, 3, 4]  # faces are not looked at
    assert group_scenes(looks, rule="none").scenes == [1, 1, 1, 1, 1]
    near = [ShotLook(signature(solid(RED)), [person(0)]), ShotLook(signature(solid(BLUE)), [person(0) * 0.5])]
    assert group_scenes(near, rule="faces", face_threshold=0.6).scenes == [1, 1]  # 0.5 apart
    assert group_scenes(near, rule="faces", face_threshold=0.4).scenes == [1, 2]
    with pytest.raises(UsageError, match="faces, visual or none"):
        group_scenes(looks, rule="auto")


def test_the_rule_auto_follows_the_faces_option():
    assert resolve_rule("auto", "none") == "visual"
    assert resolve_rule("visual", "auto") == "visual" and resolve_rule("none") == "none"
    assert resolve_rule("auto", "auto") == ("faces" if faces_available() else "visual")
    with pytest.raises(UsageError, match="--scenes must be one of auto, faces, visual, none"):
        resolve_rule("shots")


# -- the film ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def film(tmp_path_factory):
    return video_scenes.write_film(tmp_path_factory.mktemp("film") / "film.avi")


@needs_scenedetect
def test_the_film_by_look(tmp_path, film):
    stories, _ = video_stories(film, tmp_path, VideoOptions(scenes="visual"))
    shots = json.loads((tmp_path / "film" / "frames.json").read_text())["shots"]
    assert [s["scene"] for s in shots] == video_scenes.SCENES_BY_LOOK
    assert [s["why"].split()[0] for s in shots] == ["first", "look", "new", "new", "look"]
    # the close-up is a scene of its own, too short to be a story
    assert [(s.story_id, s.scene) for s in stories] == [("film-001", 1), ("film-003", 3)]


@needs_scenedetect
@needs_dlib
def test_the_film_by_faces(tmp_path, film):
    stories, notes = video_stories(film, tmp_path, VideoOptions(scenes="faces"))
    index = json.loads((tmp_path / "film" / "frames.json").read_text())
    shots = index["shots"]
    assert [s["scene"] for s in shots] == video_scenes.SCENES_BY_FACES
    # the close-up shares Obama's face with shot 1 (another photograph), two back; Biden's shot looks like shot 1
    assert shots[2]["why"].startswith("face 0.") and shots[2]["why"].endswith("with shot 1")
    assert float(shots[2]["why"].split()[1]) <= 0.6 and shots[1]["why"].startswith("look")
    assert shots[3]["why"] == "new scene" and shots[4]["why"].startswith("look")
    assert index["settings"]["scenes"] == "faces" and index["settings"]["face_threshold"] == 0.6
    assert notes == ["film.avi: 5 key frames, 2 scenes (faces), 2 stories"]
    assert [(s.story_id, s.scene, [p.name for p in s.frames]) for s in stories] == [
        ("film-001", 1, ["00001.png", "00002.png", "00003.png"]),
        ("film-002", 2, ["00004.png", "00005.png"]),
    ]
    # a stricter face threshold loses the close-up's link: it is a scene of its own, as by look
    strict = VideoOptions(scenes="faces", face_threshold=0.3)
    video_stories(film, tmp_path / "strict", strict)
    shots = json.loads((tmp_path / "strict" / "film" / "frames.json").read_text())["shots"]
    assert [s["scene"] for s in shots] == video_scenes.SCENES_BY_LOOK


NO_DLIB = """
import sys
sys.modules["dlib"] = None
from pathlib import Path
from storyreasoning.builder.video import VideoOptions, video_stories
stories, notes = video_stories(Path(sys.argv[1]), Path(sys.argv[2]), VideoOptions(scenes=sys.argv[3]))
print(notes[-1])
"""


@needs_scenedetect
@needs_dlib
def test_auto_is_faces_with_dlib_and_visual_without(tmp_path, film):
    _, notes = video_stories(film, tmp_path / "a", VideoOptions(scenes="auto"))
    assert notes[-1].endswith("(faces), 2 stories")
    _, notes = video_stories(film, tmp_path / "b", VideoOptions(scenes="auto", faces="none"))
    assert notes[-1].endswith("(visual), 2 stories")
    run = [sys.executable, "-c", NO_DLIB, str(film), str(tmp_path / "c")]
    no_dlib = subprocess.run([*run, "auto"], capture_output=True, text=True)
    assert no_dlib.returncode == 0, no_dlib.stderr
    assert no_dlib.stdout.strip() == "film.avi: 5 key frames, 3 scenes (visual), 2 stories"
    # asked for faces without dlib: one line naming the extra, from the build command
    code = "import sys; sys.modules['dlib'] = None; from storyreasoning.cli import main; main()"
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "HF_HUB_OFFLINE": "1"}
    asked = subprocess.run(
        [sys.executable, "-c", code, "build", str(film), "--out", str(tmp_path / "d"), "--scenes", "faces"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert asked.returncode == 2 and "Traceback" not in asked.stderr
    assert asked.stderr.strip().splitlines() == [
        "error: face identity needs dlib and its face models: pip install 'storyreasoning[faces]'"
    ]
