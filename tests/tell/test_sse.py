"""The chat stream read cheaply (tell/sse.py, tell/wire.py): events split by the SSE rules whatever the
network cuts, the token event recognised by its bytes only where a JSON parse would read the same,
chunked bodies unframed in any pieces; and the teller's two transports (its own socket on plain http,
the SDK's client otherwise) tell the same story from a real loopback server."""

from __future__ import annotations

import json
import random

import pytest

from storyreasoning.tell.openai import OpenAITeller, _wire_target
from storyreasoning.tell.sse import DeltaTemplates, EventReader
from storyreasoning.tell.wire import Chunks, Truncated

from .servers import LIGHTHOUSE, FakeServer


def _event(content, **extra) -> bytes:
    choice = {"index": 0, "delta": {"content": content}, "logprobs": None, "finish_reason": None}
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [choice],
    }
    return json.dumps({**body, **extra}, ensure_ascii=False).encode()


def _cuts(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 40))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def test_events_are_the_same_however_the_bytes_are_cut():
    stream = (
        b": keep-alive\n\n"
        + b"data: " + _event("a") + b"\n\n"
        + b"event: message\r\nid: 7\r\ndata: {\"x\":\r\ndata: 1}\r\n\r\n"  # CR LF, two data lines
        + b"data:" + _event(" b") + b"\r\r"  # CR alone, no space after the colon
        + b"\n\n\n"
        + b"retry: 10\n\n"  # no data: no event
        + b"data: [DONE]\n\n"
        + b"data: " + _event("after the end") + b"\n\n"
    )  # fmt: skip
    whole = EventReader()
    expected = whole.feed(stream)
    assert [json.loads(e) for e in expected] == [json.loads(_event("a")), {"x": 1}, json.loads(_event(" b"))]
    assert whole.done
    rng = random.Random(5)
    for _ in range(300):
        reader, got = EventReader(), []
        for piece in _cuts(stream, rng):
            got += reader.feed(piece)
        assert got == expected and reader.done
    one_by_one = EventReader()
    assert [e for i in range(len(stream)) for e in one_by_one.feed(stream[i : i + 1])] == expected


def test_a_template_reads_only_what_a_json_parse_would():
    templates = DeltaTemplates()
    first = _event("Once")
    assert templates.text(first) is None  # nothing learnt yet
    templates.learn(first, json.loads(first))
    for text in (" upon", " a time", "", "é ☃ 𝄞", "1,2,3"):
        assert templates.text(_event(text)) == ("content", text)
    for other in (
        _event("line\nbreak"),  # an escape: parsed as JSON instead
        _event('a "quote"'),
        _event("x", usage={"completion_tokens": 3}),  # usage: another shape
        _event("x").replace(b'"finish_reason": null', b'"finish_reason": "stop"'),
        _event("x").replace(b'"index": 0', b'"index": 1'),  # another choice
        b"[1, 2]",
    ):
        assert templates.text(other) is None


def test_no_template_is_learnt_from_an_event_that_is_not_a_plain_delta():
    templates = DeltaTemplates()
    for event in (
        _event("x", usage={"completion_tokens": 3}),
        _event("x").replace(b'"finish_reason": null', b'"finish_reason": "stop"'),
        json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}).encode(),
        json.dumps({"choices": [{"index": 0, "delta": {"content": 5}}]}).encode(),
    ):
        templates.learn(event, json.loads(event))
    assert templates.text(_event("x")) is None
    # a reasoning delta is learnt as such, beside content
    reasoning = json.dumps({"choices": [{"index": 0, "delta": {"reasoning_content": "hm"}}]}).encode()
    templates.learn(reasoning, json.loads(reasoning))
    assert templates.text(reasoning.replace(b'"hm"', b'"so"')) == ("reasoning_content", "so")


def test_chunked_bodies_are_unframed_in_any_pieces():
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (b"data: one\n\n", b"x" * 300, b"\r\n\r\n"))
    body += b"1;ext=1\r\nz\r\n0\r\n\r\n"
    whole = Chunks()
    expected = b"data: one\n\n" + b"x" * 300 + b"\r\n\r\n" + b"z"
    assert whole.feed(body) == expected and whole.done
    rng = random.Random(3)
    for _ in range(200):
        chunks = Chunks()
        assert b"".join(chunks.feed(piece) for piece in _cuts(body, rng)) == expected and chunks.done
    with pytest.raises(Truncated, match="not hexadecimal"):
        Chunks().feed(b"zz\r\nab\r\n")
    with pytest.raises(Truncated, match="CR LF"):
        Chunks().feed(b"2\r\nabXX")


