"""The settings of the training jobs: one declaration each, shared where the jobs share them.

:class:`TrainingOptions` holds what every trainer takes (model and mode, LoRA,
optimisation, lengths and pixels, checkpoints, device); :class:`SFTSettings` and
:class:`DPOSettings` add their own data and objective. Each field is at once a
command-line option, a key of a ``--config`` recipe file and a key of the
``settings.json`` a training folder records (:mod:`storyreasoning.settings`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..data.messages import QWEN_MAX_PIXELS, QWEN_MIN_PIXELS, MessageOptions
from ..errors import UsageError
from ..format.prompts import Order
from ..settings import REQUIRED, SettingsError, argument, comma_items, option, record, validate

Mode = Literal["lora", "full", "language"]
MODES = ("lora", "full", "language")
DEFAULT_BASE = "Qwen/Qwen2.5-VL-7B-Instruct"
DEFAULT_START = "daniel3303/QwenStoryteller"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
#: TRL's DPO loss types (``DPOConfig.loss_type``, TRL 1.16).
DPO_LOSS_TYPES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot", "aot_unpaired",
    "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
)  # fmt: skip
#: The learning rates of the published recipes (section 5.1 of the reference).
DEFAULT_LR = {"lora": 2e-4, "full": 2e-5, "language": 2e-5}

MODEL = "Model and mode"
DATA = "Data"
OPTIM = "Optimisation"
SOURCE_HELP = (
    "A dataset: a hub id (daniel3303/StoryReasoning), a save_to_disk folder, parquet files or a folder of "
    "story folders (see README, Data)."
)


#: What a folder records of the dataset it reads: :func:`~storyreasoning.data.identity.dataset_record`.
DATASET = "dataset.json"


def recorded_dataset(path: Path, held: dict) -> dict | None:
    """The dataset a folder recorded: its ``dataset.json``; for a folder of an older version the source
    and split of its settings (``held``; build_pairs' own settings name a ``dataset``); None when they
    name none."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        found = None
    if not isinstance(found, dict):
        found = held.get("dataset")
    if not isinstance(found, dict):
        found = {"source": held.get("source"), "split": held.get("split")}
    return found if found.get("source") or found.get("path") else None


def folder_dataset_changes(
    path: Path, held: dict, dataset: dict, *, split_setting: bool = False,
    recorded: Callable[[], Iterable[str]] = tuple, ids: Callable[[], Iterable[str]] = tuple,
) -> list[str]:  # fmt: skip
    """How the dataset a job reads (``dataset``: its :func:`~storyreasoning.data.identity.dataset_record`)
    differs from the one its folder recorded (:func:`recorded_dataset` of ``path`` and the settings
    ``held``), as :func:`~storyreasoning.data.identity.dataset_changes` phrases; none when the folder
    names none. ``split_setting``: the split is a setting of the job, compared (and named) with the
    others, not here. ``recorded`` and ``ids`` as for ``dataset_changes`` (an older folder's stories)."""
    from ..data.identity import dataset_changes

    old = recorded_dataset(path, held)
    if old is None:
        return []
    if split_setting:
        old = {**old, "split": dataset.get("split")}
    return dataset_changes(old, dataset, recorded=recorded, ids=ids)


def dataset_now(source: str, split: str | None) -> dict:
    """What a training folder records of a dataset (:func:`~storyreasoning.data.identity.dataset_record`)
    without training on it, for a finished folder's check: a local dataset's ids and shard sizes are
    read (never an image), a hub id is taken as given (nothing fetched: its record says no more)."""
    from ..data.identity import dataset_record
    from ..data.sources import load_stories, local_dataset

    if local_dataset(source) is None:
        return {"source": source, "split": split}
    return dataset_record(load_stories(source, split))


#: The most differences a refusal to resume names (then "and N more").
SHOWN_CHANGES = 5


def shown_changes(changes: list[str]) -> str:
    """The differences a refusal to resume names: the first :data:`SHOWN_CHANGES`, then ``and N more``."""
    more = len(changes) - SHOWN_CHANGES
    return "; ".join(changes[:SHOWN_CHANGES]) + (f"; and {more} more" if more > 0 else "")


@dataclass(frozen=True, kw_only=True)
class TrainingOptions:
    """What every training job takes: its folder, the model, the mode, the optimiser, checkpoints, device."""

    out: Path = option(REQUIRED, "--out", "-o", help="Training folder (created; resumed when it exists).")
    model: str = option(
        DEFAULT_BASE, "--model", "-m", help="Base model: hub id or local folder.", panel=MODEL, place=True
    )
    revision: str | None = option(None, help="Hub revision of the model.", panel=MODEL)
    mode: Mode = option(
        "lora", panel=MODEL,
        help="lora: adapters on the language model's attention; full: every weight; language: all but the "
        "vision tower.",
    )  # fmt: skip
    rank: int = option(16, min=1, help="LoRA rank.", panel=MODEL)
    alpha: int | None = option(None, min=1, help="LoRA alpha (default twice the rank).", panel=MODEL)
    dropout: float = option(0.1, min=0.0, max=0.99, help="LoRA dropout.", panel=MODEL)
    targets: tuple[str, ...] = option(
        LORA_TARGETS, "--target", panel=MODEL,
        help="LoRA target module name, repeatable or comma-separated (default q_proj,k_proj,v_proj,o_proj; never the "
        "vision tower).",
    )  # fmt: skip
    max_length: int | None = option(
        32768, min=0, panel=DATA,
        help="Most tokens per example; longer stories lose trailing frames, longer pairs are skipped (0 = no limit).",
    )  # fmt: skip
    min_pixels: int = option(QWEN_MIN_PIXELS, min=1, help="Pixel budget per image, lower bound.", panel=DATA)
    max_pixels: int = option(QWEN_MAX_PIXELS, min=1, help="Pixel budget per image, upper bound.", panel=DATA)
    order: Order = option("images-first", help="Images before the prompt, or after it.", panel=DATA)
    epochs: float = option(3.0, above=0.0, help="Training epochs.", panel=OPTIM)
    max_steps: int | None = option(None, min=1, help="Stop after N optimiser steps (overrides --epochs).",
                                   panel=OPTIM)  # fmt: skip
    lr: float | None = option(
        None, above=0.0, help="Learning rate (default 2e-4 for lora, 2e-5 otherwise).", panel=OPTIM
    )
    batch_size: int = option(1, min=1, help="Examples per device batch.", panel=OPTIM)
    grad_accum: int = option(
        32, min=1, help="Batches per optimiser step.", panel=OPTIM, clears=("global_batch",)
    )
    warmup_ratio: float = option(0.03, min=0.0, max=0.99, help="Warm-up share of steps.", panel=OPTIM)
    weight_decay: float = option(0.01, min=0.0, help="Weight decay.", panel=OPTIM)
    gradient_checkpointing: bool = option(
        True, panel=OPTIM,
        help="Recompute activations in the backward pass: about a third more compute for a fraction of the "
        "memory (needed at 7B; --no-gradient-checkpointing for small models).",
    )  # fmt: skip
    global_batch: int | None = option(
        None, min=1, panel=OPTIM,
        help="Examples per optimiser step over all processes; --grad-accum follows from it and the number of "
        "processes (the published recipes' 64 and 8 whatever the number of GPUs).",
    )  # fmt: skip
    attn_implementation: str | None = option(
        None, panel=MODEL,
        help="Attention kernel: sdpa (transformers' default), flash_attention_2 (pip install flash-attn) or eager.",
    )  # fmt: skip
    liger: Literal["auto", "on", "off"] = option(
        "auto", panel=MODEL,
        help="Liger kernels (fused linear cross-entropy, RMSNorm, RoPE, SwiGLU): auto uses them on a CUDA GPU "
        "when liger-kernel is installed.",
    )  # fmt: skip
    save_steps: int = option(100, min=1, help="Checkpoint every N steps.", panel=OPTIM)
    save_total_limit: int | None = option(10, min=1, help="Checkpoints kept.", panel=OPTIM)
    logging_steps: int = option(10, min=1, help="Log every N steps.", panel=OPTIM)
    seed: int = option(0, help="Seed for prompts, shuffling and initialisation.", panel=OPTIM)
    dtype: str = option(
        "auto", panel=MODEL,
        help="Compute precision: auto (bfloat16 on a GPU that has it), bfloat16, float16 (LoRA only) or float32. "
        "Full and language training keep float32 master weights and compute in it under autocast.",
    )  # fmt: skip
    device: str = option(
        "auto", help="auto, cpu, cuda or mps (several GPUs: CUDA_VISIBLE_DEVICES).", panel=MODEL
    )
    dataloader_workers: int = option(0, min=0, help="Data loader worker processes.", panel=OPTIM)
    report_to: str = option(
        "none", panel="Monitoring",
        help="Where metrics go besides log.jsonl: none, tensorboard, wandb or a comma list (tensorboard,wandb); "
        "the integration must be installed.",
    )  # fmt: skip
    eval_every: int | None = option(
        None, min=1, panel="Monitoring",
        help="Every N steps, tell --eval-stories held-out stories (greedy) with the model being trained and log "
        "their well-structured rate, grounding F1 and link recall (off by default).",
    )  # fmt: skip
    eval_stories: int = option(4, min=1, help="Held-out stories each check tells.", panel="Monitoring")
    eval_split: str | None = option(
        None, help="Held-out split the checks tell (of --eval-dataset, or of the training dataset).",
        panel="Monitoring",
    )  # fmt: skip
    eval_dataset: str | None = option(
        None, help="Dataset the checks tell from (default: the training dataset's --eval-split).",
        panel="Monitoring", place=True,
    )  # fmt: skip
    eval_max_new_tokens: int = option(
        2048, min=1, panel="Monitoring",
        help="Most new tokens per told story (a telling cut short is not well-structured; eval_truncated counts them).",
    )  # fmt: skip

    def __post_init__(self) -> None:
        if self.max_length == 0:  # the command line's "no limit"
            object.__setattr__(self, "max_length", None)
        object.__setattr__(self, "targets", module_names(self.targets))
        check_settings(self)

    @property
    def lora_alpha(self) -> int:
        return self.alpha if self.alpha is not None else 2 * self.rank

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.mode]

    @property
    def messages(self) -> MessageOptions:
        """How a story becomes a training example under these settings."""
        return MessageOptions(min_pixels=self.min_pixels, max_pixels=self.max_pixels, order=self.order,
                              seed=self.seed)  # fmt: skip

    def resolved(self) -> dict:
        """The values that follow from others, recorded as they were used."""
        return {"alpha": self.lora_alpha, "lr": self.learning_rate}

    def to_dict(self) -> dict:
        return record(self)


