"""The ``storyreasoning evaluate`` command group: run (the default), compare, judge and agree.

Declared as :class:`~storyreasoning.settings.Command` records (``JOBS``), which plain
arguments run without typer; :func:`register` gives them to typer.
"""

from __future__ import annotations

from ..settings import Command
from .settings import AgreeSettings, CompareSettings, EvaluateSettings, JudgeSettings

GROUP = "evaluate"
DEFAULT = "run"  # evaluate RUN … means evaluate run RUN …; evaluate compare … stays a subcommand

HELP = (
    "Score a run against its dataset (grounding, identity, consistency, language), "
    "compare evaluated runs, judge stories with a model, or measure how far judges agree.\n\n"
    "storyreasoning evaluate RUN --dataset SOURCE --split test   (same as: evaluate run RUN …)\n\n"
    "storyreasoning evaluate compare RUN1 RUN2 …\n\n"
    "storyreasoning evaluate judge RUN --endpoint URL [--against RUN_B]\n\n"
    "storyreasoning evaluate agree A B"
)

JOBS = (
    Command(
        "run", EvaluateSettings, "storyreasoning.evaluate.commands:evaluate",
        help="Score a run: writes metrics.json, metrics.md, per_story.csv, settings.json and plots/ (default "
        "RUN/eval).",
    ),
    Command(
        "compare", CompareSettings, "storyreasoning.evaluate.commands:compare",
        help="Evaluated runs side by side: the headline first (every metric with --all), after checking that "
        "they were scored the same way; compare.md, compare.json and compare.png with --out.",
    ),
    Command(
        "judge", JudgeSettings, "storyreasoning.evaluate.judge:judge_command",
        help="Judge each story with a multimodal model behind an OpenAI-compatible server: hallucinations "
        "(type, quote, frame, reason) and creativity, coherence and grounding quality from 1 to 5, with 95% "
        "intervals; judgements.jsonl (resumable) and summary.json in --out (default RUN/judge). With "
        "--against RUN_B: which run tells each story better, asked in both orders, and RUN's win rate.",
    ),
    Command(
        "agree", AgreeSettings, "storyreasoning.evaluate.agree:agree",
        help="How far two judges agree, or a judge and people's labels (CSV or JSONL): per metric Cohen's "
        "quadratic kappa, Krippendorff's alpha and Spearman, with bootstrap intervals.",
    ),
)  # fmt: skip


def register(root) -> None:
    import typer
    from typer.core import TyperGroup

    class DefaultRun(TyperGroup):
        def parse_args(self, ctx, args):
            if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
                args = [DEFAULT, *args]
            return super().parse_args(ctx, args)

    app = typer.Typer(cls=DefaultRun, help=HELP, no_args_is_help=True)
    for job in JOBS:
        job.add(app)
    root.add_typer(app, name=GROUP)
