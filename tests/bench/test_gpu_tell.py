"""bench/gpu_tell.py on the CPU: the tiny model through every variant, and the 7B path narrowed to one layer."""

from __future__ import annotations

import json

import pytest

from ..conftest import require_transformers
from .test_bench_smoke import run_script

require_transformers()

from storyreasoning.format import smart_resize  # noqa: E402


def image_tokens(width: int, height: int, min_pixels: int, max_pixels: int) -> int:
    h, w = smart_resize(height, width, min_pixels=min_pixels, max_pixels=max_pixels)
    return (h // 28) * (w // 28)


@pytest.mark.slow  # every variant, compiled decoding included, on the CPU: about 24 s
def test_gpu_tell_bench_runs_every_variant_on_the_tiny_model(tmp_path):
    out = tmp_path / "gpu_tell.json"
    args = ["--tiny", "--frames", "2", "--batches", "1,2", "--new-tokens", "6", "--out", str(out)]
    result = run_script("gpu_tell.py", *args)
    assert (
        "Telling a story with tiny Qwen2.5-VL (CPU) on cpu" in result.stdout
        and "limit tok/s" in result.stdout
    )
    data = json.loads(out.read_text())
    meta = data["metadata"]
    assert meta["command"].startswith("python bench/gpu_tell.py --tiny")
    # the example photographs went through the teller's processor (the tiny one's budget: 4 to 16 tokens)
    assert meta["image_tokens"] == 2 * image_tokens(980, 644, 28 * 28 * 4, 28 * 28 * 16)
    assert meta["prompt_tokens"] > meta["image_tokens"]
    # 2 layers x keys and values x 2 KV heads x 16 dimensions x 4 bytes (float32)
    assert meta["kv_bytes_per_token"] == 2 * 2 * 2 * 16 * 4
    assert meta["copy_bandwidth_gb_s"] > 0 and meta["compile_backend"] == "eager"
    rows = {(r["variant"], r["batch"]): r for r in data["rows"]}
    variants = ("dynamic", "static", "eager", "flash", "compiled")
    assert set(rows) == {(v, b) for v in variants for b in (1, 2)}
    for (variant, _), row in rows.items():
        if variant == "flash":  # the teller's own refusal, not a crash
            assert row["status"].startswith(
                "skipped (--attn-implementation flash_attention_2 needs a CUDA GPU"
            )
            continue
        assert row["status"] == "ok", row
        assert row["new_tokens"] == 6 and row["prompt_tokens"] == meta["prompt_tokens"]
        assert 0 < row["vision_s"] < row["ttft_s"] and 0 < row["prefill_s"] < row["ttft_s"]
        # the time to first token is its set-up, the vision tower and the prefill, one after the other
        assert row["setup_s"] + row["vision_s"] + row["prefill_s"] == pytest.approx(row["ttft_s"])
        assert row["step_ms"] > 0 and row["tokens_per_s"] == pytest.approx(
            row["batch"] * 1000 / row["step_ms"]
        )
        assert row["limit_tokens_per_s"] > 0 and row["of_limit"] > 0
        assert row["same_tokens"] == 1.0, row  # float32 on a CPU: every variant decodes the baseline's tokens
    assert rows[("compiled", 1)]["compiled"] and rows[("static", 2)]["cache"] == "static"
    assert rows[("eager", 1)]["attention"] == "eager"


@pytest.mark.slow  # the 7B path on the CPU: about 30 s
def test_gpu_tell_bench_7b_path_narrowed(tmp_path):
    out = tmp_path / "gpu_tell.json"
    args = ["--shrink", "--frames", "2", "--frame-size", "280x196", "--batches", "1", "--new-tokens", "4",
            "--variants", "static,dynamic", "--out", str(out)]  # fmt: skip
    result = run_script("gpu_tell.py", *args)
    assert "Qwen2.5-VL-7B narrowed to one layer" in result.stdout
    data = json.loads(out.read_text())
    meta = data["metadata"]
    # Qwen2.5-VL's own pixel budget keeps a 280 x 196 frame whole: 10 x 7 merged patches
    assert meta["image_tokens"] == 2 * 70
    # one layer x keys and values x 2 KV heads x 128 dimensions (the published head size) x 4 bytes
    assert meta["kv_bytes_per_token"] == 2 * 2 * 128 * 4
    assert [r["variant"] for r in data["rows"]] == ["dynamic", "static"]  # the baseline first
    assert all(r["status"] == "ok" and r["same_tokens"] == 1.0 for r in data["rows"])
