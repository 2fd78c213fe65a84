"""The storyteller behind an OpenAI-compatible server: vLLM, ``transformers serve``, any other.

``OpenAITeller("http://localhost:8000")`` talks to ``/v1/chat/completions`` through the
official OpenAI Python SDK (``openai``, imported when a teller is made, so importing
this module stays cheap). The endpoint may be given as ``http://host:port``,
``http://host:port/v1`` or with a trailing slash (none: ``$OPENAI_BASE_URL``); the key
is ``api_key``, else ``$OPENAI_API_KEY``, else ``EMPTY`` (what vLLM accepts when it
wants none); the model is the one the server lists when none is named.

The answer's stream is read without the SDK's per-event models (:mod:`.sse`), and on a
plain ``http://`` endpoint without a proxy the chat request goes on a socket of its own
whose chunked answer is unframed a network read at a time (:mod:`.wire`): at one token
per event, the SDK's pydantic models and its HTTP client's per-chunk layers cost the
client about 300 µs of CPU per token, now about 10 (``bench/client.py``). The request,
the retries and every error's wording are the same on both paths.

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
models the server has), vLLM's per-prompt image limit (with the flag that raises it),
an event that is not what the API promises, a story past its deadline. Connection
errors, 429 and 5xx answers are retried with exponential backoff, but only before any
text has been streamed; a stream that breaks later is never retried, and the error
carries the text received so far in ``partial``. The error's ``at_endpoint`` says
whether the server, not the story, failed (a batch run stops after a few in a row).

Two clocks bound a story. ``timeout`` bounds each wait (connecting, the first byte,
every next byte); ``deadline`` bounds the whole story, retries and their waits
included, so a server that keeps the connection alive with comments or trickles a few
characters at a time cannot hold a story forever. By default the deadline follows the
story's length (one second per ``max_new_tokens`` token, at least ten minutes); when it
passes, the request's socket is shut and the story ends with the text received so far.

The retries are ours, not the SDK's (it is made with ``max_retries=0``): the SDK retries
only until the answer's head arrives, so it cannot retry a stream that breaks before
its first text, and it retries timeouts too, which would multiply a long ``timeout``.
One loop with one bound (``retries``) covers both. The SDK cannot end a request from
another thread either (closing a response does not wake a thread blocked reading it),
so the teller keeps the socket of each request in flight, through the HTTP client's
documented ``trace`` and ``network_stream`` extensions, and shuts it down on
:meth:`OpenAITeller.close` or when a :meth:`OpenAITeller.tell_many` loop is left.

**Several candidates of one story** (:meth:`OpenAITeller.tell_samples`, ``tell-dataset
--samples N``): one request with the API's ``n``, so vLLM fills the prompt and encodes the
images once for all N. The stream interleaves the choices, each event naming its
``index``; the first is streamed as always, the others are gathered beside it. A server
that answers fewer choices than asked (``transformers serve`` ignores ``n``) is said once,
and the missing candidates are asked one request each (candidate k with seed + k when a
seed is set, so they differ and stay reproducible): never fewer candidates than asked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import StoryReasoningError, UsageError, json_kind
from .base import Prompt, Sampling, Story, Teller, TellError, Usage
from .wire import Truncated

_log = logging.getLogger("storyreasoning.openai")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 60.0  # seconds; a longer Retry-After is cut to this
DEADLINE_FLOOR = 600.0  # seconds: the least a derived deadline gives a story (or a /models request)
SECONDS_PER_TOKEN = 1.0  # a derived deadline: a server slower than this over a whole story is stalled
# the request fields the SDK's ``chat.completions.create`` takes by name; any other goes as ``extra_body``
CHAT_FIELDS = (
    "model", "messages", "stream", "stream_options", "max_tokens", "temperature", "top_p", "seed", "n",
)  # fmt: skip
# the packages the SDK's HTTP client raises from (httpx before openai 2, httpx2 after)
TRANSPORT_PACKAGES = frozenset({"httpx", "httpx2", "httpcore", "httpcore2", "h11"})


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


def story_deadline(deadline: float | None, max_new_tokens: int | None = None) -> float | None:
    """The seconds one story may take: ``deadline`` as given (0: no limit, None), else derived from
    the story's length: one second per ``max_new_tokens`` token, at least :data:`DEADLINE_FLOOR`."""
    if deadline is None:
        return max(DEADLINE_FLOOR, SECONDS_PER_TOKEN * (max_new_tokens or 0))
    return float(deadline) or None


