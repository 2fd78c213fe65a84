"""What the ``storyreasoning data`` commands do (the CLI in :mod:`storyreasoning.cli` only parses options)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import Interrupted, StoryReasoningError, UsageError, file_error
from ..files import open_atomic
from ..terminal import progress_bar
from .sample import StorySample
from .sources import limited, load_stories

FORMATS = ("parquet", "folder", "disk")


def _check_output_file(path: Path, option: str) -> None:
    """A file the command will write: said now, not after the work, when it cannot be."""
    from .writers import _probe

    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder; give a file name, e.g. {path / 'failures.jsonl'}")
    folder = path.parent
    try:
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise UsageError(f"{option} {path}: {folder} is a file, not a folder; choose another path")
        _probe(folder)
        if path.exists():
            with path.open("ab"):
                pass
    except OSError as exc:
        doing = f"write {option}" if exc.filename == str(path) else f"write {option} {path} in"
        raise file_error(exc, doing, fix="fix the permissions, or choose another path") from None


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def info(source: str, *, split: str | None, limit: int | None, as_json: bool) -> int:
    from .stats import DatasetStats

    stories = limited(load_stories(source, split), limit)
    stats = DatasetStats()
    with progress_bar(len(stories), "reading stories", unit="stories") as advance:
        for sample in stories:
            stats.add(sample)
            advance()
    if as_json:
        sys.stdout.write(json.dumps({"source": stories.describe(), **stats.to_dict()}, indent=2) + "\n")
        return 0
    from rich.table import Table

    table = Table(title=stories.describe(), title_justify="left", show_header=False, show_edge=False)
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for name, value in stats.rows():
        table.add_row(name, value)
    _console().print(table)
    return 0


def _verdict(sample: StorySample, strict: bool):
    try:
        sizes = sample.frame_sizes()
    except StoryReasoningError as exc:
        return None, str(exc)
    telling = sample.telling()
    return telling.validate(n_images=sample.frame_count, image_sizes=sizes, strict=strict), None


def _repeated_ids(ids: list[str], splits: list[str | None]) -> dict[str, str]:
    """Each story id held by more than one story -> where (a story in both train and test is a test
    the model was trained on; twice in one split, every run and score keyed by id loses one)."""
    where: dict[str, list[str | None]] = {}
    for sid, split in zip(ids, splits, strict=True):
        where.setdefault(sid, []).append(split)
    said = {}
    for sid, places in where.items():
        if len(places) > 1:
            counts = Counter(places)
            shown = " and ".join(
                (f"{n} times in " if n > 1 else "") + (f"split {split}" if split else "this dataset")
                for split, n in counts.items()
            )
            said[sid] = (
                f"story id {sid} is held by {len(places)} stories: {shown}; give each story its own id"
            )
    return said


@contextlib.contextmanager
def _failures_file(path: Path | None) -> Iterator[Callable[[dict], None]]:
    """A writer of one ``--failures`` line a call (nothing when ``path`` is None): the lines go to a
    temporary file beside ``path`` as they come (none kept in memory), renamed onto it when the block
    ends whole (an interrupted run leaves ``path`` as it was); a file-system error of its own is one
    line naming it, one of the block's goes on as it was."""
    if path is None:
        yield lambda item: None
        return
    failed = "write the --failures file"
    from_block = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open_atomic(path) as f:

            def write(item: dict) -> None:
                try:
                    f.write(json.dumps(item, ensure_ascii=False) + "\n")
                except OSError as exc:
                    raise file_error(exc, failed) from None

            try:
                yield write
            except BaseException:
                from_block = True
                raise
    except OSError as exc:
        if from_block:
            raise
        raise file_error(exc, failed) from None


def _problems(stories, i: int, strict: bool, repeated: str | None) -> list[dict]:
    """Why the ``i``-th story fails validation (none when it passes); ``repeated``: what its id's
    repetition says, if it is repeated."""
    try:  # a story that cannot be read (no cot.md, a damaged row) is one failure, not the end
        sample = stories[i]
    except StoryReasoningError as exc:
        verdict, problem, code = None, str(exc), "story-unreadable"
    else:
        verdict, problem = _verdict(sample, strict)
        code = "image-unreadable"
    found = []
    if problem is not None:
        found = [{"code": code, "message": problem}]
    elif verdict is not None and not verdict.well_structured:
        found = [d.to_dict() for d in verdict.reasons]
    if repeated is not None:
        found.append({"code": "id-repeated", "message": repeated})
    return found


