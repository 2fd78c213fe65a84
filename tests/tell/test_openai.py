"""The OpenAI-compatible teller against a real ``transformers serve`` and a fake server that misbehaves."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from storyreasoning.data.sample import Frame
from storyreasoning.errors import StoryReasoningError, UsageError
from storyreasoning.format.stream import parse_output
from storyreasoning.tell import Prompt, Sampling, Story, TellError
from storyreasoning.tell.openai import OpenAITeller, _ThinkWrapper, is_image_limit, normalize_endpoint

from ..conftest import run_cli
from .servers import (
    LIGHTHOUSE,
    VLLM_IMAGE_LIMIT,
    FakeServer,
    TransformersServe,
    closed_url,
    require_serve,
    serve_available,
)

GREEDY = Sampling(temperature=0, max_new_tokens=16)
FAST = {"retries": 0, "backoff": 0.0}


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> list[Path]:
    """Three real PNG frames, 640x480, each its own colour."""
    folder = tmp_path_factory.mktemp("frames")
    paths = []
    for i, colour in enumerate([(200, 40, 40), (40, 160, 60), (30, 60, 190)]):
        path = folder / f"frame{i + 1}.png"
        image = Image.new("RGB", (640, 480), colour)
        image.paste((255, 255, 255), (100 + 40 * i, 80, 220 + 40 * i, 400))  # a "character"
        image.save(path)
        paths.append(path)
    return paths


def story_parts(server: FakeServer, index: int = -1) -> tuple[list[dict], dict]:
    """The messages and the body of a chat request the fake server received."""
    body = server.chat_requests()[index]["body"]
    return body["messages"], body


def decoded(part: dict) -> tuple[str, bytes]:
    url = part["image_url"]["url"]
    head, _, data = url.partition(",")
    return head, base64.b64decode(data)


# -- endpoint and model ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        "http://127.0.0.1:8000",
        "http://127.0.0.1:8000/",
        "http://127.0.0.1:8000/v1",
        "http://127.0.0.1:8000/v1/",
        "http://127.0.0.1:8000/v1/chat/completions",
        "127.0.0.1:8000",
    ],
)
def test_endpoint_normalisation(given):
    assert normalize_endpoint(given) == "http://127.0.0.1:8000/v1"


def test_endpoint_keeps_a_path_prefix_and_rejects_nonsense():
    assert normalize_endpoint("https://example.org/proxy/") == "https://example.org/proxy/v1"
    for bad in ("", "ftp://host/v1", "http://"):
        with pytest.raises(UsageError, match=r"endpoint|URL"):
            normalize_endpoint(bad)


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_any_spelling_of_the_endpoint_reaches_the_server(suffix):
    with FakeServer() as server, OpenAITeller(server.url + suffix, **FAST) as teller:
        assert teller.model == "fake/storyteller"  # discovered from /v1/models
        assert teller.endpoint == f"{server.url}/v1"
    assert [r["path"] for r in server.requests] == ["/v1/models"]


def test_model_discovery_takes_the_first_and_fails_clearly_without_any():
    with FakeServer(models=("first/model", "second/model")) as server:
        assert OpenAITeller(server.url, **FAST).model == "first/model"
        assert OpenAITeller(server.url, model="second/model", **FAST).model == "second/model"
    with FakeServer(models=()) as server, pytest.raises(TellError, match="lists no models") as info:
        OpenAITeller(server.url, **FAST)
    assert "--served-model" in str(info.value)


def test_an_unknown_model_names_the_ones_served(frames):
    with FakeServer(models=("fake/storyteller", "other/model")) as server:
        teller = OpenAITeller(server.url, model="no/such-model", **FAST)
        with pytest.raises(TellError, match="no model 'no/such-model'") as info:
            teller.tell(frames)
    message = str(info.value)
    assert "it serves fake/storyteller, other/model" in message and "--served-model" in message


def test_a_wrong_base_path_says_so():
    with FakeServer() as server, pytest.raises(TellError, match="was not found") as info:
        OpenAITeller(server.url + "/api", **FAST)
    assert "OpenAI-compatible" in str(info.value) and "/api/v1/models" in str(info.value)


# -- a story through the fake server -----------------------------------------------------------


def test_tell_streams_the_story_and_records_usage(frames):
    with FakeServer(chunk=97) as server, OpenAITeller(server.url, **FAST) as teller:
        chunks = list(teller.stream(frames, sampling=Sampling(max_new_tokens=900, seed=7)))
        telling = teller.tell(frames)
    assert "".join(chunks) == LIGHTHOUSE and len(chunks) > 10
    assert telling.raw == LIGHTHOUSE and telling.cot is not None and telling.story is not None
    assert telling.validate(n_images=3).well_structured
    meta = telling.meta
    assert meta["backend"] == "openai" and meta["model"] == "fake/storyteller"
    assert meta["endpoint"] == f"{server.url}/v1" and meta["images"] == 3
    usage = meta["usage"]
    assert usage["prompt_tokens"] == 123 and usage["completion_tokens"] > 10
    assert (
        usage["finish_reason"] == "stop" and usage["seconds"] > 0 and usage["first_token_seconds"] is not None
    )

    messages, body = story_parts(server, 0)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (900, 0.7, 0.9, 7)
    assert "seed" not in story_parts(server, 1)[1] and "mm_processor_kwargs" not in body
    assert messages[0]["role"] == "system" and "AI storyteller" in messages[0]["content"]
    user = messages[1]["content"]
    assert [p["type"] for p in user] == ["image_url"] * 3 + ["text"]
    assert user[3]["text"] == "Generate a story based on these images."
    for part, path in zip(user[:3], frames, strict=True):  # PNG files go byte for byte
        assert decoded(part) == ("data:image/png;base64", path.read_bytes())
    headers = server.chat_requests()[0]["headers"]
    assert headers["Authorization"] == "Bearer EMPTY" and headers["Content-Type"] == "application/json"


def test_every_kind_of_image_and_the_prompt_options(frames, tmp_path):
    jpeg = tmp_path / "photo.jpg"
    Image.new("RGB", (80, 60), (10, 200, 30)).save(jpeg, quality=90)
    gif = tmp_path / "anim.gif"
    Image.new("RGB", (30, 20), (250, 0, 0)).save(gif)
    pil = Image.new("RGB", (50, 40), (1, 2, 3))
    images = [jpeg, gif, pil, frames[0].read_bytes(), Frame(data=jpeg.read_bytes()), Frame(path=str(gif))]
    with FakeServer() as server, OpenAITeller(server.url, **FAST) as teller:
        teller.tell(images, prompt=Prompt(text="Tell it.", system=None, order="text-first"))
    messages, _ = story_parts(server)
    assert len(messages) == 1 and messages[0]["role"] == "user"  # no system turn
    parts = messages[0]["content"]
    assert parts[0] == {"type": "text", "text": "Tell it."} and len(parts) == 7
    sent = [decoded(p) for p in parts[1:]]
    assert sent[0] == ("data:image/jpeg;base64", jpeg.read_bytes())  # a JPEG file: its own bytes
    assert sent[3] == ("data:image/png;base64", frames[0].read_bytes())  # PNG bytes: as they are
    assert sent[4] == ("data:image/jpeg;base64", jpeg.read_bytes())  # a Frame's bytes
    for head, data in (sent[1], sent[2], sent[5]):  # GIF and PIL: encoded as PNG
        assert head == "data:image/png;base64"
        assert Image.open(io.BytesIO(data)).format == "PNG"
    assert Image.open(io.BytesIO(sent[2][1])).getpixel((0, 0)) == (1, 2, 3)


def test_bad_images_fail_before_any_request(tmp_path):
    with FakeServer() as server, OpenAITeller(server.url, **FAST) as teller:
        with pytest.raises(UsageError, match="does not exist"):
            teller.tell([tmp_path / "missing.png"])
        broken = tmp_path / "broken.gif"
        broken.write_bytes(b"GIF89a not really")
        with pytest.raises(UsageError, match="not a readable image"):
            teller.tell([broken])
        with pytest.raises(UsageError, match="at least one image"):
            teller.tell([])
    assert server.chat_requests() == []


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_fields_come_back_inside_think(frames, field):
    with FakeServer(reasoning_field=field, chunk=150) as server, OpenAITeller(server.url, **FAST) as teller:
        telling = teller.tell(frames)
    assert telling.raw == LIGHTHOUSE  # <think> + reasoning + </think> + content: the original text
    assert telling.cot is not None and len(telling.cot.images) == 3 and telling.story is not None


def test_think_wrapper_adds_the_envelope_and_closes_it_at_the_end():
    think = _ThinkWrapper()
    out = think.feed("Image 1: a girl", None) + think.feed(" and a dog", None) + think.close()
    assert "".join(out) == "<think>\nImage 1: a girl and a dog\n</think>\n"
    think = _ThinkWrapper()
    out = think.feed("cot", None) + think.feed(None, "<gdi image1>x</gdi>") + think.close()
    assert "".join(out) == "<think>\ncot\n</think>\n<gdi image1>x</gdi>"
    cut = _ThinkWrapper()
    assert (
        "".join(cut.feed("\nhalf a thou", None) + cut.close(cut=True)) == "<think>\nhalf a thou"
    )  # as the model left it
    plain = _ThinkWrapper()
    assert plain.feed(None, "<think>\nraw") + plain.close() == ["<think>\nraw"]  # content alone is untouched


def test_a_stream_without_done_is_complete_when_it_has_a_finish_reason(frames):
    with (
        FakeServer(done=False) as server,
        OpenAITeller(server.url, **FAST) as teller,
    ):  # transformers serve's way
        assert teller.tell(frames).raw == LIGHTHOUSE


def test_pixel_budget_is_sent_and_recorded(frames):
    with FakeServer() as server:
        teller = OpenAITeller(server.url, min_pixels=256 * 784, max_pixels=1280 * 784, **FAST)
        telling = teller.tell(frames)
    assert story_parts(server)[1]["mm_processor_kwargs"] == {
        "min_pixels": 256 * 784,
        "max_pixels": 1280 * 784,
    }
    assert telling.meta["min_pixels"] == 256 * 784 and telling.meta["max_pixels"] == 1280 * 784
    with pytest.raises(UsageError, match="exceed"):
        OpenAITeller("http://127.0.0.1:1", min_pixels=10, max_pixels=5)


def test_the_api_key_is_sent_and_a_wrong_one_explained(frames, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeServer(api_key="sekrit") as server:
        with pytest.raises(TellError, match="refused the API key") as info:
            OpenAITeller(server.url, **FAST)
        assert "--api-key" in str(info.value) and "OPENAI_API_KEY" in str(info.value)
        assert OpenAITeller(server.url, api_key="sekrit", **FAST).tell(frames).raw == LIGHTHOUSE
        monkeypatch.setenv("OPENAI_API_KEY", "sekrit")
        teller = OpenAITeller(server.url, **FAST)
        assert teller.tell(frames).raw == LIGHTHOUSE
        assert "sekrit" not in json.dumps(teller.describe())
    with FakeServer() as server:
        teller = OpenAITeller(server.url.replace("http://", "http://user:pw@"), **FAST)
        assert teller.describe()["endpoint"] == f"{server.url}/v1"  # no credentials in manifests


def test_the_key_comes_from_openai_api_key_unless_one_is_given(frames, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    with FakeServer() as server:
        OpenAITeller(server.url, **FAST).tell(frames)
        OpenAITeller(server.url, api_key="given", **FAST).tell(frames)
    sent = [r["headers"]["Authorization"] for r in server.requests]
    assert sent == ["Bearer from-env"] * 2 + ["Bearer given"] * 2  # /v1/models, then the story


def test_the_endpoint_comes_from_openai_base_url_unless_one_is_given(monkeypatch):
    with FakeServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
        for given in (None, "", "  "):
            assert OpenAITeller(given, **FAST).endpoint == f"{server.url}/v1"
        monkeypatch.setenv("OPENAI_BASE_URL", closed_url())  # never overrides the endpoint given
        assert OpenAITeller(server.url, **FAST).model == "fake/storyteller"
    monkeypatch.delenv("OPENAI_BASE_URL")
    with pytest.raises(UsageError, match=r"--endpoint .* or set OPENAI_BASE_URL"):
        OpenAITeller(None, **FAST)


def test_importing_the_module_does_not_import_the_sdk():
    code = (
        "import sys, io, contextlib\n"
        "import storyreasoning.tell.openai\n"
        "from storyreasoning.cli import app\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        app(['tell', '--help'], prog_name='storyreasoning')\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('openai', 'httpx', 'httpx2') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


# -- failures ----------------------------------------------------------------------------------


def test_no_server_is_one_clear_sentence(frames):
    url = closed_url()
    with pytest.raises(TellError) as info:
        OpenAITeller(url, **FAST)
    message = str(info.value)
    assert message.startswith(f"no server at {url}/v1;")
    assert "storyreasoning serve --model" in message and "--endpoint" in message
    start = time.perf_counter()
    with pytest.raises(TellError, match=r"no server at .*\(gave up after 3 attempts\)"):
        OpenAITeller(url, model="m", retries=2, backoff=0.05).tell(frames)
    assert time.perf_counter() - start >= 0.05 + 0.1  # backoff doubled between attempts


def test_a_slow_server_times_out_with_the_number_and_the_option(frames):
    with FakeServer("slow", delay=5) as server, OpenAITeller(server.url, timeout=0.4, retries=3) as teller:
        start = time.perf_counter()
        with pytest.raises(TellError) as info:
            teller.tell(frames)
        assert time.perf_counter() - start < 3
    assert "0.4 seconds" in str(info.value) and "--timeout" in str(info.value)
    assert len(server.chat_requests()) == 1  # a timeout is not retried


def test_a_stream_that_stalls_keeps_what_came(frames):
    with FakeServer("stall", drop_after=2, chunk=100, delay=5) as server:
        with OpenAITeller(server.url, timeout=0.4, retries=3) as teller, pytest.raises(TellError) as info:
            teller.tell(frames)
    assert "0.4 seconds" in str(info.value)
    assert info.value.partial == LIGHTHOUSE[:200]


# -- the whole-story deadline -----------------------------------------------------------------


def test_keep_alive_comments_cannot_hold_a_story_past_its_deadline(frames):
    # a comment every 0.2 s: every read is well inside the timeout, the story never ends
    with FakeServer("keepalive", drop_after=2, chunk=100, piece_delay=0.2, delay=30) as server:
        with OpenAITeller(server.url, timeout=2, deadline=1.5, **FAST) as teller:
            start = time.perf_counter()
            with pytest.raises(TellError) as info:
                teller.tell(frames)
            took = time.perf_counter() - start
    assert 1.5 <= took < 4
    message = str(info.value)
    assert "deadline of 1.5 seconds" in message and "--deadline" in message and "200 characters" in message
    assert info.value.partial == LIGHTHOUSE[:200] and info.value.at_endpoint


def test_a_trickling_story_ends_at_its_deadline_with_what_came(frames):
    # two characters every 0.1 s: the story would take a minute
    with (
        FakeServer(chunk=2, piece_delay=0.1) as server,
        OpenAITeller(server.url, deadline=1, **FAST) as teller,
    ):
        chunks: list[str] = []
        start = time.perf_counter()
        with pytest.raises(TellError) as info:
            for chunk in teller.stream(frames, sampling=GREEDY):
                chunks.append(chunk)
        assert time.perf_counter() - start < 3
    assert info.value.partial == "".join(chunks) and 2 <= len(info.value.partial) < len(LIGHTHOUSE)
    assert LIGHTHOUSE.startswith(info.value.partial)
    assert "deadline of 1 seconds" in str(info.value)


def test_the_deadline_covers_the_retries_and_their_waits(frames):
    with FakeServer("status", status=503) as server:
        with OpenAITeller(server.url, deadline=0.7, retries=5, backoff=0.2) as teller:
            start = time.perf_counter()
            with pytest.raises(TellError) as info:
                teller.tell(frames)
            took = time.perf_counter() - start
    # waits of 0.2 and 0.4 s fit; the next (0.8 s) would pass the deadline: three attempts, not six
    # (two when the machine is so loaded that the first answers take a tenth of a second)
    assert took < 1.2 and 2 <= len(server.chat_requests()) <= 3
    assert "HTTP 503" in str(info.value) and info.value.at_endpoint


def test_the_default_deadline_follows_the_story_length_and_zero_is_none(frames):
    from storyreasoning.tell.openai import DEADLINE_FLOOR, story_deadline

    assert story_deadline(None, 4096) == 4096 and story_deadline(None, 16) == DEADLINE_FLOOR
    assert story_deadline(0, 4096) is None and story_deadline(2.5, 4096) == 2.5
    with FakeServer() as server:
        for bad in (-1, float("nan"), float("inf")):
            with pytest.raises(UsageError, match="--deadline"):
                OpenAITeller(server.url, deadline=bad)
        with OpenAITeller(server.url, deadline=0, **FAST) as teller:  # no deadline: the story is told
            assert teller.tell(frames, sampling=GREEDY).raw == LIGHTHOUSE


def test_what_fails_at_the_endpoint_is_told_apart_from_what_fails_for_the_story(frames):
    with OpenAITeller(closed_url(), model="m", **FAST) as teller, pytest.raises(TellError) as down:
        teller.tell(frames)
    assert down.value.at_endpoint
    with (
        FakeServer("status", status=400, error_body=VLLM_IMAGE_LIMIT) as server,
        OpenAITeller(server.url, **FAST) as teller,
        pytest.raises(TellError) as limit,
    ):
        teller.tell(frames)
    assert not limit.value.at_endpoint  # another story, with fewer images, may pass


def test_check_says_at_once_whether_the_server_can_be_reached():
    with OpenAITeller(closed_url(), model="m", **FAST) as teller, pytest.raises(TellError, match="no server"):
        teller.check()
    with FakeServer() as server, OpenAITeller(server.url, model="fake/storyteller", **FAST) as teller:
        teller.check()
        assert [r["path"] for r in server.requests] == ["/v1/models"]
        teller.check()  # asked once
        assert len(server.requests) == 1
    with FakeServer(api_key="sekrit") as server, OpenAITeller(server.url, model="m", **FAST) as teller:
        with pytest.raises(TellError, match="refused the API key"):
            teller.check()


@pytest.mark.parametrize(
    "error_body",
    [
        VLLM_IMAGE_LIMIT,  # vLLM today
        {
            "object": "error",
            "message": "At most 1 image(s) may be provided in one request.",
            "code": 400,
        },  # older
        {
            "error": {
                "message": "You set image=2 (or defaulted to 1) in `--limit-mm-per-prompt`, but passed 3 "
                "image items in the same prompt."
            }
        },
    ],
)
def test_vllms_image_limit_says_how_to_raise_it(frames, error_body):
    with (
        FakeServer("status", status=400, error_body=error_body) as server,
        OpenAITeller(server.url) as teller,
    ):
        with pytest.raises(TellError) as info:
            teller.tell(frames)
    message = str(info.value)
    assert (
        "--limit-mm-per-prompt" in message and "storyreasoning serve" in message and "fewer images" in message
    )
    assert _message(error_body) in message  # the server's own words
    assert len(server.chat_requests()) == 1  # a 400 is never retried


def _message(body: dict) -> str:
    return body["error"]["message"] if "error" in body else body["message"]


def test_the_image_limit_is_recognised_only_for_images():
    assert is_image_limit("At most 1 image(s) may be provided in one request.")
    assert not is_image_limit("At most 4096 tokens")
    assert not is_image_limit("the image is corrupt")


def test_other_client_errors_carry_the_servers_message(frames):
    body = {"detail": "Unexpected fields in the request: {'mm_processor_kwargs'}"}
    with FakeServer("status", status=422, error_body=body) as server:
        with pytest.raises(TellError, match="does not accept a per-request pixel budget"):
            OpenAITeller(server.url, max_pixels=1000, **FAST).tell(frames)
    body = {"detail": [{"loc": ["body", "messages"], "msg": "Field required", "type": "missing"}]}
    with FakeServer("status", status=422, error_body=body) as server:
        with pytest.raises(TellError, match=r"rejected the request \(HTTP 422: Field required\)"):
            OpenAITeller(server.url, **FAST).tell(frames)


def test_a_servers_long_multi_line_message_is_one_short_line(frames):
    """A JSON error message is quoted as the rest are: one line, at most MESSAGE_CHARS (a server's
    traceback in its message came whole, newlines and all, into the one-line error)."""
    from storyreasoning.tell.openai import MESSAGE_CHARS

    body = {"error": {"message": "CUDA out of memory.\n\tTried to allocate 2 GiB " + "x" * 3000}}
    with FakeServer("status", status=400, error_body=body) as server:
        with pytest.raises(TellError) as info:
            OpenAITeller(server.url, **FAST).tell(frames)
    said = str(info.value)
    assert "\n" not in said and "\t" not in said
    assert "HTTP 400: CUDA out of memory. Tried to allocate 2 GiB xxx" in said
    assert "x" * MESSAGE_CHARS not in said and "…" in said


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_are_retried_before_output(frames, status):
    with FakeServer("status", status=status, fail=2) as server:
        teller = OpenAITeller(server.url, retries=3, backoff=0.01)
        assert teller.tell(frames).raw == LIGHTHOUSE
    assert len(server.chat_requests()) == 3  # two failures, then the story


def test_retries_are_bounded(frames):
    body = {"error": {"message": "engine dead"}}
    with FakeServer("status", status=500, error_body=body) as server:
        with pytest.raises(TellError, match=r"HTTP 500: engine dead.*gave up after 3 attempts"):
            OpenAITeller(server.url, retries=2, backoff=0.01).tell(frames)
    assert len(server.chat_requests()) == 3


@pytest.mark.parametrize("status", [500, 429])
@pytest.mark.parametrize("retries", [0, 1, 2])
def test_the_retries_setting_is_the_only_bound(frames, status, retries):
    """The SDK makes no attempts of its own (its default is 2 more): ``retries`` alone bounds them."""
    with FakeServer("status", status=status) as server:
        with pytest.raises(TellError, match=f"HTTP {status}") as info:
            OpenAITeller(server.url, retries=retries, backoff=0.01).tell(frames)
        assert len(server.chat_requests()) == retries + 1
        assert len([r for r in server.requests if r["path"] == "/v1/models"]) == 1
    assert ("gave up after" in str(info.value)) == (retries > 0)


def test_a_rate_limit_says_to_wait_or_send_fewer_not_to_read_the_servers_log(frames):
    """A 429 was worded as a 5xx ("failed …; check the server's log"): the server is fine, it wants fewer requests."""
    body = {"error": {"message": "Rate limit reached for requests"}}
    with FakeServer("status", status=429, error_body=body, headers={"Retry-After": "0.2"}) as server:
        with pytest.raises(TellError) as info:
            OpenAITeller(server.url, retries=1, backoff=0.01).tell(frames)
    assert str(info.value) == (
        f"the server at {server.url}/v1 is limiting requests (HTTP 429: Rate limit reached for requests); wait "
        "and try again, or send fewer at once (--concurrency) (gave up after 2 attempts)"
    )
    assert info.value.at_endpoint and len(server.chat_requests()) == 2


@pytest.mark.parametrize("own_socket", [True, False])
def test_an_error_page_is_quoted_by_its_words_not_its_markup(frames, own_socket):
    """A proxy's or web server's HTML error page was quoted tags and all (nginx: ``<html><head><title>…``)."""
    page = (
        "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
        "</center>\r\n<hr><center>nginx/1.24.0 &amp; co</center>\r\n</body>\r\n</html>\r\n"
    )
    with FakeServer("status", status=502, error_body=page) as server:
        with OpenAITeller(server.url, **FAST) as teller:
            if not own_socket:
                teller._wire = None  # the SDK's client, as for https or behind a proxy
            with pytest.raises(TellError) as info:
                teller.tell(frames)
    assert str(info.value) == (
        f"the server at {server.url}/v1 failed (HTTP 502: 502 Bad Gateway nginx/1.24.0 & co); check the server's log"
    )


def test_a_retry_waits_as_long_as_the_server_asks(frames):
    with FakeServer("status", status=503, fail=1, headers={"Retry-After": "0.5"}) as server:
        teller = OpenAITeller(server.url, retries=1, backoff=0.01)
        start = time.perf_counter()
        assert teller.tell(frames).raw == LIGHTHOUSE
        assert time.perf_counter() - start >= 0.5
    assert len(server.chat_requests()) == 2


def _chunk(delta, finish=None, **extra) -> dict:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "model": "fake/storyteller",
        "choices": [choice],
        **extra,
    }


@pytest.mark.parametrize(
    ("event", "what"),
    [
        (_chunk("Once upon a time"), "a 'delta' that is a string, not an object"),
        (_chunk({"content": 42}), "a 'content' that is a number, not text"),
        (_chunk({"reasoning_content": ["cot"]}), "a 'reasoning_content' that is a list, not text"),
        ({"choices": {"0": {"delta": {"content": "x"}}}}, "'choices' that is an object, not a list"),
        ({"choices": ["x"]}, "a choice that is a string, not an object"),
        ("42", "an event that is a number, not an object"),
        ("null", "an event that is null, not an object"),
        ("{not json", "'{not json'"),
    ],
)
def test_a_malformed_event_is_one_clear_error_with_the_partial_output(frames, event, what):
    with FakeServer("events", events=[event], drop_after=2, chunk=100) as server:
        teller = OpenAITeller(server.url, retries=3, backoff=0.01)
        with pytest.raises(TellError) as info:
            teller.tell(frames)
        ((_, told),) = list(teller.tell_many([Story("s", frames)]))
    message = str(info.value)
    assert message == (
        f"the server at {server.url}/v1 sent a malformed event ({what}); "
        "check that --endpoint is an OpenAI-compatible server"
    )
    assert info.value.partial == LIGHTHOUSE[:200]
    assert isinstance(told, TellError) and str(told) == message and told.partial == LIGHTHOUSE[:200]
    assert len(server.chat_requests()) == 2  # one per call: a malformed event is not retried


def test_a_malformed_usage_is_ignored(frames):
    events = [
        _chunk({}, "stop"),
        {"choices": [], "usage": "lots"},
        {"choices": [], "usage": {"prompt_tokens": "x"}},
    ]
    with FakeServer("events", events=events, drop_after=2, chunk=100) as server:
        teller = OpenAITeller(server.url, **FAST)
        telling = teller.tell(frames)
    assert telling.raw == LIGHTHOUSE[:200] and telling.meta["usage"]["prompt_tokens"] is None
    assert telling.meta["usage"]["finish_reason"] == "stop"


def test_a_reset_stream_keeps_the_partial_output_and_says_so(frames):
    with FakeServer("reset", drop_after=2, chunk=100) as server:
        with pytest.raises(TellError, match="broke after 200 characters") as info:
            OpenAITeller(server.url, retries=3, backoff=0.01).tell(frames)
    assert "partial output is kept" in str(info.value) and info.value.partial == LIGHTHOUSE[:200]
    assert len(server.chat_requests()) == 1


@pytest.mark.parametrize("behaviour", ["stall", "slow"])
def test_closing_the_teller_ends_a_request_blocked_in_another_thread(frames, behaviour):
    """``close()`` wakes a thread waiting for the answer's head (``slow``) or its next event (``stall``)."""
    with FakeServer(behaviour, drop_after=2, chunk=100, delay=20) as server:
        teller = OpenAITeller(server.url, timeout=60, **FAST)
        failures: list[TellError] = []

        def tell() -> None:
            try:
                teller.tell(frames)
            except TellError as exc:
                failures.append(exc)

        worker = threading.Thread(target=tell)
        worker.start()
        deadline = time.monotonic() + 10
        while not (server.active if behaviour == "stall" else server.chat_requests()):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.2)
        start = time.perf_counter()
        teller.close()
        worker.join(10)
        assert time.perf_counter() - start < 2 and not worker.is_alive()
    (failure,) = failures
    assert "the teller was closed" in str(failure)
    assert failure.partial == (LIGHTHOUSE[:200] if behaviour == "stall" else "")
    assert teller._open == set()


