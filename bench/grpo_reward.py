"""GRPO's reward: what the trainer waits for each step, scored in its own process or in worker processes.

``train grpo`` scores every completion of a step (prompts x group size) with the
storytelling reward before it can compute the advantages. This script builds
``--stories`` deterministic stories with ``--group`` candidate completions each (the
generator of ``bench/reward.py``: boxes moved, ids swapped, sentences dropped), cuts them
into steps of ``--prompts`` stories, and times the scoring of every step as the trainer
sees it (wall clock from asking to having every score), in the trainer's process
(``--reward-workers 0``) and in pools of ``--workers`` processes, round after round in
turn so the machine's load falls on all alike. Every pool's scores are checked equal,
number for number, to the in-process ones. The table gives the best and median step,
milliseconds per completion, the speed-up over in-process and the trainer's own CPU time
per step (what scoring takes from the trainer's process: all of it in-process, only the
pickling of the texts with workers). The wall time gains only where cores are idle: on a
loaded 2-core machine the workers compete with everything else for the same cores.

Run::

    python bench/grpo_reward.py                      # 64 stories, groups of 8, 8 prompts a step
    python bench/grpo_reward.py --workers 1 2 4 --rounds 5 --out bench/results/grpo_reward.json
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

DEFAULT_OUT = Path(__file__).parent / "results" / "grpo_reward.json"


def _reward_bench():
    spec = importlib.util.spec_from_file_location("bench_reward", Path(__file__).parent / "reward.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stories", type=int, default=64)
    parser.add_argument("--group", type=int, default=8, help="completions per story (the group size)")
    parser.add_argument("--prompts", type=int, default=8, help="stories per step")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    from storyreasoning.train.reward import RewardWeights
    from storyreasoning.train.reward_pool import RewardPool, StorySpec

    stories, runs = _reward_bench().make_stories(args.stories, args.group, args.seed)
    specs = [StorySpec.of(s) for s in stories]
    steps: list[list[tuple[int, str]]] = []
    for first in range(0, len(stories), args.prompts):
        step = []
        for k in range(first, min(first + args.prompts, len(stories))):
            step += [
                (k, run.outputs[stories[k].story_id]) for run in runs if stories[k].story_id in run.outputs
            ]
        steps.append(step)
    completions = sum(len(step) for step in steps)

    pools = {0: RewardPool(specs, RewardWeights(), workers=0)}
    pools.update({w: RewardPool(specs, RewardWeights(), workers=w) for w in args.workers if w > 0})
    times: dict[int, list[float]] = {w: [] for w in pools}
    cpu: dict[int, list[float]] = {w: [] for w in pools}  # the trainer's own CPU time while it waits
    reference = None
    try:
        for _ in range(args.rounds):
            for workers, pool in pools.items():
                scores = []
                for step in steps:
                    start, busy = time.perf_counter(), time.process_time()
                    scores += pool.score(step)
                    times[workers].append(time.perf_counter() - start)
                    cpu[workers].append(time.process_time() - busy)
                if reference is None:
                    reference = scores
                elif scores != reference:
                    raise SystemExit(
                        f"the pool of {workers} workers scored differently from the trainer's process"
                    )
    finally:
        for pool in pools.values():
            pool.close()

    base = statistics.median(times[0])
    rows = []
    for workers, seconds in times.items():
        rows.append({
            "workers": workers,
            "best_step_ms": min(seconds) * 1e3,
            "median_step_ms": statistics.median(seconds) * 1e3,
            "ms_per_completion": statistics.median(seconds) * 1e3 * len(steps) / completions,
            "speedup": base / statistics.median(seconds),
            "trainer_cpu_ms": statistics.median(cpu[workers]) * 1e3,
            "identical": True,
        })  # fmt: skip

    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Reward of a GRPO step: {args.prompts} stories x {args.group} completions, {len(steps)} steps x "
        f"{args.rounds} rounds, scores identical to in-process"
    )
    for name in (
        "reward workers",
        "best step ms",
        "median step ms",
        "ms / completion",
        "speed-up",
        "trainer CPU ms",
    ):
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(
            "0 (in-process)" if row["workers"] == 0 else str(row["workers"]), f"{row['best_step_ms']:.1f}",
            f"{row['median_step_ms']:.1f}", f"{row['ms_per_completion']:.2f}", f"{row['speedup']:.2f}x",
            f"{row['trainer_cpu_ms']:.1f}",
        )  # fmt: skip
    Console().print(table)

    from _common import write_results

    write_results(args.out, "grpo_reward", rows, argv, stories=args.stories, group=args.group,
                  prompts=args.prompts, rounds=args.rounds, seed=args.seed)  # fmt: skip
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
