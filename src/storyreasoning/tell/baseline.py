"""The baseline storyteller: classical computer vision and templates, no model weights.

:class:`BaselineTeller` looks at each image with OpenCV (Haar faces widened to person
boxes, HOG standing figures; see :mod:`storyreasoning.vision`), re-identifies people
across the frames by the colours of head and torso and a face thumbnail, picks a
background region per frame, and writes an output in the published StoryReasoning
format: a chain-of-thought with real pixel boxes, a Narrative Structure table that maps
the five phases onto the frames by position, and a short templated story whose tags
name the same ids.

It is a BASELINE. It sees people and colours, nothing else: names are ``Person 1``,
``Person 2``…, descriptions are clothing colours, emotions are ``Unknown``, actions
say only what the detector saw (a face towards the camera, a profile, a standing
figure), and places are not recognised. What it does show is the format, the boxes and
identity across frames, with no model to download: a reference point for evaluation
and a teller the studio and the CLI can always run.

The output is a pure function of the images' pixels and the teller's settings
(deterministic); the prompt and the sampling settings are ignored.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StoryReasoningError
from ..format.box import Box
from ..format.cot import (
    Character,
    CoT,
    ImageAnalysis,
    NarrativePhase,
    NarrativeRow,
    SceneObject,
    Setting,
    phase_images,
    render_cot,
)
from ..format.prompts import assistant_target
from ..format.story import GroundedStory, Segment, Span, render_story
from ..vision import require_cv2
from .base import BASELINE_LABEL, Prompt, Sampling, Teller, Usage

# Detection runs on a copy whose longer side is at most this many pixels (boxes are
# mapped back to the original image): the cascades' cost grows with the pixel count.
DEFAULT_MAX_SIDE = 400
DEFAULT_MIN_FACE = 24  # pixels of the working copy: 6 % of its longer side
# steps between search scales: the face cascades' coarser than OpenCV's usual 1.1 (about
# twice as fast); the HOG detector's at its usual 1.05 (coarser steps miss figures)
DEFAULT_SCALE_FACTOR = 1.15
DEFAULT_HOG_SCALE = 1.05
# Two background regions whose colour histograms overlap this much (Bhattacharyya
# coefficient) are called the same background and share a bg id.
DEFAULT_BACKGROUND_THRESHOLD = 0.8

_NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


@dataclass
class SeenPerson:
    """One person in one frame, boxes in original-image pixels."""

    identity: int  # 0-based, in order of first appearance in the story
    box: Box
    face: Box | None
    source: str  # "frontal" | "profile" | "hog"
    colour: str | None  # of the torso in this frame: "dark blue", "red and white", "multicoloured"
    first_seen: int  # image number where this identity first appeared
    in_previous: bool  # also in the image just before
    similarity: float  # to the identity it was matched with (0 for a new identity)

    @property
    def char_id(self) -> str:
        return f"char{self.identity + 1}"

    @property
    def name(self) -> str:
        return f"Person {self.identity + 1}"


@dataclass
class SeenObject:
    """One object in one frame (the dataset builder's detector finds them; the baseline does not)."""

    entity_id: str  # "obj3"
    label: str  # "cup"
    box: Box
    score: float
    first_seen: int


@dataclass
class SeenFrame:
    """What the baseline saw in one image."""

    number: int  # 1-based
    width: int
    height: int
    people: list[SeenPerson] = field(default_factory=list)
    background: Box = field(default_factory=lambda: Box(0, 0, 0, 0))
    background_id: str = "bg1"
    background_colours: str = ""  # "mostly grey and black"
    background_first_seen: int = 1
    brightness: float = 0.0  # mean luma, 0..1
    objects: list[SeenObject] = field(
        default_factory=list
    )  # from a detector model (the builder's); none here
    # the dataset builder's setting (none here): background regions with bg ids, which replace the
    # single band above when given, and named places with lm ids
    backgrounds: list[SeenObject] = field(default_factory=list)
    landmarks: list[SeenObject] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what perception could not do for this frame, in words

    @property
    def lighting(self) -> str:
        b = self.brightness
        return "Dark" if b < 0.2 else "Dim" if b < 0.4 else "Moderate" if b < 0.65 else "Bright"


def working_copy(pil, max_side: int = DEFAULT_MAX_SIDE) -> Any:
    """The RGB array the baseline looks at: the image itself, or a copy whose longer side is ``max_side``."""
    from ..format.images import rgb_image

    cv2, np = require_cv2()
    rgb = np.asarray(rgb_image(pil), dtype=np.uint8)
    height, width = rgb.shape[:2]
    scale = max_side / max(width, height)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb)