def test_leaving_tell_many_ends_the_streams_in_flight(frames, tmp_path):
    stories = [Story("broken", [tmp_path / "missing.png"]), Story("a", frames), Story("b", frames)]
    with FakeServer("stall", drop_after=1, delay=20) as server:
        with OpenAITeller(server.url, timeout=60, concurrency=3, **FAST) as teller:
            results = teller.tell_many(stories)
            story, result = next(results)  # the broken one, at once; the others stall
            assert story.story_id == "broken" and isinstance(result, TellError)
            deadline = time.monotonic() + 10
            while server.active < 2:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            start = time.perf_counter()
            results.close()
            assert time.perf_counter() - start < 2
            assert teller._open == set()


@pytest.mark.parametrize("chunked", [True, False])
def test_a_dropped_stream_keeps_the_partial_output_and_is_not_retried(frames, chunked):
    with FakeServer("drop", drop_after=3, chunk=100, chunked=chunked) as server:
        teller = OpenAITeller(server.url, retries=3, backoff=0.01)
        with pytest.raises(TellError) as info:
            list(teller.stream(frames))
        assert info.value.partial == LIGHTHOUSE[:300]
        with pytest.raises(TellError) as told:
            teller.tell(frames)
    assert told.value.partial == LIGHTHOUSE[:300]
    assert "partial output is kept" in str(told.value) or "before the output was finished" in str(told.value)
    assert len(server.chat_requests()) == 2  # one per call: no retry once text was streamed


