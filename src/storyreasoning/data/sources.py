"""Open a StoryReasoning dataset from wherever it is, lazily.

:func:`load_stories` takes a hub id (``daniel3303/StoryReasoning``), a ``save_to_disk``
folder, parquet files (a file, or a folder of them such as a hub snapshot's
``data/train-00000-of-00004.parquet``), or the folder layout of
:mod:`storyreasoning.data.folder` (split by subfolders ``train/``, ``test/``… or by a
``splits.json`` beside the story folders, see :mod:`.splits`), and returns a :class:`StoryDataset`: a sequence of
:class:`StorySample` that reads a row only when it is asked for. Story ids come from
the ``story_id`` column alone, so listing and looking up stories never touches an
image, and images stay encoded until a caller opens them.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import StoryReasoningError, UsageError, file_error
from ..files import local_path
from .folder import is_story_folder, read_story_folder
from .sample import Confinement, StorySample, missing_story_id
from .splits import partition

SPLITS = ("train", "test", "validation")
#: What an empty source is told (``Path("")`` would read this folder).
EMPTY_SOURCE = "SOURCE is an empty path; give a dataset folder or file (. for this folder), or a hub id"
#: What may be a hub id (owner/name) rather than a local path that does not exist; huggingface_hub's
#: own rules (no ``--``, no ``.git`` end, …) are checked when the hub is asked. Whole text: ``$`` would
#: let a trailing newline through.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_SPLIT_FROM_NAME = re.compile(r"^(?P<split>[A-Za-z]+)(?:[-_.]|$)")
#: A shard as the hub lays them out (and write_parquet writes them): ``{split}-00000-of-00002.parquet``,
#: the split a name datasets allows (word characters, dot-separated)
_SHARD_NAME = re.compile(r"^(?P<split>\w+(?:\.\w+)*)-\d{5}-of-\d{5}\.parquet$")


class StoryDataset(Sequence):
    """Stories from one source, read on demand. Index by position; :meth:`get` by story id."""

    source: str = ""
    split: str | None = None
    # whether rows may carry per-frame metadata (None: unknown, look at the samples)
    has_frame_meta: bool | None = None

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _row(self, index: int) -> StorySample:  # pragma: no cover - abstract
        raise NotImplementedError

    def ids(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def files(self) -> list[str] | None:
        """The files on this machine that the stories are read from (None when not known: stories in
        memory), listed without reading one."""
        return None

    @property
    def splits(self) -> list[str]:
        """The splits these stories come from, in order (one, or none when the source has no splits)."""
        return [self.split] if self.split else []

    def row_splits(self) -> list[str | None]:
        """The split of each story, in order (None where the source has no splits)."""
        return [self.split] * len(self)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(index)
        return self._row(index)

    def __iter__(self) -> Iterator[StorySample]:
        for i in range(len(self)):
            yield self._row(i)

    def index_of(self, story_id: str) -> int:
        try:
            return self._index()[str(story_id)]
        except KeyError:
            raise UsageError(
                f"no story {story_id!r} in {self.describe()}; "
                "`storyreasoning data info` lists the stories of a dataset"
            ) from None

    def get(self, story_id: str) -> StorySample:
        return self._row(self.index_of(story_id))

    def _index(self) -> dict[str, int]:
        cached = getattr(self, "_ids_index", None)
        if cached is None:
            cached = {}
            for i, sid in enumerate(self.ids()):
                cached.setdefault(sid, i)
            self._ids_index = cached
        return cached

    def describe(self) -> str:
        return f"{self.source}" + (f" (split {self.split})" if self.split else "")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}: {len(self)} stories>"


class SampleList(StoryDataset):
    """Stories already in memory."""

    def __init__(
        self, samples: Sequence[StorySample], source: str = "samples", split: str | None = None
    ) -> None:
        self._samples = list(samples)
        self.source, self.split = source, split

    def __len__(self) -> int:
        return len(self._samples)

    def _row(self, index: int) -> StorySample:
        return self._samples[index]

    def ids(self) -> list[str]:
        return [s.story_id for s in self._samples]


def story_folder_id(folder: Path, root: Path | Confinement | None = None) -> str:
    """The id of the story in the story folder ``folder``: its ``meta.json``'s ``story_id``, else the
    folder's name (also when meta.json is not valid JSON, or a link leading out of the dataset folder
    ``root``, the story folder's parent by default: reading the story says so). No frame is read."""
    import json

    meta = folder / "meta.json"
    try:
        inside = root if isinstance(root, Confinement) else Confinement(root or folder.parent)
        if meta.is_file() and inside(meta):
            return str(json.loads(meta.read_text(encoding="utf-8")).get("story_id", folder.name))
    except (ValueError, AttributeError):
        pass  # read_story_folder reports it when the story is read
    except OSError as exc:
        raise file_error(exc, "read the story folder file") from None
    return folder.name


