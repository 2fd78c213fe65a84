"""The studio server over real HTTP on loopback: uploads, streamed telling, parse, export,
datasets, runs, and the safety rules (no key in the page, CSP, no path from a request).

The shared studio (``studio_url``) tells with the baseline; streams that must be slow or
break come from the OpenAI-compatible teller pointed at the fake server of
``tests/tell/servers.py``.
"""

from __future__ import annotations

import http.client
import io
import json
import struct
import threading
import time
import urllib.error
import urllib.request
import uuid
import zlib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import pytest
from PIL import Image

from storyreasoning.studio.config import StudioConfig, parse_datasets
from storyreasoning.tell.base import Prompt, Sampling, Teller
from storyreasoning.tell.settings import TellerOptions

from ..tell.servers import LIGHTHOUSE, FakeServer
from .conftest import (
    EXAMPLES,
    FAILED_ERROR,
    FAILED_STORY,
    ODD_IDS,
    ROOT,
    STUDIO_MAX_IMAGE_BYTES,
    STUDIO_MAX_IMAGES,
    failed_run,
    running_studio,
)

CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
SECRET = "sk-studio-secret-0123456789"
LIGHTHOUSE_FRAMES = sorted((EXAMPLES / "lighthouse").glob("0*.png"))


# -- HTTP helpers ---------------------------------------------------------------------------------------


class Answer:
    def __init__(self, status: int, headers, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    @property
    def error(self) -> str:
        return self.json()["error"]


def call(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None) -> Answer:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.headers, exc.read())


def raw_get(base: str, path: str, headers: dict | None = None) -> Answer:
    """GET with the path sent exactly as written (no client-side normalisation of ``..``)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        conn.close()


def post_json(url: str, data: dict, headers: dict | None = None) -> Answer:
    return call(
        url, "POST", json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})}
    )


def multipart(files: list[tuple[str, bytes, str]], field: str = "files") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, data, kind in files:
        out.write(f"--{boundary}\r\n".encode())
        out.write(f'Content-Disposition: form-data; name="{field}"; filename="{name}"\r\n'.encode())
        out.write(f"Content-Type: {kind}\r\n\r\n".encode())
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def upload(base: str, files: list[tuple[str, bytes, str]]) -> Answer:
    body, kind = multipart(files)
    return call(f"{base}/api/uploads", "POST", body, {"Content-Type": kind})


def upload_ids(base: str, paths: list[Path]) -> list[str]:
    answer = upload(base, [(p.name, p.read_bytes(), "image/png") for p in paths])
    assert answer.status == 200, answer.body
    return [image["id"] for image in answer.json()["images"]]


def events(base: str, job: str, *, last_id: int | None = None, until=None) -> list[dict]:
    """Read a job's event stream to its final event (or until ``until(events)`` says stop)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
    headers = {"Accept": "text/event-stream"}
    if last_id is not None:
        headers["Last-Event-ID"] = str(last_id)
    out: list[dict] = []
    try:
        conn.request("GET", f"/api/tell/{job}/events", headers=headers)
        response = conn.getresponse()
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        ident = None
        for raw in response:
            line = raw.decode("utf-8").rstrip("\n")
            if line.startswith("id: "):
                ident = int(line[4:])
            elif line.startswith("data: "):
                event = json.loads(line[6:])
                event["_id"] = ident
                out.append(event)
                if event["event"] in ("done", "error", "cancelled") or (until and until(out)):
                    break
    finally:
        conn.close()
    return out


def tell(base: str, ids: list[str], **options) -> str:
    answer = post_json(f"{base}/api/tell", {"images": ids, **options})
    assert answer.status == 200, answer.body
    return answer.json()["job"]


def png_bytes(size=(64, 48), colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width`` × ``height`` pixels (a decompression bomb's shape)."""
    data = bytearray(png_bytes((8, 8)))
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF)
    return bytes(data)


# -- the page and its headers ----------------------------------------------------------------------------


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.inline_scripts = 0
        self._in_script = False

    def handle_starttag(self, tag, attrs) -> None:
        for key, value in attrs:
            if key in ("src", "href") and value:
                self.refs.append(value)
        self._in_script = tag == "script" and not dict(attrs).get("src")

    def handle_data(self, data) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag) -> None:
        self._in_script = False


def test_page_and_assets_are_local_with_strict_headers(studio_url):
    page = call(f"{studio_url}/")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Content-Security-Policy"] == CSP
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    refs = _Refs()
    refs.feed(page.body.decode("utf-8"))
    assert refs.inline_scripts == 0  # the CSP would block them anyway
    assets = [r for r in refs.refs if not r.startswith("#")]
    assert assets, "the page loads no script or style"
    for ref in assets:
        assert ref.startswith("/static/"), f"the page refers to {ref}, outside /static/ (no CDN)"
        asset = call(studio_url + ref)
        assert asset.status == 200, ref
        assert asset.headers["Content-Security-Policy"] == CSP
        assert asset.headers["X-Content-Type-Options"] == "nosniff"
    api = call(f"{studio_url}/api/config")
    assert api.headers["Content-Security-Policy"] == CSP
    assert api.headers["Cache-Control"] == "no-store"


def test_config_describes_the_teller_limits_and_sources(studio_url):
    config = call(f"{studio_url}/api/config").json()
    assert config["teller"]["backend"] == "baseline" and config["teller"]["baseline"] is True
    assert "baseline" in config["teller"]["label"]
    assert config["limits"] == {
        "max_images": STUDIO_MAX_IMAGES,
        "max_image_bytes": STUDIO_MAX_IMAGE_BYTES,
        "types": ["image/jpeg", "image/png", "image/webp", "image/gif"],
        "max_new_tokens": 32768,
        "max_temperature": 2.0,
        "max_prompt_chars": 20000,
    }
    assert config["sampling"]["temperature"] == 0.7 and config["prompt"]
    assert config["datasets"] == [{"name": "stories", "source": str(EXAMPLES)}]
    assert config["runs"] is True


# -- uploads ---------------------------------------------------------------------------------------------


