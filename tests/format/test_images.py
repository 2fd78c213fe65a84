"""Unreadable images are named, and said why, in words (never PIL's in-memory buffer)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from storyreasoning.errors import UsageError
from storyreasoning.format.images import image_size, open_image


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
