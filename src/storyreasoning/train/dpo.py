"""Contrastive preference training (DPO) on reward-ranked pairs, as QwenStoryteller2.

:func:`train_dpo` trains a storyteller (normally the SFT model) with TRL's
``DPOTrainer`` on the pairs of one or more pairs folders (``storyreasoning train
pairs``): real stories and contrastive sequences, each pair's frames read from the
dataset its folder names. QwenStoryteller2's published configuration is the default:
LoRA rank 2048, alpha 4096, learning rate 5e-6, batch 8, 3 epochs, β = 0.1.

**Each pair is scored under the conditioning its answers were sampled with**: the
system prompt, the user prompt and the order of frames and prompt the run recorded
(carried in the pair as ``conditioning``, see :mod:`.pairs`), and that run's pixel
budget (the frames are resized for each batch as the teller resized them; a run that
recorded no budget, such as a folder of texts or an endpoint left at its default, gets
``--min-pixels/--max-pixels``, counted in ``fit.json``). Pairs from runs with different
pixel budgets need ``--batch-size 1`` (one budget per batch; ``--grad-accum`` keeps the
effective batch). Pairs written before pairs carried a conditioning get the default
prompt and are counted. Chosen and rejected are the two raw outputs. Pairs whose longer
side exceeds ``max_length`` tokens are left out and counted (cutting frames would change
what the reward judged; cutting tokens would break the image tokens), never truncated.

**Mixing** (``--mix real=2,synth=1``, QwenStoryteller2's 2:1 of real to synthetic):
each folder is subsampled without repetition (by ``--seed``) to the largest set in the
given proportions; ``fit.json`` gives every folder's pairs, kept, held-out, available
and used counts. **Evaluation**: ``--eval-pairs FOLDER`` and/or ``--eval-fraction F``
(a share of each training folder's stories held out before mixing) are evaluated at
every save (``eval_loss``, ``eval_rewards/*`` in ``log.jsonl``) and at the end.

**The reference model** is the policy with its adapter off (LoRA): TRL wraps the
loaded model with our LoRA configuration itself, so the model holds exactly one adapter
and ``final/`` and every checkpoint hold one adapter (no ``ref/`` copy, no second
rank-2048 matmul per reference pass). Full and language modes get a frozen copy from
TRL. **Dropout**: the model's own dropout layers are switched off (what TRL's
``disable_dropout`` is for: policy and reference see the same network), but the LoRA
dropout runs at ``--dropout``, the value recorded; TRL's switch, which would silently
zero it, is not used. ``storyreasoning.json`` records both under ``parameters``.

The output folder is the same as :mod:`.sft`'s: ``settings.json``, ``fit.json``,
``log.jsonl``, ``checkpoints/`` (resumed after a crash), ``final/`` (adapter or model,
processor, ``storyreasoning.json``). A starting model that is a LoRA adapter folder
(``train sft``'s ``final/``) must be merged first (``train merge``), so that the DPO
adapter names the model it sits on.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import StoryReasoningError, UsageError
from . import job
from .job import TrainResult
from .settings import DPOSettings

if TYPE_CHECKING:
    from ..data.sources import StoryDataset


def _start_processor(settings: DPOSettings):
    """What :func:`.job.load_processor` gives, after refusing a LoRA adapter as the starting model."""
    if (Path(settings.model) / "adapter_config.json").is_file():
        # a new adapter saved on top of an in-memory merge would name the wrong base model
        raise UsageError(
            f"{settings.model} is a LoRA adapter; merge it into its base first "
            f"(storyreasoning train merge {settings.model} --out MERGED) and start DPO from --model MERGED"
        )
    return job.load_processor(settings)


def _dataset_of(settings: DPOSettings, manifest: dict, folder: str):
    from ..data.sources import load_stories, recorded_source

    source = settings.dataset or recorded_source(manifest)
    if not source:
        raise UsageError(f"the pairs in {folder} do not say which dataset holds their frames; pass --dataset")
    split = None if settings.dataset else (manifest.get("dataset") or {}).get("split")
    return load_stories(source, split)


# -- rows: a pair under its conditioning ---------------------------------------------------------


def _text(text: str) -> list[dict]:
    return [{"type": "text", "text": text}]


def conditioned_prompt(conditioning, n_images: int) -> list[dict]:
    """The prompt messages a candidate was told with (TRL's shape: image placeholders, text parts).

    As :func:`storyreasoning.format.prompts.transformers_messages` builds them for the
    teller: a system turn unless there was none, then the frames and the user prompt in
    the recorded order (no text part for no prompt, an empty one for ``""``).
    """
    images = [{"type": "image", "text": None} for _ in range(n_images)]
    text = [] if conditioning.prompt is None else _text(conditioning.prompt)
    user = images + text if conditioning.order == "images-first" else text + images
    messages = (
        [] if conditioning.system is None else [{"role": "system", "content": _text(conditioning.system)}]
    )
    return [*messages, {"role": "user", "content": user}]


def _pixels(conditioning, settings: DPOSettings) -> tuple[int, int]:
    """The pair's pixel budget: its run's where recorded, else the settings'."""
    low = conditioning.min_pixels or settings.min_pixels
    high = conditioning.max_pixels or settings.max_pixels
    return min(low, high), high


def _new_fit(settings: DPOSettings) -> dict:
    return {
        "pairs": 0,
        "kept": 0,
        "too_long": [],
        "missing_story": [],
        "identical": [],  # chosen == rejected: no preference to learn (a loss of log 2, no gradient)
        "max_tokens": 0,
        "max_length": settings.max_length,
        "conditioning_assumed": 0,  # pairs that carry no conditioning: the default prompt
        "pixels_from_settings": 0,  # pairs whose run recorded no pixel budget
        "folders": {},
    }


def open_pairs(settings: DPOSettings) -> dict[str, tuple[list[dict], StoryDataset]]:
    """Every pairs folder of the job (training and ``--eval-pairs``) read and checked, and the dataset
    that holds its frames opened: ``folder -> (pairs, stories)``, or one clear error naming a
    damaged file, a dataset that is not there or a split it lacks; done before the model loads."""
    from .pairs import read_pairs

    opened = {}
    for folder in dict.fromkeys((*settings.pairs, *settings.eval_pairs)):
        manifest, pairs = read_pairs(folder)
        opened[folder] = (pairs, _dataset_of(settings, manifest, folder))
    return opened


def pair_rows(
    settings: DPOSettings,
    processor,
    progress,
    folders: tuple[str, ...] | None = None,
    opened: dict[str, tuple[list[dict], StoryDataset]] | None = None,
) -> tuple[dict[str, list[dict]], dict]:
    """The DPO rows of each pairs folder (``story_id``, ``prompt``, ``chosen``, ``rejected``, pixel budget;
    frames kept apart) and the fit report; ``opened``: what :func:`open_pairs` gave (else opened here).
    """
    from ..data.budget import TokenBudget
    from .pairs import Conditioning

    opened = open_pairs(settings) if opened is None else opened
    budgets: dict[tuple[int, int], TokenBudget] = {}
    by_folder: dict[str, list[dict]] = {}
    fit = _new_fit(settings)
    for folder in settings.pairs if folders is None else folders:
        pairs, stories = opened[folder]
        index = {sid: k for k, sid in enumerate(stories.ids())}
        rows = by_folder.setdefault(folder, [])
        with progress(len(pairs), f"reading pairs of {folder}") as advance:
            for pair in pairs:
                fit["pairs"] += 1
                advance()
                sid = pair["story_id"]
                k = index.get(sid)
                if k is None:
                    fit["missing_story"].append(sid)
                    continue
                if pair["chosen"] == pair["rejected"]:
                    fit["identical"].append(sid)
                    continue
                sample = stories[k]
                if not pair.get("conditioning"):
                    fit["conditioning_assumed"] += 1
                conditioning = Conditioning.from_dict(pair.get("conditioning"))
                if conditioning.order not in ("images-first", "text-first"):
                    raise UsageError(f"a pair of {sid} in {folder} has an unknown order; rebuild the pairs")
                if not (conditioning.min_pixels and conditioning.max_pixels):
                    fit["pixels_from_settings"] += 1
                low, high = _pixels(conditioning, settings)
                row = {
                    "story_id": sid,
                    "prompt": conditioned_prompt(conditioning, sample.frame_count),
                    "chosen": [{"role": "assistant", "content": _text(pair["chosen"])}],
                    "rejected": [{"role": "assistant", "content": _text(pair["rejected"])}],
                    "min_pixels": low,
                    "max_pixels": high,
                    "sample": sample,
                }
                if settings.max_length is not None:
                    if (low, high) not in budgets:
                        budgets[low, high] = TokenBudget(processor, min_pixels=low, max_pixels=high)
                    tokens = _tokens(budgets[low, high], row)
                    fit["max_tokens"] = max(fit["max_tokens"], tokens if tokens <= settings.max_length else 0)
                    if tokens > settings.max_length:
                        fit["too_long"].append(sid)
                        continue
                rows.append(row)
        fit["folders"][folder] = {"pairs": len(pairs), "kept": len(rows)}
    fit["kept"] = sum(len(rows) for rows in by_folder.values())
    return by_folder, fit


def _tokens(budget, row: dict) -> int:
    """Tokens of the prompt with the longer of the two answers (text plus the frames' vision tokens)."""
    processor = budget.processor
    longest = max((row["chosen"], row["rejected"]), key=lambda m: len(m[0]["content"][0]["text"]))
    text = processor.apply_chat_template(row["prompt"] + longest, tokenize=False, add_generation_prompt=False)
    n_text = len(budget.tokenizer(text, add_special_tokens=False)["input_ids"])
    return n_text + sum(budget.image_tokens(w, h) - 1 for w, h in row["sample"].frame_sizes())


# -- held-out pairs and mixing ----------------------------------------------------------------------


def hold_out(
    by_folder: dict[str, list[dict]], fraction: float, seed: int
) -> tuple[dict[str, list[dict]], list[dict]]:
    """``(training rows by folder, held-out rows)``: a share of each folder's stories, drawn by seed.

    Stories, not pairs, are held out, so no story's pairs straddle training and evaluation.
    """
    if fraction <= 0:
        return by_folder, []
    train: dict[str, list[dict]] = {}
    held: list[dict] = []
    for folder, rows in by_folder.items():
        ids = sorted({row["story_id"] for row in rows})
        n = min(len(ids) - 1, max(1, round(fraction * len(ids)))) if len(ids) > 1 else 0
        chosen = set(random.Random(f"eval:{seed}:{folder}").sample(ids, n))
        train[folder] = [row for row in rows if row["story_id"] not in chosen]
        held += [row for row in rows if row["story_id"] in chosen]
    return train, held


def mix(
    by_folder: dict[str, list[dict]], weights: dict[str, float] | None, seed: int
) -> tuple[list[dict], dict[str, dict]]:
    """The training rows in the ``weights`` proportions, and each folder's ``available``, ``weight``, ``used``.

    Without weights every row is used. With them, each folder gives ``floor(weight × k)``
    rows for the largest ``k`` its rows allow (no row used twice), chosen by seed and
    kept in file order.
    """
    counts = {
        folder: {"available": len(rows), "weight": None, "used": len(rows)}
        for folder, rows in by_folder.items()
    }
    if weights is None:
        return [row for rows in by_folder.values() for row in rows], counts
    k = min(len(by_folder[f]) / w for f, w in weights.items() if w > 0)
    out: list[dict] = []
    for folder, rows in by_folder.items():
        used = math.floor(weights[folder] * k + 1e-9)
        keep = sorted(random.Random(f"mix:{seed}:{folder}").sample(range(len(rows)), used))
        out += [rows[i] for i in keep]
        counts[folder].update(weight=weights[folder], used=used)
    return out, counts


# -- the datasets TRL reads ---------------------------------------------------------------------------


def preference_dataset(rows: list[dict], cache: Path):
    """A ``datasets.Dataset`` of the rows with their frames as images, written under ``cache``."""
    import datasets

    message = datasets.List({"role": datasets.Value("string"), "content": datasets.List(
        {"type": datasets.Value("string"), "text": datasets.Value("string")}
    )})  # fmt: skip
    features = datasets.Features(
        {
            "story_id": datasets.Value("string"),
            "images": datasets.List(datasets.Image()),
            "prompt": message,
            "chosen": message,
            "rejected": message,
            "min_pixels": datasets.Value("int64"),
            "max_pixels": datasets.Value("int64"),
        }
    )

    def generate():
        for row in rows:
            yield {
                "story_id": row["story_id"],
                "images": [{"bytes": f.bytes(), "path": None} for f in row["sample"].frames],
                **{key: row[key] for key in ("prompt", "chosen", "rejected", "min_pixels", "max_pixels")},
            }

    return datasets.Dataset.from_generator(generate, features=features, cache_dir=str(cache))


class PixelBudgetCollator:
    """TRL's preference collator run under each batch's pixel budget (the one its candidates were told with).

    The processor gets the batch's budget for the call and the job's budget back after
    it, so the processor saved in ``final/`` is the job's.
    """

    def __init__(self, inner, processor, default: tuple[int, int]) -> None:
        self.inner, self.processor, self.default = inner, processor, default

    def __call__(self, examples: list[dict]) -> dict:
        from ..models import set_pixel_budget

        budgets = set()
        for example in examples:
            budgets.add((example.pop("min_pixels"), example.pop("max_pixels")))
            example.pop("story_id", None)
        if len(budgets) != 1:  # checked before training: only reached by a batch size above 1
            raise StoryReasoningError("a batch mixes pixel budgets; train with --batch-size 1")
        set_pixel_budget(self.processor, *budgets.pop())
        try:
            return self.inner(examples)
        finally:
            set_pixel_budget(self.processor, *self.default)


# -- the job ------------------------------------------------------------------------------------------


@dataclass
class DPOJob(job.BuiltTrainer):
    """A DPO trainer ready to train, with what :func:`.job.train_built` needs besides it."""


def build_trainer(settings: DPOSettings, folder, progress, say: Callable = job.quiet) -> DPOJob:
    """Fit the pairs (the processor alone loaded: none fitting is refused before the weights load), load the
    model, claim ``folder`` and build TRL's ``DPOTrainer`` (nothing trained yet)."""
    from .collate import unmask_end_padding
    from .sft import lora_targets_checked, trl_policy

    trl = job.require_trl("DPO")
    opened = open_pairs(settings)  # a damaged pairs folder or a wrong dataset: said before the weights load
    # the processor alone first: pairs that do not fit are said before minutes of loading weights
    torch, transformers, processor, device, dtype = _start_processor(settings)
    job.token_budget(processor, settings)
    by_folder, fit = pair_rows(settings, processor, progress, opened=opened)
    by_folder, held = hold_out(by_folder, settings.eval_fraction, settings.seed)
    rows, counts = mix(by_folder, settings.mix_weights(), settings.seed)
    for name, count in counts.items():
        fit["folders"][name].update(held_out=fit["folders"][name]["kept"] - count["available"], **count)
    eval_rows = list(held)
    if settings.eval_pairs:
        eval_by_folder, eval_fit = pair_rows(settings, processor, progress, settings.eval_pairs, opened)
        eval_rows += [row for part in eval_by_folder.values() for row in part]
        fit["eval_pairs"] = eval_fit
    fit["train"], fit["eval"] = len(rows), len(eval_rows)
    notices = [
        f"{len(fit['missing_story'])} pairs name stories their dataset lacks; skipped" if fit["missing_story"] else "",
        f"{len(fit['too_long'])} pairs exceed {settings.max_length} tokens; skipped" if fit["too_long"] else "",
        f"{len(fit['identical'])} pairs have the same chosen and rejected answer; skipped" if fit["identical"] else "",
        f"{fit['conditioning_assumed']} pairs carry no conditioning (built before pairs recorded it): scored "
        "under the default prompt" if fit["conditioning_assumed"] else "",
    ]  # fmt: skip
    nothing = "no pair to train on (see fit.json): build pairs with storyreasoning train pairs, or raise --max-length"
    main = job.report_fit(folder, fit, say, notices, kept=len(rows), nothing=nothing)
    budgets = {(row["min_pixels"], row["max_pixels"]) for row in rows + eval_rows}
    if len(budgets) > 1 and settings.batch_size > 1:
        raise UsageError(
            f"the pairs come from runs told with {len(budgets)} different pixel budgets, and one batch has one; "
            "use --batch-size 1 (keep the effective batch with --grad-accum)"
        )
    net = job.load_weights(settings, torch, transformers, dtype)
    folder.claim(settings)  # once the model loaded: a start that never ran claims nothing
    unmask_end_padding(net)  # TRL's rows end with their padding: SDPA runs causal, no L × L mask
    train_set = preference_dataset(rows, folder.root / "cache")
    eval_set = preference_dataset(eval_rows, folder.root / "cache") if eval_rows else None
    net, peft_config = trl_policy(net, settings)  # the model's dropout off, the LoRA dropout kept
    evaluate = eval_set is not None
    args = trl.DPOConfig(
        **job.trainer_arguments(settings, folder, transformers, dtype=dtype, device=device),
        beta=settings.beta,
        loss_type=[settings.loss_type],
        max_length=None,  # fitted above; truncation would cut image tokens
        disable_dropout=False,  # done above, sparing the LoRA dropout
        remove_unused_columns=False,  # the pixel budget columns reach our collator
        per_device_eval_batch_size=settings.batch_size,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=settings.save_steps if evaluate else None,
    )
    with lora_targets_checked(settings, peft_config):
        trainer = trl.DPOTrainer(
            model=net,
            args=args,
            train_dataset=train_set,
            eval_dataset=eval_set,
            processing_class=processor,
            callbacks=[job.json_log(transformers, folder.log)],
            peft_config=peft_config,
        )
    trainer.data_collator = PixelBudgetCollator(
        trainer.data_collator, processor, (settings.min_pixels, settings.max_pixels)
    )
    parameters = job.trl_parameters(trainer.model, settings, lora=peft_config is not None)
    say(
        job.trl_summary("DPO", settings, parameters, len(rows), "pairs", counts)
        + (f", {len(eval_rows)} evaluated at each save" if evaluate else "")
        + f", device {device}"
    )
    return DPOJob(trainer, processor, torch, fit, parameters, main, evaluate=evaluate)


def train_dpo(
    settings: DPOSettings, *, progress: Callable | None = None, say: Callable = job.quiet
) -> TrainResult:
    """Run (or resume) the DPO job ``settings`` describes; see the module docstring."""
    folder, done, progress = job.begin(settings, progress, say)
    if done is not None:
        return done
    built = build_trainer(settings, folder, progress, say)
    return job.train_built(
        "dpo", settings, built, folder, say,
        memory_hint="lower --max-length, --max-pixels or --rank, use --batch-size 1 with a larger --grad-accum, "
        "or turn on --gradient-checkpointing",
    )  # fmt: skip


__all__ = [
    "DPOJob",
    "PixelBudgetCollator",
    "build_trainer",
    "conditioned_prompt",
    "hold_out",
    "mix",
    "open_pairs",
    "pair_rows",
    "preference_dataset",
    "train_dpo",
]
