"""Every number, size, length and depth a request controls is bounded: a 4xx naming the bound.

The rule is in ``studio/API.md`` ("Bounds") and its limits in ``studio/inputs.py``.
Each case is sent over real HTTP to the shared studio; none may be a 500, none may
start a job, and every refusal is one sentence.
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest

from storyreasoning.studio import inputs

from .test_server import LIGHTHOUSE_FRAMES, Answer, call, events, post_json, raw_get, tell, upload_ids


def post_raw(base: str, path: str, body: bytes, headers: dict | None = None) -> Answer:
    return call(f"{base}{path}", "POST", body, {"Content-Type": "application/json", **(headers or {})})


def refused(answer: Answer, status: int = 400, *words: str) -> None:
    assert answer.status == status, (answer.status, answer.body[:300])
    message = answer.error
    assert "\n" not in message and len(message) < 400, message
    for word in words:
        assert word in message, message


@pytest.fixture(scope="module")
def finished_job(studio_url) -> str:
    ids = upload_ids(studio_url, LIGHTHOUSE_FRAMES[:1])
    job = tell(studio_url, ids)
    assert events(studio_url, job)[-1]["event"] == "done"
    return job


# -- headers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["9" * 5000, "1" + "0" * 9, "-1", "3.5", "abc"])
def test_a_last_event_id_that_is_not_an_event_index_is_a_400(studio_url, finished_job, value):
    answer = raw_get(studio_url, f"/api/tell/{finished_job}/events", {"Last-Event-ID": value})
    refused(answer, 400, "Last-Event-ID", "999,999,999")


def test_a_last_event_id_within_bounds_resumes(studio_url, finished_job):
    everything = events(studio_url, finished_job)
    assert events(studio_url, finished_job, last_id=2) == everything[3:]
    parts = urlsplit(studio_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:  # past the last event of a finished job: the stream just ends
        conn.request("GET", f"/api/tell/{finished_job}/events", headers={"Last-Event-ID": "999999999"})
        response = conn.getresponse()
        assert response.status == 200 and b"data:" not in response.read()
    finally:
        conn.close()


# -- JSON bodies ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("deep", [100_000, 2_000, inputs.MAX_JSON_DEPTH + 1])
def test_a_deeply_nested_body_is_a_400(studio_url, deep):
    body = b'{"text": "x", "image_sizes": ' + b"[" * deep + b"]" * deep + b"}"
    if deep > inputs.MAX_JSON_CONTAINERS:  # refused by its count of brackets, before it is parsed
        refused(post_raw(studio_url, "/api/parse", body), 400, "lists or objects")
    else:
        refused(post_raw(studio_url, "/api/parse", body), 400, "nests", str(inputs.MAX_JSON_DEPTH))


def test_a_body_of_too_many_lists_or_objects_is_a_400_before_it_is_parsed(studio_url):
    # 5.5 million empty objects in 16 MiB took about 800 MB while parsed, then failed the field check
    body = b'{"text": "x", "image_sizes": [' + b"{}," * 100_000 + b"{}]}"
    refused(post_raw(studio_url, "/api/parse", body), 400, "lists or objects", "20,000")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/parse", b'{"text": "\\ud800"}'),
        ("/api/export", b'{"text": "a\\ud800"}'),
        ("/api/export", b'{"text": "<gdi image1>x</gdi>", "title": "\\udfff"}'),
        ("/api/export", b'{"text": "<gdi image1>x</gdi>", "teller_label": "x\\ud800y"}'),
    ],
)
def test_a_lone_surrogate_in_a_text_field_is_a_400(studio_url, path, body):
    # JSON's \ud800 escape decodes to half a surrogate pair, which has no UTF-8: the answer failed (500)
    refused(post_raw(studio_url, path, body), 400, "surrogate")


def test_a_surrogate_pair_is_text(studio_url):
    answer = post_raw(studio_url, "/api/parse", b'{"text": "<gdi image1>\\ud83d\\ude00</gdi>"}')
    assert answer.status == 200, answer.body


@pytest.mark.parametrize(
    ("literal", "words"),
    [
        (b"NaN", "not a number JSON allows"),
        (b"Infinity", "not a number JSON allows"),
        (b"-Infinity", "not a number JSON allows"),
        (b"1e309", "too large"),
        (b"9" * 5000, "digits"),
        (b"0." + b"1" * 5000, "digits"),
    ],
)
def test_numbers_in_a_body_are_finite_and_short(studio_url, literal, words):
    refused(
        post_raw(studio_url, "/api/tell", b'{"images": ["u1"], "temperature": ' + literal + b"}"), 400, words
    )


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("temperature", -0.1, "'temperature'"),
        ("temperature", 2.5, "at most 2"),
        ("temperature", 1e308, "at most 2"),
        ("top_p", 0, "above 0"),
        ("top_p", 1.5, "'top_p'"),
        ("max_new_tokens", 0, "at least 1"),
        ("max_new_tokens", 10**20, "at most 32768"),
        ("max_new_tokens", 12.5, "an integer"),
        ("seed", -1, "at least 0"),
        ("seed", 2**40, "at most 4294967295"),
        ("seed", True, "an integer"),
        ("prompt", "x" * (inputs.MAX_PROMPT_CHARS + 1), "characters long"),
        ("system_prompt", "x" * (inputs.MAX_PROMPT_CHARS + 1), "characters long"),
        ("order", "o" * 5000, "characters long"),
    ],
)
def test_tell_fields_outside_their_bounds_start_no_job(studio_server, field, value, words):
    url = studio_server.url
    jobs = studio_server.server.config.app.state.jobs
    ids = upload_ids(url, LIGHTHOUSE_FRAMES[:1])
    before = len(jobs._jobs)
    refused(post_json(f"{url}/api/tell", {"images": ids, field: value}), 400, words)
    assert len(jobs._jobs) == before


def test_nan_and_huge_temperatures_start_no_job(studio_server):
    url = studio_server.url
    jobs = studio_server.server.config.app.state.jobs
    ids = json.dumps(upload_ids(url, LIGHTHOUSE_FRAMES[:1])).encode()
    before = len(jobs._jobs)
    for literal in (b"NaN", b"1e309"):
        answer = post_raw(url, "/api/tell", b'{"images": ' + ids + b', "temperature": ' + literal + b"}")
        refused(answer, 400)
    assert len(jobs._jobs) == before


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/api/parse", {"text": "x" * (inputs.MAX_TEXT_CHARS + 1)}, "characters long"),
        ("/api/parse", {"text": "x", "image_sizes": [[640, 480]] * (inputs.MAX_SIZES + 1)}, "at most 1000"),
        ("/api/parse", {"text": "x", "image_sizes": [[10**7, 480]]}, "below 1,000,000"),
        ("/api/export", {"text": "x", "title": "t" * 5000}, "'title'"),
        ("/api/export", {"text": "x", "images": ["u" * 5000]}, "longer than an upload id"),
        ("/api/export", {"text": "x", "teller_label": "t" * 5000}, "'teller_label'"),
        ("/api/export", {"dataset": "d" * 5000, "story_id": "s"}, "'dataset'"),
        ("/api/export", {"dataset": "stories", "story_id": "s" * 5000}, "'story_id'"),
        ("/api/export", {"dataset": "stories", "story_id": "lighthouse", "split": "s" * 5000}, "'split'"),
        ("/api/export", {"dataset": "stories", "story_id": "lighthouse", "split": "test"}, "no split"),
    ],
)
def test_parse_and_export_fields_are_bounded(studio_url, path, body, words):
    status = 404 if words == "no split" else 400
    refused(post_json(studio_url + path, body), status, words)


# -- query and path parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/api/datasets/stories/stories?offset=" + "9" * 5000, "offset"),
        ("/api/datasets/stories/stories?offset=" + "9" * 30, "offset"),
        ("/api/datasets/stories/stories?limit=501", "limit"),
        ("/api/datasets/stories/stories?limit=0", "limit"),
        ("/api/datasets/stories/stories?q=" + "a" * 5000, "q"),
        ("/api/datasets/stories/stories?split=" + "a" * 5000, "split"),
        ("/api/datasets/stories/stories/lighthouse/frames/" + "9" * 5000, "k"),
        ("/api/datasets/stories/stories/lighthouse/frames/" + "9" * 12, "k"),
        ("/api/datasets/stories/stories/lighthouse/frames/-1", "k"),
        ("/api/datasets/stories/stories/" + "s" * 5000, "story_id"),
        ("/api/datasets/" + "n" * 5000 + "/stories", "name"),
        ("/api/runs/baseline/stories?offset=-1", "offset"),
        ("/api/runs/baseline/stories?limit=" + "9" * 30, "limit"),
        ("/api/runs/baseline/stories?q=" + "a" * 5000, "q"),
        ("/api/runs/baseline/stories/" + "s" * 5000, "story_id"),
        ("/api/datasets/stories/story?story_id=" + "s" * 5000, "story_id"),
        ("/api/datasets/stories/story/frames/0?story_id=" + "s" * 5000, "story_id"),
        ("/api/runs/baseline/story?story_id=" + "s" * 5000, "story_id"),
        ("/api/runs/baseline/story?story_id=", "story_id"),
        ("/api/runs/" + "n" * 5000 + "/stories", "name"),
        ("/api/uploads/" + "u" * 5000, "upload_id"),
        ("/api/tell/" + "j" * 5000 + "/events", "job_id"),
    ],
)
def test_query_and_path_values_are_bounded(studio_url, path, words):
    refused(raw_get(studio_url, path), 400, words)


def test_an_unknown_split_is_refused_without_opening_anything(studio_server):
    url = studio_server.url
    datasets = studio_server.server.config.app.state.datasets
    for n in range(20):
        refused(call(f"{url}/api/datasets/stories/stories?split=guess{n}"), 404, "no split", "train")
    assert all(split in (None, "train") for _, split in datasets._locks)


def test_a_declared_body_size_beyond_any_limit_is_a_413(studio_url):
    parts = urlsplit(studio_url)
    for path in ("/api/parse", "/api/uploads"):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        try:
            kind = "application/json" if path == "/api/parse" else "multipart/form-data; boundary=b"
            conn.putrequest("POST", path)
            conn.putheader("Content-Type", kind)
            conn.putheader("Content-Length", "9" * 40)
            conn.endheaders()
            response = conn.getresponse()
            assert response.status in (400, 413), response.status  # the HTTP server may refuse it first
            assert response.status != 500
        finally:
            conn.close()
