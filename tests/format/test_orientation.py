"""A photo's EXIF orientation is applied wherever an image is read: sizes, pixels and the bytes sent.

The reference is PIL's ``ImageOps.exif_transpose``, what transformers' and vLLM's image
loaders apply (and what a browser shows). Every orientation 1 to 8, as JPEG, PNG (an
``eXIf`` chunk) and WebP: the size :func:`image_size` gives, the pixels of
:func:`open_image`, and the bytes :func:`upright_bytes` and :func:`image_data_url` send
(turned upright, with no tag left to turn them twice). The JPEG header reader answers
without PIL and, where it answers on damaged EXIF, as PIL does.
"""

from __future__ import annotations

import base64
import io
import random
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image, ImageOps

from storyreasoning.format.images import (
    header_orientation,
    image_data_url,
    image_size,
    open_image,
    orientation,
    upright_bytes,
)


def picture() -> Image.Image:
    """64 × 48, no symmetry: a red block in the top-left corner, a green one at the bottom."""
    image = Image.new("RGB", (64, 48), (20, 20, 20))
    image.paste((230, 20, 20), (0, 0, 16, 12))
    image.paste((20, 230, 20), (40, 40, 64, 48))
    return image


def tagged(fmt: str, turn: int, **options) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = turn
    exif[0x010F] = "camera"
    buf = io.BytesIO()
    picture().save(buf, format=fmt, exif=exif.tobytes(), **options)
    return buf.getvalue()


def as_viewed(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        return ImageOps.exif_transpose(im).convert("RGB")


def close(a: Image.Image, b: Image.Image, lossy: bool) -> bool:
    if a.size != b.size:
        return False
    diff = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))
    return int(diff.max()) <= (40 if lossy else 0)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("turn", range(1, 9))
def test_every_orientation_is_read_upright(fmt, turn):
    data = tagged(fmt, turn, **({"lossless": True} if fmt == "WEBP" else {}))
    viewed = as_viewed(data)
    assert orientation(data) == turn
    assert image_size(data) == viewed.size == ((48, 64) if turn >= 5 else (64, 48))
    assert close(open_image(data), viewed, lossy=False)

    upright = upright_bytes(data)
    if turn == 1:
        assert upright is data  # sent as it is: the model sees exactly the file's pixels
    else:
        assert orientation(upright) == 1  # nothing left for a server to turn again
        with Image.open(io.BytesIO(upright)) as im:
            assert close(im.convert("RGB"), viewed, lossy=fmt == "JPEG")
        assert (Image.open(io.BytesIO(upright)).format == "JPEG") == (fmt == "JPEG")
    url = image_data_url(data)
    sent = base64.b64decode(url.split(",", 1)[1])
    assert sent == upright
    assert image_size(sent) == viewed.size


def test_a_jpeg_with_its_colour_profile_keeps_it_when_turned():
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = tagged("JPEG", 6, icc_profile=icc)
    with Image.open(io.BytesIO(upright_bytes(data))) as im:
        assert im.info.get("icc_profile") == icc
        assert im.size == (48, 64)


def test_a_pil_image_is_taken_as_its_pixels():
    with Image.open(io.BytesIO(tagged("JPEG", 6))) as im:
        im.load()
        assert image_size(im) == (64, 48)
        assert open_image(im).size == (64, 48)


def test_a_turned_jpegs_size_is_read_without_pil(tmp_path):
    path = tmp_path / "portrait.jpg"
    path.write_bytes(tagged("JPEG", 6))
    code = (
        "import sys; from storyreasoning.format.images import image_size; "
        f"print(image_size({str(path)!r}), 'PIL' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "(48, 64) False"


def test_an_orientation_only_xmp_gives_is_left_to_pil():
    """PIL reads XMP's ``tiff:Orientation`` when EXIF has none: the header reader does not guess."""
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
        b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
    )
    buf = io.BytesIO()
    picture().save(buf, format="JPEG", xmp=xmp)
    data = buf.getvalue()
    assert header_orientation(data) is None
    assert image_size(data) == as_viewed(data).size == (48, 64)


def pil_orientation(data: bytes) -> int | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(io.BytesIO(data)) as im:
                value = im.getexif().get(0x0112, 1)
        except Exception:  # PIL cannot read it: nothing to compare
            return None
    return value if value in range(2, 9) else 1


@pytest.mark.parametrize("order", ["little", "big"])
def test_where_the_header_reader_answers_damaged_exif_pil_answers_the_same(order):
    """Every truncation of the EXIF segment, single bytes changed in it, and more directory entries."""
    exif = Image.Exif()
    exif[0x010F] = "camera"
    exif[0x0112] = 8
    exif[0x0131] = "software"
    block = exif.tobytes()
    if order == "big":  # PIL writes little-endian; a camera may write Motorola order
        from PIL import TiffImagePlugin

        ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"MM")
        for tag, value in exif.items():
            ifd[tag] = value
        out = io.BytesIO()
        out.write(b"MM\x00\x2a\x00\x00\x00\x08")
        ifd.save(out)
        block = b"Exif\x00\x00" + out.getvalue()
    buf = io.BytesIO()
    picture().save(buf, format="JPEG", exif=block)
    data = buf.getvalue()
    assert header_orientation(data) == 8
    start = data.find(b"Exif\x00\x00")
    end = start + len(block)
    rng = random.Random(27 if order == "big" else 15)
    variants = []
    for _ in range(2000):  # one or two bytes changed
        for _ in range(rng.choice((1, 2))):
            at = rng.randrange(start, end)
            data_at = data if not variants or rng.random() < 0.5 else variants[-1]
        variants.append(data_at[:at] + bytes([rng.randrange(256)]) + data_at[at + 1 :])
    for at in range(start + 6, start + 40):  # the TIFF header and the directory's first entries
        for value in (0, 1, 2, 3, 5, 6, 9, 255):
            variants.append(data[:at] + bytes([value]) + data[at + 1 :])
    answered = 0
    for variant in variants:
        got = header_orientation(variant)
        if got is None:
            continue
        expected = pil_orientation(variant)
        if expected is None:
            continue  # PIL cannot open it at all: the size reader's own tests cover that
        answered += 1
        assert got == expected, variant[start : start + 48]
        with warnings.catch_warnings():  # (exif_transpose itself fails on some: it rewrites the tags)
            warnings.simplefilter("ignore")
            assert image_size(variant) == ((48, 64) if expected >= 5 else (64, 48))
    assert answered >= 500  # not vacuous


def test_a_turned_cmyk_jpeg_keeps_no_profile_its_rgb_pixels_do_not_match():
    from PIL import ImageCms

    cmyk_profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    cmyk_profile[16:20] = b"CMYK"  # the header's colour space: what a CMYK profile says there
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    picture().convert("CMYK").save(buf, format="JPEG", exif=exif.tobytes(), icc_profile=bytes(cmyk_profile))
    with Image.open(io.BytesIO(upright_bytes(buf.getvalue()))) as im:
        assert im.mode == "RGB" and im.size == (48, 64) and "icc_profile" not in im.info