def validate(
    source: str, *, split: str | None, limit: int | None, strict: bool, as_json: bool, failures: Path | None
) -> int:
    """Validate every story; exit 1 when any is not well-structured."""
    if failures is not None:  # checked writable before the work starts
        _check_output_file(failures, "--failures")
    stories = load_stories(source, split)
    total = len(stories) if limit is None else min(limit, len(stories))
    ids = stories.ids()[:total]  # a story that cannot be read is still named
    repeated = _repeated_ids(ids, stories.row_splits()[:total])
    failed: list[str] = []  # their ids; their reasons go to --failures as they come, not kept
    reasons: Counter[str] = Counter()
    with _failures_file(failures) as write, progress_bar(total, "validating", unit="stories") as advance:
        for i in range(total):
            found = _problems(stories, i, strict, repeated.get(ids[i]))
            if found:
                failed.append(ids[i])
                write({"story_id": ids[i], "reasons": found})
                for reason in {d["code"] for d in found}:
                    reasons[reason] += 1
            advance()
    if as_json:
        out = {
            "source": stories.describe(),
            "stories": total,
            "well_structured": total - len(failed),
            "failed": failed,
            "reasons": dict(reasons.most_common()),
        }
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        console = _console()
        ok = total - len(failed)
        share = f" ({ok / total:.1%})" if total else ""
        console.print(f"{stories.describe()}: [bold]{ok}[/bold] of {total} stories well-structured{share}")
        if reasons:
            from rich.table import Table

            table = Table(
                title="Why stories fail (stories per reason)", title_justify="left", show_edge=False
            )
            table.add_column("reason")
            table.add_column("stories", justify="right")
            for code, n in reasons.most_common():
                table.add_row(code, str(n))
            console.print(table)
            shown = failed[:50]
            more = f" … and {len(failed) - 50} more" if len(failed) > 50 else ""
            console.print("failing stories: " + ", ".join(shown) + more)
        if failures is not None:
            console.print(f"wrote {failures} ({len(failed)} failing stories, one JSON object per line)")
    return 0 if not failed else 1


def show(source: str, story_id: str, *, split: str | None, strict: bool, as_json: bool) -> int:
    from ..terminal import print_summary, story_text

    stories = load_stories(source, split)
    sample = stories.get(story_id)
    verdict, problem = _verdict(sample, strict)
    telling = sample.telling()
    if as_json:
        data = (
            telling.to_dict(verdict) if verdict is not None else telling.to_dict(n_images=sample.frame_count)
        )
        data["story_id"] = sample.story_id
        data["frames"] = [{"name": f.path, "size": _size_or_none(f)} for f in sample.frames]
        data["frame_meta"] = sample.frame_meta
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
        return 0 if verdict is not None and verdict.well_structured else 1
    console = _console()
    frames = ", ".join(
        f"{i}: {Path(f.path).name if f.path else 'embedded'} {_fmt_size(f)}"
        for i, f in enumerate(sample.frames, 1)
    )
    console.print(
        f"[bold]story {sample.story_id}[/bold] from {stories.describe()}: {sample.frame_count} frames ({frames})"
    )
    if sample.frame_meta:
        sources = [str(m.get("source", "-")) for m in sample.frame_meta]
        console.print("frame sources: " + ", ".join(sources))
    console.print(story_text(telling))
    console.print()
    if problem is not None:
        console.print(f"[bold red]unreadable image[/bold red]: {problem}")
        return 1
    print_summary(console, telling, verdict, title=f"story {sample.story_id}", kind="sample")
    return 0 if verdict.well_structured else 1


def _size_or_none(frame):
    try:
        return list(frame.size())
    except StoryReasoningError:
        return None


def _fmt_size(frame) -> str:
    size = _size_or_none(frame)
    return f"{size[0]}x{size[1]}" if size else "(unreadable)"