def public_url(url: str) -> str:
    """``url`` without any ``user:password@`` part (for messages and manifests)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[1], parts.path, parts.query, parts.fragment))


def server_message(body: bytes | str) -> str:
    """The error message in a server's answer: ``{"error": {"message"}}``, ``{"error": "…"}``, ``{"detail"}``,
    ``{"message"}``, else its text; made one line of at most :data:`MESSAGE_CHARS` characters."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        message = _message_of(json.loads(text))
    except ValueError:
        message = _page_text(text) if text.lstrip()[:1] == "<" else ""
    # one line, and not a page: it goes into a one-line error (a server's JSON message may hold a traceback)
    line = " ".join((message or text).split())
    return line if len(line) <= MESSAGE_CHARS else line[: MESSAGE_CHARS - 1] + "…"


#: the most of a server's error message an error line quotes
MESSAGE_CHARS = 500


def _page_text(text: str) -> str:
    """The words of an HTML page (a proxy's or a web server's error page), without its head and tags."""
    import html
    import re

    text = re.sub(r"(?is)<(head|script|style)\b.*?</\1\s*>", " ", text)
    return html.unescape(re.sub(r"(?s)<[^>]*>", " ", text))


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
    broken: str | None = None  # the network error that broke a stream, for the message once text was kept
    at_endpoint: bool = False  # the server failed, not the story: the next story would fail the same way
    status: int | None = None  # the HTTP status, when the server answered one


class _Deadline:
    """The end of one story's time. When it passes, the sockets of the attempt in flight are shut
    (a thread blocked reading one wakes at once) and ``expired`` is set; ``seconds`` None: no end."""

    def __init__(self, seconds: float | None, lock: threading.Lock) -> None:
        self.seconds = seconds
        self.expired = False
        self.sockets: set[socket.socket] | None = None  # the attempt in flight's (guarded by ``lock``)
        self._lock = lock
        self._end = time.monotonic() + seconds if seconds else None
        self._timer: threading.Timer | None = None
        if seconds:
            self._timer = threading.Timer(seconds, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def left(self) -> float:
        """Seconds until the end (infinite without one)."""
        return float("inf") if self._end is None else self._end - time.monotonic()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self.sockets or ())
        for sock in sockets:
            _shut(sock)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


class _Group:
    """The requests of one :meth:`OpenAITeller.tell_many` call, so that abandoning it can end them."""

    def __init__(self) -> None:
        self.cancelled = False
        self.sockets: set[socket.socket] = set()


