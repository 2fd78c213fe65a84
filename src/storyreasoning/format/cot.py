"""The chain-of-thought (CoT) scene analysis: data model and canonical rendering.

The published layout is one ``## Image N`` section per image, each with three markdown
tables (``### Characters``, ``### Objects``, ``### Setting``), then one
``## Narrative Structure`` table. :func:`render_cot` writes exactly that layout, the
one the original ``cot_to_string`` wrote and the training targets use; parsing lives in
:mod:`storyreasoning.format.cot_parser`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

from .box import Box
from .diagnostics import COMPILED, Diagnostic, reduce_dataclass
from .records import TYPE_CHECKING, dataclass_methods

if TYPE_CHECKING:
    from typing import Final


class SettingElement(str, Enum):
    LOCATION = "Location"
    ENVIRONMENT = "Environment"
    LIGHTING = "Lighting"
    WEATHER = "Weather"
    TIME_PERIOD = "Time Period"
    ARCHITECTURE = "Architecture"
    INTERIOR_DESIGN = "Interior Design"
    ATMOSPHERE = "Atmosphere"
    BACKGROUND = "Background"


class NarrativePhase(str, Enum):
    INTRODUCTION = "Introduction"
    DEVELOPMENT = "Development"
    CONFLICT = "Conflict"
    TURNING_POINT = "Turning Point"
    CONCLUSION = "Conclusion"


def phase_images(n_images: int) -> list[list[int]]:
    """The images (1-based) of each of the five narrative phases, by position in the sequence.

    Every phase gets at least one image and every image belongs to a phase; with fewer
    than five images neighbouring phases share one (4 images: 1, 1, 2, 3, 4).
    """
    phases = []
    for i in range(5):
        start = i * n_images // 5
        stop = max((i + 1) * n_images // 5, start + 1)
        phases.append([k + 1 for k in range(start, min(stop, n_images))])
    return phases


def _norm_words(text: str) -> str:
    return " ".join(text.lower().replace("_", " ").replace("-", " ").split())


# Per enum: normalised value -> member, and (normalised value, member) in declaration order.
_ENUM_WORDS: Final[dict[type[Enum], tuple[dict[str, Enum], tuple[tuple[str, Enum], ...]]]] = {}
# Recent answers for short cells: a table repeats the same few values on every row.
_ENUM_MEMO: Final[dict[tuple[type[Enum], str], tuple[Enum | None, bool]]] = {}
_MEMO_SIZE: Final = 1024


def match_enum(enum: type[Enum], text: str) -> tuple[Enum | None, bool]:
    """Recognise ``text`` as a value of ``enum``.

    Returns ``(value, exact)``: exact when it equals a value up to case, spaces,
    underscores and hyphens (``TIME_PERIOD``, ``time period``); otherwise the first value
    that occurs inside the text (``Climax/Turning Point``), as the original did, with
    ``exact=False``; ``(None, False)`` when nothing matches.
    """
    short = len(text) <= 64
    if short:
        found = _ENUM_MEMO.get((enum, text))
        if found is not None:
            return found
    words = _ENUM_WORDS.get(enum)
    if words is None:
        pairs = tuple((_norm_words(member.value), member) for member in enum)
        words = _ENUM_WORDS[enum] = (dict(pairs), pairs)
    norm = _norm_words(text)
    found = (None, False)
    if norm:
        member = words[0].get(norm)
        if member is not None:
            found = (member, True)
        else:
            for value, member in words[1]:
                if value in norm:
                    found = (member, False)
                    break
    if short:
        if len(_ENUM_MEMO) >= _MEMO_SIZE:
            _ENUM_MEMO.clear()
        _ENUM_MEMO[(enum, text)] = found
    return found


_ID_RE: Final = re.compile(r"(char|obj|bg|lm)(\d{1,6})", re.ASCII)


# the longest id: "char" and six digits
_ID_MAX: Final = 10
_ID_KINDS: Final[dict[str, str | None]] = {}


def id_kind(entity_id: str) -> str | None:
    """``"char"``, ``"obj"``, ``"bg"`` or ``"lm"`` for a well-formed id, else None."""
    if len(entity_id) > _ID_MAX:
        return None
    try:
        return _ID_KINDS[entity_id]
    except KeyError:
        pass
    m = _ID_RE.fullmatch(entity_id)
    kind = m.group(1) if m else None
    if len(_ID_KINDS) >= _MEMO_SIZE:
        _ID_KINDS.clear()
    _ID_KINDS[entity_id] = kind
    return kind


@dataclass(init=False, repr=False, eq=False)
class Character:
    id: str
    name: str = ""
    description: str = ""
    emotions: str = ""
    actions: str = ""
    narrative_function: str = ""
    box: Box | None = None
    box_text: str = ""
    line: int = field(default=0, compare=False, repr=False)

    # Explicit: the parser makes one per row, and compiled this is a native constructor
    # (the dataclass-generated one would stay Python).
    def __init__(
        self,
        id: str,
        name: str = "",
        description: str = "",
        emotions: str = "",
        actions: str = "",
        narrative_function: str = "",
        box: Box | None = None,
        box_text: str = "",
        line: int = 0,
    ):
        self.id = id
        self.name = name
        self.description = description
        self.emotions = emotions
        self.actions = actions
        self.narrative_function = narrative_function
        self.box = box
        self.box_text = box_text
        self.line = line

    def __reduce__(self) -> tuple:
        return reduce_dataclass(self)

    def cells(self) -> list[str]:
        return [
            self.id,
            self.name,
            self.description,
            self.emotions,
            self.actions,
            self.narrative_function,
            _box_cell(self),
        ]

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "emotions": self.emotions,
            "actions": self.actions,
            "narrative_function": self.narrative_function,
            "box": self.box.to_list() if self.box else None,
        }


dataclass_methods(Character)


@dataclass(init=False, repr=False, eq=False)
class SceneObject:
    """A row of the Objects table: an object (``obj#``), background (``bg#``) or landmark (``lm#``)."""

    id: str
    description: str = ""
    function: str = ""
    interaction: str = ""
    narrative_function: str = ""
    box: Box | None = None
    box_text: str = ""
    line: int = field(default=0, compare=False, repr=False)

    def __init__(
        self,
        id: str,
        description: str = "",
        function: str = "",
        interaction: str = "",
        narrative_function: str = "",
        box: Box | None = None,
        box_text: str = "",
        line: int = 0,
    ):
        self.id = id
        self.description = description
        self.function = function
        self.interaction = interaction
        self.narrative_function = narrative_function
        self.box = box
        self.box_text = box_text
        self.line = line

    def __reduce__(self) -> tuple:
        return reduce_dataclass(self)

    @property
    def kind(self) -> str | None:
        return id_kind(self.id)

    def cells(self) -> list[str]:
        return [
            self.id,
            self.description,
            self.function,
            self.interaction,
            self.narrative_function,
            _box_cell(self),
        ]

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "description": self.description,
            "function": self.function,
            "interaction": self.interaction,
            "narrative_function": self.narrative_function,
            "box": self.box.to_list() if self.box else None,
        }


