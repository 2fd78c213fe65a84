"""The batch parse's fast paths read every text as the general path does.

A batch parse (``parse_output``, ``parse_cot``, ``parse_story``) builds no events and
reads the usual lines of a CoT in a row (``CotBuilder.feed_lines``) and a plain span by
one regex match; a stream fed a line at a time goes through the general path
(``CotBuilder.feed_line``, ``StoryBuilder.feed`` with events). Both must give the same
parse, findings and line numbers included, on well-formed and on damaged outputs.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storyreasoning.format import CotBuilder, StoryBuilder, StreamParser, parse_cot, parse_output, parse_story

from .test_fuzz import any_output

EXAMPLES = Path(__file__).parents[2] / "examples" / "outputs"
LIGHTHOUSE = (EXAMPLES / "lighthouse.txt").read_text(encoding="utf-8")


def by_lines(text: str):
    """The general path: the text streamed one line at a time, with events."""
    parser = StreamParser()
    for line in text.splitlines(keepends=True):
        parser.feed(line)
    return parser.result()


def same(a, b) -> None:
    assert (a.cot, a.story, a.cot_text, a.story_text) == (b.cot, b.story, b.cot_text, b.story_text)
    assert a.diagnostics == b.diagnostics
    for x, y in zip(a.diagnostics, b.diagnostics, strict=True):
        assert x.line == y.line
    if a.cot is not None:  # row lines are not part of equality
        assert row_lines(a.cot) == row_lines(b.cot)


def row_lines(cot) -> list[int]:
    return [row.line for image in cot.images for row in (*image.characters, *image.objects, *image.settings)]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_output)
def test_batch_parse_equals_the_general_path(text: str) -> None:
    same(parse_output(text), by_lines(text))


ROW = "| char1 | Ines | A girl | Calm | Walks | Lead | {} |"


@given(
    st.lists(
        st.sampled_from(
            [
                "## Image 1",
                "## Image 2",
                "### Characters",
                "### Objects",
                "| Character ID | Name | Description | Emotions | Actions | Narrative Function | Bounding Box |",
                "| Object ID | Description | Function | Interaction | Narrative Function | Bounding Box |",
                "|---|---|---|---|---|---|---|",
                "|---|---|---|---|---|---|",
                "",
                "   ",
                ROW.format("1,2,30,40"),
                ROW.format("30,40,1,2"),
                ROW.format("0,0,9999,9999"),
                ROW.format("1,2,30,10000"),
                ROW.format("01,2,30,40"),
                ROW.format("1, 2, 30, 40"),
                ROW.format("1,2,30"),
                ROW.format(""),
                "| char2 | Tomas | x | y | z | w | 5,6,70,80 |",
                "| obj1 | Lantern | Light | Held | Hope | 5,6,70,80 |",
                "| char1 | In the objects table | x | y | z | 5,6,70,80 |",
                "| lm1 | x | y | z | w | v | 5,6,70,80 |",
                "| obj1 | x | y | z | w |",
                "|  | x | y | z | w | v | 1,2,3,4 |",
                "| - | x | y | z | w | v | 1,2,3,4 |",
                "| char1 | x | y | z | w | v | 1,2,3,4 \\|",
                "char1 | x | y | z | w | v | 1,2,3,4 |",
                "| Location | Cliff | Tense | Dusk | Isolation |",
                "| Setting Element | Description | Mood | Time | Narrative Function |",
                "| Setting | Description | Mood | Time | Narrative Function |",
            ]
        ),
        max_size=30,
    )
)
def test_cot_lines_in_a_row_equal_one_at_a_time(lines: list[str]) -> None:
    one = CotBuilder()
    events = [event for line in lines for event in one.feed_line(line)]
    one.finish()
    row = CotBuilder()
    assert row.feed_lines(lines) == events  # with events, the same ones
    row.finish()
    quiet = CotBuilder(events=False)
    assert quiet.feed_lines(lines) == []
    quiet.finish()
    for other in (row, quiet):
        assert other.cot == one.cot
        assert other.diagnostics == one.diagnostics
        assert [d.line for d in other.diagnostics] == [d.line for d in one.diagnostics]


def test_without_events_the_parse_is_the_same() -> None:
    for text in (LIGHTHOUSE, (EXAMPLES / "malformed.txt").read_text(encoding="utf-8")):
        loud, quiet = StreamParser(), StreamParser(events=False)
        for i in range(0, len(text), 5):
            assert quiet.feed(text[i : i + 5]) == []
            loud.feed(text[i : i + 5])
        assert quiet.close() == []
        same(quiet.result(), loud.result())
        same(parse_output(text), loud.result())
    story = LIGHTHOUSE.split("</think>")[1]
    builder = StoryBuilder(events=False)
    assert builder.feed(story) == [] and builder.finish() == []
    assert builder.story == parse_story(story)
    cot = LIGHTHOUSE.split("</think>")[0].removeprefix("<think>")
    loud_cot = CotBuilder()
    events = [event for line in cot.split("\n") for event in loud_cot.feed_line(line)]
    loud_cot.finish()
    assert len(events) > 20 and parse_cot(cot) == loud_cot.cot


def test_published_spans_read_at_once_keep_their_lines_and_findings() -> None:
    text = "</think>\n<gdi image1>\nA\n<gdo char1 x=1>Ines\nwalked</gdo>\n<gda bad>on</gda> <gdo char1></gdo>\n</gdi>"
    same(parse_output(text), by_lines(text))
    found = {(d.code, d.line) for d in parse_output(text).diagnostics}
    assert {("span-attribute", 4), ("bad-id", 6), ("empty-span", 6)} <= found


def routed(text: str):
    """The text through the stream parser's router, fed whole (what parse_output once did)."""
    parser = StreamParser(events=False)
    parser.feed(text)
    return parser.result()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_output, any_output)