class OpenAITeller(Teller):
    """Tell stories through an OpenAI-compatible ``/v1/chat/completions`` endpoint.

    ``timeout`` bounds each wait on the server (connecting, the first byte, every next
    byte); ``deadline`` bounds the whole story, retries included (None: one second per
    ``max_new_tokens`` token, at least ten minutes; 0: no limit). ``concurrency`` is how
    many requests :meth:`tell_many` keeps in flight. After a connection error, a 429 or a 5xx answer up to ``retries``
    more attempts are made, waiting ``backoff``, ``2*backoff``, ``4*backoff`` … seconds
    (or the server's Retry-After), never once text has been streamed. ``min_pixels``
    and ``max_pixels`` go to the server as ``mm_processor_kwargs`` (vLLM). With
    ``model=None`` the server's first listed model is used (asked at construction).
    ``endpoint`` empty: ``$OPENAI_BASE_URL``; ``api_key`` None: ``$OPENAI_API_KEY``.
    """

    backend = "openai"

    def __init__(
        self,
        endpoint: str | None,
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 600.0,
        deadline: float | None = None,
        concurrency: int = 8,
        retries: int = 3,
        backoff: float = 1.0,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
    ) -> None:
        if not timeout > 0:  # NaN too
            raise UsageError(f"--timeout must be more than 0 seconds, got {timeout:g}")
        if deadline is not None and not 0 <= deadline < float("inf"):
            raise UsageError(f"--deadline must be 0 (no deadline) or more seconds, got {deadline:g}")
        if retries < 0 or backoff < 0:
            raise UsageError(f"retries and backoff must be at least 0, got {retries} and {backoff:g}")
        if min_pixels is not None and max_pixels is not None and min_pixels > max_pixels:
            raise UsageError(f"min pixels {min_pixels} exceed max pixels {max_pixels}")
        if not (endpoint or "").strip():
            endpoint = os.environ.get("OPENAI_BASE_URL", "")
            if not endpoint.strip():
                raise UsageError(
                    "no endpoint: pass the server's URL, e.g. --endpoint http://localhost:8000/v1, "
                    "or set OPENAI_BASE_URL"
                )
        self.base_url = normalize_endpoint(endpoint)
        self.endpoint = public_url(self.base_url)
        self._host = urlsplit(self.base_url).hostname or ""
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.timeout = float(timeout)
        self.deadline = None if deadline is None else float(deadline)
        self.concurrency = max(1, int(concurrency))
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()  # the sockets of the requests in flight
        self._closed = False
        self._reached = False  # the server answered once (its model list): check() need not ask again
        self.ignores_n = False  # it answered one completion of n: ask one request a candidate
        self._short_said = False  # a server answering fewer choices than n is said once
        self.warn: Callable[[str], None] = _log.warning  # how a notice (a server ignoring n) is said, once
        self._client = self._make_client()
        self._wire = _wire_target(self.base_url)  # plain HTTP without a proxy: the stream on its own socket
        self.model = model or self._discover_model()

    def _make_client(self) -> Any:
        """The SDK's client: our timeout, no retries of its own, hooks that see each request's socket."""
        import openai

        from .. import __version__

        http_client = openai.DefaultHttpxClient(
            event_hooks={"request": [self._on_request], "response": [self._on_response]}
        )
        return openai.OpenAI(
            base_url=self.base_url,
            api_key=self.api_key,
            timeout=self.timeout,
            max_retries=0,
            default_headers={"User-Agent": f"storyreasoning/{__version__}"},
            http_client=http_client,
        )

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
        """End the requests in flight (their streams end with a TellError) and release the connections."""
        self._closed = True
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            _shut(sock)
        with contextlib.suppress(Exception):
            self._client.close()

    def _stopped(self) -> bool:
        group = getattr(self._local, "group", None)
        return self._closed or (group is not None and group.cancelled)

    # -- the sockets in flight -------------------------------------------------------------
    def _on_request(self, request: Any) -> None:
        """HTTP client hook: trace the request, to see its connection open (before any answer)."""
        request.extensions["trace"] = self._trace

    def _trace(self, event: str, info: dict) -> None:
        if event.endswith((".connect_tcp.complete", ".start_tls.complete")):
            self._track(info.get("return_value"))

    def _on_response(self, response: Any) -> None:
        """HTTP client hook: the answer's connection (a kept-alive one was not seen opening)."""
        self._track(response.extensions.get("network_stream"))

    def _track(self, stream: Any) -> None:
        get = getattr(stream, "get_extra_info", None)
        self._keep(get("socket") if get is not None else None)

    def _keep(self, sock: Any) -> None:
        """Track a socket of the attempt in flight (shut at once when its story is late or the teller stopped)."""
        held = getattr(self._local, "held", None)
        if not isinstance(sock, socket.socket) or held is None:
            return
        group = getattr(self._local, "group", None)
        deadline = getattr(self._local, "deadline", None)
        with self._lock:
            held.add(sock)
            self._open.add(sock)
            if group is not None:
                group.sockets.add(sock)
            late = deadline is not None and deadline.expired
        if late or self._stopped():
            _shut(sock)

    @contextlib.contextmanager
    def _held(self) -> Iterator[None]:
        """One attempt: the sockets it opens are tracked while it runs, forgotten after."""
        previous = getattr(self._local, "held", None)
        self._local.held = held = set()
        deadline = getattr(self._local, "deadline", None)
        if deadline is not None:
            with self._lock:
                deadline.sockets = held
        try:
            yield
        finally:
            self._local.held = previous
            group = getattr(self._local, "group", None)
            with self._lock:
                self._open -= held
                if group is not None:
                    group.sockets -= held
                if deadline is not None:
                    deadline.sockets = None

    @contextlib.contextmanager
    def _timed(self, seconds: float | None) -> Iterator[_Deadline]:
        """One story's (or request's) deadline, in force for the calling thread's attempts."""
        previous = getattr(self._local, "deadline", None)
        self._local.deadline = deadline = _Deadline(seconds, self._lock)
        try:
            yield deadline
        finally:
            deadline.cancel()
            self._local.deadline = previous

    # -- failures --------------------------------------------------------------------------
    def _call(self, route: str, call: Callable[[Any], Any]) -> Any:
        """``call(client)``, with the SDK's errors turned into a :class:`_Failure`."""
        import openai

        if self._stopped():
            raise _Failure("the teller was closed; make a new one")
        try:
            return call(self._client)
        except openai.APIStatusError as exc:
            if self._stopped():
                raise self._closed_failure() from None
            raise self._status_failure(
                exc.status_code, _error_text(exc), exc.response.headers, route
            ) from None
        except openai.APIError as exc:  # APIConnectionError, APITimeoutError
            raise self._network_failure(exc) from None

    def _closed_failure(self) -> _Failure:
        return _Failure("the teller was closed while a request was in flight; make a new one")

    def _network_failure(self, exc: BaseException) -> _Failure:
        if self._stopped():
            return self._closed_failure()
        chain = _chain(exc)
        if any(_is_timeout(error) for error in chain):
            return _Failure(
                f"the server at {self.endpoint} sent nothing for {self.timeout:g} seconds; "
                "raise --timeout or check that the server is not overloaded",
                at_endpoint=True,
            )
        if any(isinstance(error, ConnectionRefusedError) for error in chain):
            return _Failure(
                f"no server at {self.endpoint}; start one with `storyreasoning serve --model …` or check --endpoint",
                retry=True,
                at_endpoint=True,
            )
        if any(isinstance(error, socket.gaierror) for error in chain):
            return _Failure(
                f"cannot resolve the host {self._host!r} of {self.endpoint}; check --endpoint",
                at_endpoint=True,
            )
        tls = next((error for error in chain if isinstance(error, ssl.SSLError)), None)
        if tls is not None:
            return _Failure(
                f"TLS with {self.endpoint} failed ({tls}); check the URL's scheme and certificate",
                at_endpoint=True,
            )
        detail = _detail(exc)
        return _Failure(
            f"the connection to {self.endpoint} failed ({detail}); check that the server is running",
            retry=True,
            broken=detail,
            at_endpoint=True,
        )

    def _stream_failure(self, exc: Exception) -> _Failure:
        """What reading the next event of a stream failed with."""
        import openai

        if self._stopped():
            return self._closed_failure()
        if isinstance(exc, ValueError):  # not JSON (the SDK parses each event)
            event = getattr(exc, "doc", None)
            return self._malformed(repr(event[:200]) if isinstance(event, str) else str(exc))
        if isinstance(exc, openai.APIError) and not isinstance(exc, openai.APIConnectionError):
            message = _message_of(exc.body) or exc.message  # an {"error": …} event
            return _Failure(
                f"the server at {self.endpoint} reported an error mid-stream ({message}); check the server's log"
            )
        if isinstance(exc, Truncated):  # the stream on its own socket ended short
            return self._ended_early()
        if not _is_transport(exc):
            raise exc
        chain = _chain(exc)
        if not any(_is_timeout(error) for error in chain) and not any(
            isinstance(error, OSError) for error in chain
        ):  # the server closed the connection mid-answer (an incomplete chunked body, …)
            return self._ended_early()
        return self._network_failure(exc)

    def _ended_early(self) -> _Failure:
        return _Failure(
            f"the server at {self.endpoint} ended the stream before the output was finished; "
            "check the server's log and try again",
            retry=True,
            at_endpoint=True,
        )

    def _not_a_stream(self, kind: str, head: bytes) -> _Failure:
        said = server_message(head)
        return _Failure(
            f"the server at {self.endpoint} answered {kind}, not a stream of events"
            + (f" ({said})" if said else "")
            + "; check that --endpoint is the base URL of an OpenAI-compatible server that streams "
            "(stream: true), e.g. http://localhost:8000/v1",
            at_endpoint=True,
        )

    def _late(self, deadline: _Deadline, received: int) -> _Failure:
        kept = f"the {received} characters received are kept" if received else "no text came"
        return _Failure(
            f"the story took longer than its deadline of {deadline.seconds:g} seconds; {kept}; raise --deadline "
            f"(0: no deadline) or check that the server at {self.endpoint} is not stalled",
            at_endpoint=True,
        )

    def _malformed(self, detail: str) -> _Failure:
        return _Failure(
            f"the server at {self.endpoint} sent a malformed event ({detail}); "
            "check that --endpoint is an OpenAI-compatible server"
        )

    def _status_failure(self, status: int, body: bytes | str, headers: Any, route: str) -> _Failure:
        message = server_message(body) or _reason(status)
        where = f"the server at {self.endpoint}"
        low = message.lower()
        if status in (401, 403):
            return _Failure(
                f"{where} refused the API key (HTTP {status}: {message}); pass the right one with --api-key "
                "or set OPENAI_API_KEY",
                at_endpoint=True,
                status=status,
            )
        if status == 429:  # not a failure of the server's: it asks for fewer requests
            return _Failure(
                f"{where} is limiting requests (HTTP 429: {message}); wait and try again, or send fewer at once "
                "(--concurrency)",
                retry=True,
                wait=_retry_after(headers),
                at_endpoint=True,
                status=status,
            )
        if status in RETRY_STATUSES:
            return _Failure(
                f"{where} failed (HTTP {status}: {message}); check the server's log",
                retry=True,
                wait=_retry_after(headers),
                at_endpoint=True,
                status=status,
            )
        if is_image_limit(message):
            return _Failure(
                f"{where} takes fewer images per prompt than this story has ({message}); restart it with a larger "
                "--limit-mm-per-prompt (storyreasoning serve --max-images N derives it) or pass fewer images",
                status=status,
            )
        if "mm_processor_kwargs" in low:
            return _Failure(
                f"{where} does not accept a per-request pixel budget ({message}); leave min/max pixels unset "
                "for this server or serve the model with vLLM",
                at_endpoint=True,
                status=status,
            )
        if status in (400, 404) and (
            "pinned" in low
            or (
                "model" in low
                and any(key in low for key in ("does not exist", "not found", "unknown", "no model"))
            )
        ):
            return _Failure(
                f"{where} has no model {self.model!r} ({message}); {self._models_hint()}",
                at_endpoint=True,
                status=status,
            )
        if status == 404:
            return _Failure(
                f"{self.endpoint}{route} was not found (HTTP 404: {message}); check that --endpoint is the base URL "
                "of an OpenAI-compatible server, e.g. http://localhost:8000/v1",
                at_endpoint=True,
                status=status,
            )
        # any other 5xx (501 from a server that takes no POST, 507, …), or 405 (a URL that takes no POST), is the
        # server's: the next story gets it too
        return _Failure(
            f"{where} rejected the request (HTTP {status}: {message})",
            status=status,
            at_endpoint=status >= 500 or status == 405,
        )

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
        deadline = getattr(self._local, "deadline", None)
        if deadline is not None and (deadline.expired or delay >= deadline.left()):
            return False  # the next attempt would start after the story's deadline
        if delay > 0:
            time.sleep(delay)
        return True

    @staticmethod
    def _give_up(failure: _Failure, attempt: int, partial: str = "") -> TellError:
        tries = f" (gave up after {attempt + 1} attempts)" if attempt else ""
        return TellError(failure.message + tries, partial=partial, at_endpoint=failure.at_endpoint)

    def _models_text(self, *, answered: Callable[[_Failure], bool] = lambda failure: False) -> str | None:
        """The body of ``/models``, with the same retries and deadline as a story; None when the server
        answered with a failure that ``answered`` accepts as an answer."""
        attempt = 0
        with self._timed(story_deadline(self.deadline)) as deadline:
            while True:
                try:
                    with self._held():
                        answer = self._call("/models", lambda client: client.models.with_raw_response.list())
                        text = answer.http_response.text
                    self._reached = True
                    return text
                except _Failure as caught:
                    failure = self._late(deadline, 0) if deadline.expired else caught
                    if not deadline.expired and answered(failure):
                        self._reached = True
                        return None
                    if not self._retry(failure, attempt):
                        raise self._give_up(failure, attempt) from None
                    attempt += 1

    def list_models(self) -> list[str]:
        """The model ids the server lists at ``/v1/models``."""
        text = self._models_text() or ""
        try:
            data = json.loads(text)
        except ValueError:
            raise TellError(
                f"{self.endpoint}/models did not answer JSON; check that --endpoint is the base URL of an "
                "OpenAI-compatible server"
            ) from None
        items = data.get("data") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise TellError(
                f"{self.endpoint}/models did not list models; check that --endpoint is the base URL of an "
                "OpenAI-compatible server"
            )
        return [str(item["id"]) for item in items if isinstance(item, dict) and item.get("id")]

    def check(self) -> None:
        """Raise a :class:`TellError` now when the server is down, hanging or refuses the key (asking
        ``/models``, with the retries of a story); any other answer, a 404 included, means it is up.
        A batch run calls it before its first story, so that a dead endpoint stops it at once."""
        if not self._reached:
            self._models_text(answered=_server_is_up)

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

    def complete(
        self, messages: list[dict], *, sampling: Sampling = Sampling(), extra: dict | None = None
    ) -> str:
        """The answer to any chat (OpenAI-style ``messages``, images as data URLs), with the same
        streaming, retries, timeouts and errors as :meth:`stream`; for tools that hold a
        conversation (the dataset builder's writers, the judge). ``extra``: more request fields
        (``response_format``, …), sent as they are."""
        return "".join(self._stream_body({**self._chat_body(messages, sampling), **(extra or {})}))

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

    def _stream_body(self, body: dict, others: _Choices | None = None) -> Iterator[str]:
        """The text of the first choice as it streams; with ``others``, the other choices of an ``n``
        request are collected there (each attempt starts them afresh: none of their text was given out)."""
        self.last_usage = None
        produced: list[str] = []
        attempt = 0
        with self._timed(story_deadline(self.deadline, body.get("max_tokens"))) as deadline:
            while True:
                think = _ThinkWrapper()
                usage = Usage()
                if others is not None:
                    others.reset()
                try:
                    yield from self._stream_once(body, think, usage, produced, others)
                except _Failure as caught:
                    partial = "".join(produced)
                    # past the deadline, the socket was shut under the request: say why
                    failure = self._late(deadline, len(partial)) if deadline.expired else caught
                    if not deadline.expired and not produced and self._retry(failure, attempt):
                        attempt += 1
                        continue
                    if partial and failure.broken:
                        failure = _Failure(
                            f"the stream from {self.endpoint} broke after {len(partial)} characters "
                            f"({failure.broken}); the partial output is kept, try again",
                            at_endpoint=failure.at_endpoint,
                        )
                    raise self._give_up(failure, attempt, partial) from None
                for chunk in think.close(cut=usage.finish_reason == "length"):
                    produced.append(chunk)
                    yield chunk
                if others is not None:
                    others.close()
                self.last_usage = usage
                return

    def _stream_once(
        self,
        body: dict,
        think: _ThinkWrapper,
        usage: Usage,
        produced: list[str],
        others: _Choices | None = None,
    ) -> Iterator[str]:
        """One attempt: the request, then its events as text; a failure is a :class:`_Failure`.

        The SDK makes the request (its status errors, connection handling); the answer's bytes
        are read here, a network read at a time (see :mod:`.sse`: the SDK's reader built a
        pydantic model of every event, the client's largest cost at one token per event)."""
        from .sse import DeltaTemplates, EventReader, EventTooLong

        args = {key: value for key, value in body.items() if key in CHAT_FIELDS}
        extra = {key: value for key, value in body.items() if key not in CHAT_FIELDS}
        with self._held():
            if self._wire is not None:
                response = self._post_stream(body)
                blocks = response.blocks()
            else:
                answer = self._call(
                    "/chat/completions",
                    lambda client: client.chat.completions.with_raw_response.create(
                        **args, extra_body=extra or None
                    ),
                )
                response = answer.http_response
                blocks = response.iter_bytes()
            try:
                if self._stopped():
                    raise self._closed_failure()
                events, templates = EventReader(), DeltaTemplates()
                head, evented = b"", False  # the body's first bytes; whether an event came
                while not events.done:
                    try:
                        block = next(blocks)
                    except StopIteration:
                        break
                    except Exception as exc:
                        raise self._stream_failure(exc) from None
                    if not head:
                        head = block[:MESSAGE_CHARS]
                    deadline = getattr(self._local, "deadline", None)
                    if deadline is not None and deadline.expired:
                        raise self._late(deadline, len("".join(produced)))
                    try:
                        complete = events.feed(block)
                    except EventTooLong as exc:
                        raise self._fail(self._malformed(str(exc))) from None
                    if complete and not evented:
                        evented = True
                    for data in complete:
                        known = templates.text(data)
                        if known is None:
                            chunks = self._text_of(self._event(data, templates), think, usage, others)
                        elif not known[1]:
                            continue
                        elif known[0] == "content" and think.state != "thinking":
                            think.state = "answering"  # what think.feed(None, text) does here, less its list
                            chunks = known[1:]
                        elif known[0] == "content":
                            chunks = think.feed(None, known[1])
                        else:
                            chunks = think.feed(known[1], None)
                        for chunk in chunks:
                            produced.append(chunk)
                            yield chunk
                if usage.finish_reason is None:  # no finish reason: the server stopped short
                    kind = (response.headers.get("content-type") or "").split(";")[0].strip().lower()
                    if not evented and kind and kind != "text/event-stream":
                        raise self._not_a_stream(kind, head)  # a whole JSON completion, a proxy's page, …
                    raise self._ended_early()
            finally:
                with contextlib.suppress(Exception):
                    response.close()

    def _post_stream(self, body: dict) -> Any:
        """The chat request on a socket of its own (:mod:`.wire`), its answer's head read; a failure is a
        :class:`_Failure`, worded as for the SDK's client."""
        from .. import __version__
        from .wire import post

        if self._stopped():
            raise _Failure("the teller was closed; make a new one")
        host, port, target, netloc = self._wire
        headers = {
            "Host": netloc,
            "Authorization": f"Bearer {self.api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"storyreasoning/{__version__}",
        }
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        try:
            response = post(host, port, target, headers, data, timeout=self.timeout, on_socket=self._keep)
        except (OSError, Truncated) as exc:
            raise self._network_failure(exc) from None
        if not 200 <= response.status < 300:
            text = response.read()
            response.close()
            if self._stopped():
                raise self._closed_failure()
            raise self._status_failure(response.status, text, response.headers, "/chat/completions")
        return response

    def _event(self, data: bytes, templates: Any) -> Any:
        """One event's data parsed as JSON (kept as a template when it is a plain text delta); an
        ``{"error": …}`` event (a server's failure mid-stream) or one that is not JSON is a :class:`_Failure`."""
        try:
            event = json.loads(data)
        except ValueError:
            return self._fail(self._malformed(repr(data.decode("utf-8", "replace")[:200])))
        if isinstance(event, dict) and event.get("error"):
            error = event["error"]
            message = _message_of(error) or "An error occurred during streaming"
            return self._fail(
                _Failure(
                    f"the server at {self.endpoint} reported an error mid-stream ({message}); check the server's log"
                )
            )
        templates.learn(data, event)
        return event

    def _fail(self, failure: _Failure) -> Any:
        raise self._closed_failure() if self._stopped() else failure

    def _text_of(
        self, event: Any, think: _ThinkWrapper, usage: Usage, others: _Choices | None = None
    ) -> list[str]:
        """The text of one stream event (``choices[0].delta``), its usage and finish reason read into ``usage``;
        the deltas of the other choices of an ``n`` request go to ``others`` (by their ``index``), or are
        passed over without it.

        The SDK does not validate events, so each field is checked here: one that is not what
        the API promises (a ``delta`` that is a string, ``content`` that is a number) is a
        :class:`_Failure`, not an exception from deep inside.
        """
        if not _is_object(event):
            raise self._malformed(f"an event that is {json_kind(event)}, not an object")
        _read_usage(_field(event, "usage"), usage)
        choices = _field(event, "choices")
        if choices is None:
            return []
        if not isinstance(choices, list):
            raise self._malformed(f"'choices' that is {json_kind(choices)}, not a list")
        out: list[str] = []
        for choice in choices:
            if not _is_object(choice):
                raise self._malformed(f"a choice that is {json_kind(choice)}, not an object")
            index = _field(choice, "index")
            if index not in (0, None) and others is None:
                continue  # another of n choices
            delta = _field(choice, "delta")
            if delta is not None and not _is_object(delta):
                raise self._malformed(f"a 'delta' that is {json_kind(delta)}, not an object")
            reasoning = self._text_field(delta, "reasoning_content") or self._text_field(delta, "reasoning")
            finish = _field(choice, "finish_reason")
            if index not in (0, None):
                others.feed(index, reasoning, self._text_field(delta, "content"), finish)  # type: ignore[union-attr]
                continue
            out += think.feed(reasoning, self._text_field(delta, "content"))
            if finish:
                usage.finish_reason = str(finish)
        return out

    def _text_field(self, delta: Any, name: str) -> str | None:
        value = _field(delta, name)
        if value is None or isinstance(value, str):
            return value
        raise self._malformed(f"a {name!r} that is {json_kind(value)}, not text")

    # -- several candidates of one story ---------------------------------------------------
    def tell_samples(
        self,
        images: Sequence[Any],
        *,
        prompt: Prompt = Prompt(),
        sampling: Sampling = Sampling(),
        n: int = 1,
    ) -> list[Any]:
        """``n`` candidates of one story (:class:`~storyreasoning.format.Telling`, ``meta["sample"]`` k),
        asked in one request with ``n`` (see the module's docstring for a server that ignores it).
        A failure of any request is the story's :class:`TellError`, with the first candidate's partial text."""
        if n < 1:
            raise UsageError(f"--samples must be at least 1, got {n}")
        if n == 1 or self.ignores_n:
            return [self._sample(images, prompt, sampling, k) for k in range(n)]
        body = self.request_body(images, prompt, sampling)
        body["n"] = n
        others = _Choices(n)
        start = time.perf_counter()
        first: float | None = None
        chunks: list[str] = []
        for chunk in self._stream_body(body, others):
            if first is None and chunk:
                first = time.perf_counter() - start
            chunks.append(chunk)
        usage = self.last_usage or Usage()
        usage.seconds, usage.first_token_seconds = time.perf_counter() - start, first
        got = [0, *others.finished()]
        request = {"n": n, "choices": len(got), "completion_tokens": usage.completion_tokens}
        if len(got) > 1:
            usage.completion_tokens = None  # the request's, for all its choices: in meta["request"]
        told = {0: self._told("".join(chunks), usage, images, sampling, 0, request)}
        for k in got[1:]:
            own = Usage(usage.prompt_tokens, None, usage.seconds, None, others.finish[k])
            told[k] = self._told(others.text(k), own, images, sampling, k, request)
        missing = [k for k in range(n) if k not in told]
        if missing:
            with self._lock:  # stories in flight at once may all find it out: said once
                say, self._short_said = not self._short_said, True
                self.ignores_n = self.ignores_n or len(got) == 1
            if say:
                self.warn(
                    f"warning: the server at {self.endpoint} answered {len(got)} "
                    f"completion{'s' * (len(got) > 1)} where n={n} were asked; the missing candidates are "
                    "asked one request each" + (" from now on (no shared prefill)" if len(got) == 1 else "")
                )
            for k in missing:
                told[k] = self._sample(images, prompt, sampling, k)
        return [told[k] for k in range(n)]

    def _sample(self, images: Sequence[Any], prompt: Prompt, sampling: Sampling, k: int) -> Any:
        """Candidate ``k`` asked on its own (with seed + k when a seed is set)."""
        if k and sampling.seed is not None:
            sampling = dataclasses.replace(sampling, seed=sampling.seed + k)
        telling = self.tell(images, prompt=prompt, sampling=sampling)
        telling.meta["sample"] = k
        return telling

    def _told(
        self, text: str, usage: Usage, images: Sequence[Any], sampling: Sampling, k: int, request: dict
    ) -> Any:
        from ..format.stream import parse_output

        telling = parse_output(text)
        telling.meta = {
            **self.describe(),
            "sampling": sampling.to_dict(),
            "usage": usage.to_dict(),
            "images": len(images),
            "sample": k,
            "request": request,
        }
        return telling

    # -- many stories ----------------------------------------------------------------------
    def _tell_one(
        self, group: _Group, story: Story, prompt: Prompt, sampling: Sampling, samples: int = 1
    ) -> Any:
        self._local.group = group
        try:
            if samples > 1:
                return self.tell_samples(story.images, prompt=prompt, sampling=sampling, n=samples)
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
        self,
        stories: Iterable[Story],
        *,
        prompt: Prompt = Prompt(),
        sampling: Sampling = Sampling(),
        samples: int = 1,
    ) -> Iterator[tuple[Story, Any]]:
        """Up to ``concurrency`` requests in flight; yields ``(story, telling | TellError)`` as each finishes
        (with ``samples`` > 1, ``(story, [telling, …] | TellError)``: :meth:`tell_samples`).

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
                        pending[pool.submit(self._tell_one, group, story, prompt, sampling, samples)] = story
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
                    sockets = list(group.sockets)
                for sock in sockets:
                    _shut(sock)
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


class _Choices:
    """The choices after the first of an ``n`` request, by ``index``: each one's text (its reasoning
    wrapped in ``<think>`` as the first's is) and finish reason; an index not asked for is passed over."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.reset()

    def reset(self) -> None:
        self.think: dict[int, _ThinkWrapper] = {}
        self.parts: dict[int, list[str]] = {}
        self.finish: dict[int, str] = {}

    def feed(self, index: Any, reasoning: str | None, content: str | None, finish: Any) -> None:
        if not isinstance(index, int) or isinstance(index, bool) or not 0 < index < self.n:
            return
        think = self.think.setdefault(index, _ThinkWrapper())
        self.parts.setdefault(index, []).extend(think.feed(reasoning, content))
        if finish:
            self.finish[index] = str(finish)

    def close(self) -> None:
        for index, think in self.think.items():
            self.parts[index].extend(think.close(cut=self.finish.get(index) == "length"))

    def finished(self) -> list[int]:
        """The indices that came to an end (a choice without a finish reason was cut short)."""
        return sorted(self.finish)

    def text(self, index: int) -> str:
        return "".join(self.parts.get(index, ()))


