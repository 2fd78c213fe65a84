"""Uploaded files read as the request arrives, by python-multipart's streaming parser.

python-multipart (the parser behind FastAPI's forms) finds the parts of the
``multipart/form-data`` body; around it we keep the studio's own limits: the body's
size, how many files and each file's size, each refused (413) the moment it is
exceeded, so no more than the limits is ever held in memory (the rest of the body, up to
its limit, is then read and dropped, so that a client still sending hears the answer
rather than a reset connection). Only the parts of one form field are kept, with the
file name the browser gave (it is only shown); the type the browser claims is not kept,
since images are judged by their content. A body that is not well-formed
``multipart/form-data`` (no boundary, garbage, cut off) is a 400.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import UsageError
from .errors import ApiError
from .inputs import content_length
from .uploads import display_name, image_too_large

try:
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header
except ImportError:  # pragma: no cover - the studio extra installs it
    raise UsageError("the studio needs python-multipart: pip install 'storyreasoning[studio]'") from None

if TYPE_CHECKING:
    from starlette.requests import Request

NOT_MULTIPART = "the upload is not multipart/form-data; send the images as the form field 'files'"
MAX_HEADER_BYTES = 16 * 1024  # one part's headers


def boundary_of(content_type: str | None) -> bytes:
    kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary", b"")
    if kind != b"multipart/form-data" or not boundary or len(boundary) > 200:
        raise ApiError(400, NOT_MULTIPART)
    return boundary


class FileParts:
    """python-multipart's callbacks: the parts of form field ``field``, within the limits."""

    def __init__(self, field: str, *, max_files: int, max_file_bytes: int) -> None:
        self.field = field.encode()
        self.max_files = max_files
        self.max_file_bytes = max_file_bytes
        self.files: list[tuple[str | None, bytes]] = []
        self.ended = False
        self._headers: dict[bytes, bytes] = {}
        self._header = [b"", b""]  # the field and value of the header being read
        self._size = 0  # of this part's headers
        self._name: str | None = None  # the file being kept
        self._data: bytearray | None = None  # None: a part of another field, skipped

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self._add_header(0, data[start:end]),
            "on_header_value": lambda data, start, end: self._add_header(1, data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _begin(self) -> None:
        self._headers, self._header, self._size, self._data = {}, [b"", b""], 0, None

    def _add_header(self, which: int, data: bytes) -> None:
        self._size += len(data)
        if self._size > MAX_HEADER_BYTES:
            raise ApiError(400, "the upload is malformed (a part's headers are too long); send it again")
        self._header[which] += data

    def _header_end(self) -> None:
        self._headers[self._header[0].strip().lower()] = self._header[1].strip()
        self._header = [b"", b""]

    def _headers_finished(self) -> None:
        kind, params = parse_options_header(self._headers.get(b"content-disposition"))
        if kind != b"form-data" or b"name" not in params:
            raise ApiError(400, "the upload is malformed (a part has no form-data name); send it again")
        if params[b"name"] != self.field:
            return
        if len(self.files) == self.max_files:
            raise ApiError(
                413, f"the upload holds more than the {self.max_files} images a story may have; choose fewer"
            )
        filename = params.get(b"filename")
        self._name = None if filename is None else filename.decode("utf-8", "replace")
        self._data = bytearray()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._data is None:
            return
        if len(self._data) + end - start > self.max_file_bytes:
            raise image_too_large(display_name(self._name, len(self.files)), self.max_file_bytes)
        self._data += memoryview(data)[start:end]

    def _part_end(self) -> None:
        if self._data is not None:
            self.files.append((self._name, bytes(self._data)))
            self._data = None

    def _end(self) -> None:
        self.ended = True


async def read_files(
    request: Request, field: str, *, max_files: int, max_file_bytes: int, max_body: int
) -> list[tuple[str | None, bytes]]:
    """``(file name, bytes)`` of each part of form ``field`` in the request's ``multipart/form-data`` body.

    Read as it streams in; a body over ``max_body`` bytes, more than ``max_files`` files or a
    file over ``max_file_bytes`` is a 413 and a malformed body a 400 :class:`ApiError`.
    """
    parts = FileParts(field, max_files=max_files, max_file_bytes=max_file_bytes)
    parser = MultipartParser(boundary_of(request.headers.get("content-type")), parts.callbacks())
    too_big = ApiError(413, f"the upload is larger than {max_body / (1024 * 1024):.3g} MB; send less at once")
    length = content_length(request)
    if length is not None and length > max_body:
        raise too_big
    size, refused = 0, None
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body:
            raise refused or too_big
        if refused is not None:
            continue  # the rest is read and dropped, so that the client, still sending, hears the answer
        try:
            parser.write(chunk)
        except ApiError as exc:
            refused, parts.files = exc, []
        except FormParserError as exc:
            refused = ApiError(400, f"the upload is malformed ({exc}); send it again")
    if refused is not None:
        raise refused
    if not parts.ended:
        raise ApiError(400, "the upload is cut off or malformed (no closing boundary); send it again")
    return parts.files
