"""Faces with real weights: dlib's face detector, landmarks and ResNet face encoder.

Characters are re-identified by face. :class:`DlibFaces` finds the faces of an image
and describes each one as a 128-number vector. It uses the models that the
``face_recognition_models`` package ships:

* ``hog`` (the default): dlib's frontal face detector, a HOG + linear SVM detector built
  into dlib itself. About 0.3 s for an 800-pixel image on one CPU core.
* ``cnn``: the MMOD CNN face detector (``mmod_human_face_detector.dat``). It finds more
  faces that are turned away or partly hidden, but the ``dlib-bin`` wheel has no CUDA,
  so it takes 15 to 30 s per 800-pixel image on the CPU.
* the 5-point landmark predictor (``shape_predictor_5_face_landmarks.dat``), which
  aligns each face;
* the ResNet face encoder (``dlib_face_recognition_resnet_model_v1.dat``): a 128-number
  descriptor per aligned face. Two faces of one person lie within Euclidean distance
  0.6 of each other (dlib reports 99.38 % on LFW at that threshold).

``pip install 'storyreasoning[faces]'`` installs these models. It brings the prebuilt
``dlib-bin`` wheel, so nothing is compiled.

:class:`FacePerceiver` wraps the builder's perceiver (the OpenCV baseline, or
:class:`~storyreasoning.builder.perceive.ModelPerceiver`). It keeps that perceiver's
people, objects and backgrounds, and links its people to characters with faces first:

1. each face is given to the person box it lies in (:func:`match_faces`);
2. a face that lies in no person box becomes a person of its own, its box widened from
   the face as the baseline does;
3. people are linked across frames by :func:`link`. When both the person and the
   character have a face, the face decides: the distance to the mean of the
   character's faces must be at most ``threshold``, whatever the clothes. Otherwise a
   second cue decides: the perceiver's embedder features when it has an embedder (cosine
   at least its ``reid_threshold``), else the baseline's colour appearance (head and
   torso histograms, face thumbnail; at least its threshold).

Everything is deterministic: the same frames give the same ids.

**Calibration.** We kept dlib's published threshold of 0.6 (Euclidean distance
between two descriptors) because our own test data supports it. The data
(``tests/builder/data/faces`` and ``examples/stories/pioneers``, made into 23 frames by
``tests/builder/face_scenes.py``) hold four people. One of them, Barack Obama, is in
three White House photographs taken on different days, in different rooms and light.
The 23 frames crop, flip, blur, grey, darken and shrink those photographs. Over the 34
faces found in them:

* two faces of one person lie at most 0.52 apart;
* two faces of two people lie at least 0.63 apart;
* a face lies at most 0.37 from the mean of its person's other faces, and at least 0.64
  from the mean of anyone else's.

A character is compared by its mean face. In the test data, a character's own faces
came within 0.37 of that mean, and no one else's came nearer than 0.64.
``test_the_threshold_separates_the_test_faces`` keeps these numbers true.

Four people are few. In 7 more faces from other packages, checked by hand and not
shipped, the closest two people lay 0.63 apart. A cast of look-alikes may need a lower
``--face-threshold``, for example 0.55.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..format.box import Box

FACES_HINT = "pip install 'storyreasoning[faces]'"
DEFAULT_THRESHOLD = 0.6  # Euclidean distance between 128-number dlib descriptors
DEFAULT_MAX_SIDE = 1280
DEFAULT_UPSAMPLE = 1
# the lowest detector score kept: the real faces of our checks scored 0.37 and up (HOG), a mission
# patch on a flight suit 0.13
DEFAULT_MIN_SCORE = 0.3
INSIDE = 0.5  # a face belongs to a person box that holds at least this share of its area
MAX_FACES = 32  # faces kept per character (their mean is what a new face is compared with)
MAX_LOOKS = 8  # second-cue exemplars kept per character (as the baseline's gallery)
BACKENDS = ("auto", "dlib", "none")
DETECTORS = ("hog", "cnn")

MODEL_FILES = {
    "cnn": "mmod_human_face_detector.dat",
    "landmarks": "shape_predictor_5_face_landmarks.dat",
    "encoder": "dlib_face_recognition_resnet_model_v1.dat",
}


# -- the models -------------------------------------------------------------------------------------------


def _models_folder() -> Path | None:
    """Where ``face_recognition_models`` keeps its ``.dat`` files, without importing it.

    Its ``__init__`` imports ``pkg_resources``, which newer setuptools no longer ship.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    return folder if folder.is_dir() else None


