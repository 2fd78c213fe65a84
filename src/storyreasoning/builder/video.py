"""Frames from videos: shots found by PySceneDetect, the sharpest frame of each, stories drawn from scenes.

StoryReasoning's stories are sequences of movie frames from different shots of one
scene. :func:`video_stories` turns one video into such stories in three steps:

1. **Shots** (:func:`find_shots`). PySceneDetect's ``ContentDetector``, the detector
   the field uses for hard cuts, reads the video (OpenCV decodes it) and cuts a shot
   where the mean change of hue, saturation and brightness between two frames reaches
   ``--shot-threshold`` (27, PySceneDetect's default, on a 0-255 scale). Its
   ``min_scene_len`` is ``--min-shot`` seconds (0.5), in its ``SUPPRESS`` mode: a cut
   sooner than that after the last cut kept (or the video's start) is ignored, the shot
   going on across it, so flashes and quick glitches do not make shots, and a run of
   quick cuts still gives a shot every ``--min-shot`` seconds or more. (Its default,
   ``MERGE``, waits for a quiet stretch after every cut: a film cut every 2 s with
   ``--min-shot 2.5`` would be one shot.) A shot still shorter than ``--min-shot`` (the
   video's last, cut off by its end) gets no key frame.
2. **Key frames** (:func:`key_frames`, ``--key-frame``). ``sharpest`` (the default):
   up to nine frames evenly spaced inside the shot, leaving out its first and last
   tenth (dissolves and motion blur gather near cuts); the middle frame is always one
   of them. Each is scored by the variance of its Laplacian on a grey copy at most 256
   pixels long (the usual focus measure: blur and motion blur lower it). The sharpest
   wins; frames within 5 % of the sharpest count as tied, and of tied frames the one
   nearest the middle wins, so a steady shot keeps its middle frame and a shot with a
   blurred middle does not. ``middle``: the middle frame, as before. The video is
   decoded twice (once by PySceneDetect, once here, retrieving only the sampled
   frames), and memory stays flat: a key frame is written as soon as its shot is
   over, and at most the few sampled frames of one shot that could still win are held.
3. **Scenes and stories** (:mod:`.scenes`): consecutive shots are grouped into scenes
   (``--scenes``, ``--scene-threshold``), and every scene is cut into stories of at most
   ``--frames-per-story`` key frames (balanced), skipping those shorter than
   ``--min-frames``. A story never spans two scenes nor two videos.

The key frames go to ``OUT/.frames/<video stem>/00001.png`` (shot 1, …) with an index,
``frames.json``: every shot's frames, key frame, time, sharpness and scene, and the
settings that made them (shot threshold, min shot, key frame rule, scene rule and its
thresholds; the rules no option sets: the shot detector and its flash filter, and for the
sharpest frame the frames scored per shot, the share left out at each end and the tie
margin) and the video's size. A resumed build reads the index and decodes nothing. A
resumed build asking for other settings is **refused** (one line naming each difference):
the stories already built from the old key frames would otherwise mix with new ones under
the same ids. Give the same settings, or another ``--out``. An index an earlier version made
by other rules (its flash filter was ``merge`` before it was recorded; a version may score
other frames) is cut again when no story of that video is built in ``--out`` yet; otherwise
it is kept, with a note naming the rules then and now, so that all the video's stories come
from one cut. An index from before the sharpest rule was recorded was picked by today's
(nine frames, a tenth left out at each end, ties within 5 %) and is read as it is.

Story ids are ``<video stem>-001``, … in order (a skipped story keeps its number, so
ids do not shift when ``--min-frames`` changes). Every story of one video is one
identity group (``RawStory.group``, the video's file name): the stories of a film share
its people, so the reward may link their frames and the contrastive sequences never
mix them. The video's name is taken in Unicode's composed form (NFC) for its story ids, its
sources, its group and its key frames folder (found under either form), so that a resume on a
Mac's volume, which lists ``Café.mp4`` decomposed, finds what a build elsewhere made, and the
reverse. ``RawStory.scene`` is the scene's number in the video (1-based; None with
``--scenes none``). Each frame's provenance is ``film.mp4@12.40s``. Everything is
deterministic: the same video and settings give the same frames and stories.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StoryReasoningError, UsageError, file_error
from ..files import write_json_atomic
from ..settings import then_now
from .raw import Names, RawStory, nfc

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
BUILD_HINT = "pip install 'storyreasoning[build]'"
DEFAULT_SHOT_THRESHOLD = 27.0  # PySceneDetect's ContentDetector default
DEFAULT_MIN_SHOT = 0.5  # seconds
KEY_FRAME_RULES = ("sharpest", "middle")
SAMPLES = 9  # frames scored per shot
EDGE = 0.1  # the share of a shot left out at each end when sampling
TIE = 0.05  # frames this close (relative) to the sharpest tie with it
SHARPNESS_SIDE = 256  # sharpness is measured on a grey copy at most this long
INDEX = "frames.json"
INDEX_VERSION = 1
#: what decides the cuts beyond the options, recorded in the index with them: a version that cuts
#: otherwise finds the key frames an earlier one cut (see :func:`_read_index`)
SHOT_RULE = {"shot_detector": "ContentDetector", "flash_filter": "suppress"}
#: what picks a shot's sharpest frame beyond the options, recorded with ``--key-frame sharpest`` (the
#: middle frame is neither sampled nor scored): like the shot rule, a version that picks otherwise finds
#: the key frames an earlier one picked
SHARPEST_RULE = {"key_frame_samples": SAMPLES, "key_frame_edge": EDGE, "key_frame_tie": TIE}
#: the sharpest rule of the versions that did not record it: an index of theirs was picked by it
UNRECORDED_SHARPEST_RULE = {"key_frame_samples": 9, "key_frame_edge": 0.1, "key_frame_tie": 0.05}
#: how a note or a refusal names each part of the rules (an option is named ``--shot-threshold``)
RULE_NAMES = {
    "shot_detector": "shot detector",
    "flash_filter": "flash filter",
    "key_frame_samples": "frames scored per shot",
    "key_frame_edge": "shot share left out at each end",
    "key_frame_tie": "key frame tie margin",
}
_OPENING = threading.Lock()  # OpenCV's log level, lowered while a video is opened


def is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


def require_scenedetect() -> Any:
    """The ``scenedetect`` module, or a :class:`UsageError` naming the extra that installs it."""
    from ..vision import require_cv2

    require_cv2()
    try:
        import scenedetect
    except ImportError:
        raise UsageError(f"cutting videos into shots needs PySceneDetect: {BUILD_HINT}") from None
    import logging

    log = logging.getLogger("pyscenedetect")
    if not log.handlers:  # its warnings go where the application sends logs, not to stderr by default
        log.addHandler(logging.NullHandler())
    return scenedetect


def _unreadable(path: Path, why: str = "OpenCV does not decode it") -> StoryReasoningError:
    return StoryReasoningError(
        f"cannot read the video {path}: {why}; convert it to MP4 with H.264 (ffmpeg -i IN OUT.mp4)"
    )


def _open(path: Path):
    """An OpenCV capture of ``path``, or one line saying it cannot be read (the decoders' own complaints
    silenced); a video this user may not read fails alone, as one OpenCV does not decode."""
    from ..vision import require_cv2

    cv2, _ = require_cv2()
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # quiet: the error below says it in one line
    if not path.is_file():
        raise UsageError(f"the video {path} does not exist")
    if not os.access(path, os.R_OK):
        said = file_error(PermissionError(13, "Permission denied", str(path)), "read the video")
        raise StoryReasoningError(str(said))
    # FFmpeg alone where this OpenCV has it (every pip wheel): the readers OpenCV tries after it print to
    # stderr themselves, past its log level (its own AVI reader fprintf's a damaged header's bytes, raw)
    api = cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) else cv2.CAP_ANY
    log = cv2.utils.logging
    with _OPENING:  # a backend asked by name warns through OpenCV's log when it cannot open the file
        level = log.getLogLevel()
        log.setLogLevel(log.LOG_LEVEL_SILENT)
        try:
            capture = cv2.VideoCapture(str(path), api)
        finally:
            log.setLogLevel(level)
    if not capture.isOpened():
        capture.release()
        raise _unreadable(path)
    return capture


@dataclass
class Shots:
    """A video's shots as PySceneDetect cut them: ``(first, last)`` frame numbers (0-based, inclusive)."""

    bounds: list[tuple[int, int]]
    fps: float
    frames: int  # frames decoded


