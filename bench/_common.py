"""What every benchmark writes with its rows: the machine, the versions and the exact command."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from pathlib import Path


def write_results(out: Path, benchmark: str, rows: list[dict], argv: list[str] | None, **extra) -> Path:
    """Write ``{"metadata": …, "rows": rows}`` to ``out`` (folders created) and return the path."""
    from storyreasoning import __version__
    from storyreasoning.format import COMPILED

    metadata = {
        "benchmark": benchmark,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "storyreasoning": __version__,
        "parser": "compiled with mypyc" if COMPILED else "pure Python",
        **extra,
        "command": f"python bench/{benchmark}.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"metadata": metadata, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    return out
