"""What every metric consumes (:class:`StoryPair`) and returns (:class:`Scores`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..format.stream import Telling, parse_output


@dataclass
class StoryPair:
    """One test story: the reference, the storyteller's output (None: missing) and the frame sizes.

    ``image_sizes`` are ``(width, height)`` of the story's frames in order; boxes in both
    tellings are pixels of those frames.
    """

    story_id: str
    reference: Telling
    candidate: Telling | None
    image_sizes: list[tuple[int, int]]

    @property
    def n_images(self) -> int:
        return len(self.image_sizes)

    @property
    def missing(self) -> bool:
        return self.candidate is None

    @classmethod
    def from_texts(
        cls, story_id: str, reference: str, candidate: str | None, image_sizes: list[tuple[int, int]]
    ) -> StoryPair:
        """Parse a reference output and a candidate output (raw model text, or None)."""
        return cls(
            story_id,
            parse_output(reference),
            None if candidate is None else parse_output(candidate),
            list(image_sizes),
        )

    @classmethod
    def from_sample(cls, sample, candidate: str | Telling | None) -> StoryPair:
        """The reference from a :class:`~storyreasoning.data.StorySample`, the candidate as text or Telling."""
        if isinstance(candidate, str):
            candidate = parse_output(candidate)
        return cls(sample.story_id, sample.telling(), candidate, sample.frame_sizes())


@dataclass
class Scores:
    """The result of one metric family over a set of stories.

    ``overall``: flat ``name -> value`` (for example ``"precision_micro"``);
    ``per_story``: ``story_id -> {name: value}`` (values may be None where undefined);
    ``conventions``: one line per rule a reader needs to interpret the numbers (empty
    sets, missing outputs, thresholds, tokenizer); ``extra``: data for plots and
    tables (distributions, per-pronoun counts), JSON-serialisable.
    """

    family: str
    overall: dict[str, float | None] = field(default_factory=dict)
    per_story: dict[str, dict[str, float | None]] = field(default_factory=dict)
    conventions: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "family": self.family,
            "overall": self.overall,
            "per_story": self.per_story,
            "conventions": self.conventions,
            "extra": self.extra,
        }