def test_a_drop_before_any_output_is_retried(frames):
    with FakeServer("drop", drop_after=0, fail=1) as server:
        assert OpenAITeller(server.url, retries=1, backoff=0.01).tell(frames).raw == LIGHTHOUSE
    assert len(server.chat_requests()) == 2


@pytest.mark.parametrize("own_socket", [True, False])
def test_an_answer_that_is_not_a_stream_is_said_as_such_and_not_retried(frames, own_socket):
    """A server that ignores ``stream: true`` (one whole completion as JSON), or a proxy's page, was said to
    have "ended the stream before the output was finished" (check the server's log) and asked again."""
    completion = {
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Once"}, "finish_reason": "stop"}
        ],
    }
    with FakeServer("status", status=200, error_body=completion) as server:
        with OpenAITeller(server.url, retries=2, backoff=0.01) as teller:
            if not own_socket:
                teller._wire = None  # the SDK's client, as for https or behind a proxy
            with pytest.raises(TellError) as info:
                teller.tell(frames)
    message = str(info.value)
    assert message.startswith(
        f"the server at {server.url}/v1 answered application/json, not a stream of events "
        '({"object": "chat.completion", '
    )
    assert message.endswith(
        "; check that --endpoint is the base URL of an OpenAI-compatible server that streams (stream: true), "
        "e.g. http://localhost:8000/v1"
    )
    assert info.value.at_endpoint
    assert len(server.chat_requests()) == 1  # the same answer again: not asked twice


