"""A training folder's ``log.jsonl``, and the figures of a whole run however often it was resumed.

``log.jsonl`` holds one JSON object a line, in the order they were logged:

* a **step record** at each logging step: ``step``, ``epoch``, ``loss`` (the mean over the
  steps since the last record), ``grad_norm``, ``learning_rate`` (DPO and GRPO add their
  own numbers) and ``time`` (Unix seconds);
* at its step, an **evaluation** (``eval_*``: ``--eval-split``, DPO's held-out pairs) and a
  **story check** (``--eval-every``);
* last, once the training has finished, one **end record**: ``"end": true``, ``step``,
  ``epoch``, ``time`` and the whole run's metrics, as ``final/storyreasoning.json`` records
  them (with the final evaluation's numbers).

Transformers also logs a summary at the end of each ``train()`` call; it covers that call
only, so it is not written (its whole-run figures are in the end record).

**Resuming.** Before a resumed run trains, :func:`cut_back` cuts the log back to the
checkpoint it resumes from: a torn last line (a write the crash cut), the records of the
steps after the checkpoint (trained and logged again) and an end record go. The log of a
resumed run is then the log of an uninterrupted one, times aside.

**The whole run's figures.** The Trainer's own ``train_loss``, ``train_runtime`` and rates
cover its last ``train()`` call only: resumed from checkpoint-3 of 12 steps, its
``train_loss`` is the mean of steps 4 to 12. :func:`run_totals` keeps running sums (the
loss of every step trained, the seconds and steps of the training kept) in every
checkpoint (``trainer_state.json``, ``stateful_callbacks.RunTotals``), and
:func:`whole_run` adds the last call's to those of the checkpoint it resumed from:
``train_loss`` is the mean loss of every step of the run (as in an uninterrupted run),
``train_runtime`` the seconds spent on the steps kept, summed over the calls (work a crash
lost and was done again is counted once), and ``train_steps_per_second`` /
``train_samples_per_second`` follow from those.

**Between two logging steps.** A checkpoint need not fall on a logging step (``--save-steps 25``
with ``--logging-steps 10``; the last step's, always saved). What the trainer holds in memory
for the next record is saved with the sums: the loss of the steps since the last record
(each process's own: the record averages them), how many they are, and a TRL
trainer's own numbers since then (DPO's ``rewards/*``, ``logps/*``…) with its running token
count (``num_tokens``). A resumed run puts them back before its first step, so its next record
covers the same steps as an uninterrupted run's and ``train_loss`` counts every step.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from ..files import append_json_line

#: The key of the stateful callback's entry in ``trainer_state.json``.
TOTALS = "RunTotals"
#: A log record Transformers makes at the end of each ``train()`` call holds these keys.
CALL_SUMMARY = "train_runtime"


def append_line(path: Path, record: dict) -> None:
    """Append ``record`` to ``path`` as one JSON line (:func:`~storyreasoning.files.append_json_line`:
    whole, never glued onto a torn last line, which :func:`cut_back` removes on resume), values JSON
    has no type for as text, without fsync (a log line a power cut loses is logged again on resume)."""
    append_json_line(path, record, fsync=False, default=str)


def read_log(path: Path) -> list[dict]:
    """The records of a ``log.jsonl``; lines that are not a JSON object (a torn write) are passed over."""
    if not path.is_file():
        return []
    out = []
    for raw in path.read_bytes().splitlines():
        try:
            record = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def cut_back(path: Path, step: int) -> int:
    """Cut ``log.jsonl`` back to a checkpoint at ``step`` (0: no checkpoint) for a resumed run; the number
    of lines removed.

    Kept: the whole records of steps up to ``step``, in order. Removed: records of later steps,
    an end record, and lines that are not a whole JSON object (a torn last line; a line the
    unrepaired log of an older version merged). Rewritten atomically, only when something goes.
    """
    if not path.is_file():
        return 0
    from ..files import write_bytes_atomic

    lines = path.read_bytes().splitlines(keepends=True)
    kept = []
    for raw in lines:
        try:
            record = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            continue
        if not raw.endswith(b"\n") or not isinstance(record, dict) or record.get("end"):
            continue
        at = record.get("step")
        if isinstance(at, int) and not isinstance(at, bool) and at > step:
            continue
        kept.append(raw)
    if len(kept) != len(lines):
        write_bytes_atomic(path, b"".join(kept))
    return len(lines) - len(kept)


def json_log(transformers, path: Path):
    """A callback writing each dict the trainer logs during training to ``path`` as one JSON line.

    Only the main process writes. Transformers' summary of a ``train()`` call and what is
    logged outside training (the final evaluation) are left out: :func:`end_record` writes
    the whole run's figures.
    """

    class JsonLog(transformers.TrainerCallback):
        training = False

        def on_train_begin(self, args, state, control, **kwargs) -> None:
            self.training = True

        def on_train_end(self, args, state, control, **kwargs) -> None:
            self.training = False

        def on_log(self, args, state, control, logs=None, **kwargs) -> None:
            if not logs or not state.is_world_process_zero or not self.training or CALL_SUMMARY in logs:
                return
            append_line(path, {"step": state.global_step, "epoch": state.epoch, **logs, "time": time.time()})

    return JsonLog()


def end_record(path: Path, *, step: int, epoch, metrics: dict) -> None:
    """Append the end record (``"end": true``, the whole run's ``metrics``) to ``log.jsonl``."""
    append_line(path, {"end": True, "step": step, "epoch": epoch, **metrics, "time": time.time()})


class Totals:
    """The running sums of a run, as a checkpoint holds them (see the module docstring)."""

    __slots__ = (
        "calls",
        "loss_steps",
        "loss_sum",
        "pending_losses",
        "pending_metrics",
        "pending_steps",
        "runtime",
        "timed_steps",
        "tokens",
    )

    def __init__(
        self, loss_sum=0.0, loss_steps=0, runtime=0.0, timed_steps=0, calls=0, pending_losses=(),
        pending_steps=0, pending_metrics=None, tokens=None,
    ) -> None:  # fmt: skip
        self.loss_sum = float(loss_sum)  # the sum of the losses of the steps logged
        self.loss_steps = int(loss_steps)  # the steps logged
        self.runtime = float(runtime)  # seconds spent on the steps kept
        self.timed_steps = int(timed_steps)  # the steps those seconds cover
        self.calls = int(calls)  # train() calls whose work is kept
        # at the checkpoint, what the next log record was to cover: the summed loss of the steps since the
        # last one (each process's, by rank: the record averages them), their number, a TRL trainer's
        # metrics since then
        self.pending_losses = [float(x) for x in pending_losses]
        self.pending_steps = int(pending_steps)
        self.pending_metrics = {
            str(k): [float(x) for x in v]
            for k, v in (pending_metrics or {}).items()
            if isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
        }
        self.tokens = None if tokens is None else int(tokens)  # DPO's running count of tokens trained on

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}

    def pending_loss(self, rank: int, processes: int) -> float:
        """The summed loss of the checkpoint's steps since its last record, as process ``rank`` of ``processes``
        held it (saved by another number of processes: their mean, what the record would have said)."""
        losses = self.pending_losses
        if not losses:
            return 0.0
        return losses[rank] if len(losses) == processes else sum(losses) / len(losses)

    @classmethod
    def of_checkpoint(cls, checkpoint: Path | None) -> Totals:
        """The sums a checkpoint holds; for one saved without them, the loss from its log history."""
        if checkpoint is None:
            return cls()
        try:
            state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(state, dict):
            return cls()
        saved = ((state.get("stateful_callbacks") or {}).get(TOTALS) or {}).get("attributes")
        if isinstance(saved, dict):
            try:
                return cls(**{k: v for k, v in saved.items() if k in cls.__slots__})
            except (TypeError, ValueError):
                pass
        totals, last = cls(), 0
        for entry in state.get("log_history") or ():
            if not isinstance(entry, dict):
                continue
            step, loss = entry.get("step"), entry.get("loss")
            if isinstance(step, int) and isinstance(loss, (int, float)) and CALL_SUMMARY not in entry:
                totals.loss_sum += loss * (step - last)
                totals.loss_steps += step - last
                last = step
        return totals


