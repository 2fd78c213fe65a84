"""Built datasets record each frame's identity group apart from its provenance, and the reward and the
contrastive sequences read the group: a built story's reference scores full re-identification against
itself, and contrastive sequences drawn from a built dataset never take two frames of one group.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip(
    "cv2", reason="the builder's perception needs OpenCV: pip install 'storyreasoning[vision]'"
)

from storyreasoning.data import load_stories
from storyreasoning.data.contrastive import contrastive_sequences
from storyreasoning.data.folder import frame_files
from storyreasoning.train.reward import StoryScorer

from ..conftest import run_cli
from .test_video import write_video

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "stories"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """``storyreasoning build`` over the examples' frames (one folder per story)."""
    root = tmp_path_factory.mktemp("groups")
    raw = root / "raw"
    for story in ("lighthouse", "pioneers", "cat-and-coffee"):
        (raw / story).mkdir(parents=True)
        for frame in frame_files(EXAMPLES / story):
            shutil.copy(frame, raw / story / frame.name)
    # cat-and-coffee shows no person: kept, as the test needs three groups
    result = run_cli("build", str(raw), "--out", str(root / "built"), "--no-require-person")
    assert result.returncode == 0, result.stderr
    return root / "built"


@pytest.fixture(scope="module")
def built_videos(tmp_path_factory) -> Path:
    """``storyreasoning build`` over two videos: a.avi cut into two stories, b.avi into one."""
    root = tmp_path_factory.mktemp("videos")
    (root / "videos").mkdir()
    write_video(root / "videos" / "a.avi", [8, 8, 8, 8])
    write_video(root / "videos" / "b.avi", [8, 8])
    # --scenes none: each solid-colour shot would be a scene of its own; and no shot shows a person
    options = ("--frames-per-story", "2", "--scenes", "none", "--no-require-person")
    result = run_cli("build", str(root / "videos"), "--out", str(root / "built"), *options)
    assert result.returncode == 0, result.stderr
    return root / "built"


def test_a_built_story_records_its_group_and_each_frames_provenance(built):
    for sample in load_stories(str(built)):
        assert [m["group"] for m in sample.frame_meta] == [sample.story_id] * sample.frame_count
        assert [sample.frame_group(k) for k in range(sample.frame_count)] == [
            sample.story_id
        ] * sample.frame_count
        # named from the folder given to build (raw/story/01.jpg), never by a local path
        sources = [m["source"] for m in sample.frame_meta]
        assert all(s.startswith(f"raw/{sample.story_id}/") for s in sources)
        assert [f.bytes() for f in sample.frames] == [(built.parent / s).read_bytes() for s in sources]
        assert [sample.frame_source(k) for k in range(sample.frame_count)] == sources


def test_key_frames_of_one_video_are_one_group(built_videos):
    stories = {s.story_id: s for s in load_stories(str(built_videos))}
    assert sorted(stories) == ["a-001", "a-002", "b-001"]
    for sample in stories.values():
        video = sample.story_id.split("-")[0] + ".avi"
        assert [m["group"] for m in sample.frame_meta] == [video] * sample.frame_count
        assert all(re.fullmatch(rf"{re.escape(video)}@\d+\.\d\ds", m["source"]) for m in sample.frame_meta)


def test_a_built_storys_own_reference_scores_full_reidentification(built, built_videos):
    linked = 0
    for dataset in (built, built_videos):
        for sample in load_stories(str(dataset)):
            reward = StoryScorer(sample)(sample.output_text())
            assert reward.structure == 1.0, reward.details["reasons"]
            assert reward.reid == 1.0 and reward.details["cross_group_links"] == 0, (sample.story_id, reward)
            linked += reward.details["links_reference"]
    assert linked > 0  # some built story links people across frames: the check is not vacuous


def test_on_a_built_story_splitting_identities_ranks_below_its_reference(built):
    sample = next(s for s in load_stories(str(built)) if StoryScorer(s)(s.output_text()).details["links"])
    score = StoryScorer(sample)
    reference = sample.output_text()
    # every appearance of an entity after its first frame gets an id of its own: nothing re-identified
    seen: dict[str, int] = {}
    fresh = iter(range(900, 10_000))
    renamed = {}
    for image in sample.cot.images:
        for eid in image.entity_ids():
            if eid in seen and seen[eid] != image.number:
                renamed[(image.number, eid)] = (
                    f"char{next(fresh)}" if eid.startswith("char") else f"obj{next(fresh)}"
                )
            seen.setdefault(eid, image.number)
    cot = sample.cot_text
    story = sample.story_text
    for (number, old), new in renamed.items():
        section = re.search(rf"## Image {number}\b.*?(?=## Image|## Narrative|\Z)", cot, re.S)
        cot = (
            cot[: section.start()]
            + re.sub(rf"\| {old} \|", f"| {new} |", section.group())
            + cot[section.end() :]
        )
        segment = re.search(rf"<gdi image{number}>.*?</gdi>", story, re.S)
        changed = re.sub(rf"(<gd[oa][^>]*?)\b{old}\b", rf"\g<1>{new}", segment.group())
        story = story[: segment.start()] + changed + story[segment.end() :]
    split = f"<think>\n{cot}\n</think>\n{story}"
    good, bad = score(reference), score(split)
    assert bad.structure == 1.0 and bad.details["links"] == 0
    assert good.reid == 1.0 and bad.reid == 0.0 and good.total > bad.total


def test_contrastive_sequences_of_a_built_dataset_never_mix_frames_of_one_group(built, built_videos):
    for dataset, length in ((built, (2, 3)), (built_videos, 2)):
        stories = load_stories(str(dataset))
        for sample in contrastive_sequences(stories, 40, length=length, seed=1):
            groups = [m["group"] for m in sample.frame_meta]
            assert len(set(groups)) == len(groups), (sample.story_id, sample.frame_meta)
            if dataset is built:  # one story, one group
                assert groups == [m["story_id"] for m in sample.frame_meta]
            else:  # the two stories of a.avi are one group
                assert {m["story_id"][0] for m in sample.frame_meta} == {"a", "b"}
            # the sequence's own reference links nothing, so it scores full re-identification
            assert StoryScorer(sample)(sample.output_text()).reid == 1.0
