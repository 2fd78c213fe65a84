"""Batched perception sees what perception one image at a time sees.

The detector, the embedder and the segmenter take the frames of a story ``batch`` at a
time (``--perception-batch``). A DETR-style processor pads a batch to its largest image,
which changes the outputs of the others, so :func:`forward_batches` only stacks images
the processor made the same shape on their own, and nothing is padded. These tests run
the tiny models built offline on real photographs of mixed sizes (and scaled copies that
the processor brings to one shape) and compare batched with unbatched perception: the
same detections, boxes and ids; scores and features equal to float rounding.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ..conftest import require_transformers, run_cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "stories"
FACES = Path(__file__).resolve().parent / "data" / "faces"
CLOSE = 1e-5  # what float rounding may change in a score or a feature between batch sizes


def needs_models() -> None:
    require_transformers()
    pytest.importorskip(
        "cv2", reason="the builder's perception needs OpenCV: pip install 'storyreasoning[vision]'"
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    needs_models()
    from storyreasoning.testing import build_tiny_detector, build_tiny_embedder, build_tiny_segmenter

    root = tmp_path_factory.mktemp("batching")
    return {
        "detector": build_tiny_detector(root / "detector", labels=("person", "cup")),
        "embedder": build_tiny_embedder(root / "embedder"),
        "segmenter": build_tiny_segmenter(root / "segmenter"),
    }


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> list[Path]:
    """Seven frames of five sizes: 640x480 twice, its half-size copy (which the tiny processors bring to
    the shape of the 640x480 frames), 512x512, 640x400, 600x400 and a portrait."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("mixed")
    sources = [
        EXAMPLES / "lighthouse" / "01.png",
        EXAMPLES / "pioneers" / "01.jpg",
        EXAMPLES / "lighthouse" / "02.png",
        EXAMPLES / "pioneers" / "03.jpg",
        EXAMPLES / "cat-and-coffee" / "02.jpg",
        FACES / "obama-1.jpg",
    ]
    frames = []
    for k, source in enumerate(sources, start=1):
        frames.append(folder / f"{k:02d}{source.suffix}")
        shutil.copy(source, frames[-1])
    half = Image.open(EXAMPLES / "lighthouse" / "03.png").convert("RGB").resize((320, 240), Image.LANCZOS)
    frames.append(folder / "07.png")
    half.save(frames[-1])
    return frames


def pils(frames):
    from storyreasoning.tell.baseline import open_rgb

    return [open_rgb(frame, k) for k, frame in enumerate(frames, start=1)]


def test_batches_hold_only_images_the_processor_made_one_shape_and_nothing_is_padded(models, mixed):
    import torch
    from transformers import AutoImageProcessor

    from storyreasoning.builder.crops import square_crop
    from storyreasoning.builder.perceive import forward_batches
    from storyreasoning.format.box import Box

    detr = AutoImageProcessor.from_pretrained(models["detector"])  # pads a batch to its largest image
    images = pils(mixed)
    batches = list(forward_batches(detr, images, 2, "cpu"))
    assert sorted(i for indices, _ in batches for i in indices) == list(
        range(len(images))
    )  # every image once
    shapes = {}
    for indices, inputs in batches:
        assert 1 <= len(indices) <= 2 and indices == sorted(indices)
        for row, k in enumerate(indices):  # each image's inputs are those it gets alone, bit for bit
            alone = detr(images=[images[k]], return_tensors="pt")
            assert torch.equal(inputs["pixel_values"][row], alone["pixel_values"][0])
            assert torch.equal(inputs["pixel_mask"][row], alone["pixel_mask"][0])
            shapes[k] = tuple(inputs["pixel_values"].shape[1:])
    # the two 640x480 frames and the half-size copy are one shape, so they went together (two and one)
    assert shapes[0] == shapes[2] == shapes[6] and shapes[0] != shapes[1]
    assert [indices for indices, _ in batches][:2] == [[0, 2], [6]]

    # an embedder's processor pads nothing (a fixed square): crops of any size are prepared together
    vit = AutoImageProcessor.from_pretrained(models["embedder"])
    crops = [square_crop(images[0], Box(0, 0, w, 2 * w)) for w in (20, 33, 100, 150)]
    ((indices, inputs),) = list(forward_batches(vit, crops, 8, "cpu"))
    assert indices == [0, 1, 2, 3]
    for row, crop in enumerate(crops):
        assert torch.equal(
            inputs["pixel_values"][row], vit(images=[crop], return_tensors="pt")["pixel_values"][0]
        )
    with pytest.raises(Exception, match="--perception-batch"):
        list(forward_batches(detr, images, 0, "cpu"))


def test_batched_detections_features_and_ids_are_those_of_one_image_at_a_time(models, mixed):
    from storyreasoning.builder.perceive import ModelPerceiver

    def perceiver(batch):
        return ModelPerceiver(
            str(models["detector"]),
            embedder=str(models["embedder"]),
            threshold=0.0,
            batch=batch,
            device="cpu",
        )

    one, eight = perceiver(1), perceiver(8)
    images = pils(mixed)
    alone = [one.detect(image) for image in images]  # the per-image path, one forward per frame
    for image, dets in zip(images, alone, strict=True):
        one.embed(image, dets)
    together = eight.detect_many(images)
    eight.embed_many(images, together)
    assert all(alone)  # something to compare in every frame
    for a, b in zip(alone, together, strict=True):
        assert [(d.label, d.box) for d in a] == [(d.label, d.box) for d in b]
        for da, db in zip(a, b, strict=True):
            assert da.score == pytest.approx(db.score, abs=CLOSE)
            assert da.feature == pytest.approx(db.feature, abs=CLOSE)

    def seen(frames):
        return [
            (
                [(p.char_id, p.box, p.first_seen, p.in_previous) for p in f.people],
                [(o.entity_id, o.label, o.box, o.first_seen) for o in f.objects],
            )
            for f in frames
        ]

    by_one, by_eight = seen(one.see(mixed)), seen(eight.see(mixed))
    assert by_one == by_eight
    assert any(people for people, _ in by_one) and any(objects for _, objects in by_one)
    assert one.describe() == eight.describe()  # how it ran is not what it found: build.json cannot tell


