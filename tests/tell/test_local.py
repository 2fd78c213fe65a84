"""The transformers storyteller on a tiny Qwen2.5-VL built offline: real weights, real generate."""

from __future__ import annotations

import pytest

from ..conftest import require_transformers

require_transformers()

from PIL import Image  # noqa: E402

from storyreasoning.errors import StoryReasoningError  # noqa: E402
from storyreasoning.models import choose_dtype  # noqa: E402
from storyreasoning.tell import Prompt, Sampling, Story, TellError  # noqa: E402
from storyreasoning.tell.local import TransformersTeller  # noqa: E402

GREEDY = Sampling(temperature=0, max_new_tokens=12)


@pytest.fixture(scope="module")
def teller(tiny_qwen):
    with TransformersTeller(str(tiny_qwen)) as t:
        yield t


@pytest.fixture(scope="module")
def frames():
    return [
        Image.new("RGB", size, color) for size, color in (((64, 48), (200, 0, 0)), ((90, 60), (0, 150, 0)))
    ]


def test_stream_and_tell_agree(teller, frames):
    chunks = list(teller.stream(frames, sampling=GREEDY))
    assert len(chunks) > 1  # really streamed
    streamed = teller.last_usage  # a stream alone (tell, the studio) records its times too
    assert 0 < streamed.first_token_seconds <= streamed.seconds
    telling = teller.tell(frames, sampling=GREEDY)
    assert telling.raw == "".join(chunks)
    usage = telling.meta["usage"]
    assert usage["completion_tokens"] == 12 and usage["finish_reason"] == "length"
    assert usage["prompt_tokens"] > 12 and usage["seconds"] > 0
    meta = telling.meta
    assert meta["backend"] == "transformers" and meta["device"] == "cpu" and meta["dtype"] == "float32"
    assert (meta["min_pixels"], meta["max_pixels"]) == (28 * 28 * 4, 28 * 28 * 16)
    assert meta["sampling"]["max_new_tokens"] == 12 and meta["images"] == 2


def test_sampling_with_a_seed_is_reproducible(teller, frames):
    sampled = Sampling(temperature=1.0, top_p=0.95, max_new_tokens=10, seed=3)
    assert teller.tell(frames, sampling=sampled).raw == teller.tell(frames, sampling=sampled).raw


def test_batched_equals_one_by_one(teller, frames):
    stories = [Story("a", frames), Story("b", frames[:1]), Story("c", frames[::-1])]
    single = {s.story_id: teller.tell(s.images, sampling=GREEDY).raw for s in stories}
    teller.batch_size = 2
    batched = dict((s.story_id, t.raw) for s, t in teller.tell_many(stories, sampling=GREEDY))
    assert batched == single


def test_prompt_options_change_the_input(teller, frames):
    base = teller.tell(frames, sampling=GREEDY).meta["usage"]["prompt_tokens"]
    without_system = teller.tell(frames, prompt=Prompt(system=None), sampling=GREEDY).meta["usage"][
        "prompt_tokens"
    ]
    assert without_system != base


