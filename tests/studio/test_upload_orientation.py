"""An uploaded photo stored sideways (EXIF orientation) is kept upright: one picture for the model,
the sizes the studio reports and the page."""

from __future__ import annotations

import io

from PIL import Image

from storyreasoning.format.images import image_size, orientation
from storyreasoning.studio.uploads import UploadStore

from .test_server import call, upload


def portrait_photo() -> bytes:
    """A 64 × 48 JPEG tagged "turn 90° clockwise to view": a 48 × 64 portrait, red at the top right."""
    image = Image.new("RGB", (64, 48), (20, 20, 20))
    image.paste((230, 20, 20), (0, 0, 16, 12))  # stored top-left: shown top-right once turned
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    image.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    return buf.getvalue()


def red_corner(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB")
        w, h = rgb.size
        corners = {
            "top-left": (2, 2),
            "top-right": (w - 3, 2),
            "bottom-left": (2, h - 3),
            "bottom-right": (w - 3, h - 3),
        }
        return max(corners, key=lambda k: rgb.getpixel(corners[k])[0])


def test_the_store_keeps_a_turned_photo_upright():
    data = portrait_photo()
    store = UploadStore(max_image_bytes=1 << 20, max_total=1 << 24, max_pixels=1 << 24)
    (kept,) = store.add([("portrait.jpg", data)])
    assert (kept.width, kept.height) == (48, 64)
    assert kept.mime == "image/jpeg" and kept.data != data
    assert orientation(kept.data) == 1 and image_size(kept.data) == (48, 64)
    assert red_corner(kept.data) == "top-right"


def test_an_upright_upload_is_kept_byte_for_byte():
    buf = io.BytesIO()
    Image.new("RGB", (30, 20), (1, 2, 3)).save(buf, format="PNG")
    store = UploadStore(max_image_bytes=1 << 20, max_total=1 << 24, max_pixels=1 << 24)
    (kept,) = store.add([("plain.png", buf.getvalue())])
    assert kept.data == buf.getvalue() and (kept.width, kept.height) == (30, 20)


def test_the_api_reports_and_serves_the_upright_picture(studio_url):
    answer = upload(studio_url, [("portrait.jpg", portrait_photo(), "image/jpeg")])
    assert answer.status == 200, answer.body
    (image,) = answer.json()["images"]
    assert (image["width"], image["height"]) == (48, 64)
    served = call(studio_url + image["url"])
    assert served.headers["Content-Type"] == "image/jpeg"
    assert image_size(served.body) == (48, 64) and orientation(served.body) == 1
    assert red_corner(served.body) == "top-right"
