"""A story to build, as found on disk or cut from a video: the one type the finders and the loop share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class RawStory:
    """A story to build: its id and its frame files, in order."""

    story_id: str
    frames: list[Path]
    sources: list[str] | None = None  # what each frame is ("film.mp4@12.40s"); default the frame's path
    group: str | None = None  # the identity group of every frame (a video's file name); default the story id
    scene: int | None = None  # the video's scene the frames come from (1-based); None for folders


__all__ = ["RawStory"]
