"""bench/client.py runs (tiny: 8 stories, 4 streams) and writes its JSON; the stories it told are checked
here again, from the run folders it keeps: one record each, the text served, parsed well-structured.
No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parents[2] / "bench"
LIGHTHOUSE = Path(__file__).parents[2] / "examples" / "outputs" / "lighthouse.txt"


def test_client_bench(tmp_path):
    out, runs = tmp_path / "client.json", tmp_path / "runs"
    result = subprocess.run(
        [sys.executable, str(BENCH / "client.py"), "--quick", "--out", str(out), "--runs", str(runs)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loopback server alone" in result.stdout and "tell-dataset --endpoint" in result.stdout
    data = json.loads(out.read_text())
    assert data["metadata"]["command"].startswith("python bench/client.py")
    assert data["metadata"]["target_tokens_per_cpu_s"] == 50_000
    server = [r for r in data["rows"] if r["table"] == "server"]
    client = [r for r in data["rows"] if r["table"] == "client"]
    assert [r["tokens_per_event"] for r in server] == [1, 4] == [r["tokens_per_event"] for r in client]
    for row in server:
        assert row["tokens_per_s"] > 0 and row["mb_per_s"] > 0
    text = LIGHTHOUSE.read_text(encoding="utf-8")
    for row in client:
        assert row["stories"] == row["records"] == 8 and row["concurrency"] == 4
        assert row["all_complete_and_well_structured"] is True
        assert row["tokens"] == 8 * row["tokens_per_story"] and row["events_per_story"] > 0
        for key in ("wall_s", "client_cpu_s", "tokens_per_s", "tokens_per_cpu_s", "cpu_us_per_token"):
            assert row[key] > 0, key
        assert 0 < row["first_token_s_p50"] <= row["story_s_p50"] <= row["story_s_max"]
    # the run folders themselves: what tell-dataset recorded is the text served, whole, and it parses
    from storyreasoning.format import parse_output
    from storyreasoning.tell.run import read_lines

    folders = sorted(runs.iterdir())
    assert [f.name for f in folders] == ["run-1-0", "run-4-0"]
    for folder in folders:
        records = read_lines(folder / "records.jsonl").items
        assert sorted(r["story_id"] for r in records) == [f"story{n:05d}" for n in range(8)]
        for record in records:
            assert record["raw"] == text and record["well_structured"]
            assert record["meta"]["usage"]["finish_reason"] == "stop"
            telling = parse_output(record["raw"])
            assert telling.validate(n_images=3).well_structured
            assert len(telling.cot.images) == 3 and record["parse"]["story"]


def test_the_served_events_are_vllm_shaped_and_carry_the_text():
    sys.path.insert(0, str(BENCH))
    try:
        import client
    finally:
        sys.path.remove(str(BENCH))
    text = LIGHTHOUSE.read_text(encoding="utf-8")
    pieces = client.tokens_of(text)
    assert "".join(pieces) == text and len(pieces) > 1000
    events = client.sse_events(text, 4)
    assert events[-1] == b"data: [DONE]\n\n" and all(e.startswith(b"data: {") for e in events[:-1])
    payloads = [json.loads(e[6:]) for e in events[:-1]]
    assert payloads[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(p["choices"][0]["delta"].get("content", "") for p in payloads[:-1]) == text
    assert payloads[-2]["choices"][0]["finish_reason"] == "stop"
    assert payloads[-1]["usage"]["completion_tokens"] == len(pieces) and payloads[-1]["choices"] == []
    assert {p["id"] for p in payloads} == {"chatcmpl-bench"}
