"""Reports people read: the headline first, compare's convention checks, metrics.md, empty plots."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest

from storyreasoning.data import SampleList, write_parquet
from storyreasoning.evaluate.pairs import Scores
from storyreasoning.evaluate.plots import consistency_plots, empty_plots, metrics_plot
from storyreasoning.evaluate.report import (
    HEADLINE,
    Report,
    conventions,
    headline_cell,
    headline_rows,
    mismatch_line,
    mismatches,
    outputs_line,
    per_story_rows,
    write_report,
)

from ..conftest import one_error_line
from ..data.fixtures import fixture_samples
from .test_evaluate_cli import shifted

pytest.importorskip("datasets", reason="needs the datasets library: pip install 'storyreasoning[data]'")

ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "COLUMNS": "200", "PATH": "/usr/bin:/bin"}


def run(*args, env=ENV) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "storyreasoning", "evaluate", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def judge_summary(version: str = "v1", creativity: float = 3.1) -> dict:
    """A judge/summary.json as ``evaluate judge`` writes it (its documented keys)."""
    return {
        "judge": {
            "endpoint": "http://127.0.0.1:9/v1",
            "model": "judge-model",
            "prompt_version": version,
            "prompt_sha256": "ab" * 32,
        },
        "scores": {
            "creativity": {"mean": creativity, "low": creativity - 0.3, "high": creativity + 0.3, "n": 3},
            "coherence": {"mean": 4.0, "low": 3.5, "high": 4.5, "n": 3},
            "grounding_quality": {"mean": 2.0, "low": 1.5, "high": 2.5, "n": 3},
            "hallucinations": {"mean": 1.25, "low": 0.5, "high": 2.0, "n": 3},
        },
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A 4-story test split and a run of raw outputs: perfect, one image's boxes moved, none, no CoT."""
    root = tmp_path_factory.mktemp("reports")
    samples = fixture_samples(4)
    write_parquet(SampleList(samples), root / "data", split="test")
    reference = samples[0].output_text()
    texts = root / "texts"
    texts.mkdir()
    (texts / "s00.txt").write_text(reference, encoding="utf-8")
    (texts / "s01.txt").write_text(shifted(reference, 2, 400), encoding="utf-8")
    (texts / "s03.txt").write_text("I cannot tell a story about these images.", encoding="utf-8")
    return root


def test_evaluate_prints_the_headline_first_and_the_long_tables_only_with_all(world, tmp_path):
    args = (world / "texts", "--dataset", world / "data", "--split", "test", "--language-backend", "python")
    result = run(*args, "--out", tmp_path / "short", "--no-plots")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].strip() == "Headline"
    shown = {line.split("│")[0].strip(): line for line in lines if "│" in line}
    assert list(shown) == [m.label for m in HEADLINE if not m.key.startswith("judge.")]
    # one of four stories has a well-structured output (s02 has none); the references all are
    assert [cell.strip() for cell in shown["well-structured"].split("│")[1:]] == ["25.0%", "100.0%"]
    assert "3 of 4 stories have an output; the 1 missing is scored as empty outputs" in result.stdout
    assert "0.5556" in shown["grounding F1"]
    assert "precision_macro" not in result.stdout and "link_recall_micro" not in result.stdout
    assert "--all prints them" in result.stdout
    assert "no METEOR 1.5 without Java" in result.stdout  # why the METEOR cell is empty
    # which backend made the language numbers, in one line under the headline, as metrics.md records it
    signature = json.loads((tmp_path / "short" / "metrics.json").read_text())["metrics"]["language"]["extra"][
        "signature"
    ]
    assert signature.startswith("python|regex-ptb|meteor_exact|")
    assert [line for line in lines if line.startswith("language:")] == [f"language: {signature}"]
    assert lines.index(f"language: {signature}") < lines.index(next(x for x in lines if "--all prints" in x))

    every = run(*args, "--out", tmp_path / "all", "--no-plots", "--all")
    assert every.returncode == 0, every.stderr
    assert every.stdout.index("Headline") < every.stdout.index("precision_macro")
    assert "link_recall_micro" in every.stdout
    assert every.stdout.index(f"language: {signature}") < every.stdout.index("precision_macro")

    md = (tmp_path / "short" / "metrics.md").read_text()
    first = md.split("\n\n")
    assert first[0] == "# Evaluation of texts"
    assert first[1].splitlines()[0] == "| metric | value | reference |"
    assert "| well-structured | 25.0% | 100.0% |" in first[1]
    assert "3 of 4 stories have an output" in first[2]
    assert "| hallucinations / story (structural) | 0.67 | 0.00 |" in first[1]
    assert md.index("| well-structured |") < md.index("## Grounding")
    conventions = json.loads((tmp_path / "short" / "metrics.json").read_text())["conventions"]
    assert conventions["language backend"] == "python" and conventions["protocol"] == "default"


