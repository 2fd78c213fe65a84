"""Reading what a storyteller produced: a run folder, or a folder of ``{story_id}.txt`` files.

* a **run folder** (``storyreasoning tell-dataset --out``): ``manifest.json`` says who
  told the stories and how; ``records.jsonl`` holds one raw output per story id;
  stories in ``errors.jsonl`` without a record failed and count as missing. It is read
  with the run reader (:func:`storyreasoning.tell.run.load_run`: a line at a time) and its
  rule for damaged files: a damaged line is skipped with a warning naming its line, its
  story counts as missing, and the stories after it are read as usual (``damaged`` lists
  the lines);
* a **folder of text files**, one ``{story_id}.txt`` per story with the raw model
  output, as the original evaluation read them (no manifest; the folder name labels it).

Both give a :class:`RunOutputs`. Loading one says all that is wrong with it that can be
known without the texts (damaged lines, a file that cannot be read), but keeps none of the
texts: its ``outputs`` (:class:`OutputFiles`) know where each story's text is and read it
when it is asked for, as :func:`~.scoring.score_jobs` does a story at a time (a
:class:`StoredOutput`, read in the worker that scores it). The texts of a large run would
otherwise be its largest part held (20,000 stories: about 110 MB), and memory once taken
by them stays with the process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from errno import EACCES, EISDIR, ENOENT
from pathlib import Path

from ..errors import UsageError


@dataclass(frozen=True, slots=True)
class StoredOutput:
    """Where one story's raw output is: the whole file ``path`` (``line`` 0), or a line of a run's
    ``records.jsonl`` (``line``, 1-based, ``size`` bytes from ``offset``, without its newline)."""

    story_id: str
    path: Path
    line: int = 0
    offset: int = 0
    size: int = 0

    def read(self) -> str:
        """The text, as it is now; a file gone or changed since the run was loaded: one line naming it."""
        if not self.line:
            try:  # undecodable bytes replaced, as the original evaluation read them
                return self.path.read_text(encoding="utf-8", errors="replace")
            except OSError as exc:
                raise UsageError(
                    f"cannot read {self.path}: {exc.strerror} (it was there when the run was loaded); evaluate "
                    "again once the run's files stay in place"
                ) from None
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                raw = f.read(self.size)
        except OSError as exc:
            raise UsageError(f"cannot read {self.path} ({exc.strerror}); check its permissions") from None
        try:
            item = json.loads(raw.decode("utf-8"))
        except ValueError:
            item = None
        if (
            isinstance(item, dict)
            and item.get("story_id") == self.story_id
            and isinstance(item.get("raw"), str)
        ):
            return item["raw"]
        raise UsageError(
            f"{self.path} changed while it was evaluated: line {self.line} no longer holds story "
            f"{self.story_id}'s record (a tell-dataset at work on the run?); evaluate again once it is done"
        )


class OutputFiles(Mapping[str, str]):
    """A run's outputs by story id, each read from its file when it is asked for (never kept).

    ``where`` maps each story id to its record's ``(line, offset, size)`` in ``path`` (a
    ``records.jsonl``), or to None for a folder ``path`` of ``{story_id}.txt`` files.
    """

    def __init__(self, path: Path, where: dict[str, tuple[int, int, int] | None]) -> None:
        self.path = path
        self._where = where

    def stored(self, story_id: str) -> StoredOutput | None:
        """Where ``story_id``'s output is; None when the run has none."""
        if story_id not in self._where:
            return None
        place = self._where[story_id]
        if place is None:
            return StoredOutput(story_id, self.path / f"{story_id}.txt")
        return StoredOutput(story_id, self.path, *place)

    def __getitem__(self, story_id: str) -> str:
        stored = self.stored(story_id)
        if stored is None:
            raise KeyError(story_id)
        return stored.read()

    def __contains__(self, story_id: object) -> bool:
        return story_id in self._where

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def __repr__(self) -> str:
        return f"OutputFiles({str(self.path)!r}, {len(self)} outputs)"


