"""The DPO reward and the preference pairs, on hand-built stories with known answers.

No torch needed: the reward is pure Python (and SciPy's assignment).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storyreasoning.data.sample import StorySample
from storyreasoning.errors import UsageError
from storyreasoning.evaluate.runs import RunOutputs
from storyreasoning.train.pairs import build_pairs, read_pairs
from storyreasoning.train.reward import RewardWeights, sample_reward, story_reward, trl_reward
from storyreasoning.train.settings import PairsSettings

SIZES = [(640, 480), (640, 480)]

CHAR_HEAD = (
    "| Character ID | Name | Description | Emotions | Actions | Narrative Function | Bounding Box |\n"
    "|---|---|---|---|---|---|---|\n"
)
OBJ_HEAD = "| Object ID | Description | Function | Interaction | Narrative Function | Bounding Box |\n|---|---|---|---|---|---|\n"
SET_HEAD = "| Setting Element | Description | Mood | Time | Narrative Function |\n|---|---|---|---|---|\n"
PHASES = ("Introduction", "Development", "Conflict", "Turning Point", "Conclusion")


def narrative(frames: int) -> str:
    rows = "".join(f"| {phase} | a | b | {min(k + 1, frames)} |\n" for k, phase in enumerate(PHASES))
    return (
        "## Narrative Structure\n\n| Narrative Phase | Description | Key Events | Images |\n|---|---|---|---|\n"
        + rows
    )


def image(n: int, chars: list[tuple[str, str, str]], objs: list[tuple[str, str]] = ()) -> str:
    """``chars``: (id, name, box); ``objs``: (id, box)."""
    rows = "".join(f"| {i} | {name} | person | calm | standing | hero | {box} |\n" for i, name, box in chars)
    orows = "".join(f"| {i} | Red cup | drink | held | prop | {box} |\n" for i, box in objs)
    return (
        f"## Image {n}\n\n### Characters\n{CHAR_HEAD}{rows}\n### Objects\n{OBJ_HEAD}{orows}\n"
        f"### Setting\n{SET_HEAD}| Location | A room | calm | day | place |\n\n\n"
    )


def output(images: list[str], segments: list[str]) -> str:
    story = "\n".join(f"<gdi image{k}>\n{text}\n</gdi>" for k, text in enumerate(segments, start=1))
    return "<think>\n" + "".join(images) + narrative(len(images)) + "</think>\n" + story


A = "100,100,200,300"
B = "300,100,400,300"
REFERENCE = output(
    [image(1, [("char1", "Ana", A)]), image(2, [("char1", "Ana", B)])],
    ["<gdo char1>Ana</gdo> waits.", "<gdo char1>She</gdo> leaves."],
)


def test_the_reference_scores_one():
    r = story_reward(REFERENCE, REFERENCE, SIZES)
    assert (r.total, r.structure, r.reid, r.grounding, r.boxes) == (1.0, 1.0, 1.0, 1.0, 1.0)
    assert r.details["links"] == 1 and r.details["links_correct"] == 1
    assert (r.details["names"], r.details["pronouns"]) == (1, 1)


# -- four frames, two people: a good story and the ways to spoil it ---------------------------------------

FOUR = [(640, 480)] * 4
# small boxes (30 x 40, people far away), so that a few pixels off is below IoU 0.5
PEOPLE = {  # frame -> [(who, box)]
    1: [("Ana", (100, 100, 130, 140))],
    2: [("Bo", (400, 100, 430, 140))],
    3: [("Ana", (300, 200, 330, 240)), ("Bo", (450, 200, 480, 240))],
    4: [("Bo", (200, 300, 230, 340))],
}
STORY = {
    1: "<gdo Ana>Ana</gdo> waits by the door.",
    2: "<gdo Bo>Bo</gdo> walks in from the rain.",
    3: "<gdo Ana>Ana</gdo> hands <gdo Bo>him</gdo> a towel and <gdo Ana>she</gdo> laughs.",
    4: "<gdo Bo>Bo</gdo> sleeps by the fire.",
}
NO_NAMES = {  # the same story without a pronoun or a name, its noun phrases still tagged
    1: "<gdo Ana>The woman</gdo> waits by the door.",
    2: "<gdo Bo>A man</gdo> walks in from the rain.",
    3: "<gdo Ana>The woman</gdo> hands <gdo Bo>the man</gdo> a towel and laughs.",
    4: "<gdo Bo>The man</gdo> sleeps by the fire.",
}


def four_frames(ids, *, shift: int = 0, story=STORY, people=PEOPLE) -> str:
    """The four-frame story with ``ids(frame, who) -> entity id`` and every box moved by ``shift`` pixels."""
    images = []
    segments = []
    for frame in range(1, 5):
        rows = [
            (ids(frame, who), who, ",".join(str(v + shift) for v in box))
            for who, box in people.get(frame, [])
        ]
        images.append(image(frame, rows))
        text = story[frame]
        for who in ("Ana", "Bo"):
            text = text.replace(f"<gdo {who}>", f"<gdo {ids(frame, who)}>")
        segments.append(text)
    return output(images, segments)


def by_person(frame, who):
    return {"Ana": "char1", "Bo": "char2"}[who]


GOOD = four_frames(by_person)
OFFSET = four_frames(by_person, shift=8)  # IoU 704/1696 = 0.42 with every reference box
MERGED = four_frames(lambda frame, who: "char1")  # everyone is one person
NEVER = four_frames(lambda frame, who: f"char{frame}{1 if who == 'Ana' else 2}")  # new ids in every frame
NO_NAMES_STORY = four_frames(by_person, story=NO_NAMES)
UNTAGGED = four_frames(by_person, story={k: "Someone waits by the door." for k in range(1, 5)})
NOBODY = four_frames(by_person, story={k: "She waits by the door." for k in range(1, 5)}, people={})


def test_hand_made_outputs_rank_as_expected():
    score = {name: story_reward(text, GOOD, FOUR) for name, text in [
        ("good", GOOD), ("offset", OFFSET), ("no names", NO_NAMES_STORY), ("merged", MERGED),
        ("never", NEVER), ("untagged", UNTAGGED), ("nobody", NOBODY),
    ]}  # fmt: skip
    assert all(r.structure == 1.0 for r in score.values())
    good, offset = score["good"], score["offset"]
    assert (good.total, good.reid, good.grounding) == (1.0, 1.0, 1.0)
    # a few pixels off: below the detection threshold, yet the same identities and the same grounding
    assert offset.boxes == 0.0 and offset.details["matched_rows"] == 0
    assert (offset.total, offset.reid, offset.grounding) == (1.0, 1.0, 1.0)
    # no pronoun, no name: nothing of the card's grounding to show; the reference's characters are tagged
    no_names = score["no names"]
    assert no_names.reid == 1.0 and no_names.details["mention_precision"] == 0.0
    assert no_names.grounding == 0.5 and no_names.total == 0.75
    assert score["untagged"].grounding == 0.0 and score["untagged"].total == 0.5
    # everyone one id: the true links are kept but precision is lost in both factors
    merged = score["merged"]
    assert merged.details["idf1"] == pytest.approx(6 / 10)  # the 5-row track is assigned to Bo's 3 rows
    assert merged.details["link_f1"] == pytest.approx(2 * 4 / (9 + 4))  # 9 links, 4 right, 4 in the reference
    assert merged.reid == pytest.approx(6 / 10 * 8 / 13) and merged.grounding == 1.0
    # never re-identifying: no link, so nothing of re-identification
    never = score["never"]
    assert never.details["links"] == 0 and never.reid == 0.0 and never.grounding == 1.0
    # no characters at all: neither re-identification nor grounding
    nobody = score["nobody"]
    assert (nobody.reid, nobody.grounding, nobody.total) == (0.0, 0.0, 0.0)
    assert nobody.details["pronouns"] == 4 and nobody.details["pronouns_grounded"] == 0
    order = ["good", "no names", "merged", "never", "nobody"]
    totals = [score[name].total for name in order]
    assert totals == sorted(totals, reverse=True) and len(set(totals)) == len(totals), totals
    # boxes weigh in only when asked
    boxed = story_reward(OFFSET, GOOD, FOUR, weights=RewardWeights(boxes=1.0))
    assert boxed.total == pytest.approx(2 / 3)
    # a stricter matching loses the offset story's identities
    strict = story_reward(OFFSET, GOOD, FOUR, weights=RewardWeights(reid_iou=0.5))
    assert (
        strict.reid == 0.0 and strict.grounding == 0.5
    )  # its mentions are still grounded in their own frames


def test_an_output_without_characters_gets_no_reid_even_where_nothing_should_be_linked():
    # a synthetic sequence: two films, nothing linked in the reference
    reference = output(
        [image(1, [("char1", "Ana", A)]), image(2, [("char2", "Bo", B)])],
        ["<gdo char1>Ana</gdo> waits.", "<gdo char2>Bo</gdo> leaves."],
    )
    empty = output([image(1, []), image(2, [])], ["Someone waits.", "Someone leaves."])
    r = story_reward(empty, reference, SIZES, groups=["film-a", "film-b"])
    assert r.structure == 1.0 and r.details["link_f1"] == 1.0  # it links nothing, rightly
    assert r.details["idf1"] == 0.0 and r.reid == 0.0 and r.grounding == 0.0 and r.total == 0.0


def test_where_the_reference_has_nothing_to_ground_grounding_is_left_out():
    # an empty room in two frames (as the builder writes it when nobody is in view)
    room = output(
        [image(1, [], [("bg1", A)]), image(2, [], [("bg1", A)])],
        ["No one is in view. <gdl bg1>The room</gdl> is dark.", "<gdl bg1>The room</gdl> is still dark."],
    )
    # a storyteller that invents a person to tag a pronoun
    invented = output(
        [image(1, [("char1", "Ana", B)], [("bg1", A)]), image(2, [], [("bg1", A)])],
        ["<gdo char1>She</gdo> waits in <gdl bg1>the room</gdl>.", "<gdl bg1>The room</gdl> is still dark."],
    )
    own, other = story_reward(room, room, SIZES), story_reward(invented, room, SIZES)
    assert own.grounding is None and other.grounding is None and other.details["mention_precision"] == 1.0
    assert own.total == 1.0 and other.total == other.reid < 1.0
    only_grounding = RewardWeights(reid=0, grounding=1)
    assert story_reward(invented, room, SIZES, weights=only_grounding).total == 1.0  # structure alone decides


def test_a_new_id_for_the_same_person_loses_the_link():
    split = output(
        [image(1, [("char1", "Ana", A)]), image(2, [("char2", "Ana", B)])],
        ["<gdo char1>Ana</gdo> waits.", "<gdo char2>She</gdo> leaves."],
    )
    r = story_reward(split, REFERENCE, SIZES)
    assert r.boxes == 1.0 and r.grounding == 1.0
    assert r.details["idf1"] == 0.5 and r.details["link_f1"] == 0.0 and r.reid == 0.0
    assert r.total == pytest.approx(0.5)


def test_a_wrong_box_matches_nothing():
    moved = REFERENCE.replace(B, "500,300,600,470")
    r = story_reward(moved, REFERENCE, SIZES)
    assert r.boxes == pytest.approx(0.5)  # 1 of 2 rows match: P = R = 1/2
    # the link exists but its second row matches nothing: not correct
    assert r.reid == 0.0 and r.details["links"] == 1 and r.details["links_correct"] == 0


def test_links_across_groups_are_penalised():
    # a synthetic sequence: the frames come from two films, the reference links nothing
    reference = output(
        [image(1, [("char1", "Ana", A)]), image(2, [("char2", "Bo", B)])],
        ["<gdo char1>Ana</gdo> waits.", "<gdo char2>Bo</gdo> leaves."],
    )
    linked = output(
        [image(1, [("char1", "Ana", A)]), image(2, [("char1", "Ana", B)])],
        ["<gdo char1>Ana</gdo> waits.", "<gdo char1>She</gdo> leaves."],
    )
    groups = ["film-a", "film-b"]
    good = story_reward(reference, reference, SIZES, groups=groups)
    bad = story_reward(linked, reference, SIZES, groups=groups)
    assert good.reid == 1.0 and good.details["cross_group_links"] == 0
    assert bad.reid == 0.0 and bad.details["cross_group_links"] == 1
    # the penalty alone, with the link F1 out of the way: a link both sides agree on, across groups
    same = story_reward(linked, linked, SIZES, groups=groups, weights=RewardWeights(cross_group=0.5))
    assert same.reid == pytest.approx(0.5)
    assert story_reward(linked, linked, SIZES).reid == 1.0  # one group: a real story, nothing to penalise
    assert story_reward(linked, linked, SIZES, groups=["film-a", "film-a"]).reid == 1.0


def test_mentions_need_a_span_naming_an_entity_of_their_own_image():
    text = output(
        [image(1, [("char1", "Ana", A)]), image(2, [("char2", "Bo", B)])],
        ["Ana waits. <gdo char1>He</gdo> sits.", "<gdo char1>She</gdo> and <gdo char2>Bo</gdo> leave."],
    )
    r = story_reward(text, text, SIZES)
    # pronouns: He (grounded), She (char1 is not in image 2: not grounded); names: Ana (untagged), Bo (grounded)
    assert (r.details["pronouns"], r.details["pronouns_grounded"]) == (2, 1)
    assert (r.details["names"], r.details["names_grounded"]) == (2, 1)
    assert r.details["mention_precision"] == 0.5
    # the characters the reference grounds (char1 in image 1, char2 in image 2) are grounded here too
    assert r.details["character_recall"] == 1.0 and r.grounding == 0.75
    # char1 exists in the story (the validator checks ids story-wide): structure holds; the
    # per-image check is the grounding component's
    assert r.structure == 1.0 and r.total == pytest.approx((1 + 0.75) / 2)


def test_an_ill_formed_output_is_gated_to_zero():
    cut = REFERENCE.split("</think>")[0]  # no story at all
    gated = story_reward(cut, REFERENCE, SIZES)
    assert gated.structure == 0.0 and gated.total == 0.0 and gated.reid == 1.0 and gated.grounding == 0.0
    open_gate = story_reward(cut, REFERENCE, SIZES, weights=RewardWeights(gate=False))
    assert open_gate.total == pytest.approx((1.0 + 0.0) / 2 / 2)  # reid intact, no story to ground
    assert story_reward("", REFERENCE, SIZES).total == 0.0
    assert story_reward(None, REFERENCE, SIZES).total == 0.0


def test_weights_are_checked():
    with pytest.raises(ValueError, match="negative"):
        RewardWeights(boxes=-1)
    with pytest.raises(ValueError, match="positive"):
        RewardWeights(reid=0, grounding=0)
    with pytest.raises(ValueError, match="reid_iou"):
        RewardWeights(reid_iou=0)
    assert RewardWeights(reid=0, grounding=0, boxes=1).boxes == 1


def test_the_pairs_options_default_to_the_reward_defaults():
    settings = PairsSettings(source="d", out=Path("p"))
    assert settings.weights() == RewardWeights()
    assert (settings.w_reid, settings.w_grounding, settings.w_boxes) == (1.0, 1.0, 0.0)
    with pytest.raises(UsageError, match="positive"):
        PairsSettings(source="d", out=Path("p"), w_reid=0, w_grounding=0).weights()


def png(colour) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", SIZES[0], colour).save(buffer, format="PNG")
    return buffer.getvalue()


def sample(story_id: str, text: str = REFERENCE, meta: list[dict] | None = None) -> StorySample:
    cot, story = text.split("</think>")
    return StorySample(story_id, [png("red"), png("blue")], cot.removeprefix("<think>").strip(), story.strip(),
                       frame_meta=meta)  # fmt: skip


@pytest.mark.parametrize(
    ("meta", "cross"),
    [
        (None, 0),  # the published dataset: one story, one group
        ([{"group": "a", "source": "x/1.png"}, {"group": "b", "source": "x/2.png"}], 1),
        ([{"group": "film", "source": "film.mp4@1.00s"}, {"group": "film", "source": "film.mp4@9.00s"}], 0),
        # written before the group key: contrastive sequences recorded the film as the source
        ([{"source": "a"}, {"source": "b"}], 1),
        # ... and built stories each frame's own path or time stamp, which name no group
        ([{"source": "raw/s/01.png"}, {"source": "raw/s/02.png"}], 0),
        ([{"source": "film.mp4@1.00s"}, {"source": "film.mp4@9.00s"}], 0),
        ([{"source": "a.mp4@1.00s"}, {"source": "b.mp4@1.00s"}], 1),
    ],
)
def test_the_reward_reads_the_frames_groups_never_their_provenance(meta, cross):
    r = sample_reward(REFERENCE, sample("x", meta=meta))
    assert r.details["cross_group_links"] == cross
    assert r.reid == (0.0 if cross else 1.0)


def test_trl_reward_takes_strings_and_messages():
    f = trl_reward({"s1": sample("s1")})
    messages = [[{"role": "assistant", "content": [{"type": "text", "text": REFERENCE}]}]]
    assert f([REFERENCE, "nonsense"], ["s1", "s1"]) == [1.0, 0.0]
    assert f(messages, ["s1"]) == [1.0]


def test_pairs_take_the_best_against_the_worst(tmp_path):
    split = REFERENCE.replace(
        "char1 | Ana | person | calm | standing | hero | " + B,
        "char2 | Ana | person | calm | standing | hero | " + B,
    )
    split = split.replace("<gdo char1>She</gdo>", "<gdo char2>She</gdo>")
    broken = REFERENCE.split("</think>")[0]
    stories = [sample("s1"), sample("s2"), sample("s3")]
    run_a = RunOutputs(Path("a"), "a", {"s1": split, "s2": REFERENCE, "s3": REFERENCE, "zz": REFERENCE})
    run_b = RunOutputs(Path("b"), "b", {"s1": broken, "s2": REFERENCE})
    report = build_pairs(
        stories, [run_a, run_b], tmp_path / "p", include_reference=True, dataset={"source": "d"}
    )
    manifest, pairs = read_pairs(tmp_path / "p")
    # s1: reference 1.0 > a (0.5) > b (0): chosen reference, rejected b
    # s2: a, b and the reference all score 1.0: within the margin
    # s3: a and the reference tie at 1.0: within the margin
    assert report.pairs == 1 and report.too_close == ["s2", "s3"] and report.not_in_dataset == 1
    (pair,) = pairs
    assert pair["story_id"] == "s1" and pair["chosen_from"] == "reference" and pair["rejected_from"] == "b"
    assert pair["chosen"] == REFERENCE and pair["rejected"] == broken
    assert pair["candidates"] == {"a": pytest.approx(0.5), "b": 0.0, "reference": 1.0}
    assert pair["margin"] == 1.0 and pair["rejected_reward"]["structure"] == 0.0
    reasons = pair["rejected_reward"]["details"]["reasons"]
    assert reasons == ["the output has no grounded story (<gdi imageN> segments)"]
    assert manifest["dataset"] == {"source": "d"} and manifest["report"]["pairs"] == 1
    assert [r["label"] for r in manifest["runs"]] == ["a", "b"]
    # without the reference, s1's best is a
    build_pairs(stories, [run_a, run_b], tmp_path / "q", min_margin=0.5)
    _, pairs = read_pairs(tmp_path / "q")
    assert [(p["story_id"], p["chosen_from"], p["rejected_from"]) for p in pairs] == [("s1", "a", "b")]


def test_pairs_refuse_what_cannot_work(tmp_path):
    with pytest.raises(UsageError, match="no candidates"):
        build_pairs([sample("s1")], [], tmp_path / "x")
    run = RunOutputs(Path("a"), "same", {})
    with pytest.raises(UsageError, match="share the label"):
        build_pairs([sample("s1")], [run, run], tmp_path / "x")
    with pytest.raises(UsageError, match="not a pairs folder"):
        read_pairs(tmp_path / "nowhere")
    report = build_pairs([sample("s1")], [RunOutputs(Path("a"), "a", {"s1": REFERENCE})], tmp_path / "one")
    assert report.too_few == ["s1"] and report.pairs == 0
    assert (tmp_path / "one" / "pairs.jsonl").read_text() == ""
    assert json.loads((tmp_path / "one" / "manifest.json").read_text())["report"]["too_few"] == ["s1"]


def test_on_contrastive_sequences_linking_unrelated_frames_is_rejected(tmp_path):
    from storyreasoning.data import load_stories
    from storyreasoning.data.contrastive import contrastive_sequences

    examples = Path(__file__).resolve().parents[2] / "examples" / "stories"
    (sequence,) = contrastive_sequences(load_stories(str(examples)), 1, length=3, seed=1)
    reference = sequence.output_text()
    with_people = [image for image in sequence.cot.images if image.characters]
    assert len(with_people) >= 2, "the seed must give two frames with people"
    first, second = with_people[0].characters[0].id, with_people[1].characters[0].id
    assert first != second  # the reference never links frames of different films
    # a storyteller that calls the person of frame 2 by frame 1's id: a wrong re-identification
    linked = reference.replace(f"| {second} |", f"| {first} |").replace(f"{second}>", f"{first}>")
    good, bad = sample_reward(reference, sequence), sample_reward(linked, sequence)
    assert good.reid == 1.0 and bad.details["cross_group_links"] >= 1 and bad.reid == 0.0
    assert good.total > bad.total
    runs = [RunOutputs(Path("m"), "model", {sequence.story_id: linked})]
    build_pairs([sequence], runs, tmp_path / "p", include_reference=True)
    _, (pair,) = read_pairs(tmp_path / "p")
    assert (pair["chosen_from"], pair["rejected_from"]) == ("reference", "model")
