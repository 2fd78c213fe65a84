"""The ``storyreasoning`` command, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from .conftest import one_error_line, run_cli

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "examples" / "outputs" / "lighthouse.txt"
MALFORMED = ROOT / "examples" / "outputs" / "malformed.txt"


def run(*args: str, stdin: str | None = None):
    return run_cli(*args, stdin=stdin, timeout=60)


def test_check_well_structured_output_exits_0():
    result = run("check", str(EXAMPLE), "--images", "3")
    assert result.returncode == 0, result.stderr
    assert "well-structured" in result.stdout
    assert "char1 char2" in result.stdout  # entities per image
    assert "Introduction, Development, Conflict, Turning Point" in result.stdout


def test_check_malformed_output_exits_1_and_lists_findings():
    result = run("check", str(MALFORMED), "--images", "3")
    assert result.returncode == 1
    assert "not well-structured" in result.stdout
    for code in (
        "heading-style",
        "missing-outer-pipes",
        "box-decimal",
        "unknown-setting-element",
        "unclosed-segment",
        "missing-phase",
    ):
        assert code in result.stdout


def test_check_json(tmp_path):
    result = run("check", str(EXAMPLE), "--json", "-n", "3")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["well_structured"] is True and data["kind"] == "output"
    assert data["cot"]["images"][0]["characters"][0]["box"] == [102, 88, 214, 402]
    assert data["story"]["segments"][2]["spans"][0] == {
        "kind": "gdo",
        "ids": ["char1", "char2"],
        "text": "They",
    }
    bad = json.loads(run("check", str(MALFORMED), "--json").stdout)
    assert bad["well_structured"] is False
    assert {d["code"] for d in bad["diagnostics"]} >= {"box-decimal", "missing-phase"}
    assert all(set(d) == {"line", "code", "severity", "message"} for d in bad["diagnostics"])


def test_check_with_image_files_checks_sizes(tmp_path):
    images = []
    for i, size in enumerate([(640, 480), (640, 480), (640, 480)]):
        path = tmp_path / f"frame{i}.png"
        Image.new("RGB", size, (i * 40, 80, 120)).save(path)
        images.append(str(path))
    assert run("check", str(EXAMPLE), *images).returncode == 0
    small = tmp_path / "small.png"
    Image.new("RGB", (100, 100)).save(small)
    result = run("check", str(EXAMPLE), images[0], images[1], str(small), "--json")
    assert result.returncode == 1
    assert "box-out-of-image" in {d["code"] for d in json.loads(result.stdout)["reasons"]}


def test_check_cot_and_story_files(tmp_path):
    text = EXAMPLE.read_text()
    cot, story = text.split("\n</think>\n")
    (tmp_path / "cot.md").write_text(cot.removeprefix("<think>\n"))
    (tmp_path / "story.md").write_text(story)
    result = run("check", str(tmp_path / "cot.md"), "-n", "3", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["kind"] == "cot"
    result = run("check", str(tmp_path / "story.md"), "-n", "3", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["kind"] == "story"


def test_check_reads_stdin():
    result = run("check", "-", "-n", "3", stdin=EXAMPLE.read_text())
    assert result.returncode == 0 and "standard input" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "does-not-exist.txt"], "does-not-exist.txt does not exist"),
        (["check", "."], "is a folder"),
        (["check", str(EXAMPLE), "--images", "0"], "Invalid value"),
        (["check", str(EXAMPLE), "--kind", "poem"], "Invalid value"),
        (["check"], "Missing argument"),
    ],
)
def test_usage_errors_exit_2_without_traceback(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_corrupt_image_and_mismatched_count(tmp_path):
    bad = tmp_path / "frame.png"
    bad.write_bytes(b"not an image at all")
    result = run("check", str(EXAMPLE), str(bad))
    assert (
        result.returncode == 2
        and "not a readable image" in result.stderr
        and "Traceback" not in result.stderr
    )
    good = tmp_path / "ok.png"
    Image.new("RGB", (10, 10)).save(good)
    result = run("check", str(EXAMPLE), str(good), "--images", "3")
    assert result.returncode == 2 and "disagrees" in result.stderr


def test_invalid_utf8_is_reported_not_fatal(tmp_path):
    path = tmp_path / "out.txt"
    path.write_bytes(EXAMPLE.read_bytes().replace(b"Ines", b"In\xffs", 1))
    result = run("check", str(path), "--json", "-n", "3")
    data = json.loads(result.stdout)
    assert "input-decode" in {d["code"] for d in data["diagnostics"]}
    assert result.returncode == 0


def test_invalid_utf8_is_read_as_a_valid_file_would_be(tmp_path):
    """One bad byte in a file with a BOM, or in a page of ours, changed how the rest was read: the BOM was
    kept (a `text-before-think` finding) and the page's markup was parsed instead of the output it shows."""
    from storyreasoning.format import parse_output
    from storyreasoning.tell.html import render_html

    expected = json.loads(run("check", str(EXAMPLE), "--json").stdout)["diagnostics"]
    bad = EXAMPLE.read_bytes().replace(b"sea", b"se\xff", 1)
    offset = bad.index(b"\xff")
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + bad)
    page = tmp_path / "page.html"
    html = render_html(parse_output(EXAMPLE.read_text(encoding="utf-8")), title="t").encode()
    page.write_bytes(html.replace(b"sea", b"se\xff", 1))
    for path, byte in ((bom, offset + 3), (page, html.index(b"sea") + 2)):
        result = run("check", str(path), "--json")
        data = json.loads(result.stdout)
        assert data["diagnostics"][0] == {
            "line": 0,
            "code": "input-decode",
            "severity": "warning",
            "message": f"{path} is not valid UTF-8 (byte {byte}); undecodable bytes were replaced",
        }
        assert data["diagnostics"][1:] == expected and data["kind"] == "output"
        assert result.returncode == 0