def brightness(pil, max_side: int = DEFAULT_MAX_SIDE) -> float:
    """The mean luma (0..1) of an image's working copy: what :attr:`SeenFrame.lighting` is named from.

    The baseline measures it while it looks for people; a perceiver that does not run the
    baseline (the builder's model perceiver) gets the same value from here, cheaply.
    """
    cv2, _ = require_cv2()
    return float(cv2.cvtColor(working_copy(pil, max_side), cv2.COLOR_RGB2GRAY).mean()) / 255.0


def _label(image: Any, number: int) -> str:
    if isinstance(image, (str, Path)):
        return str(image)
    path = getattr(image, "path", None)
    if isinstance(path, (str, Path)) and path:
        return str(path)
    return f"image {number} ({type(image).__name__})"


def open_rgb(image: Any, number: int):
    """A decoded RGB PIL image from a path, bytes, a PIL image or a data.Frame; errors name the image
    (its file, or its position in the story)."""
    from ..format.images import open_image

    label = _label(image, number)
    if hasattr(image, "bytes") and callable(image.bytes) and hasattr(image, "open"):  # a data.Frame
        data = getattr(image, "data", None)
        image = data if data is not None else image.path
    if isinstance(image, (bytearray, memoryview)):
        image = bytes(image)
    if not isinstance(image, (str, Path, bytes)) and not hasattr(image, "convert"):
        raise StoryReasoningError(
            f"image {number} is of type {type(image).__name__}; give a path, bytes or a PIL image"
        )
    try:
        return open_image(image, name=label)
    except StoryReasoningError:
        raise
    except Exception as exc:  # anything else a broken file can make PIL raise
        raise StoryReasoningError(
            f"{label} is not a readable image ({type(exc).__name__}: {exc}); re-export it as PNG or JPEG"
        ) from exc


def _article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def _top(colour: str | None) -> str:
    """``"a dark-blue top"``, ``"a red and white top"``, ``"a multicoloured top"``."""
    if not colour:
        return "clothes of no clear colour"
    words = colour.split(" and ")
    words[0] = words[0].replace(" ", "-")
    return _article(" and ".join(words) + " top")


def _colours(phrase: str) -> str:
    """``colour_phrase``'s words after "is": ``mostly blue``, ``in mixed colours (red, white, blue)``."""
    return "in " + phrase if phrase.startswith("mixed") else phrase


def introduced_looks(
    frames: Sequence[SeenFrame], looks: dict[str, str | None] | None = None
) -> dict[str, str | None]:
    """``char id -> clothing colour`` as each character looked in the frame that introduced it.

    The colour estimate of one person changes from frame to frame (light, pose, crop: a
    multicoloured top can read as black and grey in a darker frame). The templates
    describe a character with the words of its introduction in every frame, so the text
    never calls "the same person" someone in other clothes; the per-frame estimate stays
    in :attr:`SeenPerson.colour`. ``looks`` is extended in place (frames in story order)
    and returned.
    """
    looks = {} if looks is None else looks
    for frame in frames:
        for person in frame.people:
            looks.setdefault(person.char_id, person.colour)
    return looks


def _upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def _joined(parts: list[Any]) -> list[Any]:
    """``[a]``, ``[a, " and ", b]``, ``[a, ", ", b, " and ", c]``."""
    out: list[Any] = []
    for k, part in enumerate(parts):
        if k:
            out.append(" and " if k == len(parts) - 1 else ", ")
        out.append(part)
    return out


def _setting_rows(frame: SeenFrame, who: str) -> list[SceneObject]:
    """A frame's Objects rows for its setting: the backgrounds (the builder's regions, else the band) and landmarks."""
    n = frame.number
    around = f"Around {who}" if who else "None"
    rows = []
    for bg in frame.backgrounds:
        again = "Backdrop" if bg.first_seen == n else f"Same backdrop as image {bg.first_seen}"
        rows.append(SceneObject(bg.entity_id, _upper(bg.label), "Background", around, again, bg.box))
    if not frame.backgrounds and frame.background.is_proper:
        rows.append(
            SceneObject(
                frame.background_id,
                f"Background, {_colours(frame.background_colours)}",
                "Background",
                around,
                "Backdrop"
                if frame.background_first_seen == n
                else f"Same backdrop as image {frame.background_first_seen}",
                frame.background,
            )
        )
    for lm in frame.landmarks:
        again = "Place of the scene" if lm.first_seen == n else f"Seen again (first in image {lm.first_seen})"
        rows.append(SceneObject(lm.entity_id, lm.label, "Landmark", "In view", again, lm.box))
    return rows


