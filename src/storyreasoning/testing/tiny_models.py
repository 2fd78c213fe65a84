"""A tiny random Qwen2.5-VL, built offline, for tests.

:func:`build_tiny_qwen25vl` writes a complete model folder -- weights, config,
generation config, tokenizer, image and video processors and chat template -- that
loads back with the ordinary transformers entry points::

    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration
    processor = AutoProcessor.from_pretrained(path)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path)

Nothing is downloaded: the tokenizer is a byte-level BPE trained here on a small built-in
corpus (English plus the markup of the StoryReasoning format, so a tiny model can emit
``<think>``, ``<gdi image1>``, table rows ...), the weights are random under a fixed
seed, and the chat template is our own Qwen2-VL style template. The folder is
byte-identical from one build to the next (same arguments, same library versions).

The model is small enough (~0.1M parameters) that building it takes well under a second
of compute once transformers is imported, and generation on a CPU is instant. Its
outputs are random text, of course; it exists to exercise the real code paths
(processor, chat template, vision tower, generation, training, serving).

torch, transformers and tokenizers are imported inside the functions, so importing
this module is cheap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The image budget of the tiny processor: 4 to 16 merged 28x28 tokens per image, so
# every image costs at most 16 ``<|image_pad|>`` tokens and 64 vision patches.
TINY_MIN_PIXELS = 28 * 28 * 4
TINY_MAX_PIXELS = 28 * 28 * 16

# Special tokens in Qwen2.5-VL's order (their ids follow the BPE vocabulary, in this order).
TINY_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen2-VL's default system prompt, used when a conversation has no system turn.
TINY_DEFAULT_SYSTEM = "You are a helpful assistant."

# Size of the trained byte-level BPE vocabulary (256 byte symbols + merges), before the
# special tokens are appended.
_BPE_VOCAB_SIZE = 512


def tiny_chat_template(*, generation_markers: bool = False) -> str:
    """Our Qwen2-VL style chat template.

    * a default system turn (``TINY_DEFAULT_SYSTEM``) when the first message is not a system one;
    * ``content`` may be a string or a list of parts: ``{"type": "image", ...}`` (also
      ``image_url`` parts and parts with an ``image``/``image_url`` key) becomes
      ``<|vision_start|><|image_pad|><|vision_end|>``, a video part the same with
      ``<|video_pad|>``, a text part its text; ``add_vision_id=True`` prefixes
      ``Picture N: `` / ``Video N: `` as Qwen's template does;
    * ``add_generation_prompt`` opens an assistant turn.

    With ``generation_markers=True`` each assistant turn's content and its closing
    ``<|im_end|>`` are wrapped in ``{% generation %}...{% endgeneration %}``, which is what
    ``return_assistant_tokens_mask=True`` (assistant-only loss) needs. Rendering is
    otherwise identical.

    All literal output is inside ``{{ }}`` and every tag trims whitespace, so the
    rendering does not depend on the Jinja environment's ``trim_blocks`` settings.
    """
    if generation_markers:
        assistant = "{%- generation -%}{{- body + '<|im_end|>' -}}{%- endgeneration -%}{{- '\\n' -}}"
    else:
        assistant = "{{- body + '<|im_end|>\\n' -}}"
    return (
        "{%- set image_count = namespace(value=0) -%}\n"
        "{%- set video_count = namespace(value=0) -%}\n"
        "{%- for message in messages -%}\n"
        "  {%- if loop.first and message['role'] != 'system' -%}\n"
        f"    {{{{- '<|im_start|>system\\n{TINY_DEFAULT_SYSTEM}<|im_end|>\\n' -}}}}\n"
        "  {%- endif -%}\n"
        "  {%- if message['content'] is string -%}\n"
        "    {%- set body = message['content'] -%}\n"
        "  {%- elif message['content'] is none -%}\n"
        "    {%- set body = '' -%}\n"
        "  {%- else -%}\n"
        "    {%- set body -%}\n"
        "      {%- for part in message['content'] -%}\n"
        "        {%- if part['type'] == 'image' or part['type'] == 'image_url' or 'image' in part or 'image_url' in part -%}\n"
        "          {%- set image_count.value = image_count.value + 1 -%}\n"
        "          {%- if add_vision_id -%}{{- 'Picture ' ~ image_count.value ~ ': ' -}}{%- endif -%}\n"
        "          {{- '<|vision_start|><|image_pad|><|vision_end|>' -}}\n"
        "        {%- elif part['type'] == 'video' or 'video' in part -%}\n"
        "          {%- set video_count.value = video_count.value + 1 -%}\n"
        "          {%- if add_vision_id -%}{{- 'Video ' ~ video_count.value ~ ': ' -}}{%- endif -%}\n"
        "          {{- '<|vision_start|><|video_pad|><|vision_end|>' -}}\n"
        "        {%- elif 'text' in part -%}\n"
        "          {{- part['text'] -}}\n"
        "        {%- endif -%}\n"
        "      {%- endfor -%}\n"
        "    {%- endset -%}\n"
        "  {%- endif -%}\n"
        "  {{- '<|im_start|>' + message['role'] + '\\n' -}}\n"
        "  {%- if message['role'] == 'assistant' -%}\n"
        f"    {assistant}\n"
        "  {%- else -%}\n"
        "    {{- body + '<|im_end|>\\n' -}}\n"
        "  {%- endif -%}\n"
        "{%- endfor -%}\n"
        "{%- if add_generation_prompt -%}\n"
        "  {{- '<|im_start|>assistant\\n' -}}\n"
        "{%- endif -%}\n"
    )


TINY_CHAT_TEMPLATE = tiny_chat_template()
TINY_CHAT_TEMPLATE_GENERATION = tiny_chat_template(generation_markers=True)


# -- the tokenizer's training corpus --------------------------------------------------------------

_STORY_SENTENCES = (
    "The old keeper climbed the stairs of the lighthouse with a lantern in his hand.",
    "A young woman in a yellow raincoat walked along the cliff path toward the sea.",
    "The children ran across the park, laughing as the dog chased the red ball.",
    "She opened the door and saw her brother waiting in the kitchen with a letter.",
    "The boat turned for home when the beam swept across the dark water.",
    "He looked at the map, then at the mountain, and decided to keep walking.",
    "Later that night the family sat around the table and shared the bread.",
    "The man in the blue jacket handed the girl a small wooden box.",
    "They stood together on the bridge and watched the sun go down over the city.",
    "In the morning the market was busy, and the baker smiled at every customer.",
    "The cat jumped onto the window and watched the birds in the garden.",
    "Tell me a story that connects these images.",
    "Generate a story based on these images.",
    "Create a story based on these images.",
    "You are an AI storyteller that can analyze sequences of images and create creative narratives.",
    "First think step-by-step to analyze characters, objects, settings, and narrative structure.",
    "Then create a grounded story that maintains consistent character identity and object references across frames.",
    "Use <think></think> tags to show your reasoning process before writing the final story.",
    "You are a helpful assistant.",
)

_FORMAT_SAMPLE = """<think>
## Image 1

