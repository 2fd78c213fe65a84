"""The build loop: find the stories, see, write, check, save; resumable and honest about failures."""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.folder import folder_name, frame_files
from ..errors import StoryReasoningError, UsageError
from ..tell.base import TellError
from .raw import RawStory

if TYPE_CHECKING:
    from .video import VideoOptions

MANIFEST = "build.json"
ERRORS = "errors.jsonl"
STOP_AFTER = 3  # stories in a row failing at the endpoint before the build stops


def find_stories(
    root: str | Path,
    *,
    min_frames: int = 1,
    max_frames: int | None = None,
    frames_dir: Path | None = None,
    video: VideoOptions | None = None,
) -> tuple[list[RawStory], list[str]]:
    """The stories under ``root``: ``root`` itself when it holds frames, else each sub-folder that does;
    or the videos (``root`` a video file, or a folder of videos): shots, key frames and scenes as ``video``
    says (see :mod:`.video` and :mod:`.scenes`).

    Frames are image files ordered by the last number in their names (as the dataset
    folder layout). Returns the stories and the notes on what was skipped (too few
    frames); a story with more than ``max_frames`` keeps its first ``max_frames``. Key
    frames of videos are written under ``frames_dir``.
    """
    from .video import is_video, video_stories

    root = Path(root)
    if not root.exists():
        raise UsageError(
            f"{root} does not exist; give a folder of frames, a folder of story folders or a video"
        )
    videos = (
        [root]
        if is_video(root)
        else sorted(p for p in root.iterdir() if is_video(p))
        if root.is_dir()
        else []
    )
    if not root.is_dir() and not videos:
        raise UsageError(
            f"{root} is a file but not a video; give a folder of frames, a folder of story folders or a video"
        )

    if videos and not (root.is_dir() and frame_files(root)):
        if frames_dir is None:
            raise UsageError("videos need a folder for their key frames (frames_dir)")
        stories: list[RawStory] = []
        notes: list[str] = []
        for path in videos:
            found, said = video_stories(path, frames_dir, video, min_frames=min_frames)
            stories += found
            notes += said
        return stories, notes

    candidates = (
        [root] if frame_files(root) else sorted(p for p in root.iterdir() if p.is_dir() and frame_files(p))
    )
    if not candidates:
        raise UsageError(
            f"{root} holds no frames (image files with a number in their names), no folders of them and no videos"
        )
    stories, notes = [], []
    for folder in candidates:
        frames = frame_files(folder)
        if len(frames) < min_frames:
            notes.append(f"{folder.name}: {len(frames)} frames, fewer than {min_frames}; skipped")
            continue
        if max_frames is not None and len(frames) > max_frames:
            notes.append(f"{folder.name}: {len(frames)} frames, the first {max_frames} kept")
            frames = frames[:max_frames]
        stories.append(RawStory(folder.name, frames))
    return stories, notes


def frame_meta(story: RawStory) -> list[dict]:
    """What a built story records per frame: its identity ``group`` and its provenance ``source``.

    The group decides which frames may show the same people (see
    :meth:`~storyreasoning.data.sample.StorySample.frame_group`): the video for key
    frames of a video (every story cut from it), else the story (one folder of frames).
    The source is where the frame was read: its path, or ``film.mp4@12.40s``.
    """
    group = story.group or story.story_id
    sources = story.sources or [str(p) for p in story.frames]
    return [{"group": group, "source": source} for source in sources]


@dataclass
class BuildReport:
    stories: int = 0
    built: int = 0
    skipped_done: int = 0
    invalid_kept: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _error_record(story: RawStory, exc: BaseException) -> dict:
    return {
        "story_id": story.story_id,
        "error": str(exc) or type(exc).__name__,
        "kind": type(exc).__name__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **({} if isinstance(exc, StoryReasoningError) else {"trace": traceback.format_exc(limit=5)}),
    }


