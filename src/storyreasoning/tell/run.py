"""Batch runs: tell every story of a dataset into a run folder, resumably.

A run folder holds::

    manifest.json          the teller (backend, model, revision, pixel budget, versions), sampling,
                           prompt, dataset and split, and progress counts
    records.jsonl          one JSON object per finished story: story_id, raw output, the parse
                           (the ``check --json`` shape), well_structured, meta (timing, tokens)
    errors.jsonl           the stories whose last try failed and that have no record yet (one
                           line each, with any partial output); told again on resume
    records.corrupt.jsonl  damaged lines set aside by a resume (see below); errors.corrupt.jsonl
                           likewise

**Several candidates a story** (``tell-dataset --samples N``, N > 1): the manifest says
``"samples": N`` and each story's one record holds candidate 0 as above (``raw``,
``parse``, ``well_structured``, ``meta``, so every reader of one output a story reads it
unchanged) and candidates 1 to N-1 in ``other_samples``, a list of objects with the same
four fields (:func:`record_samples` gives all N). The record is written once all N are
told, so a story is done only with all its candidates. With N = 1 nothing of this
appears: the run is the same as ever.

Records are appended and flushed to disk one by one as stories finish. On restart the
ids already in ``records.jsonl`` are skipped, so after any number of crashes or Ctrl-C
every story ends up exactly once; ``errors.jsonl`` is rewritten (atomically) to the
failures still unresolved. The folder is what ``evaluate`` and the studio read.

**One writer.** A run holds its folder for its whole life (:func:`storyreasoning.files.lock_folder`):
a second ``tell-dataset`` into the same ``--out`` meanwhile is refused in one line naming
the first one's pid. A ``records.jsonl`` that nonetheless holds a story twice (written by
two runs at once before there was a lock) keeps its first record on resume, and the run
says how many it dropped.

**The same dataset.** A run resumes only from the dataset it was begun with. A hub id is
recorded as given; a local dataset also by its resolved ``path`` and a ``fingerprint`` of
its content that costs no image read: the number of stories, a sha256 of their ids in
order, and a sha256 of the names and sizes of its data files (parquet and Arrow shards).
So ``./ds``, ``ds`` and ``/abs/ds`` are one dataset, and another ``ds`` in another
folder is another. A manifest of an older version (source and split only) is resumed when
its source, read from the current folder, is the same path and every story it recorded is
in the dataset. A refusal names each value that differs, then and now.

**Damaged run files.** Every reader of ``records.jsonl`` and ``errors.jsonl`` reads them
with :func:`iter_lines` (a line at a time: a run of many stories is never held whole; :func:`read_lines`
when a list is wanted), under one rule:

* an unfinished last line (no newline: a crash mid-write, or a run still being written)
  is not a record and is passed over in silence; a resume cuts it off (or, when it is
  a whole record that only lacks its newline, ends it);
* a complete line that is not a record (not UTF-8, not JSON, not an object, no
  ``story_id``, a record without its ``raw`` text) is damaged. It is never dropped in
  silence: readers (``evaluate``, the studio, pairs) skip it with a warning naming the
  file and line number, so its story counts as not told; a resume (``tell-dataset``
  run again) moves it, with its line number and the problem, to
  ``records.corrupt.jsonl`` and tells that story again.

The other jobs that resume from JSON lines (``evaluate judge``'s judgements, the
builder's ``skipped.jsonl`` and ``errors.jsonl``) use the same reader and the same repair
(:func:`repair_lines`), and every line goes through one appender
(:func:`storyreasoning.files.append_json_line`), which starts a record on a new line when
the file ends in an unfinished one, so a record is never glued onto a fragment.

A batch run against a server stops early when the server is down: at once when it
cannot be reached before the first story (:meth:`Teller.check`), and after
:data:`STOP_AFTER` stories in a row failed at the endpoint (``TellError.at_endpoint``);
what was told is kept and the same command continues the run.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import platform
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..data.identity import dataset_changes, dataset_record, value_changes
from ..errors import StoryReasoningError, UsageError
from ..files import append_json_line, local_path, lock_folder, open_atomic, write_json_atomic
from ..settings import shown, then_now
from .base import Prompt, Sampling, Story, Teller, TellError

MANIFEST = "manifest.json"
RECORDS = "records.jsonl"
ERRORS = "errors.jsonl"
STOP_AFTER = 3  # stories in a row failing at the endpoint before a run stops

# Fields of the manifest that must match for a run to be resumed.
_IDENTITY = ("teller", "sampling", "prompt", "dataset", "samples")
# the same model may move servers (one endpoint, or a fleet of them) or decode otherwise (--cache, --compile, ...)
_VOLATILE_TELLER = ("versions", "device", "commit", "endpoint", "endpoints", "decoding")
_NAMES = {"samples": "number of samples"}
# the option that gives each recorded value: a refusal to resume names what to give again
_FLAGS = {
    "sampling": {"temperature": "--temperature", "top_p": "--top-p", "max_new_tokens": "--max-new-tokens",
                 "seed": "--seed"},
    "prompt": {"text": "--prompt", "system": "--system-prompt", "order": "--order"},
}  # fmt: skip

log = logging.getLogger("storyreasoning.run")


def _warn(line: str) -> None:
    """How readers report a damaged line by default: a warning (printed on stderr when nothing else is set up)."""
    log.warning(line)


@dataclass
class RunSummary:
    total: int
    skipped: int  # already done before this invocation
    done: int  # finished in this invocation
    failed: int
    well_structured: int  # among those finished in this invocation

    def line(self) -> str:
        return (
            f"{self.done} {'story' if self.done == 1 else 'stories'} told ({self.well_structured} well-structured), "
            f"{self.failed} failed, "
            f"{self.skipped} already done; {self.skipped + self.done} of {self.total} in the run"
        )


# -- reading run files: one reader, one rule --------------------------------------------------


@dataclass(frozen=True)
class Damaged:
    """A complete line of a run file that is not what the file holds."""

    path: Path
    line: int  # 1-based
    problem: str  # "not JSON (…)", "without a story_id", …
    text: str  # the line as it was (undecodable bytes replaced)

    def where(self) -> str:
        return f"{self.path} line {self.line}"


@dataclass
class RunLines:
    """What :func:`read_lines` found in a ``records.jsonl`` or ``errors.jsonl``."""

    path: Path
    entries: list[tuple[int, dict, bytes]] = field(default_factory=list)  # line number, object, its bytes
    damaged: list[Damaged] = field(default_factory=list)
    torn: bool = False  # an unfinished last line that is not a record
    unterminated: bool = False  # the last entry is whole but lacks its newline
    end: int = 0  # the size of the file up to its last newline

    @property
    def items(self) -> list[dict]:
        return [item for _, item, _ in self.entries]


def set_aside_path(path: Path) -> Path:
    """Where damaged lines of ``path`` are moved: ``records.jsonl`` -> ``records.corrupt.jsonl``."""
    return path.with_name(f"{path.stem}.corrupt{path.suffix}")


def _problem(item: object, kind: str) -> str | None:
    """What is wrong with a parsed line of a ``kind`` file ("record": it needs its ``raw`` text;
    anything else, "error" say: an object with a ``story_id``); None when nothing."""
    if not isinstance(item, dict):
        return f"not a JSON object ({type(item).__name__})"
    story_id = item.get("story_id")
    if not isinstance(story_id, str) or not story_id:
        return "without a story_id"
    if kind == "record" and not isinstance(item.get("raw"), str):
        return "a record without its raw output"
    return None


def _parse(raw: bytes, kind: str) -> tuple[dict | None, str | None]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    try:
        item = json.loads(text)
    except ValueError as exc:
        detail = f"{exc.msg}: column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        return None, f"not JSON ({detail})"
    problem = _problem(item, kind)
    return (None, problem) if problem else (item, None)


def iter_lines(
    path: str | Path, kind: str = "record", found: RunLines | None = None
) -> Iterator[tuple[int, dict, bytes]]:
    """The entries of a run's ``records.jsonl`` (``kind="record"``) or ``errors.jsonl`` (``"error"``) one
    at a time, in file order: line number, object, its bytes. The file is only read, a line at a time;
    a missing file has none. What else is in it goes into ``found`` (when given) as it is read: the
    damaged lines, a torn or unterminated last line, ``end``; its ``entries`` are left to the caller."""
    path = Path(path)
    found = found if found is not None else RunLines(path)
    try:
        with path.open("rb") as f:
            for number, raw in enumerate(f, start=1):
                if not raw.endswith(b"\n"):  # the last line, unfinished
                    item = _parse(raw, kind)[0] if raw.strip() else None
                    if item is None:
                        found.torn = True  # a crash mid-write, or a writer at work: never a record
                    else:
                        found.unterminated = True
                        yield number, item, raw
                    return
                found.end += len(raw)
                raw = raw[:-1]
                if not raw.strip():
                    continue
                item, problem = _parse(raw, kind)
                if item is None:
                    found.damaged.append(Damaged(path, number, str(problem), raw.decode("utf-8", "replace")))
                else:
                    yield number, item, raw
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UsageError(f"cannot read {path} ({exc.strerror}); check its permissions") from None


def read_lines(path: str | Path, kind: str = "record") -> RunLines:
    """:func:`iter_lines` as one list (``entries``), with what is damaged in the file; only read."""
    found = RunLines(Path(path))
    found.entries = list(iter_lines(path, kind, found))
    return found


def _rewrite(lines: RunLines, keep: Iterable[bytes], say: Callable[[str], None], fate: str) -> None:
    """Rewrite ``lines.path`` to ``keep`` (atomically, as it comes: it may be read from the file itself;
    removed when nothing is kept), its damaged lines first moved to the side file."""
    path = lines.path
    if lines.damaged:
        aside = set_aside_path(path)
        last = len(lines.damaged) - 1
        for k, bad in enumerate(lines.damaged):
            moved = {"line": bad.line, "problem": bad.problem, "text": bad.text, "set_aside": _now()}
            append_json_line(aside, moved, fsync=k == last)  # one fsync makes all of them durable
    keep = iter(keep)
    first = next(keep, None)
    if first is None:
        path.unlink(missing_ok=True)
    else:
        with open_atomic(path, "wb") as f:
            f.write(first + b"\n")
            for raw in keep:
                f.write(raw + b"\n")
    for bad in lines.damaged:
        say(f"{bad.where()} is {bad.problem}; moved it to {set_aside_path(path)}{fate}")


def _repair(
    path: Path,
    kind: str,
    say: Callable[[str], None],
    fate: str,
    unique: bool,
    take: Callable[[tuple[int, dict, bytes]], object],
) -> RunLines:
    """:func:`repair_lines`, each entry kept given to ``take`` as it is read (none held here). The file
    is rewritten only when a line is damaged or repeated, streamed from a second read of it."""
    found = RunLines(Path(path))
    seen: set[str] = set()
    repeated: set[int] = set()  # the line numbers of a story's lines after its first
    for entry in iter_lines(path, kind, found):
        if unique:
            story_id = entry[1]["story_id"]
            if story_id in seen:
                repeated.add(entry[0])
                continue
            seen.add(story_id)
        take(entry)
    if found.damaged or repeated:
        again = iter_lines(path, kind)  # damaged lines and a torn last one are not yielded
        _rewrite(found, (raw for number, _, raw in again if number not in repeated), say, fate)
        found.damaged, found.torn, found.unterminated = [], False, False
        if repeated:
            say(
                f"{path} held {len(repeated)} more lines of stories it already had (two jobs wrote to it at "
                f"once); kept the first line of each of its {len(seen)} stories and dropped the "
                f"{len(repeated)} others"
            )
    elif found.torn:
        with path.open("rb+") as f:
            f.truncate(found.end)
        found.torn = False
    elif found.unterminated:
        with path.open("ab") as f:
            f.write(b"\n")
        found.unterminated = False
    return found


def repair_lines(
    path: Path,
    kind: str = "record",
    say: Callable[[str], None] = _warn,
    *,
    fate: str = ", its story is told again",
    unique: bool = False,
) -> RunLines:
    """Read ``path`` (see :func:`read_lines`) and repair it for a job that resumes from it and appends
    to it (the one writer, holding its folder): a torn last line is cut off, a whole last entry
    only lacking its newline ends it, damaged lines are moved to the ``.corrupt`` side file (each
    said through ``say``, with ``fate``: what becomes of its story); with ``unique``, a story's
    lines after its first are dropped (said in one line). What is kept, as read."""
    entries: list[tuple[int, dict, bytes]] = []
    lines = _repair(Path(path), kind, say, fate, unique, entries.append)
    lines.entries = entries
    return lines


def read_done(
    path: Path, say: Callable[[str], None] = _warn, *, fate: str = ", its story is told again"
) -> set[str]:
    """Story ids recorded in ``records.jsonl``, after repairing it for a resume (:func:`repair_lines`):
    a torn last line is cut off, damaged lines are moved to ``records.corrupt.jsonl`` (said through
    ``say``) so that their stories are told again, and a story recorded twice keeps its first record.
    Only the ids are kept, the file read a line at a time."""
    done: set[str] = set()
    _repair(Path(path), "record", say, fate, True, lambda entry: done.add(entry[1]["story_id"]))
    return done


def settle_errors(folder: Path, done: set[str], say: Callable[[str], None] = _warn) -> None:
    """Keep in ``errors.jsonl`` only the failures still unresolved: each story's latest failure, unless
    the story has a record now (rewritten atomically; removed when none is left)."""
    path = Path(folder) / ERRORS
    lines = read_lines(path, "error")
    latest: dict[str, bytes] = {}
    for _, item, raw in lines.entries:
        latest.pop(item["story_id"], None)
        latest[item["story_id"]] = raw  # in the order of each story's latest failure
    keep = [raw for story_id, raw in latest.items() if story_id not in done]
    if lines.damaged or lines.torn or keep != [raw for _, _, raw in lines.entries]:
        _rewrite(lines, keep, say, "")


def _served(teller: dict) -> bool:
    """Whether a teller's description is of a server's (``endpoint`` or ``endpoints``): its model is the name
    the server lists, not a folder here (``vllm serve ./m`` lists ``./m`` whatever folder this is)."""
    return "endpoint" in teller or "endpoints" in teller


def _teller_record(described: dict) -> dict:
    """A teller's description as the manifest records it: a model given as a local folder also by its
    resolved ``model_path`` (``./m`` and ``m`` are one model; another folder's ``m`` another). A server's
    model is a name, as the server lists it, even when a folder here has that name."""
    path = None if _served(described) else local_path(described.get("model"))
    return {**described, "model_path": str(path)} if path is not None else described


def _identity(manifest: dict) -> dict:
    """The fields that must match for a run to be resumed (the dataset apart: :func:`dataset_changes`).
    A local model is compared by its resolved path (read from the current folder for a manifest of an
    older version, which recorded the model as typed)."""
    out = {key: manifest.get(key) for key in _IDENTITY if key != "dataset"}
    teller = dict(out.get("teller") or {})
    served = _served(teller)
    for key in _VOLATILE_TELLER:
        teller.pop(key, None)
    path = teller.pop("model_path", None) or local_path(teller.get("model"))
    if served:  # a server's model name (a version that resolved it here recorded a model_path: not used)
        path = None
    if path is not None:
        teller["model"] = str(path)
    out["teller"] = teller
    out["samples"] = out.get("samples") or 1  # a run from before --samples has one a story
    return out


SAMPLE_FIELDS = ("raw", "parse", "well_structured", "meta")


def record_samples(record: dict) -> list[dict]:
    """Every candidate of a record (``raw``, ``parse``, ``well_structured``, ``meta``): the record's own,
    then its ``other_samples``; one for a record of a one-sample run. A damaged entry (no ``raw``
    text) is left out."""
    first = {key: record.get(key) for key in SAMPLE_FIELDS}
    others = record.get("other_samples")
    others = others if isinstance(others, list) else []
    return [first, *(o for o in others if isinstance(o, dict) and isinstance(o.get("raw"), str))]


def read_manifest(folder: str | Path) -> dict:
    """A run folder's ``manifest.json``, or one clear error (not a run folder, unreadable, damaged)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise UsageError(
            f"{folder} is not a run folder (no {MANIFEST}); make one with storyreasoning tell-dataset"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path} ({exc.strerror}); check its permissions") from None
    except UnicodeDecodeError:
        text = ""
    try:
        manifest = json.loads(text)
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict):
        raise UsageError(
            f"{path} is damaged (not a JSON object); restore it, or delete it and run the same "
            "tell-dataset command again to write a new one (the records are kept)"
        )
    return manifest


