"""Each story's grounding and identity row is held packed until the report is written (at 20,000
stories they were a fifth of the run's peak memory as dicts): the packed row must read back exactly
the row :func:`story_row` makes, keys in order, values and their types, None where undefined."""

from __future__ import annotations

import pickle

import pytest

from storyreasoning.evaluate import grounding, identity
from storyreasoning.evaluate.grounding import GroundingRow
from storyreasoning.evaluate.identity import IdentityRow
from storyreasoning.evaluate.pairs import Scores
from storyreasoning.evaluate.report import Report, per_story_rows, write_report
from storyreasoning.evaluate.scoring import story_parts, summarize

from .test_grounding import EMPTY, LEFT, RIGHT, pair, story

FAMILIES = ("grounding", "identity")
ROWS = {"grounding": (GroundingRow, grounding.story_row), "identity": (IdentityRow, identity.story_row)}


def people(*frames: tuple[str, str], box_right: str = RIGHT) -> str:
    """One frame per ``(left id, right id)``: a person at the left, an object or person at the right."""
    return story(*[[(left, "A person", LEFT), (right, "A thing", box_right)] for left, right in frames])


REFERENCE = people(("char1", "obj1"), ("char1", "obj1"), ("char1", "obj1"))
PAIRS = [
    pair(REFERENCE, REFERENCE, story_id="perfect"),
    pair(REFERENCE, None, story_id="missing"),  # every reference row a false negative
    pair(EMPTY, people(("char1", "obj1")), story_id="no-reference-rows"),  # recall undefined
    pair(EMPTY, EMPTY, story_id="both-empty"),  # nearly every rate undefined
    pair(REFERENCE, "I cannot tell a story about these images.", story_id="refusal"),
    pair(REFERENCE, people(("char1", "obj1"), ("obj1", "char1"), box_right="0,0,500,500"), story_id="odd"),
    pair(REFERENCE, people(("char2", "obj1"), ("char1", "obj9"), ("char2", "obj1")), story_id="swapped"),
]


def typed(row) -> list[tuple[str, type, object]]:
    return [(key, type(value), value) for key, value in row.items()]


@pytest.mark.parametrize("family", FAMILIES)
def test_a_packed_row_reads_back_the_dict_row_exactly(family):
    packed_type, story_row = ROWS[family]
    seen: set[type] = set()
    for p in PAIRS:
        row = story_row(p)
        packed = packed_type.of(row)
        assert list(packed) == list(row), p.story_id  # the order of per_story.csv's columns
        assert typed(packed) == typed(row), p.story_id  # ints stay ints ("3", not "3.0"), None stays None
        assert [packed[key] for key in row] == list(row.values())
        assert packed == row and dict(packed) == row and len(packed) == len(row)
        again = pickle.loads(pickle.dumps(packed))  # as a worker sends it
        assert type(again) is packed_type and typed(again) == typed(row)
        assert packed_type.of(packed) is packed
        seen.update(type(value) for value in row.values())
    assert seen == {int, float, type(None)}  # the stories cover every kind of value a row holds
    assert packed_type.of(story_row(PAIRS[1]))["missing"] == 1


def test_a_row_of_other_keys_is_not_packed():
    with pytest.raises(ValueError, match="GroundingRow"):
        GroundingRow.of({"tp": 1})
    with pytest.raises(ValueError, match="IdentityRow"):
        IdentityRow.of(grounding.story_row(PAIRS[0]))
    with pytest.raises(KeyError):
        GroundingRow.of(grounding.story_row(PAIRS[0]))["idf1"]
    assert GroundingRow.of(grounding.story_row(PAIRS[0])).get("idf1") is None


def test_the_report_of_packed_rows_is_the_report_of_the_dict_rows(tmp_path):
    """The scores and per_story.csv, from the stories' parts (packed) and from the dict rows."""
    items = [(p.story_id, story_parts(p, FAMILIES)) for p in PAIRS]
    assert all(type(parts[f]) is ROWS[f][0] for _, parts in items for f in FAMILIES)
    results = summarize(items, FAMILIES)
    from_dicts = {f: ROWS[f][1] for f in FAMILIES}
    for family in FAMILIES:
        dicts = [(p.story_id, from_dicts[family](p)) for p in PAIRS]
        by_dicts = (grounding if family == "grounding" else identity).summarize(dicts)
        assert results[family].overall == by_dicts.overall
        assert all(type(row) is ROWS[family][0] for row in results[family].per_story.values())
        assert [typed(row) for row in results[family].per_story.values()] == [typed(row) for _, row in dicts]
    plain = {
        f: Scores(f, results[f].overall, {p.story_id: from_dicts[f](p) for p in PAIRS}) for f in FAMILIES
    }
    ids = [p.story_id for p in PAIRS]
    packed_report = Report(run={}, dataset={}, protocol="default", results=results, story_ids=ids)
    plain_report = Report(run={}, dataset={}, protocol="default", results=plain, story_ids=ids)
    assert per_story_rows(packed_report) == per_story_rows(plain_report)
    write_report(packed_report, tmp_path / "packed", plots=False)
    write_report(plain_report, tmp_path / "plain", plots=False)
    csv = (tmp_path / "packed" / "per_story.csv").read_bytes()
    assert csv == (tmp_path / "plain" / "per_story.csv").read_bytes()
    assert b",," in csv and b".0," in csv  # blanks for None and floats written as floats


def test_a_storys_grounding_and_identity_parts_are_packed():
    """What the main process holds of a story for these two families until the report is written:
    about 0.8 kB with the tuple holding them (about 4.9 kB as two dicts)."""
    import tracemalloc

    pairs = PAIRS * 6
    tracemalloc.start()
    try:
        held = [tuple(story_parts(p, FAMILIES).values()) for p in pairs]
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(held) == len(pairs) and size / len(pairs) < 1200