class FolderStories(StoryDataset):
    """Story folders; each is read when it is asked for. ``root``: the dataset's folder, whose files
    alone they may be made of once links are followed (:func:`~.folder.read_story_folder`; by default
    each story folder's parent)."""

    def __init__(
        self, folders: Sequence[Path], source: str, split: str | None = None, *, root: Path | None = None
    ) -> None:
        self._folders = list(folders)
        self.source, self.split, self.root = source, split, root
        self._inside = Confinement(root) if root is not None else None  # root resolved once
        self._ids: list[str] | None = None

    def __len__(self) -> int:
        return len(self._folders)

    def _row(self, index: int) -> StorySample:
        return read_story_folder(self._folders[index], root=self._inside)

    def ids(self) -> list[str]:
        if self._ids is None:
            self._ids = [story_folder_id(folder, self._inside) for folder in self._folders]
        return self._ids

    def files(self) -> list[str]:
        found = []
        for folder in self._folders:
            with os.scandir(folder) as entries:  # every file of the folder: a story reads most of them
                found += [entry.path for entry in entries]
        return found


class ArrowStories(StoryDataset):
    """A ``datasets.Dataset`` (memory-mapped Arrow: ``save_to_disk`` folders, the hub cache).

    Rows are read as Arrow, so images come out as their stored ``{"bytes", "path"}``
    and are never decoded here. A frame stored as a path alone is read from ``folder``
    only (:meth:`StorySample.from_row`; None, a dataset a program built: as given).
    """

    def __init__(
        self, dataset, source: str, split: str | None = None, *, folder: str | Path | None = None
    ) -> None:
        _check_columns(dataset.column_names, source)
        self._ds = dataset.with_format("arrow")
        self.source, self.split, self.folder = source, split, folder
        self.has_frame_meta = "frame_meta" in dataset.column_names and dataset.data.column(
            "frame_meta"
        ).null_count < len(dataset)

    def __len__(self) -> int:
        return len(self._ds)

    def _row(self, index: int) -> StorySample:
        with _damaged(self.source):
            row = self._ds[index : index + 1].to_pylist()[0]
        return StorySample.from_row(row, self._where(index), folder=self.folder)

    def __iter__(self) -> Iterator[StorySample]:
        index = 0
        with _damaged(self.source):
            for table in self._ds.iter(batch_size=32):
                for row in table.to_pylist():
                    yield StorySample.from_row(row, self._where(index), folder=self.folder)
                    index += 1

    def _where(self, index: int) -> str:
        return f"row {index + 1} of {self.describe()}"

    def ids(self) -> list[str]:
        with _damaged(self.source):
            ids = self._ds.select_columns(["story_id"])[:]["story_id"].to_pylist()
        return _story_ids(ids, self._where)

    def files(self) -> list[str] | None:
        files = [str(f["filename"]) for f in self._ds.cache_files]
        return files or None  # none: a dataset held in memory