def _wire_target(base_url: str) -> tuple[str, int, str, str] | None:
    """``(host, port, path of /chat/completions, Host header)`` when the stream may go on a socket of its
    own (:mod:`.wire`): plain HTTP, no user name in the URL, no proxy variable routing the host elsewhere."""
    import urllib.request

    parts = urlsplit(base_url)
    if parts.scheme != "http" or "@" in parts.netloc or not parts.hostname:
        return None
    proxies = urllib.request.getproxies_environment()
    if (proxies.get("http") or proxies.get("all")) and not urllib.request.proxy_bypass_environment(
        parts.hostname, proxies
    ):
        return None
    return parts.hostname, parts.port or 80, parts.path + "/chat/completions", parts.netloc


def _server_is_up(failure: _Failure) -> bool:
    """Whether a failed ``/models`` request still shows a working server: it answered, neither refusing
    the key nor failing (a server without ``/models`` answers 404 and may still tell stories)."""
    return failure.status is not None and failure.status not in (401, 403) and not failure.retry


def _shut(sock: socket.socket) -> None:
    """Shut a socket down: a thread blocked reading it wakes at once (closing it would not)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the errors it was raised from (the SDK wraps its HTTP client's, which wrap the socket's)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _is_transport(exc: BaseException) -> bool:
    """An error of the connection: the SDK's, its HTTP client's (raised bare from a stream by openai 1.x) or the socket's."""
    import openai

    return isinstance(exc, (openai.APIConnectionError, OSError)) or (
        type(exc).__module__.split(".")[0] in TRANSPORT_PACKAGES
    )


