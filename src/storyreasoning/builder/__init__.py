"""The dataset builder: raw frames in, a StoryReasoning dataset out.

For each story (a folder of frames), the builder

1. **sees** the frames: people (faces and figures) and the background of every frame,
   re-identified across frames so one person keeps one ``char`` id
   (:class:`~storyreasoning.tell.baseline.BaselineTeller`'s OpenCV perception: no model
   weights; see the README for its limits);
2. **writes** the chain-of-thought tables and the grounded story, either from templates
   (``writer="template"``: instant, offline, plain) or with any OpenAI-compatible
   language model (``writer="chat"``: vLLM, ``transformers serve``, hosted APIs), which
   gets the frames, the entity ids and their boxes, and is re-prompted with the
   validator's findings until its output passes (``max_tries``);
3. **checks** the result with the format validator against the frame sizes, restores the
   detector's boxes for the ids it gave (a language model's copy of a box is not trusted)
   and keeps only well-structured stories unless told otherwise;
4. **writes** each story as a story folder (frames byte-equal, ``cot.md``, ``story.md``,
   ``meta.json`` with its provenance), atomically, so an interrupted build resumes where
   it stopped; failures go to ``errors.jsonl``.

The output is a dataset in the folder layout: ``storyreasoning data``, ``tell-dataset``,
``evaluate``, ``train`` and the studio read it, and ``data convert`` turns it into
hub-ready parquet.
"""

from __future__ import annotations

__all__: list[str] = []
