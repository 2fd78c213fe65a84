"""Images as the prompts see them: opening, sizes and data URLs.

Paths, bytes and PIL images are accepted wherever an image is. Errors name the file and
what to do.

A photo's EXIF orientation (a phone's portrait picture is stored sideways, with a tag
saying how to turn it) is applied wherever an image file or its bytes are read: the size
:func:`image_size` gives, the pixels :func:`open_image` gives and the bytes
:func:`image_data_url` sends are the picture upright, as browsers show it and as
transformers' and vLLM's loaders turn it. So boxes a model draws, the frame sizes they are
checked against and the picture a person sees are the same picture. The orientation is
what PIL's ``ImageOps.exif_transpose`` applies (:func:`orientation`).

Pixels deeper than 8 bits are scaled to 8, not clipped as PIL's ``convert("RGB")`` clips them
(a 16-bit grey PNG would be an almost white frame), wherever pixels are read
(:func:`open_image`; :func:`rgb_image` for a PIL image one is handed) and in the bytes sent or
kept (:func:`upright_bytes`, which a model server and a dataset's other readers then convert
with the same clipping): 16-bit grey
(PIL's ``I;16`` modes, and a 16-bit grey PNG however this PIL opens it) is divided by 257,
so 65535 is 255. A 32-bit integer (``I``) or float (``F``) picture has no depth of its own:
its values are taken on the smallest of the usual full scales that holds them all (0..1,
floats only; 0..255, as PIL reads them; 0..65535), and otherwise its lowest to highest value
is stretched over 0..255, where PIL would clip it to black and white.

An image is read when it has at most PIL's limit of pixels (twice ``PIL.Image.MAX_IMAGE_PIXELS``,
178,956,970 unless the program changed it: a 150-megapixel camera frame is under it) and
refused, saying so, over it; PIL's warning for the pictures between ``MAX_IMAGE_PIXELS`` and
that limit, which are read, is not shown.
"""

from __future__ import annotations

import base64
import io
import math
import re
import struct
import sys
import warnings
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Union

from ..errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image as PILImage

ImageLike = Union[str, Path, bytes, "PILImage"]

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff_mime(data: bytes) -> str | None:
    """The MIME type of PNG, JPEG, GIF or WebP bytes, from their signature."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def read_image_bytes(path: str | Path) -> bytes:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"image {p} does not exist; check the path")
    if p.is_dir():
        raise UsageError(f"{p} is a folder, not an image; pass the image files themselves")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read image {p} ({exc.strerror}); check its permissions") from exc


def unreadable_image(label: str, exc: Exception, data: bytes) -> UsageError:
    """The one-line error for an image PIL cannot read: the file named, why in words, the fix.

    PIL's own message names the in-memory buffer (``cannot identify image file
    <_io.BytesIO object at 0x7f…>``), which tells the user nothing: it is never shown.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(exc, Image.DecompressionBombError):  # PIL's bound on pixels, its message reworded
        found = re.search(r"\((\d+) pixels\) exceeds limit of (\d+)", str(exc))
        if found:
            return too_many_pixels(label, int(found[1]), int(found[2]))
        return UsageError(f"{label} is too large to read safely ({exc}); downscale it")
    if not data:
        why = "the file is empty"
    elif isinstance(exc, UnidentifiedImageError):
        head = data[:64]
        text = head.isascii() and all(32 <= b < 127 or b in (9, 10, 13) for b in head)
        why = "it holds text, not an image" if text else "not an image format PIL can read"
    else:
        why = str(exc).replace("\n", " ").strip()[:200] or type(exc).__name__
        why = f"damaged or truncated: {why}"
    return UsageError(f"{label} is not a readable image ({why}); replace it with a PNG or JPEG file")


def too_many_pixels(label: str, pixels: int, limit: int) -> UsageError:
    """The one-line error for image ``label`` of ``pixels`` pixels, over a ``limit`` (PIL's, or a
    program's own): its size, the limit and the fix."""
    return UsageError(
        f"{label} is too large to read safely ({pixels:,} pixels, the limit is {limit:,}); downscale it"
    )