def _place(frame: SeenFrame) -> str:
    """The Location row's description: the landmarks seen, else "not recognised", and the background."""
    if frame.landmarks:
        kind = "Landmark" if len(frame.landmarks) == 1 else "Landmarks"
        said = f"{kind} in view: {', '.join(lm.label for lm in frame.landmarks)}"
    else:
        said = "Place not recognised by the baseline"
    if frame.backgrounds:
        return f"{said}; the background: {', '.join(bg.label for bg in frame.backgrounds)}"
    if frame.background.is_proper:
        return f"{said}; the background is {_colours(frame.background_colours)}"
    return said


def _setting_words(frame: SeenFrame, people: bool) -> list[str | Span]:
    """The story's words on a frame's landmarks, background and light."""
    n = frame.number
    light = frame.lighting.lower()
    parts: list[str | Span] = []
    if frame.landmarks:
        names = [Span("gdl", (lm.entity_id,), lm.label) for lm in frame.landmarks]
        one = len(names) == 1
        parts += ["The landmark " if one else "The landmarks ", *_joined(names), " is in view. " if one else " are in view. "]  # fmt: skip
    if frame.backgrounds:
        spans = [
            Span("gdl", (bg.entity_id,), ("the " if bg.first_seen == n else "the same ") + bg.label)
            for bg in frame.backgrounds
        ]
        spans[0] = Span("gdl", spans[0].ids, _upper(spans[0].text))
        one = len(spans) == 1
        verb = (
            ("is" if one else "are") + " in the background"
            if people
            else ("fills" if one else "fill") + " the scene"
        )
        parts += [*_joined(spans), f" {verb}, and the light is {light}."]
    elif frame.background.is_proper:
        bg = frame.background_id
        if frame.background_first_seen == n:
            parts += [
                Span("gdl", (bg,), "The background" if people else "The scene"),
                f" is {_colours(frame.background_colours)}, and the light is {light}.",
            ]
        else:
            parts += [
                Span("gdl", (bg,), "The same background as before"),
                f" is there, {_colours(frame.background_colours)}, and the light is {light}.",
            ]
    else:
        parts.append(f"The light is {light}.")
    return parts


def _count(n: int) -> str:
    return _NUMBERS[n] if n < len(_NUMBERS) else str(n)


