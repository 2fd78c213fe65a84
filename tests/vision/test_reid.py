"""Appearance descriptors, identity assignment and colour names on real pixels."""

from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2", reason="the vision tests need OpenCV: pip install 'storyreasoning[vision]'")

from PIL import ImageOps  # noqa: E402

from storyreasoning.vision.detect import PeopleDetector  # noqa: E402
from storyreasoning.vision.reid import (  # noqa: E402
    DEFAULT_THRESHOLD,
    Appearance,
    Gallery,
    appearance,
    colour_name,
    colour_phrase,
    colour_shares,
    hsv_histogram,
    regions,
    similarity,
)

from .photos import CROP, grace_hopper, side_by_side  # noqa: E402

HALF = 0.5


@pytest.fixture(scope="module")
def detector():
    return PeopleDetector(profile=False, people=False)


def looks(detector, image) -> list[Appearance]:
    rgb = np.ascontiguousarray(np.asarray(image))
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return [appearance(rgb, hsv, gray, p) for p in detector.detect(rgb)]


def hsv_of(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2HSV)


def patch(colour, size=(20, 20)) -> np.ndarray:
    return hsv_of(np.tile(np.array(colour, np.uint8), (*size, 1)))


def test_same_person_is_similar_across_crop_and_mirror(detector):
    photo = grace_hopper(HALF)
    crop = photo.crop(tuple(round(v * HALF) for v in CROP))
    (a,) = looks(detector, photo)
    (b,) = looks(detector, crop)
    (c,) = looks(detector, ImageOps.mirror(photo))
    assert a.head is not None and a.torso is not None and a.thumb is not None
    assert abs(a.head.sum() - 1) < 1e-9
    assert similarity(a, a) == pytest.approx(1.0)
    assert similarity(a, b) > DEFAULT_THRESHOLD
    assert similarity(a, c) > DEFAULT_THRESHOLD  # the mirrored thumbnail is compared too


def test_unlike_appearances_score_low():
    red = Appearance(hsv_histogram(patch((220, 20, 20))), hsv_histogram(patch((220, 20, 20))), None)
    blue = Appearance(hsv_histogram(patch((20, 20, 220))), hsv_histogram(patch((20, 20, 220))), None)
    assert similarity(red, blue) < 0.1
    assert similarity(red, Appearance(None, None, None)) == 0.0


def test_gallery_keeps_identities_and_never_doubles_one_in_a_frame(detector):
    pair = looks(detector, side_by_side(HALF))
    single = looks(detector, grace_hopper(HALF))
    assert len(pair) == 2 and len(single) == 1
    gallery = Gallery()
    first = gallery.assign(1, pair)
    assert [(ident, new) for ident, new, _ in first] == [(0, True), (1, True)]  # two people, two ids
    (second,) = gallery.assign(2, single)
    assert second[0] in (0, 1) and second[1] is False and second[2] > DEFAULT_THRESHOLD
    assert gallery.identities[second[0]].frames == [1, 2]
    # the same two people again: each identity used once
    third = gallery.assign(3, pair)
    assert sorted(ident for ident, _, _ in third) == [0, 1]
    assert all(not new for _, new, _ in third)


def test_gallery_starts_a_new_identity_below_the_threshold():
    red = Appearance(hsv_histogram(patch((220, 20, 20))), hsv_histogram(patch((220, 20, 20))), None)
    blue = Appearance(hsv_histogram(patch((20, 20, 220))), hsv_histogram(patch((20, 20, 220))), None)
    gallery = Gallery()
    assert gallery.assign(1, [red]) == [(0, True, 0.0)]
    assert gallery.assign(2, [blue])[0][:2] == (1, True)
    assert gallery.assign(3, [red])[0][:2] == (0, False)


def test_regions_of_a_face_person_lie_in_the_frame(detector):
    photo = grace_hopper(HALF)
    (person,) = detector.detect(np.asarray(photo))
    head, torso = regions(person, photo.width, photo.height)
    assert head is not None and torso is not None
    assert torso[1] > head[1]  # the torso is below the head
    for box in (head, torso):
        assert 0 <= box[0] < box[2] <= photo.width and 0 <= box[1] < box[3] <= photo.height


@pytest.mark.parametrize(
    ("rgb", "name"),
    [
        ((200, 30, 30), "red"),
        ((20, 30, 90), "dark blue"),
        ((240, 240, 240), "white"),
        ((10, 10, 10), "black"),
        ((128, 128, 128), "grey"),
        ((240, 150, 140), "light red"),
        ((30, 160, 40), "green"),
    ],
)
def test_colour_name_of_plain_patches(rgb, name):
    assert colour_name(patch(rgb)) == name


def test_colour_name_of_mixtures():
    half = np.concatenate([np.tile([200, 30, 30], (10, 20, 1)), np.tile([245, 245, 245], (10, 20, 1))])
    assert colour_name(hsv_of(half)) in ("red and white", "white and red")
    stripes = np.concatenate(
        [np.tile(c, (5, 20, 1)) for c in ([200, 30, 30], [30, 160, 40], [20, 30, 200], [230, 220, 40])]
    )
    assert colour_name(hsv_of(stripes)) == "multicoloured"
    assert colour_name(np.zeros((0, 5, 3), np.uint8)) is None


def test_colour_shares_and_phrase_on_the_portrait(detector):
    photo = grace_hopper(HALF)
    (person,) = detector.detect(np.asarray(photo))
    _, torso = regions(person, photo.width, photo.height)
    hsv = hsv_of(np.asarray(photo))[torso[1] : torso[3], torso[0] : torso[2]]
    shares = colour_shares(hsv)
    assert shares[0][0] == "black" and sum(share for _, share in shares) == pytest.approx(1.0)
    assert colour_name(hsv) == "black"  # her dark navy uniform reads as black to this baseline
    assert colour_phrase(hsv) == "mostly black"
    assert colour_shares(np.zeros((0, 5, 3), np.uint8)) == []
