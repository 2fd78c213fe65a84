"""What the ``storyreasoning train`` commands do (the CLI in :mod:`storyreasoning.cli` only parses options)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import Interrupted, StoryReasoningError, UsageError
from ..files import atomic_folder
from .settings import DPOSettings, GRPOSettings, PairsSettings, SFTSettings


def _err():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def sft(settings: SFTSettings) -> int:
    from .sft import train_sft

    return _train(train_sft, settings)


def dpo(settings: DPOSettings) -> int:
    from .dpo import train_dpo

    return _train(train_dpo, settings)


def grpo(settings: GRPOSettings) -> int:
    from .grpo import train_grpo

    return _train(train_grpo, settings)


def _train(job, settings) -> int:
    """Run a training job, its main process speaking for the launch: the other processes of a distributed
    launch (one a GPU) show no progress and say nothing but their own errors, so that each line and the
    final report come once (and the report's loss is the main process's, which ``final/`` records)."""
    from rich.markup import escape

    from ..terminal import progress_bar
    from .job import is_main_process, quiet

    err = _err()
    main = is_main_process()
    say = (lambda line: err.print(f"[dim]{escape(line)}[/dim]")) if main else quiet
    try:
        with _holding(settings.out):
            result = job(settings, progress=progress_bar if main else None, say=say)
    except KeyboardInterrupt:
        if not main:  # Ctrl-C reaches every process of the launch: the main one says what is kept
            raise SystemExit(Interrupted.exit_code) from None
        raise Interrupted(interrupted(Path(settings.out))) from None
    return _report(err, result) if main else 0


def _holding(out):
    """Hold ``out`` as its one writer (:func:`~storyreasoning.files.lock_folder`) in the main process of a
    launch; the other processes of a distributed training write there under its hold."""
    import contextlib

    from ..files import lock_folder
    from .job import is_main_process

    return lock_folder(out, refuse=UsageError) if is_main_process() else contextlib.nullcontext()


def interrupted(out: Path) -> str:
    """The line a training stopped by Ctrl-C ends with: the checkpoint kept and the command that resumes."""
    from .job import TrainFolder

    try:
        kept = TrainFolder(out).last_checkpoint()
    except StoryReasoningError:  # damaged checkpoints: the next run says which
        kept = None
    if kept is None:
        return "interrupted before the first checkpoint was saved; run the same command again to start the training"
    return (
        f"interrupted; the checkpoints in {kept.parent} are kept: run the same command again to resume "
        f"from {kept.name}"
    )


def _report(err, result) -> int:
    if result.skipped:
        return 0
    loss = result.metrics.get("train_loss")
    err.print(
        f"trained {result.steps} steps"
        + (f", mean loss {loss:.4f}" if isinstance(loss, float) else "")
        + f"; the model is in {result.final}"
    )
    err.print(f"tell with it: storyreasoning tell IMAGES --model {result.final}")
    return 0


def pairs(settings: PairsSettings) -> int:
    with _holding(settings.out):  # before anything is read: a second build into it is refused at once
        return _pairs(settings)


def _pairs(settings: PairsSettings) -> int:
    from rich.markup import escape

    from ..data.identity import dataset_record
    from ..data.sources import limited, load_stories
    from ..evaluate.runs import load_outputs
    from ..settings import record, settings_fields
    from ..terminal import progress_bar
    from .pairs import build_pairs

    source, split, out = settings.source, settings.split, settings.out
    weights = settings.weights()
    whole = load_stories(source, split)
    stories = limited(whole, settings.limit)
    outputs = [load_outputs(run) for run in settings.runs]
    err = _err()
    # the source as typed and, for a local dataset, as resolved (train dpo may run elsewhere) with a
    # fingerprint of its content: what a resume must read again
    dataset = dataset_record(whole)
    try:
        with progress_bar(len(stories), "scoring candidates") as advance:
            report = build_pairs(
                stories,
                outputs,
                out,
                include_reference=settings.include_reference,
                min_margin=settings.min_margin,
                weights=weights,
                pairs_per_story=settings.pairs_per_story,
                rejected=settings.rejected,
                dataset=dataset,
                progress=advance,
                settings=record(settings),  # settings.json, written before any story is scored
                operational=[f.name for f in settings_fields(PairsSettings) if f.spec.operational],
                say=lambda line: err.print(f"[dim]{escape(line)}[/dim]"),
            )
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted; the stories scored so far are kept in {out}: run the same command again to go on "
            "from the next one"
        ) from None
    err.print(
        f"{report.pairs} pairs from {report.stories} stories written to {out}"
        + (f"; {len(report.too_few)} with fewer than two candidates" if report.too_few else "")
        + (f"; {len(report.too_close)} within the margin" if report.too_close else "")
        + (
            f"; {len(report.no_rejected)} with no well-structured candidate to reject"
            if report.no_rejected
            else ""
        )
        + (f"; {report.truncated} truncated candidates left out" if report.truncated else "")
        + (
            f"; {report.not_in_dataset} outputs for stories the dataset lacks"
            if report.not_in_dataset
            else ""
        )
    )
    return 0 if report.pairs else 1


def merge(adapter: Path, out: Path, *, base: str | None, dtype: str = "bfloat16") -> int:
    """Merge a LoRA adapter into its base model and save a plain model folder with the processor.

    The merge is done in float32 (the base's weights and the adapter's update added,
    then rounded once) and the result saved in ``dtype``: bfloat16 by default, what the
    published models ship and what vLLM serves; ``auto`` keeps the base checkpoint's own
    dtype. ``storyreasoning.json`` in the merged folder says the dtype.
    """
    from ..models import choose_dtype, import_torch, load_pretrained
    from ..settings import absolute
    from .job import quiet_dependency_warnings

    if dtype not in ("bfloat16", "float16", "float32", "auto"):
        raise UsageError(f"unknown dtype {dtype!r}; use bfloat16, float16, float32 or auto")
    torch, transformers = import_torch()
    config_path = adapter / "adapter_config.json"
    if not config_path.is_file():
        raise UsageError(f"{adapter} holds no LoRA adapter (no adapter_config.json); pass the adapter folder")
    try:
        from peft import PeftModel
    except ImportError:
        raise UsageError("merging needs peft: pip install 'storyreasoning[train]'") from None
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} exists and is not empty; choose another --out")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    base = base or config.get("base_model_name_or_path")
    if not base:
        raise UsageError(f"{config_path} does not name its base model; pass --base")
    hint = "pass --base with a local model folder or a reachable hub id"
    processor, net = load_pretrained(base, dtype=torch.float32, hint=hint)
    quiet_dependency_warnings()  # PEFT's use of transformers' deprecated checkpointing names
    if dtype == "auto":  # the dtype the base checkpoint was saved in
        target = _checkpoint_dtype(transformers, base) or torch.float32
    else:
        target = choose_dtype(dtype, "cpu")
    name = str(target).removeprefix("torch.")
    err = _err()
    err.print(f"[dim]merging {adapter} into {base} in float32, saved as {name}[/dim]")
    if (adapter / "processor_config.json").is_file():  # the processor trained with (its pixel budget)
        processor = transformers.AutoProcessor.from_pretrained(adapter)
    merged = PeftModel.from_pretrained(net, str(adapter)).merge_and_unload().to(target)
    manifest = adapter / "storyreasoning.json"
    data = json.loads(manifest.read_text(encoding="utf-8")) if manifest.is_file() else {"kind": "merge"}
    data.update({"merged_from": str(absolute(adapter)), "adapter": False, "base_model": base, "dtype": name})
    with atomic_folder(out) as tmp:  # out is new or empty (checked above)
        merged.save_pretrained(str(tmp))
        processor.save_pretrained(str(tmp))
        (tmp / "storyreasoning.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    err.print(f"merged model ({name}) written to {out}")
    return 0


def _checkpoint_dtype(transformers, base: str):
    """The dtype a checkpoint's config names (``dtype``, formerly ``torch_dtype``), or None."""
    import torch

    try:
        config = transformers.AutoConfig.from_pretrained(base)
    except (OSError, ValueError):
        return None
    for holder in (config, getattr(config, "text_config", None)):
        value = getattr(holder, "dtype", None) if holder is not None else None
        if isinstance(value, str):
            value = getattr(torch, value, None)
        if isinstance(value, torch.dtype):
            return value
    return None


__all__ = ["dpo", "grpo", "merge", "pairs", "sft"]
