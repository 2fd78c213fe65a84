"""``storyreasoning evaluate judge``: a judge on loopback answering prepared JSON, and a real
``transformers serve`` on the tiny Qwen2.5-VL.

The fake judge (:class:`~tests.tell.servers.FakeServer`) decides its answer from the
request it got (the story's marker in the output, whether it is a re-ask), so answers do
not depend on the order concurrent requests arrive in, and it records every request, so
the tests count what was asked.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from storyreasoning.data import SampleList, load_stories, write_parquet
from storyreasoning.errors import StoryReasoningError, UsageError
from storyreasoning.evaluate.judge import (
    JUDGEMENTS,
    PAIRWISE,
    AnswerError,
    Judge,
    check_judgement,
    check_verdict,
    combine,
    judge_command,
    judge_story,
    parse_answer,
    quote_found,
)
from storyreasoning.evaluate.judge_prompts import (
    CRITERIA,
    HALLUCINATION_TYPES,
    JUDGE_PROMPT,
    PAIRWISE_PROMPT,
    PAIRWISE_SHA256,
    PROMPT_SHA256,
    PROMPT_VERSION,
)
from storyreasoning.evaluate.settings import JudgeSettings
from storyreasoning.evaluate.stats import bootstrap_mean, win_rate
from storyreasoning.settings import from_config
from storyreasoning.tell.base import Teller
from storyreasoning.tell.openai import OpenAITeller
from storyreasoning.tell.run import tell_dataset

from ..data.fixtures import fixture_samples
from ..tell.servers import FakeServer, closed_url, held_elsewhere, transformers_serve

pytest.importorskip("pyarrow", reason="needs pyarrow: pip install 'storyreasoning[data]'")

N = 4  # stories
SUMMARY_KEYS = {"judge", "stories", "judged", "failed", "scores", "hallucinations_by_type", "tokens", "cost"}


class Marked(Teller):
    """Tells each story as the lighthouse story with a marker naming the run and the story."""

    backend = "replay"
    model = "replay-model"

    def __init__(self, text: str, label: str) -> None:
        self.text, self.label, self.calls = text, label, 0

    def stream(self, images, *, prompt=None, sampling=None):
        marker = f"Marker {self.label}-s{self.calls:02d}."
        self.calls += 1
        yield self.text.replace(
            "across <gdl bg1>the dark sea</gdl>.", f"across <gdl bg1>the dark sea</gdl>. {marker}"
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A four-story parquet dataset (PNG and JPEG frames) and two runs of it, a and b."""
    from ..data.fixtures import LIGHTHOUSE

    root = tmp_path_factory.mktemp("judge")
    samples = fixture_samples(N)
    write_parquet(SampleList(samples), root / "data", split="test")
    stories = load_stories(root / "data", "test")
    text = LIGHTHOUSE.read_text(encoding="utf-8")
    for label in ("a", "b"):
        tell_dataset(stories, Marked(text, label), root / f"run-{label}")
    return root, samples


def marker(body: dict) -> str:
    """``s02`` from the story's marker in a judge request (the first output's, for a pair)."""
    text = body["messages"][1]["content"][-1]["text"]
    return text.split("Marker ", 1)[1].split(".", 1)[0].split("-", 1)[1]


def first_run(body: dict) -> str:
    """Which run's output a pairwise request shows as Output 1: 'a' or 'b'."""
    text = body["messages"][1]["content"][-1]["text"]
    return text.split("=== Output 1 ===", 1)[1].split("Marker ", 1)[1][0]


def answer(story: str) -> str:
    """A valid judgement, different per story: story k has k object hallucinations and scores k+1."""
    k = int(story[1:])
    items = [
        {"type": "object", "quote": "her brass lantern", "frame": 1, "reason": "no lantern is visible"}
    ] * k
    if k == 3:
        items = [*items[:2], {"type": "identity", "quote": "Tomas", "frame": 2, "reason": "another man"}]
    return json.dumps(
        {"hallucinations": items, "creativity": k + 1, "coherence": 5 - k, "grounding_quality": 3}
    )


def settings(world, url, **given) -> JudgeSettings:
    root, _ = world
    values = {"run": root / "run-a", "endpoint": url, "retries": 0, "concurrency": 2, **given}
    return from_config(JudgeSettings, **values)


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# -- answers ----------------------------------------------------------------------------------------


def test_parse_answer_finds_the_json_and_says_what_is_wrong():
    assert parse_answer('```json\n{"a": 1}\n```') == {"a": 1}
    assert parse_answer('<think>\nlet me look\n</think>\n{"a": 1}') == {"a": 1}
    assert parse_answer('Here it is: {"a": [1, 2]} hope it helps') == {"a": [1, 2]}
    with pytest.raises(AnswerError, match="not JSON"):
        parse_answer("the story is fine")
    with pytest.raises(AnswerError, match="empty"):
        parse_answer("  ")
    with pytest.raises(AnswerError, match="never closed"):
        parse_answer("<think>and then")


def test_quotes_are_found_through_tags_case_spacing_and_curly_quotes():
    output = '<gdo char1>Ines</gdo> <gda char1>climbed</gda>   toward the lamp. "The lamp is dead," he said'
    assert quote_found("Ines climbed toward the lamp", output)
    assert quote_found("ines CLIMBED\ntoward", output)
    assert quote_found("\u201cThe lamp is dead,\u201d", output)
    assert not quote_found("a red balloon", output)
    assert not quote_found("", output)


def test_a_judgement_is_checked_and_every_problem_named():
    output = "<gdo char1>Ines</gdo> climbed with her brass lantern."
    good = {
        "hallucinations": [{"type": "Object", "quote": "her brass lantern", "frame": 2, "reason": "none"}],
        "creativity": 4,
        "coherence": 3.0,
        "grounding_quality": 1,
    }
    checked = check_judgement(good, output, 3)
    assert checked["hallucinations"][0]["type"] == "object" and checked["coherence"] == 3
    bad = {
        "hallucinations": [
            {"type": "colour", "quote": "a red car", "frame": 4, "reason": "x"},
            {"quote": "Ines"},
        ],
        "creativity": 6,
        "coherence": True,
    }
    with pytest.raises(AnswerError) as info:
        check_judgement(bad, output, 3)
    message = str(info.value)
    for part in (
        "'grounding_quality' is missing",
        "creativity is 6",
        "coherence is true",
        'hallucinations[0].type is "colour"',
        'hallucinations[0].quote "a red car" is not in the output',
        "hallucinations[0].frame is 4, not a frame number from 1 to 3",
    ):
        assert part in message
    assert "(and 1 more)" in message  # seven problems, six named
    with pytest.raises(AnswerError, match="a list, not a JSON object"):
        check_judgement([1], output, 3)


