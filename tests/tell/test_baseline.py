"""The baseline storyteller on real photographs: boxes, identities, format, CLI, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("cv2", reason="the baseline teller needs OpenCV: pip install 'storyreasoning[vision]'")

from PIL import Image

from storyreasoning.data.sample import Frame
from storyreasoning.errors import StoryReasoningError, UsageError
from storyreasoning.format import NarrativePhase, image_size, parse_output, render_output
from storyreasoning.format.cot import phase_images
from storyreasoning.tell import Sampling
from storyreasoning.tell.baseline import BaselineTeller, brightness, working_copy
from storyreasoning.tell.commands import make_teller
from storyreasoning.tell.settings import TellerOptions

from ..conftest import run_cli
from ..format.test_images import grey_photo, png16
from ..vision.photos import expected_face_centre, grace_hopper, gradient, make_frames, side_by_side

# the frames are the portrait at 60 % (307x360): the same face, a third of the pixels to scan
SCALE = 0.6
ROOT = Path(__file__).parents[2]
PIONEERS = ROOT / "examples" / "stories" / "pioneers"


@pytest.fixture(scope="module")
def teller():
    with BaselineTeller() as t:
        yield t


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> list[Path]:
    """frame1 the portrait, frame2 a crop, frame3 a mirrored shifted crop, frame4 a gradient (no one)."""
    return make_frames(tmp_path_factory.mktemp("grace"), SCALE)


@pytest.fixture(scope="module")
def sizes(frames) -> list[tuple[int, int]]:
    return [image_size(p) for p in frames]


@pytest.fixture(scope="module")
def seen(teller, frames):
    return list(teller.see(frames))


@pytest.fixture(scope="module")
def chunks(teller, frames) -> list[str]:
    return list(teller.stream(frames))


@pytest.fixture(scope="module")
def telling(chunks):
    return parse_output("".join(chunks))


def contains(outer, inner) -> bool:
    return outer.x1 <= inner.x1 and outer.y1 <= inner.y1 and outer.x2 >= inner.x2 and outer.y2 >= inner.y2


# -- seeing ----------------------------------------------------------------------------------


def test_faces_are_found_where_they_are_and_person_boxes_contain_them(seen, sizes):
    for frame in seen[:3]:
        assert len(frame.people) == 1, frame
        person = frame.people[0]
        assert person.source == "frontal" and person.face is not None
        cx, cy = expected_face_centre(frame.number, SCALE)
        assert abs((person.face.x1 + person.face.x2) / 2 - cx) < 20
        assert abs((person.face.y1 + person.face.y2) / 2 - cy) < 20
        assert contains(person.box, person.face)
        width, height = sizes[frame.number - 1]
        assert (frame.width, frame.height) == (width, height)
        assert 0 <= person.box.x1 < person.box.x2 <= width and 0 <= person.box.y1 < person.box.y2 <= height
    assert seen[3].people == []


def test_the_same_person_keeps_one_id(seen):
    assert [[p.char_id for p in f.people] for f in seen] == [["char1"], ["char1"], ["char1"], []]
    assert [p.first_seen for f in seen for p in f.people] == [1, 1, 1]
    assert all(p.similarity > 0.62 for f in seen[1:3] for p in f.people)


def test_two_people_in_one_frame_get_two_ids_and_the_one_who_comes_back_keeps_hers(teller, tmp_path):
    pair = tmp_path / "1.png"
    side_by_side(0.5).save(pair)
    single = tmp_path / "3.png"
    grace_hopper(0.5).save(single)
    empty = tmp_path / "2.png"
    gradient().save(empty)
    telling = teller.tell([pair, empty, single])
    assert telling.validate(image_sizes=[image_size(p) for p in (pair, empty, single)]).well_structured
    first, _, third = telling.cot.images
    assert [c.id for c in first.characters] == ["char1", "char2"]
    assert [c.name for c in first.characters] == ["Person 1", "Person 2"]
    assert [c.id for c in third.characters] in (["char1"], ["char2"])
    seg1, _, seg3 = telling.story.image_segments
    assert seg1.spans[0].kind == "gdo" and seg1.spans[0].ids == ("char1", "char2")
    assert seg1.plain.startswith("Two people are in view.")
    assert "The same person in a black top" in seg3.plain and "returns" in seg3.plain
    assert "Returning (first seen in image 1)" in third.characters[0].narrative_function


# -- the output --------------------------------------------------------------------------------


def test_output_is_well_structured_with_no_findings(telling, sizes):
    verdict = telling.validate(n_images=len(sizes), image_sizes=sizes)
    assert verdict.well_structured, [d.message for d in verdict.reasons]
    assert verdict.findings == []  # not even a warning
    assert telling.cot.phases() == set(NarrativePhase)


def test_rendering_the_parse_gives_the_output_back(telling):
    assert render_output(telling.cot, telling.story) == telling.raw


def test_boxes_lie_inside_their_images(telling, sizes):
    for image in telling.cot.images:
        width, height = sizes[image.number - 1]
        rows = [*image.characters, *image.objects]
        assert rows
        for row in rows:
            assert row.box is not None and row.box.is_proper
            assert 0 <= row.box.x1 < row.box.x2 <= width and 0 <= row.box.y1 < row.box.y2 <= height


def test_cot_rows_say_what_was_seen_and_nothing_more(telling, seen):
    person = telling.cot.images[0].characters[0]
    assert (person.id, person.name) == ("char1", "Person 1")
    assert person.description == "Person in a black top"
    assert person.emotions == "Unknown" and person.actions == "Facing the camera"
    assert person.box == seen[0].people[0].box
    for image in telling.cot.images:
        elements = [s.element for s in image.settings]
        assert elements == ["Location", "Lighting"]
        assert "not recognised" in image.settings[0].description
        assert image.settings[1].description.split(" (")[0] in ("Dark", "Dim", "Moderate", "Bright")
        (background,) = image.objects
        assert background.id.startswith("bg") and background.function == "Background"
    assert telling.cot.images[3].characters == []


def test_every_story_id_is_defined_for_its_image(telling):
    segments = telling.story.image_segments
    assert [s.image for s in segments] == [1, 2, 3, 4]
    for segment in segments:
        defined = set(telling.cot.image(segment.image).entity_ids())
        used = {eid for span in segment.spans for eid in span.ids}
        assert used and used <= defined
        kinds = {span.kind for span in segment.spans}
        assert "gdl" in kinds
        if telling.cot.image(segment.image).characters:
            assert {"gdo", "gda"} <= kinds


def test_story_follows_the_person_and_the_empty_frame_gets_a_segment(telling):
    seg1, seg2, seg3, seg4 = telling.story.image_segments
    assert seg1.plain.startswith("Person 1, in a black top, appears")
    assert seg2.plain.startswith("The same person in a black top, Person 1, is still in view")
    assert "The same person" in seg3.plain
    assert seg4.plain.startswith("No one is in view.")
    assert not any(eid.startswith("char") for span in seg4.spans for eid in span.ids)


def test_narrative_maps_five_phases_onto_four_frames(telling):
    rows = telling.cot.narrative
    assert [r.phase for r in rows] == [p.value for p in NarrativePhase]
    assert [r.images for r in rows] == [[1], [1], [2], [3], [4]]
    assert rows[-1].key_events == "image 4: no person detected"


def test_the_cot_and_the_story_say_alike_whether_a_person_is_still_in_view_or_returns(telling):
    # frame 2 follows frame 1 with the same woman: continuing, not returning (the CoT said "Returning")
    verbs = {"First seen": "appears", "Still in view": "is still in view", "Returning": "returns"}
    checked = 0
    for image, segment in zip(telling.cot.images, telling.story.image_segments, strict=True):
        for person in image.characters:
            said = [span.text for span in segment.spans if span.kind == "gda" and span.ids == (person.id,)]
            (kind,) = [k for k in verbs if person.narrative_function.startswith(k)]
            assert verbs[kind] in said, (image.number, person.narrative_function, said)
            checked += 1
    assert checked == 3
    assert telling.cot.image(2).characters[0].narrative_function == "Still in view (first seen in image 1)"


def test_phases_that_share_a_frame_repeat_no_event(telling, teller, frames):
    # four frames, five phases: the Introduction and the Development both have image 1
    rows = telling.cot.narrative
    assert rows[0].key_events == "image 1: Person 1 appears"
    assert rows[1].key_events == "no new event: the Development stays on image 1, told in the Introduction"
    one = teller.tell([frames[0]]).cot.narrative  # one frame: all five phases on it
    for narrative in (rows, one):
        events = [e for row in narrative for e in row.key_events.split("; ")]
        assert len(events) == len(set(events)) and all(events)
    assert sum("Person 1 appears" in row.key_events for row in one) == 1
    assert [row.images for row in one] == [[1]] * 5


@pytest.mark.parametrize("n", range(1, 12))
def test_phase_images_cover_every_frame_in_order(n):
    phases = phase_images(n)
    assert len(phases) == 5 and all(phases)
    flat = [k for phase in phases for k in phase]
    assert sorted(set(flat)) == list(range(1, n + 1)) and flat == sorted(flat)


def test_single_image_story_is_well_structured(teller, frames, sizes):
    telling = teller.tell([frames[0]])
    assert telling.validate(image_sizes=[sizes[0]]).well_structured
    assert all(row.images == [1] for row in telling.cot.narrative)


# -- the Teller interface ----------------------------------------------------------------------


def test_streams_in_chunks_that_add_up_to_tell(teller, frames, chunks):
    assert len(chunks) >= len(frames) + 2  # an image section at a time, then the story segments
    assert chunks[0].startswith("<think>\n## Image 1")
    assert "## Image 2" not in chunks[0]
    telling = teller.tell(frames, sampling=Sampling(temperature=0.2, seed=3))
    assert telling.raw == "".join(chunks)
    meta = telling.meta
    assert meta["backend"] == "baseline" and meta["baseline"] is True
    assert meta["label"].startswith("baseline storyteller")
    assert meta["sampling"]["temperature"] == 0.2 and meta["sampling_ignored"] is True
    assert meta["detector"]["max_side"] == teller.max_side and meta["detector"]["min_face"] > 0
    assert meta["usage"]["finish_reason"] == "stop" and meta["usage"]["completion_tokens"] is None
    assert meta["usage"]["seconds"] > 0 and meta["images"] == 4


def test_deterministic_across_tellers(frames, chunks):
    # (the same teller telling twice is compared in test_streams_in_chunks_that_add_up_to_tell)
    with BaselineTeller() as other:
        assert "".join(other.stream(frames)) == "".join(chunks)


def test_every_kind_of_image_gives_the_same_story(teller, frames):
    paths = [frames[1], frames[3]]
    raw = "".join(teller.stream(paths))
    as_bytes = [p.read_bytes() for p in paths]
    as_pil = [Image.open(p) for p in paths]
    as_frames = [Frame(data=b) for b in as_bytes]
    for images in (as_bytes, as_pil, as_frames, [str(p) for p in paths]):
        assert "".join(teller.stream(images)) == raw


def test_a_16_bit_picture_handed_as_a_pil_image_is_looked_at_as_its_picture(tmp_path):
    """The builder's model perceiver hands PIL images: a 16-bit grey one is not a white frame."""
    grey = grey_photo()
    path = tmp_path / "01.png"
    path.write_bytes(png16(grey))
    eight = Image.fromarray(grey)
    with Image.open(path) as deep:
        assert deep.mode.startswith("I")
        assert (working_copy(deep) == working_copy(eight)).all()
        assert brightness(deep) == brightness(eight) < 0.5


