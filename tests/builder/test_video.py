"""Videos into stories: shots cut by PySceneDetect, the sharpest frame of each shot, stories drawn from scenes.

Two kinds of video, written here with OpenCV (MJPEG in AVI, which every OpenCV build
writes and reads back frame for frame): solid-colour shots of known lengths with a moving
square (:func:`write_video`), and a short film of real photographs on painted sets with a
blurred stretch inside one shot (``video_scenes.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

cv2 = pytest.importorskip("cv2", reason="videos need OpenCV: pip install 'storyreasoning[vision]'")
np = pytest.importorskip("numpy")
pytest.importorskip("scenedetect", reason="videos need PySceneDetect: pip install 'storyreasoning[build]'")

from storyreasoning.builder.pipeline import find_stories  # noqa: E402
from storyreasoning.builder.video import (  # noqa: E402
    VideoOptions,
    choose,
    find_shots,
    key_frames,
    sample_frames,
    sharpness,
    video_stories,
)
from storyreasoning.data import load_stories  # noqa: E402
from storyreasoning.errors import StoryReasoningError, UsageError  # noqa: E402

from ..conftest import run_cli  # noqa: E402
from . import video_scenes  # noqa: E402

FPS = 10
COLOURS = [(200, 40, 40), (40, 180, 40), (40, 40, 200), (220, 220, 60), (160, 60, 200)]
VISUAL = VideoOptions(scenes="visual")


def write_video(path: Path, shots: list[int], size=(160, 120)) -> Path:
    """Shots of ``shots[k]`` frames each, shot k in colour k (BGR), a white square moving across."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, size)
    assert writer.isOpened()
    for shot, length in enumerate(shots):
        for k in range(length):
            frame = np.zeros((size[1], size[0], 3), np.uint8)
            frame[:] = COLOURS[shot % len(COLOURS)]
            cv2.rectangle(frame, (5 + 3 * k, 40), (35 + 3 * k, 80), (255, 255, 255), -1)
            writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def film(tmp_path_factory) -> Path:
    return video_scenes.write_film(tmp_path_factory.mktemp("film") / "film.avi")


# -- shots ------------------------------------------------------------------------------------------------


def test_pyscenedetect_cuts_the_shots_where_they_were_made(film):
    shots = find_shots(film)
    assert shots.fps == video_scenes.FPS and shots.frames == 5 * video_scenes.SHOT
    assert shots.bounds == [(0, 19), (20, 39), (40, 59), (60, 79), (80, 99)]  # the reverse angles too


def test_min_shot_merges_cuts_that_come_too_soon(tmp_path):
    video = write_video(tmp_path / "solid.avi", [10, 20, 3, 10])  # a 0.3 s shot
    assert find_shots(video, min_shot=0.0).bounds == [(0, 9), (10, 29), (30, 32), (33, 42)]
    assert find_shots(video, min_shot=0.5).bounds == [(0, 9), (10, 29), (30, 42)]  # the flash is merged
    assert find_shots(video, threshold=255.0).bounds == [(0, 42)]  # nothing reaches it: one shot


def test_a_run_of_quick_cuts_does_not_swallow_the_film(tmp_path):
    # five 2 s shots against --min-shot 2.5: PySceneDetect's default merge filter made them one shot
    video = write_video(tmp_path / "quick.avi", [20] * 5)
    assert find_shots(video, min_shot=0.5).bounds == [(0, 19), (20, 39), (40, 59), (60, 79), (80, 99)]
    # a cut sooner than 2.5 s after the last one kept is ignored: a shot every 4 s, the 2 s tail on its own
    assert find_shots(video, min_shot=2.5).bounds == [(0, 39), (40, 79), (80, 99)]
    stories, _ = video_stories(video, tmp_path / "frames", VideoOptions(min_shot=2.5, scenes="none"))
    assert [len(s.frames) for s in stories] == [2]  # the two long shots' key frames, not nothing


# -- key frames -------------------------------------------------------------------------------------------


def test_the_frames_scored_and_the_choice():
    assert sample_frames(0, 19) == [2, 3, 5, 7, 9, 11, 13, 15, 17]  # ends left out, the middle (9) in
    assert sample_frames(40, 43) == [40, 41, 42, 43]  # a short shot: every frame
    assert len(sample_frames(0, 999)) == 9 and (0 + 999) // 2 in sample_frames(0, 999)
    assert choose([(2, 100.0), (9, 50.0), (17, 60.0)], middle=9) == (2, 100.0)  # the sharpest
    assert choose([(2, 100.0), (9, 97.0), (17, 101.0)], middle=9) == (9, 97.0)  # within 5 %: the middle
    assert choose([(3, 10.0), (5, 10.0)], middle=4) == (3, 10.0)  # equally near: the earlier