def module_names(targets: Any) -> Any:
    """``--target`` as LoRA module names: a comma list split (``q_proj,k_proj`` on the command line or in a
    config file is two modules, as ``--mix`` reads its list), spaces stripped, empty items and repeats
    dropped; anything but text is left as it is, for :func:`~storyreasoning.settings.validate` to refuse."""
    items = (targets,) if isinstance(targets, str) else targets
    if not isinstance(items, (tuple, list)) or not all(isinstance(item, str) for item in items):
        return targets
    return tuple(dict.fromkeys(comma_items(items)))


def check_settings(settings: TrainingOptions) -> None:
    """The checks every job's settings share: each value as its option checks it (type, choices, bounds:
    :func:`~storyreasoning.settings.validate`), then the rules across settings, each one line naming
    them by flag (:class:`~storyreasoning.settings.SettingsError`)."""
    validate(settings)
    if not settings.targets:
        raise SettingsError("--target: LoRA needs at least one target module name", "targets")
    check_lengths(settings.max_length, settings.min_pixels, settings.max_pixels)
    if settings.global_batch is not None and settings.global_batch % settings.batch_size:
        raise SettingsError(
            f"--global-batch {settings.global_batch} is not a multiple of --batch-size {settings.batch_size}",
            "global_batch", "batch_size",
        )  # fmt: skip
    if settings.dtype == "float16" and settings.mode != "lora":
        raise SettingsError(
            f"--mode {settings.mode} in float16 is refused: float16 full training overflows and loses small "
            "updates; use --dtype bfloat16 (a GPU that has it) or --mode lora",
            "mode", "dtype",
        )  # fmt: skip


