import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storyreasoning.format import Box, check_box_in_image, parse_box, smart_resize


def codes(diags):
    return [d.code for d in diags]


@pytest.mark.parametrize(
    ("cell", "box", "expected_codes"),
    [
        ("13,69,150,239", Box(13, 69, 150, 239), []),
        (" 13 , 69 ,150, 239 ", Box(13, 69, 150, 239), []),
        ("[13, 69, 150, 239]", Box(13, 69, 150, 239), ["box-brackets"]),
        ("(13,69,150,239)", Box(13, 69, 150, 239), ["box-brackets"]),
        ("13 69 150 239", Box(13, 69, 150, 239), ["box-separators"]),
        ("13;69;150;239", Box(13, 69, 150, 239), ["box-separators"]),
        ("13.4,69.5,150.6,239", Box(13, 70, 151, 239), ["box-decimal"]),
        ("[12.5, 0.5, 100.49, 50]", Box(13, 1, 100, 50), ["box-brackets", "box-decimal"]),
        ("10px,20px,30px,40px", Box(10, 20, 30, 40), []),
    ],
)
def test_parse_box_repairs_and_reports(cell, box, expected_codes):
    parsed, diags = parse_box(cell, line=7)
    assert parsed == box
    assert codes(diags) == expected_codes
    assert all(d.line == 7 for d in diags)


@pytest.mark.parametrize(
    ("cell", "code"),
    [
        ("", "box-missing"),
        ("none", "box-missing"),
        ("N/A", "box-missing"),
        ("1,2,3", "box-unparseable"),
        ("a,b,c,d", "box-unparseable"),
        ("1,2,3,4,5", "box-unparseable"),
        ("0.1,0.2,0.5,0.9", "box-normalized"),
        ("nan,1,2,3", "box-unparseable"),
        ("x" * 300, "box-unparseable"),
    ],
)
def test_parse_box_rejects_with_a_reason(cell, code):
    parsed, diags = parse_box(cell)
    assert parsed is None
    assert code in codes(diags)


def test_inverted_and_negative_boxes_are_kept_but_flagged():
    box, diags = parse_box("150,69,13,239")
    assert box == Box(150, 69, 13, 239)
    assert "box-inverted" in codes(diags)
    assert box.ordered() == Box(13, 69, 150, 239)
    box, diags = parse_box("-5,10,20,30")
    assert box == Box(-5, 10, 20, 30)
    assert "box-negative" in codes(diags)


