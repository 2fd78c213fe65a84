"""What a training reports while it runs: its reporters (``--report-to``) and a story check (``--eval-every``).

Reporters
    :func:`reporters` turns ``--report-to`` (``none``, ``tensorboard``, ``wandb``, a comma
    list, or ``all`` installed) into transformers' ``TrainingArguments.report_to``. A name
    transformers does not know, or an integration that is not installed, is one clear error
    naming the ``pip install`` (transformers itself would fail later, deep in the Trainer).
    TensorBoard writes to ``OUT/tensorboard`` unless ``TENSORBOARD_LOGGING_DIR`` is set.

The story check
    The loss says little about what a storyteller is for. Every ``--eval-every`` steps,
    the main process tells ``--eval-stories`` held-out stories with the model being
    trained (greedy, at most ``--eval-max-new-tokens`` new tokens, the published system
    prompt and user prompt), parses them with :mod:`storyreasoning.format` and scores them
    with :mod:`storyreasoning.evaluate`'s metrics against the stories' references:

    ``eval_well_structured``  share of tellings the format validator accepts
                              (:func:`~storyreasoning.evaluate.consistency.consistency`);
    ``eval_grounding_f1``     CoT boxes against the reference's, micro F1 (IoU >= 0.5, same
                              image; :func:`~storyreasoning.evaluate.grounding.grounding`);
    ``eval_link_recall``      reference cross-frame links the telling also makes, micro
                              (:func:`~storyreasoning.evaluate.identity.identity`);
    ``eval_truncated``        share of tellings cut by the token limit (never well-structured);
    ``eval_seconds``          how long the check took.

    A value the metric leaves undefined (no reference box, no reference link) is left out.
    The numbers go through the trainer's callbacks like its own logs, so ``log.jsonl``
    and every reporter get them at that step. The model is put in eval mode for the check
    and back in the mode it was in after; a PEFT-wrapped model tells with its adapter on.
    Random states are restored, so a check never changes what training does next.

    Held-out stories: ``--eval-split`` of ``--eval-dataset``, or of the training dataset
    (SFT's ``source``; for DPO ``--dataset`` or the dataset its first pairs folder names).
    Each is prepared as training prepares its stories (``--max-images``, ``--box-space``),
    so the reference is what the model learns to write.

Trainers call :func:`install` once the trainer is built::

    trainer = transformers.Trainer(..., callbacks=[job.json_log(transformers, folder.log)])
    callbacks.install(trainer, settings, processor)

This module imports nothing heavy until a function needs it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.sources import recorded_source
from ..errors import UsageError

#: The names ``get_available_reporting_integrations`` can report installed (so they can be checked).
_CHECKABLE = frozenset(
    {"azure_ml", "comet_ml", "dagshub", "dvclive", "mlflow", "neptune", "tensorboard", "wandb", "codecarbon",
     "clearml", "swanlab", "trackio", "kubeflow"}
)  # fmt: skip
#: The pip package of an integration whose name is not its package's.
_PIP = {"azure_ml": "azureml-core", "flyte": "flytekit"}
#: The metrics the check logs (and ``train push`` puts on the card).
METRICS = ("eval_well_structured", "eval_grounding_f1", "eval_link_recall")

_tensorboard_dir: str | None = None  # the TENSORBOARD_LOGGING_DIR this module set last (not the user's)


# -- reporters --------------------------------------------------------------------------------------


def parse_report_to(text: str | None) -> list[str]:
    """``"tensorboard, wandb"`` → ``["tensorboard", "wandb"]``; ``none`` (or nothing) → ``[]``; ``all`` kept."""
    names = [part.strip().lower() for part in (text or "none").split(",") if part.strip()]
    if not names or names == ["none"]:
        return []
    if "none" in names:
        raise UsageError(f"--report-to {text!r} mixes none with reporters; give none alone or the reporters")
    if "all" in names and len(names) > 1:
        raise UsageError(f"--report-to {text!r} mixes all with reporters; give all alone or the reporters")
    return list(dict.fromkeys(names))


def reporters(settings) -> str | list[str]:
    """``TrainingArguments.report_to`` for ``settings.report_to``, or one clear error (unknown, not installed).

    Sets ``TENSORBOARD_LOGGING_DIR`` to ``OUT/tensorboard`` when TensorBoard reports,
    unless the user set it.
    """
    names = parse_report_to(getattr(settings, "report_to", "none"))
    if not names:
        return "none"
    from transformers.integrations import integration_utils as hub

    available = set(hub.get_available_reporting_integrations())
    if names == ["all"]:
        chosen = sorted(available)
    else:
        known = sorted(hub.INTEGRATION_TO_CALLBACK)
        for name in names:
            if name not in known:
                import difflib

                close = difflib.get_close_matches(name, known, n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                raise UsageError(
                    f"--report-to {name} is not a reporter transformers knows; {hint}use none, tensorboard, "
                    f"wandb or another of: {', '.join(known)}"
                )
            if name in _CHECKABLE and name not in available:
                raise UsageError(
                    f"--report-to {name} needs its package: pip install {_PIP.get(name, name)} "
                    "(or choose another reporter, or none)"
                )
        chosen = names
    if "tensorboard" in chosen:
        _point_tensorboard(Path(settings.out) / "tensorboard")
    return "all" if names == ["all"] else chosen


def _point_tensorboard(path: Path) -> None:
    global _tensorboard_dir
    current = os.environ.get("TENSORBOARD_LOGGING_DIR")
    if current is None or current == _tensorboard_dir:  # never override the user's own choice
        os.environ["TENSORBOARD_LOGGING_DIR"] = _tensorboard_dir = str(path)


# -- held-out stories ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldOut:
    """One held-out story as training prepares it, with the size of each frame its boxes are pixels of."""

    sample: Any  # a StorySample
    sizes: list[tuple[int, int]]


def eval_source(settings) -> tuple[str, str | None]:
    """``(dataset, split)`` the story check tells from, or one clear error saying what to pass."""
    if settings.eval_dataset:
        return settings.eval_dataset, settings.eval_split
    source = getattr(settings, "source", None) or getattr(settings, "dataset", None)
    if not source and getattr(settings, "sources", None):  # GRPO: its first dataset of prompts
        source = settings.sources[0]
    if not source:
        for folder in getattr(settings, "pairs", ()):  # DPO: the dataset its pairs come from
            import json

            from .pairs import MANIFEST

            path = Path(folder) / MANIFEST
            if path.is_file():
                source = recorded_source(json.loads(path.read_text(encoding="utf-8")))
            if source:
                break
    if not source:
        raise UsageError("--eval-every needs stories to tell: pass --eval-dataset (and --eval-split)")
    if not settings.eval_split:
        raise UsageError(
            "--eval-every tells held-out stories: pass --eval-split (a split of the training dataset that "
            "training does not use, e.g. test) or --eval-dataset"
        )
    if settings.eval_split == getattr(settings, "split", None):
        raise UsageError(
            f"--eval-split {settings.eval_split} is the split training uses, so its stories are not held out; "
            "choose another split or pass --eval-dataset"
        )
    return str(source), settings.eval_split


def held_out(settings) -> list[HeldOut]:
    """The first ``settings.eval_stories`` stories of :func:`eval_source`, prepared as training prepares them."""
    from ..data.messages import prepare
    from ..data.sources import limited, load_stories
    from ..format.box import smart_resize

    source, split = eval_source(settings)
    stories = limited(load_stories(source, split), settings.eval_stories)
    if len(stories) == 0:
        raise UsageError(
            f"{source} has no stories{f' in split {split}' if split else ''} for --eval-every to tell"
        )
    options = settings.messages
    out = []
    for sample in stories:
        story = prepare(sample, options)
        sizes = story.frame_sizes()
        if getattr(settings, "box_space", "original") == "model":  # the model writes resized-input pixels
            sizes = [
                (w, h)
                for h, w in (
                    smart_resize(height, width, min_pixels=options.min_pixels, max_pixels=options.max_pixels)
                    for width, height in sizes
                )
            ]
        out.append(HeldOut(story, sizes))
    return out


# -- telling and scoring --------------------------------------------------------------------------------


def tell_greedy(
    model, processor, stories: Sequence[HeldOut], *, max_new_tokens: int, order: str = "images-first"
) -> list[tuple[str, bool]]:
    """``(text, cut by the token limit)`` of each story told greedily by ``model`` (left in the mode it was in)."""
    import torch

    from ..format.prompts import DEFAULT_PROMPT, SYSTEM_PROMPT, transformers_messages

    device = next(model.parameters()).device
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos = set(eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos])
    training = model.training
    cpu_rng = torch.random.get_rng_state()
    cuda_rng = (
        torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    )
    model.eval()
    out = []
    try:
        for held in stories:
            images = [frame.open() for frame in held.sample.frames]
            messages = transformers_messages(images, DEFAULT_PROMPT, system_prompt=SYSTEM_PROMPT, order=order)
            inputs = processor.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
            ).to(device)
            with torch.no_grad():
                generated = model.generate(
                    **inputs, max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None,
                    top_k=None, use_cache=True,
                )  # fmt: skip
            new = generated[0, inputs["input_ids"].shape[1] :].tolist()
            cut = len(new) >= max_new_tokens and (not new or new[-1] not in eos)
            out.append((processor.tokenizer.decode(new, skip_special_tokens=True), cut))
    finally:
        model.train(training)
        torch.random.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
    return out


def score(stories: Sequence[HeldOut], tellings: Sequence[tuple[str, bool]]) -> dict[str, float]:
    """The check's numbers for the tellings of ``stories`` (undefined ones left out); see the module docstring."""
    from ..evaluate.consistency import consistency
    from ..evaluate.grounding import grounding
    from ..evaluate.identity import identity
    from ..evaluate.pairs import StoryPair
    from ..format.stream import parse_output

    pairs = [
        StoryPair(held.sample.story_id, held.sample.telling(), parse_output(text), list(held.sizes))
        for held, (text, _) in zip(stories, tellings, strict=True)
    ]
    values = {
        "eval_well_structured": consistency(pairs).overall.get("well_structured_rate"),
        "eval_grounding_f1": grounding(pairs).overall.get("f1_micro"),
        "eval_link_recall": identity(pairs).overall.get("link_recall_micro"),
        "eval_truncated": sum(cut for _, cut in tellings) / len(tellings) if tellings else None,
    }
    return {key: float(value) for key, value in values.items() if value is not None}