def test_sharpness_falls_with_blur():
    from .face_scenes import SOURCES

    photo = cv2.imread(str(SOURCES["obama-1"][0]))
    blurred = cv2.GaussianBlur(photo, (0, 0), 3)
    assert sharpness(photo) > 5 * sharpness(blurred)
    assert sharpness(np.full((50, 80, 3), 128, np.uint8)) == 0.0  # a flat frame


def test_the_sharpest_key_frame_avoids_the_blurred_middle(film):
    shots = find_shots(film)
    sharp = list(key_frames(film, shots))
    middle = list(key_frames(film, shots, rule="middle"))
    assert [k.shot for k in sharp] == [1, 2, 3, 4, 5]
    assert [k.index for k in middle] == [9, 29, 49, 69, 89]
    assert middle[3].index in video_scenes.BLURRED  # the focus pull is in the middle of shot 4
    assert sharp[3].index not in video_scenes.BLURRED and 62 <= sharp[3].index <= 77  # inside, ends left out
    assert sharp[3].sharpness > 20 * middle[3].sharpness
    for k in sharp:  # every key frame in its shot, and at least as sharp as the middle within the tie margin
        assert k.first <= k.index <= k.last and k.seconds == pytest.approx(k.index / video_scenes.FPS)
        assert k.sharpness >= 0.95 * middle[k.shot - 1].sharpness
        assert k.image.shape == (video_scenes.HEIGHT, video_scenes.WIDTH, 3)
    # the image is the frame: RGB, as decoded
    capture = cv2.VideoCapture(str(film))
    capture.set(cv2.CAP_PROP_POS_FRAMES, sharp[0].index)
    ok, bgr = capture.read()
    assert ok and np.array_equal(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), sharp[0].image)


def test_memory_stays_flat_however_long_the_video(tmp_path):
    """The key frame pass holds at most the sampled frames of one shot, whatever the number of shots."""
    import tracemalloc

    def peak(shots: int) -> int:
        video = write_video(tmp_path / f"{shots}.avi", [10] * shots, size=(320, 240))
        found = find_shots(video)  # five colours: every fifth cut joins two shots of one colour
        assert len(found.bounds) >= shots * 4 // 5
        tracemalloc.start()
        try:
            assert sum(1 for _ in key_frames(video, found)) == len(found.bounds)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    frame = 320 * 240 * 3
    short, long = peak(3), peak(24)
    assert long < 1.5 * short and long < 12 * frame, (short, long)


def test_a_steady_shot_keeps_its_middle_frame(tmp_path):
    """Every frame alike (a still shot): the scores tie, the middle wins."""
    video = tmp_path / "still.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (160, 120))
    still = cv2.imread(str(video_scenes.SOURCES["collins"][0]))
    for _ in range(15):
        writer.write(cv2.resize(still, (160, 120)))
    writer.release()
    (key,) = key_frames(video, find_shots(video))
    assert key.index == 7


# -- stories ----------------------------------------------------------------------------------------------


def test_stories_never_cross_a_scene_and_a_long_scene_is_balanced(tmp_path, film):
    stories, notes = video_stories(film, tmp_path / "frames", VISUAL, min_frames=2)
    # visual scenes: [shots 1 2] [3: the close-up] [4 5]; the lone close-up is too short
    assert [(s.story_id, s.scene, [p.name for p in s.frames]) for s in stories] == [
        ("film-001", 1, ["00001.png", "00002.png"]),
        ("film-003", 3, ["00004.png", "00005.png"]),
    ]
    assert notes == [
        "film-002: 1 key frame of scene 2 (shot 3), fewer than 2; skipped",
        "film.avi: 5 key frames, 3 scenes (visual), 2 stories",
    ]
    assert all(s.group == "film.avi" for s in stories)
    index = json.loads((tmp_path / "frames" / "film" / "frames.json").read_text())
    assert stories[1].sources == [f"film.avi@{s['seconds']:.2f}s" for s in index["shots"][3:]]

    # no grouping: the film is one run of 5 key frames, at most 2 per story: 2 + 2 + 1 (skipped)
    stories, notes = video_stories(
        film, tmp_path / "none", VideoOptions(scenes="none", frames_per_story=2), min_frames=2
    )
    assert [(s.story_id, s.scene, len(s.frames)) for s in stories] == [
        ("film-001", None, 2),
        ("film-002", None, 2),
    ]
    assert notes[0] == "film-003: 1 key frame of film.avi (shot 5), fewer than 2; skipped"
    stories, _ = video_stories(
        film, tmp_path / "none", VideoOptions(scenes="none", frames_per_story=3), min_frames=2
    )
    assert [len(s.frames) for s in stories] == [3, 2]  # balanced, from the same key frames


