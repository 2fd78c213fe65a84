"""``build --ray``: perception in Ray actors makes the very dataset a single-process build makes.

The heavy tests run on a local Ray started here (two CPUs, no dashboard) and compare,
file by file, a Ray build with a single-process build of the same stories: the photographs
of examples/stories (one of them shows no person: skipped.jsonl), a few frames of the face
photographs (perceived with dlib when it is installed), and a story with a corrupt frame
(errors.jsonl). Both builds go through the command's own code (``commands.build``), with the
template writer and with the chat writer against a real loopback server; the killed build is
the real CLI in a subprocess. Records written at a wall-clock time are compared without it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip(
    "cv2", reason="the builder's perception needs OpenCV: pip install 'storyreasoning[vision]'"
)

from storyreasoning.builder.commands import build
from storyreasoning.builder.distributed import FrameBytes, RayPerception, require_ray
from storyreasoning.builder.perceivers import make_perceiver
from storyreasoning.builder.settings import BuildSettings
from storyreasoning.data.folder import frame_files
from storyreasoning.errors import StoryReasoningError, UsageError
from storyreasoning.tell.baseline import BaselineTeller

from ..conftest import run_cli, signal_when
from ..tell.servers import FakeServer
from .face_scenes import stories as face_stories
from .reading_model import answer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "stories"


# -- the stories -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """Six stories: three examples (cat-and-coffee shows no person), three frames each of two face-photograph
    stories, and one whose second frame is not an image."""
    root = tmp_path_factory.mktemp("raw")
    for story in ("lighthouse", "pioneers", "cat-and-coffee"):
        (root / story).mkdir()
        for frame in frame_files(EXAMPLES / story):
            shutil.copy(frame, root / story / frame.name)
    scenes = face_stories()
    for name in ("white-house", "pioneers-meet"):
        (root / name).mkdir()
        for number, (image, _) in enumerate(scenes[name][:3], start=1):
            image.save(root / name / f"{number:02d}.jpg", quality=92)
    (root / "broken").mkdir()
    shutil.copy(frame_files(EXAMPLES / "lighthouse")[0], root / "broken" / "01.png")
    (root / "broken" / "02.png").write_bytes(b"these bytes are no image")
    return root


BUILT = ["lighthouse", "pioneers", "pioneers-meet", "white-house"]  # broken fails, cat-and-coffee is skipped


def _without(record: dict, *keys: str) -> dict:
    return {k: v for k, v in record.items() if k not in keys}


def _lines(path: Path) -> list[dict] | None:
    if not path.exists():
        return None
    return [_without(json.loads(line), "time") for line in path.read_text(encoding="utf-8").splitlines()]


def dataset(out: Path) -> dict:
    """What a build made: every file of every story folder (bytes), splits.json (bytes), skipped.jsonl and
    errors.jsonl (without their times), build.json (without the start time) and report.json (without seconds)."""
    found: dict = {}
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                found[str(f.relative_to(out))] = f.read_bytes()
    found["splits.json"] = (out / "splits.json").read_bytes() if (out / "splits.json").exists() else None
    found["skipped.jsonl"] = _lines(out / "skipped.jsonl")
    found["errors.jsonl"] = _lines(out / "errors.jsonl")
    entries = json.loads((out / "build.json").read_text(encoding="utf-8"))["entries"]
    found["build.json"] = [_without(e, "started") for e in entries]
    if (out / "report.json").exists():
        found["report.json"] = _without(json.loads((out / "report.json").read_text()), "seconds")
    return found


def difference(name: str, made, wanted) -> str:
    """How a file of one build differs from the other's: the first differing lines."""

    def lines(value) -> list[str]:
        if isinstance(value, bytes):
            try:
                return value.decode("utf-8").splitlines()
            except UnicodeDecodeError:
                return [f"{len(value)} bytes of binary, md5 {hashlib.md5(value).hexdigest()}"]
        return json.dumps(value, indent=1, sort_keys=True, default=str).splitlines()

    diff = difflib.unified_diff(lines(wanted), lines(made), "single process", "this build", lineterm="", n=1)
    return f"{name} differs:\n" + "\n".join(list(diff)[:40])


def story_folders(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))


# -- quick: no Ray started ----------------------------------------------------------------------------------------


