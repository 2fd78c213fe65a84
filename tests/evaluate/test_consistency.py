"""Consistency metrics and pronoun grounding on hand-built stories with known answers."""

from __future__ import annotations

import json

import pytest

from storyreasoning.evaluate import StoryPair
from storyreasoning.evaluate.consistency import consistency, persistence_curve, telling_stats
from storyreasoning.evaluate.pronouns import (
    PRONOUNS,
    PronounCounts,
    count_pronouns,
    find_pronouns,
    pronoun_counts,
    story_pronouns,
)
from storyreasoning.format import parse_output, parse_story

PHASES = ("Introduction", "Development", "Conflict", "Turning Point", "Conclusion")
SIZE = (640, 480)


def build(images: list[dict[str, str]], segments: list[str], *, phases=PHASES) -> str:
    """A model output: one CoT section per ``{id: box}`` dict, then one ``<gdi>`` per segment."""
    lines = ["<think>"]
    for number, rows in enumerate(images, 1):
        lines += [f"## Image {number}", "", "### Characters"]
        lines += [
            "| Character ID | Name | Description | Emotions | Actions | Narrative Function | Bounding Box |"
        ]
        lines += ["|---|---|---|---|---|---|---|"]
        lines += [f"| {i} | N | d | e | a | f | {b} |" for i, b in rows.items() if i.startswith("char")]
        lines += ["", "### Objects"]
        lines += ["| Object ID | Description | Function | Interaction | Narrative Function | Bounding Box |"]
        lines += ["|---|---|---|---|---|---|"]
        lines += [f"| {i} | d | f | i | n | {b} |" for i, b in rows.items() if not i.startswith("char")]
        lines += ["", "### Setting", "| Setting Element | Description | Mood | Time | Narrative Function |"]
        lines += ["|---|---|---|---|---|", "| Location | A street | Calm | Night | Place |", ""]
    lines += ["## Narrative Structure", "", "| Narrative Phase | Description | Key Events | Images |"]
    lines += ["|---|---|---|---|", *[f"| {p} | d | e | 1 |" for p in phases], "</think>"]
    lines += [f"<gdi image{n}>\n{text}\n</gdi>\n" for n, text in enumerate(segments, 1)]
    return "\n".join(lines)


B = "10,10,100,200"  # a valid box in a 640x480 frame

# Story A, 3 frames: char1 in 1,2,3; char2 in 1; obj1 in 1,2; obj2 in 3; bg1 in all (never counted).
STORY_A = build(
    [
        {"char1": B, "char2": B, "obj1": B, "bg1": B},
        {"char1": B, "obj1": B, "bg1": B},
        {"char1": B, "obj2": B, "bg1": B},
    ],
    [
        "<gdo char1>She</gdo> smiled at her dog while <gdo char2>he</gdo> waved.",
        "<gdo obj1>It</gdo> rolled toward <gdo char1>her</gdo>.",
        "<gdo char1>Mara</gdo> lifted <gdo obj2>its</gdo> lid; they laughed.",
    ],
)
# Story B, 2 frames, with one of each hallucination and box problem, and a missing phase.
STORY_B = build(
    [
        {"char1": B, "char2": "abc", "obj1": "50,50,40,90"},
        {"char1": "0,0,900,100", "obj2": ""},
    ],
    [
        "<gdo char1>He</gdo> saw <gdo char9>him</gdo>.",
        "<gdo char2>They</gdo> left with <gdo obj1>it</gdo>.",
    ],
    phases=PHASES[:4],
)


def pair(story_id: str, text: str | None, n_images: int, reference: str | None = None) -> StoryPair:
    return StoryPair.from_texts(story_id, reference or text or "", text, [SIZE] * n_images)


@pytest.fixture(scope="module")
def scores():
    pairs = [pair("a", STORY_A, 3), pair("b", STORY_B, 2), pair("c", None, 3, reference=STORY_A)]
    return consistency(pairs)


# -- pronoun detection -------------------------------------------------------------------------


def test_pronouns_are_whole_words_in_any_case():
    text = "The theme: HE met Them there, then her hero. She-wolf, here, hers, themselves, itself, Shelby."
    assert [(p, text[a:b]) for p, a, b in find_pronouns(text)] == [
        ("he", "HE"),
        ("them", "Them"),
        ("her", "her"),
    ]


def test_contractions_count_and_its_is_its_own_word():
    text = "It's late; its engine died. He'd go, they’re here, it’s cold, she'll see — him--they"
    assert [p for p, _, _ in find_pronouns(text)] == ["it", "its", "he", "they", "it", "she", "him", "they"]


def test_every_reported_pronoun_is_found():
    text = " ".join(p.upper() for p in PRONOUNS)
    assert [p for p, _, _ in find_pronouns(text)] == list(PRONOUNS)


