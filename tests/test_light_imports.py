"""``import storyreasoning`` and ``storyreasoning --help`` import no heavy library.

Their timing is measured by ``bench/startup.py``, not here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "transformers", "cv2", "trl", "peft", "datasets", "numpy", "PIL.Image")

PROBE = """
import sys
{code}
heavy = [m for m in {heavy!r} if m in sys.modules]
print("HEAVY:" + ",".join(heavy))
"""


def probe(code: str) -> str:
    """Run ``code`` in a fresh interpreter; return the heavy modules it left loaded."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code, heavy=HEAVY)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("HEAVY:"), result.stdout[-500:]
    return last.removeprefix("HEAVY:")


def test_import_package_and_format_is_light():
    loaded = probe("import storyreasoning, storyreasoning.format, storyreasoning.format.prompts")
    assert loaded == ""


def test_cli_help_is_light():
    code = (
        "import io, contextlib\n"
        "from storyreasoning.cli import app\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    try:\n"
        "        app(['--help'], prog_name='storyreasoning')\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    try:\n"
        "        app(['check', '--help'], prog_name='storyreasoning')\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert 'check' in buf.getvalue()\n"
    )
    loaded = probe(code)
    assert loaded == ""


def test_check_command_is_light(tmp_path):
    from pathlib import Path

    example = Path(__file__).parents[1] / "examples" / "outputs" / "lighthouse.txt"
    code = (
        "from storyreasoning.cli import main\n"
        "try:\n"
        f"    main(['check', {str(example)!r}, '--json'])\n"
        "except SystemExit:\n"
        "    pass\n"
    )
    loaded = probe(code)
    # the check command needs no ML stack; PIL.Image is allowed only when images are given
    assert loaded == ""


def test_python_dash_m_runs_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "storyreasoning", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    from storyreasoning import __version__

    assert __version__ in result.stdout


# What each start-up path imports (bench/startup.py measures the time; these are the module sets).
# Printed to a pipe: plain text, so no rich; only commands that run through typer import it.
LIBRARIES = ("typer", "rich", "pydantic", "markdown_it")

STARTUP = """
import contextlib, io, sys
from storyreasoning.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main({args!r})
    except SystemExit as exc:
        code = exc.code
assert code == 0, (code, out.getvalue()[-500:])
print("LOADED:" + ",".join(m for m in {watched!r} if m in sys.modules))
"""


def loaded_by(args: list[str], watched=LIBRARIES) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", STARTUP.format(args=args, watched=watched)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TTY_COMPATIBLE": "", "FORCE_COLOR": ""},
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("LOADED:"), result.stdout[-500:]
    return set(filter(None, last.removeprefix("LOADED:").split(",")))


EXAMPLE = Path(__file__).parents[1] / "examples" / "outputs" / "lighthouse.txt"


def test_check_json_imports_no_cli_library():
    assert loaded_by(["check", str(EXAMPLE), "--json", "-n", "3"]) == set()
    assert loaded_by(["--version"]) == set()


def test_help_imports_typer_alone():
    assert loaded_by(["--help"]) == {"typer"}
    # nor any command's settings: the list of commands needs no command module
    commands = tuple(
        f"storyreasoning.{p}.cli" for p in ("check", "tell", "data", "train", "evaluate", "studio")
    )
    settings = tuple(
        f"storyreasoning.{p}.settings" for p in ("tell", "builder", "train", "evaluate", "studio")
    )
    assert loaded_by(["--help"], commands + settings + ("storyreasoning.format",)) == set()


def test_a_command_loads_its_own_module_only():
    watched = tuple(
        f"storyreasoning.{p}.settings" for p in ("tell", "builder", "train", "evaluate", "studio")
    )
    assert loaded_by(["build", "--help"], watched) == {
        "storyreasoning.builder.settings",
        "storyreasoning.tell.settings",
    }
    assert loaded_by(["evaluate", "--help"], watched) == {"storyreasoning.evaluate.settings"}
    assert "rich" not in loaded_by(["train", "sft", "--help"])


def test_a_job_command_with_plain_arguments_runs_without_typer(tmp_path):
    """Job commands read plain arguments themselves (settings.run_quick): typer builds its parameters
    through pydantic, about 0.2 s a start."""
    from storyreasoning.testing.reports import write_compare_reports

    runs = write_compare_reports(tmp_path)
    assert loaded_by(["evaluate", "compare", *runs]) == {"rich"}  # no typer, no pydantic
    # nor the data package (its writers, folders, identity: about 50 ms) to compare two reports' datasets
    assert loaded_by(["evaluate", "compare", *runs], ("storyreasoning.data",)) == set()


PROGRESS = """
import sys
from storyreasoning.terminal import progress_bar
with progress_bar(3, "counting") as advance:
    for _ in range(3):
        advance(1)
print("rich.progress" in sys.modules)
"""


def test_a_progress_bar_off_a_terminal_draws_nothing_and_imports_no_rich_progress():
    plain = {**os.environ, "TTY_COMPATIBLE": "", "FORCE_COLOR": ""}
    done = subprocess.run(
        [sys.executable, "-c", PROGRESS], capture_output=True, text=True, timeout=60, env=plain
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "False\n", "")
    drawn = subprocess.run(
        [sys.executable, "-c", PROGRESS],
        capture_output=True,
        text=True,
        timeout=60,
        env={**plain, "FORCE_COLOR": "1"},
    )
    assert drawn.stdout == "True\n" and "counting" in drawn.stderr


SLOW_PROGRESS = """
import sys, time
from storyreasoning.terminal import progress_bar
with progress_bar(6, "counting", unit="steps") as advance:
    for _ in range(6):
        time.sleep(0.1)
        advance(1)
print("rich.progress" in sys.modules)
"""


def test_a_long_job_writing_to_a_log_file_shows_plain_progress_lines(tmp_path):
    """``nohup storyreasoning … 2>log``: no bar, but a plain line every interval and one at the end."""
    log = tmp_path / "log"
    env = {**os.environ, "TTY_COMPATIBLE": "", "FORCE_COLOR": "", "STORYREASONING_PROGRESS_SECONDS": "0.25"}
    with log.open("w") as stderr:
        done = subprocess.run(
            [sys.executable, "-c", SLOW_PROGRESS],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            timeout=60,
            env=env,
        )
    assert (done.returncode, done.stdout) == (0, "False\n")
    lines = log.read_text().splitlines()
    # 0.6 s of work (more on a busy machine): a line every 0.25 s at most, then the closing one
    assert 2 <= len(lines) <= 6, lines
    for line in lines[:-1]:
        assert re.fullmatch(r"counting: [1-5]/6 steps \(\d+%\)(, [\d.]+/s, about \d+ s left)?", line), lines
    assert re.fullmatch(r"counting: 6/6 steps \(100%\) in \d+ s, [\d.]+/s", lines[-1]), lines
