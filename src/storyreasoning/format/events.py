"""Events emitted by the streaming parser as a model's output arrives.

Each event is a small dataclass with ``to_dict()`` (``{"event": name, ...}``) so a
server can forward it to a browser unchanged.

A streamed output makes an event or two per chunk, so each event class sets its frozen
fields directly (natively when compiled, in the instance dict as Python): half the cost
of the generated ``__init__``, which goes through ``object.__setattr__`` field by field.
"""

from __future__ import annotations

from dataclasses import dataclass

from .cot import Character, NarrativeRow, SceneObject, Setting
from .diagnostics import COMPILED, reduce_dataclass
from .records import TYPE_CHECKING, dataclass_methods
from .story import Span

if TYPE_CHECKING:
    from typing import Final

_NAMES: Final[dict[type, str]] = {}


@dataclass(init=False, repr=False, eq=False)
class Event:
    @property
    def name(self) -> str:
        cls = type(self)
        name = _NAMES.get(cls)
        if name is None:
            out = []
            for i, c in enumerate(cls.__name__):
                if c.isupper() and i:
                    out.append("_")
                out.append(c.lower())
            name = _NAMES[cls] = "".join(out)
        return name

    def to_dict(self) -> dict:
        return {"event": self.name}

    def __reduce__(self) -> tuple:
        return reduce_dataclass(self)


dataclass_methods(Event, frozen=True)


@dataclass(init=False, repr=False, eq=False)
class ThinkOpened(Event):
    """The chain-of-thought started (``<think>``, or CoT content without it)."""


dataclass_methods(ThinkOpened, frozen=True)


@dataclass(init=False, repr=False, eq=False)
class ImageSectionStarted(Event):
    image: int

    def __init__(self, image: int):
        if COMPILED:
            self.image = image  # type: ignore[misc]
        else:
            d = self.__dict__
            d["image"] = image

    def to_dict(self) -> dict:
        return {"event": self.name, "image": self.image}


dataclass_methods(ImageSectionStarted, frozen=True)


@dataclass(init=False, repr=False, eq=False)
class TableRowCompleted(Event):
    image: int
    table: str  # "characters" | "objects" | "settings"
    row: Character | SceneObject | Setting

    def __init__(self, image: int, table: str, row: Character | SceneObject | Setting):
        if COMPILED:
            self.image = image  # type: ignore[misc]
            self.table = table  # type: ignore[misc]
            self.row = row  # type: ignore[misc]
        else:
            d = self.__dict__
            d["image"] = image
            d["table"] = table
            d["row"] = row

    def to_dict(self) -> dict:
        return {"event": self.name, "image": self.image, "table": self.table, "row": self.row.to_dict()}


dataclass_methods(TableRowCompleted, frozen=True)


@dataclass(init=False, repr=False, eq=False)
class NarrativeStarted(Event):
    pass


dataclass_methods(NarrativeStarted, frozen=True)


@dataclass(init=False, repr=False, eq=False)
class NarrativeRowCompleted(Event):
    row: NarrativeRow

    def __init__(self, row: NarrativeRow):
        if COMPILED:
            self.row = row  # type: ignore[misc]
        else:
            d = self.__dict__
            d["row"] = row

    def to_dict(self) -> dict:
        return {"event": self.name, "row": self.row.to_dict()}


dataclass_methods(NarrativeRowCompleted, frozen=True)


@dataclass(init=False, repr=False, eq=False)
class ThinkClosed(Event):
    """The chain-of-thought is complete; the story follows."""


dataclass_methods(ThinkClosed, frozen=True)


@dataclass(init=False, repr=False, eq=False)
class SegmentStarted(Event):
    image: int | None  # None: story text outside any <gdi>

    def __init__(self, image: int | None):
        if COMPILED:
            self.image = image  # type: ignore[misc]
        else:
            d = self.__dict__
            d["image"] = image

    def to_dict(self) -> dict:
        return {"event": self.name, "image": self.image}


dataclass_methods(SegmentStarted, frozen=True)


@dataclass(init=False, repr=False, eq=False)
class SpanOpened(Event):
    kind: str
    ids: tuple[str, ...]

    def __init__(self, kind: str, ids: tuple[str, ...]):
        if COMPILED:
            self.kind = kind  # type: ignore[misc]
            self.ids = ids  # type: ignore[misc]
        else:
            d = self.__dict__
            d["kind"] = kind
            d["ids"] = ids

    def to_dict(self) -> dict:
        return {"event": self.name, "kind": self.kind, "ids": list(self.ids)}


dataclass_methods(SpanOpened, frozen=True)


@dataclass(init=False, repr=False, eq=False)
class TextAppended(Event):
    """Story text, tags removed, in the open span if one is open, else plain."""

    text: str

    def __init__(self, text: str):
        if COMPILED:
            self.text = text  # type: ignore[misc]
        else:
            d = self.__dict__
            d["text"] = text

    def to_dict(self) -> dict:
        return {"event": self.name, "text": self.text}


dataclass_methods(TextAppended, frozen=True)


@dataclass(init=False, repr=False, eq=False)
class SpanClosed(Event):
    span: Span

    def __init__(self, span: Span):
        if COMPILED:
            self.span = span  # type: ignore[misc]
        else:
            d = self.__dict__
            d["span"] = span

    def to_dict(self) -> dict:
        return {
            "event": self.name,
            "kind": self.span.kind,
            "ids": list(self.span.ids),
            "text": self.span.text,
        }


dataclass_methods(SpanClosed, frozen=True)


@dataclass(init=False, repr=False, eq=False)
class SegmentClosed(Event):
    image: int | None

    def __init__(self, image: int | None):
        if COMPILED:
            self.image = image  # type: ignore[misc]
        else:
            d = self.__dict__
            d["image"] = image

    def to_dict(self) -> dict:
        return {"event": self.name, "image": self.image}


dataclass_methods(SegmentClosed, frozen=True)