def test_frames_sent_as_bytes_are_seen_as_the_files_and_errors_still_name_the_file(raw):
    """Workers get bytes, not paths: the perceiver sees the same, and a bad frame is named as a path would be."""
    seer = BaselineTeller()
    frames = frame_files(raw / "lighthouse")
    sent = [pickle.loads(pickle.dumps(FrameBytes(f.read_bytes(), str(f)))) for f in frames]
    assert [s.path for s in sent] == [str(f) for f in frames]
    assert pickle.dumps(list(seer.see(sent))) == pickle.dumps(list(seer.see(frames)))
    bad = raw / "broken" / "02.png"
    with pytest.raises(StoryReasoningError) as from_path:
        list(seer.see([bad]))
    with pytest.raises(StoryReasoningError) as from_bytes:
        list(seer.see([FrameBytes(bad.read_bytes(), str(bad))]))
    assert str(from_bytes.value) == str(from_path.value) and str(bad) in str(from_bytes.value)


def test_an_address_where_no_ray_listens_is_one_line(raw, tmp_path):
    result = run_cli("build", str(raw), "--out", str(tmp_path / "out"), "--ray", "127.0.0.1:1", timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "Ray" in line]
    assert "cannot reach a Ray cluster at 127.0.0.1:1 (connection refused)" in line
    assert "ray start --head" in line
    client = run_cli("build", str(raw), "--out", str(tmp_path / "out"), "--ray", "ray://10.0.0.1:10001")
    assert client.returncode == 2 and "Ray Client addresses are not supported" in client.stderr


def test_ray_options_need_ray_and_a_missing_ray_names_its_extra(raw, tmp_path, monkeypatch):
    with pytest.raises(UsageError, match="--ray-workers and --ray-gpus-per-worker are for --ray"):
        BuildSettings(frames=raw, out=tmp_path / "o", ray_workers=2)
    for name in ("ray", "ray.data"):
        monkeypatch.setitem(sys.modules, name, None)  # what an environment without the extra imports
    with pytest.raises(UsageError, match=r"pip install 'storyreasoning\[ray\]'"):
        require_ray()


# -- on a local Ray -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="build --ray needs Ray: pip install 'storyreasoning[ray]'")
    pytest.importorskip("ray.data")
    context = ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        yield context
    finally:
        ray.shutdown()


def _settings(raw: Path, out: Path, **given) -> BuildSettings:
    return BuildSettings(frames=raw, out=out, split=0.5, **given)


@pytest.fixture(scope="module")
def single(raw, tmp_path_factory) -> dict:
    """The single-process template build of ``raw``: the reference."""
    out = tmp_path_factory.mktemp("single") / "built"
    assert build(_settings(raw, out)) == 1  # the broken story failed
    return dataset(out)


@pytest.mark.slow
def test_a_ray_build_makes_the_single_process_dataset(raw, tmp_path, local_ray, single):
    out = tmp_path / "built"
    # auto: the Ray started here, used as it is (and left running)
    assert build(_settings(raw, out, ray="auto", ray_workers=2)) == 1
    made = dataset(out)
    assert story_folders(out) == BUILT
    assert [r["story_id"] for r in made["skipped.jsonl"]] == ["cat-and-coffee"]
    (error,) = made["errors.jsonl"]
    assert error["story_id"] == "broken" and str(raw / "broken" / "02.png") in error["error"]
    assert made.keys() == single.keys()
    for name in single:
        assert made[name] == single[name], difference(name, made[name], single[name])
    assert made["report.json"]["built"] == 4 and made["splits.json"] is not None


@pytest.mark.slow
def test_a_chat_written_ray_build_makes_the_single_process_dataset(raw, tmp_path, local_ray):
    """Four stories in flight against the endpoint, written on the driver by the single-process loop's writers."""
    with FakeServer(respond=answer, answer_delay=0.1) as server:
        common = dict(writer="chat", endpoint=server.url, seed=7, concurrency=4, faces="none", retries=0)
        assert build(_settings(raw, tmp_path / "single", **common)) == 1
        assert build(_settings(raw, tmp_path / "ray", ray="auto", ray_workers=2, **common)) == 1
    single, made = dataset(tmp_path / "single"), dataset(tmp_path / "ray")
    assert story_folders(tmp_path / "ray") == BUILT
    assert made.keys() == single.keys()
    for name in single:
        assert made[name] == single[name], difference(name, made[name], single[name])
    meta = json.loads((tmp_path / "ray" / "lighthouse" / "meta.json").read_text())
    assert meta["build"]["writer"] == "chat"


