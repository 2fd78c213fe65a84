"""The storytelling reward beside online training: scored in worker processes, each component its own function.

GRPO scores every completion it samples (group size x prompts, each step). The reward of
:mod:`.reward` costs a few milliseconds a completion, all of it pure Python (parsing the
output, validating it, matching rows, the Hungarian assignment), so it is computed in a
pool of worker processes (``concurrent.futures``, ``--reward-workers``, default 2) while
the trainer's process waits on the futures rather than on the interpreter: a batch is cut
into one contiguous chunk per worker. Each worker holds the stories' references (parsed
once per story and worker) and gives exactly what :class:`~.reward.StoryScorer` gives in
the trainer's own process (``--reward-workers 0``); the tests compare both, number for number.

The workers are forked (``spawn`` where the platform cannot fork) when the pool is made,
all at once, before training starts: they inherit the stories instead of receiving them,
a script that calls :func:`~.grpo.train_grpo` needs no ``__main__`` guard, and no fork
happens while generation runs. A worker runs only the reward's Python (no torch, no CUDA).

TRL logs each reward function separately (``rewards/NAME/mean`` and ``/std`` in
``log.jsonl``) and sums them by weight, so :class:`OnlineReward` gives TRL:

``story`` (weight ``--w-story``)
    the storytelling reward's total: the structure gate applied (``--no-gate``: a
    component), then re-identification, grounding and boxes by their weights;
``structure``, ``reid``, ``grounding``, ``boxes`` (weight 0)
    its components, logged only (grounding is NaN, left out of its mean, where the
    reference has nothing to ground);
``judge`` (weight ``--w-judge``, only with ``--judge-endpoint``)
    a multimodal judge's scores behind any OpenAI-compatible server
    (:class:`JudgeReward`, the judge of ``storyreasoning evaluate judge``): the mean of its
    three 1-5 criteria mapped to [0, 1]. Under the gate a completion that is not
    well-structured scores 0 without being shown to the judge;
``ended`` (weight ``--w-ended``, 0 by default)
    1 for a completion that ended on its own (an end-of-turn token before
    ``--max-completion-length``), 0 for one the limit cut. A cut output is never
    well-structured, so this is a dense first step towards the gate: a model that never
    writes a well-structured story (the storytelling reward 0 for every completion of a
    group, hence no advantage and no gradient) still gets a signal from it.

One scoring serves every function of a batch: the first function TRL calls scores the
batch, the others read that result. The seconds the trainer waited for it are logged as
``reward_seconds`` (and ``judge_seconds``, ``judge_asked`` with a judge).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

from .reward import RewardWeights, StoryScorer, completion_text

#: The components logged beside the total, in this order (the ``scores`` tuple's after the total).
COMPONENTS = ("structure", "reid", "grounding", "boxes")


@dataclass(frozen=True)
class StorySpec:
    """What the reward needs of a story (its reference output, frame sizes and identity groups), picklable.

    It reads as a :class:`~storyreasoning.data.StorySample` to :class:`~.reward.StoryScorer`,
    without the frames.
    """

    reference: str
    sizes: tuple[tuple[int, int], ...]
    groups: tuple[str | None, ...]

    @classmethod
    def of(cls, sample) -> StorySpec:
        return cls(
            sample.output_text(),
            tuple(tuple(size) for size in sample.frame_sizes()),
            tuple(sample.frame_group(i) for i in range(sample.frame_count)),
        )

    @property
    def frame_count(self) -> int:
        return len(self.sizes)

    def telling(self) -> str:
        return self.reference

    def frame_sizes(self) -> list[tuple[int, int]]:
        return list(self.sizes)

    def frame_group(self, index: int) -> str | None:
        return self.groups[index]


#: ``(total, structure, reid, grounding or None, boxes)`` of one completion.
Scores = tuple[float, float, float, float | None, float]


class _Scorers:
    """The stories' scorers, each built on first use (in a worker, or in the trainer's process)."""

    def __init__(self, stories: Sequence[StorySpec], weights: RewardWeights) -> None:
        self.stories, self.weights, self.built = list(stories), weights, {}

    def __call__(self, index: int, text: str) -> Scores:
        scorer = self.built.get(index)
        if scorer is None:
            scorer = self.built[index] = StoryScorer(self.stories[index], self.weights)
        r = scorer(text)
        return (r.total, r.structure, r.reid, r.grounding, r.boxes)


_worker: _Scorers | None = None


def _start_worker(stories: Sequence[StorySpec], weights: RewardWeights, parent: int | None = None) -> None:
    import signal

    global _worker
    # Ctrl-C reaches the whole process group: the trainer stops and shuts the pool down, which ends the
    # workers; each one would otherwise stop with a KeyboardInterrupt traceback of its own
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker = _Scorers(stories, weights)
    if parent is not None:
        _leave_with(parent)


def _leave_with(parent: int, every: float = 0.2) -> None:
    """End this worker soon after the process that made it (``parent``) is gone, however it ended.

    A trainer killed outright (SIGKILL, the out-of-memory killer) never shuts its pool down, and a
    worker waiting for work would wait forever (it holds the write end of its own task pipe). A
    forked worker also holds what its parent held, the lock of the training folder among them, so
    the run could not be resumed: ``--out`` stayed held by a process that was no longer training.
    """
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _score_chunk(items: Sequence[tuple[int, str]]) -> tuple[int, list[Scores]]:
    """``(this worker's pid, scores)`` of a chunk of ``(story index, completion text)``."""
    assert _worker is not None, "the worker was not started"
    return os.getpid(), [_worker(index, text) for index, text in items]


def _pid(_) -> int:
    return os.getpid()


def _context():
    import multiprocessing

    return multiprocessing.get_context(
        "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    )


class RewardPool:
    """The storytelling reward of ``(story index, completion)`` items, in ``workers`` processes (0: here).

    Use it as a context manager, or call :meth:`close`. ``pids`` holds the processes that
    scored something (the trainer's own pid with ``workers=0``).
    """

    def __init__(self, stories: Sequence[StorySpec], weights: RewardWeights, workers: int = 2) -> None:
        self.workers = max(0, int(workers))
        self.local = _Scorers(stories, weights) if self.workers == 0 else None
        self.pids: set[int] = set()
        self.scored = 0
        self.executor = None
        if self.workers:
            from concurrent.futures import ProcessPoolExecutor

            self.executor = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=_context(), initializer=_start_worker,
                initargs=(list(stories), weights, os.getpid()),
            )  # fmt: skip
            list(self.executor.map(_pid, range(self.workers)))  # every worker started now

    def score(self, items: Sequence[tuple[int, str]]) -> list[Scores]:
        """The scores of ``items``, in their order."""
        items = list(items)
        self.scored += len(items)
        if self.executor is None:
            assert self.local is not None
            self.pids.add(os.getpid())
            return [self.local(index, text) for index, text in items]
        size = math.ceil(len(items) / self.workers) or 1
        chunks = [items[k : k + size] for k in range(0, len(items), size)]
        out: list[Scores] = []
        for pid, scores in self.executor.map(_score_chunk, chunks):
            self.pids.add(pid)
            out += scores
        return out

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None

    def __enter__(self) -> RewardPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class JudgeReward:
    """A judge's score of completions (:mod:`storyreasoning.evaluate.judge`), asked ``concurrency`` at a time.

    The score is the mean of the judge's three 1-5 criteria (creativity, coherence,
    grounding quality) mapped to [0, 1]; None (NaN in TRL's log, 0 in the sum) when the
    judge's answer was invalid twice or the server failed (``failed`` counts them). The
    requests are I/O: threads, not processes.
    """

    def __init__(self, judge, frames: Sequence[Sequence[object]], *, concurrency: int = 8) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.judge, self.frames = judge, list(frames)
        self.parts: dict[int, list[dict]] = {}
        self.asked = self.failed = 0
        self.executor = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="judge")

    def _one(self, index: int, text: str) -> float | None:
        from ..evaluate.judge import frame_parts
        from ..tell.base import TellError

        parts = self.parts.get(index)
        if parts is None:
            parts = self.parts[index] = frame_parts(self.frames[index])
        try:
            judgement = self.judge.story(self.frames[index], text, parts=parts)
        except TellError:
            judgement = None
        if judgement is None or not judgement.ok or not judgement.scores:
            self.failed += 1
            return None
        return (sum(judgement.scores.values()) / len(judgement.scores) - 1) / 4

    def score(self, items: Sequence[tuple[int, str]]) -> list[float | None]:
        self.asked += len(items)
        return list(self.executor.map(lambda item: self._one(*item), items))

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


