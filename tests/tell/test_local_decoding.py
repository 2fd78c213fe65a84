"""How local weights decode (attention kernel, static cache, compiled decoding) never changes a greedy output.

Each option runs the real generate of the tiny Qwen2.5-VL; the outputs are compared token for token with
the default (SDPA, dynamic cache, not compiled), one story at a time (streamed) and in left-padded batches.
"""

from __future__ import annotations

import json

import pytest

from ..conftest import require_transformers
from ..data.fixtures import image_bytes, lighthouse_texts

require_transformers()

from PIL import Image  # noqa: E402

from storyreasoning.errors import UsageError  # noqa: E402
from storyreasoning.tell import Sampling, Story  # noqa: E402
from storyreasoning.tell.local import TransformersTeller  # noqa: E402

GREEDY = Sampling(temperature=0, max_new_tokens=10)


@pytest.fixture(scope="module")
def stories():
    """Three stories of different lengths, so a batch of them is left-padded."""
    frames = [Image.new("RGB", (64 + 10 * i, 48), (40 * i, 150 - 30 * i, 90)) for i in range(4)]
    return [Story("a", frames[:3]), Story("b", frames[:1]), Story("c", frames[::-1])]


@pytest.fixture(scope="module")
def reference(tiny_qwen, stories):
    """The default's greedy outputs: one by one (streamed) and batched, which agree."""
    teller = TransformersTeller(str(tiny_qwen), batch_size=2)
    single = {s.story_id: "".join(teller.stream(s.images, sampling=GREEDY)) for s in stories}
    batched = {s.story_id: t.raw for s, t in teller.tell_many(stories, sampling=GREEDY)}
    assert single == batched and all(single.values())
    return single


def outputs(teller, stories, *, stream: bool = True) -> dict:
    """The batched outputs (a padded batch of two, then one), and the first story streamed beside them."""
    batched = {s.story_id: t.raw for s, t in teller.tell_many(stories, sampling=GREEDY)}
    if stream:
        batched["a streamed"] = "".join(teller.stream(stories[0].images, sampling=GREEDY))
    return batched


@pytest.mark.parametrize(
    "options",
    [
        {"attn_implementation": "sdpa"},
        {"attn_implementation": "eager"},
        {"cache": "static"},
        {"cache": "static", "attn_implementation": "eager"},
        # dynamo traces the decoding step; the eager backend keeps the test fast (inductor: the slow test below)
        {"cache": "static", "compile": True, "compile_backend": "eager"},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_greedy_outputs_do_not_depend_on_how_it_decodes(tiny_qwen, stories, reference, options):
    teller = TransformersTeller(str(tiny_qwen), batch_size=2, **options)
    compiled = options.get("compile", False)  # a stream generates in a new thread: traced anew each time
    assert outputs(teller, stories, stream=not compiled) == {
        **reference,
        **({} if compiled else {"a streamed": reference["a"]}),
    }
    decoding = teller.describe()["decoding"]
    assert decoding["cache"] == options.get("cache", "dynamic")
    assert decoding["compile"] == options.get("compile", False)
    assert decoding["attention"] == options.get("attn_implementation", "sdpa")
    assert teller.net.config._attn_implementation == decoding["attention"]  # really loaded with it


@pytest.mark.slow  # inductor compiles C++ on the CPU: about a minute
def test_compiled_decoding_with_inductor_gives_the_same_output(tiny_qwen, stories, reference):
    teller = TransformersTeller(str(tiny_qwen), batch_size=2, cache="static", compile=True)
    assert outputs(teller, stories) == {**reference, "a streamed": reference["a"]}


def test_wrong_decoding_options_say_what_to_do(tiny_qwen):
    with pytest.raises(UsageError, match="add --cache static"):
        TransformersTeller(str(tiny_qwen), compile=True)
    with pytest.raises(UsageError, match="needs a CUDA GPU"):
        TransformersTeller(str(tiny_qwen), attn_implementation="flash_attention_2")
    with pytest.raises(UsageError, match="use dynamic or static"):
        TransformersTeller(str(tiny_qwen), cache="paged")
    with pytest.raises(UsageError, match="unknown attention implementation 'flash'"):
        TransformersTeller(str(tiny_qwen), attn_implementation="flash")


def test_a_run_resumes_with_other_decoding_options(tiny_qwen, tmp_path):
    """The options are operational: a tell-dataset run begun with one goes on with another, the same outputs."""
    from storyreasoning.data import StorySample, load_stories, write_folders
    from storyreasoning.tell.run import tell_dataset

    cot, story = lighthouse_texts()
    samples = [StorySample(f"st{i}", [image_bytes(60 + 8 * i, 40, i), image_bytes(50, 44, i + 1)], cot, story)
               for i in range(3)]  # fmt: skip
    write_folders(samples, tmp_path / "ds")
    data = load_stories(tmp_path / "ds")
    plain = TransformersTeller(str(tiny_qwen), batch_size=2)
    tell_dataset(data, plain, tmp_path / "whole", sampling=GREEDY)
    tell_dataset(data, plain, tmp_path / "run", sampling=GREEDY, limit=1)
    static = TransformersTeller(str(tiny_qwen), batch_size=2, cache="static", attn_implementation="eager")
    summary = tell_dataset(data, static, tmp_path / "run", sampling=GREEDY)
    assert (summary.skipped, summary.done) == (1, 2)

    def raw(run) -> dict:
        lines = (run / "records.jsonl").read_text().splitlines()
        return {r["story_id"]: r["raw"] for r in map(json.loads, lines)}

    assert raw(tmp_path / "run") == raw(tmp_path / "whole")


def test_the_command_line_options_reach_the_teller(tiny_qwen):
    from storyreasoning.tell.commands import make_teller
    from storyreasoning.tell.settings import TellSettings

    settings = TellSettings(images=(), model=str(tiny_qwen), cache="static", attn_implementation="eager")
    teller = make_teller(settings)
    assert teller.describe()["decoding"] == {"attention": "eager", "cache": "static", "compile": False}
    with pytest.raises(UsageError, match="add --cache static"):
        make_teller(TellSettings(images=(), model=str(tiny_qwen), compile=True))
