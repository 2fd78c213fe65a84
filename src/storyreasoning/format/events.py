"""Events emitted by the streaming parser as a model's output arrives.

Each event is a small dataclass with ``to_dict()`` (``{"event": name, ...}``) so a
server can forward it to a browser unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from .cot import Character, NarrativeRow, SceneObject, Setting
from .story import Span


@dataclass(frozen=True)
class Event:
    @property
    def name(self) -> str:
        out = []
        for i, c in enumerate(type(self).__name__):
            if c.isupper() and i:
                out.append("_")
            out.append(c.lower())
        return "".join(out)

    def to_dict(self) -> dict:
        return {"event": self.name}


@dataclass(frozen=True)
class ThinkOpened(Event):
    """The chain-of-thought started (``<think>``, or CoT content without it)."""


@dataclass(frozen=True)
class ImageSectionStarted(Event):
    image: int

    def to_dict(self) -> dict:
        return {"event": self.name, "image": self.image}


@dataclass(frozen=True)
class TableRowCompleted(Event):
    image: int
    table: str  # "characters" | "objects" | "settings"
    row: Character | SceneObject | Setting

    def to_dict(self) -> dict:
        return {"event": self.name, "image": self.image, "table": self.table, "row": self.row.to_dict()}


@dataclass(frozen=True)
class NarrativeStarted(Event):
    pass


@dataclass(frozen=True)
class NarrativeRowCompleted(Event):
    row: NarrativeRow

    def to_dict(self) -> dict:
        return {"event": self.name, "row": self.row.to_dict()}


@dataclass(frozen=True)
class ThinkClosed(Event):
    """The chain-of-thought is complete; the story follows."""


@dataclass(frozen=True)
class SegmentStarted(Event):
    image: int | None  # None: story text outside any <gdi>

    def to_dict(self) -> dict:
        return {"event": self.name, "image": self.image}


@dataclass(frozen=True)
class SpanOpened(Event):
    kind: str
    ids: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"event": self.name, "kind": self.kind, "ids": list(self.ids)}


@dataclass(frozen=True)
class TextAppended(Event):
    """Story text, tags removed, in the open span if one is open, else plain."""

    text: str

    def to_dict(self) -> dict:
        return {"event": self.name, "text": self.text}


@dataclass(frozen=True)
class SpanClosed(Event):
    span: Span

    def to_dict(self) -> dict:
        return {
            "event": self.name,
            "kind": self.span.kind,
            "ids": list(self.span.ids),
            "text": self.span.text,
        }


@dataclass(frozen=True)
class SegmentClosed(Event):
    image: int | None

    def to_dict(self) -> dict:
        return {"event": self.name, "image": self.image}
