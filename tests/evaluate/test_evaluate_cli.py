"""``storyreasoning evaluate`` and ``evaluate compare`` end to end, as a user runs them."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

import pytest

from storyreasoning.data import SampleList, write_parquet
from storyreasoning.errors import UsageError
from storyreasoning.tell.base import Teller
from storyreasoning.tell.run import tell_dataset

from ..conftest import one_error_line
from ..data.fixtures import fixture_samples

pytest.importorskip("datasets", reason="needs the datasets library: pip install 'storyreasoning[data]'")


def run(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "storyreasoning", "evaluate", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


class Replay(Teller):
    """A teller that answers with prepared outputs (stands in for a model in the run format)."""

    backend = "replay"
    model = "replay-model"

    def __init__(self, outputs: dict[int, str]):
        self.outputs = outputs
        self.calls = 0

    def stream(self, images, *, prompt=None, sampling=None):
        text = self.outputs[self.calls % len(self.outputs)]
        self.calls += 1
        yield text


def shifted(text: str, image: int, dx: int) -> str:
    """The output with every box of ``## Image {image}`` moved right by ``dx`` pixels."""
    out, current = [], None
    for line in text.splitlines():
        if line.startswith("## Image "):
            current = int(line.split()[2])
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if current == image and line.startswith("|") and cells and cells[-1].count(",") == 3:
            try:
                x1, y1, x2, y2 = map(int, cells[-1].split(","))
            except ValueError:
                out.append(line)
                continue
            cells[-1] = f"{x1 + dx},{y1},{x2 + dx},{y2}"
            line = "| " + " | ".join(cells) + " |"
        out.append(line)
    return "\n".join(out)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    samples = fixture_samples(4)
    write_parquet(SampleList(samples), root / "data", split="test")
    reference = samples[0].output_text()
    texts = root / "texts"
    texts.mkdir()
    (texts / "s00.txt").write_text(reference, encoding="utf-8")  # perfect
    (texts / "s01.txt").write_text(shifted(reference, 2, 400), encoding="utf-8")  # image 2 boxes wrong
    (texts / "s03.txt").write_text("I cannot tell a story about these images.", encoding="utf-8")  # no CoT
    # s02 has no output at all
    return root, samples, reference


