"""The README's Quick start works as written (the install step aside: the tests run installed)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, re.S)


def test_quick_start_is_two_commands_and_ci_runs_the_second():
    commands = quick_start_commands()
    assert len(commands) == 2, commands
    assert all("\n" not in command for command in commands)
    assert commands[1] == "./scripts/test"
    assert "./scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_first_command_tells_a_well_structured_story(tmp_path):
    pytest.importorskip(
        "cv2", reason="the baseline teller needs OpenCV: pip install 'storyreasoning[vision]'"
    )
    first = quick_start_commands()[0]
    main = first.split("&&")[-1].strip()
    args = shlex.split(main)
    assert args[0] == ".venv/bin/storyreasoning" and "--teller" in args and "baseline" in args
    # run it from a copy of the repository's layout: the example folder, relative paths as written
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    result = subprocess.run(
        [sys.executable, "-m", "storyreasoning", *args[1:]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / args[args.index("--out") + 1]
    for path in (out, out.with_suffix(".json"), out.with_suffix(".html")):
        assert path.is_file() and path.stat().st_size > 0, path
    frames = sorted(str(p) for p in (ROOT / "examples" / "stories" / "pioneers").glob("*.jpg"))
    check = subprocess.run(
        [sys.executable, "-m", "storyreasoning", "check", str(out), *frames],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "well-structured" in check.stdout and "not well-structured" not in check.stdout
