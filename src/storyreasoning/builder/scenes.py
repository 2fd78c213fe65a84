"""Shots grouped into scenes, and scenes cut into stories.

A StoryReasoning story is a few frames of one scene: the same people in one place, one
key frame per shot (see :mod:`.video` for the shots and their key frames). This module
decides which consecutive shots make one scene, then cuts every scene into stories.

**Scenes** (``--scenes``). Every shot is compared with the shot before it and, failing
that, with the shot two before it. Two shots belong to one scene when

* ``faces``: they share a character, i.e. a face of one key frame lies within
  ``--face-threshold`` (0.6, dlib's) of a face of the other (128-number dlib
  descriptors, :class:`~storyreasoning.builder.faces.DlibFaces`), **or** their key
  frames look alike as in ``visual``. Where no face is found, or the faces differ,
  the look decides: a shot-reverse-shot dialogue shows two different people in one
  room, and is one scene;
* ``visual``: their key frames look alike: the correlation of their colour histograms
  (hue 16 × saturation 4 × brightness 4 bins, on a copy at most 160 pixels long) is at
  least ``--scene-threshold`` (0.5). Histograms ignore where the colours are, so a
  reverse angle on the same set still matches while a cut to another place does not;
* ``none``: no grouping; the whole video is one run of shots (stories are then cut from
  consecutive shots, as a film's key frames come).

``auto`` (the default) is ``faces`` when dlib is installed and ``--faces`` allows it
(:func:`~storyreasoning.builder.faces.resolve_backend`), else ``visual``.

*Two back.* A shot that matches the shot two before it (and not the one just before)
joins that shot's scene, and the shot between them joins too: A B A, where B is an
insert or a close-up that looks like neither, is one scene. Scenes are runs of
consecutive shots, never more. Two back is the whole memory: a fourth shot must match
one of the two before it.

*Calibration.* The 0.5 threshold lies between what the test videos
(``tests/builder/video_scenes.py``: real photographs on painted sets) measure: two
shots of one set correlate 0.8 to 0.95, a close-up against a wide shot of the same
room 0.1 to 0.4, two sets below 0.2. Films vary more (lighting changes within a scene,
look-alike sets): raise the threshold to cut more scenes, lower it to cut fewer; the
faces rule is the steadier one where faces are visible.

**Stories** (:func:`split_scene`). A story never spans two scenes nor two videos. A
scene of ``n`` key frames becomes ``k = ceil(n / frames_per_story)`` stories of balanced
length (they differ by at most one frame: 7 frames at 5 per story make 4 + 3, never
5 + 2). When such stories would be shorter than ``min_frames``, the scene makes
``n // min_frames`` stories of balanced length from its first frames (at most
``frames_per_story`` each) and the frames left over are skipped with a note; a scene
shorter than ``min_frames`` is skipped with a note. (The original grouped whole scenes
until a story had at least 5 frames, so a story could run over many scenes and
hundreds of frames; it also dropped the partial story at each change of movie.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError

SCENE_RULES = ("auto", "faces", "visual", "none")
DEFAULT_SCENE_THRESHOLD = 0.5  # correlation of key frames' colour histograms
LOOKBACK = 2  # a shot is compared with the shot before it, then the one two before
SIGNATURE_SIDE = 160  # the histogram is taken on a copy at most this long
BINS = (16, 4, 4)  # hue, saturation, brightness


def resolve_rule(rule: str, faces: str = "auto") -> str:
    """``faces``, ``visual`` or ``none`` for ``--scenes RULE`` with ``--faces FACES``.

    ``auto`` is ``faces`` when dlib is installed and ``--faces`` is not ``none``; an explicit
    ``faces`` without dlib fails with one line naming the extra.
    """
    from .faces import require_dlib, resolve_backend

    if rule not in SCENE_RULES:
        raise UsageError(f"--scenes must be one of {', '.join(SCENE_RULES)}, not {rule!r}")
    if rule == "auto":
        return "faces" if faces != "none" and resolve_backend(faces) == "dlib" else "visual"
    if rule == "faces":
        require_dlib()
    return rule


@dataclass
class ShotLook:
    """What scene grouping knows of one shot's key frame: its colour signature and its faces."""

    signature: Any  # numpy float32 histogram, summing to 1
    faces: list = field(default_factory=list)  # 128-number dlib descriptors


def signature(rgb) -> Any:
    """The colour histogram of an RGB image (numpy array): hue × saturation × brightness, summing to 1."""
    from ..vision import require_cv2

    cv2, np = require_cv2()
    height, width = rgb.shape[:2]
    scale = SIGNATURE_SIDE / max(width, height)
    small = (
        cv2.resize(
            rgb, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
        )
        if scale < 1
        else rgb
    )
    hsv = cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, list(BINS), [0, 180, 0, 256, 0, 256])
    return (hist / max(float(hist.sum()), 1.0)).astype(np.float32)


