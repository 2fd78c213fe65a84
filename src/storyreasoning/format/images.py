"""Images as the prompts see them: opening, sizes and data URLs.

Paths, bytes and PIL images are accepted wherever an image is. Errors name the file and
what to do.
"""

from __future__ import annotations

import base64
import io
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
    from PIL import UnidentifiedImageError

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


def open_image(image: ImageLike, *, name: str | None = None) -> PILImage:
    """A fully decoded RGB PIL image; a clear error when the file is missing or corrupt."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, Image.Image):
        return image.convert("RGB") if image.mode != "RGB" else image
    label = name or (str(image) if isinstance(image, (str, Path)) else "image bytes")
    data = image if isinstance(image, bytes) else read_image_bytes(image)
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise unreadable_image(label, exc, data) from exc


def image_size(image: ImageLike, *, name: str | None = None) -> tuple[int, int]:
    """``(width, height)`` without decoding the pixels when the image is a file or bytes."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, Image.Image):
        return image.size
    label = name or (str(image) if isinstance(image, (str, Path)) else "image bytes")
    data = image if isinstance(image, bytes) else read_image_bytes(image)
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise unreadable_image(label, exc, data) from exc


def image_data_url(image: ImageLike, *, image_format: str | None = None) -> str:
    """A ``data:`` URL for an image.

    Files and bytes already in PNG, JPEG, GIF or WebP are sent as they are (no
    re-encoding, so the model sees exactly the file's pixels). PIL images, other
    formats and an explicit ``image_format`` (``"PNG"`` or ``"JPEG"``) are encoded.
    """
    from PIL import Image

    if not isinstance(image, Image.Image) and image_format is None:
        data = image if isinstance(image, bytes) else read_image_bytes(image)
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
