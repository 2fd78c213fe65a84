"""What every training job shares: its folder, its trainer arguments, its run and its final save.

A training folder (``--out``) holds ``settings.json`` (compared on every restart: a
folder never mixes two trainings; a local model by where it is), ``dataset.json`` (SFT: the
dataset it reads, :func:`~storyreasoning.data.identity.dataset_record`; GRPO: their list, one a dataset), ``fit.json``, ``log.jsonl`` (one line per logging
step, then an end record: :mod:`.runlog`), ``checkpoints/`` (resumed from the newest whole one after a
crash or Ctrl-C: :mod:`.checkpoints`) and ``final/``
(written atomically at the end: the model or adapter, the processor and
``storyreasoning.json``). :mod:`.sft`, :mod:`.dpo` and :mod:`.grpo` are built on these pieces.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import StoryReasoningError, UsageError
from ..files import write_json_atomic
from ..settings import place_fields, same_place, settings_fields, then_now
from ..terminal import no_progress
from .callbacks import check as check_callbacks
from .callbacks import install, reporters
from .settings import DATASET, folder_dataset_changes, recorded_dataset, shown_changes

#: Settings that may change between a run and its resumption.
OPERATIONAL = frozenset(
    {
        "out", "device", "logging_steps", "dataloader_workers", "report_to",
        # the story check watches the training without changing it
        "eval_every", "eval_stories", "eval_dataset", "eval_max_new_tokens",
    }
)  # fmt: skip


@dataclass
class TrainFolder:
    root: Path

    @property
    def settings(self) -> Path:
        return self.root / "settings.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def final(self) -> Path:
        return self.root / "final"

    @property
    def manifest(self) -> Path:
        """``final/storyreasoning.json``: there once the training finished."""
        return self.final / "storyreasoning.json"

    @property
    def log(self) -> Path:
        return self.root / "log.jsonl"

    @property
    def fit(self) -> Path:
        return self.root / "fit.json"

    def last_checkpoint(self, say: Callable[[str], None] | None = None) -> Path | None:
        """The newest whole checkpoint (:func:`.checkpoints.newest_usable`: every file checked), or None.

        Each newer checkpoint passed over is said (``say``) in one line naming it and what is
        wrong. A save that never finished (no ``trainer_state.json``) is passed over as before;
        when checkpoints are damaged and none is whole, one error names the newest and the fix.
        """
        from .checkpoints import newest_usable

        found, skipped = newest_usable(self.checkpoints)
        damaged = [s for s in skipped if not s.unfinished]
        if found is None and damaged:
            others = len(skipped) - 1 - skipped.index(damaged[0])  # older than it, none whole either
            older = f"none of the {others} older ones is whole" if others > 1 else (
                "the older one is not whole either" if others else "there is no older one"
            )  # fmt: skip
            raise UsageError(
                f"the checkpoint {damaged[0].path} is damaged: {damaged[0].problem}, and {older}; move "
                f"{self.checkpoints} away to train from the start, or put a whole copy back"
            )
        then = f"resuming from {found.name}" if found is not None else "starting from the beginning"
        for s in skipped:
            if say is not None:
                kind = "unfinished" if s.unfinished else "damaged"
                why = s.problem.removeprefix("unfinished: ")
                say(f"warning: {s.path} is {kind}: {why}; {then} (it is saved again at its step)")
        return found

    @property
    def dataset(self) -> Path:
        return self.root / DATASET

    def claim(self, settings, *, write: bool = True, dataset: dict | list[dict] | None = None) -> None:
        """Check that an existing folder was started with the same settings; else write them (``write``).

        Jobs check first and write only once their inputs loaded, so a typo in a path
        does not leave a folder claimed by settings that never ran. Local paths (the model,
        pairs folders) are compared resolved, so ``./m`` and ``m`` are one model and an older
        record's relative path is read from the current folder; a hub id as given. A job with
        a ``source`` dataset (SFT) is compared by :func:`~storyreasoning.data.identity.dataset_changes`
        with the folder's ``dataset.json``: ``dataset`` is what it reads
        (:func:`~storyreasoning.data.identity.dataset_record`), written there beside
        ``settings.json``; before the stories load (None) only what the resolved path
        settles is checked. A job with several ``sources`` (GRPO) records one such record
        per dataset, in their order (``dataset`` is their list); a folder of an older
        version, with none recorded, compares its ``sources`` by where they are. A folder whose settings
        name some this job lacks is another job's (a pairs folder, another training): refused naming that job.
        """
        wanted = settings.to_dict()
        self._outside_datasets([wanted.get("source"), *(wanted.get("sources") or ())])
        if self.settings.is_file():
            try:
                held = json.loads(self.settings.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise StoryReasoningError(
                    f"{self.settings} is unreadable ({exc}); remove it or choose another --out"
                ) from None
            held = held if isinstance(held, dict) else {}
            derived = {"alpha", "lr"}  # follow from other settings: name the cause first
            operational = OPERATIONAL | {
                f.name for f in settings_fields(type(settings)) if f.spec.operational
            }
            keys = set(held) | set(wanted)
            places = place_fields(type(settings))
            foreign = sorted(set(held) - set(wanted) - operational)
            if foreign:  # another job's folder (a pairs folder, another training): not a change of settings
                other = _other_job(self.root, held, foreign, settings)
                raise UsageError(
                    f"{self.root} holds the settings of another job ({other}); choose another --out"
                )
            if "source" in wanted:  # the dataset, by its identity (its split stays a setting)
                operational |= {"source"}
            records = _records(self.dataset) if "sources" in wanted else None
            if records is not None and len(records) != len(wanted["sources"]):
                records = None  # another number of datasets: named as a setting
            if records is not None:  # each dataset by its identity, as SFT's
                operational |= {"sources"}
            changed = [
                then_now(k, held.get(k), wanted.get(k))
                for k in sorted(
                    (k for k in keys if k not in operational and not _same(k, held, wanted, places)),
                    key=lambda k: (k in derived, k),
                )
            ]
            if "source" in wanted:
                changed = self._dataset_changes(held, settings, dataset) + changed
            if records is not None:
                changed = _sources_changes(records, settings.sources, dataset) + changed
            if changed:
                raise UsageError(
                    f"{self.root} holds a training started with other settings ({shown_changes(changed)}); "
                    "resume it with the same options or choose another --out"
                )
            if write and dataset is not None:
                write_json(self.dataset, dataset)  # an older folder's, or a moved dataset's new path
            return
        if not write:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        if dataset is not None:
            write_json(self.dataset, dataset)
        write_json(self.settings, wanted)

    def _outside_datasets(self, sources: list) -> None:
        """Refuse a folder inside a local dataset folder the job reads: its checkpoints and its cache
        (Arrow files) would become part of that dataset and change it, so the job could not resume."""
        from ..files import local_path

        root = self.root.resolve()
        for source in sources:
            path = local_path(source)
            if path is not None and path.is_dir() and root.is_relative_to(path):
                raise UsageError(
                    f"--out {self.root} is inside the dataset folder {source}: what training writes there "
                    "would change the dataset; choose an --out outside it"
                )

    def _dataset_changes(self, held: dict, settings, dataset: dict | None) -> list[str]:
        """``dataset: ...`` phrases for each way the dataset ``settings`` read differs from the folder's
        (the split apart: a setting of its own)."""
        if dataset is None:  # not loaded yet
            old = recorded_dataset(self.dataset, held)
            if old is None or "path" in old:
                return []  # the same path, or the dataset moved: its content decides once it is loaded
            dataset = _unloaded(settings.source)
        changes = folder_dataset_changes(self.dataset, held, dataset, split_setting=True)
        return [f"dataset: {phrase}" for phrase in changes]


def _other_job(root: Path, held: dict, foreign: list[str], settings) -> str:
    """Which job wrote the settings ``held`` in ``root`` and what it holds there (``train pairs: its
    manifest.json, pairs.jsonl``), or which of them (``foreign``) are no settings of this job."""
    from ..settings import suits
    from ..tell.settings import TellDatasetSettings
    from .settings import DPOSettings, GRPOSettings, PairsSettings, SFTSettings

    jobs = {
        "train pairs": PairsSettings, "train sft": SFTSettings, "train dpo": DPOSettings,
        "train grpo": GRPOSettings, "tell-dataset": TellDatasetSettings,
    }  # fmt: skip
    name = next(
        (name for name, cls in jobs.items() if cls is not type(settings) and suits(cls, set(held))), None
    )
    if name is None:
        this = next((f" of {name}" for name, cls in jobs.items() if cls is type(settings)), "")
        return f"{', '.join(foreign[:3])}{', …' if len(foreign) > 3 else ''} are no settings{this}"
    files = sorted(
        f"{p.name}/" if p.is_dir() else p.name
        for p in root.iterdir()
        if p.name not in ("settings.json", DATASET) and not p.name.startswith(".")
    )
    return f"{name}: its {', '.join(files[:4])}{', …' if len(files) > 4 else ''}" if files else name


def _records(path: Path) -> list[dict] | None:
    """The datasets a folder of a job with several ``sources`` recorded (GRPO's ``dataset.json``), or None."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return found if isinstance(found, list) and all(isinstance(r, dict) for r in found) else None


def _sources_changes(records: list[dict], sources, datasets: list[dict] | None) -> list[str]:
    """``dataset: ...`` phrases (``dataset SOURCE: ...`` among several) for each way the datasets read now
    (``datasets``, None before they load) differ from those the folder recorded (the split apart)."""
    from ..data.identity import dataset_changes

    changed = []
    for old, source, new in zip(records, sources, datasets or [None] * len(records), strict=True):
        if new is None:  # not loaded yet: as for one dataset
            if "path" in old:
                continue
            new = _unloaded(source)
        name = "dataset" if len(records) == 1 else f"dataset {source}"
        old = {**old, "split": new.get("split")}  # a setting of its own
        changed += [f"{name}: {phrase}" for phrase in dataset_changes(old, new)]
    return changed


def _unloaded(source: str) -> dict:
    """What a dataset's record can say before its stories load: the source, and the path it resolves to
    here (an older record's source is read from here; a hub id as given)."""
    from ..data.sources import local_dataset

    path = local_dataset(source)
    return {"source": source, **({"path": str(path)} if path is not None else {})}


def _same(key: str, held: dict, wanted: dict, places: frozenset[str]) -> bool:
    """Whether a recorded setting is the one wanted now: models, datasets and folders (``places``) by
    :func:`~storyreasoning.settings.same_place`, anything else as it is."""
    if key in places:
        return same_place(held.get(key), wanted.get(key))
    return held.get(key) == wanted.get(key)


@dataclass
class TrainResult:
    folder: Path
    final: Path
    steps: int
    resumed_from: str | None
    fit: dict
    parameters: dict
    metrics: dict
    skipped: bool = False  # the folder already held a finished training


@dataclass
class BuiltTrainer:
    """A job's trainer ready to train (nothing trained yet), with what :func:`train_built` needs besides it."""

    trainer: object
    processor: object
    torch: object
    fit: dict
    parameters: dict
    main: bool
    evaluate: bool = False  # evaluate the held-out rows at the end (and at each save)


def finished(folder: TrainFolder, say: Callable[[str], None]) -> TrainResult | None:
    """The result of a training this folder already finished (said: its steps and when), or None."""
    if not folder.manifest.is_file():
        return None
    done = json.loads(folder.manifest.read_text(encoding="utf-8"))
    when = f", finished {done['finished']}" if done.get("finished") else ""
    say(
        f"{folder.root} already holds a finished training ({folder.final}, {done.get('steps', 0)} steps{when}); "
        "nothing to do"
    )
    return TrainResult(
        folder.root, folder.final, done.get("steps", 0), None, done.get("fit", {}),
        done.get("parameters", {}), done.get("metrics", {}), skipped=True,
    )  # fmt: skip


def quiet(line: str) -> None:
    """A job's ``say`` when nobody listens."""


def begin(
    settings, progress: Callable | None, say: Callable[[str], None], *, dataset: Callable[[], dict] | None = None
):  # fmt: skip
    """``(folder, finished result or None, progress)``: a job's folder checked against its settings.

    For a job still to run, its reporting settings, kernels and checkpoints are checked too (a
    missing reporter or liger-kernel, a held-out split or checkpoints that are all damaged are said
    before the model loads). ``dataset`` (a job reading a ``source`` dataset: SFT) gives what the folder
    records of it; it is asked only of a finished folder, whose stories are never loaded
    otherwise: another dataset is refused there as in an unfinished one, the same one
    (wherever it is now) has nothing to do.
    """
    folder = TrainFolder(Path(settings.out))
    folder.claim(settings, write=False)
    if dataset is not None and folder.manifest.is_file():
        folder.claim(settings, write=False, dataset=dataset())
    done = finished(folder, say)
    if done is None:
        check_callbacks(settings)
        use_liger(settings, device="")  # --liger on without liger-kernel: said before the model loads
        folder.last_checkpoint()  # checkpoints all damaged: said before the model loads
    return folder, done, progress or no_progress


def token_budget(processor, settings):
    """Set the settings' pixel budget on the processor; the token counter that matches it."""
    from ..data.budget import TokenBudget
    from ..models import set_pixel_budget

    set_pixel_budget(processor, settings.min_pixels, settings.max_pixels)
    return TokenBudget(processor, min_pixels=settings.min_pixels, max_pixels=settings.max_pixels)


def require_trl(kind: str):
    """TRL, checked before anything loads, or the one line that says to install it (``kind``: DPO, GRPO)."""
    try:
        import trl
        from trl.trainer.utils import disable_dropout_in_model  # noqa: F401  (sft.trl_policy needs it)
    except ImportError:
        raise UsageError(f"{kind} needs trl: pip install 'storyreasoning[train]'") from None
    return trl


def report_fit(
    folder: TrainFolder, fit: dict, say: Callable[[str], None], notices: Iterable[str] = (), *,
    kept: int = 0, nothing: str | None = None,
) -> bool:  # fmt: skip
    """Write ``fit.json`` (main process), say each notice, and refuse a job left with nothing to train on.

    ``fit.json`` is written even when nothing fits, to say why; callers claim the folder
    (``settings.json``) only after this, for a real start. ``notices`` are said in order,
    empty ones skipped; ``nothing`` is the error raised when ``kept`` (the rows to train
    on) is 0, None where the caller refused earlier. Returns whether this is the main process.
    """
    main = is_main_process()
    if main:
        folder.root.mkdir(parents=True, exist_ok=True)
        write_json(folder.fit, fit)
    for line in notices:
        if line:
            say(line)
    if not kept and nothing is not None:
        raise UsageError(nothing)
    return main


def trl_parameters(model, settings, *, lora: bool) -> dict:
    """The ``parameters`` a TRL job records: counts, adapters, and its two dropouts (the model's is off)."""
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "adapters": sorted(getattr(model, "peft_config", {}) or {}),
        "dropout": {"lora": settings.dropout if lora else None, "model": 0.0},
    }