def look_similarity(a: ShotLook, b: ShotLook) -> float:
    """The correlation of two shots' colour histograms, -1 to 1 (1: the same colours in the same shares)."""
    from ..vision import require_cv2

    cv2, _ = require_cv2()
    return float(cv2.compareHist(a.signature, b.signature, cv2.HISTCMP_CORREL))


def face_distance(a: ShotLook, b: ShotLook) -> float | None:
    """The smallest distance between a face of ``a`` and a face of ``b``; None when either has none."""
    if not a.faces or not b.faces:
        return None
    return min(float(((x - y) ** 2).sum() ** 0.5) for x in a.faces for y in b.faces)


def shot_look(rgb, finder: Any = None) -> ShotLook:
    """The look of a key frame (RGB numpy array); its faces too when ``finder`` (a DlibFaces) is given."""
    faces = []
    if finder is not None:
        from PIL import Image

        faces = [face.embedding for face in finder.find(Image.fromarray(rgb))]
    return ShotLook(signature(rgb), faces)


def match(a: ShotLook, b: ShotLook, *, rule: str, threshold: float, face_threshold: float) -> str | None:
    """Why two shots are one scene (``"face 0.41"``, ``"look 0.93"``), or None when they are not."""
    if rule == "none":
        return "no grouping"
    if rule == "faces":
        distance = face_distance(a, b)
        if distance is not None and distance <= face_threshold:
            return f"face {distance:.2f}"
    similarity = look_similarity(a, b)
    return f"look {similarity:.2f}" if similarity >= threshold else None


@dataclass
class Grouping:
    """The scene of every shot (1-based, in order) and why each shot is where it is."""

    scenes: list[int]
    reasons: list[str]


def group_scenes(
    looks: Sequence[ShotLook],
    *,
    rule: str = "visual",
    threshold: float = DEFAULT_SCENE_THRESHOLD,
    face_threshold: float = 0.6,
) -> Grouping:
    """Consecutive shots grouped into scenes by ``rule`` (``faces``, ``visual`` or ``none``; see the module doc)."""
    if rule not in ("faces", "visual", "none"):
        raise UsageError(f"the scene rule must be faces, visual or none, not {rule!r}")
    starts = [True] * len(looks)  # starts[i]: shot i opens a scene
    reasons = ["first shot" if i == 0 else "new scene" for i in range(len(looks))]
    for i in range(1, len(looks)):
        for back in range(1, LOOKBACK + 1):
            j = i - back
            if j < 0:
                break
            why = match(looks[i], looks[j], rule=rule, threshold=threshold, face_threshold=face_threshold)
            if why is None:
                continue
            for k in range(j + 1, i):
                if starts[k]:  # a shot that matched neither neighbour joins the scene around it
                    starts[k], reasons[k] = False, f"between shots {j + 1} and {i + 1}"
            starts[i], reasons[i] = False, f"{why} with shot {j + 1}"
            break
    scenes, number = [], 0
    for start in starts:
        number += start
        scenes.append(number)
    return Grouping(scenes, reasons)


@dataclass(frozen=True)
class Chunk:
    """Frames ``start`` to ``stop`` (exclusive) of a scene; ``kept`` False when too short to be a story."""

    start: int
    stop: int
    kept: bool

    def __len__(self) -> int:
        return self.stop - self.start


def _balanced(start: int, count: int, parts: int) -> list[tuple[int, int]]:
    out = []
    for k in range(parts):
        size = count // parts + (1 if k < count % parts else 0)
        out.append((start, start + size))
        start += size
    return out


def split_scene(count: int, *, frames_per_story: int, min_frames: int = 1) -> list[Chunk]:
    """A scene of ``count`` key frames cut into stories (see the module doc): every chunk, kept or not, in order."""
    if frames_per_story < 1 or min_frames < 1:
        raise UsageError(
            f"frames per story and min frames must be at least 1, got {frames_per_story} and {min_frames}"
        )
    if count <= 0:
        return []
    if count < min_frames or frames_per_story < min_frames:
        return [Chunk(0, count, False)]
    parts = -(-count // frames_per_story)
    if count // parts >= min_frames:
        return [Chunk(a, b, True) for a, b in _balanced(0, count, parts)]
    parts = count // min_frames  # fewer, longer stories would pass frames_per_story: drop the tail
    used = min(count, parts * frames_per_story)
    chunks = [Chunk(a, b, True) for a, b in _balanced(0, used, parts)]
    return chunks + ([Chunk(used, count, False)] if used < count else [])


__all__ = [
    "DEFAULT_SCENE_THRESHOLD",
    "SCENE_RULES",
    "Chunk",
    "Grouping",
    "ShotLook",
    "face_distance",
    "group_scenes",
    "look_similarity",
    "match",
    "resolve_rule",
    "shot_look",
    "signature",
    "split_scene",
]
