"""What ``storyreasoning evaluate`` and ``evaluate compare`` do (the CLI only parses options)."""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from ..errors import UsageError
from ..files import write_json_atomic, write_text_atomic
from .plots import Painter
from .processes import BACKGROUND_NICE, batch_gc
from .report import (
    CONVENTIONS,
    HEADLINE,
    METRICS_FILE,
    Report,
    by_content,
    conventions,
    headline_cell,
    headline_rows,
    load_judge,
    load_report,
    mismatch_line,
    mismatches,
    write_report,
)
from .runs import RunOutputs, load_outputs
from .scoring import Pool, StoryJob, default_workers, score_jobs, summarize
from .settings import CompareSettings, EvaluateSettings


def build_jobs(
    run: RunOutputs, stories, *, limit: int | None = None
) -> tuple[Iterator[StoryJob], int, list[str]]:
    """The stories to score, read as they are consumed (missing outputs: ``candidate=None``; a run's
    texts are read when each story is scored), their number, and the run's ids unknown to the dataset."""
    all_ids = stories.ids()
    ids = all_ids[:limit] if limit is not None else all_ids
    unknown = sorted(set(run.outputs) - set(all_ids))
    if run.outputs and not set(run.outputs) & set(ids):
        raise UsageError(
            f"none of the {len(run.outputs)} story ids in {run.path} are in {stories.source}"
            f"{' split ' + stories.split if stories.split else ''}; check --dataset and --split"
        )

    def jobs() -> Iterator[StoryJob]:
        for index in range(len(ids)):
            sample = stories[index]
            yield StoryJob(
                sample.story_id,
                sample.output_text(),
                run.stored(sample.story_id),
                tuple(sample.frame_sizes()),
            )

    return jobs(), len(ids), unknown