def run_dataset(
    manifest: dict, dataset: str | None = None, split: str | None = None
) -> tuple[str, str | None]:
    """The dataset (source, split) a run's stories come from, for the commands that read a run
    (evaluate, evaluate judge): ``dataset`` and ``split`` when given; else the run's own. A local
    dataset is found by the path the run resolved (its source as typed was relative to the folder
    the run was started in), as typed when that path is gone. The run's split holds unless another
    dataset is given. One clear error when neither names a dataset.
    """
    from ..data.sources import recorded_source

    recorded = manifest.get("dataset")
    recorded = recorded if isinstance(recorded, dict) else {}
    path, typed = recorded.get("path"), recorded.get("source")
    source = dataset or recorded_source(manifest)
    if not source or not isinstance(source, str):
        raise UsageError(
            "which dataset were these stories told from? give --dataset (for example daniel3303/StoryReasoning)"
        )
    if split is None and (not dataset or dataset in (typed, path)):
        split = recorded.get("split") if isinstance(recorded.get("split"), str) else None
    return source, split


def _writable_folder(folder: Path, make: bool) -> None:
    """Raise OSError unless files can be made in ``folder`` (made first when ``make``; else the
    nearest folder that exists above it is tried, and nothing is left behind)."""
    if make:
        folder.mkdir(parents=True, exist_ok=True)
    else:
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise NotADirectoryError(20, "a file is in the way", str(folder))
    tempfile.TemporaryFile(dir=folder).close()