### Characters
| Character ID | Name | Description | Emotions | Actions | Narrative Function | Bounding Box |
|--------------|------|-------------|----------|---------|-------------------|--------------|
| char1 | Ines | Young woman in a yellow raincoat | Determined | Climbing the path | Protagonist | 102,88,214,402 |
| char2 | Tomas | Old keeper with a grey beard | Surprised | Opening the door | Mentor | 300,60,450,415 |

### Objects
| Object ID | Description | Function | Interaction | Narrative Function | Bounding Box |
|-----------|-------------|----------|------------|-------------------|--------------|
| obj1 | Brass storm lantern | Light source | Held by Ines | Symbol of hope | 188,190,226,246 |
| lm1 | White lighthouse on the headland | Landmark | Ines walks toward it | Goal | 430,20,560,330 |

### Setting
| Setting Element | Description | Mood | Time | Narrative Function |
|-----------------|-------------|------|------|-------------------|
| Location | Rocky cliff path above the sea | Tense | Dusk | Establishes isolation |
| Weather | Rising wind and rain | Ominous | Night | Foreshadows the storm |

## Image 2

## Image 3

## Narrative Structure

| Narrative Phase | Description | Key Events | Images |
|-----------------|-------------|-----------|--------|
| Introduction | Ines climbs toward the lighthouse | Leaving the village | 1 |
| Conclusion | The beam sweeps the sea again | The boat turns for home | 3 |
</think>
<gdi image1>
<gdo char1>Ines</gdo> <gda char1>climbed</gda> <gdl lm1>toward the lighthouse</gdl> with <gdo obj1>her lantern</gdo>.
</gdi>