class ParquetStories(StoryDataset):
    """Parquet files read a row group at a time (the ids column alone for listing).

    A frame stored as a path alone is read from ``folder`` only (the dataset's folder;
    by default the first file's), see :meth:`StorySample.from_row`.
    """

    def __init__(
        self, files: Sequence[Path], source: str, split: str | None = None, *, folder: Path | None = None
    ) -> None:
        pq = require_pyarrow()

        self.source, self.split = source, split
        self.folder = folder if folder is not None else (Path(files[0]).parent if files else None)
        self._files = []
        self._paths: list[Path] = []
        self._starts: list[int] = []  # global index of each row group's first row
        self._groups: list[tuple[int, int]] = []  # (file index, row group)
        self._file_starts: list[int] = []  # global index of each file's first row
        total = 0
        for f in files:
            try:
                pf = pq.ParquetFile(f)
            except OSError as exc:
                if exc.errno is not None:  # the file system's error (permissions, …), not the content's
                    raise file_error(exc, "read the parquet file") from None
                raise UsageError(
                    f"{f} is not a readable parquet file ({_reason(exc)}); re-export it"
                ) from exc
            except Exception as exc:
                raise UsageError(
                    f"{f} is not a readable parquet file ({_reason(exc)}); re-export it"
                ) from exc
            _check_columns(pf.schema_arrow.names, str(f))
            self.has_frame_meta = bool(self.has_frame_meta) or _has_values(pf, "frame_meta")
            self._files.append(pf)
            self._paths.append(Path(f))
            self._file_starts.append(total)
            for g in range(pf.num_row_groups):
                self._starts.append(total)
                self._groups.append((len(self._files) - 1, g))
                total += pf.metadata.row_group(g).num_rows
        self._len = total
        self._cache: tuple[int, list[dict]] | None = None

    def __len__(self) -> int:
        return self._len

    def _group_rows(self, group: int) -> list[dict]:
        if self._cache is None or self._cache[0] != group:
            fi, g = self._groups[group]
            with _damaged(f"{self._paths[fi]} (row group {g + 1} of {self._files[fi].num_row_groups})"):
                rows = self._files[fi].read_row_group(g).to_pylist()
            self._cache = (group, rows)
        return self._cache[1]

    def _row(self, index: int) -> StorySample:
        group = bisect.bisect_right(self._starts, index) - 1
        row = self._group_rows(group)[index - self._starts[group]]
        return StorySample.from_row(row, self._where(index), folder=self.folder)

    def __iter__(self) -> Iterator[StorySample]:
        for group in range(len(self._groups)):
            start = self._starts[group]
            for k, row in enumerate(self._group_rows(group)):
                yield StorySample.from_row(row, self._where(start + k), folder=self.folder)

    def _where(self, index: int) -> str:
        """``row N of FILE`` for the global row ``index`` (N counts from 1 within the file)."""
        fi = bisect.bisect_right(self._file_starts, index) - 1
        return f"row {index - self._file_starts[fi] + 1} of {self._paths[fi]}"

    def ids(self) -> list[str]:
        out: list[str] = []
        for fi, (path, pf) in enumerate(zip(self._paths, self._files, strict=True)):
            with _damaged(f"{path} (its story_id column)"):
                ids = pf.read(columns=["story_id"]).column("story_id").to_pylist()
            start = self._file_starts[fi]
            out += _story_ids(ids, lambda k, start=start: self._where(start + k))
        return out

    def files(self) -> list[str]:
        return [str(path) for path in self._paths]


