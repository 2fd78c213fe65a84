"""bench/parse.py runs (on tiny sizes) and writes its JSON; no timing is asserted (instruction counts only bounded)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[2] / "bench"


def test_parse_bench(tmp_path):
    out = tmp_path / "parse.json"
    args = [
        "--quick",
        "--rounds",
        "1",
        "--tokens",
        "300,600",
        "--hostile-sizes",
        "2000,8000",
        "--samples",
        "2",
    ]
    result = subprocess.run(
        [sys.executable, str(BENCH / "parse.py"), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for title in ("Well-formed outputs", "Streaming in 4-character chunks", "Hostile inputs"):
        assert title in result.stdout
    data = json.loads(out.read_text())
    tables: dict[str, list[dict]] = {}
    for row in data["rows"]:
        tables.setdefault(row["table"], []).append(row)
    assert [r["images"] for r in tables["well_formed"]] == [3, 3, 20]
    assert all(
        r["batch_us"] > 0 and r["mb_per_s"] > 0 and r["streamed_over_batch"] > 0
        for r in tables["well_formed"]
    )
    assert all("speedup_over_original_rules" in r for r in tables["well_formed"])
    assert [r["chunks"] > 0 for r in tables["streaming"]] == [True, True]
    hostile = tables["hostile"]
    assert len(hostile) >= 10 and all(r["s_per_mb"] > 0 and 3.5 < r["size_ratio"] < 4.5 for r in hostile)
    assert data["metadata"]["command"].startswith("python bench/parse.py")


def test_parse_bench_outputs_are_well_formed_and_deterministic():
    sys.path.insert(0, str(BENCH))
    try:
        import parse
    finally:
        sys.path.remove(str(BENCH))
    from storyreasoning.format import parse_output

    for text in (parse.make_output(1500, seed=3), parse.make_output(images=20)):
        telling = parse_output(text)
        verdict = telling.validate(n_images=len(telling.cot.images))
        assert verdict.well_structured, verdict.reasons
        assert not telling.diagnostics
    assert parse.make_output(1500, seed=3) == parse.make_output(1500, seed=3)
    assert len(parse_output(parse.make_output(images=20)).cot.images) == 20


@pytest.mark.slow  # four runs under valgrind: about a minute on a loaded 2-core machine
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_parse_bench_counts_instructions():
    sys.path.insert(0, str(BENCH))
    try:
        import parse
    finally:
        sys.path.remove(str(BENCH))
    batch = parse._instructions("batch", "lighthouse.txt (3 images)", 1)
    floor = parse._instructions("floor", "lighthouse.txt (3 images)", 1)
    # a parse of 4.7 KB is hundreds of thousands of instructions, and so is a loop of 1,183 feed() calls
    assert 100_000 < batch < 50_000_000 and 100_000 < floor < 50_000_000
