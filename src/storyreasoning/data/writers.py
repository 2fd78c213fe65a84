"""Write stories: parquet shards (hub layout), story folders, ``save_to_disk`` folders.

Every writer keeps the frames' encoded bytes (no re-encoding: a JPEG stays the same
JPEG) and writes each unit (a shard, a story folder, the whole ``save_to_disk`` folder)
beside its destination and renames it into place. Before its first unit it records what
the output is made from (:mod:`.resume`): running it again with the same stories and
options skips the units already written, so an interrupted conversion resumes where it
stopped without writing anything twice, and one from another source or with other
options is refused, naming what differs, unless ``overwrite``. A unit counts as written
only when what it holds is what this run writes there, texts and images: one whose
stories changed in the source since is written again (a caller that passes ``source_stat``,
the source files' stat, unchanged since, has a unit holding its ids taken as done unread).

A writer holds its output folder as its one writer
(:func:`storyreasoning.files.lock_folder`): a second one into the same folder meanwhile,
in another process, is refused in one line naming the first one's pid.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import StoryReasoningError, UsageError, file_error
from ..files import LOCK_NAME, atomic_folder, atomic_path, lock_folder, remove_leftovers, sync_folder
from .folder import (
    folder_name,
    folding_clash,
    is_story_folder,
    one_folder,
    read_story_folder,
    story_folder,
    write_story_folder,
)
from .identity import dataset_record
from .resume import (
    CONTENT_KEY,
    Content,
    compare,
    content,
    differences,
    ids_of,
    origin,
    read_record,
    refusal,
    same_source_files,
    write_record,
)
from .sample import StorySample
from .sources import load_stories, require_datasets, require_pyarrow, story_folder_id

Progress = Callable[[int], None]  # called with the number of stories just done

PUBLISHED_COLUMNS = ("story_id", "images", "frame_count", "chain_of_thought", "story")


def features(with_frame_meta: bool = True):
    """The ``datasets`` features of the published dataset, plus ``frame_meta`` (a JSON string per story, or null).

    ``frame_meta`` is always written, null where a story has none, so that every split
    and shard of one dataset has the same schema (the hub loads all splits of a
    configuration with one schema).
    """
    datasets = require_datasets()
    Features, Image, List, Value = datasets.Features, datasets.Image, datasets.List, datasets.Value

    spec = {
        "story_id": Value("string"),
        "images": List(Image()),
        "frame_count": Value("int32"),
        "chain_of_thought": Value("string"),
        "story": Value("string"),
    }
    if with_frame_meta:
        spec["frame_meta"] = Value("string")
    return Features(spec)


def check_output_folder(out: str | Path, *, empty: bool = False) -> Path:
    """``out`` as a folder a writer can fill, checked before any work: one clear error when a file is
    in the way or it cannot be written (``empty``: it must also be new or empty). Nothing is left
    behind: a folder that does not exist yet is not made, its nearest existing parent is tried."""
    out = Path(out)
    probe = out
    try:
        if out.exists() and not out.is_dir():
            raise UsageError(
                f"{out} is a file, and the output is a folder; give a new folder (or one to resume into)"
            )
        if empty and out.is_dir() and _holds_files(out):
            raise UsageError(f"{out} exists and is not empty; choose a new folder")
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise UsageError(
                f"{probe} is a file, so the output folder {out} cannot be made there; choose another"
            )
        _probe(probe)
    except OSError as exc:
        doing = "write the output folder" if probe == out else f"make the output folder {out} in"
        raise file_error(exc, doing, fix="fix the permissions, or choose another folder") from None
    return out


def _holds_files(folder: Path) -> bool:
    """Whether ``folder`` holds anything but the lock a writer holds it by (or a killed one left)."""
    return any(entry.name != LOCK_NAME for entry in folder.iterdir())


def _probe(folder: Path) -> None:
    """Make and remove a file in ``folder``; an error names the folder, not the probe."""
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror, str(folder)) from None


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.parquet"


def _made_from(
    ids: Sequence[str], command: str, dataset: Mapping | None, options: Mapping[str, Any] | None, **more
) -> dict:
    return origin(ids, command=command, dataset=dataset, options={**(options or {}), **more})


def _dataset(source: str | Path | None, dataset: Mapping | None) -> Mapping | None:
    """What the record names as the dataset the stories come from: ``dataset`` (a
    :func:`~storyreasoning.data.identity.dataset_record`) when given, else ``source``'s."""
    if dataset is not None or source is None:
        return dataset
    return dataset_record(load_stories(source))