dataclass_methods(SceneObject)


@dataclass(init=False, repr=False, eq=False)
class Setting:
    element: str
    description: str = ""
    mood: str = ""
    time: str = ""
    narrative_function: str = ""
    line: int = field(default=0, compare=False, repr=False)

    def __init__(
        self,
        element: str,
        description: str = "",
        mood: str = "",
        time: str = "",
        narrative_function: str = "",
        line: int = 0,
    ):
        self.element = element
        self.description = description
        self.mood = mood
        self.time = time
        self.narrative_function = narrative_function
        self.line = line

    def __reduce__(self) -> tuple:
        return reduce_dataclass(self)

    @property
    def kind(self) -> SettingElement | None:
        return match_enum(SettingElement, self.element)[0]  # type: ignore[return-value]

    def cells(self) -> list[str]:
        member, exact = match_enum(SettingElement, self.element)
        return [
            member.value if member is not None and exact else self.element,
            self.description,
            self.mood,
            self.time,
            self.narrative_function,
        ]

    def to_dict(self) -> dict:
        return {
            "element": self.element,
            "description": self.description,
            "mood": self.mood,
            "time": self.time,
            "narrative_function": self.narrative_function,
        }


dataclass_methods(Setting)


_DIGITS: Final = re.compile(r"\d+", re.ASCII)


