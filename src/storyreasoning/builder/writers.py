"""Who writes the chain-of-thought and the story from what the builder saw.

* :class:`TemplateWriter`: the baseline's templates (offline, deterministic, plain);
* :class:`ChatWriter`: an OpenAI-compatible language model. It writes the CoT from the
  frames and the detected entities (ids and boxes), then the story from the frames and
  the CoT; each output is checked and, when it fails, sent back with the findings for
  another attempt, up to ``max_tries`` (the original re-prompted the CoT but re-sampled
  the story blind, and kept the last invalid text when every attempt failed; here a
  story that never passes is reported as failed, unless ``keep_invalid``: then the last
  answers are kept as the model wrote them, the writer's findings on them in
  :attr:`Written.problems`, and the build's validator marks the story as it marks any
  other kept story).

Both return a :class:`Written`: the CoT and story texts and how they were obtained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import StoryReasoningError
from ..format.cot import NarrativePhase, SettingElement, render_cot
from ..format.story import render_story

#: What the CoT writer is told (our own wording of the task the original gave its analyst model).
COT_SYSTEM = """You prepare the scene analysis for a grounded visual story told over a sequence of frames.

For every frame you receive the image and the entities a detector found in it. Each entity has an id \
that stays the same across frames: the same id is the same person or thing in every frame where it \
appears. Ids start with char (people), obj (objects), bg (background regions) or lm (landmarks). \
Boxes are pixel corners x1,y1,x2,y2 in that frame.

Write the analysis in Markdown with exactly this layout, one section per frame, in order:

## Image 1

### Characters
| Character ID | Name | Description | Emotions | Actions | Narrative Function | Bounding Box |
|--------------|------|-------------|----------|---------|-------------------|--------------|
| char1 | (an invented first name) | (what they look like) | (emotion) | (what they do) | (role) | x1,y1,x2,y2 |

### Objects
| Object ID | Description | Function | Interaction | Narrative Function | Bounding Box |
|-----------|-------------|----------|------------|-------------------|--------------|
| bg1 | (the background region) | (function) | (interaction) | (role) | x1,y1,x2,y2 |

### Setting
| Setting Element | Description | Mood | Time | Narrative Function |
|-----------------|-------------|------|------|-------------------|
| Location | (where) | (mood) | (time of day) | (role) |

