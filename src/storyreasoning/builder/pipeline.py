"""The build loop: find the stories, see, write, check, save; resumable and honest about failures.

A build holds its output folder alone for its whole life (:func:`storyreasoning.files.lock_folder`:
a second build into the same ``--out`` is refused in one line). Its side files,
``skipped.jsonl`` and ``errors.jsonl``, are JSON lines under the run files' rule
(:func:`storyreasoning.tell.run.repair_lines`): a resume cuts a torn last line off and sets a
damaged line aside (``skipped.corrupt.jsonl``, ``errors.corrupt.jsonl``), saying so, so that
its story is perceived again; and ``errors.jsonl`` keeps only the failures still unresolved
(the latest of each story whose folder is not built yet, of each input not read since: a
video or folder read again settles its failure even when every story it gives is too
short), rewritten atomically when a resume builds a story that failed before, removed once
none is left.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.folder import (
    COT_FILE,
    IMAGE_SUFFIXES,
    META_FILE,
    STORY_FILE,
    folder_name,
    folding_clash,
    frame_files,
    one_folder,
    unnumbered_images,
)
from ..errors import StoryReasoningError, UsageError, file_error
from ..files import append_json_line, lock_folder, write_json_atomic
from ..settings import then_now
from ..tell.base import TellError
from .provenance import differences, models_in
from .raw import Names, RawStory, nfc

if TYPE_CHECKING:
    from .video import VideoOptions

MANIFEST = "build.json"
ERRORS = "errors.jsonl"
SKIPPED = "skipped.jsonl"  # stories skipped for want of a person, with the build.json entry that saw them
NO_PERSON = "no person in any frame"
STOP_AFTER = 3  # stories in a row failing at the endpoint (in the order they finish) before the build stops
#: leaves of a perceiver's or writer's description that say how it ran, not what it made
OPERATIONAL_KEYS = frozenset({"device", "endpoint", "max_tries"})


class Found(list):
    """The stories :func:`find_stories` found (a list of :class:`RawStory`), and ``passed``: the inputs it
    read that give no story to build (each too short), by the name their failure has in errors.jsonl (a
    video's file name, a folder's story id), so that a build settles a failure of theirs."""

    def __init__(self, stories: Iterable[RawStory] = (), passed: Iterable[str] = ()) -> None:
        super().__init__(stories)
        self.passed = frozenset(passed)


def find_stories(
    root: str | Path,
    *,
    min_frames: int = 1,
    max_frames: int | None = None,
    frames_dir: Path | None = None,
    video: VideoOptions | None = None,
    limit: int | None = None,
    out: Path | None = None,
) -> tuple[Found, list[str]]:
    """The stories under ``root``, of every kind found: ``root``'s own frames as one story (named
    after it), each sub-folder holding frames as one story, each video (``root`` itself, or one in
    it) cut into shots, key frames and scenes as ``video`` says (see :mod:`.video` and
    :mod:`.scenes`); the sub-folders and videos in the order of their names.

    Frames are image files ordered by the last number in their names (as the dataset
    folder layout). Returns the stories and the notes: what was left out, one line per kind
    with its count, first names and why (images without a number, links to no file, a
    second link to a folder or video already read, folders without frames, what a story
    folder holds besides its frames, files of no kind read; names starting with ``.`` are
    passed over), skipped (too few frames) or cut (a story with more than ``max_frames``
    keeps its first ``max_frames``). An input that cannot be read (a video OpenCV does not
    decode, a folder whose frames share a number) becomes a story with an ``error``, which
    fails alone in the build; when it is the only input, its error is raised. With ``limit``,
    reading stops once ``limit`` stories are found: no later video is cut. Key frames of
    videos are written under ``frames_dir``; ``out``, the dataset folder, decides what becomes of
    key frames an earlier version cut by another rule (:func:`.video.video_stories`). The stories
    come as a :class:`Found` list, which also names the inputs read that give no story.

    Names are keyed by their NFC form (:func:`.raw.nfc`): story ids, groups and sources are the same
    whichever form a volume lists a name in (a Mac's lists ``Café.mp4`` decomposed), and a folder
    holding one name in both forms is refused in one line (their stories would be one).
    """
    from .video import is_video

    root = Path(root)
    if not root.exists():
        raise UsageError(
            f"{root} does not exist; give a folder of frames, a folder of story folders or a video"
        )
    left = _LeftOut(root)
    if root.is_dir():
        inputs = _inputs(root, left)
    elif is_video(root):
        inputs = [root]
    else:
        raise UsageError(
            f"{root} is a file but not a video; give a folder of frames, a folder of story folders or a video"
        )
    if frames_dir is None and any(is_video(p) for p in inputs):
        raise UsageError("videos need a folder for their key frames (frames_dir)")
    stories: list[RawStory] = []
    notes: list[str] = []
    passed: list[str] = []  # inputs read that give no story
    found, good = False, 0  # an input with frames or a video; the stories that are not failures
    for k, path in enumerate(inputs):
        if limit is not None and good >= limit:
            rest = inputs[k:]
            notes.append(
                f"limit {limit} reached: {len(rest)} more input{'s' * (len(rest) != 1)} not read "
                f"({_first(left.name(p) for p in rest)})"
            )
            break
        if is_video(path):
            read = _read_video(path, frames_dir, video, min_frames, out)
            name = nfc(path.name)
        else:
            read = _read_folder(path, root, left, min_frames=min_frames, max_frames=max_frames)
            if read is None:  # no frames: noted
                continue
            name = _story_id(path, root)
        found = True
        if not read[0]:  # read, and every story too short
            passed.append(name)
        for story in read[0]:
            if story.error is None and limit is not None and good >= limit:
                break
            stories.append(story)
            good += story.error is None
        notes += read[1]
    failed = [s.error for s in stories if s.error is not None]
    if len(inputs) == 1 and failed:  # nothing else to build: the one input's error ends the build
        raise failed[0]
    if not found:
        hint = next((note for note in left.notes() if "without a number" in note), "")
        raise UsageError(
            f"{root} holds no frames (image files with a number in their names), no folders of them and "
            f"no videos{'; ' + hint if hint else ''}"
        )
    return Found(stories, passed), left.notes() + notes


def _first(names: Iterable[str], shown: int = 3) -> str:
    """The first ``shown`` of ``names``, then ``…`` when there are more."""
    names = list(names)
    return ", ".join(names[:shown]) + (", …" if len(names) > shown else "")


#: what find_stories leaves out, by kind: how the kind is named (``{s}``: plural) and why it is left out
_LEFT_OUT = {
    "unnumbered": (
        "image{s} without a number in the name",
        "a story's frames are ordered by the numbers in their names; rename them in story order "
        "(01.jpg, 02.jpg, …)",
    ),
    "broken": ("link{s} to no file", "a link that points to itself or to nothing"),
    "duplicate": ("link{s} to a folder or video already read", "built once"),
    "empty": ("folder{s} without frames", "frames are image files with a number in their names"),
    "nested": (
        "folder{s} or video{s} inside story folders",
        "a story folder's frames are its own images; give such a folder or video as an input of its own",
    ),
    "other": ("file{s} neither frames nor videos", "{kinds}"),
}


class _LeftOut:
    """What :func:`find_stories` does not read, by kind: one note per kind (count, first names, why)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.kinds: dict[str, list[str]] = {kind: [] for kind in _LEFT_OUT}

    def name(self, path: Path) -> str:
        if path == self.root:
            return path.name or path.resolve().name
        return path.relative_to(self.root).as_posix()

    def add(self, kind: str, path: Path, detail: str = "") -> None:
        self.kinds[kind].append(self.name(path) + detail)

    def add_all(self, found: dict[str, list[Path]], *kinds: str) -> None:
        for kind in kinds:
            for path in found[kind]:
                self.add(kind, path)

    def notes(self) -> list[str]:
        from .video import VIDEO_SUFFIXES

        kinds = f"frames are {' '.join(IMAGE_SUFFIXES)} images, videos {' '.join(VIDEO_SUFFIXES)} files"
        notes = []
        for kind, names in self.kinds.items():
            if names:
                what, why = _LEFT_OUT[kind]
                what = what.format(s="s" * (len(names) != 1))
                notes.append(f"{len(names)} {what} left out ({_first(names)}): {why.format(kinds=kinds)}")
        return notes


#: the files a story folder holds besides its frames (data.folder's layout), passed over without a note
_STORY_FILES = frozenset({COT_FILE, STORY_FILE, META_FILE, "frames.json", "README.md", "CREDITS.md"})


def _look(folder: Path) -> dict[str, list[Path]]:
    """What ``folder`` holds, by kind and name (names starting with ``.`` passed over): ``images``
    (with a number in the name), ``unnumbered`` images, ``broken`` links (to themselves or to
    nothing), ``folders``, ``videos`` and ``other`` files."""
    from .video import is_video

    try:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        raise file_error(exc, "read the folder") from None
    unnumbered = set(unnumbered_images(folder))
    found: dict[str, list[Path]] = {
        k: [] for k in ("images", "unnumbered", "broken", "folders", "videos", "other")
    }
    for path in entries:
        if path.name in _STORY_FILES and path.is_file():
            continue  # a story folder's own texts (a dataset's folder given to build again): no frames, nothing lost
        if path.is_symlink() and not path.exists():
            kind = "broken"
        elif path in unnumbered:
            kind = "unnumbered"
        elif path.is_dir():
            kind = "folders"
        elif is_video(path):
            kind = "videos"
        elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            kind = "images"
        else:
            kind = "other"
        found[kind].append(path)
    return found


def _inputs(root: Path, left: _LeftOut) -> list[Path]:
    """What a folder given to build holds to read, in order: the folder itself when it holds frames,
    then its sub-folders and videos by name. A second link to one of them is noted and read once
    (as the one that is not a link, else the first)."""
    found = _look(root)
    left.add_all(found, "unnumbered", "broken", "other")
    inputs = sorted(found["folders"] + found["videos"])
    owner: dict[Path, Path] = {root.resolve(): root} if found["images"] else {}
    for path in sorted(inputs, key=lambda p: p.is_symlink()):  # the real folder or video before links to it
        owner.setdefault(path.resolve(), path)
    for path in inputs:
        if owner[path.resolve()] != path:
            left.add("duplicate", path, f" = {left.name(owner[path.resolve()])}")
    inputs = [p for p in inputs if owner[p.resolve()] == p]
    # names are keyed by their NFC form (a Mac lists them decomposed): two that differ only in form are one
    forms: dict[str, Path] = {}
    for path in inputs:
        other = forms.setdefault(nfc(path.name), path)
        if other is not path:
            first, second = sorted([other.name, path.name])
            raise UsageError(
                f"{root} holds {first!a} and {second!a}, one name in two Unicode forms: they would "
                "be one story, and one file on macOS; rename one of them"
            )
    return ([root] if found["images"] else []) + inputs


def _read_video(
    path: Path, frames_dir: Path, options: VideoOptions | None, min_frames: int, out: Path | None = None
) -> tuple[list[RawStory], list[str]]:
    """The stories of one video; one that cannot be read (not decoded, cut short) is a failed story
    named after the video. A :class:`UsageError` (settings, a missing package, key frames in
    ``frames_dir`` made otherwise) is the build's, raised."""
    from .video import video_stories

    try:
        return video_stories(path, frames_dir, options, min_frames=min_frames, out=out)
    except UsageError:
        raise
    except Exception as exc:
        return [RawStory(nfc(path.name), [], group=nfc(path.name), error=exc)], []


def _story_id(folder: Path, root: Path) -> str:
    """The id of the story of a folder of frames: its name (``build .``: the folder's own name), in NFC
    (:func:`.raw.nfc`: the same story whichever form a volume lists the name in)."""
    return nfc(folder.name or root.resolve().name or "frames")


def _read_folder(
    folder: Path, root: Path, left: _LeftOut, *, min_frames: int, max_frames: int | None
) -> tuple[list[RawStory], list[str]] | None:
    """The story of one folder of frames, and in ``left`` what else it holds; none for a folder
    without frames (noted, with its images lacking a number and its links to no file). A folder
    whose frames cannot be listed (two share a number, it is unreadable) is a failed story."""
    name = root.resolve().name or "frames"
    story_id = _story_id(folder, root)
    try:
        found = _look(folder) if folder != root else None  # the root was looked at already
        frames = frame_files(folder)
    except StoryReasoningError as exc:
        return [RawStory(story_id, [], error=exc)], []
    if found is not None:
        left.add_all(found, "unnumbered", "broken", *(("other",) if frames else ()))
        for path in found["folders"] + found["videos"] if frames else []:  # a story folder holds frames only
            left.add("nested", path)
    if not frames:
        left.add("empty", folder)
        return None
    if len(frames) < min_frames:
        return [], [f"{story_id}: {len(frames)} frames, fewer than {min_frames}; skipped"]
    notes = []
    if max_frames is not None and len(frames) > max_frames:
        notes.append(f"{story_id}: {len(frames)} frames, the first {max_frames} kept")
        frames = frames[:max_frames]
    # a frame's source names it from the folder given (``my-frames/story/001.jpg``): the same on any
    # machine, and no local path travels with a published dataset
    sources = [nfc((Path(name) / p.relative_to(root)).as_posix()) for p in frames]  # (in NFC, as ids)
    return [RawStory(story_id, frames, sources)], notes


def frame_meta(story: RawStory) -> list[dict]:
    """What a built story records per frame: its identity ``group``, its provenance ``source`` and, for
    stories cut from a video or grouped by scene, its ``scene`` number.

    The group decides which frames may show the same people (see
    :meth:`~storyreasoning.data.sample.StorySample.frame_group`): the video for key
    frames of a video (every story cut from it), else the story (one folder of frames).
    The source is where the frame was read: its path, or ``film.mp4@12.40s``.
    """
    group = story.group or story.story_id
    sources = story.sources or [str(p) for p in story.frames]
    scene = getattr(story, "scene", None)
    extra = {} if scene is None else {"scene": scene}
    return [{"group": group, "source": source, **extra} for source in sources]


@dataclass
class BuildReport:
    stories: int = 0
    built: int = 0
    skipped_done: int = 0
    skipped_no_person: int = 0  # perception found no person in any frame (``require_person``)
    invalid_kept: int = 0
    failed: list[str] = field(default_factory=list)
    entry: int = 0  # the entry of build.json whose settings built this run's stories
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Perceived:
    """One story as perception leaves it, wherever perception ran: its frames' bytes and sizes and what
    was seen in them, or the ``error`` that ended it (the bytes and sizes may be missing then).

    ``trace`` is the innermost frames of an unexpected error's trace, formatted where it happened
    (a Ray worker's exception reaches the driver without its traceback).
    """

    story: RawStory
    data: list[bytes] | None = None
    sizes: list[tuple[int, int]] | None = None
    frames: list | None = None
    error: BaseException | None = None
    trace: str | None = None


def read_frames(frames: Sequence[Path]) -> tuple[list[bytes], list[tuple[int, int]]]:
    """The bytes and the ``(width, height)`` of each frame file; an unreadable one raises, naming it.

    A photo stored sideways with an EXIF orientation is turned upright here (its bytes encoded
    again), so the dataset's frames, its boxes and every reader of it (ours, a browser, PIL
    without ``exif_transpose``, the original code) see one picture.
    """
    from ..format.images import image_size, read_image_bytes, upright_bytes

    data = [upright_bytes(read_image_bytes(p), name=str(p)) for p in frames]
    return data, [image_size(d, name=str(p)) for d, p in zip(data, frames, strict=True)]


def error_trace(exc: BaseException) -> str | None:
    """What errors.jsonl keeps of an unexpected error's trace: its innermost frames (where it went wrong,
    not the loop that called it); none for a :class:`StoryReasoningError`, whose message says it all."""
    if isinstance(exc, StoryReasoningError):
        return None
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-6))


