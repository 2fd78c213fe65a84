"""Seeing with models: an object detector and an appearance embedder from transformers.

:class:`ModelPerceiver` finds people and objects with any transformers object detector
(``AutoModelForObjectDetection``: DETR, Conditional/Deformable DETR, RT-DETR, YOLOS…;
a hub id or a local folder) and re-identifies them across the frames of a story:

* with an ``embedder`` (any transformers vision model: SigLIP, CLIP, DINOv2, ViT…), each
  detection's crop becomes an L2-normalised feature vector, and detections of one label
  join the identity whose mean feature is most similar (cosine at least
  ``reid_threshold``), one detection per identity per frame, best pairs first;
* without one, a detection continues the identity of its label whose box in the
  previous frame it overlaps most (IoU at least 0.5): tracking, for frames of one shot.

People (labels in ``person_labels``) get ``char`` ids, everything else ``obj`` ids, in
order of first appearance. The frame's lighting is the mean brightness of a small copy
(:func:`~storyreasoning.tell.baseline.brightness`, as the baseline measures it); its
backgrounds come from :mod:`.background`, which wraps this perceiver (no OpenCV baseline
pass runs). Everything is deterministic: the same frames give the same ids.

**Batches** (:func:`forward_batches`). The frames of a story go through the detector
``batch`` at a time (``--perception-batch``, 8), and the crops of all its frames through
the embedder :data:`CROPS_PER_IMAGE` × ``batch`` at a time, instead of one forward per
frame. A DETR-style processor pads a batch to its largest image, and the padding changes
the outputs of the others (by up to 0.1 in a tiny DETR's logits), so a batch only ever
holds images whose inputs are exactly those each gets alone: frames of one size (or of
sizes the processor brings to one shape), or, for a processor that pads nothing (an
embedder's fixed square), any crops. A batched image's outputs are then those of the
same image alone up to the float rounding of a larger matrix product (about 1e-7 here):
the same detections, boxes and ids, whatever the batch size (tested).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import StoryReasoningError, UsageError
from ..format.box import Box

PERSON_LABELS = ("person",)
TRACK_IOU = 0.5
DEFAULT_BATCH = 8  # images per forward (--perception-batch)
CROPS_PER_IMAGE = 8  # an embedder forward holds this many crops per image of the batch: crops are small


def clean_label(label: str) -> str:
    """A detector's class name as a word: COCO-panoptic suffixes dropped, ``_`` and ``-`` as spaces."""
    for suffix in ("-other-merged", "-merged", "-other", "-stuff"):
        label = label.removesuffix(suffix)
    return " ".join(label.replace("_", " ").replace("-", " ").split()).lower() or "object"


