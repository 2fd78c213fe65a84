"""Re-identification by appearance, and colour names: numpy and OpenCV, no model weights.

An :class:`Appearance` is what a person looks like in one frame: HSV colour histograms of
the head and of the torso, and a small equalised grayscale thumbnail of the face.
:func:`similarity` compares two of them (Bhattacharyya coefficients of the histograms,
normalised correlation of the thumbnails, mirrored too). A :class:`Gallery` keeps the
identities seen so far and assigns each frame's people to them greedily, best match
first, never giving two people of one frame the same identity.

This is a colour-and-layout baseline: two people dressed alike may merge, and one person
who changes clothes or lighting may split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import require_cv2
from .detect import BoxT, Person, clip

# Histogram layout: 16 hue x 4 saturation bins for coloured pixels, 8 value bins for greys.
HUE_BINS = 16
SAT_BINS = 4
GREY_BINS = 8
MIN_SAT = 40  # OpenCV HSV: S and V in 0..255, H in 0..179
MIN_VAL = 40
THUMB = 24

WEIGHTS = {"head": 0.25, "torso": 0.45, "thumb": 0.30}
DEFAULT_THRESHOLD = 0.62


@dataclass
class Appearance:
    head: Any | None  # normalised histogram (numpy, sums to 1) or None
    torso: Any | None
    thumb: Any | None  # zero-mean unit-norm face thumbnail, flattened, or None
    thumb_mirror: Any | None = None


def regions(person: Person, width: int, height: int) -> tuple[BoxT | None, BoxT | None]:
    """``(head, torso)`` boxes of a person (either None when it falls outside the frame)."""
    if person.face is not None:
        x1, y1, x2, y2 = person.face
        w, h = x2 - x1, y2 - y1
        head = clip((x1 + 0.1 * w, y1 + 0.1 * h, x2 - 0.1 * w, y2 - 0.1 * h), width, height)
        torso = clip((x1 - 0.4 * w, y1 + 1.4 * h, x2 + 0.4 * w, y1 + 3.0 * h), width, height)
    else:
        x1, y1, x2, y2 = person.box
        w, h = x2 - x1, y2 - y1
        head = clip((x1 + 0.3 * w, y1, x2 - 0.3 * w, y1 + 0.15 * h), width, height)
        torso = clip((x1 + 0.15 * w, y1 + 0.2 * h, x2 - 0.15 * w, y1 + 0.55 * h), width, height)

    def usable(box: BoxT) -> BoxT | None:
        return box if (box[2] - box[0]) >= 4 and (box[3] - box[1]) >= 4 else None

    return usable(head), usable(torso)


def hsv_histogram(hsv: Any) -> Any:
    """A 72-bin colour histogram of an HSV region, summing to 1."""
    _, np = require_cv2()
    h = hsv[..., 0].astype(np.int32).ravel()
    s = hsv[..., 1].astype(np.int32).ravel()
    v = hsv[..., 2].astype(np.int32).ravel()
    coloured = (s >= MIN_SAT) & (v >= MIN_VAL)
    bins = np.where(
        coloured,
        (np.minimum(h * HUE_BINS // 180, HUE_BINS - 1)) * SAT_BINS
        + np.minimum(s * SAT_BINS // 256, SAT_BINS - 1),
        HUE_BINS * SAT_BINS + np.minimum(v * GREY_BINS // 256, GREY_BINS - 1),
    )
    hist = np.bincount(bins, minlength=HUE_BINS * SAT_BINS + GREY_BINS).astype(np.float64)
    total = hist.sum()
    return hist / total if total > 0 else hist


def appearance(rgb: Any, hsv: Any, gray: Any, person: Person) -> Appearance:
    """The appearance of ``person`` in a frame given as RGB, HSV and grayscale arrays."""
    cv2, np = require_cv2()
    height, width = rgb.shape[:2]
    head_box, torso_box = regions(person, width, height)

    def hist(box: BoxT | None):
        if box is None:
            return None
        x1, y1, x2, y2 = box
        return hsv_histogram(hsv[y1:y2, x1:x2])

    thumb = mirror = None
    if person.face is not None:
        x1, y1, x2, y2 = person.face
        crop = gray[y1:y2, x1:x2]
        if crop.size and min(crop.shape) >= 8:
            small = cv2.equalizeHist(cv2.resize(crop, (THUMB, THUMB), interpolation=cv2.INTER_AREA))
            vec = small.astype(np.float64)
            thumb = _unit(vec.ravel() - vec.mean(), np)
            mirror = _unit(vec[:, ::-1].ravel() - vec.mean(), np)
    return Appearance(hist(head_box), hist(torso_box), thumb, mirror)


def _unit(vec: Any, np: Any) -> Any | None:
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else None


def similarity(a: Appearance, b: Appearance) -> float:
    """How alike two appearances are, in [0, 1] (a weighted mean over the parts both have)."""
    _, np = require_cv2()
    parts: list[tuple[float, float]] = []
    for name in ("head", "torso"):
        pa, pb = getattr(a, name), getattr(b, name)
        if pa is not None and pb is not None:
            parts.append((WEIGHTS[name], float(np.sum(np.sqrt(pa * pb)))))
    if a.thumb is not None and b.thumb is not None:
        ncc = max(
            float(a.thumb @ b.thumb), float(a.thumb @ b.thumb_mirror) if b.thumb_mirror is not None else -1
        )
        parts.append((WEIGHTS["thumb"], max(0.0, ncc)))
    if not parts:
        return 0.0
    total = sum(w for w, _ in parts)
    return sum(w * s for w, s in parts) / total


@dataclass
class Identity:
    index: int  # 0-based, in order of first appearance
    exemplars: list[Appearance] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)

    def score(self, other: Appearance) -> float:
        return max(similarity(e, other) for e in self.exemplars)


class Gallery:
    """Identities across the frames of one story, assigned greedily by appearance."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, max_exemplars: int = 8) -> None:
        self.threshold = threshold
        self.max_exemplars = max_exemplars
        self.identities: list[Identity] = []

    def assign(self, frame: int, people: list[Appearance]) -> list[tuple[int, bool, float]]:
        """For each appearance, ``(identity index, is_new, similarity)``; distinct within the frame.

        Pairs are taken best first (ties: earlier identity, then earlier person); a pair
        below ``threshold`` never matches, so that person starts a new identity.
        """
        pairs = sorted(
            (
                (-ident.score(app), ident.index, i)
                for i, app in enumerate(people)
                for ident in self.identities
            ),
        )
        result: dict[int, tuple[int, bool, float]] = {}
        used: set[int] = set()
        for neg, ident_index, i in pairs:
            if -neg < self.threshold:
                break
            if i in result or ident_index in used:
                continue
            result[i] = (ident_index, False, -neg)
            used.add(ident_index)
        for i, app in enumerate(people):
            if i in result:
                ident = self.identities[result[i][0]]
                if len(ident.exemplars) < self.max_exemplars:
                    ident.exemplars.append(app)
                ident.frames.append(frame)
            else:
                ident = Identity(len(self.identities), [app], [frame])
                self.identities.append(ident)
                result[i] = (ident.index, True, 0.0)
        return [result[i] for i in range(len(people))]