class ConcatStories(StoryDataset):
    """Several datasets one after the other (all splits of a source)."""

    def __init__(self, parts: Sequence[StoryDataset], source: str) -> None:
        self._parts = list(parts)
        self.source, self.split = source, None
        known = [p.has_frame_meta for p in self._parts]
        self.has_frame_meta = None if None in known else any(known)
        self._starts = []
        total = 0
        for part in self._parts:
            self._starts.append(total)
            total += len(part)
        self._len = total

    def __len__(self) -> int:
        return self._len

    @property
    def splits(self) -> list[str]:
        return [split for part in self._parts for split in part.splits]

    def _row(self, index: int) -> StorySample:
        k = bisect.bisect_right(self._starts, index) - 1
        return self._parts[k]._row(index - self._starts[k])

    def __iter__(self) -> Iterator[StorySample]:
        for part in self._parts:
            yield from part

    def ids(self) -> list[str]:
        return [sid for part in self._parts for sid in part.ids()]

    def row_splits(self) -> list[str | None]:
        return [split for part in self._parts for split in part.row_splits()]

    def files(self) -> list[str] | None:
        found: list[str] = []
        for part in self._parts:
            files = part.files()
            if files is None:
                return None
            found += files
        return found


def _story_ids(ids: list, where) -> list[str]:
    """The ids of a ``story_id`` column as text; a null one is refused, naming its row (``where(k)``)."""
    for k, sid in enumerate(ids):
        if sid is None:
            raise missing_story_id(where(k))
    return [str(x) for x in ids]


def _has_values(pf, column: str) -> bool:
    """Whether a parquet file's column holds any non-null value (from the footer's statistics)."""
    if column not in pf.schema_arrow.names:
        return False
    leaves = [pf.metadata.schema.column(j).path for j in range(pf.metadata.num_columns)]
    index = leaves.index(column)
    for g in range(pf.num_row_groups):
        group = pf.metadata.row_group(g)
        stats = group.column(index).statistics
        if stats is None or not stats.has_null_count or stats.null_count < group.num_rows:
            return True
    return False


def _check_columns(names: Sequence[str], source: str) -> None:
    missing = [c for c in ("story_id", "images", "chain_of_thought", "story") if c not in names]
    if missing:
        raise UsageError(
            f"{source} is not a StoryReasoning dataset: no column {', '.join(missing)} "
            f"(it has {', '.join(names) or 'none'}); a StoryReasoning dataset has story_id, images, "
            "frame_count, chain_of_thought and story"
        )


def _pick(splits: dict[str, StoryDataset], split: str | None, source: str) -> StoryDataset:
    if split is None:
        if len(splits) == 1:
            return next(iter(splits.values()))
        return ConcatStories([splits[k] for k in sorted(splits, key=_split_order)], source)
    if split not in splits:
        raise UsageError(
            f"{source} has no split {split!r}; its splits are {', '.join(sorted(splits, key=_split_order))}"
        )
    return splits[split]


def _split_order(name: str) -> tuple[int, str]:
    return (SPLITS.index(name) if name in SPLITS else len(SPLITS), name)


def _parquet_split(path: Path, root: Path) -> str:
    """The split of a parquet file: its name's prefix (``train-00000-of-00002``, ``my_split-…``) or its
    folder's name."""
    shard = _SHARD_NAME.match(path.name)
    if shard:
        name = shard.group("split")
        return name.lower() if name.lower() in SPLITS else name
    m = _SPLIT_FROM_NAME.match(path.name)
    if m and m.group("split").lower() in SPLITS:
        return m.group("split").lower()
    for parent in path.relative_to(root).parents:
        if parent.name.lower() in SPLITS:
            return parent.name.lower()
    return m.group("split").lower() if m else "train"


def local_dataset(source: object) -> Path | None:
    """The resolved path of a dataset ``source`` that is on this machine (None for a hub id)."""
    return local_path(source)


def recorded_source(manifest: object) -> str | None:
    """The dataset a manifest names (a run's, a pairs folder's): the path the job resolved when it is on
    this machine (its source as typed was relative to where the job ran), else the source as typed."""
    recorded = manifest.get("dataset") if isinstance(manifest, dict) else None
    if not isinstance(recorded, dict):
        return None
    path, typed = recorded.get("path"), recorded.get("source")
    if isinstance(path, str) and path and Path(path).exists():
        return path
    return typed if isinstance(typed, str) and typed else None


