"""Landmarks from a vision language model behind an OpenAI-compatible server.

The answers are read by the real parser; the server is the OpenAI-compatible server of
tests/tell/servers.py on loopback, answering each request by the frame it shows (the
frames of a story are asked about at once, so requests arrive in any order), reached
through the storytellers' own client, in the library and through the real CLI.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from storyreasoning.builder.landmarks import (
    SYSTEM,
    Landmark,
    LandmarkFinder,
    LandmarkPerceiver,
    first_object,
    grid_box,
    is_generic,
    landmark_ids,
    landmark_key,
    parse_landmarks,
)
from storyreasoning.errors import UsageError
from storyreasoning.format.box import Box
from storyreasoning.tell.base import TellError

from ..conftest import run_cli
from ..tell.servers import FakeServer, closed_url

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "stories"
SIZE = (640, 480)


def needs_opencv() -> None:
    pytest.importorskip(
        "cv2", reason="the baseline perceiver needs OpenCV: pip install 'storyreasoning[vision]'"
    )


def answer(*landmarks: tuple[str, list]) -> str:
    return json.dumps({"landmarks": [{"name": name, "box": box} for name, box in landmarks]})


def by_frame(frames: list[Path], answers: list[str], delays: list[float] | None = None):
    """A server's ``respond``: the answer of the frame a request shows (its data URL), after that frame's delay."""
    import time

    from storyreasoning.format.images import image_data_url

    urls = {image_data_url(frame): k for k, frame in enumerate(frames)}

    def respond(body: dict) -> str:
        k = urls[body["messages"][1]["content"][0]["image_url"]["url"]]
        if delays:
            time.sleep(delays[k])
        return answers[k]

    return respond


# -- reading answers ---------------------------------------------------------------------------------------


def test_a_good_answer_becomes_boxes_in_the_frames_pixels():
    found, notes = parse_landmarks(answer(("Eiffel Tower", [250, 100, 500, 900])), SIZE)
    assert found == [Landmark("Eiffel Tower", Box(160, 48, 320, 432))] and notes == []
    assert parse_landmarks('{"landmarks": []}', SIZE) == ([], [])  # unsure: nothing, and nothing wrong


def test_answers_are_read_robustly():
    text = (
        "<think>The frame shows {a tower}; I am sure.</think>\n"
        'Here it is:\n```json\n{"landmarks": [\n'
        '  {"name": "Eiffel  Tower", "box": [500, 900, 250, 100]},\n'  # corners swapped, spaces doubled
        '  {"name": "Times Square", "bbox": {"x1": -50, "y1": 0, "x2": 1200, "y2": 500}},\n'  # past the edges
        '  {"name": "Big Ben", "box": [10, 10, 11, 11]},\n'  # under 2 pixels
        '  {"name": "Mount Fuji", "box": [NaN, 0, 10, 10]},\n'
        '  {"name": "Golden Gate Bridge", "box": "left side"},\n'
        '  {"name": "The Eiffel tower", "box": [0, 0, 100, 100]},\n'  # the same landmark again
        '  {"box": [0, 0, 100, 100]}\n'
        "]}\n```\nThat is all."
    )
    found, notes = parse_landmarks(text, SIZE)
    assert found == [
        Landmark("Eiffel Tower", Box(160, 48, 320, 432)),
        Landmark("Times Square", Box(0, 0, 640, 240)),
    ]
    assert len(notes) == 4 and all(
        any(name in note for note in notes) for name in ("Big Ben", "Mount Fuji", "Golden Gate Bridge")
    )
    assert any("without a name" in note for note in notes)
    many = answer(*[(f"Landmark Number {k}", [0, 0, 500, 500]) for k in range(7)])
    kept, notes = parse_landmarks(many, SIZE, max_landmarks=5)
    assert len(kept) == 5 and len(notes) == 2 and "more than 5" in notes[0]


@pytest.mark.parametrize(
    "text, said",
    [
        ("I can see the Eiffel Tower in the background.", "holds no JSON object"),
        ('{"landmarks": [{"name": "Eiffel', "holds no JSON object"),  # cut off
        ('{"places": ["Eiffel Tower"]}', "no 'landmarks' list"),
        ('{"landmarks": "Eiffel Tower"}', "no 'landmarks' list"),
        ("[1, 2, 3]", "holds no JSON object"),
        ("", "holds no JSON object"),
    ],
)
def test_a_malformed_answer_gives_no_landmarks_and_a_note(text, said):
    found, notes = parse_landmarks(text, SIZE)
    assert found == [] and len(notes) == 1 and said in notes[0]


def test_the_first_object_is_found_in_linear_time():
    assert first_object('x {"a": 1} {"b": 2}') == {"a": 1}
    assert first_object("{" * 5000 + '{"landmarks": []}') is None  # only MAX_STARTS braces are tried
    assert first_object('{bad} {"landmarks": []}') == {"landmarks": []}
    assert grid_box([0, 0, 1000, 1000], SIZE) == Box(0, 0, 640, 480)
    assert grid_box([0, 0, True, 1000], SIZE) is None and grid_box([1, 2, 3], SIZE) is None


@pytest.mark.parametrize(
    "name",
    ["building", "a building", "Building", "Street", "city", "Old Building", "the tall tower", "N/A",
     "City Street", "unknown landmark", "  ", "Tower Bridge"],
)  # fmt: skip
def test_generic_names_are_refused(name):
    assert is_generic(name)
    found, notes = parse_landmarks(answer((name, [0, 0, 500, 500])), SIZE)
    assert found == [] and len(notes) == 1 and ("refused" in notes[0] or "without a name" in notes[0])


@pytest.mark.parametrize(
    "name",
    ["Eiffel Tower", "Times Square", "Big Ben", "The White House", "Mount Fuji", "Golden Gate Bridge",
     "Central Park", "Sagrada Família", "30 St Mary Axe", "東京タワー", "Колизей"],
)  # fmt: skip
def test_named_places_are_kept(name):
    assert not is_generic(name)


def test_one_lm_id_per_landmark_across_the_story():
    assert landmark_key("The Eiffel  tower.") == landmark_key("eiffel tower") == "eiffel tower"
    frames = [
        [Landmark("Eiffel Tower", Box(0, 0, 9, 9)), Landmark("Arc de Triomphe", Box(0, 0, 9, 9))],
        [],
        [Landmark("the eiffel tower", Box(0, 0, 9, 9)), Landmark("Louvre Pyramid", Box(0, 0, 9, 9))],
    ]
    assert landmark_ids(frames) == [
        [("lm1", 1, "Eiffel Tower"), ("lm2", 1, "Arc de Triomphe")],
        [],
        [("lm1", 1, "Eiffel Tower"), ("lm3", 3, "Louvre Pyramid")],  # named as first written
    ]


# -- against a server ----------------------------------------------------------------------------------------


@pytest.fixture
def story(tmp_path) -> Path:
    folder = tmp_path / "raw" / "paris"
    folder.mkdir(parents=True)
    for k in (1, 2):
        shutil.copy(EXAMPLES / "lighthouse" / f"0{k}.png", folder / f"0{k}.png")
    return folder


def test_the_same_landmark_in_two_frames_is_one_lm_id(story):
    needs_opencv()
    from storyreasoning.data.folder import frame_files
    from storyreasoning.tell.baseline import BaselineTeller

    answers = [
        answer(("Eiffel Tower", [500, 0, 700, 600])),
        "<think>the tower again</think>"
        + answer(("The Eiffel tower", [400, 0, 600, 600]), ("street", [0, 800, 1000, 1000])),
    ]
    with FakeServer(respond=by_frame(frame_files(story), answers), chunk=40) as server:
        finder = LandmarkFinder.connect(server.url, retries=0)
        perceiver = LandmarkPerceiver(BaselineTeller(), finder)
        frames = perceiver.see(frame_files(story))
        requests = [r["body"] for r in server.chat_requests()]
    first, second = (f.landmarks for f in frames)
    assert [(lm.entity_id, lm.label, lm.box, lm.first_seen) for lm in first] == [
        ("lm1", "Eiffel Tower", Box(320, 0, 448, 288), 1)
    ]
    assert [(lm.entity_id, lm.label, lm.box, lm.first_seen) for lm in second] == [
        ("lm1", "Eiffel Tower", Box(256, 0, 384, 288), 1)
    ]
    assert frames[0].notes == [] and frames[1].notes == [
        "image 2: landmarks: 'street' refused: not the name of a particular place"
    ]
    # each frame is one request: our prompt, the frame as a data URL, greedy and seeded, the served model
    assert len(requests) == 2
    body = requests[0]
    assert body["messages"][0] == {"role": "system", "content": SYSTEM}
    assert body["messages"][1]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert body["temperature"] == 0.0 and body["seed"] == 0 and body["model"] == "fake/storyteller"
    info = perceiver.describe()["landmarks"]
    assert info["models"] == {"landmarks": {"id": "fake/storyteller", "revision": None}}
    assert info["coordinates"].startswith("0-1000 grid")


def test_the_frames_are_asked_at_once_and_read_in_frame_order(tmp_path):
    """Four frames asked four at a time, the first answered last: the same landmarks, ids and notes as
    asking one frame after another."""
    needs_opencv()
    from storyreasoning.tell.baseline import BaselineTeller

    frames = []
    for k, name in enumerate(["01.png", "02.png", "03.png", "01.png"], start=1):
        frames.append(tmp_path / f"{k:02d}.png")
        data = (EXAMPLES / "lighthouse" / name).read_bytes()
        frames[-1].write_bytes(
            data + (b"\0" * k if k == 4 else b"")
        )  # frame 4: frame 1's picture, its own bytes
    answers = [
        answer(("Eiffel Tower", [500, 0, 700, 600])),
        answer(("Louvre Pyramid", [0, 500, 300, 900]), ("The Eiffel tower", [400, 0, 600, 600])),
        "Sorry, I cannot tell.",
        answer(
            ("Louvre  pyramid", [0, 400, 300, 900]),
            ("street", [0, 800, 1000, 1000]),
            ("Arc de Triomphe", [1, 1, 9, 9]),
        ),
    ]
    delays = [0.6, 0.2, 0.4, 0.0]  # then these: answers finish in the order 4, 2, 3, 1

    def seen(perceived):
        return [
            ([(lm.entity_id, lm.label, lm.box, lm.first_seen) for lm in f.landmarks], f.notes)
            for f in perceived
        ]

    # every answer takes 0.3 s and more, so requests sent at once are in flight together (a loaded machine
    # may start one late: at least two of four overlap, never more than the bound)
    with FakeServer(respond=by_frame(frames, answers, delays), answer_delay=0.3) as server:
        finder = LandmarkFinder.connect(server.url, retries=0)
        one_by_one = seen(LandmarkPerceiver(BaselineTeller(), finder, concurrency=1).see(frames))
        assert server.max_active == 1
        server.max_active = 0
        at_once = seen(LandmarkPerceiver(BaselineTeller(), finder, concurrency=4).see(frames))
        assert 2 <= server.max_active <= 4
        server.max_active = 0
        two = seen(LandmarkPerceiver(BaselineTeller(), finder, concurrency=2).see(frames))
        assert server.max_active <= 2
    assert at_once == one_by_one == two
    assert [[lm[0] for lm in landmarks] for landmarks, _ in at_once] == [
        ["lm1"],
        ["lm2", "lm1"],
        [],
        ["lm2", "lm3"],
    ]
    assert at_once[1][0][1] == ("lm1", "Eiffel Tower", at_once[1][0][1][2], 1)  # named as first written
    assert at_once[2][1][0].startswith("image 3: landmarks: the answer holds no JSON object")
    assert at_once[3][1] == ["image 4: landmarks: 'street' refused: not the name of a particular place"]
    with pytest.raises(UsageError, match="--landmarks-concurrency"):
        LandmarkPerceiver(BaselineTeller(), finder, concurrency=0)


def build(story: Path, out: Path, *extra: str):
    return run_cli("build", str(story.parent), "--out", str(out), "--faces", "none", *extra)


def test_a_build_gets_lm_rows_and_notes_a_malformed_answer(story, tmp_path):
    needs_opencv()
    from storyreasoning.data import load_stories
    from storyreasoning.data.folder import frame_files

    answers = ["Sorry, I cannot tell.", answer(("Eiffel Tower", [500, 0, 700, 600]))]
    out = tmp_path / "built"
    respond = by_frame(frame_files(story), answers)
    with FakeServer(respond=respond, models=("vision/model", "other/model")) as server:
        result = build(story, out, "--landmarks-endpoint", server.url, "--landmarks-model", "vision/model")
        assert [r["body"]["model"] for r in server.chat_requests()] == ["vision/model"] * 2
    assert result.returncode == 0, result.stderr
    (sample,) = list(load_stories(str(out)))
    assert sample.telling().validate(n_images=2, image_sizes=sample.frame_sizes()).well_structured
    image1, image2 = sample.cot.images
    assert not [o for o in image1.objects if o.id.startswith("lm")]
    (landmark,) = [o for o in image2.objects if o.id.startswith("lm")]
    assert (landmark.id, landmark.description, landmark.box) == ("lm1", "Eiffel Tower", Box(320, 0, 448, 288))
    assert "<gdl lm1>Eiffel Tower</gdl>" in sample.story_text
    (note,) = sample.meta["build"]["notes"]
    assert note.startswith("image 1: landmarks: the answer holds no JSON object ('Sorry, I cannot tell.')")
    recorded = json.dumps(json.loads((out / "build.json").read_text()))
    assert "vision/model" in recorded and server.url in recorded


def test_a_landmark_server_that_is_down_fails_in_one_line(story, tmp_path):
    result = build(story, tmp_path / "built", "--landmarks-endpoint", closed_url(), "--retries", "0")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "the landmark server: no server at" in line and "--landmarks-endpoint" in line
    assert "check --endpoint" not in line
    assert not (tmp_path / "built").exists()
    lonely = build(story, tmp_path / "built", "--landmarks-model", "x")
    assert lonely.returncode == 2 and "give --landmarks-endpoint too" in lonely.stderr


def test_a_landmark_server_failing_mid_build_fails_the_story_with_the_reason(story, tmp_path):
    needs_opencv()
    with FakeServer("status", status=500) as server:
        result = build(story, tmp_path / "built", "--landmarks-endpoint", server.url, "--retries", "0")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (error,) = [json.loads(line) for line in (tmp_path / "built" / "errors.jsonl").read_text().splitlines()]
    assert error["story_id"] == "paris" and error["error"].startswith("the landmark server: ")
    assert "HTTP 500" in error["error"]


def test_the_finder_checks_its_options():
    with pytest.raises(UsageError, match="--max-landmarks"):
        LandmarkFinder(object(), max_landmarks=0)
    with pytest.raises(UsageError, match="--landmarks-endpoint"):
        LandmarkFinder.connect("ftp://nowhere")
    with pytest.raises(TellError, match="the landmark server: no server at"):
        LandmarkFinder.connect(closed_url(), retries=0)