def test_grounding_rules_on_the_brief_examples():
    story = parse_story(
        "<gdi image1><gdo char1>She</gdo> smiled at her dog. <gdo obj1>It</gdo> barked.</gdi>"
    )
    hits = story_pronouns(story)
    assert [(h.text, h.grounded("char"), h.grounded("any")) for h in hits] == [
        ("She", True, True),
        ("her", False, False),
        ("It", False, True),
    ]


def test_spans_other_than_gdo_and_partial_spans_do_not_ground():
    story = parse_story(
        "<gdi image1><gda char1>he ran</gda>, <gdo char1>his hat</gdo> fell, "
        "<gdo obj1 char2>they</gdo> <gdo lm1>it</gdo> <gdo bogus>him</gdo></gdi>"
    )
    got = [(h.text, h.grounded("char"), h.grounded("any"), h.whole_span) for h in story_pronouns(story)]
    assert got == [
        ("he", False, False, False),  # an action tag is not an entity reference
        ("his", True, True, False),  # inside a character tag, but not the whole tag
        ("they", True, True, True),  # any char id counts, not only the first
        ("it", False, True, True),  # a landmark is an entity
        ("him", False, False, True),  # a malformed id grounds nothing
    ]
    hits = story_pronouns(story)
    assert [h.grounded("char", match="whole") for h in hits] == [False, False, True, False, False]


def test_offsets_index_the_plain_text():
    story = parse_story(
        "<gdi image1>\n  <gdo char1>He</gdo> sat.\n</gdi>\n\n<gdi image2>\n</gdi>\n<gdi image3> Then it rained on them.</gdi>"
    )
    text = story.plain_text()
    hits = story_pronouns(story)
    assert [(text[h.start : h.end], h.image) for h in hits] == [("He", 1), ("it", 3), ("them", 3)]


def test_count_pronouns():
    story = parse_output(STORY_A).story
    counts = count_pronouns(story_pronouns(story))
    assert list(counts) == list(PRONOUNS)
    got = {p: (c.total, c.char, c.any) for p, c in counts.items() if c.total}
    assert got == {
        "she": (1, 1, 1),
        "her": (2, 1, 1),
        "he": (1, 1, 1),
        "it": (1, 0, 1),
        "its": (1, 0, 1),
        "they": (1, 0, 0),
    }


def test_pronoun_counts_are_the_counted_occurrences():
    """The counting the evaluation uses (no PronounHit made) equals counting the hits, on random
    stories: pronouns inside, across and around spans of every tag and id kind, each rule."""
    import random

    rng = random.Random(7)
    words = [*PRONOUNS, "She", "IT'S", "their", "the", "hers", "she-wolf", "dog", "ran", ",", "."]
    ids = ["char1", "char2", "obj1", "bg1", "lm2", "bogus", "char1 obj2", "obj1 char3"]
    seen = PronounCounts()
    for _ in range(300):
        segments = []
        for image in range(1, rng.randint(1, 4) + 1):
            parts = []
            for _ in range(rng.randint(0, 8)):
                text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 3)))
                if rng.random() < 0.5:
                    tag = rng.choice(["gdo", "gdo", "gda", "gdl"])
                    parts.append(f"<{tag} {rng.choice(ids)}>{text}</{tag}>")
                else:
                    parts.append(f" {text} ")
            segments.append(f"<gdi image{image}>{''.join(parts)}</gdi>")
        story = parse_story("\n".join(segments))
        for match in ("inside", "whole"):
            counts = pronoun_counts(story, match=match)
            assert counts == count_pronouns(story_pronouns(story), match=match)
            for c in counts.values():
                seen.add(c)
    assert seen.total > seen.any > seen.char > 0  # every case met
    with pytest.raises(ValueError, match="match"):
        pronoun_counts(story, match="part")


def test_bad_rule_names_are_refused():
    hit = story_pronouns(parse_story("<gdi image1>he</gdi>"))[0]
    with pytest.raises(ValueError, match="rule"):
        hit.grounded("person")
    with pytest.raises(ValueError, match="match"):
        hit.grounded("char", match="part")


# -- persistence -------------------------------------------------------------------------------


def test_persistence_curve_macro_and_micro():
    curve = persistence_curve([[3, 1], [2], []], 3)
    assert curve["n"] == [1, 2, 3]
    assert curve["macro"] == [1.0, 0.75, 0.25]  # (1/2 + 1)/2, (1/2 + 0)/2; the empty story is left out
    assert curve["micro"] == [1.0, 2 / 3, 1 / 3]
    assert (curve["stories"], curve["entities"], curve["mean_frames"]) == (2, 3, 2.0)


