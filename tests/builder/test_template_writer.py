"""The template writer is an honest baseline: it says it is one, and it describes a character the same way
in every frame (the words fixed when the character is introduced), on real photographs whose colour
estimate changes from frame to frame."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip(
    "cv2", reason="the baseline's perception needs OpenCV: pip install 'storyreasoning[vision]'"
)

from storyreasoning.builder.writers import TemplateWriter
from storyreasoning.data.folder import frame_files
from storyreasoning.format.cot_parser import parse_cot
from storyreasoning.format.images import image_size
from storyreasoning.tell.baseline import BaselineTeller

PIONEERS = Path(__file__).resolve().parents[2] / "examples" / "stories" / "pioneers"
INTRODUCED = re.compile(r"<gdo (char\d+)>Person \d+</gdo>, in (.+?), <gda")
AGAIN = re.compile(r"<gdo (char\d+)>The same person in (.+?)</gdo>")


@pytest.fixture(scope="module")
def seen():
    frames = frame_files(PIONEERS)
    return frames, list(BaselineTeller().see(frames))


def test_the_photographs_do_change_colour_between_frames(seen):
    """The premise: one person's torso colour, as the baseline estimates it frame by frame, changes."""
    _, frames = seen
    colours: dict[str, set] = {}
    for frame in frames:
        for person in frame.people:
            colours.setdefault(person.char_id, set()).add(person.colour)
    assert any(len(c) > 1 for c in colours.values()), colours


def _descriptions(cot_text: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for image in parse_cot(cot_text).images:
        for character in image.characters:
            out.setdefault(character.id, set()).add(character.description)
    return out


def _check_consistent(cot_text: str, story_text: str, frames) -> None:
    introduced = dict(INTRODUCED.findall(story_text))
    again = AGAIN.findall(story_text)
    assert introduced and again, story_text
    for char_id, look in again:  # "the same person in X" is the X they were introduced in
        assert look == introduced[char_id], (char_id, look, introduced[char_id])
    for char_id, descriptions in _descriptions(cot_text).items():
        assert len(descriptions) == 1, (char_id, descriptions)
    # and those words are what the baseline saw when it first saw each character
    first = {}
    for frame in frames:
        for person in frame.people:
            first.setdefault(person.char_id, person.colour)
    for char_id, look in introduced.items():
        words = first[char_id].split(" and ")
        expected = " and ".join([words[0].replace(" ", "-"), *words[1:]])
        assert look == ("an " if expected[0] in "aeiou" else "a ") + expected + " top", (char_id, look)


def test_template_writer_keeps_a_character_as_introduced(seen):
    paths, frames = seen
    written = TemplateWriter().write(frames, paths, [image_size(p) for p in paths])
    _check_consistent(written.cot, written.story, frames)


def test_baseline_teller_keeps_a_character_as_introduced(seen):
    paths, frames = seen
    teller = BaselineTeller()
    telling = teller.tell(paths)
    _check_consistent(telling.cot_text, telling.story_text, frames)
    streamed = "".join(teller.stream(paths))
    assert streamed == telling.raw


def test_template_writer_names_itself_a_baseline(seen):
    paths, frames = seen
    written = TemplateWriter().write(frames, paths, [image_size(p) for p in paths])
    assert written.writer["writer"] == "template" and written.writer["baseline"] is True
    assert "not written by a language model" in written.writer["note"]
    # the text says it where the format has room: the narrative rows and the Location rows
    cot = parse_cot(written.cot)
    assert all("baseline" in row.description.lower() for row in cot.narrative)
