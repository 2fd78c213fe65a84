"""CoT rows as detections: what the grounding and identity metrics score.

Every Characters or Objects row of a telling's CoT (read by our tolerant parser) is one
:class:`Detection`: its image, its kind, its entity id, its box and its position in
the CoT. A row is *invalid*, and can never be matched, when:

* its image number is not one of the story's images (``image-out-of-range``);
* it has no usable box: empty, ``none``, not four numbers, normalised (``no-box``);
* its box is inverted or empty, x2 <= x1 or y2 <= y1 (``empty-box``);
* its box lies outside its image by the dataset validator's rule: starting at or past
  the right or bottom edge, or ending more than 10 % beyond it (``outside-image``).

A valid box is clipped to its image (a negative coordinate becomes 0, a corner a few
pixels past the edge comes back to it); decimal boxes were already rounded by the
parser.

The kind comes from the id prefix (``char`` character, ``obj`` object, ``bg``
background, ``lm`` landmark); an id of another form takes the kind of its table
(Characters: character, Objects: object). Metrics group kinds in two: ``characters``
and ``objects`` (objects, backgrounds and landmarks together, as they share the
Objects table).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..format.box import Box, check_box_in_image
from ..format.cot import CoT, id_kind
from ..format.diagnostics import Severity
from ..format.stream import Telling

KIND_OF_PREFIX = {"char": "character", "obj": "object", "bg": "background", "lm": "landmark"}
KINDS = tuple(KIND_OF_PREFIX.values())
GROUPS = ("characters", "objects")

IMAGE_OUT_OF_RANGE = "image-out-of-range"
NO_BOX = "no-box"
EMPTY_BOX = "empty-box"
OUTSIDE_IMAGE = "outside-image"


@dataclass(frozen=True)
class Detection:
    """One CoT row: image number (1-based), kind, entity id, clipped pixel box, row order.

    ``box`` is None and ``problem`` says why when the row is invalid.
    """

    image: int
    kind: str  # "character" | "object" | "background" | "landmark"
    entity_id: str
    box: Box | None
    row: int  # 0-based position among the CoT's character and object rows
    problem: str | None = None

    @property
    def valid(self) -> bool:
        return self.problem is None

    @property
    def group(self) -> str:
        """``"characters"`` or ``"objects"`` (objects, backgrounds and landmarks)."""
        return "characters" if self.kind == "character" else "objects"


def _kind(entity_id: str, table: str) -> str:
    prefix = id_kind(entity_id.strip())
    if prefix is not None:
        return KIND_OF_PREFIX[prefix]
    return "character" if table == "characters" else "object"


def _check(
    box: Box | None, image: int, image_sizes: Sequence[tuple[int, int]]
) -> tuple[Box | None, str | None]:
    if not 1 <= image <= len(image_sizes):
        return None, IMAGE_OUT_OF_RANGE
    if box is None:
        return None, NO_BOX
    if not box.is_proper:
        return None, EMPTY_BOX
    width, height = image_sizes[image - 1]
    if width <= 0 or height <= 0:
        return None, OUTSIDE_IMAGE
    if any(d.severity is Severity.ERROR for d in check_box_in_image(box, width, height)):
        return None, OUTSIDE_IMAGE
    clipped = box.clip(width, height)
    if not clipped.is_proper:
        return None, OUTSIDE_IMAGE
    return clipped, None


def cot_detections(cot: CoT | None, image_sizes: Sequence[tuple[int, int]]) -> list[Detection]:
    """Every character and object row of ``cot``, image by image, characters first."""
    out: list[Detection] = []
    if cot is None:
        return out
    for image in cot.images:
        rows = [("characters", row) for row in image.characters]
        rows += [("objects", row) for row in image.objects]
        for table, row in rows:
            box, problem = _check(row.box, image.number, image_sizes)
            out.append(
                Detection(
                    image=image.number,
                    kind=_kind(row.id, table),
                    entity_id=row.id.strip(),
                    box=box,
                    row=len(out),
                    problem=problem,
                )
            )
    return out


def telling_detections(telling: Telling | None, image_sizes: Sequence[tuple[int, int]]) -> list[Detection]:
    """The detections of a telling (none for a missing output or one without a CoT)."""
    return cot_detections(telling.cot if telling is not None else None, image_sizes)


__all__ = [
    "GROUPS",
    "KINDS",
    "Detection",
    "cot_detections",
    "telling_detections",
]