def _kept_on_disk(out: Path, to: str, targets: dict[str, Path]) -> int:
    """How many stories the output holds now (finished shards, story folders), for the Ctrl-C line."""
    from .folder import is_story_folder

    n = 0
    for name, target in targets.items():
        try:
            if to == "parquet":
                import pyarrow.parquet as pq

                n += sum(
                    pq.ParquetFile(f).metadata.num_rows for f in (out / "data").glob(f"{name}-*.parquet")
                )
            elif to == "folder":
                n += sum(1 for p in target.iterdir() if not p.name.startswith(".") and is_story_folder(p))
        except Exception:  # what cannot be read back is not counted
            continue
    return n


def _interrupted(out: Path, to: str, targets: dict[str, Path], total: int) -> Interrupted:
    if to == "disk":
        return Interrupted(
            f"interrupted; a save_to_disk folder is written whole, so nothing of {out} is kept: run the same "
            "command again to start it over"
        )
    kept = _kept_on_disk(out, to, targets)
    return Interrupted(
        f"interrupted; {out} keeps the {kept:,} of {total:,} stories written so far: run the same command "
        "again to continue"
    )


def _check_layout(out: Path, to: str, targets: dict[str, Path]) -> None:
    """A record elsewhere in ``out`` than where this run writes: another conversion's layout (story folders per
    split, or not split, or shards), whose files would be read with this run's as one dataset."""
    from .resume import RECORD

    mine = {target / RECORD for target in targets.values()} if to == "folder" else {out / RECORD}
    try:
        records = [out / RECORD, *sorted(out.glob(f"*/{RECORD}"))] if out.is_dir() else []
    except OSError:
        return
    other = next((p for p in records if p not in mine and p.is_file()), None)
    if other is None:
        return
    where = "its top folder" if other.parent == out else f"{other.parent}"
    if to != "folder":
        writes = "parquet shards" if to == "parquet" else "a save_to_disk dataset"
    elif out in targets.values():
        writes = f"story folders in {out}"
    else:
        writes = "story folders in one folder per split (" + ", ".join(str(t) for t in targets.values()) + ")"
    raise UsageError(
        f"{out} holds the output of another conversion in {where}, and this run writes {writes}: both would "
        "be read as one dataset; choose a new folder"
    )


def _count(n: int, one: str, many: str) -> str:
    """``1 story``, ``12 stories``."""
    return f"{n:,} {one if n == 1 else many}"


def _done_line(out: Path, to: str, total: int, found: int, listing: str) -> str:
    if total and found >= total:
        these = "this" if total == 1 else "these"
        return f"{out} already holds {these} {_count(total, 'story', 'stories')} ({listing}) as {to}: nothing to write"
    if found:
        wrote = _count(total - found, "story", "stories")
        return (
            f"wrote {wrote} to {out} as {to} and kept the {found:,} an earlier run wrote ({listing} in all)"
        )
    return f"wrote {_count(total, 'story', 'stories')} ({listing}) to {out} as {to}"


def _output_folder(source: str, out: Path) -> Path:
    """``out`` as a conversion writes it (``~`` expanded; ``.`` resolved, for a folder needs a name),
    refused when it is the source dataset's folder, inside it or around it: writing there (with
    ``--overwrite`` above all) would destroy the stories being read; and an empty ``source``, which
    would read this folder (an empty OUT is the CLI's to refuse: a ``Path`` reads it as ``.``)."""
    from .sources import EMPTY_SOURCE, local_dataset

    if not str(source):
        raise UsageError(EMPTY_SOURCE)
    out = out.expanduser()
    if not out.name:
        out = out.resolve()
    src = local_dataset(source)
    if src is not None:
        here = out.resolve()
        if here == src or src in here.parents or here in src.parents:
            raise UsageError(
                f"{out} is the source dataset {source}'s folder, or inside or around it; "
                "write the conversion to a folder of its own"
            )
    return out


def convert(
    source: str,
    out: Path,
    *,
    to: str,
    split: str | None,
    limit: int | None,
    stories_per_shard: int,
    overwrite: bool,
) -> int:
    """Write ``source`` in another format; every split unless ``split`` is given.

    What the output is made from is recorded in it (:mod:`.resume`): the same command again resumes
    (or, when all is written, says so); another source or other options are refused unless ``overwrite``.
    The conversion holds ``out`` as its one writer for its whole life (:func:`~storyreasoning.files.lock_folder`):
    a second one into it meanwhile is refused, naming this one's pid.
    """
    with _writing(source, out, to) as out:
        return _convert(source, out, to, split, limit, stories_per_shard, overwrite)


