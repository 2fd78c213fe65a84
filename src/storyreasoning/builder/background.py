"""Backgrounds: the "stuff" of each frame (sky, wall, floor...) as ``bg`` boxes whose ids hold across a story.

A finder turns one frame into a list of :class:`Region`: a label, a box in original
pixels and the share of the frame the region covers. :class:`BackgroundPerceiver` wraps
the builder's perceiver (the OpenCV baseline or the model perceiver, with or without
faces), asks a finder for every frame's regions and gives them ``bg`` ids; its frames'
``backgrounds`` then replace the baseline's single geometric band.

**With a segmenter** (:class:`PanopticBackgrounds`, ``--segmenter``): any transformers
universal-segmentation checkpoint, Mask2Former or OneFormer, a hub id or a folder (e.g.
``facebook/mask2former-swin-large-coco-panoptic``), loaded with
``AutoModelForUniversalSegmentation`` (OneFormer gets its task input ``"panoptic"``). The
processor's panoptic post-processing (segments scoring at least ``threshold``, every
stuff class fused into one segment) runs at a copy of the frame at most
:data:`SEGMENT_SIDE` pixels long. The frames of a story go through the segmenter
``batch`` at a time (``--perception-batch``), frames the processor makes the same shape
together and never padded (see :func:`~storyreasoning.builder.perceive.forward_batches`). Each stuff segment's connected pieces (8-connected)
become regions; a piece smaller than ``min_area`` of the frame is dropped. Things (people,
cups, cars) are the detector's business and never become backgrounds.

Which classes are stuff, in this order:

1. ``stuff_labels`` (``--stuff-labels sky,wall``): exactly the classes with those labels
   (as :func:`~storyreasoning.builder.perceive.clean_label` cleans them: ``sky-other-merged``
   is ``sky``).
2. The checkpoint says which of its classes are things (a OneFormer processor's
   ``metadata["thing_ids"]``, or ``thing_ids`` in the model's config): every other class.
3. Otherwise, every class that is not a thing the builder can find: not one of the 80
   COCO thing classes (:data:`COCO_THINGS`) and not a label of the ``--detector``. On
   COCO-panoptic checkpoints this makes exactly ids 80 to 132 stuff (banner ... rug). The
   original code took ``label_id > 90``, which made 11 stuff classes things (banner,
   blanket, bridge, cardboard, counter, curtain, door, wooden floor, flower, fruit,
   gravel).

**Without a segmenter** (:class:`ColourBackgrounds`, GroundCap's idea in our own code): a
copy of the frame at most ``side`` pixels long, the people's and objects' boxes masked
out, is clustered with OpenCV's k-means on colour (CIE Lab) and position (k-means++ seeds
from OpenCV's random generator seeded with ``seed`` just before, so the same frames always
give the same clusters). Clusters of nearly one colour (:data:`MERGE_DISTANCE`), which
k-means split only for their place, are joined again. Each cluster is opened with a 3x3
square (speckle removed); its connected pieces of at least ``min_area`` of the frame become regions, labelled in words
by their colour and place: ``blue area at the top``, ``dark green area on the left``. When
no piece is that large, the largest is kept: a frame with background showing between its
boxes always has one.

*Shots* (:func:`shots`). Clusters cut a painted gradient or a plain wall in arbitrary places, so
near-identical frames (a shot's frames a pixel apart, a crop, a little more light, noise) came
out cut and named differently ("orange area on the right", then "orange area at the bottom
right", then "orange and brown area on the right"), and their ``bg`` ids changed from frame to
frame within one shot. So the frames of a story are first grouped into shots: a frame joins the
shot of the earlier frame nearest it when their :data:`SHOT_SIDE`-cell square copies differ by
less than :data:`SHOT_DISTANCE` (:func:`frame_distance`: the mean colour difference of their
cells, CIELAB units, lightness counting half), anywhere earlier in the story (an A-B-A cut comes
back to A's shot). A shot's frames are clustered together, once (their cells pooled: the same
centres cut every frame), and each frame is cut into its pieces. Then a piece continues the
*track* of the earlier piece of its cluster whose box it overlaps most (IoU at least
:data:`TRACK_OVERLAP`); a track is named once, from its pixels in all its frames and its mean
place, ranked by its mean share of the shot's frames (which pieces are kept, and in which order,
holds across the shot) and keeps one id. A frame alone in its shot is cut exactly as it would be
alone. Measured (the copies' distance): consecutive frames of one shot of
``tests/builder/video_scenes.py`` 1.0 (median; at most 1.7), five frames apart at most 6.3 (the
chain joins them anyway), a 3 % crop 5.2 to 6.3, 10 % more light 2.3 to 2.9, noise of 8 levels
0.5; the closest different pictures: a photograph and itself at 55 % light 11.8 (kept apart,
although one backdrop), two photographs of one man (one blurred and grey, one at 45 % light) 14.4,
two photographs of one room (Biden's and Obama's, ``tests/builder/data/faces``) 20.9, two shots of
the film at least 17.3.

**Ids** (:func:`background_ids`): a ``bg`` id means the same background seen again. Every
region has a look (:func:`look`): the mean and the spread of its own pixels' CIE Lab
colour (the colour cluster's piece, the segment's piece; six numbers, computed on the
copy the finder already works on). A region of a track (above) seen before takes its track's
id. Any other region takes the id of an earlier background of the
same label whose look lies within ``distance`` of its own (``--background-look-distance``,
:data:`LOOK_DISTANCE` by default; :func:`look_distance`:
CIELAB units, lightness counting half as in the CMC 2:1 colour difference; the nearest
when several do, measured to each look that id has had), and not taken by another region
of its frame; a region that matches none gets a new id. So "the wall" of frame 3 is the
wall of frame 1 only if it looks like it: two different rooms' walls, or two photographs'
black areas at the bottom, get two ids. Ids are numbered in order of first appearance,
frames in order, regions largest first, ties by position: the same frames give the same
ids. At most ``max_regions`` regions per frame, the largest (in a shot, by their tracks' mean share).

The threshold, measured on the photographs of ``examples/stories`` and
``tests/builder/data/faces`` and the frames the tests make of them: the same background
seen again lies at 0 (the same frame), 0.17 between consecutive frames of one shot of
``tests/builder/video_scenes.py`` (the median of 203 pairs of one label, shots clustered
together; 90 % under 1.4; 7.6 to 8.1 where the baseline lost the person in a blurred frame
and the region took in the pixels around it: one track, so one id all the same), 2.8 (one
portrait reframed), 3.6 (a photograph cropped); different backgrounds of one label at
6.6 to 9.3 (two men's dark suits in two photographs of one room: 7.2;
two white backdrops: 6.6, 9.0). Colour alone cannot tell every pair apart: a near-black
suit and another man's suit darkened to half light lie at 1.6.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import StoryReasoningError, UsageError
from ..format.box import Box
from .perceive import DEFAULT_BATCH

DEFAULT_MIN_AREA = 0.03  # share of the frame a background piece must cover
DEFAULT_MAX_REGIONS = 3
DEFAULT_SEGMENTER_THRESHOLD = 0.5  # the transformers post-processing's default
DEFAULT_CLUSTERS = 5
SEGMENT_SIDE = 640  # the panoptic map is computed at a copy this long (boxes scaled back)
COLOUR_SIDE = 96  # colour clustering runs on a copy this long
# two clusters whose mean colours lie closer than this (Lab, 0..255 per channel) are one colour, split
# by k-means only for their place: they are joined before the pieces are cut
MERGE_DISTANCE = 12.0
#: two regions of one label are one background seen again when their looks lie closer than this
#: (:func:`look_distance`, CIELAB units; measured on the test photographs, see the module docstring)
LOOK_DISTANCE = 6.0
POSITION_WEIGHT = 16.0  # k-means: the frame's longer side spans this many Lab units (0..255); colour leads
SHOT_SIDE = 16  # frames are compared for shots on square copies this many cells a side
#: two frames whose copies lie closer than this (:func:`frame_distance`, CIELAB units) are one shot: clustered
#: together, their pieces named once (measured in the module docstring)
SHOT_DISTANCE = 8.0
#: a piece of a shot's frame continues the earlier piece of its cluster whose box it overlaps this much (IoU)
TRACK_OVERLAP = 0.3

#: The 80 COCO thing classes, as :func:`~storyreasoning.builder.perceive.clean_label` writes them.
COCO_THINGS = frozenset(
    (
        "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
        "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
        "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
        "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
        "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
        "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
        "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
        "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
        "scissors", "teddy bear", "hair drier", "toothbrush",
    )
)  # fmt: skip


@dataclass(frozen=True)
class Region:
    """One background region of one frame: its label, its box in original pixels, the share of the frame it covers."""

    label: str
    box: Box
    area: float
    score: float = 1.0
    look: tuple[float, ...] = ()  # :func:`look`: its pixels' mean and spread in CIE Lab; () when unknown
    #: ``(shot, track)`` within the frames the finder was given together: regions of one track are one
    #: background by construction (:func:`_shot_labels`) and keep one id; None when the finder tracks none
    track: tuple[int, int] | None = field(default=None, compare=False)


def look(lab: Any, mask: Any) -> tuple[float, ...]:
    """How a region looks: the mean and the spread (standard deviation) of its pixels' CIE Lab colour,
    ``(L*, a*, b*, spread of L*, of a*, of b*)`` in CIELAB units (L* 0..100), rounded to 0.01. ``lab``: an
    ``h x w x 3`` image in OpenCV's 8-bit Lab (L* scaled to 0..255, a* and b* offset by 128); ``mask``: the
    region's ``h x w`` boolean mask."""
    from ..vision import require_cv2

    cv2, np = require_cv2()
    mean, spread = cv2.meanStdDev(lab, mask=np.ascontiguousarray(mask, dtype=np.uint8))
    (m_l, m_a, m_b), (s_l, s_a, s_b) = mean.ravel(), spread.ravel()
    values = (m_l * 100 / 255, m_a - 128, m_b - 128, s_l * 100 / 255, s_a, s_b)
    return tuple(round(float(v), 2) for v in values)


