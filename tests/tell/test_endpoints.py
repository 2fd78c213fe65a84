"""Several endpoints (``tell-dataset --endpoint A --endpoint B``): one model checked at start, stories
balanced by load, a failed endpoint taken out and asked again later, every story recorded exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter

import pytest

from storyreasoning.data import load_stories, write_folders
from storyreasoning.errors import UsageError
from storyreasoning.tell import Sampling, TellError
from storyreasoning.tell.fleet import FleetTeller, split_endpoints
from storyreasoning.tell.run import EndpointDown, read_run, record_samples, tell_dataset

from ..conftest import run_cli
from ..data.fixtures import fixture_samples
from .servers import ROOT, FakeServer, closed_url

GREEDY = Sampling(temperature=0, max_new_tokens=32)


@pytest.fixture
def stories(tmp_path):
    write_folders(fixture_samples(12), tmp_path / "ds")
    return load_stories(tmp_path / "ds")


def ids_in(path) -> Counter:
    return Counter(json.loads(line)["story_id"] for line in path.read_text().splitlines() if line.strip())


def told_by(run) -> Counter:
    _, records = read_run(run)
    return Counter(r["meta"]["endpoint"] for r in records)


class KillableServer:
    """A :class:`FakeServer` in a process of its own, so that it can be killed (SIGKILL: its sockets die with it)."""

    def __init__(self, **options) -> None:
        code = (
            "import sys, time\n"
            f"sys.path.insert(0, {str(ROOT)!r})\n"
            "from tests.tell.servers import FakeServer\n"
            f"server = FakeServer(**{options!r}).__enter__()\n"
            "print(server.url, flush=True)\n"
            "time.sleep(600)\n"
        )
        self.process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        self.url = self.process.stdout.readline().strip()
        assert self.url.startswith("http://"), "the server process did not start"

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def __enter__(self) -> KillableServer:
        return self

    def __exit__(self, *exc) -> None:
        self.kill()
        self.process.stdout.close()


def test_stories_are_balanced_over_the_endpoints(stories, tmp_path):
    with FakeServer(chunk=400, piece_delay=0.02) as a, FakeServer(chunk=400, piece_delay=0.02) as b:
        fleet = FleetTeller.connect([a.url, b.url], concurrency=2, backoff=0.05)
        with fleet:
            summary = tell_dataset(stories, fleet, tmp_path / "run", sampling=GREEDY)
    assert (summary.done, summary.failed) == (12, 0)
    assert ids_in(tmp_path / "run" / "records.jsonl") == Counter(stories.ids())
    served = [len(a.chat_requests()), len(b.chat_requests())]
    assert sum(served) == 12 and min(served) >= 4  # both worked, neither took it all
    assert a.max_active <= 2 and b.max_active <= 2  # at most --concurrency on each
    manifest, _ = read_run(tmp_path / "run")
    assert manifest["teller"]["endpoints"] == [f"{a.url}/v1", f"{b.url}/v1"]
    assert "endpoint" not in manifest["teller"] and manifest["teller"]["model"] == "fake/storyteller"


def test_an_endpoint_killed_midway_still_gives_every_story_exactly_once(stories, tmp_path):
    lines: list[str] = []
    done = []
    with (
        FakeServer(chunk=300, piece_delay=0.03) as a,
        KillableServer(chunk=300, piece_delay=0.03) as b,
    ):
        fleet = FleetTeller.connect([b.url, a.url], concurrency=2, backoff=0.05, warn=lines.append)

        def progress(n: int) -> None:
            done.append(n)
            if len(done) == 3:
                b.kill()  # a hard crash: its streams in flight break, new connections are refused

        with fleet:
            summary = tell_dataset(stories, fleet, tmp_path / "run", sampling=GREEDY, progress=progress)
    assert (summary.done, summary.failed) == (12, 0)
    assert ids_in(tmp_path / "run" / "records.jsonl") == Counter(stories.ids())  # each once
    assert not (tmp_path / "run" / "errors.jsonl").exists()
    counts = told_by(tmp_path / "run")
    assert counts[f"{b.url}/v1"] <= 3 and counts[f"{a.url}/v1"] >= 9  # all after the kill went to a
    assert any(f"endpoint {b.url}/v1 taken out of service" in line for line in lines)


def test_a_failed_endpoint_is_asked_again_later_and_comes_back(stories, tmp_path):
    lines: list[str] = []
    with (
        FakeServer("status", status=503, fail=2, chunk=400, piece_delay=0.03) as a,
        FakeServer(chunk=400, piece_delay=0.03) as b,
    ):
        fleet = FleetTeller.connect([a.url, b.url], concurrency=1, backoff=0.05, warn=lines.append)
        with fleet:
            summary = tell_dataset(stories, fleet, tmp_path / "run", sampling=GREEDY)
        probes = [r for r in a.requests if r["path"] == "/v1/models"]
    assert (summary.done, summary.failed) == (12, 0)
    assert ids_in(tmp_path / "run" / "records.jsonl") == Counter(stories.ids())
    assert told_by(tmp_path / "run")[f"{a.url}/v1"] >= 2  # back in service, it told stories again
    assert len(probes) >= 2  # the start, then a probe after its time out
    assert sum("taken out of service" in line and "HTTP 503" in line for line in lines) >= 1
    assert any(line == f"endpoint {a.url}/v1 is back in service" for line in lines)


def test_endpoints_must_serve_the_same_model():
    with FakeServer(models=("org/a",)) as a, FakeServer(models=("org/b", "org/a")) as b:
        with pytest.raises(UsageError, match="do not all serve org/b") as info:
            FleetTeller.connect([b.url, a.url])
        assert f"{a.url}/v1: org/a" in str(info.value) and "--served-model" in str(info.value)
        fleet = FleetTeller.connect([b.url, a.url], model="org/a")  # named: both serve it
        assert fleet.model == "org/a" and all(e.teller.model == "org/a" for e in fleet.endpoints)
        fleet.close()
        with pytest.raises(UsageError, match=f"{b.url}/v1: org/b, org/a"):
            FleetTeller.connect([a.url, b.url], model="org/b")


def test_an_endpoint_down_at_start_is_left_out_until_it_answers(stories, tmp_path):
    lines: list[str] = []
    down = closed_url()
    with FakeServer(chunk=1000) as a:
        fleet = FleetTeller.connect([down, a.url], concurrency=3, backoff=0.05, warn=lines.append)
        with fleet:
            summary = tell_dataset(stories, fleet, tmp_path / "run", sampling=GREEDY, limit=5)
    assert (summary.done, summary.failed) == (5, 0)
    assert told_by(tmp_path / "run") == Counter({f"{a.url}/v1": 5})
    assert lines[0].startswith(f"warning: endpoint {down}/v1 taken out of service (no server at")


def test_no_endpoint_up_is_one_clear_failure(stories, tmp_path):
    with pytest.raises(TellError, match="no endpoint answered") as info:
        FleetTeller.connect([closed_url(), closed_url()])
    assert info.value.at_endpoint


def test_when_every_endpoint_fails_the_run_stops_and_keeps_what_was_told(stories, tmp_path):
    with (
        FakeServer("status", status=503, fail=None) as a,
        FakeServer("status", status=502, fail=None) as b,
    ):
        fleet = FleetTeller.connect(
            [a.url, b.url], concurrency=1, retries=1, backoff=0.01, warn=lambda _: None
        )
        with fleet, pytest.raises(EndpointDown, match="stopped after 3 stories in a row"):
            tell_dataset(stories, fleet, tmp_path / "run", sampling=GREEDY)
    errors = [json.loads(line) for line in (tmp_path / "run" / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == 3 and all("HTTP 50" in e["error"] for e in errors)
    assert len(a.chat_requests()) + len(b.chat_requests()) <= 2 * (3 + 2)  # each story tried twice at most


def test_endpoints_are_split_and_a_repeat_refused():
    assert split_endpoints("http://a:1, http://b:2") == ["http://a:1", "http://b:2"]
    assert split_endpoints(("http://a:1", "b:2,c:3")) == ["http://a:1", "b:2", "c:3"]
    assert split_endpoints(None) == [] and split_endpoints(()) == []
    with pytest.raises(UsageError, match="given twice"):
        split_endpoints(["http://a:1", "http://a:1/v1/"])


def test_samples_through_a_fleet(stories, tmp_path):
    with FakeServer(chunk=2000) as a, FakeServer(chunk=2000) as b:
        with FleetTeller.connect([a.url, b.url], concurrency=2, warn=lambda _: None) as fleet:
            tell_dataset(stories, fleet, tmp_path / "run", sampling=GREEDY, samples=2, limit=4)
    _, records = read_run(tmp_path / "run")
    assert len(records) == 4 and all(len(record_samples(r)) == 2 for r in records)


# -- the command line -------------------------------------------------------------------------------


def test_cli_several_endpoints_repeated_or_in_a_list_and_a_resume_with_others(stories, tmp_path):
    env = {"OPENAI_API_KEY": ""}
    ds, out = str(tmp_path / "ds"), str(tmp_path / "run")
    with FakeServer(chunk=2000) as a, FakeServer(chunk=2000) as b:
        first = run_cli(
            "tell-dataset", ds, "--out", out, "--endpoint", a.url, "--endpoint", b.url, "--limit", "6", env=env
        )  # fmt: skip
        rest = run_cli("tell-dataset", ds, "--out", out, "--endpoint", f"{b.url},{a.url}", env=env)
    assert first.returncode == 0, first.stderr
    assert rest.returncode == 0, rest.stderr
    assert "6 already done" in rest.stdout  # the same run, resumed through the endpoints in another order
    assert ids_in(tmp_path / "run" / "records.jsonl") == Counter(stories.ids())
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert settings["endpoint"] == [f"{b.url},{a.url}"]  # operational: the latest invocation's
    assert len(a.chat_requests()) >= 3 and len(b.chat_requests()) >= 3


def test_cli_endpoints_serving_other_models_are_one_line(stories, tmp_path):
    with FakeServer() as a, FakeServer(models=("other",)) as c:
        result = run_cli(
            "tell-dataset", str(tmp_path / "ds"), "--out", str(tmp_path / "x"), "-e", a.url, "-e", c.url,
            env={"OPENAI_API_KEY": ""},
        )  # fmt: skip
    assert result.returncode == 2 and "do not all serve fake/storyteller" in result.stderr
    assert f"{c.url}/v1: other" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not a.chat_requests()
