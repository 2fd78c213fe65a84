"""Dataset statistics (``storyreasoning data info``), gathered one story at a time.

Definitions, so every number can be recounted by hand:

* frames: images of a story; *images analysed*: ``## Image N`` sections of its CoT;
* entities per image: rows of the Characters table (characters) and of the Objects
  table (objects: ``obj#``, ``bg#`` and ``lm#`` together) per CoT image section;
* persistence: an entity is one id within one story; it *persists across ≥ N frames*
  when its id appears in the CoT tables of at least N distinct image sections of that
  story. Counted for characters (``char#``) and objects (``obj#``; backgrounds and
  landmarks are left out, as in the original statistics). ``%`` is the share of all
  such entities (pooled over stories); ``macro %`` averages the per-story shares over
  the stories that have any (the original's convention for "present in ≥ 5 frames");
* tags: ``<gdi>`` segments and ``<gdo>``, ``<gda>``, ``<gdl>`` spans of the stories.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..format.cot import id_kind
from .sample import StorySample

PERSISTENCE = (2, 5)
KINDS = ("char", "obj")


@dataclass
class DatasetStats:
    stories: int = 0
    frames: list[int] = field(default_factory=list)
    image_sections: int = 0
    characters: int = 0  # character rows over all image sections
    objects: int = 0  # object rows (obj, bg, lm) over all image sections
    entities: dict[str, int] = field(default_factory=lambda: {"char": 0, "obj": 0, "bg": 0, "lm": 0})
    persistent: dict[str, dict[int, int]] = field(
        default_factory=lambda: {k: {n: 0 for n in PERSISTENCE} for k in KINDS}
    )
    macro: dict[str, dict[int, list[float]]] = field(
        default_factory=lambda: {k: {n: [] for n in PERSISTENCE} for k in KINDS}
    )
    segments: int = 0
    tags: dict[str, int] = field(default_factory=lambda: {"gdo": 0, "gda": 0, "gdl": 0})

    def add(self, sample: StorySample) -> None:
        self.stories += 1
        self.frames.append(sample.frame_count)
        cot = sample.cot
        self.image_sections += len(cot.images)
        for image in cot.images:
            self.characters += len(image.characters)
            self.objects += len(image.objects)
        appearances = cot.appearances()
        per_kind: dict[str, list[int]] = {k: [] for k in KINDS}
        for entity, frames in appearances.items():
            kind = id_kind(entity)
            if kind in self.entities:
                self.entities[kind] += 1
            if kind in per_kind:
                per_kind[kind].append(len(frames))
        for kind, spans in per_kind.items():
            for n in PERSISTENCE:
                hits = sum(1 for s in spans if s >= n)
                self.persistent[kind][n] += hits
                if spans:
                    self.macro[kind][n].append(hits / len(spans))
        for segment in sample.story.image_segments:
            self.segments += 1
            for span in segment.spans:
                if span.kind in self.tags:
                    self.tags[span.kind] += 1

    # -- report ------------------------------------------------------------------------------
    def rows(self) -> list[tuple[str, str]]:
        frames = self.frames
        total = sum(frames)
        rows = [
            ("stories", f"{self.stories:,}"),
            ("frames", f"{total:,}"),
            (
                "frames per story (min / mean / max)",
                f"{min(frames)} / {total / len(frames):.2f} / {max(frames)}" if frames else "-",
            ),
            ("CoT image sections", f"{self.image_sections:,}"),
            ("characters per image (mean)", _mean(self.characters, self.image_sections)),
            ("objects per image (mean; obj, bg, lm)", _mean(self.objects, self.image_sections)),
            (
                "entities (char / obj / bg / lm)",
                " / ".join(f"{self.entities[k]:,}" for k in ("char", "obj", "bg", "lm")),
            ),
        ]
        names = {"char": "characters", "obj": "objects"}
        for kind in KINDS:
            for n in PERSISTENCE:
                count = self.persistent[kind][n]
                share = count / self.entities[kind] if self.entities[kind] else 0.0
                macro = self.macro[kind][n]
                macro_share = sum(macro) / len(macro) if macro else 0.0
                rows.append(
                    (
                        f"{names[kind]} in ≥{n} frames",
                        f"{count:,} ({share:.1%}; macro {macro_share:.1%})",
                    )
                )
        rows += [
            ("story segments <gdi>", f"{self.segments:,}"),
            ("tags <gdo> / <gda> / <gdl>", " / ".join(f"{self.tags[k]:,}" for k in ("gdo", "gda", "gdl"))),
        ]
        return rows

    def to_dict(self) -> dict:
        frames = self.frames
        return {
            "stories": self.stories,
            "frames": sum(frames),
            "frames_per_story": {
                "min": min(frames) if frames else 0,
                "mean": sum(frames) / len(frames) if frames else 0.0,
                "max": max(frames) if frames else 0,
            },
            "image_sections": self.image_sections,
            "character_rows": self.characters,
            "object_rows": self.objects,
            "entities": dict(self.entities),
            "persistence": {
                kind: {
                    f">={n}": {
                        "count": self.persistent[kind][n],
                        "share": self.persistent[kind][n] / self.entities[kind]
                        if self.entities[kind]
                        else 0.0,
                        "macro_share": sum(self.macro[kind][n]) / len(self.macro[kind][n])
                        if self.macro[kind][n]
                        else 0.0,
                    }
                    for n in PERSISTENCE
                }
                for kind in KINDS
            },
            "segments": self.segments,
            "tags": dict(self.tags),
        }


def _mean(total: int, count: int) -> str:
    return f"{total / count:.2f}" if count else "-"
