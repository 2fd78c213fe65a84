"""The builder reads a photo stored sideways (EXIF orientation) upright: the dataset keeps the
upright picture, so its boxes, its frame sizes and any reader of it agree."""

from __future__ import annotations

import io

from PIL import Image

from storyreasoning.builder.pipeline import read_frames
from storyreasoning.format.images import orientation


def test_frames_are_read_upright(tmp_path):
    image = Image.new("RGB", (64, 48), (20, 20, 20))
    image.paste((230, 20, 20), (0, 0, 16, 12))
    exif = Image.Exif()
    exif[0x0112] = 8  # turn 90° anticlockwise to view: the stored top-left corner ends bottom-left
    turned, plain = tmp_path / "01.jpg", tmp_path / "02.png"
    image.save(turned, format="JPEG", exif=exif.tobytes(), quality=95)
    image.save(plain, format="PNG")

    data, sizes = read_frames([turned, plain])
    assert sizes == [(48, 64), (64, 48)]
    assert data[1] == plain.read_bytes()  # an upright frame is kept byte for byte
    assert orientation(data[0]) == 1
    with Image.open(io.BytesIO(data[0])) as im:  # no reader needs to apply EXIF any more
        assert im.size == (48, 64)
        rgb = im.convert("RGB")
        assert rgb.getpixel((2, 61))[0] > 150 and rgb.getpixel((2, 2))[0] < 100
