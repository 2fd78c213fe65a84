"""Contrastive sequences: frames from distinct groups, entities kept per frame, never linked across."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from storyreasoning.data import SampleList, StorySample
from storyreasoning.data.contrastive import contrastive_sequences
from storyreasoning.errors import UsageError
from storyreasoning.format import Span, id_kind

from .fixtures import fixture_samples, image_bytes, lighthouse_texts


def varied_stories() -> list[StorySample]:
    """Six three-frame stories from four movies; names, frames and ids differ from story to story.

    Each frame records its movie as its ``group`` and its own time stamp as its ``source``
    (provenance, different for every frame, as the builder writes it).

    In every story, segment 2 also names obj3, which only Image 3 lists (a story may
    recall what is off-screen).
    """
    cot, story = lighthouse_texts()
    story = story.replace(
        "<gdo obj2>the heavy door</gdo>.",
        "<gdo obj2>the heavy door</gdo> under <gdo obj3>the dead lamp</gdo>.",
    )
    assert "the dead lamp" in story
    stories = []
    for i in range(6):
        # story i numbers its characters from i + 1 (char1 -> char{i+1}, char2 -> char{i+2})
        def shift(m: re.Match, i=i) -> str:
            return f"char{int(m.group(1)) + i}"

        c = re.sub(r"\bchar(\d+)\b", shift, cot).replace("Ines", f"Ines{i}").replace("Tomas", f"Tomas{i}")
        s = re.sub(r"\bchar(\d+)\b", shift, story).replace("Ines", f"Ines{i}").replace("Tomas", f"Tomas{i}")
        frames = [image_bytes(640, 480, 10 * i + k, "JPEG" if k == 1 else "PNG") for k in range(3)]
        movie = ["m0", "m1", "m2", "m3", "m1", "m0"][i]
        stories.append(
            StorySample(
                f"v{i}",
                frames,
                c,
                s,
                frame_meta=[{"group": movie, "source": f"{movie}.mkv@{10 * i + k}.00s"} for k in range(3)],
            )
        )
    return stories


@pytest.fixture(scope="module")
def stories() -> list[StorySample]:
    return varied_stories()


@pytest.fixture(scope="module")
def sequences(stories) -> list[StorySample]:
    return contrastive_sequences(stories, 20, length=(2, 4), seed=11)


def fingerprint(samples: list[StorySample]) -> list[tuple]:
    return [
        (s.story_id, s.frame_meta, s.cot_text, s.story_text, [f.bytes() for f in s.frames]) for s in samples
    ]


def test_same_seed_same_sequences_other_seed_others(stories):
    first = contrastive_sequences(stories, 8, length=3, seed=5)
    assert fingerprint(first) == fingerprint(contrastive_sequences(stories, 8, length=3, seed=5))
    other = contrastive_sequences(stories, 8, length=3, seed=6)
    assert [s.frame_meta for s in other] != [s.frame_meta for s in first]
    assert [s.story_id for s in first] == [f"contrastive-5-{n:05d}" for n in range(8)]
    assert all(s.meta == {"contrastive": True, "seed": 5} for s in first)


def test_frames_come_from_distinct_groups(stories, sequences):
    by_id = {s.story_id: s for s in stories}
    for sample in sequences:
        meta = sample.frame_meta
        assert meta is not None and len(meta) == sample.frame_count
        groups = [m["group"] for m in meta]
        assert len(set(groups)) == len(groups), groups
        assert groups == [by_id[m["story_id"]].frame_group(0) for m in meta]  # the source story's movie
        assert groups == [sample.frame_group(k) for k in range(sample.frame_count)]
        # the provenance of each frame is carried over, and decides nothing
        assert [m["source"] for m in meta] == [
            by_id[m["story_id"]].frame_source(m["frame"] - 1) for m in meta
        ]
        assert all(1 <= m["frame"] <= 3 for m in meta)


def test_a_group_is_never_drawn_twice_whatever_its_frames_provenance(stories):
    # every frame has its own source; the four movies are the only groups, so four-frame
    # sequences take one frame of each and two-frame ones never two of one movie
    for sample in contrastive_sequences(stories, 30, length=(2, 4), seed=7):
        groups = [m["group"] for m in sample.frame_meta]
        assert len(set(groups)) == len(groups), groups
    with pytest.raises(UsageError, match="4 distinct frame groups"):
        contrastive_sequences(stories, 1, length=5)


def test_datasets_written_before_groups_are_read_as_they_meant():
    legacy = [
        s.with_texts(s.cot_text, s.story_text, frame_meta=[{"source": m["group"]} for m in s.frame_meta])
        for s in varied_stories()
    ]  # our earlier contrastive inputs: the movie recorded as the source
    for sample in contrastive_sequences(legacy, 10, length=4, seed=2):
        assert sorted(m["group"] for m in sample.frame_meta) == ["m0", "m1", "m2", "m3"]
    built = [
        s.with_texts(
            s.cot_text,
            s.story_text,
            frame_meta=[{"source": f"raw/{s.story_id}/{k:02d}.png"} for k in range(3)],
        )
        for s in varied_stories()
    ]  # an earlier build: each frame's path, which names no group; the story is the group
    for sample in contrastive_sequences(built, 10, length=(2, 6), seed=2):
        ids = [m["story_id"] for m in sample.frame_meta]
        assert len(set(ids)) == len(ids) and [m["group"] for m in sample.frame_meta] == ids


def test_frame_group_and_frame_source():
    story = varied_stories()[0]
    assert (story.frame_group(1), story.frame_source(1)) == ("m0", "m0.mkv@1.00s")
    plain = story.with_texts(story.cot_text, story.story_text, frame_meta=None)
    assert (plain.frame_group(1), plain.frame_source(1)) == ("v0", "v0")
    old = [{"source": "film.mp4@12.40s"}, {"source": "/data/raw/v0/002.JPG"}, {"source": "m7", "shot": 2}]
    legacy = story.with_texts(story.cot_text, story.story_text, frame_meta=old)
    assert [legacy.frame_group(k) for k in range(3)] == ["film.mp4", "v0", "m7"]
    assert [legacy.frame_source(k) for k in range(3)] == ["film.mp4@12.40s", "/data/raw/v0/002.JPG", "m7"]
    empty = story.with_texts(story.cot_text, story.story_text, frame_meta=[{}, {"group": ""}, {"shot": 1}])
    assert [empty.frame_group(k) for k in range(3)] == ["v0", "v0", "v0"]


def test_length_is_honoured(stories, sequences):
    lengths = [s.frame_count for s in sequences]
    assert set(lengths) == {2, 3, 4}  # twenty draws from 2..4 reach both ends
    assert all(s.frame_count == 3 for s in contrastive_sequences(stories, 5, length=3, seed=1))
    assert [s.frame_count for s in contrastive_sequences(stories, 3, length=(4, 4), seed=1)] == [4, 4, 4]
    assert contrastive_sequences(stories, 0, length=2) == []


def test_every_source_once_when_the_length_uses_them_all(stories):
    # four movies: a four-frame sequence takes one frame from each, never two from m0 or m1
    for sample in contrastive_sequences(stories, 10, length=4, seed=2):
        assert sorted(m["group"] for m in sample.frame_meta) == ["m0", "m1", "m2", "m3"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"length": 5}, "the dataset has 4 distinct frame groups but sequences of 5 frames need 5"),
        ({"length": (2, 5)}, "4 distinct frame groups but sequences of 5 frames"),
        ({"length": 0}, "length must be at least 1"),
        ({"length": (3, 2)}, "min <= max"),
        ({"count": -1}, "count must not be negative"),
    ],
)
def test_clear_errors(stories, kwargs, message):
    args = {"count": 3, **kwargs}
    with pytest.raises(UsageError, match=re.escape(message)):
        contrastive_sequences(stories, args.pop("count"), **args)


def test_each_frame_keeps_its_source_entities_under_fresh_ids(stories, sequences):
    by_id = {s.story_id: s for s in stories}
    for sample in sequences:
        for k, meta in enumerate(sample.frame_meta, start=1):
            source = by_id[meta["story_id"]]
            theirs = source.cot.image(meta["frame"])
            ours = sample.cot.image(k)
            assert ours is not None and theirs is not None
            # the same rows in the same order, every field but the id unchanged (boxes included)
            mapping = {}
            for mine, orig in zip(
                (*ours.characters, *ours.objects), (*theirs.characters, *theirs.objects), strict=True
            ):
                assert {**mine.to_dict(), "id": None} == {**orig.to_dict(), "id": None}
                assert id_kind(mine.id) == id_kind(orig.id)
                mapping[orig.id] = mine.id
            assert len(set(mapping.values())) == len(mapping)
            assert [s.to_dict() for s in ours.settings] == [s.to_dict() for s in theirs.settings]
            assert len(ours.characters) == len(theirs.characters)
            # the story segment: the same words, tags renamed; a tag naming an entity the
            # frame does not list goes, its words stay
            segment, original = sample.story.segment(k), source.story.segment(meta["frame"])
            assert segment.plain == original.plain
            expected = []
            for span in original.spans:
                ids = tuple(mapping[i] for i in span.ids if i in mapping)
                if ids:
                    expected.append(Span(span.kind, ids, span.text))
            assert segment.spans == expected


def test_no_id_is_shared_across_frames(sequences):
    for sample in sequences:
        frames = [set(image.entity_ids()) for image in sample.cot.images]
        assert len(frames) == sample.frame_count
        for a in range(len(frames)):
            for b in range(a + 1, len(frames)):
                assert not frames[a] & frames[b], (sample.story_id, a + 1, b + 1, frames[a] & frames[b])


def test_story_tags_name_only_their_own_frame(sequences):
    recalled = 0
    for sample in sequences:
        for segment in sample.story.image_segments:
            listed = set(sample.cot.image(segment.image).entity_ids())
            named = {i for span in segment.spans for i in span.ids}
            assert named <= listed, (sample.story_id, segment.image, named - listed)
            recalled += "the dead lamp" in segment.plain
    assert recalled > 0  # some sequence took a frame 2, whose obj3 is off-screen


def test_sequences_validate(sequences):
    for sample in sequences:
        verdict = sample.telling().validate(image_sizes=sample.frame_sizes(), strict=True)
        assert verdict.well_structured, verdict.reasons
        assert not verdict.findings, verdict.findings
        # the narrative covers every frame and says the scenes are unrelated
        rows = sample.cot.narrative
        assert [r.phase for r in rows] == [
            "Introduction",
            "Development",
            "Conflict",
            "Turning Point",
            "Conclusion",
        ]
        assert sorted({n for r in rows for n in r.images}) == list(range(1, sample.frame_count + 1))
        assert all("unrelated" in r.description for r in rows)
        assert [i.number for i in sample.cot.images] == list(range(1, sample.frame_count + 1))
        assert [s.image for s in sample.story.image_segments] == list(range(1, sample.frame_count + 1))


def test_frames_are_the_source_images_byte_for_byte(stories, sequences):
    by_id = {s.story_id: s for s in stories}
    for sample in sequences:
        for frame, meta in zip(sample.frames, sample.frame_meta, strict=True):
            assert frame.bytes() == by_id[meta["story_id"]].frames[meta["frame"] - 1].bytes()


def test_stories_without_frame_meta_are_one_group_each(tmp_path):
    pytest.importorskip("pyarrow", reason="needs pyarrow: pip install 'storyreasoning[data]'")
    from storyreasoning.data import load_stories, write_parquet

    plain = [
        s.with_texts(s.cot_text, s.story_text, frame_meta=None) for s in fixture_samples(4)
    ]  # s01 and s03 no longer share a movie
    write_parquet(SampleList(plain), tmp_path / "pq", split="train")
    loaded = load_stories(tmp_path / "pq")
    assert loaded.has_frame_meta is False  # the groups come from the story ids, no row read
    made = contrastive_sequences(loaded, 6, length=4, seed=3)
    by_id = {s.story_id: s for s in plain}
    for sample in made:
        assert sorted(m["group"] for m in sample.frame_meta) == ["s00", "s01", "s02", "s03"]
        assert all(m["group"] == m["source"] == m["story_id"] for m in sample.frame_meta)
        for frame, meta in zip(sample.frames, sample.frame_meta, strict=True):
            assert frame.bytes() == by_id[meta["story_id"]].frames[meta["frame"] - 1].bytes()
    assert fingerprint(made) == fingerprint(
        contrastive_sequences(load_stories(tmp_path / "pq"), 6, length=4, seed=3)
    )


def test_cli_writes_the_sequences_of_the_api(stories, tmp_path):
    pytest.importorskip("datasets", reason="needs the datasets library: pip install 'storyreasoning[data]'")
    from storyreasoning.data import load_stories, write_parquet

    write_parquet(SampleList(stories), tmp_path / "src", split="train")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "storyreasoning",
            "data",
            "contrastive",
            str(tmp_path / "src"),
            str(tmp_path / "out"),
            "--count",
            "4",
            "--length",
            "2-3",
            "--seed",
            "9",
            "--to",
            "parquet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 4 contrastive sequences of 2-3 frames" in result.stdout
    written = list(load_stories(tmp_path / "out"))
    expected = contrastive_sequences(load_stories(tmp_path / "src"), 4, length=(2, 3), seed=9)
    assert fingerprint(written) == fingerprint(expected)  # the same in another process


def stories_of_lengths(lengths: list[int]) -> list[StorySample]:
    """Stories of the given frame counts (cut from the lighthouse), story k of its own group g{k}."""
    from storyreasoning.data.transform import cut_frames

    cot, story = lighthouse_texts()
    out = []
    for k, n in enumerate(lengths):
        frames = [image_bytes(64, 48, 7 * k + i) for i in range(3)]
        full = StorySample(f"L{k}", frames, cot, story, frame_meta=[{"group": f"g{k}"} for _ in range(3)])
        out.append(cut_frames(full, n))
    return out


def test_lengths_are_drawn_from_the_datasets_own_stories_by_default(stories):
    # the default draws each sequence's length from the stories: here all have three frames
    assert {s.frame_count for s in contrastive_sequences(stories, 10, seed=1)} == {3}
    varied = stories_of_lengths([1, 1, 2, 2, 3, 3])
    drawn = contrastive_sequences(varied, 300, seed=4)
    counts = {n: sum(s.frame_count == n for s in drawn) for n in (1, 2, 3)}
    # a third each
    assert sum(counts.values()) == 300 and all(70 <= c <= 130 for c in counts.values()), counts
    assert fingerprint(drawn[:20]) == fingerprint(contrastive_sequences(varied, 20, seed=4))
    assert fingerprint(drawn[:20]) == fingerprint(contrastive_sequences(varied, 20, length="real", seed=4))
    # explicit lengths still work as before
    assert {s.frame_count for s in contrastive_sequences(varied, 10, length=2, seed=4)} == {2}


def test_real_lengths_longer_than_the_groups_allow_are_not_drawn():
    # four groups and a five-frame story: five frames from distinct groups cannot be drawn
    varied = stories_of_lengths([3, 3, 3, 3])
    varied[0] = StorySample("long", varied[1].frames * 2, varied[1].cot_text, varied[1].story_text,
                            frame_meta=[{"group": "g0"}] * 6)  # fmt: skip
    assert varied[0].frame_count == 6
    assert {s.frame_count for s in contrastive_sequences(varied, 30, seed=2)} == {3}
    with pytest.raises(UsageError, match="every story has more frames"):
        contrastive_sequences(varied[:1], 3, seed=2)
    with pytest.raises(UsageError, match="length must be 'real'"):
        contrastive_sequences(varied, 3, length="realistic")


def test_real_lengths_without_frame_groups_read_every_story(tmp_path):
    pytest.importorskip("pyarrow", reason="needs pyarrow: pip install 'storyreasoning[data]'")
    from storyreasoning.data import load_stories, write_parquet

    plain = [
        s.with_texts(s.cot_text, s.story_text, frame_meta=None) for s in stories_of_lengths([1, 2, 2, 3])
    ]
    write_parquet(SampleList(plain), tmp_path / "pq", split="train")
    loaded = load_stories(tmp_path / "pq")
    assert loaded.has_frame_meta is False
    made = contrastive_sequences(loaded, 40, seed=3)
    assert {s.frame_count for s in made} == {1, 2, 3}
    assert fingerprint(made) == fingerprint(contrastive_sequences(load_stories(tmp_path / "pq"), 40, seed=3))


def test_cli_draws_real_lengths_by_default(tmp_path):
    pytest.importorskip("datasets", reason="needs the datasets library: pip install 'storyreasoning[data]'")
    from storyreasoning.data import load_stories, write_parquet

    write_parquet(SampleList(stories_of_lengths([1, 2, 2, 3])), tmp_path / "src", split="train")
    result = subprocess.run(
        [sys.executable, "-m", "storyreasoning", "data", "contrastive", str(tmp_path / "src"), str(tmp_path / "out"),
         "--count", "6", "--seed", "9", "--to", "parquet"],
        capture_output=True, text=True, timeout=120,
        env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        "wrote 6 contrastive sequences of" in result.stdout
        and "lengths drawn from the dataset's stories" in result.stdout
    )
    expected = contrastive_sequences(load_stories(tmp_path / "src"), 6, seed=9)
    assert fingerprint(list(load_stories(tmp_path / "out"))) == fingerprint(expected)
