"""The storyteller interface every backend implements.

A :class:`Teller` turns a sequence of images into a model output. Backends implement
:meth:`Teller.stream` (yield text chunks as they are produced); :meth:`Teller.tell`
collects the stream, parses it with :class:`~storyreasoning.format.StreamParser` and
returns a :class:`~storyreasoning.format.Telling` whose ``meta`` says who produced it,
how (sampling, pixel budget) and how long it took. :meth:`Teller.tell_many` tells many
stories; backends that can batch (local weights) or run requests concurrently
(servers) override it.

When generation fails part way (a server drops the connection mid-stream), the error
is a :class:`TellError` that carries the text produced so far in ``partial``: nothing
the model wrote is lost.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StoryReasoningError, UsageError
from ..format.prompts import DEFAULT_PROMPT, SYSTEM_PROMPT
from ..format.stream import StreamParser, Telling

# The published model cards' sampling.
DEFAULT_TEMPERATURE = 0.7
DEFAULT_TOP_P = 0.9
DEFAULT_MAX_NEW_TOKENS = 4096

BASELINE_LABEL = "baseline storyteller (OpenCV detectors and colour re-identification, no model weights)"


def teller_label(teller) -> str:
    """How a teller is named to a person: the baseline says what it is, others their backend and model."""
    return BASELINE_LABEL if teller.backend == "baseline" else f"{teller.backend}: {teller.model}"


@dataclass(frozen=True)
class Sampling:
    """Sampling settings, with the model cards' defaults. ``temperature=0`` means greedy."""

    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    seed: int | None = None

    def __post_init__(self) -> None:  # a wrong value is the caller's (--temperature …): a UsageError, exit 2
        if not (math.isfinite(self.temperature) and self.temperature >= 0):  # NaN is no temperature
            raise UsageError(
                f"temperature must be a number of at least 0 (0 is greedy), got {self.temperature:g}"
            )
        if not 0 < self.top_p <= 1:
            raise UsageError(f"top-p must be in (0, 1] (1 keeps every token), got {self.top_p:g}")
        if self.max_new_tokens < 1:
            raise UsageError(f"max new tokens must be at least 1, got {self.max_new_tokens}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Prompt:
    """What the storyteller is asked: the user prompt and the system prompt (None: no system turn)."""

    text: str | None = DEFAULT_PROMPT
    system: str | None = SYSTEM_PROMPT
    order: str = "images-first"


class TellError(StoryReasoningError):
    """Generation failed; ``partial`` holds whatever text was produced before the failure.

    ``at_endpoint`` says the failure is the server's, not the story's (no server, a
    timeout, a refused key, the whole-story deadline, 5xx after the retries): the next
    story would most likely fail the same way, so a batch run stops after a few in a row.
    """

    def __init__(self, message: str, partial: str = "", *, at_endpoint: bool = False) -> None:
        super().__init__(message)
        self.partial = partial
        self.at_endpoint = at_endpoint


@dataclass
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    seconds: float = 0.0
    first_token_seconds: float | None = None
    finish_reason: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Story:
    """One story to tell in a batch: an id and its images (paths, bytes, PIL images or Frames)."""

    story_id: str
    images: Sequence[Any]
    extra: dict = field(default_factory=dict)


class Teller:
    """Base class: subclasses implement :meth:`stream` (and may override :meth:`tell_many`)."""

    backend: str = "base"
    model: str = ""

    def stream(
        self, images: Sequence[Any], *, prompt: Prompt = Prompt(), sampling: Sampling = Sampling()
    ) -> Iterator[str]:  # pragma: no cover - abstract
        """Yield the output's text chunks as they are produced; fill :attr:`last_usage`."""
        raise NotImplementedError

    last_usage: Usage | None = None

    def check(self) -> None:
        """Raise a :class:`TellError` (``at_endpoint``) when the teller cannot work at all now (its
        server is down); a batch run asks before its first story. Local tellers have nothing to check."""

    def describe(self) -> dict:
        """What a run manifest records about this teller (backend, model, pixel budget, …)."""
        return {"backend": self.backend, "model": self.model}

    def tell(
        self, images: Sequence[Any], *, prompt: Prompt = Prompt(), sampling: Sampling = Sampling()
    ) -> Telling:
        """Generate, parse and return the output; ``telling.meta`` records backend, model, sampling and usage."""
        parser = StreamParser()
        start = time.perf_counter()
        first: float | None = None
        try:
            for chunk in self.stream(images, prompt=prompt, sampling=sampling):
                if first is None and chunk:
                    first = time.perf_counter() - start
                parser.feed(chunk)
        except TellError as exc:
            if not exc.partial:
                exc.partial = parser.text
            raise
        parser.close()
        telling = parser.result()
        usage = self.last_usage or Usage()
        usage.seconds = time.perf_counter() - start
        if usage.first_token_seconds is None:
            usage.first_token_seconds = first
        telling.meta = {
            **self.describe(),
            "sampling": sampling.to_dict(),
            "usage": usage.to_dict(),
            "images": len(images),
        }
        return telling

    def tell_many(
        self, stories: Iterable[Story], *, prompt: Prompt = Prompt(), sampling: Sampling = Sampling()
    ) -> Iterator[tuple[Story, Telling | TellError]]:
        """Tell each story; yields ``(story, telling)`` or ``(story, error)`` as each finishes (any order)."""
        for story in stories:
            try:
                yield story, self.tell(story.images, prompt=prompt, sampling=sampling)
            except TellError as exc:
                yield story, exc
            except StoryReasoningError as exc:  # an unreadable image, …: the story's failure, not the run's
                yield story, TellError(str(exc))

    def close(self) -> None:
        """Release what the teller holds (a model, a connection pool)."""

    def __enter__(self) -> Teller:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def image_label(image: Any) -> str:
    """A short name for an image in messages (its file name when it has one)."""
    path = getattr(image, "path", None) if not isinstance(image, (str, Path)) else image
    return Path(path).name if path else type(image).__name__