def test_make_teller_builds_the_baseline():
    teller = make_teller(TellerOptions(teller="baseline"))
    assert isinstance(teller, BaselineTeller) and teller.describe()["baseline"] is True


# -- errors ------------------------------------------------------------------------------------


def test_corrupt_image_is_named(teller, frames, tmp_path):
    broken = tmp_path / "frame2.jpg"
    broken.write_bytes(frames[0].read_bytes()[:3000])  # a JPEG cut short: the header reads, the pixels do not
    with pytest.raises(StoryReasoningError, match=r"frame2\.jpg is not a readable image"):
        teller.tell([frames[0], broken])
    stream = teller.stream([frames[0], broken])
    with pytest.raises(StoryReasoningError, match=r"frame2\.jpg"):
        next(stream)  # before any output: every image is decoded first
    with pytest.raises(StoryReasoningError, match=r"image 2 \(bytes\) is not a readable image"):
        teller.tell([frames[0].read_bytes(), b"not an image"])
    with pytest.raises(StoryReasoningError, match=r"image 3 \(Frame\) is not a readable image"):
        teller.tell([frames[0], frames[1], Frame(data=b"GIF89a broken")])
    with pytest.raises(StoryReasoningError, match="image 1 is of type int"):
        teller.tell([42])
    with pytest.raises(StoryReasoningError, match="at least one image"):
        teller.tell([])


