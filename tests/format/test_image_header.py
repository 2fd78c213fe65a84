"""``header_size`` reads PNG and JPEG sizes without PIL, and where it answers, PIL answers the same.

Real files written by PIL (every PNG mode, interlaced, with text, transparency, an ICC
profile; JPEG baseline, progressive, grayscale, CMYK, with EXIF, ICC, comments, restart
intervals, 4:4:4 and 4:2:0), then every truncation of their headers and thousands of
single-byte changes: for each, the reader either says nothing (PIL reads the file) or
gives the size PIL's ``Image.open`` gives.
"""

from __future__ import annotations

import io
import random
import warnings

import pytest
from PIL import Image

from storyreasoning.format.images import header_size, image_size


def saved(image: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def gradient(mode: str, size: tuple[int, int]) -> Image.Image:
    base = Image.linear_gradient("L").resize(size)
    if mode == "L":
        return base
    return Image.merge(
        "RGB", (base, base.rotate(90), base.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    ).convert(mode)


def icc_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def pngs() -> dict[str, bytes]:
    from PIL import PngImagePlugin

    text = PngImagePlugin.PngInfo()
    text.add_text("Title", "frame 3")
    files = {
        "rgb": saved(gradient("RGB", (64, 48)), "PNG"),
        "rgba": saved(gradient("RGBA", (33, 17)), "PNG"),
        "gray": saved(gradient("L", (5, 300)), "PNG"),
        "gray16": saved(gradient("L", (20, 10)).convert("I;16"), "PNG"),
        "1bit": saved(gradient("L", (31, 7)).convert("1"), "PNG"),
        "palette": saved(gradient("RGB", (40, 30)).convert("P"), "PNG"),
        "palette-transparent": saved(gradient("RGB", (40, 30)).convert("P"), "PNG", transparency=0),
        "rgb-transparent": saved(gradient("RGB", (12, 12)), "PNG", transparency=(0, 0, 0)),
        "la": saved(gradient("LA", (9, 9)), "PNG"),
        "interlaced-optimized": saved(gradient("RGB", (70, 50)), "PNG", optimize=True),
        "text-dpi": saved(gradient("RGB", (16, 16)), "PNG", pnginfo=text, dpi=(300, 300)),
        "icc": saved(gradient("RGB", (16, 16)), "PNG", icc_profile=icc_profile()),
        "large": saved(Image.new("RGB", (4000, 3000)), "PNG"),
    }
    return files


def jpegs() -> dict[str, bytes]:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: header_size gives the stored size, as PIL's; image_size the upright one
    exif[0x010F] = "camera"
    rgb = gradient("RGB", (64, 48))
    return {
        "baseline": saved(rgb, "JPEG"),
        "progressive": saved(rgb, "JPEG", progressive=True),
        "optimized": saved(rgb, "JPEG", optimize=True, quality=95),
        "gray": saved(gradient("L", (17, 33)), "JPEG"),
        "cmyk": saved(rgb.convert("CMYK"), "JPEG"),
        "exif": saved(rgb, "JPEG", exif=exif.tobytes()),
        "icc": saved(rgb, "JPEG", icc_profile=icc_profile()),
        "comment": saved(rgb, "JPEG", comment=b"a lighthouse at dusk"),
        "restart": saved(rgb, "JPEG", restart_marker_blocks=1),
        "444": saved(rgb, "JPEG", subsampling=0, quality=100),
        "odd-size": saved(gradient("RGB", (1, 999)), "JPEG"),
        "no-jfif": saved(rgb, "JPEG")[:2] + saved(rgb, "JPEG")[20:],  # the APP0 segment removed
    }


def pil_size(data: bytes) -> tuple[int, int] | None:
    """PIL's size, or None when PIL cannot open the bytes (or warns that they are too large)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL's notes on EXIF tags, say
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as im:
                return im.size
        except Exception:  # any failure: PIL does not read it
            return None


def test_every_png_and_jpeg_variant_is_read_as_pil_reads_it():
    for name, data in {**pngs(), **jpegs()}.items():
        expected = pil_size(data)
        assert expected is not None, name
        got = header_size(data)
        if name in ("icc",) and data.startswith(b"\x89PNG"):
            assert got is None  # iCCP: left to PIL (its profile is decompressed there)
        else:
            assert got == expected, name
        upright = expected[::-1] if name == "exif" else expected  # orientation 6: a quarter turn
        assert image_size(data) == upright, name


def test_not_a_png_or_jpeg_is_left_to_pil():
    for data in (
        saved(gradient("RGB", (8, 8)), "GIF"),
        saved(gradient("RGB", (8, 8)), "WEBP"),
        b"",
        b"BM",
        b"hello",
    ):
        assert header_size(data) is None


def header_end(data: bytes) -> int:
    """Where the pixel data starts (IDAT's chunk, JPEG's scan marker), plus a little."""
    at = data.find(b"IDAT") if data.startswith(b"\x89PNG") else data.find(b"\xff\xda")
    assert at > 0
    return at + 16


@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_where_the_reader_answers_a_damaged_header_pil_answers_the_same(kind):
    files = pngs() if kind == "png" else jpegs()
    files.pop("large", None)
    rng = random.Random(15)
    checked = answered = 0
    for data in files.values():
        end = header_end(data)
        variants = [data[:cut] for cut in range(end)]  # every truncation of the header
        for _ in range(400):  # single bytes changed in the header
            at = rng.randrange(end)
            variants.append(data[:at] + bytes([rng.randrange(256)]) + data[at + 1 :])
        for _ in range(100):  # a byte inserted or removed
            at = rng.randrange(end)
            variants.append(data[:at] + bytes([rng.randrange(256)]) + data[at:])
            variants.append(data[:at] + data[at + 1 :])
        for variant in variants:
            got = header_size(variant)
            checked += 1
            if got is not None:
                answered += 1
                assert pil_size(variant) == got, (len(variant), got)
    assert answered >= len(files)  # not vacuous: damage past the header leaves the size readable


def test_a_size_over_pils_limit_is_left_to_pil(monkeypatch):
    data = pngs()["rgb"]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 48 - 1)
    assert header_size(data) is None
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert header_size(data) == (64, 48)


def test_reading_a_png_or_jpeg_size_imports_no_pil(tmp_path):
    """evaluate reads every frame's size in its main process: PIL's import (about 50 ms) is not paid there."""
    import subprocess
    import sys

    (tmp_path / "a.png").write_bytes(pngs()["rgb"])
    (tmp_path / "b.jpg").write_bytes(jpegs()["baseline"])
    code = (
        "import sys; from storyreasoning.format.images import image_size; "
        f"print(image_size({str(tmp_path / 'a.png')!r}), image_size({str(tmp_path / 'b.jpg')!r}), "
        "'PIL' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "(64, 48) (64, 48) False"