def trl_summary(kind: str, settings, parameters: dict, rows: int, noun: str, counts: dict[str, dict]) -> str:
    """``DPO (lora) of MODEL: T of P parameters trainable, N pairs (a 2, b 1)``: how a TRL job's first line starts.

    The parenthesis gives each mixed folder's or dataset's rows used, when there are several.
    """
    mixed = ", ".join(f"{Path(f).name} {c['used']}" for f, c in counts.items())
    return (
        f"{kind} ({settings.mode}) of {settings.model}: {parameters['trainable']:,} of "
        f"{parameters['parameters']:,} parameters trainable, {rows} {noun}"
        + (f" ({mixed})" if len(counts) > 1 else "")
    )


def trainer_arguments(settings, folder: TrainFolder, transformers, *, dtype, device: str) -> dict:
    """The ``TrainingArguments`` fields every job sets the same way (SFT's and DPO's configs take them)."""
    return {
        "output_dir": str(folder.checkpoints),
        "num_train_epochs": settings.epochs,
        "max_steps": settings.max_steps if settings.max_steps is not None else -1,
        "learning_rate": settings.learning_rate,
        "per_device_train_batch_size": settings.batch_size,
        "gradient_accumulation_steps": accumulation(settings),
        "warmup_steps": settings.warmup_ratio,  # a float below 1 is a ratio of the total steps
        "weight_decay": settings.weight_decay,
        "logging_steps": settings.logging_steps,
        "save_strategy": "steps",
        "save_steps": settings.save_steps,
        "save_total_limit": settings.save_total_limit,
        "bf16": str(dtype) == "torch.bfloat16",
        "fp16": str(dtype) == "torch.float16",
        "use_cpu": device == "cpu",
        **_checkpointing(transformers, settings.gradient_checkpointing),
        "dataloader_num_workers": settings.dataloader_workers,
        "use_liger_kernel": use_liger(settings, device),
        "seed": settings.seed,
        "data_seed": settings.seed,
        "report_to": reporters(settings),  # --report-to, checked (callbacks.reporters)
        # every trainable weight takes part in every step (LoRA's adapters, a frozen or trained tower: images are
        # in every row), so DDP need not walk the graph for unused ones after each backward (transformers asks it
        # to for a PEFT model, and DDP warns at every run that the walk found nothing)
        "ddp_find_unused_parameters": False,
    }


