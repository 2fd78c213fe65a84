"""Our chat messages, rendered by a real Qwen2.5-VL processor (the tiny offline one).

``transformers_messages`` must give the layout the model was trained on (system prompt
verbatim, images before or after the text, the answer turn last) and ``openai_messages``
what an OpenAI-compatible server accepts: ``image_url`` parts with data URLs of the
exact file bytes.
"""

from __future__ import annotations

import base64
import io
import json
import random

import pytest
from PIL import Image

from storyreasoning.format.box import smart_resize
from storyreasoning.format.prompts import (
    DEFAULT_PROMPT,
    SYSTEM_PROMPT,
    assistant_target,
    openai_messages,
    transformers_messages,
)

from ..conftest import require_transformers

VISION = "<|vision_start|><|image_pad|><|vision_end|>"
SIZES = [(64, 48), (200, 120), (90, 300)]  # (width, height)


def _noise(width: int, height: int, seed: int) -> Image.Image:
    return Image.frombytes("RGB", (width, height), random.Random(seed).randbytes(width * height * 3))


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    return [_noise(w, h, i) for i, (w, h) in enumerate(SIZES)]


@pytest.fixture(scope="module")
def processor(tiny_qwen):
    require_transformers()
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_qwen)


def _turns(rendered: str) -> list[tuple[str, str]]:
    """``[(role, body), ...]`` of a ChatML rendering (fails on anything between turns)."""
    turns = []
    rest = rendered
    while rest:
        assert rest.startswith("<|im_start|>"), rest[:80]
        head, sep, rest = rest[len("<|im_start|>") :].partition("<|im_end|>\n")
        if not sep:  # an open generation prompt
            role, _, body = head.partition("\n")
            turns.append((role, body))
            assert body == "", "only an empty assistant prompt may stay open"
            break
        role, _, body = head.partition("\n")
        turns.append((role, body))
    return turns


# -- transformers_messages through the chat template ----------------------------------------------


