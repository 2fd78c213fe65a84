"""``dataclass_methods`` gives a class what ``@dataclass`` would, and the parser's classes use it.

Each case declares one class twice: once with ``@dataclass(...)`` as Python generates it,
once as the parser's classes are declared (``@dataclass(init=False, repr=False, eq=False)``
and :func:`dataclass_methods`). Their instances must repr, compare, hash and refuse changes
alike, field options (``compare=False``, ``repr=False``) and subclasses included. ``Box``
writes its own comparisons (so type checkers see them): they are held to ``order=True``'s.
"""

from __future__ import annotations

import dataclasses
import itertools
import pickle
import subprocess
import sys
from dataclasses import FrozenInstanceError, dataclass, field

import pytest

from storyreasoning.format import Box, parse_output
from storyreasoning.format.events import SpanClosed, TextAppended, ThinkOpened
from storyreasoning.format.records import dataclass_methods
from storyreasoning.format.story import Span


def _pair(frozen: bool):
    """The same class made by @dataclass and by dataclass_methods."""

    def body(cls):
        cls.__annotations__ = {"a": "int", "b": "str", "c": "list", "d": "int"}
        cls.a = 0
        cls.b = ""
        cls.c = field(default_factory=list, compare=False)
        cls.d = field(default=0, repr=False)
        return cls

    generated = dataclass(frozen=frozen)(body(type("Thing", (), {})))

    class Thing:
        def __init__(self, a=0, b="", c=None, d=0):
            for name, value in (("a", a), ("b", b), ("c", [] if c is None else c), ("d", d)):
                object.__setattr__(self, name, value)

    Thing.__qualname__ = "Thing"  # as type() names the other
    ours = dataclass_methods(dataclass(init=False, repr=False, eq=False)(body(Thing)), frozen=frozen)
    return generated, ours


VALUES = [
    (0, "", [], 0),
    (1, "x", [1], 0),
    (1, "x", [2], 0),
    (1, "y", [], 3),
    (2, "", [], 0),
    (1, "x", [], 5),
]


@pytest.mark.parametrize("frozen", [False, True])
def test_the_methods_mean_what_dataclass_generates(frozen):
    generated, ours = _pair(frozen)
    assert [f.name for f in dataclasses.fields(ours)] == [f.name for f in dataclasses.fields(generated)]
    for left, right in itertools.product(VALUES, repeat=2):
        g1, g2, o1, o2 = generated(*left), generated(*right), ours(*left), ours(*right)
        assert repr(o1) == repr(g1)
        assert (o1 == o2) == (g1 == g2) and (o1 != o2) == (g1 != g2)
        assert (o1 == g1) is False  # another class: never equal, as between two dataclasses
        with pytest.raises(TypeError):
            _ = o1 < o2
        if frozen:
            assert hash(o1) == hash(g1)
            with pytest.raises(FrozenInstanceError, match="cannot assign to field 'a'"):
                o1.a = 3
            with pytest.raises(FrozenInstanceError, match="cannot delete field 'b'"):
                del o1.b
        else:
            with pytest.raises(TypeError, match="unhashable"):
                hash(o1)
            o1.a = 7
            assert o1.a == 7
    assert dataclasses.asdict(ours(1, "x", [2], 3)) == dataclasses.asdict(generated(1, "x", [2], 3))
    assert dataclasses.replace(ours(1, "x"), b="z") == ours(1, "z")


def test_box_compares_hashes_and_orders_as_a_frozen_ordered_dataclass():
    @dataclass(frozen=True, order=True)
    class Generated:
        x1: int
        y1: int
        x2: int
        y2: int

    corners = [(0, 0, 0, 0), (1, 2, 3, 4), (1, 2, 3, 5), (1, 3, 0, 0), (-1, 9, 9, 9), (2, 0, 0, 0)]
    for left, right in itertools.product(corners, repeat=2):
        b1, b2, g1, g2 = Box(*left), Box(*right), Generated(*left), Generated(*right)
        assert (b1 == b2, b1 != b2) == (g1 == g2, g1 != g2)
        assert (b1 < b2, b1 <= b2, b1 > b2, b1 >= b2) == (g1 < g2, g1 <= g2, g1 > g2, g1 >= g2)
        assert hash(b1) == hash(g1)
        assert b1 != g1 and b1 != left  # another class: never equal, as between dataclasses
        for op in ("__lt__", "__le__", "__gt__", "__ge__"):
            with pytest.raises(TypeError):
                getattr(__import__("operator"), op.strip("_"))(b1, left)
    assert sorted(Box(*c) for c in corners) == [Box(*c) for c in sorted(corners)]


