"""``print_telling``: a whole telling in the terminal, tables, coloured story, findings, verdict."""

from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console

from storyreasoning.format import parse_output
from storyreasoning.terminal import print_telling

EXAMPLES = Path(__file__).parents[2] / "examples" / "outputs"
LIGHTHOUSE = (EXAMPLES / "lighthouse.txt").read_text(encoding="utf-8")
MALFORMED = (EXAMPLES / "malformed.txt").read_text(encoding="utf-8")


def show(text: str, *, title: str = "baseline storyteller", verdict: bool = True, **validate) -> Console:
    telling = parse_output(text)
    console = Console(record=True, width=120, color_system="truecolor")
    print_telling(console, telling, title=title, verdict=telling.validate(**validate) if verdict else None)
    return console


def test_the_cot_tables_story_and_verdict_are_printed():
    out = show(LIGHTHOUSE, image_sizes=[(640, 480)] * 3).export_text()
    assert out.splitlines()[0] == "baseline storyteller"
    for expected in (
        "Image 1",
        "Image 3",
        "Characters",
        "Objects",
        "Setting",
        "Narrative Structure",
        "Story",
        "char1",
        "Ines",
        "Young woman in a yellow raincoat carrying a lantern",
        "102,88,214,402",
        "lm1",
        "White lighthouse on the headland",
        "430,20,560,330",
        "bg1",
        "0,0,640,120",
        "Rocky cliff path above the sea",
        "Interior Design",
        "Turning Point",
        "Tomas explains the failure",
        "No findings.",
    ):
        assert expected in out, expected
    assert re.search(
        r"char2\s+│\s+Tomas\s+│\s+Old keeper with a grey beard and a wool cap\s+│\s+300,60,450,415", out
    )
    assert "Ines[char1] climbed[char1] toward the lighthouse[lm1]" in out
    assert "They[char1 char2] climbed[char1 char2] to the lamp room." in out
    assert out.rstrip().endswith("well-structured")
    # the sections come in reading order
    positions = [out.index(s) for s in ("Image 1 ", "Image 2 ", "Image 3 ", "Narrative Structure", "Story ─")]
    assert positions == sorted(positions)


def test_story_tags_keep_the_interface_colours():
    html = show(LIGHTHOUSE).export_html(inline_styles=True)
    assert re.search(r'<span style="color: #4361ee[^"]*font-weight: bold">They</span>', html)
    assert re.search(r'<span style="color: #4cc9f0[^"]*font-weight: bold">climbed</span>', html)
    assert re.search(r'<span style="color: #f72585[^"]*font-weight: bold">the dark sea</span>', html)
    assert re.search(r'<span style="color: #008000[^"]*font-weight: bold">well-structured</span>', html)


def test_malformed_output_prints_what_exists_and_every_finding():
    out = show(MALFORMED, n_images=3).export_text()
    assert "60,70,190" in out and "300,60,450,415" in out  # an unparseable box is shown as written
    assert "no objects" in out and "no characters" in out
    for code in (
        "box-unparseable",
        "unknown-story-id",
        "unclosed-segment",
        "missing-phase",
        "text-before-think",
    ):
        assert code in out, code
    assert "Findings (" in out
    assert out.rstrip().endswith("not well-structured: 4 errors")


def test_model_text_is_never_read_as_markup():
    text = LIGHTHOUSE.replace("Rocky cliff path above the sea", "[bold red]path[/bold red] [/x]").replace(
        "| Weather |", "| [/oops] Weather |"
    )
    out = show(text).export_text()
    assert "[bold red]path[/bold red] [/x]" in out
    assert "[/oops] Weather" in out  # also inside a finding's message


def test_without_a_verdict_the_parse_findings_are_shown():
    out = show(MALFORMED, verdict=False).export_text()
    assert "box-unparseable" in out and "well-structured" not in out
    assert "missing-phase" not in out  # a validation finding: it needs a verdict


def test_missing_parts_are_said_plainly():
    out = show(LIGHTHOUSE.split("</think>")[1]).export_text()
    assert "No chain of thought." in out and "They[char1 char2]" in out and "no-cot" in out
    out = show(LIGHTHOUSE.split("</think>")[0]).export_text()
    assert "No story." in out and "char1" in out and "no-story" in out