# -- the callback ----------------------------------------------------------------------------------------


def _story_check_type():
    import transformers

    class StoryCheck(transformers.TrainerCallback):
        """Every ``every`` steps, tell the held-out stories and log :func:`score` through the trainer."""

        def __init__(self, trainer, processor, stories: list[HeldOut], *, every: int, max_new_tokens: int,
                     order: str) -> None:  # fmt: skip
            self.trainer = trainer
            self.processor = processor
            self.stories = stories
            self.every = every
            self.max_new_tokens = max_new_tokens
            self.order = order

        def run(self) -> dict[str, float]:
            """Tell and score now with the trainer's model; the numbers, not logged."""
            start = time.perf_counter()
            tellings = tell_greedy(self.trainer.model, self.processor, self.stories,
                                   max_new_tokens=self.max_new_tokens, order=self.order)  # fmt: skip
            return {**score(self.stories, tellings), "eval_seconds": round(time.perf_counter() - start, 3)}

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % self.every or not state.is_world_process_zero:
                return control
            logs = self.run()
            if state.epoch is not None:
                logs["epoch"] = state.epoch
            # what Trainer.log does, without a trainer's own additions (DPO's stored metrics)
            state.log_history.append({**logs, "step": state.global_step})
            should_log = (
                control.should_log
            )  # the handler's on_log clears it: the step's own log must still come
            control = self.trainer.callback_handler.on_log(args, state, control, logs)
            control.should_log = should_log
            return control

    return StoryCheck


