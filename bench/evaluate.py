"""Evaluation speed: ``storyreasoning evaluate`` on a test split's worth of stories.

The StoryReasoning test split has 626 stories. This script writes that many
deterministic stories from ``examples/outputs/lighthouse.txt`` as a dataset (parquet,
split ``test``, three 640x480 PNG frames each) and a run (a folder of ``{story_id}.txt``
outputs, the original's layout): boxes jittered, some ids swapped across frames, a
sentence dropped, 3 % of outputs missing. Then it measures:

* **stages**, one after the other in this process, on one core: read (the run and the
  dataset rows, frame sizes), parse (both outputs of every story), grounding (default,
  and the original protocol), identity, consistency, language without Java (regex
  tokenizer) and with it (a fresh ``TextScorer``: the JVMs' start, CoreNLP, METEOR),
  report (metrics.json, metrics.md, per_story.csv and the plots, matplotlib's import
  included);
* **METEOR alone**: a fresh METEOR 1.5 process started and scoring every story's tokens
  (the JVM and paraphrase tables, SCORE and EVAL): what no overlap can hide;
* **end to end**: the real command in a fresh interpreter, without Java
  (``--language-backend python``, with and without plots) and with it (``coco``), best
  of ``--repeats``
  (alternated with METEOR alone, so each sees the machine's load alike); the command
  starts Java first and parses in worker processes meanwhile, so the total with Java
  is compared with METEOR alone (target: at most 1.2 times);
* with ``--plain-jvm``: METEOR alone and the command with Java again, both JVMs started
  without :data:`~storyreasoning.evaluate.language.SHORT_RUN_JVM_FLAGS` (CoreNLP: C1 only,
  serial GC) and :data:`~storyreasoning.evaluate.language.METEOR_JVM_FLAGS` (serial GC, a
  1 GB heap from the start, survivors promoted at once), as pycocoevalcap starts them: the
  ratio with and without them;
* with ``--original``: the original's pipeline as far as it can be reproduced here
  (every story parsed in turn, the original grounding protocol, then pycocoevalcap's
  own wrappers as the original called them: its PTBTokenizer, references and
  candidates apart, for each of Bleu, Meteor and Rouge), about 40 s.

Every row has wall seconds and CPU seconds (this process and the children it waited
for: workers, the painter, the JVMs); on a shared machine the CPU seconds move less.
The load average when each end-to-end run ended is recorded beside it (``load``), and
the summary gives the CPU seconds of the command's work besides METEOR (its CPU less
METEOR alone's).

Run::

    python bench/evaluate.py                        # 626 stories, about 2 minutes
    python bench/evaluate.py --stories 50 --no-java # a smoke run
    python bench/evaluate.py --original --repeats 3 --out bench/results/evaluate.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "outputs" / "lighthouse.txt"
DEFAULT_OUT = Path(__file__).parent / "results" / "evaluate.json"
BOX = re.compile(r"\| (\d+),(\d+),(\d+),(\d+) \|")
FIXTURE_VERSION = 1


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


def stories(n: int, seed: int) -> list[tuple[str, str, str | None]]:
    """``(story_id, reference output, candidate output or None)``, deterministic."""
    base = EXAMPLE.read_text(encoding="utf-8")
    rng = random.Random(seed)
    out = []
    for i in range(n):
        reference = jitter(base, rng, 20)
        out.append((f"s{i:04d}", reference, candidate(reference, rng)))
    return out


def frame(seed: int) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (640, 480), (40 * seed % 256, 90, 160))
    ImageDraw.Draw(image).rectangle((100, 90, 300, 400), fill=(240, 200, 20))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def write_fixture(root: Path, n: int, seed: int) -> tuple[Path, Path]:
    """``root/data`` (parquet, split test) and ``root/run`` (``{story_id}.txt``); reused when present."""
    from storyreasoning.data import SampleList, StorySample, write_parquet

    data, run, stamp = root / "data", root / "run", root / "fixture.json"
    wanted = {"stories": n, "seed": seed, "version": FIXTURE_VERSION}
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        return data, run
    shutil.rmtree(data, ignore_errors=True)
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    frames = [frame(k) for k in range(3)]
    samples = []
    for story_id, reference, cand in stories(n, seed):
        cot, _, story = reference.partition("\n</think>\n")
        samples.append(StorySample(story_id, frames, cot.removeprefix("<think>\n"), story))
        if cand is not None:
            (run / f"{story_id}.txt").write_text(cand, encoding="utf-8")
    write_parquet(SampleList(samples), data, split="test")
    stamp.write_text(json.dumps(wanted))
    return data, run


# -- stages, one after the other in this process -----------------------------------------------


def clock(rows: list[dict], stage: str, fn, n: int):
    start, cpu = time.perf_counter(), time.process_time()
    value = fn()
    seconds = time.perf_counter() - start
    rows.append({"stage": stage, "seconds": seconds, "cpu_seconds": time.process_time() - cpu,
                 "stories_per_second": n / seconds if seconds else None})  # fmt: skip
    return value


def stages(data: Path, run: Path, n: int, java: bool, out: Path) -> list[dict]:
    from storyreasoning.data.sources import load_stories
    from storyreasoning.evaluate import consistency, grounding, identity, language, original
    from storyreasoning.evaluate.commands import build_jobs
    from storyreasoning.evaluate.report import Report, write_report
    from storyreasoning.evaluate.runs import load_outputs

    rows: list[dict] = []

    def read():
        outputs = load_outputs(run)
        jobs, _, _ = build_jobs(outputs, load_stories(data, "test"))
        return list(jobs)

    jobs = clock(rows, "read (run, dataset rows, frame sizes)", read, n)
    pairs = clock(rows, "parse (references and outputs)", lambda: [job.pair() for job in jobs], n)
    results = {}
    for family, module in (("grounding", grounding), ("identity", identity)):
        results[family] = clock(
            rows, family, lambda m=module: m.summarize([(p.story_id, m.story_row(p)) for p in pairs]), n
        )
    clock(
        rows,
        "grounding (original protocol)",
        lambda: original.summarize([(p.story_id, original.story_row(p)) for p in pairs]),
        n,
    )
    results["consistency"] = clock(
        rows,
        "consistency",
        lambda: consistency.summarize([(p.story_id, consistency.story_stats(p)) for p in pairs]),
        n,
    )
    texts = [(p.story_id, language.story_texts(p)) for p in pairs]
    results["language"] = clock(
        rows, "language without Java", lambda: language.summarize(texts, backend="python"), n
    )
    if java:

        def with_java():
            with language.TextScorer("coco") as scorer:
                return language.summarize(texts, scorer=scorer)

        results["language"] = clock(rows, "language with Java (JVMs started here)", with_java, n)
        language.close_java()
    report = Report(run={"path": str(run), "label": "bench"}, dataset={}, protocol="default", results=results,
                    story_ids=[p.story_id for p in pairs])  # fmt: skip
    clock(rows, "report (files and plots)", lambda: write_report(report, out / "stage-report"), n)
    return rows


def meteor_inputs(data: Path, run: Path) -> tuple[list[list[str]], list[str]]:
    """Every story's reference and candidate as CoreNLP's tokens, what METEOR scores."""
    from storyreasoning.data.sources import load_stories
    from storyreasoning.evaluate import language
    from storyreasoning.evaluate.commands import build_jobs
    from storyreasoning.evaluate.runs import load_outputs

    jobs, _, _ = build_jobs(load_outputs(run), load_stories(data, "test"))
    texts = [language.story_texts(job.pair()) for job in jobs]
    flat = [t.reference for t in texts] + [t.candidate or "" for t in texts]
    tokens = language.corenlp_ptb_tokenize(flat)
    return [[t] for t in tokens[: len(texts)]], tokens[len(texts) :]


def meteor_alone(refs: list[list[str]], hyps: list[str], plain: bool = False) -> float:
    """A fresh METEOR 1.5 process started and scoring every story (SCORE, then EVAL); its score.

    ``plain``: started without METEOR_JVM_FLAGS (as pycocoevalcap starts it)."""
    from storyreasoning.evaluate import language

    flags = language.METEOR_JVM_FLAGS
    language.METEOR_JVM_FLAGS = () if plain else flags
    try:
        process = language.MeteorProcess()
    finally:
        language.METEOR_JVM_FLAGS = flags
    try:
        score, _ = process.evaluate(process.stats(refs, hyps))
    finally:
        process.close()
    return score


# -- the command end to end ----------------------------------------------------------------------


def cpu_clock(fn) -> tuple[float, float]:
    """``fn()``'s wall seconds, and the CPU seconds of this process and the children it waited for."""
    import resource

    def cpu() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    start, used = time.perf_counter(), cpu()
    fn()
    return time.perf_counter() - start, cpu() - used