def test_upload_keeps_images_and_serves_their_bytes(studio_url):
    jpeg = (EXAMPLES / "pioneers" / "01.jpg").read_bytes()
    png = LIGHTHOUSE_FRAMES[0].read_bytes()
    # the claimed types are wrong on purpose: the content decides
    answer = upload(studio_url, [("a/b/../01.jpg", jpeg, "text/plain"), ("frame.png", png, "image/jpeg")])
    assert answer.status == 200, answer.body
    first, second = answer.json()["images"]
    assert first["name"] == "01.jpg" and second["name"] == "frame.png"
    assert (second["width"], second["height"], second["bytes"]) == (640, 480, len(png))
    assert first["id"].startswith("u") and first["url"] == f"/api/uploads/{first['id']}"
    served = call(studio_url + first["url"])
    assert served.body == jpeg and served.headers["Content-Type"] == "image/jpeg"
    assert call(studio_url + second["url"]).headers["Content-Type"] == "image/png"


@pytest.mark.parametrize(
    ("files", "status", "words"),
    [
        ([("notes.png", b"just some text, not an image\n" * 10, "image/png")], 415, "judged by its content"),
        ([("page.jpg", b"<html><script>alert(1)</script></html>", "image/jpeg")], 415, "not a PNG, JPEG"),
        ([("half.png", png_bytes((300, 200))[:200], "image/png")], 400, "corrupt or truncated"),
        ([("big.png", b"\x89PNG\r\n\x1a\n" + b"\0" * STUDIO_MAX_IMAGE_BYTES, "image/png")], 413, "more than"),
        ([("bomb.png", png_claiming(30000, 30000), "image/png")], 413, "pixels"),
        ([(f"{i}.png", png_bytes(), "image/png") for i in range(STUDIO_MAX_IMAGES + 1)], 413, "choose fewer"),
        ([("empty.png", b"", "image/png")], 400, "empty"),
        # a GIF signature and nothing PIL can read (its message named a BytesIO at a memory address)
        ([("odd.gif", b"GIF89a" + b"\0" * 40, "image/gif")], 400, "not one PIL can read"),
    ],
    ids=["text", "html", "truncated", "too-big", "bomb", "too-many", "empty", "unreadable"],
)
def test_upload_refusals_say_why(studio_url, files, status, words):
    answer = upload(studio_url, files)
    assert answer.status == status, answer.body
    assert words in answer.error
    assert "\n" not in answer.error and " at 0x" not in answer.error
    if len(files) == 1 and files[0][0] != "empty.png":
        assert files[0][0] in answer.error  # the message names the file


@pytest.mark.parametrize(
    ("width", "height", "limit"),
    [(10000, 8000, StudioConfig().max_pixels), (30000, 30000, 2 * Image.MAX_IMAGE_PIXELS)],
    ids=["studio-limit", "pil-limit"],
)
def test_an_upload_with_too_many_pixels_says_its_size_and_the_limit(studio_url, width, height, limit):
    """The studio's own limit and PIL's are said as the rest of the program says them."""
    answer = upload(studio_url, [("bomb.png", png_claiming(width, height), "image/png")])
    assert answer.status == 413, answer.body
    assert answer.error == (
        f"bomb.png is too large to read safely ({width * height:,} pixels, the limit is {limit:,}); "
        "downscale it"
    )


def test_an_upload_is_all_or_nothing_and_must_be_multipart(studio_url):
    good, bad = ("ok.png", png_bytes(), "image/png"), ("bad.png", b"nope", "image/png")
    answer = upload(studio_url, [good, bad])
    assert answer.status == 415 and "bad.png" in answer.error
    no_form = call(f"{studio_url}/api/uploads", "POST", b"{}", {"Content-Type": "application/json"})
    assert no_form.status == 400 and "multipart/form-data" in no_form.error
    body, kind = multipart([good], field="other")
    assert "no files" in call(f"{studio_url}/api/uploads", "POST", body, {"Content-Type": kind}).error
    assert call(f"{studio_url}/api/uploads/u0000").status == 404


BOUNDARY = "b0undary"
PART = b'--b0undary\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n'


@pytest.mark.parametrize(
    ("kind", "body", "words"),
    [
        ("multipart/form-data", PART + b"x\r\n--b0undary--\r\n", "multipart/form-data"),
        ("multipart/form-data; boundary=", PART + b"x\r\n--b0undary--\r\n", "multipart/form-data"),
        (f"multipart/form-data; boundary={BOUNDARY}", PART + b"x" * 100, "cut off"),
        (f"multipart/form-data; boundary={BOUNDARY}", b"", "cut off"),
        (f"multipart/form-data; boundary={BOUNDARY}", b"\x00\xff garbage \x89PNG" * 50, "malformed"),
        (f"multipart/form-data; boundary={BOUNDARY}", b"--b0undaryX\r\n\r\nx\r\n--b0undary--", "malformed"),
        (
            f"multipart/form-data; boundary={BOUNDARY}",
            b"--b0undary\r\nX: y\r\n\r\nx\r\n--b0undary--",
            "no form-data name",
        ),
        (
            f"multipart/form-data; boundary={BOUNDARY}",
            b'--b0undary\r\nContent-Disposition: form-data; name="files"; filename="' + b"a" * 20000,
            "malformed",
        ),
    ],
    ids=[
        "no-boundary",
        "empty-boundary",
        "truncated",
        "empty",
        "garbage",
        "bad-boundary",
        "no-name",
        "long-header",
    ],
)
def test_a_malformed_upload_is_a_400_that_says_so(studio_url, kind, body, words):
    answer = call(f"{studio_url}/api/uploads", "POST", body, {"Content-Type": kind})
    assert answer.status == 400, answer.body
    assert words in answer.error and "\n" not in answer.error


def test_an_upload_keeps_a_file_name_in_utf8_and_skips_other_fields(studio_url):
    caption = b'--b0undary\r\nContent-Disposition: form-data; name="caption"\r\n\r\n' + b"x" * 50_000
    image = 'Content-Disposition: form-data; name="files"; filename="phare é.png"'.encode()
    body = caption + b"\r\n--b0undary\r\n" + image + b"\r\n\r\n" + png_bytes() + b"\r\n--b0undary--\r\n"
    kind = f"multipart/form-data; boundary={BOUNDARY}"
    answer = call(f"{studio_url}/api/uploads", "POST", body, {"Content-Type": kind})
    assert answer.status == 200, answer.body
    assert [image["name"] for image in answer.json()["images"]] == ["phare é.png"]


