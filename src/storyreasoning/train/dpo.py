"""Contrastive preference training (DPO) on reward-ranked pairs, as QwenStoryteller2.

:func:`train_dpo` trains a storyteller (normally the SFT model) with TRL's
``DPOTrainer`` on the pairs of one or more pairs folders (``storyreasoning train
pairs``): real stories and contrastive sequences, each pair's frames read from the
dataset its folder names. QwenStoryteller2's published configuration is the default:
LoRA rank 2048, alpha 4096, learning rate 5e-6, batch 8, 3 epochs, β = 0.1.

Per pair the prompt is the system prompt and the user turn (the frames, then one of the
training prompts, chosen by seed and index as for SFT); chosen and rejected are the two
raw outputs. Pairs whose longer side exceeds ``max_length`` tokens are left out and
counted (cutting frames would change what the reward judged; cutting tokens would
break the image tokens), never truncated.

The output folder is the same as :mod:`.sft`'s: ``settings.json``, ``fit.json``,
``log.jsonl``, ``checkpoints/`` (resumed after a crash), ``final/`` (adapter or model,
processor, ``storyreasoning.json``). A starting model that is a LoRA adapter folder
(``train sft``'s ``final/``) must be merged first (``train merge``), so that the DPO
adapter names the model it sits on; the reference model is that same model with the
adapter off (LoRA) or a frozen copy (full and language modes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..errors import UsageError
from . import job
from .job import TrainResult
from .settings import DPOSettings


def _start_model(settings: DPOSettings):
    """What :func:`.job.load_model` gives, after refusing a LoRA adapter as the starting model."""
    if (Path(settings.model) / "adapter_config.json").is_file():
        # a new adapter saved on top of an in-memory merge would name the wrong base model
        raise UsageError(
            f"{settings.model} is a LoRA adapter; merge it into its base first "
            f"(storyreasoning train merge {settings.model} --out MERGED) and start DPO from --model MERGED"
        )
    return job.load_model(settings)


def _dataset_of(settings: DPOSettings, manifest: dict, folder: str):
    from ..data.sources import load_stories

    source = settings.dataset or (manifest.get("dataset") or {}).get("source")
    if not source:
        raise UsageError(f"the pairs in {folder} do not say which dataset holds their frames; pass --dataset")
    split = None if settings.dataset else (manifest.get("dataset") or {}).get("split")
    return load_stories(source, split)


def pair_rows(settings: DPOSettings, budget, progress) -> tuple[list[dict], dict]:
    """The DPO rows (``story_id``, ``prompt``, ``chosen``, ``rejected``; frames kept apart) and the fit report."""
    from ..data.messages import training_messages
    from .pairs import read_pairs

    style = replace(settings.messages, style="trl")
    rows: list[dict] = []
    fit = {
        "pairs": 0,
        "kept": 0,
        "too_long": [],
        "missing_story": [],
        "max_tokens": 0,
        "max_length": settings.max_length,
    }
    for folder in settings.pairs:
        manifest, pairs = read_pairs(folder)
        stories = _dataset_of(settings, manifest, folder)
        index = {sid: k for k, sid in enumerate(stories.ids())}
        with progress(len(pairs), f"reading pairs of {folder}") as advance:
            for pair in pairs:
                fit["pairs"] += 1
                advance()
                sid = pair["story_id"]
                k = index.get(sid)
                if k is None:
                    fit["missing_story"].append(sid)
                    continue
                sample = stories[k]
                # the prompt SFT trains with (system prompt, frames, a training prompt by seed and index),
                # every content as a list of parts: the dataset's columns need one schema
                example = training_messages(sample, len(rows), style, decode=False, prepared=True)
                prompt = [
                    {**m, "content": [{"type": "text", "text": m["content"]}]}
                    if isinstance(m["content"], str)
                    else m
                    for m in example["messages"][:-1]
                ]
                row = {
                    "story_id": sid,
                    "prompt": prompt,
                    "chosen": [{"role": "assistant", "content": [{"type": "text", "text": pair["chosen"]}]}],
                    "rejected": [
                        {"role": "assistant", "content": [{"type": "text", "text": pair["rejected"]}]}
                    ],
                    "sample": sample,
                }
                if settings.max_length is not None:
                    tokens = _tokens(budget, row)
                    fit["max_tokens"] = max(fit["max_tokens"], tokens if tokens <= settings.max_length else 0)
                    if tokens > settings.max_length:
                        fit["too_long"].append(sid)
                        continue
                rows.append(row)
    fit["kept"] = len(rows)
    return rows, fit


def _tokens(budget, row: dict) -> int:
    """Tokens of the prompt with the longer of the two answers (text plus the frames' vision tokens)."""
    processor = budget.processor
    longest = max((row["chosen"], row["rejected"]), key=lambda m: len(m[0]["content"][0]["text"]))
    text = processor.apply_chat_template(row["prompt"] + longest, tokenize=False, add_generation_prompt=False)
    n_text = len(budget.tokenizer(text, add_special_tokens=False)["input_ids"])
    return n_text + sum(budget.image_tokens(w, h) - 1 for w, h in row["sample"].frame_sizes())


def _hf_dataset(rows: list[dict], cache: Path):
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
        }
    )

    def generate():
        for row in rows:
            yield {
                "story_id": row["story_id"],
                "images": [{"bytes": f.bytes(), "path": None} for f in row["sample"].frames],
                "prompt": row["prompt"],
                "chosen": row["chosen"],
                "rejected": row["rejected"],
            }

    return datasets.Dataset.from_generator(generate, features=features, cache_dir=str(cache))