def test_persistence_from_the_cot_and_from_the_story(scores):
    cot = scores.extra["persistence"]["cot"]
    # characters: A has char1 in 3 frames, char2 in 1; B has char1 in 2, char2 in 1
    assert cot["characters"]["macro"] == [1.0, 0.5, 0.25]
    assert cot["characters"]["micro"] == [1.0, 0.5, 0.25]
    # objects: A has obj1 in 2 frames, obj2 in 1; B has obj1 and obj2 in 1 each
    assert cot["objects"]["macro"] == [1.0, 0.25, 0.0]
    assert cot["objects"]["micro"] == [1.0, 0.25, 0.0]
    assert cot["entities"]["entities"] == 8  # chars and objs of both stories; bg1 never counts
    story = scores.extra["persistence"]["story"]
    # tags: A names char1 in segments 1-3 and char2 in 1; B names char1, char9 and char2 once each
    assert story["characters"]["micro"] == [1.0, 0.2, 0.2]
    assert scores.overall["char_persistence_ge2"] == 0.5
    assert scores.overall["char_persistence_ge5"] is None  # no story has 5 frames
    assert scores.overall["char_mean_frames"] == 7 / 4
    assert scores.overall["obj_mean_frames"] == 5 / 4


def test_frames_beyond_the_images_are_not_counted():
    text = build([{"char1": B}, {"char1": B}, {"char1": B}], ["a", "b", "c"])
    stats = telling_stats(parse_output(text), [SIZE] * 2)
    assert stats.frame_counts("characters") == [2]


# -- the whole family --------------------------------------------------------------------------


def test_counts_and_missing_outputs(scores):
    assert scores.family == "consistency"
    # every story is in the well-structured rate's denominator (n_evaluated), the missing one too
    o = scores.overall
    assert (o["n_stories"], o["n_missing"], o["n_evaluated"], o["n_well_structured"]) == (3, 1, 3, 1)
    assert scores.extra["missing"] == ["c"]
    assert scores.per_story["c"]["missing"] == 1.0
    assert scores.per_story["c"]["well_structured"] == 0.0
    assert all(v is None for k, v in scores.per_story["c"].items() if k not in ("missing", "well_structured"))


def test_well_structured_rate(scores):
    assert scores.per_story["a"]["well_structured"] == 1.0
    assert scores.per_story["b"]["well_structured"] == 0.0
    # the missing story counts as not well-structured: one of three, not one of the two outputs
    assert scores.overall["well_structured_rate"] == pytest.approx(1 / 3)


def test_a_missing_output_changes_only_the_well_structured_rate(scores):
    """A missing output has nothing to count for the numbers about what an output holds (persistence,
    mean frames, pronouns, hallucinations per output): they are those of the outputs there are."""
    without = consistency([pair("a", STORY_A, 3), pair("b", STORY_B, 2)])
    assert without.overall["well_structured_rate"] == 0.5
    assert without.overall["hallucinations_per_story"] == scores.overall["hallucinations_per_story"] == 3.0
    changed = {"n_stories", "n_missing", "n_evaluated", "well_structured_rate"}
    assert {k: v for k, v in scores.overall.items() if k not in changed} == {
        k: v for k, v in without.overall.items() if k not in changed
    }
    assert scores.extra["persistence"] == without.extra["persistence"]
    assert scores.extra["pronouns"] == without.extra["pronouns"]


def test_missing_outputs_left_out_as_the_original_protocol_does():
    pairs = [pair("a", STORY_A, 3), pair("b", STORY_B, 2), pair("c", None, 3, reference=STORY_A)]
    kept = consistency(pairs)
    left_out = consistency(pairs, missing="exclude")
    o = left_out.overall
    assert (o["n_stories"], o["n_missing"], o["n_evaluated"], o["n_well_structured"]) == (3, 1, 2, 1)
    assert o["well_structured_rate"] == 0.5
    assert all(v is None for k, v in left_out.per_story["c"].items() if k != "missing")
    changed = {"n_evaluated", "well_structured_rate"}
    assert {k: v for k, v in o.items() if k not in changed} == {
        k: v for k, v in kept.overall.items() if k not in changed
    }
    assert any("left out" in rule for rule in left_out.conventions)
    assert any("not well-structured" in rule for rule in kept.conventions)
    with pytest.raises(ValueError, match="missing"):
        consistency(pairs, missing="skip")


def test_a_complete_run_scores_alike_whatever_the_missing_rule():
    pairs = [pair("a", STORY_A, 3), pair("b", STORY_B, 2)]
    assert consistency(pairs).overall == consistency(pairs, missing="exclude").overall