def test_a_client_still_sending_hears_why_its_upload_is_refused(studio_url):
    # the refusal comes at the limit (tests/studio/test_multipart.py); the rest is read and dropped
    kind = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    huge = PART + b"\0" * (5 * STUDIO_MAX_IMAGE_BYTES) + b"\r\n--b0undary--\r\n"
    big = call(f"{studio_url}/api/uploads", "POST", huge, kind)
    assert big.status == 413 and "a.png is more than the 1 MB an image may be" in big.error
    body = call(
        f"{studio_url}/api/uploads",
        "POST",
        PART,
        {**kind, "Content-Length": str(2 * STUDIO_MAX_IMAGES * STUDIO_MAX_IMAGE_BYTES)},
    )
    assert body.status == 413 and "send less at once" in body.error


# -- telling (baseline) ------------------------------------------------------------------------------------


def test_tell_streams_chunks_parser_events_and_the_telling(studio_url):
    ids = upload_ids(studio_url, LIGHTHOUSE_FRAMES)
    job = tell(studio_url, ids, temperature=0.2, seed=3)
    got = events(studio_url, job)
    names = [e["event"] for e in got]
    assert names[0] == "chunk" and names[-1] == "done"
    assert [e["_id"] for e in got] == list(range(len(got)))  # SSE ids: the index of each event
    chunks = [e for e in got if e["event"] == "chunk"]
    assert [c["tokens"] for c in chunks] == list(range(1, len(chunks) + 1))
    # the CoT fills in before the story: table rows, then </think>, then segments and spans
    rows = [i for i, n in enumerate(names) if n == "table_row_completed"]
    closed = names.index("think_closed")
    assert names.index("think_opened") < names.index("image_section_started") < rows[0]
    assert rows and max(rows) < closed < names.index("segment_started")
    assert {"span_opened", "span_closed", "text_appended", "narrative_row_completed"} <= set(names)
    row = got[rows[0]]
    assert row["image"] == 1 and row["table"] == "characters"
    assert row["row"]["id"] == "char1" and len(row["row"]["box"]) == 4  # the baseline's pixel box
    done = got[-1]
    assert done["raw"] == "".join(c["text"] for c in chunks)
    assert done["telling"]["well_structured"] is True, done["telling"]["reasons"]
    assert len(done["telling"]["cot"]["images"]) == 3
    assert done["meta"]["backend"] == "baseline" and done["meta"]["images"] == 3
    assert done["meta"]["sampling"]["seed"] == 3 and done["meta"]["usage"]["chunks"] == len(chunks)


def test_events_wait_for_a_late_reader_and_resume_after_last_event_id(studio_url):
    ids = upload_ids(studio_url, LIGHTHOUSE_FRAMES[:2])
    job = tell(studio_url, ids)
    time.sleep(0.5)  # the baseline is done by now; the events are kept
    everything = events(studio_url, job)
    assert everything[-1]["event"] == "done"
    resumed = events(studio_url, job, last_id=3)
    assert [e["_id"] for e in resumed] == list(range(4, len(everything)))
    assert resumed == everything[4:]
    again = post_json(f"{studio_url}/api/tell/{job}/cancel", {})
    assert again.status == 200 and again.json() == {"cancelled": False}  # it had finished


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"images": []}, 400, "upload at least one image"),
        ({"images": ["u-gone"]}, 404, "upload the image again"),
        ({"images": "u1"}, 400, "list of upload ids"),
        ({"images": ["u"] * (STUDIO_MAX_IMAGES + 1)}, 413, "choose fewer"),
        ({"images": None, "temperature": "hot"}, 400, "list of upload ids"),
    ],
)
def test_tell_refuses_bad_requests(studio_url, body, status, words):
    answer = post_json(f"{studio_url}/api/tell", body)
    assert answer.status == status and words in answer.error


def test_tell_checks_sampling_and_content_type(studio_url):
    ids = upload_ids(studio_url, LIGHTHOUSE_FRAMES[:1])
    hot = post_json(f"{studio_url}/api/tell", {"images": ids, "temperature": "hot"})
    assert hot.status == 400 and "'temperature' must be a number" in hot.error
    negative = post_json(f"{studio_url}/api/tell", {"images": ids, "top_p": 1.5})
    assert negative.status == 400 and "'top_p' must be a number above 0 and at most 1" in negative.error
    form = call(
        f"{studio_url}/api/tell", "POST", json.dumps({"images": ids}).encode(), {"Content-Type": "text/plain"}
    )
    assert form.status == 415 and "application/json" in form.error
    assert call(f"{studio_url}/api/tell/j-none/events").status == 404
    assert post_json(f"{studio_url}/api/tell/j-none/cancel", {}).status == 404


# -- telling through an endpoint: slow, broken, refused ------------------------------------------------------


@pytest.fixture(scope="module")
def slow_endpoint():
    """A fake OpenAI-compatible server that streams the lighthouse output slowly and wants a key."""
    with FakeServer(chunk=40, piece_delay=0.05, api_key=SECRET) as fake:
        yield fake


@pytest.fixture(scope="module")
def endpoint_studio(slow_endpoint):
    config = StudioConfig(teller=TellerOptions(endpoint=slow_endpoint.url, api_key=SECRET))
    with running_studio(config) as server:
        yield server.url


def test_the_api_key_stays_on_the_server(endpoint_studio, slow_endpoint):
    config = call(f"{endpoint_studio}/api/config")
    assert SECRET not in config.body.decode()
    assert config.json()["teller"] == {
        "backend": "openai",
        "model": "fake/storyteller",
        "label": "openai: fake/storyteller",
        "baseline": False,
    }
    # the key is used, server-side: the fake server refuses requests without it
    assert slow_endpoint.requests[0]["headers"]["Authorization"] == f"Bearer {SECRET}"


def test_cancel_mid_stream_stops_the_upstream_request(endpoint_studio, slow_endpoint):
    ids = upload_ids(endpoint_studio, LIGHTHOUSE_FRAMES)
    job = tell(endpoint_studio, ids)
    first = events(endpoint_studio, job, until=lambda got: sum(e["event"] == "chunk" for e in got) >= 3)
    started = time.monotonic()
    assert post_json(f"{endpoint_studio}/api/tell/{job}/cancel", {}).json() == {"cancelled": True}
    got = events(endpoint_studio, job)
    assert time.monotonic() - started < 2
    assert got[-1]["event"] == "cancelled"
    assert got[: len(first)] == first  # the same stream, replayed
    partial = got[-1]["partial"]
    text = "".join(e["text"] for e in got if e["event"] == "chunk")
    assert partial == text and LIGHTHOUSE.startswith(partial) and 0 < len(partial) < len(LIGHTHOUSE)
    assert "done" not in {e["event"] for e in got}
    deadline = time.monotonic() + 5
    while slow_endpoint.active and time.monotonic() < deadline:  # the worker closed the stream
        time.sleep(0.05)
    assert slow_endpoint.active == 0
    assert SECRET not in json.dumps(got)


