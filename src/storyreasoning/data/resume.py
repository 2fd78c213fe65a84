"""What an output folder was made from, so that running a conversion again resumes that work only.

Each writer of :mod:`.writers` keeps a record, ``OUT/.storyreasoning-output.json``, written before its
first shard or story folder: the output's format and, for each part (the shards of one split, a folder
of story folders, the splits of a ``save_to_disk`` folder), its *origin*:

* the command (``data convert``), the source by name (as the dataset card names it: a local folder
  by its name, a hub id as it is) with a key made from its resolved path or hub id (a hash: the
  folder may be uploaded as it is, so no local path is written);
* the options that shape the output (``split`` read from the source, ``limit``,
  ``stories_per_shard``, ``seed``, ``count``, ``length``);
* the stories written: how many, the first and the last id, and a hash of every id in order.

A run compares its own origin with the record. The same: it resumes, and a unit (a shard, a story
folder) counts as done only when what it holds, read back, is what this run writes there. Another:
the run is refused with one line naming what differs, unless it is asked to overwrite. Output that
has no record (written before records were kept) is checked unit by unit against the stories
themselves, ids and texts, never by row counts alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError, file_error
from ..files import write_json_atomic

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


def source_name(source: str | Path) -> str:
    """A source as the record (and the dataset card) names it: a local path by its name, a hub id as it is."""
    path = Path(source).expanduser()
    return path.resolve().name if path.exists() else str(source)


def source_key(source: str | Path) -> str:
    """A key that tells two sources of one name apart: a hash of the resolved path (or of the hub id)."""
    path = Path(source).expanduser()
    text = str(path.resolve()) if path.exists() else str(source)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def origin(
    ids: Sequence[str],
    *,
    command: str,
    source: str | Path | None,
    options: Mapping[str, Any] | None = None,
) -> dict:
    """What one part of an output is made from (see the module's description); ``source`` None: stories
    given in memory, known by their ids alone."""
    return {
        "command": command,
        "source": source_name(source) if source is not None else None,
        "source_key": source_key(source) if source is not None else None,
        "options": {k: v for k, v in (options or {}).items()},
        "stories": len(ids),
        "first": ids[0] if ids else None,
        "last": ids[-1] if ids else None,
        "ids": fingerprint(ids),
    }


#: The type each field of a recorded part has (None allowed for the texts: stories given in memory)
_PART_FIELDS: dict[str, tuple[type, ...]] = {
    "command": (str, type(None)),
    "source": (str, type(None)),
    "source_key": (str, type(None)),
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
    if not isinstance(record.get("format"), str):
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
            f"{path} is damaged (not the JSON record storyreasoning writes); delete it, and the command "
            "checks what the folder holds story by story"
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
    if value is None:
        return "none"
    if key == "length" and isinstance(value, (list, tuple)):
        lo, hi = value
        return str(lo) if lo == hi else f"{lo}-{hi}"
    return str(value)


def differences(old: Mapping, new: Mapping) -> list[str]:
    """What differs between two origins, one phrase each (empty: the same work)."""
    out = []
    if old.get("command") != new.get("command"):
        out.append(f"written by `{old.get('command')}`, this is `{new.get('command')}`")
    same_source = (old.get("source"), old.get("source_key")) == (new.get("source"), new.get("source_key"))
    same_stories = (old.get("stories"), old.get("ids")) == (new.get("stories"), new.get("ids"))
    if not same_source:
        if old.get("source") == new.get("source"):
            out.append(
                f"made from {old.get('source')} at another path ({_stories(old)}), this run reads "
                f"{new.get('source')} here ({_stories(new)})"
            )
        else:
            out.append(
                f"made from {old.get('source') or 'stories given in memory'} ({_stories(old)}), this run "
                f"reads {new.get('source') or 'stories given in memory'} ({_stories(new)})"
            )
    before, now = old.get("options") or {}, new.get("options") or {}
    for key in sorted(set(before) | set(now)):
        if before.get(key) != now.get(key):
            flag = FLAGS.get(key, key)
            out.append(f"{flag} {_value(key, before.get(key))} then, {_value(key, now.get(key))} now")
    if same_source and not same_stories and not out:  # (where an option differs, it explains the stories)
        why = " (the source changed since)" if new.get("source") is not None else ""
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
    "FLAGS",
    "RECORD",
    "compare",
    "differences",
    "fingerprint",
    "ids_of",
    "origin",
    "read_record",
    "refusal",
    "source_key",
    "source_name",
    "write_record",
]