def test_pronoun_grounding_rates(scores):
    o = scores.overall
    # A: She, her(x2), he, It, its, they; B: He, him (char9), They, it
    assert o["pronouns"] == 11
    assert o["pronoun_grounding_char_she"] == 1.0
    assert o["pronoun_grounding_char_her"] == 0.5
    assert o["pronoun_grounding_char_it"] == 0.0
    assert o["pronoun_grounding_any_it"] == 1.0
    assert o["pronoun_grounding_char_they"] == 0.5
    assert o["pronoun_grounding_char_his"] is None  # never used
    assert o["pronoun_grounding_char"] == 6 / 11  # She, he, her; He, him (char9 is a char id), They
    assert o["pronoun_grounding_any"] == 9 / 11  # and It, its, it
    assert scores.extra["pronouns"]["it"] == {
        "total": 2,
        "char": 0,
        "any": 2,
        "rate_char": 0.0,
        "rate_any": 1.0,
    }
    assert scores.extra["pronouns"]["his"]["rate_char"] is None


def test_hallucinations(scores):
    b = scores.per_story["b"]
    assert (b["unknown_ids"], b["off_image_ids"], b["invalid_boxes"], b["box_missing"]) == (1, 2, 3, 1)
    assert b["hallucinations"] == 6
    assert scores.per_story["a"]["hallucinations"] == 0
    details = scores.extra["hallucination_details"]["b"]
    assert details["unknown_ids"] == ["char9"]
    assert details["off_image_ids"] == ["image2:char2", "image2:obj1"]
    assert sorted(details["invalid_boxes"]) == ["degenerate", "out_of_image", "unparsable"]
    o = scores.overall
    assert (o["unknown_ids"], o["off_image_ids"], o["invalid_boxes"], o["hallucinations"]) == (1, 2, 3, 6)
    assert (o["box_unparsable"], o["box_degenerate"], o["box_out_of_image"], o["box_missing"]) == (1, 1, 1, 1)
    assert o["hallucinations_per_story"] == 3.0


def test_reference_numbers_sit_beside_the_candidates(scores):
    ref = scores.extra["reference"]["overall"]
    # the references are A, B and A again (the missing story still has its reference)
    assert ref["well_structured_rate"] == pytest.approx(2 / 3)
    assert ref["hallucinations"] == 6
    assert scores.extra["reference"]["pronouns"]["she"]["total"] == 2


def test_the_original_whole_tag_match():
    text = build([{"char1": B}], ["<gdo char1>his hat</gdo> fell and <gdo char1>he</gdo> sighed."])
    inside = consistency([pair("a", text, 1)])
    whole = consistency([pair("a", text, 1)], pronoun_match="whole")
    assert inside.overall["pronoun_grounding_char_his"] == 1.0
    assert whole.overall["pronoun_grounding_char_his"] == 0.0
    assert whole.overall["pronoun_grounding_char_he"] == 1.0
    assert whole.extra["options"] == {"pronoun_match": "whole"}
    with pytest.raises(ValueError, match="pronoun_match"):
        consistency([], pronoun_match="strict")


def test_no_stories_and_json():
    empty = consistency([])
    assert empty.overall["n_stories"] == 0
    assert empty.overall["well_structured_rate"] is None
    assert empty.overall["pronoun_grounding_char"] is None


def test_scores_are_json(scores):
    data = json.loads(json.dumps(scores.to_dict()))
    assert data["family"] == "consistency"
    assert data["conventions"]


def test_a_tellings_counts_cross_processes_whole():
    """What a scoring worker sends back (pickled) is the same counts, pronouns included."""
    import pickle

    stats = telling_stats(parse_output(STORY_A), [SIZE] * 3)
    assert sum(c.total for c in stats.pronouns.values()) > 0
    again = pickle.loads(pickle.dumps(stats, protocol=pickle.HIGHEST_PROTOCOL))
    assert again == stats
    assert [type(c).__name__ for c in again.pronouns.values()] == ["PronounCounts"] * len(PRONOUNS)


def test_the_summary_of_counts_is_the_summary_of_the_tellings_stats(scores):
    """What a run keeps of each output (its counts) gives every number the full stats give, the
    hallucinations' names and the persistence curves included, missing outputs and all."""
    from storyreasoning.evaluate.consistency import story_counts, story_stats, summarize

    from .test_scoring import make_jobs

    pairs = [job.pair() for job in make_jobs(45)]
    for match in ("inside", "whole"):
        kept = summarize(
            [(p.story_id, story_counts(p, pronoun_match=match)) for p in pairs], pronoun_match=match
        )
        full = summarize(
            [(p.story_id, story_stats(p, pronoun_match=match)) for p in pairs], pronoun_match=match
        )
        assert json.dumps(kept.to_dict()) == json.dumps(full.to_dict())
    assert kept.overall["n_missing"] > 0 and kept.extra["hallucination_details"]
    assert scores.extra["hallucination_details"]["b"]  # consistency() keeps the counts too
