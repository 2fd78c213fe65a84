"""The benchmarks run (on tiny sizes) and write their JSON; no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parents[2] / "bench"


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(BENCH / name), *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_stream_parse_bench(tmp_path):
    out = tmp_path / "stream.json"
    result = run_script(
        "stream_parse.py", "--sizes", "200,400", "--repeats", "1", "--samples", "3", "--out", str(out)
    )
    assert "stream µs/chunk" in result.stdout
    data = json.loads(out.read_text())
    assert [row["target_tokens"] for row in data["rows"]] == [200, 400]
    for row in data["rows"]:
        assert row["chunks"] > 0 and row["stream_us_per_chunk"] > 0 and len(row["naive_samples"]) == 3
    assert data["metadata"]["command"].startswith("python bench/stream_parse.py")


def test_stream_parse_synthetic_output_is_well_structured():
    sys.path.insert(0, str(BENCH))
    try:
        import stream_parse
    finally:
        sys.path.remove(str(BENCH))
    from storyreasoning.format import parse_output

    text = stream_parse.make_output(1500, seed=3)
    assert text == stream_parse.make_output(1500, seed=3)  # deterministic
    telling = parse_output(text)
    verdict = telling.validate(n_images=len(telling.cot.images))
    assert verdict.well_structured, verdict.reasons
    assert not telling.diagnostics


def test_startup_bench(tmp_path):
    out = tmp_path / "startup.json"
    result = run_script("startup.py", "--repeats", "1", "--out", str(out))
    assert "import storyreasoning" in result.stdout
    rows = json.loads(out.read_text())["rows"]
    assert {row["case"] for row in rows} >= {"import storyreasoning", "storyreasoning --help"}


def test_evaluate_bench(tmp_path):
    out = tmp_path / "evaluate.json"
    result = run_script("evaluate.py", "--stories", "12", "--no-java", "--repeats", "1", "--out", str(out))
    assert "Evaluating 12 stories" in result.stdout
    data = json.loads(out.read_text())
    stages = [row["stage"] for row in data["rows"]]
    assert stages[0].startswith("read") and stages[-1] == "evaluate without Java"
    assert {
        "parse (references and outputs)",
        "grounding",
        "grounding (original protocol)",
        "identity",
        "consistency",
        "language without Java",
        "report (files and plots)",
        "total without Java (stages above, one core)",
    } <= set(stages)
    assert all(row["seconds"] > 0 and row["cpu_seconds"] >= 0 for row in data["rows"])
    assert data["metadata"]["summary"]["end_to_end"]["evaluate without Java"] > 0


def test_reward_bench(tmp_path):
    out = tmp_path / "reward.json"
    result = run_script("reward.py", "--stories", "8", "--candidates", "3", "--out", str(out))
    assert "Rewards for 8 stories x 3 candidates" in result.stdout
    data = json.loads(out.read_text())
    assert [row["step"] for row in data["rows"]] == [
        "generate stories and outputs",
        "reward of every candidate",
        "build_pairs (with the reference)",
    ]
    assert data["rows"][1]["items"] > 0 and data["metadata"]["pairs"] >= 1