@contextlib.contextmanager
def _writing(source: str, out: Path, to: str) -> Iterator[Path]:
    """The output folder of a conversion (``convert``, ``contrastive``) into format ``to``, checked
    before any work (it can be written, and what writing it needs is installed), held as the one
    conversion writing to it for the block (:func:`~storyreasoning.files.lock_folder`)."""
    from ..files import lock_folder
    from .sources import require_datasets, require_pyarrow
    from .writers import check_output_folder

    if to not in FORMATS:
        raise UsageError(f"--to must be one of {', '.join(FORMATS)}, got {to!r}")
    out = _output_folder(source, out)
    check_output_folder(out)
    if to == "parquet":
        require_pyarrow()
        require_datasets(load=False)  # the shards carry datasets' features in their schema
    elif to == "disk":
        require_datasets()
    with lock_folder(out, refuse=UsageError, given_as="OUT"):
        yield out


def _convert(
    source: str,
    out: Path,
    to: str,
    split: str | None,
    limit: int | None,
    stories_per_shard: int,
    overwrite: bool,
) -> int:
    from .identity import dataset_record
    from .resume import source_stat
    from .sources import ConcatStories, local_dataset, split_of
    from .writers import check_split_name, write_disk, write_folders, write_parquet

    # the record names the source as a whole, --split given or not (each split's part of the record is
    # that split's): a hub id is loaded whole either way, so asked once; a local dataset is opened
    # again whole (its listing and ids, no story read)
    if split is not None and local_dataset(source) is None:
        whole = load_stories(source)
        loaded = split_of(whole, split)
    else:
        loaded = load_stories(source, split)
        whole = loaded if split is None else load_stories(source)
    stat = source_stat(loaded)  # before a story is read
    dataset = dataset_record(whole)
    parts = loaded._parts if isinstance(loaded, ConcatStories) else [loaded]
    splits = {(p.split or "train"): limited(p, limit) for p in parts}
    total = sum(len(p) for p in splits.values())
    if to != "folder":  # every split's name, before the first split is written
        for name in splits:
            check_split_name(name)
    targets = {
        name: out / name if to == "folder" and (len(splits) > 1 or split is not None) else out
        for name in splits
    }
    _check_layout(out, to, targets)
    found = [0]
    common = {
        "command": "data convert",
        "source": source,
        "dataset": dataset,
        "options": {"limit": limit},
        "overwrite": overwrite,
        "kept": lambda n: found.__setitem__(0, found[0] + n),
        "source_stat": stat,
    }
    console = _console()
    try:
        with progress_bar(total, f"writing {to}", unit="stories") as advance:
            if to == "disk":
                write_disk(splits, out, progress=advance, **common)
            for name, stories in splits.items():
                if to == "parquet":
                    write_parquet(
                        stories,
                        out,
                        split=name,
                        stories_per_shard=stories_per_shard,
                        progress=advance,
                        **common,
                    )
                elif to == "folder":
                    write_folders(stories, targets[name], progress=advance, **common)
    except KeyboardInterrupt:
        raise _interrupted(out, to, targets, total) from None
    listing = ", ".join(f"{name}: {len(s)}" for name, s in splits.items())
    console.print(_done_line(out, to, total, found[0], listing), markup=False, soft_wrap=True)
    return 0


def contrastive(
    source: str,
    out: Path,
    *,
    split: str | None,
    count: int,
    length: tuple[int, int] | str,
    seed: int,
    to: str,
    overwrite: bool = False,
) -> int:
    """Write ``count`` contrastive sequences drawn from ``source``, holding ``out`` for the whole
    run as :func:`convert` does."""
    with _writing(source, out, to) as out:
        return _contrastive(source, out, split, count, length, seed, to, overwrite)