def test_pairwise_verdicts_and_how_two_orders_combine():
    assert (
        check_verdict({"winner": 1, "creativity": "2", "coherence": "TIE", "grounding_quality": "1"})[
            "coherence"
        ]
        == "tie"
    )
    with pytest.raises(AnswerError, match='winner is "A"'):
        check_verdict(
            {"winner": "A", "creativity": "1", "coherence": "1", "grounding_quality": "1", "reason": ""}
        )
    # first: RUN shown as Output 1; second: RUN shown as Output 2
    assert combine("1", "2") == 1.0  # RUN won both
    assert combine("2", "1") == 0.0  # RUN lost both
    assert combine("tie", "tie") == 0.5
    assert combine("1", "1") == 0.5  # Output 1 both times: the position won, a tie
    assert combine("1", "tie") == 0.5


def test_prompts_are_versioned_and_carry_the_rubric():
    import hashlib

    assert PROMPT_SHA256 == hashlib.sha256(JUDGE_PROMPT.encode()).hexdigest()
    assert PAIRWISE_SHA256 == hashlib.sha256(PAIRWISE_PROMPT.encode()).hexdigest() != PROMPT_SHA256
    for prompt in (JUDGE_PROMPT, PAIRWISE_PROMPT):
        for name in CRITERIA:
            assert name in prompt
        for score in "12345":
            assert f"  {score}: " in prompt  # every anchor written out
    for kind in HALLUCINATION_TYPES:
        assert f"  {kind}: " in JUDGE_PROMPT


# -- a judge on loopback ----------------------------------------------------------------------------


def test_valid_answers_give_complete_results_and_the_summary(world, capsys):
    root, samples = world
    with FakeServer(respond=lambda body: answer(marker(body)), chunk=40) as server:
        assert judge_command(settings(world, server.url, price_input=2.0, price_output=10.0)) == 0
        requests = server.chat_requests()
    out = root / "run-a" / "judge"
    results = {item["story_id"]: item for item in lines(out / JUDGEMENTS)}
    assert sorted(results) == [s.story_id for s in samples] and len(requests) == N
    for k in range(N):
        item = results[f"s{k:02d}"]
        assert item["status"] == "judged" and item["attempts"] == 1 and item["json_schema"]
        assert item["scores"] == {"creativity": k + 1, "coherence": 5 - k, "grounding_quality": 3}
        assert len(item["hallucinations"]) == k
        assert item["judge"] == {
            "endpoint": f"{server.url}/v1",
            "model": "fake/storyteller",
            "prompt_version": PROMPT_VERSION,
            "prompt_sha256": PROMPT_SHA256,
        }
    # what the judge was shown: the prompt, the frames as tell-dataset sent them, the output
    body = next(r["body"] for r in requests if marker(r["body"]) == "s01")
    assert body["messages"][0] == {"role": "system", "content": JUDGE_PROMPT}
    assert body["response_format"]["type"] == "json_schema"
    assert body["temperature"] == 0 and body["seed"] == 0
    urls = [p["image_url"]["url"] for p in body["messages"][1]["content"] if p["type"] == "image_url"]
    sample = samples[1]
    assert [base64.b64decode(u.split(",", 1)[1]) for u in urls] == [f.bytes() for f in sample.frames]
    assert urls[0].startswith("data:image/png") and urls[1].startswith("data:image/jpeg")
    told = json.loads((root / "run-a" / "records.jsonl").read_text().splitlines()[1])["raw"]
    assert body["messages"][1]["content"][-1]["text"].endswith(told)

    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == SUMMARY_KEYS
    assert summary["judge"]["prompt_sha256"] == PROMPT_SHA256
    assert (summary["stories"], summary["judged"], summary["failed"]) == (N, N, 0)
    creativity = bootstrap_mean([1, 2, 3, 4])
    assert summary["scores"]["creativity"] == dict(creativity._asdict())
    assert summary["scores"]["hallucinations"]["mean"] == 1.5  # 0 + 1 + 2 + 3
    assert summary["hallucinations_by_type"] == {
        "character": 0.0, "object": 1.25, "action": 0.0, "setting": 0.0, "identity": 0.25,
    }  # fmt: skip
    # cost accounting: the server's usage per story, summed; prices per million tokens
    usage = [item["usage"] for item in results.values()]
    assert all(u["prompt_tokens"] == 123 and u["completion_tokens"] > 0 for u in usage)
    prompt, completion = sum(u["prompt_tokens"] for u in usage), sum(u["completion_tokens"] for u in usage)
    assert summary["tokens"] == {"prompt": prompt, "completion": completion}
    assert summary["cost"] == pytest.approx((prompt * 2.0 + completion * 10.0) / 1e6)
    for item in results.values():
        u = item["usage"]
        assert item["cost"] == pytest.approx((u["prompt_tokens"] * 2 + u["completion_tokens"] * 10) / 1e6)
    recorded = json.loads((out / "settings.json").read_text())
    assert recorded["served_model"] is None and recorded["price_input"] == 2.0 and "api_key" not in recorded
    printed = " ".join(capsys.readouterr().out.split())
    assert "creativity (1-5)" in printed and "2.50" in printed and "hallucinations per story" in printed


