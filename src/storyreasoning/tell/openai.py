"""The storyteller behind an OpenAI-compatible server: vLLM, ``transformers serve``, any other.

``OpenAITeller("http://localhost:8000")`` talks to ``/v1/chat/completions`` with the
standard library alone (``http.client``), so the core needs no HTTP client package. The
endpoint may be given as ``http://host:port``, ``http://host:port/v1`` or with a
trailing slash; the model is the one the server lists when none is named.

Each story is one streamed request: the system turn (the storyteller prompt), then a
user turn with the images as ``data:`` URLs (PNG and JPEG files are sent byte for byte,
anything else is encoded as PNG) and the prompt text, in the prompt's order. Servers
that split the reasoning from the answer (vLLM's reasoning parsers send
``reasoning_content`` or ``reasoning``) get it wrapped back into ``<think>…</think>``,
so the telling has its chain-of-thought either way (an output cut off at the token
limit inside the reasoning is left unclosed, as the model left it).

A pixel budget (``min_pixels``/``max_pixels``) is sent as the ``mm_processor_kwargs``
extra field, which vLLM applies per request; ``transformers serve`` rejects unknown
fields, so leave the budget unset there (it uses the model's own processor budget).

Failures end in a :class:`~storyreasoning.tell.TellError` whose message names the
problem and the fix: no server, a timeout, a rejected key, an unknown model (with the
models the server has), vLLM's per-prompt image limit (with the flag that raises it).
Connection errors, 429 and 5xx answers are retried with exponential backoff, but only
before any text has been streamed; a stream that breaks later is never retried, and
the error carries the text received so far in ``partial``.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import StoryReasoningError, UsageError
from .base import Prompt, Sampling, Story, Teller, TellError, Usage

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 60.0  # seconds; a longer Retry-After is cut to this


def normalize_endpoint(endpoint: str) -> str:
    """The API base URL, ending in ``/v1``: ``http://h:8000``, ``http://h:8000/v1/`` and ``h:8000`` all give ``http://h:8000/v1``."""
    text = (endpoint or "").strip()
    if not text:
        raise UsageError(
            "the endpoint is empty; pass the server's URL, e.g. --endpoint http://localhost:8000/v1"
        )
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{endpoint!r} is not an http(s) URL; pass e.g. --endpoint http://localhost:8000/v1")
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise UsageError(
            f"{endpoint!r} has a malformed port; pass e.g. --endpoint http://localhost:8000/v1"
        ) from None
    path = parts.path.rstrip("/")
    for suffix in ("/chat/completions", "/models"):
        if path.endswith("/v1" + suffix):
            path = path[: -len(suffix)]
    if not path.endswith("/v1"):
        path += "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def public_url(url: str) -> str:
    """``url`` without any ``user:password@`` part (for messages and manifests)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[1], parts.path, parts.query, parts.fragment))


def server_message(body: bytes | str) -> str:
    """The error message in a server's answer: ``{"error": {"message"}}``, ``{"error": "…"}``, ``{"detail"}``, ``{"message"}``."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:500]
    return _message_of(data) or " ".join(text.split())[:500]


def _message_of(data: Any) -> str:
    if isinstance(data, str):
        return data
    if isinstance(data, list):  # FastAPI validation errors: [{"msg": …}, …]
        return "; ".join(filter(None, (_message_of(item) for item in data)))
    if not isinstance(data, dict):
        return ""
    for key in ("error", "detail", "message", "msg"):
        if data.get(key):
            return _message_of(data[key])
    return ""


def is_image_limit(message: str) -> bool:
    """Whether a server message is vLLM's per-prompt image limit ("At most 1 image(s) may be provided …")."""
    low = message.lower()
    return "image" in low and any(
        key in low for key in ("at most", "limit_mm_per_prompt", "limit-mm-per-prompt")
    )


@dataclass
class _Failure(Exception):
    """One attempt failed; ``retry`` says whether another attempt may help."""

    message: str
    retry: bool = False
    wait: float | None = None  # the server's Retry-After, when it gave one


class _Exchange:
    """One request's connection, its socket and its response, closed together (from any thread)."""

    def __init__(self, conn: http.client.HTTPConnection) -> None:
        self.conn = conn
        self.sock: socket.socket | None = None
        self.response: http.client.HTTPResponse | None = None

    def close(self) -> None:
        try:
            if self.sock is not None:  # wakes a reader blocked in another thread
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self.sock.close()
            if self.response is not None:
                self.response.close()
            self.conn.close()
        except Exception:  # pragma: no cover - closing never raises
            pass