def test_missing_opencv_is_one_clear_usage_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # makes `import cv2` raise ImportError
    with pytest.raises(UsageError, match=r"^the baseline storyteller needs OpenCV: pip install"):
        BaselineTeller()


# -- the command line --------------------------------------------------------------------------


cli = run_cli


def test_cli_tells_a_folder_with_the_baseline(frames):
    result = cli("tell", str(frames[0].parent), "--teller", "baseline", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["well_structured"] is True and data["reasons"] == []
    assert data["meta"]["baseline"] is True
    assert [len(image["characters"]) for image in data["cot"]["images"]] == [1, 1, 1, 0]
    assert "baseline storyteller" in result.stderr


def test_cli_corrupt_image_is_one_line_without_traceback(frames, tmp_path):
    (tmp_path / "1.jpg").write_bytes(frames[0].read_bytes())
    (tmp_path / "2.jpg").write_bytes(frames[0].read_bytes()[:3000])
    result = cli("tell", str(tmp_path), "--teller", "baseline", "--json")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "error:" in result.stderr and "2.jpg is not a readable image" in result.stderr


# -- the bundled example -----------------------------------------------------------------------


@pytest.mark.skipif(not PIONEERS.is_dir(), reason="examples/stories/pioneers is not in this checkout")
def test_pioneers_example_is_well_structured_with_a_person_in_every_frame(teller):
    from storyreasoning.data.folder import frame_files

    images = frame_files(PIONEERS)
    assert len(images) == 4
    telling = teller.tell(images)
    verdict = telling.validate(image_sizes=[image_size(p) for p in images])
    assert verdict.well_structured, [d.message for d in verdict.reasons]
    assert all(image.characters for image in telling.cot.images)
    # Eileen Collins in frames 1, 3 (left panel) and 4; Grace Hopper in 2 and 3 (right panel)
    ids = [[c.id for c in image.characters] for image in telling.cot.images]
    assert ids == [["char1"], ["char2"], ["char1", "char2"], ["char1"]]


def test_a_story_with_an_unreadable_frame_fails_alone_in_a_run(teller, tmp_path):
    """The frame's story goes to errors.jsonl and the run tells every other one (as against a server),
    instead of the whole run stopping at it."""
    from storyreasoning.data import load_stories, write_folders
    from storyreasoning.tell.run import tell_dataset

    from ..data.fixtures import fixture_samples

    write_folders(fixture_samples(3), tmp_path / "ds")
    bad = next((tmp_path / "ds" / "s02").glob("02.*"))
    bad.write_text("not a frame\n")
    summary = tell_dataset(load_stories(tmp_path / "ds"), teller, tmp_path / "run")
    assert (summary.done, summary.failed) == (2, 1)
    (error,) = [json.loads(line) for line in (tmp_path / "run" / "errors.jsonl").read_text().splitlines()]
    assert error["story_id"] == "s02" and f"{bad} is not a readable image" in error["error"]