def test_an_invalid_answer_is_asked_again_with_the_error(world, tmp_path):
    def respond(body):
        if len(body["messages"]) == 2:  # first ask: a quote the story lacks, a frame it lacks
            return json.dumps(
                {
                    "hallucinations": [{"type": "object", "quote": "a red balloon", "frame": 9, "reason": "-"}],
                    "creativity": 3, "coherence": 3, "grounding_quality": 3,
                }
            )  # fmt: skip
        return answer(marker(body))

    with FakeServer(respond=respond) as server:
        assert judge_command(settings(world, server.url, out=tmp_path / "j")) == 0
        requests = server.chat_requests()
    assert len(requests) == 2 * N
    again = [r["body"]["messages"] for r in requests if len(r["body"]["messages"]) == 4]
    assert len(again) == N
    for messages in again:
        assert messages[2]["role"] == "assistant" and "a red balloon" in messages[2]["content"]
        note = messages[3]["content"]
        assert (
            '"a red balloon" is not in the output' in note and "frame is 9" in note and "from 1 to 3" in note
        )
    results = lines(tmp_path / "j" / JUDGEMENTS)
    assert all(item["status"] == "judged" and item["attempts"] == 2 for item in results)
    assert all(item["usage"]["prompt_tokens"] == 2 * 123 for item in results)  # both asks are paid for


def test_always_invalid_answers_are_recorded_as_failed(world, tmp_path, capsys):
    with FakeServer(text="I think the story is lovely.") as server:
        assert judge_command(settings(world, server.url, out=tmp_path / "j")) == 0
        assert len(server.chat_requests()) == 2 * N  # asked once again each, never more
    results = lines(tmp_path / "j" / JUDGEMENTS)
    assert len(results) == N
    for item in results:
        assert item["status"] == "failed" and item["answers"] == ["I think the story is lovely."] * 2
        assert "invalid twice" in item["error"] and "not JSON" in item["error"]
    summary = json.loads((tmp_path / "j" / "summary.json").read_text())
    assert set(summary) == SUMMARY_KEYS
    assert (summary["judged"], summary["failed"]) == (0, N)
    assert summary["scores"]["creativity"] == {"mean": None, "low": None, "high": None, "n": 0}
    assert summary["tokens"]["prompt"] == 2 * N * 123
    assert "0 of 4 stories judged, 4 failed" in " ".join(capsys.readouterr().out.split())


def test_a_server_that_refuses_response_format_is_asked_without_it(world, tmp_path):
    def refuse(body):
        if "response_format" in body:
            return {"error": {"message": "response_format is not supported by this server"}}
        return None

    with FakeServer(respond=lambda body: answer(marker(body)), refuse=refuse) as server:
        assert judge_command(settings(world, server.url, out=tmp_path / "j", concurrency=1)) == 0
        bodies = [r["body"] for r in server.chat_requests()]
    # refused once, then never sent
    assert sum("response_format" in b for b in bodies) == 1 and len(bodies) == N + 1
    results = lines(tmp_path / "j" / JUDGEMENTS)
    assert all(item["status"] == "judged" and not item["json_schema"] for item in results)


def test_judge_story_is_reusable_on_its_own(world):
    _, samples = world
    output = samples[0].output_text()
    with FakeServer(script=["{}", answer("s02")]) as server, OpenAITeller(server.url, retries=0) as teller:
        judgement = judge_story(teller, samples[0].frames, output)
        again = server.chat_requests()[1]["body"]["messages"]
    assert judgement.ok and judgement.attempts == 2 and judgement.answers[0] == "{}"
    assert judgement.scores["creativity"] == 3 and judgement.by_type()["object"] == 2
    assert "the key 'hallucinations' is missing" in again[3]["content"]
    assert judgement.prompt_tokens == 2 * 123


def test_a_dead_endpoint_stops_before_anything_is_judged(world, tmp_path):
    with pytest.raises(StoryReasoningError, match="nothing was judged"):
        judge_command(settings(world, closed_url(), out=tmp_path / "j"))
    assert not (tmp_path / "j" / JUDGEMENTS).exists()


def test_a_killed_judge_resumes_without_losing_or_repeating(world, tmp_path):
    root, samples = world
    out = tmp_path / "j"
    with FakeServer(
        respond=lambda body: answer(marker(body)), answer_delay=0.4, models=("judge/a", "judge/b")
    ) as server:
        command = [
            sys.executable, "-m", "storyreasoning", "evaluate", "judge", str(root / "run-a"),
            "--endpoint", server.url, "--model", "judge/a", "--out", str(out), "--concurrency", "1",
        ]  # fmt: skip
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        path = out / JUDGEMENTS
        deadline = time.monotonic() + 120
        while not (path.exists() and len(path.read_text().splitlines()) >= 2):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        before = {item["story_id"] for item in lines(path)}
        asked_before = len(server.chat_requests())
        assert 2 <= len(before) < N

        # another judge model may not add to these results ...
        with pytest.raises(
            UsageError, match=r"another judge: model 'judge/a' then, 'judge/b' now; resume .*--allow-mixed"
        ):
            judge_command(settings(world, server.url, out=out, served_model="judge/b"))
        # ... the same one finishes the job
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 0, result.stderr
        assert f"{len(before)} of {N} stories already judged" in result.stderr
        after = server.chat_requests()[asked_before:]
    results = lines(path)
    assert sorted(item["story_id"] for item in results) == [s.story_id for s in samples]  # each once
    asked_again = {marker(r["body"]) for r in after}
    assert not asked_again & before  # nothing judged before the kill was asked again
    assert asked_again == {s.story_id for s in samples} - before
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["judged"], summary["failed"]) == (N, 0)


