"""The datasets and evaluation runs the studio shows, found by name, never by a path from a request.

:class:`Datasets` holds the configured sources by name and opens each with
:func:`~storyreasoning.data.load_stories` the first time it is asked for (per split).
:class:`Runs` lists the run folders in the ``--runs`` folder (tell-dataset outputs,
each perhaps with ``eval/metrics.json`` and ``eval/per_story.csv``); a name from a
request is looked up in that listing, so ``..`` or a slash can never reach the disk.

Only what the studio was started with is opened. A run's ``manifest.json`` names the
dataset it was told from; that name is shown, and compared as text with the configured
sources (:meth:`Datasets.find`), never opened: a manifest naming another folder, or
the file-system root, makes the studio read nothing.
"""

from __future__ import annotations

import csv
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from ..errors import StoryReasoningError, UsageError
from .config import NAME, SOURCE_FIX, DatasetSource, is_local
from .errors import ApiError

METRICS_FILE = "metrics.json"
PER_STORY_FILE = "per_story.csv"
JUDGE_SUMMARY = "judge/summary.json"  # written by evaluate judge
JUDGE_LOCATION = "judge-location.json"  # written by evaluate judge --out elsewhere: where its summary is
# Story ids that a URL's path cannot carry: browsers and URL parsers fold a path segment `.` or
# `..` (percent-encoded too) away before the request leaves. Their stories are reached with the
# id in the query instead (/api/datasets/{name}/story?story_id=..), as their frames' URLs are.
FOLDED = frozenset({".", ".."})


def _spellings(source: str) -> set[str]:
    """Ways of writing ``source`` found by rewriting its text alone (the disk is not read)."""
    out = {source, source.rstrip("/") or source}
    if source.startswith(("/", ".", "~")) or os.sep in source or "/" in source:
        path = os.path.expanduser(source)
        out |= {os.path.normpath(path), os.path.abspath(path)}
    return out


def _configured_spellings(source: str) -> set[str]:
    """A configured source's spellings, and the folder it resolves to (the operator named it, so it is read)."""
    out = _spellings(source)
    path = Path(source).expanduser()
    try:
        if path.exists():
            out.add(str(path.resolve()))
    except OSError:
        pass
    return out