def check_resume(out: Path, writer: str) -> None:
    """Refuse to continue a build in ``out`` with another writer than the one it was started with."""
    path = out / MANIFEST
    if not path.is_file():
        return
    try:
        held = json.loads(path.read_text(encoding="utf-8")).get("writer", {}).get("writer")
    except (OSError, ValueError, AttributeError):
        raise UsageError(f"{path} is unreadable; remove it or choose another --out") from None
    if held != writer:
        raise UsageError(
            f"{out} was built with the {held} writer; continue it with the same writer or choose another --out"
        )


def build_dataset(
    stories: Sequence[RawStory],
    out: Path,
    *,
    perceiver: Any,
    writer: Any,
    keep_invalid: bool = False,
    settings: dict | None = None,
    progress: Callable[[int], None] | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> BuildReport:
    """Build every story into ``out`` (a folder-layout dataset); finished stories are skipped."""
    from ..data.folder import write_story_folder
    from ..data.sample import StorySample
    from ..format.images import image_size, read_image_bytes
    from ..format.stream import parse_output

    manifest_path = out / MANIFEST
    check_resume(out, writer.name)
    # describing a chat writer asks its server for the model: an endpoint that is down fails here, before any story
    wanted = {"writer": writer.describe(), "perceiver": perceiver.describe(), "settings": settings or {}}
    out.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(wanted, indent=2, default=str) + "\n", encoding="utf-8")
    report = BuildReport(stories=len(stories))
    start = time.perf_counter()
    names: dict[str, str] = {}
    for story in stories:
        name = folder_name(story.story_id)
        if name in names:
            raise UsageError(
                f"the stories {names[name]} and {story.story_id} would share the folder {out / name}"
            )
        names[name] = story.story_id
    unreachable = 0
    for story in stories:
        if progress:
            progress(1)
        target = out / folder_name(story.story_id)
        if target.exists():
            report.skipped_done += 1
            continue
        began = time.perf_counter()
        try:
            data = [read_image_bytes(p) for p in story.frames]
            sizes = [image_size(p) for p in story.frames]
            frames = list(perceiver.see(story.frames))
            written = writer.write(frames, story.frames, sizes)
            telling = parse_output(f"<think>\n{written.cot}\n</think>\n{written.story}")
            verdict = telling.validate(n_images=len(sizes), image_sizes=sizes)
            if not verdict.well_structured and not keep_invalid:
                raise StoryReasoningError(
                    "the written story is not well-structured ("
                    + "; ".join(d.message for d in verdict.reasons[:3])
                    + "); use --keep-invalid to keep such stories"
                )
            report.invalid_kept += not verdict.well_structured
            meta = {
                "build": {
                    "writer": written.writer.get("writer"),
                    # the template writer's texts are a templated baseline's, not a model's: said in every story
                    **({"baseline": True} if written.writer.get("baseline") else {}),
                    "attempts": written.attempts,
                    "boxes_restored": written.repairs,
                    "well_structured": verdict.well_structured,
                    "reasons": [d.message for d in verdict.reasons],
                    "people": [len(f.people) for f in frames],
                    "seconds": round(time.perf_counter() - began, 3),
                }
            }
            sample = StorySample(
                story.story_id,
                data,
                written.cot,
                written.story,
                frame_meta=frame_meta(story),
                meta=meta,
            )
            write_story_folder(sample, out)
            report.built += 1
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # one story's failure is recorded; the build goes on
            report.failed.append(story.story_id)
            with (out / ERRORS).open("a", encoding="utf-8") as f:
                f.write(json.dumps(_error_record(story, exc), ensure_ascii=False) + "\n")
            say(f"{story.story_id}: {exc}")
            unreachable = unreachable + 1 if isinstance(exc, TellError) else 0
            if unreachable >= STOP_AFTER:
                # the endpoint itself is failing: stop instead of failing every story the same way
                raise StoryReasoningError(
                    f"{exc} (stopped after {unreachable} stories in a row failed at the endpoint; "
                    "finished stories are kept, run the same command again to continue)"
                ) from None
        else:
            unreachable = 0
    report.seconds = round(time.perf_counter() - start, 3)
    return report


__all__ = [
    "ERRORS",
    "MANIFEST",
    "BuildReport",
    "RawStory",
    "build_dataset",
    "check_resume",
    "find_stories",
    "frame_meta",
]
