"""What ``storyreasoning evaluate`` and ``evaluate compare`` do (the CLI only parses options)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from ..errors import UsageError
from .plots import Painter
from .report import Report, load_report, write_report
from .runs import RunOutputs, load_outputs
from .scoring import Pool, StoryJob, default_workers, score_jobs, summarize
from .settings import EvaluateSettings


def build_jobs(
    run: RunOutputs, stories, *, limit: int | None = None
) -> tuple[Iterator[StoryJob], int, list[str]]:
    """The stories to score, read as they are consumed (missing outputs: ``candidate=None``), their
    number, and the run's ids unknown to the dataset."""
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
                run.outputs.get(sample.story_id),
                tuple(sample.frame_sizes()),
            )

    return jobs(), len(ids), unknown


def evaluate(settings: EvaluateSettings) -> int:
    """Score a run: Java first (it loads while the rest runs), then the stories (in worker
    processes for a large run), then each family's summary and the report."""
    from contextlib import ExitStack

    from rich.console import Console
    from rich.table import Table

    from ..data.sources import load_stories
    from ..settings import write_record
    from ..terminal import progress_bar

    s = settings
    dataset, split, limit, protocol = s.dataset, s.split, s.limit, s.protocol
    families = s.families()
    err = Console(stderr=True, highlight=False)
    with ExitStack() as stack:
        scorer = None
        if "language" in families:  # a missing scorer or Java is said before any reading; Java starts loading
            from .language import TextScorer

            scorer = stack.enter_context(TextScorer(s.language_backend))
        run = load_outputs(s.run)
        # forked before any thread starts, without the pipes to Java; it imports matplotlib
        # on the core this process leaves idle while it reads the dataset
        java = scorer.pipes() if scorer is not None else []
        painter = stack.enter_context(Painter(process=True, close_fds=java)) if s.plots else None
        recorded = run.manifest.get("dataset") or {}
        source = dataset or recorded.get("source")
        if not source:
            raise UsageError(
                "which dataset were these stories told from? give --dataset (for example daniel3303/StoryReasoning)"
            )
        if split is None:
            split = recorded.get("split") if not dataset or dataset == recorded.get("source") else None
        stories = load_stories(source, split)
        jobs, total, unknown = build_jobs(run, stories, limit=limit)
        workers = s.workers or default_workers(total)
        # both forked before any thread starts; a painter of its own only beside workers (a large run)
        pool = stack.enter_context(Pool(workers, close_fds=java)) if workers > 1 else None
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
            pool.close()
        missing = sum(story_id not in run.outputs for story_id, _ in items)
        if unknown:
            err.print(
                f"[yellow]{len(unknown)} outputs name stories not in the dataset and are ignored "
                f"(first: {', '.join(unknown[:3])})[/yellow]"
            )
        if missing:
            rule = "excluded, as the original did" if protocol == "original" else "scored as empty outputs"
            err.print(f"[yellow]{missing} of {len(items)} stories have no output ({rule})[/yellow]")
        out = s.out or run.path / "eval"
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
        )
        report = Report(
            run=run.describe(),
            dataset={
                "source": str(source),
                "split": stories.split,
                "stories": len(items),
                "missing": missing,
            },
            protocol=protocol,
            results=results,
            story_ids=[story_id for story_id, _ in items],
        )
        written = write_report(report, out, plots=s.plots, painter=painter)
        write_record(s, out / "settings.json")
        if s.as_json:
            sys.stdout.write(json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n")
            return 0
        console = Console(highlight=False)
        for name, scores in results.items():
            table = Table(title=name.capitalize(), title_justify="left", show_edge=False)
            table.add_column("metric")
            table.add_column("value", justify="right")
            for key, value in scores.overall.items():
                if _TERSE.match(key):  # per-pronoun rates: in metrics.md and the plot, not the terminal
                    continue
                table.add_row(key, _cell(value))
            console.print(table)
        console.print(f"wrote {', '.join(str(p) for p in written[:3])} and {len(written) - 3} plots")
        return 0


_TERSE = re.compile(r"pronoun_grounding_(char|any)_[a-z]+$")


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def compare(paths: list[Path], *, out: Path | None, metrics: str | None = None) -> int:
    """Evaluated runs side by side: one markdown table (printed and written) and a bar plot."""
    from rich.console import Console
    from rich.table import Table

    if len(paths) < 2:
        raise UsageError("give at least two evaluated runs to compare")
    reports = [load_report(path) for path in paths]
    labels = [r.get("run", {}).get("label") or Path(p).name for r, p in zip(reports, paths, strict=False)]
    protocols = {r.get("protocol") for r in reports}
    datasets = {(r.get("dataset", {}).get("source"), r.get("dataset", {}).get("split")) for r in reports}
    keys: list[str] = []
    flat = []
    for r in reports:
        values = {}
        for family, data in r.get("metrics", {}).items():
            for key, value in data.get("overall", {}).items():
                name = f"{family}.{key}"
                values[name] = value
                if name not in keys:
                    keys.append(name)
        flat.append(values)
    if metrics:
        wanted = [m.strip() for m in metrics.split(",") if m.strip()]
        keys = [k for k in keys if any(k == w or k.startswith(w + ".") for w in wanted)]
        if not keys:
            raise UsageError(f"no metric matches --metrics {metrics!r}; names look like grounding.f1_micro")
    console = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    if len(protocols) > 1:
        err.print(
            f"[yellow]these runs were evaluated with different protocols ({', '.join(map(str, protocols))})[/yellow]"
        )
    if len(datasets) > 1:
        err.print("[yellow]these runs were evaluated on different datasets or splits[/yellow]")
    table = Table(show_edge=False)
    table.add_column("metric")
    for label in labels:
        table.add_column(label, justify="right")
    for key in keys:
        table.add_row(key, *(_cell(values.get(key)) for values in flat))
    console.print(table)
    md = ["| metric | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    md += [f"| {key} | " + " | ".join(_cell(values.get(key)) for values in flat) + " |" for key in keys]
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.md").write_text("\n".join(md) + "\n", encoding="utf-8")
        (out / "compare.json").write_text(
            json.dumps(
                {
                    "runs": labels,
                    "paths": [str(p) for p in paths],
                    "metrics": {k: [v.get(k) for v in flat] for k in keys},
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
        from .plots import compare_plot

        plot = compare_plot(labels, keys, flat, out / "compare.png")
        console.print(
            f"wrote {out / 'compare.md'}, {out / 'compare.json'}" + (f" and {plot}" if plot else "")
        )
    return 0