@dataclass(init=False, repr=False, eq=False)
class NarrativeRow:
    phase: str
    description: str = ""
    key_events: str = ""
    images_text: str = ""
    line: int = field(default=0, compare=False, repr=False)

    def __init__(
        self, phase: str, description: str = "", key_events: str = "", images_text: str = "", line: int = 0
    ):
        self.phase = phase
        self.description = description
        self.key_events = key_events
        self.images_text = images_text
        self.line = line

    def __reduce__(self) -> tuple:
        return reduce_dataclass(self)

    @property
    def kind(self) -> NarrativePhase | None:
        return match_enum(NarrativePhase, self.phase)[0]  # type: ignore[return-value]

    @property
    def images(self) -> list[int]:
        """Every integer in the Images cell (``"1, 2"``, ``"Image 3"``), as the original read it."""
        return [int(d) for d in _DIGITS.findall(self.images_text[:500])]

    def cells(self) -> list[str]:
        member, exact = match_enum(NarrativePhase, self.phase)
        return [
            member.value if member is not None and exact else self.phase,
            self.description,
            self.key_events,
            self.images_text,
        ]

    def to_dict(self) -> dict:
        return {
            "phase": self.phase,
            "description": self.description,
            "key_events": self.key_events,
            "images": self.images,
        }


dataclass_methods(NarrativeRow)


@dataclass(init=False, repr=False, eq=False)
class ImageAnalysis:
    number: int
    characters: list[Character] = field(default_factory=list)
    objects: list[SceneObject] = field(default_factory=list)
    settings: list[Setting] = field(default_factory=list)
    line: int = field(default=0, compare=False, repr=False)
    # which of the three tables the text actually had (a heading or a header row)
    tables_present: set[str] = field(default_factory=set, compare=False, repr=False)

    def __init__(
        self,
        number: int,
        characters: list[Character] | None = None,
        objects: list[SceneObject] | None = None,
        settings: list[Setting] | None = None,
        line: int = 0,
        tables_present: set[str] | None = None,
    ):
        self.number = number
        self.characters = [] if characters is None else characters
        self.objects = [] if objects is None else objects
        self.settings = [] if settings is None else settings
        self.line = line
        self.tables_present = set() if tables_present is None else tables_present

    def __reduce__(self) -> tuple:
        return reduce_dataclass(self)

    def entity(self, entity_id: str) -> Character | SceneObject | None:
        for character in self.characters:
            if character.id == entity_id:
                return character
        for obj in self.objects:
            if obj.id == entity_id:
                return obj
        return None

    def entity_ids(self) -> list[str]:
        return [row.id for row in self.characters] + [row.id for row in self.objects]

    def to_dict(self) -> dict:
        return {
            "number": self.number,
            "characters": [c.to_dict() for c in self.characters],
            "objects": [o.to_dict() for o in self.objects],
            "settings": [s.to_dict() for s in self.settings],
        }


dataclass_methods(ImageAnalysis)