def check_run_folder(out: str | Path, *, make: bool = False) -> Path:
    """``out`` as a run folder tell-dataset can write (made when ``make``): one clear error when it
    is a file or cannot be written, so that it is said before any story is told."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(
            f"--out {out} is a file; tell-dataset writes a run folder there, give a folder (new, or a run to resume)"
        )
    try:
        _writable_folder(out, make)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename and str(exc.filename) != str(out) else ""
        raise UsageError(
            f"cannot write the folder {out} ({where}{exc.strerror}); choose another --out or fix its permissions"
        ) from None
    return out


def check_output_file(path: str | Path, *, also: tuple[Path, ...] = ()) -> Path:
    """``path`` (and the side files ``also``) as files that can be written: one clear error when one is
    a folder or cannot be written; nothing is written (checked before the work starts)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"--out {path} is a folder; give a file name, e.g. --out {path / 'story.txt'}")
    for target in also:
        if target.is_dir():
            raise UsageError(
                f"--out {path} writes {target}, which is a folder; move it or choose another --out"
            )
    try:
        _writable_folder(path.parent, make=False)
        for target in (path, *also):
            if target.exists():
                with target.open("ab"):
                    pass
    except OSError as exc:
        where = exc.filename or path.parent
        raise UsageError(
            f"cannot write --out {path} ({where}: {exc.strerror}); choose another --out or fix the permissions"
        ) from None
    return path


