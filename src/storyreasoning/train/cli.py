"""The ``storyreasoning train`` command group: sft, pairs, dpo, grpo, plan, push (options from
:mod:`.settings`, declared as :class:`~storyreasoning.settings.Command` records, ``JOBS``) and merge."""

from __future__ import annotations

from pathlib import Path

import typer

from ..settings import Command, given_path
from .plan import RecipePlanSettings
from .push import PushSettings
from .settings import DPOSettings, GRPOSettings, PairsSettings, SFTSettings

_MODULE = "storyreasoning.train.commands"

GROUP = "train"
HELP = (
    "Train storytellers: supervised fine-tuning, reward-ranked preference pairs, DPO, online RL (GRPO), "
    "adapter merging."
)

JOBS = (
    Command(
        "sft", SFTSettings, f"{_MODULE}:sft",
        help="""Supervised fine-tuning on a StoryReasoning dataset (resumable; writes a model tell can load).

        Writes settings.json, fit.json, log.jsonl, checkpoints/ and final/ in --out. Run the same
        command again after a crash or Ctrl-C: it resumes from the newest whole checkpoint. A recipe
        file gives the settings: storyreasoning train sft --config recipes/qwenstoryteller-sft.yaml
        """,
    ),
    Command(
        "pairs", PairsSettings, f"{_MODULE}:pairs",
        help="""Preference pairs for DPO: score each story's candidates with the reward, best against worst.

        Writes settings.json first, then pairs.jsonl and stories.jsonl story by story (run the same command
        again after a crash or Ctrl-C: it goes on from the next story), and manifest.json last. The reward (structure gate, then
        re-identification with a cross-group penalty and grounding; boxes optional) is described in
        the README, Training.
        """,
    ),
    Command(
        "dpo", DPOSettings, f"{_MODULE}:dpo",
        help="""Contrastive preference training (DPO) on reward-ranked pairs, as QwenStoryteller2 (resumable).

        Defaults are QwenStoryteller2's: LoRA rank 2048, alpha 4096, lr 5e-6, batch 8, 3 epochs, beta 0.1.
        """,
    ),
    Command(
        "grpo", GRPOSettings, f"{_MODULE}:grpo",
        help="""Online RL (GRPO): the model tells each story a group of times and learns from the storytelling reward.

        Prompts are the stories of DATASETS (mixed by --mix as train dpo mixes pairs folders); each
        completion is scored by the reward of train pairs (structure gate, re-identification,
        grounding) in --reward-workers processes, each component logged in log.jsonl. Resumable,
        like sft and dpo. A recipe: storyreasoning train grpo --config recipes/qwenstoryteller-grpo.yaml
        """,
    ),
    Command(
        "plan", RecipePlanSettings, "storyreasoning.train.plan:run",
        help="""Peak memory per GPU of a training, story by story, from the model's config alone (no weights).

        Counts a dataset's stories as training does (or plans one --max-length) and says which fit
        --gpu-memory, and what to change when they do not. --json gives the plan with a fits verdict;
        the exit status is 0 when everything fits, 1 otherwise. Terms: README, Planning memory.
        A recipe of train sft, dpo or grpo is a config: storyreasoning train plan --config
        recipes/qwenstoryteller2-dpo.yaml plans that training (its lr, epochs, ... are not used).
        """,
    ),




    Command(
        "push", PushSettings, "storyreasoning.train.push:push", config=False,
        help="""Upload a trained model to the Hugging Face Hub with a model card written from its record.

        FOLDER is a training folder (its final/ goes up), a final/ folder or a merged folder. The card
        (README.md) gives the base model, the data, the resolved settings, the run's metrics, the
        story checks, an evaluation (--eval) and the license; --dry-run writes it and lists the files.
        """,
    ),
)  # fmt: skip


def register(root) -> None:
    app = typer.Typer(help=HELP, no_args_is_help=True)
    for job in JOBS:
        job.add(app)
        if job.name == "plan":  # merge, a plain typer command, after plan as before
            app.command("merge")(merge)
    root.add_typer(app, name=GROUP)


def merge(
    adapter: Path = typer.Argument(
        ...,
        help="A LoRA adapter folder (train sft's final/).",
        show_default=False,
        metavar="ADAPTER",
        parser=lambda text: given_path(text, "ADAPTER"),
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Folder for the merged model.",
        show_default=False,
        parser=lambda text: given_path(text, "--out"),
    ),
    base: str | None = typer.Option(
        None, "--base", help="Base model (default: the one the adapter names).", show_default=False
    ),
    dtype: str = typer.Option(
        "bfloat16",
        "--dtype",
        help="Saved dtype: bfloat16, float16, float32, or auto (the base checkpoint's own).",
    ),
) -> None:
    """Merge a LoRA adapter into its base model: one folder that tell, serve and vLLM load.

    The merge is computed in float32 and saved in --dtype (bfloat16 by default); the
    folder's storyreasoning.json says which.
    """
    from .commands import merge as run

    raise typer.Exit(run(adapter, out, base=base, dtype=dtype))
