"""Scoring stories in worker processes, with Java started first, gives exactly the sequential report."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

from storyreasoning.errors import UsageError
from storyreasoning.evaluate.report import FAMILIES, evaluate_pairs
from storyreasoning.evaluate.scoring import (
    AHEAD,
    CHUNK,
    POOL_THRESHOLD,
    Pool,
    StoryJob,
    default_workers,
    score_jobs,
    story_parts,
    summarize,
)

pytest.importorskip("pycocoevalcap", reason="needs pycocoevalcap: pip install 'storyreasoning[eval]'")

LIGHTHOUSE = Path(__file__).parents[2] / "examples" / "outputs" / "lighthouse.txt"
BOX = re.compile(r"\| (\d+),(\d+),(\d+),(\d+) \|")
SIZES = ((640, 480),) * 3


def jitter(text: str, rng: random.Random, amount: int) -> str:
    def move(m: re.Match) -> str:
        x1, y1, x2, y2 = (int(v) for v in m.groups())
        dx, dy = rng.randint(-amount, amount), rng.randint(-amount, amount)
        return f"| {max(0, x1 + dx)},{max(0, y1 + dy)},{x2 + dx},{y2 + dy} |"

    return BOX.sub(move, text)


def make_jobs(n: int, seed: int = 0) -> list[StoryJob]:
    """Stories from lighthouse.txt: boxes moved, ids swapped, sentences dropped, outputs missing or odd."""
    base = LIGHTHOUSE.read_text(encoding="utf-8")
    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        reference = jitter(base, rng, 15)
        roll = rng.random()
        if roll < 0.08:
            candidate = None
        elif roll < 0.14:
            candidate = "I cannot tell a story about these images."
        else:
            candidate = jitter(reference, rng, rng.choice((2, 30, 80)))
            if roll < 0.4:
                candidate = (
                    candidate.replace("char1", "charX").replace("char2", "char1").replace("charX", "char2")
                )
            sentences = candidate.split(". ")
            del sentences[rng.randrange(1, len(sentences) - 1)]
            candidate = ". ".join(sentences)
            if roll > 0.9:
                candidate = candidate.replace("## Image 3", "## Image 4")  # a section for a frame it lacks
        jobs.append(StoryJob(f"s{i:03d}", reference, candidate, SIZES))
    return jobs


def as_dicts(results: dict) -> dict:
    return {name: scores.to_dict() for name, scores in results.items()}


@pytest.fixture(scope="module")
def jobs():
    return make_jobs(45)


@pytest.mark.parametrize("protocol", ["default", "original"])
def test_pooled_scoring_is_exactly_the_sequential_report(jobs, protocol):
    sequential = score_jobs(jobs, FAMILIES, protocol)
    with Pool(2) as pool:
        pooled = score_jobs(iter(jobs), FAMILIES, protocol, pool=pool, tokenize=True)
    assert [sid for sid, _ in pooled] == [job.story_id for job in jobs]
    expected = as_dicts(
        evaluate_pairs([job.pair() for job in jobs], protocol=protocol, language_backend="python")
    )
    for items in (sequential, pooled):
        got = summarize(items, FAMILIES, protocol=protocol, language_backend="python")
        assert list(got) == list(FAMILIES)
        assert as_dicts(got) == expected
    assert expected["language"]["overall"]["n_evaluated"] == (
        45 if protocol == "default" else 45 - sum(job.candidate is None for job in jobs)
    )


def test_progress_counts_every_story(jobs):
    seen: list[int] = []
    with Pool(2) as pool:
        score_jobs(jobs, ("grounding",), pool=pool, progress=seen.append)
    assert sum(seen) == len(jobs)
    seen.clear()
    score_jobs(jobs[:5], ("identity",), progress=seen.append)
    assert seen == [1] * 5


def test_the_workers_are_sent_stories_only_a_little_ahead_of_their_results():
    """A large run's stories are read as the workers score them, not all at once: the texts of the
    stories read and not yet scored are held until their results come back."""
    read = 0

    def reading(jobs):
        nonlocal read
        for job in jobs:
            read += 1
            yield job

    jobs = make_jobs(300, seed=1)
    ahead: list[int] = []  # stories read beyond those scored, each time results come back
    scored = 0

    def progress(n: int) -> None:
        nonlocal scored
        scored += n
        ahead.append(read - scored)

    with Pool(2) as pool:
        items = score_jobs(reading(jobs), ("grounding",), pool=pool, progress=progress)
    assert [sid for sid, _ in items] == [job.story_id for job in jobs] and scored == 300
    assert max(ahead) <= (AHEAD * pool.workers + 1) * CHUNK < 300


def test_a_storys_consistency_part_is_a_few_counts():
    """Every story's parts are held until the report is written (20,000 stories: the run's peak
    memory): the consistency part is the counts the summary reads, not the tellings' every id and
    frame (about 10 kB a story before)."""
    import tracemalloc

    pairs = [job.pair() for job in make_jobs(45)]
    tracemalloc.start()
    try:
        held = [story_parts(pair, ("consistency",)) for pair in pairs]
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(held) == 45 and size / 45 < 4000


def test_the_language_step_shows_its_progress():
    """Its BLEU, ROUGE-L and CIDEr are counted story by story (the python backend; with Java,
    tokenizing and METEOR too: test_language), each step with a progress of its own."""
    jobs = make_jobs(40)
    items = score_jobs(jobs, ("language",), tokenize=True)
    shown = Steps()
    results = summarize(items, ("language",), language_backend="python", progress=shown)
    assert shown.steps == [("BLEU, ROUGE-L, CIDEr", 40, 40)]
    assert results == summarize(items, ("language",), language_backend="python")
    shown = Steps()  # texts not tokenized in the workers: tokenized here, every reference and candidate
    summarize(score_jobs(jobs, ("language",)), ("language",), language_backend="python", progress=shown)
    assert shown.steps == [("tokenizing", 80, 80), ("BLEU, ROUGE-L, CIDEr", 40, 40)]


class Steps:
    """A progress (:data:`storyreasoning.evaluate.language.Progress`) that records each step:
    ``(label, total, counted)``."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, int | None, int]] = []

    def __call__(self, total: int | None, label: str):
        from contextlib import contextmanager

        @contextmanager
        def step():
            counted = [0]
            yield lambda n=1: counted.__setitem__(0, counted[0] + n)
            self.steps.append((label, total, counted[0]))

        return step()


