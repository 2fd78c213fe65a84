"""Servers on loopback for the OpenAI-compatible teller's tests.

* :class:`TransformersServe` (and the context manager :func:`transformers_serve`) runs a
  real ``transformers serve`` process pinned to a model folder (the tiny Qwen2.5-VL) on
  a free port, ready once ``/v1/models`` answers; :func:`require_serve` skips a test
  where the serving extras (fastapi, uvicorn, pydantic, openai) are missing;
* :class:`FakeServer` is a small ``ThreadingHTTPServer`` that speaks the same API and
  misbehaves on request: it refuses keys, answers slowly, rejects too many images as
  vLLM does, fails a few times before succeeding, drops or breaks the stream part way,
  or streams a known story (optionally with the reasoning split off as vLLM's reasoning
  parsers do). It records every request, so tests can count retries;
* :func:`held_elsewhere` holds an output folder from another process, as a job at work does
  (:func:`storyreasoning.files.lock_folder`), for the tests of the one-writer rule.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
LIGHTHOUSE = (ROOT / "examples" / "outputs" / "lighthouse.txt").read_text(encoding="utf-8")

# vLLM's answer when a prompt has more images than --limit-mm-per-prompt allows.
VLLM_IMAGE_LIMIT = {
    "error": {
        "message": "At most 1 image(s) may be provided in one request. You can set `--limit-mm-per-prompt` "
        "to increase this limit if you wish.",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
}
SERVE_PACKAGES = ("fastapi", "uvicorn", "pydantic", "openai")


_HOLDER = """
import sys
from storyreasoning.files import lock_folder
with lock_folder(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()  # until the test lets go (or kills this process)
"""


@contextmanager
def held_elsewhere(folder: os.PathLike | str) -> Iterator[subprocess.Popen]:
    """``folder`` held by another (real) process for the block: the process, whose ``pid`` a refusal
    names. It lets go when the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        yield process
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_url() -> str:
    """A loopback URL where nothing listens (connections are refused)."""
    return f"http://127.0.0.1:{free_port()}"


def _models_answer(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v1/models", timeout=2) as response:
            return response.status == 200 and bool(json.load(response).get("data"))
    except (OSError, ValueError, urllib.error.URLError):
        return False


def _missing_serve_packages() -> list[str]:
    return [
        name for name in ("transformers", "torch", *SERVE_PACKAGES) if importlib.util.find_spec(name) is None
    ]


def serve_available() -> bool:
    """Whether ``transformers serve`` can run here (transformers, torch and the serving extras are installed)."""
    return not _missing_serve_packages()


def require_serve() -> None:
    """Skip the calling test unless ``transformers serve`` can run here."""
    missing = _missing_serve_packages()
    if missing:
        pytest.skip(
            f"`transformers serve` needs {', '.join(SERVE_PACKAGES)}; missing {', '.join(missing)} "
            "(pip install 'transformers[serving]')"
        )


def transformers_serve_command(model: os.PathLike | str, port: int) -> list[str]:
    """``transformers serve MODEL --host 127.0.0.1 --port PORT --device cpu``, with this interpreter."""
    return [
        sys.executable,
        "-m",
        "transformers.cli.transformers",
        "serve",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
    ]


class TransformersServe:
    """A real ``transformers serve`` process pinned to ``model`` on a free loopback port.

    :meth:`start` launches it and returns at once (its start takes ~10 s, mostly importing
    torch and transformers, so tests can overlap it with other work); :meth:`wait`
    returns when ``/v1/models`` answers, and fails the test, with the server's output,
    when the process exits first or ``startup_timeout`` passes. :meth:`stop` ends it.
    """

    def __init__(self, model: os.PathLike | str, *, startup_timeout: float = 180.0) -> None:
        self.model = str(model)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = transformers_serve_command(model, self.port)
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()
        self._ready = False

    def start(self) -> TransformersServe:
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "HF_HUB_DISABLE_UPDATE_CHECK": "1",  # no version check against PyPI at start
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
        }
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            self.command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        return self

    def output(self) -> str:
        """The last lines the server printed (stdout and stderr)."""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-4000:]

    def wait(self) -> str:
        """The base URL, once the server answers ``/v1/models``."""
        assert self.process is not None, "start() first"
        shown = " ".join(self.command)
        while not self._ready:
            if _models_answer(self.url):
                self._ready = True
                self.startup_seconds = time.monotonic() - self.started
                break
            if self.process.poll() is not None:
                pytest.fail(
                    f"`{shown}` exited with {self.process.returncode} before serving:\n{self.output()}",
                    pytrace=False,
                )
            if time.monotonic() - self.started > self.startup_timeout:
                pytest.fail(
                    f"`{shown}` did not answer /v1/models within {self.startup_timeout:g} s:\n{self.output()}",
                    pytrace=False,
                )
            time.sleep(0.2)
        return self.url

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self._log.close()


