"""The command starts on what it uses: its fast paths answer exactly as the full typer app does.

``storyreasoning --help`` lists the commands from :data:`storyreasoning.cli.COMMANDS`
without importing them, ``check`` with plain arguments runs without typer, and help and
errors are plain text unless printed to a terminal. The module sets are in
``test_light_imports.py``, the time in ``bench/startup.py``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from storyreasoning.check.cli import quick_args
from storyreasoning.cli import COMMANDS

ROOT = Path(__file__).parents[1]
OUTPUTS = sorted((ROOT / "examples" / "outputs").glob("*"))
LIGHTHOUSE = ROOT / "examples" / "outputs" / "lighthouse.txt"
PLAIN = {"COLUMNS": "100", "NO_COLOR": "1", "TTY_COMPATIBLE": "", "FORCE_COLOR": ""}


def run(args: list[str], *, quick: bool = True, stdin: str | None = None, env: dict | None = None):
    """``storyreasoning ARGS`` in a fresh interpreter; ``quick=False``: everything through typer."""
    code = f"from storyreasoning.cli import main; main({args!r}, quick={quick})"
    return subprocess.run(
        [sys.executable, "-c", code],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, **PLAIN, **(env or {})},
    )


def test_the_command_table_is_what_the_modules_declare():
    import typer
    from typer.main import get_group

    declared: dict[str, str] = {}
    for module in dict.fromkeys(module for module, _ in COMMANDS.values()):
        scratch = typer.Typer()
        importlib.import_module(module).register(scratch)
        for name, command in get_group(scratch).commands.items():
            declared[name] = inspect.cleandoc(command.help or "").split("\n\n")[0].replace("\n", " ")
    assert set(declared) == set(COMMANDS)
    for name, (_, help) in COMMANDS.items():
        assert help == declared[name], name


def test_help_lists_every_command_and_loads_each_on_use():
    shown = run(["--help"])
    assert shown.returncode == 0, shown.stderr
    for name, (_, help) in COMMANDS.items():
        assert f"  {name} " in shown.stdout and help.split()[0] in shown.stdout
    assert "╭" not in shown.stdout  # a pipe gets plain text
    assert run(["--help"], quick=False).stdout == shown.stdout
    sub = run(["evaluate", "--help"])
    assert sub.returncode == 0 and "compare" in sub.stdout and "Score a run" in sub.stdout
    typo = run(["chek"])
    assert typo.returncode == 2 and "No such command 'chek'. Did you mean 'check'?" in typo.stderr


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("frames")
    paths = []
    for i, size in enumerate([(640, 480), (640, 480), (100, 100)]):
        path = folder / f"frame{i}.png"
        Image.new("RGB", size, (i * 40, 80, 120)).save(path)
        paths.append(str(path))
    (folder / "text.png").write_text("not an image\n")
    (folder / "bad.txt").write_bytes(LIGHTHOUSE.read_bytes().replace(b"Ines", b"In\xffs", 1))
    return paths


def cases(frames: list[str]):
    folder = str(Path(frames[0]).parent)
    for output in OUTPUTS:
        out = str(output)
        yield [out, "--json"]
        yield [out, "--json", "-n", "3", "--strict"]
        yield ["--json", "--kind", "cot", out]
        yield [out, "--kind=story", "--images=3", "--json"]
        yield [out]  # the summary, through rich either way
        yield [out, "--images", "4"]
    yield [str(LIGHTHOUSE), *frames[:2], "--json"]
    yield [str(LIGHTHOUSE), *frames, "--json"]  # a frame too small: exit 1
    yield [str(LIGHTHOUSE), frames[0], "-n", "3", "--json"]  # disagreeing counts: a usage error
    yield [str(LIGHTHOUSE), f"{folder}/text.png"]  # not an image
    yield [f"{folder}/bad.txt", "--json"]  # not UTF-8: a finding
    yield ["missing.txt", "--json"]
    yield [folder, "--json"]


@pytest.mark.slow  # heavy end-to-end run: the slow pass (.ci/run) keeps it
def test_quick_check_answers_as_typer_does(frames):
    for args in cases(frames):
        quick, full = run(["check", *args]), run(["check", *args], quick=False)
        assert quick_args(args) is not None, args  # the fast path was taken
        assert (quick.returncode, quick.stdout, quick.stderr) == (
            full.returncode,
            full.stdout,
            full.stderr,
        ), args
    text = LIGHTHOUSE.read_text()
    quick = run(["check", "-", "--json"], stdin=text)
    assert (
        quick.returncode == 0
        and quick.stdout == run(["check", "-", "--json"], quick=False, stdin=text).stdout
    )


def test_what_the_fast_path_does_not_read_goes_to_typer():
    for args in (
        ["check"],
        ["check", "--json"],
        ["check", str(LIGHTHOUSE), "--images", "0"],
        ["check", str(LIGHTHOUSE), "-n", "x"],
        ["check", str(LIGHTHOUSE), "--kind", "poem"],
        ["check", str(LIGHTHOUSE), "--colour"],
    ):
        quick, full = run(args), run(args, quick=False)
        assert quick.returncode == full.returncode == 2, (args, quick.stderr)
        assert (
            quick.stderr == full.stderr
            and quick.stderr.startswith("error: ")
            and quick.stderr.count("\n") == 1
        )


@pytest.mark.parametrize(
    ("args", "parsed"),
    [
        (["f.txt"], {"path": Path("f.txt"), "images": [], "n_images": None, "as_json": False}),
        (["-", "--json"], {"path": Path("-"), "as_json": True}),
        (["--images=12", "f", "a.png", "b.png"], {"n_images": 12, "images": [Path("a.png"), Path("b.png")]}),
        (["f", "-n", "3", "--kind", "cot", "--strict"], {"n_images": 3, "kind": "cot", "strict": True}),
    ],
)
def test_plain_arguments_are_read(args, parsed):
    got = quick_args(args)
    assert got is not None and {k: got[k] for k in parsed} == parsed


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--json"],
        ["f", "--help"],
        ["f", "-h"],
        ["--", "f"],
        ["f", "-n3"],
        ["f", "-n", "0"],
        ["f", "-n", "03"],
        ["f", "-n", "+3"],
        ["f", "-n", "٣"],  # a digit, but not one typer reads
        ["f", "--images"],
        ["f", "--kind", "poem"],
        ["f", "--json", "--json"],
        ["f", "--json=yes"],
        ["f", "--no-strict"],
        ["", "--json"],
        ["f", "-x.png"],
    ],
)
def test_anything_else_is_left_to_typer(args):
    assert quick_args(args) is None


def on_a_terminal(args: list[str], columns: int = 120) -> str:
    """What ``storyreasoning ARGS`` prints to a pseudo-terminal ``columns`` wide."""
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "xterm-256color"}
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE"):
        env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "storyreasoning", *args], stdout=follower, stderr=follower, env=env, cwd=ROOT
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=60) in (0, 2)
    return b"".join(chunks).decode("utf-8", "replace")


def without_styles(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_a_person_at_a_terminal_gets_rich_help_and_colours():
    shown = on_a_terminal(["--help"])
    assert "\x1b[" in shown
    shown = without_styles(shown)
    assert "╭─ Commands" in shown
    for name in COMMANDS:
        assert f"│ {name} " in shown
    assert "╭─ Options" in without_styles(on_a_terminal(["check", "--help"]))
    error = on_a_terminal(["check", "missing.txt", "--json"])
    assert "\x1b[" in error and "missing.txt does not exist" in error  # "error:" in bold red
    forced = run(["--help"], env={"FORCE_COLOR": "1"})
    assert "╭─ Commands" in without_styles(
        forced.stdout
    )  # rich's own rule: FORCE_COLOR draws as on a terminal


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["tell-dataset", "data"],
            "error: Missing option '--out' / '-o'; see `storyreasoning tell-dataset --help`",
        ),
        (["train", "sft", "data", "--out", "o", "--bogus"], "error: No such option: --bogus"),
        (["evaluate", "run", "r", "extra"], "error: Got unexpected extra argument"),
        (["data", "convert", "x"], "error: Missing argument 'OUT'; see `storyreasoning data convert --help`"),
    ],
)
def test_typers_own_refusals_are_one_line_like_ours(args, says):
    """A missing option, an unknown flag, an extra argument: typer printed a usage line, a hint and the
    error (four lines to a pipe; a box at a terminal, wrapped over many lines when it is narrow)."""
    for quick in (True, False):
        piped = run(args, quick=quick)
        assert piped.returncode == 2 and piped.stderr.count("\n") == 1, piped.stderr
        assert piped.stderr.startswith(says), piped.stderr
    shown = without_styles(on_a_terminal(args, columns=40)).replace("\r", "")
    assert shown.count("\n") == 1 and shown.startswith(says), shown  # one line, however narrow


def test_ctrl_c_in_a_command_typer_runs_is_our_interrupted_line():
    """Ctrl-C while a command that typer runs waits (``check -n3 -`` reading its input: ``-n3`` is not the
    quick path's) ends as on the quick path: ``error: interrupted``, exit 130 (click said "Aborted!", 1)."""
    import signal
    import time

    from .conftest import signal_when

    process = subprocess.Popen(
        [sys.executable, "-m", "storyreasoning", "check", "-n3", "-"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    started = time.monotonic()
    # no output to wait for while it reads: give it time to import and block on its input
    said = signal_when(process, lambda: time.monotonic() - started > 4, signal.SIGINT, within=30,
                       failure="never ready")  # fmt: skip
    assert process.returncode == 130, said
    assert said.strip().splitlines()[-1] == "error: interrupted"
