"""Several candidates a story (``tell-dataset --samples N``): one request with ``n``, its choices
demultiplexed by index, a server that ignores ``n`` asked once a candidate, runs that resume."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections import Counter

import pytest

from storyreasoning.data import load_stories, write_folders
from storyreasoning.errors import UsageError
from storyreasoning.format.stream import parse_output
from storyreasoning.tell import Sampling, TellError
from storyreasoning.tell.openai import OpenAITeller
from storyreasoning.tell.run import read_done, read_run, record_samples, tell_dataset

from ..conftest import run_cli
from ..data.fixtures import fixture_samples
from .servers import LIGHTHOUSE, FakeServer, _Handler, transformers_serve

NAMES = ("Ines", "Maya", "Lena", "Ada", "Zoe", "Kit")
TEXTS = [LIGHTHOUSE.replace("Ines", name) for name in NAMES]
SAMPLED = Sampling(temperature=0.7, max_new_tokens=64, seed=5)
FAST = {"retries": 0, "backoff": 0.0}


class SamplingServer(FakeServer):
    """A :class:`FakeServer` that honours ``n`` as vLLM does: choice k streams ``texts[k]``, the choices
    interleaved one per event, each naming its ``index``, each with its own finish reason, one usage for
    the request. ``choices`` caps how many it answers (a server that honours ``n`` only in part);
    the ``"drop"`` behaviour breaks the connection after ``drop_after`` text events. ``texts_for``: the
    texts are ``texts_for(request body)`` instead (answers that depend on the story asked); ``finishes``:
    choice k's finish reason (default ``stop``)."""

    def __init__(
        self,
        behaviour: str = "story",
        *,
        texts=TEXTS,
        choices: int | None = None,
        texts_for=None,
        finishes: tuple[str, ...] = (),
        **kwargs,
    ) -> None:
        super().__init__(behaviour, **kwargs)
        self.texts = list(texts)
        self.choices = choices
        self.texts_for = texts_for
        self.finishes = finishes
        self._httpd.RequestHandlerClass = _SamplingHandler


class _SamplingHandler(_Handler):
    def _stream_pieces(self, behaviour: str, body: dict, chunk, request: int = 1) -> None:
        fake = self.server.fake
        n = int(body.get("n") or 1)
        count = n if fake.choices is None else min(n, fake.choices)
        model = body["model"]

        def event(index: int, delta: dict, finish: str | None = None) -> dict:
            choice = {"index": index, "delta": delta, "finish_reason": finish}
            return {
                "id": "chatcmpl-n",
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [choice],
            }

        def cut(text: str) -> list[tuple[str, str]]:
            parts = [("content", text)]
            if fake.reasoning_field and text.startswith("<think>") and "</think>" in text:
                cot, _, story = text[len("<think>") :].partition("</think>")
                parts = [(fake.reasoning_field, cot), ("content", story)]
            return [(f, t[i : i + fake.chunk]) for f, t in parts for i in range(0, len(t), fake.chunk)]

        texts = fake.texts_for(body) if fake.texts_for else fake.texts
        pieces = [cut(texts[k % len(texts)]) for k in range(count)]
        self._start_stream()
        for k in range(count):
            self._event(event(k, {"role": "assistant", "content": ""}))
        sent = 0
        for i in range(max(map(len, pieces))):
            for k in range(count):
                if i < len(pieces[k]):
                    if behaviour == "drop" and sent == fake.drop_after:  # the connection breaks mid-answer
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    field, text = pieces[k][i]
                    self._event(event(k, {field: text}))
                    sent += 1
        for k in range(count):
            self._event(event(k, {}, finish=fake.finishes[k] if k < len(fake.finishes) else "stop"))
        tokens = sum(map(len, pieces))
        self._event(
            {
                "id": "chatcmpl-n",
                "object": "chat.completion.chunk",
                "choices": [],
                "usage": {"prompt_tokens": 321, "completion_tokens": tokens, "total_tokens": 321 + tokens},
            }
        )
        self._event("[DONE]")
        self._end_stream()


@pytest.fixture
def stories(tmp_path):
    write_folders(fixture_samples(3), tmp_path / "ds")
    return load_stories(tmp_path / "ds")


def by_seed(body: dict) -> str:
    """What a server that ignores ``n`` answers: a text that depends on the request's seed."""
    return TEXTS[(body.get("seed") or 0) % len(TEXTS)]


# -- one request, n candidates ------------------------------------------------------------------


