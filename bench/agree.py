"""The cost of ``storyreasoning evaluate agree``: the bootstrap of its statistics, and the command.

Two sides are made for ``--stories`` stories (seeded): a judge's ``judgements.jsonl`` and
people's labels as CSV, the three 1-5 scores correlated (the people's score is the judge's
moved by -1, 0 or +1 now and then, within 1..5) and hallucination counts 0..6 (the people
count one fewer or one more now and then). The table shows, for ``--resamples`` resamples:

* ``agreement()``: the four metrics' kappa, alpha and Spearman with their intervals, in
  this process (the fastest of ``--repeats`` runs, and the median);
* ``evaluate agree --json``: the command in a fresh interpreter, start-up and reading
  included (fastest and median).

On a shared machine the fastest run is the one to read: the median measures the others' load.

Run::

    python bench/agree.py
    python bench/agree.py --stories 600 --resamples 1000 --repeats 5 --out bench/results/agree.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_results

DEFAULT_OUT = Path(__file__).parent / "results" / "agree.json"
SCORES = ("creativity", "coherence", "grounding_quality")


def make_sides(folder: Path, stories: int, seed: int = 0) -> tuple[Path, Path]:
    """A judge's result folder and a labels CSV for ``stories`` stories, correlated, seeded."""
    import numpy as np

    rng = np.random.default_rng(seed)
    judge = folder / "run" / "judge"
    judge.mkdir(parents=True, exist_ok=True)
    lines, rows = [], ["story_id," + ",".join(SCORES) + ",hallucinations"]
    for k in range(stories):
        story = f"story{k:05d}"
        a = {m: int(rng.integers(1, 6)) for m in SCORES}
        b = {m: int(np.clip(v + rng.choice([-1, 0, 0, 0, 1]), 1, 5)) for m, v in a.items()}
        count = int(rng.integers(0, 7))
        other = int(np.clip(count + rng.choice([-1, 0, 0, 1]), 0, 6))
        found = [
            {"type": "object", "quote": f"thing {j}", "frame": 1, "reason": "absent"} for j in range(count)
        ]
        lines.append(
            json.dumps({"story_id": story, "status": "judged", "scores": a, "hallucinations": found})
        )
        rows.append(f"{story},{b['creativity']},{b['coherence']},{b['grounding_quality']},{other}")
    (judge / "judgements.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    labels = folder / "people.csv"
    labels.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder / "run", labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stories", type=int, default=600)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    from storyreasoning.evaluate.agree import METRICS, agreement, read_ratings

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        run, labels = make_sides(Path(tmp), args.stories)
        a, b = read_ratings(run), read_ratings(labels)
        agreement(a, b, list(METRICS), resamples=10)  # warm: numpy and the modules imported
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            agreement(a, b, list(METRICS), resamples=args.resamples)
            times.append(time.perf_counter() - start)
        rows.append({"case": "agreement()", "best_s": min(times), "median_s": statistics.median(times)})
        command = [sys.executable, "-m", "storyreasoning", "evaluate", "agree", str(run), str(labels)]
        command += ["--json", "--resamples", str(args.resamples)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            times.append(time.perf_counter() - start)
            if done.returncode != 0:
                raise SystemExit(f"evaluate agree failed: {done.stderr.strip()}")
        rows.append(
            {"case": "evaluate agree --json", "best_s": min(times), "median_s": statistics.median(times)}
        )

    print(f"{args.stories} stories, 4 metrics x 3 statistics, {args.resamples} resamples")
    print(f"{'case':<24}{'fastest':>12}{'median':>12}")
    for row in rows:
        print(f"{row['case']:<24}{row['best_s'] * 1000:>10.1f}ms{row['median_s'] * 1000:>10.1f}ms")
    path = write_results(
        args.out, "agree", rows, argv, stories=args.stories, resamples=args.resamples, repeats=args.repeats
    )
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