def test_text_folder_run_scores_and_report_files(world):
    root, _samples, _reference = world
    result = run(
        root / "texts", "--dataset", root / "data", "--split", "test", "--language-backend", "python"
    )
    assert result.returncode == 0, result.stderr
    out = root / "texts" / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stories"] == 4
    assert metrics["dataset"]["missing"] == 1
    assert set(metrics["metrics"]) == {"grounding", "identity", "consistency", "language"}
    with (out / "per_story.csv").open() as f:
        rows = {row["story_id"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"s00", "s01", "s02", "s03"}
    # the perfect story is perfect on every rate the grounding family reports per story
    perfect = {k: v for k, v in rows["s00"].items() if k.startswith("grounding.") and v not in ("",)}
    f1_columns = [k for k in perfect if "f1" in k]
    assert f1_columns and all(float(perfect[k]) == pytest.approx(1.0) for k in f1_columns)
    # the shifted story loses image 2's boxes, so its F1 is below 1 and above 0
    shifted_f1 = float(rows["s01"][f1_columns[0]])
    assert 0.0 < shifted_f1 < 1.0
    # the text-only answer and the missing story have no grounding at all
    for sid in ("s02", "s03"):
        value = rows[sid][f1_columns[0]]
        assert value == "" or float(value) == 0.0
    md = (out / "metrics.md").read_text()
    assert "## Grounding" in md and "## Language" in md and "protocol: `default`" in md
    for png in ("metrics.png", "persistence.png", "pronouns.png"):
        data = (out / "plots" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", png


def test_run_folder_from_tell_dataset_and_compare(world, tmp_path):
    root, _samples, reference = world
    from storyreasoning.data import load_stories

    stories = load_stories(root / "data", "test")
    good = tmp_path / "good"
    tell_dataset(stories, Replay({0: reference}), good)
    bad = tmp_path / "bad"
    tell_dataset(stories, Replay({0: shifted(reference, 1, 300)}), bad)
    for folder in (good, bad):
        # the dataset comes from the run's manifest: no --dataset needed
        result = run(folder, "--metrics", "grounding,identity", "--no-plots")
        assert result.returncode == 0, result.stderr
    good_metrics = json.loads((good / "eval" / "metrics.json").read_text())["metrics"]
    bad_metrics = json.loads((bad / "eval" / "metrics.json").read_text())["metrics"]
    assert set(good_metrics) == {"grounding", "identity"}
    g, b = good_metrics["grounding"]["overall"], bad_metrics["grounding"]["overall"]
    key = next(k for k in g if k.startswith("f1") and k.endswith("micro"))
    assert g[key] == pytest.approx(1.0) and b[key] < g[key]

    result = run("compare", good, bad, "--out", tmp_path / "cmp")
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "good" in table and "bad" in table and f"grounding.{key}" in table
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert data["metrics"][f"grounding.{key}"][0] == pytest.approx(1.0)
    assert (tmp_path / "cmp" / "compare.png").read_bytes()[:4] == b"\x89PNG"


def test_original_protocol_excludes_missing(world):
    root, _samples, _reference = world
    out = root / "orig"
    result = run(
        root / "texts",
        "--dataset",
        root / "data",
        "--split",
        "test",
        "--protocol",
        "original",
        "--metrics",
        "grounding",
        "--out",
        out,
        "--no-plots",
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"] == "original"
    assert "excluded" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["nowhere"], "does not exist"),
        (["{texts}", "--dataset", "{data}", "--split", "validation"], "split"),
        (
            ["{texts}", "--dataset", "{data}", "--metrics", "grounding,fluency"],
            "unknown metric family fluency",
        ),
        (["{texts}"], "give --dataset"),
        (["compare", "{texts}"], "at least two"),
        (["compare", "{data}", "{texts}"], "evaluate it first"),
    ],
)
def test_bad_input_is_one_clear_line(world, tmp_path, args, message):
    root, _, _ = world
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "s00.txt").write_text("x")
    args = [a.format(texts=fresh, data=root / "data") for a in args]
    result = run(*args)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("workers", ["257", "100000", "99999999999999999999999"])
def test_workers_have_an_upper_bound_on_the_command_line_and_in_a_config_file(tmp_path, workers):
    from storyreasoning import settings as S
    from storyreasoning.evaluate.cli import JOBS
    from storyreasoning.evaluate.settings import MAX_WORKERS, EvaluateSettings

    field = next(f for f in S.settings_fields(EvaluateSettings) if f.name == "workers")
    assert field.spec.max == MAX_WORKERS == 256 and "at most 256" in field.spec.help
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "s00.txt").write_text("x")
    config = tmp_path / "c.yaml"
    config.write_text(f"workers: {workers}\n")
    entry = next(job for job in JOBS if job.name == "run")
    # the settings' own check, one line on both paths: naming the flag, or the file and its key
    assert S.quick_values(EvaluateSettings, [str(texts), "--workers", workers]) is None
    with pytest.raises(UsageError, match=re.escape(f"{config}: workers must be between 1 and 256")):
        S.run_quick(entry, [str(texts), "--config", str(config)])
    for args, named in (
        ([texts, "--workers", workers], "--workers"),
        ([texts, "--config", config], f"{config}: workers"),
    ):
        line = one_error_line(run(*args))
        assert f"{named} must be between 1 and 256 (got {workers})" in line, line


