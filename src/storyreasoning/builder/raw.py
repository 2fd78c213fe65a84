"""A story to build, as found on disk or cut from a video: the one type the finders and the loop share."""

from __future__ import annotations

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


__all__ = ["RawStory"]
