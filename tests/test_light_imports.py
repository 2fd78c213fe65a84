"""``import storyreasoning`` and ``storyreasoning --help`` stay light and fast."""

from __future__ import annotations

import subprocess
import sys
import time

HEAVY = ("torch", "transformers", "cv2", "trl", "peft", "datasets", "numpy", "PIL.Image")

PROBE = """
import sys
{code}
heavy = [m for m in {heavy!r} if m in sys.modules]
print("HEAVY:" + ",".join(heavy))
"""


def probe(code: str) -> tuple[str, float]:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code, heavy=HEAVY)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("HEAVY:"), result.stdout[-500:]
    return last.removeprefix("HEAVY:"), elapsed


def test_import_package_and_format_is_light():
    loaded, _ = probe("import storyreasoning, storyreasoning.format, storyreasoning.format.prompts")
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
    loaded, _ = probe(code)
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
    loaded, _ = probe(code)
    # the check command needs no ML stack; PIL.Image is allowed only when images are given
    assert loaded == ""