def train_dpo(
    settings: DPOSettings, *, progress: Callable | None = None, say: Callable = job.quiet
) -> TrainResult:
    """Run (or resume) the DPO job ``settings`` describes; see the module docstring."""
    from .sft import prepare_model

    folder, done, progress = job.begin(settings, progress, say)
    if done is not None:
        return done
    try:
        import trl
    except ImportError:
        raise UsageError("DPO needs trl: pip install 'storyreasoning[train]'") from None

    torch, transformers, processor, net, device, dtype = _start_model(settings)
    budget = job.token_budget(processor, settings)
    rows, fit = pair_rows(settings, budget, progress)
    main = job.is_main_process()
    if main:  # written even when nothing fits, to say why; the folder is claimed only for a real start
        folder.root.mkdir(parents=True, exist_ok=True)
        job.write_json(folder.fit, fit)
    if fit["missing_story"]:
        say(f"{len(fit['missing_story'])} pairs name stories their dataset lacks; skipped")
    if fit["too_long"]:
        say(f"{len(fit['too_long'])} pairs exceed {settings.max_length} tokens; skipped")
    if not rows:
        raise UsageError(
            "no pair to train on (see fit.json): build pairs with storyreasoning train pairs, "
            "or raise --max-length"
        )
    folder.claim(settings)
    train_set = _hf_dataset(rows, folder.root / "cache")
    net, parameters = prepare_model(net, settings)
    say(
        f"DPO ({settings.mode}) of {settings.model}: {parameters['trainable']:,} of {parameters['parameters']:,} "
        f"parameters trainable, {len(rows)} pairs, device {device}"
    )
    args = trl.DPOConfig(
        **job.trainer_arguments(settings, folder, transformers, dtype=dtype, device=device),
        beta=settings.beta,
        loss_type=[settings.loss_type],
        max_length=None,  # fitted above; truncation would cut image tokens
    )
    trainer = trl.DPOTrainer(
        model=net,
        args=args,
        train_dataset=train_set,
        processing_class=processor,
        callbacks=[job.json_log(transformers, folder.log)],
    )
    return job.train_and_save(
        "dpo", settings, trainer, processor, folder, torch, say, fit=fit, parameters=parameters, main=main,
        memory_hint="lower --max-length, --max-pixels or --rank, use --batch-size 1 with a larger --grad-accum, "
        "or turn on --gradient-checkpointing",
    )  # fmt: skip


__all__ = ["pair_rows", "train_dpo"]