def test_pairwise_asks_both_orders_and_reports_a_win_rate(world):
    root, _ = world

    # s00: the judge prefers run a in both orders; s01: always Output 1 (position bias: a tie);
    # s02: prefers b in both orders; s03: a tie both times
    def respond(body):
        story, first = marker(body), first_run(body)
        a_is = "1" if first == "a" else "2"
        b_is = "2" if first == "a" else "1"
        winner = {"s00": a_is, "s01": "1", "s02": b_is, "s03": "tie"}[story]
        return json.dumps(
            {
                "winner": winner,
                "creativity": a_is,
                "coherence": "tie",
                "grounding_quality": winner,
                "reason": "r",
            }
        )

    with FakeServer(respond=respond) as server:
        assert judge_command(settings(world, server.url, against=root / "run-b", price_output=1.0)) == 0
        requests = server.chat_requests()
    assert len(requests) == 2 * N
    for k in range(N):
        orders = sorted(first_run(r["body"]) for r in requests if marker(r["body"]) == f"s{k:02d}")
        assert orders == ["a", "b"]  # each story asked in both orders
    assert all(r["body"]["messages"][0]["content"] == PAIRWISE_PROMPT for r in requests)
    out = root / "run-a" / "judge-vs-run-b"
    results = {item["story_id"]: item for item in lines(out / PAIRWISE)}
    outcomes = {sid: item["outcome"]["winner"] for sid, item in results.items()}
    assert outcomes == {"s00": 1.0, "s01": 0.5, "s02": 0.0, "s03": 0.5}
    assert [results[s]["consistent"] for s in ("s00", "s01", "s02", "s03")] == [True, False, True, True]
    assert all(
        item["outcome"]["creativity"] == 1.0 and item["outcome"]["coherence"] == 0.5
        for item in results.values()
    )
    summary = json.loads((out / "pairwise_summary.json").read_text())
    expected = win_rate([outcomes[f"s{k:02d}"] for k in range(N)])
    assert summary["win_rate"] == dict(expected._asdict())
    assert summary["win_rate"]["mean"] == 0.5
    assert (summary["wins"], summary["losses"], summary["ties"], summary["inconsistent"]) == (1, 1, 2, 1)
    assert summary["judge"]["prompt_sha256"] == PAIRWISE_SHA256
    assert summary["tokens"]["completion"] == sum(i["usage"]["completion_tokens"] for i in results.values())
    assert summary["cost"] == pytest.approx(summary["tokens"]["completion"] / 1e6)
    # resumed: nothing is asked again
    with FakeServer(respond=respond) as server:
        assert judge_command(settings(world, server.url, against=root / "run-b")) == 0
        assert server.chat_requests() == []


def test_the_run_itself_is_no_pair(world):
    root, _ = world
    with pytest.raises(UsageError, match="is the run itself"):
        judge_command(settings(world, closed_url(), against=root / "run-a"))


# -- the real thing ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_judge_on_transformers_serve_is_recorded_cleanly(world, tiny_qwen, tmp_path):
    """The tiny random model answers noise: each story is asked twice and recorded as failed, with
    its answers, the error and the server's token counts; nothing crashes."""
    with transformers_serve(tiny_qwen) as url:
        s = settings(world, url, out=tmp_path / "j", limit=2, max_new_tokens=8, timeout=120)
        assert judge_command(s) == 0
    results = lines(tmp_path / "j" / JUDGEMENTS)
    assert len(results) == 2
    for item in results:
        assert item["status"] == "failed" and item["attempts"] == 2 and "invalid twice" in item["error"]
        assert "cut at 8 tokens; raise --max-new-tokens" in item["error"]
        assert item["usage"]["prompt_tokens"] > 0 and item["usage"]["completion_tokens"] == 2 * 8  # both asks
        assert item["judge"]["model"] == str(tiny_qwen)
    summary = json.loads((tmp_path / "j" / "summary.json").read_text())
    assert (summary["stories"], summary["judged"], summary["failed"]) == (2, 0, 2)


def test_judge_is_a_subcommand_not_a_run_folder():
    from typer.testing import CliRunner

    from storyreasoning.cli import app

    result = CliRunner().invoke(app, ["evaluate", "judge", "--help"])
    assert result.exit_code == 0 and "--against" in result.output and "--price-input" in result.output


def test_judge_class_describes_itself():
    class Nothing:
        endpoint, model = "http://x/v1", "m"

    assert Judge(Nothing()).describe(pairwise=True)["prompt_sha256"] == PAIRWISE_SHA256


def test_a_failing_server_leaves_its_stories_for_the_next_run(world, tmp_path):
    out = tmp_path / "j"
    # the first story's request fails with a 503 (no retries): left unjudged, the others judged
    with FakeServer("status", status=503, fail=1, respond=lambda body: answer(marker(body))) as server:
        assert judge_command(settings(world, server.url, out=out, concurrency=1)) == 1
    assert sorted(item["story_id"] for item in lines(out / JUDGEMENTS)) == ["s01", "s02", "s03"]
    assert [item["story_id"] for item in lines(out / "errors.jsonl")] == ["s00"]
    assert "HTTP 503" in lines(out / "errors.jsonl")[0]["error"]
    assert json.loads((out / "summary.json").read_text())["judged"] == 3
    with FakeServer(respond=lambda body: answer(marker(body))) as server:
        assert judge_command(settings(world, server.url, out=out)) == 0
        assert [marker(r["body"]) for r in server.chat_requests()] == ["s00"]  # only the one left
    assert len(lines(out / JUDGEMENTS)) == N
    assert not (out / "errors.jsonl").exists()  # judged at last: its failure is no longer unresolved
    # a server failing every story stops the job after three in a row, what was judged kept
    with FakeServer("status", status=503) as server:
        with pytest.raises(StoryReasoningError, match="stopped after 3 stories in a row"):
            judge_command(settings(world, server.url, out=tmp_path / "k", concurrency=1))
        assert len(server.chat_requests()) == 3
    assert not (tmp_path / "k" / JUDGEMENTS).exists()


def test_a_missing_run_is_one_clear_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        judge_command(from_config(JudgeSettings, run=tmp_path / "nowhere", endpoint=closed_url()))


def test_stories_are_judged_concurrently(world, tmp_path):
    with FakeServer(respond=lambda body: answer(marker(body)), answer_delay=0.3) as server:
        assert judge_command(settings(world, server.url, out=tmp_path / "j", concurrency=4)) == 0
        assert server.max_active == N  # all four in flight at once
    assert len(lines(tmp_path / "j" / JUDGEMENTS)) == N


def test_pairwise_compares_the_stories_both_runs_told(world, tmp_path, capsys):
    root, _ = world
    texts = tmp_path / "texts"  # run b as a folder of {story_id}.txt: three of its stories and a stranger
    texts.mkdir()
    for item in lines(root / "run-b" / "records.jsonl")[:3]:
        (texts / f"{item['story_id']}.txt").write_text(item["raw"], encoding="utf-8")
    (texts / "zz99.txt").write_text("Marker b-zz99.", encoding="utf-8")

    def respond(body):
        return json.dumps({"winner": "tie", **dict.fromkeys(CRITERIA, "tie"), "reason": ""})

    with FakeServer(respond=respond) as server:
        assert judge_command(settings(world, server.url, against=texts, out=tmp_path / "p")) == 0
        assert len(server.chat_requests()) == 2 * 3
    assert sorted(item["story_id"] for item in lines(tmp_path / "p" / PAIRWISE)) == ["s00", "s01", "s02"]
    said = " ".join(capsys.readouterr().err.split())
    assert "2 stories are told in only one of" in said  # s03 and zz99
    summary = json.loads((tmp_path / "p" / "pairwise_summary.json").read_text())
    assert summary["win_rate"] == {"mean": 0.5, "low": 0.5, "high": 0.5, "n": 3} and summary["ties"] == 3