@dataclass(init=False, repr=False, eq=False)
class CoT:
    images: list[ImageAnalysis] = field(default_factory=list)
    # None: the text has no Narrative Structure section at all
    narrative: list[NarrativeRow] | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list, compare=False, repr=False)

    def __init__(
        self,
        images: list[ImageAnalysis] | None = None,
        narrative: list[NarrativeRow] | None = None,
        diagnostics: list[Diagnostic] | None = None,
    ):
        self.images = [] if images is None else images
        self.narrative = narrative
        self.diagnostics = [] if diagnostics is None else diagnostics
        # what image() looks numbers up in: an attribute, not a dataclass field, so equality,
        # repr and asdict ignore it
        self._index: tuple[list[ImageAnalysis], int, dict[int, int]] | None = None

    def __reduce__(self) -> tuple:
        return reduce_dataclass(self)

    def image(self, number: int) -> ImageAnalysis | None:
        """The first image numbered ``number``, or None: O(1) through an index built on first use.

        The index (number -> position, an attribute but not a dataclass field, so
        equality, ``repr`` and ``asdict`` ignore it) is rebuilt whenever ``images``
        is another list or another length, or an entry it points to no longer holds
        that number; a list changed in place at the same length is otherwise seen only
        through a hit (an image replaced by one of a new number is found after
        :meth:`reindex`).
        """
        images = self.images
        index = self._index
        if index is None or index[0] is not images or index[1] != len(images):
            index = self._build_index()
        at = index[2].get(number)
        if at is None:
            return None
        image = images[at]
        if image.number != number:  # renumbered in place: look again
            at = self._build_index()[2].get(number)
            return None if at is None else images[at]
        return image

    def reindex(self) -> None:
        """Rebuild the index :meth:`image` uses (after changing ``images`` in place)."""
        self._build_index()

    def _build_index(self) -> tuple[list[ImageAnalysis], int, dict[int, int]]:
        images = self.images
        positions: dict[int, int] = {}
        for at, image in enumerate(images):
            positions.setdefault(image.number, at)
        index = (images, len(images), positions)
        self._index = index
        return index

    def entity_ids(self) -> set[str]:
        return {eid for image in self.images for eid in image.entity_ids()}

    def appearances(self) -> dict[str, list[int]]:
        """Entity id -> the image numbers it appears in, in order of first appearance."""
        # each entity's numbers as dict keys: insertion-ordered, and a number seen again is found at
        # once (a list's `in` made an entity in all of 10,000 images cost 10,000 x 10,000 steps)
        seen: dict[str, dict[int, None]] = {}
        for image in self.images:
            number = image.number
            for eid in image.entity_ids():
                frames = seen.get(eid)
                if frames is None:
                    seen[eid] = {number: None}
                else:
                    frames[number] = None
        return {eid: list(frames) for eid, frames in seen.items()}

    def phases(self) -> set[NarrativePhase]:
        return {row.kind for row in self.narrative or [] if row.kind is not None}

    def to_dict(self) -> dict:
        return {
            "images": [image.to_dict() for image in self.images],
            "narrative": [row.to_dict() for row in self.narrative] if self.narrative is not None else None,
        }


dataclass_methods(CoT)


def _box_cell(row: Character | SceneObject) -> str:
    return str(row.box) if row.box is not None else row.box_text


# -- the published tables ---------------------------------------------------------------------


@dataclass(init=False, repr=False, eq=False)
class TableSpec:
    kind: str  # "characters" | "objects" | "settings" | "narrative"
    title: str  # the ### heading text
    fields: tuple[str, ...]  # dataclass fields, in column order
    headers: tuple[str, ...]  # published column names, in order
    separator: str  # the published separator line, character for character
    aliases: dict[str, str]  # normalised header text -> field

    def __init__(
        self,
        kind: str,
        title: str,
        fields: tuple[str, ...],
        headers: tuple[str, ...],
        separator: str,
        aliases: dict[str, str],
    ):
        if COMPILED:  # frozen: set natively (compiled) or in the instance dict (Python), as Box does
            self.kind = kind
            self.title = title
            self.fields = fields
            self.headers = headers
            self.separator = separator
            self.aliases = aliases
        else:
            self.__dict__.update(
                kind=kind, title=title, fields=fields, headers=headers, separator=separator, aliases=aliases
            )

    def __reduce__(self) -> tuple:
        return reduce_dataclass(self)

    @property
    def header_line(self) -> str:
        return "| " + " | ".join(self.headers) + " |"


dataclass_methods(TableSpec, frozen=True)


_NOT_ALNUM: Final = re.compile(r"[\W_]+")


def norm_header(text: str) -> str:
    """Header text reduced to lower-case letters and digits (``Character ID`` -> ``characterid``)."""
    low = text.lower()
    joined = low.replace(" ", "")
    if joined.isalnum():  # str.isalnum is exactly re's [^\W_]: nothing else to remove
        return joined
    return _NOT_ALNUM.sub("", low)


def _aliases(fields: tuple[str, ...], headers: tuple[str, ...], extra: dict[str, str]) -> dict[str, str]:
    table = {norm_header(h): f for f, h in zip(fields, headers, strict=True)}
    table.update(extra)
    return table


_BOX_ALIASES: Final = {
    "bbox": "box",
    "box": "box",
    "boundingboxes": "box",
    "boundingboxx1y1x2y2": "box",
    "coordinates": "box",
}

