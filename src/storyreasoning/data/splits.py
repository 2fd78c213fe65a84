"""Train and test splits of a folder dataset, by identity group: ``splits.json`` at its root.

A folder dataset (one folder per story, :mod:`.folder`) is split by a file beside its
story folders::

    stories/
      splits.json     {"train_fraction": 0.85, "rule": "…", "stories": {"lighthouse": "train", …}}
      lighthouse/  pioneers/  …

``stories`` maps every story **folder name** to its split. :func:`~storyreasoning.data.load_stories`
reads the file, so every command that takes ``--split`` (``data``, ``tell-dataset``,
``evaluate``, ``train sft``) sees the folder's splits as it sees a parquet dataset's; a
story folder the file does not list is an error naming the fix. The file is the one place
a folder's split is recorded: ``storyreasoning build --split`` writes it at the end of every
run (also on resume), from :func:`assign_splits`.

**The rule.** A split must not leak an identity: every frame of one identity group (its
``frame_meta`` ``group``: one video, one folder of frames; see
:meth:`~storyreasoning.data.sample.StorySample.frame_group`) is in one split. Stories
sharing a group are joined (transitively) into one unit; the unit's key is its smallest
group name, and the unit goes to ``train`` when the SHA-256 of that key, read as a number
in [0, 1) (its first 8 bytes over 2**64), is below the train fraction, else to ``test``. A unit's split depends on its own
name and the fraction only, never on the other stories or their order, so a dataset that
grows on resume keeps every earlier story where it was (unless a new story joins two units
that were apart), and raising the fraction only moves units from test to train. The price:
each unit is a coin with bias ``train_fraction``, so with few groups the shares can be far
from the fraction (with 4 groups at 0.85, all four are train half the time); the builder
says so when a split comes out empty.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..errors import UsageError, file_error
from ..files import write_json_atomic

SPLITS_FILE = "splits.json"
TRAIN, TEST = "train", "test"
RULE = (
    "stories sharing an identity group (frame_meta group) form one unit; a unit is train when the first "
    "8 bytes of sha256(its smallest group name, UTF-8), big-endian, / 2**64 < train_fraction, else test"
)


def unit_position(key: str) -> float:
    """Where a unit named ``key`` falls in [0, 1): the first 8 bytes of ``sha256(key)`` over 2**64."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def check_fraction(train_fraction: float) -> float:
    fraction = float(train_fraction)
    if not 0.0 < fraction < 1.0:
        raise UsageError(
            f"the train fraction must be between 0 and 1 (exclusive), e.g. 0.85, got {train_fraction}"
        )
    return fraction


def units(groups: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """``story -> unit key``: stories sharing a group (transitively) get one key, their smallest group name."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:  # the smaller name is the root: the unit's key is its smallest group
            parent[max(ra, rb)] = min(ra, rb)

    own: dict[str, list[str]] = {}
    for story, names in groups.items():
        names = sorted({str(n) for n in names}) or [story]
        own[story] = names
        for name in names[1:]:
            union(names[0], name)
        find(names[0])
    return {story: find(names[0]) for story, names in own.items()}


def assign_splits(groups: Mapping[str, Iterable[str]], train_fraction: float) -> dict[str, str]:
    """``story -> "train" | "test"`` for stories given with their identity groups (see the module doc)."""
    fraction = check_fraction(train_fraction)
    return {story: TRAIN if unit_position(key) < fraction else TEST for story, key in units(groups).items()}


def story_groups(folder: Path) -> list[str]:
    """The identity groups of the frames of one story folder (its id when it records none)."""
    from .folder import read_story_folder

    sample = read_story_folder(folder)
    return sorted({sample.frame_group(i) for i in range(sample.frame_count)}) or [sample.story_id]


def write_splits(root: Path, assigned: Mapping[str, str], train_fraction: float) -> Path:
    """Write ``root/splits.json`` (atomically): the rule, the fraction and ``folder name -> split``."""
    path = Path(root) / SPLITS_FILE
    data = {
        "train_fraction": float(train_fraction),
        "rule": RULE,
        "stories": {name: assigned[name] for name in sorted(assigned)},
    }
    try:
        write_json_atomic(path, data)
    except OSError as exc:
        raise file_error(exc, "write the splits file") from None
    return path


def split_folder_dataset(root: Path, train_fraction: float) -> dict[str, str]:
    """Split the story folders under ``root`` by group and write ``splits.json``; returns ``folder -> split``."""
    from .folder import is_story_folder

    check_fraction(train_fraction)
    root = Path(root)
    folders = sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and is_story_folder(p)
    )
    assigned = assign_splits({p.name: story_groups(p) for p in folders}, train_fraction)
    write_splits(root, assigned, train_fraction)
    return assigned


def read_splits(root: Path) -> dict | None:
    """``root/splits.json`` checked (its ``stories`` map folder names to split names), or None when absent."""
    path = Path(root) / SPLITS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise file_error(exc, "read the splits file") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not valid JSON ({exc}); fix it, or delete it to use no splits") from None
    stories = data.get("stories") if isinstance(data, dict) else None
    if not isinstance(stories, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in stories.items()
    ):
        raise UsageError(
            f'{path} must hold {{"stories": {{"<story folder>": "<split>", …}}}}; fix it, or delete it to use '
            "no splits"
        )
    return data


def partition(root: Path, folders: Iterable[Path]) -> dict[str, list[Path]] | None:
    """The story ``folders`` of ``root`` by split as ``root/splits.json`` says (None without the file).

    Splits are in the order train, test, then others; a split with no story is left out. A
    folder the file does not list is an error: the split of a new story is not guessed.
    """
    data = read_splits(root)
    if data is None:
        return None
    stories = data["stories"]
    out: dict[str, list[Path]] = {}
    unlisted = []
    for folder in folders:
        split = stories.get(folder.name)
        if split is None:
            unlisted.append(folder.name)
            continue
        out.setdefault(split, []).append(folder)
    if unlisted:
        shown = ", ".join(unlisted[:3]) + (f" and {len(unlisted) - 3} more" if len(unlisted) > 3 else "")
        raise UsageError(
            f"{Path(root) / SPLITS_FILE} gives no split for the story folder {shown}; run the build again "
            "with --split to re-split, add them to the file, or delete it to use no splits"
        )
    order = {TRAIN: 0, TEST: 1}
    return {k: out[k] for k in sorted(out, key=lambda k: (order.get(k, 2), k))}


__all__ = [
    "RULE",
    "SPLITS_FILE",
    "TEST",
    "TRAIN",
    "assign_splits",
    "check_fraction",
    "partition",
    "read_splits",
    "split_folder_dataset",
    "story_groups",
    "unit_position",
    "units",
    "write_splits",
]