<gdi image2>
At the tower <gdo char1>she</gdo> <gda char1>knocked</gda> until <gdo char2>Tomas</gdo> <gda char2>opened</gda> the door.
</gdi>

<gdi image3>
<gdo char1 char2>They</gdo> <gda char1 char2>climbed</gda> to the lamp room, and <gdo obj3>the great lamp</gdo> woke.
</gdi>
"""


def _corpus() -> list[str]:
    lines = list(_STORY_SENTENCES) + _FORMAT_SAMPLE.splitlines(keepends=True)
    # Numbered variants so the ids and image numbers of the format all occur.
    for i in range(1, 10):
        lines.append(
            f"## Image {i}\n<gdi image{i}>\n<gdo char{i}>he</gdo> <gda char{i}>ran</gda> <gdl bg{i}>here</gdl>\n</gdi>\n"
        )
        lines.append(
            f"| char{i} | obj{i} | lm{i} | bg{i} | {i * 37},{i * 11},{i * 53 + 100},{i * 29 + 200} |\n"
        )
    return lines


# -- building ---------------------------------------------------------------------------------------------


def _mrope_section(head_dim: int) -> list[int]:
    """Temporal/height/width split of the rotary half-dimension, as Qwen2.5-VL's [16, 24, 24] for 128."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def _train_tokenizer():
    """A byte-level BPE trained on the built-in corpus, wrapped as a ``Qwen2Tokenizer``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AddedToken, Qwen2Tokenizer

    try:  # the exact pre-tokenization of the Qwen2 tokenizer, so that every learnt merge can apply
        from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX
    except ImportError:  # pragma: no cover - older/newer layouts
        PRETOKENIZE_REGEX = None

    bpe = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=PRETOKENIZE_REGEX is None)
    if PRETOKENIZE_REGEX is not None:
        bpe.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False), byte_level]
        )
    else:  # pragma: no cover
        bpe.pre_tokenizer = byte_level
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_BPE_VOCAB_SIZE,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(), trainer=trainer)

    model_state = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = dict(model_state["vocab"])
    # tokenizers >= 0.20 stores merges as [a, b] pairs; older versions as "a b" strings.
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model_state["merges"]]
    for token in TINY_SPECIAL_TOKENS:
        vocab[token] = len(vocab)

    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        model_max_length=32768,
        extra_special_tokens=[t for t in TINY_SPECIAL_TOKENS if t not in ("<|endoftext|>", "<|im_end|>")],
    )
    # Make sure every special token is an unsplittable special added token with its vocab id.
    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in TINY_SPECIAL_TOKENS], special_tokens=True
    )
    for token in TINY_SPECIAL_TOKENS:
        if tokenizer.convert_tokens_to_ids(token) != vocab[token]:  # pragma: no cover - a transformers change
            raise RuntimeError(
                f"special token {token} got id {tokenizer.convert_tokens_to_ids(token)}, expected {vocab[token]}"
            )
    return tokenizer


def build_tiny_qwen25vl(
    out_dir: str | Path,
    *,
    head_dim: int = 16,
    seed: int = 0,
    min_pixels: int = TINY_MIN_PIXELS,
    max_pixels: int = TINY_MAX_PIXELS,
    generation_markers: bool = False,
) -> Path:
    """Build a tiny random Qwen2.5-VL into ``out_dir`` and return its path.

    The text model has hidden size 64, 2 layers, ``64 // head_dim`` attention heads (2 KV
    heads when that divides them, else 1) and an MLP of 128; the vision tower has depth
    2, hidden size 32, 2 heads and patch 14 / merge 2 like the real one. Weights are
    drawn under ``torch.manual_seed(seed)``. Images are resized with the processor's
    ``smart_resize`` to between ``min_pixels`` and ``max_pixels`` (defaults: 4 to 16
    image tokens per image).

    ``generation_markers=True`` saves :data:`TINY_CHAT_TEMPLATE_GENERATION` (assistant
    turns wrapped in ``{% generation %}``) instead of :data:`TINY_CHAT_TEMPLATE`.

    Writes ``config.json``, ``generation_config.json``, ``model.safetensors``, the tokenizer
    files, ``processor_config.json`` (image and video processor) and ``chat_template.jinja``.
    """
    hidden = 64
    if head_dim <= 0 or head_dim % 8 or hidden % head_dim:
        raise ValueError(f"head_dim must be a multiple of 8 dividing {hidden}, got {head_dim}")
    if not 0 < min_pixels <= max_pixels:
        raise ValueError(f"need 0 < min_pixels <= max_pixels, got {min_pixels} and {max_pixels}")

    import torch
    from transformers import (
        GenerationConfig,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = _train_tokenizer()
    chat_template = tiny_chat_template(generation_markers=generation_markers)
    tokenizer.chat_template = chat_template
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in TINY_SPECIAL_TOKENS}

    budget: dict[str, Any] = {"min_pixels": min_pixels, "max_pixels": max_pixels}
    image_processor = Qwen2VLImageProcessor(**budget, patch_size=14, merge_size=2, temporal_patch_size=2)
    video_processor = Qwen2VLVideoProcessor(**budget, patch_size=14, merge_size=2, temporal_patch_size=2)
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=chat_template,
    )

    num_heads = hidden // head_dim
    num_kv_heads = 2 if num_heads % 2 == 0 else 1
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": num_heads,
            "num_key_value_heads": num_kv_heads,
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1e6,
                "mrope_section": _mrope_section(head_dim),
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "num_heads": 2,
            "intermediate_size": 64,
            "out_hidden_size": hidden,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )

    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny_detector(
    out_dir: str | Path, *, labels: tuple[str, ...] = ("person", "cup"), seed: int = 0
) -> Path:
    """A tiny random DETR (ResNet backbone from transformers, no timm, no download) saved with its processor.

    Loads with ``AutoModelForObjectDetection`` and ``AutoImageProcessor``; its detections
    are random but well-formed, which is what the builder's plumbing needs.
    """
    import torch
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor, ResNetConfig

    out = Path(out_dir)
    backbone = ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 16, 32], depths=[1, 1, 1, 1], out_features=["stage4"]
    )
    config = DetrConfig(
        use_timm_backbone=False,
        backbone_config=backbone,
        use_pretrained_backbone=False,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_queries=8,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(seed)
    DetrForObjectDetection(config).save_pretrained(out)
    DetrImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}).save_pretrained(out)
    return out


def build_tiny_embedder(out_dir: str | Path, *, seed: int = 0) -> Path:
    """A tiny random ViT (``AutoModel`` with a pooler) and its processor: crop features for re-identification tests."""
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    out = Path(out_dir)
    config = ViTConfig(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=32,
        patch_size=8,
    )
    torch.manual_seed(seed)
    ViTModel(config).save_pretrained(out)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(out)
    return out


TINY_SEGMENTER_LABELS = ("person", "cup", "sky-other-merged", "wall-other-merged", "floor-wood")


def build_tiny_segmenter(
    out_dir: str | Path,
    *,
    labels: tuple[str, ...] = TINY_SEGMENTER_LABELS,
    things: tuple[str, ...] = ("person", "cup"),
    kind: str = "mask2former",
    seed: int = 0,
) -> Path:
    """A tiny random panoptic segmenter (Swin backbone, ~0.1M parameters) saved with its processor.

    ``kind="mask2former"``: a Mask2Former with its image processor (``AutoImageProcessor``);
    ``kind="oneformer"``: a OneFormer with its processor (``AutoProcessor``: image processor,
    a CLIP tokenizer with no vocabulary of its own, every word unknown, and the class list
    ``classes.json`` in the folder, which marks ``things`` as things, as OneFormer's
    checkpoints do). Both load with ``AutoModelForUniversalSegmentation``.

    Freshly initialised, their mask logits are all near 0 and their class scores near
    uniform, so panoptic post-processing keeps no segment; here the class head and the last
    layer of the mask embedder are scaled up (the weights stay random under ``seed``), so
    the segments are arbitrary but decisive and post-processing keeps some, which is what
    the builder's plumbing needs. The labels are COCO-panoptic style names (suffixes included).
    """
    import torch
    from transformers import SwinConfig

    if kind not in ("mask2former", "oneformer"):
        raise ValueError(f"kind must be mask2former or oneformer, not {kind!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    backbone = SwinConfig(
        embed_dim=8,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_size=4,
        image_size=64,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    common = {
        "backbone_config": backbone,
        "use_pretrained_backbone": False,
        "hidden_dim": 32,  # the pixel decoder's GroupNorm needs multiples of 32
        "encoder_feedforward_dim": 32,
        "encoder_layers": 1,
        "decoder_layers": 2,
        "num_attention_heads": 2,
        "dim_feedforward": 32,
        "num_queries": 8,
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
    }
    torch.manual_seed(seed)
    if kind == "mask2former":
        from transformers import (
            Mask2FormerConfig,
            Mask2FormerForUniversalSegmentation,
            Mask2FormerImageProcessor,
        )

        model = Mask2FormerForUniversalSegmentation(
            Mask2FormerConfig(feature_size=32, mask_feature_size=32, **common)
        )
        head = model.class_predictor
        embedder = model.model.transformer_module.decoder.mask_predictor.mask_embedder
        processor: Any = Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})
    else:
        from transformers import (
            CLIPTokenizer,
            OneFormerConfig,
            OneFormerForUniversalSegmentation,
            OneFormerImageProcessor,
            OneFormerProcessor,
        )

        classes = {str(i): {"name": name, "isthing": int(name in things)} for i, name in enumerate(labels)}
        (out / "classes.json").write_text(json.dumps(classes, indent=1) + "\n", encoding="utf-8")
        config = OneFormerConfig(
            conv_dim=32,
            mask_dim=32,
            query_dec_layers=1,
            task_seq_len=8,
            text_encoder_width=32,
            text_encoder_context_length=8,
            text_encoder_num_layers=1,
            text_encoder_vocab_size=8,
            text_encoder_proj_layers=1,
            text_encoder_n_ctx=2,
            **common,
        )
        model = OneFormerForUniversalSegmentation(config)
        head = model.model.transformer_module.decoder.class_embed
        embedder = model.model.transformer_module.decoder.mask_embed
        image_processor = OneFormerImageProcessor(
            size={"shortest_edge": 64, "longest_edge": 96},
            repo_path=str(out),
            class_info_file="classes.json",
            num_text=2,
            num_labels=len(labels),
        )
        processor = OneFormerProcessor(
            image_processor=image_processor, tokenizer=CLIPTokenizer(), max_seq_length=8, task_seq_length=8
        )
    with torch.no_grad():
        head.weight.mul_(30.0)
        head.bias.zero_()
        head.bias[-1] = -20.0  # the "no object" class
        if kind == "oneformer":  # its queries start alike and agree on one class: make it a stuff class
            for i, name in enumerate(labels):
                if name not in things:
                    head.bias[i] = 3.0
        for parameter in embedder.layers[-1].parameters():
            parameter.mul_(300.0)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
