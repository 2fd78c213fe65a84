"""A small ``multipart/form-data`` reader, so the studio needs no extra package for uploads.

The body is already in memory (its size bounded by the caller). Parts are split at
the boundary the ``Content-Type`` names; each part's headers give the field name, the
file name and the claimed type (which the studio does not trust: images are judged by
their content).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ApiError

_PARAM = re.compile(r';\s*([A-Za-z0-9_*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')


@dataclass
class Part:
    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def _params(value: str) -> tuple[str, dict[str, str]]:
    """``form-data; name="files"; filename="a.jpg"`` → ``("form-data", {"name": "files", …})``."""
    head, _, _ = value.partition(";")
    params = {}
    for key, raw in _PARAM.findall(value):
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[key.lower()] = raw
    return head.strip().lower(), params


def boundary_of(content_type: str | None) -> bytes:
    kind, params = _params(content_type or "")
    boundary = params.get("boundary", "")
    if kind != "multipart/form-data" or not boundary or len(boundary) > 200:
        raise ApiError(
            400,
            "the upload is not multipart/form-data; send the images as the form field 'files'",
        )
    return boundary.encode("latin-1", "replace")


def parse_multipart(body: bytes, content_type: str | None) -> list[Part]:
    """The parts of a ``multipart/form-data`` body; a malformed body is a 400 :class:`ApiError`."""
    delimiter = b"--" + boundary_of(content_type)
    pieces = body.split(delimiter)
    if len(pieces) < 3 or not pieces[-1].startswith(b"--"):
        raise ApiError(400, "the upload is cut off or malformed (no closing boundary); send it again")
    parts = []
    for piece in pieces[1:-1]:
        if piece.startswith(b"\r\n"):
            piece = piece[2:]
        if not piece.endswith(b"\r\n"):
            raise ApiError(400, "the upload is malformed (a part does not end with CRLF); send it again")
        piece = piece[:-2]
        head, sep, data = piece.partition(b"\r\n\r\n")
        if not sep:
            raise ApiError(400, "the upload is malformed (a part has no header end); send it again")
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, colon, value = line.partition(":")
            if colon:
                headers[key.strip().lower()] = value.strip()
        kind, params = _params(headers.get("content-disposition", ""))
        if kind != "form-data" or "name" not in params:
            raise ApiError(400, "the upload is malformed (a part has no form-data name); send it again")
        filename = params.get("filename*") or params.get("filename")
        if filename is not None and filename.lower().startswith("utf-8''"):
            from urllib.parse import unquote

            filename = unquote(filename[7:])
        parts.append(Part(params["name"], filename, headers.get("content-type"), data))
    return parts