def versions() -> dict:
    from .. import __version__

    out = {"storyreasoning": __version__, "python": platform.python_version()}
    for name in ("transformers", "torch", "datasets"):
        module = sys.modules.get(name)
        if module is not None:
            out[name] = getattr(module, "__version__", None)
    return out


class EndpointDown(StoryReasoningError):
    """A batch run stopped because its server is down, hanging or refusing it; what was told is kept."""


def tell_dataset(
    stories,
    teller: Teller,
    out: str | Path,
    *,
    prompt: Prompt = Prompt(),
    sampling: Sampling = Sampling(),
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    say: Callable[[str], None] = _warn,
    samples: int = 1,
) -> RunSummary:
    """Tell every story of ``stories`` (a :class:`~storyreasoning.data.StoryDataset`) into ``out``;
    ``samples`` candidates of each (more than one needs a teller with ``tell_samples``: a server, or
    local weights with sampling on).

    Resumes a run already in ``out`` (the same options only); ``say`` hears about damaged lines
    set aside. Raises :class:`EndpointDown` when the teller cannot reach its server before the
    first story, or after :data:`STOP_AFTER` stories in a row failed at the endpoint.
    """
    out = Path(out)
    check_run_folder(out)  # a file, or a folder that cannot be written: said before anything is made
    if samples < 1:
        raise UsageError(f"--samples must be at least 1, got {samples}")
    if samples > 1 and not hasattr(teller, "tell_samples"):
        raise UsageError(
            f"--samples {samples} needs a server (--endpoint) or local weights (--model), which give {samples} "
            f"candidates of one request; the {teller.backend} teller tells one a story: for several, run "
            "tell-dataset once per --seed into separate --out folders (train pairs takes them all)"
        )
    with lock_folder(out, refuse=UsageError):  # the one writer of the run, for its whole life
        manifest = {
            "teller": _teller_record(teller.describe()),
            "sampling": sampling.to_dict(),
            "prompt": {"text": prompt.text, "system": prompt.system, "order": prompt.order},
            "dataset": dataset_record(stories),
        }
        if samples > 1:
            manifest["samples"] = samples
        manifest_path = out / MANIFEST
        old = read_manifest(out) if manifest_path.exists() else None
        if old is not None:
            changed = _run_changes(old, manifest, out, stories)
            if changed:
                names = ", ".join(_NAMES.get(key, key) for key in changed)
                said = "; ".join(phrase for phrases in changed.values() for phrase in phrases)
                if _holds_a_record(out / RECORDS):
                    raise UsageError(
                        f"{out} holds a run with another {names} ({said}); resume it with the same options "
                        "or write to another --out folder"
                    )
                # nothing told to mix with (every story failed, or none finished): the corrected command goes on
                failed = len({item["story_id"] for _, item, _ in iter_lines(out / ERRORS, "error")})
                (out / ERRORS).unlink(missing_ok=True)
                dropped = f"; its {failed} failures are dropped" if failed else ""
                say(
                    f"{out} held no story told, with another {names} ({said}){dropped}; begun again with these"
                )
                old = None
        if old is not None:
            manifest = {**old, **manifest}
        else:
            manifest["created"] = _now()
        manifest["versions"] = versions()

        ids = stories.ids()
        if limit is not None:
            ids = ids[:limit]
        done = read_done(out / RECORDS, say)
        todo = [i for i, sid in enumerate(ids) if sid not in done]
        seen: set[str] = set()
        todo = [i for i in todo if not (ids[i] in seen or seen.add(ids[i]))]  # a repeated id is told once
        skipped = len(ids) - len(todo)
        if todo:
            try:
                check = getattr(teller, "check", None)  # Teller.check; a duck-typed teller may have none
                if check is not None:
                    check()  # a server that is down stops the run here, before any story
            except TellError as exc:
                if not exc.at_endpoint:
                    raise
                raise EndpointDown(
                    f"{exc}; nothing was told{_kept(skipped, len(ids), out)}, run the same command again once "
                    "the server is up"
                ) from None
        check_run_folder(out, make=True)
        manifest.update(total=len(ids), updated=_now())
        write_json_atomic(manifest_path, manifest)
        settle_errors(out, done, say)
        if on_start:
            on_start(len(ids), skipped)

        drawn: dict[str, object] = {}  # the dataset's samples of the stories in flight

        def lazy() -> Iterator[Story]:
            for i in todo:
                sample = stories[i]
                drawn[sample.story_id] = sample
                yield Story(sample.story_id, sample.frames)

        summary = RunSummary(total=len(ids), skipped=skipped, done=0, failed=0, well_structured=0)
        appended: set[str] = set()  # the stories recorded by this run (none of them in done)
        many = {"samples": samples} if samples > 1 else {}
        results = teller.tell_many(lazy(), prompt=prompt, sampling=sampling, **many)
        in_a_row = 0  # stories failing at the endpoint, one after the other
        same_said = False  # candidates all the same text: said once
        try:
            for story, result in results:
                sample = drawn.pop(story.story_id, None)
                if isinstance(result, TellError):
                    summary.failed += 1
                    append_json_line(
                        out / ERRORS,
                        {
                            "story_id": story.story_id,
                            "error": str(result),
                            "partial": result.partial,
                            "at": _now(),
                        },
                    )
                    in_a_row = in_a_row + 1 if getattr(result, "at_endpoint", False) else 0
                else:
                    in_a_row = 0
                    try:
                        sizes = [frame.size() for frame in sample.frames] if sample is not None else None
                    except UsageError:
                        sizes = None
                    tellings = result if isinstance(result, list) else [result]
                    entries = []
                    for telling in tellings:
                        verdict = telling.validate(n_images=len(story.images), image_sizes=sizes)
                        entries.append(
                            {
                                "raw": telling.raw,
                                "parse": telling.to_dict(verdict),
                                "well_structured": verdict.well_structured,
                                "meta": telling.meta,
                            }
                        )
                    record = {"story_id": story.story_id, **entries[0]}
                    if len(entries) > 1:
                        record["other_samples"] = entries[1:]
                        same = sampling.temperature > 0 and len({e["raw"] for e in entries}) == 1
                        if same and not same_said:
                            same_said = True
                            say(_same_candidates(story.story_id, len(entries), sampling, teller))
                    append_json_line(out / RECORDS, record)
                    appended.add(story.story_id)
                    summary.done += 1
                    summary.well_structured += int(bool(entries[0]["well_structured"]))  # candidate 0's
                if progress:
                    progress(1)
                if in_a_row >= STOP_AFTER:
                    # the server itself is failing: stop instead of failing every story the same way
                    raise EndpointDown(
                        f"stopped after {in_a_row} stories in a row failed at the endpoint ({result})"
                        f"{_kept(skipped + summary.done, len(ids), out, always=True)}; run the same command again "
                        "to continue once the server is up"
                    )
        finally:
            with contextlib.suppress(Exception):
                results.close()  # ends the requests still in flight (a generator: its clean-up runs now)
            told = done | appended  # what records.jsonl holds now (this run its one writer): not read again
            settle_errors(out, told, say)
            manifest.update(updated=_now(), finished=len(told))
            write_json_atomic(manifest_path, manifest)
        return summary