def test_a_run_told_from_a_relative_dataset_is_evaluated_from_any_folder(world, tmp_path, monkeypatch):
    """The manifest keeps the dataset as typed (``data``, relative to where the run was told) and the
    path it resolved: evaluate, run from another folder, finds the dataset by that path."""
    root, _samples, reference = world
    from storyreasoning.data import load_stories

    monkeypatch.chdir(root)
    stories = load_stories("data", "test")
    told = tmp_path / "told"
    tell_dataset(stories, Replay({0: reference}), told)
    recorded = json.loads((told / "manifest.json").read_text())["dataset"]
    assert recorded["source"] == "data" and recorded["path"] == str((root / "data").resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run(told, "--metrics", "grounding", "--no-plots", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert json.loads((told / "eval" / "metrics.json").read_text())["stories"] == 4


def test_a_report_written_again_keeps_no_plot_the_new_evaluation_did_not_draw(world, tmp_path):
    """An earlier evaluation's persistence.png beside a grounding-only report would contradict it."""
    root, _samples, _reference = world
    out = tmp_path / "report"
    common = [root / "texts", "--dataset", root / "data", "--language-backend", "python", "--out", out]
    assert run(*common).returncode == 0
    plots = out / "plots"
    assert {p.name for p in plots.iterdir()} == {"metrics.png", "persistence.png", "pronouns.png"}
    done = run(*common, "--metrics", "grounding")
    assert done.returncode == 0, done.stderr
    assert {p.name for p in plots.iterdir()} == {"metrics.png"}
    done = run(*common, "--metrics", "grounding", "--no-plots")
    assert done.returncode == 0, done.stderr
    assert not list(plots.iterdir())
    assert json.loads((out / "metrics.json").read_text())["stories"] == 4


def test_an_out_that_is_a_file_is_refused_before_any_story_is_scored(world, tmp_path):
    root, _samples, _reference = world
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    result = run(root / "texts", "--dataset", root / "data", "--language-backend", "python", "--out", taken)
    line = one_error_line(result)
    assert f"{taken} is a file, not a folder for the report; give --out a folder" in line, line
    assert "computing" not in result.stderr and taken.read_text() == "mine"
    result = run("compare", root / "texts", root / "texts", "--out", taken)
    line = one_error_line(result)
    assert f"{taken} is a file, not a folder for the comparison" in line, line
    assert "Headline" not in result.stdout and taken.read_text() == "mine"


def test_compare_shows_a_damaged_reports_nan_and_infinity_as_missing(world, tmp_path):
    """json reads NaN and Infinity; compare.json must stay JSON (no NaN) and the tables show "–"."""
    root, _samples, _reference = world
    good = tmp_path / "good"
    assert run(root / "texts", "--dataset", root / "data", "--metrics", "grounding", "--no-plots",
               "--out", good).returncode == 0  # fmt: skip
    report = json.loads((good / "metrics.json").read_text())
    overall = report["metrics"]["grounding"]["overall"]
    overall.update(f1_micro=float("nan"), map=float("inf"), recall_micro="0.5")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "metrics.json").write_text(json.dumps(report))
    result = run("compare", good, damaged, "--all", "--out", tmp_path / "cmp")
    assert result.returncode == 0, result.stderr
    assert not re.search(r"\b(nan|inf)\b", result.stdout), result.stdout

    def refuse(constant):
        raise AssertionError(f"compare.json holds {constant}")

    data = json.loads((tmp_path / "cmp" / "compare.json").read_text(), parse_constant=refuse)
    for key in ("grounding.f1_micro", "grounding.map", "grounding.recall_micro"):
        assert data["metrics"][key][1] is None, key
    assert data["headline"]["grounding.map"]["values"][1] is None


def test_without_java_the_coco_backend_names_the_option_that_avoids_it(world, tmp_path):
    root, _samples, _reference = world
    bare = tmp_path / "bin"  # a PATH without java
    bare.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "storyreasoning", "evaluate", str(root / "texts"), "--dataset",
         str(root / "data"), "--language-backend", "coco", "--no-plots", "--out", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=300,
        env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "COLUMNS": "200", "PATH": str(bare)},
    )  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert "no java is on PATH" in result.stderr and "--language-backend python" in result.stderr
    assert not (tmp_path / "r").exists()


def test_a_comparison_with_no_rate_to_draw_leaves_no_earlier_compare_png(world, tmp_path):
    root, _samples, _reference = world
    reports = [tmp_path / "one", tmp_path / "two"]
    for report in reports:
        assert run(root / "texts", "--dataset", root / "data", "--metrics", "grounding", "--no-plots",
                   "--out", report).returncode == 0  # fmt: skip
    out = tmp_path / "cmp"
    assert run("compare", *reports, "--out", out).returncode == 0
    assert (out / "compare.png").is_file()
    result = run("compare", *reports, "--out", out, "--metrics", "grounding.stories")
    assert result.returncode == 0, result.stderr
    assert "no data for compare.png" in result.stdout and not (out / "compare.png").exists()