(then ## Image 2 and so on, and at the end:)

## Narrative Structure

| Narrative Phase | Description | Key Events | Images |
|-----------------|-------------|-----------|--------|
| Introduction | (what happens) | (events) | 1 |

Rules:
- One "## Image N" section for every frame, numbered from 1, none left out.
- Use the given ids and copy their boxes exactly. Leave out an entity that is clearly a false \
detection. You may add an object you are sure of with a new obj id and its box.
- Give every person an invented first name and use it for the same id in every frame.
- Setting Element is one of: {elements}.
- The Narrative Structure has one row for each phase, in this order: {phases}; the Images column \
lists the frame numbers of the phase.
- Write nothing before "## Image 1" and nothing after the Narrative Structure table."""

STORY_SYSTEM = """You are a storyteller. You write a short, vivid story over a sequence of frames, \
grounded in the scene analysis you are given: a story with a plot, not a description of pictures.

Mark up the story with these tags:
- <gdi imageN>...</gdi> wraps everything told about frame N; one block per frame, in order.
- <gdo ID>words</gdo> for words naming a character or object (a name, a noun phrase or a pronoun); \
several ids for a group: <gdo char1 char2>They</gdo>.
- <gda ID>verb</gda> for an action of a character: <gda char1>runs</gda>.
- <gdl ID>words</gdl> for a place, background or landmark (bg and lm ids).

Use only ids from the analysis, and in each frame's block only ids present in that frame's table. \
Tag every pronoun that refers to a character or object. Write only the story: nothing before the first \
<gdi image1> and nothing after the last </gdi>."""


@dataclass
class Written:
    """The texts written for one story and how they were obtained."""

    cot: str
    story: str
    attempts: dict[str, int] = field(default_factory=dict)  # "cot" / "story" -> attempts used
    repairs: list[str] = field(default_factory=list)
    writer: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # the writer's findings on texts kept although failing


class TemplateWriter:
    """The baseline's templates: a CoT with the detector's boxes and a short templated story.

    A BASELINE, and it says so: in its record (``baseline: true``, in build.json and every
    story's meta.json), in the dataset card, and in its texts where the format has room
    (the Narrative Structure rows, the Location rows). A character is described with the
    words of the frame that introduced it in every frame (:func:`~storyreasoning.tell.baseline.introduced_looks`).
    """

    name = "template"

    def describe(self) -> dict:
        return {
            "writer": "template",
            "baseline": True,
            "note": "an offline templated BASELINE (the baseline teller's templates filled with what perception "
            "saw; deterministic): its texts are not written by a language model",
        }

    def write(
        self, frames: Sequence[Any], images: Sequence[Any], sizes: Sequence[tuple[int, int]]
    ) -> Written:
        from ..format.cot import CoT, SceneObject
        from ..format.story import GroundedStory, Span
        from ..tell.baseline import BaselineTeller, introduced_looks

        analyses, segments = [], []
        looks = introduced_looks(frames)  # each character described as when it was introduced
        for frame in frames:
            analysis, segment = BaselineTeller.analysis(frame, looks), BaselineTeller.segment(frame, looks)
            objects = getattr(frame, "objects", [])
            for k, obj in enumerate(objects):
                returning = obj.first_seen != frame.number
                analysis.objects.insert(
                    k,  # before the setting's rows (backgrounds, landmarks)
                    SceneObject(
                        obj.entity_id,
                        obj.label.capitalize(),
                        "Object in the scene",
                        "Unknown",
                        f"Seen again (first in image {obj.first_seen})" if returning else "Introduced here",
                        obj.box,
                    ),
                )
            if objects:
                parts: list = [" Also in view: "]
                for k, obj in enumerate(objects):
                    if k:
                        parts.append(", " if k < len(objects) - 1 else " and ")
                    article = "the same" if obj.first_seen != frame.number else _article(obj.label)
                    parts.append(Span("gdo", (obj.entity_id,), f"{article} {obj.label}"))
                parts.append(".")
                segment.parts.extend(parts)
            analyses.append(analysis)
            segments.append(segment)
        cot = CoT(analyses, BaselineTeller.narrative(frames))
        story = GroundedStory(segments)
        return Written(render_cot(cot), render_story(story), {"cot": 1, "story": 1}, [], self.describe())


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def entity_lines(frame: Any) -> list[str]:
    """What the CoT writer is told a frame holds: one ``- id (kind): box`` line per entity."""
    lines = []
    for person in frame.people:
        b = person.box
        look = f", wearing {person.colour}" if person.colour else ""
        lines.append(f"- {person.char_id} (person{look}): {b.x1},{b.y1},{b.x2},{b.y2}")
    for obj in getattr(frame, "objects", []):
        b = obj.box
        lines.append(f"- {obj.entity_id} ({obj.label}): {b.x1},{b.y1},{b.x2},{b.y2}")
    for kind, entities in (
        ("background", getattr(frame, "backgrounds", [])),
        ("landmark", getattr(frame, "landmarks", [])),
    ):
        for entity in entities:
            b = entity.box
            lines.append(f"- {entity.entity_id} ({kind}: {entity.label}): {b.x1},{b.y1},{b.x2},{b.y2}")
    b = frame.background
    if not getattr(frame, "backgrounds", None) and b.x2 > b.x1 and b.y2 > b.y1:
        lines.append(f"- {frame.background_id} (background region): {b.x1},{b.y1},{b.x2},{b.y2}")
    return lines


def detected_boxes(frames: Sequence[Any]) -> dict[tuple[int, str], Any]:
    """``(image number, id) -> Box`` for every entity the detector gave an id."""
    out = {}
    for frame in frames:
        for person in frame.people:
            out[(frame.number, person.char_id)] = person.box
        for obj in (
            *getattr(frame, "objects", []),
            *getattr(frame, "backgrounds", []),
            *getattr(frame, "landmarks", []),
        ):
            out[(frame.number, obj.entity_id)] = obj.box
        b = frame.background
        if not getattr(frame, "backgrounds", None) and b.x2 > b.x1 and b.y2 > b.y1:
            out[(frame.number, frame.background_id)] = b
    return out


def restore_boxes(cot, boxes: dict[tuple[int, Any], Any]) -> list[str]:
    """Put the detector's box back on every row whose id it gave in that frame; return what changed."""
    changed = []
    for image in cot.images:
        for row in (*image.characters, *image.objects):
            box = boxes.get((image.number, row.id))
            if box is not None and row.box != box:
                changed.append(f"image {image.number} {row.id}: box {row.box} -> {box}")
                row.box = box
    return changed


def unseen_ids(cot, boxes: dict[tuple[int, Any], Any]) -> list[str]:
    """The rows of ``cot`` naming a ``char``, ``bg`` or ``lm`` id that perception did not give in that frame.

    Ids are perception's identities: a model's own char id, or one copied into a frame where that
    person was not seen, would carry a box nothing grounded and an identity nothing re-identified.
    Only a new object may be added (a new ``obj`` id, as the model is told)."""
    from ..format.cot import id_kind

    return [
        f"Image {image.number}: {row.id} was not detected in this frame; use only the ids given for "
        f"frame {image.number} (a new object you are sure of takes a new obj id)"
        for image in cot.images
        for row in (*image.characters, *image.objects)
        if id_kind(row.id) in ("char", "bg", "lm") and (image.number, row.id) not in boxes
    ]


def strip_reasoning(text: str, marker: str) -> str:
    """The answer part of a reply: after ``</think>`` when the part there holds ``marker``."""
    if "</think>" not in text:
        return text.strip()
    before, after = text.rsplit("</think>", 1)
    if marker in after or marker not in before:
        return after.strip()
    return before.split("<think>", 1)[-1].strip()


def cot_problems(text: str, sizes: Sequence[tuple[int, int]]) -> tuple[Any, list[str]]:
    """The parsed CoT and what is wrong with it for a story of ``len(sizes)`` frames.

    The format validator judges the CoT on its own (parse errors, Setting rows, boxes
    inside their frames, the five phases); on top come what a writer must also get right:
    the sections numbered 1 to N (said so a model can act on it), ids of the right kind
    for their table, each id once per image, and a box on every row.
    """
    from ..format.cot import id_kind
    from ..format.cot_parser import parse_cot
    from ..format.validate import validate

    cot = parse_cot(text)
    verdict = validate(cot=cot, image_sizes=list(sizes), require_story=False)
    said_below = {"image-count", "image-number-gap"}
    # a duplicate id is a warning for a published output, a mistake for a writer: one person, two rows
    problems = [
        f"line {d.line}: {d.message}" if d.line else d.message
        for d in (*verdict.reasons, *(f for f in verdict.findings if f.code == "duplicate-id"))
        if d.code not in said_below
    ]
    numbers = [image.number for image in cot.images]
    if numbers != list(range(1, len(sizes) + 1)):
        problems.append(
            f"the analysis has image sections {numbers or 'none'}; it needs exactly 1 to {len(sizes)}, in order"
        )
    for image in cot.images:
        for table, rows, kinds in (
            ("Characters", image.characters, ("char",)),
            ("Objects", image.objects, ("obj", "bg", "lm")),
        ):
            for row in rows:
                if id_kind(row.id) not in kinds:
                    problems.append(
                        f"Image {image.number}: {row.id!r} is not a valid id for the {table} table"
                    )
                if row.box is None:
                    problems.append(f"Image {image.number}: {row.id} has no valid bounding box")
    return cot, problems


def story_problems(cot_text: str, story_text: str, sizes: Sequence[tuple[int, int]]) -> tuple[Any, list[str]]:
    """The parsed telling and what is wrong with the story: the validator's reasons, and its
    ``id-not-in-image`` findings (a warning for a published output, a mistake for a writer)."""
    from ..format.stream import parse_output

    telling = parse_output(f"<think>\n{cot_text}\n</think>\n{story_text}")
    verdict = telling.validate(n_images=len(sizes), image_sizes=list(sizes))
    problems = [d.message for d in verdict.reasons]
    problems += [d.message for d in verdict.findings if d.code == "id-not-in-image"]
    return telling, list(dict.fromkeys(problems))


class ChatWriter:
    """A language model behind an OpenAI-compatible endpoint writes the CoT, then the story.

    Safe to call from several threads at once (the build writes ``--concurrency`` stories
    together): a story's conversation lives in its own call, and the client is one
    :class:`~storyreasoning.tell.openai.OpenAITeller`, whose HTTP client is shared safely
    and whose per-request state (deadline, sockets, usage) is per thread.
    """

    name = "chat"

    def __init__(self, client: Any, *, sampling: Any, max_tries: int = 4, keep_invalid: bool = False) -> None:
        if max_tries < 1:
            raise StoryReasoningError(f"max tries must be at least 1, got {max_tries}")
        self.client = client  # an OpenAITeller: complete(messages, sampling=…) -> str
        self.sampling = sampling
        self.max_tries = max_tries
        # --keep-invalid: the last answers of a text that never passes are kept (not in describe(): it
        # decides which stories are kept, not what one says)
        self.keep_invalid = keep_invalid

    def describe(self) -> dict:
        # an OpenAI-compatible server names its model but not its revision
        model = getattr(self.client, "model", None)
        return {
            "writer": "chat",
            "endpoint": self.client.describe(),
            "sampling": self.sampling.to_dict(),
            "max_tries": self.max_tries,
            "models": {"language_model": {"id": model, "revision": None}},
        }

    def cancel(self) -> None:
        """End the requests in flight (their stories fail) and refuse new ones: a stopped build calls it.
        The writer cannot be used afterwards."""
        close = getattr(self.client, "close", None)
        if callable(close):
            close()

    @staticmethod
    def _image_part(image: Any) -> dict:
        from ..format.prompts import image_data_url

        return {"type": "image_url", "image_url": {"url": image_data_url(image)}}

    def cot_messages(self, frames: Sequence[Any], images: Sequence[Any]) -> list[dict]:
        system = COT_SYSTEM.format(
            elements=", ".join(e.value for e in SettingElement),
            phases=", ".join(p.value for p in NarrativePhase),
        )
        messages: list[dict] = [{"role": "system", "content": system}]
        n = len(frames)
        for frame, image in zip(frames, images, strict=True):
            lines = entity_lines(frame) or ["- (no entity detected)"]
            text = (
                f"Frame {frame.number} of {n} ({frame.width}x{frame.height} pixels). Detected entities:\n"
                + "\n".join(lines)
            )
            messages.append(
                {"role": "user", "content": [self._image_part(image), {"type": "text", "text": text}]}
            )
        messages.append(
            {
                "role": "user",
                "content": f"Now write the analysis of all {n} frames, from ## Image 1 to the Narrative Structure.",
            }
        )
        return messages

    def story_messages(self, cot_text: str, images: Sequence[Any]) -> list[dict]:
        content: list[dict] = [{"type": "text", "text": f"The scene analysis:\n\n{cot_text}"}]
        for number, image in enumerate(images, start=1):
            content += [self._image_part(image), {"type": "text", "text": f"Frame {number}"}]
        content.append(
            {
                "type": "text",
                "text": f"Write the grounded story now: {len(images)} <gdi> blocks, image1 to image{len(images)}.",
            }
        )
        return [{"role": "system", "content": STORY_SYSTEM}, {"role": "user", "content": content}]

    def _converse(
        self, messages: list[dict], check, marker: str, what: str
    ) -> tuple[str, Any, int, list[str]]:
        """``(answer, parsed, attempts, problems)``: the first answer that passes ``check`` (no problems), or
        with ``keep_invalid`` the last one and what is still wrong with it; else the text fails."""
        problems: list[str] = []
        answer, parsed = "", None  # max_tries >= 1: always set below
        for attempt in range(1, self.max_tries + 1):
            reply = self.client.complete(messages, sampling=self.sampling)
            answer = strip_reasoning(reply, marker)
            parsed, problems = check(answer)
            if not problems:
                return answer, parsed, attempt, []
            feedback = (
                f"That {what} has problems:\n"
                + "\n".join(f"- {p}" for p in problems[:20])
                + f"\nWrite the whole {what} again with these fixed."
            )
            messages = [
                *messages,
                {"role": "assistant", "content": reply},
                {"role": "user", "content": feedback},
            ]
        if self.keep_invalid:
            return answer, parsed, self.max_tries, [f"{what}: {p}" for p in problems]
        raise StoryReasoningError(
            f"the {what} still fails after {self.max_tries} attempts ({problems[0] if problems else 'no reason'}"
            + (f" and {len(problems) - 1} more" if len(problems) > 1 else "")
            + "); raise --max-tries, use a stronger model, or pass --keep-invalid to keep its last answer"
        )

    def write(
        self, frames: Sequence[Any], images: Sequence[Any], sizes: Sequence[tuple[int, int]]
    ) -> Written:
        boxes = detected_boxes(frames)

        def check_cot(text: str):
            cot, problems = cot_problems(text, sizes)
            return cot, problems + unseen_ids(cot, boxes)

        answer, cot, cot_attempts, cot_left = self._converse(
            self.cot_messages(frames, images), check_cot, "## Image", "analysis"
        )
        if cot_left:  # kept although failing (keep_invalid): as the model wrote it, nothing restored
            repairs, cot_text = [], answer
        else:
            repairs = restore_boxes(cot, boxes)
            cot_text = render_cot(cot)

        def check_story(text: str):
            return story_problems(cot_text, text, sizes)

        story_text, _, story_attempts, story_left = self._converse(
            self.story_messages(cot_text, images), check_story, "<gdi", "story"
        )
        return Written(
            cot_text,
            story_text,
            {"cot": cot_attempts, "story": story_attempts},
            repairs,
            self.describe(),
            cot_left + story_left,
        )


__all__ = [
    "COT_SYSTEM",
    "STORY_SYSTEM",
    "ChatWriter",
    "TemplateWriter",
    "Written",
    "cot_problems",
    "detected_boxes",
    "entity_lines",
    "restore_boxes",
    "story_problems",
    "strip_reasoning",
    "unseen_ids",
]