def test_a_frozen_subclass_refuses_only_its_own_fields_like_dataclass():
    @dataclass(frozen=True)
    class GBase:
        pass

    @dataclass(frozen=True)
    class GChild(GBase):
        x: int = 0

    class OBase:
        pass

    dataclass_methods(dataclass(init=False, repr=False, eq=False)(OBase), frozen=True)

    class OChild(OBase):
        x: int = 0

        def __init__(self, x: int = 0):
            object.__setattr__(self, "x", x)

    dataclass_methods(dataclass(init=False, repr=False, eq=False)(OChild), frozen=True)
    assert repr(OChild(2)) == repr(GChild(2)).replace("GChild", "OChild")
    assert OChild(2) == OChild(2) and OChild(2) != OChild(3) and OChild(2) != OBase()
    assert hash(OChild(2)) == hash(GChild(2))
    for obj in (OChild(1), GChild(1)):
        with pytest.raises(FrozenInstanceError):
            obj.x = 2
        with pytest.raises(FrozenInstanceError):
            obj.other = 2


def test_a_recursive_value_reprs_as_dataclass_does():
    generated, ours = _pair(False)
    g, o = generated(1, "x"), ours(1, "x")
    g.a, o.a = g, o
    assert repr(o) == repr(g)
    assert "(a=..., " in repr(o)


def test_the_parser_classes_behave_as_dataclasses():
    """What users rely on, on the real classes, compiled or not (the suite runs both)."""
    box = Box(1, 2, 3, 4)
    assert repr(box) == "Box(x1=1, y1=2, x2=3, y2=4)"
    assert box == Box(1, 2, 3, 4) and box != Box(1, 2, 3, 5) and box < Box(2, 0, 0, 0)
    assert sorted([Box(2, 0, 0, 0), box]) == [box, Box(2, 0, 0, 0)]
    assert hash(box) == hash((1, 2, 3, 4)) and len({box, Box(1, 2, 3, 4)}) == 1
    with pytest.raises(FrozenInstanceError):
        box.x1 = 9
    assert dataclasses.replace(box, x2=7) == Box(1, 2, 7, 4)
    span = Span("gdo", ("char1",), "Ines")
    assert SpanClosed(span) == SpanClosed(Span("gdo", ("char1",), "Ines"))
    assert SpanClosed(span) != TextAppended("Ines") and ThinkOpened() == ThinkOpened()
    assert repr(TextAppended("a")) == "TextAppended(text='a')"
    with pytest.raises(FrozenInstanceError):
        span.text = "x"
    telling = parse_output(open("examples/outputs/lighthouse.txt", encoding="utf-8").read())
    with pytest.raises(TypeError, match="unhashable"):
        hash(telling.cot)
    row = telling.cot.images[0].characters[0]
    assert "line=" not in repr(row)  # line: repr=False
    moved = dataclasses.replace(row, line=row.line + 10)
    assert moved == row  # line: compare=False
    assert dataclasses.asdict(telling.cot) == dataclasses.asdict(pickle.loads(pickle.dumps(telling.cot)))
    assert pickle.loads(pickle.dumps(telling)) == telling
    assert repr(telling.story).startswith("GroundedStory(segments=[Segment(image=1, parts=[")


def test_importing_the_parser_compiles_no_code_and_imports_no_typing():
    """Start-up (issue 15): @dataclass's generated methods were compiled from source at import
    (15-24 ms), and typing was imported only for annotations (about 5 ms)."""
    probe = (
        "import builtins, sys\n"
        "seen = []\n"
        "real = builtins.exec\n"
        "def counting(*args, **kwargs):\n"
        "    if isinstance(args[0], str):  # source text (a module's code object is not counted)\n"
        "        seen.append(args[0])\n"
        "    return real(*args, **kwargs)\n"
        "builtins.exec = counting\n"
        "import storyreasoning.format\n"
        "print(len(seen), 'typing' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["0", "False"], done.stdout + done.stderr