def test_the_published_envelope_read_directly_equals_the_router(cot: str, story: str) -> None:
    # parse_output reads '<think> CoT </think> story' without routing it (when the CoT holds
    # no '<think>' or '<gdi'); anything else goes through the router: both must agree
    for text in (f"<think>{cot}</think>{story}", f"<think>\n{cot}\n</think>\n{story}"):
        same(parse_output(text), routed(text))
        same(parse_output(text), by_lines(text))


def test_the_published_envelope_in_its_edge_cases() -> None:
    cot = LIGHTHOUSE.split("</think>")[0].removeprefix("<think>")
    story = LIGHTHOUSE.split("</think>")[1]
    for text in (
        LIGHTHOUSE,
        LIGHTHOUSE.replace("\n", "\r\n"),
        "<think></think>",
        "<think>\n</think>\n",
        f"<think>{cot.strip()}</think>{story}",  # the last CoT line has no line end
        f"<think>{cot}</think>",
        f"<think>{cot}<gdi image1>x</gdi></think>{story}",  # not the published envelope: routed
        f"<think>{cot}<think></think>{story}",
        f" <think>{cot}</think>{story}",
        f"<think>{cot}</think>{story}</think>",
    ):
        same(parse_output(text), routed(text))
        same(parse_output(text), by_lines(text))


def test_box_coordinates_read_on_the_fast_path_are_exactly_the_spellings_0_to_9999() -> None:
    """A data row's box is read at once only when each coordinate is written as ``str(n)`` for n in
    0..9999; anything else (a sign, a leading zero, a space, a non-ASCII digit) goes to parse_box."""
    from storyreasoning.format.cot_parser import _pixel

    spellings = {str(n): n for n in range(10_000)}
    others = ["", "00", "01", "0009", "10000", "99999", "-1", "+1", " 1", "1 ", "1.0", "1e3", "12a", "a"]
    others += ["١", "٣٣", "0x1", "½", "²", "１", "9" * 5, "0" * 4, "/", ":", "1/2"]
    for text in [*spellings, *others]:
        assert _pixel(text) == spellings.get(text, -1), text
    row = "| char1 | Ines | d | e | a | n | {} |"
    header = "## Image 1\n\n### Characters\n| Character ID | Name | Description | Emotions | Actions | Narrative Function | Bounding Box |\n|---|---|---|---|---|---|---|\n"
    for box in ("1,2,30,40", "01,2,30,40", "1,2,30,4000", "1,2,30,10000", "1,2,3٠,40", "1, 2,30,40"):
        fast = parse_cot(header + row.format(box))
        slow = CotBuilder()
        for line in (header + row.format(box)).split("\n"):
            slow.feed_line(line)
        slow.finish()
        assert fast == slow.cot and fast.diagnostics == slow.cot.diagnostics, box


def test_separator_lines_remembered_are_told_as_the_strip_tells_them() -> None:
    """_separator_line remembers the separators it has seen: it must answer as its definition
    does, first time or again, and stay bounded."""
    import random

    from storyreasoning.format import cot_parser

    def plain(s: str) -> bool:
        return "-" in s and not s.strip("|-:= ")

    rng = random.Random(5)
    lines = ["|---|", "|:--|--:|", "| - |", "---", "|", "", " - ", "|-x-|", "|=|", "| a-b |", "-|-\t"]
    lines += ["".join(rng.choice("|-:= x\t") for _ in range(rng.randint(0, 12))) for _ in range(3000)]
    for _ in range(2):  # the second time, the separators come from the cache
        for line in lines:
            assert cot_parser._separator_line(line) == plain(line), repr(line)
    assert len(cot_parser._SEPARATORS) <= cot_parser._CACHE_SIZE