# -- colour names ---------------------------------------------------------------------------

_HUES = (  # upper bound of the hue in degrees, name
    (15, "red"),
    (40, "orange"),
    (70, "yellow"),
    (160, "green"),
    (195, "teal"),
    (255, "blue"),
    (290, "purple"),
    (345, "pink"),
    (360, "red"),
)


# every colour name, by code; pixels are labelled with codes (fast) and counted with bincount
_COLOURS = (
    "red",
    "orange",
    "yellow",
    "green",
    "teal",
    "blue",
    "purple",
    "pink",
    "brown",
    "black",
    "white",
    "grey",
)
_CODE = {name: i for i, name in enumerate(_COLOURS)}
_HUE_CODES = tuple(_CODE[name] for _, name in _HUES)
_SHADED = {"red", "orange", "yellow", "green", "teal", "blue", "purple", "pink"}


def _colour_labels(hsv: Any) -> tuple[Any, Any, Any]:
    """A colour code (index into ``_COLOURS``) per pixel of an HSV region, with the pixels'
    S and V (flat arrays)."""
    _, np = require_cv2()
    h = hsv[..., 0].astype(np.int32).ravel() * 2
    s = hsv[..., 1].astype(np.int32).ravel()
    v = hsv[..., 2].astype(np.int32).ravel()
    chromatic = (s >= 50) & (v >= 50)
    bounds = np.array([b for b, _ in _HUES])
    hue_index = np.minimum(np.searchsorted(bounds, h, side="right"), len(_HUES) - 1)
    codes = np.array(_HUE_CODES, dtype=np.int32)[hue_index]
    codes[chromatic & (codes == _CODE["orange"]) & (v < 140)] = _CODE["brown"]
    codes[~chromatic] = _CODE["grey"]
    codes[~chromatic & (v < 50)] = _CODE["black"]
    codes[~chromatic & (v >= 50) & (s < 50) & (v >= 190)] = _CODE["white"]
    return codes, s, v


