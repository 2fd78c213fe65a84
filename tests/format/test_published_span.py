"""The story reader's fast path for a published span agrees with the regular expression it stands for.

Compiled, ``_published_span`` reads ``text<gdo ids>inner</gdo>`` with a few string searches
instead of ``_SPAN`` (see its docstring); both must accept and split exactly the same
texts. As Python it is the regular expression itself, and the test holds trivially.
"""

import random
from pathlib import Path

from storyreasoning.format import story_parser

LIGHTHOUSE = Path(__file__).parents[2] / "examples" / "outputs" / "lighthouse.txt"

PIECES = ["<", ">", "/", "\n", " ", "g", "d", "o", "a", "l", "i", "x", "char1", "obj2", "<gdo ", "</gdo>"]
PIECES += ["<gda ", "</gda>", "<gdl ", "</gdl>", "<gdi ", "</gdi>", "<gdo>", "a" * 260]


def _regex(text: str, pos: int):
    m = story_parser._SPAN.match(text, pos)
    return None if m is None else (m.group(1), m.group(2), m.group(3), m.group(4), m.end())


def test_fast_path_equals_the_regular_expression_on_random_and_real_text():
    rng = random.Random(7)
    texts = [LIGHTHOUSE.read_text(encoding="utf-8")]
    texts += ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 14))) for _ in range(20_000)]
    checked = 0
    for text in texts:
        for pos in range(0, len(text), 1 if len(text) < 80 else 7):
            assert story_parser._published_span(text, pos) == _regex(text, pos), (text, pos)
            checked += 1
    assert checked > 100_000