def run_totals(transformers, start: Totals, trainer=None):
    """A stateful callback keeping :class:`Totals` (from ``start``, the resumed checkpoint's) in every checkpoint.

    Given the ``trainer``, it also keeps what the trainer holds between two logging steps in each
    checkpoint and puts it back when a run resumes from one (see the module docstring).
    """

    from transformers.trainer_callback import ExportableState

    class RunTotals(transformers.TrainerCallback, ExportableState):
        def __init__(self) -> None:
            self.start = start
            self.totals = Totals(**start.to_dict())
            self.began = time.time()
            self.first = self.step = self.last_logged = 0
            self.call: dict | None = None  # a resumed call's summary as the Trainer made it

        def state(self) -> dict:
            now = Totals(**self.totals.to_dict())
            now.runtime = self.start.runtime + (time.time() - self.began)
            now.timed_steps = self.start.timed_steps + (self.step - self.first)
            return {"args": {}, "attributes": now.to_dict()}

        def on_train_begin(self, args, state, control, **kwargs) -> None:
            self.began = time.time()
            self.first = self.step = state.global_step
            self.totals.calls = self.start.calls + 1
            self.last_logged = state.global_step - _restore(trainer, self.start)
            self.totals.pending_losses, self.totals.pending_steps = [], 0
            self.totals.pending_metrics = {}
            # a checkpoint saved before these sums existed has no entry, which the Trainer's save expects
            if isinstance(state.stateful_callbacks, dict):
                state.stateful_callbacks.setdefault(TOTALS, self.state())

        def on_step_end(self, args, state, control, **kwargs) -> None:
            self.step = state.global_step
            if control.should_save and trainer is not None:  # every process: the loss is gathered
                _pending(trainer, self.totals, state, logs=control.should_log)

        def on_log(self, args, state, control, logs=None, **kwargs) -> None:
            if logs and CALL_SUMMARY in logs and trainer is not None and (self.first or self.start.calls):
                self.call = dict(logs)  # the call's own figures (the Trainer returns this very dict)
                _whole_summary(logs, self.start, trainer, first_step=self.first)
            loss = (logs or {}).get("loss")
            if (
                isinstance(loss, (int, float))
                and CALL_SUMMARY not in logs
                and state.global_step > self.last_logged
            ):
                steps = state.global_step - self.last_logged
                self.totals.loss_sum += loss * steps
                self.totals.loss_steps += steps
                self.last_logged = state.global_step

    return RunTotals()


