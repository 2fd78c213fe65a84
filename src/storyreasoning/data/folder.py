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

import hashlib
import itertools
import json
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from ..errors import UsageError, file_error
from ..files import atomic_folder
from .sample import Confinement, Frame, StorySample

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")
COT_FILE = "cot.md"
STORY_FILE = "story.md"
META_FILE = "meta.json"
_NUMBER = re.compile(r"(\d+)")
#: what story folders were named before other scripts' letters were kept (``café``: ``caf``)
_ASCII_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: kept in a folder name besides letters, marks and digits of any script: ``.`` ``_`` ``-`` and the
#: zero-width (non-)joiners that Persian and Indic words are written with
_KEPT = frozenset("._-\u200c\u200d")
#: a folder name's bytes (UTF-8) at most: a path component holds 255 (Linux, macOS); one with
#: other than ASCII leaves room for the whole NAME in the ``.NAME.partial`` folder it is written
#: through (an ASCII name keeps the 255 of earlier versions: files.atomic_folder cuts a longer
#: NAME there, in bytes, and ends it in its hash)
_MAX_BYTES, _MAX_BYTES_UNICODE = 255, 255 - len("..partial")
#: names Windows keeps for devices, in any case and before any extension (``nul.tar.gz`` is ``NUL``):
#: no folder can have them there, so a story's folder name is never one (see :func:`folder_name`)
_WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"{port}{n}" for port in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"]
)


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


def read_story_folder(folder: Path, *, root: Path | Confinement | None = None) -> StorySample:
    """One story folder as a sample (frames are referenced by path, not read).

    Its files must lie in the dataset folder ``root`` (by default the folder the story folder is
    in; a :class:`~storyreasoning.data.sample.Confinement` made once for a dataset's stories) once
    links are followed (a hub snapshot's links to its blobs are followed): a story folder of a
    downloaded dataset whose ``01.png`` is a link to ``~/.ssh/id_rsa`` is refused, naming the file,
    before anything is read. (A folder of frames given to ``tell`` is the user's own:
    :func:`frame_files` follows its links.)
    """
    inside = root if isinstance(root, Confinement) else Confinement(folder.parent if root is None else root)
    try:
        return _read_story_folder(folder, inside)
    except OSError as exc:  # a file or the folder cannot be read: one line naming it
        raise file_error(exc, "read the story folder file") from None