def find_shots(
    path: Path, *, threshold: float = DEFAULT_SHOT_THRESHOLD, min_shot: float = DEFAULT_MIN_SHOT
) -> Shots:
    """The shots of a video, by PySceneDetect's ``ContentDetector`` (see the module doc)."""
    path = Path(path)
    sd = require_scenedetect()
    from scenedetect.detector import FlashFilter

    _open(
        path
    ).release()  # an unreadable file fails here, in one line (and PySceneDetect's CAP_ANY finds FFmpeg)
    try:
        video = sd.open_video(str(path), backend="opencv")
    except (sd.VideoOpenFailure, OSError) as exc:
        raise _unreadable(path, str(exc).strip() or "OpenCV does not decode it") from None
    fps = float(video.frame_rate)
    manager = sd.SceneManager()
    # SUPPRESS, not PySceneDetect's default MERGE: merging restarts its wait at every cut, so shots all
    # shorter than min_scene_len (cuts every 2 s against --min-shot 2.5) would merge into one shot
    detector = getattr(sd, SHOT_RULE["shot_detector"])(
        threshold=threshold,
        min_scene_len=max(0, round(min_shot * fps)),
        filter_mode=FlashFilter.Mode[SHOT_RULE["flash_filter"].upper()],
    )
    manager.add_detector(detector)
    try:
        decoded = manager.detect_scenes(video=video, show_progress=False)
    except Exception as exc:  # a decoder failing midway: name the file, not a traceback
        raise _unreadable(path, f"decoding failed ({type(exc).__name__}: {str(exc)[:160]})") from None
    if decoded <= 0:
        raise _unreadable(path, "it has no frames OpenCV can decode")
    scenes = manager.get_scene_list(start_in_scene=True)
    bounds = [(start.frame_num, end.frame_num - 1) for start, end in scenes]
    bounds = [(a, min(b, decoded - 1)) for a, b in bounds if a <= min(b, decoded - 1)] or [(0, decoded - 1)]
    return Shots(bounds, fps, decoded)