def test_an_image_given_as_the_output_is_refused_in_one_line(tmp_path):
    """``check frame1.png frame2.png`` (the output forgotten) read the PNG's bytes as a story: exit 1 and
    findings about replaced bytes and text outside any segment."""
    frame = tmp_path / "frame1.png"
    Image.new("RGB", (8, 8)).save(frame)
    fix = "is an image, not a model output; give the output file first, then its images"
    assert one_error_line(run("check", str(frame), str(frame))) == f"error: {frame} {fix}"
    piped = subprocess.run(  # bytes on standard input, which run_cli's text input cannot carry
        [sys.executable, "-m", "storyreasoning.cli", "check", "-"],
        input=frame.read_bytes(),
        capture_output=True,
        timeout=60,
    )
    assert piped.returncode == 2 and piped.stderr.decode().strip() == f"error: standard input {fix}"


def test_a_path_with_brackets_is_shown_as_it_is(tmp_path):
    """The summary's title is markup: ``take[b]2.txt`` was shown as ``take2.txt``."""
    path = tmp_path / "take[b]2.txt"
    path.write_bytes(EXAMPLE.read_bytes())
    result = run("check", str(path), "-n", "3")
    assert result.returncode == 0 and result.stdout.splitlines()[0] == f"{path} (3 images)  (output)"


def test_model_text_that_looks_like_markup_is_shown_as_text(tmp_path):
    """CoT ids, story ids and narrative phases are model text: '[/]' was a MarkupError traceback and
    '[red]obj9' a red 'obj9'."""
    text = EXAMPLE.read_text(encoding="utf-8")
    for old, new, shown in (
        ("| obj2 | Heavy", "| [/] | Heavy", "[/]"),
        ("| obj2 | Heavy", "| [red]obj9 | Heavy", "[red]obj9"),
        ("<gdo obj2>", "<gdo [/]>", "[/]"),
        ("| Introduction |", "| [/]Introduction |", "[/]Introduction"),
    ):
        path = tmp_path / "out.txt"
        path.write_text(text.replace(old, new), encoding="utf-8")
        result = run("check", str(path))
        assert "Traceback" not in result.stderr, result.stderr
        assert shown in result.stdout.split("Findings")[0]  # in the tables, not only in a finding's message


