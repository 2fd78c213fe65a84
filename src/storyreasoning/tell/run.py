"""Batch runs: tell every story of a dataset into a run folder, resumably.

A run folder holds::

    manifest.json    the teller (backend, model, revision, pixel budget, versions), sampling,
                     prompt, dataset and split, and progress counts
    records.jsonl    one JSON object per finished story: story_id, raw output, the parse
                     (the ``check --json`` shape), well_structured, meta (timing, tokens)
    errors.jsonl     stories that failed (with any partial output); retried on resume

Records are appended and flushed to disk one by one as stories finish. On restart the
ids already in ``records.jsonl`` are skipped (a torn last line from a crash is cut off
first), so after any number of crashes or Ctrl-C every story ends up exactly once. The
folder is what ``evaluate`` and the studio read.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from .base import Prompt, Sampling, Story, Teller, TellError

MANIFEST = "manifest.json"
RECORDS = "records.jsonl"
ERRORS = "errors.jsonl"

# Fields of the manifest that must match for a run to be resumed.
_IDENTITY = ("teller", "sampling", "prompt", "dataset")
_VOLATILE_TELLER = ("versions", "device", "commit", "endpoint")  # the same model may move servers


@dataclass
class RunSummary:
    total: int
    skipped: int  # already done before this invocation
    done: int  # finished in this invocation
    failed: int
    well_structured: int  # among those finished in this invocation

    def line(self) -> str:
        return (
            f"{self.done} stories told ({self.well_structured} well-structured), {self.failed} failed, "
            f"{self.skipped} already done; {self.skipped + self.done} of {self.total} in the run"
        )


def read_done(path: Path) -> set[str]:
    """Story ids already recorded; a torn last line (a crash mid-write) is removed from the file."""
    if not path.exists():
        return set()
    done: set[str] = set()
    with path.open("rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1  # everything after the last newline is an unfinished record
        if end != len(data):
            f.truncate(end)
        for raw in data[:end].splitlines():
            if raw.strip():
                done.add(json.loads(raw)["story_id"])
    return done


def _identity(manifest: dict) -> dict:
    out = {key: manifest.get(key) for key in _IDENTITY}
    teller = dict(out.get("teller") or {})
    for key in _VOLATILE_TELLER:
        teller.pop(key, None)
    out["teller"] = teller
    return out


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _append(path: Path, record: dict) -> None:
    line = json.dumps(record, ensure_ascii=False) + "\n"
    with path.open("a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def versions() -> dict:
    from .. import __version__

    out = {"storyreasoning": __version__, "python": platform.python_version()}
    for name in ("transformers", "torch", "datasets"):
        module = sys.modules.get(name)
        if module is not None:
            out[name] = getattr(module, "__version__", None)
    return out


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
) -> RunSummary:
    """Tell every story of ``stories`` (a :class:`~storyreasoning.data.StoryDataset`) into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "teller": teller.describe(),
        "sampling": sampling.to_dict(),
        "prompt": {"text": prompt.text, "system": prompt.system, "order": prompt.order},
        "dataset": {"source": getattr(stories, "source", None), "split": getattr(stories, "split", None)},
    }
    manifest_path = out / MANIFEST
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text(encoding="utf-8"))
        if _identity(old) != _identity(manifest):
            changed = [key for key in _IDENTITY if _identity(old)[key] != _identity(manifest)[key]]
            raise UsageError(
                f"{out} holds a run with another {', '.join(changed)}; resume it with the same options "
                "or write to another --out folder"
            )
        manifest = {**old, **manifest}
    else:
        manifest["created"] = _now()
    manifest["versions"] = versions()

    ids = stories.ids()
    if limit is not None:
        ids = ids[:limit]
    done = read_done(out / RECORDS)
    todo = [i for i, sid in enumerate(ids) if sid not in done]
    seen: set[str] = set()
    todo = [i for i in todo if not (ids[i] in seen or seen.add(ids[i]))]  # a repeated id is told once
    skipped = len(ids) - len(todo)
    manifest.update(total=len(ids), updated=_now())
    _write_json_atomic(manifest_path, manifest)
    if on_start:
        on_start(len(ids), skipped)

    samples: dict[str, object] = {}

    def lazy() -> Iterator[Story]:
        for i in todo:
            sample = stories[i]
            samples[sample.story_id] = sample
            yield Story(sample.story_id, sample.frames)

    summary = RunSummary(total=len(ids), skipped=skipped, done=0, failed=0, well_structured=0)
    try:
        for story, result in teller.tell_many(lazy(), prompt=prompt, sampling=sampling):
            sample = samples.pop(story.story_id, None)
            if isinstance(result, TellError):
                summary.failed += 1
                _append(
                    out / ERRORS,
                    {
                        "story_id": story.story_id,
                        "error": str(result),
                        "partial": result.partial,
                        "at": _now(),
                    },
                )
            else:
                try:
                    sizes = [frame.size() for frame in sample.frames] if sample is not None else None
                except UsageError:
                    sizes = None
                verdict = result.validate(n_images=len(story.images), image_sizes=sizes)
                _append(
                    out / RECORDS,
                    {
                        "story_id": story.story_id,
                        "raw": result.raw,
                        "parse": result.to_dict(verdict),
                        "well_structured": verdict.well_structured,
                        "meta": result.meta,
                    },
                )
                summary.done += 1
                summary.well_structured += int(verdict.well_structured)
            if progress:
                progress(1)
    finally:
        manifest.update(
            updated=_now(),
            finished=len(read_done(out / RECORDS)),
        )
        _write_json_atomic(manifest_path, manifest)
    return summary


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def read_run(folder: str | Path) -> tuple[dict, list[dict]]:
    """The manifest and the records of a run folder (what evaluate and the studio read)."""
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise UsageError(
            f"{folder} is not a run folder (no {MANIFEST}); make one with storyreasoning tell-dataset"
        )
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    records = []
    path = folder / RECORDS
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # a torn last line: the run is still being written
    return manifest, records