def test_the_stream_goes_on_its_own_socket_only_on_plain_http_without_a_proxy(monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert _wire_target("http://127.0.0.1:8000/v1") == (
        "127.0.0.1",
        8000,
        "/v1/chat/completions",
        "127.0.0.1:8000",
    )
    assert _wire_target("http://[::1]/x/v1") == ("::1", 80, "/x/v1/chat/completions", "[::1]")
    assert _wire_target("https://example.org/v1") is None
    assert _wire_target("http://user:pw@example.org/v1") is None
    monkeypatch.setenv("HTTP_PROXY", "http://proxy:3128")
    assert _wire_target("http://example.org/v1") is None
    monkeypatch.setenv("NO_PROXY", "example.org")
    assert _wire_target("http://example.org/v1") is not None


@pytest.mark.parametrize("reasoning_field", [None, "reasoning_content"])
def test_both_transports_tell_the_same_story(tmp_path, reasoning_field):
    from PIL import Image

    frame = tmp_path / "frame.png"
    Image.new("RGB", (64, 48), (10, 120, 200)).save(frame)
    told = []
    with FakeServer(chunk=3, reasoning_field=reasoning_field) as server:
        for own_socket in (True, False):
            with OpenAITeller(server.url, retries=0, backoff=0.0) as teller:
                assert (teller._wire is not None) is True
                if not own_socket:
                    teller._wire = None  # the SDK's client, as for https or behind a proxy
                telling = teller.tell([frame])
                told.append((telling.raw, telling.meta["usage"]["finish_reason"]))
    assert told[0] == told[1] and told[0][1] == "stop"
    assert told[0][0] == LIGHTHOUSE if reasoning_field is None else told[0][0].startswith("<think>\n")


def _answer(head: bytes, body: bytes):
    """A :class:`Response` read from a real socket pair: ``head`` and ``body`` sent, then the close."""
    import socket

    from storyreasoning.tell.wire import Headers, Response

    ours, theirs = socket.socketpair()
    theirs.sendall(body)
    theirs.close()
    headers = Headers()
    for line in head.decode().split("\r\n"):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Response(ours, 200, headers, b"")


def test_a_body_is_read_by_its_framing_and_its_encoding():
    import gzip

    events = b"data: one\n\ndata: two\n\n"
    framed = b"%x\r\n%s\r\n0\r\n\r\n" % (len(events), events)
    assert b"".join(_answer(b"Transfer-Encoding: chunked", framed).blocks()) == events
    assert b"".join(_answer(b"Content-Length: 11", events).blocks()) == events[:11]
    assert b"".join(_answer(b"X-Any: 1", events).blocks()) == events  # the close ends it
    packed = gzip.compress(events)
    framed = b"%x\r\n%s\r\n0\r\n\r\n" % (len(packed), packed)
    both = b"Transfer-Encoding: chunked\r\nContent-Encoding: gzip"
    assert b"".join(_answer(both, framed).blocks()) == events
    with pytest.raises(Truncated, match="closed before the end"):
        b"".join(_answer(b"Transfer-Encoding: chunked", framed[:20]).blocks())
    with pytest.raises(Truncated, match="compressed body is damaged"):
        b"".join(_answer(b"Content-Encoding: gzip", b"not gzip at all").blocks())


@pytest.mark.parametrize("size", [b"-5", b"+5", b"0x5", b"5_0", b"", b" ", b"1" * 16])
def test_a_chunk_size_is_hexadecimal_digits_only(size):
    # int(..., 16) takes a sign, a 0x prefix and underscores; a chunk size is none of them
    with pytest.raises(Truncated, match="not hexadecimal"):
        Chunks().feed(size + b"\r\nhello\r\n0\r\n\r\n")


def test_a_chunk_size_may_have_spaces_and_an_extension():
    assert Chunks().feed(b"5 \r\nhello\r\nA;name=x\r\n0123456789\r\n0\r\n\r\n") == b"hello0123456789"


def test_a_compressed_body_is_inflated_a_bounded_piece_at_a_time():
    import gzip

    from storyreasoning.tell.wire import INFLATED_PIECE

    size = 40 * INFLATED_PIECE + 7  # 40 MiB of zeros in about 40 KiB: each read inflates to a bounded piece
    packed = gzip.compress(b"\0" * size)
    assert len(packed) < 100_000
    pieces = [len(block) for block in _answer(b"Content-Encoding: gzip", packed).blocks()]
    assert sum(pieces) == size and max(pieces) <= INFLATED_PIECE


def test_an_event_with_no_end_is_refused_past_its_bound(monkeypatch):
    from storyreasoning.tell import sse

    monkeypatch.setattr(sse, "MAX_EVENT", 4096)
    reader = EventReader()
    assert reader.feed(b"data: " + b"x" * 3000) == []
    assert reader.feed(b"y" * 1000 + b"\n\ndata: z") == [b"x" * 3000 + b"y" * 1000]  # ended within the bound
    with pytest.raises(sse.EventTooLong, match="no blank line"):
        for _ in range(5):
            reader.feed(b"z" * 1000)


def test_a_server_streaming_one_endless_event_ends_the_story_in_one_line(tmp_path, monkeypatch):
    """A real socket server that answers the chat request with one event that never ends: the teller
    stops at the bound and says the server is broken, with what came before it."""
    import socket
    import threading

    from PIL import Image

    from storyreasoning.tell import sse
    from storyreasoning.tell.base import TellError

    monkeypatch.setattr(sse, "MAX_EVENT", 64 * 1024)
    frame = tmp_path / "frame.png"
    Image.new("RGB", (64, 48), (10, 120, 200)).save(frame)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    sent = []

    def serve():
        conn, _ = listener.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            head, _, body = request.partition(b"\r\n\r\n")
            length = int(
                next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))[15:]
            )
            while len(body) < length:
                body += conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            first = b'data: {"choices":[{"index":0,"delta":{"content":"Once"},"finish_reason":null}]}\n\n'
            try:
                for piece in [first, b"data: " + b"x" * 8192] + [b"x" * 8192] * 40:
                    conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                    sent.append(len(piece))
            except OSError:
                pass  # the teller hung up

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with OpenAITeller(f"http://127.0.0.1:{port}/v1", model="m", retries=0, backoff=0.0) as teller:
        assert teller._wire is not None  # the stream on its own socket
        with pytest.raises(TellError) as info:
            teller.tell([frame])
    thread.join(10)
    listener.close()
    message = str(info.value)
    assert "sent a malformed event (an event longer than 64 KiB, with no blank line to end it)" in message
    assert "OpenAI-compatible server" in message and "\n" not in message
    assert info.value.partial == "Once"