def world_size() -> int:
    import os

    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def accumulation(settings, processes: int | None = None) -> int:
    """Gradient accumulation steps: ``--grad-accum``, or what makes ``--global-batch`` over ``processes``."""
    if settings.global_batch is None:
        return settings.grad_accum
    processes = processes or world_size()
    per_step = settings.batch_size * processes
    if settings.global_batch % per_step:
        raise UsageError(
            f"a global batch of {settings.global_batch} cannot be split into {processes} process(es) × batch "
            f"{settings.batch_size}; choose a --global-batch that is a multiple of {per_step}"
        )
    return settings.global_batch // per_step


def use_liger(settings, device: str) -> bool:
    """Whether Liger kernels run: ``--liger on`` (refused when missing), ``auto`` (installed and on CUDA), ``off``."""
    import importlib.util

    installed = importlib.util.find_spec("liger_kernel") is not None
    if settings.liger == "on" and not installed:
        raise UsageError("--liger on needs liger-kernel: pip install liger-kernel (on a CUDA machine)")
    if settings.liger == "off":
        return False
    return installed and (settings.liger == "on" or device.startswith("cuda"))


#: The Trainer's methods that read a checkpoint: an error raised inside one is the checkpoint's.
_LOADERS = frozenset(
    {
        "_load_from_checkpoint",
        "_load_optimizer_and_scheduler",
        "_load_rng_state",
        "_load_scaler",
        "load_from_json",
    }
)


