"""Reading a chat-completion stream cheaply: server-sent events from bytes, and the usual event without a JSON parse.

The OpenAI SDK reads a stream line by line and builds a pydantic model of every event;
at one token per event that cost the client more CPU than a GPU server spends making
the token (bench/client.py measures it). :class:`OpenAITeller` keeps the SDK for the
request (its retries, status errors and connection handling) and reads the answer's
bytes with these two:

* :class:`EventReader` splits the bytes into events by the SSE rules (an event ends at a
  blank line; CR LF and CR end lines as LF does; its ``data:`` lines are joined with
  newlines; comments and other fields are passed over), a whole network read at a time,
  and gives each event's data, up to ``[DONE]``;
* :class:`DeltaTemplates` recognises the event servers send for almost every token: the
  same bytes as the last one but for the text of the delta (vLLM repeats the id, the
  creation time and the model in every chunk). Once an event has been parsed as JSON
  and found to be a plain text delta of the first choice, with no finish reason and no
  usage, the bytes around its text are kept as a template, after checking that another
  text in their place parses to the same event with that text (so the template is
  sound whatever the server's key order or spacing). An event that is the template
  around a JSON string without escapes is that delta with that string: no JSON parse,
  no object built. Anything else (escapes, another shape, a finish reason, usage) is
  parsed as JSON and read field by field as before.

We write these rather than use an SSE library because the point is to do less per
event than a general reader does, and because the template needs the event's bytes.
"""

from __future__ import annotations

import json
import re
from typing import Any

DONE = b"[DONE]"
DELTA_FIELDS = ("content", "reasoning_content", "reasoning")  # the text fields of a delta
MAX_EVENT = 16 << 20  # bytes of one event: a server sending more without a blank line is broken
MAX_TEMPLATES = 4  # content and reasoning, and a server that changes its shape once
PROBE = "probe \u00e9 text"  # put in a template's place to check it
# what a JSON string's bytes may not hold to be read without a parse: a quote, a backslash, control characters
_NOT_PLAIN = re.compile(rb'["\\\x00-\x1f]')


def event_data(event: bytes) -> bytes | None:
    """The data of one SSE event (its lines, LF-terminated, without the blank line): its ``data:``
    fields joined by newlines, one leading space cut from each; None when it has none."""
    data = []
    for line in event.split(b"\n"):
        if not line or line[:1] == b":":  # a comment (keep-alive)
            continue
        name, _, value = line.partition(b":")
        if name == b"data":
            data.append(value[1:] if value[:1] == b" " else value)
    return b"\n".join(data) if data else None


class EventTooLong(ValueError):
    """An event went on past :data:`MAX_EVENT` bytes without its end (a blank line)."""


class EventReader:
    """The data of each event of a server-sent event stream, fed a block of bytes at a time.

    :meth:`feed` returns the data of the events the block completes (bytes, one per event,
    in order); an event cut across blocks waits for its end, up to :data:`MAX_EVENT` bytes
    (then :class:`EventTooLong`). ``done`` is set at ``[DONE]``, after which nothing more is read.
    """

    def __init__(self) -> None:
        self.done = False
        self._pending: list[bytes] = []  # bytes of an event not yet ended
        self._held = 0  # their length
        self._cr = False  # the last block ended with CR (its LF may start the next)

    def feed(self, block: bytes) -> list[bytes]:
        if self.done:
            return []
        if self._cr or b"\r" in block:  # CR LF and CR end lines as LF does
            if self._cr:
                block = b"\r" + block
            self._cr = block.endswith(b"\r")
            if self._cr:
                block = block[:-1]
            block = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if not block:
            return []
        pending = self._pending
        if b"\n\n" not in block and not (pending and pending[-1][-1:] == b"\n" and block[:1] == b"\n"):
            pending.append(block)  # no event ends in this block
            self._held += len(block)
            if self._held > MAX_EVENT:
                pending.clear()
                size = f"{MAX_EVENT >> 20} MiB" if MAX_EVENT >= 1 << 20 else f"{MAX_EVENT >> 10} KiB"
                raise EventTooLong(f"an event longer than {size}, with no blank line to end it")
            return []
        if pending:
            pending.append(block)
            block = b"".join(pending)
            pending.clear()
        end = block.rfind(b"\n\n")
        self._held = len(block) - end - 2
        if end + 2 < len(block):
            pending.append(block[end + 2 :])
        out: list[bytes] = []
        for event in block[:end].split(b"\n\n"):
            if event[:6] == b"data: " and b"\n" not in event:  # the usual event: one data line
                data: bytes | None = event[6:]
            else:
                data = event_data(event)
                if data is None:
                    continue
            if data[:6] == DONE:
                self.done = True
                pending.clear()
                break
            out.append(data)
        return out


