"""A run with missing outputs, evaluated on the examples: its headline says so, and its rates count them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .test_evaluate_cli import run

EXAMPLES = Path(__file__).parents[2] / "examples"
STORIES = EXAMPLES / "stories"  # cat-and-coffee, lighthouse, pioneers


def evaluate(folder: Path, out: Path, *args) -> tuple[str, dict, str]:
    """stdout, metrics.json and metrics.md of ``evaluate folder`` on the examples."""
    result = run(
        folder, "--dataset", STORIES, "--metrics", "grounding,consistency", "--no-plots", "--out", out, *args
    )
    assert result.returncode == 0, result.stderr
    return result.stdout, json.loads((out / "metrics.json").read_text()), (out / "metrics.md").read_text()


def headline_cell(stdout: str, label: str) -> str:
    return next(line for line in stdout.splitlines() if line.strip().startswith(label)).split("│")[1].strip()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``partial``: the lighthouse's output alone (2 of 3 missing); ``complete``: an output for every
    story (the lighthouse's, a malformed one, the pioneers' reference)."""
    from storyreasoning.data import load_stories

    root = tmp_path_factory.mktemp("missing")
    partial, complete = root / "partial", root / "complete"
    for folder in (partial, complete):
        folder.mkdir()
        shutil.copy(EXAMPLES / "outputs" / "lighthouse.txt", folder / "lighthouse.txt")
    shutil.copy(EXAMPLES / "outputs" / "malformed.txt", complete / "cat-and-coffee.txt")
    stories = load_stories(STORIES, None)
    pioneers = next(stories[i] for i in range(len(stories)) if stories[i].story_id == "pioneers")
    (complete / "pioneers.txt").write_text(pioneers.output_text(), encoding="utf-8")
    return root


def test_a_run_with_one_of_three_outputs_is_one_third_well_structured_and_says_two_are_missing(runs):
    stdout, metrics, md = evaluate(runs / "partial", runs / "partial-eval")
    consistency = metrics["metrics"]["consistency"]["overall"]
    # the lighthouse's output is well-structured; the two missing stories are not
    assert consistency["well_structured_rate"] == pytest.approx(1 / 3)
    assert (consistency["n_stories"], consistency["n_missing"], consistency["n_evaluated"]) == (3, 2, 3)
    assert consistency["n_well_structured"] == 1
    assert metrics["metrics"]["grounding"]["overall"]["missing"] == 2
    assert headline_cell(stdout, "well-structured") == "33.3%"
    said = "1 of 3 stories have an output; the 2 missing are scored as empty outputs"
    assert said in stdout
    headline = md.split("## Grounding")[0]
    assert "| well-structured | 33.3% |" in headline and said in headline
    assert "missing outputs count as not well-structured" in md


def test_the_original_protocol_still_leaves_missing_outputs_out(runs):
    stdout, metrics, md = evaluate(runs / "partial", runs / "partial-original", "--protocol", "original")
    consistency = metrics["metrics"]["consistency"]["overall"]
    assert consistency["well_structured_rate"] == 1.0  # as the original code: the one output there is
    assert (consistency["n_stories"], consistency["n_missing"], consistency["n_evaluated"]) == (3, 2, 1)
    said = "1 of 3 stories have an output; the 2 missing are left out, as the original did"
    assert said in stdout and said in md.split("## Grounding")[0]


def test_a_complete_runs_numbers_are_those_it_had_and_its_headline_says_every_story_has_an_output(runs):
    stdout, metrics, md = evaluate(runs / "complete", runs / "complete-eval")
    consistency = metrics["metrics"]["consistency"]["overall"]
    # as evaluate scored this run before missing outputs counted (measured then)
    assert consistency["well_structured_rate"] == pytest.approx(2 / 3)
    assert consistency["hallucinations_per_story"] == pytest.approx(5 / 3)
    assert consistency["pronoun_grounding_char"] == pytest.approx(0.4762, abs=5e-5)
    assert (consistency["n_stories"], consistency["n_missing"], consistency["n_evaluated"]) == (3, 0, 3)
    assert headline_cell(stdout, "well-structured") == "66.7%"
    assert "3 of 3 stories have an output" in stdout and "missing are" not in stdout
    assert "3 of 3 stories have an output" in md.split("## Grounding")[0]
    # with no output missing, the protocols' rules for missing ones make no difference
    _, original, _ = evaluate(runs / "complete", runs / "complete-original", "--protocol", "original")
    assert original["metrics"]["consistency"]["overall"] == consistency
