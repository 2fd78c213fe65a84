"""Pronouns in a grounded story, and whether each one is grounded.

QwenStoryteller2 reports pronoun grounding per pronoun ("Pronoun Grounding: Significant
improvements across all pronoun types (he: 90.1%→99.1%, she: 91.1%→98.6%, they:
47.6%→68.8%)", its model card) without defining it. The only definition is the
original dataset-statistics code (``identify_ungrounded_entities``, described in
``reference/field-notes.md``): pronouns are found in the tag-stripped text, and "a
pronoun counts as grounded only if the **entire** content of a ``<gdo char#…>`` tag
equals it (regex ``<gdo char\\d+[^>]*>(.*?)</gdo>``)". Only character tags count there,
so a correct ``<gdo obj2>its</gdo>`` is "ungrounded", the likely cause of the paper's odd
"its" result. We therefore judge every occurrence under two rules:

* ``char`` (the original's rule): the occurrence lies inside a ``<gdo>`` span that names
  at least one ``char`` id;
* ``any``: the occurrence lies inside a ``<gdo>`` span that names any well-formed entity
  id (``char``, ``obj``, ``bg`` or ``lm``).

Each occurrence also records whether the span's whole text is the pronoun
(:attr:`PronounHit.whole_span`), so the original's stricter "entire content" match can
be reproduced (``match="whole"``). Two further differences from the original, both
deliberate: occurrences are judged one by one by position (the original subtracted
counts: ungrounded = max(0, total − grounded)), and a ``<gdo obj1 char2>`` span counts
for ``char`` (the original's regex needed the *first* id to be a character).

Detection is a rule-based tokenizer, fully offline (the original used spaCy):

* the ten pronouns of :data:`PRONOUNS`, case-insensitively, as whole words: a match
  may not touch a letter, digit or underscore on either side, and a hyphen joining it
  to a word makes it part of that word (``she-wolf``, ``he-man`` are not pronouns;
  ``--he`` and ``he--`` are);
* contractions count as the pronoun they start with: ``it's``, ``he'd``, ``they're``,
  ``she'll``, with a straight or a typographic apostrophe (``it’s``) — spaCy, which the
  original used, splits ``it's`` into ``it`` + ``'s`` and counts the ``it``;
* ``its`` and ``it's`` are different words: ``its`` counts as ``its``, ``it's`` as ``it``;
* longer words are never split: ``the``, ``here``, ``hers``, ``themselves``, ``itself``
  and ``Shelby`` contain no pronoun.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..format.cot import id_kind
from ..format.story import GroundedStory, Span

PRONOUNS: tuple[str, ...] = ("he", "she", "they", "his", "her", "their", "its", "him", "them", "it")
"""The pronouns QwenStoryteller2's evaluation reports, in a stable order."""

RULES: tuple[str, ...] = ("char", "any")
"""The grounding rules: a ``<gdo>`` span naming a character id, or naming any entity id."""

# Longest alternatives first, so "their" is tried before "the…" prefixes of it.
_ALTERNATIVES = "|".join(sorted(PRONOUNS, key=len, reverse=True))
_PRONOUN_RE = re.compile(rf"(?<!\w)(?<!\w-)(?:{_ALTERNATIVES})(?!\w)(?!-\w)", re.IGNORECASE)


def find_pronouns(text: str) -> list[tuple[str, int, int]]:
    """``(pronoun, start, end)`` of every pronoun in ``text``; ``pronoun`` is lower-case.

    ``text[start:end]`` is the pronoun as written (``"She"``, ``"IT"``).
    """
    return [(m.group().lower(), m.start(), m.end()) for m in _PRONOUN_RE.finditer(text)]


@dataclass(frozen=True)
class PronounHit:
    """One pronoun occurrence in a story's plain text.

    ``start``/``end`` index :meth:`GroundedStory.plain_text`. ``kind`` and ``ids`` are
    those of the tagged span containing the whole occurrence (None and ``()`` when it
    lies in untagged text); ``whole_span`` is True when that span's text, stripped, is
    the pronoun and nothing else.
    """

    pronoun: str
    start: int
    end: int
    text: str
    image: int | None
    kind: str | None = None
    ids: tuple[str, ...] = ()
    whole_span: bool = False

    def grounded(self, rule: str = "char", *, match: str = "inside") -> bool:
        """Is this occurrence grounded under ``rule`` (``"char"`` or ``"any"``)?

        ``match="inside"`` (ours): the occurrence lies inside the span;
        ``match="whole"`` (the original's): the span's whole text is the pronoun.
        """
        if rule not in RULES:
            raise ValueError(f"unknown pronoun rule {rule!r}; use one of {', '.join(RULES)}")
        if match not in ("inside", "whole"):
            raise ValueError(f"unknown pronoun match {match!r}; use 'inside' or 'whole'")
        if self.kind != "gdo" or (match == "whole" and not self.whole_span):
            return False
        by_char, by_any = _grounds(self.ids)
        return by_char if rule == "char" else by_any


def _is_whole(span: Span | None, pronoun: str) -> bool:
    """Is ``span``'s whole text, stripped, the (lower-case) ``pronoun``: the original's match."""
    return span is not None and span.text.strip().lower() == pronoun