def _whole_summary(logs: dict, start: Totals, trainer, *, first_step: int) -> None:
    """Make the summary a resumed ``train()`` call logs (printed under the progress bar, sent to the reporters)
    say the whole run's ``train_loss``, runtime and rates, as the end record does, not the call's alone."""
    from types import SimpleNamespace

    call = SimpleNamespace(
        metrics=logs, global_step=trainer.state.global_step, training_loss=logs.get("train_loss")
    )
    if not isinstance(call.training_loss, (int, float)):
        return
    whole, _ = whole_run(
        start, call, first_step=first_step, samples_per_step=samples_per_step(trainer),
        rank=trainer.args.process_index, processes=trainer.args.world_size,
    )  # fmt: skip
    logs.update({k: whole[k] for k in ORDER if k in whole and k in logs and k not in ("total_flos", "epoch")})


def samples_per_step(trainer) -> float:
    """The examples an optimiser step takes, as transformers counts them for its rates: a whole batch over all
    processes under ``--max-steps``; else the examples of every epoch over the steps they take (an epoch's
    last step, or a dataset smaller than one batch, takes fewer than a batch)."""
    args = trainer.args
    batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
    try:
        examples = len(trainer.train_dataset)
    except TypeError:
        return batch
    if args.max_steps > 0 or not trainer.state.max_steps:
        return batch
    return examples * args.num_train_epochs / trainer.state.max_steps