def faces_available() -> bool:
    """Whether dlib and the face models are installed (what ``--faces auto`` asks)."""
    return importlib.util.find_spec("dlib") is not None and _models_folder() is not None


def require_dlib() -> tuple[Any, Path]:
    """``(dlib, models folder)``, or a :class:`UsageError` naming the extra to install."""
    try:
        import dlib
    except ImportError as exc:
        # not installed, or installed but unloadable (a wheel for another platform): say which
        broken = exc.name != "dlib" and str(exc).strip()
        why = f" (import dlib failed: {str(exc).strip().splitlines()[0][:160]})" if broken else ""
        raise UsageError(f"face identity needs dlib and its face models{why}: {FACES_HINT}") from None
    folder = _models_folder()
    if folder is None:
        raise UsageError(
            f"face identity needs the face_recognition_models package (dlib's face models): {FACES_HINT}"
        )
    missing = [name for name in MODEL_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise UsageError(
            f"{folder} lacks {', '.join(missing)}; reinstall the face models: "
            f"pip install --force-reinstall face_recognition_models"
        )
    return dlib, folder


def resolve_backend(choice: str) -> str | None:
    """``"dlib"`` or None for ``--faces auto|dlib|none``. ``dlib`` fails with one line when the package is missing."""
    if choice not in BACKENDS:
        raise UsageError(f"--faces must be one of {', '.join(BACKENDS)}, not {choice!r}")
    if choice == "none":
        return None
    if choice == "auto":
        return "dlib" if faces_available() else None
    require_dlib()
    return "dlib"


@dataclass
class Face:
    """One face in one image: its box in original pixels, the detector's score, its descriptor."""

    box: Box
    score: float
    embedding: Any  # numpy float64 vector of 128


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class _Models:
    """dlib's face models of one folder, loaded once per process (about 3 s) and shared by every
    :class:`DlibFaces` (the video cutter's and the perceiver's), which take turns at ``lock``."""

    detector: Any  # the HOG or CNN face detector
    landmarks: Any
    encoder: Any
    lock: Any


_LOADED: dict[tuple[str, str], _Models] = {}
_LOADING = threading.Lock()


def _load_models(dlib: Any, folder: Path, detector: str) -> _Models:
    key = (str(folder), detector)
    with _LOADING:
        if key not in _LOADED:
            _LOADED[key] = _Models(
                dlib.cnn_face_detection_model_v1(str(folder / MODEL_FILES["cnn"]))
                if detector == "cnn"
                else dlib.get_frontal_face_detector(),
                dlib.shape_predictor(str(folder / MODEL_FILES["landmarks"])),
                dlib.face_recognition_model_v1(str(folder / MODEL_FILES["encoder"])),
                threading.Lock(),
            )
        return _LOADED[key]


class DlibFaces:
    """dlib's face detector (HOG or CNN), 5-point landmarks and ResNet encoder, loaded once per process.

    Detection runs on a copy whose longer side is at most ``max_side`` pixels. With
    ``upsample`` (1 by default) that copy is also enlarged that many times by two, which
    finds faces down to about 40 pixels. Landmarks and descriptors are computed on the
    original pixels. ``jitter`` re-describes each face that many times, slightly moved,
    and averages the results (dlib's ``num_jitters``: steadier, and that many times
    slower). Detections scoring below ``min_score`` are dropped: the HOG detector's SVM
    margin, or the CNN's confidence. One instance may be shared by threads, which take
    turns; so do all instances, whatever their settings, since they share the models
    (loaded by the first, so a build cutting many videos into scenes by face loads them once).
    """

    backend = "dlib"

    def __init__(
        self,
        *,
        detector: str = "hog",
        upsample: int = DEFAULT_UPSAMPLE,
        max_side: int = DEFAULT_MAX_SIDE,
        jitter: int = 0,
        min_score: float = DEFAULT_MIN_SCORE,
    ) -> None:
        if detector not in DETECTORS:
            raise UsageError(f"--face-detector must be one of {', '.join(DETECTORS)}, not {detector!r}")
        if not 0 <= upsample <= 3:
            raise UsageError(f"--face-upsample must be 0 to 3, got {upsample}")
        if max_side < 64:
            raise UsageError(f"--face-max-side must be at least 64 pixels, got {max_side}")
        if jitter < 0:
            raise UsageError(f"the face jitter must be 0 or more, got {jitter}")
        dlib, folder = require_dlib()
        import numpy

        self._dlib, self._np, self._folder = dlib, numpy, folder
        self.detector, self.upsample, self.max_side = detector, int(upsample), int(max_side)
        self.jitter, self.min_score = int(jitter), float(min_score)
        models = _load_models(dlib, folder, detector)
        if detector == "cnn":
            self._cnn = models.detector
        else:
            self._hog = models.detector
        self._landmarks, self._encoder, self._lock = models.landmarks, models.encoder, models.lock
        self._described: dict | None = None

    def describe(self) -> dict:
        """What a build records: the detector, the settings, each model file with its SHA-256, the versions."""
        if self._described is None:
            from ..packages import installed_version

            used = ["landmarks", "encoder"] + (["cnn"] if self.detector == "cnn" else [])
            models_version = installed_version("face_recognition_models")
            self._described = {
                "backend": self.backend,
                "detector": "dlib MMOD CNN face detector"
                if self.detector == "cnn"
                else "dlib frontal face detector (HOG + linear SVM, built into dlib)",
                "upsample": self.upsample,
                "max_side": self.max_side,
                "jitter": self.jitter,
                "min_score": self.min_score,
                "models": {MODEL_FILES[k]: _sha256(self._folder / MODEL_FILES[k]) for k in used},
                "versions": {
                    "dlib": getattr(self._dlib, "__version__", None),
                    "face_recognition_models": models_version,
                },
            }
        return dict(self._described)

    def _detect(self, rgb) -> list[tuple[tuple[int, int, int, int], float]]:
        if self.detector == "cnn":
            found = self._cnn(rgb, self.upsample)
            return [
                ((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), float(d.confidence))
                for d in found
            ]
        rects, scores, _ = self._hog.run(rgb, self.upsample, min(0.0, self.min_score))
        return [
            ((r.left(), r.top(), r.right(), r.bottom()), float(s)) for r, s in zip(rects, scores, strict=True)
        ]

    def find(self, image) -> list[Face]:
        """The faces of one PIL image (any mode), best score first, boxes in its pixels, clipped."""
        from ..format.images import rgb_image

        np, dlib = self._np, self._dlib
        pil = rgb_image(image)
        width, height = pil.size
        scale = min(1.0, self.max_side / max(width, height))
        working = (
            pil if scale >= 1.0 else pil.resize((max(1, round(width * scale)), max(1, round(height * scale))))
        )
        full = np.ascontiguousarray(np.asarray(pil, dtype=np.uint8))
        small = full if working is pil else np.ascontiguousarray(np.asarray(working, dtype=np.uint8))
        with self._lock:
            found = self._detect(small)
            faces: list[Face] = []
            shapes = dlib.full_object_detections()
            for (x1, y1, x2, y2), score in found:
                if score < self.min_score:
                    continue
                # back to original pixels; dlib's boxes may reach past the edge (a face cut by the frame)
                box = tuple(round(v / scale) for v in (x1, y1, x2 + 1, y2 + 1))
                clipped = Box(
                    min(max(box[0], 0), width),
                    min(max(box[1], 0), height),
                    min(max(box[2], 0), width),
                    min(max(box[3], 0), height),
                )
                if clipped.x2 - clipped.x1 < 8 or clipped.y2 - clipped.y1 < 8:
                    continue
                shapes.append(self._landmarks(full, dlib.rectangle(*box)))
                faces.append(Face(clipped, score, None))
            if faces:
                vectors = self._encoder.compute_face_descriptor(full, shapes, self.jitter)
                for face, vector in zip(faces, vectors, strict=True):
                    face.embedding = np.array(vector, dtype=np.float64)
        faces.sort(key=lambda f: (-f.score, f.box.x1, f.box.y1))
        return faces


# -- faces to people --------------------------------------------------------------------------------------


def _area(box: Box) -> int:
    return max(0, box.x2 - box.x1) * max(0, box.y2 - box.y1)


def _inside(face: Box, person: Box) -> float:
    """The share of the face's area that lies in the person box."""
    w = min(face.x2, person.x2) - max(face.x1, person.x1)
    h = min(face.y2, person.y2) - max(face.y1, person.y1)
    return (w * h) / (_area(face) or 1) if w > 0 and h > 0 else 0.0


def match_faces(people: Sequence[Box], faces: Sequence[Box], *, inside: float = INSIDE) -> dict[int, int]:
    """Each person box's face: ``{person index: face index}``, one to one.

    A face may go to a person box that holds at least ``inside`` of its area. Pairs are
    taken best first. "Best" is the larger share inside, then the face nearer the box's
    vertical middle line (as a share of the box's width), then the face nearer the box's
    top (as a share of its height), then the earlier person and face. So when two
    people's boxes overlap and both hold a face whole, the face goes to the box it is
    centred in, near the head.
    """
    pairs: list[tuple[float, float, float, int, int]] = []
    for p, person in enumerate(people):
        pw, ph = max(1, person.x2 - person.x1), max(1, person.y2 - person.y1)
        for f, face in enumerate(faces):
            share = _inside(face, person)
            if share < inside or share <= 0:
                continue
            off_x = abs((face.x1 + face.x2) / 2 - (person.x1 + person.x2) / 2) / pw
            off_y = max(0, face.y1 - person.y1) / ph
            pairs.append((-round(share, 3), round(off_x, 4), round(off_y, 4), p, f))
    pairs.sort()
    chosen: dict[int, int] = {}
    taken: set[int] = set()
    for *_, p, f in pairs:
        if p in chosen or f in taken:
            continue
        chosen[p] = f
        taken.add(f)
    return chosen


# -- linking people across frames -------------------------------------------------------------------------


@dataclass
class Sighting:
    """One person in one frame as :func:`link` sees them: a face descriptor and/or a second cue (either may be None)."""

    face: Any = None  # numpy vector
    look: Any = None  # anything ``similarity`` compares: a colour Appearance, a unit feature vector


@dataclass
class Character:
    index: int  # 0-based, in order of first appearance
    face_sum: Any = None
    faces: int = 0
    looks: list = field(default_factory=list)
    frames: list[int] = field(default_factory=list)

    def face_distance(self, face: Any) -> float:
        mean = self.face_sum / self.faces
        return float(((mean - face) ** 2).sum() ** 0.5)

    def add(self, sighting: Sighting, frame: int) -> None:
        self.frames.append(frame)
        if sighting.face is not None and self.faces < MAX_FACES:
            self.face_sum = sighting.face.copy() if self.face_sum is None else self.face_sum + sighting.face
            self.faces += 1
        if sighting.look is not None and len(self.looks) < MAX_LOOKS:
            self.looks.append(sighting.look)


def link(
    frames: Sequence[Sequence[Sighting]],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    similarity: Callable[[Any, Any], float] | None = None,
    look_threshold: float = 1.0,
) -> list[list[tuple[int, bool, float]]]:
    """The character of every sighting, frame by frame: ``(index, is new, similarity)``.

    When both the sighting and a character have faces, only the face counts: the
    distance to the mean of the character's faces must be at most ``threshold``. That
    pair's similarity is ``1 - distance``. A face farther away means another person,
    however alike the clothes. Otherwise the second cue counts: ``similarity(look,
    exemplar)``, the best over the character's exemplars, must reach ``look_threshold``.
    All face pairs are taken before any pair matched by the second cue. Within each kind,
    pairs go best first (ties: earlier character, then earlier sighting). No two
    sightings of one frame share a character. A sighting left without a pair starts a
    new character.
    """
    characters: list[Character] = []
    out: list[list[tuple[int, bool, float]]] = []
    for number, sightings in enumerate(frames, start=1):
        pairs: list[tuple[int, float, int, int, float]] = []  # (tier, key, character, sighting, similarity)
        for s_index, sighting in enumerate(sightings):
            for character in characters:
                if sighting.face is not None and character.faces:
                    distance = character.face_distance(sighting.face)
                    if distance <= threshold:
                        pairs.append((0, distance, character.index, s_index, 1.0 - distance))
                    continue
                if sighting.look is None or not character.looks or similarity is None:
                    continue
                best = max(similarity(sighting.look, look) for look in character.looks)
                if best >= look_threshold:
                    pairs.append((1, -best, character.index, s_index, best))
        pairs.sort(key=lambda p: p[:4])
        result: dict[int, tuple[int, bool, float]] = {}
        used: set[int] = set()
        for _, _, c_index, s_index, value in pairs:
            if s_index in result or c_index in used:
                continue
            result[s_index] = (c_index, False, value)
            used.add(c_index)
        for s_index, sighting in enumerate(sightings):
            if s_index in result:
                character = characters[result[s_index][0]]
            else:
                character = Character(len(characters))
                characters.append(character)
                result[s_index] = (character.index, True, 0.0)
            character.add(sighting, number)
        out.append([result[i] for i in range(len(sightings))])
    return out


# -- the perceiver ------------------------------------------------------------------------------------------


class FacePerceiver:
    """Another perceiver's people, objects and backgrounds; its characters re-identified by face (see the module doc).

    ``base`` is the builder's perceiver: :class:`~storyreasoning.tell.baseline.BaselineTeller`,
    or a :class:`~storyreasoning.builder.perceive.ModelPerceiver`. ``threshold`` is the
    largest face distance that joins a character. The second cue's threshold comes from
    the base: its ``reid_threshold`` (the baseline's colour similarity, or the
    embedder's cosine).
    """

    def __init__(self, base: Any, faces: DlibFaces, *, threshold: float = DEFAULT_THRESHOLD) -> None:
        if not 0 < threshold <= 2:
            raise UsageError(f"--face-threshold must be in (0, 2] (a Euclidean distance), got {threshold}")
        self.base, self.faces, self.threshold = base, faces, float(threshold)
        from ..tell.baseline import BaselineTeller
        from ..vision import require_cv2
        from ..vision.reid import DEFAULT_THRESHOLD as COLOUR_THRESHOLD

        self._cv2, self._np = require_cv2()
        models = getattr(base, "_models", None)
        self._embedder = (
            isinstance(models, dict)
            and "embedder" in models
            and hasattr(base, "embed_many")
            and hasattr(base, "see_with_features")
        )
        if self._embedder or isinstance(base, BaselineTeller):  # the embedder's cosine, or the colour one
            self.look_threshold = float(base.reid_threshold)
        else:  # a detector without an embedder: colour, at the baseline's threshold
            self.look_threshold = COLOUR_THRESHOLD

    def describe(self) -> dict:
        out = dict(self.base.describe())
        second = (
            f"the embedder's features of square-padded crops, cosine >= {self.look_threshold}"
            if self._embedder
            else f"colour appearance (head and torso histograms, face thumbnail) >= {self.look_threshold}"
        )
        out["faces"] = {
            **self.faces.describe(),
            "threshold": self.threshold,
            "reid": f"face first: Euclidean distance to a character's mean face <= {self.threshold}; "
            f"without a face on either side: {second}",
            "matching": f"a face goes to the person box holding at least {INSIDE:.0%} of it, best overlap first; "
            "a face in no person box becomes a person",
        }
        return out

    # -- the second cue ---------------------------------------------------------------------------------
    def _colour_looks(self, pil, boxes: list[tuple[Box, Box | None]]) -> list[Any]:
        from ..vision.detect import Person
        from ..vision.reid import appearance

        cv2, np = self._cv2, self._np
        width, height = pil.size
        scale = min(1.0, 400 / max(width, height))  # the baseline's working size
        rgb = np.asarray(pil, dtype=np.uint8)
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        rgb = np.ascontiguousarray(rgb)
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        wh, ww = rgb.shape[:2]

        def small(box: Box | None):
            if box is None:
                return None
            x1, x2 = (min(max(round(v * ww / width), 0), ww) for v in (box.x1, box.x2))
            y1, y2 = (min(max(round(v * wh / height), 0), wh) for v in (box.y1, box.y2))
            return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None

        looks = []
        for box, face in boxes:
            person_box = small(box)
            if person_box is None:
                looks.append(None)
                continue
            looks.append(appearance(rgb, hsv, gray, Person(person_box, small(face), "face", 1.0)))
        return looks

    def _torso_colour(self, pil, box: Box, face: Box) -> str | None:
        """The colour name of the torso under a face, as the baseline names it."""
        from ..vision.detect import Person
        from ..vision.reid import colour_name, regions

        width, height = pil.size
        person = Person((box.x1, box.y1, box.x2, box.y2), (face.x1, face.y1, face.x2, face.y2), "face", 1.0)
        _, torso = regions(person, width, height)
        if torso is None:
            return None
        rgb = self._np.ascontiguousarray(self._np.asarray(pil.crop(torso), dtype=self._np.uint8))
        return colour_name(self._cv2.cvtColor(rgb, self._cv2.COLOR_RGB2HSV))

    def _feature_looks(self, pils: list, people: list[list[Any]], known: dict[int, Any]) -> list[list[Any]]:
        """The embedder's features of every person of every frame: the base's where it embedded that
        person's box already (``known``, by ``id`` of the person), else (a person added for a face) the
        crops of all frames embedded together."""
        from .perceive import Detection

        missing = [
            [Detection("person", p.box, 1.0) for p in frame if known.get(id(p)) is None] for frame in people
        ]
        if any(missing):
            self.base.embed_many(pils, missing)
        fresh = [iter([d.feature for d in frame]) for frame in missing]
        return [
            [feature if (feature := known.get(id(p))) is not None else next(new) for p in frame]
            for frame, new in zip(people, fresh, strict=True)
        ]

    # -- seeing -----------------------------------------------------------------------------------------
    def see(self, images: Sequence[Any]) -> list:
        """The base's frames with their people re-linked by face (and people added for faces no box held)."""
        from ..tell.baseline import SeenPerson, open_rgb
        from ..vision.detect import person_from_face
        from ..vision.reid import similarity

        pils = [open_rgb(image, number) for number, image in enumerate(images, start=1)]
        known: dict[int, Any] = {}  # id of a person the base embedded -> its feature
        if self._embedder:  # the base takes the decoded frames as they are
            frames, features = self.base.see_with_features(pils)
            for frame, feats in zip(frames, features, strict=True):
                known.update((id(person), feat) for person, feat in zip(frame.people, feats, strict=True))
        else:
            frames = list(self.base.see(pils))
        per_frame: list[list[tuple[SeenPerson, Face | None]]] = []
        for frame, pil in zip(frames, pils, strict=True):
            width, height = pil.size
            faces = self.faces.find(pil)
            people = list(frame.people)
            matched = match_faces([p.box for p in people], [f.box for f in faces])
            rows: list[tuple[SeenPerson, Face | None]] = [(p, faces[matched[i]] if i in matched else None)
                                                          for i, p in enumerate(people)]  # fmt: skip
            held = set(matched.values())
            for f_index, face in enumerate(faces):
                if f_index in held:
                    continue
                box = person_from_face((face.box.x1, face.box.y1, face.box.x2, face.box.y2), width, height)
                person = SeenPerson(
                    identity=-1, box=Box(*box), face=face.box, source="face", colour=None,
                    first_seen=0, in_previous=False, similarity=0.0,
                )  # fmt: skip
                rows.append((person, face))
            rows.sort(key=lambda r: ((r[0].box.x1 + r[0].box.x2) / 2, r[0].box.y1))
            for person, face in rows:
                if person.source == "face":  # a person added for a face: the colour of the torso below it
                    person.colour = self._torso_colour(pil, person.box, face.box)
            per_frame.append(rows)
        if self._embedder:
            looks = self._feature_looks(pils, [[p for p, _ in rows] for rows in per_frame], known)
        else:
            boxes = [
                [(p.box, face.box if face is not None else p.face) for p, face in rows] for rows in per_frame
            ]
            looks = [self._colour_looks(pil, frame) for pil, frame in zip(pils, boxes, strict=True)]
        sightings = [
            [
                Sighting(face.embedding if face is not None else None, look)
                for (_, face), look in zip(rows, row, strict=True)
            ]
            for rows, row in zip(per_frame, looks, strict=True)
        ]
        compare = (lambda a, b: float(self._np.dot(a, b))) if self._embedder else similarity
        linked = link(
            sightings, threshold=self.threshold, similarity=compare, look_threshold=self.look_threshold
        )
        first_seen: dict[int, int] = {}
        previous: set[int] = set()
        for number, (frame, rows, ids) in enumerate(zip(frames, per_frame, linked, strict=True), start=1):
            people = []
            for (person, face), (index, is_new, value) in zip(rows, ids, strict=True):
                first_seen.setdefault(index, number)
                person.identity = index
                person.first_seen = first_seen[index]
                person.in_previous = index in previous
                person.similarity = 0.0 if is_new else round(value, 4)
                if face is not None:
                    person.face = face.box
                people.append(person)
            frame.people = people
            previous = {p.identity for p in people}
        return frames


def with_faces(
    perceiver: Any,
    *,
    backend: str = "auto",
    detector: str = "hog",
    threshold: float = DEFAULT_THRESHOLD,
    upsample: int = DEFAULT_UPSAMPLE,
    max_side: int = DEFAULT_MAX_SIDE,
) -> Any:
    """``perceiver`` re-identifying its characters by face, or ``perceiver`` itself.

    It is returned unchanged for ``backend="none"``, and for ``"auto"`` when dlib is not
    installed. ``"dlib"`` without dlib raises a :class:`UsageError` naming
    ``pip install 'storyreasoning[faces]'``.
    """
    if resolve_backend(backend) is None:
        return perceiver
    return FacePerceiver(
        perceiver, DlibFaces(detector=detector, upsample=upsample, max_side=max_side), threshold=threshold
    )


__all__ = [
    "BACKENDS",
    "DEFAULT_THRESHOLD",
    "FACES_HINT",
    "DlibFaces",
    "Face",
    "FacePerceiver",
    "Sighting",
    "faces_available",
    "link",
    "match_faces",
    "require_dlib",
    "resolve_backend",
    "with_faces",
]