def _grounds(ids: Iterable[str]) -> tuple[bool, bool]:
    """Whether a ``<gdo>`` span naming ``ids`` grounds the pronouns inside it under rule ``char``
    (a character id among them) and under rule ``any`` (any well-formed entity id)."""
    kinds = [id_kind(eid) for eid in ids]
    return "char" in kinds, any(k is not None for k in kinds)


def segment_layout(parts: Iterable[str | Span]) -> tuple[str, list[tuple[int, int, Span]]]:
    """The segment's stripped plain text and the ``(start, end, span)`` ranges within it."""
    pieces: list[str] = []
    ranges: list[tuple[int, int, Span]] = []
    pos = 0
    for part in parts:
        text = part.text if isinstance(part, Span) else part
        if isinstance(part, Span):
            ranges.append((pos, pos + len(text), part))
        pieces.append(text)
        pos += len(text)
    raw = "".join(pieces)
    lead = len(raw) - len(raw.lstrip())
    plain = raw.strip()
    return plain, [(a - lead, b - lead, span) for a, b, span in ranges]


def _occurrences(story: GroundedStory) -> Iterator[tuple[int, str, re.Match, Span | None, int | None]]:
    """``(offset, plain, match, span, image)`` of every pronoun in ``story``: the segment's offset in
    ``story.plain_text()``, its stripped text, the pronoun's match in it, the tagged span that
    contains the whole occurrence (None: untagged text) and the segment's image."""
    offset = 0
    first = True
    for segment in story.segments:
        plain, ranges = segment_layout(segment.parts)
        if not plain:
            continue
        if not first:
            offset += 2  # the "\n\n" between segments
        first = False
        for m in _PRONOUN_RE.finditer(plain):
            start, end = m.span()
            containing = next((span for a, b, span in ranges if a <= start and end <= b), None)
            yield offset, plain, m, containing, segment.image
        offset += len(plain)


def story_pronouns(story: GroundedStory) -> list[PronounHit]:
    """Every pronoun of ``story``'s plain text, with the span (if any) that contains it.

    Offsets index ``story.plain_text()``: segments stripped and joined by a blank line,
    empty segments left out, exactly as that method builds the text.
    """
    hits: list[PronounHit] = []
    for offset, plain, m, containing, image in _occurrences(story):
        pronoun = m.group().lower()
        start, end = m.span()
        hits.append(
            PronounHit(
                pronoun=pronoun,
                start=offset + start,
                end=offset + end,
                text=plain[start:end],
                image=image,
                kind=containing.kind if containing else None,
                ids=containing.ids if containing else (),
                whole_span=_is_whole(containing, pronoun),
            )
        )
    return hits


@dataclass
class PronounCounts:
    """Occurrences of one pronoun and how many are grounded under each rule."""

    total: int = 0
    char: int = 0
    any: int = 0

    def __reduce__(self):
        # three numbers, not an object's state: a story's counts cross from a scoring worker in
        # ten of these per telling, and rebuilding from the state dict costs twice as much
        return PronounCounts, (self.total, self.char, self.any)

    def add(self, other: PronounCounts) -> None:
        self.total += other.total
        self.char += other.char
        self.any += other.any

    def rate(self, rule: str) -> float | None:
        """The grounded share under ``rule``; None when the pronoun never occurs."""
        return getattr(self, rule) / self.total if self.total else None

    def to_dict(self) -> dict[str, int | float | None]:
        """Counts and rates: ``total``, ``char``, ``any``, ``rate_char``, ``rate_any`` (None: no occurrence)."""
        return {
            "total": self.total,
            "char": self.char,
            "any": self.any,
            "rate_char": self.rate("char"),
            "rate_any": self.rate("any"),
        }


def count_pronouns(hits: Iterable[PronounHit], *, match: str = "inside") -> dict[str, PronounCounts]:
    """Per pronoun (every one of :data:`PRONOUNS`, in order): occurrences and grounded counts."""
    counts = {p: PronounCounts() for p in PRONOUNS}
    for hit in hits:
        c = counts[hit.pronoun]
        c.total += 1
        c.char += hit.grounded("char", match=match)
        c.any += hit.grounded("any", match=match)
    return counts


def pronoun_counts(story: GroundedStory, *, match: str = "inside") -> dict[str, PronounCounts]:
    """``count_pronouns(story_pronouns(story), match=match)``, without making each occurrence's
    :class:`PronounHit` (evaluation counts every telling's pronouns and keeps only the counts)."""
    if match not in ("inside", "whole"):
        raise ValueError(f"unknown pronoun match {match!r}; use 'inside' or 'whole'")
    counts = {p: PronounCounts() for p in PRONOUNS}
    rules: dict[int, tuple[bool, bool]] = {}  # id(span) -> grounded under char, under any
    for _, _, m, containing, _ in _occurrences(story):
        pronoun = m.group().lower()
        c = counts[pronoun]
        c.total += 1
        if containing is None or containing.kind != "gdo":
            continue
        if match == "whole" and not _is_whole(containing, pronoun):
            continue
        grounded = rules.get(id(containing))
        if grounded is None:
            grounded = rules[id(containing)] = _grounds(containing.ids)
        c.char += grounded[0]
        c.any += grounded[1]
    return counts