@contextmanager
def transformers_serve(model: os.PathLike | str, *, startup_timeout: float = 180.0) -> Iterator[str]:
    """A real ``transformers serve`` pinned to ``model``; yields its base URL once it answers.

    Skips the test when the serving extras are missing (see :func:`require_serve`).
    """
    require_serve()
    server = TransformersServe(model, startup_timeout=startup_timeout).start()
    try:
        yield server.wait()
    finally:
        server.stop()


# -- the fake server ----------------------------------------------------------------------------


class Headers(dict):
    """A request's headers, looked up in any case (HTTP header names are case-insensitive;
    the OpenAI SDK's HTTP client sends them in lower case)."""

    def __init__(self, items) -> None:
        super().__init__((name.lower(), value) for name, value in items)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())

    def get(self, name: str, default=None):
        return super().get(name.lower(), default)


class FakeServer:
    """An OpenAI-compatible server on loopback that does what a test asks.

    ``behaviour`` (for ``POST /v1/chat/completions``):

    * ``"story"``: stream ``text`` in ``chunk`` character pieces, then a finish reason,
      a usage chunk and ``[DONE]`` (``done=False`` leaves ``[DONE]`` out, as
      ``transformers serve`` does). With ``reasoning_field`` set, the CoT inside
      ``<think>…</think>`` goes out in that delta field and the rest as ``content``;
    * ``"status"``: answer ``status`` with the JSON ``error_body`` (a string: sent as an HTML page);
    * ``"slow"``: wait ``delay`` seconds before answering;
    * ``"stall"``: stream ``drop_after`` pieces, then wait ``delay`` seconds;
    * ``"keepalive"``: stream ``drop_after`` pieces, then an SSE comment (``: keep-alive``)
      every ``piece_delay`` seconds (1 when 0) for ``delay`` seconds: a live connection
      that never finishes;
    * ``"drop"``: stream ``drop_after`` pieces, then close the connection;
    * ``"reset"``: stream ``drop_after`` pieces, then reset the connection (a TCP RST);
    * ``"error-event"``: stream ``drop_after`` pieces, then an ``{"error": …}`` event;
    * ``"events"``: stream ``drop_after`` pieces, then the ``events`` as they are (a dict is
      sent as JSON, a string as the raw ``data`` line), then ``[DONE]``: for events that
      are JSON but not what the API promises.

    ``fail``: only the first ``fail`` chat requests get ``behaviour``, the rest the story
    (None: all of them). ``api_key``: requests without ``Bearer api_key`` get vLLM's 401.
    ``chunked=False`` streams without chunked encoding (the end of the body is the close).
    ``piece_delay`` paces the story; ``max_active`` is the most streams served at once.
    ``headers``: extra headers on a ``"status"`` answer (``Retry-After``, …).
    ``script``: texts served in turn instead of ``text`` (chat request k gets
    ``script[k - 1]``, the last one again when the script runs out), for tools that hold a
    conversation. ``respond``: the text is ``respond(request body)`` instead, so answers
    depend on what was asked, not on the order requests arrive in (requests made at once).
    ``answer_delay``: seconds each chat answer waits before its first byte (a model at work).
    ``refuse``: a chat request for which ``refuse(request body)`` gives an error body is answered
    400 with it (a server that rejects a field it does not support).
    """

    def __init__(
        self,
        behaviour: str = "story",
        *,
        text: str = LIGHTHOUSE,
        chunk: int = 200,
        reasoning_field: str | None = None,
        done: bool = True,
        status: int = 500,
        error_body: dict | str | None = None,
        delay: float = 5.0,
        drop_after: int = 3,
        fail: int | None = None,
        models: tuple[str, ...] = ("fake/storyteller",),
        api_key: str | None = None,
        chunked: bool = True,
        piece_delay: float = 0.0,
        script: list[str] | None = None,
        events: list[dict | str] | None = None,
        headers: dict[str, str] | None = None,
        respond: Callable[[dict], str] | None = None,
        answer_delay: float = 0.0,
        refuse: Callable[[dict], dict | None] | None = None,
    ) -> None:
        self.behaviour = behaviour
        self.respond = respond
        self.refuse = refuse
        self.answer_delay = answer_delay
        self.events = list(events or [])
        self.headers = dict(headers or {})
        self.script = list(script) if script else None
        self.text = text
        self.chunk = chunk
        self.reasoning_field = reasoning_field
        self.done = done
        self.status = status
        self.error_body = error_body if error_body is not None else {"error": {"message": "internal error"}}
        self.delay = delay
        self.drop_after = drop_after
        self.fail = fail
        self.models = models
        self.api_key = api_key
        self.chunked = chunked
        self.piece_delay = piece_delay
        self.active = 0  # streams being written now
        self.max_active = 0  # the most at once
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-openai", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def chat_requests(self) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if r["path"].endswith("/chat/completions")]

    def record(self, request: dict) -> int:
        with self._lock:
            self.requests.append(request)
            return sum(r["path"].endswith("/chat/completions") for r in self.requests)

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # -- what the story stream holds ---------------------------------------------------------
    def pieces(self, request: int = 1, body: dict | None = None) -> list[tuple[str, str]]:
        """``(field, text)`` deltas of chat request number ``request`` (whose JSON is ``body``): the reasoning
        (when split off) then the content."""
        if self.respond is not None and body is not None:
            text = self.respond(body)
        else:
            text = self.script[min(request, len(self.script)) - 1] if self.script else self.text

        def cut(field: str, text: str) -> list[tuple[str, str]]:
            return [(field, text[i : i + self.chunk]) for i in range(0, len(text), self.chunk)]

        if self.reasoning_field and text.startswith("<think>") and "</think>" in text:
            cot, _, story = text[len("<think>") :].partition("</think>")
            return cut(self.reasoning_field, cot) + cut("content", story)
        return cut("content", text)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: FakeServer

    def handle_error(self, request, client_address) -> None:
        pass  # a client that timed out and left is expected here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args) -> None:
        pass

    # -- plumbing ---------------------------------------------------------------------------------
    def _json(self, status: int, data: dict, headers: dict[str, str] | None = None) -> None:
        self._whole(status, json.dumps(data).encode(), "application/json", headers)

    def _page(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        self._whole(status, text.encode(), "text/html; charset=utf-8", headers)

    def _whole(self, status: int, body: bytes, kind: str, headers: dict[str, str] | None) -> None:
        """One answer, not a stream: ``body`` of type ``kind``, then the connection closes."""
        self.send_response(status)
        self.send_header("Content-Type", kind)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        if self.server.fake.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.close_connection = True

    def _write(self, text: str) -> None:
        data = text.encode("utf-8")
        if self.server.fake.chunked:
            data = f"{len(data):x}\r\n".encode() + data + b"\r\n"
        self.wfile.write(data)
        self.wfile.flush()

    def _event(self, data: dict | str) -> None:
        self._write(f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n")

    def _end_stream(self) -> None:
        if self.server.fake.chunked:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    def _authorised(self) -> bool:
        key = self.server.fake.api_key
        if key is not None and self.headers.get("Authorization") != f"Bearer {key}":
            self._json(401, {"error": "Unauthorized"})  # what vLLM's --api-key answers
            return False
        return True

    # -- routes -----------------------------------------------------------------------------------
    def do_GET(self) -> None:
        fake = self.server.fake
        fake.record(
            {"method": "GET", "path": self.path, "headers": Headers(self.headers.items()), "body": None}
        )
        if not self._authorised():
            return
        if self.path != "/v1/models":
            self._json(404, {"detail": "Not Found"})
            return
        self._json(
            200,
            {
                "object": "list",
                "data": [{"id": m, "object": "model", "owned_by": "test"} for m in fake.models],
            },
        )

    def do_POST(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        n = fake.record(
            {"method": "POST", "path": self.path, "headers": Headers(self.headers.items()), "body": body}
        )
        if not self._authorised():
            return
        if self.path != "/v1/chat/completions":
            self._json(404, {"detail": "Not Found"})
            return
        if not isinstance(body, dict) or body.get("model") not in fake.models:
            model = body.get("model") if isinstance(body, dict) else None
            self._json(
                404,
                {
                    "error": {
                        "message": f"The model `{model}` does not exist.",
                        "type": "NotFoundError",
                        "param": "model",
                        "code": 404,
                    }
                },
            )
            return
        refused = fake.refuse(body) if fake.refuse is not None else None
        if refused is not None:
            self._json(400, refused)
            return
        behaviour = fake.behaviour if fake.fail is None or n <= fake.fail else "story"
        if behaviour == "status":
            if isinstance(fake.error_body, str):  # a page (a proxy's, a web server's)
                self._page(fake.status, fake.error_body, fake.headers)
            else:
                self._json(fake.status, fake.error_body, fake.headers)
            return
        if behaviour == "slow":
            fake.stopping.wait(fake.delay)
            self._json(500, {"error": {"message": "too late"}})
            return
        self._stream(behaviour, body, n)

    def _stream(self, behaviour: str, body: dict, request: int = 1) -> None:
        fake = self.server.fake
        model = body["model"]

        def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> dict:
            out = {
                "id": "chatcmpl-test",
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if usage is not None:
                out["usage"] = usage
            return out

        with fake._lock:
            fake.active += 1
            fake.max_active = max(fake.max_active, fake.active)
        self._counted = True
        try:
            self._stream_pieces(behaviour, body, chunk, request)
        finally:
            self._leave()

    def _leave(self) -> None:
        """This stream no longer counts as active: called before its last event is written, since a client
        that has read the end may send its next request before this thread gets to run again."""
        if getattr(self, "_counted", False):
            self._counted = False
            with self.server.fake._lock:
                self.server.fake.active -= 1

    def _stream_pieces(self, behaviour: str, body: dict, chunk, request: int = 1) -> None:
        fake = self.server.fake
        if fake.answer_delay:
            fake.stopping.wait(fake.answer_delay)
        self._start_stream()
        self._event(chunk({"role": "assistant", "content": ""}))
        pieces = fake.pieces(request, body)
        for i, (field, text) in enumerate(pieces):
            if behaviour == "events" and i == fake.drop_after:
                self._leave()
                for event in fake.events:
                    self._event(event)
                self._event("[DONE]")
                self._end_stream()
                return
            if behaviour in ("drop", "reset", "stall", "keepalive", "error-event") and i == fake.drop_after:
                if behaviour == "drop":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if behaviour == "reset":  # closing with a zero linger time sends RST, not FIN
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    return
                if behaviour == "stall":
                    fake.stopping.wait(fake.delay)
                    return
                if behaviour == "keepalive":
                    end = time.monotonic() + fake.delay
                    while time.monotonic() < end and not fake.stopping.wait(fake.piece_delay or 1.0):
                        self._write(": keep-alive\n\n")  # raises once the client has gone
                    return
                self._event({"error": {"message": "CUDA out of memory", "code": 500}})
                self._end_stream()
                return
            self._event(chunk({field: text}))
            if fake.piece_delay:
                time.sleep(fake.piece_delay)
        usage = {"prompt_tokens": 123, "completion_tokens": len(pieces), "total_tokens": 123 + len(pieces)}
        self._leave()
        self._event(chunk({}, finish="stop"))
        if body.get("stream_options", {}).get("include_usage"):
            self._event(
                {"id": "chatcmpl-test", "object": "chat.completion.chunk", "choices": [], "usage": usage}
            )
        if fake.done:
            self._event("[DONE]")
        self._end_stream()