#: A split name datasets and the hub accept (``train``, ``my_split``, ``test.v2``), as a shard's name prefix
SPLIT_NAME = re.compile(r"\w+(?:\.\w+)*")


def check_split_name(split: str) -> None:
    """Refuse a split name that a shard's file name could not give back (``my split``, ``a+b``)."""
    if not isinstance(split, str) or not SPLIT_NAME.fullmatch(split):
        raise UsageError(
            f"split {split!r} cannot name parquet shards or a save_to_disk split: use letters, digits and "
            "'_' (dots between them), as datasets and the hub do"
        )


def write_parquet(
    samples: Sequence[StorySample],
    out_dir: str | Path,
    *,
    split: str = "train",
    stories_per_shard: int = 256,
    rows_per_group: int = 16,
    progress: Progress | None = None,
    command: str = "write_parquet",
    source: str | Path | None = None,
    options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    kept: Progress | None = None,
    dataset: Mapping[str, Any] | None = None,
    source_stat: str | None = None,
) -> list[Path]:
    """Write ``samples`` as ``out_dir/data/{split}-NNNNN-of-MMMMM.parquet`` with embedded images.

    The files carry the ``datasets`` features in their schema, so
    ``datasets.load_dataset("parquet", data_files=...)`` and
    ``datasets.load_dataset(out_dir)`` read the images as images, and ``out_dir`` can be
    uploaded as is (``hf upload NAME OUT --repo-type dataset``). The dataset card
    (``README.md``, :func:`storyreasoning.data.card.write_parquet_card`) is written afresh for
    every split now in the folder, saying that ``command`` wrote them from ``source`` (whose
    build record it reports when it is a local folder that has one); a card storyreasoning did
    not write is left alone. Small row groups keep reading one story cheap.

    Resuming (:mod:`.resume`): ``command``, the dataset (``dataset``, a
    :func:`~storyreasoning.data.identity.dataset_record`; by default ``source``'s), ``options``
    (the other settings that shaped ``samples``, such as ``{"limit": 100}``), the shard size and
    the story ids are recorded before the first shard; each shard carries in its footer the
    :func:`~.resume.content` digest of the stories it was written from. A shard holding the
    stories this run writes there, ids, texts and images, is skipped (``kept`` is told how many
    stories such shards hold); one whose stories changed since is written again. A split
    written from another source or with other settings is refused, naming what differs,
    unless ``overwrite``: then its shards are written afresh.

    ``source_stat`` (:func:`~.resume.source_stat`, taken before a story was read) is for a caller
    whose ``samples`` are what the dataset's files give, as read: recorded once every shard is
    written, and found unchanged on the next run, it makes a shard holding the ids this run
    writes there done without reading a story (the common rerun: no image read).
    """
    pq = require_pyarrow()
    import pyarrow as pa

    if stories_per_shard < 1 or rows_per_group < 1:
        raise UsageError("stories_per_shard and rows_per_group must be at least 1")
    check_split_name(split)
    out = check_output_folder(out_dir)
    ids = ids_of(samples)
    dataset = _dataset(source, dataset)
    made_from = _made_from(ids, command, dataset, options, stories_per_shard=stories_per_shard)
    from .card import write_parquet_card

    with lock_folder(out, refuse=UsageError):
        try:
            written, fresh = _write_parquet(
                samples, ids, made_from, out, pa, pq, split, stories_per_shard, rows_per_group,
                progress=progress, overwrite=overwrite, kept=kept, source_stat=source_stat,
            )  # fmt: skip
        except OSError as exc:
            if exc.errno is None:  # pyarrow's own error, without a path: say which folder
                raise UsageError(
                    f"cannot write parquet shards into {out} ({exc}); check the disk and the folder"
                ) from None
            raise file_error(exc, "write the parquet shard") from None
        if fresh or not _card_is_current(out):  # (a rerun that wrote nothing reads no shard again)
            write_parquet_card(out, command=command, source=source)
    return written


