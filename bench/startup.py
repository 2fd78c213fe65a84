"""Start-up cost: ``import storyreasoning`` and the CLI, in fresh interpreters.

The package promises that importing it and asking the CLI for help stay well under a
second, because torch, transformers, cv2 and trl are imported only by the commands that
need them (``tests/test_light_imports.py`` proves which modules load; this script
measures the time). Each case runs ``--repeats`` times in a new Python process (the
cases in turn, round after round, so the machine's load falls on all alike); the
table shows the median and the fastest run, next to a bare ``python -c pass`` so the
interpreter's own start-up can be subtracted. The output is captured, as a script or a
pipe reads it: plain text, without rich. The ``(terminal: rich)`` case is what a person
at a terminal waits for (typer's rich panels), made to draw so with ``FORCE_COLOR=1``.

Targets on the 2-core machine (fastest run): ``check FILE --json`` 90 ms, ``--help`` 150 ms.
On a shared machine the fastest run is the one to read: the median measures the others' load.

Run::

    python bench/startup.py
    python bench/startup.py --repeats 5 --out bench/results/startup.json
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "outputs" / "lighthouse.txt"
DEFAULT_OUT = Path(__file__).parent / "results" / "startup.json"

CASES: dict[str, list[str]] = {
    "python -c pass (interpreter only)": ["-c", "pass"],
    "import storyreasoning": ["-c", "import storyreasoning"],
    "import storyreasoning.format": ["-c", "import storyreasoning.format"],
    "storyreasoning --help": ["-m", "storyreasoning", "--help"],
    "storyreasoning --help (terminal: rich)": ["-m", "storyreasoning", "--help"],
    "storyreasoning check --help": ["-m", "storyreasoning", "check", "--help"],
    "storyreasoning check lighthouse.txt --json": ["-m", "storyreasoning", "check", str(EXAMPLE), "--json"],
}
# A job command (its arguments read without typer, settings.run_quick) and the same through typer:
# evaluate compare on two small reports written in a temporary folder by main().
COMPARE = "storyreasoning evaluate compare A B"
COMPARE_TYPER = "storyreasoning evaluate compare A B (through typer)"
# The output is captured (a pipe), so the CLI prints plain text; FORCE_COLOR makes it draw as it
# does for a person at a terminal (typer's rich panels), rich's own rule.
PIPE = {"FORCE_COLOR": "", "TTY_COMPATIBLE": ""}
ENV: dict[str, dict[str, str]] = {"storyreasoning --help (terminal: rich)": {"FORCE_COLOR": "1"}}


def time_once(args: list[str], extra: dict[str, str] | None = None) -> float:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "0", **PIPE, **(extra or {})}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], capture_output=True, env=env, cwd=ROOT)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.decode()[-400:]}")
    return elapsed


def run(repeats: int) -> list[dict]:
    """Every case once per round, round after round, so a change in the machine's load falls on
    all the cases alike; the first round warms the file cache and writes .pyc files."""
    runs: dict[str, list[float]] = {name: [] for name in CASES}
    for round_ in range(repeats + 1):
        for name, args in CASES.items():
            elapsed = time_once(args, ENV.get(name))
            if round_:
                runs[name].append(elapsed)
    return [
        {
            "case": name,
            "median_ms": statistics.median(times) * 1e3,
            "min_ms": min(times) * 1e3,
            "runs_ms": [t * 1e3 for t in times],
        }
        for name, times in runs.items()
    ]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--repeats", type=int, default=10, help="runs per case after one warm-up round (default 10)"
    )
    ap.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="JSON results (default bench/results/startup.json)"
    )
    args = ap.parse_args(argv)

    import tempfile

    from storyreasoning.testing.reports import write_compare_reports

    with tempfile.TemporaryDirectory() as tmp:
        compare = ["evaluate", "compare", *write_compare_reports(tmp)]
        CASES[COMPARE] = ["-m", "storyreasoning", *compare]
        CASES[COMPARE_TYPER] = ["-c", f"from storyreasoning.cli import main; main({compare!r}, quick=False)"]
        return _report(args, argv)


def _report(args: argparse.Namespace, argv: list[str]) -> int:
    from rich.console import Console
    from rich.table import Table

    rows = run(args.repeats)
    table = Table(title=f"Start-up time, fresh interpreter, {args.repeats} runs each")
    for column in ("case", "median ms", "min ms"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for row in rows:
        table.add_row(row["case"], f"{row['median_ms']:.0f}", f"{row['min_ms']:.0f}")
    console = Console()
    console.print(table)
    meta = {
        "benchmark": "startup",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "repeats": args.repeats,
        "command": " ".join(["python", "bench/startup.py", *argv]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"metadata": meta, "rows": rows}, indent=2) + "\n")
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
