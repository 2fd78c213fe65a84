"""``import storyreasoning`` and ``storyreasoning --help`` import no heavy library.

Their timing is measured by ``bench/startup.py``, not here.
"""

from __future__ import annotations

import subprocess
import sys

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
