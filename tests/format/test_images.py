"""Unreadable images are named, and said why, in words (never PIL's in-memory buffer); 16-bit and
float pictures are read as their picture; a picture over PIL's limit on pixels is said to be one."""

from __future__ import annotations

import base64
import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from storyreasoning.errors import UsageError
from storyreasoning.format.images import image_data_url, image_size, open_image, rgb_image, upright_bytes


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"hello world\n", "it holds text, not an image"),
        (b"\x00\x01\x02\x03" * 20, "not an image format PIL can read"),
        (b"", "the file is empty"),
    ],
)
def test_a_file_that_is_not_an_image_is_named(tmp_path, content, why):
    path = tmp_path / "frame2.jpg"
    path.write_bytes(content)
    for read in (image_size, open_image):
        with pytest.raises(UsageError) as caught:
            read(path)
        message = str(caught.value)
        assert message.startswith(f"{path} is not a readable image ({why})"), message
        assert "BytesIO" not in message and "0x" not in message
        assert "replace it with a PNG or JPEG file" in message


def test_a_truncated_image_is_named_as_damaged(tmp_path):
    path = tmp_path / "03.png"
    path.write_bytes(png_bytes()[:60])
    with pytest.raises(UsageError) as caught:
        open_image(path)
    assert str(caught.value).startswith(f"{path} is not a readable image (damaged or truncated")
    assert "BytesIO" not in str(caught.value)


def test_bytes_carry_the_name_they_are_given():
    with pytest.raises(UsageError, match=r"^story 7, frame 2 is not a readable image \(it holds text"):
        image_size(b"<html>not a frame</html>", name="story 7, frame 2")
    assert image_size(png_bytes(), name="ignored") == (64, 48)


# -- pixels deeper than 8 bits: scaled, not clipped -----------------------------------------------------

FACES = Path(__file__).resolve().parents[1] / "builder" / "data" / "faces"


def grey_photo() -> np.ndarray:
    """A real photo's 8-bit grey pixels (a face, for the person detector)."""
    with Image.open(FACES / "obama-1.jpg") as im:
        return np.asarray(im.convert("L"))


def png16(grey: np.ndarray) -> bytes:
    """``grey`` as a 16-bit grey PNG, each value times 257 (as a camera or a scanner writes 8 bits in 16)."""
    buf = io.BytesIO()
    Image.fromarray(grey.astype(np.uint16) * 257).save(buf, format="PNG")
    data = buf.getvalue()
    assert data[24:26] == b"\x10\x00"  # PIL wrote a 16-bit grey PNG indeed
    return data


def test_a_16_bit_grey_png_is_read_as_its_picture_not_a_white_frame(tmp_path):
    grey = grey_photo()
    path = tmp_path / "01.png"
    path.write_bytes(png16(grey))
    for read in (open_image(path), open_image(path.read_bytes()), open_image(Image.open(path))):
        assert read.mode == "RGB" and read.size == (grey.shape[1], grey.shape[0])
        pixels = np.asarray(read)
        assert (pixels == grey[:, :, None]).all()  # exactly the 8-bit photo (v × 257 / 257)


def test_a_16_bit_pil_image_one_is_handed_is_made_rgb_as_its_picture(tmp_path):
    """What the builder's and the baseline's own conversions use: never PIL's clipping to white."""
    grey = grey_photo()
    path = tmp_path / "01.png"
    path.write_bytes(png16(grey))
    with Image.open(path) as deep:
        assert deep.mode.startswith("I")
        rgb = rgb_image(deep)
    assert rgb.mode == "RGB" and (np.asarray(rgb) == grey[:, :, None]).all()
    plain = Image.new("RGB", (4, 3), (9, 8, 7))
    assert rgb_image(plain) is plain


def test_a_16_bit_grey_png_is_sent_and_kept_as_the_8_bit_picture(tmp_path):
    """A model server (and a dataset's reader) converts with PIL's clipping: it gets 8-bit bytes."""
    grey = grey_photo()
    data = png16(grey)
    sent = upright_bytes(data)
    assert sent != data and sent[24:26] == b"\x08\x00"  # an 8-bit grey PNG
    with Image.open(io.BytesIO(sent)) as im:  # what a server does with it: convert("RGB")
        assert (np.asarray(im.convert("RGB")) == grey[:, :, None]).all()
    url = image_data_url(data)
    assert url.startswith("data:image/png;base64,") and base64.b64decode(url.split(",", 1)[1]) == sent
    plain = png_bytes()
    assert upright_bytes(plain) is plain  # an 8-bit PNG is still sent byte for byte


def test_a_16_bit_grey_frame_shows_the_person_in_it():
    """What the build saw: no person in a 16-bit photo of a face (its frame read all white)."""
    pytest.importorskip("cv2", reason="the baseline's detector needs OpenCV")
    from storyreasoning.tell.baseline import BaselineTeller

    (frame,) = BaselineTeller().see([png16(grey_photo())])
    assert frame.people and 0.2 < frame.brightness < 0.5


@pytest.mark.parametrize(
    ("mode", "values", "expected"),
    [
        ("I", [0, 100, 255], [0, 100, 255]),  # 8-bit values in 32: as PIL reads them
        ("I", [0, 257 * 100, 65535], [0, 100, 255]),  # 16-bit values in 32: divided by 257
        ("I", [-1000, 0, 99000], [0, 3, 255]),  # no usual scale holds them: lowest to highest
        ("F", [0.0, 0.5, 1.0], [0, 128, 255]),  # floats of 0..1
        ("F", [0.0, 100.0, 255.0], [0, 100, 255]),
        ("F", [-1.0, 0.0, 3.0], [0, 64, 255]),
        ("I;16", [0, 257 * 100, 65535], [0, 100, 255]),
    ],
)
def test_a_32_bit_or_float_picture_is_scaled_to_8_bits(mode, values, expected):
    dtype = {"I": np.int32, "F": np.float32, "I;16": np.uint16}[mode]
    image = Image.fromarray(np.array([values], dtype=dtype))
    assert image.mode == mode
    assert np.asarray(open_image(image))[0, :, 0].tolist() == expected


def png_header(width: int, height: int) -> bytes:
    """A PNG saying it is ``width`` × ``height`` (its few pixels cut short: PIL judges the size first)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    head = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + head + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_an_image_over_the_pixel_limit_is_said_too_large_not_damaged(tmp_path):
    path = tmp_path / "02.png"
    path.write_bytes(png_header(14000, 13000))
    for read in (image_size, open_image):
        with pytest.raises(UsageError) as caught:
            read(path)
        assert str(caught.value) == (
            f"{path} is too large to read safely (182,000,000 pixels, the limit is "
            f"{2 * Image.MAX_IMAGE_PIXELS:,}); downscale it"
        )


def test_an_image_under_the_limit_is_read_without_pils_warning():
    """A 100-megapixel photo (over PIL's warning line, under its limit) is read in silence."""
    assert 10000 * 10000 > Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert image_size(png_header(10000, 10000)) == (10000, 10000)
    assert not [w for w in seen if issubclass(w.category, Image.DecompressionBombWarning)], seen