@dataclass
class RunOutputs:
    """The raw outputs of one run, by story id, with what is known of how they were made.

    ``outputs``: as :func:`load_outputs` reads them, :class:`OutputFiles` (each text read when
    asked for); a caller's run made in memory may hold them in a dict."""

    path: Path
    label: str
    outputs: Mapping[str, str]
    manifest: dict = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # story id -> error message
    kind: str = "run"  # "run" | "texts"
    damaged: list[str] = field(default_factory=list)  # "records.jsonl line 7: not JSON (…)", passed over

    def stored(self, story_id: str) -> StoredOutput | str | None:
        """``story_id``'s output to score: where to read it (its text when the run holds its texts);
        None when the run has none."""
        if isinstance(self.outputs, OutputFiles):
            return self.outputs.stored(story_id)
        return self.outputs.get(story_id)

    def describe(self) -> dict:
        teller = self.manifest.get("teller", {})
        return {
            "path": str(self.path),
            "label": self.label,
            "kind": self.kind,
            "outputs": len(self.outputs),
            "failed": len(self.failed),
            "damaged_lines": list(self.damaged),
            "teller": teller,
            "sampling": self.manifest.get("sampling"),
            "dataset": self.manifest.get("dataset"),
        }


def _label(path: Path, manifest: dict) -> str:
    teller = manifest.get("teller") or {}
    model = teller.get("model")
    return f"{path.name} ({model})" if model and model not in path.name else path.name


def load_outputs(path: str | Path, *, label: str | None = None) -> RunOutputs:
    """The outputs in ``path``: a run folder or a folder of ``{story_id}.txt`` files."""
    from ..tell.run import MANIFEST, load_run

    path = Path(path)
    if not path.exists():
        raise UsageError(
            f"run {path} does not exist; give a tell-dataset --out folder or a folder of .txt outputs"
        )
    if not path.is_dir():
        raise UsageError(
            f"run {path} is a file; give a tell-dataset --out folder or a folder of {{story_id}}.txt files"
        )
    if (path / MANIFEST).is_file():
        run = load_run(path, fields=())  # damaged lines: a warning each, with its line number
        outputs = _record_lines(path, [record["story_id"] for record in run.records])
        failed = {
            sid: str(error.get("error", "")) for sid, error in run.failures.items() if sid not in outputs
        }
        damaged = [f"{bad.path.name} line {bad.line}: {bad.problem}" for bad in run.damaged]
        label = label or _label(path, run.manifest)
        return RunOutputs(path, label, outputs, run.manifest, failed, "run", damaged)
    texts = sorted(path.glob("*.txt"))
    if not texts:
        raise UsageError(
            f"{path} is neither a run folder (no manifest.json) nor a folder of {{story_id}}.txt outputs"
        )
    for file in texts:  # what reading them would find, said now, as when they were read here
        problem = _unreadable(file)
        if problem is not None:
            raise UsageError(f"cannot read {file}: {problem}")
    outputs = OutputFiles(path, dict.fromkeys(file.stem for file in texts))
    return RunOutputs(path, label or path.name, outputs, {}, {}, "texts")


def _unreadable(file: Path) -> str | None:
    """Why ``file`` cannot be read as a text (a folder, a link to nothing, no permission), as an
    ``OSError`` would say it; None when it can, as far as is known before it is read."""
    if file.is_file():
        return None if os.access(file, os.R_OK) else os.strerror(EACCES)
    if file.is_dir():
        return os.strerror(EISDIR)
    return os.strerror(ENOENT) if not file.exists() else "not a regular file"


def _record_lines(folder: Path, told: list[str]) -> OutputFiles:
    """Where each story of ``told`` (the stories :func:`~storyreasoning.tell.run.load_run` read)
    has its first record in ``folder``'s ``records.jsonl``: a second pass with the same reader, since
    ``load_run`` keeps no line's place (at 20,000 stories, about 0.3 s more than keeping the texts)."""
    from ..tell.run import RECORDS, RunLines, iter_lines

    records = RunLines(folder / RECORDS)
    wanted = set(told)
    where: dict[str, tuple[int, int, int]] = {}
    for number, item, raw in iter_lines(records.path, "record", records):
        story_id = item["story_id"]
        if story_id in wanted and story_id not in where:
            # ``end`` has just passed the line and its newline; a last line without one: not yet
            start = records.end if records.unterminated else records.end - len(raw) - 1
            where[story_id] = (number, start, len(raw))
    lost = [story_id for story_id in told if story_id not in where]
    if lost:
        raise UsageError(
            f"{records.path} changed while it was read: story {lost[0]}'s record is gone (a tell-dataset at "
            "work on the run?); evaluate again once it is done"
        )
    return OutputFiles(records.path, {story_id: where[story_id] for story_id in told})