def split_of(whole: StoryDataset, split: str | None) -> StoryDataset:
    """``split`` of a dataset loaded whole (``load_stories(source)``), as ``load_stories(source, split)``
    gives it for a hub id (whose splits are loaded together either way); all of it for None."""
    if split is None:
        return whole
    parts = whole._parts if isinstance(whole, ConcatStories) else [whole]
    return _pick({(part.split or "train"): part for part in parts}, split, whole.source)


def limited(stories: StoryDataset, limit: int | None) -> StoryDataset:
    """The first ``limit`` stories (all when ``limit`` is None), keeping the source and split: a view
    that reads each story from ``stories`` when asked, as they do (none held in memory)."""
    if limit is None or limit >= len(stories):
        return stories
    return FirstStories(stories, max(0, limit))


class FirstStories(StoryDataset):
    """The first ``count`` stories of ``whole``, read from it on demand (``--limit``)."""

    def __init__(self, whole: StoryDataset, count: int) -> None:
        self._whole, self._len = whole, min(count, len(whole))
        self.source, self.split, self.has_frame_meta = whole.source, whole.split, whole.has_frame_meta

    def __len__(self) -> int:
        return self._len

    def _row(self, index: int) -> StorySample:
        return self._whole._row(index)

    def __iter__(self) -> Iterator[StorySample]:  # the whole's own way (a row group at a time), cut short
        return itertools.islice(iter(self._whole), self._len)

    def ids(self) -> list[str]:
        return self._whole.ids()[: self._len]

    def row_splits(self) -> list[str | None]:
        return self._whole.row_splits()[: self._len]

    @property
    def splits(self) -> list[str]:
        if len(self._whole.splits) < 2:
            return self._whole.splits
        return list(dict.fromkeys(split for split in self.row_splits() if split))

    def files(self) -> list[str] | None:
        """The whole dataset's files: the stories are read from them (a change in any is a change)."""
        return self._whole.files()


def load_stories(source: str | Path, split: str | None = None) -> StoryDataset:
    """Open a dataset: a local path (``save_to_disk`` folder, parquet, story folders) or a hub id.

    ``split=None`` gives every split, one after the other (train, test, validation, then
    others), as the original loader did; a split the source lacks is an error that
    lists the splits it has.
    """
    if not str(source):  # Path("") is this folder
        raise UsageError(EMPTY_SOURCE)
    path = Path(source).expanduser()
    label = str(source)
    try:
        return _load_local(path, split, label) if path.exists() else _load_remote(source, split, label)
    except OSError as exc:  # permissions, a file where a folder should be, …: one line naming the path
        raise file_error(exc, "read the dataset at") from None


def _load_local(path: Path, split: str | None, label: str) -> StoryDataset:
    if not path.is_file():
        return _load_folder(path, split, label)
    if path.suffix != ".parquet":
        raise UsageError(
            f"{label} is a file but not a parquet file; pass a parquet file, a dataset folder or a hub id"
        )
    return _pick({split or "train": ParquetStories([path], label, split or "train")}, split, label)


def _load_remote(source: str | Path, split: str | None, label: str) -> StoryDataset:
    if _HUB_ID.fullmatch(str(source)):
        return load_hub(str(source), split)
    raise UsageError(
        f"{label} does not exist; pass a dataset folder, a parquet file or a hub id such as daniel3303/StoryReasoning"
    )