def test_a_worker_error_reaches_the_caller():
    bad = [StoryJob("s0", "<think>\n</think>\nA story.", None, ())]
    with Pool(2) as pool, pytest.raises(UsageError, match="unknown metric family"):
        score_jobs(bad, ("fluency",), pool=pool)
    with pytest.raises(UsageError, match="unknown metric family"):
        story_parts(bad[0].pair(), ("fluency",))


def test_default_workers():
    assert default_workers(POOL_THRESHOLD) == 1
    assert default_workers(POOL_THRESHOLD + 1) >= 1
    assert default_workers(10_000) >= 1


def run_cli(*args, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "storyreasoning", "evaluate", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "COLUMNS": "200", "PATH": "/usr/bin:/bin"}
        | (env or {}),
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory, jobs):
    pytest.importorskip("pyarrow", reason="needs pyarrow: pip install 'storyreasoning[data]'")
    from storyreasoning.data import SampleList, StorySample, write_parquet

    from ..data.fixtures import image_bytes

    root = tmp_path_factory.mktemp("scoring")
    frames = [image_bytes(640, 480, k) for k in range(3)]
    samples = []
    texts = root / "texts"
    texts.mkdir()
    for job in jobs:
        cot, _, story = job.reference.partition("\n</think>\n")
        samples.append(StorySample(job.story_id, frames, cot.removeprefix("<think>\n"), story))
        if job.candidate is not None:
            (texts / f"{job.story_id}.txt").write_text(job.candidate, encoding="utf-8")
    write_parquet(SampleList(samples), root / "data", split="test")
    return root


def test_the_command_writes_the_same_report_with_and_without_workers(world):
    outs = []
    for workers in (1, 2):
        out = world / f"eval-{workers}"
        result = run_cli(world / "texts", "--dataset", world / "data", "--split", "test", "--out", out,
                         "--language-backend", "python", "--workers", workers)  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "BLEU" not in result.stderr  # a step shorter than a progress line's interval says nothing
        outs.append(out)
    one, two = (json.loads((out / "metrics.json").read_text()) for out in outs)
    assert one.pop("created") and two.pop("created")
    one["run"].pop("path"), two["run"].pop("path")
    assert one == two
    assert (outs[0] / "per_story.csv").read_bytes() == (outs[1] / "per_story.csv").read_bytes()
    md = [
        [
            line
            for line in (out / "metrics.md").read_text().splitlines()
            if not line.startswith(("- run:", "- storyreasoning "))
        ]
        for out in outs
    ]  # the run's folder and the time apart
    assert md[0] == md[1] and any(line.startswith("## Grounding") for line in md[0])
    assert sorted(p.name for p in (outs[1] / "plots").iterdir()) == [
        "metrics.png",
        "persistence.png",
        "pronouns.png",
    ]
    assert json.loads((outs[1] / "settings.json").read_text())["workers"] == 2