class _Group:
    """The requests of one :meth:`OpenAITeller.tell_many` call, so that abandoning it can end them."""

    def __init__(self) -> None:
        self.cancelled = False
        self.exchanges: set[_Exchange] = set()


class OpenAITeller(Teller):
    """Tell stories through an OpenAI-compatible ``/v1/chat/completions`` endpoint.

    ``timeout`` bounds each wait on the server (connecting, the first byte, every next
    byte), not the whole story. ``concurrency`` is how many requests :meth:`tell_many`
    keeps in flight. After a connection error, a 429 or a 5xx answer up to ``retries``
    more attempts are made, waiting ``backoff``, ``2*backoff``, ``4*backoff`` … seconds
    (or the server's Retry-After), never once text has been streamed. ``min_pixels``
    and ``max_pixels`` go to the server as ``mm_processor_kwargs`` (vLLM). With
    ``model=None`` the server's first listed model is used (asked at construction).
    """

    backend = "openai"

    def __init__(
        self,
        endpoint: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 600.0,
        concurrency: int = 8,
        retries: int = 3,
        backoff: float = 1.0,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
    ) -> None:
        if timeout <= 0:
            raise UsageError(f"--timeout must be more than 0 seconds, got {timeout:g}")
        if retries < 0 or backoff < 0:
            raise UsageError(f"retries and backoff must be at least 0, got {retries} and {backoff:g}")
        if min_pixels is not None and max_pixels is not None and min_pixels > max_pixels:
            raise UsageError(f"min pixels {min_pixels} exceed max pixels {max_pixels}")
        self.base_url = normalize_endpoint(endpoint)
        self.endpoint = public_url(self.base_url)
        parts = urlsplit(self.base_url)
        self._scheme, self._host, self._port = parts.scheme, parts.hostname or "", parts.port
        self._path = parts.path
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.timeout = float(timeout)
        self.concurrency = max(1, int(concurrency))
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[_Exchange] = set()
        self._closed = False
        self.model = model or self._discover_model()

    # -- state -----------------------------------------------------------------------------
    @property  # type: ignore[override]
    def last_usage(self) -> Usage | None:
        """The usage of the last story streamed in the calling thread (``tell_many`` runs several at once)."""
        return getattr(self._local, "usage", None)

    @last_usage.setter
    def last_usage(self, value: Usage | None) -> None:
        self._local.usage = value

    def describe(self) -> dict:
        out = {"backend": self.backend, "model": self.model, "endpoint": self.endpoint}
        if self.min_pixels is not None:
            out["min_pixels"] = self.min_pixels
        if self.max_pixels is not None:
            out["max_pixels"] = self.max_pixels
        return out

    def close(self) -> None:
        """Close the connections still open; streams in flight end with a TellError."""
        self._closed = True
        with self._lock:
            exchanges, self._open = list(self._open), set()
        for exchange in exchanges:
            exchange.close()

    def _stopped(self) -> bool:
        group = getattr(self._local, "group", None)
        return self._closed or (group is not None and group.cancelled)

    # -- HTTP ------------------------------------------------------------------------------
    def _send(self, method: str, route: str, body: dict | None = None) -> _Exchange:
        """Send one request and read the answer's head; connection errors become a :class:`_Failure`."""
        if self._stopped():
            raise _Failure("the teller was closed; make a new one")
        if self._scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        exchange = _Exchange(conn)
        group = getattr(self._local, "group", None)
        with self._lock:
            self._open.add(exchange)
            if group is not None:
                group.exchanges.add(exchange)
        from .. import __version__

        headers = {"Authorization": f"Bearer {self.api_key}", "User-Agent": f"storyreasoning/{__version__}"}
        data = None
        if body is not None:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            headers.update({"Content-Type": "application/json", "Accept": "text/event-stream"})
        try:
            conn.connect()
            exchange.sock = conn.sock
            if self._stopped():
                raise _Failure("the teller was closed while a request was in flight; make a new one")
            conn.request(method, self._path + route, body=data, headers=headers)
            exchange.response = conn.getresponse()
        except Exception as exc:
            self._release(exchange)
            raise self._network_failure(exc) from exc
        except BaseException:
            self._release(exchange)
            raise
        return exchange

    def _release(self, exchange: _Exchange) -> None:
        group = getattr(self._local, "group", None)
        with self._lock:
            self._open.discard(exchange)
            if group is not None:
                group.exchanges.discard(exchange)
        exchange.close()

    def _network_failure(self, exc: BaseException) -> _Failure:
        if self._stopped():
            return _Failure("the teller was closed while a request was in flight; make a new one")
        if isinstance(exc, (TimeoutError, socket.timeout)):
            return _Failure(
                f"the server at {self.endpoint} sent nothing for {self.timeout:g} seconds; "
                "raise --timeout or check that the server is not overloaded"
            )
        if isinstance(exc, ConnectionRefusedError):
            return _Failure(
                f"no server at {self.endpoint}; start one with `storyreasoning serve --model …` or check --endpoint",
                retry=True,
            )
        if isinstance(exc, socket.gaierror):
            return _Failure(f"cannot resolve the host {self._host!r} of {self.endpoint}; check --endpoint")
        if isinstance(exc, ssl.SSLError):
            return _Failure(
                f"TLS with {self.endpoint} failed ({exc}); check the URL's scheme and certificate"
            )
        detail = str(exc) or type(exc).__name__
        return _Failure(
            f"the connection to {self.endpoint} failed ({detail}); check that the server is running",
            retry=True,
        )

    def _status_failure(self, status: int, body: bytes, headers: Any, route: str) -> _Failure:
        message = server_message(body) or http.client.responses.get(status, "no message")
        where = f"the server at {self.endpoint}"
        low = message.lower()
        if status in (401, 403):
            return _Failure(
                f"{where} refused the API key (HTTP {status}: {message}); pass the right one with --api-key "
                "or set OPENAI_API_KEY"
            )
        if status in RETRY_STATUSES:
            return _Failure(
                f"{where} failed (HTTP {status}: {message}); check the server's log",
                retry=True,
                wait=_retry_after(headers),
            )
        if is_image_limit(message):
            return _Failure(
                f"{where} takes fewer images per prompt than this story has ({message}); restart it with a larger "
                "--limit-mm-per-prompt (storyreasoning serve --max-images N derives it) or pass fewer images"
            )
        if "mm_processor_kwargs" in low:
            return _Failure(
                f"{where} does not accept a per-request pixel budget ({message}); leave min/max pixels unset "
                "for this server or serve the model with vLLM"
            )
        if status in (400, 404) and (
            "pinned" in low
            or (
                "model" in low
                and any(key in low for key in ("does not exist", "not found", "unknown", "no model"))
            )
        ):
            return _Failure(f"{where} has no model {self.model!r} ({message}); {self._models_hint()}")
        if status == 404:
            return _Failure(
                f"{self.endpoint}{route} was not found (HTTP 404: {message}); check that --endpoint is the base URL "
                "of an OpenAI-compatible server, e.g. http://localhost:8000/v1"
            )
        return _Failure(f"{where} rejected the request (HTTP {status}: {message})")

    def _models_hint(self) -> str:
        try:
            models = self.list_models()
        except TellError:
            return "pass a model the server serves with --served-model"
        if not models:
            return "the server lists no models; check how it was started"
        return f"it serves {', '.join(models)}; pass one with --served-model"

    def _retry(self, failure: _Failure, attempt: int) -> bool:
        """Whether to try again after ``failure`` (sleeping the backoff first)."""
        if not failure.retry or attempt >= self.retries or self._stopped():
            return False
        delay = self.backoff * (2**attempt)
        if failure.wait is not None:
            delay = max(delay, min(failure.wait, MAX_RETRY_AFTER))
        if delay > 0:
            time.sleep(delay)
        return True

    @staticmethod
    def _give_up(failure: _Failure, attempt: int, partial: str = "") -> TellError:
        tries = f" (gave up after {attempt + 1} attempts)" if attempt else ""
        return TellError(failure.message + tries, partial=partial)

    def _get_json(self, route: str) -> Any:
        attempt = 0
        while True:
            try:
                exchange = self._send("GET", route)
                try:
                    response = exchange.response
                    assert response is not None
                    try:
                        body = response.read()
                    except (OSError, http.client.HTTPException) as exc:
                        raise self._network_failure(exc) from exc
                    if response.status != 200:
                        raise self._status_failure(response.status, body, response.headers, route)
                finally:
                    self._release(exchange)
                try:
                    return json.loads(body)
                except ValueError:
                    raise _Failure(
                        f"{self.endpoint}{route} did not answer JSON; check that --endpoint is the base URL of an "
                        "OpenAI-compatible server"
                    ) from None
            except _Failure as failure:
                if not self._retry(failure, attempt):
                    raise self._give_up(failure, attempt) from None
                attempt += 1

    def list_models(self) -> list[str]:
        """The model ids the server lists at ``/v1/models``."""
        data = self._get_json("/models")
        items = data.get("data") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise TellError(
                f"{self.endpoint}/models did not list models; check that --endpoint is the base URL of an "
                "OpenAI-compatible server"
            )
        return [str(item["id"]) for item in items if isinstance(item, dict) and item.get("id")]

    def _discover_model(self) -> str:
        models = self.list_models()
        if not models:
            raise TellError(
                f"the server at {self.endpoint} lists no models; start it with a model "
                "(storyreasoning serve --model …) or name one with --served-model"
            )
        return models[0]

    # -- one story -------------------------------------------------------------------------
    def request_body(
        self, images: Sequence[Any], prompt: Prompt = Prompt(), sampling: Sampling = Sampling()
    ) -> dict:
        """The JSON body of one story's ``/chat/completions`` request."""
        from ..format.prompts import openai_messages

        if not images:
            raise UsageError("a story needs at least one image")
        messages = openai_messages(
            [_sendable(image) for image in images],
            prompt.text,
            system_prompt=prompt.system,
            order=prompt.order,  # type: ignore[arg-type]
        )
        body = self._chat_body(messages, sampling)
        pixels = {
            key: value
            for key, value in (("min_pixels", self.min_pixels), ("max_pixels", self.max_pixels))
            if value is not None
        }
        if pixels:
            body["mm_processor_kwargs"] = pixels
        return body

    def stream(
        self, images: Sequence[Any], *, prompt: Prompt = Prompt(), sampling: Sampling = Sampling()
    ) -> Iterator[str]:
        yield from self._stream_body(self.request_body(images, prompt, sampling))

    def complete(self, messages: list[dict], *, sampling: Sampling = Sampling()) -> str:
        """The answer to any chat (OpenAI-style ``messages``, images as data URLs), with the same
        streaming, retries, timeouts and errors as :meth:`stream`; for tools that hold a
        conversation (the dataset builder's writers)."""
        return "".join(self._stream_body(self._chat_body(messages, sampling)))

    def _chat_body(self, messages: list[dict], sampling: Sampling) -> dict:
        body: dict = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        return body

    def _stream_body(self, body: dict) -> Iterator[str]:
        self.last_usage = None
        produced: list[str] = []
        attempt = 0
        while True:
            exchange: _Exchange | None = None
            think = _ThinkWrapper()
            usage = Usage()
            try:
                exchange = self._send("POST", "/chat/completions", body)
                response = exchange.response
                assert response is not None
                if response.status != 200:
                    try:
                        error_body = response.read()
                    except (OSError, http.client.HTTPException):
                        error_body = b""
                    raise self._status_failure(
                        response.status, error_body, response.headers, "/chat/completions"
                    )
                finished = False
                for event in _sse_events(response):
                    if event.strip() == "[DONE]":
                        finished = True
                        break
                    data = self._event(event)
                    _read_usage(data, usage)
                    for choice in data.get("choices") or []:
                        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                            continue
                        delta = choice.get("delta") or {}
                        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                        for chunk in think.feed(reasoning, delta.get("content")):
                            produced.append(chunk)
                            yield chunk
                        if choice.get("finish_reason"):
                            usage.finish_reason = choice["finish_reason"]
                            finished = True
                if not finished:
                    raise _Failure(
                        f"the server at {self.endpoint} ended the stream before the output was finished; "
                        "check the server's log and try again",
                        retry=True,
                    )
            except (OSError, http.client.HTTPException, _Failure) as exc:
                failure = exc if isinstance(exc, _Failure) else self._network_failure(exc)
                if exchange is not None:
                    self._release(exchange)
                if not produced and self._retry(failure, attempt):
                    attempt += 1
                    continue
                partial = "".join(produced)
                if (
                    partial
                    and not isinstance(exc, _Failure)
                    and not isinstance(exc, (TimeoutError, socket.timeout))
                ):
                    failure = _Failure(
                        f"the stream from {self.endpoint} broke after {len(partial)} characters "
                        f"({str(exc) or type(exc).__name__}); the partial output is kept, try again"
                    )
                raise self._give_up(failure, attempt, partial) from None
            finally:
                if exchange is not None:
                    self._release(exchange)
            for chunk in think.close(cut=usage.finish_reason == "length"):
                produced.append(chunk)
                yield chunk
            self.last_usage = usage
            return

    def _event(self, event: str) -> dict:
        try:
            data = json.loads(event)
        except ValueError:
            raise _Failure(
                f"the server at {self.endpoint} sent a malformed event ({event[:200]!r})"
            ) from None
        if not isinstance(data, dict):
            return {}
        if data.get("error") and not data.get("choices"):
            raise _Failure(
                f"the server at {self.endpoint} reported an error mid-stream ({_message_of(data)}); "
                "check the server's log"
            )
        return data

    # -- many stories ----------------------------------------------------------------------
    def _tell_one(self, group: _Group, story: Story, prompt: Prompt, sampling: Sampling) -> Any:
        self._local.group = group
        try:
            return self.tell(story.images, prompt=prompt, sampling=sampling)
        except TellError as exc:
            return exc
        except StoryReasoningError as exc:  # an unreadable image, …: recorded with the story
            return TellError(str(exc))
        except Exception as exc:  # one story's failure must not end the run
            return TellError(f"telling failed: {type(exc).__name__}: {exc}")
        finally:
            self._local.group = None

    def tell_many(
        self, stories: Iterable[Story], *, prompt: Prompt = Prompt(), sampling: Sampling = Sampling()
    ) -> Iterator[tuple[Story, Any]]:
        """Up to ``concurrency`` requests in flight; yields ``(story, telling | TellError)`` as each finishes.

        Stories are drawn from ``stories`` only as slots free up, so a lazy dataset is
        never read far ahead. Leaving the loop early (an exception, Ctrl-C, ``break``)
        ends the requests still in flight.
        """
        source = iter(stories)
        group = _Group()
        pending: dict[Future, Story] = {}
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="storyreasoning-openai")
        try:
            exhausted = False
            while True:
                while not exhausted and len(pending) < self.concurrency:
                    story = next(source, None)
                    if story is None:
                        exhausted = True
                    else:
                        pending[pool.submit(self._tell_one, group, story, prompt, sampling)] = story
                if not pending:
                    return
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield pending.pop(future), future.result()
        finally:
            if pending:  # abandoned: stop retries and end the streams in flight
                group.cancelled = True
                for future in pending:
                    future.cancel()
                with self._lock:
                    exchanges = list(group.exchanges)
                for exchange in exchanges:
                    exchange.close()
            pool.shutdown(wait=True)