def test_system_prompt_is_rendered_verbatim(processor, images):
    rendered = processor.apply_chat_template(
        transformers_messages(images), add_generation_prompt=True, tokenize=False
    )
    turns = _turns(rendered)
    assert [role for role, _ in turns] == ["system", "user", "assistant"]
    assert turns[0][1] == SYSTEM_PROMPT
    assert rendered.startswith(f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n")
    assert turns[2] == ("assistant", "")


def test_images_first_puts_every_vision_block_before_the_prompt(processor, images):
    rendered = processor.apply_chat_template(
        transformers_messages(images, DEFAULT_PROMPT, order="images-first"),
        add_generation_prompt=True,
        tokenize=False,
    )
    user = dict(_turns(rendered))["user"]
    assert user == VISION * 3 + DEFAULT_PROMPT
    assert user.rindex(VISION) + len(VISION) <= user.index(DEFAULT_PROMPT)


def test_text_first_puts_the_prompt_before_the_vision_blocks(processor, images):
    rendered = processor.apply_chat_template(
        transformers_messages(images, DEFAULT_PROMPT, order="text-first"),
        add_generation_prompt=True,
        tokenize=False,
    )
    user = dict(_turns(rendered))["user"]
    assert user == DEFAULT_PROMPT + VISION * 3
    assert user.index(DEFAULT_PROMPT) + len(DEFAULT_PROMPT) <= user.index(VISION)


@pytest.mark.parametrize("order", ["images-first", "text-first"])
def test_no_prompt_means_no_text(processor, images, order):
    messages = transformers_messages(images, None, order=order)
    assert [part["type"] for part in messages[-1]["content"]] == ["image"] * 3
    rendered = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert dict(_turns(rendered))["user"] == VISION * 3
    # The training adapter's empty prompt renders the same (an empty text part).
    empty = processor.apply_chat_template(
        transformers_messages(images, "", order=order), add_generation_prompt=True, tokenize=False
    )
    assert empty == rendered


def test_no_system_prompt_falls_back_to_the_template_default(processor, images):
    rendered = processor.apply_chat_template(
        transformers_messages(images, system_prompt=None), add_generation_prompt=True, tokenize=False
    )
    system = dict(_turns(rendered))["system"]
    assert system != SYSTEM_PROMPT and SYSTEM_PROMPT not in rendered


@pytest.mark.parametrize("order", ["images-first", "text-first"])
def test_assistant_turn_renders_after_the_user_turn(processor, images, order):
    target = assistant_target(
        "## Image 1\n| Character ID | Name |", "<gdi image1>\n<gdo char1>Ines</gdo> ran.\n</gdi>"
    )
    messages = transformers_messages(images, DEFAULT_PROMPT, order=order, assistant=target)
    rendered = processor.apply_chat_template(messages, tokenize=False)
    turns = _turns(rendered)
    assert [role for role, _ in turns] == ["system", "user", "assistant"]
    assert turns[2] == ("assistant", target)
    assert rendered.endswith(f"<|im_start|>assistant\n{target}<|im_end|>\n")
    assert rendered.index("<|im_start|>assistant") > rendered.rindex(VISION)
    # Without the answer, the same prefix and an open assistant turn.
    prompt_only = processor.apply_chat_template(
        transformers_messages(images, DEFAULT_PROMPT, order=order), add_generation_prompt=True, tokenize=False
    )
    assert rendered.startswith(prompt_only)


@pytest.mark.parametrize("order", ["images-first", "text-first"])
def test_tokenized_messages_carry_one_pad_run_per_image(processor, images, order):
    inputs = processor.apply_chat_template(
        transformers_messages(images, DEFAULT_PROMPT, order=order),
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
    )
    grid = inputs["image_grid_thw"].tolist()
    sizes = [processor.image_processor.size["shortest_edge"], processor.image_processor.size["longest_edge"]]
    for (width, height), row in zip(SIZES, grid, strict=True):
        rh, rw = smart_resize(height, width, min_pixels=sizes[0], max_pixels=sizes[1])
        assert row == [1, rh // 14, rw // 14]
    text = processor.tokenizer.decode(inputs["input_ids"][0])
    runs = ["<|vision_start|>" + "<|image_pad|>" * (t * h * w // 4) + "<|vision_end|>" for t, h, w in grid]
    user = dict(_turns(text))["user"]
    assert user == (
        "".join(runs) + DEFAULT_PROMPT if order == "images-first" else DEFAULT_PROMPT + "".join(runs)
    )


# -- openai_messages -------------------------------------------------------------------------------


def _data_url_bytes(url: str, mime: str) -> bytes:
    prefix = f"data:{mime};base64,"
    assert url.startswith(prefix), url[:40]
    return base64.b64decode(url[len(prefix) :], validate=True)


@pytest.fixture
def image_files(tmp_path, images):
    png = tmp_path / "one.png"
    jpeg = tmp_path / "two.jpg"
    images[0].save(png, format="PNG")
    images[1].save(jpeg, format="JPEG", quality=80)
    return png, jpeg


def test_openai_messages_send_files_byte_for_byte(image_files):
    png, jpeg = image_files
    messages = openai_messages([png, str(jpeg)], DEFAULT_PROMPT)
    json.loads(json.dumps(messages))  # plain JSON, as a server receives it
    assert messages[0] == {"role": "system", "content": SYSTEM_PROMPT}
    user = messages[1]
    assert user["role"] == "user"
    parts = user["content"]
    assert [p["type"] for p in parts] == ["image_url", "image_url", "text"]
    assert parts[2] == {"type": "text", "text": DEFAULT_PROMPT}
    assert set(parts[0]) == {"type", "image_url"} and set(parts[0]["image_url"]) == {"url"}
    assert _data_url_bytes(parts[0]["image_url"]["url"], "image/png") == png.read_bytes()
    assert _data_url_bytes(parts[1]["image_url"]["url"], "image/jpeg") == jpeg.read_bytes()
    # Bytes are sent as they are too.
    (from_bytes,) = openai_messages([jpeg.read_bytes()], None, system_prompt=None)[0]["content"]
    assert _data_url_bytes(from_bytes["image_url"]["url"], "image/jpeg") == jpeg.read_bytes()


def test_openai_messages_order_and_optional_parts(image_files):
    png, jpeg = image_files
    text_first = openai_messages([png, jpeg], "Tell me.", order="text-first", system_prompt=None)
    assert len(text_first) == 1
    assert [p["type"] for p in text_first[0]["content"]] == ["text", "image_url", "image_url"]
    no_text = openai_messages([png], None)
    assert [p["type"] for p in no_text[1]["content"]] == ["image_url"]


def test_openai_messages_encode_pil_images_as_png(images):
    image = images[2]
    (part, _text) = openai_messages([image])[1]["content"]
    data = _data_url_bytes(part["image_url"]["url"], "image/png")
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.format == "PNG"
        assert decoded.size == image.size and decoded.mode == "RGB"
        assert decoded.tobytes() == image.tobytes()


def test_openai_messages_reencode_on_request(image_files):
    png, _ = image_files
    (part,) = openai_messages([png], None, system_prompt=None, image_format="JPEG")[0]["content"]
    data = _data_url_bytes(part["image_url"]["url"], "image/jpeg")
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.format == "JPEG" and decoded.size == SIZES[0]


# transformers decodes data URLs through torchvision.io, which warns about its own future.
@pytest.mark.filterwarnings(
    "ignore:The image decoding and encoding capabilities of TorchVision:DeprecationWarning"
)
@pytest.mark.parametrize("order", ["images-first", "text-first"])
def test_openai_and_transformers_messages_render_the_same_prompt(processor, image_files, order):
    """The processor reads OpenAI ``image_url`` parts (as ``transformers serve`` does) into the same prompt."""
    png, jpeg = image_files
    with Image.open(png) as a, Image.open(jpeg) as b:
        pil = [a.convert("RGB"), b.convert("RGB")]
    via_openai = processor.apply_chat_template(
        openai_messages([png, jpeg], DEFAULT_PROMPT, order=order),
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
    )
    via_transformers = processor.apply_chat_template(
        transformers_messages(pil, DEFAULT_PROMPT, order=order),
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
    )
    assert via_openai["input_ids"].tolist() == via_transformers["input_ids"].tolist()
    assert via_openai["image_grid_thw"].tolist() == via_transformers["image_grid_thw"].tolist()
    assert via_openai["pixel_values"].shape == via_transformers["pixel_values"].shape
    # The server decodes the very pixels we sent: PNG exactly, JPEG as PIL decodes it.
    assert (via_openai["pixel_values"] - via_transformers["pixel_values"]).abs().max() < 1e-5