def _read_story_folder(folder: Path, inside: Confinement) -> StorySample:
    if not inside(folder):
        raise UsageError(
            f"story folder {folder} is a link to a folder outside the dataset's folder {inside.root}, so it "
            "is not read; put the story folder itself there in place of the link"
        )
    for name in (COT_FILE, STORY_FILE):
        if not (folder / name).is_file():
            raise UsageError(
                f"story folder {folder} has no {name}; every story folder needs {COT_FILE} and {STORY_FILE}"
            )
    frames = frame_files(folder)
    if not frames:
        raise UsageError(f"story folder {folder} has no frames: {frames_hint(folder)}")
    has_meta = (folder / META_FILE).is_file()
    texts = [folder / COT_FILE, folder / STORY_FILE] + ([folder / META_FILE] if has_meta else [])
    for path in frames + texts:  # the folder is inside: a file there that is no link is too
        if path.is_symlink() and not inside(path):
            raise UsageError(
                f"story folder {folder}: {path.name} is a link to a file outside the dataset's folder "
                f"{inside.root}, so it is not read; put the file itself (a copy, or a hard link: ln without -s) "
                "in the story folder in place of the link"
            )
    meta: dict = {}
    if has_meta:
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
    """A safe folder name for a story id: its letters, marks and digits of any script, ``.``, ``_``
    and ``-`` kept, each run of other characters (spaces, ``/``, ``\\``, control and format
    characters, symbols, bytes that were not UTF-8) made one ``_``, and ``.`` and ``_`` taken off
    both ends (so never ``.``, ``..`` nor a hidden name); ``story`` when nothing is left.

    A name over :data:`_MAX_BYTES` bytes in UTF-8 (:data:`_MAX_BYTES_UNICODE` when not all
    ASCII) is cut on a character boundary and ends in ``-`` and 8 hex digits of the story id's
    hash, so that long ids that begin alike keep distinct folders. Two ids that still give one
    name are refused by the writers, naming both, and so are two whose names differ only in case or
    Unicode form (:func:`folding_clash`: one folder on a Mac); the case is kept (``Casablanca-001``).

    A name Windows keeps for a device (``CON``, ``nul.txt``, ``COM1``: :data:`_WINDOWS_DEVICES`)
    begins with ``_`` (``_CON``), which no other id's name does (``_`` is taken off both ends), so
    the story can be unpacked there; :func:`story_folder` still finds one written as ``CON`` before.
    """
    runs = itertools.groupby(story_id, lambda c: c in _KEPT or unicodedata.category(c)[0] in "LMN")
    name = "".join("".join(run) if kept else "_" for kept, run in runs).strip("._") or "story"
    if name.split(".", 1)[0].upper() in _WINDOWS_DEVICES:
        name = "_" + name
    limit = _MAX_BYTES if name.isascii() else _MAX_BYTES_UNICODE
    encoded = name.encode("utf-8")
    if len(encoded) <= limit:
        return name
    digest = hashlib.sha256(story_id.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    head = encoded[: limit - len(digest) - 1].decode("utf-8", "ignore")  # a character cut in two: dropped
    return f"{head}-{digest}"


def folded(name: str) -> str:
    """``name`` as a file system that ignores case and Unicode form compares it (macOS's by default;
    Windows' ignores case): ``Film`` and ``film``, NFC and NFD ``café``, give one ``folded`` name."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def folding_clash(names: Iterable[str], there: Iterable[str] = ()) -> tuple[str, str] | None:
    """The first two folder names that are one folder where the file system ignores case or Unicode
    form, or None: two of ``names`` (equal ones too), else one of ``there`` (folders already
    written) and another of ``names``, in that order. Linear: one dict of folded names."""
    seen: dict[str, str] = {}
    for name in names:
        key = folded(name)
        if key in seen:
            return seen[key], name
        seen[key] = name
    for old in there:
        name = seen.get(folded(old))
        if name is not None and name != old:
            return old, name
    return None


def one_folder(first: str, second: str, *, fix: str = "") -> str:
    """Why the stories ``first`` and ``second`` (ids whose folder names :func:`folding_clash` found)
    are refused, and what to do (``fix``: another way out), for a one-line error. Ids that differ
    in Unicode form alone are shown escaped (``'caf\\xe9'``, ``'cafe\\u0301'``), else they would look alike."""
    alike = unicodedata.normalize("NFC", first) == unicodedata.normalize("NFC", second)
    shown = ascii if alike else repr
    return (
        f"the stories {shown(first)} and {shown(second)} would be one folder on file systems that ignore "
        "case or Unicode form, as macOS's and Windows' do by default; give the stories ids that differ "
        f"otherwise{fix}"
    )


def story_folder(root: Path, story_id: str) -> Path:
    """The folder of ``story_id`` in ``root``: ``root / folder_name(story_id)``, or, when only that
    one is there, the folder an earlier version wrote the story to (its name ASCII: ``café`` was
    ``caf``, ``日本`` was ``story``; a device name of Windows as it is: ``CON`` was ``CON``) and
    which holds this story, so that work begun before finds the stories it wrote rather than
    writing them twice."""
    path = root / folder_name(story_id)
    old = root / (_ASCII_UNSAFE.sub("_", story_id).strip("._") or "story")
    if old == path or len(old.name) > _MAX_BYTES or path.exists() or not is_story_folder(old):
        return path
    try:
        meta = json.loads((old / META_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:  # none: its name is its id (``CON``, before such names began with ``_``)
        meta = {}
    except (OSError, ValueError):  # unreadable
        return path
    return old if isinstance(meta, dict) and meta.get("story_id", old.name) == story_id else path


def write_story_folder(
    sample: StorySample, root: Path, *, overwrite: bool = False, sync_root: bool = True
) -> Path:
    """Write one story as ``root/<story id>/``; frames keep their encoded bytes (byte-equal).

    The folder is written beside its destination and renamed into place, so a crash
    never leaves half a story. An existing complete folder is left alone unless
    ``overwrite``. ``sync_root`` False leaves ``root`` unsynced after the rename, for a writer
    of many stories that syncs it once (:func:`storyreasoning.files.sync_folder`) at the end.
    """
    name = folder_name(sample.story_id)
    target = root / name
    if target.exists() and not overwrite:
        return target
    sample.check_frames()  # a text file named .png is not a frame: refused, named
    try:
        return _write_story_folder(sample, root, name, target, sync_root)
    except OSError as exc:
        raise file_error(exc, "write the story folder") from None


def _write_story_folder(sample: StorySample, root: Path, name: str, target: Path, sync_root: bool) -> Path:
    with atomic_folder(target, replace=True, sync_parent=sync_root) as tmp:
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