class _ThinkWrapper:
    """Turns (reasoning, content) deltas into one text with the reasoning inside ``<think>…</think>``."""

    def __init__(self) -> None:
        self.state = "before"  # before -> thinking -> answering
        self.last = ""  # the last character written inside <think>

    def feed(self, reasoning: str | None, content: str | None) -> list[str]:
        out: list[str] = []
        if reasoning:
            if self.state == "before":
                out.append("<think>" if reasoning.startswith("\n") else "<think>\n")
                self.state = "thinking"
            if self.state == "thinking":
                out.append(reasoning)
                self.last = reasoning[-1]
            else:  # reasoning after the answer started: keep it, as text
                out.append(reasoning)
        if content:
            if self.state == "thinking":
                out.append(self._closing(content))
            self.state = "answering"
            out.append(content)
        return out

    def _closing(self, following: str = "") -> str:
        head = "" if self.last == "\n" else "\n"
        tail = "" if following.startswith("\n") else "\n"
        return f"{head}</think>{tail}"

    def close(self, cut: bool = False) -> list[str]:
        """The closing tag, if the reasoning is still open; none when the output was ``cut`` at the token limit
        (the model never closed it: the parse then says the CoT is unfinished, as for local weights)."""
        if self.state == "thinking" and not cut:
            self.state = "answering"
            return [self._closing()]
        return []