CHARACTERS: Final = TableSpec(
    "characters",
    "Characters",
    ("id", "name", "description", "emotions", "actions", "narrative_function", "box"),
    ("Character ID", "Name", "Description", "Emotions", "Actions", "Narrative Function", "Bounding Box"),
    "|--------------|------|-------------|----------|---------|-------------------|--------------|",
    _aliases(
        ("id", "name", "description", "emotions", "actions", "narrative_function", "box"),
        ("Character ID", "Name", "Description", "Emotions", "Actions", "Narrative Function", "Bounding Box"),
        {
            "id": "id",
            "charid": "id",
            "character": "id",
            "emotion": "emotions",
            "action": "actions",
            **_BOX_ALIASES,
        },
    ),
)
OBJECTS: Final = TableSpec(
    "objects",
    "Objects",
    ("id", "description", "function", "interaction", "narrative_function", "box"),
    ("Object ID", "Description", "Function", "Interaction", "Narrative Function", "Bounding Box"),
    "|-----------|-------------|----------|------------|-------------------|--------------|",
    _aliases(
        ("id", "description", "function", "interaction", "narrative_function", "box"),
        ("Object ID", "Description", "Function", "Interaction", "Narrative Function", "Bounding Box"),
        {"id": "id", "objid": "id", "object": "id", "interactions": "interaction", **_BOX_ALIASES},
    ),
)
SETTINGS: Final = TableSpec(
    "settings",
    "Setting",
    ("element", "description", "mood", "time", "narrative_function"),
    ("Setting Element", "Description", "Mood", "Time", "Narrative Function"),
    "|-----------------|-------------|------|------|-------------------|",
    _aliases(
        ("element", "description", "mood", "time", "narrative_function"),
        ("Setting Element", "Description", "Mood", "Time", "Narrative Function"),
        {"element": "element", "setting": "element"},
    ),
)
NARRATIVE: Final = TableSpec(
    "narrative",
    "Narrative Structure",
    ("phase", "description", "key_events", "images_text"),
    ("Narrative Phase", "Description", "Key Events", "Images"),
    "|-----------------|-------------|-----------|--------|",
    _aliases(
        ("phase", "description", "key_events", "images_text"),
        ("Narrative Phase", "Description", "Key Events", "Images"),
        {
            "phase": "phase",
            "events": "key_events",
            "keyevent": "key_events",
            "image": "images_text",
            "frames": "images_text",
        },
    ),
)
TABLES: Final[dict[str, TableSpec]] = {spec.kind: spec for spec in (CHARACTERS, OBJECTS, SETTINGS, NARRATIVE)}
ROW_TYPES: Final = {
    "characters": Character,
    "objects": SceneObject,
    "settings": Setting,
    "narrative": NarrativeRow,
}


# -- rendering -------------------------------------------------------------------------------


def render_row(cells: list[str]) -> str:
    """A table row. A cell cannot hold the table's syntax: a ``|`` is written ``/`` and a line end
    (or another unprintable character that splits lines) a space, so the row reads back cell for cell."""
    return "| " + " | ".join(_cell(cell) for cell in cells) + " |"


def _cell(text: str) -> str:
    if "|" in text:
        text = text.replace("|", "/")
    if not text.isprintable():  # a line end, a tab, ...: line ends become spaces
        text = " ".join(text.splitlines())
    return text


def _render_table(lines: list[str], spec: TableSpec, rows) -> None:
    lines.append(spec.header_line)
    lines.append(spec.separator)
    lines.extend(render_row(row.cells()) for row in rows)


def render_cot(cot: CoT) -> str:
    """The canonical published layout (what the original ``cot_to_string`` wrote).

    Empty tables are written as a header and separator. Free text is not kept. There
    is no trailing newline. So that the tables read back to the same ids and boxes, a cell
    holding ``|`` has it written as ``/``, and a line end in a cell is written as a space.
    """
    lines: list[str] = []
    for image in cot.images:
        lines += [f"## Image {image.number}", ""]
        lines.append("### Characters")
        _render_table(lines, CHARACTERS, image.characters)
        lines += ["", "### Objects"]
        _render_table(lines, OBJECTS, image.objects)
        lines += ["", "### Setting"]
        _render_table(lines, SETTINGS, image.settings)
        lines += ["", ""]
    if cot.narrative is not None:
        lines += ["## Narrative Structure", ""]
        _render_table(lines, NARRATIVE, cot.narrative)
    return "\n".join(lines).rstrip()
