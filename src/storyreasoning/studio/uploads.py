"""Uploaded images, checked and kept in memory for one server's life.

An upload is accepted only when its bytes are a PNG, JPEG, GIF or WebP image (the
signature decides, never the file name or the type the browser claims), it is no
larger than the per-image limit, it has no more pixels than the pixel limit (checked
from the header, before decoding: no decompression bombs), and it decodes completely
(a truncated or corrupt file is refused with the decoder's reason). A photo stored sideways
with an EXIF orientation is kept turned upright (:func:`~storyreasoning.format.images.upright_bytes`),
so the model, the sizes the studio reports and the page all see one picture. The store keeps at
most ``max_total`` bytes; beyond that the images used longest ago are dropped.
"""

from __future__ import annotations

import io
import re
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass

from ..format.images import image_size, sniff_mime, too_many_pixels, unreadable_image, upright_bytes
from .errors import ApiError

_KINDS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WebP"}


@dataclass(frozen=True)
class Upload:
    id: str
    name: str
    data: bytes
    mime: str
    width: int
    height: int

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "width": self.width,
            "height": self.height,
            "bytes": len(self.data),
            "url": f"/api/uploads/{self.id}",
        }


def display_name(filename: str | None, index: int) -> str:
    """The file's own name without any folder part or control characters (it is only shown)."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = "".join(c for c in name if c.isprintable()).strip()[:200]
    return name or f"image {index + 1}"


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.3g} MB"


def image_too_large(name: str, max_bytes: int, size: int | None = None) -> ApiError:
    """The 413 for image ``name`` of ``size`` bytes (None: not known, only that it is more than ``max_bytes``)."""
    size_is = "" if size is None else f"{_mb(size)}, "
    return ApiError(
        413, f"{name} is {size_is}more than the {_mb(max_bytes)} an image may be; make it smaller"
    )


def check_image(data: bytes, name: str, *, max_bytes: int, max_pixels: int) -> tuple[str, int, int]:
    """``(mime, width, height)`` of an acceptable image; an :class:`ApiError` saying why not otherwise."""
    if len(data) > max_bytes:
        raise image_too_large(name, max_bytes, len(data))
    if not data:
        raise ApiError(400, f"{name} is empty; choose the image file again")
    mime = sniff_mime(data[:16])
    if mime is None:
        raise ApiError(
            415,
            f"{name} is not a PNG, JPEG, GIF or WebP image (judged by its content, not its name); "
            "convert it to PNG or JPEG",
        )
    from PIL import Image, UnidentifiedImageError

    kind = _KINDS[mime]
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ApiError(413, str(too_many_pixels(name, width * height, max_pixels)))
            image.load()
    except ApiError:
        raise
    except Image.DecompressionBombError as exc:  # over PIL's own limit, which the message states
        raise ApiError(413, str(unreadable_image(name, exc, data))) from None
    except UnidentifiedImageError:
        raise ApiError(
            400, f"{name} looks like a {kind} image but its contents are not one PIL can read; re-export it"
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        reason = str(exc) or type(exc).__name__
        raise ApiError(
            400, f"{name} looks like a {kind} image but is corrupt or truncated ({reason}); re-export it"
        ) from None
    return mime, width, height


class UploadStore:
    """Checked uploads by id, at most ``max_total`` bytes (least recently used dropped first)."""

    def __init__(self, *, max_image_bytes: int, max_total: int, max_pixels: int) -> None:
        self.max_image_bytes = max_image_bytes
        self.max_total = max_total
        self.max_pixels = max_pixels
        self._items: OrderedDict[str, Upload] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def check(self, files: list[tuple[str | None, bytes]]) -> list[tuple[str, bytes, str, int, int]]:
        """Check every file first (an upload is all or nothing): ``(name, data, mime, w, h)`` each."""
        out = []
        for index, (filename, data) in enumerate(files):
            name = display_name(filename, index)
            mime, width, height = check_image(
                data, name, max_bytes=self.max_image_bytes, max_pixels=self.max_pixels
            )
            upright = upright_bytes(data, name=name)
            if upright is not data:  # stored turned or mirrored (an EXIF orientation): kept upright
                data, mime = upright, sniff_mime(upright[:16]) or mime
                width, height = image_size(upright, name=name)
            out.append((name, data, mime, width, height))
        return out

    def add(self, files: list[tuple[str | None, bytes]]) -> list[Upload]:
        checked = self.check(files)
        uploads = [Upload("u" + secrets.token_hex(12), *item) for item in checked]
        with self._lock:
            for upload in uploads:
                self._items[upload.id] = upload
                self._bytes += len(upload.data)
            while self._bytes > self.max_total and len(self._items) > len(uploads):
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old.data)
        return uploads

    def get(self, upload_id: str) -> Upload | None:
        with self._lock:
            upload = self._items.get(upload_id)
            if upload is not None:
                self._items.move_to_end(upload_id)
            return upload

    def require(self, upload_id: object) -> Upload:
        upload = self.get(upload_id) if isinstance(upload_id, str) else None
        if upload is None:
            raise ApiError(
                404,
                f"image {str(upload_id)[:40]!r} is not on the server (it restarted, or older uploads were "
                "dropped to stay within the memory limit); upload the image again",
            )
        return upload
