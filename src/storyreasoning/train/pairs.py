"""Preference pairs for DPO: several outputs per story, scored by the reward, best against worst.

QwenStoryteller2 trained on "offline preference pairs generated from the reward
function". Here the outputs come from runs (``storyreasoning tell-dataset`` folders, or
folders of ``{story_id}.txt``), for example the same model sampled with several seeds,
over real stories and over contrastive sequences (``storyreasoning data contrastive``);
the dataset's own reference output can join as one more candidate. For each story every
candidate is scored with :class:`~storyreasoning.train.reward.StoryScorer`; the best
becomes ``chosen`` and the worst ``rejected`` when their rewards differ by at least
``min_margin``. Ties keep the earlier candidate (runs in the order given, the reference
last), so the same inputs always give the same pairs.

The pairs folder:

``pairs.jsonl``
    one pair per line: ``story_id``, ``chosen``/``rejected`` (raw outputs),
    ``chosen_from``/``rejected_from`` (run labels or ``reference``), their rewards with
    all components, and every candidate's total.
``manifest.json``
    the dataset (source, split), the runs, the reward weights, and counts: stories seen,
    pairs made, stories skipped for too few candidates or too small a margin.

``storyreasoning train dpo`` reads the folder back with the dataset for the frames.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import UsageError
from .reward import RewardWeights, StoryScorer

PAIRS = "pairs.jsonl"
MANIFEST = "manifest.json"
REFERENCE = "reference"


@dataclass
class PairReport:
    stories: int = 0
    pairs: int = 0
    too_few: list[str] = field(default_factory=list)  # fewer than two candidates
    too_close: list[str] = field(default_factory=list)  # best and worst within the margin
    not_in_dataset: int = 0  # outputs for story ids the dataset does not hold

    def to_dict(self) -> dict:
        return asdict(self)


def build_pairs(
    stories,
    runs: Sequence,
    out: Path,
    *,
    include_reference: bool = False,
    min_margin: float = 0.05,
    weights: RewardWeights = RewardWeights(),
    dataset: dict | None = None,
    progress: Callable[[int], None] | None = None,
) -> PairReport:
    """Score every candidate of every story and write the pairs folder ``out``.

    ``stories`` is a story dataset; ``runs`` are :class:`~storyreasoning.evaluate.runs.RunOutputs`.
    """
    if not runs and not include_reference:
        raise UsageError("no candidates: give at least one run (or two, or one with --include-reference)")
    if min_margin < 0:
        raise UsageError(f"the margin must not be negative, got {min_margin}")
    labels = [run.label for run in runs]
    if len(set(labels)) != len(labels):
        raise UsageError(
            f"two runs share the label {next(x for x in labels if labels.count(x) > 1)!r}; rename one"
        )
    out.mkdir(parents=True, exist_ok=True)
    report = PairReport()
    known = set()
    tmp = out / (PAIRS + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for sample in stories:
            known.add(sample.story_id)
            report.stories += 1
            candidates = [
                (run.label, run.outputs[sample.story_id]) for run in runs if sample.story_id in run.outputs
            ]
            if include_reference:
                candidates.append((REFERENCE, sample.output_text()))
            if progress:
                progress(1)
            if len(candidates) < 2:
                report.too_few.append(sample.story_id)
                continue
            score = StoryScorer(sample, weights)
            scored = [(label, text, score(text)) for label, text in candidates]
            best = max(range(len(scored)), key=lambda k: (scored[k][2].total, -k))
            worst = min(range(len(scored)), key=lambda k: (scored[k][2].total, k))
            margin = scored[best][2].total - scored[worst][2].total
            if best == worst or margin < min_margin or margin <= 0:
                report.too_close.append(sample.story_id)
                continue
            record = {
                "story_id": sample.story_id,
                "chosen": scored[best][1],
                "rejected": scored[worst][1],
                "chosen_from": scored[best][0],
                "rejected_from": scored[worst][0],
                "chosen_reward": scored[best][2].to_dict(),
                "rejected_reward": scored[worst][2].to_dict(),
                "margin": margin,
                "candidates": {label: reward.total for label, _, reward in scored},
            }
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            report.pairs += 1
    tmp.replace(out / PAIRS)
    report.not_in_dataset = len({sid for run in runs for sid in run.outputs} - known)
    manifest = {
        "kind": "preference-pairs",
        "dataset": dataset or {},
        "runs": [run.describe() for run in runs],
        "include_reference": include_reference,
        "min_margin": min_margin,
        "weights": asdict(weights),
        "report": report.to_dict(),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return report


def read_pairs(folder: str | Path) -> tuple[dict, list[dict]]:
    """``(manifest, pairs)`` of a pairs folder, or a clear error."""
    folder = Path(folder)
    if not (folder / PAIRS).is_file() or not (folder / MANIFEST).is_file():
        raise UsageError(
            f"{folder} is not a pairs folder (no {PAIRS} and {MANIFEST}); make one with storyreasoning train pairs"
        )
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    pairs = []
    for n, line in enumerate((folder / PAIRS).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            pairs.append(json.loads(line))
        except json.JSONDecodeError:
            raise UsageError(f"{folder / PAIRS} line {n} is not JSON; rebuild the pairs") from None
    return manifest, pairs


__all__ = ["MANIFEST", "PAIRS", "REFERENCE", "PairReport", "build_pairs", "read_pairs"]