def _ranked(codes: Any) -> list[tuple[str, int]]:
    """``(name, pixel count)`` of every colour present, most pixels first (ties by name)."""
    _, np = require_cv2()
    counts = np.bincount(codes, minlength=len(_COLOURS))
    present = [(_COLOURS[i], int(n)) for i, n in enumerate(counts.tolist()) if n > 0]
    return sorted(present, key=lambda t: (-t[1], t[0]))


def colour_shares(hsv: Any) -> list[tuple[str, float]]:
    """Colour names of an HSV region with the share of pixels each covers, largest first."""
    codes, _, _ = _colour_labels(hsv)
    if codes.size == 0:
        return []
    return [(name, count / codes.size) for name, count in _ranked(codes)]


def colour_name(hsv: Any) -> str | None:
    """A short colour name for clothing or a surface: ``"dark blue"``, ``"red and white"``,
    ``"multicoloured"``; None for an empty region.

    The main colour gets ``dark``/``light`` when its pixels' median brightness (or, for
    light, low saturation) says so; a second colour is named when the two cover 60 % of
    the region and the first alone does not dominate.
    """
    _, np = require_cv2()
    codes, s, v = _colour_labels(hsv)
    if codes.size == 0:
        return None
    (first, n1), *rest = _ranked(codes)
    p1 = n1 / codes.size
    p2 = rest[0][1] / codes.size if rest else 0.0
    main = first
    if first in _SHADED:
        mask = codes == _CODE[first]
        value, sat = float(np.median(v[mask])), float(np.median(s[mask]))
        if value < 110:
            main = f"dark {first}"
        elif value > 200 and sat < 110:
            main = f"light {first}"
    if p1 >= 0.5 and p2 < 0.25:
        return main
    if rest and p1 + p2 >= 0.6:
        return f"{main} and {rest[0][0]}"
    return "multicoloured"


def colour_phrase(hsv: Any) -> str:
    """``"mostly orange"``, ``"mostly blue and white"`` or ``"mixed colours (red, white, blue)"``."""
    shares = colour_shares(hsv)
    if not shares:
        return "of no clear colour"
    (first, p1), *rest = shares
    if p1 >= 0.5 and (not rest or rest[0][1] < 0.25):
        return f"mostly {first}"
    if rest and p1 + rest[0][1] >= 0.6:
        return f"mostly {first} and {rest[0][0]}"
    return "mixed colours (" + ", ".join(name for name, _ in shares[:3]) + ")"
