"""bench/build_concurrency.py runs on a tiny size and writes its JSON; no timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[2] / "bench"


def test_build_concurrency_bench(tmp_path):
    pytest.importorskip(
        "cv2", reason="the builder's perception needs OpenCV: pip install 'storyreasoning[vision]'"
    )
    out = tmp_path / "build.json"
    result = subprocess.run(
        [sys.executable, str(BENCH / "build_concurrency.py"), "--stories", "4", "--delay", "0.05",
         "--concurrency", "1,2", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "peak requests" in result.stdout and "perception alone" in result.stdout
    data = json.loads(out.read_text())
    assert [row["concurrency"] for row in data["rows"]] == [1, 2]
    assert data["rows"][0]["peak_requests"] == 1 and all(row["seconds"] > 0 for row in data["rows"])
    assert data["metadata"]["command"].startswith("python bench/build_concurrency.py")
    assert data["metadata"]["perception_seconds"] > 0
