"""Storytellers: images in, grounded story out.

Backends share the :class:`Teller` interface (``tell`` returns a
:class:`~storyreasoning.format.Telling`, ``stream`` yields text chunks):

* :class:`~storyreasoning.tell.transformers.TransformersTeller`: local weights or a hub id;
* :class:`~storyreasoning.tell.openai.OpenAITeller`: any OpenAI-compatible server (vLLM,
  ``transformers serve``);
* :class:`~storyreasoning.tell.baseline.BaselineTeller`: no model weights; OpenCV
  detectors and appearance features. A baseline, labelled as such everywhere.

Backends are imported lazily: ``import storyreasoning.tell`` loads neither torch nor OpenCV.
"""

from __future__ import annotations

from .base import Prompt, Sampling, Story, Teller, TellError, Usage

__all__ = ["Prompt", "Sampling", "Story", "TellError", "Teller", "Usage"]