def _card_is_current(out: Path) -> bool:
    """Whether ``out`` has a dataset card written after every shard now in ``out/data`` (one a run
    killed before its card was written, after its shards, is not)."""
    from .card import CARD

    try:
        card = (out / CARD).stat().st_mtime_ns
        return all(path.stat().st_mtime_ns <= card for path in (out / "data").glob("*.parquet"))
    except OSError:
        return False


def _write_parquet(
    samples,
    ids,
    made_from,
    out: Path,
    pa,
    pq,
    split,
    stories_per_shard,
    rows_per_group,
    *,
    progress,
    overwrite,
    kept,
    source_stat,
) -> tuple[list[Path], int]:
    """The shards of ``split`` (all of them) and how many this call wrote (the others held their stories)."""
    data_dir = out / "data"
    n = len(samples)
    count = max(1, -(-n // stories_per_shard))
    present = sorted(data_dir.glob(f"{split}-*.parquet")) if data_dir.is_dir() else []
    # a record of a run that wrote no shard (its first story was refused, say) guards nothing: replaced
    state = compare(
        out, "parquet", split, made_from, what=f"the {split} shards", overwrite=overwrite or not present
    )
    # the same work from the same files, unchanged: a shard holding its ids holds its stories
    trusted = state == "same" and same_source_files(out, split, source_stat)
    if overwrite:  # this split afresh
        for path in present:
            path.unlink()
        present = []
    elif present:
        _check_present(
            out, present, split, count, stories_per_shard, ids, samples, pq, recorded=state == "same"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    # before the first shard (a record of before: renewed); the files' stat only where every shard there
    # is known to come from them, else once all are written
    stat_now = source_stat if trusted or not present else None
    write_record(out, "parquet", split, {**made_from, "source_stat": stat_now})
    schema = None  # datasets' features: imported (a second or more) only when a shard is to be written
    bounds = [(k * stories_per_shard, min(n, (k + 1) * stories_per_shard)) for k in range(count)]
    written = [data_dir / shard_name(split, k, count) for k in range(count)]
    done = fresh = 0
    for (lo, hi), target in zip(bounds, written, strict=True):
        made_of_now = None if trusted else (lambda lo=lo, hi=hi: content(samples[i] for i in range(lo, hi)))
        if _shard_holds(target, pq, ids[lo:hi], made_of_now):
            done += hi - lo  # written by an earlier run from these very stories
            if progress and hi > lo:
                progress(hi - lo)
            continue
        remove_leftovers(target)  # of a conversion killed mid-shard: this one is the shard's one writer
        fresh += 1
        schema = schema or features().arrow_schema
        made_of = Content()
        with atomic_path(target) as tmp, pq.ParquetWriter(tmp, schema) as writer:
            batch: list[dict] = []
            for i in range(lo, hi):
                sample = samples[i]
                sample.check_frames()  # a text file named .jpg does not go into the images column
                row = sample.to_row()
                row.setdefault("frame_meta", None)
                made_of.add(row)
                batch.append(row)
                if len(batch) == rows_per_group or i == hi - 1:
                    writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                    if progress:
                        progress(len(batch))
                    batch = []
            if lo == hi:  # an empty split still gets a valid file
                writer.write_table(pa.Table.from_pylist([], schema=schema))
            writer.add_key_value_metadata({CONTENT_KEY: made_of.digest().encode("ascii")})
    if source_stat != stat_now:  # every shard now holds the stories of the files so stat'ed
        write_record(out, "parquet", split, {**made_from, "source_stat": source_stat})
    if kept and done:
        kept(done)
    return written, fresh


def _shard_holds(path: Path, pq, ids: Sequence[str], made_of: Callable[[], str] | None) -> bool:
    """Whether the shard at ``path`` holds the stories ``ids`` as they are now: its ids (its
    ``story_id`` column alone), then the content digest in its footer against ``made_of()`` (every
    image of the stories read: only for a shard whose ids match; None: the ids say it). A shard
    without a digest (of a version before), missing or unreadable, is not."""
    if not path.is_file():
        return False
    try:
        shard = pq.ParquetFile(path)
        there = (shard.metadata.metadata or {}).get(CONTENT_KEY)
        if there is None or [str(x) for x in shard.read(columns=["story_id"]).column(0).to_pylist()] != list(
            ids
        ):
            return False
    except Exception:
        return False
    return made_of is None or there.decode("ascii", "replace") == made_of()


def _ends(ids: Sequence[str]) -> str:
    if not ids:
        return "no stories"
    return ids[0] if len(ids) == 1 else f"{ids[0]}…{ids[-1]}"


_TEXT_COLUMNS = ("story_id", "frame_count", "chain_of_thought", "story", "frame_meta")


def _check_present(out, present, split, count, per_shard, ids, samples, pq, *, recorded) -> None:
    """Shards of ``split`` already in ``out``: each must be one this run writes (its name); without a record
    (``recorded`` False: written before records were kept) each must also hold, by id and by text, the
    stories this run writes there (a row count says nothing of which stories). Else one line refuses."""
    import re

    shape = re.compile(rf"{re.escape(split)}-(\d{{5}})-of-(\d{{5}})\.parquet")
    fix = f"Choose a new folder, or pass --overwrite to replace the {split} shards"
    unrecorded = "" if recorded else " (no record says what they were made from)"
    for path in present:
        m = shape.fullmatch(path.name)
        if m is None or int(m.group(2)) != count or int(m.group(1)) >= count:
            raise UsageError(
                f"{out} holds {split} shards of another conversion{unrecorded}: {path.name} is not one of "
                f"the {count} shard{'s' if count != 1 else ''} this run writes. {fix}"
            )
        if recorded:
            continue  # the record says whose they are; each shard's ids are checked as it comes
        k = int(m.group(1))
        lo, hi = k * per_shard, min(len(ids), (k + 1) * per_shard)
        try:
            table = pq.ParquetFile(path).read(
                columns=[c for c in _TEXT_COLUMNS if c in pq.read_schema(path).names]
            )
            rows = table.to_pylist()
        except Exception:
            continue  # unreadable: rewritten as a shard not yet written
        got = [str(r.get("story_id")) for r in rows]
        if got != list(ids[lo:hi]):
            raise UsageError(
                f"{out} holds {split} shards of another conversion{unrecorded}: {path.name} holds "
                f"{_ends(got)}, this run writes {_ends(ids[lo:hi])} there. {fix}"
            )
        for i, row in zip(range(lo, hi), rows, strict=True):
            want = samples[i].to_row(embed=False)
            if any((row.get(c) or None) != (want.get(c) or None) for c in _TEXT_COLUMNS):
                raise UsageError(
                    f"{out} holds {split} shards of another conversion{unrecorded}: story {ids[i]!r} in "
                    f"{path.name} differs from the one this run writes. {fix}"
                )


def _holds(folder: Path, sample: StorySample) -> bool:
    """Whether the story folder ``folder`` holds ``sample``: id, texts, frame count, frame metadata and
    each frame's bytes (a source whose images changed since is written again)."""
    try:
        there = read_story_folder(folder)
    except Exception:
        return False
    same_texts = (
        there.story_id == sample.story_id
        and there.cot_text == sample.cot_text.strip()
        and there.story_text == sample.story_text.strip()
        and there.frame_count == sample.frame_count
        and there.frame_meta == sample.frame_meta
    )
    if not same_texts:
        return False
    try:
        frames = [frame.bytes() for frame in there.frames]
    except Exception:
        return False
    return frames == [frame.bytes() for frame in sample.frames]


def write_folders(
    samples: Iterable[StorySample],
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
    command: str = "write_folders",
    source: str | Path | None = None,
    options: Mapping[str, Any] | None = None,
    kept: Progress | None = None,
    dataset: Mapping[str, Any] | None = None,
    source_stat: str | None = None,
) -> list[Path]:
    """Write each story as a folder (see :mod:`storyreasoning.data.folder`).

    Resuming as :func:`write_parquet` does: what the folder is made from is recorded before
    the first story; a story folder already holding its story (id, texts, frame count and
    metadata) is kept (``kept`` is told how many); a folder written from another source or
    with other settings is refused, naming what differs, and so is one holding story folders
    this run does not write. ``overwrite`` rewrites every story folder and removes the story
    folders that are not among ``samples``. ``source_stat``: as :func:`write_parquet` takes it (a
    story folder holding its story's id then counts as written, no frame read).
    """
    out = check_output_folder(out_dir)
    dataset = _dataset(source, dataset)
    with lock_folder(out, refuse=UsageError):
        return _write_folders(samples, out, overwrite, progress, command, dataset, options, kept, source_stat)


def _write_folders(
    samples, out: Path, overwrite, progress, command, dataset, options, kept, source_stat
) -> list[Path]:
    if not isinstance(samples, Sequence):
        samples = list(samples)
    ids = ids_of(samples)
    names = [folder_name(sid) for sid in ids]
    # a story an earlier version wrote under its ASCII name (café: caf) is found there, not written twice
    names = [
        story_folder(out, sid).name if out.is_dir() else name for sid, name in zip(ids, names, strict=True)
    ]
    if len(set(names)) != len(names):
        seen: set[str] = set()
        twice = next(name for name in names if name in seen or seen.add(name))
        first, second = [sid for sid, name in zip(ids, names, strict=True) if name == twice][:2]
        if first == second:
            raise UsageError(f"two stories have the id {first!r}; give every story an id of its own")
        raise UsageError(
            f"two stories map to the folder {out / twice}; story ids must stay distinct after "
            "replacing characters other than letters, digits, '.', '_' and '-'"
        )
    # refused on every file system, not only where it folds: a dataset made here is read on a Mac
    clash = folding_clash(names)
    if clash:
        first, second = (ids[names.index(name)] for name in clash)
        raise UsageError(f"cannot write {out}: {one_folder(first, second)}")
    made_from = _made_from(ids, command, dataset, options)
    try:
        out.mkdir(parents=True, exist_ok=True)
        existing = {
            p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(".") and is_story_folder(p)
        }
        others = sorted(existing - set(names))
        # a folder of another story that is one with a story's here on a Mac (overwrite: it goes first)
        clash = None if overwrite else folding_clash(names, others)
        theirs, ours = (
            (story_folder_id(out / clash[0]), ids[names.index(clash[1])]) if clash else (None, None)
        )
        if theirs != ours:
            raise UsageError(
                f"{out} holds the story folder {clash[0]}: "
                + one_folder(theirs, ours, fix=", or pass --overwrite to replace the story folders")
            )
        # a record of a run that wrote no story folder (its first story was refused, say) guards nothing
        state = compare(
            out, "folder", "stories", made_from, what="the story folders", overwrite=overwrite or not existing
        )
        # the same work from the same files, unchanged: a story folder holding its id holds its story
        trusted = state == "same" and same_source_files(out, "stories", source_stat)
        if others and not overwrite:
            shown = ", ".join(others[:3]) + (", …" if len(others) > 3 else "")
            raise UsageError(
                f"{out} holds {len(others)} story folder{'s' if len(others) != 1 else ''} this run does not "
                f"write ({shown}). Choose a new folder, or pass --overwrite to replace the story folders"
            )
        for name in others:  # overwrite: the folder is to hold these stories and no others
            shutil.rmtree(out / name)
        if state == "new" and not overwrite:  # folders no record describes: checked before any is written
            for i, name in enumerate(names):
                if name in existing and not _holds(out / name, samples[i]):
                    raise UsageError(
                        f"{out} holds story folders of another conversion (no record says what they were "
                        f"made from): {out / name} differs from the story {ids[i]!r} this run writes. "
                        "Choose a new folder, or pass --overwrite to replace the story folders"
                    )
        # before the first story folder; the files' stat only where every story folder there is known to
        # come from them, else once all are written
        stat_now = source_stat if trusted or not existing.intersection(names) else None
        write_record(out, "folder", "stories", {**made_from, "source_stat": stat_now})
    except OSError as exc:
        raise file_error(exc, "write the output folder") from None
    done = []
    found = 0
    for i, name in enumerate(names):  # a story is read only where it is written or compared
        target = out / name
        if (
            not overwrite
            and name in existing
            and (_holds_id(target, ids[i]) if trusted else _holds(target, samples[i]))
        ):
            found += 1
        else:
            if name != folder_name(ids[i]):  # an earlier version's name: the story moves to today's
                shutil.rmtree(target)
            # ``out`` is synced once, below, not after each story's rename (one fsync a story took most
            # of the time). Still crash-safe: each story folder appears whole or not at all, and a
            # rename a crash loses leaves the story missing, which the next run finds and writes
            # again; the record that trusts story folders by their id alone (the files' stat, below)
            # is written only after the sync, so it never outlives a rename it speaks for.
            target = write_story_folder(samples[i], out, overwrite=True, sync_root=False)
        done.append(target)
        if progress:
            progress(1)
    sync_folder(out)  # the renames (and removals) above, once
    if source_stat != stat_now:  # every story folder now holds the story of the files so stat'ed
        write_record(out, "folder", "stories", {**made_from, "source_stat": source_stat})
    if kept and found:
        kept(found)
    return done


def _holds_id(folder: Path, story_id: str) -> bool:
    """Whether the story folder ``folder`` is the story ``story_id``'s (its ``meta.json``, no frame read)."""
    try:
        return story_folder_id(folder) == story_id
    except StoryReasoningError:
        return False


def write_disk(
    splits: Mapping[str, Sequence[StorySample]],
    out_dir: str | Path,
    *,
    progress: Progress | None = None,
    command: str = "write_disk",
    source: str | Path | None = None,
    options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    kept: Progress | None = None,
    dataset: Mapping[str, Any] | None = None,
    source_stat: str | None = None,
) -> Path:
    """A ``save_to_disk`` folder (a ``DatasetDict`` with one entry per split).

    ``datasets`` writes the folder as one whole, so it is built beside ``out_dir`` (in its
    hidden ``.NAME.partial`` folder, ``datasets``' cache included: nothing goes to the system's
    temporary folder or to ``~/.cache``) and renamed into place; an interrupted run leaves
    nothing finished, and the next one removes what it left and starts over. A folder this
    same work already wrote from the same stories (ids, texts, images: the record keeps each
    split's :func:`~.resume.content` digest) is left as it is (``kept`` is told every story),
    one whose stories changed in the source since is written again; one written from another
    source or with other settings is refused, naming what differs, and so is any other
    non-empty folder; ``overwrite`` replaces one that is a ``save_to_disk`` folder.
    ``source_stat``: as :func:`write_parquet` takes it (unchanged since the folder was written,
    the folder is done, no story read).

    The lock that holds ``out`` (:func:`~storyreasoning.files.lock_folder`) moves into the new
    folder before it takes ``out``'s place: ``out`` stays held through the rename, and the lock
    file goes when the writer lets go (one a killed writer leaves is no data to any reader).
    """
    datasets = require_datasets()
    for name in splits:  # datasets refuses others only once it writes, with a traceback
        check_split_name(name)
    out = check_output_folder(out_dir)
    dataset = _dataset(source, dataset)
    made = {name: _made_from(ids_of(samples), command, dataset, options) for name, samples in splits.items()}
    with lock_folder(out, refuse=UsageError):
        replace = _disk_state(out, made, overwrite, lambda name: content(splits[name]), source_stat)
        if replace is None:  # already written, by this same work, from these very stories
            record = read_record(out) or {}
            for name, part in record.get("parts", {}).items():  # found by their content: the files' stat
                if source_stat is not None and part.get("source_stat") != source_stat:
                    write_record(out, "disk", name, {**part, "source_stat": source_stat})
            total = sum(len(s) for s in splits.values())
            if kept and total:
                kept(total)
            return out
        _write_disk(datasets, splits, made, out, replace, progress, source_stat)
    return out


def _write_disk(datasets, splits, made, out: Path, replace: bool, progress, source_stat) -> None:
    made_of: dict[str, Content] = {}

    def rows(name: str):
        # the split by its name alone: datasets cuts a list among its gen_kwargs into shards, one call
        # each, and the digest would then be of the last shard's stories only
        made_of[name] = found = Content()
        for sample in splits[name]:
            sample.check_frames()
            row = sample.to_row()
            row.setdefault("frame_meta", None)
            found.add(row)
            yield row
            if progress:
                progress(1)

    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    quiet = are_progress_bars_disabled()
    disable_progress_bars()  # the command shows its own progress; datasets' bars would only repeat it
    try:
        with atomic_folder(out, replace=replace) as tmp:
            _save_to_disk(tmp, splits, rows, datasets, features())
            for name, made_from in made.items():
                empty = Content().digest()  # (an empty split is no generator's)
                content_now = made_of[name].digest() if name in made_of else empty
                write_record(
                    tmp, "disk", name, {**made_from, "content": content_now, "source_stat": source_stat}
                )
            lock = out / LOCK_NAME
            if lock.is_file():  # ours (held above): it goes with the folder, which stays held meanwhile
                os.replace(lock, tmp / LOCK_NAME)
    finally:
        if not quiet:
            enable_progress_bars()


def _save_to_disk(tmp: Path, splits, rows, datasets, feats) -> None:
    # A private cache folder inside the partial folder (removed with it, by the next run after a crash)
    # and a fresh fingerprint: datasets would otherwise hash (pickle) the samples and keep a second copy
    # of everything in ~/.cache.
    cache = tmp / ".cache"
    built = {}
    for name, samples in splits.items():
        if len(samples):
            try:
                built[name] = datasets.Dataset.from_generator(
                    rows,
                    gen_kwargs={"name": name},
                    features=feats,
                    split=name,
                    cache_dir=str(cache),
                    fingerprint=uuid.uuid4().hex,
                )
            except datasets.exceptions.DatasetGenerationError as exc:
                # datasets wraps what ``rows`` raises (a frame that is no image): our one line, as it was
                if isinstance(exc.__cause__, StoryReasoningError):
                    raise exc.__cause__ from None
                raise
        else:
            built[name] = datasets.Dataset.from_list([], features=feats, split=name)
    datasets.DatasetDict(built).save_to_disk(str(tmp))
    del built
    shutil.rmtree(cache, ignore_errors=True)


def _disk_state(
    out: Path,
    made: dict[str, dict],
    overwrite: bool,
    content_now: Callable[[str], str],
    source_stat: str | None = None,
) -> bool | None:
    """What to do with ``out`` before a ``save_to_disk`` write: None (this work is there already, from
    files whose stat is ``source_stat`` still, or from the stories whose digest ``content_now(split)``
    gives), False (it is new or empty), True (replace it: ``overwrite``, or its stories changed in the
    source since); or one line refusing."""
    if not out.is_dir() or not _holds_files(out):
        return False
    record = read_record(out)
    is_disk = (out / "dataset_dict.json").is_file() or (out / "state.json").is_file()
    if record is not None and record.get("format") == "disk":
        old = record["parts"]
        reasons = [
            f"split {name}: {why}"
            for name in made
            if name in old
            for why in differences(old[name], made[name])
        ]
        gone, new = sorted(set(old) - set(made)), sorted(set(made) - set(old))
        if gone or new:
            reasons.append(f"splits {', '.join(sorted(old)) or 'none'} then, {', '.join(made)} now")
        if not reasons and is_disk:
            # the same work; written again where the stories changed since (or a record of a version
            # before, with no digest to tell)
            same = all(
                (source_stat is not None and old[name].get("source_stat") == source_stat)
                or (old[name].get("content") is not None and old[name]["content"] == content_now(name))
                for name in made
            )
            return None if same else True
        if overwrite:
            return True
        raise refusal(
            out, "a save_to_disk dataset", reasons or ["it is incomplete"],
            fix="choose a new folder, or pass --overwrite to replace it",
        )  # fmt: skip
    if record is not None:  # our own output, of another format: never replaced (it may hold other work)
        raise refusal(
            out, f"{record.get('format')} output", ["this run writes a save_to_disk dataset"],
            fix="choose a new folder, or pass --overwrite to replace it",
        )  # fmt: skip
    if is_disk:
        if overwrite:
            return True
        raise UsageError(
            f"{out} holds a save_to_disk dataset with no record of what it was made from (written before "
            "records were kept). Choose a new folder, or pass --overwrite to replace it"
        )
    raise UsageError(f"{out} exists and is not empty; choose a new folder for a save_to_disk dataset")