def test_evaluate_prints_no_language_signature_without_the_language_metrics(world, tmp_path):
    args = (world / "texts", "--dataset", world / "data", "--split", "test", "--no-plots")
    for extra in ((), ("--all",)):
        result = run(*args, "--metrics", "grounding,consistency", "--out", tmp_path / "out", *extra)
        assert result.returncode == 0, result.stderr
        assert "3 of 4 stories have an output" in result.stdout
        assert not any(line.startswith("language:") for line in result.stdout.splitlines()), result.stdout
        assert "meteor" not in result.stdout.lower() and "|" not in result.stdout


def test_compare_refuses_runs_scored_with_another_language_backend_or_protocol(world, tmp_path):
    """Fast: the second evaluation's recorded backend is edited (the slow test below scores with Java)."""
    base = (world / "texts", "--dataset", world / "data", "--split", "test", "--no-plots")
    result = run(
        *base, "--metrics", "language,grounding", "--language-backend", "python", "--out", tmp_path / "py"
    )
    assert result.returncode == 0, result.stderr
    shutil.copytree(tmp_path / "py", tmp_path / "java")
    report = json.loads((tmp_path / "java" / "metrics.json").read_text())
    report["metrics"]["language"]["extra"]["backend"] = "coco"
    (tmp_path / "java" / "metrics.json").write_text(json.dumps(report))
    refused = run("compare", tmp_path / "py", tmp_path / "java")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "(language backend: py=python, java=coco)" in " ".join(refused.stderr.split())
    original = run(*base, "--metrics", "language,grounding", "--language-backend", "python", "--protocol", "original",
                   "--out", tmp_path / "orig")  # fmt: skip
    assert original.returncode == 0, original.stderr
    marked = run("compare", tmp_path / "py", tmp_path / "orig", "--allow-mismatch", "--all")
    assert marked.returncode == 0, marked.stderr
    assert "protocol: py=default, orig=original" in " ".join(marked.stderr.split())
    rows = {line.split("│")[0].strip() for line in marked.stdout.splitlines() if "│" in line}
    assert {"grounding F1 ≠", "METEOR ≠", "grounding.f1_micro ≠", "language.bleu_4 ≠"} <= rows
    alike = run("compare", tmp_path / "py", tmp_path / "py")
    assert alike.returncode == 0 and "≠" not in alike.stdout + alike.stderr


@pytest.mark.slow  # Java's METEOR and tokenizer start in about 15 s
def test_compare_of_a_java_scored_and_a_python_scored_run_says_they_differ(world, tmp_path):
    if shutil.which("java") is None:
        pytest.skip("needs Java for the coco backend (apt-get install default-jre-headless)")
    base = (world / "texts", "--dataset", world / "data", "--split", "test", "--no-plots")
    for backend in ("coco", "python"):
        result = run(
            *base, "--metrics", "language", "--language-backend", backend, "--out", tmp_path / backend
        )
        assert result.returncode == 0, result.stderr
    refused = run("compare", tmp_path / "coco", tmp_path / "python", "--out", tmp_path / "cmp")
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr
    message = " ".join(refused.stderr.split())
    assert "not scored the same way (language backend: coco=coco, python=python)" in message, message
    assert "--allow-mismatch" in message
    assert not (tmp_path / "cmp").exists()  # nothing written for a comparison refused

    marked = run(
        "compare", tmp_path / "coco", tmp_path / "python", "--allow-mismatch", "--out", tmp_path / "cmp"
    )
    assert marked.returncode == 0, marked.stderr
    assert "NOT SCORED THE SAME WAY" in " ".join(marked.stderr.split())
    meteor = next(line for line in marked.stdout.splitlines() if line.strip().startswith("METEOR"))
    assert meteor.split("│")[0].strip() == "METEOR ≠"
    assert float(meteor.split("│")[1]) > 0 and meteor.split("│")[2].strip() == "–"  # Java's METEOR, and none
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert data["mismatches"] == {"language backend": {"coco": "coco", "python": "python"}}
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| METEOR ≠ |" in md and "**Not scored the same way**" in md
    assert "| language.meteor ≠ |" in md


