"""Supervised fine-tuning of a vision-language model on grounded stories.

:func:`train_sft` runs one training job into an output folder:

``OUT/settings.json``
    what the job was started with; a restart with other settings is refused, so a
    folder never mixes two trainings (a local model compared by where it is).
``OUT/dataset.json``
    the dataset trained on (:func:`~storyreasoning.data.identity.dataset_record`: the source
    as typed, the split, a local dataset's resolved path and content fingerprint); a restart
    from another dataset is refused before the model loads (``./ds`` and ``ds`` are one), a finished
    folder's too; the same stories moved elsewhere are the same dataset (a finished folder: nothing to do).
``OUT/fit.json``
    how the stories were fitted to ``max_length`` (shortened, frames dropped, too long).
``OUT/log.jsonl``
    one line per logging step (loss, learning rate, epoch, step), written as it happens, then
    an end record with the whole run's metrics (:mod:`.runlog`); a resume cuts it back to
    its checkpoint, so it never repeats a step.
``OUT/checkpoints/checkpoint-N``
    transformers checkpoints (model or adapter, optimiser, scheduler, RNG); a restart
    resumes from the newest whole one (:mod:`.checkpoints`), so a crash or Ctrl-C loses at
    most ``save_steps`` steps.
``OUT/final``
    the trained model (full and language modes) or LoRA adapter (lora mode) with the
    processor and ``storyreasoning.json`` (settings, fit, versions, the whole run's metrics); it
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

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from ..errors import UsageError
from . import job
from .job import TrainFolder, TrainResult
from .loss import answer_loss_trainer
from .settings import SFTSettings, dataset_now

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


def lora_config(settings: SFTSettings):
    """The LoRA adapter of ``--rank``, ``--lora-alpha`` and ``--dropout`` on the language model's ``--target``s.

    :func:`prepare_model` wraps the model with it; DPO and GRPO give it to TRL, which does.
    """
    from peft import LoraConfig

    return LoraConfig(
        r=settings.rank,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.dropout,
        bias="none",
        task_type="CAUSAL_LM",
        target_modules=language_target_pattern(settings.targets),
    )


def lora_not_found(settings: SFTSettings, exc: ValueError) -> UsageError:
    """The error for PEFT's refusal of ``--target`` names the model lacks (the first line of PEFT's own)."""
    return UsageError(
        f"LoRA found no module named {', '.join(settings.targets)} in the language model of "
        f"{settings.model!r} ({str(exc).splitlines()[0][:200]}); pass --target with names the model has"
    )


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
        from peft import get_peft_model

        try:
            net = get_peft_model(net, lora_config(settings))
        except ValueError as exc:
            raise lora_not_found(settings, exc) from None
        if settings.gradient_checkpointing:
            net.enable_input_require_grads()
    total = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return net, {"parameters": total, "trainable": trainable, "frozen_vision": frozen}


def trl_policy(net: Any, settings: SFTSettings) -> tuple[Any, Any | None]:
    """``(model, LoRA config or None)`` for a TRL trainer (DPO, GRPO), the model's own dropout switched off.

    The dropout goes off as TRL's ``disable_dropout`` would (policy and reference see the
    same network), but before the adapter exists, so the LoRA dropout keeps the recorded
    ``--dropout`` (TRL's switch, which would zero it, stays off). Under LoRA, TRL wraps the
    model with the returned config itself (its reference is the policy with the adapter
    off); other modes are applied here (:func:`prepare_model`) and TRL copies a reference.
    """
    from trl.trainer.utils import disable_dropout_in_model

    disable_dropout_in_model(net)
    if settings.mode == "lora":
        return net, lora_config(settings)
    net, _ = prepare_model(net, settings)
    return net, None


@contextmanager
def lora_targets_checked(settings: SFTSettings, peft_config: Any | None) -> Iterator[None]:
    """Around a TRL trainer's construction: PEFT's refusal of ``--target`` names said as :func:`lora_not_found`."""
    try:
        yield
    except ValueError as exc:
        if peft_config is not None and "target module" in str(exc).lower():
            raise lora_not_found(settings, exc) from None
        raise


# -- the job ---------------------------------------------------------------------------------


def load_splits(settings: SFTSettings) -> tuple[dict[str | None, object], dict]:
    """The stories of the training split and of ``--eval-split`` (limited), and what the folder records of
    the training split (:func:`~storyreasoning.data.identity.dataset_record`, of it whole): read before
    the model loads, so a wrong dataset path or split is said at once, not after minutes of loading weights."""
    from ..data.identity import dataset_record
    from ..data.sources import limited, load_stories

    out: dict[str | None, object] = {}
    record: dict = {}
    for split in dict.fromkeys((settings.split, *((settings.eval_split,) if settings.eval_split else ()))):
        whole = load_stories(settings.source, split)
        stories = limited(whole, settings.limit)
        if len(stories) == 0:
            raise UsageError(
                f"{settings.source} has no stories{f' in split {split}' if split else ''} to train on"
            )
        out[split] = stories
        record = record or dataset_record(whole)  # the training split's, the first
    return out, record


def _stories(settings: SFTSettings, split: str | None, budget, progress, loaded: dict[str | None, object]):
    from ..data.budget import fit_stories

    stories = loaded[split]
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
    settings: SFTSettings, *, progress: Callable | None = None, say: Callable = job.quiet
) -> TrainResult:
    """Run (or resume) the fine-tuning job ``settings`` describes; see the module docstring."""
    folder, done, progress = job.begin(
        settings, progress, say, dataset=lambda: dataset_now(settings.source, settings.split)
    )
    if done is not None:
        return done

    loaded, dataset = load_splits(settings)  # a wrong path or split: said before the weights load
    folder.claim(settings, write=False, dataset=dataset)  # another dataset: said before the weights load too
    # the processor alone first: stories that do not fit are said before minutes of loading weights
    torch, transformers, processor, device, dtype = job.load_processor(settings)
    from ..data.messages import TrainingExamples
    from .collate import StoryCollator, unmask_end_padding

    msg = settings.messages
    budget = job.token_budget(processor, settings)
    train_stories, fit = _stories(settings, settings.split, budget, progress, loaded)
    eval_examples = None
    if settings.eval_split:
        eval_stories, eval_fit = _stories(settings, settings.eval_split, budget, progress, loaded)
        fit = {**fit, "eval": eval_fit}
        eval_examples = TrainingExamples(eval_stories, replace(msg, style="trl"))
    notices = [
        f"{len(fit['too_long'])} stories do not fit in {settings.max_length} tokens even with one frame; skipped"
        if fit.get("too_long") else "",
        f"{fit['shortened']} stories shortened to fit (frames dropped: {fit['frames_dropped']})"
        if fit.get("shortened") else "",
    ]  # fmt: skip
    main = job.report_fit(folder, fit, say, notices)  # _stories refused a split where nothing fits
    examples = TrainingExamples(train_stories, replace(msg, style="trl"))
    collator = StoryCollator(processor, loss=settings.loss)
    collator([examples[0]])  # a template the collator cannot label fails now, not after loading everything

    net = job.load_weights(settings, torch, transformers, dtype)
    folder.claim(settings, dataset=dataset)  # once the model loaded: a start that never ran claims nothing
    unmask_end_padding(net)  # the collator pads on the right: SDPA runs causal, no L × L mask
    net, parameters = prepare_model(net, settings)
    say(
        f"{settings.mode} training of {settings.model}: {parameters['trainable']:,} of "
        f"{parameters['parameters']:,} parameters trainable, {len(examples)} stories, device {device}"
    )
    args = transformers.TrainingArguments(
        **job.trainer_arguments(settings, folder, transformers, dtype=dtype, device=device),
        per_device_eval_batch_size=settings.batch_size,
        eval_strategy="steps" if eval_examples is not None else "no",
        eval_steps=settings.save_steps if eval_examples is not None else None,
        remove_unused_columns=False,
        prediction_loss_only=True,
        disable_tqdm=False,
    )
    # the loss on learned positions only (logits memory follows the answer); Liger's fused loss needs none
    trainer_class = transformers.Trainer if args.use_liger_kernel else answer_loss_trainer(transformers)
    trainer = trainer_class(
        model=net,
        args=args,
        train_dataset=examples,
        eval_dataset=eval_examples,
        data_collator=collator,
        callbacks=[job.json_log(transformers, folder.log)],
    )
    built = job.BuiltTrainer(
        trainer, processor, torch, fit, parameters, main, evaluate=eval_examples is not None
    )
    return job.train_built(
        "sft", settings, built, folder, say,
        memory_hint="lower --max-length or --max-pixels, use --batch-size 1 with a larger --grad-accum, "
        "turn on --gradient-checkpointing, or use --mode lora",
    )  # fmt: skip


__all__ = [
    "TrainFolder",
    "language_target_pattern",
    "lora_config",
    "lora_not_found",
    "lora_targets_checked",
    "prepare_model",
    "train_sft",
    "trl_policy",
    "vision_tower",
]