def test_the_language_step_shows_its_progress_in_a_log(world, tmp_path):
    """Where standard error is no terminal (a log file), a long step writes a progress line every
    STORYREASONING_PROGRESS_SECONDS (30 s; 0 here): the language metrics' too, not only the stories'."""
    out = tmp_path / "eval"
    result = run_cli(world / "texts", "--dataset", world / "data", "--split", "test", "--out", out,
                     "--language-backend", "python", "--workers", 2, "--no-plots",
                     env={"STORYREASONING_PROGRESS_SECONDS": "0"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert any(line.startswith("scoring stories: 45/45 (100%) in ") for line in lines)
    assert any(line.startswith("BLEU, ROUGE-L, CIDEr: 45/45 (100%) in ") for line in lines), result.stderr
    language = lines.index("computing language metrics")
    assert lines[language - 1] == "computing consistency metrics"  # without Java, after the others
    assert all(line.startswith("BLEU, ROUGE-L, CIDEr: ") for line in lines[language + 1 :])


def test_matplotlib_is_imported_only_to_draw(world, tmp_path):
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from storyreasoning.evaluate.commands import evaluate\n"
        "from storyreasoning.evaluate.settings import EvaluateSettings\n"
        f"evaluate(EvaluateSettings(run=Path({str(world / 'texts')!r}), dataset={str(world / 'data')!r}, "
        f"split='test', out=Path({str(tmp_path / 'out')!r}), language_backend='python', workers=2, plots=False, "
        "as_json=True))\n"
        "print('matplotlib' in sys.modules, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "False"
    assert not (tmp_path / "out" / "plots").exists()


@pytest.mark.skipif(find_spec("matplotlib") is None, reason="needs matplotlib")
def test_a_painter_in_its_own_process_draws_the_same_plots(tmp_path, jobs):
    from storyreasoning.evaluate.plots import Painter
    from storyreasoning.evaluate.report import Report, write_report

    results = evaluate_pairs([job.pair() for job in jobs[:10]], language_backend="python")
    report = Report(run={"label": "r"}, dataset={}, protocol="default", results=results)
    with Painter(process=True) as painter:
        painter.consistency(results, tmp_path / "early" / "plots")  # while the language metrics are computed
        early = write_report(report, tmp_path / "early", painter=painter)
    late = write_report(report, tmp_path / "late")
    assert [p.name for p in early] == [p.name for p in late]
    assert [p.name for p in late][-3:] == ["metrics.png", "persistence.png", "pronouns.png"]
    for a, b in zip(early[-3:], late[-3:], strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked, and niced, on Linux")
def test_workers_beside_java_run_at_a_lower_priority_and_without_its_pipes():
    import os

    from storyreasoning.evaluate.processes import BACKGROUND_NICE, executor

    read, write = os.pipe()
    try:
        ours = os.nice(0)
        with executor(2, close_fds=[write], nice=BACKGROUND_NICE) as pool:
            niced = {pool.submit(os.nice, 0).result() for _ in range(4)}
            held = pool.submit(os.fstat, write)
            with pytest.raises(OSError):
                held.result()
        assert niced == {min(19, ours + BACKGROUND_NICE)}
        with executor(1) as pool:  # no Java: as this process
            assert pool.submit(os.nice, 0).result() == ours
    finally:
        os.close(read)
        os.close(write)


def _threshold() -> tuple[int, int, int]:
    import gc

    return gc.get_threshold()


def test_a_run_collects_garbage_rarely_and_its_workers_too_then_as_before():
    import gc

    from storyreasoning.evaluate.processes import GC_YOUNG, batch_gc, executor

    before = gc.get_threshold()
    with batch_gc():
        assert gc.get_threshold()[0] == GC_YOUNG and gc.get_freeze_count() > 0
        pool = executor(1)
        try:
            assert pool.submit(_threshold).result()[0] == GC_YOUNG
        finally:
            pool.shutdown()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