def look_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """How unlike two :func:`look` values are: the Euclidean distance between them in CIELAB units, lightness
    (its mean and its spread) counting half, as in the CMC l:c = 2:1 colour difference: a change of light
    or exposure moves lightness most. A region without a look (``()``) is like any other (distance 0)."""
    if not a or not b:
        return 0.0
    weights = (0.5, 1.0, 1.0, 0.5, 1.0, 1.0)
    return sum((w * (x - y)) ** 2 for w, x, y in zip(weights, a, b, strict=True)) ** 0.5


# -- pieces of a mask -------------------------------------------------------------------------------------


def _scaled(x1: int, y1: int, x2: int, y2: int, grid: tuple[int, int], size: tuple[int, int]) -> Box:
    """A box of grid cells ``[x1, x2) x [y1, y2)`` on a ``grid`` (w, h) map, in pixels of an image of ``size`` (w, h)."""
    (gw, gh), (width, height) = grid, size
    return Box(
        min(max(round(x1 * width / gw), 0), width),
        min(max(round(y1 * height / gh), 0), height),
        min(max(round(x2 * width / gw), 0), width),
        min(max(round(y2 * height / gh), 0), height),
    )


def pieces(mask: Any, *, min_pixels: int = 1) -> list[tuple[tuple[int, int, int, int], int, Any]]:
    """The 8-connected pieces of a boolean mask with at least ``min_pixels`` pixels, largest first
    (ties: top, then left): ``((x1, y1, x2, y2) exclusive, pixel count, the piece's own mask)``."""
    from ..vision import require_cv2

    cv2, np = require_cv2()
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        np.ascontiguousarray(mask, dtype=np.uint8), connectivity=8
    )
    found = []
    for k in range(1, count):
        x, y, w, h, n = (int(v) for v in stats[k])
        if n >= min_pixels:
            found.append(((x, y, x + w, y + h), n, labels == k))
    found.sort(key=lambda p: (-p[1], p[0][1], p[0][0]))
    return found


