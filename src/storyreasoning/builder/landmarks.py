"""Landmarks: named, recognisable places (the Eiffel Tower, Times Square) found by a vision language model.

:class:`LandmarkFinder` shows each frame to a model behind an OpenAI-compatible server
(vLLM, ``transformers serve``, any other) through the storytellers' client,
:class:`~storyreasoning.tell.openai.OpenAITeller`, so its retries, timeouts and one-line
errors hold here too (they name ``--landmarks-endpoint`` and ``--landmarks-model``). The
model (by default the first one the server lists) is asked, in our own words
(:data:`SYSTEM`), for NAMED places only, as JSON::

    {"landmarks": [{"name": "Eiffel Tower", "box": [x1, y1, x2, y2]}]}

with an empty list when it is unsure. Requests are greedy (temperature 0, seed 0).

**Coordinates.** Boxes are asked for on a 0-1000 grid over the image (x from the left
edge, y from the top), the convention of Qwen2-VL, Gemini and InternVL grounding, and
converted to the frame's pixels (``round(v * width / 1000)``). A grid does not depend on
how the server resizes the image before the model sees it (vLLM's pixel budget), which
pixel coordinates would.

**Reading the answer** (:func:`parse_landmarks`), in one pass over the text: the
reasoning before ``</think>`` is set aside; the first JSON object that decodes, trying at
most :data:`MAX_STARTS` opening braces, is the answer (code fences and words around it
do not matter). An answer with no such object, or no ``landmarks`` list, gives no
landmarks for that frame and a note in the story's ``meta.json`` (never a failed story).
Then each entry:

* its box (``box``, also ``bbox``: four numbers, or ``x1``/``y1``/``x2``/``y2``) is put in
  corner order and clamped to the image; one less than 2 pixels wide or high is dropped;
* its name is refused when it is generic (:func:`is_generic`): every word of it begins with
  a lower-case letter (a proper name has a capital, a digit or a script without case), or
  every word is a kind of place
  or a plain description (:data:`GENERIC_WORDS`: "building", "old town", "city street").
  The price of the rule: a name made only of such words, such as Tower Bridge, is refused
  too;
* the same landmark twice in one frame counts once; at most ``max_landmarks`` per frame.

Refused and dropped entries are noted in the story's ``meta.json``. A server that is
down or failing ends the story (and, three stories in a row, the build) like the chat
writer's server does.

**At once** (:class:`LandmarkPerceiver`): the frames of a story are asked about
concurrently, at most ``concurrency`` requests in flight (``--landmarks-concurrency``,
4), and while the other perceivers look at the same frames. The answers are read in frame
order, so the ids, the notes and a failure (that of the first frame whose request failed)
are those of asking frame by frame; a failure cancels the requests not yet sent.

**Ids** (:func:`landmark_ids`): one ``lm`` id per landmark across the story, keyed by its
normalised name (:func:`landmark_key`: case, a leading "the", punctuation and spacing
ignored), numbered in order of first appearance; every frame names it as it was first
written.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..format.box import Box

GRID = 1000  # boxes are asked for on a 0..GRID grid
DEFAULT_MAX_LANDMARKS = 5
DEFAULT_CONCURRENCY = 4  # requests in flight for the frames of one story
MAX_STARTS = 8  # opening braces tried for the answer's JSON object (the parse stays linear)
MAX_TOKENS = 512

#: What the landmark model is told (our own wording).
SYSTEM = """You recognise famous landmarks in photographs and film frames.

A landmark is a specific place with a proper name that people know it by: a monument, building, \
bridge, square, street or natural site such as the Eiffel Tower, Times Square, the Golden Gate Bridge \
or Mount Fuji. Ordinary things are not landmarks: never answer "a building", "a street", "a bridge", \
"a church", "a city" or "mountains".

Answer with one JSON object and nothing else:
{"landmarks": [{"name": "Eiffel Tower", "box": [x1, y1, x2, y2]}]}

- name: the landmark's proper name.
- box: where the landmark is, on a 0 to 1000 grid over the image: x from the left edge (0) to the right \
edge (1000), y from the top edge (0) to the bottom edge (1000); x1,y1 is the top-left corner and \
x2,y2 the bottom-right corner.
- List only landmarks you are sure of. If you are not sure, or the image shows no named place, answer \
{"landmarks": []}."""

QUESTION = "Which named landmarks does this image show?"

#: Words that make no name: kinds of place and plain descriptions (see :func:`is_generic`).
GENERIC_WORDS = frozenset(
    """a an the of in on at and with near by
    old new tall high large big small little modern historic historical ancient famous busy empty local main
    typical unknown unnamed generic some
    city town village downtown urban suburb district neighborhood neighbourhood street streets road roads
    avenue alley lane highway building buildings house houses home tower towers skyscraper skyscrapers
    skyline cityscape bridge church cathedral chapel temple mosque shrine castle palace fort monument
    memorial statue sculpture museum gallery theatre theater stadium arena park garden gardens square plaza
    market station airport harbour harbor port pier dock landmark landmarks place places area site
    location structure architecture view scene background mountain mountains hill hills peak river lake
    sea ocean beach coast shore waterfall forest woods field desert island valley canyon sky none nothing
    n/a na""".split()
)


@dataclass(frozen=True)
class Landmark:
    """One landmark in one frame: its name as the model wrote it and its box in the frame's pixels."""

    name: str
    box: Box


