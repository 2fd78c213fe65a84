"""bench/gpu_train.py end to end with the tiny model on the CPU: every case runs, and the plan is beside each peak."""

from __future__ import annotations

import json

import pytest

from ..conftest import require_transformers
from .test_bench_smoke import run_script

require_transformers()
pytest.importorskip("peft", reason="the benchmark's LoRA needs peft")


@pytest.mark.slow  # heavy end-to-end run: CI runs it in its slow pass
def test_gpu_bench_runs_on_the_cpu_with_the_tiny_model(tmp_path):
    out = tmp_path / "gpu_train.json"
    result = run_script("gpu_train.py", "--tiny", "--steps", "1", "--dpo-rank", "64", "--out", str(out))
    assert "Training steps of tiny Qwen2.5-VL (CPU)" in result.stdout and "plan/peak" in result.stdout
    data = json.loads(out.read_text())
    assert data["metadata"]["command"].startswith("python bench/gpu_train.py --tiny")
    rows = {(r["case"], r["checkpointing"]): r for r in data["rows"]}
    assert set(rows) == {("sft lora r16", False), ("sft lora r16", True), ("dpo lora r64", True),
                         ("longest (plan)", True)}  # fmt: skip
    for row in data["rows"]:
        assert row["status"].startswith("ok"), row
        assert row["tokens_per_s"] > 0 and row["step_s"] > 0
        # the plan beside the measured peak (every tensor the steps allocate, counted on the CPU)
        assert row["predicted_over_measured"] == pytest.approx(1.0, abs=0.03), row
    # the dpo rows are chosen and rejected together; the longest story is the plan's for the pretend card
    assert rows[("dpo lora r64", True)]["rows"] == 2
    longest = rows[("longest (plan)", True)]
    assert longest["tokens"] > rows[("sft lora r16", True)]["tokens"]
    assert longest["peak_gib"] <= longest["gpu_memory_gib"] * 1.01
