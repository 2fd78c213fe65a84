"""bench/build.py runs on a tiny size and writes its JSON; no timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[2] / "bench"


@pytest.mark.slow  # heavy end-to-end run: the slow pass (.ci/run) keeps it
def test_build_bench(tmp_path):
    pytest.importorskip(
        "cv2", reason="the builder's perception needs OpenCV: pip install 'storyreasoning[vision]'"
    )
    pytest.importorskip(
        "scenedetect", reason="the video stages need PySceneDetect: pip install 'storyreasoning[build]'"
    )
    pytest.importorskip(
        "transformers", reason="the model stages need transformers: pip install 'storyreasoning[train]'"
    )
    out = tmp_path / "build.json"
    result = subprocess.run(
        [sys.executable, str(BENCH / "build.py"), "--quick", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "per second" in result.stdout and "peak requests" in result.stdout
    assert "perception alone" in result.stdout
    data = json.loads(out.read_text())
    stages = [row["stage"] for row in data["rows"] if row["section"] == "perception"]
    expected = ["shots", "key frames", "detection, batch 1", "detection, batch 8", "embedding, batch 1",
                "embedding, batch 8", "re-identification", "segmentation, batch 1", "segmentation, batch 8",
                "backgrounds (colour)", "perception, whole story"]  # fmt: skip
    assert [s for s in stages if s != "faces (dlib hog)"] == expected  # faces when dlib is installed
    for row in data["rows"]:
        if row["section"] == "perception":
            assert row["items"] > 0 and row["seconds"] > 0 and row["per_second"] > 0
    shots = next(row for row in data["rows"] if row.get("stage") == "shots")
    assert shots["items"] == 14 * 15 and shots["note"] == "14 shots found"  # one shot per photograph
    writer = [row for row in data["rows"] if row["section"] == "writer"]
    assert [row["concurrency"] for row in writer] == [1, 2]  # each dataset checked byte for byte against c=1
    assert writer[0]["peak_requests"] == 1 and all(row["stories_per_minute"] > 0 for row in writer)
    meta = data["metadata"]
    assert meta["command"].startswith("python bench/build.py --quick")
    assert meta["perception_seconds"] > 0 and meta["torch_threads"] == 1
    assert meta["models"]["detector"] == "tiny, built offline"


def test_build_bench_refuses_an_unknown_stage():
    result = subprocess.run(
        [sys.executable, str(BENCH / "build.py"), "--stages", "detection,teleport"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "unknown stages teleport" in result.stderr
