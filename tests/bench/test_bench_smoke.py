"""The benchmarks run (on tiny sizes) and write their JSON; no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[2] / "bench"


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(BENCH / name), *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_startup_bench(tmp_path):
    out = tmp_path / "startup.json"
    result = run_script("startup.py", "--repeats", "1", "--out", str(out))
    assert "import storyreasoning" in result.stdout
    rows = json.loads(out.read_text())["rows"]
    assert {row["case"] for row in rows} >= {"import storyreasoning", "storyreasoning --help"}


@pytest.mark.slow  # heavy end-to-end run: the slow pass (.ci/run) keeps it
def test_evaluate_bench(tmp_path):
    out = tmp_path / "evaluate.json"
    result = run_script("evaluate.py", "--stories", "12", "--no-java", "--repeats", "1", "--out", str(out))
    assert "Evaluating 12 stories" in result.stdout
    data = json.loads(out.read_text())
    stages = [row["stage"] for row in data["rows"]]
    assert stages[0].startswith("read") and stages[-1] == "evaluate without Java or plots"
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


def test_agree_bench(tmp_path):
    out = tmp_path / "agree.json"
    result = run_script(
        "agree.py", "--stories", "30", "--resamples", "50", "--repeats", "1", "--out", str(out)
    )
    assert "agreement()" in result.stdout
    data = json.loads(out.read_text())
    assert [row["case"] for row in data["rows"]] == ["agreement()", "evaluate agree --json"]
    assert all(row["best_s"] > 0 for row in data["rows"])
