"""Which dataset a job reads, as its record names it: a hub id as given, a local dataset by its
resolved path and a fingerprint of its content that costs no image read.

A job that resumes (``tell-dataset``, ``train pairs``, ``data convert``…) records
:func:`dataset_record` of the stories it reads and, on its next start, refuses with
:func:`dataset_changes` when they are another dataset: ``./ds``, ``ds`` and ``/abs/ds`` are
one dataset, a ``ds`` in another folder is another, and a project moved whole (same content)
is the same.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from ..settings import shown, then_now
from .sources import local_dataset

#: The files of a local dataset whose names and sizes its fingerprint takes (its shards; never an image).
_SHARDS = (".parquet", ".arrow")


def dataset_fingerprint(stories, path: Path) -> dict:
    """What a run records of a local dataset's content, without reading an image: how many stories,
    a sha256 of their ids in order, and of the names and sizes of its shard files (parquet, Arrow)."""
    ids = [str(story_id) for story_id in stories.ids()]
    if path.is_file():
        files = [(path.name, path.stat().st_size)]
    else:
        files = sorted(_shard_files(path))
    listed = "\n".join(f"{name}\t{size}" for name, size in files)
    return {
        "stories": len(ids),
        "ids_sha256": hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest(),
        "files": len(files),
        "files_sha256": hashlib.sha256(listed.encode("utf-8")).hexdigest(),
    }


def _shard_files(root: Path) -> list[tuple[str, int]]:
    """The shard files under ``root`` (its own folders, no symlinked one entered; none hidden or under
    a hidden folder; a symlink to a file counts as that file) as (POSIX path relative to ``root``,
    size): ``rglob("*")``'s files filtered so, without a Path made for each image of a story folder."""
    found: list[tuple[str, int]] = []
    folders = [("", str(root))]
    while folders:
        prefix, folder = folders.pop()
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except PermissionError:  # (as rglob: a folder that cannot be listed is passed over)
            continue
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                folders.append((f"{prefix}{name}/", entry.path))
            elif os.path.splitext(name)[1] in _SHARDS and entry.is_file():
                found.append((prefix + name, entry.stat().st_size))
    return found


def dataset_record(stories) -> dict:
    """How a run's manifest names the dataset it tells: ``source`` as given and ``split``; for a local
    dataset also its resolved ``path`` and its :func:`dataset_fingerprint`."""
    source, split = getattr(stories, "source", None), getattr(stories, "split", None)
    found: dict = {"source": source, "split": split}
    path = local_dataset(source)
    if path is not None:
        found["path"] = str(path)
        found["fingerprint"] = dataset_fingerprint(stories, path)
    return found


def dataset_changes(
    old: object,
    new: dict,
    *,
    recorded: Callable[[], Iterable[str]] = tuple,
    ids: Callable[[], Iterable[str]] = tuple,
) -> list[str]:
    """How the dataset ``new`` (:func:`dataset_record`) differs from the one a run recorded (``old``),
    as ``"path X then, Y now"`` phrases; none when it is the same dataset. For a manifest of an
    older version (no path, no fingerprint) it is the same dataset when the source recorded, read
    from the current folder, is the same path and the dataset's story ids (``ids()``) hold every
    story the run recorded (``recorded()``)."""
    old = old if isinstance(old, dict) else {}
    changes = []
    if old.get("split") != new.get("split"):
        changes.append(f"split {shown(old.get('split'))} then, {shown(new.get('split'))} now")
    if "path" in new and "path" in old:
        content = value_changes(old.get("fingerprint"), new.get("fingerprint"), "content")
        if old["path"] != new["path"] and content:  # moved with the same content (a project moved): the same
            changes.append(f"path {old['path']} then, {new['path']} now")
        changes += content
    elif "path" in new:  # a manifest of an older version, or a run of a hub dataset
        then = local_dataset(old.get("source"))
        if then is None or str(then) != new["path"]:
            changes.append(f"source {shown(old.get('source'))} then, {new['path']} now")
        else:
            strangers = sorted(set(recorded()) - set(ids()))
            if strangers:
                changes.append(
                    f"content: {len(strangers)} stories of the run are not in {new['path']} now "
                    f"(first: {', '.join(strangers[:3])})"
                )
    elif "path" in old:
        changes.append(f"path {old['path']} then, source {shown(new.get('source'))} now")
    elif old.get("source") != new.get("source"):
        changes.append(f"source {shown(old.get('source'))} then, {shown(new.get('source'))} now")
    return changes


def value_changes(old: object, new: object, name: str) -> list[str]:
    """``"name.key OLD then, NEW now"`` for each leaf that differs between two JSON values."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in [*old, *(k for k in new if k not in old)]:
            found += value_changes(old.get(key), new.get(key), f"{name} {key}" if name else str(key))
        return found
    if old == new:
        return []
    if name.endswith("sha256"):  # a digest: its first digits tell two apart
        old, new = (v[:12] + "…" if isinstance(v, str) else v for v in (old, new))
    return [then_now(name, old, new)]