def evaluate(settings: EvaluateSettings) -> int:
    """Score a run: Java first (it loads while the rest runs), then the stories (in worker
    processes for a large run), then each family's summary and the report."""
    from contextlib import ExitStack

    from rich.console import Console
    from rich.table import Table

    from ..data.identity import dataset_record
    from ..data.sources import load_stories
    from ..settings import check_record, write_record
    from ..tell.run import run_dataset
    from ..terminal import progress_bar

    s = settings
    dataset, split, limit, protocol = s.dataset, s.split, s.limit, s.protocol
    families = s.families()
    err = Console(stderr=True, highlight=False)
    out = _folder_for(s.out or s.run / "eval", "the report")  # said before Java starts and stories are scored
    check_record(type(s), out / "settings.json")  # another job's folder (a training's): not written over
    judge = load_judge(s.run) if s.run.is_dir() else None  # evaluate judge's scores join the headline
    with ExitStack() as stack:
        stack.enter_context(batch_gc())  # the run's objects live to its end: collect rarely (.processes)
        scorer = None
        if "language" in families:  # a missing scorer or Java is said before any reading; Java starts loading
            from .language import TextScorer

            scorer = stack.enter_context(TextScorer(s.language_backend))
        run = load_outputs(s.run)
        # forked before any thread starts, without the pipes to Java; it imports matplotlib
        # on the core this process leaves idle while it reads the dataset, and, like the
        # workers, below Java's priority, so that METEOR's start-up (the run's longest path) is
        # barely slowed by them
        java = scorer.pipes() if scorer is not None else []
        nice = BACKGROUND_NICE if java else 0
        painter = stack.enter_context(Painter(process=True, close_fds=java, nice=nice)) if s.plots else None
        source, split = run_dataset(run.manifest, dataset, split)
        stories = load_stories(source, split)
        jobs, total, unknown = build_jobs(run, stories, limit=limit)
        workers = s.workers or default_workers(total)
        # both forked before any thread starts; a painter of its own only beside workers (a large run)
        pool = stack.enter_context(Pool(workers, close_fds=java, nice=nice)) if workers > 1 else None
        with progress_bar(total, "scoring stories") as advance:
            items = score_jobs(
                jobs,
                families,
                protocol,
                pool=pool,
                progress=advance,
                tokenize=scorer is not None and scorer.backend == "python",
            )
        if pool is not None:
            pool.close()  # its workers' memory back before the summaries
        missing = sum(story_id not in run.outputs for story_id, _ in items)
        if unknown:
            err.print(
                f"[yellow]{len(unknown)} outputs name stories not in the dataset and are ignored "
                f"(first: {', '.join(unknown[:3])})[/yellow]"
            )
        if missing:
            rule = "excluded, as the original did" if protocol == "original" else "scored as empty outputs"
            err.print(f"[yellow]{missing} of {len(items)} stories have no output ({rule})[/yellow]")
        plots = out / "plots"
        results = summarize(
            items,
            families,
            protocol=protocol,
            language_backend=s.language_backend,
            text_scorer=scorer,
            on_family=lambda name: err.print(f"[dim]computing {name} metrics[/dim]"),
            # the plots that do not show the language metrics, drawn in the painter's process meanwhile
            on_others=(lambda done: painter.consistency(done, plots)) if painter else None,
            progress=progress_bar,  # the language metrics' steps, each a bar on a terminal
        )
        report = Report(
            run=run.describe(),
            # the source as given, split, and for a local dataset its resolved path and fingerprint
            dataset={**dataset_record(stories), "stories": len(items), "missing": missing},
            protocol=protocol,
            results=results,
            story_ids=[story_id for story_id, _ in items],
            judge=judge,
        )
        written = write_report(report, out, plots=s.plots, painter=painter)
        write_record(s, out / "settings.json")
        if s.as_json:
            sys.stdout.write(json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n")
            return 0
        console = Console(highlight=False)
        rows = report.headline()
        console.print(_headline_table(rows, [report.run.get("label") or "value"], [rows]))
        outputs = report.outputs_line()
        if outputs:  # beside the rates: a partial run's are not a whole run's
            console.print(f"[yellow]{outputs}[/yellow]" if missing else f"[dim]{outputs}[/dim]")
        for row in rows:
            if row.get("note"):
                console.print(f"[dim]{row['label']}: {row['note']}[/dim]")
        signature = report.language_signature()
        if signature:  # a METEOR read here says whether Java METEOR 1.5 or the python backend made it
            console.print(f"language: {signature}", style="dim", markup=False)
        if s.show_all:
            for name, scores in results.items():
                table = Table(title=name.capitalize(), title_justify="left", show_edge=False)
                table.add_column("metric")
                table.add_column("value", justify="right")
                for key, value in scores.overall.items():
                    if _TERSE.match(key):  # per-pronoun rates: in metrics.md and the plot, not the terminal
                        continue
                    table.add_row(key, _cell(value))
                console.print(table)
        else:
            count = sum(len(scores.overall) for scores in results.values())
            console.print(f"[dim]{count} metrics in all: --all prints them; metrics.md has every one[/dim]")
        if s.plots:
            from .plots import empty_plots

            for note in empty_plots(results):
                console.print(f"[yellow]{note}[/yellow]")
        plots_written = f" and {len(written) - 3} plot{'s' if len(written) != 4 else ''}" if s.plots else ""
        console.print(f"wrote {', '.join(str(p) for p in written[:3])}{plots_written}")
        return 0


def _folder_for(out: Path, what: str) -> Path:
    """``out``, refused (one line) when a file is already there: the folder ``what`` is written to."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file, not a folder for {what}; give --out a folder (new or existing)")
    return out


def _headline_table(rows: list[dict], labels: list[str], each: list[list[dict]], marked=frozenset()):
    """The headline as a rich table: one column per evaluation, the reference's values beside them."""
    from rich.table import Table

    keys, label_of, reference = _headline_keys(each)
    table = Table(title="Headline", title_justify="left", show_edge=False)
    table.add_column("metric")
    for label in labels:
        table.add_column(label, justify="right")
    if any(v is not None for v in reference.values()):
        table.add_column("reference", justify="right", style="dim")
    for key in keys:
        cells = [_headline_value(rows_of, key) for rows_of in each]
        name = _marked(label_of[key], key, marked)
        extra = [reference[key]] if any(v is not None for v in reference.values()) else []
        table.add_row(name, *cells, *[v or "–" for v in extra])
    return table


def _marked(label: str, key: str, marked: frozenset[str]) -> str:
    """``label ≠`` when ``key``'s family is one the runs were scored differently for."""
    return f"{label} ≠" if key.split(".", 1)[0] in marked else label


def _headline_keys(each: list[list[dict]]) -> tuple[list[str], dict[str, str], dict[str, str | None]]:
    """The headline keys any evaluation has, in HEADLINE's order; their labels; the reference's value
    of each (the same in every evaluation, else "differs")."""
    present = {row["key"]: row for rows in each for row in rows}
    keys = [m.key for m in HEADLINE if m.key in present]
    reference: dict[str, str | None] = {}
    for key in keys:
        values = {
            headline_cell(row, "reference")
            for rows in each
            for row in rows
            if row["key"] == key and row["reference"] is not None
        }
        reference[key] = values.pop() if len(values) == 1 else ("differs" if values else None)
    return keys, {key: present[key]["label"] for key in keys}, reference


def _headline_value(rows: list[dict], key: str) -> str:
    row = next((r for r in rows if r["key"] == key), None)
    return "–" if row is None else headline_cell(row)


_TERSE = re.compile(r"pronoun_grounding_(char|any)_[a-z]+$")


def _finite(value):
    """A metric as compare shows and writes it: a number, else None (NaN, infinity or text in a damaged
    report would print as ``nan`` and make compare.json invalid JSON)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _judge_of(path: Path, report: dict) -> dict | None:
    """The judge summary of an evaluated run: beside the folder given, else in the run the report names."""
    path = Path(path)
    folders = [path] if path.is_dir() else []
    if path.is_file() or (path / METRICS_FILE).is_file():  # a report file or folder: its run is above it
        folders.append((path.parent if path.is_file() else path).parent)
    recorded = (report.get("run") or {}).get("path")
    if recorded:
        folders.append(Path(recorded))
    for folder in folders:
        judge = load_judge(folder)
        if judge is not None:
            return judge
    return None


def _labels(reports: list[dict], paths: list[Path]) -> list[str]:
    """What each evaluated run is called: its run's label; the folders given when two share one."""
    labels = [(r.get("run") or {}).get("label") or Path(p).name for r, p in zip(reports, paths, strict=True)]
    if len(set(labels)) == len(labels):
        return labels
    given = [Path(p).parent.name if Path(p).name in ("eval", METRICS_FILE) else Path(p).name for p in paths]
    if len(set(given)) == len(given):
        return given
    return [f"{label} #{i}" for i, label in enumerate(labels, 1)]


def compare(settings: CompareSettings) -> int:
    """Evaluated runs side by side, once they are known to be scored the same way: the headline
    first, every metric with ``--all`` (or those of ``--metrics``); with ``--out``, compare.md,
    compare.json and a bar plot."""
    from rich.console import Console
    from rich.table import Table

    paths = list(settings.runs)
    if len(paths) < 2:
        raise UsageError("give at least two evaluated runs to compare")
    if settings.out is not None:
        _folder_for(settings.out, "the comparison")
    reports = [load_report(path) for path in paths]
    judges = [_judge_of(path, report) for path, report in zip(paths, reports, strict=True)]
    labels = _labels(reports, paths)
    each = by_content(
        reports, [conventions(report, judge) for report, judge in zip(reports, judges, strict=True)]
    )
    found = mismatches(labels, each)
    err = Console(stderr=True, highlight=False)
    if found and not settings.allow_mismatch:
        raise UsageError(
            f"these runs were not scored the same way ({mismatch_line(found)}); their numbers are not "
            "comparable: evaluate them alike, or pass --allow-mismatch to compare them with the rows this "
            "affects marked"
        )
    marked = frozenset(family for name in found for family in CONVENTIONS[name])
    if found:
        err.print(
            f"[bold red]NOT SCORED THE SAME WAY: {mismatch_line(found)}; rows marked ≠ are not comparable[/]"
        )
    keys: list[str] = []
    flat = []
    for r in reports:
        values = {}
        for family, data in r.get("metrics", {}).items():
            for key, value in data.get("overall", {}).items():
                name = f"{family}.{key}"
                values[name] = _finite(value)
                if name not in keys:
                    keys.append(name)
        flat.append(values)
    if settings.metrics:
        wanted = [m.strip() for m in settings.metrics.split(",") if m.strip()]
        keys = [k for k in keys if any(k == w or k.startswith(w + ".") for w in wanted)]
        if not keys:
            raise UsageError(
                f"no metric matches --metrics {settings.metrics!r}; names look like grounding.f1_micro"
            )
    heads = [headline_rows(report, judge) for report, judge in zip(reports, judges, strict=True)]
    console = Console(highlight=False)
    console.print(_headline_table([], labels, heads, marked))

    def mark(key: str) -> str:
        return _marked(key, key, marked)

    if settings.show_all or settings.metrics:
        table = Table(
            title="All metrics" if not settings.metrics else "Metrics", title_justify="left", show_edge=False
        )
        table.add_column("metric")
        for label in labels:
            table.add_column(label, justify="right")
        for key in keys:
            table.add_row(mark(key), *(_cell(values.get(key)) for values in flat))
        console.print(table)
    else:
        console.print(f"[dim]{len(keys)} metrics in all: --all prints them[/dim]")
    if found:
        console.print(f"[bold red]≠ not comparable: {mismatch_line(found)}[/]")
    if settings.out is None:
        return 0
    out = settings.out
    head_keys, head_labels, reference = _headline_keys(heads)
    with_reference = any(v is not None for v in reference.values())
    md = ["# Runs compared", "", "| metric | " + " | ".join(labels) + " |" + (" reference |" if with_reference else ""),
          "|---|" + "---|" * (len(labels) + with_reference)]  # fmt: skip
    for key in head_keys:
        cells = [_headline_value(rows, key) for rows in heads] + (
            [reference[key] or "–"] if with_reference else []
        )
        md.append(f"| {_marked(head_labels[key], key, marked)} | " + " | ".join(cells) + " |")
    if found:
        md += ["", f"**Not scored the same way** (rows marked ≠ are not comparable): {mismatch_line(found)}"]
    md += [
        "",
        "## All metrics",
        "",
        "| metric | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
    ]
    md += [f"| {mark(key)} | " + " | ".join(_cell(values.get(key)) for values in flat) + " |" for key in keys]
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "compare.md", "\n".join(md) + "\n")
    write_json_atomic(
        out / "compare.json",
        {
            "runs": labels,
            "paths": [str(p) for p in paths],
            "headline": {
                key: {
                    "label": head_labels[key],
                    "values": [next((r for r in rows if r["key"] == key), {}).get("value") for rows in heads],
                    "low": [next((r for r in rows if r["key"] == key), {}).get("low") for rows in heads],
                    "high": [next((r for r in rows if r["key"] == key), {}).get("high") for rows in heads],
                }
                for key in head_keys
            },
            "conventions": dict(zip(labels, each, strict=True)),
            "mismatches": found,
            "metrics": {k: [v.get(k) for v in flat] for k in keys},
        },
    )
    from .plots import compare_plot

    plot = compare_plot(labels, keys, flat, out / "compare.png")
    if plot is None:
        (out / "compare.png").unlink(missing_ok=True)  # an earlier comparison's, not this one's
        console.print("[yellow]no data for compare.png: no metric compared is a rate any run has[/yellow]")
    console.print(f"wrote {out / 'compare.md'}, {out / 'compare.json'}" + (f" and {plot}" if plot else ""))
    return 0
