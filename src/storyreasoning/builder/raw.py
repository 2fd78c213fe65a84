"""A story to build, as found on disk or cut from a video: the one type the finders and the loop share,
and how both match a name listed on disk with one they recorded (:func:`nfc`, :class:`Names`)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path


@dataclass
class RawStory:
    """A story to build: its id and its frame files, in order; or an input that could not be read."""

    story_id: str
    frames: list[Path]
    sources: list[str] | None = None  # what each frame is ("film.mp4@12.40s"); default the frame's path
    group: str | None = None  # the identity group of every frame (a video's file name); default the story id
    scene: int | None = None  # the video's scene the frames come from (1-based); None for folders
    #: why this input could not be read (a video not decoded, two frames with one number): a story with
    #: an error has no frames and fails alone in the build, recorded in errors.jsonl like any failure
    error: Exception | None = None


def nfc(name: str) -> str:
    """``name`` in Unicode's composed form (NFC), the form the builder keys every name by: a Mac's volume
    lists ``Café.mp4`` decomposed (NFD, HFS+) and a copy of it elsewhere keeps that form, while the
    same name typed or written on Linux is composed, so a name listed in one form must find what was
    recorded under the other."""
    return unicodedata.normalize("NFC", name)


class Names:
    """The entries of ``folder`` found by name in either Unicode form (Linux keeps both forms apart, byte
    for byte): a story folder a build wrote as ``ü`` is found by ``u`` + U+0308 and the reverse. The
    folder is listed once, when a name is first not found as given; what is made in it afterwards is
    found as given."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._forms: dict[str, Path] | None = None

    def find(self, name: str) -> Path:
        """``folder / name`` when there (or ``name`` is ASCII, which has one form), else the entry whose
        name is ``name`` in another form, else ``folder / name``."""
        path = self.folder / name
        if name.isascii() or path.exists():
            return path
        if self._forms is None:
            try:
                entries = sorted(self.folder.iterdir())
            except OSError:  # not there yet, or unreadable: said where it is read
                entries = []
            self._forms = {}
            for entry in entries:
                self._forms.setdefault(nfc(entry.name), entry)
        return self._forms.get(nfc(name), path)

    def story(self, story_id: str) -> Path:
        """The folder of ``story_id`` in ``folder`` (:func:`storyreasoning.data.folder.story_folder`, an
        earlier version's ASCII name included), its name in either form."""
        from ..data.folder import story_folder

        path = story_folder(self.folder, story_id)
        return path if path.exists() else self.find(path.name)


__all__ = ["Names", "RawStory", "nfc"]