def stuff_regions(
    segmentation: Any,
    segments: Iterable[tuple[int, str, float]],
    size: tuple[int, int],
    *,
    min_area: float = DEFAULT_MIN_AREA,
    max_regions: int = DEFAULT_MAX_REGIONS,
    image: Any = None,
) -> list[Region]:
    """The regions of a panoptic map: every connected piece of every stuff segment.

    ``segmentation`` is a 2-D array of segment ids (any ``h x w`` grid over the frame);
    ``segments`` the stuff segments as ``(segment id, label, score)`` (a segment listed
    twice counts once); ``size`` the frame's ``(width, height)``, which the boxes are in.
    Pieces smaller than ``min_area`` of the map are dropped; the ``max_regions`` largest
    are returned, largest first (ties: top, then left, then label). ``image``: the frame as
    an ``h x w x 3`` RGB array on the map's grid; when given, each region has its :func:`look`.
    """
    from ..vision import require_cv2

    cv2, np = require_cv2()
    seg = np.asarray(segmentation)
    if seg.ndim != 2 or seg.size == 0:
        raise StoryReasoningError(f"a panoptic map must be a non-empty 2-D array, got shape {seg.shape}")
    gh, gw = seg.shape
    lab = None
    if image is not None:
        rgb = np.ascontiguousarray(image, dtype=np.uint8)
        if rgb.shape != (gh, gw, 3):
            raise StoryReasoningError(
                f"the image must be {gh} x {gw} x 3 like its panoptic map, got {rgb.shape}"
            )
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)
    min_pixels = max(1, int(np.ceil(min_area * gh * gw)))
    seen: set[int] = set()
    found: list[Region] = []
    for segment_id, label, score in segments:
        if segment_id in seen:
            continue
        seen.add(segment_id)
        for (x1, y1, x2, y2), n, piece in pieces(seg == segment_id, min_pixels=min_pixels):
            box = _scaled(x1, y1, x2, y2, (gw, gh), size)
            seen_as = look(lab, piece) if lab is not None else ()
            found.append(Region(label, box, n / (gh * gw), float(score), seen_as))
    found.sort(key=lambda r: (-r.area, r.box.y1, r.box.x1, r.label))
    return found[:max_regions]


# -- which classes are stuff ------------------------------------------------------------------------------


def parse_labels(text: str | None) -> tuple[str, ...] | None:
    """``"sky, wall-other-merged"`` -> ``("sky", "wall")`` (cleaned); None or blank: None."""
    from .perceive import clean_label

    if text is None or not text.strip():
        return None
    return tuple(dict.fromkeys(clean_label(part) for part in text.split(",") if part.strip()))


def stuff_ids(
    id2label: dict[int, str],
    *,
    stuff_labels: Sequence[str] | None = None,
    thing_ids: Iterable[int] | None = None,
    things: Iterable[str] = (),
) -> set[int]:
    """The class ids that are backgrounds, by the rule of the module docstring.

    ``stuff_labels``: the cleaned labels that are stuff (rule 1); ``thing_ids``: the
    checkpoint's own thing classes (rule 2); ``things``: labels found by the detector, added
    to :data:`COCO_THINGS` (rule 3). Raises :class:`UsageError` when ``stuff_labels`` names no
    class of the model, or when no class is stuff.
    """
    from .perceive import clean_label

    labels = {int(k): clean_label(str(v)) for k, v in id2label.items()}
    if stuff_labels is not None:
        wanted = set(stuff_labels)
        chosen = {k for k, label in labels.items() if label in wanted}
        unknown = sorted(wanted - set(labels.values()))
        if unknown:
            some = ", ".join(sorted(set(labels.values()))[:12])
            raise UsageError(
                f"--stuff-labels names {', '.join(unknown)}, which the segmenter does not have; its classes "
                f"include {some}"
            )
        return chosen
    if thing_ids is not None:
        declared = {int(k) for k in thing_ids}
        chosen = {k for k in labels if k not in declared}
    else:
        known = COCO_THINGS | {clean_label(t) for t in things}
        chosen = {k for k, label in labels.items() if label not in known}
    if not chosen:
        raise UsageError(
            "the segmenter has no stuff classes by the default rule (all its classes are things); name the "
            "background classes with --stuff-labels"
        )
    return chosen