def _pending(trainer, totals: Totals, state, *, logs: bool) -> None:
    """Into ``totals``: what ``trainer`` holds for its next log record as this step's checkpoint is saved
    (nothing when this step logs first, as the Trainer logs before it saves)."""
    totals.tokens = getattr(trainer, "_total_train_tokens", None)
    held = getattr(trainer, "_tr_loss", None)
    if logs or held is None:
        totals.pending_losses, totals.pending_steps, totals.pending_metrics = [], 0, {}
        return
    from transformers.trainer_pt_utils import nested_gather

    totals.pending_losses = nested_gather(held, trainer.args.parallel_mode).reshape(-1).tolist()  # by rank
    totals.pending_steps = state.global_step - trainer._globalstep_last_logged
    metrics = (getattr(trainer, "_metrics", None) or {}).get("train") or {}
    totals.pending_metrics = Totals(pending_metrics={k: list(v) for k, v in metrics.items()}).pending_metrics


def _restore(trainer, start: Totals) -> int:
    """Put back into ``trainer``, as a resumed run begins, what its checkpoint held for the next log record;
    the steps that record already covers (0 with nothing to put back)."""
    if trainer is None or getattr(trainer, "_tr_loss", None) is None:
        return 0
    if start.tokens is not None and hasattr(trainer, "_total_train_tokens"):
        trainer._total_train_tokens = start.tokens
    if not start.pending_steps:
        return 0
    trainer._tr_loss += start.pending_loss(trainer.args.process_index, trainer.args.world_size)
    trainer._globalstep_last_logged = trainer.state.global_step - start.pending_steps
    metrics = (getattr(trainer, "_metrics", None) or {}).get("train")
    if metrics is not None:
        for key, values in start.pending_metrics.items():
            metrics.setdefault(key, []).extend(values)
    return start.pending_steps


def whole_run(
    start: Totals, output, *, first_step: int, samples_per_step: float, rank: int = 0, processes: int = 1
) -> tuple[dict, int]:
    """``(metrics, train() calls)`` of the whole run: the last call's ``output`` (a ``TrainOutput``; the
    call started at ``first_step``; in process ``rank`` of ``processes``) added to the sums of the checkpoint
    it resumed from (``start``; empty for a fresh start).

    The other numbers of the call's metrics (``total_flos``, ``epoch``, memory) are kept: the
    Trainer's state carries them over checkpoints.
    """
    metrics = {k: v for k, v in output.metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    steps = int(output.global_step) - first_step  # trained in this call
    # the checkpoint's steps since its last log record: in the call's loss, which began with them, or (a call
    # that trained nothing: resumed from the last step) as the checkpoint holds them
    held = start.pending_loss(rank, processes)
    loss_sum = start.loss_sum + (float(output.training_loss) * steps if steps else held)
    loss_steps = start.loss_steps + start.pending_steps + steps
    # a TRL trainer's summary adds its numbers since the last record: a call that trained nothing, as the
    # checkpoint holds them
    if not steps:
        tail = {k: sum(v) / len(v) for k, v in start.pending_metrics.items() if v}
        metrics.update({k: v for k, v in tail.items() if k not in metrics})
    runtime = start.runtime + float(metrics.get("train_runtime", 0.0))
    timed = start.timed_steps + steps
    if loss_steps:
        metrics["train_loss"] = loss_sum / loss_steps
    else:
        metrics.pop("train_loss", None)
    metrics["train_runtime"] = round(runtime, 4)
    if runtime > 0:
        metrics["train_samples_per_second"] = round(timed * samples_per_step / runtime, 3)
        metrics["train_steps_per_second"] = round(timed / runtime, 3)
    first = [k for k in ORDER if k in metrics]  # as transformers orders them, whichever way they were made
    return {**{k: metrics[k] for k in first}, **metrics}, start.calls + 1


ORDER = (
    "train_runtime",
    "train_samples_per_second",
    "train_steps_per_second",
    "total_flos",
    "train_loss",
    "epoch",
)


__all__ = [
    "CALL_SUMMARY",
    "TOTALS",
    "Totals",
    "append_line",
    "cut_back",
    "end_record",
    "json_log",
    "read_log",
    "run_totals",
    "samples_per_step",
    "whole_run",
]