@pytest.mark.slow
def test_workers_that_the_cluster_cannot_hold_are_refused_in_one_line(raw, tmp_path, local_ray):
    settings = _settings(raw, tmp_path / "o", ray="auto")
    with pytest.raises(UsageError, match=r"1 worker at 1 GPU each need 1 GPUs, the cluster has 0"):
        RayPerception(settings, gpus_per_worker=1)
    with pytest.raises(UsageError, match=r"3 workers need a CPU each, the cluster has 2"):
        RayPerception(settings, workers=3)
    default = RayPerception(settings)
    assert (default.workers, default.gpus_per_worker) == (1, 0.0)  # no GPU: two CPUs, one left to the driver
    # the workers describe the perceiver the driver would make
    assert json.dumps(default.describe(), default=str) == json.dumps(
        make_perceiver(settings).describe(), default=str
    )


@pytest.mark.slow
def test_a_device_the_workers_cannot_use_is_refused_before_any_video_is_cut(tmp_path, local_ray):
    """As a local build checks --device before it reads anything, a Ray build's driver has a worker check it
    (on the GPUs Ray gives a worker, which the driver's own need not be) before the first video is cut."""
    pytest.importorskip(
        "scenedetect", reason="videos need PySceneDetect: pip install 'storyreasoning[build]'"
    )
    from .test_video import write_video

    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "a.avi", [8, 8])
    out = tmp_path / "o"
    with pytest.raises(
        UsageError, match=r"^--device foo is not a device: use auto, cpu, cuda, cuda:N or mps$"
    ):
        build(_settings(videos, out, ray="auto", device="foo"))
    assert not (out / ".frames").exists()
    pytest.importorskip("torch", reason="a CUDA device is checked by torch")
    with pytest.raises(
        UsageError, match=r"^--device cuda:9: (no CUDA GPU is visible|torch sees \d+ CUDA GPU)"
    ):
        build(_settings(videos, out, ray="auto", device="cuda:9"))
    assert not (out / ".frames").exists()


def _cli(raw: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "storyreasoning", "build", str(raw), "--out", str(out), "--split", "0.5",
        "--ray", "auto", "--ray-workers", "1",
    ]  # fmt: skip


@pytest.mark.slow
def test_a_killed_ray_build_resumes_to_the_same_dataset_writing_no_story_twice(
    raw, tmp_path, local_ray, single
):
    out = tmp_path / "built"
    base = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    base.update(HF_HUB_OFFLINE="1", NO_COLOR="1", COLUMNS="200")
    # the first run joins the running Ray (auto with RAY_ADDRESS), the second starts its own (auto without)
    joined = {**base, "RAY_ADDRESS": local_ray.address_info["gcs_address"]}
    process = subprocess.Popen(
        _cli(raw, out), env=joined, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    said = signal_when(process, lambda: out.is_dir() and bool(story_folders(out)), signal.SIGKILL, within=240,
                       failure="no story was built in four minutes")  # fmt: skip
    address = local_ray.address_info["gcs_address"]
    assert f"perceiving on Ray at {address}: 1 worker on CPUs" in said, said
    # Ray ends the workers of a driver that is gone: the cluster's CPUs come back
    ray = sys.modules["ray"]
    end = time.monotonic() + 120
    while ray.available_resources().get("CPU", 0) < 2:
        assert time.monotonic() < end, ray.available_resources()
        time.sleep(0.5)
    first = story_folders(out)
    assert 1 <= len(first) < len(BUILT), first
    stamps = {name: (out / name / "story.md").stat().st_mtime_ns for name in first}
    again = subprocess.run(_cli(raw, out), env=base, capture_output=True, text=True, timeout=600)
    assert again.returncode == 1, again.stderr  # the broken story fails again
    assert "Traceback" not in again.stderr
    assert f"({len(first)} already there)" in again.stderr, again.stderr
    assert "perceiving on Ray at " in again.stderr and address not in again.stderr  # a Ray of its own
    assert {name: (out / name / "story.md").stat().st_mtime_ns for name in first} == stamps  # not rewritten
    made = dataset(out)
    assert not list(out.glob(".*.partial"))
    # the broken story is tried by every run that reaches it; the rest is the uninterrupted build's
    assert {e["story_id"] for e in made.pop("errors.jsonl")} == {"broken"}
    reference = {k: v for k, v in single.items() if k not in ("errors.jsonl", "report.json")}
    made.pop("report.json")
    assert made.keys() == reference.keys()
    for name in reference:
        assert made[name] == reference[name], difference(name, made[name], reference[name])
