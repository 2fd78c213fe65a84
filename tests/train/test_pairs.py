"""Pairs: candidates scored under the conditioning they were told with, truncated ones left out, several per story."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from storyreasoning.data import load_stories
from storyreasoning.errors import UsageError
from storyreasoning.evaluate.runs import RunOutputs, load_outputs
from storyreasoning.format.stream import parse_output
from storyreasoning.tell.base import Prompt, Sampling, Teller, Usage
from storyreasoning.tell.run import tell_dataset
from storyreasoning.train.pairs import Conditioning, build_pairs, read_pairs
from storyreasoning.train.reward import StoryScorer

from ..conftest import one_error_line, run_cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "stories"
PIXELS = (28 * 28 * 4, 28 * 28 * 9)


class Replay(Teller):
    """A teller answering with prepared outputs and finish reasons, in order (a run in the real format)."""

    backend = "replay"
    model = "replay-model"

    def __init__(
        self, texts: list[str], finishes: list[str] | None = None, pixels: tuple[int, int] | None = None
    ):
        self.texts, self.finishes, self.pixels, self.calls = texts, finishes, pixels, 0

    def describe(self) -> dict:
        budget = {"min_pixels": self.pixels[0], "max_pixels": self.pixels[1]} if self.pixels else {}
        return {"backend": self.backend, "model": self.model, **budget}

    def stream(self, images, *, prompt=None, sampling=None):
        k, self.calls = self.calls, self.calls + 1
        self.last_usage = Usage(finish_reason=self.finishes[k] if self.finishes else "stop")
        yield self.texts[k]


def without_story(text: str) -> str:
    """The same CoT with a one-line untagged story: not well-structured, reward 0."""
    return text.split("</think>")[0] + "</think>\nThey went home."


def ungrounded(text: str) -> str:
    """The output with its <gdo> tags taken off (words kept): well-structured, less grounded."""
    return re.sub(r"<gdo [^>]*>(.*?)</gdo>", r"\1", text)


def told(path: Path, texts, *, finishes=None, prompt: Prompt = Prompt(), pixels=PIXELS) -> RunOutputs:
    """A tell-dataset run folder of the example stories answered with ``texts``, read back."""
    tell_dataset(load_stories(str(EXAMPLES)), Replay(list(texts), finishes, pixels), path, prompt=prompt)
    return load_outputs(path)


@pytest.fixture(scope="module")
def stories():
    return load_stories(str(EXAMPLES))


def lines(folder: Path) -> list[dict]:
    return read_pairs(folder)[1]


def test_pairs_carry_their_runs_conditioning_and_truncated_candidates_are_left_out(stories, tmp_path):
    asked = Prompt(text="Tell what happens.", system=None, order="text-first")
    good = told(tmp_path / "good", [s.output_text() for s in stories], finishes=["stop", "length", "stop"],
                prompt=asked)  # fmt: skip
    bad = told(tmp_path / "bad", [without_story(s.output_text()) for s in stories], prompt=asked)
    report = build_pairs(stories, [good, bad], tmp_path / "p", dataset={"source": str(EXAMPLES)})
    ids = stories.ids()
    assert report.pairs == 2 and report.truncated == 1 and report.too_few == [ids[1]]
    assert report.truncated_by_run == {good.label: 1, bad.label: 0}
    expected = {"prompt": "Tell what happens.", "system": None, "order": "text-first",
                "min_pixels": PIXELS[0], "max_pixels": PIXELS[1], "recorded": True}  # fmt: skip
    for pair in lines(tmp_path / "p"):
        assert pair["story_id"] != ids[1] and pair["chosen_from"] == good.label
        assert pair["conditioning"] == expected
        assert pair["chosen_finish_reason"] == "stop" and pair["rejected_finish_reason"] == "stop"
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert [r["truncated"] for r in manifest["runs"]] == [1, 0]
    assert manifest["runs"][0]["conditioning"] == expected and "note" not in manifest["runs"][0]
    assert manifest["report"]["truncated"] == 1 and manifest["rejected"] == "any"


def test_a_folder_of_texts_is_taken_as_told_with_the_default_prompt_and_says_so(stories, tmp_path):
    texts = tmp_path / "texts"
    texts.mkdir()
    for sample in stories:
        (texts / f"{sample.story_id}.txt").write_text(without_story(sample.output_text()), encoding="utf-8")
    (tmp_path / "p").mkdir()
    killed = tmp_path / "p" / ".pairs.jsonl.0123456789ab.tmp"  # what a run killed mid-write leaves
    killed.write_text('{"half": ', encoding="utf-8")
    build_pairs(stories, [load_outputs(texts)], tmp_path / "p", include_reference=True)
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [
        "dataset.json", "manifest.json", "pairs.jsonl", "settings.json", "stories.jsonl",
    ]  # fmt: skip
    pairs = lines(tmp_path / "p")
    assert len(pairs) == 3 and all(p["conditioning"] == Conditioning().to_dict() for p in pairs)
    assert (
        Conditioning().recorded is False
        and Conditioning().prompt == "Generate a story based on these images."
    )
    run = json.loads((tmp_path / "p" / "manifest.json").read_text())["runs"][0]
    assert run["conditioning"]["recorded"] is False and "no prompt recorded" in run["note"]


def test_candidates_are_only_paired_under_one_conditioning(stories, tmp_path):
    one = told(
        tmp_path / "one", [without_story(s.output_text()) for s in stories], prompt=Prompt(text="One.")
    )
    two = told(tmp_path / "two", [s.output_text() for s in stories], prompt=Prompt(text="Two."))
    # the good answers were told to another prompt than the bad ones: no pair between them
    apart = build_pairs(stories, [one, two], tmp_path / "apart")
    assert apart.pairs == 0 and len(apart.too_few) == 3 and apart.several_conditionings == 3
    # the reference joins every group: against the bad answers, under their prompt
    joined = build_pairs(stories, [one, two], tmp_path / "joined", include_reference=True)
    assert joined.pairs == 3
    for pair in lines(tmp_path / "joined"):
        assert (pair["chosen_from"], pair["rejected_from"]) == ("reference", one.label)
        assert pair["conditioning"]["prompt"] == "One."


def test_several_pairs_per_story_set_the_best_against_each_of_the_worst(stories, tmp_path):
    bad = RunOutputs(Path("bad"), "bad", {s.story_id: without_story(s.output_text()) for s in stories})
    empty = RunOutputs(Path("empty"), "empty", {s.story_id: "no story at all" for s in stories})
    mid = RunOutputs(Path("mid"), "mid", {s.story_id: ungrounded(s.output_text()) for s in stories})
    runs = [mid, bad, empty]
    two = build_pairs(stories, runs, tmp_path / "two", include_reference=True, pairs_per_story=2)
    assert two.pairs == 6
    for sid in stories.ids():
        mine = [p for p in lines(tmp_path / "two") if p["story_id"] == sid]
        # the two worst (bad and empty tie at 0), best first by margin, ties in run order
        assert [(p["chosen_from"], p["rejected_from"]) for p in mine] == [
            ("reference", "bad"),
            ("reference", "empty"),
        ]
    every = build_pairs(stories, runs, tmp_path / "every", include_reference=True, pairs_per_story=5)
    assert every.pairs == 9  # best against each of the three others, no more
    margins = [p["margin"] for p in lines(tmp_path / "every")[:3]]
    assert margins == sorted(margins, reverse=True)
    one = build_pairs(stories, runs, tmp_path / "one", include_reference=True)
    assert one.pairs == 3 and {p["rejected_from"] for p in lines(tmp_path / "one")} == {"bad"}
    # each pair must clear the margin: the middling answer is within a margin of 0.6 of the best
    wide = build_pairs(
        stories, runs, tmp_path / "wide", include_reference=True, pairs_per_story=5, min_margin=0.6
    )
    assert wide.pairs == 6 and "mid" not in {p["rejected_from"] for p in lines(tmp_path / "wide")}


def test_the_rejected_answer_can_be_drawn_among_well_structured_candidates(stories, tmp_path):
    first = stories.ids()[0]
    bad = RunOutputs(Path("bad"), "bad", {s.story_id: without_story(s.output_text()) for s in stories})
    mid = RunOutputs(
        Path("mid"), "mid", {s.story_id: ungrounded(s.output_text()) for s in stories if s.story_id != first}
    )
    for sample in stories:  # what the test relies on: mid is well-structured and scores below the reference
        text = ungrounded(sample.output_text())
        assert (
            parse_output(text)
            .validate(n_images=sample.frame_count, image_sizes=sample.frame_sizes())
            .well_structured
        )
        assert StoryScorer(sample)(text).total < StoryScorer(sample)(sample.output_text()).total - 0.05
    picked = build_pairs(
        stories, [mid, bad], tmp_path / "ws", include_reference=True, rejected="well-structured"
    )
    assert picked.pairs == 2 and picked.no_rejected == [first]
    assert {(p["chosen_from"], p["rejected_from"]) for p in lines(tmp_path / "ws")} == {("reference", "mid")}
    anyone = build_pairs(stories, [mid, bad], tmp_path / "any", include_reference=True)
    assert anyone.pairs == 3 and {p["rejected_from"] for p in lines(tmp_path / "any")} == {"bad"}
    assert json.loads((tmp_path / "ws" / "manifest.json").read_text())["rejected"] == "well-structured"


def test_a_real_run_cut_at_the_token_limit_gives_no_candidate(tiny_qwen, stories, tmp_path):
    from storyreasoning.tell.local import TransformersTeller

    teller = TransformersTeller(str(tiny_qwen), min_pixels=PIXELS[0], max_pixels=PIXELS[0], batch_size=3)
    tell_dataset(stories, teller, tmp_path / "run", sampling=Sampling(temperature=0, max_new_tokens=4))
    run = load_outputs(tmp_path / "run")
    report = build_pairs(stories, [run], tmp_path / "p", include_reference=True)
    assert report.truncated == 3 and report.pairs == 0 and len(report.too_few) == 3
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert manifest["runs"][0]["conditioning"]["max_pixels"] == PIXELS[0]


def test_cli_pairs_per_story_and_rejected(stories, tmp_path):
    texts = tmp_path / "texts"
    texts.mkdir()
    for sample in stories:
        (texts / f"{sample.story_id}.txt").write_text(without_story(sample.output_text()), encoding="utf-8")
    made = run_cli("train", "pairs", str(EXAMPLES), "--run", str(texts), "--include-reference",
                   "--pairs-per-story", "2", "--rejected", "well-structured", "--out", str(tmp_path / "p"))  # fmt: skip
    assert made.returncode == 1, made.stderr
    assert "3 with no well-structured candidate to reject" in made.stderr
    held = json.loads((tmp_path / "p" / "settings.json").read_text())
    assert held["pairs_per_story"] == 2 and held["rejected"] == "well-structured"
    # the folder holds stories scored with those settings: other ones are refused, each difference named
    other = run_cli("train", "pairs", str(EXAMPLES), "--run", str(texts), "--include-reference",
                    "--pairs-per-story", "1", "--rejected", "well-structured", "--out", str(tmp_path / "p"))  # fmt: skip
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert (
        f"error: {tmp_path / 'p'} holds pairs made with other settings (--pairs-per-story 2 then, 1 now); run with "
        "the same ones to continue it, or choose another --out"
    ) in other.stderr


def test_each_candidate_of_a_multi_sample_run_is_a_candidate_of_its_own(stories, tmp_path):
    """A ``tell-dataset --samples 4`` run against a server honouring ``n``: four candidates a story, paired
    with one another (they share the run's conditioning), a truncated one left out."""
    from storyreasoning.tell.openai import OpenAITeller

    from ..tell.test_samples import SamplingServer

    by_frame = {base64.b64encode(s.frames[0].bytes()).decode(): s for s in stories}

    def texts_for(body: dict) -> list[str]:  # the story asked, known by its first frame
        url = next(p for p in body["messages"][1]["content"] if p["type"] == "image_url")["image_url"]["url"]
        good = by_frame[url.partition(",")[2]].output_text()
        return [ungrounded(good), good, without_story(good), without_story(good)]

    finishes = ("stop", "stop", "length", "stop")
    with (
        SamplingServer(texts_for=texts_for, finishes=finishes, chunk=1000) as server,
        OpenAITeller(server.url, retries=0) as teller,
    ):
        tell_dataset(stories, teller, tmp_path / "run", samples=4, sampling=Sampling(seed=1))
    assert len(server.chat_requests()) == 3  # one request a story
    run = load_outputs(tmp_path / "run")
    assert run.outputs == {
        s.story_id: ungrounded(s.output_text()) for s in stories
    }  # readers of one: the first
    report = build_pairs(stories, [run], tmp_path / "p")
    label = run.label
    assert report.pairs == 3 and report.truncated == 3
    assert report.truncated_by_run == {f"{label}#0": 0, f"{label}#1": 0, f"{label}#2": 3, f"{label}#3": 0}
    for pair in lines(tmp_path / "p"):
        assert (pair["chosen_from"], pair["rejected_from"]) == (f"{label}#1", f"{label}#3")
        assert pair["chosen"] == stories[stories.ids().index(pair["story_id"])].output_text()
        assert set(pair["candidates"]) == {f"{label}#0", f"{label}#1", f"{label}#3"}
        assert pair["chosen_finish_reason"] == "stop" and pair["conditioning"]["recorded"] is True
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert [(r["label"], r["sample"]) for r in manifest["runs"]] == [(f"{label}#{k}", k) for k in range(4)]
    # with a run of one sample a story beside it, every candidate of both is weighed
    single = told(tmp_path / "single", [s.output_text() for s in stories], pixels=None)
    both = build_pairs(stories, [single, run], tmp_path / "both")
    assert both.pairs == 3 and all(len(p["candidates"]) == 4 for p in lines(tmp_path / "both"))


def test_cli_pairs_reads_damaged_records_with_one_warning_each(stories, tmp_path):
    """A record whose ``meta`` is not an object counts as one without meta; a line that is not JSON is
    skipped with one warning (not one per reader of the run)."""
    good = told(tmp_path / "good", [s.output_text() for s in stories]).path
    bad = told(tmp_path / "bad", [without_story(s.output_text()) for s in stories]).path
    records = (bad / "records.jsonl").read_text(encoding="utf-8").splitlines()
    first = json.loads(records[0])
    first["meta"] = [1]
    records[0] = json.dumps(first)
    records[1] = "{not json"
    (bad / "records.jsonl").write_text("\n".join(records) + "\n", encoding="utf-8")
    made = run_cli("train", "pairs", str(EXAMPLES), "--run", str(good), "--run", str(bad),
                   "--out", str(tmp_path / "p"))  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "Traceback" not in made.stderr
    warnings = [line for line in made.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "records.jsonl line 2 is not JSON" in warnings[0], made.stderr
    assert "2 pairs from 3 stories" in made.stderr
    assert {p["story_id"] for p in lines(tmp_path / "p")} == {
        first["story_id"],
        json.loads(records[2])["story_id"],
    }


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ({"manifest.json": b'{"kind": '}, "manifest.json is not valid JSON ("),
        ({"manifest.json": b"[1]"}, "manifest.json must hold a JSON object"),
        ({"pairs.jsonl": b'{"garbage": 1}\n'}, "pairs.jsonl line 1 is not a pair (no story_id)"),
        ({"pairs.jsonl": b"[1, 2]\n"}, "pairs.jsonl line 1 is not a pair (a list, not a JSON object)"),
        ({"pairs.jsonl": b"\n\xff\xfe\n"}, "pairs.jsonl line 2 is not UTF-8 text (invalid start byte)"),
        ({"pairs.jsonl": b'{"story_id": "a", "chosen": "x"'}, "pairs.jsonl line 1 is not JSON"),
        (
            {"pairs.jsonl": b'{"story_id": "a", "chosen": "x", "rejected": 3}\n'},
            "pairs.jsonl line 1 is not a pair (its rejected is not text)",
        ),
        (
            {"pairs.jsonl": b'{"story_id": "a", "chosen": "x", "rejected": "y", "conditioning": [1]}\n'},
            "pairs.jsonl line 1 is not a pair (its conditioning is not an object)",
        ),
        (
            {
                "pairs.jsonl": b'{"story_id": "a", "chosen": "x", "rejected": "y", '
                b'"conditioning": {"max_pixels": "many"}}\n'
            },
            "line 1 is not a pair (its conditioning's max_pixels is not a positive whole number)",
        ),
    ],
)
def test_read_pairs_refuses_a_damaged_folder_naming_the_file_and_line(tmp_path, damage, message):
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "manifest.json").write_text("{}", encoding="utf-8")
    (folder / "pairs.jsonl").write_text(
        '{"story_id": "a", "chosen": "x", "rejected": "y"}\n', encoding="utf-8"
    )
    for name, data in damage.items():
        (folder / name).write_bytes(data)
    with pytest.raises(UsageError) as caught:
        read_pairs(folder)
    text = str(caught.value)
    assert message in text and str(folder) in text and "\n" not in text
    assert text.endswith("; rebuild the pairs with storyreasoning train pairs")


