"""The ``storyreasoning evaluate`` command group: run (the default) and compare."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.core import TyperGroup

from ..settings import command
from .settings import AgreeSettings, EvaluateSettings


class _DefaultRun(TyperGroup):
    """``evaluate RUN …`` means ``evaluate run RUN …``; ``evaluate compare …`` stays a subcommand."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_DefaultRun,
    help=(
        "Score a run against its dataset (grounding, identity, consistency, language), "
        "or compare evaluated runs.\n\n"
        "storyreasoning evaluate RUN --dataset SOURCE --split test   (same as: evaluate run RUN …)\n\n"
        "storyreasoning evaluate compare RUN1 RUN2 …"
    ),
    no_args_is_help=True,
)

command(
    app, EvaluateSettings, "storyreasoning.evaluate.commands:evaluate", name="run",
    help="Score a run: writes metrics.json, metrics.md, per_story.csv, settings.json and plots/ (default RUN/eval).",
)  # fmt: skip


@app.command("compare")
def compare(
    runs: list[Path] = typer.Argument(
        ..., help="Evaluated runs (run folders holding eval/, or report folders).", show_default=False
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write compare.md, compare.json and compare.png here.", show_default=False
    ),
    metrics: str | None = typer.Option(
        None,
        "--metrics",
        help="Only these metrics or families, comma-separated (grounding, language.bleu_4, …).",
        show_default=False,
    ),
) -> None:
    """Evaluated runs side by side: one table (and a plot with --out)."""
    from .commands import compare as run

    raise typer.Exit(run(runs, out=out, metrics=metrics))


command(
    app, AgreeSettings, "storyreasoning.evaluate.agree:agree", name="agree",
    help="How far two judges agree, or a judge and people's labels (CSV or JSONL): per metric Cohen's "
    "quadratic kappa, Krippendorff's alpha and Spearman, with bootstrap intervals.",
)  # fmt: skip


def register(root) -> None:
    root.add_typer(app, name="evaluate")
