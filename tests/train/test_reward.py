"""The DPO reward and the preference pairs, on hand-built two-frame stories with known answers.

No torch needed: the reward is pure Python.
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

SIZES = [(640, 480), (640, 480)]

CHAR_HEAD = (
    "| Character ID | Name | Description | Emotions | Actions | Narrative Function | Bounding Box |\n"
    "|---|---|---|---|---|---|---|\n"
)
OBJ_HEAD = "| Object ID | Description | Function | Interaction | Narrative Function | Bounding Box |\n|---|---|---|---|---|---|\n"
SET_HEAD = "| Setting Element | Description | Mood | Time | Narrative Function |\n|---|---|---|---|---|\n"
NARRATIVE = (
    "## Narrative Structure\n\n"
    "| Narrative Phase | Description | Key Events | Images |\n|---|---|---|---|\n"
    "| Introduction | a | b | 1 |\n| Development | a | b | 1 |\n| Conflict | a | b | 2 |\n"
    "| Turning Point | a | b | 2 |\n| Conclusion | a | b | 2 |\n"
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
    return "<think>\n" + "".join(images) + NARRATIVE + "</think>\n" + story


A = "100,100,200,300"
B = "300,100,400,300"
REFERENCE = output(
    [image(1, [("char1", "Ana", A)]), image(2, [("char1", "Ana", B)])],
    ["<gdo char1>Ana</gdo> waits.", "<gdo char1>She</gdo> leaves."],
)


def test_the_reference_scores_one():
    r = story_reward(REFERENCE, REFERENCE, SIZES)
    assert (r.total, r.structure, r.boxes, r.reid, r.mentions) == (1.0, 1.0, 1.0, 1.0, 1.0)
    assert r.details["links"] == 1 and r.details["links_correct"] == 1
    assert (r.details["names"], r.details["pronouns"]) == (1, 1)


def test_a_new_id_for_the_same_person_loses_the_link():
    split = output(
        [image(1, [("char1", "Ana", A)]), image(2, [("char2", "Ana", B)])],
        ["<gdo char1>Ana</gdo> waits.", "<gdo char2>She</gdo> leaves."],
    )
    r = story_reward(split, REFERENCE, SIZES)
    assert r.boxes == 1.0 and r.mentions == 1.0
    assert r.reid == 0.0  # 0 of 1 reference link found, none predicted: F1 0
    assert r.total == pytest.approx(2 / 3)


def test_a_wrong_box_is_a_false_positive_and_a_miss():
    moved = REFERENCE.replace(B, "500,300,600,470")
    r = story_reward(moved, REFERENCE, SIZES)
    assert r.boxes == pytest.approx(0.5)  # 1 of 2 rows match: P = R = 1/2
    # the link exists but its second row matches nothing: not correct
    assert r.reid == 0.0 and r.details["links"] == 1 and r.details["links_correct"] == 0


def test_links_across_sources_are_penalised():
    # a synthetic sequence: the frames come from two films, the reference links nothing
    reference = output(
        [image(1, [("char1", "Ana", A)]), image(2, [("char2", "Bo", B)])],
        ["<gdo char1>Ana</gdo> waits.", "<gdo char2>Bo</gdo> leaves."],
    )
    linked = output(
        [image(1, [("char1", "Ana", A)]), image(2, [("char1", "Ana", B)])],
        ["<gdo char1>Ana</gdo> waits.", "<gdo char1>She</gdo> leaves."],
    )
    sources = ["film-a", "film-b"]
    good = story_reward(reference, reference, SIZES, sources=sources)
    bad = story_reward(linked, reference, SIZES, sources=sources)
    assert good.reid == 1.0 and good.details["cross_source_links"] == 0
    assert bad.reid == 0.0 and bad.details["cross_source_links"] == 1
    # the penalty alone, with the link F1 out of the way: a link both sides agree on, across sources
    same = story_reward(linked, linked, SIZES, sources=sources, weights=RewardWeights(cross_source=0.5))
    assert same.reid == pytest.approx(0.5)
    assert story_reward(linked, linked, SIZES).reid == 1.0  # no sources: a real story, nothing to penalise


def test_mentions_need_a_span_naming_an_entity_of_their_own_image():
    text = output(
        [image(1, [("char1", "Ana", A)]), image(2, [("char2", "Bo", B)])],
        ["Ana waits. <gdo char1>He</gdo> sits.", "<gdo char1>She</gdo> and <gdo char2>Bo</gdo> leave."],
    )
    r = story_reward(text, text, SIZES)
    # pronouns: He (grounded), She (char1 is not in image 2: not grounded); names: Ana (untagged), Bo (grounded)
    assert (r.details["pronouns"], r.details["pronouns_grounded"]) == (2, 1)
    assert (r.details["names"], r.details["names_grounded"]) == (2, 1)
    assert r.mentions == 0.5
    # char1 exists in the story (the validator checks ids story-wide): structure holds; the
    # per-image check is the mentions component's
    assert r.structure == 1.0 and r.total == pytest.approx((1 + 1 + 0.5) / 3)


def test_an_ill_formed_output_is_gated_to_zero():
    cut = REFERENCE.split("</think>")[0]  # no story at all
    gated = story_reward(cut, REFERENCE, SIZES)
    assert gated.structure == 0.0 and gated.total == 0.0 and gated.boxes == 1.0
    open_gate = story_reward(cut, REFERENCE, SIZES, weights=RewardWeights(gate=False))
    assert open_gate.total == pytest.approx((1.0 + 1.0 + 1.0) / 3 / 2)  # boxes and reid intact, no mentions
    assert story_reward("", REFERENCE, SIZES).total == 0.0
    assert story_reward(None, REFERENCE, SIZES).total == 0.0


def test_weights_are_checked():
    with pytest.raises(ValueError, match="negative"):
        RewardWeights(boxes=-1)
    with pytest.raises(ValueError, match="positive"):
        RewardWeights(boxes=0, reid=0, mentions=0)


def png(colour) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", SIZES[0], colour).save(buffer, format="PNG")
    return buffer.getvalue()


def sample(story_id: str, text: str = REFERENCE, sources=None) -> StorySample:
    cot, story = text.split("</think>")
    meta = [{"source": s} for s in sources] if sources else None
    return StorySample(story_id, [png("red"), png("blue")], cot.removeprefix("<think>").strip(), story.strip(),
                       frame_meta=meta)  # fmt: skip


def test_sample_reward_reads_the_sources_from_frame_meta():
    linked = sample("x", sources=["a", "b"])
    assert sample_reward(REFERENCE, linked).details["cross_source_links"] == 1
    assert sample_reward(REFERENCE, sample("y")).details["cross_source_links"] == 0


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
    # s1: reference 1.0 > a (2/3) > b (0): chosen reference, rejected b
    # s2: a, b and the reference all score 1.0: within the margin
    # s3: a and the reference tie at 1.0: within the margin
    assert report.pairs == 1 and report.too_close == ["s2", "s3"] and report.not_in_dataset == 1
    (pair,) = pairs
    assert pair["story_id"] == "s1" and pair["chosen_from"] == "reference" and pair["rejected_from"] == "b"
    assert pair["chosen"] == REFERENCE and pair["rejected"] == broken
    assert pair["candidates"] == {"a": pytest.approx(2 / 3), "b": 0.0, "reference": 1.0}
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
    assert good.reid == 1.0 and bad.details["cross_source_links"] >= 1 and bad.reid == 0.0
    assert good.total > bad.total
    runs = [RunOutputs(Path("m"), "model", {sequence.story_id: linked})]
    build_pairs([sequence], runs, tmp_path / "p", include_reference=True)
    _, (pair,) = read_pairs(tmp_path / "p")
    assert (pair["chosen_from"], pair["rejected_from"]) == ("reference", "model")