def landmark_key(name: str) -> str:
    """What makes two names one landmark: ``"The Eiffel  tower."`` and ``"eiffel tower"`` are both ``eiffel tower``."""
    words = re.sub(r"[^\w]+", " ", name.casefold()).split()
    if words and words[0] == "the":
        words = words[1:]
    return " ".join(words)


def is_generic(name: str) -> bool:
    """Whether a name names no particular place (see the module docstring)."""
    words = re.findall(r"[\w/]+", name)
    if not words or all(w[0].islower() for w in words):  # 東京タワー has no case, and is a name
        return True
    return all(w.casefold() in GENERIC_WORDS for w in words)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def grid_box(value: Any, size: tuple[int, int]) -> Box | None:
    """A 0-1000 grid box (four numbers, or an object with ``x1``..``y2``) in pixels of an image of ``size``
    (width, height): corners ordered, clamped to the image; None when it is no box or less than 2 pixels."""
    if isinstance(value, dict):
        value = [value.get(k) for k in ("x1", "y1", "x2", "y2")]
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    numbers = [_number(v) for v in value]
    if any(v is None for v in numbers):
        return None
    width, height = size
    x1, y1, x2, y2 = (float(v) for v in numbers)  # type: ignore[arg-type]
    xs = sorted(min(max(round(v * width / GRID), 0), width) for v in (x1, x2))
    ys = sorted(min(max(round(v * height / GRID), 0), height) for v in (y1, y2))
    if xs[1] - xs[0] < 2 or ys[1] - ys[0] < 2:
        return None
    return Box(xs[0], ys[0], xs[1], ys[1])


def first_object(text: str) -> dict | None:
    """The first JSON object in ``text`` that decodes, trying at most :data:`MAX_STARTS` opening braces."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    for _ in range(MAX_STARTS):
        if start < 0:
            return None
        try:
            value, _end = decoder.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            return value
        start = text.find("{", start + 1)
    return None


def _shown(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def parse_landmarks(
    text: str, size: tuple[int, int], *, max_landmarks: int = DEFAULT_MAX_LANDMARKS
) -> tuple[list[Landmark], list[str]]:
    """The landmarks of one answer, in pixels of an image of ``size`` (width, height), and what was wrong
    with the answer, in words (see the module docstring). Never raises on a bad answer."""
    from .writers import strip_reasoning

    answer = strip_reasoning(text, '"landmarks"')
    found = first_object(answer)
    if found is None:
        return [], [f"the answer holds no JSON object ({_shown(answer)}); no landmarks taken"]
    items = found.get("landmarks")
    if not isinstance(items, list):
        return [], [
            f"the answer's JSON has no 'landmarks' list ({_shown(json.dumps(found))}); no landmarks taken"
        ]
    landmarks: list[Landmark] = []
    notes: list[str] = []
    keys: set[str] = set()
    for item in items:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name.strip():
            notes.append(f"an entry without a name ({_shown(json.dumps(item))}) dropped")
            continue
        name = " ".join(name.split())
        if is_generic(name):
            notes.append(f"{name!r} refused: not the name of a particular place")
            continue
        box = grid_box(item.get("box", item.get("bbox")), size)
        if box is None:
            notes.append(
                f"{name!r} dropped: its box is not four numbers of the 0-1000 grid enclosing an area"
            )
            continue
        key = landmark_key(name)
        if key in keys:
            continue
        if len(landmarks) >= max_landmarks:
            notes.append(f"{name!r} dropped: more than {max_landmarks} landmarks in one frame")
            continue
        keys.add(key)
        landmarks.append(Landmark(name, box))
    return landmarks, notes


def landmark_ids(
    frames: Sequence[Sequence[Landmark]], prefix: str = "lm"
) -> list[list[tuple[str, int, str]]]:
    """``(id, first frame, name as first written)`` of every landmark, frame by frame (frames from 1)."""
    known: dict[str, tuple[str, int, str]] = {}
    out = []
    for number, landmarks in enumerate(frames, start=1):
        row = []
        for landmark in landmarks:
            key = landmark_key(landmark.name)
            if key not in known:
                known[key] = (f"{prefix}{len(known) + 1}", number, landmark.name)
            row.append(known[key])
        out.append(row)
    return out


def _retitled(message: str) -> str:
    """A client error worded for the landmark server's own options."""
    message = re.sub(r"--endpoint\b", "--landmarks-endpoint", message)
    message = re.sub(r"--served-model\b", "--landmarks-model", message)
    return f"the landmark server: {message}"