class BaselineTeller(Teller):
    """A storyteller with no model weights: OpenCV people detection, colour re-identification
    and templates, in the published StoryReasoning format. A BASELINE (see the module doc).

    ``max_side`` is the longer side of the working copy detection runs on; ``min_face``
    the smallest face side searched for on it; ``scale_factor`` and ``hog_scale`` the
    steps between the face cascades' and the HOG detector's search scales. ``profile`` and ``people`` turn on the profile-face cascade
    and the HOG figure detector. ``reid_threshold`` is the
    similarity a person needs to be given an earlier person's id;
    ``background_threshold`` the histogram overlap for two frames' backgrounds to share
    a ``bg`` id. Raises :class:`~storyreasoning.errors.UsageError` when OpenCV is missing.
    """

    backend = "baseline"
    model = "baseline"

    def __init__(
        self,
        *,
        max_side: int = DEFAULT_MAX_SIDE,
        min_face: int = DEFAULT_MIN_FACE,
        profile: bool = True,
        people: bool = True,
        hog_threshold: float = 1.0,
        scale_factor: float = DEFAULT_SCALE_FACTOR,
        hog_scale: float = DEFAULT_HOG_SCALE,
        reid_threshold: float | None = None,
        background_threshold: float = DEFAULT_BACKGROUND_THRESHOLD,
    ) -> None:
        cv2, np = require_cv2()
        from ..vision.detect import PeopleDetector
        from ..vision.reid import DEFAULT_THRESHOLD

        if max_side < 64:
            raise StoryReasoningError(f"max_side must be at least 64 pixels, got {max_side}")
        self._cv2, self._np = cv2, np
        self.max_side = int(max_side)
        self.reid_threshold = DEFAULT_THRESHOLD if reid_threshold is None else float(reid_threshold)
        self.background_threshold = float(background_threshold)
        self.detector = PeopleDetector(
            min_face=min_face,
            profile=profile,
            people=people,
            hog_threshold=hog_threshold,
            scale_factor=scale_factor,
            hog_scale=hog_scale,
        )
        self._lock = threading.Lock()  # the detector is not meant to be shared by threads

    def describe(self) -> dict:
        d = self.detector
        return {
            "backend": self.backend,
            "model": self.model,
            "baseline": True,
            "label": BASELINE_LABEL,
            "detector": {
                "faces": "OpenCV Haar cascades (frontal" + (" and profile)" if d.profile else ")"),
                "figures": "OpenCV HOG people detector" if d.people else None,
                "max_side": self.max_side,
                "min_face": d.min_face,
                "scale_factor": d.scale_factor,
                "hog_scale": d.hog_scale,
                "face_neighbors": d.face_neighbors,
                "hog_threshold": d.hog_threshold,
            },
            "reid": {
                "features": "HSV histograms of head and torso, face thumbnail",
                "threshold": self.reid_threshold,
            },
            "background_threshold": self.background_threshold,
            "prompt_ignored": True,
            "sampling_ignored": True,
            "versions": {"opencv": self._cv2.__version__, "numpy": self._np.__version__},
        }

    # -- seeing ----------------------------------------------------------------------------
    def _working(self, pil) -> Any:
        """The RGB array detection runs on: the image itself, or a copy whose longer side is ``max_side``."""
        return working_copy(pil, self.max_side)

    @staticmethod
    def _to_original(box, working: tuple[int, int], original: tuple[int, int]) -> Box:
        """A working-copy box in original pixels (each axis by its own exact ratio, so edges map to edges)."""
        (ww, wh), (width, height) = working, original
        x1, x2 = (min(max(round(v * width / ww), 0), width) for v in (box[0], box[2]))
        y1, y2 = (min(max(round(v * height / wh), 0), height) for v in (box[1], box[3]))
        return Box(x1, y1, x2, y2)

    def see(self, images: Sequence[Any]) -> Iterator[SeenFrame]:
        """What the baseline sees in each image, frame by frame (identities kept across frames).

        Every image is decoded before the first is analysed, so an unreadable image raises
        :class:`~storyreasoning.errors.StoryReasoningError` (naming it) before anything is yielded.
        """
        from ..vision.detect import background_region
        from ..vision.reid import Gallery, appearance, colour_name, colour_phrase, hsv_histogram, regions

        cv2, np = self._cv2, self._np
        if not images:
            raise StoryReasoningError("a story needs at least one image")
        gallery = Gallery(threshold=self.reid_threshold)
        first_seen: dict[int, int] = {}
        previous: set[int] = set()
        backgrounds: list[tuple[str, Any, int]] = []  # (bg id, histogram, first image)
        # decode every image first: an unreadable one fails before any output is written
        pils = [open_rgb(image, number) for number, image in enumerate(images, start=1)]
        for number, pil in enumerate(pils, start=1):
            width, height = pil.size
            rgb = self._working(pil)
            wh, ww = rgb.shape[:2]
            sizes = (ww, wh), (width, height)
            hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
            gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            with self._lock:
                people = self.detector.detect(rgb)
            looks = [appearance(rgb, hsv, gray, p) for p in people]
            assigned = gallery.assign(number, looks)
            frame = SeenFrame(number, width, height, brightness=float(gray.mean()) / 255.0)
            for person, (identity, is_new, sim) in zip(people, assigned, strict=True):
                first_seen.setdefault(identity, number)
                _, torso = regions(person, ww, wh)
                colour = colour_name(hsv[torso[1] : torso[3], torso[0] : torso[2]]) if torso else None
                frame.people.append(
                    SeenPerson(
                        identity=identity,
                        box=self._to_original(person.box, *sizes),
                        face=self._to_original(person.face, *sizes) if person.face else None,
                        source=person.source,
                        colour=colour,
                        first_seen=first_seen[identity],
                        in_previous=identity in previous,
                        similarity=0.0 if is_new else sim,
                    )
                )
            previous = {p.identity for p in frame.people}

            # the background: a band beside, above or below everyone (or the whole frame);
            # its colours from the pixels no person covers
            region = background_region(ww, wh, [p.box for p in people])
            mask = np.zeros((wh, ww), dtype=bool)
            mask[region[1] : region[3], region[0] : region[2]] = True
            for p in people:
                mask[p.box[1] : p.box[3], p.box[0] : p.box[2]] = False
            if mask.sum() < 0.05 * ww * wh:  # people fill the frame: its border, faces aside
                ring = max(1, round(0.1 * min(ww, wh)))
                mask[:] = True
                mask[ring:-ring, ring:-ring] = False
                for p in people:
                    if p.face is not None:
                        mask[p.face[1] : p.face[3], p.face[0] : p.face[2]] = False
                if not mask.any():
                    mask[:] = True
            pixels = hsv[mask].reshape(-1, 1, 3)
            hist = hsv_histogram(pixels)
            frame.background = self._to_original(region, *sizes)
            frame.background_colours = colour_phrase(pixels)
            match = max(
                ((float(np.sum(np.sqrt(hist * h))), bg_id, first) for bg_id, h, first in backgrounds),
                default=None,
                key=lambda t: t[0],
            )
            if match is not None and match[0] >= self.background_threshold:
                frame.background_id, frame.background_first_seen = match[1], match[2]
            else:
                frame.background_id = f"bg{len(backgrounds) + 1}"
                frame.background_first_seen = number
                backgrounds.append((frame.background_id, hist, number))
            yield frame

    # -- writing ---------------------------------------------------------------------------
    @staticmethod
    def analysis(frame: SeenFrame, looks: dict[str, str | None] | None = None) -> ImageAnalysis:
        """The CoT section of one frame; ``looks`` fixes each character's clothing colour (see :func:`introduced_looks`)."""
        n = frame.number
        characters = []
        for p in frame.people:
            colour = looks.get(p.char_id, p.colour) if looks is not None else p.colour
            description = f"Person in {_top(colour)}" if colour else "Person (clothing colour unclear)"
            if p.source == "hog":
                description += ", whole figure"
            action = {
                "frontal": "Facing the camera",
                "profile": "Seen in profile",
                "hog": "Standing in view",
            }.get(p.source, "Present in the frame")
            # as the story says it (segment): a person also in the frame just before is still in view, not returning
            if p.first_seen == n:
                function = f"First seen in image {n}"
            elif p.in_previous:
                function = f"Still in view (first seen in image {p.first_seen})"
            else:
                function = f"Returning (first seen in image {p.first_seen})"
            characters.append(Character(p.char_id, p.name, description, "Unknown", action, function, p.box))
        who = ", ".join(p.name for p in frame.people)
        setting = _setting_rows(frame, who)
        settings = [
            Setting(
                "Location",
                _place(frame),
                "Unknown",
                "Unknown",
                f"Backdrop of image {n}",
            ),
            Setting(
                "Lighting",
                f"{frame.lighting} (mean brightness {round(100 * frame.brightness)} %)",
                "Unknown",
                "Unknown",
                f"Visual tone of image {n}",
            ),
        ]
        return ImageAnalysis(n, characters, setting, settings)

    @staticmethod
    def narrative(frames: Sequence[SeenFrame]) -> list[NarrativeRow]:
        """The five phases mapped onto the frames by position; events are what was detected. With fewer
        than five frames neighbouring phases share a frame: its events are told by the first phase that has
        it, and a later one says it adds none (no event is repeated word for word)."""
        rows = []
        told: dict[int, str] = {}  # frame -> the phase that told its events
        for phase, numbers in zip(NarrativePhase, phase_images(len(frames)), strict=True):
            events = []
            fresh = [k for k in numbers if k not in told]
            if not fresh:
                said = " and ".join(dict.fromkeys(told[k] for k in numbers))
                shown = ", ".join(f"image {k}" for k in numbers)
                events.append(f"no new event: the {phase.value} stays on {shown}, told in the {said}")
            for k in fresh:
                told[k] = phase.value
                frame = frames[k - 1]
                if not frame.people:
                    events.append(f"image {k}: no person detected")
                for p in frame.people:
                    verb = (
                        "appears" if p.first_seen == k else "is still in view" if p.in_previous else "returns"
                    )
                    events.append(f"image {k}: {p.name} {verb}")
            span = f"image {numbers[0]}" if len(numbers) == 1 else f"images {numbers[0]}-{numbers[-1]}"
            rows.append(
                NarrativeRow(
                    phase.value,
                    f"{phase.value} assigned to {span} by position in the sequence (baseline)",
                    "; ".join(events),
                    ", ".join(str(k) for k in numbers),
                )
            )
        return rows

    @staticmethod
    def segment(frame: SeenFrame, looks: dict[str, str | None] | None = None) -> Segment:
        """The story text of one frame: who is there, what the detector saw them do, the background;
        ``looks`` fixes each character's clothing colour (see :func:`introduced_looks`)."""
        parts: list[str | Span] = []
        n = frame.number
        people = frame.people
        if len(people) > 1:
            ids = tuple(p.char_id for p in people)
            parts += [Span("gdo", ids, f"{_count(len(people)).capitalize()} people"), " are in view. "]
        for p in people:
            look = _top(looks.get(p.char_id, p.colour) if looks is not None else p.colour)
            if p.first_seen == n:
                parts += [
                    Span("gdo", (p.char_id,), p.name),
                    f", in {look}, ",
                    Span("gda", (p.char_id,), "appears"),
                ]
            else:
                verb = "is still in view" if p.in_previous else "returns"
                parts += [
                    Span("gdo", (p.char_id,), f"The same person in {look}"),
                    ", ",
                    Span("gdo", (p.char_id,), p.name),
                    ", ",
                    Span("gda", (p.char_id,), verb),
                ]
            sight = {
                "frontal": "facing the camera",
                "profile": "seen in profile",
                "hog": "standing",
            }.get(p.source)
            if sight:
                parts += [", ", Span("gda", (p.char_id,), sight)]
            parts.append(". ")
        if not people:
            parts.append("No one is in view. ")
        parts += _setting_words(frame, bool(people))
        return Segment(n, parts)

    def compose(self, images: Sequence[Any]) -> tuple[CoT, GroundedStory]:
        """The CoT and the story for the images (what :meth:`stream` renders)."""
        frames = list(self.see(images))
        looks = introduced_looks(frames)
        cot = CoT([self.analysis(f, looks) for f in frames], self.narrative(frames))
        return cot, GroundedStory([self.segment(f, looks) for f in frames])

    # -- the Teller interface ----------------------------------------------------------------
    def stream(
        self, images: Sequence[Any], *, prompt: Prompt = Prompt(), sampling: Sampling = Sampling()
    ) -> Iterator[str]:
        """Yield the output: ``<think>`` and one chunk per image section as each image is analysed,
        then the Narrative Structure, ``</think>`` and one chunk per story segment.

        ``prompt`` is ignored (the baseline writes the same format whatever it is asked);
        ``sampling`` is ignored too and only recorded by :meth:`tell` (the output is
        deterministic). :attr:`last_usage` gets the time and ``finish_reason="stop"``.
        """
        start = time.perf_counter()
        self.last_usage = Usage(finish_reason=None)
        frames: list[SeenFrame] = []
        looks: dict[str, str | None] = {}
        analyses: list[ImageAnalysis] = []
        sent = ""
        first: float | None = None
        for frame in self.see(images):
            frames.append(frame)
            introduced_looks([frame], looks)  # a character keeps the colour of the frame that introduced it
            analyses.append(self.analysis(frame, looks))
            text = assistant_target(render_cot(CoT(analyses)), "")
            # the CoT so far, up to the end of its last table (the rest follows with the next part)
            prefix = text[: text.rindex("</think>")].rstrip()
            if prefix.startswith(sent) and len(prefix) > len(sent):
                if first is None:
                    first = time.perf_counter() - start
                yield prefix[len(sent) :]
                sent = prefix
        cot = CoT(analyses, self.narrative(frames))
        segments = [self.segment(f, looks) for f in frames]
        full = assistant_target(render_cot(cot), render_story(GroundedStory(segments)))
        if not full.startswith(sent):  # pragma: no cover - the renderers write prefixes in order
            raise StoryReasoningError("internal error: the baseline's CoT chunks do not match its output")
        # the narrative and </think> in one chunk, then one chunk per story segment
        for chunk in re.split(r"(?=<gdi image)", full[len(sent) :]):
            if chunk:
                if first is None:
                    first = time.perf_counter() - start
                yield chunk
        self.last_usage = Usage(
            prompt_tokens=None,
            completion_tokens=None,
            seconds=time.perf_counter() - start,
            first_token_seconds=first,
            finish_reason="stop",
        )
