"""Write stories: parquet shards (hub layout), story folders, ``save_to_disk`` folders.

Every writer keeps the frames' encoded bytes (no re-encoding: a JPEG stays the same
JPEG), writes each unit (a shard, a story folder) beside its destination and renames it
into place, and skips units already complete, so an interrupted conversion resumes
where it stopped without writing anything twice.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from ..errors import UsageError, file_error
from ..files import atomic_folder, atomic_path, remove_leftovers
from .folder import write_story_folder
from .sample import StorySample
from .sources import require_datasets, require_pyarrow

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
        if empty and out.is_dir() and next(out.iterdir(), None) is not None:
            raise UsageError(f"{out} exists and is not empty; choose a new folder for a save_to_disk dataset")
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


def _probe(folder: Path) -> None:
    """Make and remove a file in ``folder``; an error names the folder, not the probe."""
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror, str(folder)) from None


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.parquet"


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
) -> list[Path]:
    """Write ``samples`` as ``out_dir/data/{split}-NNNNN-of-MMMMM.parquet`` with embedded images.

    The files carry the ``datasets`` features in their schema, so
    ``datasets.load_dataset("parquet", data_files=...)`` and
    ``datasets.load_dataset(out_dir)`` read the images as images, and ``out_dir`` can be
    uploaded as is (``huggingface-cli upload --repo-type dataset``). The dataset card
    (``README.md``, :func:`storyreasoning.data.card.write_parquet_card`) is written afresh for
    every split now in the folder, saying that ``command`` wrote them from ``source`` (whose
    build record it reports when it is a local folder that has one); a card storyreasoning did
    not write is left alone. Small row groups keep reading one story cheap. Complete shards
    already present are skipped.
    """
    pq = require_pyarrow()
    import pyarrow as pa

    if stories_per_shard < 1 or rows_per_group < 1:
        raise UsageError("stories_per_shard and rows_per_group must be at least 1")
    out = check_output_folder(out_dir)
    try:
        written = _write_parquet(samples, out, pa, pq, split, stories_per_shard, rows_per_group, progress)
    except OSError as exc:
        if exc.errno is None:  # pyarrow's own error, without a path: say which folder
            raise UsageError(
                f"cannot write parquet shards into {out} ({exc}); check the disk and the folder"
            ) from None
        raise file_error(exc, "write the parquet shard") from None
    from .card import write_parquet_card

    write_parquet_card(out, command=command, source=source)
    return written


def _write_parquet(
    samples, out: Path, pa, pq, split, stories_per_shard, rows_per_group, progress
) -> list[Path]:
    data_dir = out / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    n = len(samples)
    count = max(1, -(-n // stories_per_shard))
    for stale in data_dir.glob(f"{split}-*.parquet"):
        if not stale.name.endswith(f"-of-{count:05d}.parquet"):
            raise UsageError(
                f"{stale} belongs to an earlier conversion with another shard count; "
                f"delete {data_dir}/{split}-*.parquet first"
            )
    schema = features().arrow_schema
    written = []
    for k in range(count):
        lo, hi = k * stories_per_shard, min(n, (k + 1) * stories_per_shard)
        target = data_dir / shard_name(split, k, count)
        written.append(target)
        if _complete(target, hi - lo):
            if progress:
                progress(hi - lo)
            continue
        remove_leftovers(target)  # of a conversion killed mid-shard: this one is the shard's one writer
        with atomic_path(target) as tmp, pq.ParquetWriter(tmp, schema) as writer:
            batch: list[dict] = []
            for i in range(lo, hi):
                sample = samples[i]
                sample.check_frames()  # a text file named .jpg does not go into the images column
                row = sample.to_row()
                row.setdefault("frame_meta", None)
                batch.append(row)
                if len(batch) == rows_per_group or i == hi - 1:
                    writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                    if progress:
                        progress(len(batch))
                    batch = []
            if lo == hi:  # an empty split still gets a valid file
                writer.write_table(pa.Table.from_pylist([], schema=schema))
    return written


def _complete(path: Path, rows: int) -> bool:
    if not path.is_file():
        return False
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows == rows
    except Exception:
        return False


def write_folders(
    samples: Iterable[StorySample],
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> list[Path]:
    """Write each story as a folder (see :mod:`storyreasoning.data.folder`); existing ones are kept."""
    out = check_output_folder(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise file_error(exc, "write the output folder") from None
    done = []
    seen: set[str] = set()
    for sample in samples:
        path = write_story_folder(sample, out, overwrite=overwrite)
        if path.name in seen:
            raise UsageError(
                f"two stories map to the folder {path}; story ids must stay distinct after "
                "replacing characters other than letters, digits, '.', '_' and '-'"
            )
        seen.add(path.name)
        done.append(path)
        if progress:
            progress(1)
    return done


def write_disk(
    splits: dict[str, Sequence[StorySample]], out_dir: str | Path, *, progress: Progress | None = None
) -> Path:
    """A ``save_to_disk`` folder (a ``DatasetDict`` with one entry per split)."""
    datasets = require_datasets()
    Dataset, DatasetDict = datasets.Dataset, datasets.DatasetDict
    out = check_output_folder(out_dir, empty=True)
    feats = features()

    def rows(samples: Sequence[StorySample]):
        for sample in samples:
            sample.check_frames()
            row = sample.to_row()
            row.setdefault("frame_meta", None)
            yield row
            if progress:
                progress(1)

    # A private cache folder and a fresh fingerprint: datasets would otherwise hash (pickle)
    # the samples and keep a second copy of everything in ~/.cache.
    with tempfile.TemporaryDirectory(prefix="storyreasoning-disk-") as cache:
        built = {}
        for name, samples in splits.items():
            if len(samples):
                built[name] = Dataset.from_generator(
                    rows,
                    gen_kwargs={"samples": samples},
                    features=feats,
                    split=name,
                    cache_dir=cache,
                    fingerprint=uuid.uuid4().hex,
                )
            else:
                built[name] = Dataset.from_list([], features=feats, split=name)
        with atomic_folder(out) as tmp:  # out is new or empty (checked before)
            DatasetDict(built).save_to_disk(str(tmp))
    return out