def test_an_interrupted_pairs_run_goes_on_from_the_next_story(stories, tmp_path):
    """Ctrl-C after the second story (the progress hook runs once a story is written), then a crash that cut
    the third story's pair in half: the same call goes on from the third story and ends as an uninterrupted
    run, file for file; other settings are refused."""
    texts = tmp_path / "texts"
    texts.mkdir()
    for sample in stories:
        (texts / f"{sample.story_id}.txt").write_text(without_story(sample.output_text()), encoding="utf-8")
    run = load_outputs(texts)
    build_pairs(stories, [run], tmp_path / "whole", include_reference=True)
    out = tmp_path / "p"
    done: list[int] = []

    def stop_after_two(n: int) -> None:
        done.append(n)
        if len(done) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_pairs(stories, [run], out, include_reference=True, progress=stop_after_two)
    # written as it went: the settings first, two stories with their pairs, no manifest yet (unfinished)
    assert sorted(p.name for p in out.iterdir()) == [
        "dataset.json",
        "pairs.jsonl",
        "settings.json",
        "stories.jsonl",
    ]
    assert [
        json.loads(x)["story_id"] for x in (out / "stories.jsonl").read_text().splitlines()
    ] == stories.ids()[:2]
    with pytest.raises(UsageError) as unfinished:
        read_pairs(out)  # DPO refuses an unfinished folder, saying how to finish it
    assert str(unfinished.value) == (
        f"{out} is an unfinished pairs folder (no manifest.json yet: train pairs was stopped before it scored every "
        "story); run the same storyreasoning train pairs command again to finish it"
    )
    third = (tmp_path / "whole" / "pairs.jsonl").read_bytes().splitlines(keepends=True)[2]
    with (out / "pairs.jsonl").open("ab") as f:
        f.write(third[: len(third) // 2])  # the third story's pair, cut by a crash
    counted: list[int] = []
    said: list[str] = []
    report = build_pairs(
        stories, [run], out, include_reference=True, progress=counted.append, say=said.append
    )
    assert said == [f"resuming {out}: 2 of 3 stories already scored"] and counted == [2, 1]
    assert report.stories == 3 and report.pairs == 3
    for name in ("pairs.jsonl", "stories.jsonl", "manifest.json", "settings.json", "dataset.json"):
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    assert len(read_pairs(out)[1]) == 3
    with pytest.raises(UsageError) as caught:
        build_pairs(stories, [run], out, include_reference=True, min_margin=0.2, pairs_per_story=2)
    assert str(caught.value) == (
        f"{out} holds pairs made with other settings (--min-margin 0.05 then, 0.2 now; --pairs-per-story 1 then, "
        "2 now); run with the same ones to continue it, or choose another --out"
    )


def test_a_refused_pairs_folder_names_the_first_five_differences(stories, tmp_path):
    from storyreasoning.train.reward import RewardWeights

    run = load_outputs(texts_of(stories, tmp_path / "texts"))
    build_pairs(stories, [run], tmp_path / "p", include_reference=True)
    weights = RewardWeights(boxes=0.5, cross_group=0.5, gate=False, reid_iou=0.5)
    with pytest.raises(UsageError) as caught:
        build_pairs(stories, [run], tmp_path / "p", include_reference=True, min_margin=0.2, pairs_per_story=2,
                    rejected="well-structured", weights=weights)  # fmt: skip
    assert str(caught.value) == (
        f"{tmp_path / 'p'} holds pairs made with other settings (--min-margin 0.05 then, 0.2 now; "
        "--pairs-per-story 1 then, 2 now; --rejected 'any' then, 'well-structured' now; weights.boxes 0 then, "
        "0.5 now; weights.cross_group 1 then, 0.5 now; and 2 more); run with the same ones to continue it, or "
        "choose another --out"
    )


def test_a_pairs_folder_names_its_dataset_by_the_path_it_resolved(tmp_path):
    """train pairs records the dataset as typed and as resolved; train dpo and --eval-every take the
    path while it exists (the source as typed was relative to where pairs ran)."""
    from storyreasoning.train.callbacks import recorded_source

    here = tmp_path / "data"
    here.mkdir()
    assert recorded_source({"dataset": {"source": "data", "path": str(here)}}) == str(here)
    assert recorded_source({"dataset": {"source": "data", "path": str(tmp_path / "gone")}}) == "data"
    assert (
        recorded_source({"dataset": {"source": "daniel3303/StoryReasoning"}}) == "daniel3303/StoryReasoning"
    )
    assert recorded_source({"dataset": "not an object"}) is None
    assert recorded_source(["not", "a", "manifest"]) is None


def texts_of(stories, folder: Path) -> Path:
    """A run folder of ``{story_id}.txt``: each story's CoT with a one-line untagged story."""
    folder.mkdir(parents=True)
    for sample in stories:
        (folder / f"{sample.story_id}.txt").write_text(without_story(sample.output_text()), encoding="utf-8")
    return folder


def stopped_after(folder: Path, kept: int) -> None:
    """``folder`` as train pairs leaves it when stopped after its first ``kept`` stories: no manifest yet."""
    journal = (folder / "stories.jsonl").read_bytes().splitlines(keepends=True)[:kept]
    pairs = (folder / "pairs.jsonl").read_bytes().splitlines(keepends=True)
    (folder / "stories.jsonl").write_bytes(b"".join(journal))
    (folder / "pairs.jsonl").write_bytes(
        b"".join(pairs[: sum(json.loads(line)["pairs"] for line in journal)])
    )
    (folder / "manifest.json").unlink()


def test_a_pairs_folder_knows_its_dataset_by_where_it_is_not_as_typed(stories, tmp_path, monkeypatch):
    """``./c_ref`` goes on with what ``c_ref`` began; a ``c_ref`` in another folder (other stories) is refused,
    naming both paths."""
    import shutil

    for where in ("a", "b"):
        shutil.copytree(EXAMPLES, tmp_path / where / "c_ref")
    shutil.rmtree(tmp_path / "b" / "c_ref" / "pioneers")  # another c_ref: two of the three stories
    texts = texts_of(stories, tmp_path / "texts")
    candidates = ("--run", str(texts), "--include-reference", "--out", "p")
    monkeypatch.chdir(tmp_path / "a")
    assert run_cli("train", "pairs", "c_ref", *candidates).returncode == 0
    whole = {name: (tmp_path / "a" / "p" / name).read_bytes() for name in ("pairs.jsonl", "stories.jsonl")}
    recorded = json.loads((tmp_path / "a" / "p" / "dataset.json").read_text())
    assert recorded["source"] == "c_ref" and recorded["path"] == str((tmp_path / "a" / "c_ref").resolve())
    stopped_after(tmp_path / "a" / "p", 1)
    shutil.copytree(tmp_path / "a" / "p", tmp_path / "b" / "p")
    again = run_cli("train", "pairs", "./c_ref", *candidates)
    assert again.returncode == 0, again.stderr
    assert "resuming p: 1 of 3 stories already scored" in again.stderr
    assert {name: (tmp_path / "a" / "p" / name).read_bytes() for name in whole} == whole
    monkeypatch.chdir(tmp_path / "b")
    other = one_error_line(run_cli("train", "pairs", "c_ref", *candidates))
    assert other.startswith(
        f"error: p holds pairs made with other settings (dataset path {(tmp_path / 'a' / 'c_ref').resolve()} then, "
        f"{(tmp_path / 'b' / 'c_ref').resolve()} now; dataset content stories 3 then, 2 now; "
    )
    assert other.endswith("); run with the same ones to continue it, or choose another --out")


def test_an_older_pairs_folder_with_its_runs_as_typed_still_resumes(stories, tmp_path, monkeypatch):
    """A folder of an older version recorded ``--run`` as typed and no dataset.json: read from the folder it
    was typed in, the same run, resumed (and recorded as resolved); read from elsewhere, refused."""
    import shutil

    texts = texts_of(stories, tmp_path / "texts")
    command = ("train", "pairs", str(EXAMPLES), "--run", "texts", "--include-reference", "--out", "p")
    monkeypatch.chdir(tmp_path)
    assert run_cli(*command).returncode == 0
    whole = {name: (tmp_path / "p" / name).read_bytes() for name in ("pairs.jsonl", "stories.jsonl")}
    held = json.loads((tmp_path / "p" / "settings.json").read_text())
    assert held["runs"] == [str(texts)]
    (tmp_path / "p" / "settings.json").write_text(json.dumps({**held, "runs": ["texts"], "out": "p"}))
    (tmp_path / "p" / "dataset.json").unlink()
    stopped_after(tmp_path / "p", 1)
    shutil.copytree(tmp_path / "p", tmp_path / "elsewhere" / "p")
    again = run_cli(*command)
    assert again.returncode == 0, again.stderr
    assert "resuming p: 1 of 3 stories already scored" in again.stderr
    assert {name: (tmp_path / "p" / name).read_bytes() for name in whole} == whole
    assert json.loads((tmp_path / "p" / "settings.json").read_text())["runs"] == [str(texts)]
    assert json.loads((tmp_path / "p" / "dataset.json").read_text())["path"] == str(EXAMPLES.resolve())
    monkeypatch.chdir(tmp_path / "elsewhere")  # where its texts are no folder
    other = one_error_line(run_cli("train", "pairs", str(EXAMPLES), "--run", str(texts), "--include-reference",
                                   "--out", "p"))  # fmt: skip
    assert other.startswith('error: p holds pairs made with other settings (--runs ["texts"] then, ["')


def test_a_story_scored_twice_is_said_and_scored_again_from_there(stories, tmp_path):
    """Two builds into one folder at once (before a build held its folder) scored a story twice: the stories
    before the repeat are kept, the rest scored again, and the folder ends as an uninterrupted run leaves it."""
    import shutil

    run = load_outputs(texts_of(stories, tmp_path / "texts"))
    build_pairs(stories, [run], tmp_path / "whole", include_reference=True)
    out = tmp_path / "p"
    shutil.copytree(tmp_path / "whole", out)
    stopped_after(out, 2)
    for name in ("stories.jsonl", "pairs.jsonl"):  # one pair a story: the first story's lines again
        with (out / name).open("ab") as f:
            f.write((tmp_path / "whole" / name).read_bytes().splitlines(keepends=True)[0])
    said: list[str] = []
    report = build_pairs(stories, [run], out, include_reference=True, say=said.append)
    assert said == [
        f"warning: {out / 'stories.jsonl'} line 3 scores story {stories.ids()[0]!r} again (line 1 did): two builds "
        f"wrote into {out} at once; the 2 stories before it are kept, and the stories from that line on are "
        "scored again",
        f"resuming {out}: 2 of 3 stories already scored",
    ]
    assert report.stories == 3 and report.pairs == 3
    for name in ("pairs.jsonl", "stories.jsonl", "manifest.json"):
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


def test_pairs_into_another_jobs_folder_are_refused_and_its_record_kept(stories, tmp_path):
    """``--out runs/sft`` by mistake: the training's settings.json is not overwritten by the pairs'."""
    from storyreasoning.train.job import TrainFolder
    from storyreasoning.train.settings import SFTSettings

    training = tmp_path / "sft"
    TrainFolder(training).claim(
        SFTSettings(source=str(EXAMPLES), out=training)
    )  # what a training writes first
    record = (training / "settings.json").read_text()
    texts = texts_of(stories, tmp_path / "texts")
    done = run_cli(
        "train", "pairs", str(EXAMPLES), "--run", str(texts), "--include-reference", "--out", str(training)
    )
    assert one_error_line(done) == (
        f"error: {training} holds the settings of another job (alpha, attn_implementation, batch_size, … are no "
        "settings of train pairs); choose another --out for the pairs"
    )
    assert (training / "settings.json").read_text() == record and not (training / "pairs.jsonl").exists()
