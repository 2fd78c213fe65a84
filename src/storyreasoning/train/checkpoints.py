"""Which checkpoint a training resumes from: the newest one that is whole.

transformers saves ``checkpoints/checkpoint-N`` file by file (weights, optimiser,
scheduler, random states) and ``trainer_state.json`` last. A run stopped while saving
leaves a checkpoint without ``trainer_state.json`` (*unfinished*); a full disk, a copy cut
short or a damaged disk can leave one whose files are not whole (*damaged*). Either would
stop the resume deep in the Trainer (a JSON or zip error, a traceback), so before
resuming every file of a checkpoint is checked, cheaply (headers and directories, not
the data):

* every ``.json`` file parses (``trainer_state.json`` must hold an object);
* every ``.safetensors`` file is as long as its header says: 8 bytes of header length,
  the JSON header, then exactly the bytes its tensors' offsets end at;
* every ``.pt``, ``.pth`` and ``.bin`` file (``torch.save`` writes zip archives) has a
  readable zip central directory (at the end of the file, so the first thing a cut
  loses) whose members lie within the file;
* every file a resume reads is there (:data:`EXPECTED`: the weights, the optimiser's and the
  schedule's states, the random states): transformers resumes without a missing one in
  silence, a run that no longer goes on as it would have.

:func:`newest_usable` gives the newest checkpoint that passes, with what is wrong with
each newer one, so the job can say it in one line and resume from the one before.
"""

from __future__ import annotations

import fnmatch
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

PREFIX = "checkpoint-"
STATE = "trainer_state.json"
TORCH_SUFFIXES = (".pt", ".pth", ".bin")


def checkpoint_step(path: Path) -> int | None:
    """N of a ``checkpoint-N`` folder name, or None for any other name."""
    name = path.name
    return int(name[len(PREFIX) :]) if name.startswith(PREFIX) and name[len(PREFIX) :].isdigit() else None


def checkpoints(folder: Path) -> list[Path]:
    """The ``checkpoint-N`` folders in ``folder``, newest (highest N) first; other names are ignored."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=lambda p: checkpoint_step(p), reverse=True)


def unfinished(path: Path) -> bool:
    """True for a checkpoint whose save never finished (no ``trainer_state.json``, which is written last)."""
    return not (path / STATE).is_file()


#: What every checkpoint of a run holds besides ``trainer_state.json`` (the Trainer saves them all: we never
#: set ``save_only_model``): ``(what is said when none is there, the names that do)``, a name a pattern.
#: DeepSpeed keeps the optimiser (and may keep the schedule and the weights) in its ``global_step*``
#: folder; FSDP keeps its shards in ``*optimizer*`` and ``pytorch_model_fsdp*``.
EXPECTED = (
    ("the weights (model.safetensors or adapter_model.safetensors) are missing",
     ("*model*.safetensors", "*model*.bin", "pytorch_model_fsdp*", "global_step*")),
    ("optimizer.pt (the optimizer's state) is missing", ("optimizer.pt", "optimizer.bin", "*optimizer*", "global_step*")),
    ("scheduler.pt (the learning-rate schedule) is missing", ("scheduler.pt", "global_step*")),
    ("rng_state.pth (the random states) is missing", ("rng_state.pth", "rng_state_*.pth")),
)  # fmt: skip


def missing(path: Path) -> str:
    """What of :data:`EXPECTED` the checkpoint ``path`` lacks first, as :func:`problem` says it, or ""."""
    names = [entry.name for entry in path.iterdir()]
    for said, patterns in EXPECTED:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names for pattern in patterns):
            return said
    return ""


def problem(path: Path) -> str:
    """What makes the checkpoint ``path`` unusable, in a few words naming the file, or "" when it is whole."""
    if unfinished(path):
        return f"unfinished: no {STATE}, the run stopped while saving it"
    try:
        files = sorted(p for p in path.rglob("*") if p.is_file())
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    for file in files:
        name = file.relative_to(path).as_posix()
        try:
            if file.suffix == ".json":
                found = _json_problem(file)
            elif file.suffix == ".safetensors":
                found = _safetensors_problem(file)
            elif file.suffix in TORCH_SUFFIXES:
                found = _archive_problem(file)
            else:
                found = ""
        except OSError as exc:
            found = f"unreadable ({exc.strerror or type(exc).__name__})"
        if found:
            return f"{name} {found}"
    try:
        return missing(path)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"


def _json_problem(file: Path) -> str:
    try:
        data = json.loads(file.read_bytes())
    except (UnicodeDecodeError, ValueError):
        return "is not whole JSON"
    if file.name == STATE and not isinstance(data, dict):
        return "does not hold a JSON object"
    return ""


def _safetensors_problem(file: Path) -> str:
    size = file.stat().st_size
    with file.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"is cut short ({size} bytes)"
        length = int.from_bytes(head, "little")
        if length > size - 8:
            return f"is cut short ({size} bytes, its header alone says {8 + length})"
        try:
            header = json.loads(f.read(length))
            ends = [int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"]
        except (UnicodeDecodeError, ValueError, TypeError, KeyError, IndexError, AttributeError):
            return "has a damaged header"
    expected = 8 + length + max(ends, default=0)
    if size < expected:
        return f"is cut short ({size} of {expected} bytes)"
    if size > expected:
        return f"is longer than its header says ({size}, not {expected} bytes)"
    return ""


def _archive_problem(file: Path) -> str:
    size = file.stat().st_size
    try:
        with zipfile.ZipFile(file) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, EOFError, ValueError):
        return f"is cut short or damaged (no zip directory at the end of its {size} bytes)"
    for member in members:
        if member.header_offset + member.compress_size > size:
            return f"is cut short (its member {member.filename} runs past the end)"
    return ""


@dataclass
class Skipped:
    """A checkpoint newer than the one resumed from, and why it is not (:func:`problem`)."""

    path: Path
    problem: str

    @property
    def unfinished(self) -> bool:
        return self.problem.startswith("unfinished")


def newest_usable(folder: Path) -> tuple[Path | None, list[Skipped]]:
    """``(newest whole checkpoint in folder or None, the newer ones skipped, newest first)``."""
    skipped: list[Skipped] = []
    for path in checkpoints(folder):
        found = problem(path)
        if not found:
            return path, skipped
        skipped.append(Skipped(path, found))
    return None, skipped


__all__ = [
    "EXPECTED",
    "Skipped",
    "checkpoint_step",
    "checkpoints",
    "missing",
    "newest_usable",
    "problem",
    "unfinished",
]