def test_judge_scores_join_the_headline_and_a_different_judge_prompt_is_refused(world, tmp_path):
    runs = {}
    for name, version in (("a", "v1"), ("b", "v2")):
        folder = tmp_path / name
        shutil.copytree(world / "texts", folder)
        (folder / "judge").mkdir()
        (folder / "judge" / "summary.json").write_text(json.dumps(judge_summary(version)), encoding="utf-8")
        result = run(
            folder, "--dataset", world / "data", "--split", "test", "--metrics", "grounding", "--no-plots"
        )
        assert result.returncode == 0, result.stderr
        runs[name] = folder
    creativity = next(line for line in result.stdout.splitlines() if "creativity" in line)
    assert creativity.split("│")[1].strip() == "3.10 [2.80, 3.40]"
    md = (runs["a"] / "eval" / "metrics.md").read_text()
    assert "| creativity (judge, 1-5) | 3.10 [2.80, 3.40] |" in md
    assert "| hallucinations / story (judge) | 1.25 [0.50, 2.00] |" in md
    recorded = json.loads((runs["a"] / "eval" / "metrics.json").read_text())
    assert recorded["conventions"]["judge prompt"] == "v1 (sha256 abababababab)"

    refused = run("compare", runs["a"], runs["b"])
    assert refused.returncode != 0
    assert "judge prompt: a=v1 (sha256 abababababab), b=v2 (sha256 abababababab)" in " ".join(
        refused.stderr.split()
    )
    # the judge's newer summary (beside the run) is what compare reads
    (runs["b"] / "judge" / "summary.json").write_text(json.dumps(judge_summary("v1", 2.5)), encoding="utf-8")
    same = run("compare", runs["a"], runs["b"])
    assert same.returncode == 0, same.stderr
    creativity = next(line for line in same.stdout.splitlines() if "creativity" in line)
    assert [c.strip() for c in creativity.split("│")[1:3]] == ["3.10 [2.80, 3.40]", "2.50 [2.20, 2.80]"]


