"""Videos into stories: shots found by colour change, one middle frame per shot, stories of N frames.

The videos are written in the test with OpenCV (MJPEG in AVI, which every OpenCV build
encodes and decodes): solid-colour shots of known lengths with a moving square.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

cv2 = pytest.importorskip("cv2", reason="videos need OpenCV: pip install 'storyreasoning[vision]'")
np = pytest.importorskip("numpy")

from storyreasoning.builder.pipeline import find_stories  # noqa: E402
from storyreasoning.builder.video import key_frames, video_stories  # noqa: E402
from storyreasoning.data import load_stories  # noqa: E402
from storyreasoning.errors import StoryReasoningError, UsageError  # noqa: E402

from ..conftest import run_cli  # noqa: E402

FPS = 10
COLOURS = [(200, 40, 40), (40, 180, 40), (40, 40, 200), (220, 220, 60), (160, 60, 200)]


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


def test_one_middle_frame_per_shot(tmp_path):
    video = write_video(tmp_path / "film.avi", [10, 20, 3, 10])  # the 0.3 s shot is too short
    found, fps = key_frames(video, min_shot=0.5)
    assert fps == FPS
    assert [(k.shot, k.index) for k in found] == [(0, 4), (1, 19), (2, 37)]  # middles of 0-9, 10-29, 33-42
    assert [round(k.seconds, 1) for k in found] == [0.4, 1.9, 3.7]
    red, green, blue = (int(v) for v in found[0].image[100, 150])  # RGB, away from the square
    assert red < 80 and green < 80 and blue > 150  # shot 0 was BGR (200, 40, 40): blue


def test_videos_become_stories_of_n_frames_and_reuse_their_frames(tmp_path):
    video = write_video(tmp_path / "film.avi", [8, 8, 8, 8, 8, 8, 8])  # 7 shots
    frames_dir = tmp_path / "frames"
    stories, notes = video_stories(video, frames_dir, frames_per_story=3, min_frames=2)
    assert [s.story_id for s in stories] == ["film-001", "film-002"]
    assert [len(s.frames) for s in stories] == [3, 3]
    assert notes == ["film-003: 1 key frames left at the end of film.avi, fewer than 2; skipped"]
    assert stories[0].sources == ["film.avi@0.30s", "film.avi@1.10s", "film.avi@1.90s"]
    assert all(p.is_file() for s in stories for p in s.frames)
    stamp = stories[0].frames[0].stat().st_mtime_ns
    again, _ = video_stories(video, frames_dir, frames_per_story=3, min_frames=2)
    assert [s.frames for s in again] == [s.frames for s in stories]
    assert again[0].frames[0].stat().st_mtime_ns == stamp  # read back, not extracted again


def test_a_folder_of_videos_and_the_errors(tmp_path):
    (tmp_path / "videos").mkdir()
    write_video(tmp_path / "videos" / "a.avi", [8, 8])
    write_video(tmp_path / "videos" / "b.avi", [8, 8, 8])
    stories, _ = find_stories(tmp_path / "videos", frames_dir=tmp_path / "frames", frames_per_story=5)
    assert [(s.story_id, len(s.frames)) for s in stories] == [("a-001", 2), ("b-001", 3)]
    with pytest.raises(UsageError, match="frames_dir"):
        find_stories(tmp_path / "videos")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UsageError, match="not a video"):
        find_stories(tmp_path / "notes.txt")
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 64)
    with pytest.raises(StoryReasoningError, match="cannot read the video"):
        key_frames(tmp_path / "broken.mp4")


def test_build_a_dataset_from_a_video(tmp_path):
    video = write_video(tmp_path / "scene.avi", [8, 8, 8, 8])
    out = tmp_path / "built"
    result = run_cli("build", str(video), "--out", str(out), "--frames-per-story", "4")
    assert result.returncode == 0, result.stderr
    (sample,) = list(load_stories(str(out)))
    assert sample.story_id == "scene-001" and sample.frame_count == 4
    assert [m["source"] for m in sample.frame_meta] == [f"scene.avi@{s:.2f}s" for s in (0.3, 1.1, 1.9, 2.7)]
    assert sample.telling().validate(n_images=4, image_sizes=sample.frame_sizes()).well_structured
    assert json.loads((out / "build.json").read_text())["settings"]["frames_per_story"] == 4
