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


# -- progress where stderr is no terminal (a log file) ---------------------------------------------


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def plain(total, *, unit="stories", interval=30.0):
    import io

    from storyreasoning.terminal import PlainProgress

    clock, log = Clock(), io.StringIO()
    return (
        PlainProgress(total, "writing parquet", unit=unit, interval=interval, stream=log, clock=clock),
        clock,
        log,
    )


def test_a_log_gets_a_line_at_most_every_interval_and_one_at_the_end():
    progress, clock, log = plain(3552)
    progress.advance(1200)  # found done at once (a resumed job): left out of the rate
    for _ in range(20):
        clock.now += 1
        progress.advance(10)
    assert log.getvalue() == ""  # 20 s: not yet
    for _ in range(10):
        clock.now += 1
        progress.advance(10)
    # 30 s after the start: 300 stories in 30 s since the first advance, 2,052 left
    assert log.getvalue() == "writing parquet: 1,500/3,552 stories (42%), 10.0/s, about 3 min left\n"
    clock.now += 29
    progress.advance(10)
    assert log.getvalue().count("\n") == 1  # 29 s after the line: still one
    clock.now += 1
    progress.advance(2042)
    progress.close()
    lines = log.getvalue().splitlines()  # the last advance finished the job: the closing line says so
    assert lines[1:] == ["writing parquet: 3,552/3,552 stories (100%) in 60 s, 39.2/s"]


def test_a_job_shorter_than_the_interval_writes_nothing():
    progress, clock, log = plain(10)
    for _ in range(10):
        clock.now += 2.9
        progress.advance()
    progress.close()
    assert log.getvalue() == ""


def test_slow_work_and_unknown_totals_read_plainly():
    progress, clock, log = plain(None, unit="", interval=30)
    progress.advance()
    clock.now += 40
    progress.advance()
    clock.now += 50
    progress.advance()
    assert log.getvalue().splitlines() == ["writing parquet: 2, 1.5/min", "writing parquet: 3, 1.3/min"]
    progress, clock, log = plain(100)
    progress.advance()
    clock.now += 7200
    progress.advance()
    assert log.getvalue() == "writing parquet: 2/100 stories (2%), 0.5/h, about 196 h left\n"