def test_a_damaged_judge_summary_is_one_clear_line(world, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(world / "texts", folder)
    (folder / "judge").mkdir()
    (folder / "judge" / "summary.json").write_text("{not json", encoding="utf-8")
    result = run(
        folder, "--dataset", world / "data", "--split", "test", "--metrics", "grounding", "--no-plots"
    )
    assert result.returncode != 0
    assert "summary.json cannot be read" in result.stderr and "evaluate judge again" in result.stderr
    assert "Traceback" not in result.stderr


def test_headline_rows_take_the_references_values_and_leave_out_families_not_scored():
    report = {
        "metrics": {
            "consistency": {
                "overall": {"well_structured_rate": 0.5, "hallucinations_per_story": 2.0},
                "extra": {"reference": {"overall": {"well_structured_rate": 1.0}}},
            },
            "language": {"overall": {"meteor": None}, "extra": {"backend": "python"}},
        }
    }
    rows = {row["key"]: row for row in headline_rows(report)}
    assert list(rows) == [
        "consistency.well_structured_rate",
        "consistency.pronoun_grounding_char",
        "consistency.hallucinations_per_story",
        "language.meteor",
    ]
    assert headline_cell(rows["consistency.well_structured_rate"]) == "50.0%"
    assert headline_cell(rows["consistency.well_structured_rate"], "reference") == "100.0%"
    assert rows["consistency.hallucinations_per_story"]["reference"] is None
    assert headline_cell(rows["consistency.pronoun_grounding_char"]) == "–"
    assert "python backend" in rows["language.meteor"]["note"]
    judged = headline_rows(report, judge_summary())
    assert [r["key"] for r in judged][-4:] == [m.key for m in HEADLINE if m.key.startswith("judge.")]


def test_the_outputs_line_names_the_missing_stories_and_how_they_were_scored():
    def line(stories, missing, protocol="default"):
        return outputs_line({"dataset": {"stories": stories, "missing": missing}, "protocol": protocol})

    assert line(3, 0) == "3 of 3 stories have an output"
    assert line(3, 2) == (
        "1 of 3 stories have an output; the 2 missing are scored as empty outputs "
        "(not well-structured, zero recall)"
    )
    assert line(4, 1).startswith("3 of 4 stories have an output; the 1 missing is scored")
    assert line(3, 2, "original").endswith("the 2 missing are left out, as the original did")
    # a report that does not say (written before evaluate recorded it and without counts, or damaged)
    assert outputs_line({}) is None
    assert line("3", 2) is None and line(3, True) is None and line(3, 4) is None and line(3, -1) is None
    # a report from before: the counts the consistency family keeps say it (the studio reads such reports)
    counted = {"metrics": {"consistency": {"overall": {"n_stories": 3, "n_missing": 1}}}}
    assert outputs_line(counted) == outputs_line({"dataset": {"stories": 3, "missing": 1}})
    assert (
        outputs_line({"dataset": {"stories": 3, "missing": 0}, **counted}) == "3 of 3 stories have an output"
    )


def test_plots_with_no_data_write_nothing_and_say_so(tmp_path):
    empty = Scores("consistency", {"well_structured_rate": None}, extra={"persistence": {}, "pronouns": {}})
    unused = Scores(
        "consistency",
        {},
        extra={
            "persistence": {"cot": {"characters": {"n": [], "macro": []}}},
            "pronouns": {"he": {"rate_char": None, "rate_any": None}},
        },
    )
    for scores in (empty, unused):
        assert consistency_plots(scores, tmp_path) == []
        notes = empty_plots({"consistency": scores})
        assert notes == [
            "no data for metrics.png: no family has a rate to draw",
            "no data for persistence.png: no CoT names a character or an object",
            "no data for pronouns.png: no story uses a pronoun the metric counts",
        ]

    report = SimpleNamespace(run={"label": "x"}, results={"consistency": empty})
    assert metrics_plot(report, tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_a_run_without_pronouns_says_so_instead_of_an_empty_plot(world, tmp_path):
    texts = tmp_path / "texts"
    texts.mkdir()
    for sid in ("s00", "s01", "s02", "s03"):
        (texts / f"{sid}.txt").write_text("I cannot tell a story about these images.", encoding="utf-8")
    result = run(texts, "--dataset", world / "data", "--split", "test", "--metrics", "consistency")
    assert result.returncode == 0, result.stderr
    note = "no data for pronouns.png: no story uses a pronoun the metric counts"
    assert note in " ".join(result.stdout.split())
    assert note in (texts / "eval" / "metrics.md").read_text()
    plots = texts / "eval" / "plots"
    assert sorted(p.name for p in plots.iterdir()) == ["metrics.png", "persistence.png"]


def test_the_judges_own_summary_reads_into_the_headline(world, tmp_path):
    """summary.json as evaluate judge's summarize writes it, not a hand-made one."""
    from storyreasoning.evaluate.judge import summarize

    results = {
        sid: {"status": "judged", "scores": {"creativity": c, "coherence": 4, "grounding_quality": 3},
              "hallucinations": [{"type": "object"}] * h, "usage": {"prompt_tokens": 10, "completion_tokens": 5}}
        for sid, c, h in (("s00", 2, 0), ("s01", 3, 1), ("s03", 4, 2))
    }  # fmt: skip
    judge = {
        "endpoint": "http://127.0.0.1:9/v1",
        "model": "judge",
        "prompt_version": "v9",
        "prompt_sha256": "cd" * 32,
    }
    summary = summarize(results, judge, stories=4)
    folder = tmp_path / "run"
    shutil.copytree(world / "texts", folder)
    (folder / "judge").mkdir()
    (folder / "judge" / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    result = run(
        folder, "--dataset", world / "data", "--split", "test", "--metrics", "identity", "--no-plots"
    )
    assert result.returncode == 0, result.stderr
    shown = {
        line.split("│")[0].strip(): line.split("│")[1].strip()
        for line in result.stdout.splitlines()
        if "│" in line
    }
    creativity = summary["scores"]["creativity"]
    assert creativity["mean"] == pytest.approx(3.0)
    assert shown["creativity (judge, 1-5)"] == f"3.00 [{creativity['low']:.2f}, {creativity['high']:.2f}]"
    assert shown["hallucinations / story (judge)"].startswith("1.00 [")
    assert list(shown) == ["identity F1", *(m.label for m in HEADLINE if m.key.startswith("judge."))]


def test_conventions_name_each_difference_and_ignore_what_was_not_scored():
    def report(source="d", split="test", stories=4, protocol="default", backend=None):
        metrics = {"language": {"overall": {}, "extra": {"backend": backend}}} if backend else {}
        return {"dataset": {"source": source, "split": split}, "stories": stories, "protocol": protocol,
                "metrics": metrics}  # fmt: skip

    labels = ["a", "b", "c"]
    same = [conventions(r) for r in (report(backend="coco"), report(), report(backend="coco"))]
    assert mismatches(labels, same) == {}  # b has no language metrics: nothing to disagree on
    other = [conventions(r) for r in (report(), report(split="validation"), report(stories=2))]
    assert mismatches(labels, other) == {
        "dataset": {
            "a": "d split test, 4 stories",
            "b": "d split validation, 4 stories",
            "c": "d split test, 2 stories",
        }
    }
    judged = [conventions(report(), judge_summary(v)) for v in ("v1", "v1", "v2")]
    found = mismatches(labels, judged)
    assert list(found) == ["judge prompt"]
    assert mismatch_line(found) == (
        "judge prompt: a=v1 (sha256 abababababab), b=v1 (sha256 abababababab), c=v2 (sha256 abababababab)"
    )


def test_per_story_csv_has_a_column_for_every_key_and_a_blank_for_none_or_absent(tmp_path):
    import csv

    grounding = Scores("grounding", {}, {"a": {"f1": 0.5, "ap": None}, "b": {"f1": 1.0, "tp": 3}})
    language = Scores("language", {}, {"b": {"bleu_4": 0.25}})  # story a absent
    report = Report(
        run={}, dataset={}, protocol="default", results={"grounding": grounding, "language": language}
    )
    report.story_ids = ["a", "b", "c"]  # c: in no family
    columns, rows = per_story_rows(report)
    assert columns == ["story_id", "grounding.f1", "grounding.ap", "grounding.tp", "language.bleu_4"]
    assert rows == [["a", 0.5, "", "", ""], ["b", 1.0, "", 3, 0.25], ["c", "", "", "", ""]]
    write_report(report, tmp_path, plots=False)
    with (tmp_path / "per_story.csv").open(newline="") as f:
        read = list(csv.DictReader(f))
    assert [row["story_id"] for row in read] == ["a", "b", "c"]
    assert read[1] == {
        "story_id": "b",
        "grounding.f1": "1.0",
        "grounding.ap": "",
        "grounding.tp": "3",
        "language.bleu_4": "0.25",
    }


def evaluated(folder, report) -> None:
    """``folder`` as an evaluated run: ``report`` (a dict, or bytes as they are) in its eval/metrics.json."""
    (folder / "eval").mkdir(parents=True)
    data = report if isinstance(report, bytes) else json.dumps(report).encode()
    (folder / "eval" / "metrics.json").write_bytes(data)


GOOD_REPORT = {"protocol": "default", "metrics": {"grounding": {"overall": {"f1_micro": 0.5}}}}


@pytest.mark.parametrize(
    ("report", "problem"),
    [
        (b"[1, 2]", "not a report as evaluate writes it (it holds a list, not an object)"),
        (b"\xff\xfe\x00{", "is not UTF-8 text"),
        ({"protocol": "default"}, "(it has no metrics)"),
        ({"metrics": "x"}, "(metrics is a string, not an object)"),
        ({"metrics": {"grounding": [1]}}, "(metrics.grounding is a list, not an object)"),
        (
            {"metrics": {"grounding": {"overall": [1]}}},
            "(metrics.grounding.overall is a list, not an object)",
        ),
        ({"metrics": {"grounding": {"overall": None}}}, "(metrics.grounding.overall is null, not an object)"),
        ({"metrics": {"language": {"overall": {}, "extra": "coco"}}}, "(metrics.language.extra is a string"),
        (
            {"metrics": {"identity": {"extra": {"reference": {"overall": 1}}}}},
            "extra.reference.overall is a num",
        ),
        ({"metrics": {}, "run": "r"}, "(run is a string, not an object)"),
        ({"metrics": {}, "run": {"path": 5}}, "(run.path is a number, not a string)"),
        ({"metrics": {}, "run": {"label": ["a"]}}, "(run.label is a list, not a string)"),
    ],
)
def test_compare_refuses_a_report_not_as_evaluate_writes_it_in_one_line(tmp_path, report, problem):
    evaluated(tmp_path / "good", GOOD_REPORT)
    evaluated(tmp_path / "bad", report)
    line = one_error_line(run("compare", tmp_path / "good", tmp_path / "bad"))
    assert line.startswith(f"error: {tmp_path / 'bad' / 'eval' / 'metrics.json'} "), line
    assert problem in line and line.endswith("; evaluate the run again"), line


def test_compare_reads_a_damaged_judge_summary_or_convention_as_a_difference(tmp_path):
    evaluated(tmp_path / "a", GOOD_REPORT)
    evaluated(tmp_path / "b", {**GOOD_REPORT, "protocol": ["default"]})  # a list is no convention
    line = one_error_line(run("compare", tmp_path / "a", tmp_path / "b"))
    assert "not scored the same way (protocol: a=default, b=['default'])" in line
    evaluated(tmp_path / "c", GOOD_REPORT)
    for folder, model in (("a", ["judge-model"]), ("c", "judge-model")):
        summary = judge_summary()
        summary["judge"]["model"] = model
        (tmp_path / folder / "judge").mkdir()
        (tmp_path / folder / "judge" / "summary.json").write_text(json.dumps(summary))
    line = one_error_line(run("compare", tmp_path / "a", tmp_path / "c"))
    assert "judge model: a=['judge-model'], c=judge-model" in line
    (tmp_path / "c" / "judge" / "summary.json").write_text(json.dumps({"judge": "x", "scores": [1]}))
    line = one_error_line(run("compare", tmp_path / "a", tmp_path / "c"))
    assert "summary.json has no scores" in line
    evaluated(tmp_path / "d", GOOD_REPORT)
    assert run("compare", tmp_path / "a", tmp_path / "d", "--allow-mismatch").returncode == 0


def test_compare_knows_one_local_dataset_however_it_was_typed(world, tmp_path):
    """``--dataset data`` (relative) and ``--dataset /abs/data`` name one dataset: compare refused them
    as scored on different datasets. A copy at another path is the same; other content is not."""
    base = ("--split", "test", "--no-plots", "--metrics", "grounding")
    absolute = run(world / "texts", "--dataset", world / "data", *base, "--out", tmp_path / "abs")
    relative = subprocess.run(
        [sys.executable, "-m", "storyreasoning", "evaluate", "texts", "--dataset", "./data", *map(str, base),
         "--out", str(tmp_path / "rel")],
        capture_output=True, text=True, env=ENV, cwd=world, timeout=300,
    )  # fmt: skip
    assert absolute.returncode == 0 and relative.returncode == 0, absolute.stderr + relative.stderr
    report = json.loads((tmp_path / "rel" / "metrics.json").read_text())
    assert report["dataset"]["source"] == "./data" and report["dataset"]["path"] == str(
        (world / "data").resolve()
    )
    alike = run("compare", tmp_path / "abs", tmp_path / "rel")
    assert alike.returncode == 0, alike.stderr
    # a copy elsewhere (a project moved, another disk): the same content, the same dataset
    shutil.copytree(world / "data", tmp_path / "copy")
    copied = run(world / "texts", "--dataset", tmp_path / "copy", *base, "--out", tmp_path / "copied")
    assert copied.returncode == 0, copied.stderr
    assert run("compare", tmp_path / "abs", tmp_path / "copied").returncode == 0
    # other content under the same name: another dataset
    shard = next((tmp_path / "copy").rglob("*.parquet"))
    shard.write_bytes(shard.read_bytes())  # the same shard, and one more file beside it
    shutil.copy(shard, shard.with_name("test-extra.parquet"))
    other = run(world / "texts", "--dataset", tmp_path / "copy", *base, "--out", tmp_path / "other")
    assert other.returncode == 0, other.stderr
    refused = run("compare", tmp_path / "abs", tmp_path / "other")
    assert refused.returncode != 0 and "not scored the same way (dataset:" in " ".join(refused.stderr.split())