def perceive_here(perceiver: Any, stories: Sequence[RawStory]) -> Iterator[Perceived]:
    """Perception in this process, story by story (the single-process build): each story's frames are
    read, then seen by ``perceiver``; a failure is the story's, never the build's."""
    for story in stories:
        try:
            data, sizes = read_frames(story.frames)
            frames = list(perceiver.see(story.frames))
        except Exception as exc:
            yield Perceived(story, error=exc, trace=error_trace(exc))
            continue
        yield Perceived(story, data, sizes, frames)


def _error_record(story: RawStory, exc: BaseException, trace: str | None = None) -> dict:
    trace = trace or error_trace(exc)
    return {
        "story_id": story.story_id,
        "error": str(exc) or type(exc).__name__,
        "kind": type(exc).__name__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **({"trace": trace} if trace and not isinstance(exc, StoryReasoningError) else {}),
    }


# -- what built the dataset: build.json ---------------------------------------------------------------


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples as lists, paths as text), so records compare equal."""
    return json.loads(json.dumps(value, default=str))


def read_entries(out: Path) -> list[dict]:
    """The entries of ``out/build.json``: the settings and models of each build that added stories.

    A build.json of an earlier version (one record: writer, perceiver, settings) is one entry.
    """
    path = Path(out) / MANIFEST
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UsageError(f"{path} is unreadable; remove it or choose another --out") from None
    if isinstance(data, dict) and isinstance(data.get("entries"), list):
        if all(isinstance(e, dict) for e in data["entries"]):
            return data["entries"]
    elif isinstance(data, dict) and ("writer" in data or "perceiver" in data):
        return [{"entry": 0, **data}]
    raise UsageError(f"{path} is not a build record; remove it or choose another --out")


def _write_entries(out: Path, entries: list[dict]) -> None:
    write_json_atomic(out / MANIFEST, {"entries": entries})


def _operational_settings() -> frozenset[str]:
    from ..settings import settings_fields
    from .settings import BuildSettings

    return frozenset(f.name for f in settings_fields(BuildSettings) if f.spec.operational)


def _differences(entry: dict, wanted: dict) -> list[tuple[str, Any, Any]]:
    """What differs between a recorded entry and the wanted one, in the parts ``wanted`` has (a model
    or folder by where it is: an older build.json's relative ``--detector det`` is today's absolute one)."""
    from ..settings import place_fields, same_place
    from .settings import BuildSettings

    out = []
    places = place_fields(BuildSettings)
    for part in ("settings", "perceiver", "writer"):
        if part not in wanted:
            continue
        ignore = _operational_settings() if part == "settings" else OPERATIONAL_KEYS
        for key, old, new in differences(entry.get(part) or {}, wanted[part], ignore=ignore):
            if part == "settings" and key in places and same_place(old, new):
                continue
            if part == "settings" and "." not in key:
                name = "--" + key.replace("_", "-")
            else:
                name = f"{part} {key}"
            out.append((name, old, new))
    return out


def _holds_stories(out: Path) -> bool:
    from ..data.folder import is_story_folder

    try:
        return any(p.is_dir() and not p.name.startswith(".") and is_story_folder(p) for p in out.iterdir())
    except OSError:
        return False


def _claim(out: Path, wanted: dict, allow_mixed: bool) -> tuple[list[dict], int, bool]:
    """The entries of build.json after this build claims one, the index of its entry, and whether the
    entries changed (to be written). Refuses (one line naming every difference) a build whose settings
    or models match no entry of a folder that holds stories, unless ``allow_mixed``."""
    entries = read_entries(out)
    for index, entry in enumerate(entries):
        if not _differences(entry, wanted):
            return entries, index, False
    if not entries or not _holds_stories(out):  # nothing built yet: start afresh
        return [], 0, True
    if allow_mixed:
        return entries, len(entries), True
    changed = _differences(entries[-1], wanted)
    said = "; ".join(then_now(name, old, new) for name, old, new in changed)
    raise UsageError(
        f"{out} holds stories built with other settings ({said}); build with the same ones to continue it, "
        "pass --allow-mixed to add stories built with these (build.json keeps both, each story's meta.json "
        "names its own), or choose another --out"
    )


def check_resume(out: Path, wanted: dict, *, allow_mixed: bool = False) -> None:
    """Refuse, in one line naming each differing setting with its old and new value, to continue a build
    in ``out`` whose recorded settings differ from ``wanted`` (any of ``settings``, ``perceiver``,
    ``writer``: the parts given are compared), unless ``allow_mixed``. Operational settings (where,
    how fast, which stories: :func:`storyreasoning.settings.option` ``operational``) never count."""
    _claim(Path(out), _as_json(wanted), allow_mixed)


def _read_skipped(out: Path, say: Callable[[str], None] = lambda line: None) -> dict[str, int | None]:
    """``story id -> entry`` of the stories skipped for want of a person (the last record of each),
    after repairing ``skipped.jsonl`` for a resume (a torn last line cut off; a damaged line set
    aside, said through ``say``, its story perceived again)."""
    from ..tell.run import repair_lines

    lines = repair_lines(out / SKIPPED, "skipped", say, fate=", its story is perceived again")
    return {nfc(item["story_id"]): item.get("entry") for item in lines.items}  # ids are NFC (.raw.nfc)


def settle_build_errors(
    out: Path, say: Callable[[str], None] = lambda line: None, *, read: Iterable[str] = ()
) -> None:
    """Keep in ``errors.jsonl`` only the failures still unresolved: the latest of each story whose
    folder is not in ``out``, and of each input not ``read`` since (a video that failed is named by its
    file name, as its stories' group); rewritten atomically, removed when none is left."""
    from ..tell.run import read_lines, settle_errors

    lines = read_lines(out / ERRORS, "error")
    built, read = Names(out), {nfc(name) for name in read}
    # a failure recorded under either Unicode form of a name (.raw.nfc)
    done = {
        item["story_id"]
        for item in lines.items
        if nfc(item["story_id"]) in read or built.story(item["story_id"]).is_dir()
    }
    settle_errors(out, done, say)


def _failed_first(unread: list[RawStory], source: Iterator[Perceived]) -> Iterator[Perceived]:
    """The inputs that could not be read, each a failed story, then what ``source`` perceives (closed
    with this generator: a remote perception stops its work)."""
    try:
        for story in unread:
            yield Perceived(story, error=story.error, trace=error_trace(story.error))
        yield from source
    finally:
        close = getattr(source, "close", None)
        if callable(close):
            close()


def _source_sizes(story: RawStory) -> list[int] | None:
    """The size in bytes of each file a story's frames are read from (none when one is gone)."""
    try:
        return [Path(p).stat().st_size for p in story.frames]
    except OSError:
        return None


def _within(source: object) -> object:
    """A frame's source without the name of the folder given (``frames/story/01.jpg``: ``story/01.jpg``),
    so that a build resumed from that folder renamed or moved finds its stories; a video's
    ``film.mp4@12.40s`` as it is."""
    return source.split("/", 1)[1] if isinstance(source, str) and "/" in source else source


def _first_difference(
    story_id: str, then: list, now: list, sizes: list | None, sized: list[int] | None
) -> str | None:
    """How a story already built differs from the input of that name now (``NAME OLD then, NEW now``):
    its number of frames, a frame's source, or (``sized``: the sizes now, when ``sizes`` were recorded)
    a frame's size in bytes."""
    if len(then) != len(now):
        return then_now(f"{story_id} frames", len(then), len(now))
    for k, (old, new) in enumerate(zip(then, now, strict=True)):
        old_within, new_within = _within(old), _within(new)
        if isinstance(old_within, str) and isinstance(new_within, str):  # names in either form (.raw.nfc)
            old_within, new_within = nfc(old_within), nfc(new_within)
        if old_within != new_within:
            return then_now(f"{story_id} frame {k + 1}", old, new)
    if sizes is not None and sized is not None:
        for k, (old, new) in enumerate(zip(sizes, sized, strict=True)):
            if old != new:
                return then_now(f"{story_id} {now[k]} bytes", old, new)
    return None


def check_inputs(out: Path, stories: Sequence[RawStory]) -> None:
    """Refuse, in one line, a build whose stories already in ``out`` (by folder name) were built from other
    inputs: other frame sources, or (when their ``meta.json`` records them) other file sizes. Cheap: one
    small file read and a ``stat`` per frame of each story already there."""
    from ..data.folder import META_FILE

    differ: list[tuple[str, str]] = []
    built = Names(out)
    for story in stories:
        folder = built.story(story.story_id)
        if story.error is not None or not (folder / META_FILE).is_file():
            continue  # not built, or built by hand; an input that cannot be read now has nothing to compare
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
            then = [m["source"] for m in meta["frames"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # no sources recorded: nothing to compare
        now = [m["source"] for m in frame_meta(story)]
        sizes = (meta.get("build") or {}).get("source_bytes")
        sized = _source_sizes(story) if isinstance(sizes, list) and len(sizes) == len(now) else None
        said = _first_difference(story.story_id, then, now, sizes, sized)
        if said:
            differ.append((story.story_id, said))
    if differ:
        first = built.story(differ[0][0])
        more = f" and the {len(differ) - 1} others" if len(differ) > 1 else ""
        raise UsageError(
            f"{out} holds {len(differ)} of these stories built from other frames ({_first(d for _, d in differ)}); "
            f"build into another --out, or remove {first}{more} to build them again"
        )


# -- the loop ---------------------------------------------------------------------------------------------


def build_dataset(
    stories: Sequence[RawStory],
    out: Path,
    *,
    perceiver: Any,
    writer: Any,
    keep_invalid: bool = False,
    require_person: bool = True,
    concurrency: int = 1,
    allow_mixed: bool = False,
    settings: dict | None = None,
    progress: Callable[[int], None] | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> BuildReport:
    """Build every story into ``out`` (a folder-layout dataset); finished stories are skipped, once
    :func:`check_inputs` has found them built from the same frames (else the build is refused), and an
    input that could not be read (``RawStory.error``) fails as a story does, in ``errors.jsonl``.

    ``perceiver`` sees a story's frames (``see``), in this process; or it is a perception
    stage that runs elsewhere and streams its results back (``perceive_stories(stories)`` yielding a
    :class:`Perceived` per story, e.g. :class:`~storyreasoning.builder.distributed.RayPerception`):
    everything else, the writing, the accounts and the files, is the same either way.
    Perception runs in one thread, ahead of the writers, through a bound: at most
    ``concurrency + 1`` perceived stories wait or are being written. ``concurrency``
    stories are written at once (``writer.write`` must be thread-safe); each story folder
    is written whole (a temporary folder renamed into place), once, in whatever order the
    stories finish. ``settings`` are the settings that decide the data (recorded in
    build.json with the perceiver's and the writer's descriptions; see :func:`check_resume`
    and ``allow_mixed``). With ``require_person`` a story in whose frames perception found
    no person is skipped and noted in ``skipped.jsonl`` (not perceived again while the
    settings stay the same). Ctrl-C or an endpoint that fails ``STOP_AFTER`` stories in a
    row (in the order they finish) stops the build: stories not started are left for the
    next run, the writer's requests in flight are ended (``writer.cancel()``), finished
    stories are kept.
    """
    if concurrency < 1:
        raise UsageError(f"concurrency must be at least 1, got {concurrency}")
    out = Path(out)
    names: dict[str, str] = {}
    for story in stories:
        name = folder_name(story.story_id)
        if name in names:
            raise UsageError(
                f"the stories {names[name]} and {story.story_id} would share the folder {out / name}"
            )
        names[name] = story.story_id
    # refused on every file system, not only where it folds: a dataset built here is read on a Mac
    clash = folding_clash(names)
    if clash:
        raise UsageError(f"cannot build into {out}: {one_folder(names[clash[0]], names[clash[1]])}")
    with lock_folder(out, refuse=UsageError):  # the one build writing to ``out``, for its whole life
        _check_folding(out, names)
        return _build_locked(
            stories, out, perceiver=perceiver, writer=writer, keep_invalid=keep_invalid,
            require_person=require_person, concurrency=concurrency, allow_mixed=allow_mixed,
            settings=settings, progress=progress, say=say,
        )  # fmt: skip


def _check_folding(out: Path, names: dict[str, str]) -> None:
    """Refuse a story (``names``: folder name -> story id) whose folder would be one, where the file
    system ignores case or Unicode form, with the folder of another story already in ``out``."""
    from ..data.folder import is_story_folder
    from ..data.sources import story_folder_id

    try:
        there = [
            p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(".") and is_story_folder(p)
        ]
    except OSError:
        return  # not there yet, or unreadable: the build says so where it reads it
    clash = folding_clash(names, there)
    if clash:
        theirs, ours = story_folder_id(out / clash[0]), names[clash[1]]
        # a folder this story was built to (its name, or its recorded id, in another form) is its own
        if nfc(theirs) != nfc(ours):
            said = one_folder(theirs, ours, fix=", or build into another --out")
            raise UsageError(f"{out} holds the story folder {clash[0]}: {said}")


def _build_locked(
    stories: Sequence[RawStory],
    out: Path,
    *,
    perceiver: Any,
    writer: Any,
    keep_invalid: bool,
    require_person: bool,
    concurrency: int,
    allow_mixed: bool,
    settings: dict | None,
    progress: Callable[[int], None] | None,
    say: Callable[[str], None],
) -> BuildReport:
    """:func:`build_dataset`, holding ``out``."""
    # describing a chat writer asks its server for the model: an endpoint that is down fails here, before any story
    wanted = _as_json(
        {"settings": settings or {}, "perceiver": perceiver.describe(), "writer": writer.describe()}
    )
    entries, index, changed = _claim(out, wanted, allow_mixed)
    check_inputs(out, stories)
    out.mkdir(parents=True, exist_ok=True)
    if changed:
        if not entries and (out / SKIPPED).exists():
            (out / SKIPPED).unlink()  # its entry numbers were those of the build record now replaced
        from .. import __version__

        models = models_in(wanted)
        entries = [
            *entries,
            {
                "entry": index,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "storyreasoning": __version__,
                **wanted,
                "models": models,
            },
        ]
        _write_entries(out, entries)
    entry = entries[index]
    provenance = {
        "entry": index,
        "settings": entry.get("settings", {}),
        "models": entry.get("models") or models_in(entry),
    }

    report = BuildReport(stories=len(stories), entry=index)
    start = time.perf_counter()
    skipped = _read_skipped(out, say) if require_person else {}
    # the stories built since they failed, and the inputs read since they failed (a video by its stories'
    # group; one whose every story is too short, and such a folder, as find_stories names them) have no error
    read = {story.group for story in stories if story.error is None and story.group}
    read |= getattr(stories, "passed", frozenset())
    settle_build_errors(out, say, read=read)
    todo = []
    built = Names(out)
    for story in stories:
        # its folder in either Unicode form, or under an earlier version's ASCII name (café: caf)
        if built.story(story.story_id).exists():
            report.skipped_done += 1
        elif story.story_id in skipped and skipped[story.story_id] == index:
            report.skipped_no_person += 1
        else:
            todo.append(story)
    if progress and len(todo) < len(stories):
        progress(len(stories) - len(todo))
    unread = [story for story in todo if story.error is not None]  # inputs that could not be read
    todo = [story for story in todo if story.error is None]
    stream = getattr(perceiver, "perceive_stories", None)
    source = stream(todo) if callable(stream) else perceive_here(perceiver, todo)
    if unread:
        source = _failed_first(unread, source)
    loop = _Loop(
        source,
        out,
        writer,
        report=report,
        provenance=provenance,
        concurrency=concurrency,
        keep_invalid=keep_invalid,
        require_person=require_person,
        progress=progress,
        say=say,
    )
    try:
        loop.run()
    finally:
        settle_build_errors(out, say, read=read)
    report.seconds = round(time.perf_counter() - start, 3)
    return report


class _Loop:
    """One build's stories in flight: a perceiving thread, a pool of writers, and the accounts.

    The perceiving thread takes a slot (``concurrency + 1`` of them) before it takes the
    next perceived story from ``source`` (perceiving it here, or waiting for it from
    elsewhere) and hands the story to the pool; every story ends in an event (built, failed,
    skipped) that the calling thread handles in the order stories finish: it appends
    errors.jsonl and skipped.jsonl (one writer, so lines never interleave), advances the
    progress, keeps the report, frees the slot, and stops the build when the endpoint
    keeps failing.
    """

    def __init__(
        self,
        source: Iterator[Perceived],
        out: Path,
        writer: Any,
        *,
        report: BuildReport,
        provenance: dict,
        concurrency: int,
        keep_invalid: bool,
        require_person: bool,
        progress: Callable[[int], None] | None,
        say: Callable[[str], None],
    ) -> None:
        self.source, self.out, self.writer = source, out, writer
        self.report, self.provenance = report, provenance
        self.keep_invalid, self.require_person = keep_invalid, require_person
        self.progress, self.say = progress, say
        self.events: queue.Queue = queue.Queue()
        self.slots = threading.Semaphore(concurrency + 1)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.started = 0  # stories that took a slot
        self.futures: set[Future] = set()
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="storyreasoning-build")
        self.thread = threading.Thread(target=self._perceive, name="storyreasoning-perceive", daemon=True)

    # -- the perceiving thread -----------------------------------------------------------------------
    def _perceive(self) -> None:
        try:
            while True:
                while not self.slots.acquire(timeout=0.1):
                    if self.stop.is_set():
                        return
                if self.stop.is_set():
                    self.slots.release()
                    return
                seen = next(self.source, None)
                if seen is None:
                    self.slots.release()
                    return
                story = seen.story
                with self.lock:
                    self.started += 1
                if seen.error is not None:
                    self.events.put(("failed", story, (seen.error, seen.trace)))
                    continue
                frames = seen.frames or []
                if self.require_person and not any(frame.people for frame in frames):
                    self.events.put(("skipped", story, len(frames)))
                    continue
                try:
                    with self.lock:
                        if self.stop.is_set():
                            raise RuntimeError("stopped")
                        future = self.pool.submit(self._write, story, seen.data, seen.sizes, frames)
                        self.futures.add(future)
                except RuntimeError:  # the build stopped meanwhile: the story waits for the next run
                    self.events.put(("interrupted", story, None))
                    return
        except BaseException as exc:  # told to the calling thread, which raises it
            self.events.put(("crashed", None, exc))
        finally:
            close = getattr(self.source, "close", None)
            if callable(close):  # a generator's clean-up: a remote perception stops its work
                try:
                    close()
                except Exception:
                    pass
            self.events.put(("perceived", None, None))

    # -- a writer ----------------------------------------------------------------------------------------
    def _write(self, story: RawStory, data: list, sizes: list, frames: list) -> None:
        try:
            invalid = self._write_story(story, data, sizes, frames)
        except BaseException as exc:  # every story ends in an event
            self.events.put(("interrupted" if self.stop.is_set() else "failed", story, (exc, None)))
        else:
            self.events.put(("built", story, invalid))

    def _write_story(self, story: RawStory, data: list, sizes: list, frames: list) -> bool:
        from ..data.folder import write_story_folder
        from ..data.sample import Frame, StorySample
        from ..format.stream import parse_output

        written = self.writer.write(frames, story.frames, sizes)
        telling = parse_output(f"<think>\n{written.cot}\n</think>\n{written.story}")
        verdict = telling.validate(n_images=len(sizes), image_sizes=sizes)
        if not verdict.well_structured and not self.keep_invalid:
            raise StoryReasoningError(
                "the written story is not well-structured ("
                + "; ".join(d.message for d in verdict.reasons[:3])
                + "); use --keep-invalid to keep such stories"
            )
        source_bytes = _source_sizes(story)
        meta = {
            "build": {
                "writer": written.writer.get("writer"),
                # the template writer's texts are a templated baseline's, not a model's: said in every story
                **({"baseline": True} if written.writer.get("baseline") else {}),
                "attempts": written.attempts,
                "boxes_restored": written.repairs,
                "well_structured": verdict.well_structured,
                "reasons": [d.message for d in verdict.reasons],
                # the writer's own findings on texts kept although failing its stricter checks (--keep-invalid)
                **({"writer_problems": written.problems} if written.problems else {}),
                "people": [len(f.people) for f in frames],
                # what perception could not do (a landmark answer that was not JSON, a generic name refused)
                "notes": [note for f in frames for note in getattr(f, "notes", [])],
                # what a resume compares, with the frames' sources, to know the story is the same input
                **({"source_bytes": source_bytes} if source_bytes is not None else {}),
                **self.provenance,
            }
        }
        # each frame with its source's name: bytes of a format without a known signature (BMP) keep
        # their own suffix, not a .png name over BMP bytes
        stored = [Frame(data=d, path=str(p)) for d, p in zip(data, story.frames, strict=True)]
        sample = StorySample(
            story.story_id, stored, written.cot, written.story, frame_meta=frame_meta(story), meta=meta
        )
        write_story_folder(sample, self.out)
        return not verdict.well_structured

    # -- the calling thread ------------------------------------------------------------------------------
    def run(self) -> None:
        self.thread.start()
        try:
            self._account()
        except BaseException:  # Ctrl-C included
            self._abandon()
            raise
        self.pool.shutdown(wait=True)
        self.thread.join()

    def _account(self) -> None:
        handled, perceived, unreachable = 0, False, 0
        while not (perceived and handled == self.started):
            try:
                kind, story, detail = self.events.get(timeout=0.2)
            except queue.Empty:
                continue
            if kind == "perceived":
                perceived = True
                continue
            if kind == "crashed":
                raise detail
            handled += 1
            self.slots.release()
            if kind == "interrupted":
                continue
            if self.progress:
                self.progress(1)
            if kind == "built":
                self.report.built += 1
                self.report.invalid_kept += bool(detail)
                unreachable = 0
            elif kind == "skipped":
                self.report.skipped_no_person += 1
                self._append(
                    SKIPPED,
                    {
                        "story_id": story.story_id,
                        "entry": self.provenance["entry"],
                        "reason": NO_PERSON,
                        "frames": detail,
                        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    },
                )
                self.say(f"{story.story_id}: {NO_PERSON}; skipped (--no-require-person keeps it)")
            else:  # failed: the error, and its trace when it was formatted where it happened
                detail, trace = detail
                self.report.failed.append(story.story_id)
                self._append(ERRORS, _error_record(story, detail, trace))
                self.say(f"{story.story_id}: {detail}")
                unreachable = unreachable + 1 if isinstance(detail, TellError) else 0
                if unreachable >= STOP_AFTER:
                    # the endpoint itself is failing: stop instead of failing every story the same way
                    raise StoryReasoningError(
                        f"{detail} (stopped after {unreachable} stories in a row failed at the endpoint; "
                        "finished stories are kept, run the same command again to continue)"
                    )

    def _append(self, name: str, record: dict) -> None:
        append_json_line(self.out / name, record, fsync=False)

    def _abandon(self) -> None:
        """Stop: no new story starts, the writer's requests in flight end, finished folders stay whole, and
        the story being perceived is finished (nothing after it starts).

        Also after Ctrl-C, and through a second one: a perceiving thread still inside native code that
        released the GIL (dlib, OpenCV, torch) when the interpreter finalizes is ended by CPython 3.11
        (pthread_exit) as it takes the GIL back, and that unwinding through the library's noexcept C++
        frames aborts the process (``terminate called without an active exception``, exit 134)."""
        with self.lock:
            self.stop.set()
            for future in self.futures:
                future.cancel()
        cancel = getattr(self.writer, "cancel", None)
        if callable(cancel):
            cancel()
        self.pool.shutdown(wait=True)  # a story being saved is renamed into place whole, or not at all
        while self.thread.is_alive():
            try:
                self.thread.join()
            except KeyboardInterrupt:  # Ctrl-C again: the story being perceived still ends first (above)
                continue


__all__ = [
    "ERRORS",
    "MANIFEST",
    "NO_PERSON",
    "OPERATIONAL_KEYS",
    "SKIPPED",
    "STOP_AFTER",
    "BuildReport",
    "Found",
    "Perceived",
    "RawStory",
    "build_dataset",
    "check_inputs",
    "check_resume",
    "error_trace",
    "find_stories",
    "frame_meta",
    "perceive_here",
    "read_entries",
    "read_frames",
    "settle_build_errors",
]