class OnlineReward:
    """TRL's reward functions over a :class:`RewardPool`, with their weights (see the module docstring).

    The training dataset has a ``story`` column: each prompt's index into the pool's stories.
    ``stop_ids`` (the end-of-turn and padding token ids) decide ``ended``; set them once
    the trainer knows them.
    """

    def __init__(
        self, pool: RewardPool, *, w_story: float = 1.0, w_ended: float = 0.0, judge: JudgeReward | None = None,
        w_judge: float = 1.0, gate: bool = True,
    ) -> None:  # fmt: skip
        self.pool, self.judge = pool, judge
        self.w_story, self.w_ended, self.w_judge, self.gate = w_story, w_ended, w_judge, gate
        self.stop_ids: set[int] = set()
        self._batch: tuple[object, list[Scores], list[float | None]] | None = None

    def _score(self, completions, story, log_metric=None) -> tuple[list[Scores], list[float | None]]:
        """The batch's scores (computed once for all the functions); the seconds waited logged through TRL."""
        import time

        if self._batch is not None and self._batch[0] is completions:
            return self._batch[1], self._batch[2]
        items = [(int(k), completion_text(c)) for k, c in zip(story, completions, strict=True)]
        start = time.perf_counter()
        scores = self.pool.score(items)
        waited = {"reward_seconds": time.perf_counter() - start}
        judged: list[float | None] = []
        if self.judge is not None:  # under the gate, only well-structured completions are shown to the judge
            start = time.perf_counter()
            asked = [k for k, s in enumerate(scores) if s[1] > 0 or not self.gate]
            answers = dict(zip(asked, self.judge.score([items[k] for k in asked]), strict=True))
            judged = [answers.get(k, 0.0) for k in range(len(items))]
            waited.update(judge_seconds=time.perf_counter() - start, judge_asked=float(len(asked)))
        if log_metric is not None:  # TRL's hook: averaged over the logging steps into log.jsonl
            for name, value in waited.items():
                log_metric(name, value)
        self._batch = (completions, scores, judged)
        return scores, judged

    def _function(self, name: str, position: int):
        def reward(completions, story, log_metric=None, **kwargs) -> list[float | None]:
            return [scores[position] for scores in self._score(completions, story, log_metric)[0]]

        reward.__name__ = name
        return reward

    def functions(self) -> tuple[list, list[float]]:
        """``(reward functions, weights)`` for ``GRPOTrainer`` and ``GRPOConfig.reward_weights``."""
        funcs = [self._function("story", 0)]
        weights = [self.w_story]
        for k, name in enumerate(COMPONENTS, start=1):
            funcs.append(self._function(name, k))
            weights.append(0.0)
        if self.judge is not None:

            def judge(completions, story, log_metric=None, **kwargs) -> list[float | None]:
                return self._score(completions, story, log_metric)[1]

            funcs.append(judge)
            weights.append(self.w_judge)

        def ended(completions, completion_ids=None, **kwargs) -> list[float]:
            if completion_ids is None:  # not called by TRL's trainer: nothing says where a completion stopped
                raise ValueError("the ended reward needs completion_ids")
            return [float(bool(ids) and ids[-1] in self.stop_ids) for ids in completion_ids]

        funcs.append(ended)
        weights.append(self.w_ended)
        return funcs, weights


__all__ = ["COMPONENTS", "JudgeReward", "OnlineReward", "RewardPool", "Scores", "StorySpec"]
