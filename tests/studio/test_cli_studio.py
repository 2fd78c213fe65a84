"""``storyreasoning studio`` as a user starts it: a real process, its URL, its API, Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip(
    "fastapi", reason="the studio needs FastAPI and uvicorn: pip install 'storyreasoning[studio]'"
)
pytest.importorskip(
    "uvicorn", reason="the studio needs FastAPI and uvicorn: pip install 'storyreasoning[studio]'"
)

ROOT = Path(__file__).parents[2]


def test_studio_command_serves_and_stops_on_ctrl_c():
    env = {**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "storyreasoning",
            "studio",
            "--port",
            "0",
            "--dataset",
            f"stories={ROOT / 'examples' / 'stories'}",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        url, lines, deadline = None, [], time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            found = re.search(r"http://127\.0\.0\.1:\d+", line)
            url = found.group(0) if found else None
        assert url, "".join(lines)
        with urllib.request.urlopen(url + "/api/config", timeout=10) as response:
            config = json.load(response)
        assert config["teller"] is None  # no storyteller given: inspect and browse only
        assert [d["name"] for d in config["datasets"]] == ["stories"]
        with urllib.request.urlopen(url + "/", timeout=10) as response:
            assert b"/static/app.js" in response.read()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode in (0, 130)
    assert "Traceback" not in proc.stderr.read()


def test_studio_command_refuses_a_missing_runs_folder(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "storyreasoning", "studio", "--port", "0", "--runs", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "nope" in result.stderr and "Traceback" not in result.stderr