def test_an_error_event_mid_stream_ends_with_the_partial_output(frames):
    with FakeServer("error-event", drop_after=2, chunk=100) as server, OpenAITeller(server.url) as teller:
        with pytest.raises(TellError, match="CUDA out of memory") as info:
            teller.tell(frames)
    assert info.value.partial == LIGHTHOUSE[:200]
    assert len(server.chat_requests()) == 1


def test_stopping_a_stream_early_closes_the_request(frames):
    with FakeServer(chunk=200, piece_delay=0.01) as server, OpenAITeller(server.url, **FAST) as teller:
        stream = teller.stream(frames)
        assert next(stream) == LIGHTHOUSE[:200]
        stream.close()
        assert teller._open == set()
        assert teller.tell(frames, sampling=GREEDY).raw == LIGHTHOUSE


# -- many stories ------------------------------------------------------------------------------


def test_tell_many_runs_concurrently_and_reports_each_failure_with_its_story(frames, tmp_path):
    stories = [Story(f"s{i}", frames[: 1 + i % 3]) for i in range(6)]
    stories.insert(2, Story("broken", [tmp_path / "missing.png"]))
    with (
        FakeServer(chunk=1000, piece_delay=0.05) as server,
        OpenAITeller(server.url, concurrency=3, **FAST) as t,
    ):
        results = {story.story_id: result for story, result in t.tell_many(stories, sampling=GREEDY)}
    assert set(results) == {s.story_id for s in stories}
    assert isinstance(results["broken"], TellError) and "does not exist" in str(results["broken"])
    for sid in (s.story_id for s in stories if s.story_id != "broken"):
        assert results[sid].raw == LIGHTHOUSE
        assert results[sid].meta["usage"]["prompt_tokens"] == 123
    assert len(server.chat_requests()) == 6  # the broken story never reached the server
    assert 2 <= server.max_active <= 3  # several in flight, never more than asked


