"""Evaluation of grounded stories: grounding, identity, consistency and language metrics.

Every metric module works on a list of :class:`~storyreasoning.evaluate.pairs.StoryPair`
(one reference story and the storyteller's output for it, or ``None`` when the output
is missing) and returns :class:`~storyreasoning.evaluate.pairs.Scores`: overall numbers,
per-story numbers, and the conventions used, so a report can say how each number was
computed.

* :mod:`.grounding`: precision, recall, F1 (all, characters, objects) and mAP over the
  CoT boxes, matched within each image (``protocol="default"``) or exactly as the
  original driver did (``protocol="original"``, in :mod:`.original`);
* :mod:`.identity`: predicted ids assigned to reference ids over the whole story
  (IDF1-style precision/recall/F1) and cross-frame link precision/recall;
* :mod:`.consistency`: persistence of characters and objects over frames, pronoun
  grounding, well-structured rate and hallucination counts (QwenStoryteller2's numbers);
* :mod:`.language`: BLEU-1..4, METEOR, ROUGE-L and CIDEr (pycocoevalcap's scorers; its
  Java tokenizer and METEOR 1.5 when Java is present, our tokenizer and an exact-match
  METEOR when it is not), each result stamped with a signature; BLEU, ROUGE-L and CIDEr
  are computed by :mod:`.coco_scorers`, with pycocoevalcap's numbers.

:mod:`.scoring` runs the per-story part of every family at once on raw texts, in
worker processes for a large run (:mod:`.processes`), and the families' summaries;
``storyreasoning evaluate`` starts Java first, so METEOR loads while the stories are
read, parsed and counted, and draws its plots in a process of its own (:mod:`.plots`).

Importing this package loads no heavy dependency.
"""

from .pairs import Scores, StoryPair

__all__ = ["Scores", "StoryPair"]
