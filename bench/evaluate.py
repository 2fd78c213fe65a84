"""Evaluation speed: every metric family over a test split's worth of stories.

The StoryReasoning test split has 626 stories. This script generates that many
deterministic reference/candidate pairs from ``examples/outputs/lighthouse.txt`` (boxes
jittered, some ids swapped across frames, some sentences dropped, a share of outputs
missing), then times each metric family over all of them, as ``storyreasoning
evaluate`` runs them: grounding (default and original protocols), identity,
consistency, and language (pycocoevalcap with Java when available, and the pure-Python
fallback). The Java tools start once per run, so their start-up is part of the
language rows.

Run::

    python bench/evaluate.py                  # 626 stories
    python bench/evaluate.py --stories 50     # a smoke run
    python bench/evaluate.py --out bench/results/evaluate.json
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "outputs" / "lighthouse.txt"
DEFAULT_OUT = Path(__file__).parent / "results" / "evaluate.json"
BOX = re.compile(r"\| (\d+),(\d+),(\d+),(\d+) \|")


def jitter(text: str, rng: random.Random, amount: int) -> str:
    def move(m: re.Match) -> str:
        x1, y1, x2, y2 = (int(v) for v in m.groups())
        dx, dy = rng.randint(-amount, amount), rng.randint(-amount, amount)
        x1, x2 = max(0, x1 + dx), min(639, x2 + dx)
        y1, y2 = max(0, y1 + dy), min(479, y2 + dy)
        return f"| {x1},{y1},{max(x1 + 1, x2)},{max(y1 + 1, y2)} |"

    return BOX.sub(move, text)


def candidate(reference: str, rng: random.Random) -> str | None:
    roll = rng.random()
    if roll < 0.03:
        return None  # missing output
    text = jitter(reference, rng, rng.choice((2, 10, 40)))
    if roll < 0.2:
        text = text.replace("char2", "charX").replace("char1", "char2").replace("charX", "char1")
    sentences = text.split(". ")
    if len(sentences) > 4:
        del sentences[rng.randrange(1, len(sentences) - 1)]
    return ". ".join(sentences)


def build_pairs(n: int, seed: int):
    from storyreasoning.evaluate import StoryPair

    base = EXAMPLE.read_text(encoding="utf-8")
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        reference = jitter(base, rng, 20)
        pairs.append(
            StoryPair.from_texts(f"s{i:04d}", reference, candidate(reference, rng), [(640, 480)] * 3)
        )
    return pairs


def timed(label: str, fn, n: int) -> dict:
    start = time.perf_counter()
    scores = fn()
    seconds = time.perf_counter() - start
    return {
        "metric": label,
        "seconds": seconds,
        "stories_per_second": n / seconds if seconds else None,
        "signature": scores.extra.get("signature") if hasattr(scores, "extra") else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stories", type=int, default=626)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-java", action="store_true", help="skip the pycocoevalcap (Java) row")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    from storyreasoning.evaluate.consistency import consistency
    from storyreasoning.evaluate.grounding import grounding
    from storyreasoning.evaluate.identity import identity
    from storyreasoning.evaluate.language import language

    n = args.stories
    start = time.perf_counter()
    pairs = build_pairs(n, args.seed)
    rows = [
        {
            "metric": "parse references and outputs",
            "seconds": time.perf_counter() - start,
            "stories_per_second": n / (time.perf_counter() - start),
            "signature": None,
        }
    ]
    rows.append(timed("grounding (default)", lambda: grounding(pairs), n))
    rows.append(timed("grounding (original)", lambda: grounding(pairs, protocol="original"), n))
    rows.append(timed("identity", lambda: identity(pairs), n))
    rows.append(timed("consistency", lambda: consistency(pairs), n))
    rows.append(timed("language (python)", lambda: language(pairs, backend="python"), n))
    if not args.no_java and shutil.which("java"):
        rows.append(timed("language (coco, Java)", lambda: language(pairs, backend="coco"), n))
    total = sum(row["seconds"] for row in rows)
    rows.append({"metric": "total", "seconds": total, "stories_per_second": n / total, "signature": None})

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Evaluating {n} stories")
    for name in ("metric", "seconds", "stories/s"):
        table.add_column(name, justify="left" if name == "metric" else "right")
    for row in rows:
        table.add_row(row["metric"], f"{row['seconds']:.2f}", f"{row['stories_per_second']:,.0f}")
    Console().print(table)

    from _common import write_results

    write_results(args.out, "evaluate", rows, argv, stories=n, seed=args.seed)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
