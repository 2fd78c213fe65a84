"""The published configuration of Qwen2.5-VL-7B-Instruct, written offline.

Model hubs cannot be reached from the machines the tests run on, and the 7B weights
would not fit them anyway; what memory planning (``storyreasoning train plan``) and the
GPU benchmark (``bench/gpu_train.py``) need is the architecture, which the model's
``config.json`` fixes. :data:`QWEN25VL_7B_CONFIG` is that file as published with the
model (``Qwen/Qwen2.5-VL-7B-Instruct``): language model of hidden size 3584, 28 layers,
28 attention heads and 4 key-value heads, MLP of 18944, vocabulary of 152064, rope θ 1e6
with the multimodal sections [16, 24, 24]; vision tower of depth 32, hidden size 1280,
16 heads, MLP of 3420, patches of 14 merged 2 × 2 into tokens of 3584, windows of 112
pixels with full attention in blocks 7, 15, 23 and 31. transformers reads it as the hub
copy (the flat text fields and ``rope_scaling`` are its format, which
``Qwen2_5_VLConfig`` converts), so a model built from it has the real model's shapes and
parameter count (8.29 billion) and costs what the real one costs to train.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

#: ``config.json`` of Qwen/Qwen2.5-VL-7B-Instruct, as published.
QWEN25VL_7B_CONFIG: dict[str, Any] = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "vision_token_id": 151654,
    "image_token_id": 151655,
    "video_token_id": 151656,
    "hidden_act": "silu",
    "hidden_size": 3584,
    "initializer_range": 0.02,
    "intermediate_size": 18944,
    "max_position_embeddings": 128000,
    "max_window_layers": 28,
    "model_type": "qwen2_5_vl",
    "num_attention_heads": 28,
    "num_hidden_layers": 28,
    "num_key_value_heads": 4,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.41.2",
    "use_cache": True,
    "use_sliding_window": False,
    "vision_config": {
        "depth": 32,
        "hidden_act": "silu",
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "in_chans": 3,
        "out_hidden_size": 3584,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "spatial_patch_size": 14,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2,
        "temporal_patch_size": 2,
    },
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "vocab_size": 152064,
}

#: Its parameter count (language model 7.62 B with embeddings and LM head, vision tower 0.68 B).
QWEN25VL_7B_PARAMETERS = 8_292_166_656


def write_qwen25vl_7b_config(out_dir: str | Path) -> Path:
    """Write :data:`QWEN25VL_7B_CONFIG` as ``OUT_DIR/config.json`` and return the folder.

    The folder holds the configuration only (no weights, no processor): ``train plan
    --model OUT_DIR --max-length N`` plans from it, and ``from_config`` builds the model.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(QWEN25VL_7B_CONFIG, indent=2) + "\n", encoding="utf-8")
    return out


def qwen25vl_7b_config():
    """The configuration as transformers reads it (a ``Qwen2_5_VLConfig``); imports transformers."""
    from transformers import Qwen2_5_VLConfig

    data = copy.deepcopy(QWEN25VL_7B_CONFIG)
    data.pop("model_type")
    return Qwen2_5_VLConfig(**data)


__all__ = ["QWEN25VL_7B_CONFIG", "QWEN25VL_7B_PARAMETERS", "qwen25vl_7b_config", "write_qwen25vl_7b_config"]