def test_stories_told_at_once_are_capped(slow_endpoint):
    config = StudioConfig(teller=TellerOptions(endpoint=slow_endpoint.url, api_key=SECRET), max_jobs=1)
    with running_studio(config) as server:
        ids = upload_ids(server.url, LIGHTHOUSE_FRAMES[:1])
        first = tell(server.url, ids)
        second = post_json(f"{server.url}/api/tell", {"images": ids})
        assert second.status == 429 and "wait for one to finish or cancel it" in second.error
        assert post_json(f"{server.url}/api/tell/{first}/cancel", {}).json() == {"cancelled": True}
        assert events(server.url, first)[-1]["event"] == "cancelled"


def wait_until(check, timeout: float = 5.0) -> bool:
    """Poll ``check()`` until it is true (True) or ``timeout`` seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_cancel_ends_a_silent_request_at_once_and_frees_its_place():
    """The server sends three pieces, then only keep-alive comments: no chunk would ever wake
    the worker to see the flag. The cancel ends the request itself, and its place is free at once."""
    with FakeServer("keepalive", chunk=40, drop_after=3, delay=60, piece_delay=0.05) as fake:
        config = StudioConfig(teller=TellerOptions(endpoint=fake.url, retries=0), max_jobs=1)
        with running_studio(config) as server:
            jobs = server.server.config.app.state.jobs
            ids = upload_ids(server.url, LIGHTHOUSE_FRAMES[:1])
            first = tell(server.url, ids)
            events(server.url, first, until=lambda got: sum(e["event"] == "chunk" for e in got) >= 3)
            assert fake.active == 1
            started = time.monotonic()
            assert post_json(f"{server.url}/api/tell/{first}/cancel", {}).json() == {"cancelled": True}
            second = post_json(f"{server.url}/api/tell", {"images": ids})  # before the worker ends, even
            assert second.status == 200, second.body
            # the first request was closed from the cancelling side: its worker and its stream ended
            assert wait_until(lambda: not jobs.get(first).running, 3), "the cancelled worker still streams"
            assert time.monotonic() - started < 3
            assert events(server.url, first)[-1]["event"] == "cancelled"
            assert post_json(f"{server.url}/api/tell/{second.json()['job']}/cancel", {}).json() == {
                "cancelled": True
            }
            assert wait_until(lambda: fake.active == 0, 3), f"{fake.active} streams still open upstream"
            assert wait_until(lambda: not any(job.running for job in jobs._jobs.values()), 3)


class HeldTeller(Teller):
    """Writes a line, then holds on until ``release`` is set, whatever happens: a teller a cancel
    cannot interrupt (the studio shares it between jobs; only its next chunk shows the flag)."""

    backend = "held"
    model = "held"

    def __init__(self) -> None:
        self.release = threading.Event()

    def stream(self, images, *, prompt=Prompt(), sampling=Sampling()):
        yield "<think>\n"
        self.release.wait(30)
        yield "## Image 1\n"


def test_a_cancelled_story_stops_counting_at_once_even_while_its_worker_ends():
    teller = HeldTeller()
    with running_studio(StudioConfig(max_jobs=1), teller=teller) as server:
        jobs = server.server.config.app.state.jobs
        ids = upload_ids(server.url, LIGHTHOUSE_FRAMES[:1])
        held = []
        try:
            for _ in range(2):
                job = tell(server.url, ids)
                held.append(job)
                events(server.url, job, until=lambda got: got[-1]["event"] == "chunk")
                assert post_json(f"{server.url}/api/tell", {"images": ids}).status == 429  # one at a time
                assert post_json(f"{server.url}/api/tell/{job}/cancel", {}).json() == {"cancelled": True}
                assert jobs.get(job).running  # its worker waits for the teller's next chunk ...
            # ... yet the place is free at once, until twice max_jobs workers are still ending
            refused = post_json(f"{server.url}/api/tell", {"images": ids})
            assert refused.status == 429 and "2 cancelled stories are still ending" in refused.error
        finally:
            teller.release.set()
        assert wait_until(lambda: not any(jobs.get(job).running for job in held))
        job = tell(server.url, ids)
        assert events(server.url, job)[-1]["event"] == "done"


def read_for(base: str, job: str, seconds: float, last_id: int | None = None) -> list[dict]:
    """Stay connected to a job's event stream for ``seconds`` (or to its end), then hang up."""
    until = time.monotonic() + seconds
    return events(base, job, last_id=last_id, until=lambda got: time.monotonic() > until)


def test_a_job_nobody_reads_is_cancelled_after_a_grace_and_a_reload_keeps_it():
    with FakeServer(chunk=40, piece_delay=0.04) as fake:  # the lighthouse in ~5 s
        config = StudioConfig(teller=TellerOptions(endpoint=fake.url, retries=0), max_jobs=1, job_grace=0.5)
        with running_studio(config) as server:
            jobs = server.server.config.app.state.jobs
            ids = upload_ids(server.url, LIGHTHOUSE_FRAMES[:1])
            job = tell(server.url, ids)
            got = read_for(server.url, job, 1.0)  # read longer than the grace: it goes on
            assert got[-1]["event"] == "chunk"
            # a reload: the page hangs up and connects again at once, after the last event it saw
            again = read_for(server.url, job, 1.0, last_id=got[-1]["_id"])
            assert again[0]["_id"] == got[-1]["_id"] + 1 and again[-1]["event"] == "chunk"
            assert not jobs.get(job).finished
            # the tab is closed: nobody reads it, and after the grace it is cancelled
            assert wait_until(lambda: jobs.get(job).finished, 5)
            final = events(server.url, job, last_id=again[-1]["_id"])[-1]
            assert final["event"] == "cancelled" and "no page followed this story" in final["reason"]
            assert 0 < len(final["partial"]) < len(LIGHTHOUSE)
            assert wait_until(lambda: not jobs.get(job).running, 3)
            # its place is free; a story whose page never connects at all ends the same way
            unread = tell(server.url, ids)
            assert wait_until(lambda: jobs.get(unread).finished, 5)
            assert "no page followed this story" in jobs.get(unread).since(0)[0][-1]["reason"]


