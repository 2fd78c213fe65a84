"""Frames from videos: one key frame per shot, grouped into stories.

StoryReasoning's stories are sequences of movie frames from different shots of one
scene. :func:`key_frames` reads a video once with OpenCV and starts a new shot wherever
the colour histogram of consecutive frames changes by more than ``cut_threshold``
(Bhattacharyya distance of HSV histograms on a small copy, so a cut costs microseconds
per frame); each shot longer than ``min_shot`` seconds contributes the frame in its
middle, the steadiest view of it. :func:`video_stories` writes those frames as PNG files
and groups consecutive ones into stories of ``frames_per_story`` frames. Everything is
deterministic: the same video gives the same frames and stories.

Every story of one video is one identity group (``RawStory.group``): consecutive
stories of a film share its people, so the reward may link their frames and the
contrastive sequences never mix them. Each frame's provenance is ``film.mp4@12.40s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import StoryReasoningError, UsageError
from .raw import RawStory

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


@dataclass
class KeyFrame:
    shot: int  # 0-based
    index: int  # frame number in the video, 0-based
    seconds: float
    image: object  # an RGB numpy array


def key_frames(
    path: Path, *, cut_threshold: float = 0.35, min_shot: float = 0.5, max_side: int = 160
) -> tuple[list[KeyFrame], float]:
    """The middle frame of every shot of the video, and its frame rate.

    Two sequential passes: the first finds the cuts on small copies, the second decodes
    again and keeps only the chosen frames, so memory stays flat however long the shots.
    """
    from ..vision import require_cv2

    cv2, _ = require_cv2()

    def open_capture():
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise StoryReasoningError(
                f"cannot read the video {path}; OpenCV does not decode it (convert it to MP4 with H.264)"
            )
        return capture

    capture = open_capture()
    fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
    if fps <= 0 or fps > 1000:
        fps = 25.0  # some containers do not say; only timestamps and min_shot use it
    cuts: list[int] = []  # first frame of every shot after the first
    previous = None
    count = 0
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            height, width = bgr.shape[:2]
            scale = max_side / max(width, height)
            if scale < 1:
                bgr = cv2.resize(bgr, (max(1, round(width * scale)), max(1, round(height * scale))))
            hist = cv2.calcHist(
                [cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)], [0, 1], None, [16, 8], [0, 180, 0, 256]
            )
            cv2.normalize(hist, hist)
            if (
                previous is not None
                and cv2.compareHist(previous, hist, cv2.HISTCMP_BHATTACHARYYA) > cut_threshold
            ):
                cuts.append(count)
            previous = hist
            count += 1
    finally:
        capture.release()
    if count == 0:
        raise StoryReasoningError(f"the video {path} has no frames OpenCV can decode")
    bounds = list(zip([0, *cuts], [c - 1 for c in cuts] + [count - 1], strict=True))
    middles = {
        (first + last) // 2: shot
        for shot, (first, last) in enumerate(bounds)
        if (last - first + 1) / fps >= min_shot
    }
    found: list[KeyFrame] = []
    capture = open_capture()
    try:
        index = -1
        while len(found) < len(middles):
            ok, bgr = capture.read()
            if not ok:
                break
            index += 1
            if index in middles:
                found.append(KeyFrame(len(found), index, index / fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    finally:
        capture.release()
    return found, fps


def video_stories(
    path: Path,
    frames_dir: Path,
    *,
    frames_per_story: int = 5,
    min_frames: int = 2,
    cut_threshold: float = 0.35,
    min_shot: float = 0.5,
) -> tuple[list, list[str]]:
    """Stories of consecutive key frames of one video; frames written under ``frames_dir`` (reused when there)."""
    from ..vision import require_cv2

    if frames_per_story < 1:
        raise UsageError(f"frames per story must be at least 1, got {frames_per_story}")
    cv2, _ = require_cv2()
    folder = frames_dir / path.stem
    index_file = folder / "frames.txt"
    if index_file.is_file():  # a resumed build: the key frames are already on disk
        entries = [line.split("\t") for line in index_file.read_text(encoding="utf-8").splitlines() if line]
        frames = [(folder / name, float(seconds)) for name, seconds in entries]
    else:
        found, _ = key_frames(path, cut_threshold=cut_threshold, min_shot=min_shot)
        folder.mkdir(parents=True, exist_ok=True)
        frames = []
        for frame in found:
            name = f"{frame.shot + 1:05d}.png"
            cv2.imwrite(str(folder / name), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
            frames.append((folder / name, frame.seconds))
        tmp = index_file.with_suffix(".tmp")
        tmp.write_text("".join(f"{p.name}\t{s:.3f}\n" for p, s in frames), encoding="utf-8")
        tmp.replace(index_file)
    stories, notes = [], []
    for number, start in enumerate(range(0, len(frames), frames_per_story), start=1):
        chunk = frames[start : start + frames_per_story]
        story_id = f"{path.stem}-{number:03d}"
        if len(chunk) < min_frames:
            notes.append(
                f"{story_id}: {len(chunk)} key frames left at the end of {path.name}, fewer than {min_frames}; skipped"
            )
            continue
        sources = [f"{path.name}@{seconds:.2f}s" for _, seconds in chunk]
        stories.append(RawStory(story_id, [p for p, _ in chunk], sources, group=path.name))
    if not frames:
        notes.append(f"{path.name}: no shot of at least {min_shot} s found")
    return stories, notes


__all__ = ["VIDEO_SUFFIXES", "KeyFrame", "is_video", "key_frames", "video_stories"]
