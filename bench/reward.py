"""Preference-pair speed: the DPO reward over several candidates per story, and whole pair building.

QwenStoryteller2's DPO data had 4,178 synthetic stories besides the real ones, each with
several sampled outputs to rank. This script generates that many deterministic stories
(references from ``examples/outputs/lighthouse.txt`` with jittered boxes, every second
one a contrastive sequence whose frames come from different sources) and ``--candidates``
outputs per story (boxes moved, ids swapped across frames, sentences dropped), then times
the reward of every candidate and ``build_pairs`` end to end (scoring, choosing, writing
``pairs.jsonl``).

Run::

    python bench/reward.py                       # 4,178 stories x 4 candidates
    python bench/reward.py --stories 50          # a smoke run
    python bench/reward.py --out bench/results/reward.json
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "outputs" / "lighthouse.txt"
DEFAULT_OUT = Path(__file__).parent / "results" / "reward.json"


def _evaluate_bench():
    """The candidate generator of bench/evaluate.py (one recipe for both benchmarks)."""
    spec = importlib.util.spec_from_file_location("bench_evaluate", Path(__file__).parent / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_stories(n: int, candidates: int, seed: int):
    """``(stories, runs)``: StorySamples with 3 frames of 640x480 and RunOutputs with one output per story each."""
    import io

    from PIL import Image

    from storyreasoning.data.sample import StorySample
    from storyreasoning.evaluate.runs import RunOutputs

    gen = _evaluate_bench()
    base = EXAMPLE.read_text(encoding="utf-8")
    rng = random.Random(seed)
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (90, 90, 90)).save(buffer, format="PNG")
    frame = buffer.getvalue()
    stories, outputs = [], [{} for _ in range(candidates)]
    for i in range(n):
        reference = gen.jitter(base, rng, 20)
        cot, story = reference.split("</think>")
        meta = [{"source": f"film{i}-{k}"} for k in range(3)] if i % 2 else None
        sid = f"s{i:05d}"
        stories.append(
            StorySample(sid, [frame] * 3, cot.removeprefix("<think>").strip(), story.strip(), frame_meta=meta)
        )
        for k in range(candidates):
            text = gen.candidate(reference, rng)
            if text is not None:
                outputs[k][sid] = text
    runs = [RunOutputs(Path(f"run{k}"), f"run{k}", outputs[k]) for k in range(candidates)]
    return stories, runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stories", type=int, default=4178)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    from storyreasoning.train.pairs import build_pairs
    from storyreasoning.train.reward import StoryScorer

    n, k = args.stories, args.candidates
    start = time.perf_counter()
    stories, runs = make_stories(n, k, args.seed)
    rows = [{"step": "generate stories and outputs", "seconds": time.perf_counter() - start, "items": n * k}]

    start = time.perf_counter()
    scored = 0
    for sample in stories:
        score = StoryScorer(sample)  # the reference parsed once per story, as build_pairs does
        for run in runs:
            text = run.outputs.get(sample.story_id)
            if text is not None:
                score(text)
                scored += 1
    rows.append(
        {"step": "reward of every candidate", "seconds": time.perf_counter() - start, "items": scored}
    )

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        report = build_pairs(stories, runs, Path(tmp) / "pairs", include_reference=True)
        rows.append(
            {"step": "build_pairs (with the reference)", "seconds": time.perf_counter() - start, "items": n}
        )
    for row in rows:
        row["per_second"] = row["items"] / row["seconds"] if row["seconds"] else None

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Rewards for {n:,} stories x {k} candidates ({report.pairs:,} pairs)")
    for name in ("step", "seconds", "items", "items/s"):
        table.add_column(name, justify="left" if name == "step" else "right")
    for row in rows:
        table.add_row(row["step"], f"{row['seconds']:.2f}", f"{row['items']:,}", f"{row['per_second']:,.0f}")
    Console().print(table)

    from _common import write_results

    write_results(args.out, "reward", rows, argv, stories=n, candidates=k, pairs=report.pairs, seed=args.seed)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
