"""Token budgets: counts checked against the real processor, fitting by whole frames only.

Every count here is compared with what a real Qwen2.5-VL processor (the tiny one built
offline) makes of the same messages and images: ``len(input_ids)``, and the image grid
it chose for each frame.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from storyreasoning.data import StorySample
from storyreasoning.data.budget import Fit, FitReport, TokenBudget, fit_stories
from storyreasoning.data.messages import MessageOptions, TrainingExamples, prepare, training_messages
from storyreasoning.data.transform import NO_FILTER, cut_frames
from storyreasoning.errors import UsageError
from storyreasoning.format import SYSTEM_PROMPT, NarrativePhase, choose_prompt, smart_resize
from storyreasoning.testing.tiny_models import TINY_MAX_PIXELS, TINY_MIN_PIXELS

from .fixtures import image_bytes, lighthouse_texts

# (width, height) -> <|image_pad|> tokens at the tiny processor's budget (4 to 16 tokens),
# worked out by hand from the smart_resize rule:
#   640x480: 476x644 is above the budget, shrunk by sqrt(307200/12544) to 84x112 -> 3*4 = 12
#   1000x200: shrunk to 28x224 -> 1*8 = 8
#   50x50: rounds to 56x56, exactly the minimum -> 2*2 = 4
#   30x40: rounds to 28x28, below the minimum, grown to 56x84 -> 2*3 = 6
KNOWN_TOKENS = {(640, 480): 12, (1000, 200): 8, (50, 50): 4, (30, 40): 6}
PROMPT = "Tell the story of these images."
ONE_PROMPT = MessageOptions(prompts=(PROMPT,))


@pytest.fixture(scope="module")
def processor(tiny_qwen):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_qwen)


def lighthouse(sizes: list[tuple[int, int]], story_id: str = "lighthouse", seed: int = 0) -> StorySample:
    cot, story = lighthouse_texts()
    frames = [image_bytes(w, h, seed + k) for k, (w, h) in enumerate(sizes)]
    return StorySample(story_id, frames, cot, story)


def run_processor(processor, sample: StorySample, prompt: str, *, max_pixels: int | None = None) -> dict:
    """The processor applied to a hand-built chat of ``sample`` (images first, as training does)."""
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {
            "role": "user",
            "content": [*({"type": "image"} for _ in sample.frames), {"type": "text", "text": prompt}],
        },
        {"role": "assistant", "content": sample.output_text()},
    ]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    images = [Image.open(io.BytesIO(frame.bytes())).convert("RGB") for frame in sample.frames]
    kwargs = {}
    if max_pixels is not None:
        kwargs["size"] = {"shortest_edge": TINY_MIN_PIXELS, "longest_edge": max_pixels}
    return processor(text=[text], images=images, return_tensors="np", **kwargs)


def processor_length(processor, sample: StorySample, prompt: str, **kwargs) -> int:
    return int(run_processor(processor, sample, prompt, **kwargs)["input_ids"].shape[1])


# -- counting ------------------------------------------------------------------------------------


def test_budget_takes_the_processors_pixel_budget(processor):
    budget = TokenBudget(processor)
    assert (budget.min_pixels, budget.max_pixels, budget.factor) == (TINY_MIN_PIXELS, TINY_MAX_PIXELS, 28)
    other = TokenBudget(processor, max_pixels=28 * 28 * 64)
    assert (other.min_pixels, other.max_pixels) == (TINY_MIN_PIXELS, 28 * 28 * 64)


@pytest.mark.parametrize(("size", "tokens"), sorted(KNOWN_TOKENS.items()))
def test_image_tokens_of_known_sizes(processor, size, tokens):
    budget = TokenBudget(processor)
    width, height = size
    assert budget.image_tokens(width, height) == tokens
    rh, rw = smart_resize(height, width, min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS)
    assert (rh // 28) * (rw // 28) == tokens


@pytest.mark.parametrize("max_pixels", [None, 28 * 28 * 64, 28 * 28 * 300])
@pytest.mark.parametrize(
    "sizes",
    [[(640, 480)] * 3, [(640, 480), (1000, 200), (30, 40)], [(50, 50), (640, 480), (1000, 200)]],
    ids=["same-size", "mixed", "mixed-small-first"],
)
def test_count_equals_the_processors_input_ids(processor, sizes, max_pixels):
    sample = lighthouse(sizes)
    index = 3
    options = MessageOptions(filter=NO_FILTER)  # the texts exactly as stored
    count = TokenBudget(processor, max_pixels=max_pixels).count(sample, index, options)

    out = run_processor(processor, sample, choose_prompt(index, options.seed), max_pixels=max_pixels)
    ids = out["input_ids"][0].tolist()
    assert count.total == len(ids)
    assert count.frames == 3

    # vision tokens: the grid the processor chose, frame by frame, is the smart_resize rule's
    merge = processor.image_processor.merge_size
    grid = out["image_grid_thw"].tolist()
    assert len(grid) == 3
    per_image = []
    for (t, gh, gw), (width, height) in zip(grid, sizes, strict=True):
        rh, rw = smart_resize(
            height, width, min_pixels=TINY_MIN_PIXELS, max_pixels=max_pixels or TINY_MAX_PIXELS
        )
        assert (t, gh * 14, gw * 14) == (1, rh, rw)
        per_image.append(t * gh * gw // merge**2)
    if max_pixels is None:
        assert per_image == [KNOWN_TOKENS[s] for s in sizes]
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert ids.count(image_pad) == sum(per_image)
    assert count.vision == sum(per_image) - 3  # one placeholder per frame is counted as text
    assert count.text == len(ids) - count.vision


def test_count_with_default_options_counts_the_prepared_target(processor):
    # default options drop unmentioned backgrounds and re-render the CoT: the count is of that target
    cot, story = lighthouse_texts()
    story = story.replace("<gdl bg1>the dark sea</gdl>", "the dark sea")
    sample = StorySample("no-bg", [image_bytes(640, 480, k) for k in range(3)], cot, story)
    prepared = prepare(sample)
    assert "bg1" in sample.cot_text and "bg1" not in prepared.cot_text
    count = TokenBudget(processor).count(sample, 0)
    assert count.total == processor_length(processor, prepared, choose_prompt(0, 0))
    assert count.total < TokenBudget(processor).count(sample, 0, MessageOptions(filter=NO_FILTER)).total


def test_count_grows_with_max_pixels(processor):
    sample = lighthouse([(640, 480), (1000, 200), (900, 700)])
    budgets = [28 * 28 * n for n in (4, 16, 64, 256, 1024)]
    totals = [TokenBudget(processor, max_pixels=m).count(sample, 0, ONE_PROMPT).total for m in budgets]
    assert totals == sorted(set(totals)), totals  # strictly increasing
    texts = {TokenBudget(processor, max_pixels=m).count(sample, 0, ONE_PROMPT).text for m in budgets}
    assert len(texts) == 1  # only the vision part changes
    assert totals[-1] == processor_length(processor, sample, PROMPT, max_pixels=budgets[-1])


# -- fitting -------------------------------------------------------------------------------------


def frame_counts(budget: TokenBudget, sample: StorySample, options: MessageOptions = ONE_PROMPT) -> list[int]:
    """Tokens of the example cut to 1, 2, ... frames."""
    return [
        budget.count(prepare(sample, MessageOptions(max_images=k)), 0, options).total
        for k in range(1, sample.frame_count + 1)
    ]


@pytest.mark.parametrize("keep", [1, 2])
def test_fit_drops_trailing_frames_with_their_sections(processor, keep):
    sample = lighthouse([(640, 480)] * 3)
    budget = TokenBudget(processor)
    tokens = frame_counts(budget, sample)
    assert tokens == sorted(set(tokens))
    limit = (tokens[keep - 1] + tokens[keep]) // 2  # room for `keep` frames, not one more
    assert tokens[keep - 1] <= limit < tokens[keep]

    fit = budget.fit(sample, limit, 0, ONE_PROMPT)
    fitted = fit.sample
    assert fitted is not None and fit.shortened
    assert (fit.frames_before, fit.frames_after, fitted.frame_count) == (3, keep, keep)
    assert fit.tokens == tokens[keep - 1] <= limit
    assert processor_length(processor, fitted, PROMPT) == fit.tokens  # the processor agrees

    # whole frames: the first `keep` frames, their CoT sections and story segments untouched
    assert [f.bytes() for f in fitted.frames] == [f.bytes() for f in sample.frames[:keep]]
    assert [i.to_dict() for i in fitted.cot.images] == [i.to_dict() for i in sample.cot.images[:keep]]
    assert [s.text for s in fitted.story.segments] == [s.text for s in sample.story.segments[:keep]]
    assert sample.story_text.startswith(fitted.story_text)
    assert fitted.story_text.endswith("</gdi>")
    # the narrative keeps all five phases, pointing only at kept frames
    narrative = fitted.cot.narrative
    assert narrative is not None and {row.kind for row in narrative} == set(NarrativePhase)
    assert [row.description for row in narrative] == [row.description for row in sample.cot.narrative]
    assert all(1 <= n <= keep for row in narrative for n in row.images)
    verdict = fitted.telling().validate(image_sizes=fitted.frame_sizes(), strict=True)
    assert verdict.well_structured, verdict.reasons


def test_a_story_that_fits_comes_back_unchanged(processor):
    sample = lighthouse([(640, 480), (1000, 200), (50, 50)])
    budget = TokenBudget(processor)
    options = MessageOptions(filter=NO_FILTER, prompts=(PROMPT,))
    total = budget.count(sample, 0, options).total

    fit = budget.fit(sample, total, 0, options)  # exactly at the limit still fits
    assert fit.sample is sample
    assert (fit.tokens, fit.frames_before, fit.frames_after, fit.shortened) == (total, 3, 3, False)
    roomy = budget.fit(sample, 10 * total, 0, options)
    assert roomy.sample is sample and not roomy.shortened

    one_less = budget.fit(sample, total - 1, 0, options)
    assert one_less.shortened and one_less.frames_after == 2


def test_a_limit_below_one_frame_gives_no_sample(processor):
    sample = lighthouse([(640, 480)] * 3, story_id="long-one")
    budget = TokenBudget(processor)
    one_frame = frame_counts(budget, sample)[0]

    fit = budget.fit(sample, one_frame - 1, 0, ONE_PROMPT)
    assert fit == Fit(None, one_frame, 3, 0)  # the tokens say how long one frame would be
    assert not fit.shortened
    assert budget.fit(sample, one_frame, 0, ONE_PROMPT).frames_after == 1

    kept, report = fit_stories([sample], budget, one_frame - 1, ONE_PROMPT)
    assert kept == []
    assert report.too_long == ["long-one"]
    assert report.summary() == (
        "1 stories: 0 shortened (0 frames dropped), 1 too long even with one frame; longest example 0 tokens"
    )


@pytest.mark.parametrize("keep", [0, 1])
def test_a_fit_carries_its_count_and_counts_each_length_once(processor, monkeypatch, keep):
    # train plan takes the fitted example's image tokens and chat from the fit; the fit read every
    # frame's header again for each number of frames it tried, and counted one frame twice for a
    # story too long even with one
    from storyreasoning.data import Frame

    sample = lighthouse([(640, 480), (1000, 200), (50, 50)])  # 12, 8 and 4 image tokens
    budget = TokenBudget(processor)
    tokens = frame_counts(budget, sample)
    limit = tokens[keep] - 1  # `keep` frames fit, not one more
    renders: list[int] = []
    render = type(processor).apply_chat_template

    def rendered(self, conversation, *args, **kwargs):
        renders.append(len(conversation))
        return render(self, conversation, *args, **kwargs)

    headers: list[int] = []
    size = Frame.size

    def read(self):
        headers.append(id(self))
        return size(self)

    monkeypatch.setattr(type(processor), "apply_chat_template", rendered)
    monkeypatch.setattr(Frame, "size", read)
    fit = budget.fit(sample, limit, 2, ONE_PROMPT)
    assert sorted(headers) == sorted(id(f) for f in sample.frames)  # each header once
    assert len(renders) == (2 if keep == 0 else 3)  # 3 frames, then 1 (and 2): each once
    monkeypatch.undo()

    count = fit.count
    assert count is not None and (fit.frames_after, fit.tokens) == (keep, tokens[max(keep, 1) - 1])
    assert fit.image_tokens == count.image_tokens == [12, 20][max(keep, 1) - 1] == count.vision + count.frames
    counted = cut_frames(sample, max(keep, 1))
    assert count.messages == training_messages(counted, 2, ONE_PROMPT, decode=False)["messages"]
    out = run_processor(processor, counted, PROMPT)
    assert count.chat == processor.apply_chat_template(count.messages, tokenize=False)
    assert out["input_ids"][0].tolist().count(processor.image_token_id) == fit.image_tokens


def test_fit_stories_report(processor):
    budget = TokenBudget(processor, max_pixels=28 * 28 * 1024)
    fits = lighthouse([(56, 56)] * 3, "fits")  # 4 tokens a frame
    drop_one = lighthouse([(224, 224)] * 3, "drop-one", seed=3)  # 64 tokens a frame
    drop_two = lighthouse([(896, 896)] * 3, "drop-two", seed=6)  # 1024 tokens a frame
    cot, story = lighthouse_texts()
    wordy = story.replace("held high.", "held high" + ", and the wind howled" * 400 + ".", 1)
    too_long = StorySample("too-long", [image_bytes(56, 56, k) for k in range(3)], cot, wordy)

    limit = frame_counts(budget, fits)[2]
    # what each story needs, so the expectations below follow from the counts
    assert frame_counts(budget, drop_one)[1] <= limit < frame_counts(budget, drop_one)[2]
    assert frame_counts(budget, drop_two)[0] <= limit < frame_counts(budget, drop_two)[1]
    assert frame_counts(budget, too_long)[0] > limit

    advanced = []
    stories = [fits, drop_one, too_long, drop_two]
    kept, report = fit_stories(stories, budget, limit, ONE_PROMPT, progress=advanced.append)
    assert advanced == [1, 1, 1, 1]
    assert [(s.story_id, s.frame_count) for s in kept] == [("fits", 3), ("drop-one", 2), ("drop-two", 1)]
    assert report == FitReport(
        stories=4, shortened=2, too_long=["too-long"], frames_dropped=3, max_tokens=limit
    )
    assert "4 stories: 2 shortened (3 frames dropped), 1 too long even with one frame" in report.summary()
    assert all(processor_length(processor, s, PROMPT, max_pixels=28 * 28 * 1024) <= limit for s in kept)


def test_fitted_stories_fit_at_their_position_in_the_output(processor):
    # prompts are chosen by position; a story after a dropped one moves up a place and is
    # trained with that place's prompt, so it must be fitted with it
    short, long = "Tell.", "Tell me a long story that connects these images, one by one, naming everyone."
    prompts = (short, long)
    seed = next(
        s
        for s in range(100)
        if choose_prompt(0, s, prompts) == long and choose_prompt(1, s, prompts) == short
    )
    options = MessageOptions(prompts=prompts, seed=seed)
    budget = TokenBudget(processor)
    cot, story = lighthouse_texts()
    wordy = story.replace("held high.", "held high" + ", and the wind howled" * 400 + ".", 1)
    dropped = StorySample("dropped", [image_bytes(640, 480, k) for k in range(3)], cot, wordy)
    second = lighthouse([(640, 480)] * 3, "second")
    limit = budget.count(second, 1, options).total  # fits with index 1's (short) prompt only
    assert budget.count(second, 0, options).total > limit

    kept, report = fit_stories([dropped, second], budget, limit, options)
    assert report.too_long == ["dropped"] and [s.story_id for s in kept] == ["second"]
    example = TrainingExamples(kept, options)[0]  # what a trainer gets for it
    assert example["prompt"] == long
    assert processor_length(processor, kept[0], long) <= limit


def test_fitted_stories_are_prepared_once_by_the_trainer(processor):
    # fit_stories hands back stories cut to fit but not prepared, so TrainingExamples
    # converts boxes to the model's space exactly once
    options = MessageOptions(box_space="model", max_pixels=28 * 28 * 64, seed=0)
    budget = TokenBudget(processor, max_pixels=28 * 28 * 64)
    story = lighthouse([(640, 480)] * 3, "boxes")
    limit = frame_counts(budget, story, options)[1]  # two frames fit, three do not
    kept, report = fit_stories([story], budget, limit, options)
    assert report.shortened == 1 and kept[0].frame_count == 2
    assert kept[0].cot.images[0].characters[0].box == story.cot.images[0].characters[0].box  # original pixels
    trained = TrainingExamples(kept, options)[0]["messages"][-1]["content"][0]["text"]
    expected = training_messages(cut_frames(story, 2), 0, options)["messages"][-1]["content"][0]["text"]
    assert trained == expected
    assert budget.count(kept[0], 0, options).total <= limit


def test_a_story_without_frames_is_a_clear_error(processor):
    cot, story = lighthouse_texts()
    with pytest.raises(UsageError, match="story empty has no frames"):
        TokenBudget(processor).fit(StorySample("empty", [], cot, story), 10_000)
