"""Supervised fine-tuning of a vision-language model on grounded stories.

:func:`train_sft` runs one training job into an output folder:

``OUT/settings.json``
    what the job was started with; a restart with other settings is refused, so a
    folder never mixes two trainings.
``OUT/fit.json``
    how the stories were fitted to ``max_length`` (shortened, frames dropped, too long).
``OUT/log.jsonl``
    one line per logging step (loss, learning rate, epoch, step), written as it happens.
``OUT/checkpoints/checkpoint-N``
    transformers checkpoints (model or adapter, optimiser, scheduler, RNG); a restart
    resumes from the newest one, so a crash or Ctrl-C loses at most ``save_steps`` steps.
``OUT/final``
    the trained model (full and language modes) or LoRA adapter (lora mode) with the
    processor and ``storyreasoning.json`` (settings, fit, versions, final metrics); it
    loads with ``from_pretrained``, so ``storyreasoning tell --model OUT/final`` tells
    with it (an adapter needs peft installed, and its base model reachable).

Modes (section 5.2 of the reference): ``lora`` (rank 16, alpha twice the rank, dropout
0.1, on the language model's attention projections: never the vision tower),
``full`` (every parameter) and ``language`` (every parameter except the vision tower).
Fixed on the way: choosing no mode is not an error (LoRA is the default); the loss
covers only the assistant turn unless ``loss="all"``; ``max_length`` is enforced by
dropping trailing frames before training (never by cutting tokens); prompts are
assigned by seed, not drawn at each access.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ..data.messages import MessageOptions
from ..errors import UsageError
from .collate import Loss
from .job import (
    TrainFolder,
    TrainResult,
    _is_main_process,
    _json_log,
    _no_progress,
    _write_json,
    check_settings,
    finish,
    finished,
    load_model,
    run_trainer,
    settings_dict,
    trainer_arguments,
)

Mode = Literal["lora", "full", "language"]
MODES = ("lora", "full", "language")
DEFAULT_BASE = "Qwen/Qwen2.5-VL-7B-Instruct"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
#: The learning rates of the published recipes (section 5.1 of the reference).
DEFAULT_LR = {"lora": 2e-4, "full": 2e-5, "language": 2e-5}


@dataclass(frozen=True)
class SFTSettings:
    """Everything a supervised fine-tuning job depends on (the CLI's options have the same names)."""

    source: str
    out: Path
    split: str | None = "train"
    eval_split: str | None = None
    limit: int | None = None
    model: str = DEFAULT_BASE
    revision: str | None = None
    mode: Mode = "lora"
    rank: int = 16
    alpha: int | None = None  # 2 * rank
    dropout: float = 0.1
    targets: tuple[str, ...] = LORA_TARGETS
    loss: Loss = "assistant"
    epochs: float = 3.0
    max_steps: int | None = None
    learning_rate: float | None = None  # DEFAULT_LR[mode]
    batch_size: int = 1
    grad_accum: int = 32
    warmup_ratio: float = 0.03
    weight_decay: float = 0.01
    max_length: int | None = 32768
    messages: MessageOptions = field(default_factory=MessageOptions)
    save_steps: int = 100
    save_total_limit: int | None = 10
    logging_steps: int = 10
    dtype: str = "auto"
    device: str = "auto"
    gradient_checkpointing: bool = False
    seed: int = 0
    dataloader_workers: int = 0

    def __post_init__(self) -> None:
        check_settings(self)
        if self.loss not in ("assistant", "all"):
            raise UsageError(f"unknown loss {self.loss!r}; use assistant or all")

    @property
    def lora_alpha(self) -> int:
        return self.alpha if self.alpha is not None else 2 * self.rank

    @property
    def lr(self) -> float:
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LR[self.mode]

    def to_dict(self) -> dict:
        return settings_dict(self)


# -- model preparation ----------------------------------------------------------------------


def language_target_pattern(targets: tuple[str, ...]) -> str:
    """A PEFT ``target_modules`` regex: modules named ``targets`` outside the vision tower."""
    names = "|".join(sorted({t.strip().strip(".") for t in targets if t.strip()}))
    return rf"^(?!.*\bvisual\b).*\.({names})$"


def vision_tower(net: Any) -> Any | None:
    """The vision encoder of an image-text-to-text model (``visual`` in Qwen2-VL and Qwen2.5-VL)."""
    for holder in (net, getattr(net, "model", None)):
        tower = getattr(holder, "visual", None) if holder is not None else None
        if tower is not None:
            return tower
    return None


def prepare_model(net: Any, settings: SFTSettings) -> tuple[Any, dict]:
    """Apply the mode to ``net``: LoRA adapters, everything trainable, or the vision tower frozen."""
    for p in net.parameters():
        p.requires_grad_(True)
    frozen = 0
    if settings.mode == "language":
        tower = vision_tower(net)
        if tower is None:
            raise UsageError(
                f"the model {settings.model!r} has no vision tower named 'visual', so --mode language "
                "cannot freeze it; use --mode full or --mode lora"
            )
        for p in tower.parameters():
            p.requires_grad_(False)
            frozen += p.numel()
    if settings.mode == "lora":
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=settings.rank,
            lora_alpha=settings.lora_alpha,
            lora_dropout=settings.dropout,
            bias="none",
            task_type="CAUSAL_LM",
            target_modules=language_target_pattern(settings.targets),
        )
        try:
            net = get_peft_model(net, config)
        except ValueError as exc:
            raise UsageError(
                f"LoRA found no module named {', '.join(settings.targets)} in the language model of "
                f"{settings.model!r} ({str(exc).splitlines()[0][:200]}); pass --target with names the model has"
            ) from None
        if settings.gradient_checkpointing:
            net.enable_input_require_grads()
    total = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return net, {"parameters": total, "trainable": trainable, "frozen_vision": frozen}


