"""Scoring many stories: each story's part of every metric family, then each family's scores.

Every family is computed in two steps. The per-story step (parse both outputs, read
the detections, match them, count; clean the story text for the language metrics) is
nearly all of the work; the summary over the stories (sums, means, the language
scorers) is a small part of it. :func:`story_parts` is the per-story step of every
chosen family at once, and :func:`summarize` the summaries, the same functions the
families' own entry points (``grounding(pairs)``, ``identity(pairs)``, …) are made of,
so a report comes out identical however the parts were computed.

:func:`score_jobs` runs the per-story step on raw texts (:class:`StoryJob`), in this
process or, for a large run, in a pool of worker processes (one per CPU) that parse
while this process reads the next stories. What comes back from a worker is small
(counts and rates, the two story texts), not the parsed tellings, which would cost more
to send than to parse; and it is all this process keeps of a story until the report is
written (at 20,000 stories, the run's peak memory).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from ..errors import StoryReasoningError, UsageError
from . import consistency, grounding, identity, language, original
from .pairs import Scores, StoryPair
from .processes import executor
from .runs import StoredOutput

POOL_THRESHOLD = 200
"""Runs with more stories than this are parsed in worker processes by default."""

CHUNK = 16
"""Stories sent to a worker at a time."""

AHEAD = 4
"""Chunks per worker sent before the oldest one's result is taken: enough that no worker waits for
this process to read the next stories, few enough that the stories read and not yet scored (their
texts) are not held all at once."""


@dataclass(frozen=True)
class StoryJob:
    """One story to score, as text: the reference as a raw output, the candidate's raw output
    or where to read it (None: missing) and the frames' ``(width, height)``.

    A candidate read from a run's files (:class:`~.runs.StoredOutput`) is read when the story
    is parsed, in the worker that scores it: the texts of a run are never all held at once."""

    story_id: str
    reference: str
    candidate: str | StoredOutput | None
    image_sizes: tuple[tuple[int, int], ...]

    def pair(self) -> StoryPair:
        candidate = self.candidate.read() if isinstance(self.candidate, StoredOutput) else self.candidate
        return StoryPair.from_texts(self.story_id, self.reference, candidate, list(self.image_sizes))


def story_parts(
    pair: StoryPair, families: Sequence[str], protocol: str = "default", *, tokenize: bool = False
) -> dict[str, object]:
    """The story's part of each family: its row (grounding, identity: packed, as the run holds it until
    the report; the original protocol's grounding row as a dict), its counts (consistency), its texts
    (language; with their regex tokens when ``tokenize``, for the python backend)."""
    parts: dict[str, object] = {}
    found = None  # the rows and their matching, found once for grounding and identity
    if "identity" in families or ("grounding" in families and protocol != "original"):
        found = grounding.story_detections(pair)
    for family in families:
        if family == "grounding":
            if protocol == "original":
                parts[family] = original.story_row(pair)
            else:
                parts[family] = grounding.GroundingRow.of(grounding.story_row(pair, found=found))
        elif family == "identity":
            parts[family] = identity.IdentityRow.of(identity.story_row(pair, found=found))
        elif family == "consistency":
            parts[family] = consistency.story_counts(pair)
        elif family == "language":
            parts[family] = language.story_texts(pair, tokenize=tokenize)
        else:
            raise UsageError(f"unknown metric family {family!r}")
    return parts


def _score_chunk(
    jobs: list[StoryJob], families: tuple[str, ...], protocol: str, tokenize: bool
) -> list[tuple[str, dict]]:
    return [(job.story_id, story_parts(job.pair(), families, protocol, tokenize=tokenize)) for job in jobs]


def default_workers(stories: int) -> int:
    """One process per CPU for more than :data:`POOL_THRESHOLD` stories; else 1 (this process)."""
    if stories <= POOL_THRESHOLD:
        return 1
    return max(1, min(os.cpu_count() or 1, -(-stories // CHUNK)))


class Pool:
    """Worker processes for :func:`score_jobs`, started when made.

    On Linux they are forked, so they start at once with what this process has
    imported; make the pool before starting threads (a progress bar, a background
    import), since a fork copies no thread but every lock a thread may hold, and give
    it the pipes to Java (``close_fds``) that its workers must not hold, and while Java
    loads, a lower priority (``nice``: :data:`.processes.BACKGROUND_NICE`).
    """

    def __init__(self, workers: int, *, close_fds: Sequence[int] = (), nice: int = 0) -> None:
        self.workers = workers
        self._executor = executor(workers, close_fds=close_fds, nice=nice)  # see .processes
        self._executor.submit(int).result()  # a fork context starts every worker on the first submit

    def submit(
        self, jobs: list[StoryJob], families: tuple[str, ...], protocol: str, tokenize: bool
    ) -> Future:
        return self._executor.submit(_score_chunk, jobs, families, protocol, tokenize)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def score_jobs(
    jobs: Iterable[StoryJob],
    families: Sequence[str],
    protocol: str = "default",
    *,
    pool: Pool | None = None,
    progress: Callable[[int], None] | None = None,
    tokenize: bool = False,
) -> list[tuple[str, dict[str, object]]]:
    """``(story_id, parts)`` of every job, in order: in ``pool``'s workers when given, else here.

    Jobs are sent to the workers as they are read from ``jobs`` (an iterator that reads
    a dataset overlaps the workers' parsing), :data:`AHEAD` chunks per worker ahead of the
    results taken; ``tokenize``: see :func:`story_parts`.
    """
    families = tuple(families)
    out: list[tuple[str, dict[str, object]]] = []
    if pool is None:
        for job in jobs:
            out.append((job.story_id, story_parts(job.pair(), families, protocol, tokenize=tokenize)))
            if progress:
                progress(1)
        return out
    sent: deque[Future] = deque()  # in order; at most AHEAD per worker

    def take() -> None:
        done = sent.popleft().result()
        out.extend(done)
        if progress:
            progress(len(done))

    chunk: list[StoryJob] = []
    try:
        for job in jobs:
            chunk.append(job)
            if len(chunk) == CHUNK:
                sent.append(pool.submit(chunk, families, protocol, tokenize))
                chunk = []
                if len(sent) >= AHEAD * pool.workers:
                    take()
        if chunk:
            sent.append(pool.submit(chunk, families, protocol, tokenize))
        while sent:
            take()
    except BrokenProcessPool:
        raise StoryReasoningError(
            "a worker process scoring the stories stopped unexpectedly (out of memory?); "
            "run again with --workers 1"
        ) from None
    return out


def summarize(
    items: Sequence[tuple[str, dict[str, object]]],
    families: Iterable[str],
    *,
    protocol: str = "default",
    language_backend: str = "auto",
    text_scorer: language.TextScorer | None = None,
    on_family: Callable[[str], None] | None = None,
    on_others: Callable[[dict[str, Scores]], None] | None = None,
    while_meteor: Callable[[dict[str, Scores]], None] | None = None,
    progress: language.Progress | None = None,
) -> dict[str, Scores]:
    """Each family's :class:`Scores` from the stories' parts, in the order of ``families``.

    With Java the language metrics start first (their tokenizer and METEOR are the longest
    path) and are finished last: the other families are summarized while METEOR scores in
    its JVM; without Java they come last. ``text_scorer``: a :class:`~.language.TextScorer`
    made earlier (its Java already loading); else one is made for ``language_backend``.
    ``on_others`` is called with the other families' scores, ``while_meteor`` after them
    while METEOR scores (``coco`` only): for work that does not need them (a plot).
    ``progress``: how the language metrics' steps show theirs (:data:`.language.Progress`).
    """
    families = tuple(families)
    results: dict[str, Scores] = {}
    finish: Callable[[], Scores] | None = None
    scorer: language.TextScorer | None = None
    missing = "exclude" if protocol == "original" else "zero"  # the original left missing outputs out
    texts = [(story_id, story["language"]) for story_id, story in items] if "language" in families else []
    if "language" in families:
        scorer = text_scorer
        if scorer is None:
            scored = any(t[1] is not None or missing == "zero" for _, t in texts)  # type: ignore[index]
            scorer = language.TextScorer(language_backend, tokenize=False, start=scored)

    def begin(scorer: language.TextScorer) -> Callable[[], Scores]:
        if on_family:
            on_family("language")
        return language.begin_summary(texts, scorer=scorer, missing=missing, progress=progress)  # type: ignore[arg-type]

    java = scorer is not None and scorer.backend == "coco"
    try:
        if scorer is not None and java:  # METEOR scores in its JVM while the others are summarized
            finish = begin(scorer)
        _summarize_others(items, families, protocol, missing, results, on_family)
        if on_others is not None:  # a plot drawn in another process while the language metrics are computed
            on_others(dict(results))
        if scorer is not None and not java:
            finish = begin(scorer)
        if finish is not None:
            if while_meteor is not None and java:
                while_meteor(dict(results))
            results["language"] = finish()
    finally:
        if scorer is not None and scorer is not text_scorer:
            scorer.close()
    return {family: results[family] for family in families}


def _summarize_others(
    items: Sequence[tuple[str, dict[str, object]]],
    families: tuple[str, ...],
    protocol: str,
    missing: str,
    results: dict[str, Scores],
    on_family: Callable[[str], None] | None,
) -> None:
    """Every family but the language metrics, into ``results``; ``missing``: how the consistency family
    counts a missing output (:func:`.consistency.consistency`)."""
    for family in families:
        if family == "language":
            continue
        if on_family:
            on_family(family)
        parts = [(story_id, story[family]) for story_id, story in items]
        if family == "grounding":
            module = original if protocol == "original" else grounding
            results[family] = module.summarize(parts)  # type: ignore[arg-type]
        elif family == "identity":
            results[family] = identity.summarize(parts)  # type: ignore[arg-type]
        elif family == "consistency":
            results[family] = consistency.summarize(parts, missing=missing)  # type: ignore[arg-type]
        else:
            raise UsageError(f"unknown metric family {family!r}")


__all__ = [
    "CHUNK",
    "POOL_THRESHOLD",
    "Pool",
    "StoryJob",
    "default_workers",
    "score_jobs",
    "story_parts",
    "summarize",
]
