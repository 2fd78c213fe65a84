"""One streamed HTTP/1.1 request on a socket of its own: the chat stream's transport over plain HTTP.

vLLM (through uvicorn) sends each event of a chat stream as its own HTTP chunk. The
SDK's HTTP client (httpx over httpcore over h11) turns every chunk into an event object
that passes through four layers, about 25 µs of CPU each on a loaded two-core machine:
at one token per event, more than everything else the client does with the token
together (bench/client.py). Here a response's body is read a network read at a time
(64 KiB) and its chunks are unframed in one loop over the bytes, so the cost per token
is a ``bytes.find`` and a slice.

Used by :class:`~storyreasoning.tell.openai.OpenAITeller` for ``/chat/completions`` on
``http://`` endpoints that no proxy variable (``HTTP_PROXY``, ``ALL_PROXY``) routes
elsewhere and whose URL carries no user name; ``https://``, proxies and everything else
(``/models``) go through the SDK and its HTTP client. We write this rather than use
``http.client`` because that reads a chunked body one chunk per call too.

Errors are the socket's own (``ConnectionRefusedError``, ``socket.gaierror``,
``TimeoutError`` for a read that waited ``timeout`` seconds) or :class:`Truncated`
(the server closed the connection before the body's end, or broke the framing), so
the teller words them as it words the SDK's.
"""

from __future__ import annotations

import socket
import zlib
from collections.abc import Callable, Iterator

READ_SIZE = 64 * 1024
INFLATED_PIECE = 1 << 20  # bytes of a compressed body inflated at a time (a small read may inflate to much)
_HEX_DIGITS = b"0123456789abcdefABCDEF"
MAX_HEAD = 64 * 1024  # bytes of status line and headers
MAX_ERROR_BODY = 1 << 20  # bytes of an error answer kept for its message


class Truncated(Exception):
    """The answer ended before its body did, or its framing is broken: the server stopped short."""


class Headers(dict):
    """Response headers by lower-case name (``get`` takes any case)."""

    def get(self, name: str, default=None):  # type: ignore[override]
        return super().get(name.lower(), default)


class Response:
    """A response being read: ``status``, ``headers``, and :meth:`blocks` of its body."""

    def __init__(self, sock: socket.socket, status: int, headers: Headers, rest: bytes) -> None:
        self.sock, self.status, self.headers = sock, status, headers
        self._rest = rest  # body bytes read with the head
        encoding = headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self._chunks = Chunks() if "chunked" in encoding else None
        self._left = int(length) if self._chunks is None and length and length.strip().isdigit() else None
        coding = headers.get("content-encoding", "identity").strip().lower()
        # identity is asked for; a server that compresses anyway is read all the same (gzip, deflate)
        self._inflate = (
            zlib.decompressobj(zlib.MAX_WBITS | 32) if coding in ("gzip", "x-gzip", "deflate") else None
        )

    def blocks(self) -> Iterator[bytes]:
        """The body, a network read at a time (unframed); :class:`Truncated` when it ends early."""
        chunks, data = self._chunks, self._rest
        self._rest = b""
        while True:
            if data:
                if chunks is not None:
                    data = chunks.feed(data)
                elif self._left is not None:
                    data = data[: self._left]
                    self._left -= len(data)
                if data and self._inflate is not None:
                    yield from self._inflated(data)
                elif data:
                    yield data
            if (chunks is not None and chunks.done) or self._left == 0:
                return
            data = self.sock.recv(READ_SIZE)
            if not data:
                if chunks is None and self._left is None:
                    return  # a body that ends with the connection
                raise Truncated("the connection closed before the end of the answer")

    def _inflated(self, data: bytes) -> Iterator[bytes]:
        """``data`` of a compressed body inflated, :data:`INFLATED_PIECE` bytes at most at a time."""
        inflate = self._inflate
        assert inflate is not None
        while data:
            try:
                piece = inflate.decompress(data, INFLATED_PIECE)
            except zlib.error as exc:
                raise Truncated(f"the answer's compressed body is damaged ({exc})") from None
            if piece:
                yield piece
            data = inflate.unconsumed_tail

    def read(self, limit: int = MAX_ERROR_BODY) -> bytes:
        """The body (up to ``limit`` bytes), for an error answer's message."""
        out, size = [], 0
        try:
            for block in self.blocks():
                out.append(block)
                size += len(block)
                if size >= limit:
                    break
        except (OSError, Truncated):
            pass  # what came is the message
        return b"".join(out)[:limit]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Chunks:
    """Unframes a chunked body fed in any pieces: :meth:`feed` returns the data it completes."""

    def __init__(self) -> None:
        self.done = False
        self._buffer = b""
        self._left = 0  # data bytes still due in the current chunk
        self._crlf = False  # the CR LF after a chunk's data is due

    def feed(self, data: bytes) -> bytes:
        buf = self._buffer + data if self._buffer else data
        out: list[bytes] = []
        at, size = 0, len(buf)
        while not self.done:
            if self._left:
                end = min(size, at + self._left)
                out.append(buf[at:end])
                self._left -= end - at
                at = end
                if self._left:
                    break
                self._crlf = True
            if self._crlf:
                if size - at < 2:
                    break
                if buf[at : at + 2] != b"\r\n":
                    raise Truncated("a chunk of the answer is not followed by CR LF")
                at += 2
                self._crlf = False
            end = buf.find(b"\r\n", at)
            if end < 0:
                if size - at > 1024:
                    raise Truncated("a chunk size line of the answer is too long")
                break
            size_field = buf[at:end].split(b";", 1)[0].strip(b" \t")
            # hexadecimal digits only: int() would also take a sign, a 0x prefix and underscores
            if not size_field or len(size_field) > 15 or size_field.strip(_HEX_DIGITS):
                raise Truncated(f"a chunk size of the answer is not hexadecimal ({buf[at:end][:40]!r})")
            length = int(size_field, 16)
            at = end + 2
            if length == 0:
                self.done = True  # trailers, if any, are not read: the connection is closed after
            self._left = length
        self._buffer = buf[at:]
        return out[0] if len(out) == 1 else b"".join(out)


def post(
    host: str,
    port: int,
    target: str,
    headers: dict[str, str],
    body: bytes,
    *,
    timeout: float,
    on_socket: Callable[[socket.socket], None],
) -> Response:
    """Send ``POST target`` to ``host:port`` (a new connection, closed after the answer) and read the
    answer's head. ``on_socket`` sees the socket as soon as it exists (so another thread can shut it);
    ``timeout`` bounds the connection and every read."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        on_socket(sock)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = [f"POST {target} HTTP/1.1"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        head += [f"Content-Length: {len(body)}", "Accept-Encoding: identity", "Connection: close", "", ""]
        sock.sendall("\r\n".join(head).encode("latin-1") + body)
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                more = sock.recv(READ_SIZE)
                if not more:
                    raise Truncated("the connection closed before an answer came")
                data += more
                if len(data) > MAX_HEAD and b"\r\n\r\n" not in data:
                    raise Truncated("the answer's head is too long")
            head_bytes, _, data = data.partition(b"\r\n\r\n")
            lines = head_bytes.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
                raise Truncated(f"the answer does not start with an HTTP status line ({lines[0][:60]!r})")
            status = int(parts[1])
            if 100 <= status < 200:  # 100 Continue and the like: the answer follows
                continue
            found = Headers()
            for line in lines[1:]:
                name, _, value = line.partition(":")
                found[name.strip().lower()] = value.strip()
            return Response(sock, status, found, data)
    except BaseException:
        sock.close()
        raise