def test_a_report_written_before_the_judge_is_said_to_lack_it(world, tmp_path, capsys):
    import shutil

    root, _ = world
    run = tmp_path / "run"
    shutil.copytree(root / "run-a", run, ignore=shutil.ignore_patterns("judge*"))
    (run / "eval").mkdir()
    (run / "eval" / "metrics.md").write_text("# an older report\n", encoding="utf-8")
    with FakeServer(respond=lambda body: answer(marker(body))) as server:
        assert judge_command(settings(world, server.url, run=run)) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert f"{run / 'eval' / 'metrics.md'} was written before these judgements" in said
    assert "storyreasoning evaluate" in said


def test_compare_finds_judgements_written_elsewhere_with_out(world, tmp_path):
    """``evaluate judge RUN --out DIR`` records DIR in RUN (judge-location.json): evaluate and compare
    read the judge there; a later judge into RUN/judge takes its place; a pointer to nothing is one line."""
    import shutil

    from storyreasoning.evaluate.report import JUDGE_LOCATION

    root, _ = world
    runs = {label: tmp_path / f"run-{label}" for label in ("a", "b")}
    for label, folder in runs.items():
        shutil.copytree(root / f"run-{label}", folder)  # with the RUN/judge of other tests, superseded below
    creativity = {"a": lambda k: k + 1, "b": lambda k: 1}  # b's judge gives every story creativity 1

    def respond(body):
        text = body["messages"][1]["content"][-1]["text"]
        label, story = text.split("Marker ", 1)[1].split(".", 1)[0].split("-", 1)
        judged = json.loads(answer(story))
        return json.dumps({**judged, "creativity": creativity[label](int(story[1:]))})

    with FakeServer(respond=respond) as server:
        for label, folder in runs.items():
            out = tmp_path / "judges" / label
            assert judge_command(settings(world, server.url, run=folder, out=out)) == 0
            assert json.loads((folder / JUDGE_LOCATION).read_text()) == {"out": str(out.resolve())}

    def evaluate(*args):
        command = [sys.executable, "-m", "storyreasoning", "evaluate", *map(str, args)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", "NO_COLOR": "1"}
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)

    for folder in runs.values():
        result = evaluate(folder, "--metrics", "grounding", "--no-plots")
        assert result.returncode == 0, result.stderr
    compared = evaluate("compare", runs["a"], runs["b"])
    assert compared.returncode == 0, compared.stderr
    row = next(line for line in compared.stdout.splitlines() if "creativity" in line)
    means = [c.strip().split(" ")[0] for c in row.split("│")[1:3]]
    assert means == ["2.50", "1.00"]  # a: stories 0-3 score 1-4; b: all 1
    assert "2.50 [" in (runs["a"] / "eval" / "metrics.md").read_text()  # evaluate's headline too

    # judged again into RUN/judge, that judge is the run's: the pointer goes
    creativity["b"] = lambda k: 5
    with FakeServer(respond=respond) as server:
        assert judge_command(settings(world, server.url, run=runs["b"])) == 0
    assert not (runs["b"] / JUDGE_LOCATION).exists() and (runs["b"] / "judge" / "summary.json").is_file()
    again = evaluate("compare", runs["a"], runs["b"])
    assert again.returncode == 0, again.stderr
    row = next(line for line in again.stdout.splitlines() if "creativity" in line)
    assert [c.strip().split(" ")[0] for c in row.split("│")[1:3]] == ["2.50", "5.00"]

    # the folder the pointer names is gone: one line naming both and the fix
    shutil.rmtree(tmp_path / "judges" / "a")
    gone = evaluate("compare", runs["a"], runs["b"])
    assert gone.returncode != 0 and "Traceback" not in gone.stderr
    said = " ".join(gone.stderr.split())
    assert f"{runs['a'] / JUDGE_LOCATION} says the run was judged into" in said
    assert "holds no summary.json" in said and "evaluate judge" in said


# -- resuming: the output judged, one writer, each story once, the same summary --------------------------


def test_judgements_of_another_run_are_refused_and_of_a_changed_output_judged_again(world, tmp_path, capsys):
    root, _ = world
    out = tmp_path / "j"
    with FakeServer(respond=lambda body: answer(marker(body))) as server:
        assert judge_command(settings(world, server.url, out=out, limit=2)) == 0  # run a: s00 and s01
        first = lines(out / JUDGEMENTS)
        assert {item["run"] for item in first} == {str((root / "run-a").resolve())}
        # run b into the folder holding run a's judgements: refused, both runs named, nothing asked
        with pytest.raises(UsageError) as refused:
            judge_command(settings(world, server.url, run=root / "run-b", out=out))
        assert server.chat_requests()[2:] == []
    assert (
        f"holds judgements of another run's outputs (the run {(root / 'run-a').resolve()} then, "
        f"{(root / 'run-b').resolve()} now, 2 of the 2 outputs judged differ)" in str(refused.value)
    )
    assert lines(out / JUDGEMENTS) == first  # nothing mixed in

    # the run tells a story again (its output changes): that story alone is judged again
    run = tmp_path / "run-c"
    shutil.copytree(root / "run-a", run, ignore=shutil.ignore_patterns("judge*"))
    with FakeServer(respond=lambda body: answer(marker(body))) as server:
        assert judge_command(settings(world, server.url, run=run)) == 0
    records = (run / "records.jsonl").read_text(encoding="utf-8").splitlines()
    changed = json.loads(records[1])
    changed["raw"] = changed["raw"].replace("the dark sea", "the grey sea")
    records[1] = json.dumps(changed)
    (run / "records.jsonl").write_text("\n".join(records) + "\n", encoding="utf-8")
    capsys.readouterr()
    with FakeServer(respond=lambda body: answer(marker(body))) as server:
        assert judge_command(settings(world, server.url, run=run)) == 0
        assert [marker(r["body"]) for r in server.chat_requests()] == ["s01"]
    said = " ".join(capsys.readouterr().err.split())
    assert "1 of the judgements in" in said and "those stories are judged again" in said
    results = {item["story_id"]: item for item in lines(run / "judge" / JUDGEMENTS)}
    assert len(lines(run / "judge" / JUDGEMENTS)) == N
    assert results["s01"]["output_sha256"] == hashlib.sha256(changed["raw"].encode()).hexdigest()


