"""``tell`` and ``serve`` say what they will load, and fail fast, in one line, when it cannot be had.

No hub is ever reached: "offline" is ``HF_HUB_OFFLINE=1``, "unreachable" a hub endpoint on a
loopback port that nothing listens on (a real connection, refused at once).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PIONEERS = ROOT / "examples" / "stories" / "pioneers"
OTHERS = ("--model FOLDER", "--endpoint URL", "--teller baseline")


def run(*args, env: dict | None = None, offline: bool = True) -> subprocess.CompletedProcess:
    full = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1", **(env or {})}
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        full.pop(name, None)
    if offline:
        full["HF_HUB_OFFLINE"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "storyreasoning", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=full,
        cwd=ROOT,
    )


def error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def empty_cache(tmp_path):
    return {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub")}


def test_tell_without_a_storyteller_says_what_it_loads_and_fails_fast_offline(empty_cache):
    start = time.monotonic()
    result = run("tell", PIONEERS, env=empty_cache)
    seconds = time.monotonic() - start
    said = result.stderr.split("error: ")[0]
    assert "no storyteller given: loading daniel3303/QwenStoryteller2" in said  # before loading
    line = error_line(result)
    assert "daniel3303/QwenStoryteller2 is not in the local Hugging Face cache" in line
    assert "HF_HUB_OFFLINE" in line and all(option in line for option in OTHERS)
    assert seconds < 30, f"took {seconds:.0f} s"  # 148 s of download retries before


def test_an_unreachable_hub_fails_fast_naming_the_other_storytellers(empty_cache):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    start = time.monotonic()
    result = run("tell", PIONEERS, env={**empty_cache, "HF_ENDPOINT": endpoint}, offline=False)
    seconds = time.monotonic() - start
    line = error_line(result)
    assert f"cannot reach the Hugging Face Hub ({endpoint}" in line
    assert all(option in line for option in OTHERS)
    assert seconds < 30, f"took {seconds:.0f} s"


def test_a_model_folder_that_does_not_exist(tmp_path):
    missing = tmp_path / "no-such-model"
    line = error_line(run("tell", PIONEERS, "--model", missing))
    assert line == (
        f"error: the model folder {missing} does not exist; check the path, or give a hub id such as "
        "daniel3303/QwenStoryteller2"
    )
    result = run("serve", "--model", missing, "--print")
    assert result.returncode == 2 and result.stdout == ""  # no command printed for a missing folder
    assert f"the model folder {missing} does not exist" in error_line(result)
    hub = run(
        "serve", "--model", "daniel3303/QwenStoryteller2", "--print"
    )  # a hub id is the server's to fetch
    assert hub.returncode == 0 and "daniel3303/QwenStoryteller2" in hub.stdout


def test_a_folder_of_unnumbered_images_says_how_to_name_them(tmp_path):
    for number, name in enumerate(("dawn", "harbour", "market"), start=1):
        (tmp_path / f"{name}.jpg").write_bytes((PIONEERS / f"0{number}.jpg").read_bytes())
    line = error_line(run("tell", tmp_path, "--teller", "baseline"))
    assert f"{tmp_path} holds no frames" in line
    assert "dawn.jpg, harbour.jpg, market.jpg" in line and "have no number in their names" in line
    assert "rename them in story order (01.jpg, 02.jpg, …)" in line
    assert "or pass the image files themselves, in story order" in line
    empty = tmp_path / "empty"
    empty.mkdir()
    line = error_line(run("tell", empty, "--teller", "baseline"))
    assert "with a number in their names, which sets their order" in line