def _holds_a_record(path: Path) -> bool:
    """Whether a ``records.jsonl`` holds a story told (a damaged line is none)."""
    with contextlib.closing(iter_lines(path, "record")) as lines:
        return next(lines, None) is not None


def _same_candidates(story_id: str, n: int, sampling: Sampling, teller: Teller) -> str:
    """The warning for a story whose ``n`` candidates came out as one text although sampling is on."""
    why = (
        "the server decodes greedily (transformers serve samples only as the model's generation_config.json "
        "says: do_sample, top_k; vLLM samples as asked)"
        if teller.backend == "openai"
        else "the model decodes greedily (a top_k of 1 in its generation_config.json)"
    )
    return (
        f"warning: the {n} candidates of story {story_id} are the same text at --temperature "
        f"{sampling.temperature:g}; {why}, so candidates of one story may never differ: preference pairs "
        "need ones that do"
    )


def _run_changes(old: dict, manifest: dict, out: Path, stories) -> dict[str, list[str]]:
    """What differs between a run's manifest and the one wanted, by field: phrases naming each value
    then and now (none for a run that may be resumed)."""
    then, now = _identity(old), _identity(manifest)
    found: dict[str, list[str]] = {}
    for key in _IDENTITY:
        if key == "dataset":
            phrases = dataset_changes(
                old.get("dataset"),
                manifest["dataset"],
                recorded=lambda: (item["story_id"] for _, item, _ in iter_lines(out / RECORDS, "record")),
                ids=stories.ids,
            )
        elif key == "samples":
            phrases = [] if then[key] == now[key] else [then_now("--samples", then[key], now[key])]
        elif isinstance(then[key], dict) and isinstance(now[key], dict) and key in _FLAGS:
            flags = _FLAGS[key]
            phrases = [
                phrase
                for name in [*then[key], *(k for k in now[key] if k not in then[key])]
                for phrase in value_changes(then[key].get(name), now[key].get(name), flags.get(name, name))
            ]
        else:
            phrases = value_changes(then[key], now[key], "")
            if then[key] != now[key] and not phrases:
                phrases = [f"{shown(then[key])} then, {shown(now[key])} now"]
        if phrases:
            found[key] = phrases
    return found