# -- the job ---------------------------------------------------------------------------------


def _stories(settings: SFTSettings, split: str | None, budget, progress):
    from ..data.budget import fit_stories
    from ..data.sources import limited
    from ..data.sources import load_stories

    stories = limited(load_stories(settings.source, split), settings.limit)
    if len(stories) == 0:
        raise UsageError(
            f"{settings.source} has no stories{f' in split {split}' if split else ''} to train on"
        )
    if settings.max_length is None:
        return stories, {"stories": len(stories), "kept": len(stories), "max_length": None}
    with progress(
        len(stories), f"fitting {split or 'all'} stories to {settings.max_length} tokens"
    ) as advance:
        kept, report = fit_stories(stories, budget, settings.max_length, settings.messages, progress=advance)
    summary = {
        "stories": report.stories,
        "kept": len(kept),
        "shortened": report.shortened,
        "frames_dropped": report.frames_dropped,
        "too_long": report.too_long,
        "max_tokens": report.max_tokens,
        "max_length": settings.max_length,
    }
    if not kept:
        raise UsageError(
            f"no story of {settings.source} fits in {settings.max_length} tokens, even with one frame; "
            "raise --max-length or lower --max-pixels"
        )
    return kept, summary


def train_sft(
    settings: SFTSettings,
    *,
    progress: Callable | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> TrainResult:
    """Run (or resume) the fine-tuning job ``settings`` describes; see the module docstring."""
    folder = TrainFolder(Path(settings.out))
    folder.claim(settings, write=False)
    progress = progress or _no_progress
    done = finished(folder, say)
    if done is not None:
        return done

    torch, transformers, processor, net, device, dtype = load_model(settings)
    from ..data.budget import TokenBudget
    from ..data.messages import TrainingExamples
    from ..models import set_pixel_budget
    from .collate import StoryCollator

    msg = settings.messages
    set_pixel_budget(processor, msg.min_pixels, msg.max_pixels)
    budget = TokenBudget(processor, min_pixels=msg.min_pixels, max_pixels=msg.max_pixels)
    train_stories, fit = _stories(settings, settings.split, budget, progress)
    eval_examples = None
    if settings.eval_split:
        eval_stories, eval_fit = _stories(settings, settings.eval_split, budget, progress)
        fit = {**fit, "eval": eval_fit}
        eval_examples = TrainingExamples(eval_stories, replace(msg, style="trl"))
    main = _is_main_process()
    folder.claim(settings)
    if main:
        _write_json(folder.fit, fit)
    if fit.get("too_long"):
        say(
            f"{len(fit['too_long'])} stories do not fit in {settings.max_length} tokens even with one frame; skipped"
        )
    if fit.get("shortened"):
        say(f"{fit['shortened']} stories shortened to fit (frames dropped: {fit['frames_dropped']})")
    examples = TrainingExamples(train_stories, replace(msg, style="trl"))
    collator = StoryCollator(processor, loss=settings.loss)
    collator([examples[0]])  # a template the collator cannot label fails now, not after loading everything

    net, parameters = prepare_model(net, settings)
    say(
        f"{settings.mode} training of {settings.model}: {parameters['trainable']:,} of "
        f"{parameters['parameters']:,} parameters trainable, {len(examples)} stories, device {device}"
    )
    args = transformers.TrainingArguments(
        **trainer_arguments(settings, folder, transformers, dtype=dtype, device=device),
        per_device_eval_batch_size=settings.batch_size,
        eval_strategy="steps" if eval_examples is not None else "no",
        eval_steps=settings.save_steps if eval_examples is not None else None,
        remove_unused_columns=False,
        disable_tqdm=False,
    )
    trainer = transformers.Trainer(
        model=net,
        args=args,
        train_dataset=examples,
        eval_dataset=eval_examples,
        data_collator=collator,
        callbacks=[_json_log(transformers, folder.log)],
    )
    output, resume, metrics = run_trainer(
        trainer, folder, torch, say,
        memory_hint="lower --max-length or --max-pixels, use --batch-size 1 with a larger --grad-accum, "
        "turn on --gradient-checkpointing, or use --mode lora",
    )  # fmt: skip
    if eval_examples is not None:
        metrics.update({k: v for k, v in trainer.evaluate().items() if isinstance(v, (int, float))})
    return finish(
        "sft", settings, trainer, processor, folder, fit=fit, parameters=parameters, output=output,
        resume=resume, metrics=metrics, main=main,
    )  # fmt: skip


__all__ = [
    "DEFAULT_BASE",
    "DEFAULT_LR",
    "LORA_TARGETS",
    "MODES",
    "SFTSettings",
    "TrainFolder",
    "language_target_pattern",
    "prepare_model",
    "train_sft",
    "vision_tower",
]
