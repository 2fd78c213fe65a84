"""People in an image from OpenCV's classical detectors: no model weights, CPU only.

:class:`PeopleDetector` runs the Haar face cascades that ship with OpenCV (frontal, and
profile in both directions), suppresses duplicates, and widens each face into a person
box (head and shoulders down to the torso, clipped to the image). It then runs OpenCV's
HOG people detector and keeps the standing figures that overlap no face-derived person.

Everything works on an RGB ``numpy`` array and returns integer boxes ``(x1, y1, x2, y2)``
in that array's pixels; the caller maps them back to the original image. numpy and
OpenCV are imported when a detector is built, not when this module is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import require_cv2

BoxT = tuple[int, int, int, int]

FRONTAL_CASCADE = "haarcascade_frontalface_alt2.xml"
PROFILE_CASCADE = "haarcascade_profileface.xml"

# A person box around a face of width/height (w, h): this far left/right of the face (x w),
# above it (x h, for the hair) and below its top (x h, down to the waist or the frame's edge).
BODY_SIDE = 0.9
BODY_ABOVE = 0.35
BODY_BELOW = 4.5


@dataclass(frozen=True)
class Person:
    """One detected person: the person box, the face box (None for a HOG figure), how found."""

    box: BoxT
    face: BoxT | None
    source: str  # "frontal" | "profile" | "hog"
    score: float

    @property
    def center_x(self) -> float:
        return (self.box[0] + self.box[2]) / 2


def area(box: BoxT) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def intersection(a: BoxT, b: BoxT) -> int:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0


def iou(a: BoxT, b: BoxT) -> float:
    inter = intersection(a, b)
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def clip(box: tuple[float, float, float, float], width: int, height: int) -> BoxT:
    x1, y1, x2, y2 = box
    return (
        int(min(max(round(x1), 0), width)),
        int(min(max(round(y1), 0), height)),
        int(min(max(round(x2), 0), width)),
        int(min(max(round(y2), 0), height)),
    )


def nms(candidates: list[tuple[BoxT, float, str]], *, overlap: float = 0.3, contain: float = 0.6):
    """Non-maximum suppression: best score first (then larger, then leftmost); drops a box that
    overlaps a kept one by IoU above ``overlap`` or lies ``contain`` inside it (either way)."""
    ordered = sorted(candidates, key=lambda c: (-c[1], -area(c[0]), c[0]))
    kept: list[tuple[BoxT, float, str]] = []
    for box, score, source in ordered:
        duplicate = False
        for other, _, _ in kept:
            inter = intersection(box, other)
            smaller = min(area(box), area(other)) or 1
            if iou(box, other) > overlap or inter / smaller > contain:
                duplicate = True
                break
        if not duplicate:
            kept.append((box, score, source))
    return kept


def person_from_face(face: BoxT, width: int, height: int) -> BoxT:
    """A person box around a face: shoulders either side, hair above, torso below, clipped."""
    x1, y1, x2, y2 = face
    w, h = x2 - x1, y2 - y1
    return clip(
        (x1 - BODY_SIDE * w, y1 - BODY_ABOVE * h, x2 + BODY_SIDE * w, y1 + BODY_BELOW * h), width, height
    )


class PeopleDetector:
    """Haar faces (frontal, optionally profile) widened to person boxes, plus HOG people.

    ``min_face`` is the smallest face side searched for, in pixels of the array given to
    :meth:`detect`. ``hog_threshold`` is the SVM margin a HOG detection needs (OpenCV's
    default people detector; 1.0 keeps clear figures and drops most textures).
    ``scale_factor`` is the step between the cascades' search scales and ``hog_scale``
    the step between the HOG detector's (larger is faster and coarser). The cascades are
    loaded once per detector; a detector is not meant to be shared by threads.
    """

    def __init__(
        self,
        *,
        min_face: int = 24,
        face_neighbors: int = 5,
        profile: bool = True,
        people: bool = True,
        hog_threshold: float = 1.0,
        scale_factor: float = 1.1,
        hog_scale: float = 1.05,
    ) -> None:
        cv2, np = require_cv2()
        self._cv2, self._np = cv2, np
        self.min_face = int(min_face)
        self.face_neighbors = int(face_neighbors)
        self.profile = profile
        self.people = people
        self.hog_threshold = float(hog_threshold)
        if not scale_factor > 1.0:
            raise ValueError(f"scale_factor must be above 1, got {scale_factor}")
        self.scale_factor = float(scale_factor)
        if not hog_scale > 1.0:
            raise ValueError(f"hog_scale must be above 1, got {hog_scale}")
        self.hog_scale = float(hog_scale)
        self._frontal = self._cascade(FRONTAL_CASCADE)
        self._profile = self._cascade(PROFILE_CASCADE) if profile else None
        self._hog = None
        if people:
            self._hog = cv2.HOGDescriptor()
            self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def _cascade(self, name: str):
        from ..errors import UsageError

        path = self._cv2.data.haarcascades + name
        cascade = self._cv2.CascadeClassifier(path)
        if cascade.empty():
            raise UsageError(
                f"OpenCV's Haar cascade {name} could not be loaded from {path}; "
                "reinstall opencv-python-headless (>=4.9,<5)"
            )
        return cascade

    # -- faces ---------------------------------------------------------------------------
    def _run_cascade(self, cascade, gray) -> list[tuple[BoxT, float]]:
        rects, counts = cascade.detectMultiScale2(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.face_neighbors,
            minSize=(self.min_face, self.min_face),
        )
        out = []
        for (x, y, w, h), n in zip(rects, counts, strict=False):
            out.append(((int(x), int(y), int(x + w), int(y + h)), float(n)))
        return out

    def faces(self, gray: Any) -> list[tuple[BoxT, float, str]]:
        """Face boxes ``(box, score, source)`` on an equalised grayscale array, duplicates removed."""
        found = [(box, score, "frontal") for box, score in self._run_cascade(self._frontal, gray)]
        if self._profile is not None:
            width = gray.shape[1]
            found += [(box, score * 0.8, "profile") for box, score in self._run_cascade(self._profile, gray)]
            flipped = self._np.ascontiguousarray(gray[:, ::-1])
            for (x1, y1, x2, y2), score in self._run_cascade(self._profile, flipped):
                found.append(((width - x2, y1, width - x1, y2), score * 0.8, "profile"))
        return nms(found, overlap=0.3, contain=0.6)

    # -- whole figures -------------------------------------------------------------------
    def figures(self, gray: Any) -> list[tuple[BoxT, float]]:
        """HOG people boxes (margins trimmed) with an SVM weight at least ``hog_threshold``."""
        if self._hog is None:
            return []
        height, width = gray.shape[:2]
        if width < 64 or height < 128:
            return []
        rects, weights = self._hog.detectMultiScale(
            gray, winStride=(8, 8), padding=(8, 8), scale=self.hog_scale
        )
        found = []
        for (x, y, w, h), weight in zip(rects, self._np.ravel(weights) if len(rects) else [], strict=False):
            if float(weight) < self.hog_threshold:
                continue
            # the default detector's 64x128 window has a margin around the figure
            box = clip((x + 0.15 * w, y + 0.06 * h, x + 0.85 * w, y + 0.94 * h), width, height)
            found.append((box, float(weight), "hog"))
        return [(box, score) for box, score, _ in nms(found, overlap=0.3, contain=0.7)]

    # -- everything ------------------------------------------------------------------------
    def detect(self, rgb: Any) -> list[Person]:
        """The people in an RGB ``uint8`` array, left to right."""
        cv2 = self._cv2
        height, width = rgb.shape[:2]
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        equalised = cv2.equalizeHist(gray)
        people = [
            Person(person_from_face(face, width, height), face, source, score)
            for face, score, source in self.faces(equalised)
        ]
        for box, score in self.figures(gray):
            if area(box) == 0:
                continue
            if any(intersection(box, p.box) > 0.3 * area(box) for p in people):
                continue
            people.append(Person(box, None, "hog", score))
        people = [p for p in people if area(p.box) > 0]
        people.sort(key=lambda p: (p.center_x, p.box[1]))
        return people


def background_region(width: int, height: int, people: list[BoxT], *, min_share: float = 0.15) -> BoxT:
    """The largest band of the frame beside, above or below every person (the whole frame when
    there are no people, or when no such band covers ``min_share`` of the frame)."""
    whole: BoxT = (0, 0, width, height)
    if not people:
        return whole
    left = min(b[0] for b in people)
    right = max(b[2] for b in people)
    top = min(b[1] for b in people)
    bottom = max(b[3] for b in people)
    bands: list[BoxT] = [
        (0, 0, left, height),
        (right, 0, width, height),
        (0, 0, width, top),
        (0, bottom, width, height),
    ]
    bands = [b for b in bands if area(b) >= min_share * width * height]
    if not bands:
        return whole
    return max(bands, key=lambda b: (area(b), -b[0], -b[1]))
