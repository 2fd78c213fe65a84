"""Test helpers shared by the test suites (tiny offline models and the like).

Importing this package is cheap: torch, transformers and tokenizers are imported only
inside the functions that need them.
"""

from __future__ import annotations

from .tiny_models import (
    TINY_CHAT_TEMPLATE,
    TINY_CHAT_TEMPLATE_GENERATION,
    TINY_DEFAULT_SYSTEM,
    TINY_MAX_PIXELS,
    TINY_MIN_PIXELS,
    TINY_SEGMENTER_LABELS,
    TINY_SPECIAL_TOKENS,
    build_tiny_detector,
    build_tiny_embedder,
    build_tiny_qwen25vl,
    build_tiny_segmenter,
    tiny_chat_template,
)

__all__ = [
    "TINY_CHAT_TEMPLATE",
    "TINY_CHAT_TEMPLATE_GENERATION",
    "TINY_DEFAULT_SYSTEM",
    "TINY_MAX_PIXELS",
    "TINY_MIN_PIXELS",
    "TINY_SEGMENTER_LABELS",
    "TINY_SPECIAL_TOKENS",
    "build_tiny_detector",
    "build_tiny_embedder",
    "build_tiny_qwen25vl",
    "build_tiny_segmenter",
    "tiny_chat_template",
]