class DeltaTemplates:
    """Events read without a JSON parse once one of their shape has been parsed (see the module's docstring)."""

    def __init__(self) -> None:
        self._templates: list[tuple[bytes, bytes, str]] = []  # the bytes before and after the text, its field
        self._tried = 0

    def text(self, data: bytes) -> tuple[str, str] | None:
        """``(field, text)`` when ``data`` is a known template around a plain JSON string; else None."""
        for before, after, name in self._templates:
            start, end = len(before), len(data) - len(after)
            if (
                end - start >= 2
                and data.startswith(before)
                and data.endswith(after)
                and data[start] == 0x22  # '"'
                and data[end - 1] == 0x22
                and not _NOT_PLAIN.search(data, start + 1, end - 1)
            ):
                try:
                    return name, data[start + 1 : end - 1].decode("utf-8")
                except UnicodeDecodeError:
                    return None
        return None

    def learn(self, data: bytes, event: Any) -> None:
        """Keep ``data`` (parsed as ``event``) as a template when it is a plain text delta that checks out."""
        if len(self._templates) >= MAX_TEMPLATES or self._tried >= 64:
            return
        name = _plain_delta(event)
        if name is None:
            return
        self._tried += 1
        key = b'"%s":' % name.encode()
        if data.count(key) != 1:
            return
        start = data.index(key) + len(key)
        while data[start : start + 1] in (b" ", b"\t", b"\n", b"\r"):
            start += 1
        end = _string_end(data, start)
        if end is None:
            return
        before, after = data[:start], data[end:]
        if any(before == b and after == a for b, a, _ in self._templates):
            return
        try:
            again = json.loads(before + json.dumps(PROBE).encode() + after)
        except ValueError:
            return
        choice = event["choices"][0]
        if again == {**event, "choices": [{**choice, "delta": {name: PROBE}}]}:
            self._templates.append((before, after, name))


def _plain_delta(event: Any) -> str | None:
    """The delta field of an event that is one text delta of the first choice and nothing else."""
    if type(event) is not dict or event.get("usage") is not None or "error" in event:
        return None
    choices = event.get("choices")
    if type(choices) is not list or len(choices) != 1 or type(choices[0]) is not dict:
        return None
    choice = choices[0]
    if choice.get("index", 0) not in (0, None) or choice.get("finish_reason") is not None:
        return None
    delta = choice.get("delta")
    if type(delta) is not dict or len(delta) != 1:
        return None
    ((name, value),) = delta.items()
    return name if name in DELTA_FIELDS and type(value) is str else None


def _string_end(data: bytes, start: int) -> int | None:
    """The index after the JSON string that starts at ``data[start]`` (None when none starts there)."""
    if data[start : start + 1] != b'"':
        return None
    at = start + 1
    while True:
        at = data.find(b'"', at)
        if at < 0:
            return None
        slashes = 0
        while data[at - 1 - slashes] == 0x5C:  # '\\'
            slashes += 1
        if slashes % 2 == 0:
            return at + 1
        at += 1