class Datasets:
    """Configured datasets by name, loaded lazily and cached per split."""

    def __init__(self, sources: list[DatasetSource]) -> None:
        self._sources: dict[str, DatasetSource] = {s.name: s for s in sources}
        self._spellings = {s.name: _configured_spellings(s.source) for s in sources}
        self._loaded: dict[tuple[str, str | None], object] = {}
        self._locks: dict[tuple[str, str | None], threading.Lock] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return list(self._sources)

    def listing(self) -> list[dict]:
        return [{"name": s.name, "source": s.source} for s in self._sources.values()]

    def source(self, name: str) -> DatasetSource:
        found = self._sources.get(name)
        if found is None:
            known = ", ".join(self._sources) or "none (start the studio with --dataset)"
            raise ApiError(404, f"no dataset {name[:60]!r} in this studio; its datasets are {known}")
        return found

    def find(self, source: str) -> str | None:
        """The name of the configured dataset a run's recorded ``source`` names, if any.

        Compared as text (the spellings of one path: relative, absolute, ``~``, a trailing
        slash), so a source that is not configured is never opened, not even looked at.
        """
        if not source or len(source) > 4096 or "\0" in source:
            return None
        spellings = _spellings(source)
        for name, known in self._spellings.items():
            if spellings & known:
                return name
        return None

    def find_recorded(self, manifest: dict) -> tuple[str | None, str | None]:
        """The configured dataset a run's manifest names, and the run's split: by the path the run
        resolved (written by tell-dataset since it records one), else by its source as typed; both
        matched as text (:meth:`find`), never opened."""
        recorded = manifest.get("dataset")
        recorded = recorded if isinstance(recorded, dict) else {}
        split = recorded.get("split")
        split = split if isinstance(split, str) and split else None
        for key in ("path", "source"):
            value = recorded.get(key)
            if isinstance(value, str) and value:
                found = self.find(value)
                if found is not None:
                    return found, split
        return None, split

    def load(self, name: str, split: str | None = None):
        """The :class:`~storyreasoning.data.StoryDataset` of ``name`` (one split, or all of them).

        A split is opened only when the dataset has it, so a request cannot make the studio
        open (or remember) anything but the configured datasets' own splits.
        """
        source = self.source(name)
        if split:
            splits = self.splits(name)
            if split not in splits:
                raise ApiError(
                    404, f"dataset {name} has no split {split[:60]!r}; its splits are {', '.join(splits)}"
                )
            if len(splits) == 1:
                split = None  # its only split: the whole dataset, loaded once
        key = (name, split or None)
        with self._lock:
            if key in self._loaded:
                return self._loaded[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._loaded:
                from ..data.sources import load_stories

                try:
                    self._loaded[key] = load_stories(source.source, split or None)
                except StoryReasoningError as exc:
                    raise ApiError(500, f"dataset {name}: {exc}") from None
                except OSError as exc:  # unreadable: permissions, a file that vanished
                    reason = exc.strerror or type(exc).__name__
                    raise ApiError(
                        500,
                        f"dataset {name} cannot be read ({reason}); check its files and restart the studio",
                    ) from None
            return self._loaded[key]

    def open_local(self) -> None:
        """Open every local dataset now, so that one the studio cannot read stops it from starting.

        A :class:`~storyreasoning.errors.UsageError` names the ``--dataset`` source and the fix.
        Hub datasets are opened when first browsed (they may need the network).
        """
        from ..data.sources import load_stories

        for name, source in self._sources.items():
            if not is_local(source.source) or (name, None) in self._loaded:
                continue
            try:
                self._loaded[(name, None)] = load_stories(source.source)
            except StoryReasoningError as exc:
                raise UsageError(f"--dataset {source.source}: {exc}") from None
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                raise UsageError(
                    f"--dataset {source.source} cannot be read ({reason}); {SOURCE_FIX}"
                ) from None

    def splits(self, name: str) -> list[str]:
        return self.load(name).splits or ["train"]

    def frame_url(self, name: str, story_id: str, k: int, split: str | None) -> str:
        base = f"/api/datasets/{quote(name, safe='')}"
        query = f"&split={quote(split, safe='')}" if split else ""
        if story_id in FOLDED:  # a URL's path cannot carry it: the id goes in the query
            return f"{base}/story/frames/{k}?story_id={quote(story_id, safe='')}{query}"
        return f"{base}/stories/{quote(story_id, safe='')}/frames/{k}" + (f"?{query[1:]}" if query else "")

    def sample(self, name: str, story_id: str, split: str | None = None):
        stories = self.load(name, split)
        try:
            index = stories.index_of(story_id)
        except StoryReasoningError:
            raise ApiError(
                404, f"no story {story_id[:80]!r} in dataset {name}; list its stories first"
            ) from None
        return stories[index]

    def frames(self, name: str, story_id: str, split: str | None, sample=None) -> list[dict]:
        """``[{"url", "width", "height"}]`` of a story's frames (sizes from the headers; 0 when unreadable)."""
        sample = sample if sample is not None else self.sample(name, story_id, split)
        out = []
        for k, frame in enumerate(sample.frames):
            try:
                width, height = frame.size()
            except StoryReasoningError:
                width = height = 0
            out.append(
                {"url": self.frame_url(name, sample.story_id, k, split), "width": width, "height": height}
            )
        return out


# -- runs ---------------------------------------------------------------------------------------


def _cell(value: str):
    if value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        return {"True": True, "False": False}.get(value, value)
    return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number


@dataclass
class Run:
    name: str
    path: Path
    manifest: dict
    records: dict[str, dict]  # story id -> record, in the file's order
    failed: dict[str, str] = field(default_factory=dict)  # story id -> its error (errors.jsonl), never told
    metrics: dict | None = None  # family -> overall numbers
    per_story: dict[str, dict] | None = None  # story id -> per_story.csv row
    headline: list[dict] | None = None  # evaluate's headline rows (report.headline_rows)
    outputs: str | None = None  # report.outputs_line where some stories had no output
    language_signature: str | None = None  # report.language_signature

    def summary(self) -> dict:
        return {
            "name": self.name,
            "manifest": self.manifest,
            "stories": len(self.records),
            "failed": len(self.failed),
            "metrics": self.metrics,
            "headline": self.headline,
            "outputs": self.outputs,
            "language_signature": self.language_signature,
        }

    def story_rows(self) -> list[dict]:
        """Every story of the run as ``/api/runs/{name}/stories`` lists it: those told (in the records'
        order), then those that failed, each with ``failed`` and its ``error``."""
        told = [
            {
                "story_id": sid,
                "failed": False,
                "well_structured": record.get("well_structured"),
                "metrics": self.per_story.get(sid) if self.per_story is not None else None,
            }
            for sid, record in self.records.items()
        ]
        failed = [
            {"story_id": sid, "failed": True, "error": error, "well_structured": None, "metrics": None}
            for sid, error in self.failed.items()
        ]
        return told + failed


def _signature(folder: Path) -> tuple:
    out = []
    for rel in (
        "manifest.json",
        "records.jsonl",
        "errors.jsonl",
        f"eval/{METRICS_FILE}",
        f"eval/{PER_STORY_FILE}",
        JUDGE_SUMMARY,
        JUDGE_LOCATION,
    ):
        try:
            st = (folder / rel).stat()
            out.append((rel, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((rel, None, None))
    if out[-1][1] is not None:  # judged elsewhere: that summary changing changes the run too
        try:
            from ..evaluate.report import judge_summary_path

            st = judge_summary_path(folder).stat()
            out.append(("judge elsewhere", st.st_mtime_ns, st.st_size))
        except (ImportError, StoryReasoningError, OSError):
            out.append(("judge elsewhere", None, None))
    return tuple(out)


@dataclass(frozen=True)
class _Evaluation:
    """What a run's page shows of its evaluation (see :func:`_evaluation`)."""

    metrics: dict | None = None
    headline: list[dict] | None = None
    outputs: str | None = None
    language_signature: str | None = None


def _evaluation(folder: Path) -> _Evaluation:
    """The run's overall metrics (family -> overall numbers), its headline (evaluate's one
    definition, :func:`~storyreasoning.evaluate.report.headline_rows`, with the scores of
    ``judge/summary.json``), the outputs line under it when some stories had no output (a complete
    run's says nothing worth a line on the page) and the language metrics' signature; None for what
    the run does not have."""
    try:
        from ..evaluate import report as evaluation
    except ImportError:  # the evaluate package is optional here: the metrics, without a headline
        evaluation = None
    report: dict | None = None
    path = folder / "eval" / METRICS_FILE
    if path.is_file():
        try:
            if evaluation is not None:
                report = evaluation.load_report(path)
            else:
                report = json.loads(path.read_text(encoding="utf-8"))
        except (StoryReasoningError, OSError, ValueError):
            report = None
    report = report if isinstance(report, dict) else None
    judge = None
    if evaluation is not None:
        try:
            judge = evaluation.load_judge(folder)
        except (StoryReasoningError, OSError):
            judge = None  # a damaged summary: the judge's scores are left out, not guessed
    metrics = report.get("metrics") if report is not None else None
    overall = None
    if isinstance(metrics, dict):
        overall = {
            family: (data.get("overall") if isinstance(data, dict) else None)
            for family, data in metrics.items()
        }
    headline = None
    if evaluation is not None and (report is not None or judge is not None):
        headline = [  # each value also as evaluate prints it, so the page formats nothing itself
            {
                **row,
                "text": evaluation.headline_cell(row),
                "reference_text": evaluation.headline_cell(row, "reference"),
            }
            for row in evaluation.headline_rows(report or {}, judge)
        ]
    outputs = signature = None
    if evaluation is not None and report is not None:
        counts = evaluation.output_counts(report)
        outputs = evaluation.outputs_line(report) if counts is not None and counts[1] else None
        signature = evaluation.language_signature(report)
    return _Evaluation(overall, headline, outputs, signature)


def _per_story(folder: Path) -> dict[str, dict] | None:
    path = folder / "eval" / PER_STORY_FILE
    if not path.is_file():
        return None
    out: dict[str, dict] = {}
    try:
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                sid = row.pop("story_id", None)
                if sid is not None:
                    out[sid] = {key: _cell(value or "") for key, value in row.items() if key}
    except (OSError, csv.Error, UnicodeDecodeError):
        return None
    return out


class Runs:
    """The run folders in one folder (or that folder itself when it is a run), by name."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._cache: dict[str, tuple[tuple, Run]] = {}
        self._lock = threading.Lock()

    def listing(self) -> dict[str, Path]:
        """Run name -> folder, read from the disk on every call (runs appear while the studio is up)."""
        if self.folder is None:
            return {}
        if (self.folder / "manifest.json").is_file():
            return {self.folder.name: self.folder} if NAME.match(self.folder.name) else {}
        out = {}
        try:
            children = sorted(self.folder.iterdir())
        except OSError:
            return {}
        for child in children:
            if NAME.match(child.name) and child.is_dir() and (child / "manifest.json").is_file():
                out[child.name] = child
        return out

    def unnamed(self) -> list[str]:
        """The run folders :meth:`listing` leaves out because their names cannot be a URL's part
        (letters, digits, '.', '_' and '-', first a letter or digit, at most 100): said at start."""
        if self.folder is None or (self.folder / "manifest.json").is_file():
            folder = self.folder
            return [folder.name] if folder is not None and not NAME.match(folder.name) else []
        try:
            children = sorted(self.folder.iterdir())
        except OSError:
            return []
        return [
            child.name
            for child in children
            if not NAME.match(child.name) and child.is_dir() and (child / "manifest.json").is_file()
        ]

    def manifests(self) -> dict[str, dict]:
        """Run name -> its manifest.json alone (what a run was told with), skipping unreadable ones."""
        out = {}
        for name, path in self.listing().items():
            try:
                manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # the page says what is wrong with it
            if isinstance(manifest, dict):
                out[name] = manifest
        return out

    def get(self, name: str) -> Run:
        listing = self.listing()
        if self.folder is None:
            raise ApiError(404, "this studio shows no runs; start it with --runs FOLDER")
        path = listing.get(name)  # only a name from the listing ever reaches the disk
        if path is None:
            raise ApiError(404, f"no run {name[:60]!r} in {self.folder.name}; list the runs first")
        signature = _signature(path)
        with self._lock:
            cached = self._cache.get(name)
            if cached is not None and cached[0] == signature:
                return cached[1]
        run = self._read(name, path)
        with self._lock:
            self._cache[name] = (signature, run)
        return run

    @staticmethod
    def _read(name: str, path: Path) -> Run:
        from ..tell.run import load_run

        try:  # the one reader of run files: damaged lines are reported with their numbers, never dropped silently
            run = load_run(path)
        except (StoryReasoningError, OSError, ValueError) as exc:
            raise ApiError(500, f"run {name} cannot be read ({exc}); check its manifest.json") from None
        by_id = {str(record["story_id"]): record for record in run.records}
        failed = {
            str(sid): str(item.get("error", ""))
            for sid, item in run.failures.items()
            if str(sid) not in by_id
        }
        found = _evaluation(path)
        return Run(
            name,
            path,
            run.manifest,
            by_id,
            failed,
            found.metrics,
            _per_story(path),
            headline=found.headline,
            outputs=found.outputs,
            language_signature=found.language_signature,
        )