def _sse_events(response: http.client.HTTPResponse) -> Iterator[str]:
    """The ``data`` of each server-sent event (multi-line data joined by newlines)."""
    data: list[str] = []
    while True:
        raw = response.readline()
        if not raw:
            if data:
                yield "\n".join(data)
            return
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue  # a comment (keep-alive)
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)


def _read_usage(data: dict, usage: Usage) -> None:
    got = data.get("usage")
    if isinstance(got, dict):
        if got.get("prompt_tokens") is not None:
            usage.prompt_tokens = int(got["prompt_tokens"])
        if got.get("completion_tokens") is not None:
            usage.completion_tokens = int(got["completion_tokens"])


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _sendable(image: Any) -> Any:
    """What :func:`~storyreasoning.format.images.image_data_url` should encode: a PNG/JPEG file's own bytes, else a PIL image."""
    from ..format.images import open_image, read_image_bytes, sniff_mime

    if hasattr(image, "bytes") and callable(image.bytes) and hasattr(image, "open"):  # a data.Frame
        data, name = image.bytes(), getattr(image, "name", None)
    elif isinstance(image, (str, Path)):
        data, name = read_image_bytes(image), str(image)
    elif isinstance(image, (bytes, bytearray, memoryview)):
        data, name = bytes(image), None
    else:
        return image  # a PIL image: encoded as PNG
    if sniff_mime(data[:16]) in ("image/png", "image/jpeg"):
        return data
    return open_image(data, name=name)
