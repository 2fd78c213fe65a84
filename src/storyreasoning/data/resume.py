"""What an output folder was made from, so that running a conversion again resumes that work only.

Each writer of :mod:`.writers` keeps a record, ``OUT/.storyreasoning-output.json``, written before its
first shard or story folder: the output's format and, for each part (the shards of one split, a folder
of story folders, the splits of a ``save_to_disk`` folder), its *origin*:

* the command (``data convert``) and the dataset read, as
  :func:`storyreasoning.data.identity.dataset_record` names it: a hub id as given; a local dataset by
  its name (as the dataset card names it), a hash of its resolved path (the folder may be uploaded
  as it is, so no local path is written) and a fingerprint of its content. So ``./ds``, ``ds`` and
  ``/abs/ds`` are one source, a ``ds`` elsewhere with other content another, and a project moved
  whole resumes;
* the options that shape the output (``split`` read from the source, ``limit``,
  ``stories_per_shard``, ``seed``, ``count``, ``length``);
* the stories written: how many, the first and the last id, and a hash of every id in order.

A run compares its own origin with the record. The same: it resumes, and a unit (a shard, a story
folder, a ``save_to_disk`` folder) counts as done only when what it holds is what this run writes
there: texts and images (a shard and a ``save_to_disk`` split carry the :func:`content` digest of
the stories they were written from), so a source whose texts or images changed since is written
again where it changed. Reading every story to know that is what a command spares the common rerun:
it records a :func:`source_stat` of the local dataset's files (names, sizes, times) once every unit
comes from them, and finding them unchanged takes a unit holding its ids as done, no image read.
Another origin: the run is refused with one line naming what differs,
unless it is asked to overwrite. Output that has no record (written before records were kept) is
checked unit by unit against the stories themselves, ids and texts, never by row counts alone.
A record of the version before (the source by name and a hash of its path, no ``dataset``) is the
same source when that hash is of the path this run reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError, file_error
from ..files import write_json_atomic
from ..settings import shown, then_now
from .identity import dataset_changes
from .sources import local_dataset

#: The record's file name, in the output folder (hidden: no dataset reader takes it for data).
RECORD = ".storyreasoning-output.json"

#: The command-line option behind each recorded option, for the lines that name a difference.
FLAGS = {
    "split": "--split",
    "limit": "--limit",
    "stories_per_shard": "--stories-per-shard",
    "count": "--count",
    "length": "--length",
    "seed": "--seed",
    "source_stories": "the source's stories:",
}


def ids_of(samples) -> list[str]:
    """The story ids of ``samples`` in order: a dataset's id column (no row read), or each sample's."""
    ids = getattr(samples, "ids", None)
    if callable(ids):
        return list(ids())
    return [s.story_id for s in samples]


def fingerprint(ids: Sequence[str]) -> str:
    """A hash of ``ids`` in order (``sha256:`` and 16 hex digits)."""
    digest = hashlib.sha256()
    for sid in ids:
        digest.update(str(sid).encode("utf-8") + b"\0")
    return "sha256:" + digest.hexdigest()[:16]


def source_key(source: str | Path) -> str:
    """A hash of a source's resolved path (or of its hub id): how a record keeps a local dataset's path
    (and how a record of the version before, its ``source_key``, kept its source)."""
    path = Path(source).expanduser()
    text = str(path.resolve()) if path.exists() else str(source)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


#: The key of a parquet shard's footer metadata that holds the :func:`content` of its stories.
CONTENT_KEY = b"storyreasoning.content"

_TEXT_FIELDS = ("story_id", "frame_count", "chain_of_thought", "story", "frame_meta")


class Content:
    """A running sha256 of stories as a unit of output holds them (:meth:`add` each row of
    :meth:`StorySample.to_row`): ids, texts, frame metadata, each image's name and bytes."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()

    def add(self, row: Mapping[str, Any]) -> None:
        texts = {key: row.get(key) for key in _TEXT_FIELDS}
        self._sha.update(json.dumps(texts, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\0")
        for image in row.get("images") or ():
            data = image.get("bytes") or b""
            self._sha.update(f"{image.get('path')}\0{len(data)}\0".encode())
            self._sha.update(data)

    def digest(self) -> str:
        return "sha256:" + self._sha.hexdigest()


#: A file changed this recently when its stat is taken may change again within the same timestamp:
#: its stat then tells nothing (as with git's "racily clean" files).
_RACY_NS = 2_000_000_000


def source_stat(stories) -> str | None:
    """A stat fingerprint of the files on this machine that ``stories`` are read from (a local
    dataset's shards, or its story folders' files): a sha256 of each one's name relative to the
    dataset, size and mtime_ns, no file read. Taken before a run reads a story and recorded with
    the units it wrote: unchanged on the next run, a unit is done when its ids match, no image
    read. None (the units are checked by :func:`content`) for a hub id or stories in memory, when
    a file cannot be stat'ed, or when one changed in the last seconds."""
    source = getattr(stories, "source", None)
    files = stories.files() if local_dataset(source) is not None and hasattr(stories, "files") else None
    if files is None:
        return None
    root = str(Path(source).expanduser())
    under = os.path.join(root, "")
    since = time.time_ns() - _RACY_NS
    digest = hashlib.sha256()
    try:
        for name in sorted(files):
            stat = os.stat(name)
            if stat.st_mtime_ns > since:
                return None
            inside = name[len(under) :] if name.startswith(under) else os.path.relpath(name, root)
            digest.update(f"{inside}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    except (OSError, ValueError):  # (ValueError: a name with a NUL, which no file has)
        return None
    return f"sha256:{digest.hexdigest()[:32]}"


def same_source_files(folder: Path, part: str, stat: str | None) -> bool:
    """Whether the record of ``folder`` says ``part`` was made from files whose :func:`source_stat`
    is ``stat`` (then a unit holding the ids this run writes there holds their stories)."""
    record = read_record(folder)
    made_from = (record or {}).get("parts", {}).get(part)
    return stat is not None and isinstance(made_from, dict) and made_from.get("source_stat") == stat


def content(samples) -> str:
    """The :class:`Content` digest of ``samples`` (every image read: what a unit was written from)."""
    found = Content()
    for sample in samples:
        found.add(sample.to_row())
    return found.digest()


def origin(
    ids: Sequence[str],
    *,
    command: str,
    dataset: Mapping[str, Any] | None,
    options: Mapping[str, Any] | None = None,
) -> dict:
    """What one part of an output is made from (see the module's description): ``dataset`` as
    :func:`storyreasoning.data.identity.dataset_record` gives it, None for stories given in memory,
    known by their ids alone."""
    return {
        "command": command,
        "dataset": _recorded(dataset) if dataset is not None else None,
        "options": {k: v for k, v in (options or {}).items()},
        "stories": len(ids),
        "first": ids[0] if ids else None,
        "last": ids[-1] if ids else None,
        "ids": fingerprint(ids),
    }


def _recorded(dataset: Mapping[str, Any]) -> dict:
    """``dataset`` as a record keeps it: a local one by its folder's name and the :func:`source_key` of
    its path, no local path written."""
    path = dataset.get("path")
    if not path:
        return dict(dataset)
    return {**dataset, "source": Path(path).name, "path": source_key(path)}


#: The type each field of a recorded part has (None allowed for the texts: stories given in memory)
_PART_FIELDS: dict[str, tuple[type, ...]] = {
    "command": (str, type(None)),
    "source": (str, type(None)),
    "source_key": (str, type(None)),
    "dataset": (dict, type(None)),
    "content": (str, type(None)),
    "source_stat": (str, type(None)),
    "options": (dict,),
    "stories": (int,),
    "first": (str, type(None)),
    "last": (str, type(None)),
    "ids": (str,),
}


def _well_formed(record: object) -> bool:
    """A record as :func:`write_record` writes it: its format a text, each part an object whose
    fields have their types (a hand-edited or damaged one is not trusted, nor read further)."""
    if not isinstance(record, dict) or not isinstance(record.get("parts"), dict):
        return False
    if not isinstance(record.get("format"), str) or not record["format"]:
        return False
    for part in record["parts"].values():
        if not isinstance(part, dict):
            return False
        for key, kinds in _PART_FIELDS.items():
            if key in part and (not isinstance(part[key], kinds) or isinstance(part[key], bool)):
                return False
    return True


def read_record(folder: Path) -> dict | None:
    """The record of ``folder``, or None when it has none."""
    path = Path(folder) / RECORD
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise file_error(exc, "read the output record") from None
    try:
        record = json.loads(data.decode("utf-8"))
        if not _well_formed(record):
            raise ValueError("not a record")
    except ValueError:  # UnicodeDecodeError among them
        raise UsageError(
            f"{path} is damaged or was written by another version of storyreasoning (it is not the record "
            "of what the folder was made from that this version writes); delete it, and the command checks "
            "what the folder holds story by story"
        ) from None
    return record


def write_record(folder: Path, fmt: str, part: str, made_from: dict) -> None:
    """Record ``made_from`` as the origin of ``part`` of ``folder``, keeping the other parts, atomically."""
    record = read_record(folder) or {}
    parts = dict(record.get("parts") or {}) if record.get("format") == fmt else {}
    parts[part] = made_from
    data = {
        "about": "what storyreasoning wrote in this folder, and from what: running the same command "
        "again resumes it, another is refused (see the README, Data)",
        "format": fmt,
        "parts": parts,
    }
    try:
        write_json_atomic(Path(folder) / RECORD, data)
    except OSError as exc:
        raise file_error(exc, "write the output record") from None


def _stories(made_from: Mapping) -> str:
    n = made_from.get("stories")
    if not n:
        return "no stories"
    ends = made_from.get("first") if n == 1 else f"{made_from.get('first')}…{made_from.get('last')}"
    return f"{n:,} {'story' if n == 1 else 'stories'}, {ends}"


def _value(key: str, value: Any) -> str:
    """A recorded option as a refusal shows it (anything a hand-edited record holds: shown, not a crash)."""
    if value is None:
        return "none"
    if key == "length" and isinstance(value, (list, tuple)) and len(value) == 2:
        lo, hi = value
        return str(lo) if lo == hi else f"{lo}-{hi}"
    if isinstance(value, (str, int, float)):
        return str(value)
    return shown(value)


def source_changes(old: Mapping, new: Mapping) -> list[str]:
    """How the dataset this run reads (``new``'s) differs from the one ``old`` was made from, as
    ``NAME OLD then, NEW now`` phrases; none when it is the same. A local dataset at another path is
    the same when its content is (a project moved whole: :func:`~.identity.dataset_changes`). At the
    same path its content may have changed since: that is no other source, each unit (a shard, a
    story folder, a ``save_to_disk`` folder) finds it out for itself and is written again."""
    now = new.get("dataset")
    if "dataset" not in old:  # a record of the version before: the source's name and a hash of its path
        key = (now.get("path") or source_key(now["source"])) if now else None
        return [] if old.get("source_key") == key else [_other_source(old.get("source"), _named(now))]
    then = old.get("dataset")
    if not isinstance(then, dict) or now is None:
        return [] if then == now else [then_now("source", _named(then), _named(now))]
    if then.get("path") == now.get("path"):  # the same folder (or hub id): its content is the units' to check
        return dataset_changes(*({k: v for k, v in d.items() if k != "fingerprint"} for d in (then, now)))
    if not (then.get("path") and now.get("path")):  # a hub id then, a local dataset now, or the reverse
        return [then_now("source", _named(then), _named(now))]
    changed = dataset_changes({**then, "path": now["path"]}, now)  # all but the path
    if not changed:
        return []
    return [_other_source(then.get("source"), now.get("source")), *changed]


def _other_source(then: object, now: object) -> str:
    """How a refusal names a source other than the recorded one: by its names, or, of one name (the
    same name at another path, a project moved, say), by where it is."""
    if then == now and then is not None:
        return f"source {shown(then)} at another path then, here now"
    return then_now("source", then, now)


def _named(dataset: object) -> str | None:
    """A recorded dataset by its name or hub id (None: stories given in memory)."""
    return dataset.get("source") if isinstance(dataset, dict) else None


def differences(old: Mapping, new: Mapping) -> list[str]:
    """What differs between two origins, one phrase each (empty: the same work)."""
    out = []
    if old.get("command") != new.get("command"):
        out.append(f"written by `{old.get('command')}`, this is `{new.get('command')}`")
    out += source_changes(old, new)
    same_stories = (old.get("stories"), old.get("ids")) == (new.get("stories"), new.get("ids"))
    before, now = old.get("options") or {}, new.get("options") or {}
    for key in sorted(set(before) | set(now)):
        if before.get(key) != now.get(key):
            flag = FLAGS.get(key, key)
            out.append(f"{flag} {_value(key, before.get(key))} then, {_value(key, now.get(key))} now")
    if not same_stories and not out:  # (where the source or an option differs, it explains the stories)
        why = " (the source changed since)" if new.get("dataset") is not None else ""
        out.append(f"it holds {_stories(old)}, this run writes {_stories(new)}{why}")
    return out


def refusal(folder: Path, what: str, reasons: Sequence[str], *, fix: str | None = None) -> UsageError:
    """The one line that refuses to write over ``what`` of ``folder`` (another conversion's work)."""
    fix = fix or f"choose a new folder, or pass --overwrite to replace {what}"
    return UsageError(
        f"{folder} holds {what} of another conversion: {'; '.join(reasons)}. {fix[0].upper()}{fix[1:]}"
    )


def compare(folder: Path, fmt: str, part: str, made_from: dict, *, what: str, overwrite: bool) -> str:
    """How the record of ``folder`` stands to this run's ``part``: ``"same"`` (resume), ``"new"`` (no record
    of the part: what is there is checked unit by unit) or ``"replace"`` (another origin, ``overwrite``);
    another origin without ``overwrite`` is refused, naming what differs. A record of another format is
    refused even with ``overwrite``: replacing a part would leave the other format's files beside it."""
    record = read_record(folder)
    if record is None:
        return "new"
    if record.get("format") != fmt:
        raise refusal(
            folder,
            f"{record.get('format')} output",
            [f"this run writes {fmt} output"],
            fix="choose a new folder",
        )
    old = record["parts"].get(part)
    if old is None:
        return "new"
    reasons = differences(old, made_from)
    if not reasons:
        return "same"
    if overwrite:
        return "replace"
    raise refusal(folder, what, reasons)


__all__ = [
    "CONTENT_KEY",
    "FLAGS",
    "RECORD",
    "Content",
    "compare",
    "content",
    "differences",
    "fingerprint",
    "ids_of",
    "origin",
    "read_record",
    "refusal",
    "same_source_files",
    "source_changes",
    "source_key",
    "source_stat",
    "write_record",
]
