"""Face identity in the builder: dlib's real face models on real photographs, and the logic around them.

The photographs are in ``data/faces`` (three of Barack Obama taken on different days,
one of Joe Biden; see ``data/faces/CREDITS.md``) and ``examples/stories/pioneers``
(Eileen Collins, Grace Hopper). ``face_scenes`` makes the test stories from them and
scores built stories with our identity metric.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys

import pytest

from storyreasoning.builder.crops import NEUTRAL, square_crop
from storyreasoning.builder.faces import Sighting, link, match_faces
from storyreasoning.format.box import Box

from ..conftest import run_cli
from ..format.test_images import png16
from . import face_scenes

# -- faces to person boxes ------------------------------------------------------------------------------------


def test_a_face_goes_to_the_person_box_it_lies_in():
    people = [Box(0, 0, 100, 300), Box(200, 0, 300, 300)]
    faces = [Box(230, 20, 270, 60), Box(30, 20, 70, 60), Box(500, 20, 540, 60)]  # the third is in no box
    assert match_faces(people, faces) == {0: 1, 1: 0}


def test_a_face_mostly_outside_a_box_is_not_its_face():
    assert match_faces([Box(0, 0, 100, 300)], [Box(80, 20, 140, 80)]) == {}  # a third inside
    assert match_faces([Box(0, 0, 100, 300)], [Box(60, 20, 120, 80)]) == {0: 0}  # two thirds inside


def test_overlapping_people_each_get_the_face_centred_near_their_head():
    # two people side by side whose boxes overlap: both boxes hold both faces whole
    people = [Box(0, 0, 200, 400), Box(100, 0, 300, 400)]
    faces = [Box(150, 30, 190, 70), Box(110, 30, 150, 70)]
    assert match_faces(people, faces) == {0: 1, 1: 0}
    # one box, two faces: the one near the top of its middle line wins, the other stays free
    assert match_faces([Box(0, 0, 200, 400)], [Box(150, 200, 190, 240), Box(80, 20, 120, 60)]) == {0: 1}


# -- linking ----------------------------------------------------------------------------------------------------


def vec(*values):
    np = pytest.importorskip("numpy")
    return np.array(values, dtype=float)


def same_colour(a, b) -> float:
    return 1.0 if a == b else 0.0


def ids(linked):
    return [[index for index, _, _ in frame] for frame in linked]


def test_faces_decide_over_clothes():
    ann, ben = vec(0, 0), vec(1, 0)  # 1.0 apart: two people at threshold 0.6
    frames = [
        [Sighting(ann, "black suit")],
        [Sighting(ben, "black suit")],  # dressed alike, another face: someone new
        [Sighting(vec(0.1, 0.1), "red dress")],  # another dress, Ann's face: Ann
    ]
    assert ids(link(frames, threshold=0.6, similarity=same_colour, look_threshold=0.5)) == [[0], [1], [0]]


def test_without_a_face_the_second_cue_links():
    frames = [
        [Sighting(vec(0, 0), "black suit"), Sighting(vec(1, 0), "red dress")],
        [Sighting(None, "red dress")],  # seen from behind: the dress says who
        [Sighting(None, "green coat")],  # nobody seen before
    ]
    linked = link(frames, threshold=0.6, similarity=same_colour, look_threshold=0.5)
    assert ids(linked) == [[0, 1], [1], [2]]
    assert linked[1][0] == (1, False, 1.0) and linked[2][0] == (2, True, 0.0)


def test_face_pairs_come_before_second_cue_pairs_and_a_frame_never_repeats_an_id():
    frames = [
        [Sighting(vec(0, 0), "blue")],
        # both look "blue"; only the second has Ann's face. It takes Ann, and the other is new
        [Sighting(None, "blue"), Sighting(vec(0.05, 0), "grey")],
    ]
    assert ids(link(frames, threshold=0.6, similarity=same_colour, look_threshold=0.5)) == [[0], [1, 0]]


def test_a_character_is_compared_with_the_mean_of_its_faces():
    frames = [[Sighting(vec(0, 0))], [Sighting(vec(0.5, 0))], [Sighting(vec(0.75, 0))]]
    # 0.75 is 0.5 from the mean of the first two (0.25): the same person at 0.6, though 0.75 from the first face
    assert ids(link(frames, threshold=0.6)) == [[0], [0], [0]]
    assert ids(link(frames, threshold=0.45)) == [[0], [1], [1]]


# -- crops for the embedder ----------------------------------------------------------------------------------


def test_square_crops_keep_the_box_and_mask_the_rest():
    from PIL import Image

    image = Image.new("RGB", (100, 80), (255, 0, 0))
    image.paste((0, 255, 0), (10, 10, 30, 70))  # a tall green figure
    crop = square_crop(image, Box(10, 10, 30, 70))
    assert crop.size == (60, 60)
    assert crop.getpixel((30, 30)) == (0, 255, 0)  # the box, centred
    assert crop.getpixel((5, 30)) == NEUTRAL and crop.getpixel((55, 30)) == NEUTRAL  # never the red frame
    assert square_crop(image, Box(90, 70, 130, 90)).size == (10, 10)  # clipped to the image first
    assert square_crop(image, Box(200, 200, 300, 300)).size == (2, 2)


def test_a_16_bit_grey_picture_is_cropped_as_its_picture(tmp_path):
    from PIL import Image

    np = pytest.importorskip("numpy")
    grey = np.arange(60 * 40, dtype=np.uint16).reshape(40, 60) % 251  # 0..250, 8 bits in 16
    path = tmp_path / "01.png"
    path.write_bytes(png16(grey))
    with Image.open(path) as deep:
        assert deep.mode.startswith("I")
        crop = square_crop(deep, Box(10, 5, 30, 35))
    assert (np.asarray(crop)[:, 5:25] == grey[5:35, 10:30, None]).all()  # not clipped to white


# -- the real models -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dlib_faces():
    pytest.importorskip("dlib", reason="face identity needs pip install 'storyreasoning[faces]'")
    from storyreasoning.builder.faces import DlibFaces, faces_available

    if not faces_available():
        pytest.skip("the face models are missing: pip install 'storyreasoning[faces]'")
    return DlibFaces()


def iou(a: Box, b: tuple[int, int, int, int]) -> float:
    w = min(a.x2, b[2]) - max(a.x1, b[0])
    h = min(a.y2, b[3]) - max(a.y1, b[1])
    inter = max(0, w) * max(0, h)
    return inter / ((a.x2 - a.x1) * (a.y2 - a.y1) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_the_shipped_models_find_and_tell_apart_real_faces(dlib_faces):
    from PIL import Image

    found = {}
    for name, (path, who, box) in face_scenes.SOURCES.items():
        faces = dlib_faces.find(Image.open(path))
        assert len(faces) == 1, (
            f"{name}: {[f.box for f in faces]}"
        )  # the patch on Collins's suit is not a face
        assert iou(faces[0].box, box) > 0.6, name
        assert faces[0].embedding.shape == (128,)
        found[name] = (who, faces[0].embedding)
    for (a, (who_a, va)), (b, (who_b, vb)) in itertools.combinations(found.items(), 2):
        distance = float(((va - vb) ** 2).sum() ** 0.5)
        if who_a == who_b:  # Obama's three photographs, different days, rooms and light
            assert distance < 0.5, (a, b, distance)
        else:
            assert distance > 0.65, (a, b, distance)
    info = dlib_faces.describe()
    assert info["detector"].startswith("dlib frontal") and info["min_score"] == 0.3
    assert set(info["models"]) == {
        "shape_predictor_5_face_landmarks.dat",
        "dlib_face_recognition_resnet_model_v1.dat",
    }
    assert all(len(digest) == 64 for digest in info["models"].values())


def test_a_face_in_a_16_bit_grey_photo_is_found_as_in_the_8_bit_one(dlib_faces, tmp_path):
    from PIL import Image

    np = pytest.importorskip("numpy")
    path, _, box = face_scenes.SOURCES["obama-1"]
    with Image.open(path) as im:
        grey = im.convert("L")
    deep = tmp_path / "obama-1.png"
    deep.write_bytes(png16(np.asarray(grey)))
    with Image.open(deep) as im:
        assert im.mode.startswith("I")
        (face,) = dlib_faces.find(im)  # none before: the frame was white
    (eight,) = dlib_faces.find(grey)
    assert face.box == eight.box and iou(face.box, box) > 0.6
    assert float(((face.embedding - eight.embedding) ** 2).sum()) == 0.0


def test_the_threshold_separates_the_test_faces(dlib_faces):
    """The calibration of the 0.6 threshold (see the module doc of ``builder.faces``), kept true.

    Over every face of every test frame: any two faces of one person are closer than 0.6, any two faces
    of two people farther, and each face is closer still to the mean of its person's other faces.
    """
    import numpy as np

    from storyreasoning.builder.faces import DEFAULT_THRESHOLD

    samples = []
    for frames in face_scenes.stories().values():
        for image, truths in frames:
            faces = dlib_faces.find(image)
            for truth in truths:
                fx, fy = truth.face
                hit = [f for f in faces if f.box.x1 <= fx <= f.box.x2 and f.box.y1 <= fy <= f.box.y2]
                assert hit, f"no face found for {truth.identity}"
                samples.append((truth.identity, hit[0].embedding))
    same, other = [], []
    for (a, va), (b, vb) in itertools.combinations(samples, 2):
        (same if a == b else other).append(float(np.linalg.norm(va - vb)))
    own, others = [], []
    people = sorted({who for who, _ in samples})
    for k, (who, v) in enumerate(samples):
        mates = [u for j, (w, u) in enumerate(samples) if w == who and j != k]
        own.append(float(np.linalg.norm(v - np.mean(mates, axis=0))))
        for person in people:
            if person != who:
                means = np.mean([u for w, u in samples if w == person], axis=0)
                others.append(float(np.linalg.norm(v - means)))
    print(
        f"\n{len(samples)} faces of {len(people)} people; pairs: same person <= {max(same):.3f}, "
        f"two people >= {min(other):.3f}; to a mean: own <= {max(own):.3f}, another's >= {min(others):.3f}"
    )
    assert max(same) < DEFAULT_THRESHOLD < min(other)
    assert max(own) < DEFAULT_THRESHOLD - 0.15 and min(others) > DEFAULT_THRESHOLD


def test_build_with_faces_links_one_man_across_his_photographs(dlib_faces, tmp_path):
    raw = tmp_path / "raw" / "visit"
    raw.mkdir(parents=True)
    for number, name in enumerate(("obama-1", "biden-1", "obama-2", "obama-3"), start=1):
        shutil.copy(face_scenes.SOURCES[name][0], raw / f"{number:02d}.jpg")
    out = tmp_path / "built"
    result = run_cli("build", str(raw), "--out", str(out), "--faces", "dlib")
    assert result.returncode == 0, result.stderr
    from storyreasoning.data.folder import read_story_folder

    sample = read_story_folder(out / "visit")
    assert [[c.id for c in image.characters] for image in sample.cot.images] == [
        ["char1"], ["char2"], ["char1"], ["char1"]
    ]  # fmt: skip
    faces = json.loads((out / "build.json").read_text())["entries"][0]["perceiver"]["faces"]
    assert faces["backend"] == "dlib" and faces["threshold"] == 0.6 and "colour appearance" in faces["reid"]
    settings = json.loads((out / "settings.json").read_text())
    assert settings["faces"] == "dlib" and settings["face_threshold"] == 0.6


def test_asking_for_faces_without_dlib_is_one_clear_line(tmp_path):
    """dlib made unimportable in the child (``sys.modules['dlib'] = None`` is how Python marks a module missing)."""
    pytest.importorskip("cv2")
    code = "import sys; sys.modules['dlib'] = None; from storyreasoning.cli import main; main()"
    base = [sys.executable, "-c", code, "build", str(face_scenes.PIONEERS), "--out"]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "HF_HUB_OFFLINE": "1"}
    asked = subprocess.run(
        [*base, str(tmp_path / "a"), "--faces", "dlib"], capture_output=True, text=True, env=env
    )
    assert asked.returncode == 2, asked.stderr
    assert "pip install 'storyreasoning[faces]'" in asked.stderr and "Traceback" not in asked.stderr
    assert len(asked.stderr.strip().splitlines()) == 1
    auto = subprocess.run([*base, str(tmp_path / "b")], capture_output=True, text=True, env=env)
    assert auto.returncode == 0, auto.stderr  # auto: no dlib, no faces, the colour baseline
    assert "faces" not in json.loads((tmp_path / "b" / "build.json").read_text())["entries"][0]["perceiver"]


def test_faces_none_is_the_colour_baseline(tmp_path):
    pytest.importorskip("cv2")
    out = tmp_path / "built"
    result = run_cli("build", str(face_scenes.PIONEERS), "--out", str(out), "--faces", "none")
    assert result.returncode == 0, result.stderr
    perceiver = json.loads((out / "build.json").read_text())["entries"][0]["perceiver"]
    assert "faces" not in perceiver and perceiver["baseline"] is True


# -- the identity check -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_identity_f1_with_faces_beside_the_colour_baseline(dlib_faces, tmp_path):
    """The issue's check: real photographs with known identities, built into stories, scored with our metric."""
    raw = tmp_path / "raw"
    truths = face_scenes.write_stories(raw)
    scores = {}
    for mode in ("dlib", "none"):
        out = tmp_path / mode
        result = run_cli("build", str(raw), "--out", str(out), "--faces", mode, timeout=900)
        assert result.returncode == 0, result.stderr
        scores[mode] = face_scenes.identity_scores(out, truths)
    keys = (
        "idf1_characters_micro",
        "idp_characters_micro",
        "idr_characters_micro",
        "link_precision_characters_micro",
    )
    rows = [f"{'':>8} " + " ".join(f"{k.split('_')[0]:>15}" for k in keys)]
    rows += [f"{mode:>8} " + " ".join(f"{scores[mode][k]:>15.3f}" for k in keys) for mode in scores]
    print("\n" + "\n".join(rows))
    faces, colour = scores["dlib"], scores["none"]
    assert faces["idf1_characters_micro"] >= 0.9 and faces["idf1_characters_macro"] >= 0.9
    assert faces["idf1_characters_micro"] > colour["idf1_characters_micro"]
    # the people of the test: 4, in 23 frames; every story has Obama from more than one photograph
    assert faces["stories"] == 4 and sum(len(f) for f in truths.values()) == 23


