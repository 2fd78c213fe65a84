"""Two tiny evaluation reports (``metrics.json``), as ``storyreasoning evaluate compare`` reads them:
for start-up measurements and tests of the compare command's own path."""

from __future__ import annotations

import json
from pathlib import Path


def write_compare_reports(root: str | Path) -> list[str]:
    """Write runs ``a`` (grounding F1 0.5) and ``b`` (0.25) under ``root``, each a folder holding a
    ``metrics.json``; the two folders, for ``evaluate compare``."""
    folders = []
    for name, f1 in (("a", 0.5), ("b", 0.25)):
        folder = Path(root) / name
        folder.mkdir(parents=True, exist_ok=True)
        report = {
            "run": {"label": name},
            "dataset": {"source": "d", "split": "test"},
            "metrics": {"grounding": {"overall": {"f1_micro": f1}}},
        }
        (folder / "metrics.json").write_text(json.dumps(report), encoding="utf-8")
        folders.append(str(folder))
    return folders
