"""OpenCV people detection on a real photograph (Grace Hopper's portrait)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("cv2", reason="the vision tests need OpenCV: pip install 'storyreasoning[vision]'")

from PIL import ImageOps

from storyreasoning.errors import UsageError
from storyreasoning.vision import require_cv2
from storyreasoning.vision.detect import (
    PeopleDetector,
    area,
    background_region,
    clip,
    iou,
    nms,
    person_from_face,
)

from .photos import FACE_CENTRE, grace_hopper, gradient, side_by_side


@pytest.fixture(scope="module")
def detector():
    return PeopleDetector()


def contains(outer, inner) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and outer[2] >= inner[2] and outer[3] >= inner[3]


HALF = 0.5  # the portrait at half size (256x300): the same face, four times fewer pixels to scan


def test_finds_the_face_in_a_real_portrait(detector):
    rgb = np.asarray(grace_hopper(HALF))
    people = detector.detect(rgb)
    assert len(people) == 1
    person = people[0]
    assert person.source == "frontal" and person.face is not None
    x1, y1, x2, y2 = person.face
    cx, cy = FACE_CENTRE[0] * HALF, FACE_CENTRE[1] * HALF
    assert abs((x1 + x2) / 2 - cx) < 15 and abs((y1 + y2) / 2 - cy) < 15
    assert 75 < x2 - x1 < 160  # a face, not an eye or the whole portrait
    assert contains(person.box, person.face)
    assert contains((0, 0, rgb.shape[1], rgb.shape[0]), person.box)


def test_mirrored_portrait_gives_the_mirrored_face(detector):
    rgb = np.asarray(ImageOps.mirror(grace_hopper(HALF)))
    (person,) = detector.detect(rgb)
    centre = (person.face[0] + person.face[2]) / 2
    assert abs(centre - (rgb.shape[1] - FACE_CENTRE[0] * HALF)) < 15


def test_two_faces_left_to_right(detector):
    people = detector.detect(np.asarray(side_by_side(HALF)))
    assert len(people) == 2
    assert people[0].center_x < people[1].center_x
    assert people[0].face[2] <= 256 <= people[1].face[0]  # one face in each half


def test_no_one_in_a_gradient(detector):
    assert detector.detect(np.asarray(gradient())) == []


def test_coarser_scale_factor_still_finds_the_face():
    fast = PeopleDetector(scale_factor=1.2, profile=False, people=False)
    (person,) = fast.detect(np.asarray(grace_hopper(HALF)))
    assert person.source == "frontal"
    with pytest.raises(ValueError):
        PeopleDetector(scale_factor=1.0)


def test_person_box_around_a_face_is_clipped():
    assert person_from_face((10, 10, 30, 30), 100, 100) == (0, 3, 48, 100)
    box = person_from_face((100, 100, 200, 200), 1000, 2000)
    assert box == (10, 65, 290, 550) and contains(box, (100, 100, 200, 200))


def test_boxes_geometry():
    assert area((0, 0, 10, 5)) == 50 and area((5, 5, 0, 0)) == 0
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0 and iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert clip((-5.4, 2.6, 120.2, 99.5), 100, 80) == (0, 3, 100, 80)
    kept = nms([((0, 0, 10, 10), 1.0, "a"), ((1, 1, 10, 10), 2.0, "b"), ((50, 50, 60, 60), 0.5, "c")])
    assert [source for _, _, source in kept] == ["b", "c"]


def test_background_region():
    assert background_region(640, 480, []) == (0, 0, 640, 480)
    assert background_region(640, 480, [(0, 0, 200, 480)]) == (200, 0, 640, 480)  # right of the person
    assert background_region(640, 480, [(60, 0, 600, 480)]) == (0, 0, 640, 480)  # no band big enough
    assert background_region(640, 480, [(0, 300, 640, 480)]) == (0, 0, 640, 300)  # above


def test_missing_opencv_is_one_clear_usage_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # makes `import cv2` raise ImportError
    with pytest.raises(UsageError, match=r"needs OpenCV: pip install 'storyreasoning\[vision\]'"):
        require_cv2()
    with pytest.raises(UsageError, match="needs OpenCV"):
        PeopleDetector()