def sample_frames(first: int, last: int, *, samples: int = SAMPLES, edge: float = EDGE) -> list[int]:
    """The frames of a shot scored for sharpness: up to ``samples`` evenly spaced, its ends left out, the middle in."""
    margin = int((last - first + 1) * edge)
    a, b = first + margin, last - margin
    steps = samples - 1
    # floor division: k = steps // 2 gives (a + b) // 2, which is (first + last) // 2
    return sorted({a + (k * (b - a)) // steps for k in range(samples)})


def sharpness(bgr) -> float:
    """The variance of the Laplacian of an image's grey copy at most 256 pixels long: higher is sharper."""
    from ..vision import require_cv2

    cv2, _ = require_cv2()
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
    height, width = grey.shape[:2]
    scale = SHARPNESS_SIDE / max(width, height)
    if scale < 1:
        grey = cv2.resize(
            grey, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
        )
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def choose(candidates: list[tuple[int, float]], middle: int) -> tuple[int, float]:
    """The key frame among ``(frame, sharpness)``: the sharpest, ties (within 5 %) to the one nearest ``middle``."""
    best = max(score for _, score in candidates)
    tied = [(frame, score) for frame, score in candidates if score >= best * (1 - TIE)]
    return min(tied, key=lambda c: (abs(c[0] - middle), c[0]))


@dataclass
class KeyFrame:
    shot: int  # 1-based
    first: int  # the shot's frames, 0-based, inclusive
    last: int
    index: int  # the key frame's number in the video, 0-based
    seconds: float
    sharpness: float
    image: Any  # an RGB numpy array


def key_frames(
    path: Path, shots: Shots, *, rule: str = "sharpest", min_shot: float = 0.0
) -> Iterator[KeyFrame]:
    """The key frame of every shot at least ``min_shot`` seconds long, shot by shot, as the video is read.

    See the module doc for the rules. Frames that are not sampled are only grabbed, not
    converted; the sampled frames of one shot that can no longer win are let go at once.
    """
    from ..vision import require_cv2

    if rule not in KEY_FRAME_RULES:
        raise UsageError(f"--key-frame must be one of {', '.join(KEY_FRAME_RULES)}, not {rule!r}")
    cv2, _ = require_cv2()
    path = Path(path)
    plans: list[tuple[int, int, int, list[int]]] = []  # (shot, first, last, sampled frames)
    for number, (first, last) in enumerate(shots.bounds, start=1):
        if (last - first + 1) / shots.fps < min_shot:
            continue
        middle = (first + last) // 2
        plans.append((number, first, last, [middle] if rule == "middle" else sample_frames(first, last)))
    if not plans:
        return
    owner = {frame: k for k, (_, _, _, frames) in enumerate(plans) for frame in frames}
    capture = _open(path)
    held: list[tuple[int, float, Any]] = []  # (frame, sharpness, BGR image) of the current shot

    def finish(k: int) -> KeyFrame:
        number, first, last, _ = plans[k]
        frame, score = choose([(f, s) for f, s, _ in held], (first + last) // 2)
        bgr = next(image for f, _, image in held if f == frame)
        held.clear()
        return KeyFrame(
            number, first, last, frame, frame / shots.fps, score, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        )

    try:
        index, current = -1, 0
        while current < len(plans):
            if not capture.grab():
                break
            index += 1
            k = owner.get(index)
            if k is None:
                continue
            if k != current:  # the last sampled frames of the shot before did not decode
                if held:
                    yield finish(current)
                current = k
            ok, bgr = capture.retrieve()
            if ok:
                score = sharpness(bgr)
                best = max([score] + [s for _, s, _ in held])
                # frames below the tie margin can never tie with the best again: let them go
                held[:] = [h for h in held if h[1] >= best * (1 - TIE)]
                if score >= best * (1 - TIE):
                    held.append((index, score, bgr))
            if index == plans[k][3][-1]:
                if held:
                    yield finish(k)
                current = k + 1
        if held:  # the video ended before the shot's last sampled frame (a frame count that was off)
            yield finish(current)
    finally:
        capture.release()


@dataclass(frozen=True)
class VideoOptions:
    """How videos become stories: the video options of ``storyreasoning build`` (see the module docs)."""

    frames_per_story: int = 5
    shot_threshold: float = DEFAULT_SHOT_THRESHOLD
    min_shot: float = DEFAULT_MIN_SHOT
    key_frame: str = "sharpest"
    scenes: str = "auto"  # auto | faces | visual | none
    scene_threshold: float = 0.5
    faces: str = "auto"  # the build's --faces: whether dlib may be used
    face_threshold: float = 0.6
    face_detector: str = "hog"
    face_upsample: int = 1
    face_max_side: int = 1280

    def recorded(self, rule: str) -> dict:
        """The settings that made a video's key frames and scenes (``rule``: the resolved scene rule)."""
        made = {
            "shot_threshold": float(self.shot_threshold),
            "min_shot": float(self.min_shot),
            **SHOT_RULE,
            "key_frame": self.key_frame,
            **(SHARPEST_RULE if self.key_frame == "sharpest" else {}),
            "scenes": rule,
        }
        if rule != "none":
            made["scene_threshold"] = float(self.scene_threshold)
        if rule == "faces":
            made |= {
                "face_threshold": float(self.face_threshold),
                "face_detector": self.face_detector,
                "face_upsample": int(self.face_upsample),
                "face_max_side": int(self.face_max_side),
            }
        return made


def _read_index(
    index_file: Path, path: Path, wanted: dict, out: Path | None = None
) -> tuple[dict, str] | None:
    """The index of a video's key frames when it was made by ``wanted`` from this video, and ``""``;
    refused otherwise. When only the rules differ (:data:`SHOT_RULE`, :data:`SHARPEST_RULE`: an earlier
    version cut or picked them): none (cut it again) when no story of the video is in ``out``, else the
    index, kept, and what differs (``NAME OLD then, NEW now; …``) for a note."""
    if not index_file.is_file():
        return None
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
        held, shots = dict(index["settings"]), index["shots"]
        [(s["file"], s["seconds"]) for s in shots]
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(
            f"{index_file} is unreadable; delete the folder {index_file.parent} to cut {path.name} again"
        ) from None
    folder = index_file.parent
    video = index.get("video")
    if not isinstance(video, str) or nfc(video) != nfc(path.name):  # listed in either form, as recorded
        raise UsageError(
            f"{folder} holds the key frames of {video}, not of {path.name}: videos named "
            f"{path.stem} would share key frames and story ids; rename one of them"
        )
    if index.get("bytes") != path.stat().st_size:
        raise UsageError(
            f"{path.name} changed since its key frames were cut into {folder}; build it into another --out "
            f"(or delete that folder and the stories built from {path.stem})"
        )
    if held.get("key_frame") == "sharpest":  # an index from before the rule was recorded: picked by theirs
        held = {**UNRECORDED_SHARPEST_RULE, **held}
    differ = [key for key in {**wanted, **held} if held.get(key) != wanted.get(key)]
    if "key_frame" in differ:  # another --key-frame: its rule (or none) is no difference of its own
        differ = [key for key in differ if key not in SHARPEST_RULE]
    said = "; ".join(
        then_now(RULE_NAMES.get(key) or "--" + key.replace("_", "-"), held.get(key), wanted.get(key))
        for key in differ
    )
    kept = ""
    if differ and all(key in SHOT_RULE or key in SHARPEST_RULE for key in differ):  # an earlier version's
        # nothing built from them: cut again by today's rules (the index first gone); stories built from
        # them (or none known, out not given): kept, so the video's stories all come from one cut
        if out is not None and not _built_from(out, path, len(shots)):
            try:
                index_file.unlink()
                for shot in shots:
                    (folder / Path(shot["file"]).name).unlink(missing_ok=True)
            except OSError as exc:
                raise file_error(exc, "delete the old key frames") from None
            return None
        differ, kept = [], said
    if differ:
        raise UsageError(
            f"the key frames of {path.name} in {folder} were made with {said}; give the same settings or "
            "another --out (stories already built from them would mix)"
        )
    missing = [s["file"] for s in shots if not (folder / s["file"]).is_file()]
    if missing:
        raise UsageError(
            f"{folder} lacks {', '.join(missing[:3])}; delete the folder to cut {path.name} again"
        )
    return index, kept


def _built_from(out: Path, path: Path, shots: int) -> bool:
    """Whether a story of the video ``path`` is built in ``out``: a video of ``shots`` key frames has
    stories ``<stem>-001`` to ``<stem>-<shots>`` at most (their folders named in either Unicode form)."""
    names = Names(out)
    ids = (f"{nfc(path.stem)}-{number:03d}" for number in range(1, shots + 1))
    return any(names.story(story_id).is_dir() for story_id in ids)


def _cut(path: Path, folder: Path, options: VideoOptions, rule: str) -> dict:
    """Decode the video, write its key frames into ``folder`` and return their index (written last, atomically)."""
    from ..vision import require_cv2
    from .scenes import group_scenes, shot_look

    cv2, _ = require_cv2()
    shots = find_shots(path, threshold=options.shot_threshold, min_shot=options.min_shot)
    finder = None
    if rule == "faces":
        from .faces import DlibFaces

        finder = DlibFaces(
            detector=options.face_detector, upsample=options.face_upsample, max_side=options.face_max_side
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise file_error(exc, "write the key frames folder") from None
    entries, looks = [], []
    for key in key_frames(path, shots, rule=options.key_frame, min_shot=options.min_shot):
        name = f"{key.shot:05d}.png"
        if not cv2.imwrite(str(folder / name), cv2.cvtColor(key.image, cv2.COLOR_RGB2BGR)):
            raise StoryReasoningError(
                f"cannot write the key frame {folder / name}; check the disk and permissions"
            )
        if rule != "none":
            looks.append(shot_look(key.image, finder))
        entries.append(
            {
                "file": name,
                "shot": key.shot,
                "first": key.first,
                "last": key.last,
                "key": key.index,
                "seconds": round(key.seconds, 3),
                "sharpness": round(key.sharpness, 1),
            }
        )
    if rule == "none":
        for entry in entries:
            entry["scene"], entry["why"] = None, "no grouping"
    else:
        grouping = group_scenes(
            looks, rule=rule, threshold=options.scene_threshold, face_threshold=options.face_threshold
        )
        for entry, scene, why in zip(entries, grouping.scenes, grouping.reasons, strict=True):
            entry["scene"], entry["why"] = scene, why
    index = {
        "version": INDEX_VERSION,
        "video": nfc(path.name),
        "bytes": path.stat().st_size,
        "fps": shots.fps,
        "frames": shots.frames,
        "cuts": len(shots.bounds),
        "settings": options.recorded(rule),
        "shots": entries,
    }
    write_json_atomic(folder / INDEX, index, indent=1, ensure_ascii=True)
    return index


def video_stories(
    path: Path,
    frames_dir: Path,
    options: VideoOptions | None = None,
    *,
    min_frames: int = 2,
    out: Path | None = None,
) -> tuple[list[RawStory], list[str]]:
    """Stories drawn from the scenes of one video; key frames written under ``frames_dir`` (reused when there).

    ``out``: the dataset folder the stories are built into, when known; key frames an earlier version cut
    by another rule are cut again when no story of the video is built there yet (else kept).
    """
    from .scenes import resolve_rule, split_scene

    options = options or VideoOptions()
    path = Path(path)
    if options.frames_per_story < min_frames:
        raise UsageError(
            f"--frames-per-story {options.frames_per_story} is below --min-frames {min_frames}: "
            "no story of a video could be kept"
        )
    if options.key_frame not in KEY_FRAME_RULES:
        raise UsageError(
            f"--key-frame must be one of {', '.join(KEY_FRAME_RULES)}, not {options.key_frame!r}"
        )
    rule = resolve_rule(options.scenes, options.faces)
    # the video's names as the build keys them (NFC): its stories, their sources and its key frames
    # folder are the same whichever form a volume lists its name in
    name, stem = nfc(path.name), nfc(path.stem)
    folder = Names(frames_dir).find(stem)
    notes = []
    read = _read_index(folder / INDEX, path, options.recorded(rule), out)
    if read is None:
        index = _cut(path, folder, options, rule)
    else:
        index, kept = read
        if kept:
            notes.append(
                f"{name}: its key frames were made by an earlier version ({kept}); kept, so that all its "
                "stories come from one cut"
            )
    shots = index["shots"]
    if index["cuts"] > len(shots):
        notes.append(
            f"{name}: {index['cuts'] - len(shots)} of {index['cuts']} shots shorter than {options.min_shot} s "
            "have no key frame"
        )
    runs: list[list[dict]] = []
    for shot in shots:
        if runs and runs[-1][0]["scene"] == shot["scene"]:
            runs[-1].append(shot)
        else:
            runs.append([shot])
    stories: list[RawStory] = []
    number = 0
    for run in runs:
        for chunk in split_scene(len(run), frames_per_story=options.frames_per_story, min_frames=min_frames):
            number += 1
            story_id = f"{stem}-{number:03d}"
            part = run[chunk.start : chunk.stop]
            where = f"scene {run[0]['scene']}" if run[0]["scene"] is not None else name
            if not chunk.kept:
                notes.append(
                    f"{story_id}: {len(part)} key frame{'s' * (len(part) != 1)} of {where} (shot "
                    f"{part[0]['shot']}{'' if len(part) == 1 else '-' + str(part[-1]['shot'])}), fewer than "
                    f"{min_frames}; skipped"
                )
                continue
            stories.append(
                RawStory(
                    story_id,
                    [folder / s["file"] for s in part],
                    [f"{name}@{s['seconds']:.2f}s" for s in part],
                    group=name,
                    scene=run[0]["scene"],
                )
            )
    if not shots:
        notes.append(f"{name}: no shot of at least {options.min_shot} s found")
    scenes = "one run" if rule == "none" else f"{len(runs)} scene{'s' * (len(runs) != 1)} ({rule})"
    made = f"{len(stories)} {'story' if len(stories) == 1 else 'stories'}"
    notes.append(f"{name}: {len(shots)} key frames, {scenes}, {made}")
    return stories, notes


__all__ = [
    "KEY_FRAME_RULES",
    "VIDEO_SUFFIXES",
    "KeyFrame",
    "Shots",
    "VideoOptions",
    "choose",
    "find_shots",
    "is_video",
    "key_frames",
    "require_scenedetect",
    "sample_frames",
    "sharpness",
    "video_stories",
]
