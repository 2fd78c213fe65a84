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


def _studio(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "storyreasoning", "studio", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "400", "HF_HUB_OFFLINE": "1"},
    )


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("/missing", ["/missing", "no such file or folder", "hub id"]),
        ("stories=/missing/stories", ["/missing/stories", "no such file or folder"]),
        ("examples/storiez", ["examples/storiez", "no such file or folder"]),  # a typo, not a hub id
        ("EMPTY", ["holds no StoryReasoning dataset"]),
    ],
    ids=["missing", "named-missing", "typo", "empty-folder"],
)
def test_a_dataset_it_cannot_open_stops_the_studio_at_start(tmp_path, spec, words):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _studio("--dataset", spec.replace("EMPTY", str(empty)))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line: the path and the fix, no traceback
    for word in words:
        assert word in lines[0], lines[0]
    assert "studio at" not in result.stderr


def test_a_missing_runs_folder_is_one_line_naming_it(tmp_path):
    result = _studio("--runs", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        line for line in result.stderr.strip().splitlines() if "nope" in line and "tell-dataset" in line
    ]


def test_a_hub_id_is_left_for_the_page_to_open():
    from storyreasoning.studio.config import check_source

    check_source("daniel3303/StoryReasoning")  # not a local path: opened when first browsed
    with pytest.raises(Exception, match="no such file or folder"):
        check_source("./daniel3303/StoryReasoning")


@pytest.mark.parametrize("value", ["-1", "0", "0.0009"])
def test_an_upload_limit_below_1_kib_names_the_option(value):
    result = _studio("--max-upload-mb", value)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: --max-upload-mb must be at least 0.001 (got {value})"
    ]


def test_a_port_out_of_range_names_the_option_and_help_shows_the_ranges():
    result = _studio("--port", "70000")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == ["error: --port must be between 0 and 65535 (got 70000)"]
    shown = " ".join(_studio("--help").stdout.split())
    assert "Port to listen on (0: any free port). [default: 8765; 0<=x<=65535]" in shown
    assert "Largest image upload, in MB (0.001: 1 KiB). [default: 20.0; x>=0.001]" in shown


def test_an_empty_endpoint_is_refused_not_taken_for_none(tmp_path):
    """``--endpoint "$URL"`` with URL unset is said, not read as no storyteller (browse only); from a
    config file too. (The missing --runs folder is never reached.)"""
    empty = "error: --endpoint is empty; give the server's base URL (such as http://localhost:8000/v1), or leave it out"
    missing = ("--runs", str(tmp_path / "missing"))
    for given in (["--endpoint="], ["--endpoint", "  "]):
        result = _studio(*given, *missing)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [empty]
    config = tmp_path / "studio.yaml"
    config.write_text('endpoint: ""\n', encoding="utf-8")
    result = _studio("--config", str(config), *missing)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {config}: endpoint is empty; give the server's base URL (such as http://localhost:8000/v1), or leave it out"
    ]
