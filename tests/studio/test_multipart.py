"""python-multipart reading an upload as it streams in, within the studio's limits."""

from __future__ import annotations

import pytest

pytest.importorskip(
    "python_multipart", reason="the studio needs python-multipart: pip install 'storyreasoning[studio]'"
)

from python_multipart import MultipartParser

from storyreasoning.studio.errors import ApiError
from storyreasoning.studio.multipart import FileParts, boundary_of


def part(name: str, filename: str | None = None) -> bytes:
    file = "" if filename is None else f'; filename="{filename}"'
    return f'--b\r\nContent-Disposition: form-data; name="{name}"{file}\r\n\r\n'.encode()


def parser(**limits) -> tuple[FileParts, MultipartParser]:
    parts = FileParts("files", **{"max_files": 3, "max_file_bytes": 100, **limits})
    return parts, MultipartParser(boundary_of("multipart/form-data; boundary=b"), parts.callbacks())


def test_the_files_of_the_field_are_kept_whatever_the_chunks():
    body = part("files", "a.png") + b"A" * 100 + b"\r\n" + part("note") + b"n" * 500 + b"\r\n"
    body += part("files") + b"--b-\r\n" + b"\r\n--b--\r\n"
    for size in (1, 7, 64, len(body)):
        parts, reader = parser()
        for start in range(0, len(body), size):
            reader.write(body[start : start + size])
        assert parts.ended
        assert parts.files == [("a.png", b"A" * 100), (None, b"--b-\r\n")]


def test_a_file_is_refused_at_the_byte_that_exceeds_its_limit():
    _, reader = parser(max_file_bytes=1024 * 1024)
    reader.write(part("files", "big.png") + b"x" * 1024 * 1024)
    with pytest.raises(ApiError) as refused:
        reader.write(b"x")
    assert refused.value.status == 413
    assert str(refused.value) == "big.png is more than the 1 MB an image may be; make it smaller"


def test_one_file_too_many_is_refused_at_its_headers():
    parts, reader = parser(max_files=2)
    reader.write((part("files", "a.png") + b"a\r\n") * 2)
    with pytest.raises(ApiError, match="more than the 2 images a story may have; choose fewer"):
        reader.write(part("files", "c.png"))
    assert len(parts.files) == 2


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "application/json",
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/mixed; boundary=b",
    ],
)
def test_a_body_that_is_not_form_data_is_a_400(content_type):
    with pytest.raises(ApiError, match="not multipart/form-data") as refused:
        boundary_of(content_type)
    assert refused.value.status == 400


def test_a_quoted_boundary_is_understood():
    assert boundary_of('multipart/form-data; charset=utf-8; boundary="a b;c"') == b"a b;c"