def open_image(image: ImageLike, *, name: str | None = None) -> PILImage:
    """A fully decoded RGB PIL image, upright; a clear error when the file is missing or corrupt.

    A PIL image is taken as it is (only converted to RGB, deeper pixels scaled to 8 bits): its
    pixels are the picture.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, Image.Image):
        return rgb_image(image)
    label = name or (str(image) if isinstance(image, (str, Path)) else "image bytes")
    data = image if isinstance(image, bytes) else read_image_bytes(image)
    try:
        with _pil_open(data) as im:
            im.load()
            turn = _pil_orientation(im, data)
            rgb = rgb_image(im, sixteen=_grey16(data))
            rgb = im.copy() if rgb is im else rgb  # im is closed on leaving
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise unreadable_image(label, exc, data) from exc
    return _turn(rgb, turn)


def rgb_image(image: PILImage, *, sixteen: bool = False) -> PILImage:
    """A PIL image of any mode in RGB, deeper pixels scaled to 8 bits as the module says (PIL's
    ``convert("RGB")`` clips them: a 16-bit grey picture would be an almost white frame); an RGB
    image itself. ``sixteen``: an ``I`` image holds 16-bit grey (read from a 16-bit grey PNG)."""
    return image if image.mode == "RGB" else _eight_bit(image, sixteen=sixteen).convert("RGB")


def _pil_open(data: bytes) -> PILImage:
    """PIL's ``Image.open`` of ``data``, without its warning for a picture between its two limits on
    pixels, which is read (over the upper one PIL refuses it, and :func:`unreadable_image` says so)."""
    from PIL import Image

    # catch_warnings is not thread-safe: at worst the ignore stays, for this one warning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data))


def _grey16(data: bytes) -> bool:
    """Whether ``data`` is a 16-bit grey PNG (its header's bit depth 16, colour type 0), which PIL
    opens as ``I;16`` (``I`` in older Pillows) and its ``convert`` clips to 8 bits."""
    return data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and data[24:26] == b"\x10\x00"


#: the full scales an ``I`` or ``F`` picture's values are taken on, the smallest that holds them
_FULL_SCALES = {"F": (1.0, 255.0, 65535.0), "I": (255.0, 65535.0)}


def _eight_bit(im: PILImage, *, sixteen: bool = False) -> PILImage:
    """``im`` in a mode whose ``convert("RGB")`` keeps its picture: a 16-bit grey picture (an
    ``I;16`` mode, or ``I`` when ``sixteen``) divided by 257, an ``I`` or ``F`` one scaled as
    the module says; any other as it is."""
    if im.mode.startswith("I;16") or (sixteen and im.mode == "I"):
        low, top = 0.0, 65535.0
    elif im.mode in _FULL_SCALES:
        low, high = im.getextrema()
        if not (math.isfinite(low) and math.isfinite(high)):
            return im  # NaN or infinity: no scale, PIL's convert clips
        fits = [s for s in _FULL_SCALES[im.mode] if low >= 0 and high <= s]
        if fits and fits[0] == 255.0:
            return im  # read as PIL reads it, nothing clipped
        low, top = (0.0, fits[0]) if fits else (low, high)
    else:
        return im
    scale = 255.0 / (top - low) if top > low else 0.0
    offset = 0.5 - low * scale  # + 0.5: rounded, as PIL's convert of I and F truncates
    work = im if im.mode == "F" else im.convert("I")
    return work.point(lambda v: v * scale + offset).convert("L")


#: PIL's ``Image.Transpose`` member for each EXIF orientation but 1, as ``ImageOps.exif_transpose``
_TRANSPOSE = {
    2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
    6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90",
}  # fmt: skip
# the bytes by which a file may hold EXIF (JPEG's APP1, PNG's eXIf chunk, WebP's EXIF chunk) or
# XMP's orientation (which PIL reads when EXIF has none); without any, PIL's tags are not read
_EXIF_MARKS = (b"Exif", b"eXIf", b"EXIF", b"tiff:Orientation")


def _turn(image: PILImage, turn: int) -> PILImage:
    from PIL import Image

    method = _TRANSPOSE.get(turn)
    return image if method is None else image.transpose(getattr(Image.Transpose, method))


def _pil_orientation(im: PILImage, data: bytes) -> int:
    """The orientation PIL's ``exif_transpose`` applies to ``im`` (opened from ``data``): 1 to 8."""
    if not any(mark in data for mark in _EXIF_MARKS):
        return 1  # nothing to read: PIL's getexif() would decode a PNG to look for a late eXIf chunk
    try:
        value = im.getexif().get(_ORIENTATION, 1)
    except Exception:  # damaged tags: the picture as stored
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def orientation(image: str | Path | bytes, *, name: str | None = None) -> int:
    """The EXIF orientation of an image file or bytes, 1 (upright as stored) to 8.

    What PIL's ``ImageOps.exif_transpose`` applies: 5 to 8 turn the picture a quarter, so
    its width and height swap. Read from a PNG's or JPEG's header without PIL where
    :func:`header_orientation` is sure, by PIL otherwise.
    """
    data = image if isinstance(image, bytes) else read_image_bytes(image)
    if header_size(data) is not None:
        turn = header_orientation(data)
        if turn is not None:
            return turn
    from PIL import Image, UnidentifiedImageError

    label = name or (str(image) if isinstance(image, (str, Path)) else "image bytes")
    try:
        with _pil_open(data) as im:
            return _pil_orientation(im, data)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise unreadable_image(label, exc, data) from exc


def _profile_space(icc: object) -> bytes | None:
    """The colour space an ICC profile describes (bytes 16 to 20 of its header: ``RGB ``, ``CMYK``, ``GRAY``)."""
    return icc[16:20] if isinstance(icc, bytes) and len(icc) >= 20 else None


def upright_bytes(data: bytes, *, name: str | None = None) -> bytes:
    """``data`` itself when its picture is stored upright (orientation 1) in at most 8 bits;
    otherwise the picture turned upright and encoded again, with no orientation tag left to turn
    it twice: a JPEG as JPEG (quality 95, its colour profile kept), anything else as PNG (a 16-bit
    grey PNG as an 8-bit grey one, scaled as :func:`open_image` scales it).

    What is sent to a model server or kept for a browser or a dataset, so that a server which
    ignores EXIF (SGLang does) and one which applies it (vLLM, transformers) see the same
    picture, and one which clips 16-bit pixels to 8 (PIL's ``convert("RGB")`` does: all of
    them) sees the picture rather than a white frame.
    """
    turn = orientation(data, name=name)
    deep = _grey16(data)
    if turn == 1 and not deep:
        return data
    picture = open_image(data, name=name)
    if deep:  # grey it was, grey it stays: 8 bits, as every reader then reads it
        picture = picture.convert("L")
    buf = io.BytesIO()
    if sniff_mime(data) == "image/jpeg":
        # a CMYK or grey source's profile does not describe the RGB pixels written: left out
        icc = (
            picture.info.get("icc_profile")
            if _profile_space(picture.info.get("icc_profile")) == b"RGB "
            else None
        )
        picture.save(buf, format="JPEG", quality=95, **({"icc_profile": icc} if icc else {}))
    else:
        picture.save(buf, format="PNG")
    return buf.getvalue()


def image_size(image: ImageLike, *, name: str | None = None) -> tuple[int, int]:
    """``(width, height)`` of the picture upright, without decoding the pixels when the image
    is a file or bytes.

    A well-formed PNG or JPEG is read by :func:`header_size` (about 50 times faster than
    PIL's opening) and its orientation by :func:`header_orientation`; anything else, and
    every file those readers are unsure of, by PIL, whose errors are said as
    :func:`unreadable_image` says them. A PIL image is taken as it is (its pixels are the
    picture).
    """
    if isinstance(image, (str, Path, bytes)):
        data = image if isinstance(image, bytes) else read_image_bytes(image)
        size = header_size(data)
        if size is not None:
            turn = header_orientation(data)
            if turn is not None:  # PIL not imported (about 50 ms): evaluate's main process never needs it
                return (size[1], size[0]) if turn >= 5 else size
    else:
        from PIL import Image

        if isinstance(image, Image.Image):
            return image.size
        data = read_image_bytes(image)  # type: ignore[arg-type]  # not an image: its error says so
    from PIL import Image, UnidentifiedImageError

    label = name or (str(image) if isinstance(image, (str, Path)) else "image bytes")
    try:
        with _pil_open(data) as im:
            width, height = im.size
            return (height, width) if _pil_orientation(im, data) >= 5 else (width, height)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise unreadable_image(label, exc, data) from exc


# (bit depth, colour type) pairs PIL reads; any other is not an image to it
_PNG_MODES = frozenset(
    [(1, 0), (2, 0), (4, 0), (8, 0), (16, 0), (8, 2), (16, 2), (1, 3), (2, 3), (4, 3), (8, 3), (8, 4), (16, 4), (8, 6), (16, 6)]
)  # fmt: skip
# ancillary chunks before the pixels that PIL reads without failing, with their fixed length (None: any)
_PNG_PLAIN_CHUNKS = {
    b"PLTE": None, b"gAMA": 4, b"cHRM": 32, b"sRGB": 1, b"pHYs": 9, b"sBIT": None,
    b"bKGD": None, b"tIME": 7, b"tEXt": None,
}  # fmt: skip
_JPEG_SOF = frozenset([0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF])
_JPEG_PLAIN = frozenset([0xC4, 0xCC, 0xDD, 0xFE, *range(0xE0, 0xF0)])  # DHT, DAC, DRI, COM, APPn
_DEFAULT_MAX_PIXELS = 1024 * 1024 * 1024 // 4 // 3  # PIL's Image.MAX_IMAGE_PIXELS


def header_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of a well-formed PNG or JPEG from its header, or None: not one, or not
    one this reader is sure of (PIL then reads it, or says why it cannot).

    It reads what PIL's opening reads, up to the first pixel data (PNG: every chunk's
    checksum and the header's bit depth, colour type and filter; JPEG: every segment up to
    the scan, the frame's 8-bit precision and 1, 3 or 4 components), and leaves to PIL
    every chunk or segment it does not know, an animated or multi-picture file and an
    image over PIL's size limit; so where it answers, PIL's ``Image.open(...).size``
    answers the same.
    """
    mime = sniff_mime(data)
    if mime == "image/png":
        size = _png_size(data)
    elif mime == "image/jpeg":
        size = _jpeg_size(data)
    else:
        return None
    if size is None or not (size[0] > 0 and size[1] > 0):
        return None
    pil = sys.modules.get("PIL.Image")  # a limit the caller set on PIL holds here too
    limit = getattr(pil, "MAX_IMAGE_PIXELS", _DEFAULT_MAX_PIXELS) if pil else _DEFAULT_MAX_PIXELS
    if limit is not None and size[0] * size[1] > limit:
        return None  # PIL warns or refuses
    return size


_ORIENTATION = 0x0112  # the EXIF tag
_XMP = b"http://ns.adobe.com/xap/1.0/\0"


def header_orientation(data: bytes) -> int | None:
    """The EXIF orientation (1 to 8) of a PNG or JPEG whose size :func:`header_size` reads, or
    None when unsure (PIL then reads it).

    A PNG: 1 unless it holds an ``eXIf`` chunk (left to PIL). A JPEG: the orientation tag of
    the first ``Exif`` APP1 segment's first directory, as PIL reads it; 1 without one; None
    for a tag of another type or count, a directory cut short, or an orientation that only
    an XMP segment could give.
    """
    mime = sniff_mime(data)
    if mime == "image/png":
        return None if b"eXIf" in data else 1
    if mime != "image/jpeg":
        return None
    segments = _jpeg_segments(data)
    if segments is None:
        return None
    xmp = False
    for marker, body, end in segments:
        if marker == 0xE1:
            segment = data[body:end]
            if segment.startswith(b"Exif\0\0"):
                turn = _tiff_orientation(segment[6:])
                return None if turn is None or (turn == 0 and xmp) else max(turn, 1)
            xmp = xmp or segment.startswith(_XMP)
    return None if xmp else 1


# the bytes of one value of each TIFF type PIL reads (others it skips)
_TIFF_UNIT = {
    1: 1,
    2: 1,
    3: 2,
    4: 4,
    5: 8,
    6: 1,
    7: 1,
    8: 2,
    9: 4,
    10: 8,
    11: 4,
    12: 8,
    13: 4,
    16: 8,
    17: 8,
    18: 8,
}


def _tiff_orientation(tiff: bytes) -> int | None:
    """The orientation tag of an EXIF block's first directory: 2 to 8 as PIL applies it (any other
    value: 1), 0 when there is none, None when the block is not one this reader is sure PIL reads
    the same way (PIL stops at the first entry whose data lies past the block, so every entry
    before the orientation must be whole)."""
    if tiff[:4] == b"II*\0":
        order = "<"
    elif tiff[:4] == b"MM\0*":
        order = ">"
    else:
        return None
    (first,) = struct.unpack_from(order + "I", tiff, 4) if len(tiff) >= 8 else (0,)
    if first < 8 or first + 2 > len(tiff):
        return None
    (count,) = struct.unpack_from(order + "H", tiff, first)
    if first + 2 + 12 * count > len(tiff):
        return None
    outside = 0
    for k in range(count):
        tag, kind, n, offset = struct.unpack_from(order + "HHII", tiff, first + 2 + 12 * k)
        if tag == _ORIENTATION:
            if kind != 3 or n != 1:
                return None
            (value,) = struct.unpack_from(order + "H", tiff, first + 10 + 12 * k)
            return value if 2 <= value <= 8 else 1
        size = n * _TIFF_UNIT.get(kind, 0)
        if size > 4:  # the value lies elsewhere in the block: PIL reads it, and stops if it cannot
            outside += size
            if offset + size > len(tiff) or outside > len(tiff):
                return None
    return 0


def _png_size(data: bytes) -> tuple[int, int] | None:
    pos, end, size, colour = 8, len(data), None, -1
    while pos + 12 <= end:
        length, kind = struct.unpack_from(">I4s", data, pos)
        body = pos + 8
        if kind == b"IDAT":  # the pixels, which PIL's opening does not read
            return size
        if body + length + 4 > end:
            return None
        if (
            zlib.crc32(memoryview(data)[pos + 4 : body + length])
            != struct.unpack_from(">I", data, body + length)[0]
        ):
            return None  # PIL checks every chunk's checksum
        if kind == b"IHDR":
            if size is not None or length != 13:
                return None
            width, height, depth, colour, _, filtering, _ = struct.unpack_from(">IIBBBBB", data, body)
            if (depth, colour) not in _PNG_MODES or filtering:
                return None
            size = (width, height)
        elif size is None:
            return None  # IHDR comes first
        elif kind == b"tRNS":
            if colour not in (0, 2, 3) or length < {0: 2, 2: 6, 3: 0}[colour]:
                return None  # PIL reads a grey or RGB key whole, and no other mode's
        elif kind not in _PNG_PLAIN_CHUNKS or _PNG_PLAIN_CHUNKS[kind] not in (None, length):
            return None
        pos = body + length + 4
    return None


def _jpeg_segments(data: bytes) -> list[tuple[int, int, int]] | None:
    """A JPEG's segments up to its first scan, that one included: ``(marker, body start, end)``
    each; None when a segment is cut short or malformed, or no scan comes."""
    pos, end, out = 2, len(data), []
    while pos < end:
        if data[pos] != 0xFF:
            return None
        while pos < end and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos + 3 > end:
            return None
        marker = data[pos]
        length = (data[pos + 1] << 8) | data[pos + 2]
        body, pos = pos + 3, pos + 1 + length
        if length < 2 or pos > end:
            return None
        out.append((marker, body, pos))
        if marker == 0xDA:  # the scan's header, whole: the pixels follow
            return out
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    segments = _jpeg_segments(data)
    if segments is None:
        return None
    size = None
    for marker, body, end in segments[:-1]:  # the last is the scan
        segment = data[body:end]
        if marker in _JPEG_SOF:
            if len(segment) < 6 or segment[0] != 8 or segment[5] not in (1, 3, 4):
                return None
            size = ((segment[3] << 8) | segment[4], (segment[1] << 8) | segment[2])
        elif marker == 0xDB:
            if not _quantization_tables_whole(segment):
                return None
        elif marker not in _JPEG_PLAIN:
            return None
        elif marker == 0xE0 and segment[:4] == b"JFIF" and len(segment) < 12:
            return None
        elif marker == 0xE2 and segment[:4] == b"MPF\0":
            return None  # a multi-picture file
        elif marker == 0xE2 and segment[:12] == b"ICC_PROFILE\0" and len(segment) < 14:
            return None  # a piece of an ICC profile too short for PIL
    return size


def _quantization_tables_whole(segment: bytes) -> bool:
    pos = 0
    while pos < len(segment):
        pos += 1 + (64 if segment[pos] < 16 else 128)
    return pos == len(segment)


def image_data_url(image: ImageLike, *, image_format: str | None = None) -> str:
    """A ``data:`` URL for an image.

    Files and bytes already in PNG, JPEG, GIF or WebP are sent as they are (no
    re-encoding, so the model sees exactly the file's pixels) when they are stored
    upright in 8 bits, and turned upright or made 8-bit first otherwise (:func:`upright_bytes`). PIL images, other
    formats and an explicit ``image_format`` (``"PNG"`` or ``"JPEG"``) are encoded.
    """
    from PIL import Image

    if not isinstance(image, Image.Image) and image_format is None:
        data = upright_bytes(image if isinstance(image, bytes) else read_image_bytes(image))
        mime = sniff_mime(data)
        if mime is not None:
            return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    pil = open_image(image)
    fmt = (image_format or "PNG").upper()
    if fmt == "JPG":
        fmt = "JPEG"
    if fmt not in ("PNG", "JPEG", "WEBP"):
        raise UsageError(f"image format {image_format!r} is not supported; use PNG or JPEG")
    buf = io.BytesIO()
    pil.save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"
