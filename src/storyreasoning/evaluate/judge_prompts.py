"""The judge's prompts and the JSON its answers must hold, versioned.

:data:`PROMPT_VERSION` names this wording; :data:`PROMPT_SHA256` is the sha256 of the
story judge's prompt text and :data:`PAIRWISE_SHA256` that of the pairwise judge's, so a
result says exactly which words produced it (edit a prompt: raise the version). The rubric
anchors for every score from 1 to 5 are written out in the prompt, so two judges reading
it apply the same scale.
"""

from __future__ import annotations

import hashlib

PROMPT_VERSION = "judge-2026-12-1"

HALLUCINATION_TYPES = ("character", "object", "action", "setting", "identity")
CRITERIA = ("creativity", "coherence", "grounding_quality")
VERDICTS = ("1", "2", "tie")

_FORMAT = """\
The storyteller's output has two parts: a chain-of-thought analysis inside <think>...</think> \
(per image, tables of characters, objects and settings with their bounding boxes, then the \
narrative phases), and the story. In the story, <gdi imageN>...</gdi> holds what frame N tells; \
<gdo>...</gdo> marks characters and objects, <gda>...</gda> actions and <gdl>...</gdl> locations, \
each with the ids of the entities it names (char1, obj2, ...). The same id must be the same \
character in every frame."""

_RUBRIC = """\
Score each criterion with a whole number from 1 to 5, using these anchors:

creativity (is the story more than a list of what is visible?)
  1: a flat inventory of the frames, no story.
  2: events in order, but generic and predictable; no voice.
  3: a plain story with some motivation, dialogue or detail of its own.
  4: an engaging story with distinct characters, vivid detail and a clear arc.
  5: original and memorable: surprising yet fitting, with a strong voice and an arc that pays off.

coherence (does it hold together as one story?)
  1: disconnected sentences; contradicts itself.
  2: frames told separately; transitions missing, characters change without reason.
  3: followable, with some gaps or abrupt jumps between frames.
  4: logical and smooth; minor lapses only.
  5: every frame follows from the last; consistent characters, causes and time line throughout.

grounding_quality (are the words tied to what the frames show?)
  1: mostly unrelated to the frames; tags missing or pointing at the wrong things.
  2: about the frames in broad terms only; many tags wrong or missing; several hallucinations.
  3: the main characters and objects are right and tagged; some details wrong or untagged.
  4: nearly every claim is visible in its frame and tagged with the right ids; at most one slip.
  5: every character, object, action and place is in its frame and tagged with the right ids; \
identities kept across frames; nothing invented."""

JUDGE_PROMPT = f"""\
You are a careful judge of grounded visual stories. You are shown the frames of a story, \
numbered from 1, and a storyteller's output for them.

{_FORMAT}

Compare every claim of the output (chain-of-thought and story) with the frames. A hallucination \
is a claim the frames contradict or do not support. Its type is one of:
  character: a person or animal that is not in the frame, or described wrongly (appearance, clothes, age);
  object: an object that is not in the frame, or described wrongly;
  action: a character doing what the frame does not show, or the wrong character doing it;
  setting: the wrong place, time, weather or surroundings;
  identity: one character given different identities across frames, or different characters merged into one.
For each hallucination give its type, the quote (the output's own words that make the claim, \
copied exactly, without tags; a few words), the frame it is about (its number) and a one-line \
reason saying what the frame shows instead. List each hallucination once; none: an empty list.

{_RUBRIC}

Answer with one JSON object and nothing else:
{{"hallucinations": [{{"type": "object", "quote": "...", "frame": 2, "reason": "..."}}], \
"creativity": 3, "coherence": 4, "grounding_quality": 3}}"""

PAIRWISE_PROMPT = f"""\
You are a careful judge of grounded visual stories. You are shown the frames of a story, \
numbered from 1, and two storytellers' outputs for them, Output 1 and Output 2.

{_FORMAT}

Compare both outputs with the frames and with each other. Which is better overall, and which is \
better on each criterion? Judge only what is written, not its length or the order the outputs \
are shown in. Hallucinations (claims the frames contradict or do not support) count against \
grounding quality and against the output overall.

The criteria, with the anchors of their 1 to 5 scales:

{_RUBRIC}

Answer with one JSON object and nothing else, each verdict "1", "2" or "tie":
{{"winner": "1", "creativity": "2", "coherence": "tie", "grounding_quality": "1", \
"reason": "one line on the decisive difference"}}"""

RETRY_NOTE = (
    "Your answer could not be used: {error}. Answer again with the corrected JSON object only, "
    "nothing before or after it."
)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


PROMPT_SHA256 = sha256(JUDGE_PROMPT)
PAIRWISE_SHA256 = sha256(PAIRWISE_PROMPT)

_SCORE = {"type": "integer", "minimum": 1, "maximum": 5}

#: The JSON schema of a story judgement (sent as ``response_format``; checked by ``judge.check_judgement``).
JUDGEMENT_SCHEMA: dict = {
    "type": "object",
    "properties": {
        "hallucinations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "enum": list(HALLUCINATION_TYPES)},
                    "quote": {"type": "string"},
                    "frame": {"type": "integer", "minimum": 1},
                    "reason": {"type": "string"},
                },
                "required": ["type", "quote", "frame", "reason"],
                "additionalProperties": False,
            },
        },
        **{name: _SCORE for name in CRITERIA},
    },
    "required": ["hallucinations", *CRITERIA],
    "additionalProperties": False,
}

_VERDICT = {"type": "string", "enum": list(VERDICTS)}

#: The JSON schema of a pairwise verdict.
PAIRWISE_SCHEMA: dict = {
    "type": "object",
    "properties": {
        "winner": _VERDICT,
        **{name: _VERDICT for name in CRITERIA},
        "reason": {"type": "string"},
    },
    "required": ["winner", *CRITERIA, "reason"],
    "additionalProperties": False,
}


def response_format(name: str, schema: dict) -> dict:
    """The ``response_format`` field asking an OpenAI-compatible server for JSON that fits ``schema``."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


__all__ = [
    "CRITERIA",
    "HALLUCINATION_TYPES",
    "JUDGEMENT_SCHEMA",
    "JUDGE_PROMPT",
    "PAIRWISE_PROMPT",
    "PAIRWISE_SCHEMA",
    "PAIRWISE_SHA256",
    "PROMPT_SHA256",
    "PROMPT_VERSION",
    "RETRY_NOTE",
    "VERDICTS",
    "response_format",
]