def test_tell_many_draws_stories_lazily(frames):
    drawn = []

    def lazy():
        for i in range(10):
            drawn.append(i)
            yield Story(str(i), frames[:1])

    with FakeServer(chunk=2000) as server, OpenAITeller(server.url, concurrency=2, **FAST) as teller:
        results = teller.tell_many(lazy(), sampling=GREEDY)
        next(results)
        assert drawn == [0, 1]  # only as many as are in flight
        results.close()  # abandoned: the rest is never read
    assert drawn == [0, 1] and len(server.chat_requests()) <= 2


def test_a_dataset_run_through_an_endpoint_records_failures_and_resumes(tmp_path):
    from storyreasoning.data import load_stories, write_folders
    from storyreasoning.tell.run import ERRORS, read_run, tell_dataset

    from ..data.fixtures import fixture_samples

    write_folders(fixture_samples(4), tmp_path / "ds")
    stories = load_stories(tmp_path / "ds")
    with (
        FakeServer("drop", drop_after=1, fail=1) as server,
        OpenAITeller(server.url, concurrency=2, **FAST) as teller,
    ):
        first = tell_dataset(stories, teller, tmp_path / "run", sampling=GREEDY)
        assert (first.done, first.failed) == (3, 1)
        failed = json.loads((tmp_path / "run" / ERRORS).read_text(encoding="utf-8"))
        assert failed["partial"] == LIGHTHOUSE[:200] and "ended the stream" in failed["error"]
        again = tell_dataset(stories, teller, tmp_path / "run", sampling=GREEDY)  # the failed story, again
        assert (again.done, again.failed, again.skipped) == (1, 0, 3)
    manifest, records = read_run(tmp_path / "run")
    assert sorted(r["story_id"] for r in records) == stories.ids()
    assert all(r["raw"] == LIGHTHOUSE and r["well_structured"] for r in records)
    assert manifest["teller"] == {
        "backend": "openai",
        "model": "fake/storyteller",
        "endpoint": f"{server.url}/v1",
    }
    sent = [decoded(p)[1] for p in server.chat_requests()[-1]["body"]["messages"][1]["content"][:3]]
    sample = next(s for s in fixture_samples(4) if s.story_id == records[-1]["story_id"])
    assert sent == [frame.bytes() for frame in sample.frames]  # dataset frames go byte for byte