def box_iou(a: Box, b: Box) -> float:
    ix = max(0, min(a.x2, b.x2) - max(a.x1, b.x1))
    iy = max(0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = ix * iy
    union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Detection:
    label: str
    box: Box
    score: float
    feature: Any = None  # unit vector (a list of floats) or None


@dataclass
class Identity:
    number: int  # 0-based within its kind (char / obj)
    kind: str  # "char" | "obj"
    label: str
    first_seen: int
    last_frame: int
    last_box: Box
    feature_sum: list[float] | None = None
    members: int = 0

    @property
    def entity_id(self) -> str:
        return f"{self.kind}{self.number + 1}"

    def mean(self) -> list[float] | None:
        if self.feature_sum is None:
            return None
        norm = sum(v * v for v in self.feature_sum) ** 0.5 or 1.0
        return [v / norm for v in self.feature_sum]

    def add(self, detection: Detection, frame: int) -> None:
        self.last_frame, self.last_box = frame, detection.box
        self.members += 1
        if detection.feature is not None:
            if self.feature_sum is None:
                self.feature_sum = list(detection.feature)
            else:
                self.feature_sum = [a + b for a, b in zip(self.feature_sum, detection.feature, strict=True)]


def assign(
    frames: Sequence[Sequence[Detection]],
    *,
    person_labels: Sequence[str] = PERSON_LABELS,
    threshold: float = 0.85,
) -> list[list[Identity]]:
    """The identity of every detection, frame by frame (see the module docstring).

    ``frames[k][i]`` is detection ``i`` of frame ``k + 1``; the result has the same shape.
    With features, similarity is the cosine to an identity's mean feature and must reach
    ``threshold``; without, the IoU with its box in the previous frame must reach 0.5.
    """
    identities: list[Identity] = []
    counters = {"char": 0, "obj": 0}
    out: list[list[Identity]] = []
    people = set(person_labels)
    for number, detections in enumerate(frames, start=1):
        pairs: list[tuple[float, int, int]] = []  # (similarity, detection, identity)
        for d_index, det in enumerate(detections):
            for i_index, ident in enumerate(identities):
                if ident.label != det.label:
                    continue
                mean = ident.mean()
                if det.feature is not None and mean is not None:
                    sim = sum(a * b for a, b in zip(det.feature, mean, strict=True))
                    if sim >= threshold:
                        pairs.append((sim, d_index, i_index))
                elif ident.last_frame == number - 1:
                    overlap = box_iou(det.box, ident.last_box)
                    if overlap >= TRACK_IOU:
                        pairs.append((overlap, d_index, i_index))
        pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
        chosen: dict[int, Identity] = {}
        taken: set[int] = set()
        for _, d_index, i_index in pairs:
            if d_index in chosen or i_index in taken:
                continue
            chosen[d_index] = identities[i_index]
            taken.add(i_index)
        row = []
        for d_index, det in enumerate(detections):
            ident = chosen.get(d_index)
            if ident is None:
                kind = "char" if det.label in people else "obj"
                ident = Identity(counters[kind], kind, det.label, number, number, det.box)
                counters[kind] += 1
                identities.append(ident)
            ident.add(det, number)
            row.append(ident)
        out.append(row)
    return out


def suppress(detections: list[Detection], overlap: float = 0.7) -> list[Detection]:
    """Class-wise non-maximum suppression, best score first (DETR-style models repeat boxes at low thresholds)."""
    kept: list[Detection] = []
    for det in sorted(detections, key=lambda d: (-d.score, d.box.x1, d.box.y1)):
        if all(k.label != det.label or box_iou(k.box, det.box) <= overlap for k in kept):
            kept.append(det)
    return kept


def forward_batches(
    processor: Any, images: Sequence[Any], batch: int, device: str, **kwargs: Any
) -> Iterator[tuple[list[int], Any]]:
    """``(indices, inputs)``: the images made into model inputs, at most ``batch`` per forward, never padded
    to one another's size (``indices`` say which images a batch holds, so outputs can go back in order).

    The processor (``kwargs`` too: a OneFormer's task) prepares the images in calls of at
    most ``batch`` that cannot pad one another: images of one size, which it brings to one
    shape; or, when it pads nothing (its inputs carry no ``pixel_mask``, as an embedder's
    fixed-size square), any images. Prepared images whose inputs then have the same shapes
    are stacked, in order of their first image, on ``device``. So every image's inputs are
    exactly those it gets alone (bit for bit).
    """
    import torch
    from transformers import BatchFeature

    if batch < 1:
        raise UsageError(f"--perception-batch must be at least 1, got {batch}")
    if not images:
        return

    def prepare(indices: list[int]) -> list[tuple[int, dict]]:
        """Each image's inputs (a batch of one), from one processor call when they stack."""
        try:
            inputs = processor(images=[images[i] for i in indices], return_tensors="pt", **kwargs)
        except (ValueError, RuntimeError, TypeError):  # prepared shapes that do not stack: one at a time
            if len(indices) == 1:
                raise
            return [item for i in indices for item in prepare([i])]
        return [
            (index, {key: value[k : k + 1] for key, value in inputs.items()})
            for k, index in enumerate(indices)
        ]

    prepared = prepare([0])  # also tells whether the processor pads
    pads = "pixel_mask" in prepared[0][1]
    by_size: dict[Any, list[int]] = {}
    for index in range(1, len(images)):
        key = (getattr(images[index], "size", None), getattr(images[index], "mode", None)) if pads else None
        by_size.setdefault(key, []).append(index)
    for indices in by_size.values():
        for start in range(0, len(indices), batch):
            prepared += prepare(indices[start : start + batch])
    prepared.sort(key=lambda item: item[0])
    groups: dict[tuple, list[tuple[int, dict]]] = {}
    for index, inputs in prepared:
        shape = tuple((key, tuple(getattr(value, "shape", ()))) for key, value in inputs.items())
        groups.setdefault(shape, []).append((index, inputs))
    for members in groups.values():
        for start in range(0, len(members), batch):
            chunk = members[start : start + batch]
            first = chunk[0][1]
            stacked = {
                key: torch.cat([m[key] for _, m in chunk])
                if isinstance(value, torch.Tensor)
                else [v for _, m in chunk for v in m[key]]
                for key, value in first.items()
            }
            yield [index for index, _ in chunk], BatchFeature(stacked).to(device)


def load_vision_model(
    name: str, auto: str, option: str, device: str, *, processor: str = "AutoImageProcessor"
) -> tuple[Any, Any]:
    """``(processor, model)`` of a transformers vision checkpoint (a hub id or folder) on ``device``, in eval mode.

    ``auto`` and ``processor`` name the transformers Auto classes; ``option`` the command-line
    option that named the model, for the one-line error when it cannot be loaded.
    """
    from ..models import import_torch

    _, transformers = import_torch()
    try:
        loaded = getattr(transformers, processor).from_pretrained(name)
        model = getattr(transformers, auto).from_pretrained(name)
    except ImportError as exc:  # e.g. the original DETR checkpoints need timm for their backbone
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise StoryReasoningError(
            f"{option} {name!r} needs a package that is not installed ({first}); install it, for example "
            "pip install timm"
        ) from exc
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise StoryReasoningError(
            f"cannot load {option} {name!r} ({first}); pass a local model folder or a reachable hub id"
        ) from exc
    return loaded, model.to(device).eval()


@dataclass
class ModelPerceiver:
    """People and objects from a detector model, re-identified by an embedder model (or by tracking)."""

    detector: str
    embedder: str | None = None
    threshold: float = 0.7
    reid_threshold: float = 0.85
    max_detections: int = 40
    person_labels: tuple[str, ...] = PERSON_LABELS
    device: str = "auto"
    batch: int = DEFAULT_BATCH  # images per forward (how it runs, never what it finds: not in describe())
    _models: dict = field(default_factory=dict, repr=False)
    _records: dict | None = field(default=None, repr=False)  # each model's id and revision, once

    def __post_init__(self) -> None:
        if not 0 <= self.threshold <= 1 or not -1 <= self.reid_threshold <= 1:
            raise UsageError(
                "the detection threshold must be in [0, 1] and the re-identification one in [-1, 1]"
            )
        if self.max_detections < 1:
            raise UsageError(f"max detections must be at least 1, got {self.max_detections}")
        if self.batch < 1:
            raise UsageError(f"--perception-batch must be at least 1, got {self.batch}")
        from ..models import choose_device, import_torch

        torch, transformers = import_torch()
        self._torch = torch
        self._device = choose_device(self.device)
        self._models["detector"] = self._load(
            transformers, self.detector, "AutoModelForObjectDetection", "--detector"
        )
        if self.embedder:
            self._models["embedder"] = self._load(transformers, self.embedder, "AutoModel", "--embedder")

    def _load(self, transformers, name: str, auto: str, option: str):
        return load_vision_model(name, auto, option, self._device)

    def describe(self) -> dict:
        detector = self._models["detector"][1]
        return {
            "perceiver": "models",
            "detector": self.detector,
            "detector_class": type(detector).__name__,
            "threshold": self.threshold,
            "max_detections": self.max_detections,
            "embedder": self.embedder,
            "embedder_crops": "square, the box centred on the ImageNet mean colour"
            if self.embedder
            else None,
            "reid": f"cosine >= {self.reid_threshold}" if self.embedder else f"tracking, IoU >= {TRACK_IOU}",
            "person_labels": list(self.person_labels),
            "lighting": "mean brightness of a copy at most 400 pixels long",
            "device": self._device,
            "models": self._model_records(),
        }

    def _model_records(self) -> dict:
        """Each model's id and revision (see :mod:`.provenance`), worked out once."""
        if self._records is None:
            from .provenance import model_record

            self._records = {
                role: model_record(name, self._models[role][1])
                for role, name in (("detector", self.detector), ("embedder", self.embedder))
                if name
            }
        return dict(self._records)

    def labels(self) -> tuple[str, ...]:
        """The detector's class names, cleaned (a segmenter's class of the same name is no background)."""
        config = self._models["detector"][1].config
        return tuple(
            dict.fromkeys(clean_label(str(v)) for v in (getattr(config, "id2label", None) or {}).values())
        )

    def detect(self, image) -> list[Detection]:
        """The detections of one PIL image (original pixels), best first, at most ``max_detections``."""
        return self.detect_many([image])[0]

    def detect_many(self, images: Sequence[Any]) -> list[list[Detection]]:
        """The detections of each PIL image, ``batch`` images per forward (see the module docstring)."""
        processor, model = self._models["detector"]
        torch = self._torch
        labels = getattr(model.config, "id2label", {}) or {}
        found: list[list[Detection]] = [[] for _ in images]
        for indices, inputs in forward_batches(processor, images, self.batch, self._device):
            with torch.no_grad():
                outputs = model(**inputs)
            sizes = [(images[i].size[1], images[i].size[0]) for i in indices]
            results = processor.post_process_object_detection(
                outputs, threshold=self.threshold, target_sizes=sizes
            )
            for index, result in zip(indices, results, strict=True):
                found[index] = self._detections(result, images[index].size, labels)
        return found

    def _detections(self, result: dict, size: tuple[int, int], labels: dict) -> list[Detection]:
        width, height = size
        found = []
        for score, label, box in zip(
            result["scores"].tolist(), result["labels"].tolist(), result["boxes"].tolist(), strict=True
        ):
            x1, y1, x2, y2 = (round(v) for v in box)
            x1, y1 = max(0, min(x1, width)), max(0, min(y1, height))
            x2, y2 = max(0, min(x2, width)), max(0, min(y2, height))
            if x2 - x1 < 2 or y2 - y1 < 2:
                continue
            found.append(
                Detection(clean_label(str(labels.get(label, label))), Box(x1, y1, x2, y2), float(score))
            )
        return suppress(found)[: self.max_detections]

    def embed(self, image, detections: list[Detection]) -> None:
        """Set each detection's feature: the embedder's vector of its square-padded crop (see :mod:`.crops`), L2-normalised."""
        self.embed_many([image], [detections])

    def embed_many(self, images: Sequence[Any], detections: Sequence[list[Detection]]) -> None:
        """:meth:`embed` for the detections of several images (``detections[k]`` those of ``images[k]``): the
        crops of all of them go through the embedder together, ``CROPS_PER_IMAGE * batch`` per forward."""
        if "embedder" not in self._models:
            return
        from .crops import square_crop

        # the box on a neutral square: no squashing by the processor, nothing of the frame around it
        owners = [det for dets in detections for det in dets]
        crops = [
            square_crop(image, det.box)
            for image, dets in zip(images, detections, strict=True)
            for det in dets
        ]
        if not crops:
            return
        processor, model = self._models["embedder"]
        torch = self._torch
        for indices, inputs in forward_batches(processor, crops, CROPS_PER_IMAGE * self.batch, self._device):
            with torch.no_grad():
                if hasattr(model, "get_image_features"):
                    vectors = model.get_image_features(pixel_values=inputs["pixel_values"])
                    vectors = getattr(vectors, "pooler_output", vectors)
                else:
                    out = model(**inputs)
                    pooled = getattr(out, "pooler_output", None)
                    vectors = pooled if pooled is not None else out.last_hidden_state[:, 0]
            vectors = torch.nn.functional.normalize(vectors.float().reshape(len(indices), -1), dim=-1)
            for index, vec in zip(indices, vectors.tolist(), strict=True):
                owners[index].feature = vec

    def see(self, images: Sequence[Any]) -> list:
        """The frames as the builder's writers take them: people (``char``) and objects (``obj``) with ids."""
        return self.see_with_features(images)[0]

    def see_with_features(self, images: Sequence[Any]) -> tuple[list, list[list[Any]]]:
        """:meth:`see`, and each frame's people's embedder features in the order of ``frame.people``
        (None without an embedder): what a face perceiver over this one compares people by, so
        that it need not embed their boxes again."""
        from ..tell.baseline import SeenFrame, SeenObject, SeenPerson, brightness, open_rgb

        if not images:
            raise StoryReasoningError("a story needs at least one image")
        # every image decoded first: an unreadable one fails before any model runs
        pils = [open_rgb(image, number) for number, image in enumerate(images, start=1)]
        frames = [
            SeenFrame(number, *pil.size, brightness=brightness(pil))
            for number, pil in enumerate(pils, start=1)
        ]
        per_frame = self.detect_many(pils)
        self.embed_many(pils, per_frame)
        identities = assign(per_frame, person_labels=self.person_labels, threshold=self.reid_threshold)
        previous: set[str] = set()
        features: list[list[Any]] = []
        for frame, detections, idents in zip(frames, per_frame, identities, strict=True):
            frame.people, frame.objects = [], []
            features.append([])
            for det, ident in zip(detections, idents, strict=True):
                if ident.kind == "char":
                    features[-1].append(det.feature)
                    frame.people.append(
                        SeenPerson(
                            identity=ident.number,
                            box=det.box,
                            face=None,
                            source="detector",
                            colour=None,
                            first_seen=ident.first_seen,
                            in_previous=ident.entity_id in previous,
                            similarity=det.score,
                        )
                    )
                else:
                    frame.objects.append(
                        SeenObject(ident.entity_id, det.label, det.box, det.score, ident.first_seen)
                    )
            previous = {ident.entity_id for ident in idents}
        return frames, features


__all__ = [
    "PERSON_LABELS",
    "Detection",
    "Identity",
    "ModelPerceiver",
    "assign",
    "clean_label",
    "forward_batches",
    "load_vision_model",
    "suppress",
]
