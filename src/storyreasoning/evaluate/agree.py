"""How far two judges agree, or a judge and people: ``storyreasoning evaluate agree A B``.

A and B are each a judge's result (``judgements.jsonl``, the folder that holds it, or a
run folder whose ``judge/`` holds it, as ``evaluate judge`` writes them) or a file of
labels (CSV or JSONL: a ``story_id`` column and one column per metric, e.g. people's
scores). For each metric, over the stories both rated:

* the number of stories ``n`` and each side's mean;
* Cohen's kappa with quadratic weights: for the 1-5 scores on the whole scale 1..5, for
  hallucination counts on 0..the largest count seen;
* Krippendorff's alpha, ordinal for the 1-5 scores and interval for the counts;
* Spearman's rank correlation (ties averaged);

each with a percentile-bootstrap interval over the stories (``--resamples``, seeded). A
judgement recorded as failed is no rating (it is counted and left out); so is an empty
cell. The statistics are :mod:`.stats`'.

The bootstrap resamples the n stories with replacement, drawn as what they amount to:
multinomial counts of n over the distinct (A, B) pairs of the metric (at most 25 for the
1-5 scores), with probabilities their shares. Each statistic is a function of that table,
so all resamples are computed at once (:func:`.stats.cohen_kappa_table` and its
siblings) instead of one call per resample. A resample where a statistic is undefined
(one side constant, no chance disagreement) is left out of the interval and counted in
``undefined_resamples``.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import UsageError, file_error, json_kind
from ..files import write_json_atomic
from .settings import AgreeSettings

JUDGEMENTS = "judgements.jsonl"  # what evaluate judge writes (evaluate.judge.JUDGEMENTS)
SCORES = ("creativity", "coherence", "grounding_quality")  # whole numbers 1..5
COUNTS = ("hallucinations",)  # whole numbers >= 0
METRICS = (*SCORES, *COUNTS)
DEFAULT_METRICS = ",".join(METRICS)
_OK = ("ok", "judged")


@dataclass
class Ratings:
    """One side's ratings: story id -> metric -> value (a metric it did not rate is absent)."""

    path: Path
    kind: str  # "judge" or "labels"
    values: dict[str, dict[str, float]] = field(default_factory=dict)
    failed: int = 0  # judgements recorded as failed (no rating)
    columns: set[str] = field(default_factory=set)  # metrics the source has at all


# -- reading ----------------------------------------------------------------------------------------


def locate(path: Path) -> Path:
    """The file a path given as A or B stands for: itself, its ``judgements.jsonl`` or its ``judge/judgements.jsonl``."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / JUDGEMENTS, path / "judge" / JUDGEMENTS):
            if candidate.is_file():
                return candidate
        raise UsageError(
            f"{path} holds no {JUDGEMENTS} (nor judge/{JUDGEMENTS}); give a judge's result folder "
            "(storyreasoning evaluate judge RUN writes RUN/judge) or a CSV/JSONL file of labels"
        )
    if not path.exists():
        raise UsageError(f"{path} does not exist; give a judge's result folder or a CSV/JSONL file of labels")
    if path.suffix.lower() not in (".csv", ".jsonl", ".json"):
        raise UsageError(
            f"{path} is neither CSV nor JSONL; give labels as .csv or .jsonl, or a judge's result folder"
        )
    return path


def _number(value: Any, metric: str, where: str) -> float | None:
    """A rating as a number (None when missing), checked against its metric's scale."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, list) and metric in COUNTS:
        return float(len(value))  # a judge's list of hallucinations
    try:
        number = math.nan if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        number = math.nan
    if metric in SCORES and number not in (1, 2, 3, 4, 5):
        raise UsageError(
            f"{where}: {metric} is {value!r}, not a whole number from 1 to 5; correct it or leave it empty"
        )
    if metric in COUNTS and not (math.isfinite(number) and number >= 0 and number == int(number)):
        raise UsageError(
            f"{where}: {metric} is {value!r}, not a whole number of 0 or more; correct it or leave it empty"
        )
    return number


