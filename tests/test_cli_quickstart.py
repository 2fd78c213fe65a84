"""The README's Quick start works as pasted into a fresh shell, its next command included.

The rule: the Quick start installs into ``.venv`` without activating it, so every command
after the install must call ``.venv/bin/…`` (or come after an activation). A fast test
checks the rule on the text and runs every command after the install, as written, in a
shell whose PATH does not hold the environment; a slow test (``-m slow``, needs the
package index) runs the whole Quick start, install included, in a fresh copy of the
repository.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
ACTIVATION = re.compile(r"^(source|\.)\s+\.venv/bin/activate$")


def quick_start() -> tuple[list[str], list[str]]:
    """The first code block's steps (split at ``&&``) and the commands the prose gives after it."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Quick start", 1)[1]
    section = section.split("\n## ", 1)[0]
    first = re.search(r"```bash\n(.*?)\n```", section, re.S)
    assert first is not None, "the Quick start has no bash block"
    steps = [step.strip() for step in first.group(1).replace("\\\n", " ").split("&&")]
    prose = section[first.end() :].split("```bash", 1)[0]
    spans = [s.strip() for s in re.findall(r"`([^`\n]+)`", prose)]
    commands = [s for s in spans if re.match(r"(\.venv/bin/)?storyreasoning\s+\w", s) or ACTIVATION.match(s)]
    return steps, commands


def after_install(steps: list[str]) -> list[str]:
    installs = [i for i, step in enumerate(steps) if "pip install" in step]
    assert installs, f"the first block installs nothing: {steps}"
    return steps[installs[-1] + 1 :]


def test_every_command_after_the_install_reaches_the_environment():
    steps, commands = quick_start()
    assert steps[0].startswith("python3 -m venv .venv"), steps
    later = after_install(steps)
    assert later and commands, (steps, commands)
    assert any(" check " in c for c in commands), "the prose no longer gives the check command"
    activated = False
    for command in [*later, *commands]:
        if ACTIVATION.match(command):
            activated = True
        elif "storyreasoning" in command.split()[0]:
            assert activated or command.startswith(".venv/bin/storyreasoning "), (
                f"{command!r} runs after an install into .venv that was not activated: "
                "write .venv/bin/storyreasoning, or activate first"
            )


def fresh_env(home: Path) -> dict:
    """A new shell's environment: no virtual environment active, none of ours on PATH."""
    ours = {str(Path(sys.executable).parent), str(Path(sys.prefix) / "bin")}
    path = [p for p in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep) if p not in ours]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH")}
    return {**env, "PATH": os.pathsep.join(path), "HOME": str(home), "HF_HUB_OFFLINE": "1", "COLUMNS": "100"}


def test_the_commands_after_the_install_run_as_written(tmp_path):
    pytest.importorskip(
        "cv2", reason="the baseline teller needs OpenCV: pip install 'storyreasoning[vision]'"
    )
    if sys.prefix == sys.base_prefix or not (Path(sys.prefix) / "bin" / "storyreasoning").exists():
        pytest.skip("the tests do not run in a virtual environment with the storyreasoning command")
    steps, commands = quick_start()
    # the clone: the examples as they are, and .venv the environment the tests run in (installed)
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    script = " && ".join(after_install(steps)) + "\n" + "\n".join(commands) + "\n"
    result = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=tmp_path,
        env=fresh_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "command not found" not in result.stderr
    assert (tmp_path / "runs" / "demo" / "pioneers.html").is_file()
    assert result.stdout.rstrip().endswith("well-structured") and "not well-structured" not in result.stdout


@pytest.mark.slow
def test_the_whole_quick_start_in_a_fresh_clone(tmp_path):
    """Install included: a copy of the repository's tracked files, a fresh shell, the package index."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to copy the repository's files from")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    clone = tmp_path / "clone"
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    first = subprocess.run(
        ["bash", "-c", "grep -m1 '^python3 -m venv' README.md"], cwd=clone, capture_output=True, text=True
    ).stdout
    _, commands = quick_start()
    result = subprocess.run(
        ["bash", "-e", "-c", first + "\n".join(commands) + "\n"],
        cwd=clone,
        env=fresh_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    unreachable = (
        "Failed to establish",
        "No matching distribution",
        "Network is unreachable",
        "Temporary failure",
    )
    if result.returncode != 0 and any(text in result.stdout + result.stderr for text in unreachable):
        pytest.skip("the package index cannot be reached from here")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.rstrip().endswith("well-structured") and "not well-structured" not in result.stdout
