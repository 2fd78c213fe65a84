"""Storytellers: images in, grounded story out.

Backends share the :class:`Teller` interface (``tell`` returns a
:class:`~storyreasoning.format.Telling`, ``stream`` yields text chunks):

* :class:`~storyreasoning.tell.transformers.TransformersTeller`: local weights or a hub id;
* :class:`~storyreasoning.tell.openai.OpenAITeller`: any OpenAI-compatible server (vLLM,
  ``transformers serve``);
* :class:`~storyreasoning.tell.baseline.BaselineTeller`: no model weights; OpenCV
  detectors and appearance features. A baseline, labelled as such everywhere.

Everything is imported on first use: ``import storyreasoning.tell`` (which importing any
of its modules does first) loads neither torch nor OpenCV, nor even the format parser.
"""

from __future__ import annotations

__all__ = ["Prompt", "Sampling", "Story", "TellError", "Teller", "Usage"]


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import base

    return getattr(base, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