def _add(ratings: Ratings, story_id: Any, row: dict[str, Any], where: str) -> None:
    if story_id is None or str(story_id).strip() == "":
        raise UsageError(f"{where} has no story_id; every rating needs the story it rates")
    values: dict[str, float] = {}
    for metric in METRICS:
        if metric in row:
            ratings.columns.add(metric)
            number = _number(row[metric], metric, where)
            if number is not None:
                values[metric] = number
    ratings.values[str(story_id).strip()] = values


def _read_jsonl(path: Path, ratings: Ratings) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise file_error(exc, "read the ratings file") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text; save it as UTF-8 JSON lines") from None
    lines = text.split("\n")
    failed: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            item = json.loads(line)
        except ValueError:
            if number == len(lines):
                continue  # a last line torn by a crash, or being written: not a rating yet
            raise UsageError(f"{where} is not JSON; correct or remove that line") from None
        if not isinstance(item, dict):
            raise UsageError(f"{where} is not a JSON object; each line must be one rating object")
        story_id = item.get("story_id")
        if "scores" in item or "status" in item:  # a judgement (evaluate judge)
            ratings.kind = "judge"
            if item.get("status") not in _OK:
                if str(story_id) not in ratings.values:
                    failed.add(str(story_id))
                continue
            scores = item.get("scores")
            if scores is not None and not isinstance(scores, dict):
                raise UsageError(
                    f"{where}: scores is {json_kind(scores)}, not an object of metric: rating; "
                    "correct or remove that line"
                )
            row = dict(scores or {})
            row["hallucinations"] = item.get("hallucinations")
            _add(ratings, story_id, row, where)
            failed.discard(str(story_id))  # judged on a later try: no longer a failure
        else:
            _add(ratings, story_id, item, where)
    ratings.failed = len(failed)


def _read_csv(path: Path, ratings: Ratings) -> None:
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            header = [name.strip() for name in reader.fieldnames or []]
            if "story_id" not in header:
                raise UsageError(
                    f"{path} has no story_id column (its header: {', '.join(header) or 'none'}); "
                    f"name the columns story_id, {', '.join(METRICS)}"
                )
            for number, row in enumerate(reader, start=2):
                row = {(k or "").strip(): v for k, v in row.items()}
                _add(ratings, row.get("story_id"), row, f"{path} line {number}")
    except OSError as exc:
        raise file_error(exc, "read the labels file") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text; save the CSV as UTF-8") from None


def read_ratings(path: Path) -> Ratings:
    """The ratings in a judge's result or a labels file (see the module's docstring)."""
    found = locate(path)
    ratings = Ratings(found, "labels")
    if found.suffix.lower() == ".csv":
        _read_csv(found, ratings)
    else:
        _read_jsonl(found, ratings)
    if not ratings.values and not ratings.failed:
        raise UsageError(f"{found} holds no ratings; give a judge's result or a labels file with rows")
    return ratings


# -- agreement --------------------------------------------------------------------------------------


def _bootstrap(
    statistics: dict[str, tuple[Callable[..., float], Callable[..., Any]]],
    a: list[float],
    b: list[float],
    *,
    confidence: float,
    resamples: int,
    seed: int,
) -> dict[str, dict[str, float | None]]:
    """Each statistic on the pairs, with a percentile-bootstrap interval over them (NaN resamples left out).

    ``statistics``: name -> (the statistic of the pairs, the same statistic of a pair table
    (:mod:`.stats`)). The resamples are drawn once as counts over the distinct (a, b) pairs;
    the table statistics compute all of them at once.
    """
    import numpy as np

    from .stats import bootstrap_table, pair_table

    out: dict[str, dict[str, float | None]] = {}
    wanted = []
    for name, (statistic, _) in statistics.items():
        value = statistic(a, b)
        out[name] = {"value": _plain(value), "low": None, "high": None}
        if not math.isnan(value):
            wanted.append(name)
    if resamples < 1 or len(a) < 2 or not wanted:
        return out
    x, y, counts = pair_table(a, b)
    tables = [statistics[name][1] for name in wanted]
    resampled = bootstrap_table(tables, x, y, counts, resamples=resamples, seed=seed)
    for name, draws in zip(wanted, resampled, strict=True):
        defined = draws[~np.isnan(draws)]
        if len(defined):
            tail = (1 - confidence) / 2
            low, high = np.quantile(defined, [tail, 1 - tail])
            out[name]["low"], out[name]["high"] = float(low), float(high)
        out[name]["undefined_resamples"] = len(draws) - len(defined)
    return out