# -- the command line --------------------------------------------------------------------------


def _cli(*args: str):
    return run_cli(*args, env={"OPENAI_API_KEY": ""})  # no key from the environment


def test_cli_tell_against_an_endpoint_writes_the_text_the_parse_and_the_page(frames, tmp_path):
    out = tmp_path / "run" / "x.txt"
    with FakeServer() as server:
        result = _cli("tell", *map(str, frames), "--endpoint", server.url, "--out", str(out))
        assert result.returncode == 0, result.stderr
        as_json = _cli("tell", *map(str, frames), "--endpoint", server.url + "/v1/", "--json")
    assert out.read_text(encoding="utf-8") == LIGHTHOUSE
    data = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert data["meta"]["backend"] == "openai" and data["meta"]["model"] == "fake/storyteller"
    assert data["well_structured"] is True and data["images"] == list(map(str, frames))
    assert out.with_suffix(".html").read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")
    assert "openai: fake/storyteller" in result.stderr
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["meta"]["endpoint"] == f"{server.url}/v1"


def test_cli_tell_against_an_endpoint_records_when_the_first_text_came(frames, tmp_path):
    """``tell --endpoint`` recorded ``first_token_seconds`` as null (local weights and tell-dataset timed it)."""
    out = tmp_path / "x.txt"
    with FakeServer(answer_delay=0.3, chunk=400, piece_delay=0.05) as server:
        result = _cli("tell", *map(str, frames), "--endpoint", server.url, "--out", str(out))
    assert result.returncode == 0, result.stderr
    usage = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))["meta"]["usage"]
    assert 0.3 <= usage["first_token_seconds"] < usage["seconds"]


