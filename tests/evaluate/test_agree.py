"""``storyreasoning evaluate agree``: two judges, or a judge and people's labels, on hand-made files."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from functools import partial

import pytest

from storyreasoning.errors import UsageError
from storyreasoning.evaluate.agree import agree, agreement, read_ratings
from storyreasoning.evaluate.settings import AgreeSettings
from storyreasoning.evaluate.stats import cohen_kappa, krippendorff_alpha, spearman

from ..conftest import one_error_line, run_cli


def judgement(story_id, creativity, coherence, grounding, hallucinations=0, status="judged"):
    found = [
        {"type": "object", "quote": f"thing {k}", "frame": 1, "reason": "not in the frame"}
        for k in range(hallucinations)
    ]
    return {
        "story_id": story_id,
        "status": status,
        "scores": {"creativity": creativity, "coherence": coherence, "grounding_quality": grounding},
        "hallucinations": found,
        "judge": {"model": "judge-a", "prompt_version": "v1"},
    }


# The judge (A) and the people (B) on six stories:
#   story  creativity  coherence  grounding  hallucinations
#           A   B       A   B      A   B       A   B
#   s1      1   1       1   1      2   2       0   0
#   s2      2   2       1   2      3   3       1   1
#   s3      3   3       2   2      4   4       2   1
#   s4      4   4       3   2      5   .       0   0      (B left grounding empty)
#   s5      5   5       (A failed, then judged: 5 5 5 3)  -> B has 5 5 5 3 too
#   s6      A failed for good; B rated it (left out, "only in B")
#   s7      only in A
A_LINES = [
    judgement("s1", 1, 1, 2, 0),
    judgement("s2", 2, 1, 3, 1),
    judgement("s3", 3, 2, 4, 2),
    judgement("s4", 4, 3, 5, 0),
    {"story_id": "s5", "status": "failed", "error": "invalid twice", "answers": ["{", "{"]},
    judgement("s5", 5, 5, 5, 3),
    {"story_id": "s6", "status": "failed", "error": "invalid twice", "answers": ["no", "no"]},
    judgement("s7", 3, 3, 3, 0),
]
B_CSV = """story_id,creativity,coherence,grounding_quality,hallucinations,notes
s1,1,1,2,0,ok
s2,2,2,3,1,
s3,3,2,4,1,
s4,4,2,,0,forgot grounding
s5,5,5,5,3,
s6,2,2,2,0,
"""


@pytest.fixture
def sides(tmp_path):
    judge = tmp_path / "run" / "judge"
    judge.mkdir(parents=True)
    (judge / "judgements.jsonl").write_text("".join(json.dumps(line) + "\n" for line in A_LINES))
    labels = tmp_path / "people.csv"
    labels.write_text(B_CSV)
    return tmp_path / "run", labels


def test_reads_a_judge_result_and_a_labels_file(sides):
    run, labels = sides
    a = read_ratings(run)  # a run folder: its judge/judgements.jsonl
    assert a.kind == "judge" and a.path.name == "judgements.jsonl"
    assert sorted(a.values) == ["s1", "s2", "s3", "s4", "s5", "s7"]
    assert a.failed == 1  # s6; s5 failed once and was judged after
    assert a.values["s3"] == {"creativity": 3, "coherence": 2, "grounding_quality": 4, "hallucinations": 2}
    b = read_ratings(labels)
    assert b.kind == "labels" and b.failed == 0
    assert b.values["s4"] == {
        "creativity": 4,
        "coherence": 2,
        "hallucinations": 0,
    }  # the empty cell is no rating
    assert (
        read_ratings(run / "judge").values
        == a.values
        == read_ratings(run / "judge" / "judgements.jsonl").values
    )


def test_agreement_by_hand(sides):
    run, labels = sides
    result = agreement(read_ratings(run), read_ratings(labels), ["creativity", "coherence", "grounding_quality",
                                                                  "hallucinations"], resamples=200)  # fmt: skip
    assert result["shared_stories"] == 5 and result["only_in_a"] == 1 and result["only_in_b"] == 1
    m = result["metrics"]
    # creativity: the same five scores on both sides
    assert m["creativity"]["n"] == 5
    for stat in ("kappa", "alpha", "spearman"):
        assert m["creativity"][stat]["value"] == pytest.approx(1.0)
    # coherence: A 1 1 2 3 5, B 1 2 2 2 5 on the scale 1..5 with quadratic weights (i-j)²/16:
    # observed Σ w·O = (1 + 1)/16/5 = 0.025 ((1,2) and (3,2) one step apart); margins A (2,1,1,0,1)/5,
    # B (1,3,0,0,1)/5; expected Σ_ij a_i b_j (i-j)²/16 = (2·3·1 + 2·1·16 + 1·1·1 + 1·1·9 + 1·1·4 + 1·3·1
    # + 1·1·4 + 1·1·16 + 1·3·9)/25/16 = 102/400 = 0.255; kappa = 1 - 0.025/0.255 = 92/102
    coherence = m["coherence"]
    assert (
        coherence["n"] == 5 and coherence["mean_a"] == pytest.approx(12 / 5) and coherence["mean_b"] == 12 / 5
    )
    assert coherence["kappa"]["value"] == pytest.approx(92 / 102)
    assert coherence["kappa"]["value"] == pytest.approx(cohen_kappa([1, 1, 2, 3, 5], [1, 2, 2, 2, 5],
                                                                    weights="quadratic", labels=[1, 2, 3, 4, 5]))  # fmt: skip
    assert coherence["alpha"]["value"] == pytest.approx(
        krippendorff_alpha([[1, 1], [1, 2], [2, 2], [3, 2], [5, 5]], level="ordinal")
    )
    assert coherence["spearman"]["value"] == pytest.approx(spearman([1, 1, 2, 3, 5], [1, 2, 2, 2, 5]))
    assert coherence["alpha_level"] == "ordinal" and coherence["kappa_scale"] == [1.0, 5.0]
    low, high = coherence["kappa"]["low"], coherence["kappa"]["high"]
    assert low <= coherence["kappa"]["value"] <= high <= 1.0
    # grounding: s4 unrated by B, so four pairs, all equal
    assert m["grounding_quality"]["n"] == 4 and m["grounding_quality"]["kappa"]["value"] == pytest.approx(1.0)
    # hallucinations: counts A 0 1 2 0 3, B 0 1 1 0 3, interval alpha, kappa on 0..3
    h = m["hallucinations"]
    assert h["alpha_level"] == "interval" and h["kappa_scale"] == [0.0, 3.0]
    assert h["alpha"]["value"] == pytest.approx(
        krippendorff_alpha([[0, 0], [1, 1], [2, 1], [0, 0], [3, 3]], level="interval")
    )
    # the same seed gives the same intervals
    again = agreement(read_ratings(run), read_ratings(labels), ["coherence"], resamples=200)
    assert again["metrics"]["coherence"] == coherence


def test_intervals_are_the_plain_statistics_on_resampled_stories(sides):
    # the bootstrap draws each resample as counts over the distinct (A, B) pairs; expanded back
    # into stories, the plain statistics on them give the same interval and the same undefined count
    import numpy as np

    run, labels = sides
    result = agreement(
        read_ratings(run), read_ratings(labels), ["coherence", "hallucinations"], resamples=300, seed=4
    )
    cases = {
        "coherence": ([1, 1, 2, 3, 5], [1, 2, 2, 2, 5], [1, 2, 3, 4, 5], "ordinal"),
        "hallucinations": ([0, 1, 2, 0, 3], [0, 1, 1, 0, 3], [0, 1, 2, 3], "interval"),
    }
    for metric, (a, b, scale, level) in cases.items():
        pairs, counts = np.unique(np.column_stack([a, b]), axis=0, return_counts=True)
        drawn = np.random.default_rng(4).multinomial(5, counts / 5, size=300)
        plain = {
            "kappa": partial(cohen_kappa, weights="quadratic", labels=scale),
            "alpha": lambda x, y, level=level: krippendorff_alpha(np.column_stack([x, y]), level=level),
            "spearman": spearman,
        }
        for name, statistic in plain.items():
            draws = np.array([statistic(np.repeat(pairs[:, 0], w), np.repeat(pairs[:, 1], w)) for w in drawn])
            defined = draws[~np.isnan(draws)]
            got = result["metrics"][metric][name]
            assert got["undefined_resamples"] == len(draws) - len(defined)
            low, high = np.quantile(defined, [0.025, 0.975])
            assert got["low"] == pytest.approx(low, abs=1e-12)
            assert got["high"] == pytest.approx(high, abs=1e-12)
    # five stories: some resamples rate one side constant
    assert result["metrics"]["coherence"]["spearman"]["undefined_resamples"] > 0


def test_undefined_statistics_are_null_not_nan(tmp_path):
    a = tmp_path / "a.jsonl"
    b = tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps({"story_id": f"s{k}", "creativity": 3}) + "\n" for k in range(4)))
    b.write_text("".join(json.dumps({"story_id": f"s{k}", "creativity": 3}) + "\n" for k in range(4)))
    result = agreement(read_ratings(a), read_ratings(b), ["creativity"], resamples=50)
    entry = result["metrics"]["creativity"]
    assert entry["n"] == 4 and entry["kappa"]["value"] is None and entry["spearman"]["value"] is None
    json.dumps(result, allow_nan=False)  # valid JSON: no NaN anywhere


def test_command_prints_the_table_and_writes_json(sides, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    run, labels = sides
    out = tmp_path / "agree.json"
    assert agree(AgreeSettings(a=run, b=labels, resamples=100, out=out)) == 0
    printed = capsys.readouterr()
    assert "creativity" in printed.out and "hallucinations" in printed.out
    assert "1 failed judgements left out" in printed.out
    assert "A 1, B 1" in printed.out
    written = json.loads(out.read_text())
    assert written["metrics"]["coherence"]["n"] == 5
    assert agree(AgreeSettings(a=run, b=labels, resamples=100, as_json=True, metrics="coherence")) == 0
    assert json.loads(capsys.readouterr().out)["metrics"].keys() == {"coherence"}


def test_cli_end_to_end(sides):
    run, labels = sides
    result = subprocess.run(
        [sys.executable, "-m", "storyreasoning", "evaluate", "agree", str(run), str(labels), "--json",
         "--resamples", "50", "--metrics", "creativity,hallucinations"],
        capture_output=True, text=True, timeout=120, env={"COLUMNS": "160", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert list(data["metrics"]) == ["creativity", "hallucinations"]
    assert data["resamples"] == 50


def test_a_labels_file_without_a_metric(sides, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    run, _ = sides
    labels = tmp_path / "creativity_only.csv"
    labels.write_text("story_id,creativity\ns1,1\ns2,3\ns3,3\n")
    assert agree(AgreeSettings(a=run, b=labels, resamples=0)) == 0
    captured = capsys.readouterr()
    assert "coherence: left out" in captured.err
    assert "creativity" in captured.out
    with pytest.raises(UsageError, match="has no coherence ratings"):
        agree(AgreeSettings(a=run, b=labels, metrics="coherence"))


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ("story_id,creativity\ns1,7\n", ".csv", "line 2: creativity is '7', not a whole number from 1 to 5"),
        ("story_id,creativity\ns1,2.5\n", ".csv", "not a whole number from 1 to 5"),
        ("id,creativity\ns1,2\n", ".csv", "has no story_id column"),
        ('{"story_id": "s1", "hallucinations": -1}\n', ".jsonl", "not a whole number of 0 or more"),
        ('{"story_id": "s1"\n{"story_id": "s2"}\n', ".jsonl", "line 1 is not JSON"),
        ("", ".jsonl", "holds no ratings"),
        ("story_id\n", ".txt", "neither CSV nor JSONL"),
        (
            "story_id,hallucinations\ns1,0\ns2,1e999\n",
            ".csv",
            "line 3: hallucinations is '1e999', not a whole",
        ),
        ("story_id,hallucinations\ns1,nan\n", ".csv", "line 2: hallucinations is 'nan', not a whole number"),
        ("story_id,creativity\ns1,inf\n", ".csv", "line 2: creativity is 'inf', not a whole number"),
        ('{"story_id": "s1", "hallucinations": Infinity}\n', ".jsonl", "line 1: hallucinations is inf"),
        (
            '{"story_id": "s1", "status": "ok", "scores": [1, 2]}\n{}\n',
            ".jsonl",
            "line 1: scores is a list, not an",
        ),
        ('{"story_id": "s1", "status": "ok", "scores": "abc"}\n{}\n', ".jsonl", "line 1: scores is a string"),
    ],
)
def test_bad_labels_name_the_problem(sides, tmp_path, content, suffix, message):
    run, _ = sides
    bad = tmp_path / f"bad{suffix}"
    bad.write_text(content)
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        agree(AgreeSettings(a=run, b=bad, resamples=0))


def test_bad_paths_and_options(sides, tmp_path):
    run, labels = sides
    with pytest.raises(UsageError, match=r"holds no judgements\.jsonl"):
        read_ratings(tmp_path)
    with pytest.raises(UsageError, match="does not exist"):
        read_ratings(tmp_path / "nope.csv")
    with pytest.raises(UsageError, match="unknown metric fluency"):
        agree(AgreeSettings(a=run, b=labels, metrics="creativity,fluency"))
    other = tmp_path / "other.csv"
    other.write_text("story_id,creativity\nx1,3\n")
    with pytest.raises(UsageError, match="share no story id"):
        agree(AgreeSettings(a=run, b=other, resamples=0))


def test_a_torn_last_line_is_not_a_rating(sides):
    run, labels = sides
    path = run / "judge" / "judgements.jsonl"
    with path.open("a") as f:
        f.write('{"story_id": "s8", "status": "jud')  # a judge still writing
    assert "s8" not in read_ratings(run).values
    assert not math.isnan(agreement(read_ratings(run), read_ratings(labels), ["creativity"],
                                    resamples=0)["metrics"]["creativity"]["kappa"]["value"])  # fmt: skip


@pytest.mark.parametrize(
    ("cell", "where"),
    [("1e999", "line 3: hallucinations is '1e999'"), ("nan", "line 3: hallucinations is 'nan'")],
)
def test_a_cell_that_is_not_finite_is_one_line_naming_the_file_row_and_column(sides, tmp_path, cell, where):
    _, labels = sides
    bad = tmp_path / "inf.csv"
    bad.write_text(f"story_id,hallucinations\ns1,0\ns2,{cell}\n")
    line = one_error_line(run_cli("evaluate", "agree", str(labels), str(bad)))
    assert f"{bad} {where}" in line and "not a whole number of 0 or more" in line


@pytest.mark.parametrize("scores", ["[1, 2]", '"abc"'])
def test_judgement_scores_that_are_no_object_are_one_line_naming_the_file_and_line(sides, tmp_path, scores):
    _, labels = sides
    bad = tmp_path / "judgements.jsonl"
    bad.write_text('{"story_id": "s1", "status": "ok", "scores": {"creativity": 3}}\n'
                   f'{{"story_id": "s2", "status": "ok", "scores": {scores}}}\n{{}}\n')  # fmt: skip
    line = one_error_line(run_cli("evaluate", "agree", str(labels), str(bad)))
    assert f"{bad} line 2: scores is" in line and "not an object" in line


@pytest.mark.parametrize("resamples", ["100001", "2000000000", "99999999999999999999"])
def test_resamples_have_an_upper_bound(sides, resamples):
    from storyreasoning import settings as S
    from storyreasoning.evaluate.settings import MAX_RESAMPLES

    field = next(f for f in S.settings_fields(AgreeSettings) if f.name == "resamples")
    assert field.spec.max == MAX_RESAMPLES == 100_000 and "at most 100000" in field.spec.help
    run, labels = sides
    line = one_error_line(run_cli("evaluate", "agree", str(run), str(labels), "--resamples", resamples))
    assert "--resamples" in line and "100000" in line


def test_a_folder_given_as_out_is_refused_up_front(sides, tmp_path):
    run, labels = sides
    folder = tmp_path / "results"
    folder.mkdir()
    line = one_error_line(run_cli("evaluate", "agree", str(run), str(labels), "--out", str(folder)))
    assert (
        line == f"error: --out {folder} is a folder; give a file path (for example {folder / 'agree.json'})"
    )
    assert list(folder.iterdir()) == []  # no temporary file left behind either
