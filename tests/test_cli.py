"""The ``storyreasoning`` command, run as a real subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from .conftest import run_cli

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