def test_one_reaper_thread_watches_every_job_and_stops_on_close():
    from storyreasoning.studio.jobs import JobManager

    def reapers() -> int:
        return sum(t.name == "studio-tell-reaper" for t in threading.enumerate())

    others = reapers()  # other studios of this session have their own
    teller = HeldTeller()
    manager = JobManager(teller, max_jobs=1000, ttl=60, grace=0.3)
    before = threading.active_count()
    try:
        slow = HeldTeller()
        quick = JobManager(slow, max_jobs=1000, ttl=60, grace=30)
        try:
            started = [quick.start([], [], prompt=Prompt(), sampling=Sampling()) for _ in range(100)]
            slow.release.set()
            for job in started:  # stories started and ended: no thread stays behind per job
                job.thread.join(5)
            assert reapers() == others + 1 and threading.active_count() <= before + 2
        finally:
            quick.close()
        assert reapers() == others
        # unread jobs are still cancelled after the grace, by the one reaper
        held = [manager.start([], [], prompt=Prompt(), sampling=Sampling()) for _ in range(3)]
        assert reapers() == others + 1
        assert wait_until(lambda: all(job.finished for job in held), 5)
        assert all("no page followed" in job.since(0)[0][-1]["reason"] for job in held)
    finally:
        teller.release.set()
        manager.close()
    assert reapers() == others