def test_a_resumed_build_reads_the_index_and_decodes_nothing(tmp_path, film):
    video = tmp_path / film.name
    video.write_bytes(film.read_bytes())
    frames = tmp_path / "frames"
    first, _ = video_stories(video, frames, VISUAL)
    index = frames / "film" / "frames.json"
    made = json.loads(index.read_text())
    assert made["settings"] == {
        "shot_threshold": 27.0,
        "min_shot": 0.5,
        "shot_detector": "ContentDetector",
        "flash_filter": "suppress",
        "key_frame": "sharpest",
        "key_frame_samples": 9,
        "key_frame_edge": 0.1,
        "key_frame_tie": 0.05,
        "scenes": "visual",
        "scene_threshold": 0.5,
    }
    assert [s["first"] for s in made["shots"]] == [0, 20, 40, 60, 80]
    stamps = [p.stat().st_mtime_ns for p in (*first[0].frames, index)]
    # the same size, nothing OpenCV can decode: a resumed build that decoded would fail
    video.write_bytes(b"\0" * video.stat().st_size)
    again, _ = video_stories(video, frames, VISUAL)
    assert [(s.story_id, s.frames, s.sources, s.scene) for s in again] == [
        (s.story_id, s.frames, s.sources, s.scene) for s in first
    ]
    assert [p.stat().st_mtime_ns for p in (*again[0].frames, index)] == stamps


def test_other_settings_on_the_same_key_frames_are_refused(tmp_path, film):
    frames = tmp_path / "frames"
    video_stories(film, frames, VISUAL)
    with pytest.raises(UsageError) as info:
        video_stories(film, frames, VideoOptions(scenes="visual", shot_threshold=30.0, key_frame="middle"))
    message = str(info.value)
    assert (
        "--shot-threshold 27 then, 30 now" in message
        and "--key-frame 'sharpest' then, 'middle' now" in message
    )
    assert "another --out" in message and "\n" not in message
    # story settings are not in the index: another length of story reads the same key frames
    stories, _ = video_stories(film, frames, VideoOptions(scenes="visual", frames_per_story=1), min_frames=1)
    assert len(stories) == 5
    with pytest.raises(UsageError, match="below --min-frames 2"):
        video_stories(film, frames, VideoOptions(scenes="visual", frames_per_story=1), min_frames=2)
    other = tmp_path / "other.avi"
    other.write_bytes(film.read_bytes() + b"\0")
    (frames / "other").mkdir()  # as if other.avi had been cut before it changed
    index = json.loads((frames / "film" / "frames.json").read_text())
    (frames / "other" / "frames.json").write_text(json.dumps({**index, "video": "other.avi"}))
    with pytest.raises(UsageError, match=r"other\.avi changed since its key frames were cut"):
        video_stories(other, frames, VISUAL)
    same_name = tmp_path / "film.mp4"  # film.avi's key frames are in frames/film
    same_name.write_bytes(film.read_bytes())
    with pytest.raises(UsageError, match=r"holds the key frames of film\.avi, not of film\.mp4.*rename one"):
        video_stories(same_name, frames, VISUAL)


