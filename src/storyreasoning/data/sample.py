"""One story of a dataset: its frames, its chain-of-thought and its grounded story.

:class:`StorySample` is the row type every part of the project exchanges (loaders,
writers, training messages, storytellers, evaluation, the studio). Frames are
:class:`Frame` objects that hold encoded image bytes or a path and decode nothing
until asked, so listing, filtering and counting stories never decodes an image.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..format.cot import CoT
from ..format.cot_parser import parse_cot
from ..format.images import open_image, read_image_bytes, sniff_mime
from ..format.prompts import assistant_target
from ..format.story import GroundedStory
from ..format.story_parser import parse_story
from ..format.stream import Telling, parse_output

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image as PILImage

_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp"}
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff")
_TIMESTAMP = re.compile(r"(?P<video>.+)@\d+(?:\.\d+)?s")


def legacy_group(source: str, story_id: str) -> str:
    """The identity group of a frame whose ``frame_meta`` entry has a ``source`` but no ``group``.

    Before ``group`` existed, ``source`` meant two things. Our contrastive sequences and
    the README told people to record the film there, so it was the group; the builder
    wrote each frame's own provenance there instead: its file path, or
    ``video@seconds`` for a video's key frame. A source of that second form names one
    frame, so it is mapped to what grouped it: ``film.mp4@12.40s`` to ``film.mp4``, an
    image path to the story id (the builder made one story per folder). Any other
    source is the group as it was.
    """
    stamped = _TIMESTAMP.fullmatch(source)
    if stamped:
        return stamped.group("video")
    if source.lower().endswith(_IMAGE_SUFFIXES):
        return story_id
    return source


@dataclass(frozen=True)
class Frame:
    """One image of a story, kept encoded: bytes, a file path, or both.

    ``data`` wins over ``path`` when both are set (a dataset row stores the bytes and
    the file name they came from). Nothing is decoded until :meth:`open`; :meth:`size`
    reads the header only.
    """

    data: bytes | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        if self.data is None and self.path is None:
            raise ValueError("a Frame needs image bytes or a path")

    @classmethod
    def from_pil(cls, image: PILImage, format: str = "PNG") -> Frame:
        """Encode a PIL image (PNG by default, lossless)."""
        buf = io.BytesIO()
        image.save(buf, format=format)
        return cls(data=buf.getvalue())

    @classmethod
    def coerce(cls, value: Any) -> Frame:
        """A Frame from a Frame, a path, bytes, a PIL image or a ``{"bytes", "path"}`` dict (datasets' Image)."""
        if isinstance(value, Frame):
            return value
        if isinstance(value, (str, Path)):
            return cls(path=str(value))
        if isinstance(value, (bytes, bytearray, memoryview)):
            return cls(data=bytes(value))
        if isinstance(value, dict):
            data, path = value.get("bytes"), value.get("path")
            if data is None and path is None:
                raise UsageError(
                    "a dataset row has an image with neither bytes nor a path; re-export the dataset"
                )
            return cls(data=bytes(data) if data is not None else None, path=path)
        if hasattr(value, "save") and hasattr(value, "size"):  # a PIL image
            return cls.from_pil(value)
        raise TypeError(f"cannot make a frame from {type(value).__name__}")

    @property
    def name(self) -> str:
        return self.path or "image bytes"

    def bytes(self) -> bytes:
        """The encoded image, exactly as stored."""
        return self.data if self.data is not None else read_image_bytes(self.path)

    def mime(self) -> str | None:
        return sniff_mime(self.bytes()[:16])

    def extension(self) -> str:
        """``.png``, ``.jpg``, ``.gif`` or ``.webp`` from the bytes' signature (``.png`` when unknown)."""
        return (
            _EXTENSIONS.get(self.mime() or "", Path(self.path).suffix.lower() if self.path else ".png")
            or ".png"
        )

    def size(self) -> tuple[int, int]:
        """``(width, height)`` from the header, without decoding the pixels."""
        from ..format.images import image_size

        if self.data is not None:
            return image_size(self.data, name=self.name)
        return image_size(self.path)

    def open(self) -> PILImage:
        """The decoded RGB image; a clear error when it is corrupt."""
        return open_image(self.data if self.data is not None else self.path, name=self.name)

    def to_hf(self) -> dict:
        """The ``{"bytes", "path"}`` dict of a datasets ``Image`` feature, bytes embedded."""
        return {"bytes": self.bytes(), "path": Path(self.path).name if self.path else None}


#: a repository's folder in a Hugging Face hub cache (``models--org--name``, ``datasets--org--name``)
_HUB_REPO = re.compile(r"(?:models|datasets|spaces)--.+")


def _hub_blobs(real_root: str) -> str | None:
    """The ``blobs`` folder of the Hugging Face hub cache repository whose ``snapshots/REV/`` holds
    ``real_root`` (a resolved path: the folder itself or one inside it), else None."""
    parts = Path(real_root).parts
    for i in range(len(parts) - 2, 0, -1):  # a revision after ``snapshots``: the repository before it
        if parts[i] == "snapshots" and _HUB_REPO.fullmatch(parts[i - 1]):
            return os.path.join(*parts[:i], "blobs")
    return None


class Confinement:
    """Whether a file lies in the dataset folder ``root`` once links are followed (its real path is
    in ``root``'s): a downloaded dataset (a tarball of story folders, a parquet row naming a frame by
    path) cannot make this machine's other files (``01.png -> ~/.ssh/id_rsa``) be read, copied into
    outputs, served or sent to a storyteller. Links that stay in the dataset are followed, and so
    are those of a Hugging Face hub snapshot: a dataset in a cache repository's ``snapshots/REV/``
    may name files in that repository's ``blobs/`` (its files are links to them), no other's.

    ``root`` is resolved once, when made (a dataset makes one for all its stories); each call
    resolves the file's links (no file is opened)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._real = os.path.realpath(os.path.expanduser(os.fspath(root)))
        self._blobs = _hub_blobs(self._real)

    def __call__(self, path: str | os.PathLike[str]) -> bool:
        target = os.path.realpath(path)
        if _within(target, self._real):
            return True
        return self._blobs is not None and os.path.dirname(target) == self._blobs


def _within(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([folder, path]) == folder
    except ValueError:  # another drive (Windows), or one path relative
        return False


def confined_path(path: str, folder: str | Path | None) -> str:
    """``path``, a frame a dataset's row names, as a file inside the dataset's ``folder`` (a relative
    path is taken from there, not from the working folder); else an error (``names PATH, …``, to
    follow a frame's name) saying why and the fix.

    The path is judged as written (``..`` and absolute paths leaving ``folder`` are refused), then
    with its links followed (:class:`Confinement`: a link leading out of ``folder`` is refused, but
    for a hub snapshot's links to its repository's blobs). None for ``folder``: rows a program
    built itself (:meth:`StorySample.from_row` called directly), whose paths are its own to name:
    taken as given. Every dataset source gives its folder.
    """
    fix = "embed the images' bytes in the dataset (datasets' save_to_disk and push_to_hub do)"
    if "\0" in path:
        raise UsageError(f"names {path[:200]!r}, which holds a NUL byte, so it is not read; {fix}")
    if folder is None:
        return path
    base = os.path.abspath(os.path.expanduser(str(folder)))
    full = os.path.normpath(os.path.join(base, path))
    if os.path.commonpath([base, full]) != base:
        raise UsageError(
            f"names {path[:200]!r}, outside the dataset's folder {base}, so it is not read; "
            f"move the image into that folder and name it from there, or {fix}"
        )
    if not Confinement(base)(full):
        raise UsageError(
            f"names {path[:200]!r}, a link to a file outside the dataset's folder {base}, so it is not "
            f"read; put the image itself (a copy, or a hard link: ln without -s) there in place of the link, or {fix}"
        )
    if os.path.exists(full) and not os.path.isfile(full):
        raise UsageError(f"names {path[:200]!r}, not a regular file, so it is not read; {fix}")
    return full


def _confined_frame(frame: Frame, folder: str | Path | None, k: int) -> Frame:
    """``frame`` with its path confined to ``folder`` when it has no bytes (``k``: its number, for errors)."""
    if frame.data is not None or frame.path is None:
        return frame
    try:
        return Frame(path=confined_path(frame.path, folder))
    except UsageError as exc:
        raise UsageError(f"frame {k} {exc}") from None


def missing_story_id(where: str) -> UsageError:
    """The error for a dataset row whose ``story_id`` is null; ``where`` names the row (``row 3 of x.parquet``)."""
    return UsageError(
        f"{where} has no story_id (it is null); give every row a story id, or export the dataset again"
    )


@dataclass
class StorySample:
    """A story: frames, chain-of-thought and grounded story, as texts and parsed.

    ``cot_text`` is the CoT markdown without ``<think>`` tags and ``story_text`` the
    tagged story, as stored (the published dataset's ``chain_of_thought`` and
    ``story`` fields). ``cot`` and ``story`` parse them on first use. ``frame_meta``
    holds optional metadata per frame, two keys of which have a fixed meaning:

    ``group``
        what decides identity: frames of one group may show the same people (a film, a
        video, a story); frames of different groups never do. The reward punishes links
        across groups and the contrastive sequences never take two frames of one group.
        Read it with :meth:`frame_group`.
    ``source``
        provenance, for people: where the frame was taken from (a file path,
        ``film.mp4@12.40s``). Read it with :meth:`frame_source`. Nothing decides
        identity from it.

    ``meta`` holds any metadata of the story.
    """

    story_id: str
    frames: list[Frame]
    cot_text: str
    story_text: str
    frame_meta: list[dict] | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.story_id = str(self.story_id)
        self.frames = [Frame.coerce(f) for f in self.frames]
        if self.frame_meta is not None and len(self.frame_meta) != len(self.frames):
            raise ValueError(
                f"story {self.story_id}: {len(self.frame_meta)} frame_meta entries for {len(self.frames)} frames"
            )

    @property
    def frame_count(self) -> int:
        return len(self.frames)

    @cached_property
    def cot(self) -> CoT:
        return parse_cot(self.cot_text)

    @cached_property
    def story(self) -> GroundedStory:
        return parse_story(self.story_text)

    def output_text(self) -> str:
        """The sample as a storyteller output: ``<think>`` CoT ``</think>`` story."""
        return assistant_target(self.cot_text, self.story_text)

    def telling(self) -> Telling:
        """The sample parsed as a model output (for the validator and the metrics)."""
        return parse_output(self.output_text())

    def frame_sizes(self) -> list[tuple[int, int]]:
        return [frame.size() for frame in self.frames]

    def check_frames(self) -> None:
        """Every frame is an image (its header reads), else one error naming the story, the frame
        and its file: writers call it before a story goes into a dataset."""
        for number, frame in enumerate(self.frames, start=1):
            try:
                frame.size()
            except UsageError as exc:
                raise UsageError(
                    f"story {self.story_id!r}, frame {number}: {exc}; nothing of this story was written"
                ) from None

    def frame_group(self, index: int) -> str:
        """The identity group of frame ``index`` (0-based): ``frame_meta[index]["group"]``, else the story id.

        Datasets written before the ``group`` key (see :func:`legacy_group`) recorded
        only ``source``: it is read as the group unless it names one frame rather than
        a film.
        """
        entry = self.frame_meta[index] if self.frame_meta is not None else None
        if entry:
            group = entry.get("group")
            if group:
                return str(group)
            source = entry.get("source")
            if source:
                return legacy_group(str(source), self.story_id)
        return self.story_id

    def frame_source(self, index: int) -> str:
        """Where frame ``index`` comes from (provenance): ``frame_meta[index]["source"]``, else the story id."""
        if self.frame_meta is not None:
            source = self.frame_meta[index].get("source")
            if source:
                return str(source)
        return self.story_id

    def with_texts(self, cot_text: str, story_text: str, **changes) -> StorySample:
        """A copy with new texts (parsed afresh) and other fields changed."""
        return replace(self, cot_text=cot_text, story_text=story_text, **changes)

    def to_row(self, *, embed: bool = True) -> dict:
        """The published row shape (plus ``frame_meta`` when present)."""
        import json

        row = {
            "story_id": self.story_id,
            "images": [f.to_hf() if embed else {"bytes": None, "path": f.path} for f in self.frames],
            "frame_count": self.frame_count,
            "chain_of_thought": self.cot_text,
            "story": self.story_text,
        }
        if self.frame_meta is not None:
            row["frame_meta"] = json.dumps(self.frame_meta, ensure_ascii=False)
        return row

    @classmethod
    def from_row(cls, row: dict, where: str = "", *, folder: str | Path | None = None) -> StorySample:
        """A sample from a published-format row (images as ``{"bytes", "path"}`` dicts, paths or PIL).

        ``where`` names the row in errors (``row 3 of train.parquet``). A frame the row gives
        by its path alone, without its bytes, is read from the dataset's own ``folder`` only
        (:func:`confined_path`; None, for rows a program built itself: as given), so a
        downloaded dataset cannot have this machine's other files read, copied into outputs
        or sent to a storyteller.
        """
        import json

        missing = [k for k in ("story_id", "images", "chain_of_thought", "story") if k not in row]
        if missing:
            raise UsageError(
                f"the dataset has no column {', '.join(missing)}; a StoryReasoning dataset needs "
                "story_id, images, chain_of_thought and story"
            )
        if row["story_id"] is None:
            raise missing_story_id(where or "a dataset row")
        story_id = str(row["story_id"])
        named = f"story {story_id!r}" + (f" ({where})" if where else "")
        # a text in a column of the wrong type would be iterated letter by letter, or fail later unnamed
        for column, kinds, holds in (
            ("images", (list, tuple), "a list of images, one per frame"),
            ("chain_of_thought", (str,), "text"),
            ("story", (str,), "text"),
        ):
            if row[column] is not None and not isinstance(row[column], kinds):
                raise UsageError(
                    f"{named}: its {column} column holds {type(row[column]).__name__}, not {holds}; "
                    "re-export the dataset in the StoryReasoning columns"
                )
        frames = list(row["images"] or [])
        meta_text = row.get("frame_meta")
        frame_meta = None
        if meta_text:
            try:
                frame_meta = json.loads(meta_text)
            except (TypeError, ValueError) as exc:
                raise UsageError(
                    f"{named}: its frame_meta column is not valid JSON ({exc}); fix it (a JSON list "
                    "of one object per frame) or set it to null"
                ) from None
            if (
                not isinstance(frame_meta, list)
                or len(frame_meta) != len(frames)
                or not all(isinstance(m, dict) for m in frame_meta)
            ):
                raise UsageError(
                    f"{named}: its frame_meta column must be a JSON list of {len(frames)} objects, "
                    "one per frame; fix it or set it to null"
                )
        try:
            frames = [_confined_frame(Frame.coerce(f), folder, k) for k, f in enumerate(frames, start=1)]
            return cls(
                story_id=story_id,
                frames=frames,
                cot_text=row["chain_of_thought"] or "",
                story_text=row["story"] or "",
                frame_meta=frame_meta,
            )
        except (UsageError, TypeError) as exc:  # an image cell of no image (Frame.coerce): which story's
            raise UsageError(f"{named}: {exc}") from None