def _kappa(a: Sequence[float], b: Sequence[float], *, labels: list[float]) -> float:
    from .stats import cohen_kappa

    return cohen_kappa(a, b, weights="quadratic", labels=labels)


def _alpha(a: Sequence[float], b: Sequence[float], *, level: str) -> float:
    import numpy as np

    from .stats import krippendorff_alpha

    return krippendorff_alpha(np.column_stack([a, b]), level=level)  # type: ignore[arg-type]


def _plain(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def agreement(
    a: Ratings,
    b: Ratings,
    metrics: list[str],
    *,
    confidence: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Per metric: n, the two means, quadratic kappa, alpha and Spearman with bootstrap intervals."""
    from .stats import cohen_kappa_table, krippendorff_alpha_table, spearman, spearman_table

    shared = [story for story in a.values if story in b.values]
    result: dict[str, Any] = {
        "a": {"path": str(a.path), "kind": a.kind, "rated": len(a.values), "failed": a.failed},
        "b": {"path": str(b.path), "kind": b.kind, "rated": len(b.values), "failed": b.failed},
        "shared_stories": len(shared),
        "only_in_a": len(a.values) - len(shared),
        "only_in_b": sum(story not in a.values for story in b.values),
        "confidence": confidence,
        "resamples": resamples,
        "seed": seed,
        "metrics": {},
    }
    for metric in metrics:
        pairs = [
            (a.values[s][metric], b.values[s][metric])
            for s in shared
            if metric in a.values[s] and metric in b.values[s]
        ]
        x = [p[0] for p in pairs]
        y = [p[1] for p in pairs]
        entry: dict[str, Any] = {"n": len(pairs)}
        if metric in SCORES:
            labels = [1.0, 2.0, 3.0, 4.0, 5.0]
            level = "ordinal"
        else:
            labels = [float(v) for v in range(int(max(x + y, default=0)) + 1)]
            level = "interval"
        entry["mean_a"] = sum(x) / len(x) if x else None
        entry["mean_b"] = sum(y) / len(y) if y else None
        entry["kappa_scale"] = [labels[0], labels[-1]]
        entry["alpha_level"] = level
        if not pairs:
            entry.update(kappa=None, alpha=None, spearman=None)
        else:
            statistics: dict[str, tuple[Callable[..., float], Callable[..., Any]]] = {
                "kappa": (
                    partial(_kappa, labels=labels),
                    partial(cohen_kappa_table, weights="quadratic", labels=labels),
                ),
                "alpha": (
                    partial(_alpha, level=level),
                    partial(krippendorff_alpha_table, level=level),  # type: ignore[arg-type]
                ),
                "spearman": (spearman, spearman_table),
            }
            entry.update(_bootstrap(statistics, x, y, confidence=confidence, resamples=resamples, seed=seed))
        result["metrics"][metric] = entry
    return result


# -- the command ------------------------------------------------------------------------------------


def parse_metrics(text: str) -> list[str]:
    wanted = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in METRICS]
    if unknown or not wanted:
        raise UsageError(
            f"unknown metric {', '.join(unknown) or '(none given)'} in --metrics; choose among {', '.join(METRICS)}"
        )
    return list(dict.fromkeys(wanted))


def _cell(stat: dict[str, Any] | None) -> str:
    if not stat or stat.get("value") is None:
        return "—"
    text = f"{stat['value']:.2f}"
    if stat.get("low") is not None:
        text += f"\n{stat['low']:.2f}–{stat['high']:.2f}"
    return text


def agree(settings: AgreeSettings) -> int:
    """The ``evaluate agree`` command: read both sides, compute, print a table (or JSON), write ``--out``."""
    from rich.console import Console
    from rich.table import Table

    metrics = parse_metrics(settings.metrics)
    if settings.out is not None and settings.out.is_dir():
        raise UsageError(
            f"--out {settings.out} is a folder; give a file path (for example {settings.out / 'agree.json'})"
        )
    a, b = read_ratings(settings.a), read_ratings(settings.b)
    err = Console(stderr=True, highlight=False)
    chosen = []
    for metric in metrics:
        lacking = [side.path for side in (a, b) if metric not in side.columns]
        if not lacking:
            chosen.append(metric)
        elif settings.metrics != DEFAULT_METRICS:
            raise UsageError(
                f"{lacking[0]} has no {metric} ratings; label it there, or leave it out of --metrics"
            )
        else:
            err.print(f"[dim]{metric}: left out, {lacking[0]} has no {metric} ratings[/dim]")
    if not chosen:
        raise UsageError(
            f"{a.path} and {b.path} rate no metric in common; give files that rate {', '.join(metrics)}"
        )
    result = agreement(
        a, b, chosen, confidence=settings.confidence, resamples=settings.resamples, seed=settings.seed
    )
    if result["shared_stories"] == 0:
        raise UsageError(
            f"{a.path} and {b.path} share no story id; give ratings of the same stories (same run, same story_id)"
        )
    if settings.out is not None:
        try:
            settings.out.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(settings.out, result, ensure_ascii=True)
        except OSError as exc:
            if exc.filename is not None and Path(exc.filename).parent == settings.out.parent:
                exc.filename = str(settings.out)  # not the temporary file it is written through
            raise file_error(exc, "write the agreement file") from None
    if settings.as_json:
        print(json.dumps(result, indent=2))
        return 0
    console = Console(highlight=False)
    percent = f"{settings.confidence:.0%}"
    table = Table(
        title=f"Agreement of A and B over {result['shared_stories']} stories (under each value: its {percent} interval)",
        title_justify="left",
        show_edge=False,
        show_lines=True,
    )
    for column in ("metric", "n", "mean A", "mean B", "kappa", "alpha", "Spearman"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for metric, entry in result["metrics"].items():
        table.add_row(
            metric,
            str(entry["n"]),
            "—" if entry["mean_a"] is None else f"{entry['mean_a']:.2f}",
            "—" if entry["mean_b"] is None else f"{entry['mean_b']:.2f}",
            _cell(entry["kappa"]),
            _cell(entry["alpha"]),
            _cell(entry["spearman"]),
        )
    console.print(table)
    for label, side in (("A", a), ("B", b)):
        failed = f", {side.failed} failed judgements left out" if side.failed else ""
        console.print(f"{label}: {side.path} ({side.kind}, {len(side.values)} stories rated{failed})")
    if result["only_in_a"] or result["only_in_b"]:
        console.print(
            f"stories rated by one side only: A {result['only_in_a']}, B {result['only_in_b']} (left out)"
        )
    console.print(
        "[dim]kappa: Cohen's, quadratic weights on the scale 1..5 (counts: 0..largest); alpha: Krippendorff's, "
        f"ordinal for scores, interval for counts; Spearman's rho, ties averaged; intervals: percentile bootstrap "
        f"over stories, {settings.resamples} resamples, seed {settings.seed}; — where undefined (one side constant)[/dim]"
    )
    return 0


__all__ = ["Ratings", "agree", "agreement", "locate", "parse_metrics", "read_ratings"]
