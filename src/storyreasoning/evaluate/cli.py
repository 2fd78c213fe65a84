"""The ``storyreasoning evaluate`` command group: run (the default), compare, judge and agree."""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from ..settings import command
from .settings import AgreeSettings, CompareSettings, EvaluateSettings, JudgeSettings


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
        "compare evaluated runs, judge stories with a model, or measure how far judges agree.\n\n"
        "storyreasoning evaluate RUN --dataset SOURCE --split test   (same as: evaluate run RUN …)\n\n"
        "storyreasoning evaluate compare RUN1 RUN2 …\n\n"
        "storyreasoning evaluate judge RUN --endpoint URL [--against RUN_B]\n\n"
        "storyreasoning evaluate agree A B"
    ),
    no_args_is_help=True,
)

command(
    app, EvaluateSettings, "storyreasoning.evaluate.commands:evaluate", name="run",
    help="Score a run: writes metrics.json, metrics.md, per_story.csv, settings.json and plots/ (default RUN/eval).",
)  # fmt: skip


command(
    app, CompareSettings, "storyreasoning.evaluate.commands:compare", name="compare",
    help="Evaluated runs side by side: the headline first (every metric with --all), after checking that "
    "they were scored the same way; compare.md, compare.json and compare.png with --out.",
)  # fmt: skip


command(
    app, JudgeSettings, "storyreasoning.evaluate.judge:judge_command", name="judge",
    help="Judge each story with a multimodal model behind an OpenAI-compatible server: hallucinations (type, "
    "quote, frame, reason) and creativity, coherence and grounding quality from 1 to 5, with 95% intervals; "
    "judgements.jsonl (resumable) and summary.json in --out (default RUN/judge). With --against RUN_B: "
    "which run tells each story better, asked in both orders, and RUN's win rate.",
)  # fmt: skip


command(
    app, AgreeSettings, "storyreasoning.evaluate.agree:agree", name="agree",
    help="How far two judges agree, or a judge and people's labels (CSV or JSONL): per metric Cohen's "
    "quadratic kappa, Krippendorff's alpha and Spearman, with bootstrap intervals.",
)  # fmt: skip


def register(root) -> None:
    root.add_typer(app, name="evaluate")