def test_check_json_on_a_stdout_that_is_not_utf8(tmp_path):
    """A Windows pipe (cp1252) or an ASCII locale cannot hold every character of an output: ``--json`` ended in
    a UnicodeEncodeError traceback; it writes the same JSON with \\u escapes."""
    path = tmp_path / "out.txt"
    path.write_text(EXAMPLE.read_text(encoding="utf-8").replace("Ines", "李 Inês"), encoding="utf-8")
    expected = run("check", str(path), "--json")
    assert "李 Inês" in expected.stdout  # as written where stdout is UTF-8
    for encoding in ("cp1252", "ascii"):
        result = run_cli("check", str(path), "--json", env={"PYTHONIOENCODING": encoding}, timeout=60)
        assert result.returncode == expected.returncode == 0, result.stderr
        assert result.stdout.isascii() and json.loads(result.stdout) == json.loads(expected.stdout)


def test_check_reads_every_kind_of_line_end(tmp_path):
    """CRLF and old-Mac CR line ends read as LF does, as Python's text files read them (a CR-only file
    was one line: no CoT found, every id of the story undefined)."""
    expected = run("check", str(MALFORMED), "--json")
    for end in (b"\r\n", b"\r"):
        path = tmp_path / "out.txt"
        path.write_bytes(MALFORMED.read_bytes().replace(b"\n", end))
        result = run("check", str(path), "--json")
        assert result.returncode == expected.returncode == 1
        assert json.loads(result.stdout) == json.loads(expected.stdout)


def test_version_and_help():
    assert run("--version").stdout.startswith("storyreasoning ")
    result = run("--help")
    assert result.returncode == 0 and "check" in result.stdout
    result = run("check", "--help")
    assert "--json" in result.stdout and "--images" in result.stdout


def test_check_reads_the_output_a_page_of_ours_shows(tmp_path):
    """The page ``tell`` writes beside an output, and the studio's export, hold the output whole: ``check``
    of the page is ``check`` of the output (the page's markup read as a chain-of-thought gave findings
    about the page); another HTML page is refused in one line."""
    from storyreasoning.format import parse_output
    from storyreasoning.tell.html import render_html

    for source in (EXAMPLE, MALFORMED):
        text = source.read_text(encoding="utf-8")
        page = tmp_path / f"{source.stem}.html"
        page.write_text(render_html(parse_output(text), title="a story </pre> & <b>"), encoding="utf-8")
        of_text = run("check", str(source), "--json")
        of_page = run("check", str(page), "--json")
        assert of_page.returncode == of_text.returncode, of_page.stderr
        assert json.loads(of_page.stdout) == json.loads(of_text.stdout)
    other = tmp_path / "other.html"
    other.write_text("<!DOCTYPE html>\n<html><body><p>| a | b |</p></body></html>", encoding="utf-8")
    result = run("check", str(other))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {other} is an HTML page that does not hold one model output; check the output's text "
        "file instead"
    )


def test_the_summary_of_a_huge_output_shows_the_first_rows_and_says_how_many_more(tmp_path):
    """A 2,000-image output (rich drew 96k segments for a minute): each table shows its first rows, then how
    many more there are; errors come first among the findings, as they decide the verdict."""
    from storyreasoning.terminal import SUMMARY_ROWS

    text = EXAMPLE.read_text(encoding="utf-8")
    story = text[text.index("</think>") + len("</think>") :]
    segment = story[story.index("<gdi image1>") : story.index("</gdi>") + len("</gdi>")]
    many = text.replace(story, "\n" + "\n".join(segment.replace("image1", f"image{k}") for k in range(1, 2001)))
    path = tmp_path / "huge.txt"
    path.write_text(many + "\n<gdo char99>X</gdo>\n", encoding="utf-8")
    result = run_cli("check", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    shown = result.stdout
    assert f"… {2001 - SUMMARY_ROWS:,} more segments (--json lists them all)" in shown  # and one outside
    assert "image 51 " not in shown and "image 50 " in shown
    findings = shown[shown.index("Findings (") :]
    assert "more findings (--json lists them all)" in findings
    assert findings.index("error") < findings.index("warning")