def check_lengths(max_length: int | None, min_pixels: int, max_pixels: int) -> None:
    """The length and pixel budget a training and its plan share: a story must fit, the budget be a range."""
    if max_length and max_length < 16:
        raise SettingsError(
            f"--max-length {max_length} is too small to hold any story; give at least 16 (0: no limit)",
            "max_length",
        )
    if min_pixels > max_pixels:
        raise SettingsError(
            f"--min-pixels {min_pixels} exceeds --max-pixels {max_pixels}; give a lower bound at most the upper",
            "min_pixels", "max_pixels",
        )  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class SFTSettings(TrainingOptions):
    """Supervised fine-tuning: a dataset's stories as chat examples, the answer learned."""

    source: str = argument(help=SOURCE_HELP, place=True)
    split: str | None = option("train", "--split", "-s", help="Split to train on.", panel=DATA)
    eval_split: str | None = option(None, help="Split to evaluate the loss on at each save.", panel=DATA)
    limit: int | None = option(None, min=1, help="Only the first N stories.", panel=DATA)
    max_images: int | None = option(None, min=1, help="Most frames per story.", panel=DATA)
    box_space: Literal["original", "model"] = option(
        "original", panel=DATA,
        help="Boxes in original pixels (published convention) or in the model's resized input.",
    )  # fmt: skip
    loss: Literal["assistant", "all"] = option(
        "assistant", panel=MODEL,
        help="assistant: learn only the answer (CoT and story); all: every non-vision token, as the original.",
    )  # fmt: skip

    @property
    def messages(self) -> MessageOptions:
        return MessageOptions(max_images=self.max_images, box_space=self.box_space, min_pixels=self.min_pixels,
                              max_pixels=self.max_pixels, order=self.order, seed=self.seed)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class DPOSettings(TrainingOptions):
    """Contrastive preference training on reward-ranked pairs, with QwenStoryteller2's defaults."""

    pairs: tuple[str, ...] = argument(
        help="Pairs folders (train pairs), real and contrastive.", metavar="PAIRS...", place=True
    )
    dataset: str | None = option(
        None,
        help="Dataset holding the pairs' frames (default: the one each pairs folder names).",
        panel=DATA,
        place=True,
    )
    model: str = option(
        DEFAULT_START, "--model", "-m", panel=MODEL, place=True,
        help="Model to improve: hub id or folder (a LoRA adapter must be merged first with train merge).",
    )  # fmt: skip
    rank: int = option(2048, min=1, help="LoRA rank (QwenStoryteller2: 2048).", panel=MODEL)
    dropout: float = option(0.05, min=0.0, max=0.99, help="LoRA dropout.", panel=MODEL)
    mix: tuple[str, ...] = option(
        (), "--mix", panel=DATA, metavar="NAME=W",
        help="Weight of a pairs folder (its name or path), repeatable or comma-separated: --mix real=2,synth=1 "
        "subsamples the folders to the largest set in that ratio (never repeating a pair); none (the default): "
        "every pair of every folder.",
    )  # fmt: skip
    eval_pairs: tuple[str, ...] = option(
        (), "--eval-pairs", panel=DATA, place=True,
        help="A pairs folder to evaluate on at each save (eval loss and rewards), repeatable.",
    )  # fmt: skip
    eval_fraction: float = option(
        0.0, min=0.0, max=0.5, panel=DATA,
        help="Share of each training folder's stories held out (by --seed) and evaluated on at each save.",
    )  # fmt: skip
    beta: float = option(0.1, above=0.0, help="DPO temperature β.", panel=OPTIM)
    loss_type: str = option(
        "sigmoid", panel=OPTIM,
        help="TRL's DPO loss type: sigmoid (the DPO paper's), ipo, hinge, robust, apo_zero, … (see TRL's DPOConfig).",
    )  # fmt: skip
    lr: float | None = option(5e-6, above=0.0, help="Learning rate.", panel=OPTIM)
    grad_accum: int = option(8, min=1, help="Batches per optimiser step.", panel=OPTIM)
    weight_decay: float = option(0.0, min=0.0, help="Weight decay.", panel=OPTIM)

    def __post_init__(self) -> None:
        if not self.pairs:
            raise UsageError("give at least one pairs folder (storyreasoning train pairs makes them)")
        super().__post_init__()
        if self.loss_type not in DPO_LOSS_TYPES:
            raise SettingsError(
                f"unknown DPO loss type {self.loss_type!r} (--loss-type); use one of {', '.join(DPO_LOSS_TYPES)}",
                "loss_type",
            )  # fmt: skip
        self.mix_weights()  # a malformed --mix fails before anything loads

    def mix_weights(self) -> dict[str, float] | None:
        """Each pairs folder (as given) to its ``--mix`` weight; None without ``--mix``."""
        return mix_weights(self.mix, self.pairs, "pairs folder")