def test_judgements_of_an_older_version_count_when_the_folder_names_the_run(world, tmp_path):
    root, _ = world
    out = tmp_path / "j"
    with FakeServer(respond=lambda body: answer(marker(body))) as server:
        assert judge_command(settings(world, server.url, out=out, limit=2)) == 0
    old = [
        {k: v for k, v in item.items() if k not in ("run", "output_sha256")}
        for item in lines(out / JUDGEMENTS)
    ]
    (out / JUDGEMENTS).write_text("".join(json.dumps(item) + "\n" for item in old), encoding="utf-8")
    with FakeServer(respond=lambda body: answer(marker(body))) as server:
        with pytest.raises(UsageError, match="another run's outputs"):  # settings.json names run a
            judge_command(settings(world, server.url, run=root / "run-b", out=out))
        assert judge_command(settings(world, server.url, out=out)) == 0  # run a's: kept, the rest judged
        assert sorted(marker(r["body"]) for r in server.chat_requests()) == ["s02", "s03"]
    assert sorted(item["story_id"] for item in lines(out / JUDGEMENTS)) == ["s00", "s01", "s02", "s03"]


def test_the_summary_does_not_depend_on_the_order_of_the_lines(tmp_path):
    import random

    samples = fixture_samples(12)
    write_parquet(SampleList(samples), tmp_path / "data", split="test")
    stories = load_stories(tmp_path / "data", "test")
    from ..data.fixtures import LIGHTHOUSE

    tell_dataset(stories, Marked(LIGHTHOUSE.read_text(encoding="utf-8"), "a"), tmp_path / "run")

    def respond(body):
        k = int(marker(body)[1:])
        scores = {"creativity": k * 7 % 5 + 1, "coherence": k * 3 % 5 + 1, "grounding_quality": k % 4 + 1}
        return json.dumps({"hallucinations": [], **scores})

    given = {"run": tmp_path / "run", "retries": 0, "concurrency": 4}
    with FakeServer(respond=respond) as server:
        assert judge_command(from_config(JudgeSettings, endpoint=server.url, **given)) == 0
    out = tmp_path / "run" / "judge"
    whole = json.loads((out / "summary.json").read_text())
    written = (out / JUDGEMENTS).read_text(encoding="utf-8").splitlines(keepends=True)
    shuffled = sorted(written, key=lambda line: json.loads(line)["story_id"])
    random.Random(1).shuffle(shuffled)  # as a resumed or concurrent job may have written them
    (out / JUDGEMENTS).write_text("".join(shuffled), encoding="utf-8")
    creativity = {json.loads(line)["story_id"]: json.loads(line)["scores"]["creativity"] for line in shuffled}
    in_order = [creativity[story_id] for story_id in sorted(creativity)]
    assert bootstrap_mean(list(creativity.values())) != bootstrap_mean(in_order)  # the order would matter
    with FakeServer(respond=respond) as server:
        assert judge_command(from_config(JudgeSettings, endpoint=server.url, **given)) == 0
        assert server.chat_requests() == []
    resumed = json.loads((out / "summary.json").read_text())
    assert {**resumed, "judge": None} == {**whole, "judge": None}  # (the judge's endpoint moved)