def _while_loading(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name in _LOADERS:
            return True
        tb = tb.tb_next
    return False


class _AlreadyTrained(Exception):
    """Raised as a run resumed from its last step begins (see :func:`_done_guard`)."""


def _done_guard(transformers):
    """A callback that stops a run resumed from its last step before it trains one step too many.

    Resumed from a checkpoint at ``max_steps`` (a crash after the last save, before ``final/``),
    transformers' loop would train one more step before it checks whether to stop. The
    checkpoint's weights (and optimiser) are loaded by then; :func:`run_trainer` saves them.
    """

    class DoneGuard(transformers.TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs) -> None:
            if state.max_steps and state.global_step >= state.max_steps:
                raise _AlreadyTrained

    return DoneGuard()


def run_trainer(trainer, folder: TrainFolder, torch, say: Callable[[str], None], *, memory_hint: str):
    """Train, resuming from the newest whole checkpoint; ``(output, resumed checkpoint or None, metrics, calls)``.

    Before training, ``log.jsonl`` is cut back to that checkpoint (:func:`.runlog.cut_back`).
    ``metrics`` are the whole run's (:func:`.runlog.whole_run`), ``calls`` the ``train()``
    calls whose work the run kept (1 for an uninterrupted run).
    """
    import transformers

    from . import runlog
    from .checkpoints import checkpoint_step

    resume = folder.last_checkpoint(say)
    step = checkpoint_step(resume) if resume is not None else 0
    cut = runlog.cut_back(folder.log, step) if is_main_process() else 0
    start = runlog.Totals.of_checkpoint(resume)
    # right after the flow callback: it sees the step's save and log decisions, and the summary of a resumed
    # call is made the whole run's before the progress bar prints it and the reporters send it
    callbacks = trainer.callback_handler.callbacks
    flow = next((i for i, c in enumerate(callbacks) if isinstance(c, transformers.DefaultFlowCallback)), -1)
    totals = runlog.run_totals(transformers, start, trainer)
    callbacks.insert(flow + 1 if flow >= 0 else len(callbacks), totals)
    trainer.callback_handler.callbacks.insert(0, _done_guard(transformers))  # before any other starts
    if resume is not None:
        said = f" (log.jsonl cut back to its step: {cut} later or torn line(s) dropped)" if cut else ""
        say(f"resuming from {resume.name}{said}")
    try:
        output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except _AlreadyTrained:
        trainer.is_in_train = False
        state = trainer.state
        from transformers.trainer_utils import TrainOutput

        metrics = {"train_runtime": 0.0, "total_flos": state.total_flos, "epoch": state.epoch}
        output = TrainOutput(state.global_step, 0.0, {k: v for k, v in metrics.items() if v is not None})
    except torch.OutOfMemoryError:
        raise StoryReasoningError(
            f"out of memory; {memory_hint} (progress so far is in the checkpoints)"
        ) from None
    except Exception as exc:
        if resume is None or not _while_loading(exc):
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise StoryReasoningError(
            f"the checkpoint {resume} cannot be loaded ({type(exc).__name__}: {first}); move it out of "
            f"{folder.checkpoints} to resume from the one before it"
        ) from None
    if totals.call is not None:  # the summary printed was made the whole run's: the call's own figures
        output = output._replace(metrics=totals.call)
    metrics, calls = runlog.whole_run(
        start, output, first_step=step, samples_per_step=runlog.samples_per_step(trainer),
        rank=trainer.args.process_index, processes=trainer.args.world_size,
    )  # fmt: skip
    return output, resume, metrics, calls


def finish(
    kind: str, settings, trainer, processor, folder: TrainFolder, *, fit: dict, parameters: dict,
    output, resume: Path | None, metrics: dict, main: bool, calls: int = 1,
) -> TrainResult:  # fmt: skip
    """Write the end record of ``log.jsonl``, save ``final/`` with its manifest and return the job's result.

    ``metrics`` are the whole run's; ``calls`` (the manifest's ``invocations``) the ``train()``
    calls it took (1 for an uninterrupted run).
    """
    from ..models import hub_commit
    from .runlog import end_record

    manifest = {
        "kind": kind,
        "base_model": settings.to_dict()["model"],  # a local model by where it is, as settings.json
        "revision": settings.revision,
        "commit": hub_commit(
            settings.model, settings.revision
        ),  # the hub commit trained from (None: a folder)
        "mode": settings.mode,
        "adapter": settings.mode == "lora",
        "settings": settings.to_dict(),
        "fit": fit,
        "parameters": parameters,
        "steps": int(output.global_step),
        "metrics": metrics,
        "resumed_from": resume.name if resume else None,
        "invocations": calls,
    }
    if main:  # before final/: a crash in between leaves no finished folder, and the resume cuts the record
        end_record(folder.log, step=int(output.global_step), epoch=metrics.get("epoch"), metrics=metrics)
    save_final(trainer, processor, folder, manifest, main=main)
    return TrainResult(folder.root, folder.final, int(output.global_step), manifest["resumed_from"], fit,
                       parameters, metrics)  # fmt: skip


def train_and_save(
    kind: str, settings, trainer, processor, folder: TrainFolder, torch, say: Callable[[str], None], *,
    fit: dict, parameters: dict, main: bool, memory_hint: str, evaluate: bool = False,
) -> TrainResult:  # fmt: skip
    """Train (resuming), evaluate when asked, and save ``final/``: the end every job shares."""
    output, resume, metrics, calls = run_trainer(trainer, folder, torch, say, memory_hint=memory_hint)
    if evaluate:
        metrics.update({k: v for k, v in trainer.evaluate().items() if isinstance(v, (int, float))})
    return finish(kind, settings, trainer, processor, folder, fit=fit, parameters=parameters, output=output,
                  resume=resume, metrics=metrics, main=main, calls=calls)  # fmt: skip


def train_built(
    kind: str, settings, built: BuiltTrainer, folder: TrainFolder, say: Callable[[str], None], *,
    memory_hint: str,
) -> TrainResult:  # fmt: skip
    """Install the story check (``--eval-every``, when asked), then :func:`train_and_save`: how every job ends."""
    install(built.trainer, settings, built.processor)
    return train_and_save(kind, settings, built.trainer, built.processor, folder, built.torch, say, fit=built.fit,
                          parameters=built.parameters, main=built.main, memory_hint=memory_hint,
                          evaluate=built.evaluate)  # fmt: skip


TRAIN_HINT = "pass a local model folder or a reachable hub id with --model"


def load_model(settings):
    """``(torch, transformers, processor, model, device, dtype)`` for a job: :func:`load_processor`, then
    :func:`load_weights`."""
    torch, transformers, processor, device, dtype = load_processor(settings)
    return torch, transformers, processor, load_weights(settings, torch, transformers, dtype), device, dtype


def load_processor(settings):
    """``(torch, transformers, processor, device, dtype)``: the job's machine checked and its processor loaded,
    no weights yet, so that a job with nothing to train on is refused before minutes of loading them."""
    from ..models import check_device, check_model_source, choose_device, choose_dtype, import_torch
    from ..models import load_processor as load

    torch, transformers = import_torch()
    spec = check_device(settings.device)  # --device foo, or cuda without a GPU: said before anything loads
    if settings.mode == "lora":
        try:
            import peft  # noqa: F401  (checked early: LoRA needs it)
        except ImportError:
            raise UsageError("LoRA training needs peft: pip install 'storyreasoning[train]'") from None
    refuse_single_gpu(spec)
    check_model_source(settings.model, revision=settings.revision, hint=TRAIN_HINT)  # not minutes of retries
    refuse_data_parallel(torch.cuda.device_count() if spec != "cpu" else 0)
    device = choose_device(spec)
    dtype = choose_dtype(settings.dtype, device)
    if dtype == torch.float16 and settings.mode != "lora":
        raise UsageError(
            f"--mode {settings.mode} would train in float16 on this GPU (it has no bfloat16), which overflows "
            "and loses small updates; use a GPU with bfloat16, --dtype float32 or --mode lora"
        )
    processor = load(settings.model, revision=settings.revision, hint=TRAIN_HINT)
    return torch, transformers, processor, device, dtype


def load_weights(settings, torch, transformers, dtype):
    """The job's model (:func:`load_processor` gave ``torch``, ``transformers`` and ``dtype``), seeded."""
    from ..models import load_weights as load

    net = load(
        settings.model, revision=settings.revision, dtype=weights_dtype(settings.mode, dtype, torch),
        attn_implementation=settings.attn_implementation, hint=TRAIN_HINT,
    )  # fmt: skip
    # the model as the job records it (a local folder by its absolute path, a hub id as given): what PEFT writes
    # as an adapter's base in adapter_config.json, so final/ loads (tell, train merge) from any working folder
    net.name_or_path = net.config.name_or_path = settings.to_dict()["model"]
    # adapters are initialised next, before the Trainer seeds anything: seed now, so that one seed gives one
    # run (and every process of a launch the same start)
    transformers.set_seed(settings.seed)
    text_input_grads(net)
    quiet_dependency_warnings()
    return net


def quiet_dependency_warnings() -> None:
    """Leave out the warnings one library raises about another's use of it, which a user can do nothing
    about (PEFT, TRL and the Trainer calling transformers' deprecated checkpointing names)."""
    import warnings

    for name in (
        "is_gradient_checkpointing",
        "gradient_checkpointing_enable",
        "gradient_checkpointing_disable",
    ):
        warnings.filterwarnings("ignore", message=f"`{name}` is deprecated", category=FutureWarning)


def text_input_grads(net) -> None:
    """Make ``net.enable_input_require_grads()`` hook the token embeddings alone, not the vision tower's.

    transformers, PEFT and TRL call it whenever gradient checkpointing is on, so that a
    checkpointed layer whose own weights are frozen (LoRA's base) sees an input that
    requires gradients. transformers' version hooks every input embedding it finds, the
    vision tower's patch embedding included: a frozen tower (LoRA, ``--mode language``)
    then builds its autograd graph, is recomputed block by block in the backward pass and
    back-propagated to its pixels, all for nothing (GiBs and a good share of the step at 7B
    with a dozen frames). Ours hooks the language model's token embeddings, which the image
    features are scattered into: the language model gets the same gradients, a frozen
    tower runs with no graph, and a trained one (``--mode full``) is in the graph through
    its own weights. Calling it again replaces the hook (one hook, however often called).
    """
    import types

    def require_grads(module, args, output) -> None:
        output.requires_grad_(True)

    def enable_input_require_grads(self) -> None:
        for hook in getattr(self, "_require_grads_hooks", None) or ():
            hook.remove()
        # transformers' own names, so that its disable_input_require_grads() removes ours
        self._require_grads_hooks = [self.get_input_embeddings().register_forward_hook(require_grads)]
        self._require_grads_hook = self._require_grads_hooks[0]

    net.enable_input_require_grads = types.MethodType(enable_input_require_grads, net)


def weights_dtype(mode: str, compute, torch):
    """The dtype weights are held in: the compute dtype for LoRA (the base is frozen), float32 otherwise.

    Full and language training keep float32 master weights and compute in ``compute``
    under autocast (the Trainer's ``bf16``): updates of about ``lr × weight`` are far below
    bfloat16's resolution (8 bits of mantissa), so pure bfloat16 weights would round most
    of them away. LoRA adapters are float32 whatever the base (PEFT casts them up).
    """
    return compute if mode == "lora" else torch.float32


def launched() -> bool:
    """True inside a distributed launch (accelerate launch, torchrun): more than one process."""
    import os

    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def refuse_data_parallel(gpus: int, argv: list[str] | None = None) -> None:
    """Refuse to start on several visible GPUs outside a distributed launch, naming the command to run.

    transformers would wrap the model in ``nn.DataParallel``, which splits ``pixel_values``
    and ``image_grid_thw`` apart from the text rows, so image tokens and image features no
    longer match.
    """
    import shlex
    import sys

    if gpus <= 1 or launched():
        return
    args = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(
        ["accelerate", "launch", "--config_file", "configs/accelerate/ddp.yaml", "--num_processes", str(gpus),
         "-m", "storyreasoning.cli", *args]
    )  # fmt: skip
    raise UsageError(
        f"{gpus} GPUs are visible but this is one process; run one process per GPU: {command} "
        "(or choose one GPU with CUDA_VISIBLE_DEVICES=0)"
    )


def refuse_single_gpu(device: str) -> None:
    if device.startswith("cuda:"):
        raise UsageError(
            f"training uses every visible GPU; choose them with CUDA_VISIBLE_DEVICES instead of --device {device}"
        )


def versions() -> dict[str, str]:
    """Versions of the packages a training depends on (those installed)."""
    from importlib import metadata

    out = {}
    for name in ("storyreasoning", "torch", "transformers", "peft", "trl", "accelerate"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def save_final(trainer, processor, folder: TrainFolder, manifest: dict, *, main: bool) -> None:
    """Save the model (or adapter), the processor and ``storyreasoning.json`` as ``final/``, atomically.

    Every process of a distributed run must call it (sharded weights are gathered); only
    the main one writes. ``final/`` appears complete or not at all.
    """
    import shutil

    tmp = folder.root / "final.tmp"
    if main and tmp.exists():
        shutil.rmtree(tmp)
    trainer.save_model(str(tmp))
    if not main:
        return
    processor.save_pretrained(str(tmp))
    manifest = {**manifest, "versions": versions(), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_json(tmp / "storyreasoning.json", manifest)
    if folder.final.exists():  # an earlier attempt died between saving and renaming
        shutil.rmtree(folder.final)
    tmp.rename(folder.final)


def is_main_process() -> bool:
    """True unless this is a secondary process of a distributed launch (torchrun, accelerate)."""
    import os

    return int(os.environ.get("RANK", "0")) == 0


def write_json(path: Path, data: dict | list) -> None:
    """A training folder's JSON files (``settings.json``, ``fit.json``, ``final/storyreasoning.json``),
    atomically: indented, ASCII, anything JSON has no type for written as its ``str``."""
    write_json_atomic(path, data, ensure_ascii=True, default=str)


def _checkpointing(transformers, on: bool) -> dict:
    """Activation checkpointing options under the name this transformers uses (renamed in 5.x)."""
    names = {f.name for f in fields(transformers.TrainingArguments)}
    key = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return {key: on, f"{key}_kwargs": {"use_reentrant": False} if on else None}


def json_log(transformers, path: Path):
    """The callback writing ``log.jsonl`` (:func:`.runlog.json_log`: one JSON line a record, appended whole)."""
    from .runlog import json_log as log

    return log(transformers, path)


__all__ = [
    "OPERATIONAL",
    "BuiltTrainer",
    "TrainFolder",
    "TrainResult",
    "begin",
    "finish",
    "finished",
    "is_main_process",
    "json_log",
    "load_model",
    "load_processor",
    "load_weights",
    "quiet",
    "report_fit",
    "require_trl",
    "run_trainer",
    "save_final",
    "text_input_grads",
    "token_budget",
    "train_and_save",
    "train_built",
    "trainer_arguments",
    "trl_parameters",
    "trl_summary",
    "versions",
    "write_json",
]