def test_key_frames_cut_by_an_earlier_rule_are_cut_again_unless_stories_were_built_from_them(tmp_path, film):
    """An index written before the flash filter was recorded (an earlier version merged quick cuts): cut again
    while no story of the video is built; otherwise kept, so that the video's stories all come from one cut."""
    from storyreasoning.builder.pipeline import build_dataset
    from storyreasoning.builder.writers import TemplateWriter
    from storyreasoning.tell.baseline import BaselineTeller

    frames, out = tmp_path / "out" / ".frames", tmp_path / "out"
    index = frames / "film" / "frames.json"

    def as_an_earlier_version_cut_it(**settings):
        made = json.loads(index.read_text())
        for key in ("shot_detector", "flash_filter"):
            made["settings"].pop(key)
        made["settings"] |= settings
        made["shots"][0]["seconds"] = 99.0  # what only the old index says
        made["shots"].append({**made["shots"][-1], "file": "00009.png", "shot": 9})  # a shot only it cut
        index.write_text(json.dumps(made))
        (frames / "film" / "00009.png").write_bytes(b"a key frame of the old cut")

    first, _ = video_stories(film, frames, VISUAL, out=out)
    as_an_earlier_version_cut_it()
    again, _ = video_stories(film, frames, VISUAL, out=out)  # nothing built in out: cut again
    made = json.loads(index.read_text())
    assert made["settings"]["flash_filter"] == "suppress" and made["shots"][0]["seconds"] != 99.0
    assert not (frames / "film" / "00009.png").exists()  # the old cut's files are gone
    assert [(s.story_id, s.sources) for s in again] == [(s.story_id, s.sources) for s in first]

    report = build_dataset(
        again, out, perceiver=BaselineTeller(), writer=TemplateWriter(), require_person=False
    )
    assert report.built == 2
    as_an_earlier_version_cut_it(flash_filter="merge")
    kept, _ = video_stories(film, frames, VISUAL, out=out)  # stories built from that cut: it is kept
    assert json.loads(index.read_text())["shots"][0]["seconds"] == 99.0
    assert (frames / "film" / "00009.png").exists()
    assert kept and [s.story_id for s in kept][: len(first)] == [s.story_id for s in first]
    video_stories(film, frames, VISUAL)  # where the stories go is not known: kept, nothing deleted
    assert json.loads(index.read_text())["shots"][0]["seconds"] == 99.0
    # other options too: named as ever, nothing cut again
    with pytest.raises(UsageError, match=r"--shot-threshold 27 then, 30 now.*give the same settings"):
        video_stories(film, frames, VideoOptions(scenes="visual", shot_threshold=30.0), out=tmp_path / "new")
    assert json.loads(index.read_text())["shots"][0]["seconds"] == 99.0


def test_the_rule_that_chose_the_key_frames_is_recorded_and_another_handled_as_an_earlier_cut(tmp_path, film):
    """The constants that pick a shot's sharpest frame (frames scored, share left out at each end, tie margin)
    are recorded with the key frames. An index from before they were recorded was made with today's: it
    resumes as it did. One made with others is chosen again while no story of the video is built; otherwise
    it is kept, so that the video's stories all come from one choice, and that is said."""
    from storyreasoning.builder.pipeline import build_dataset
    from storyreasoning.builder.writers import TemplateWriter
    from storyreasoning.tell.baseline import BaselineTeller

    rule = {"key_frame_samples": 9, "key_frame_edge": 0.1, "key_frame_tie": 0.05}
    out = tmp_path / "out"
    frames, video = out / ".frames", tmp_path / film.name
    video.write_bytes(film.read_bytes())
    index = frames / "film" / "frames.json"
    first, _ = video_stories(video, frames, VISUAL, out=out)
    made = json.loads(index.read_text())
    assert {key: made["settings"].get(key) for key in rule} == rule
    video_stories(video, tmp_path / "middle", VideoOptions(scenes="visual", key_frame="middle"))
    middle = json.loads((tmp_path / "middle" / "film" / "frames.json").read_text())["settings"]
    assert not set(rule) & set(middle)  # the middle frame: nothing sampled, nothing scored

    for key in rule:  # as a version before the rule was recorded wrote it
        made["settings"].pop(key)
    index.write_text(json.dumps(made))
    whole = video.read_bytes()
    video.write_bytes(b"\0" * len(whole))  # a resume that decoded would fail
    again, notes = video_stories(video, frames, VISUAL, out=out)
    assert [(s.story_id, s.sources) for s in again] == [(s.story_id, s.sources) for s in first]
    assert json.loads(index.read_text()) == made and not [note for note in notes if " then, " in note]
    video.write_bytes(whole)

    def as_another_rule_chose_them():
        made = json.loads(index.read_text())
        made["settings"] |= {"key_frame_samples": 5, "key_frame_tie": 0.1}
        made["shots"][0]["seconds"] = 99.0  # what only the old index says
        index.write_text(json.dumps(made))

    as_another_rule_chose_them()
    again, notes = video_stories(video, frames, VISUAL, out=out)  # nothing built in out: chosen again
    made = json.loads(index.read_text())
    assert {key: made["settings"][key] for key in rule} == rule and made["shots"][0]["seconds"] != 99.0
    assert [(s.story_id, s.sources) for s in again] == [(s.story_id, s.sources) for s in first]
    assert not [note for note in notes if " then, " in note]

    report = build_dataset(
        again, out, perceiver=BaselineTeller(), writer=TemplateWriter(), require_person=False
    )
    assert report.built == 2
    as_another_rule_chose_them()
    kept, notes = video_stories(video, frames, VISUAL, out=out)  # stories built from them: kept, and said
    assert json.loads(index.read_text())["shots"][0]["seconds"] == 99.0
    assert kept[0].sources[0] == "film.avi@99.00s"
    assert (
        "film.avi: its key frames were made by an earlier version (frames scored per shot 5 then, 9 now; "
        "key frame tie margin 0.1 then, 0.05 now); kept, so that all its stories come from one cut"
    ) in notes
    # another --key-frame is refused naming the option, not the sampling the middle frame does without
    with pytest.raises(UsageError) as refused:
        video_stories(video, frames, VideoOptions(scenes="visual", key_frame="middle"), out=out)
    assert "--key-frame 'sharpest' then, 'middle' now; give the same settings" in str(refused.value)