def declared_thing_ids(processor: Any, config: Any) -> list[int] | None:
    """The thing classes a checkpoint declares: a OneFormer processor's ``metadata["thing_ids"]`` or a
    config's ``thing_ids``; None when it declares none."""
    for holder in (processor, getattr(processor, "image_processor", None)):
        metadata = getattr(holder, "metadata", None)
        if isinstance(metadata, dict) and isinstance(metadata.get("thing_ids"), list):
            return [int(k) for k in metadata["thing_ids"]]
    ids = getattr(config, "thing_ids", None)
    return [int(k) for k in ids] if isinstance(ids, (list, tuple)) else None


# -- the finders ------------------------------------------------------------------------------------------


def _check(min_area: float, max_regions: int) -> None:
    if not 0 <= min_area < 1:
        raise UsageError(f"--background-min-area must be in [0, 1), got {min_area}")
    if max_regions < 1:
        raise UsageError(f"--max-backgrounds must be at least 1, got {max_regions}")


class PanopticBackgrounds:
    """Stuff segments of a Mask2Former or OneFormer panoptic segmenter (see the module docstring)."""

    def __init__(
        self,
        model: str,
        *,
        threshold: float = DEFAULT_SEGMENTER_THRESHOLD,
        min_area: float = DEFAULT_MIN_AREA,
        max_regions: int = DEFAULT_MAX_REGIONS,
        stuff_labels: Sequence[str] | None = None,
        things: Iterable[str] = (),
        device: str = "auto",
        batch: int = DEFAULT_BATCH,
    ) -> None:
        if not 0 <= threshold <= 1:
            raise UsageError(f"--segmenter-threshold must be in [0, 1], got {threshold}")
        if batch < 1:
            raise UsageError(f"--perception-batch must be at least 1, got {batch}")
        _check(min_area, max_regions)
        from ..models import choose_device, import_torch
        from .perceive import clean_label, load_vision_model

        torch, transformers = import_torch()
        self._torch = torch
        self.model_name, self.threshold = model, float(threshold)
        self.min_area, self.max_regions = float(min_area), int(max_regions)
        self.batch = int(batch)  # images per forward: how it runs, not what it finds (not in describe())
        self._device = choose_device(device)
        config = self._config(transformers, model)
        self.task = "panoptic" if config.model_type == "oneformer" else None
        self._processor, self._model = load_vision_model(
            model,
            "AutoModelForUniversalSegmentation",
            "--segmenter",
            self._device,
            processor="AutoProcessor" if self.task else "AutoImageProcessor",
        )
        if not hasattr(self._processor, "post_process_panoptic_segmentation"):
            raise UsageError(
                f"--segmenter {model!r} has no panoptic post-processing ({type(self._processor).__name__}); "
                "give a Mask2Former or OneFormer panoptic checkpoint"
            )
        id2label = {int(k): str(v) for k, v in (getattr(self._model.config, "id2label", None) or {}).items()}
        if not id2label:
            raise UsageError(f"--segmenter {model!r} names no classes (its config has no id2label)")
        declared = (
            None if stuff_labels is not None else declared_thing_ids(self._processor, self._model.config)
        )
        self.rule = (
            "--stuff-labels"
            if stuff_labels is not None
            else "the checkpoint's thing_ids"
            if declared is not None
            else "not a COCO thing class or a detector label"
        )
        self.stuff = stuff_ids(id2label, stuff_labels=stuff_labels, thing_ids=declared, things=things)
        self.labels = {k: clean_label(v) for k, v in id2label.items()}
        from .provenance import model_record

        self._record = model_record(model, self._model)

    def _config(self, transformers, model: str):
        try:
            return transformers.AutoConfig.from_pretrained(model)
        except (OSError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise StoryReasoningError(
                f"cannot load --segmenter {model!r} ({first}); pass a local model folder or a reachable hub id"
            ) from exc

    def describe(self) -> dict:
        return {
            "finder": "panoptic segmenter",
            "segmenter": self.model_name,
            "segmenter_class": type(self._model).__name__,
            "task": self.task,
            "threshold": self.threshold,
            "stuff_rule": self.rule,
            "stuff_classes": sorted({self.labels[k] for k in self.stuff}),
            "min_area": self.min_area,
            "max_regions": self.max_regions,
            "map_side": SEGMENT_SIDE,
            "device": self._device,
            "models": {"segmenter": self._record},
        }

    def regions(self, image, exclude: Sequence[Box] = ()) -> list[Region]:
        """The stuff regions of one PIL image (``exclude`` is not needed: stuff segments hold no things)."""
        return self.regions_many([image])[0]

    def regions_many(
        self, images: Sequence[Any], excludes: Sequence[Sequence[Box]] | None = None
    ) -> list[list[Region]]:
        """:meth:`regions` of each PIL image, ``batch`` images per forward."""
        from .perceive import forward_batches

        torch = self._torch
        kwargs = {"task_inputs": [self.task]} if self.task else {}
        found: list[list[Region]] = [[] for _ in images]
        for indices, inputs in forward_batches(self._processor, images, self.batch, self._device, **kwargs):
            with torch.no_grad():
                outputs = self._model(**inputs)
            targets = []
            for index in indices:
                width, height = images[index].size
                scale = min(1.0, SEGMENT_SIDE / max(width, height))
                targets.append((max(1, round(height * scale)), max(1, round(width * scale))))
            results = self._processor.post_process_panoptic_segmentation(
                outputs, threshold=self.threshold, label_ids_to_fuse=set(self.stuff), target_sizes=targets
            )
            for index, result in zip(indices, results, strict=True):
                found[index] = self._stuff(result, images[index])
        return found

    def _stuff(self, result: dict, image: Any) -> list[Region]:
        from ..format.images import rgb_image
        from ..vision import require_cv2

        segmentation = result["segmentation"]
        segments = [
            (int(info["id"]), self.labels.get(int(info["label_id"]), "background"), float(info["score"]))
            for info in result["segments_info"]
            if int(info["label_id"]) in self.stuff
        ]
        if segmentation is None or not segments:  # nothing above the threshold, or only things
            return []
        cv2, np = require_cv2()
        segmentation = segmentation.cpu().numpy()
        gh, gw = segmentation.shape
        # the frame on the map's grid, for the regions' looks
        rgb = np.asarray(rgb_image(image), dtype=np.uint8)
        if rgb.shape[:2] != (gh, gw):
            rgb = cv2.resize(rgb, (gw, gh), interpolation=cv2.INTER_AREA)
        return stuff_regions(
            segmentation,
            segments,
            image.size,
            min_area=self.min_area,
            max_regions=self.max_regions,
            image=rgb,
        )


_ROWS = ("top", "middle", "bottom")
_COLUMNS = ("left", "centre", "right")


def place_words(box: Sequence[float], centre: Sequence[float], size: tuple[int, int]) -> str:
    """Where a region lies, in words: ``at the top``, ``on the left``, ``at the bottom right``, ``in the centre``,
    ``across the frame``. ``box`` and ``centre`` (its pixels' mean) on a ``size`` (w, h) grid; a region
    spanning three quarters of an axis has no place along it."""
    (x1, y1, x2, y2), (cx, cy), (width, height) = box, centre, size
    row = None if (y2 - y1) >= 0.75 * height else _ROWS[min(2, int(3 * cy / height))]
    column = None if (x2 - x1) >= 0.75 * width else _COLUMNS[min(2, int(3 * cx / width))]
    if row == "middle" and column in (None, "centre"):
        return "in the centre" if column else "across the middle"
    if column == "centre":
        column = None
    if row in (None, "middle"):
        return f"on the {column}" if column else "across the frame"
    return f"at the {row} {column}" if column else f"at the {row}"


def merged_colours(colours: Any, distance: float = MERGE_DISTANCE) -> list[int]:
    """For each cluster colour (rows of Lab values), the cluster it joins: clusters whose colours lie within
    ``distance`` of each other, directly or through others, are one (a smallest index names them)."""
    parent = list(range(len(colours)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(colours)):
        for j in range(i + 1, len(colours)):
            gap = sum((float(a) - float(b)) ** 2 for a, b in zip(colours[i], colours[j], strict=True)) ** 0.5
            if gap < distance:
                a, b = root(i), root(j)
                parent[max(a, b)] = min(a, b)
    return [root(i) for i in range(len(colours))]


def thumbnail(image: Any) -> Any:
    """A frame as :func:`shots` compares it: a :data:`SHOT_SIDE`-pixel square copy (squashed, pixels averaged)
    in CIE Lab, CIELAB units (L* 0..100), floats."""
    from ..format.images import rgb_image
    from ..vision import require_cv2

    cv2, np = require_cv2()
    rgb = np.asarray(rgb_image(image), dtype=np.uint8)
    small = cv2.resize(rgb, (SHOT_SIDE, SHOT_SIDE), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)


def frame_distance(a: Any, b: Any) -> float:
    """How unlike two :func:`thumbnail` copies are: the mean over their cells of the colour difference
    (CIELAB units, lightness counting half as in :func:`look_distance`)."""
    from ..vision import require_cv2

    _, np = require_cv2()
    gap = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    gap[..., 0] *= 0.5
    return float(np.sqrt((gap**2).sum(axis=-1)).mean())


def shots(images: Sequence[Any], distance: float = SHOT_DISTANCE) -> list[int]:
    """The shot of each frame, 0-based and numbered in order of first appearance: a frame joins the shot of
    the earlier frame nearest it (:func:`frame_distance`; the first on a tie) when closer than ``distance``,
    else opens a shot of its own. Frames of one shot are near-identical pictures (see the module docstring);
    they need not follow each other (an A-B-A cut comes back to the first shot)."""
    thumbs = [thumbnail(image) for image in images]
    out: list[int] = []
    for k, thumb in enumerate(thumbs):
        near = [(frame_distance(thumb, thumbs[j]), j) for j in range(k)]
        alike = [(gap, j) for gap, j in near if gap < distance]
        out.append(out[min(alike)[1]] if alike else max(out, default=-1) + 1)
    return out


@dataclass
class _Piece:
    """One candidate region of one frame of a shot, with what its label is made from."""

    cluster: int  # its colour cluster (after joining), shared by the frames of its shot
    n: int  # its cells on the clustering copy
    grid: tuple[int, int, int, int]  # its box of cells, exclusive, on the copy
    size: tuple[int, int]  # the copy's (w, h)
    centre: tuple[float, float]  # its cells' mean, on the copy
    hsv: Any  # its cells' HSV colours, n x 1 x 3
    region: Region

    def share(self) -> tuple[float, float, float, float]:
        """Its box as shares of its frame."""
        (x1, y1, x2, y2), (w, h) = self.grid, self.size
        return x1 / w, y1 / h, x2 / w, y2 / h


def _overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two boxes ``(x1, y1, x2, y2)`` of floats."""
    w, h = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _label(colour: str | None, box: Sequence[float], centre: Sequence[float], size: tuple[int, int]) -> str:
    return f"{colour or 'plain'} area {place_words(box, centre, size)}"


def _shot_labels(
    frames: Sequence[Sequence[_Piece]], overlap: float = TRACK_OVERLAP
) -> list[list[tuple[str, float, int]]]:
    """The label, the rank and the track of every piece of the frames of one shot, decided once for the shot.

    A piece continues the track of the earlier piece of its colour cluster whose box (as shares of the
    frame) it overlaps most, at least ``overlap`` (IoU; each track once a frame), else starts one. Every
    piece of a track is named by the track's pixels together and their mean place (:func:`place_words` of
    the mean box and centre), and ranked by the track's mean share of its frames (frames of the shot where
    it is not found count 0): so the frames of a shot name, order and keep their regions alike. A piece
    alone in its track keeps its own label and share."""
    from ..vision import require_cv2
    from ..vision.reid import colour_name

    _, np = require_cv2()
    tracks: list[list[_Piece]] = []
    where: list[list[int]] = []
    for pieces in frames:
        taken: set[int] = set()
        row = []
        for piece in pieces:
            near = [
                (_overlap(piece.share(), track[-1].share()), -t)
                for t, track in enumerate(tracks)
                if track[-1].cluster == piece.cluster and t not in taken
            ]
            best, t = max(near, default=(0.0, 0))
            if best > 0 and best >= overlap:
                t = -t
            else:
                t = len(tracks)
                tracks.append([])
            tracks[t].append(piece)
            taken.add(t)
            row.append(t)
        where.append(row)
    named: list[tuple[str, float, int]] = []
    for t, track in enumerate(tracks):
        if len(track) == 1:
            named.append((track[0].region.label, track[0].region.area, t))
            continue
        colour = colour_name(np.concatenate([p.hsv for p in track]))
        size = track[0].size
        if all(p.size == size for p in track):  # the mean place on the copy
            box = [sum(p.grid[i] for p in track) / len(track) for i in range(4)]
            centre = [sum(p.centre[i] for p in track) / len(track) for i in range(2)]
        else:  # frames of other sizes: the mean of shares, on the first one's copy
            box = [sum(p.share()[i] for p in track) / len(track) * size[i % 2] for i in range(4)]
            centre = [sum(p.centre[i] / p.size[i] for p in track) / len(track) * size[i] for i in range(2)]
        named.append((_label(colour, box, centre, size), sum(p.region.area for p in track) / len(frames), t))
    return [[named[t] for t in row] for row in where]


class ColourBackgrounds:
    """Backgrounds without a model: colour and position clusters between the boxes (see the module docstring)."""

    def __init__(
        self,
        *,
        clusters: int = DEFAULT_CLUSTERS,
        min_area: float = DEFAULT_MIN_AREA,
        max_regions: int = DEFAULT_MAX_REGIONS,
        side: int = COLOUR_SIDE,
        seed: int = 0,
    ) -> None:
        if not 2 <= clusters <= 16:
            raise UsageError(f"--background-clusters must be 2 to 16, got {clusters}")
        if side < 16:
            raise UsageError(f"the clustering copy must be at least 16 pixels long, got {side}")
        _check(min_area, max_regions)
        from ..vision import require_cv2

        self._cv2, self._np = require_cv2()
        self.clusters, self.min_area, self.max_regions = int(clusters), float(min_area), int(max_regions)
        self.side, self.seed = int(side), int(seed)

    def describe(self) -> dict:
        return {
            "finder": "colour clusters",
            "method": f"OpenCV k-means (k={self.clusters}, k-means++, seed {self.seed}) on CIE Lab colour and "
            f"position of a {self.side}-pixel copy outside the people's and objects' boxes, once per shot (frames "
            f"of a story whose {SHOT_SIDE}-pixel copies differ by under {SHOT_DISTANCE:g} CIELAB units, "
            f"lightness counting half) on its frames together; clusters of one colour (Lab distance < "
            f"{MERGE_DISTANCE:g}) joined; connected pieces after a 3x3 opening; a piece of a shot named once "
            f"for the shot, from its pixels and mean place in every frame where a piece of its cluster overlaps "
            f"it (IoU >= {TRACK_OVERLAP:g})",
            "min_area": self.min_area,
            "max_regions": self.max_regions,
            "versions": {"opencv": self._cv2.__version__},
        }

    def regions(self, image, exclude: Sequence[Box] = ()) -> list[Region]:
        """The colour regions of one PIL image, outside the ``exclude`` boxes (original pixels)."""
        return self._shot([image], [exclude], 0)[0]

    def regions_many(
        self, images: Sequence[Any], excludes: Sequence[Sequence[Box]] | None = None
    ) -> list[list[Region]]:
        """:meth:`regions` of each PIL image (``excludes[k]``: the boxes of image ``k``), the frames of one
        shot (:func:`shots`) clustered together and their pieces named once for the shot."""
        excludes = excludes if excludes is not None else [() for _ in images]
        numbers = shots(images) if len(images) > 1 else [0] * len(images)
        found: list[list[Region]] = [[] for _ in images]
        for shot in sorted(set(numbers)):
            members = [k for k, number in enumerate(numbers) if number == shot]
            seen = self._shot([images[k] for k in members], [excludes[k] for k in members], shot)
            for k, regions in zip(members, seen, strict=True):
                found[k] = regions
        return found

    def _copy(self, image, exclude: Sequence[Box]) -> tuple[Any, Any, tuple[int, int]]:
        """The clustering copy of one frame (RGB, at most :attr:`side` long) and its cells outside ``exclude``."""
        from ..format.images import rgb_image

        cv2, np = self._cv2, self._np
        width, height = image.size
        scale = min(1.0, self.side / max(width, height))
        w, h = max(1, round(width * scale)), max(1, round(height * scale))
        rgb = np.asarray(rgb_image(image), dtype=np.uint8)
        if (w, h) != (width, height):
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        free = np.ones((h, w), dtype=bool)
        for box in exclude:  # a cell is covered when any part of it lies in a box
            x1, x2 = int(np.floor(box.x1 * w / width)), int(np.ceil(box.x2 * w / width))
            y1, y2 = int(np.floor(box.y1 * h / height)), int(np.ceil(box.y2 * h / height))
            free[max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)] = False
        return np.ascontiguousarray(rgb), free, (width, height)

    def _shot(
        self, images: Sequence[Any], excludes: Sequence[Sequence[Box]], shot: int
    ) -> list[list[Region]]:
        """The regions of the frames of shot number ``shot``: one clustering of their cells together, pieces
        per frame, labels and tracks decided for the shot (:func:`_shot_labels`)."""
        cv2, np = self._cv2, self._np
        copies = [self._copy(image, exclude) for image, exclude in zip(images, excludes, strict=True)]
        # a frame with fewer free cells than clusters has no background
        usable = [k for k, (_, free, _) in enumerate(copies) if int(free.sum()) >= self.clusters]
        if not usable:
            return [[] for _ in images]
        labs, samples = {}, []
        for k in usable:
            rgb, free, _ = copies[k]
            h, w = free.shape
            lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab).astype(np.float32)
            ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
            reach = float(max(w, h))
            features = np.concatenate(
                [lab, (xs * POSITION_WEIGHT / reach)[..., None], (ys * POSITION_WEIGHT / reach)[..., None]],
                axis=2,
            )
            labs[k] = lab
            samples.append(features[free])
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 0.1)
        cv2.setRNGSeed(self.seed)  # the k-means++ seeds (OpenCV's generator is per thread)
        _, labels, centres = cv2.kmeans(
            np.ascontiguousarray(np.concatenate(samples)),
            self.clusters,
            None,
            criteria,
            1,
            cv2.KMEANS_PP_CENTERS,
        )
        same = merged_colours(centres[:, :3])
        joined = np.asarray(same, dtype=np.int32)[labels.ravel()]
        candidates: list[list[_Piece]] = [[] for _ in images]
        start = 0
        for k in usable:
            rgb, free, size = copies[k]
            count = int(free.sum())
            assigned = np.full(free.shape, -1, dtype=np.int32)
            assigned[free] = joined[start : start + count]
            start += count
            candidates[k] = self._pieces(rgb, labs[k], assigned, sorted(set(same)), size)
        out = []
        for pieces, named in zip(candidates, _shot_labels(candidates), strict=True):
            found = [
                (rank, replace(p.region, label=label, track=(shot, t)))
                for p, (label, rank, t) in zip(pieces, named, strict=True)
            ]
            found.sort(key=lambda t: (-t[0], t[1].box.y1, t[1].box.x1, t[1].label))
            out.append([region for _, region in found[: self.max_regions]])
        return out

    def _pieces(
        self, rgb: Any, lab: Any, assigned: Any, clusters: Sequence[int], size: tuple[int, int]
    ) -> list[_Piece]:
        """One frame's candidate regions: every piece of at least ``min_area`` of each cluster of
        ``assigned`` (a cluster number per cell, -1 outside), else its largest piece; each labelled on its own."""
        from ..vision.reid import colour_name

        cv2, np = self._cv2, self._np
        h, w = assigned.shape
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
        kernel = np.ones((3, 3), dtype=np.uint8)
        min_pixels = max(1, int(np.ceil(self.min_area * w * h)))
        found: list[_Piece] = []
        largest: _Piece | None = None
        for cluster in clusters:
            mask = (assigned == cluster).astype(np.uint8)
            opened = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
            for (x1, y1, x2, y2), n, piece in pieces(opened if opened.any() else mask):
                if n < min_pixels and largest is not None and largest.n >= n:
                    break  # pieces come largest first: none after this one is kept
                py, px = np.nonzero(piece)
                centre = (float(px.mean()) + 0.5, float(py.mean()) + 0.5)
                colours = hsv[piece].reshape(-1, 1, 3)
                label = _label(colour_name(colours), (x1, y1, x2, y2), centre, (w, h))
                box = _scaled(x1, y1, x2, y2, (w, h), size)
                region = Region(label, box, n / (w * h), look=look(lab, piece))
                candidate = _Piece(cluster, n, (x1, y1, x2, y2), (w, h), centre, colours, region)
                if largest is None or n > largest.n:
                    largest = candidate
                if n < min_pixels:
                    break
                found.append(candidate)
        if not found and largest is not None:
            found = [largest]
        return found


# -- ids across the story ----------------------------------------------------------------------------------


def background_ids(
    frames: Sequence[Sequence[Region]], prefix: str = "bg", distance: float = LOOK_DISTANCE
) -> list[list[tuple[str, int]]]:
    """``(id, first frame)`` of every region, frame by frame (frames numbered from 1): a region of a track
    seen before (:attr:`Region.track`) takes its track's id; any other takes the id of the earlier
    background of its label whose look lies nearest its own, closer than ``distance`` (:func:`look_distance`
    to any of that background's looks so far) and not taken in its frame yet; else a new one (see the
    module docstring)."""
    known: list[tuple[str, str, int, list[tuple[float, ...]]]] = []  # label, id, first frame, its looks
    tracked: dict[tuple[int, int], int] = {}  # a track -> the background it is
    out: list[list[tuple[str, int]]] = []
    for number, regions in enumerate(frames, start=1):
        chosen: dict[int, int] = {}  # region -> background
        for i, region in enumerate(regions):  # first the tracks seen before: one background by construction
            k = tracked.get(region.track) if region.track is not None else None
            if k is not None and k not in chosen.values() and known[k][0] == region.label:
                chosen[i] = k
        for i, region in enumerate(regions):
            if i in chosen:
                continue
            near = [
                (min(look_distance(region.look, seen) for seen in looks), k)
                for k, (label, _, _, looks) in enumerate(known)
                if label == region.label and k not in chosen.values()
            ]
            alike = [(gap, k) for gap, k in near if gap < distance]
            if alike:
                chosen[i] = min(alike)[1]  # the nearest; on a tie, the first seen
            else:
                chosen[i] = len(known)
                known.append((region.label, f"{prefix}{len(known) + 1}", number, []))
        row = []
        for i, region in enumerate(regions):
            k = chosen[i]
            known[k][3].append(region.look)
            if region.track is not None:
                tracked.setdefault(region.track, k)
            row.append((known[k][1], known[k][2]))
        out.append(row)
    return out


def _check_distance(distance: float) -> float:
    if not distance > 0:
        raise UsageError(
            f"--background-look-distance must be above 0 (CIELAB units; {LOOK_DISTANCE:g} by default), got "
            f"{distance}"
        )
    return float(distance)


class BackgroundPerceiver:
    """Another perceiver's frames with their backgrounds from ``finder`` (a :class:`PanopticBackgrounds`
    or a :class:`ColourBackgrounds`), ``bg`` ids kept across the story by regions whose looks lie closer than
    ``distance`` (:func:`background_ids`)."""

    def __init__(self, base: Any, finder: Any, *, distance: float = LOOK_DISTANCE) -> None:
        self.base, self.finder = base, finder
        self.distance = _check_distance(distance)

    def describe(self) -> dict:
        out = dict(self.base.describe())
        out.pop("background", None)
        out["backgrounds"] = {
            **self.finder.describe(),
            "ids": "a bg id is kept across the story by a region of the same label that looks alike: mean and "
            f"spread of its pixels' CIE Lab colour within {self.distance:g} (CIELAB units, lightness counting "
            "half) of a look that id had; else a new id; a region the finder tracked across a shot keeps its "
            "track's id",
        }
        return out

    def see(self, images: Sequence[Any]) -> list:
        from ..tell.baseline import SeenObject, open_rgb

        # decoded once, here (an unreadable frame fails first, naming its file): the perceivers below take the
        # decoded frames as they are instead of decoding every file again
        pils = [open_rgb(image, number) for number, image in enumerate(images, start=1)]
        frames = list(self.base.see(pils))
        boxes = [
            [p.box for p in frame.people] + [o.box for o in getattr(frame, "objects", [])] for frame in frames
        ]
        per_frame = self.finder.regions_many(pils, boxes)  # a segmenter takes the story's frames in batches
        ids_of = background_ids(per_frame, distance=self.distance)
        for frame, regions, ids in zip(frames, per_frame, ids_of, strict=True):
            frame.backgrounds = [
                SeenObject(entity_id, region.label, region.box, round(region.score, 4), first)
                for region, (entity_id, first) in zip(regions, ids, strict=True)
            ]
            frame.background = Box(0, 0, 0, 0)  # the baseline's band is replaced, even by nothing
        return frames


def with_backgrounds(
    perceiver: Any,
    *,
    segmenter: str | None = None,
    threshold: float = DEFAULT_SEGMENTER_THRESHOLD,
    stuff_labels: str | None = None,
    things: Iterable[str] = (),
    min_area: float = DEFAULT_MIN_AREA,
    max_regions: int = DEFAULT_MAX_REGIONS,
    clusters: int = DEFAULT_CLUSTERS,
    device: str = "auto",
    batch: int = DEFAULT_BATCH,
    look_distance: float = LOOK_DISTANCE,
) -> BackgroundPerceiver:
    """``perceiver`` with backgrounds from ``segmenter`` (a hub id or folder), else from colour clusters
    (``batch``: a segmenter's images per forward; ``look_distance``: see :func:`background_ids`)."""
    _check_distance(look_distance)  # before a segmenter loads
    if segmenter:
        finder: Any = PanopticBackgrounds(
            segmenter,
            threshold=threshold,
            min_area=min_area,
            max_regions=max_regions,
            stuff_labels=parse_labels(stuff_labels),
            things=things,
            device=device,
            batch=batch,
        )
    else:
        if stuff_labels:
            raise UsageError("--stuff-labels chooses among a segmenter's classes; give --segmenter too")
        finder = ColourBackgrounds(clusters=clusters, min_area=min_area, max_regions=max_regions)
    return BackgroundPerceiver(perceiver, finder, distance=look_distance)


__all__ = [
    "COCO_THINGS",
    "BackgroundPerceiver",
    "ColourBackgrounds",
    "PanopticBackgrounds",
    "Region",
    "background_ids",
    "declared_thing_ids",
    "frame_distance",
    "parse_labels",
    "pieces",
    "place_words",
    "shots",
    "stuff_ids",
    "stuff_regions",
    "thumbnail",
    "with_backgrounds",
]