def test_iou():
    a = Box(0, 0, 10, 10)
    assert a.iou(a) == 1.0
    assert a.iou(Box(10, 10, 20, 20)) == 0.0  # touching corners
    assert a.iou(Box(5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert a.iou(Box(0, 0, 5, 5)) == pytest.approx(25 / 100)
    assert Box(0, 0, 0, 0).iou(Box(0, 0, 0, 0)) == 0.0  # empty union
    assert Box(5, 5, 0, 0).area == 0


def test_box_in_image_tolerance_follows_the_original_validator():
    assert check_box_in_image(Box(0, 0, 100, 100), 100, 100) == []
    assert codes(check_box_in_image(Box(0, 0, 105, 100), 100, 100)) == ["box-beyond-edge"]
    assert codes(check_box_in_image(Box(0, 0, 110, 110), 100, 100)) == ["box-beyond-edge"]
    assert codes(check_box_in_image(Box(0, 0, 111, 100), 100, 100)) == ["box-out-of-image"]
    assert codes(check_box_in_image(Box(100, 0, 105, 10), 100, 100)) == ["box-out-of-image"]


def test_clip():
    assert Box(-5, -5, 120, 90).clip(100, 80) == Box(0, 0, 100, 80)


@given(
    st.integers(1, 4000),
    st.integers(1, 4000),
    st.data(),
)
def test_normalized_round_trip_is_exact(width, height, data):
    x1 = data.draw(st.integers(0, width))
    x2 = data.draw(st.integers(0, width))
    y1 = data.draw(st.integers(0, height))
    y2 = data.draw(st.integers(0, height))
    box = Box(x1, y1, x2, y2)
    norm = box.to_normalized(width, height)
    assert all(0.0 <= v <= 1.0 for v in norm)
    assert Box.from_normalized(norm, width, height) == box


def test_xywh_matches_the_evaluation_convention():
    x, y, w, h = Box(13, 69, 150, 239).to_xywh_normalized(430, 240)
    assert (x, y) == (13 / 430, 69 / 240)
    assert w == pytest.approx(137 / 430)
    assert h == pytest.approx(170 / 240)


def test_sizes_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        Box(0, 0, 1, 1).to_normalized(0, 10)
    with pytest.raises(ValueError, match="positive"):
        smart_resize(0, 10)
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 2500)


@pytest.mark.parametrize(
    ("height", "width", "expected"),
    [
        # 240/28 = 8.57 -> 9, 430/28 = 15.36 -> 15: inside the pixel budget, just rounded
        (240, 430, (252, 420)),
        # 1092 x 1932 is over 1,003,520 pixels: beta = sqrt(1080*1920/1003520) = 1.4375,
        # floor(1080/1.4375/28) = 26, floor(1920/1.4375/28) = 47
        (1080, 1920, (728, 1316)),
        # 28 x 28 is under min_pixels 3136: beta = sqrt(3136/400) = 2.8, ceil(20*2.8/28) = 2
        (20, 20, (56, 56)),
    ],
)
def test_smart_resize_examples(height, width, expected):
    assert smart_resize(height, width) == expected


@given(st.integers(28, 3000), st.integers(28, 3000))
def test_smart_resize_invariants(height, width):
    h, w = smart_resize(height, width)
    assert h % 28 == 0 and w % 28 == 0
    assert h * w <= 28 * 28 * 1280
    assert h * w >= 56 * 56
    # aspect ratio kept within the rounding of one factor per side
    assert abs(h / w - height / width) <= 28 / min(h, w) * (1 + height / width) + 1e-9


def test_model_space_round_trips():
    # A large frame is downscaled: model -> original -> model is exact.
    width, height = 3000, 2000
    rh, rw = smart_resize(height, width)
    assert rh < height and rw < width
    for box in (Box(0, 0, rw, rh), Box(17, 33, 401, 257), Box(rw - 1, rh - 1, rw, rh)):
        original = box.from_model_space(width, height)
        assert original.to_model_space(width, height) == box
    # A small frame is upscaled (min_pixels): original -> model -> original is exact.
    width, height = 40, 30
    rh, rw = smart_resize(height, width)
    assert rh > height and rw > width
    for box in (Box(0, 0, 40, 30), Box(3, 4, 17, 29), Box(39, 29, 40, 30)):
        assert box.to_model_space(width, height).from_model_space(width, height) == box


@given(st.integers(100, 4000), st.integers(100, 4000), st.data())
def test_model_space_error_is_at_most_half_a_coarse_pixel(width, height, data):
    if max(width, height) / min(width, height) > 200:
        return
    rh, rw = smart_resize(height, width)
    box = Box(
        data.draw(st.integers(0, width // 2)),
        data.draw(st.integers(0, height // 2)),
        data.draw(st.integers(width // 2, width)),
        data.draw(st.integers(height // 2, height)),
    )
    back = box.to_model_space(width, height).from_model_space(width, height)
    sx, sy = width / rw, height / rh
    tol_x = math.ceil(max(sx, 1) / 2) + 1
    tol_y = math.ceil(max(sy, 1) / 2) + 1
    assert abs(back.x1 - box.x1) <= tol_x and abs(back.x2 - box.x2) <= tol_x
    assert abs(back.y1 - box.y1) <= tol_y and abs(back.y2 - box.y2) <= tol_y


def test_rescale_uses_exact_integer_rounding():
    # 1.5 -> 2 (half up), never banker's rounding or float error
    assert Box(1, 1, 3, 3).rescale((2, 2), (3, 3)) == Box(2, 2, 5, 5)
    assert str(Box(1, 2, 3, 4)) == "1,2,3,4"
    assert Box(1, 2, 3, 4).to_list() == [1, 2, 3, 4]