def _kept(told: int, total: int, out: Path, *, always: bool = False) -> str:
    """``; 5 of 36 stories are in runs/x`` (nothing when none are and ``always`` is False)."""
    if not told and not always:
        return ""
    return f"; {told} of {total} stories are in {out}"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunFiles:
    """What a run folder holds, as readers see it: the manifest, the records, the failures still
    unresolved (the latest per story without a record) and the damaged lines passed over."""

    manifest: dict
    records: list[dict]
    failures: dict[str, dict]
    damaged: list[Damaged]


def load_run(
    folder: str | Path, *, say: Callable[[str], None] | None = _warn, fields: tuple[str, ...] | None = None
) -> RunFiles:
    """Read a run folder (only read: a run may be in progress); each damaged line is reported
    through ``say`` (by default a warning on stderr), with its file and line number. With ``fields``
    each record keeps only those and its ``story_id`` (``("raw",)``: what a scorer needs of a large
    run, whose whole records are never held; the file is read a line at a time)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    records = RunLines(folder / RECORDS)
    errors = read_lines(folder / ERRORS, "error")
    firsts: dict[str, dict] = {}
    lines = 0
    for _, item, _ in iter_lines(records.path, "record", records):
        lines += 1
        # a story written twice (two runs at once, by an older version): its first
        if item["story_id"] not in firsts:
            if fields is not None:
                item = {key: item[key] for key in ("story_id", *fields) if key in item}
            firsts[item["story_id"]] = item
    told = set(firsts)
    failures = {item["story_id"]: item for item in errors.items if item["story_id"] not in told}
    damaged = records.damaged + errors.damaged
    if say is not None:
        for bad in records.damaged:
            say(
                f"warning: {bad.where()} is {bad.problem}; skipped, so its story counts as not told (run the "
                f"same tell-dataset command again to move the line to {set_aside_path(bad.path).name} and "
                "tell that story again)"
            )
        for bad in errors.damaged:
            say(f"warning: {bad.where()} is {bad.problem}; skipped")
        if len(firsts) < lines:
            say(
                f"warning: {records.path} holds {lines - len(firsts)} more lines of stories it "
                "already has; the first of each is read (run the same tell-dataset command again to drop the others)"
            )
    return RunFiles(manifest, list(firsts.values()), failures, damaged)


def read_run(folder: str | Path) -> tuple[dict, list[dict]]:
    """The manifest and the records of a run folder (what evaluate, the studio and pairs read); a
    damaged line is skipped with a warning (see :func:`load_run`)."""
    run = load_run(folder)
    return run.manifest, run.records