def test_event_streams_end_at_once_when_the_server_shuts_down():
    teller = HeldTeller()
    try:
        with running_studio(StudioConfig(), teller=teller) as server:
            ids = upload_ids(server.url, LIGHTHOUSE_FRAMES[:1])
            job = tell(server.url, ids)
            events(server.url, job, until=lambda got: got[-1]["event"] == "chunk")
            host, port = urlsplit(server.url).netloc.split(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            conn.request("GET", f"/api/tell/{job}/events")
            response = conn.getresponse()
            assert response.status == 200
            response.read1(10)  # connected and reading
            stopping = threading.Thread(target=server.stop)
            began = time.monotonic()
            stopping.start()
            response.read()  # the stream ends when the server shuts down, not at its timeout
            took = time.monotonic() - began
            stopping.join(10)
            conn.close()
            assert took < 0.9, took  # the graceful timeout of a BackgroundServer is 1 s
    finally:
        teller.release.set()


def test_a_stream_that_breaks_ends_in_an_error_event_with_the_partial_text():
    with FakeServer("drop", chunk=300, drop_after=4) as fake:
        config = StudioConfig(teller=TellerOptions(endpoint=fake.url))
        with running_studio(config) as server:
            ids = upload_ids(server.url, LIGHTHOUSE_FRAMES)
            got = events(server.url, tell(server.url, ids))
    error = got[-1]
    assert error["event"] == "error"
    assert "ended the stream before the output was finished" in error["message"]
    assert "\n" not in error["message"]
    assert error["partial"] == LIGHTHOUSE[:1200]
    assert [e["event"] for e in got[:2]] == ["chunk", "think_opened"]


def test_a_servers_multi_line_error_is_one_line_in_the_error_event():
    body = {"error": {"message": "CUDA out of memory.\nTried to allocate 2 GiB\n\ton GPU 0"}}
    with FakeServer("status", status=500, error_body=body) as fake:
        with running_studio(StudioConfig(teller=TellerOptions(endpoint=fake.url))) as server:
            ids = upload_ids(server.url, LIGHTHOUSE_FRAMES[:1])
            got = events(server.url, tell(server.url, ids))
    assert [e["event"] for e in got] == ["error"]
    message = got[0]["message"]
    assert "\n" not in message and "\t" not in message
    assert "CUDA out of memory. Tried to allocate 2 GiB on GPU 0" in message


def test_a_refused_key_is_an_error_event_that_does_not_show_the_key():
    with FakeServer(api_key="the-right-key") as fake:
        options = TellerOptions(endpoint=fake.url, served_model="fake/storyteller", api_key=SECRET)
        with running_studio(StudioConfig(teller=options)) as server:
            ids = upload_ids(server.url, LIGHTHOUSE_FRAMES[:1])
            got = events(server.url, tell(server.url, ids))
    assert [e["event"] for e in got] == ["error"]
    assert "refused the API key" in got[0]["message"] and got[0]["partial"] == ""
    assert SECRET not in json.dumps(got)


def test_a_studio_without_a_teller_inspects_and_browses_only():
    config = StudioConfig(datasets=parse_datasets([f"ex={EXAMPLES}"]))
    with running_studio(config) as server:
        assert call(f"{server.url}/api/config").json()["teller"] is None
        answer = post_json(f"{server.url}/api/tell", {"images": ["u1"]})
        assert answer.status == 503 and "--teller baseline" in answer.error
        assert call(f"{server.url}/api/datasets/ex/stories").json()["total"] == 3
        assert call(f"{server.url}/api/runs").json() == {"runs": []}


def test_a_crash_is_one_sentence_that_keeps_its_details_in_the_log(caplog):
    from storyreasoning.studio.app import create_app
    from storyreasoning.studio.server import BackgroundServer

    app = create_app(StudioConfig())

    @app.get("/api/boom")
    def boom():
        raise RuntimeError("disk on fire")

    with BackgroundServer(app) as server:
        answer = call(f"{server.url}/api/boom")
    assert answer.status == 500
    # the exception's text (it may name the server's files) stays in the log
    assert answer.error == "the studio failed on this request (RuntimeError); its log says why"
    assert "disk on fire" in caplog.text
    assert answer.headers["Content-Security-Policy"] == CSP
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["Cache-Control"] == "no-store"


def test_a_studio_over_local_weights_tells_story_after_story(request):
    from ..conftest import require_transformers

    require_transformers()
    model = request.getfixturevalue("tiny_qwen")
    config = StudioConfig(teller=TellerOptions(model=str(model)))
    with running_studio(config) as server:
        described = call(f"{server.url}/api/config").json()["teller"]
        assert described["backend"] == "transformers" and described["model"] == str(model)
        ids = upload_ids(server.url, LIGHTHOUSE_FRAMES[:2])
        for seed in (1, 2):  # the model stays loaded between jobs
            got = events(server.url, tell(server.url, ids, temperature=0, max_new_tokens=6, seed=seed))
            done = got[-1]
            assert done["event"] == "done", got[-1]
            assert (
                done["meta"]["backend"] == "transformers" and done["meta"]["usage"]["completion_tokens"] == 6
            )
            assert done["raw"] == "".join(e["text"] for e in got if e["event"] == "chunk")


# -- inspect and export ------------------------------------------------------------------------------------


def test_parse_returns_the_telling(studio_url):
    good = post_json(f"{studio_url}/api/parse", {"text": LIGHTHOUSE, "image_sizes": [[640, 480]] * 3})
    assert good.status == 200
    assert good.json()["raw"] == LIGHTHOUSE and good.json()["telling"]["well_structured"] is True
    malformed = (ROOT / "examples" / "outputs" / "malformed.txt").read_text(encoding="utf-8")
    bad = post_json(f"{studio_url}/api/parse", {"text": malformed}).json()["telling"]
    assert bad["well_structured"] is False and bad["reasons"]
    assert post_json(f"{studio_url}/api/parse", {}).status == 400
    sizes = post_json(f"{studio_url}/api/parse", {"text": "x", "image_sizes": [[0, "a"]]})
    assert sizes.status == 400 and "image_sizes" in sizes.error


def test_export_is_one_self_contained_page_with_the_text_escaped(studio_url):
    hostile = LIGHTHOUSE.replace("lighthouse", "<script>alert(1)</script>", 1)
    answer = post_json(
        f"{studio_url}/api/export",
        {"text": hostile, "dataset": "stories", "story_id": "lighthouse", "title": "My <b>story</b>"},
    )
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"].startswith("text/html")
    assert answer.headers["Content-Disposition"] == 'attachment; filename="My-b-story-b.html"'
    page = answer.body.decode("utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("data:image/png;base64,") >= 3
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'src="http' not in page and 'href="http' not in page
    ids = upload_ids(studio_url, LIGHTHOUSE_FRAMES[:1])
    from_uploads = post_json(f"{studio_url}/api/export", {"text": LIGHTHOUSE, "images": ids, "title": "t"})
    assert from_uploads.status == 200 and "data:image/png;base64," in from_uploads.body.decode()
    reference = post_json(
        f"{studio_url}/api/export", {"dataset": "stories", "story_id": "pioneers", "title": "p"}
    )
    assert reference.status == 200 and b"data:image/jpeg;base64," in reference.body
    nothing = post_json(f"{studio_url}/api/export", {"text": " ", "title": "t"})
    assert nothing.status == 400 and "no output" in nothing.error


def test_an_exports_file_name_keeps_the_letters_of_any_script(studio_url):
    answer = post_json(
        f"{studio_url}/api/export",
        {"dataset": "stories", "story_id": "lighthouse", "title": "Geschichte – Öl & 灯台 story.txt"},
    )
    assert answer.status == 200, answer.body
    # RFC 6266: the UTF-8 name (RFC 5987 encoding), and an ASCII one for clients that know only that
    assert answer.headers["Content-Disposition"] == (
        'attachment; filename="Geschichte-Ol-story.txt.html"; '
        "filename*=UTF-8''Geschichte-%C3%96l-%E7%81%AF%E5%8F%B0-story.txt.html"
    )
    only_cjk = post_json(
        f"{studio_url}/api/export", {"dataset": "stories", "story_id": "lighthouse", "title": "灯台"}
    )
    assert only_cjk.headers["Content-Disposition"] == (
        "attachment; filename=\"story.html\"; filename*=UTF-8''%E7%81%AF%E5%8F%B0.html"
    )
    hostile = post_json(
        f"{studio_url}/api/export",
        {"dataset": "stories", "story_id": "lighthouse", "title": '../a"b\r\nX: y'},
    )
    assert hostile.headers["Content-Disposition"] == 'attachment; filename="a-b-X-y.html"'


def test_an_exports_file_name_fits_a_file_system_in_bytes():
    from storyreasoning.studio.app import MAX_NAME_BYTES, _filename

    for letter in ("\U0001d49c", "é", "灯", "a"):  # 4, 2, 3 and 1 bytes in UTF-8
        name = _filename(letter * 300)
        assert len(name.encode("utf-8")) <= MAX_NAME_BYTES and name.endswith(".html")
        assert set(name[: -len(".html")]) == {letter}  # whole letters only
    assert len(_filename("\U0001d49c" * 62).encode("utf-8")) <= 255


# -- datasets ---------------------------------------------------------------------------------------------


def test_datasets_list_stories_story_and_frames(studio_url):
    assert call(f"{studio_url}/api/datasets").json() == {
        "datasets": [{"name": "stories", "source": str(EXAMPLES), "splits": ["train"]}]
    }
    listing = call(f"{studio_url}/api/datasets/stories/stories").json()
    assert listing == {
        "total": 3,
        "stories": [
            {"story_id": "cat-and-coffee", "frames": 3},
            {"story_id": "lighthouse", "frames": 3},
            {"story_id": "pioneers", "frames": 4},
        ],
    }
    page = call(f"{studio_url}/api/datasets/stories/stories?offset=1&limit=1&split=train").json()
    assert page == {"total": 3, "stories": [{"story_id": "lighthouse", "frames": 3}]}
    assert call(f"{studio_url}/api/datasets/stories/stories?q=PION").json()["total"] == 1
    story = call(f"{studio_url}/api/datasets/stories/stories/lighthouse").json()
    assert story["story_id"] == "lighthouse" and story["telling"]["well_structured"] is True
    assert story["raw"].startswith("<think>")
    assert [(f["width"], f["height"]) for f in story["frames"]] == [(640, 480)] * 3
    frame = call(studio_url + story["frames"][2]["url"])
    assert frame.body == LIGHTHOUSE_FRAMES[2].read_bytes() and frame.headers["Content-Type"] == "image/png"
    assert call(f"{studio_url}/api/datasets/stories/stories/lighthouse/frames/3").status == 404
    assert call(f"{studio_url}/api/datasets/stories/stories/nope").status == 404
    assert call(f"{studio_url}/api/datasets/other/stories").status == 404
    bad_split = call(f"{studio_url}/api/datasets/stories/stories?split=test")
    assert bad_split.status == 404 and "split" in bad_split.error
    assert call(f"{studio_url}/api/datasets/stories/stories?offset=-1").status == 400
    assert "offset" in call(f"{studio_url}/api/datasets/stories/stories?offset=x").error


def test_a_story_whose_id_a_path_cannot_carry_is_asked_for_with_its_id_in_the_query(odd_ids_studio):
    """A browser folds a path segment "." or ".." away (percent-encoded too) before the request
    leaves: those stories, their frames and a run's story are reached with ?story_id=, the frames'
    URLs are served in that form, and any other id is answered that way as well."""
    url = odd_ids_studio
    for sid in ODD_IDS:
        story = call(f"{url}/api/datasets/odd/story?{urlencode({'story_id': sid, 'split': 'test'})}").json()
        assert story["story_id"] == sid and story["telling"]["well_structured"] is True
        frames = [frame["url"] for frame in story["frames"]]
        assert len(frames) == 3
        if sid in (".", ".."):
            assert all(f.startswith("/api/datasets/odd/story/frames/") for f in frames), frames
            assert all(
                f"story_id={quote(sid, safe='')}" in f and "/./" not in f and "/../" not in f for f in frames
            )
        for k, frame in enumerate(frames):
            assert call(url + frame).body == LIGHTHOUSE_FRAMES[k].read_bytes(), (sid, frame)
        told = call(f"{url}/api/runs/told/story?{urlencode({'story_id': sid})}").json()
        assert told["story_id"] == sid and told["reference"] == {
            "dataset": "odd",
            "split": "test",
            "story_id": sid,
        }
        assert [f["url"] for f in told["frames"]] == frames
    # the path form still answers the ids a path can carry
    assert call(f"{url}/api/datasets/odd/stories/a%2Fb?split=test").json()["story_id"] == "a/b"
    assert (
        call(f"{url}/api/datasets/odd/stories/s000/frames/0?split=test").body
        == LIGHTHOUSE_FRAMES[0].read_bytes()
    )
    missing = call(f"{url}/api/datasets/odd/story?story_id=nope&split=test")
    assert missing.status == 404 and "no story 'nope'" in missing.error
    assert "story_id" in call(f"{url}/api/runs/told/story").error  # the id is required


# -- runs --------------------------------------------------------------------------------------------------


def _evaluated(studio_runs: Path) -> bool:
    return (studio_runs / "baseline" / "eval" / "metrics.json").is_file()


def test_runs_list_with_overall_metrics(studio_url, studio_runs):
    runs = {run["name"]: run for run in call(f"{studio_url}/api/runs").json()["runs"]}
    assert set(runs) == {"baseline", "reference"}
    baseline = runs["baseline"]
    assert baseline["stories"] == 3
    assert baseline["manifest"]["teller"]["backend"] == "baseline"
    assert baseline["manifest"]["dataset"]["source"] == str(EXAMPLES)
    if not _evaluated(studio_runs):
        assert baseline["metrics"] is None
        pytest.skip("the evaluate package is not importable: runs carry no metrics")
    assert set(baseline["metrics"]) == {"grounding", "identity"}
    assert runs["reference"]["metrics"]["identity"]  # overall numbers per family
    # the headline is evaluate's own (one definition), each value as evaluate prints it
    from storyreasoning.evaluate.report import headline_cell, headline_rows, load_report

    expected = headline_rows(load_report(studio_runs / "baseline"))
    served = baseline["headline"]
    assert [row["key"] for row in served] == [row["key"] for row in expected]
    assert [row["label"] for row in served] == ["grounding F1", "grounding mAP", "identity F1"]
    assert [row["text"] for row in served] == [headline_cell(row) for row in expected]
    assert runs["reference"]["headline"][0]["text"] == "1.0000"  # the references scored against themselves
    # every story has an output and no language metrics were scored: neither line is served
    assert (baseline["outputs"], baseline["language_signature"]) == (None, None)


def test_a_partial_runs_outputs_line_and_language_signature_are_served(studio_runs, tmp_path):
    """A run evaluated with a story missing and the language metrics: the outputs line under its headline
    (evaluate's own words) and which backend made its language numbers (metrics.json's signature)."""
    if not _evaluated(studio_runs):
        pytest.skip("the evaluate package is not importable: runs carry no metrics")
    from storyreasoning.evaluate.commands import evaluate
    from storyreasoning.evaluate.report import load_report
    from storyreasoning.evaluate.settings import EvaluateSettings

    partial = failed_run(studio_runs / "baseline", tmp_path / "runs" / "partial")
    evaluate(
        EvaluateSettings(run=partial, metrics="grounding,language", language_backend="python", plots=False)
    )
    report = load_report(partial)
    assert report["dataset"]["missing"] == 1
    with running_studio(StudioConfig(runs=tmp_path / "runs")) as server:
        (run,) = call(f"{server.url}/api/runs").json()["runs"]
        assert run["outputs"] == (
            "2 of 3 stories have an output; the 1 missing is scored as empty outputs "
            "(not well-structured, zero recall)"
        )
        assert run["language_signature"] == report["metrics"]["language"]["extra"]["signature"]
        assert run["language_signature"].startswith("python|regex-ptb|meteor_exact|missing=zero|")


def test_a_runs_judge_scores_join_its_headline(studio_runs, tmp_path):
    """A judged run's judge/summary.json (as evaluate judge writes it) adds its scores, mean [low, high]."""
    import shutil

    if not _evaluated(studio_runs):
        pytest.skip("the evaluate package is not importable: runs carry no metrics")
    runs = tmp_path / "runs"
    shutil.copytree(studio_runs / "baseline", runs / "judged")
    (runs / "judged" / "judge").mkdir()
    summary = {
        "judge": {
            "endpoint": "http://127.0.0.1:1/v1",
            "model": "m",
            "prompt_version": "v1",
            "prompt_sha256": "0",
        },
        "scores": {
            "creativity": {"mean": 3.25, "low": 2.5, "high": 4.0, "n": 3},
            "coherence": {"mean": None, "low": None, "high": None, "n": 0},
            "hallucinations": {"mean": 1.5, "low": 1.0, "high": 2.0, "n": 3},
        },
    }
    (runs / "judged" / "judge" / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    with running_studio(StudioConfig(runs=runs)) as server:
        (run,) = call(f"{server.url}/api/runs").json()["runs"]
        rows = {row["label"]: row["text"] for row in run["headline"]}
        assert rows["creativity (judge, 1-5)"] == "3.25 [2.50, 4.00]"
        assert rows["coherence (judge, 1-5)"] == "–"
        assert rows["hallucinations / story (judge)"] == "1.50 [1.00, 2.00]"
        assert "grounding quality (judge, 1-5)" not in rows  # not in the summary: no row
        assert list(rows)[:3] == ["grounding F1", "grounding mAP", "identity F1"]
        # a damaged summary leaves the judge's scores out, and the run still shows
        (runs / "judged" / "judge" / "summary.json").write_text("{oops", encoding="utf-8")
        (run,) = call(f"{server.url}/api/runs").json()["runs"]
        assert [row["label"] for row in run["headline"]] == ["grounding F1", "grounding mAP", "identity F1"]
        # judged again elsewhere (evaluate judge RUN --out DIR): the page follows the pointer at once,
        # and a later change to that summary too (the cached run is read again)
        elsewhere = tmp_path / "judged-elsewhere"
        elsewhere.mkdir()
        (elsewhere / "settings.json").write_text("{}", encoding="utf-8")  # as evaluate judge --out writes
        (elsewhere / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
        (runs / "judged" / "judge-location.json").write_text(
            json.dumps({"out": str(elsewhere)}), encoding="utf-8"
        )
        (run,) = call(f"{server.url}/api/runs").json()["runs"]
        assert {row["label"]: row["text"] for row in run["headline"]}[
            "creativity (judge, 1-5)"
        ] == "3.25 [2.50, 4.00]"
        summary["scores"]["creativity"] = {"mean": 4.5, "low": 4.0, "high": 5.0, "n": 3}
        (elsewhere / "summary.json").write_text(json.dumps(summary) + " ", encoding="utf-8")
        (run,) = call(f"{server.url}/api/runs").json()["runs"]
        assert {row["label"]: row["text"] for row in run["headline"]}[
            "creativity (judge, 1-5)"
        ] == "4.50 [4.00, 5.00]"


def test_run_stories_and_a_run_story_beside_its_reference(studio_url, studio_runs):
    listing = call(f"{studio_url}/api/runs/baseline/stories").json()
    assert listing["total"] == 3
    assert [s["story_id"] for s in listing["stories"]] == ["cat-and-coffee", "lighthouse", "pioneers"]
    assert all(isinstance(s["well_structured"], bool) for s in listing["stories"])
    assert (
        call(f"{studio_url}/api/runs/baseline/stories?offset=2&limit=5").json()["stories"][0]["story_id"]
        == "pioneers"
    )
    story = call(f"{studio_url}/api/runs/baseline/stories/lighthouse").json()
    assert story["raw"].startswith("<think>") and story["telling"]["cot"] is not None
    assert story["meta"]["backend"] == "baseline"
    assert [(f["width"], f["height"]) for f in story["frames"]] == [(640, 480)] * 3
    assert story["reference"] == {"dataset": "stories", "split": None, "story_id": "lighthouse"}
    assert call(studio_url + story["frames"][0]["url"]).body == LIGHTHOUSE_FRAMES[0].read_bytes()
    reference = call(f"{studio_url}/api/runs/reference/stories/lighthouse").json()
    dataset_story = call(f"{studio_url}/api/datasets/stories/stories/lighthouse").json()
    assert reference["raw"] == dataset_story["raw"]
    if _evaluated(studio_runs):
        assert story["metrics"]["grounding.tp"] is not None
        assert reference["metrics"]["identity.idfp"] == 0
        assert listing["stories"][0]["metrics"]["grounding.precision"] is not None
    assert call(f"{studio_url}/api/runs/baseline/stories/nope").status == 404
    assert call(f"{studio_url}/api/runs/nope/stories").status == 404
    assert listing["failed"] == 0 and not any(s["failed"] for s in listing["stories"])


def test_a_runs_failed_stories_are_counted_and_listed_with_their_error(studio_runs, tmp_path):
    failed_run(studio_runs / "baseline", tmp_path / "runs" / "partial")
    with running_studio(StudioConfig(runs=tmp_path / "runs")) as server:
        (run,) = call(f"{server.url}/api/runs").json()["runs"]
        assert (run["name"], run["stories"], run["failed"]) == ("partial", 2, 1)
        listing = call(f"{server.url}/api/runs/partial/stories").json()
        assert (listing["total"], listing["failed"]) == (3, 1)
        assert [(s["story_id"], s["failed"]) for s in listing["stories"]] == [
            ("cat-and-coffee", False),
            ("lighthouse", False),
            (FAILED_STORY, True),
        ]
        failed = listing["stories"][-1]
        assert (
            failed["error"] == FAILED_ERROR
            and failed["well_structured"] is None
            and failed["metrics"] is None
        )
        found = call(f"{server.url}/api/runs/partial/stories?q=PION").json()
        assert (found["total"], found["failed"], found["stories"][0]["story_id"]) == (1, 1, FAILED_STORY)
        assert call(f"{server.url}/api/runs/partial/stories?offset=2&limit=1").json()["stories"] == [failed]
        story = call(f"{server.url}/api/runs/partial/stories/{FAILED_STORY}")
        assert story.status == 404 and "CUDA out of memory" in story.error


# -- safety ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/runs/..%2F..%2Fetc/stories",
        "/api/runs/%2E%2E/stories",
        "/api/runs/../baseline/stories",
        "/api/runs/baseline%2F..%2Freference/stories",
        "/api/runs/baseline/stories/..%2F..%2Fmanifest.json",
        "/api/datasets/..%2Fstories/stories",
        "/api/datasets/stories/stories/..%2F..%2Fpyproject.toml",
        "/api/datasets/stories/stories/..%2Flighthouse/frames/0",
        "/api/uploads/..%2F..%2Fetc%2Fpasswd",
        "/static/..%2Fapp.py",
        "/static/../app.py",
        "/static/%2e%2e/%2e%2e/cli.py",
    ],
)
def test_paths_from_requests_never_leave_the_configured_folders(studio_url, path):
    answer = raw_get(studio_url, path)
    assert answer.status in (400, 404), (path, answer.status)
    assert b"import" not in answer.body and b"records" not in answer.body
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.error


def test_other_hosts_and_origins_are_refused(studio_url):
    rebound = raw_get(studio_url, "/api/config", {"Host": "attacker.example:80"})
    assert rebound.status == 400 and "this machine" in rebound.error
    assert raw_get(studio_url, "/api/config", {"Host": "localhost"}).status == 200
    ids = upload_ids(studio_url, LIGHTHOUSE_FRAMES[:1])
    foreign = post_json(f"{studio_url}/api/tell", {"images": ids}, {"Origin": "http://attacker.example"})
    assert foreign.status == 403 and "another page" in foreign.error
    own = post_json(f"{studio_url}/api/parse", {"text": "x"}, {"Origin": studio_url})
    assert own.status == 200


def test_unknown_routes_answer_json_errors(studio_url):
    answer = call(f"{studio_url}/api/nothing")
    assert answer.status == 404 and "API.md" in answer.error
    assert call(f"{studio_url}/api/config", "DELETE").status == 405