@pytest.mark.parametrize("kind", ["mask2former", "oneformer"])
def test_batched_segmentation_gives_the_regions_of_one_image_at_a_time(models, mixed, kind, tmp_path):
    """The same regions, labels and boxes. A region's area may differ by a pixel or two of the map: the tiny
    segmenters' mask logits are scaled up 300 times (to be decisive), so float rounding of the order of 1e-6
    can flip a pixel where two segments nearly tie (one pixel in one of these frames, in a 1-pixel piece)."""
    from storyreasoning.builder.background import PanopticBackgrounds
    from storyreasoning.testing import build_tiny_segmenter

    folder = (
        models["segmenter"] if kind == "mask2former" else build_tiny_segmenter(tmp_path / kind, kind=kind)
    )
    one = PanopticBackgrounds(str(folder), batch=1, device="cpu")
    eight = PanopticBackgrounds(str(folder), batch=8, device="cpu")
    images = pils(mixed)
    alone = [one.regions(image) for image in images]
    together = eight.regions_many(images)
    assert any(alone), "the tiny segmenter found no stuff"
    for a, b in zip(alone, together, strict=True):
        assert [(r.label, r.box) for r in a] == [(r.label, r.box) for r in b]
        assert [r.area for r in a] == pytest.approx([r.area for r in b], abs=1e-4)
        assert [r.score for r in a] == pytest.approx([r.score for r in b], abs=CLOSE)


def test_faces_over_an_embedder_link_the_same_people_batched(models, tmp_path):
    from storyreasoning.builder.faces import faces_available, with_faces
    from storyreasoning.builder.perceive import ModelPerceiver

    if not faces_available():
        pytest.skip("dlib and its face models are not installed: pip install 'storyreasoning[faces]'")
    from PIL import Image

    frames = []
    for k, name in enumerate(["obama-1", "biden-1", "obama-2"], start=1):
        frames.append(tmp_path / f"{k:02d}.jpg")
        shutil.copy(FACES / f"{name}.jpg", frames[-1])
    small = Image.open(FACES / "obama-1.jpg").convert("RGB").resize((256, 320), Image.LANCZOS)
    frames.append(tmp_path / "04.png")
    small.save(frames[-1])

    def people(batch):
        base = ModelPerceiver(
            str(models["detector"]),
            embedder=str(models["embedder"]),
            threshold=0.0,
            batch=batch,
            device="cpu",
        )
        seen = with_faces(base, backend="dlib").see(frames)
        return [[(p.char_id, p.box, p.face, p.source, p.first_seen) for p in f.people] for f in seen]

    one, eight = people(1), people(8)
    assert one == eight
    ids = [[char for char, *_ in frame] for frame in one]
    assert any(p[2] is not None for frame in one for p in frame)  # faces were found and decided
    assert ids[0] and set(ids[0]) & set(ids[2])  # Obama of frame 1 is Obama of frame 3


def test_models_load_once_and_are_not_read_again_for_each_story(models, mixed, tmp_path):
    """The build's perceiver (detector, embedder, segmenter) reads its model folders when it is made, and never
    again: with the folders gone, it sees two more stories, and sees the first as it did."""
    from storyreasoning.builder.perceivers import make_perceiver
    from storyreasoning.builder.settings import BuildSettings

    copies = {}
    for role, folder in models.items():
        copies[role] = tmp_path / role
        shutil.copytree(folder, copies[role])
    settings = BuildSettings(
        frames=tmp_path, out=tmp_path / "out", detector=str(copies["detector"]), embedder=str(copies["embedder"]),
        segmenter=str(copies["segmenter"]), detector_threshold=0.0, faces="none", perception_batch=4,
        device="cpu",
    )  # fmt: skip
    perceiver = make_perceiver(settings)
    described = perceiver.describe()  # what build.json records, worked out once before the stories

    def seen(frames):
        return [
            (
                [(p.char_id, p.box) for p in f.people],
                [(o.entity_id, o.box) for o in f.objects],
                [(b.entity_id, b.label, b.box) for b in f.backgrounds],
            )
            for f in perceiver.see(frames)
        ]

    first = seen(mixed[:3])
    for folder in copies.values():
        shutil.rmtree(folder)
    assert seen(mixed[3:]) and seen(mixed[:3]) == first
    assert perceiver.describe() == described


def test_the_batch_and_the_landmark_requests_are_how_a_build_runs_not_what_it_makes(tmp_path):
    from storyreasoning.builder.settings import BuildSettings
    from storyreasoning.settings import data_record, record

    settings = BuildSettings(
        frames=tmp_path, out=tmp_path / "out", perception_batch=2, landmarks_concurrency=3
    )
    assert record(settings)["perception_batch"] == 2 and record(settings)["landmarks_concurrency"] == 3
    kept = data_record(settings)  # what a resumed build must keep
    assert "perception_batch" not in kept and "landmarks_concurrency" not in kept
    assert BuildSettings(frames=tmp_path, out=tmp_path / "out").perception_batch == 8


def test_a_batch_below_one_is_one_line(tmp_path):
    result = run_cli("build", str(tmp_path), "--out", str(tmp_path / "out"), "--perception-batch", "0")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--perception-batch" in result.stderr
