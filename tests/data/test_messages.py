"""Training messages: field by field against the original adapter's rules, and our options."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest

from storyreasoning.data import StorySample
from storyreasoning.data.messages import MessageOptions, TrainingExamples, prepare, training_messages
from storyreasoning.data.transform import EntityFilter, cut_frames
from storyreasoning.format import (
    SYSTEM_PROMPT,
    TRAINING_PROMPTS,
    Box,
    parse_cot,
    parse_story,
    render_cot,
    render_story,
)

from .fixtures import fixture_samples

ORIGINAL_LAYOUT = MessageOptions(order="text-first", style="inline")


def original_adapter(
    sample: StorySample, prompt: str, max_images=None, chars=False, objects=False, backgrounds=True
):
    """What the original StoryReasoningAdapter.__getitem__ returns (reference section 2.3), prompt given."""
    images = [f.open() for f in sample.frames]
    cot_text, story_text = sample.cot_text, sample.story_text
    if max_images is not None and len(images) > max_images:
        images = images[:max_images]
        cot = parse_cot(cot_text)
        cot.images = cot.images[:max_images]  # the narrative is kept unchanged
        story = parse_story(story_text)
        story.segments = story.segments[:max_images]
        cot_text, story_text = render_cot(cot), render_story(story)
    if chars or objects or backgrounds:
        cot = copy.deepcopy(parse_cot(cot_text))
        mentioned = set(parse_story(story_text).mentioned_ids())
        for image in cot.images:
            if chars:
                image.characters = [c for c in image.characters if c.id in mentioned]
            kept = []
            for o in image.objects:
                if o.id.startswith("bg"):
                    keep = not backgrounds or o.id in mentioned
                elif o.id.startswith("obj"):
                    keep = not objects or o.id in mentioned
                else:  # any other prefix, lm included, is always kept
                    keep = True
                if keep:
                    kept.append(o)
            image.objects = kept
        cot_text = render_cot(cot)
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {
            "role": "user",
            "content": [{"type": "text", "text": prompt}] + [{"type": "image", "image": i} for i in images],
        },
        {"role": "assistant", "content": f"<think>\n{cot_text.strip()}\n</think>\n{story_text.strip()}"},
    ]
    return {"id": sample.story_id, "messages": messages, "images": images}


def pixels(image) -> bytes:
    return image.convert("RGB").tobytes()


def assert_matches_original(ours: dict, theirs: dict) -> None:
    assert ours["id"] == theirs["id"]
    assert [pixels(i) for i in ours["images"]] == [pixels(i) for i in theirs["images"]]
    assert len(ours["messages"]) == len(theirs["messages"]) == 3
    for mine, orig in zip(ours["messages"], theirs["messages"], strict=True):
        assert mine["role"] == orig["role"]
        if isinstance(orig["content"], str):
            assert mine["content"] == orig["content"]
        else:
            assert [p["type"] for p in mine["content"]] == [p["type"] for p in orig["content"]]
            for a, b in zip(mine["content"], orig["content"], strict=True):
                if a["type"] == "text":
                    assert a["text"] == b["text"]
                else:
                    assert pixels(a["image"]) == pixels(b["image"])


@pytest.fixture(scope="module")
def sample() -> StorySample:
    return fixture_samples(2)[1]


@pytest.mark.parametrize(
    "flags",
    [
        {},
        {"chars": True},
        {"objects": True},
        {"backgrounds": False},
        {"chars": True, "objects": True, "backgrounds": True},
    ],
)
def test_matches_original_adapter(sample, flags):
    which = EntityFilter(
        characters=flags.get("chars", False),
        objects=flags.get("objects", False),
        backgrounds=flags.get("backgrounds", True),
    )
    options = replace(ORIGINAL_LAYOUT, filter=which)
    ours = training_messages(sample, 7, options)
    assert ours["prompt"] in TRAINING_PROMPTS
    assert_matches_original(ours, original_adapter(sample, ours["prompt"], **flags))


def test_matches_original_adapter_with_max_images_except_the_narrative(sample):
    options = replace(ORIGINAL_LAYOUT, max_images=2)
    ours = training_messages(sample, 3, options)
    theirs = original_adapter(sample, ours["prompt"], max_images=2)
    # documented fix: our narrative rows only name kept images; everything else is the original's
    ours_cot = parse_cot(ours["messages"][2]["content"].split("</think>")[0].removeprefix("<think>"))
    their_cot = parse_cot(theirs["messages"][2]["content"].split("</think>")[0].removeprefix("<think>"))
    assert ours_cot.images == their_cot.images
    assert max(n for row in their_cot.narrative for n in row.images) == 3
    assert all(n <= 2 for row in ours_cot.narrative for n in row.images)
    ours["messages"][2] = theirs["messages"][2] = None
    assert [pixels(i) for i in ours["images"]] == [pixels(i) for i in theirs["images"]]
    assert ours["messages"][1]["content"][0] == theirs["messages"][1]["content"][0]


def test_prompts_are_reproducible_and_varied(sample):
    first = [training_messages(sample, i, decode=False)["prompt"] for i in range(40)]
    again = [training_messages(sample, i, decode=False)["prompt"] for i in range(40)]
    other = [training_messages(sample, i, MessageOptions(seed=1), decode=False)["prompt"] for i in range(40)]
    assert first == again
    assert first != other
    assert len(set(first)) >= 6  # uniform over ten prompts


def test_default_layout_is_trl_with_images_first(sample):
    example = training_messages(sample, 0)
    system, user, assistant = example["messages"]
    assert system == {"role": "system", "content": SYSTEM_PROMPT}
    assert [p["type"] for p in user["content"]] == ["image", "image", "image", "text"]
    assert all(p == {"type": "image"} for p in user["content"][:3])
    assert assistant["content"][0]["type"] == "text"
    assert assistant["content"][0]["text"].startswith("<think>\n## Image 1")
    assert len(example["images"]) == 3 and example["images"][0].mode == "RGB"
    raw = training_messages(sample, 0, MessageOptions(filter=EntityFilter(backgrounds=False)), decode=False)
    assert (
        raw["messages"][2]["content"][0]["text"] == sample.output_text()
    )  # no change asked: texts as stored


def test_max_images_cuts_everything_consistently(sample):
    for k in (1, 2):
        cut = cut_frames(sample, k)
        assert cut.frame_count == len(cut.cot.images) == len(cut.story.image_segments) == k
        assert [f.bytes() for f in cut.frames] == [f.bytes() for f in sample.frames[:k]]
        assert cut.frame_meta == sample.frame_meta[:k]
        assert all(1 <= n <= k for row in cut.cot.narrative for n in row.images)
        assert set(cut.story.mentioned_ids()) <= cut.cot.entity_ids()
        assert [row.phase for row in cut.cot.narrative] == [row.phase for row in sample.cot.narrative]
        verdict = cut.telling().validate(n_images=k)
        assert verdict.well_structured, verdict.reasons
    assert cut_frames(sample, 3) is sample


def test_landmark_filter_is_switchable(sample):
    text = sample.story_text.replace("<gdl lm1>toward the lighthouse</gdl>", "toward the lighthouse")
    unmentioned = sample.with_texts(sample.cot_text, text)
    kept = prepare(unmentioned, MessageOptions())
    dropped = prepare(unmentioned, MessageOptions(filter=EntityFilter(landmarks=True)))
    assert "lm1" in kept.cot.entity_ids()
    assert "lm1" not in dropped.cot.entity_ids()
    assert "bg1" in kept.cot.entity_ids()  # bg1 is mentioned, so the default filter keeps it


def test_boxes_in_model_space(sample):
    options = MessageOptions(box_space="model", min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 64)
    moved = prepare(sample, options)
    for before, after in zip(sample.cot.images, moved.cot.images, strict=True):
        for a, b in zip(
            (*before.characters, *before.objects), (*after.characters, *after.objects), strict=True
        ):
            expected = a.box.to_model_space(640, 480, min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 64)
            assert b.box == expected
            assert isinstance(b.box, Box) and b.box != a.box
    # the model's input is 224x168 here: every box lies inside it
    assert all(
        row.box.x2 <= 224 and row.box.y2 <= 168 for image in moved.cot.images for row in image.characters
    )


def test_training_examples_sequence(sample):
    examples = TrainingExamples([sample, sample], MessageOptions(max_images=2))
    assert len(examples) == 2
    assert [len(e["images"]) for e in examples] == [2, 2]
    assert examples[1]["prompt"] == training_messages(sample, 1, MessageOptions(max_images=2))["prompt"]


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="box_space"):
        MessageOptions(box_space="normalised")
    with pytest.raises(ValueError, match="max_images"):
        MessageOptions(max_images=0)
