"""A language model for the chat writer's tests that reads its prompt, served by FakeServer (``respond=answer``).

It writes the analysis from the entities the writer lists for each frame and the story
from the analysis it is given, so its answers are right the first time and depend only
on what was asked, never on the order requests arrive in.
"""

from __future__ import annotations

import re

from storyreasoning.builder.writers import COT_SYSTEM
from storyreasoning.format.cot_parser import parse_cot

NAMES = ["Ana", "Ben", "Cleo", "Dario", "Eva", "Farid"]
ENTITY = re.compile(r"^- (\w+) \(([^)]*)\): (\d+),(\d+),(\d+),(\d+)$", re.M)
PHASES = ("Introduction", "Development", "Conflict", "Turning Point", "Conclusion")


def _cot_answer(messages: list[dict]) -> str:
    frames = [m for m in messages if m["role"] == "user" and isinstance(m["content"], list)]
    sections = []
    for number, message in enumerate(frames, start=1):
        text = next(part["text"] for part in message["content"] if part["type"] == "text")
        people, things = [], []
        for entity, kind, *box in ENTITY.findall(text):
            corners = ",".join(box)
            if entity.startswith("char"):
                name = NAMES[(int(entity[4:]) - 1) % len(NAMES)]
                look = kind.partition("wearing ")[2] or "plain clothes"
                people.append(
                    f"| {entity} | {name} | A traveller in {look} | calm | walks | lead | {corners} |"
                )
            else:
                things.append(f"| {entity} | {kind} | scenery | none | place | {corners} |")
        sections.append(
            f"## Image {number}\n\n### Characters\n"
            "| Character ID | Name | Description | Emotions | Actions | Narrative Function | Bounding Box |\n"
            "|---|---|---|---|---|---|---|\n" + "".join(row + "\n" for row in people) + "\n### Objects\n"
            "| Object ID | Description | Function | Interaction | Narrative Function | Bounding Box |\n"
            "|---|---|---|---|---|---|\n" + "".join(row + "\n" for row in things) + "\n### Setting\n"
            "| Setting Element | Description | Mood | Time | Narrative Function |\n|---|---|---|---|---|\n"
            f"| Location | A place seen in frame {number} | quiet | day | backdrop |\n\n"
        )
    n = len(frames)
    rows = "".join(
        f"| {phase} | part {k + 1} | events | {min(k + 1, n)} |\n" for k, phase in enumerate(PHASES)
    )
    return (
        "".join(sections)
        + "## Narrative Structure\n\n| Narrative Phase | Description | Key Events | Images |\n"
        + "|---|---|---|---|\n"
        + rows
    )


def _story_answer(messages: list[dict]) -> str:
    cot_text = messages[1]["content"][0]["text"].split("\n\n", 1)[1]
    blocks = []
    for image in parse_cot(cot_text).images:
        if image.characters:
            who = image.characters[0]
            line = f"<gdo {who.id}>{who.name}</gdo> <gda {who.id}>walks</gda> on, frame {image.number}."
        else:
            place = image.objects[0].id if image.objects else None
            line = f"<gdl {place}>The place</gdl> stays quiet." if place else "Nothing moves."
        blocks.append(f"<gdi image{image.number}>\n{line}\n</gdi>")
    return "\n".join(blocks)


def answer(body: dict) -> str:
    """What the model says to a request of the chat writer: the analysis, or the story of an analysis."""
    messages = body["messages"]
    if messages[0]["content"].startswith(COT_SYSTEM.split("{", 1)[0]):
        return _cot_answer(messages)
    return _story_answer(messages)