PLAIN_JVM = (
    "import sys; from storyreasoning.evaluate import language; language.SHORT_RUN_JVM_FLAGS = (); "
    "language.METEOR_JVM_FLAGS = (); "
    "from storyreasoning.cli import main; main(sys.argv[1:])"
)
"""``storyreasoning`` with both JVMs started without our JVM flags."""


def command(
    data: Path, run: Path, out: Path, backend: str, *options: str, plain: bool = False
) -> tuple[float, float]:
    entry = ["-c", PLAIN_JVM] if plain else ["-m", "storyreasoning"]
    cmd = [sys.executable, *entry, "evaluate", str(run), "--dataset", str(data), "--split",
           "test", "--out", str(out), "--language-backend", backend, *options]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done: list[subprocess.CompletedProcess] = []
    measured = cpu_clock(lambda: done.append(subprocess.run(cmd, capture_output=True, text=True, env=env)))
    if done[0].returncode != 0:
        raise SystemExit(f"storyreasoning evaluate failed:\n{done[0].stderr[-2000:]}")
    return measured


# -- the original's pipeline -----------------------------------------------------------------------


def original_pipeline(data: Path, run: Path) -> None:
    """Every story parsed in turn, the original grounding, pycocoevalcap's wrappers as the original called them."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    from storyreasoning.data.sources import load_stories
    from storyreasoning.evaluate import language, original
    from storyreasoning.evaluate.commands import build_jobs
    from storyreasoning.evaluate.runs import load_outputs

    jobs, _, _ = build_jobs(load_outputs(run), load_stories(data, "test"))
    pairs = [job.pair() for job in jobs if job.candidate is not None]  # missing outputs excluded
    original.summarize([(p.story_id, original.story_row(p)) for p in pairs])
    gts = {p.story_id: [{"caption": language.story_text(p.reference)}] for p in pairs}
    res = {p.story_id: [{"caption": language.story_text(p.candidate)}] for p in pairs}
    for scorer in (Bleu(4), Meteor(), Rouge()):  # each metric wrapper tokenizes for itself
        tokenized_gts, tokenized_res = PTBTokenizer().tokenize(gts), PTBTokenizer().tokenize(res)
        if isinstance(scorer, Bleu):
            scorer.compute_score(tokenized_gts, tokenized_res, verbose=0)
        else:
            scorer.compute_score(tokenized_gts, tokenized_res)
        del scorer  # Meteor's JVM stops when its wrapper goes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stories", type=int, default=626)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeats", type=int, default=2, help="end-to-end runs of each command; the best is kept"
    )
    parser.add_argument("--no-java", action="store_true", help="skip everything that needs Java")
    parser.add_argument(
        "--plain-jvm",
        action="store_true",
        help="also time METEOR alone and the command with the JVMs' default flags (no SHORT_RUN_JVM_FLAGS "
        "or METEOR_JVM_FLAGS)",
    )
    parser.add_argument(
        "--original", action="store_true", help="also time the original's pipeline (about 40 s)"
    )
    parser.add_argument(
        "--fixture", type=Path, help="keep the generated dataset and run here (default: a temporary folder)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    n = args.stories
    java = not args.no_java and shutil.which("java") is not None
    with tempfile.TemporaryDirectory(prefix="storyreasoning-bench-") as tmp:
        root = args.fixture or Path(tmp)
        data, run = write_fixture(root, n, args.seed)
        rows = stages(data, run, n, java, Path(tmp))
        totals: dict[str, tuple[float, float, float]] = {}  # name -> (seconds, CPU s, load), the best

        def keep(name: str, measured: tuple[float, float]) -> None:
            run_ = (*measured, os.getloadavg()[0])
            totals[name] = min(run_, totals.get(name, run_))

        meteor_tokens = meteor_inputs(data, run) if java else None
        for _ in range(max(1, args.repeats)):  # alternated, so each sees the machine's load alike
            keep("evaluate without Java", command(data, run, Path(tmp) / "eval-python", "python"))
            keep(
                "evaluate without Java or plots",
                command(data, run, Path(tmp) / "eval-bare", "python", "--no-plots"),
            )
            if java:
                keep("evaluate with Java", command(data, run, Path(tmp) / "eval-coco", "coco"))
                keep("METEOR alone (start-up and scoring)", cpu_clock(lambda: meteor_alone(*meteor_tokens)))
                if args.plain_jvm:
                    keep(
                        "evaluate with Java, plain JVMs",
                        command(data, run, Path(tmp) / "eval-plain", "coco", plain=True),
                    )
                    keep(
                        "METEOR alone, plain JVM",
                        cpu_clock(lambda: meteor_alone(*meteor_tokens, plain=True)),
                    )
        if args.original and java:
            keep("original's pipeline (with Java)", cpu_clock(lambda: original_pipeline(data, run)))
        same = None
        if java:
            metrics = [json.loads((Path(tmp) / name / "metrics.json").read_text())["metrics"]
                       for name in ("eval-python", "eval-coco")]  # fmt: skip
            same = all(metrics[0][f] == metrics[1][f] for f in ("grounding", "identity", "consistency"))

    in_total = [
        row for row in rows if not row["stage"].startswith(("language with Java", "grounding (original"))
    ]
    rows.append({"stage": "total without Java (stages above, one core)",
                 "seconds": sum(row["seconds"] for row in in_total),
                 "cpu_seconds": sum(row["cpu_seconds"] for row in in_total)})  # fmt: skip
    for name, (seconds, cpu, load) in totals.items():
        rows.append({"stage": name, "seconds": seconds, "cpu_seconds": cpu, "load": load})
    for row in rows:
        row["stories_per_second"] = n / row["seconds"] if row["seconds"] else None
    cpus = {name: cpu for name, (_, cpu, _) in totals.items()}
    totals = {name: seconds for name, (seconds, _, _) in totals.items()}  # type: ignore[misc]
    summary: dict = {"end_to_end": totals, "non_language_families_agree_across_backends": same}
    for label, ours, alone in (
        ("", "evaluate with Java", "METEOR alone (start-up and scoring)"),
        ("_plain_jvm", "evaluate with Java, plain JVMs", "METEOR alone, plain JVM"),
    ):
        if ours in totals and alone in totals:
            summary[f"java_total_over_meteor_alone{label}"] = totals[ours] / totals[alone]
            summary[f"cpu_seconds_besides_meteor{label}"] = cpus[ours] - cpus[alone]
    if "original's pipeline (with Java)" in totals:  # the original writes no plots
        summary["original_over_ours_without_java"] = (
            totals["original's pipeline (with Java)"] / totals["evaluate without Java"]
        )
        summary["original_over_ours_without_java_or_plots"] = (
            totals["original's pipeline (with Java)"] / totals["evaluate without Java or plots"]
        )

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Evaluating {n} stories")
    for name in ("stage", "seconds", "CPU seconds", "stories/s", "load"):
        table.add_column(name, justify="left" if name == "stage" else "right")
    for row in rows:
        cpu = row.get("cpu_seconds")
        table.add_row(
            row["stage"],
            f"{row['seconds']:.2f}",
            "" if cpu is None else f"{cpu:.2f}",
            f"{row['stories_per_second']:,.0f}",
            f"{row['load']:.1f}" if "load" in row else "",
        )
    Console().print(table)
    for label, flags in (("", "our JVM flags"), ("_plain_jvm", "plain JVMs")):
        if f"java_total_over_meteor_alone{label}" in summary:
            print(
                f"evaluate with Java / METEOR alone ({flags}): "
                f"{summary[f'java_total_over_meteor_alone{label}']:.2f} (target <= 1.2); "
                f"CPU besides METEOR {summary[f'cpu_seconds_besides_meteor{label}']:.1f} s"
            )
    if "original_over_ours_without_java" in summary:
        print(
            f"original / ours without METEOR: {summary['original_over_ours_without_java']:.1f}x, "
            f"without plots either (the original draws none): "
            f"{summary['original_over_ours_without_java_or_plots']:.1f}x (target >= 10)"
        )

    from _common import write_results

    write_results(args.out, "evaluate", rows, argv, stories=n, seed=args.seed, summary=summary)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