def mix_weights(mix: tuple[str, ...], folders: tuple[str, ...], what: str) -> dict[str, float] | None:
    """Each of ``folders`` (as given) to its ``--mix NAME=W`` weight, by name or path; None without ``--mix``.

    ``what`` names the folders in the errors (``pairs folder``, ``dataset``).
    """
    if not mix or [m.strip().lower() for m in mix] == ["none"]:
        return None
    given: dict[str, float] = {}
    for item in comma_items(mix):
        name, sep, weight = item.rpartition("=")
        try:
            value = float(weight)
        except ValueError:
            value = -1.0
        if not sep or not name.strip() or not value >= 0:
            raise SettingsError(
                f"--mix takes NAME=WEIGHT with a weight of 0 or more (real=2,synth=1), got {item!r}", "mix"
            )
        given[name.strip().rstrip("/")] = value
    out: dict[str, float] = {}
    for folder in folders:
        names = [n for n in (folder.rstrip("/"), Path(folder).name) if n in given]
        if not names:
            raise SettingsError(
                f"--mix gives no weight to the {what} {folder}; name every one "
                f"({', '.join(Path(p).name + '=W' for p in folders)})",
                "mix",
            )
        out[folder] = given[names[0]]
    known = {n for folder in folders for n in (folder.rstrip("/"), Path(folder).name)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise SettingsError(
            f"--mix names {unknown[0]}, which is not one of the {what}s given; check the name", "mix"
        )
    if not any(out.values()):
        raise SettingsError(f"--mix gives every {what} a weight of 0; give one a positive weight", "mix")
    return out


@dataclass(frozen=True, kw_only=True)
class RewardOptions:
    """The storytelling reward's weights and gate: one declaration for train pairs and train grpo."""

    w_reid: float = option(
        1.0, min=0.0, panel="Reward",
        help="Weight of re-identification (identity F1 and cross-frame link F1 against the reference).",
    )  # fmt: skip
    w_grounding: float = option(
        1.0, min=0.0, panel="Reward",
        help="Weight of grounding (pronouns and names inside a <gdo> of their image; the reference's "
        "grounded characters grounded too).",
    )  # fmt: skip
    w_boxes: float = option(
        0.0, min=0.0, panel="Reward",
        help="Weight of box F1 against the reference at IoU 0.5 (not a component of the model card; off by default).",
    )  # fmt: skip
    cross_group: float = option(
        1.0, min=0.0, panel="Reward",
        help="Re-identification penalty per share of links joining frames of different groups (films, videos).",
    )  # fmt: skip
    reid_iou: float = option(
        0.3, min=0.01, max=1.0, panel="Reward",
        help="IoU at which output rows match reference rows for re-identification and grounding.",
    )  # fmt: skip
    gate: bool = option(
        True, panel="Reward",
        help="Structure gates the reward (--no-gate: a component, so ill-formed outputs can still score).",
    )  # fmt: skip

    def weights(self):
        """The reward's :class:`~storyreasoning.train.reward.RewardWeights` (a bad weight: one clear line)."""
        from .reward import RewardWeights

        try:
            return RewardWeights(reid=self.w_reid, grounding=self.w_grounding, boxes=self.w_boxes,
                                 cross_group=self.cross_group, reid_iou=self.reid_iou, gate=self.gate)  # fmt: skip
        except ValueError as exc:  # the weights' bounds are the options': what is left is their sum
            raise SettingsError(str(exc), "w_reid", "w_grounding", "w_boxes") from None


@dataclass(frozen=True, kw_only=True)
class PairsSettings(RewardOptions):
    """Reward-ranked preference pairs from runs of candidates."""

    source: str = argument(help=SOURCE_HELP, place=True)
    runs: tuple[Path, ...] = option(
        (), "--run", "-r",
        help="A run to take candidates from (tell-dataset folder or folder of {story_id}.txt), repeatable.",
    )  # fmt: skip
    out: Path = option(REQUIRED, "--out", "-o", help="Pairs folder to write.")
    split: str | None = option(None, "--split", "-s", help="Split to read (all when omitted).")
    limit: int | None = option(None, min=1, help="Only the first N stories.")
    include_reference: bool = option(False, help="The dataset's own output is one more candidate.")
    min_margin: float = option(
        0.05, min=0.0, help="Skip stories whose best and worst rewards differ by less."
    )
    pairs_per_story: int = option(
        1,
        min=1,
        help="Pairs per story: the best candidate against each of the N worst (each above the margin).",
    )
    rejected: Literal["any", "well-structured"] = option(
        "any", help="Draw the rejected answer from any candidate, or only from well-structured ones."
    )


REWARD = "Reward"
JUDGE = "Judge reward"
ONLINE = "Online RL"
VLLM = "vLLM"


@dataclass(frozen=True, kw_only=True)
class GRPOSettings(TrainingOptions, RewardOptions):
    """Online RL (GRPO): the model tells each prompt's story a group of times and learns from the reward."""

    sources: tuple[str, ...] = argument(
        help="Datasets whose stories are the prompts (real stories, contrastive sequences): hub ids, save_to_disk "
        "folders, parquet files or folders of story folders.",
        metavar="DATASETS...", place=True,
    )  # fmt: skip
    split: str | None = option(
        "train", "--split", "-s", help="Split of each dataset to train on.", panel=DATA
    )
    limit: int | None = option(None, min=1, help="Only the first N stories of each dataset.", panel=DATA)
    mix: tuple[str, ...] = option(
        (), "--mix", panel=DATA, metavar="NAME=W",
        help="Weight of a dataset (its name or path), repeatable or comma-separated: --mix real=2,synth=1 "
        "subsamples the datasets to the largest set in that ratio (as train dpo mixes pairs folders); none: "
        "every story of every dataset.",
    )  # fmt: skip
    model: str = option(
        DEFAULT_START, "--model", "-m", panel=MODEL, place=True,
        help="Model to improve: hub id or folder (a LoRA adapter must be merged first with train merge).",
    )  # fmt: skip
    num_generations: int = option(
        8, "--num-generations", "--group-size", min=2, panel=ONLINE,
        help="Completions told for each prompt (the group whose rewards are compared).",
    )  # fmt: skip
    beta: float = option(
        0.04, min=0.0, panel=ONLINE,
        help="KL coefficient towards the starting model (0: no reference pass; LoRA's reference is the adapter off).",
    )  # fmt: skip
    max_completion_length: int = option(
        6144, min=1, panel=ONLINE, help="Most tokens told per completion (a cut completion is never well-structured)."
    )  # fmt: skip
    temperature: float = option(1.0, min=0.0, help="Sampling temperature of the completions.", panel=ONLINE)
    top_p: float = option(1.0, min=0.0, max=1.0, help="Nucleus sampling of the completions.", panel=ONLINE)
    lr: float | None = option(1e-5, above=0.0, help="Learning rate.", panel=OPTIM)
    epochs: float = option(1.0, above=0.0, help="Passes over the prompts.", panel=OPTIM)
    batch_size: int = option(
        8, min=1, panel=OPTIM,
        help="Completions per device batch; batch x grad-accum x processes must be a multiple of the group size.",
    )  # fmt: skip
    grad_accum: int = option(4, min=1, help="Batches per optimiser step.", panel=OPTIM)
    weight_decay: float = option(0.0, min=0.0, help="Weight decay.", panel=OPTIM)
    w_story: float = option(
        1.0, min=0.0, panel=REWARD,
        help="Weight of the storytelling reward (structure gate, re-identification, grounding: train pairs' reward).",
    )  # fmt: skip
    w_ended: float = option(
        0.0, min=0.0, panel=REWARD,
        help="Weight of ending before --max-completion-length (1 for a completion that ended on its own, 0 for "
        "one cut): a dense shaping term a weak model can learn; off by default.",
    )  # fmt: skip
    judge_endpoint: str | None = option(
        None, panel=JUDGE, metavar="URL", url=True,
        help="An OpenAI-compatible server whose multimodal model judges each well-structured completion "
        "(storyreasoning evaluate judge's judge); its score is one more reward, weighted by --w-judge.",
    )  # fmt: skip
    judge_model: str | None = option(None, help="The judge model on the server (default: the first it lists).",
                                     panel=JUDGE)  # fmt: skip
    w_judge: float = option(
        1.0, min=0.0, help="Weight of the judge's reward (with --judge-endpoint).", panel=JUDGE
    )
    judge_max_new_tokens: int = option(2048, min=1, help="Longest answer of the judge.", panel=JUDGE)
    judge_concurrency: int = option(
        8, min=1, panel=JUDGE, operational=True, help="Completions judged at once (requests in flight)."
    )  # fmt: skip
    reward_workers: int = option(
        2, min=0, panel=REWARD, operational=True,
        help="Processes scoring the completions beside the trainer (0: in the trainer's process; same rewards).",
    )  # fmt: skip
    use_vllm: bool = option(
        False, panel=VLLM,
        help="Generate with vLLM (pip install vllm, CUDA) instead of transformers' generate.",
    )  # fmt: skip
    vllm_mode: Literal["colocate", "server"] = option(
        "colocate", panel=VLLM,
        help="colocate: vLLM in the training process, sharing the GPU; server: a separate `trl vllm-serve` "
        "(see --vllm-server).",
    )  # fmt: skip
    vllm_server: str | None = option(
        None, panel=VLLM, metavar="URL", url=True,
        help="Base URL of the trl vllm-serve server (server mode; default http://localhost:8000).",
    )  # fmt: skip
    vllm_gpu_memory: float = option(
        0.3, min=0.01, max=1.0, panel=VLLM, help="Share of the GPU's memory colocated vLLM may take."
    )  # fmt: skip

    def __post_init__(self) -> None:
        if not self.sources:
            raise UsageError("give at least one dataset of stories to prompt with")
        super().__post_init__()
        if self.w_story <= 0 and self.w_ended <= 0 and not (self.judge_endpoint and self.w_judge > 0):
            raise SettingsError(
                "every reward has a weight of 0; give --w-story, --w-ended or --w-judge (with --judge-endpoint) "
                "a positive weight",
                "w_story", "w_ended", "w_judge", "judge_endpoint",
            )  # fmt: skip
        if self.max_length and self.max_completion_length >= self.max_length:
            raise SettingsError(
                f"--max-completion-length {self.max_completion_length} leaves no room for the prompt in --max-length "
                f"{self.max_length}; raise --max-length (0: no limit) or lower --max-completion-length",
                "max_completion_length", "max_length",
            )  # fmt: skip
        self.weights()  # a bad weight fails before anything loads
        self.mix_weights()

    def mix_weights(self) -> dict[str, float] | None:
        """Each dataset (as given) to its ``--mix`` weight; None without ``--mix``."""
        return mix_weights(self.mix, self.sources, "dataset")


PLAN = "Training"
HARDWARE = "GPUs"


@dataclass(frozen=True, kw_only=True)
class PlanSettings:
    """The peak memory per GPU of a training, story by story, from the model's config (no weights loaded)."""

    source: tuple[str, ...] = argument(
        (), metavar="DATASETS...", place=True,
        help="Datasets whose stories are counted as training counts them: train sft's one, or train grpo's "
        "several, planned together (omit to plan one --max-length).",
    )  # fmt: skip
    model: str = option(DEFAULT_BASE, "--model", "-m", help="Model: hub id or folder (its config.json is enough).",
                        panel=MODEL, place=True)  # fmt: skip
    revision: str | None = option(None, help="Hub revision of the model.", panel=MODEL)
    processor: str | None = option(
        None, panel=MODEL, place=True,
        help="Where the processor that counts a dataset's tokens is (default: the model; a config-only folder has none).",
    )  # fmt: skip
    mode: Mode = option("lora", help="lora, full or language (as train sft).", panel=PLAN)
    rank: int = option(16, min=1, help="LoRA rank (QwenStoryteller2's DPO: 2048).", panel=PLAN)
    dropout: float = option(0.1, min=0.0, max=0.99, help="LoRA dropout (its masks).", panel=PLAN)
    targets: tuple[str, ...] = option(
        LORA_TARGETS, "--target", panel=PLAN,
        help="LoRA target module name, repeatable or comma-separated (default: the attention).",
    )  # fmt: skip
    gradient_checkpointing: bool = option(
        True, help="Gradient checkpointing (train's default: on).", panel=PLAN
    )
    dtype: Literal["bfloat16", "float16", "float32"] = option(
        "bfloat16", help="Compute precision.", panel=PLAN
    )
    attn_implementation: Literal["sdpa", "flash_attention_2", "eager"] = option(
        "sdpa", help="Attention kernel.", panel=PLAN
    )
    objective: Literal["sft", "dpo", "grpo"] = option(
        "sft", panel=PLAN,
        help="sft; dpo: chosen and rejected answers in one batch and a reference pass; grpo: a group's generation "
        "(KV cache), completions of --max-completion-length and a reference pass unless --beta 0.",
    )  # fmt: skip
    num_generations: int = option(
        8, "--num-generations", "--group-size", min=1, panel=PLAN,
        help="grpo: completions generated at once (the group; their KV cache is held together).",
    )  # fmt: skip
    max_completion_length: int = option(
        6144, min=1, panel=PLAN, help="grpo: tokens of each completion (they replace the dataset's answers)."
    )  # fmt: skip
    beta: float = option(
        0.04, min=0.0, panel=PLAN,
        help="grpo: KL coefficient; above 0 a reference pass runs (and full or language modes hold a frozen copy).",
    )  # fmt: skip
    logits: Literal["answer", "all"] = option(
        "answer", panel=PLAN,
        help="Positions the LM head projects for the loss: the answer's (train sft) or all (a model's own loss).",
    )  # fmt: skip
    batch_size: int = option(1, min=1, help="Examples per device batch.", panel=PLAN)
    gpus: int = option(1, min=1, help="GPUs (DDP without --sharding).", panel=HARDWARE)
    sharding: Literal["none", "fsdp", "zero3"] = option(
        "none", panel=HARDWARE,
        help="none (one GPU or DDP), fsdp (FSDP2 full shard) or zero3 (DeepSpeed ZeRO-3): states sharded over --gpus.",
    )  # fmt: skip
    offload: bool = option(False, help="Sharded states in CPU memory (with fsdp or zero3).", panel=HARDWARE)
    gpu_memory: float = option(
        80.0, above=0.0, metavar="GiB", panel=HARDWARE,
        help="Memory of one GPU in GiB (an 80 GB card holds about 79 GiB).",
    )  # fmt: skip
    overhead: float = option(
        2.0, min=0.0, metavar="GiB", panel=HARDWARE,
        help="Fixed CUDA overhead: context, workspaces, allocator fragmentation.",
    )  # fmt: skip
    max_length: int | None = option(
        32768, min=0, panel=DATA,
        help="Most tokens per example: stories are fitted to it as training fits them; without a dataset, the "
        "length planned for.",
    )  # fmt: skip
    answer_tokens: int | None = option(
        None, min=0, panel=DATA, help="Without a dataset: answer tokens of the example (default a third)."
    )  # fmt: skip
    image_tokens: int | None = option(
        None, min=0, panel=DATA, help="Without a dataset: image tokens of the example (default 62 %)."
    )  # fmt: skip
    split: str | None = option("train", "--split", "-s", help="Split of each dataset to count.", panel=DATA)
    limit: int | None = option(None, min=1, help="Only the first N stories of each dataset.", panel=DATA)
    max_images: int | None = option(None, min=1, help="Most frames per story.", panel=DATA)
    min_pixels: int = option(QWEN_MIN_PIXELS, min=1, help="Pixel budget per image, lower bound.", panel=DATA)
    max_pixels: int = option(QWEN_MAX_PIXELS, min=1, help="Pixel budget per image, upper bound.", panel=DATA)
    order: Order = option("images-first", help="Images before the prompt, or after it.", panel=DATA)
    seed: int = option(0, help="Seed of the prompts (as training's).", panel=DATA)
    show: int = option(20, min=0, help="Stories listed in the table, heaviest first (0: all).")
    json: bool = option(
        False, "--json", help="Print the plan as JSON (with a fits verdict) instead of tables."
    )

    def __post_init__(self) -> None:
        if self.max_length == 0:
            object.__setattr__(self, "max_length", None)
        object.__setattr__(self, "targets", module_names(self.targets))
        # one dataset as text too (source="data/stories", as train sft's); a dataset given twice is one, as
        # train grpo reads its datasets
        sources = (self.source,) if isinstance(self.source, str) else (self.source or ())
        object.__setattr__(self, "source", tuple(dict.fromkeys(map(str, sources))))
        validate(self)
        if not self.source and not self.max_length:
            raise SettingsError(
                "give a dataset, or --max-length N to plan for one length", "source", "max_length"
            )
        check_lengths(self.max_length, self.min_pixels, self.max_pixels)


__all__ = [
    "DATASET",
    "DEFAULT_BASE",
    "DEFAULT_LR",
    "DEFAULT_START",
    "DPO_LOSS_TYPES",
    "LORA_TARGETS",
    "MODES",
    "SHOWN_CHANGES",
    "DPOSettings",
    "GRPOSettings",
    "Mode",
    "PairsSettings",
    "PlanSettings",
    "SFTSettings",
    "TrainingOptions",
    "check_lengths",
    "check_settings",
    "dataset_now",
    "folder_dataset_changes",
    "mix_weights",
    "module_names",
    "recorded_dataset",
    "shown_changes",
]
