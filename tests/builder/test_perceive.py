"""The builder's model perception: identity assignment (pure logic) and real detector and embedder models.

The models are a tiny random DETR and a tiny random ViT built offline; their detections
are random but real (the transformers post-processing, boxes in original pixels), and
identical crops give identical features, which is what re-identification must link.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from storyreasoning.builder.perceive import Detection, assign, clean_label, suppress
from storyreasoning.format.box import Box

from ..conftest import one_error_line, require_transformers, run_cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "stories"


def det(label: str, box=(0, 0, 10, 10), feature=None, score=0.9) -> Detection:
    return Detection(label, Box(*box), score, feature)


# -- assignment ---------------------------------------------------------------------------------------------


def test_features_link_the_same_entity_across_frames():
    a, b = [1.0, 0.0], [0.0, 1.0]
    frames = [
        [det("person", feature=a), det("cup", feature=b)],
        [det("cup", feature=b), det("person", feature=a)],
        [det("person", feature=b)],  # a person who looks like nobody seen before
    ]
    ids = [[i.entity_id for i in row] for row in assign(frames, threshold=0.9)]
    assert ids == [["char1", "obj1"], ["obj1", "char1"], ["char2"]]


def test_one_detection_per_identity_per_frame_best_pair_first():
    a = [1.0, 0.0]
    close = [0.99, 0.141]  # cosine 0.99 with a
    frames = [[det("person", feature=a)], [det("person", feature=close), det("person", feature=a)]]
    ids = [[i.entity_id for i in row] for row in assign(frames, threshold=0.9)]
    assert ids == [["char1"], ["char2", "char1"]]  # the exact match wins; the other is someone new


def test_labels_never_mix_and_ids_count_per_kind():
    f = [1.0, 0.0]
    frames = [
        [det("cup", feature=f), det("dog", feature=f), det("person", feature=f)],
        [det("dog", feature=f)],
    ]
    ids = [[i.entity_id for i in row] for row in assign(frames, threshold=0.5)]
    assert ids == [["obj1", "obj2", "char1"], ["obj2"]]


def test_without_features_tracking_follows_overlap_with_the_previous_frame():
    frames = [
        [det("person", (0, 0, 100, 100))],
        [det("person", (10, 0, 110, 100))],  # IoU 0.82 with frame 1: the same
        [det("person", (300, 0, 400, 100))],  # far away: someone new
        [],
        [det("person", (300, 0, 400, 100))],  # a gap breaks the track
    ]
    ids = [[i.entity_id for i in row] for row in assign(frames)]
    assert ids == [["char1"], ["char1"], ["char2"], [], ["char3"]]


def test_labels_and_suppression():
    assert clean_label("wall-other-merged") == "wall" and clean_label("Dining_Table") == "dining table"
    kept = suppress(
        [
            det("cup", (0, 0, 10, 10), score=0.8),
            det("cup", (1, 0, 11, 10), score=0.9),
            det("dog", (0, 0, 10, 10)),
        ]
    )
    assert sorted((d.label, d.score) for d in kept) == [("cup", 0.9), ("dog", 0.9)]  # the weaker cup overlaps


# -- real models ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    require_transformers()
    pytest.importorskip(
        "cv2", reason="the builder's perception needs OpenCV: pip install 'storyreasoning[vision]'"
    )
    from storyreasoning.testing import build_tiny_detector, build_tiny_embedder

    root = tmp_path_factory.mktemp("perception")
    return {
        "people": build_tiny_detector(root / "people", labels=("person",)),
        "cups": build_tiny_detector(root / "cups", labels=("cup",)),
        "embedder": build_tiny_embedder(root / "embedder"),
    }


@pytest.fixture
def repeated(tmp_path) -> Path:
    """One story whose three frames are the same picture: whatever is detected must keep its id."""
    folder = tmp_path / "raw" / "same"
    folder.mkdir(parents=True)
    for k in (1, 2, 3):
        shutil.copy(EXAMPLES / "lighthouse" / "01.png", folder / f"{k:02d}.png")
    return folder


def test_detected_people_keep_one_id_across_identical_frames(models, repeated):
    from storyreasoning.builder.perceive import ModelPerceiver

    perceiver = ModelPerceiver(str(models["people"]), embedder=str(models["embedder"]), threshold=0.0)
    frames = perceiver.see(sorted(repeated.glob("*.png")))
    first = [(p.char_id, p.box) for p in frames[0].people]
    assert first, "the tiny detector found nothing at threshold 0"
    for frame in frames[1:]:
        assert [(p.char_id, p.box) for p in frame.people] == first
        assert all(p.first_seen == 1 and p.in_previous for p in frame.people)
    for p in frames[0].people:
        assert 0 <= p.box.x1 < p.box.x2 <= 640 and 0 <= p.box.y1 < p.box.y2 <= 480
    info = perceiver.describe()
    assert info["detector_class"] == "DetrForObjectDetection" and info["reid"] == "cosine >= 0.85"


@pytest.mark.slow  # heavy end-to-end run: the slow pass (.ci/run) keeps it
def test_a_model_build_is_a_valid_dataset_with_objects(models, repeated, tmp_path):
    from storyreasoning.data import load_stories

    out = tmp_path / "built"
    result = run_cli(
        "build", str(repeated.parent), "--out", str(out), "--detector", str(models["cups"]),
        "--embedder", str(models["embedder"]), "--detector-threshold", "0",
        "--no-require-person",  # a cup detector sees no one; the story is about its objects
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (sample,) = list(load_stories(str(out)))
    assert sample.telling().validate(n_images=3, image_sizes=sample.frame_sizes()).well_structured
    objects = [[o.id for o in image.objects if o.id.startswith("obj")] for image in sample.cot.images]
    assert objects[0] and objects[0] == objects[1] == objects[2]
    assert "Also in view:" in sample.story_text and f"<gdo {objects[0][0]}>" in sample.story_text
    assert sample.cot.images[0].characters == []  # a cup detector sees no people
    build = (out / "build.json").read_text()
    assert '"perceiver": "models"' in build and str(models["cups"]) in build


@pytest.mark.slow  # heavy end-to-end run: the slow pass (.ci/run) keeps it
def test_perception_options_are_checked(models, tmp_path):
    lonely = run_cli(
        "build", str(EXAMPLES), "--out", str(tmp_path / "o"), "--embedder", str(models["embedder"])
    )
    assert lonely.returncode == 2 and "give --detector too" in lonely.stderr
    missing = run_cli(
        "build", str(EXAMPLES), "--out", str(tmp_path / "o"), "--detector", str(tmp_path / "nowhere")
    )
    assert (
        missing.returncode == 1
        and "cannot load --detector" in missing.stderr
        and "Traceback" not in missing.stderr
    )


def test_a_wrong_device_is_one_line_before_any_work(models, tmp_path):
    import torch

    out = tmp_path / "o"
    # with a detector torch used to raise its own RuntimeError (a traceback); without one it went unchecked
    for extra in (["--detector", str(models["people"])], []):
        result = run_cli(
            "build", str(EXAMPLES), "--out", str(out), "--faces", "none", "--device", "banana", *extra
        )
        assert "--device banana is not a device: use auto, cpu" in one_error_line(result)
        assert not out.exists()
    from storyreasoning.builder.settings import BuildSettings
    from storyreasoning.errors import UsageError

    with pytest.raises(UsageError, match="--device banana"):  # said with the settings: before videos are cut
        BuildSettings(frames=EXAMPLES, out=out, device="banana")
    if not torch.cuda.is_available():
        result = run_cli(
            "build", str(EXAMPLES), "--out", str(out), "--detector", str(models["people"]), "--device", "cuda"
        )
        assert "--device cuda: no CUDA GPU is visible to torch" in one_error_line(result)
        assert not out.exists()


def test_a_detector_needing_a_missing_package_says_which(models, tmp_path):
    import importlib.util
    import json

    if importlib.util.find_spec("timm") is not None:
        pytest.skip("timm is installed here: the DETR timm backbone loads")
    from storyreasoning.builder.perceive import ModelPerceiver
    from storyreasoning.errors import StoryReasoningError

    folder = tmp_path / "timm-detr"
    shutil.copytree(models["people"], folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(use_timm_backbone=True, backbone="resnet18")
    config.pop("backbone_config", None)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(StoryReasoningError, match=r"needs a package that is not installed.*pip install timm"):
        ModelPerceiver(str(folder))