def _is_timeout(exc: BaseException) -> bool:
    import openai

    return isinstance(exc, (openai.APITimeoutError, TimeoutError))  # the socket's timeout is in every chain


def _detail(exc: BaseException) -> str:
    """The most telling words of a connection error: its deepest cause's (the SDK's own say only "Connection error.")."""
    for error in reversed(_chain(exc)):
        if str(error):
            return str(error)
    return type(exc).__name__


def _error_text(exc: Any) -> str:
    """The body of the answer an :class:`openai.APIStatusError` was made from."""
    try:
        return exc.response.text
    except Exception:  # the body could not be read
        body = exc.body
        return body if isinstance(body, str) else json.dumps(body) if body is not None else ""


def _is_object(value: Any) -> bool:
    """A JSON object as the SDK hands it over: a model it built, or a dict it left alone."""
    if isinstance(value, dict):
        return True
    import openai

    return isinstance(value, openai.BaseModel)


def _field(value: Any, name: str) -> Any:
    if value is None:
        return None
    return value.get(name) if isinstance(value, dict) else getattr(value, name, None)


def _read_usage(got: Any, usage: Usage) -> None:
    if not _is_object(got):
        return
    for name in ("prompt_tokens", "completion_tokens"):
        value = _field(got, name)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            with contextlib.suppress(ValueError):
                setattr(usage, name, int(value))


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "no message"


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