def test_pixel_budget_is_applied_and_recorded(tiny_qwen):
    small = TransformersTeller(str(tiny_qwen), min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 4)
    big = Image.new("RGB", (640, 480), (10, 20, 30))
    telling = small.tell([big], sampling=GREEDY)
    assert telling.meta["max_pixels"] == 28 * 28 * 4
    default = TransformersTeller(str(tiny_qwen)).tell([big], sampling=GREEDY)
    from storyreasoning.format import smart_resize

    def tokens(max_pixels: int) -> int:
        h, w = smart_resize(480, 640, min_pixels=28 * 28 * 4, max_pixels=max_pixels)
        return (h // 28) * (w // 28)

    difference = default.meta["usage"]["prompt_tokens"] - telling.meta["usage"]["prompt_tokens"]
    assert difference == tokens(28 * 28 * 16) - tokens(28 * 28 * 4) > 0


def test_stopping_a_stream_early_frees_the_model(teller, frames):
    stream = teller.stream(frames, sampling=Sampling(temperature=0, max_new_tokens=200))
    next(stream)
    stream.close()  # generation is stopped and joined; the next call can use the model
    assert teller.tell(frames, sampling=GREEDY).raw


def test_clear_errors(tmp_path):
    with pytest.raises(StoryReasoningError, match="cannot load the model") as info:
        TransformersTeller(str(tmp_path / "no-model-here"))
    assert "--teller baseline" in str(info.value)
    with pytest.raises(StoryReasoningError, match="unknown dtype"):
        choose_dtype("float13", "cpu")
    with pytest.raises(StoryReasoningError, match="temperature"):
        Sampling(temperature=-1)


@pytest.mark.slow  # heavy end-to-end run: CI runs it in its slow pass
def test_cli_tell_with_local_weights_writes_the_output_and_its_meta(tiny_qwen, tmp_path):
    import json
    import os
    import subprocess
    import sys

    frames = []
    for i, colour in enumerate(((200, 0, 0), (0, 150, 0))):
        frames.append(tmp_path / f"{i + 1}.png")
        Image.new("RGB", (64, 48), colour).save(frames[-1])
    out = tmp_path / "told.txt"
    args = ["--model", str(tiny_qwen), "--temperature", "0", "--max-new-tokens", "6", "--out", str(out)]
    result = subprocess.run(
        [sys.executable, "-m", "storyreasoning.cli", "tell", *map(str, frames), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", "NO_COLOR": "1"},
        timeout=180,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    parse = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert parse["well_structured"] is False  # six random tokens are no story
    meta = parse["meta"]
    assert meta["backend"] == "transformers" and meta["model"] == str(tiny_qwen)
    assert meta["usage"]["completion_tokens"] == 6 and meta["images"] == 2
    assert 0 < meta["usage"]["first_token_seconds"] <= meta["usage"]["seconds"]
    assert "adapter_of" not in meta
    assert out.read_text(encoding="utf-8") and out.with_suffix(".html").is_file()


def test_check_device_takes_what_torch_can_use(monkeypatch):
    import torch

    from storyreasoning.errors import UsageError
    from storyreasoning.models import check_device

    assert [check_device(d) for d in ("auto", "cpu", "CPU", " auto ")] == ["auto", "cpu", "cpu", "auto"]
    for wrong in ("foo", "gpu", "cuda:", "cuda:x", "cpu:0", ""):
        with pytest.raises(UsageError, match=r"is not a device: use auto, cpu, cuda, cuda:N or mps$"):
            check_device(wrong)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(
        UsageError, match=r"^--device cuda:1: no CUDA GPU is visible to torch; use --device cpu or auto$"
    ):
        check_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert [check_device(d) for d in ("cuda", "cuda:0", "CUDA:1")] == ["cuda", "cuda:0", "cuda:1"]
    with pytest.raises(
        UsageError, match=r"torch sees 2 CUDA GPUs \(cuda:0 to cuda:1\); use one of them, or auto"
    ):
        check_device("cuda:2")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(UsageError, match="no Apple GPU"):
        check_device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert check_device("mps") == "mps"


def test_a_wrong_device_is_refused_before_the_weights_load(tiny_qwen, monkeypatch):
    import storyreasoning.tell.local as local
    from storyreasoning.errors import UsageError

    def loaded(*args, **kwargs):
        raise AssertionError("the weights loaded before --device was checked")

    monkeypatch.setattr(local, "load_pretrained", loaded)
    with pytest.raises(UsageError, match="--device foo is not a device"):
        TransformersTeller(str(tiny_qwen), device="foo")


def test_images_the_processor_refuses_are_one_tell_error(teller):
    """A frame of 300:1 (the processor takes at most 200:1): a TellError saying so, not a bare ValueError."""
    with pytest.raises(
        TellError, match=r"the model's processor could not take these images \(ValueError: .*aspect"
    ):
        list(teller.stream([Image.new("RGB", (3000, 10))], sampling=GREEDY))


def test_a_hub_model_is_described_with_the_commit_it_was_loaded_from(tiny_qwen, tmp_path, monkeypatch):
    """The run's manifest names the exact version told with: the commit the cache holds, what was loaded."""
    import shutil

    import huggingface_hub.constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--tiny-qwen"
    shutil.copytree(tiny_qwen, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    teller = TransformersTeller("someone/tiny-qwen", device="cpu", dtype="float32")
    assert teller.describe()["commit"] == commit
    assert TransformersTeller(str(tiny_qwen), device="cpu", dtype="float32").describe()["commit"] is None