def test_faces_over_a_detector_and_its_embedder(dlib_faces, tmp_path):
    """With --detector and --embedder: faces go to the detector's person boxes, the embedder covers the rest."""
    from ..conftest import require_transformers

    require_transformers()
    from storyreasoning.builder.faces import FacePerceiver
    from storyreasoning.builder.perceive import ModelPerceiver
    from storyreasoning.testing import build_tiny_detector, build_tiny_embedder

    detector = build_tiny_detector(tmp_path / "people", labels=("person",))
    embedder = build_tiny_embedder(tmp_path / "embedder")
    base = ModelPerceiver(str(detector), embedder=str(embedder), threshold=0.0)
    perceiver = FacePerceiver(base, dlib_faces)
    embedded: list[int] = []  # crops per embed_many call (the real method does the work)
    real_embed_many = base.embed_many

    def counting_embed_many(images, detections):
        embedded.append(sum(len(frame) for frame in detections))
        return real_embed_many(images, detections)

    base.embed_many = counting_embed_many
    obama, biden = face_scenes.SOURCES["obama-1"][0], face_scenes.SOURCES["biden-1"][0]
    frames = perceiver.see([obama, biden, obama])
    # the base embeds its detections once; only people added for a face no box held are embedded again
    added = sum(1 for frame in frames for p in frame.people if p.source == "face")
    assert embedded[1:] == ([added] if added else []), embedded
    faced = [[p for p in frame.people if p.face is not None] for frame in frames]
    assert [len(people) for people in faced] == [1, 1, 1]
    assert faced[0][0].char_id == faced[2][0].char_id != faced[1][0].char_id
    for frame, (person,) in zip(frames, faced, strict=True):
        f, b = person.face, person.box  # at least half the face lies in its person's box
        inside = max(0, min(f.x2, b.x2) - max(f.x1, b.x1)) * max(0, min(f.y2, b.y2) - max(f.y1, b.y1))
        assert inside >= 0.5 * (f.x2 - f.x1) * (f.y2 - f.y1)
        ids = [p.char_id for p in frame.people]
        assert len(set(ids)) == len(ids)  # one person per character per frame
    info = perceiver.describe()
    assert info["perceiver"] == "models" and "embedder's features" in info["faces"]["reid"]
    assert info["embedder_crops"].startswith("square")