def test_a_truncated_avi_is_one_line_and_no_raw_bytes(tmp_path):
    """OpenCV's own AVI reader, tried after FFmpeg, prints a damaged header's bytes to stderr (past its log
    level): the build opens videos with FFmpeg alone, and says the problem in its one line."""
    whole = write_video(tmp_path / "whole.avi", [8, 8]).read_bytes()
    for size in (300, 2000, 5000):
        video = tmp_path / f"cut{size}.avi"
        video.write_bytes(whole[:size])
        result = run_cli("build", str(video), "--out", str(tmp_path / f"out{size}"))
        assert result.returncode == 1
        assert result.stderr.strip() == (
            f"error: cannot read the video {video}: OpenCV does not decode it; "
            "convert it to MP4 with H.264 (ffmpeg -i IN OUT.mp4)"
        ), result.stderr


def test_a_folder_of_videos_and_the_errors(tmp_path):
    (tmp_path / "videos").mkdir()
    write_video(tmp_path / "videos" / "a.avi", [8, 8])
    write_video(tmp_path / "videos" / "b.avi", [8, 8, 8])
    none = VideoOptions(scenes="none")
    stories, _ = find_stories(tmp_path / "videos", frames_dir=tmp_path / "frames", video=none)
    assert [(s.story_id, len(s.frames)) for s in stories] == [("a-001", 2), ("b-001", 3)]
    with pytest.raises(UsageError, match="frames_dir"):
        find_stories(tmp_path / "videos")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UsageError, match="not a video"):
        find_stories(tmp_path / "notes.txt")
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 64)
    with pytest.raises(
        StoryReasoningError, match=r"cannot read the video .*broken\.mp4: OpenCV does not decode it"
    ):
        find_shots(tmp_path / "broken.mp4")
    with pytest.raises(UsageError, match="--key-frame must be one of sharpest, middle"):
        video_stories(tmp_path / "videos" / "a.avi", tmp_path / "frames", VideoOptions(key_frame="best"))


def test_an_unreadable_video_is_one_line(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 64)
    result = run_cli("build", str(tmp_path / "broken.mp4"), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: cannot read the video {tmp_path / 'broken.mp4'}: OpenCV does not decode it; "
        "convert it to MP4 with H.264 (ffmpeg -i IN OUT.mp4)"
    )  # FFmpeg's own complaints ("moov atom not found") and PySceneDetect's log lines silenced


def test_without_pyscenedetect_one_line_names_the_extra(tmp_path, film):
    code = "import sys; sys.modules['scenedetect'] = None; from storyreasoning.cli import main; main()"
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code, "build", str(film), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: cutting videos into shots needs PySceneDetect: pip install 'storyreasoning[build]'"
    )


def test_build_a_dataset_from_a_video(tmp_path, film):
    out = tmp_path / "built"
    result = run_cli("build", str(film), "--out", str(out), "--scenes", "visual", "--frames-per-story", "4")
    assert result.returncode == 0, result.stderr
    assert "film-002: 1 key frame of scene 2 (shot 3), fewer than 2; skipped" in result.stderr
    samples = {s.story_id: s for s in load_stories(str(out))}
    assert sorted(samples) == ["film-001", "film-003"]
    index = json.loads((out / ".frames" / "film" / "frames.json").read_text())
    times = [s["seconds"] for s in index["shots"]]
    sample = samples["film-003"]
    assert sample.frame_count == 2
    assert [m["source"] for m in sample.frame_meta] == [f"film.avi@{t:.2f}s" for t in times[3:]]
    assert [m["group"] for m in sample.frame_meta] == ["film.avi"] * 2
    assert sample.telling().validate(n_images=2, image_sizes=sample.frame_sizes()).well_structured
    settings = json.loads((out / "settings.json").read_text())
    assert settings["frames_per_story"] == 4 and settings["shot_threshold"] == 27.0
    assert settings["scenes"] == "visual" and settings["key_frame"] == "sharpest"