class LandmarkFinder:
    """Landmarks of single frames from a vision language model behind an OpenAI-compatible endpoint."""

    def __init__(self, client: Any, *, max_landmarks: int = DEFAULT_MAX_LANDMARKS) -> None:
        if max_landmarks < 1:
            raise UsageError(f"--max-landmarks must be at least 1, got {max_landmarks}")
        from ..tell.base import Sampling

        self.client = client  # an OpenAITeller: complete(messages, sampling=…) -> str
        self.max_landmarks = int(max_landmarks)
        self.sampling = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=MAX_TOKENS, seed=0)

    @classmethod
    def connect(
        cls,
        endpoint: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 600.0,
        retries: int = 3,
        deadline: float | None = None,
        max_landmarks: int = DEFAULT_MAX_LANDMARKS,
    ) -> LandmarkFinder:
        """A finder talking to the server at ``endpoint`` (asked for its model when ``model`` is None:
        a server that is down fails here, in one line)."""
        from ..tell.base import TellError
        from ..tell.openai import OpenAITeller

        try:
            client = OpenAITeller(
                endpoint, model=model, api_key=api_key, timeout=timeout, retries=retries, deadline=deadline
            )
        except TellError as exc:
            raise TellError(_retitled(str(exc)), exc.partial, at_endpoint=exc.at_endpoint) from None
        except UsageError as exc:
            raise UsageError(_retitled(str(exc))) from None
        return cls(client, max_landmarks=max_landmarks)

    def describe(self) -> dict:
        model = getattr(self.client, "model", None)
        return {
            "finder": "vision language model",
            "endpoint": self.client.describe(),
            "coordinates": f"0-{GRID} grid over the image, converted to pixels",
            "max_landmarks": self.max_landmarks,
            "sampling": self.sampling.to_dict(),
            "generic_names": "refused (every word lower-case, or only words for kinds of place)",
            # an OpenAI-compatible server names its model but not its revision
            "models": {"landmarks": {"id": model, "revision": None}},
        }

    def messages(self, image: Any) -> list[dict]:
        from ..format.images import image_data_url

        return [
            {"role": "system", "content": SYSTEM},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": image_data_url(image)}},
                    {"type": "text", "text": QUESTION},
                ],
            },
        ]

    def find(self, image: Any, size: tuple[int, int]) -> tuple[list[Landmark], list[str]]:
        """The landmarks of one frame (``size``: its width and height) and the notes on its answer."""
        from ..tell.base import TellError

        try:
            reply = self.client.complete(self.messages(image), sampling=self.sampling)
        except TellError as exc:
            raise TellError(_retitled(str(exc)), exc.partial, at_endpoint=exc.at_endpoint) from None
        return parse_landmarks(reply, size, max_landmarks=self.max_landmarks)


class LandmarkPerceiver:
    """Another perceiver's frames with the landmarks ``finder`` sees, ``lm`` ids kept across the story;
    the frames' requests ``concurrency`` at a time, while ``base`` sees them (see the module docstring)."""

    def __init__(self, base: Any, finder: LandmarkFinder, *, concurrency: int = DEFAULT_CONCURRENCY) -> None:
        if concurrency < 1:
            raise UsageError(f"--landmarks-concurrency must be at least 1, got {concurrency}")
        self.base, self.finder, self.concurrency = base, finder, int(concurrency)

    def describe(self) -> dict:
        out = dict(self.base.describe())
        out["landmarks"] = {**self.finder.describe(), "ids": "one lm id per normalised name across the story"}
        return out

    def _find(self, image: Any, number: int) -> tuple[list[Landmark], list[str]]:
        from ..format.images import image_size
        from ..tell.baseline import open_rgb

        # a file's or bytes' size from its header; anything else (a PIL image, a data.Frame) decoded
        size = image_size(image) if isinstance(image, (str, Path, bytes)) else open_rgb(image, number).size
        return self.finder.find(image, size)

    def see(self, images: Sequence[Any]) -> list:
        from ..tell.baseline import SeenObject

        pool = ThreadPoolExecutor(
            max_workers=max(1, min(self.concurrency, len(images))),
            thread_name_prefix="storyreasoning-landmarks",
        )
        try:
            # the requests go out first: the server works while the base perceiver sees the frames here
            asked = [pool.submit(self._find, image, number) for number, image in enumerate(images, start=1)]
            frames = list(self.base.see(images))  # an unreadable frame fails here first, as frame by frame
            answers = [future.result() for future in asked]  # in frame order: its first failure is raised
        except BaseException:
            # the story has failed: requests not yet sent are not sent, those in flight end on their own
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        per_frame: list[list[Landmark]] = []
        for frame, (found, notes) in zip(frames, answers, strict=True):
            frame.notes.extend(f"image {frame.number}: landmarks: {note}" for note in notes)
            per_frame.append(found)
        for frame, found, ids in zip(frames, per_frame, landmark_ids(per_frame), strict=True):
            frame.landmarks = [
                SeenObject(entity_id, name, landmark.box, 1.0, first)
                for landmark, (entity_id, first, name) in zip(found, ids, strict=True)
            ]
        return frames


__all__ = [
    "DEFAULT_CONCURRENCY",
    "GENERIC_WORDS",
    "GRID",
    "SYSTEM",
    "Landmark",
    "LandmarkFinder",
    "LandmarkPerceiver",
    "first_object",
    "grid_box",
    "is_generic",
    "landmark_ids",
    "landmark_key",
    "parse_landmarks",
]
