"""Several candidates a story with local weights (``tell-dataset --model PATH --samples N``).

The real generate of the tiny Qwen2.5-VL, asked once a batch with ``num_return_sequences``; each
candidate recorded as the endpoint path records them (the first in the record, the rest in
``other_samples``), and greedy decoding, which would give N identical candidates, refused before
the model loads.
"""

from __future__ import annotations

import json

import pytest

from ..conftest import require_transformers, run_cli
from ..data.fixtures import image_bytes, lighthouse_texts

require_transformers()

from storyreasoning.data import StorySample, load_stories, write_folders  # noqa: E402
from storyreasoning.errors import UsageError  # noqa: E402
from storyreasoning.format.stream import parse_output  # noqa: E402
from storyreasoning.tell import Sampling  # noqa: E402
from storyreasoning.tell.local import TransformersTeller  # noqa: E402
from storyreasoning.tell.run import SAMPLE_FIELDS, read_run, record_samples, tell_dataset  # noqa: E402

SAMPLED = Sampling(temperature=1.0, top_p=1.0, max_new_tokens=6, seed=3)
N = 3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Three two-frame stories of real PNG frames, of different sizes (a left-padded batch)."""
    cot, story = lighthouse_texts()
    root = tmp_path_factory.mktemp("local-samples") / "ds"
    samples = [
        StorySample(f"st{i}", [image_bytes(56 + 8 * i, 40, i), image_bytes(48, 44, i + 1)], cot, story)
        for i in range(3)
    ]
    write_folders(samples, root)
    return root


class Counted:
    """The model's own generate, counted: how many calls, with which ``num_return_sequences``."""

    def __init__(self, teller: TransformersTeller) -> None:
        self.calls: list[int | None] = []
        self._generate = teller.net.generate
        teller.net.generate = self

    def __call__(self, *args, **kwargs):
        self.calls.append(kwargs.get("num_return_sequences"))
        return self._generate(*args, **kwargs)


def test_a_run_records_n_candidates_from_one_generate_call_a_batch(tiny_qwen, dataset, tmp_path):
    teller = TransformersTeller(str(tiny_qwen), batch_size=2)
    counted = Counted(teller)
    stories = load_stories(dataset)
    summary = tell_dataset(stories, teller, tmp_path / "run", sampling=SAMPLED, samples=N)
    assert (summary.done, summary.failed) == (3, 0)
    assert counted.calls == [N, N]  # two batches (2 stories, then 1), each one call for all candidates
    manifest, records = read_run(tmp_path / "run")
    assert manifest["samples"] == N
    assert [r["story_id"] for r in records] == ["st0", "st1", "st2"]
    texts = []
    for record in records:
        sizes = [frame.size() for frame in stories.get(record["story_id"]).frames]
        assert len(record["other_samples"]) == N - 1  # as the endpoint path records them
        candidates = record_samples(record)
        assert len(candidates) == N
        for k, candidate in enumerate(candidates):
            assert set(candidate) == set(SAMPLE_FIELDS)
            assert candidate["meta"]["sample"] == k
            assert candidate["meta"]["request"] == {"num_return_sequences": N}
            assert candidate["meta"]["usage"]["completion_tokens"] <= SAMPLED.max_new_tokens
            parsed = parse_output(
                candidate["raw"]
            )  # each candidate's own text, parsed and checked on its own
            assert candidate["parse"] == parsed.to_dict(parsed.validate(n_images=2, image_sizes=sizes))
            assert candidate["well_structured"] is False  # six tokens of a random model
            texts.append(candidate["raw"])
    assert len(set(texts)) > 1  # sampled: not one text repeated


def test_tell_samples_is_seeded_and_greedy_is_refused(tiny_qwen, dataset):
    teller = TransformersTeller(str(tiny_qwen))
    story = load_stories(dataset).get("st1")
    first = [t.raw for t in teller.tell_samples(story.frames, sampling=SAMPLED, n=N)]
    again = [t.raw for t in teller.tell_samples(story.frames, sampling=SAMPLED, n=N)]
    assert first == again and len(first) == N  # the same seed, the same candidates
    with pytest.raises(UsageError, match=r"3 identical candidates.*--temperature above 0"):
        teller.tell_samples(story.frames, sampling=Sampling(temperature=0, max_new_tokens=4), n=N)


def test_the_command_refuses_greedy_samples_before_loading(tiny_qwen, dataset, tmp_path):
    out = tmp_path / "run"
    args = ("tell-dataset", str(dataset), "--model", str(tiny_qwen), "--out", str(out), "--samples", "2")
    refused = run_cli(*args, "--temperature", "0")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "--samples 2 with --temperature 0 (greedy decoding) would give 2 identical" in " ".join(
        refused.stderr.split()
    )
    assert not out.exists()  # nothing made
    told = run_cli(*args, "--temperature", "0.9", "--seed", "1", "--max-new-tokens", "4", "--limit", "1")
    assert told.returncode == 0, told.stderr
    record = json.loads((out / "records.jsonl").read_text().splitlines()[0])
    assert len(record_samples(record)) == 2


def test_a_model_that_decodes_greedily_whatever_the_temperature_is_said(tiny_qwen, dataset, tmp_path):
    """Qwen2.5-VL-Instruct's generation_config.json sets ``top_k: 1``, which ``--temperature`` leaves in
    force: every candidate of a story was one text, recorded without a word."""
    import shutil

    model = tmp_path / "top-k-1"
    shutil.copytree(tiny_qwen, model)
    config = json.loads((model / "generation_config.json").read_text())
    (model / "generation_config.json").write_text(json.dumps({**config, "do_sample": True, "top_k": 1}))
    said: list[str] = []
    stories = load_stories(dataset)
    tell_dataset(stories, TransformersTeller(str(model)), tmp_path / "run", sampling=SAMPLED, samples=N, limit=2,
                 say=said.append)  # fmt: skip
    assert said == [
        f"warning: the {N} candidates of story st0 are the same text at --temperature 1; the model decodes "
        "greedily (a top_k of 1 in its generation_config.json), so candidates of one story may never differ: "
        "preference pairs need ones that do"
    ]