def _load_folder(path: Path, split: str | None, label: str) -> StoryDataset:
    next(path.iterdir(), None)  # first: an unreadable folder is named itself, not a file in it
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        return _load_disk(path, split, label)
    if is_story_folder(path):  # a single story
        return _pick({"train": FolderStories([path], label, split, root=path)}, split, label)
    children = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    story_dirs = [p for p in children if is_story_folder(p)]
    if story_dirs:
        by_split = partition(path, story_dirs)  # splits.json (storyreasoning build --split)
        if by_split is not None:
            return _pick(
                {k: FolderStories(v, label, k, root=path) for k, v in by_split.items()}, split, label
            )
        # one collection without splits: the hub's convention calls that "train"
        return _pick({"train": FolderStories(story_dirs, label, split, root=path)}, split, label)
    split_dirs = {
        p.name: [q for q in sorted(p.iterdir()) if q.is_dir() and is_story_folder(q)] for p in children
    }
    split_dirs = {k: v for k, v in split_dirs.items() if v}
    if split_dirs:
        return _pick({k: FolderStories(v, label, k, root=path) for k, v in split_dirs.items()}, split, label)
    # hidden files and folders inside the dataset are passed over (.cache of datasets, a .partial); the
    # folders above it may be hidden or be ``..`` (a hub snapshot in ~/.cache/huggingface, ../data)
    parquet = sorted(
        p
        for p in path.rglob("*.parquet")
        if not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if parquet:
        groups: dict[str, list[Path]] = {}
        for f in parquet:
            groups.setdefault(_parquet_split(f, path), []).append(f)
        return _pick({k: ParquetStories(v, label, k, folder=path) for k, v in groups.items()}, split, label)
    raise UsageError(
        f"{label} holds no StoryReasoning dataset: expected a save_to_disk folder, parquet files, "
        "or story folders with cot.md and story.md (see the README's Data section)"
        + _frames_hint(path, children, label)
    )


def _frames_hint(path: Path, children: list[Path], label: str) -> str:
    """What to do with a folder of frames alone, or of folders of them (a dataset to be), given where a
    dataset was looked for: ``tell`` one, ``build`` a dataset; else nothing. Looks at 100 entries at most."""
    from .folder import IMAGE_SUFFIXES

    for folder in (path, *children[:50]):
        try:
            entries = itertools.islice(folder.iterdir(), 100)
            if any(p.suffix.lower() in IMAGE_SUFFIXES for p in entries):
                return (
                    f"; frames alone are told with `storyreasoning tell FOLDER`, or made a dataset with "
                    f"`storyreasoning build {label} --out DATASET`"
                )
        except OSError:
            continue
    return ""


def _load_disk(path: Path, split: str | None, label: str) -> StoryDataset:
    datasets = require_datasets()
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # corrupt or foreign folder
        raise UsageError(
            f"{label} looks like a save_to_disk folder but cannot be read ({exc}); re-save it"
        ) from exc
    if isinstance(loaded, datasets.DatasetDict):
        return _pick({k: ArrowStories(v, label, k, folder=path) for k, v in loaded.items()}, split, label)
    own = str(loaded.split) if loaded.split is not None else (split or "train")
    return _pick({own: ArrowStories(loaded, label, own, folder=path)}, split, label)


def load_hub(repo_id: str, split: str | None = None, *, revision: str | None = None) -> StoryDataset:
    """A dataset from the Hugging Face Hub through ``datasets.load_dataset`` (cached locally).

    The hub is asked first, once and briefly: when it cannot be reached (no network, no name
    resolution), the dataset is read from the local cache alone, as with ``HF_HUB_OFFLINE=1``, so a
    dataset not cached is one error at once, not half a minute of retries."""
    datasets = require_datasets()
    unreachable = _hub_unreachable(repo_id)
    try:
        with _offline() if unreachable else contextlib.nullcontext():
            loaded = datasets.load_dataset(repo_id, revision=revision)
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        if unreachable:
            raise StoryReasoningError(
                f"cannot reach the Hugging Face Hub for {repo_id} ({unreachable}) and it is not in the local "
                "cache; connect to the internet, or download it elsewhere and pass the local folder "
                "(save_to_disk or parquet files)"
            ) from exc
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE and "offline" in text.lower():  # the user's own setting, not the network
            raise StoryReasoningError(
                f"{repo_id} is not in the local cache and HF_HUB_OFFLINE is set, so the Hugging Face Hub is "
                "not asked; unset HF_HUB_OFFLINE to download it, or download it elsewhere and pass the local "
                "folder (save_to_disk or parquet files)"
            ) from exc
        if (
            "offline" in text.lower()
            or "connect" in text.lower()
            or "resolve" in text.lower()
            or "reach" in text.lower()
        ):
            raise StoryReasoningError(
                f"cannot reach the Hugging Face Hub for {repo_id} ({text.splitlines()[0][:200]}); "
                "connect to the internet, or download it elsewhere and pass the local folder "
                "(save_to_disk or parquet files)"
            ) from exc
        raise StoryReasoningError(
            f"cannot load {repo_id} from the Hugging Face Hub: {text.splitlines()[0][:300]}"
        ) from exc
    # a frame stored as a path alone: only in datasets' own cache, where it extracts downloaded files
    cache = datasets.config.HF_DATASETS_CACHE
    return _pick({k: ArrowStories(v, repo_id, k, folder=cache) for k, v in loaded.items()}, split, repo_id)


def _hub_unreachable(repo_id: str) -> str | None:
    """Why the hub cannot be reached for ``repo_id`` (no route, no name resolution, refused, timed out
    within :data:`storyreasoning.models.HUB_TIMEOUT`), or None when it answers, whatever it answers, or
    is off (``HF_HUB_OFFLINE``: ``datasets`` reads the cache alone then). An id the hub could not
    hold (``user/my--ds``) is refused at once, with huggingface_hub's reason, before any of that."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError
    from huggingface_hub.utils import validate_repo_id

    from ..models import HUB_TIMEOUT

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        reason = _reason(exc)
        raise UsageError(
            f"{repo_id} is not a valid hub id ({reason}); give owner/name, or a local folder that exists"
        ) from None
    if constants.HF_HUB_OFFLINE:
        return None
    try:
        HfApi().dataset_info(repo_id, timeout=HUB_TIMEOUT)
    except HfHubHTTPError:  # it answered (not found, gated, …): datasets says what is wrong
        return None
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
    return None


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """``HF_HUB_OFFLINE`` for the block, as ``huggingface_hub`` and ``datasets`` read it at each call."""
    import datasets.config
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = before


class _damaged:
    """Read errors in a dataset's content (a corrupt page, a torn file) as one line naming the file."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or isinstance(exc, StoryReasoningError):
            return False
        arrow = getattr(sys.modules.get("pyarrow"), "ArrowException", ())
        if isinstance(exc, OSError) and exc.errno is not None:
            raise file_error(exc, "read the dataset file") from None
        if isinstance(exc, (OSError, ValueError)) or (arrow and isinstance(exc, arrow)):
            raise UsageError(
                f"{self.what} is damaged and cannot be read ({_reason(exc)}); download or export it again"
            ) from None
        return False


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0].strip().rstrip(".")[:200] if text else "") or type(exc).__name__


def require_pyarrow():
    """``pyarrow.parquet``, or one clear error naming the extra that installs it."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError("parquet files need pyarrow: pip install 'storyreasoning[data]'") from None
    return pq


def require_datasets(*, load: bool = True):
    """The ``datasets`` library, or one clear error naming the extra that installs it. ``load`` False
    only finds it installed (None), not importing it yet: the import takes a second or more, which a
    command that may have nothing to write does not spend before it knows."""
    if not load:
        import importlib.util

        if importlib.util.find_spec("datasets") is not None:
            return None
    try:
        import datasets
    except ImportError:
        raise UsageError("this needs the datasets library: pip install 'storyreasoning[data]'") from None
    return datasets