def _contrastive(
    source: str, out: Path, split: str | None, count: int, length, seed: int, to: str, overwrite: bool
) -> int:
    from .contrastive import contrastive_sequences
    from .identity import dataset_record
    from .resume import fingerprint, source_stat
    from .sources import SampleList
    from .writers import write_disk, write_folders, write_parquet

    stories = load_stories(source, split)
    stat = source_stat(stories)  # before a story is read: the sequences are drawn from them alone
    samples = contrastive_sequences(stories, count, length=length, seed=seed)
    source_ids = stories.ids()
    found = [0]
    common = {
        "command": "data contrastive",
        "source": source,
        "dataset": dataset_record(stories),
        "options": {
            "split": split,
            "count": count,
            "length": length if isinstance(length, str) else "-".join(map(str, sorted(set(length)))),
            "seed": seed,
            # the sequences are drawn from the source's stories: another set of them, other sequences
            "source_stories": f"{len(source_ids):,} ({fingerprint(source_ids)})",
        },
        "overwrite": overwrite,
        "kept": lambda n: found.__setitem__(0, found[0] + n),
        "source_stat": stat,
    }
    name = split or "train"
    try:
        with progress_bar(len(samples), f"writing {to}", unit="sequences") as advance:
            if to == "parquet":
                write_parquet(SampleList(samples), out, split=name, progress=advance, **common)
            elif to == "folder":
                write_folders(samples, out, progress=advance, **common)
            else:
                write_disk({name: samples}, out, progress=advance, **common)
    except KeyboardInterrupt:
        raise _interrupted(out, to, {name: out}, len(samples)) from None
    if isinstance(length, str):  # drawn from the dataset's own story lengths
        sizes = [s.frame_count for s in samples] or [0]
        shape = (
            f"{min(sizes)}-{max(sizes)} frames (mean {sum(sizes) / len(sizes):.2f}, "
            "lengths drawn from the dataset's stories)"
        )
    else:
        lo, hi = length
        shape = f"{lo} frames" if lo == hi else f"{lo}-{hi} frames"
    made = _count(len(samples), "contrastive sequence", "contrastive sequences")
    if found[0] >= len(samples):
        these = "this" if len(samples) == 1 else "these"
        line = f"{out} already holds {these} {made} of {shape}: nothing to write"
    else:
        line = f"wrote {made} of {shape} to {out}"
    _console().print(line, markup=False, soft_wrap=True)
    return 0


def _read_card(path: Path) -> str:
    """The text of a dataset card, or one line naming the file and the fix."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"the dataset card {path} is not UTF-8 text ({exc.reason}); save it as UTF-8 (a README.md)"
        ) from None
    except OSError as exc:
        raise file_error(exc, "read the dataset card") from None


def push(settings) -> int:
    """``data push``: the dataset as StoryReasoning parquet with its card, uploaded (or, ``--dry-run``, listed)."""
    from .hub import CARD_MARKER, REPO_PLACEHOLDER, check_can_push, publish, source_card
    from .sources import ConcatStories

    s = settings
    if not s.dry_run:  # the Hub switched off or no token: said before the dataset is read
        check_can_push(s.repo_id, s.token)
    if s.card is not None and not s.card.is_file():
        raise UsageError(f"--card {s.card} is not a file; pass the README.md to upload as the dataset card")
    card = _read_card(s.card) if s.card is not None else None  # before the dataset is read
    loaded = load_stories(s.source)
    parts = loaded._parts if isinstance(loaded, ConcatStories) else [loaded]
    splits = {(p.split or "train"): p for p in parts}
    chosen = s.card or source_card(s.source)
    if card is None and chosen is not None:
        card = _read_card(chosen)
    if card is not None and CARD_MARKER in card:  # a card we wrote: its usage lines name the repository
        card = card.replace(REPO_PLACEHOLDER, s.repo_id)
    err = _console(stderr=True)
    err.print(
        f"[dim]dataset card: {chosen if chosen is not None else 'a generated one (counts, splits, provenance)'}[/dim]"
    )
    with progress_bar(sum(len(p) for p in splits.values()), "writing parquet", unit="stories") as advance:
        url = publish(
            splits,
            s.repo_id,
            card=card,
            out=s.out,
            dry_run=s.dry_run,
            private=s.private,
            token=s.token,
            commit_message=s.commit_message,
            stories_per_shard=s.stories_per_shard,
            what=Path(str(s.source)).name or str(s.source),
            say=lambda line: err.print(f"[dim]{line}[/dim]"),
            progress=advance,
            source=s.source,
        )
    if url is not None:
        err.print(f"pushed {s.source} to {s.repo_id}: {url}")
    return 0