def _sharded(trainer) -> bool:
    """Whether the weights are sharded over processes (FSDP, DeepSpeed ZeRO-3): one process cannot generate."""
    if getattr(trainer, "is_fsdp_enabled", False):
        return True
    plugin = getattr(getattr(getattr(trainer, "accelerator", None), "state", None), "deepspeed_plugin", None)
    return getattr(plugin, "zero_stage", 0) == 3


def check(settings) -> None:
    """Check the reporting settings before anything loads (reporters installed, held-out stories named)."""
    reporters(settings)
    if settings.eval_every:
        eval_source(settings)


def install(trainer, settings, processor):
    """Add the story check to a built trainer when ``settings.eval_every`` asks; the callback, or None.

    Every process must call it (only the main one tells). The held-out stories are loaded
    now, so a wrong dataset or split fails before training starts.
    """
    if not getattr(settings, "eval_every", None):
        return None
    if _sharded(trainer):
        raise UsageError(
            "--eval-every cannot tell stories under FSDP or DeepSpeed ZeRO-3 (the weights are sharded over the "
            "processes); evaluate the checkpoints with storyreasoning tell-dataset and evaluate instead"
        )
    stories = held_out(settings)
    if not trainer.is_world_process_zero():
        return None
    callback = _story_check_type()(
        trainer, processor, stories, every=settings.eval_every, max_new_tokens=settings.eval_max_new_tokens,
        order=settings.order,
    )  # fmt: skip
    trainer.add_callback(callback)
    return callback


__all__ = [
    "METRICS",
    "HeldOut",
    "check",
    "eval_source",
    "held_out",
    "install",
    "parse_report_to",
    "reporters",
    "score",
    "tell_greedy",
]
