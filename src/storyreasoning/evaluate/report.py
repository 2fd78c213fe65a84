"""Evaluating a run against a dataset and writing the report.

:func:`evaluate_pairs` runs the chosen metric families; :func:`write_report` writes

    metrics.json     every overall number, the conventions behind it, the run and dataset
    metrics.md       the same as markdown tables (ready for a paper's appendix or a PR)
    per_story.csv    one row per story id, one column per per-story number
    plots/*.png      metric bars, persistence distribution, per-pronoun grounding

:func:`compare` puts several evaluated runs side by side (a markdown table and a plot).
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import UsageError
from .pairs import Scores, StoryPair

FAMILIES = ("grounding", "identity", "consistency", "language")
METRICS_FILE = "metrics.json"


def parse_families(text: str | None) -> tuple[str, ...]:
    """``"grounding,identity"`` → the families, in the canonical order; None or "all" → all."""
    if text is None or text.strip().lower() == "all":
        return FAMILIES
    chosen = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [name for name in chosen if name not in FAMILIES]
    if unknown or not chosen:
        raise UsageError(
            f"unknown metric famil{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown) or repr(text)}; "
            f"choose from {', '.join(FAMILIES)} (comma-separated) or all"
        )
    return tuple(name for name in FAMILIES if name in chosen)


def evaluate_pairs(
    pairs: list[StoryPair],
    families: Iterable[str] = FAMILIES,
    *,
    protocol: str = "default",
    language_backend: str = "auto",
    on_family: Callable[[str], None] | None = None,
) -> dict[str, Scores]:
    """Run each metric family over ``pairs`` (parsed); :mod:`.scoring` does the same on raw texts, in workers."""
    from .scoring import story_parts, summarize

    families = tuple(families)
    items = [(pair.story_id, story_parts(pair, families, protocol)) for pair in pairs]
    return summarize(
        items, families, protocol=protocol, language_backend=language_backend, on_family=on_family
    )


@dataclass
class Report:
    """An evaluation: the run, the dataset, the protocol and each family's scores."""

    run: dict
    dataset: dict
    protocol: str
    results: dict[str, Scores]
    story_ids: list[str] = field(default_factory=list)
    created: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )

    def to_dict(self) -> dict:
        return {
            "storyreasoning": __version__,
            "created": self.created,
            "run": self.run,
            "dataset": self.dataset,
            "protocol": self.protocol,
            "stories": len(self.story_ids),
            "metrics": {
                name: {k: v for k, v in s.to_dict().items() if k != "per_story"}
                for name, s in self.results.items()
            },
        }

    def flat(self) -> dict[str, float | None]:
        """``family.metric -> value`` over every family (what compare tables show)."""
        return {
            f"{name}.{key}": value for name, s in self.results.items() for key, value in s.overall.items()
        }


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.4f}"
    return str(value)


def markdown(report: Report) -> str:
    """The report as markdown: one table per family, then its conventions."""
    run = report.run
    lines = [
        f"# Evaluation of {run.get('label', run.get('path', 'a run'))}",
        "",
        f"- run: `{run.get('path')}` ({run.get('outputs', 0)} outputs, {run.get('failed', 0)} failed)",
        f"- dataset: `{report.dataset.get('source')}`, "
        + (f"split `{report.dataset['split']}`, " if report.dataset.get("split") else "all splits, ")
        + f"{len(report.story_ids)} stories",
        f"- protocol: `{report.protocol}`",
        f"- storyreasoning {__version__}, {report.created}",
    ]
    teller = run.get("teller") or {}
    if teller:
        lines.append(
            f"- teller: {', '.join(f'{k}={v}' for k, v in teller.items() if not isinstance(v, dict))}"
        )
    for name, scores in report.results.items():
        lines += ["", f"## {name.capitalize()}", "", "| metric | value |", "|---|---|"]
        lines += [f"| {key} | {_fmt(value)} |" for key, value in scores.overall.items()]
        signature = scores.extra.get("signature") if isinstance(scores.extra, dict) else None
        if signature:
            lines += ["", f"Signature: `{signature}`"]
        if scores.conventions:
            lines += [""] + [f"- {rule}" for rule in scores.conventions]
    return "\n".join(lines) + "\n"


def per_story_rows(report: Report) -> tuple[list[str], list[dict]]:
    columns = {"story_id": None}  # a dict: ordered, and a key's membership costs nothing
    for name, scores in report.results.items():
        for row in scores.per_story.values():
            for key in row:
                columns.setdefault(f"{name}.{key}")
    rows = []
    for sid in report.story_ids:
        row: dict = {"story_id": sid}
        for name, scores in report.results.items():
            for key, value in scores.per_story.get(sid, {}).items():
                row[f"{name}.{key}"] = "" if value is None else value
        rows.append(row)
    return list(columns), rows


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(report: Report, out: Path, *, plots: bool = True, painter=None) -> list[Path]:
    """Write metrics.json, metrics.md, per_story.csv and the plots into ``out``; the paths written.

    ``painter``: a :class:`.plots.Painter` that may hold plots drawn (or being drawn)
    already; metrics.png is started first, so a painter in a process of its own draws it
    while the files are written.
    """
    out.mkdir(parents=True, exist_ok=True)
    if plots:
        from .plots import Painter

        painter = painter or Painter()
        painter.metrics(report, out / "plots")
        painter.consistency(report.results, out / "plots")
    written = []
    path = out / METRICS_FILE
    _atomic_write(path, json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n")
    written.append(path)
    path = out / "metrics.md"
    _atomic_write(path, markdown(report))
    written.append(path)
    columns, rows = per_story_rows(report)
    path = out / "per_story.csv"
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    written.append(path)
    if plots:
        written += painter.paths()
    return written


def load_report(path: str | Path) -> dict:
    """A written ``metrics.json``: ``path`` is the file, its folder, or a run folder holding ``eval/``."""
    path = Path(path)
    for candidate in (path, path / METRICS_FILE, path / "eval" / METRICS_FILE):
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise UsageError(
                    f"{candidate} is not valid JSON ({exc.msg}); evaluate the run again"
                ) from None
    raise UsageError(
        f"no {METRICS_FILE} in {path}; evaluate it first: storyreasoning evaluate {path} --dataset …"
    )
