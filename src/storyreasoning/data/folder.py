"""The folder layout: one folder per story, written and read by hand.

::

    stories/                      the dataset (optionally split: stories/train/…, stories/test/…,
                                  or a splits.json beside the story folders, see .splits)
      lighthouse/                 one story; the folder name is the story id
        01.png  02.png  03.png    the frames, ordered by the number in their names
        cot.md                    the chain-of-thought (published layout, no <think> tags)
        story.md                  the grounded story
        meta.json                 optional: {"story_id": …, "frames": [{"source": …}, …], …}

Frames are the image files (``.png``, ``.jpg``, ``.jpeg``, ``.webp``, ``.gif``,
``.bmp``) whose names contain a number; they are ordered by the last number in the name
(``frame_2.jpg`` before ``frame_10.jpg``). ``meta.json`` is optional: ``story_id``
overrides the folder name, ``frames`` (one object per frame) becomes the sample's
``frame_meta``, every other key its ``meta``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import UsageError, file_error
from ..files import atomic_folder
from .sample import Frame, StorySample

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")
COT_FILE = "cot.md"
STORY_FILE = "story.md"
META_FILE = "meta.json"
_NUMBER = re.compile(r"(\d+)")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def is_story_folder(path: Path) -> bool:
    return (path / COT_FILE).is_file() or (path / STORY_FILE).is_file()


def frame_files(folder: Path) -> list[Path]:
    """The frames of a story folder, in story order (images without a number in their name are not frames)."""
    numbered: dict[int, Path] = {}
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise file_error(exc, "read the frames folder") from None
    for path in entries:
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        numbers = _NUMBER.findall(path.stem)
        if not numbers:
            continue
        n = int(numbers[-1])
        if n in numbered:
            raise UsageError(
                f"{folder}: frames {numbered[n].name} and {path.name} have the same number {n}; rename one"
            )
        numbered[n] = path
    return [numbered[n] for n in sorted(numbered)]


def unnumbered_images(folder: Path) -> list[Path]:
    """The image files of ``folder`` whose names hold no number (which :func:`frame_files` leaves out)."""
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    return [
        p
        for p in entries
        if p.suffix.lower() in IMAGE_SUFFIXES and not _NUMBER.search(p.stem) and p.is_file()
    ]


def frames_hint(folder: Path, *, or_files: bool = False) -> str:
    """Why ``folder`` has no frames and what to do, to end a one-line error; ``or_files`` when the
    command also takes image files (they are then used in the order given)."""
    loose = unnumbered_images(folder)
    if not loose:
        return (
            "frames are image files (PNG, JPEG, WebP, GIF, BMP) with a number in their names, which "
            "sets their order (01.jpg, 02.jpg, …)"
        )
    shown = ", ".join(p.name for p in loose[:3]) + (", …" if len(loose) > 3 else "")
    return (
        f"its {len(loose)} images ({shown}) have no number in their names, and the number is what orders "
        "the frames of a story: rename them in story order (01.jpg, 02.jpg, …)"
        + (", or pass the image files themselves, in story order" if or_files else "")
    )


def numbered_frames(folder: Path, *, or_files: bool = False) -> list[Path]:
    """:func:`frame_files`, or one clear error saying why there are none and what to do."""
    frames = frame_files(folder)
    if not frames:
        raise UsageError(f"{folder} holds no frames: {frames_hint(folder, or_files=or_files)}")
    return frames


def read_story_folder(folder: Path) -> StorySample:
    """One story folder as a sample (frames are referenced by path, not read)."""
    try:
        return _read_story_folder(folder)
    except OSError as exc:  # a file or the folder cannot be read: one line naming it
        raise file_error(exc, "read the story folder file") from None


def _read_story_folder(folder: Path) -> StorySample:
    for name in (COT_FILE, STORY_FILE):
        if not (folder / name).is_file():
            raise UsageError(
                f"story folder {folder} has no {name}; every story folder needs {COT_FILE} and {STORY_FILE}"
            )
    frames = frame_files(folder)
    if not frames:
        raise UsageError(f"story folder {folder} has no frames: {frames_hint(folder)}")
    meta: dict = {}
    if (folder / META_FILE).is_file():
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"{folder / META_FILE} is not valid JSON ({exc}); fix or delete it") from exc
        if not isinstance(meta, dict):
            raise UsageError(f"{folder / META_FILE} must hold a JSON object")
    frame_meta = meta.pop("frames", None)
    if frame_meta is not None and (
        not isinstance(frame_meta, list)
        or len(frame_meta) != len(frames)
        or not all(isinstance(m, dict) for m in frame_meta)
    ):
        raise UsageError(
            f'{folder / META_FILE}: "frames" must be a list of {len(frames)} objects, one per frame'
        )
    story_id = str(meta.pop("story_id", folder.name))
    return StorySample(
        story_id=story_id,
        frames=[Frame(path=str(p)) for p in frames],
        cot_text=_read_text(folder / COT_FILE),
        story_text=_read_text(folder / STORY_FILE),
        frame_meta=frame_meta,
        meta=meta,
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 text ({exc.reason}); save it as UTF-8") from exc


def folder_name(story_id: str) -> str:
    """A safe folder name for a story id (unsafe characters become ``_``)."""
    name = _UNSAFE.sub("_", story_id).strip("._") or "story"
    return name


def write_story_folder(sample: StorySample, root: Path, *, overwrite: bool = False) -> Path:
    """Write one story as ``root/<story id>/``; frames keep their encoded bytes (byte-equal).

    The folder is written beside its destination and renamed into place, so a crash
    never leaves half a story. An existing complete folder is left alone unless
    ``overwrite``.
    """
    name = folder_name(sample.story_id)
    target = root / name
    if target.exists() and not overwrite:
        return target
    sample.check_frames()  # a text file named .png is not a frame: refused, named
    try:
        return _write_story_folder(sample, root, name, target)
    except OSError as exc:
        raise file_error(exc, "write the story folder") from None


def _write_story_folder(sample: StorySample, root: Path, name: str, target: Path) -> Path:
    with atomic_folder(target, replace=True) as tmp:
        width = max(2, len(str(sample.frame_count)))
        for i, frame in enumerate(sample.frames, start=1):
            (tmp / f"{i:0{width}d}{frame.extension()}").write_bytes(frame.bytes())
        (tmp / COT_FILE).write_text(sample.cot_text.strip() + "\n", encoding="utf-8")
        (tmp / STORY_FILE).write_text(sample.story_text.strip() + "\n", encoding="utf-8")
        meta = dict(sample.meta)
        if name != sample.story_id:
            meta["story_id"] = sample.story_id
        if sample.frame_meta is not None:
            meta["frames"] = sample.frame_meta
        if meta:
            (tmp / META_FILE).write_text(
                json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )
    return target
