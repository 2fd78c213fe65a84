"""The tiny offline Qwen2.5-VL: it builds, loads back, processes our messages and generates."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from storyreasoning.format.box import smart_resize
from storyreasoning.format.prompts import SYSTEM_PROMPT, transformers_messages
from storyreasoning.testing import (
    TINY_CHAT_TEMPLATE,
    TINY_CHAT_TEMPLATE_GENERATION,
    TINY_DEFAULT_SYSTEM,
    TINY_MAX_PIXELS,
    TINY_MIN_PIXELS,
    TINY_SPECIAL_TOKENS,
    build_tiny_qwen25vl,
)

from ..conftest import require_transformers

require_transformers()

import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForImageTextToText,
    AutoProcessor,
    Qwen2_5_VLForConditionalGeneration,
)

PROMPT = "Generate a story based on these images."
SIZES = [(64, 48), (200, 120), (90, 300)]  # (width, height), all different


def _image(width: int, height: int, seed: int) -> Image.Image:
    image = Image.new("RGB", (width, height), (20 * seed, 120, 200 - 30 * seed))
    draw = ImageDraw.Draw(image)
    draw.rectangle((width // 4, height // 4, width // 2, height // 2), fill=(255, 255 - 40 * seed, 0))
    draw.line((0, height - 1, width - 1, 0), fill=(0, 0, 0), width=3)
    return image


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    return [_image(w, h, i) for i, (w, h) in enumerate(SIZES)]


@pytest.fixture(scope="module")
def processor(tiny_qwen):
    return AutoProcessor.from_pretrained(tiny_qwen)


@pytest.fixture(scope="module")
def model(tiny_qwen):
    return Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_qwen).eval()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_folder_has_everything_from_pretrained_needs(tiny_qwen):
    names = {p.name for p in Path(tiny_qwen).iterdir()}
    for name in (
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "processor_config.json",
        "chat_template.jinja",
    ):
        assert name in names
    assert (Path(tiny_qwen) / "chat_template.jinja").read_text() == TINY_CHAT_TEMPLATE


def test_config_is_tiny_and_consistent_with_the_tokenizer(processor, model):
    tokenizer = processor.tokenizer
    config = model.config
    text, vision = config.text_config, config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads) == (
        64,
        2,
        4,
        2,
    )
    assert text.intermediate_size == 128
    assert text.rope_parameters["mrope_section"] == [2, 3, 3]
    assert sum(text.rope_parameters["mrope_section"]) == 64 // 4 // 2
    assert (vision.depth, vision.hidden_size, vision.num_heads, vision.out_hidden_size) == (2, 32, 2, 64)
    assert (vision.patch_size, vision.spatial_merge_size, vision.window_size) == (14, 2, 112)
    assert list(vision.fullatt_block_indexes) == [1]
    assert text.vocab_size == len(tokenizer)
    assert model.get_input_embeddings().weight.shape == (len(tokenizer), 64)
    assert sum(p.numel() for p in model.parameters()) < 500_000

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in TINY_SPECIAL_TOKENS}
    assert len(set(ids.values())) == len(TINY_SPECIAL_TOKENS)
    assert config.image_token_id == ids["<|image_pad|>"] == processor.image_token_id
    assert config.video_token_id == ids["<|video_pad|>"]
    assert config.vision_start_token_id == ids["<|vision_start|>"]
    assert config.vision_end_token_id == ids["<|vision_end|>"]
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"
    assert model.generation_config.eos_token_id == [ids["<|im_end|>"], ids["<|endoftext|>"]]
    assert model.generation_config.pad_token_id == ids["<|endoftext|>"]

    image_processor = processor.image_processor
    assert (image_processor.patch_size, image_processor.merge_size, image_processor.temporal_patch_size) == (
        14,
        2,
        2,
    )
    assert (image_processor.size["shortest_edge"], image_processor.size["longest_edge"]) == (
        TINY_MIN_PIXELS,
        TINY_MAX_PIXELS,
    )
    video_processor = processor.video_processor
    assert (video_processor.size["shortest_edge"], video_processor.size["longest_edge"]) == (
        TINY_MIN_PIXELS,
        TINY_MAX_PIXELS,
    )


def test_tokenizer_speaks_our_format(processor):
    tokenizer = processor.tokenizer
    text = (
        "<think>\n## Image 1\n| Character ID | Name |\n| char1 | Ines |\n</think>\n"
        '<gdi image1>\n<gdo char1>Ines</gdo> <gda char1>climbed</gda> the path, said "ok" 2x.\n</gdi>'
    )
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert len(ids) < len(text.encode()) / 2  # the BPE learnt the markup, not just bytes
    # Any text round-trips (byte-level), and special tokens are single ids.
    odd = "Ünïcødé ✓ 日本 \t tabs\r\n and <|im_start|>"
    assert tokenizer.decode(tokenizer(odd, add_special_tokens=False)["input_ids"]) == odd
    for token in TINY_SPECIAL_TOKENS:
        assert tokenizer(token, add_special_tokens=False)["input_ids"] == [
            tokenizer.convert_tokens_to_ids(token)
        ]
    assert (
        tokenizer("hello", add_special_tokens=True)["input_ids"]
        == tokenizer("hello", add_special_tokens=False)["input_ids"]
    )


def test_generate_from_our_messages_with_three_images(processor, model, images):
    messages = transformers_messages(images, PROMPT)
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    input_ids, grid = inputs["input_ids"], inputs["image_grid_thw"]
    assert input_ids.shape[0] == 1
    assert inputs["attention_mask"].shape == input_ids.shape
    assert grid.shape == (3, 3)
    for (width, height), row in zip(SIZES, grid.tolist(), strict=True):
        rh, rw = smart_resize(height, width, min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS)
        assert row == [1, rh // 14, rw // 14]
    assert inputs["pixel_values"].shape == (int(grid.prod(-1).sum()), 3 * 2 * 14 * 14)

    image_pad = processor.image_token_id
    assert int((input_ids == image_pad).sum()) == int(grid.prod(-1).sum()) // 4
    vision_start = processor.tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert int((input_ids == vision_start).sum()) == 3
    # The pads of each image sit in one run between its <|vision_start|> and <|vision_end|>.
    prompt_text = processor.tokenizer.decode(input_ids[0])
    for row in grid.tolist():
        run = "<|vision_start|>" + "<|image_pad|>" * (row[1] * row[2] // 4) + "<|vision_end|>"
        assert run in prompt_text
    assert SYSTEM_PROMPT in prompt_text and PROMPT in prompt_text
    assert prompt_text.endswith("<|im_start|>assistant\n")

    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
        again = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert out.shape[0] == 1
    assert input_ids.shape[1] < out.shape[1] <= input_ids.shape[1] + 8
    assert torch.equal(out[:, : input_ids.shape[1]], input_ids)
    assert torch.equal(out, again)  # greedy decoding is deterministic
    new = out[:, input_ids.shape[1] :]
    assert int(new.max()) < len(processor.tokenizer)
    decoded = processor.batch_decode(new, skip_special_tokens=True)
    assert isinstance(decoded, list) and len(decoded) == 1 and isinstance(decoded[0], str)
    assert processor.batch_decode(out, skip_special_tokens=False)[0].startswith("<|im_start|>system\n")


def test_batched_generation_with_padding(processor, model, images):
    conversations = [
        transformers_messages(images[:1], "Tell me a story."),
        transformers_messages(images, PROMPT),
    ]
    side, processor.tokenizer.padding_side = processor.tokenizer.padding_side, "left"
    try:
        inputs = processor.apply_chat_template(
            conversations,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            padding=True,
        )
    finally:
        processor.tokenizer.padding_side = side
    assert inputs["input_ids"].shape[0] == 2 and inputs["image_grid_thw"].shape == (4, 3)
    assert int(inputs["attention_mask"][0].sum()) < inputs["input_ids"].shape[1]
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[0] == 2


def test_auto_model_for_image_text_to_text_loads_it(tiny_qwen, model):
    auto = AutoModelForImageTextToText.from_pretrained(tiny_qwen)
    assert type(auto) is Qwen2_5_VLForConditionalGeneration
    for (name, a), (_, b) in zip(auto.state_dict().items(), model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_chat_template_string_and_list_content_render_alike(processor):
    as_string = [{"role": "user", "content": "Hello there."}]
    as_parts = [
        {"role": "user", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there."}]}
    ]
    rendered = processor.apply_chat_template(as_string, add_generation_prompt=True, tokenize=False)
    assert rendered == processor.apply_chat_template(as_parts, add_generation_prompt=True, tokenize=False)
    assert rendered == (
        f"<|im_start|>system\n{TINY_DEFAULT_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nHello there.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    no_prompt = processor.apply_chat_template(as_string, add_generation_prompt=False, tokenize=False)
    assert no_prompt == rendered.removesuffix("<|im_start|>assistant\n")
    # The tokenizer carries the same template (text-only use).
    assert (
        processor.tokenizer.apply_chat_template(as_string, add_generation_prompt=True, tokenize=False)
        == rendered
    )
    # Qwen's add_vision_id numbering, images and videos counted separately.
    parts = [{"type": "image"}, {"type": "video"}, {"type": "image"}, {"type": "text", "text": "?"}]
    numbered = processor.apply_chat_template(
        [{"role": "user", "content": parts}], tokenize=False, add_vision_id=True
    )
    assert (
        "Picture 1: <|vision_start|><|image_pad|><|vision_end|>"
        "Video 1: <|vision_start|><|video_pad|><|vision_end|>"
        "Picture 2: <|vision_start|><|image_pad|><|vision_end|>?<|im_end|>"
    ) in numbered


def test_generation_markers_give_an_assistant_mask(tmp_path, images):
    folder = build_tiny_qwen25vl(tmp_path / "gen", generation_markers=True)
    assert (folder / "chat_template.jinja").read_text() == TINY_CHAT_TEMPLATE_GENERATION
    assert (
        "{%- generation -%}" in TINY_CHAT_TEMPLATE_GENERATION and "{%- generation" not in TINY_CHAT_TEMPLATE
    )
    processor = AutoProcessor.from_pretrained(folder)
    answer = "<think>\n## Image 1\n</think>\n<gdi image1>A story.</gdi>"
    messages = transformers_messages(images[:2], PROMPT, assistant=answer)
    plain = processor.apply_chat_template(messages, tokenize=False, chat_template=TINY_CHAT_TEMPLATE)
    assert processor.apply_chat_template(messages, tokenize=False) == plain  # markers change nothing rendered
    inputs = processor.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_tensors="pt", return_assistant_tokens_mask=True
    )
    mask = inputs["assistant_masks"][0].bool()
    ids = inputs["input_ids"][0]
    assert processor.tokenizer.decode(ids[mask]) == answer + "<|im_end|>"
    # The mask is one contiguous run at the end (only the trailing newline after it).
    positions = mask.nonzero().flatten().tolist()
    assert positions == list(range(positions[0], positions[-1] + 1))
    assert positions[-1] == len(ids) - 2


@pytest.mark.parametrize(("head_dim", "heads", "kv_heads"), [(64, 1, 1), (32, 2, 2)])
def test_other_head_dims_build_and_generate(tmp_path, processor, images, head_dim, heads, kv_heads):
    folder = build_tiny_qwen25vl(tmp_path / f"hd{head_dim}", head_dim=head_dim)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder).eval()
    text = model.config.text_config
    assert (text.num_attention_heads, text.num_key_value_heads) == (heads, kv_heads)
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2
    inputs = processor.apply_chat_template(
        transformers_messages(images[1:], PROMPT),
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]


def test_builds_are_byte_identical(tmp_path, tiny_qwen):
    first = build_tiny_qwen25vl(tmp_path / "a")
    second = build_tiny_qwen25vl(tmp_path / "b")
    assert _sha256(first / "model.safetensors") == _sha256(second / "model.safetensors")
    assert _sha256(first / "model.safetensors") == _sha256(Path(tiny_qwen) / "model.safetensors")
    for path in sorted(first.iterdir()):
        assert path.read_bytes() == (second / path.name).read_bytes(), path.name
    other_seed = build_tiny_qwen25vl(tmp_path / "c", seed=1)
    assert _sha256(other_seed / "model.safetensors") != _sha256(first / "model.safetensors")
    assert (other_seed / "tokenizer.json").read_bytes() == (first / "tokenizer.json").read_bytes()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"head_dim": 12},
        {"head_dim": 0},
        {"head_dim": 128},
        {"min_pixels": 0},
        {"min_pixels": 10, "max_pixels": 5},
    ],
)
def test_bad_arguments_are_refused(tmp_path, kwargs):
    with pytest.raises(ValueError):
        build_tiny_qwen25vl(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())


def test_importing_the_package_stays_light():
    code = (
        "import sys, storyreasoning.testing\n"
        "heavy = [m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