def test_one_request_gives_n_candidates_demultiplexed_by_index(stories, tmp_path):
    lines: list[str] = []
    with SamplingServer(chunk=150) as server, OpenAITeller(server.url, concurrency=2, **FAST) as teller:
        teller.warn = lines.append
        summary = tell_dataset(stories, teller, tmp_path / "run", sampling=SAMPLED, samples=4)
    assert (summary.done, summary.failed) == (3, 0)
    requests = server.chat_requests()
    assert len(requests) == 3 and all(r["body"]["n"] == 4 for r in requests)  # one request a story
    assert not lines  # nothing to say: the server honoured n
    manifest, records = read_run(tmp_path / "run")
    assert manifest["samples"] == 4
    assert sorted(r["story_id"] for r in records) == stories.ids()
    for record in records:
        candidates = record_samples(record)
        assert [c["raw"] for c in candidates] == TEXTS[:4]  # each index its own text, in order
        assert record["raw"] == TEXTS[0] and len(record["other_samples"]) == 3  # readers of one see the first
        assert [c["meta"]["sample"] for c in candidates] == [0, 1, 2, 3]
        assert all(c["well_structured"] for c in candidates)
        assert "Maya" in json.dumps(candidates[1]["parse"]) and "Maya" not in json.dumps(
            candidates[0]["parse"]
        )
        usage = candidates[2]["meta"]["usage"]
        assert usage["prompt_tokens"] == 321 and usage["finish_reason"] == "stop"
        assert usage["completion_tokens"] is None  # the request's count is for all four
        tokens = sum(-(-len(text) // 150) for text in TEXTS[:4])  # the server's pieces, all choices
        assert candidates[0]["meta"]["request"] == {"n": 4, "choices": 4, "completion_tokens": tokens}


def test_reasoning_fields_are_wrapped_for_every_choice(tmp_path):
    frame = tmp_path / "f.png"
    from PIL import Image

    Image.new("RGB", (64, 48), (10, 200, 30)).save(frame)
    with (
        SamplingServer(reasoning_field="reasoning_content", chunk=90) as server,
        OpenAITeller(server.url, **FAST) as teller,
    ):
        tellings = teller.tell_samples([frame], sampling=SAMPLED, n=3)
    assert [t.raw for t in tellings] == TEXTS[:3]  # <think> put back around each choice's reasoning
    assert [t.raw for t in tellings] == [parse_output(text).raw for text in TEXTS[:3]]


def test_a_server_that_ignores_n_is_asked_once_a_candidate_and_says_so_once(stories, tmp_path):
    lines: list[str] = []
    with (
        FakeServer(respond=by_seed, chunk=400) as server,
        OpenAITeller(server.url, concurrency=1, **FAST) as teller,
    ):
        teller.warn = lines.append
        summary = tell_dataset(stories, teller, tmp_path / "run", sampling=SAMPLED, samples=4)
    assert (summary.done, summary.failed) == (3, 0)
    assert len(lines) == 1 and "answered 1 completion where n=4 were asked" in lines[0]
    bodies = [r["body"] for r in server.chat_requests()]
    assert len(bodies) == 4 * 3  # never fewer candidates than asked
    assert [b.get("n") for b in bodies[:4]] == [4, None, None, None]  # asked with n once, then one by one
    assert all("n" not in b for b in bodies[4:])
    assert [b["seed"] for b in bodies] == [5, 6, 7, 8] * 3  # candidate k with seed + k: they differ
    _, records = read_run(tmp_path / "run")
    for record in records:
        assert [c["raw"] for c in record_samples(record)] == [TEXTS[s % 6] for s in (5, 6, 7, 8)]
        assert [c["meta"]["sampling"]["seed"] for c in record_samples(record)] == [5, 6, 7, 8]


def test_candidates_that_all_come_out_the_same_are_said_once(stories, tmp_path):
    """``transformers serve`` samples only when the model's generation_config.json says do_sample (the tiny
    Qwen2.5-VL's does not): every candidate of a story was the same text, recorded without a word."""
    said: list[str] = []
    with FakeServer(chunk=400) as server, OpenAITeller(server.url, concurrency=1, **FAST) as teller:
        teller.warn = lambda line: None  # (that it ignores n is said apart)
        tell_dataset(stories, teller, tmp_path / "run", sampling=SAMPLED, samples=3, say=said.append)
    assert said == [
        f"warning: the 3 candidates of story {stories.ids()[0]} are the same text at --temperature 0.7; the "
        "server decodes greedily (transformers serve samples only as the model's generation_config.json says: "
        "do_sample, top_k; vLLM samples as asked), so candidates of one story may never differ: preference pairs need "
        "ones that do"
    ]
    with SamplingServer() as server, OpenAITeller(server.url, concurrency=1, **FAST) as teller:
        said.clear()  # candidates that differ: nothing to say
        tell_dataset(stories, teller, tmp_path / "other", sampling=SAMPLED, samples=3, say=said.append)
    assert said == []


def test_a_server_that_answers_fewer_choices_gets_the_rest_asked_apart(tmp_path):
    frame = tmp_path / "f.png"
    from PIL import Image

    Image.new("RGB", (64, 48), (10, 20, 200)).save(frame)
    lines: list[str] = []
    with SamplingServer(choices=2) as server, OpenAITeller(server.url, **FAST) as teller:
        teller.warn = lines.append
        tellings = teller.tell_samples([frame], sampling=SAMPLED, n=4)
        assert not teller.ignores_n  # it honours n, in part: the next story asks with n again
    assert len(tellings) == 4 and [t.meta["sample"] for t in tellings] == [0, 1, 2, 3]
    assert [t.raw for t in tellings[:2]] == TEXTS[:2]
    assert len(lines) == 1 and "answered 2 completions where n=4" in lines[0]
    assert [r["body"].get("n") for r in server.chat_requests()] == [4, None, None]
    assert [r["body"]["seed"] for r in server.chat_requests()] == [5, 7, 8]  # candidates 2 and 3


def test_a_failed_request_fails_the_story_and_keeps_nothing_half_told(stories, tmp_path):
    with (
        SamplingServer("drop", drop_after=2, fail=1) as server,
        OpenAITeller(server.url, concurrency=1, **FAST) as teller,
    ):
        first = tell_dataset(stories, teller, tmp_path / "run", sampling=SAMPLED, samples=3, limit=1)
        assert (first.done, first.failed) == (0, 1)
        assert not (tmp_path / "run" / "records.jsonl").exists()  # no story with fewer candidates
        again = tell_dataset(stories, teller, tmp_path / "run", sampling=SAMPLED, samples=3, limit=1)
    assert (again.done, again.failed) == (1, 0)
    _, records = read_run(tmp_path / "run")
    assert len(record_samples(records[0])) == 3 and server.chat_requests()[-1]["body"]["n"] == 3


# -- resume ---------------------------------------------------------------------------------------


class Interrupting:
    """A real teller that gets Ctrl-C after ``after`` stories."""

    def __init__(self, inner, after: int):
        self.inner, self.after = inner, after

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def tell_many(self, stories, **kw):
        for n, item in enumerate(self.inner.tell_many(stories, **kw)):
            if n == self.after:
                raise KeyboardInterrupt
            yield item


def test_a_partial_multi_sample_run_resumes_with_every_story_once_and_whole(tmp_path):
    write_folders(fixture_samples(6), tmp_path / "ds")
    stories = load_stories(tmp_path / "ds")
    records = tmp_path / "run" / "records.jsonl"
    with SamplingServer(chunk=500) as server, OpenAITeller(server.url, concurrency=1, **FAST) as teller:
        with pytest.raises(KeyboardInterrupt):
            tell_dataset(stories, Interrupting(teller, 2), tmp_path / "run", sampling=SAMPLED, samples=4)
        assert len(read_done(records)) == 2
        with records.open("a") as f:  # a crash mid-write: half a record, cut off on resume
            f.write('{"story_id": "s04", "raw": "half", "other_samples": [{"raw": "x"')
        with pytest.raises(UsageError, match="another number of samples"):
            tell_dataset(stories, teller, tmp_path / "run", sampling=SAMPLED, samples=2)
        summary = tell_dataset(stories, teller, tmp_path / "run", sampling=SAMPLED, samples=4)
    assert (summary.skipped, summary.done) == (2, 4)
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    assert Counter(r["story_id"] for r in lines) == Counter(stories.ids())
    assert all(len(record_samples(r)) == 4 for r in lines)


def test_one_sample_is_the_run_as_ever(stories, tmp_path):
    with FakeServer() as server, OpenAITeller(server.url, **FAST) as teller:
        tell_dataset(stories, teller, tmp_path / "run", sampling=SAMPLED, samples=1)
    manifest, records = read_run(tmp_path / "run")
    assert "samples" not in manifest and all("other_samples" not in r for r in records)
    assert all("n" not in r["body"] for r in server.chat_requests())
    assert set(records[0]) == {"story_id", "raw", "parse", "well_structured", "meta"}
    assert [c["raw"] for c in record_samples(records[0])] == [LIGHTHOUSE]


def test_samples_need_a_server(stories, tmp_path):
    from storyreasoning.tell.baseline import BaselineTeller

    with pytest.raises(UsageError, match="--samples 3 needs a server"):
        tell_dataset(stories, BaselineTeller(), tmp_path / "run", samples=3)
    assert not (tmp_path / "run").exists()


def test_tell_error_of_a_sampled_story_keeps_the_partial_text(tmp_path):
    frame = tmp_path / "f.png"
    from PIL import Image

    Image.new("RGB", (64, 48), (200, 20, 20)).save(frame)
    with SamplingServer("drop", drop_after=2, chunk=100) as server, OpenAITeller(server.url, **FAST) as t:
        with pytest.raises(TellError) as info:
            t.tell_samples([frame], sampling=SAMPLED, n=2)
    assert info.value.partial and TEXTS[0].startswith(info.value.partial)
    assert len(server.chat_requests()) == 1  # text had come: never retried


# -- the command line -------------------------------------------------------------------------------


def test_cli_samples_records_them_and_says_when_the_server_ignores_n(stories, tmp_path):
    env = {"OPENAI_API_KEY": ""}
    with SamplingServer() as honours, FakeServer(respond=by_seed) as ignores:
        ok = run_cli(
            "tell-dataset", str(tmp_path / "ds"), "--out", str(tmp_path / "a"), "--endpoint", honours.url,
            "--samples", "4", "--seed", "5", "--max-new-tokens", "64", env=env,
        )  # fmt: skip
        fallback = run_cli(
            "tell-dataset", str(tmp_path / "ds"), "--out", str(tmp_path / "b"), "--endpoint", ignores.url,
            "--samples", "4", "--seed", "5", "--max-new-tokens", "64", env=env,
        )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert len(honours.chat_requests()) == 3 and "ignores" not in ok.stderr
    assert json.loads((tmp_path / "a" / "settings.json").read_text())["samples"] == 4
    assert fallback.returncode == 0, fallback.stderr
    assert fallback.stderr.count("answered 1 completion where n=4 were asked") == 1
    assert len(ignores.chat_requests()) == 12
    for run in ("a", "b"):
        _, records = read_run(tmp_path / run)
        assert len(records) == 3 and all(len(record_samples(r)) == 4 for r in records)


# -- the real thing: transformers serve (which ignores n) with the tiny Qwen2.5-VL -------------------


class CountingProxy:
    """A TCP proxy on loopback in front of ``upstream`` (host, port) that counts the chat requests
    passing through it (their request lines), whatever HTTP client the teller uses."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream, self.chats = upstream, 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, asking: bool) -> None:
        try:
            while data := source.recv(65536):
                if asking:
                    with self._lock:
                        self.chats += data.count(b"POST /v1/chat/completions ")
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()


@pytest.mark.slow  # starts transformers serve (10-30 s on a loaded machine) and generates 8 answers
def test_transformers_serve_records_four_candidates_a_story(tiny_qwen, tmp_path):
    write_folders(fixture_samples(2), tmp_path / "ds")
    stories = load_stories(tmp_path / "ds")
    lines: list[str] = []
    sampling = Sampling(temperature=1.0, max_new_tokens=8, seed=11)
    with transformers_serve(tiny_qwen) as url:
        proxy = CountingProxy(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        with OpenAITeller(proxy.url, timeout=120, concurrency=1, **FAST) as teller:
            teller.warn = lines.append
            summary = tell_dataset(stories, teller, tmp_path / "run", sampling=sampling, samples=4)
        proxy.close()
    assert (summary.done, summary.failed) == (2, 0)
    assert proxy.chats == 8  # it ignores n: the first story finds out (1 + 3), the second asks 4 apart
    assert len(lines) == 1 and "answered 1 completion where n=4" in lines[0] and teller.ignores_n
    manifest, records = read_run(tmp_path / "run")
    assert manifest["samples"] == 4 and len(records) == 2
    for record in records:
        candidates = record_samples(record)
        assert len(candidates) == 4 and all(c["raw"] for c in candidates)
        assert [c["meta"]["sampling"]["seed"] for c in candidates] == [11, 12, 13, 14]
        assert all(c["meta"]["usage"]["completion_tokens"] == 8 for c in candidates)