def test_cli_tell_json_holds_the_raw_output(frames):
    """``tell --json`` without ``--out`` printed the parse alone: the model's own text was nowhere (a partial
    story's JSON had it)."""
    broken = "<think>\n## Image 1\n| not | a table\n</think>\nOnce upon a time"  # no parse gives it back
    with FakeServer(text=broken) as server:
        result = _cli("tell", *map(str, frames), "--endpoint", server.url, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["raw"] == broken and data["well_structured"] is False


def test_cli_server_errors_are_one_sentence(frames):
    with FakeServer(api_key="sekrit") as server:
        result = _cli("tell", str(frames[0]), "--endpoint", server.url, "--json")
    assert result.returncode == 1
    assert "refused the API key" in result.stderr and "Traceback" not in result.stderr


# -- the real thing: transformers serve with the tiny Qwen2.5-VL --------------------------------


@pytest.fixture(scope="module", autouse=True)
def _serve_early(request):
    """Launch ``transformers serve`` at this module's first test when one of its tests needs it.

    Its start (~10 s, mostly importing torch) then overlaps the fake-server tests
    instead of adding to them.
    """
    wanted = any(
        "served" in item.fixturenames for item in request.session.items if item.module is request.module
    )
    if not wanted or not serve_available():
        yield None
        return
    server = TransformersServe(request.getfixturevalue("tiny_qwen")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def served(_serve_early) -> tuple[str, str]:
    """``(url, model)`` of a real ``transformers serve`` pinned to the tiny Qwen2.5-VL, started once per module."""
    require_serve()
    return _serve_early.wait(), _serve_early.model


def test_transformers_serve_tells_a_story_of_several_images(served, frames):
    url, model = served
    with OpenAITeller(url, timeout=120, **FAST) as teller:
        assert teller.model == model  # the pinned model, discovered
        chunks = list(teller.stream(frames[:2], sampling=GREEDY))
        telling = teller.tell(frames[:2], sampling=GREEDY)
        one = teller.tell(frames[:1], sampling=GREEDY)
    assert len(chunks) > 1 and "".join(chunks) == telling.raw  # greedy: the same text both ways
    assert telling.raw.strip()
    meta = telling.meta
    assert meta["backend"] == "openai" and meta["model"] == model and meta["images"] == 2
    usage = meta["usage"]
    assert usage["completion_tokens"] == 16 and usage["finish_reason"] == "length"
    assert usage["prompt_tokens"] > one.meta["usage"]["prompt_tokens"] > 16  # a second image costs tokens
    assert parse_output(telling.raw).raw == telling.raw


def test_transformers_serve_tell_many(served, frames):
    stories = [Story("two", frames[:2]), Story("three", frames)]
    with OpenAITeller(served[0], timeout=120, concurrency=2, **FAST) as teller:
        results = dict((s.story_id, r) for s, r in teller.tell_many(stories, sampling=GREEDY))
    assert set(results) == {"two", "three"}
    for result in results.values():
        assert not isinstance(result, StoryReasoningError), result
        assert result.raw.strip() and result.meta["usage"]["completion_tokens"] == 16
    assert results["three"].meta["usage"]["prompt_tokens"] > results["two"].meta["usage"]["prompt_tokens"]


def test_transformers_serve_errors_are_explained(served, frames):
    url, model = served
    with pytest.raises(TellError, match="no model 'other/model'") as info:
        OpenAITeller(url, model="other/model", **FAST).tell(frames[:1], sampling=GREEDY)
    assert f"it serves {model}" in str(info.value)
    with pytest.raises(TellError, match="does not accept a per-request pixel budget"):
        OpenAITeller(url, max_pixels=28 * 28 * 4, **FAST).tell(frames[:1], sampling=GREEDY)