def test_a_resume_keeps_one_judgement_a_story_and_judges_a_damaged_one_again(world, tmp_path, capsys):
    out = tmp_path / "j"
    with FakeServer(respond=lambda body: answer(marker(body))) as server:
        assert judge_command(settings(world, server.url, out=out)) == 0
    text = (out / JUDGEMENTS).read_text(encoding="utf-8").splitlines()
    first = json.loads(text[0])
    again = {**first, "scores": {"creativity": 5, "coherence": 5, "grounding_quality": 5}}
    damaged = json.loads(text[1])["story_id"]
    text[1] = "{garbage"
    (out / JUDGEMENTS).write_text("\n".join([*text, json.dumps(again)]) + "\n", encoding="utf-8")
    capsys.readouterr()
    with FakeServer(respond=lambda body: answer(marker(body))) as server:
        assert judge_command(settings(world, server.url, out=out)) == 0
        assert [marker(r["body"]) for r in server.chat_requests()] == [damaged]
    said = " ".join(capsys.readouterr().err.split())
    assert "line 2 is not JSON" in said and "its story is judged again" in said and "told again" not in said
    assert "held 1 more lines of stories it already had" in said
    results = lines(out / JUDGEMENTS)
    assert sorted(item["story_id"] for item in results) == [f"s{k:02d}" for k in range(N)]  # each once
    assert next(i for i in results if i["story_id"] == first["story_id"])["scores"] == first["scores"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["judged"] == N and summary["scores"]["creativity"]["mean"] == 2.5


def test_a_second_judge_into_a_folder_at_work_is_refused(world, tmp_path):
    out = tmp_path / "j"
    with FakeServer(respond=lambda body: answer(marker(body))) as server:
        with held_elsewhere(out) as holder:
            with pytest.raises(UsageError) as refused:
                judge_command(settings(world, server.url, out=out))
            assert server.chat_requests() == []
        assert str(refused.value) == (
            f"another storyreasoning process (pid {holder.pid}) is writing to {out}; "
            "wait for it or choose another --out"
        )
        assert judge_command(settings(world, server.url, out=out)) == 0  # let go: it goes ahead
    assert len(lines(out / JUDGEMENTS)) == N


# -- failures, moved runs and the judge's own folder -------------------------------------------------------


def retell(run, stories: dict[str, str]) -> None:
    """Change the outputs of ``stories`` in ``run``'s records.jsonl (as if told again): ``old`` -> ``new`` each."""
    path = run / "records.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for record in records:
        if record["story_id"] in stories:
            record["raw"] = record["raw"].replace("the dark sea", stories[record["story_id"]])
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")


def test_a_story_with_an_unreadable_frame_is_left_for_the_next_run(tmp_path, capsys):
    """A frame that is no image gives its story no line (no failure line naming no judge, which refused
    every later run): it is noted in errors.jsonl, and each run retries that story alone."""
    from storyreasoning.data import write_folders

    from ..data.fixtures import LIGHTHOUSE

    write_folders(fixture_samples(N), tmp_path / "data")  # a story folder a frame file each
    tell_dataset(
        load_stories(tmp_path / "data"), Marked(LIGHTHOUSE.read_text(encoding="utf-8"), "a"), tmp_path / "run"
    )
    frame = sorted((tmp_path / "data" / "s01").glob("01.*"))[0]
    image = frame.read_bytes()
    frame.write_bytes(b"not an image at all")
    given = {"run": tmp_path / "run", "retries": 0, "concurrency": 1}
    out = tmp_path / "run" / "judge"
    with FakeServer(respond=lambda body: answer(marker(body))) as server:
        assert judge_command(from_config(JudgeSettings, endpoint=server.url, **given)) == 1
        assert sorted(marker(r["body"]) for r in server.chat_requests()) == ["s00", "s02", "s03"]
    said = " ".join(capsys.readouterr().err.split())
    assert f"1 story was not judged (first: s01: {frame} is not a readable image" in said
    assert "run the same command again to judge them" in said
    assert sorted(item["story_id"] for item in lines(out / JUDGEMENTS)) == ["s00", "s02", "s03"]
    assert [item["story_id"] for item in lines(out / "errors.jsonl")] == ["s01"]
    assert json.loads((out / "summary.json").read_text())["judged"] == 3
    judged = (out / JUDGEMENTS).read_bytes()
    # the frame still unreadable: the run resumes, asks nothing, keeps what was judged
    with FakeServer(respond=lambda body: answer(marker(body))) as server:
        assert judge_command(from_config(JudgeSettings, endpoint=server.url, **given)) == 1
        assert server.chat_requests() == []
    assert (out / JUDGEMENTS).read_bytes() == judged
    assert [item["story_id"] for item in lines(out / "errors.jsonl")] == ["s01"]  # its latest failure
    # the frame mended: that story alone is judged
    frame.write_bytes(image)
    with FakeServer(respond=lambda body: answer(marker(body))) as server:
        assert judge_command(from_config(JudgeSettings, endpoint=server.url, **given)) == 0
        assert [marker(r["body"]) for r in server.chat_requests()] == ["s01"]
    results = lines(out / JUDGEMENTS)
    assert sorted(item["story_id"] for item in results) == [f"s{k:02d}" for k in range(N)]
    assert all(
        item["status"] == "judged" and item["judge"]["model"] == "fake/storyteller" for item in results
    )
    assert not (out / "errors.jsonl").exists()


def test_a_story_that_cannot_be_loaded_fails_alone_and_is_judged_once_mended(tmp_path, capsys):
    """A story whose folder no longer reads (its frames removed, its story.md not UTF-8) ends no judge run:
    each is that story's failure, noted in errors.jsonl, the others judged; mended, they alone are judged."""
    from storyreasoning.data import write_folders

    from ..data.fixtures import LIGHTHOUSE

    write_folders(fixture_samples(N), tmp_path / "data")
    tell_dataset(
        load_stories(tmp_path / "data"), Marked(LIGHTHOUSE.read_text(encoding="utf-8"), "a"), tmp_path / "run"
    )
    shutil.copytree(tmp_path / "data", tmp_path / "whole")
    for frame in (tmp_path / "data" / "s01").glob("0*.*"):
        frame.unlink()
    (tmp_path / "data" / "s02" / "story.md").write_bytes(b"\xff\xfe not UTF-8")
    given = {"run": tmp_path / "run", "retries": 0, "concurrency": 2}
    out = tmp_path / "run" / "judge"
    with FakeServer(respond=lambda body: answer(marker(body))) as server:
        assert judge_command(from_config(JudgeSettings, endpoint=server.url, **given)) == 1
        assert sorted(marker(r["body"]) for r in server.chat_requests()) == ["s00", "s03"]
    said = " ".join(capsys.readouterr().err.split())
    assert "2 stories were not judged (first: s01: story folder" in said and "has no frames" in said
    assert sorted(item["story_id"] for item in lines(out / JUDGEMENTS)) == ["s00", "s03"]
    errors = {item["story_id"]: item["error"] for item in lines(out / "errors.jsonl")}
    assert sorted(errors) == ["s01", "s02"] and "is not UTF-8 text" in errors["s02"]
    assert json.loads((out / "summary.json").read_text())["judged"] == 2
    shutil.rmtree(tmp_path / "data")
    shutil.copytree(tmp_path / "whole", tmp_path / "data")  # mended
    with FakeServer(respond=lambda body: answer(marker(body))) as server:
        assert judge_command(from_config(JudgeSettings, endpoint=server.url, **given)) == 0
        assert sorted(marker(r["body"]) for r in server.chat_requests()) == ["s01", "s02"]
    assert sorted(item["story_id"] for item in lines(out / JUDGEMENTS)) == [f"s{k:02d}" for k in range(N)]
    assert not (out / "errors.jsonl").exists()


def test_a_request_the_server_refuses_is_a_failed_judgement_not_asked_again(world, tmp_path):
    """A 400 (the story too long for the judge's context) is the story's answer: a failed line naming
    the judge, the run and the output, kept; a resume neither asks (and pays) again nor fails."""
    root, _ = world
    shutil.copytree(root / "run-a", tmp_path / "run", ignore=shutil.ignore_patterns("judge*"))  # unjudged
    given = {"run": tmp_path / "run", "retries": 0, "concurrency": 1}

    def refuse(body):
        too_long = {"error": {"message": "This model's maximum context length is 8192 tokens"}}
        return too_long if marker(body) == "s01" else None

    for attempt in range(2):
        with FakeServer(respond=lambda body: answer(marker(body)), refuse=refuse) as server:
            assert judge_command(from_config(JudgeSettings, endpoint=server.url, **given)) == 0
            asked = sorted(marker(r["body"]) for r in server.chat_requests())
        assert asked == ([f"s{k:02d}" for k in range(N)] if attempt == 0 else [])
    failed = {item["story_id"]: item for item in lines(tmp_path / "run" / "judge" / JUDGEMENTS)}["s01"]
    assert failed["status"] == "failed" and "maximum context length" in failed["error"]
    assert failed["judge"]["model"] == "fake/storyteller" and failed["output_sha256"]
    summary = json.loads((tmp_path / "run" / "judge" / "summary.json").read_text())
    assert summary["judged"] == N - 1 and summary["failed"] == 1
    assert not (tmp_path / "run" / "judge" / "errors.jsonl").exists()


def test_a_failure_line_of_an_older_version_is_judged_again(world, tmp_path, capsys):
    """A failure line naming no judge (an older version's) no longer refuses the folder: its story is judged again."""
    out = tmp_path / "j"
    with FakeServer(respond=lambda body: answer(marker(body))) as server:
        assert judge_command(settings(world, server.url, out=out)) == 0
    text = (out / JUDGEMENTS).read_text(encoding="utf-8").splitlines()
    failed = {
        "story_id": "s02",
        "status": "failed",
        "error": "x.png is not a readable image",
        "answers": [],
        "raw": "",
    }
    text = [line for line in text if json.loads(line)["story_id"] != "s02"] + [json.dumps(failed)]
    (out / JUDGEMENTS).write_text("\n".join(text) + "\n", encoding="utf-8")  # as an older version wrote it
    capsys.readouterr()
    with FakeServer(respond=lambda body: answer(marker(body))) as server:
        assert judge_command(settings(world, server.url, out=out)) == 0
        assert [marker(r["body"]) for r in server.chat_requests()] == ["s02"]
    said = " ".join(capsys.readouterr().err.split())
    assert "1 lines of" in said and "which an older version wrote there (first: s02)" in said
    results = {item["story_id"]: item for item in lines(out / JUDGEMENTS)}
    assert len(results) == N and results["s02"]["status"] == "judged" and "judge" in results["s02"]


def test_a_moved_run_resumes_and_judges_again_only_what_was_told_again(world, tmp_path, capsys):
    """The run's identity is not its path: a run renamed keeps its judgements, and those of the stories
    told again since are judged again; a run most of whose judged outputs differ is another run."""
    root, _ = world
    run = tmp_path / "run"
    shutil.copytree(root / "run-a", run, ignore=shutil.ignore_patterns("judge*"))
    with FakeServer(respond=lambda body: answer(marker(body))) as server:
        assert judge_command(settings(world, server.url, run=run)) == 0
    moved = tmp_path / "renamed"
    run.rename(moved)
    with FakeServer(respond=lambda body: answer(marker(body))) as server:
        assert judge_command(settings(world, server.url, run=moved)) == 0  # the same outputs: nothing asked
        assert server.chat_requests() == []
    retell(moved, {"s02": "the grey sea"})
    capsys.readouterr()
    with FakeServer(respond=lambda body: answer(marker(body))) as server:
        assert judge_command(settings(world, server.url, run=moved)) == 0
        assert [marker(r["body"]) for r in server.chat_requests()] == ["s02"]
    assert "1 of the judgements in" in " ".join(capsys.readouterr().err.split())
    results = lines(moved / "judge" / JUDGEMENTS)
    assert sorted(item["story_id"] for item in results) == [f"s{k:02d}" for k in range(N)]
    assert next(i for i in results if i["story_id"] == "s02")["run"] == str(moved.resolve())

    # moved again, and three of its four stories told again: most judged outputs differ, another run
    again = tmp_path / "again"
    moved.rename(again)
    retell(again, {"s00": "a red sea", "s01": "a red sea", "s03": "a red sea"})
    judged = (again / "judge" / JUDGEMENTS).read_bytes()
    with FakeServer(respond=lambda body: answer(marker(body))) as server:
        with pytest.raises(UsageError) as refused:
            judge_command(settings(world, server.url, run=again))
        assert server.chat_requests() == []
    assert (
        f"holds judgements of another run's outputs (the run {run.resolve()} then, {again.resolve()} now, 3 of "
        "the 4 outputs judged differ); judge each run into its own --out" in str(refused.value)
    )
    assert (again / "judge" / JUDGEMENTS).read_bytes() == judged  # nothing dropped


def test_the_judge_writes_only_into_a_folder_of_its_own(world, tmp_path):
    """--out the run itself, another run, or a file: one line naming the fix, nothing written, nothing asked."""
    root, _ = world
    run = tmp_path / "run"
    shutil.copytree(root / "run-a", run, ignore=shutil.ignore_patterns("judge*"))
    (run / "settings.json").write_text('{"the": "run\'s"}', encoding="utf-8")
    before = {path.name: path.read_bytes() for path in run.iterdir()}
    (tmp_path / "records-only").mkdir()
    (tmp_path / "records-only" / "records.jsonl").write_bytes((run / "records.jsonl").read_bytes())
    refusals = {
        run: f"--out {run} is a run folder (it holds a run's manifest.json and records.jsonl); the judge's "
        f"settings.json and summary would overwrite or mix with the run's files: leave --out out to judge into "
        f"{run / 'judge'}, or give a folder of its own",
        tmp_path / "records-only": "is a run folder (it holds a run's records.jsonl)",
        root / "run-b": "is a run folder (it holds a run's manifest.json and records.jsonl)",
    }
    for out, said in refusals.items():
        with pytest.raises(UsageError) as refused:
            judge_command(settings(world, closed_url(), run=run, out=out))
        assert said in str(refused.value)
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    with pytest.raises(UsageError) as refused:
        judge_command(settings(world, closed_url(), run=run, out=tmp_path / "afile"))
    assert str(refused.value) == (
        f"--out {tmp_path / 'afile'} is a file; evaluate judge writes a folder of judgements (judgements.jsonl, "
        f"summary.json, settings.json) there: leave --out out to judge into {run / 'judge'}, or give a folder "
        "of its own"
    )
    assert {path.name: path.read_bytes() for path in run.iterdir()} == before
    assert sorted(path.name for path in (tmp_path / "records-only").iterdir()) == ["records.jsonl"]
    with pytest.raises(UsageError, match="is a run folder"):  # the run given as RUN_B is no --out either
        judge_command(settings(world, closed_url(), run=run, against=root / "run-b", out=root / "run-b"))
