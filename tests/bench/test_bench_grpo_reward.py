"""bench/grpo_reward.py runs on a tiny size, checks the pools against the trainer's process and writes its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parents[2] / "bench"


def test_grpo_reward_bench(tmp_path):
    out = tmp_path / "grpo_reward.json"
    result = subprocess.run(
        [sys.executable, str(BENCH / "grpo_reward.py"), "--stories", "4", "--group", "2", "--prompts", "2",
         "--workers", "2", "--rounds", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "identical to in-process" in " ".join(result.stdout.split())
    rows = json.loads(out.read_text())["rows"]
    assert [row["workers"] for row in rows] == [0, 2] and all(row["identical"] for row in rows)
    assert all(row["median_step_ms"] > 0 for row in rows)
