"""Online RL for real: TRL's GRPOTrainer on the tiny Qwen2.5-VL, the example stories, the reward in worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from ..conftest import require_transformers

require_transformers()
pytest.importorskip("trl", reason="GRPO needs trl: pip install 'storyreasoning[train]'")
pytest.importorskip("peft", reason="LoRA needs peft: pip install 'storyreasoning[train]'")

from storyreasoning.data import load_stories  # noqa: E402
from storyreasoning.errors import StoryReasoningError, UsageError  # noqa: E402
from storyreasoning.train.grpo import check_group, train_grpo  # noqa: E402
from storyreasoning.train.reward import RewardWeights, StoryScorer  # noqa: E402
from storyreasoning.train.reward_pool import COMPONENTS, OnlineReward, RewardPool, StorySpec  # noqa: E402
from storyreasoning.train.settings import GRPOSettings  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "stories"
PIXELS = 28 * 28 * 4  # four image tokens a frame: the prompts stay short


def without_story(text: str) -> str:
    return text.split("</think>")[0] + "</think>\nThey went home."


def settings(tiny_qwen, out: Path, **changes) -> GRPOSettings:
    base = GRPOSettings(
        sources=(str(EXAMPLES),),
        split=None,
        out=out,
        model=str(tiny_qwen),
        rank=4,
        max_steps=2,
        batch_size=4,
        grad_accum=1,
        num_generations=4,
        max_completion_length=8,
        save_steps=1,
        logging_steps=1,
        max_length=4000,
        lr=1e-3,
        min_pixels=PIXELS,
        max_pixels=PIXELS,
        gradient_checkpointing=False,
        reward_workers=1,
        device="cpu",
        dtype="float32",
    )
    return replace(base, **changes)


# -- the reward beside training ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def candidates():
    """Every example story with three candidates: its reference, the reference without a story, a stray line."""
    stories = list(load_stories(str(EXAMPLES)))
    texts = [(k, text) for k, s in enumerate(stories)
             for text in (s.output_text(), without_story(s.output_text()), "They went home.")]  # fmt: skip
    return stories, texts


def test_the_pool_scores_in_its_workers_exactly_as_the_trainers_process_does(candidates):
    stories, texts = candidates
    specs = [StorySpec.of(s) for s in stories]
    weights = RewardWeights(boxes=0.5)
    direct = [StoryScorer(stories[k], weights)(text) for k, text in texts]
    with RewardPool(specs, weights, workers=0) as here:
        local = here.score(texts)
    with RewardPool(specs, weights, workers=2) as pool:
        pooled = pool.score(texts)
        # one call's two chunks may both go to the worker that is free first (CI saw it, under
        # load): score again until both have scored, a bounded number of times
        for _ in range(20):
            if len(pool.pids) == 2:
                break
            assert pool.score(texts) == pooled
        assert len(pool.pids) == 2 and os.getpid() not in pool.pids  # both workers scored, not this process
    assert here.pids == {os.getpid()}
    assert pooled == local == [(r.total, r.structure, r.reid, r.grounding, r.boxes) for r in direct]
    # the references are well-structured and score; the damaged ones are gated to 0
    assert [t[1] for t in pooled[:3]] == [1.0, 0.0, 0.0] and pooled[0][0] > 0 and pooled[1][0] == 0


def test_each_component_is_its_own_function_from_one_scoring(candidates):
    stories, texts = candidates
    with RewardPool([StorySpec.of(s) for s in stories], RewardWeights(), workers=0) as pool:
        reward = OnlineReward(pool, w_story=1.0, w_ended=0.5)
        reward.stop_ids = {7}
        funcs, weights = reward.functions()
        assert [f.__name__ for f in funcs] == ["story", *COMPONENTS, "ended"]
        assert weights == [1.0, 0.0, 0.0, 0.0, 0.0, 0.5]  # the components are logged, not optimised
        completions = [[{"role": "assistant", "content": text}] for _, text in texts]
        story = [k for k, _ in texts]
        ids = [[1, 2, 7], [1, 2, 3]] * (len(texts) // 2) + [[7]] * (len(texts) % 2)
        got = {f.__name__: f(completions=completions, story=story, completion_ids=ids) for f in funcs}
        assert pool.scored == len(texts)  # one scoring served the five functions
    expected = [StoryScorer(stories[k])(text) for k, text in texts]
    assert got["story"] == [r.total for r in expected]
    for name in COMPONENTS:
        assert got[name] == [getattr(r, name) for r in expected], name
    assert got["ended"][:2] == [1.0, 0.0]


def judged(body: dict) -> str:
    """The judge's answer: no hallucination, creativity 5, coherence 3, grounding 1 (a reward of 0.5)."""
    return json.dumps({"hallucinations": [], "creativity": 5, "coherence": 3, "grounding_quality": 1})


@pytest.mark.parametrize("gate", [True, False])
def test_the_judge_reward_asks_a_real_server_for_the_completions_the_gate_lets_through(candidates, gate):
    from storyreasoning.evaluate.judge import Judge
    from storyreasoning.tell.openai import OpenAITeller
    from storyreasoning.train.reward_pool import JudgeReward

    from ..tell.servers import FakeServer

    stories, texts = candidates
    with FakeServer(respond=judged) as server, OpenAITeller(server.url, concurrency=4) as teller:
        judge = JudgeReward(Judge(teller), [s.frames for s in stories], concurrency=4)
        with RewardPool([StorySpec.of(s) for s in stories], RewardWeights(), workers=0) as pool:
            reward = OnlineReward(pool, judge=judge, w_judge=0.5, gate=gate)
            funcs, weights = reward.functions()
            assert [f.__name__ for f in funcs] == ["story", *COMPONENTS, "judge", "ended"] and weights[
                5
            ] == 0.5
            completions = [text for _, text in texts]
            story = [k for k, _ in texts]
            got = {f.__name__: f(completions=completions, story=story) for f in funcs[:-1]}
        judge.close()
        asked = server.chat_requests()
    well = [k for k, s in enumerate(got["structure"]) if s == 1.0]
    assert len(well) == 3  # the three references
    assert len(asked) == (3 if gate else len(texts)) and judge.asked == len(asked) and judge.failed == 0
    assert got["judge"] == [0.5 if k in well or not gate else 0.0 for k in range(len(texts))]
    # each request shows the judge the story's frames and the completion
    images = [sum(part.get("type") == "image_url" for m in body["messages"] if isinstance(m["content"], list)
                  for part in m["content"]) for body in (r["body"] for r in asked)]  # fmt: skip
    assert sorted(images) == sorted(
        stories[story[k]].frame_count for k in (well if gate else range(len(texts)))
    )


def test_a_judge_that_answers_nonsense_gives_no_reward_and_is_counted(candidates):
    from storyreasoning.evaluate.judge import Judge
    from storyreasoning.tell.openai import OpenAITeller
    from storyreasoning.train.reward_pool import JudgeReward

    from ..tell.servers import FakeServer

    stories, _ = candidates
    with FakeServer(text="A lovely story.") as server, OpenAITeller(server.url, retries=0) as teller:
        judge = JudgeReward(Judge(teller), [s.frames for s in stories])
        assert judge.score([(0, stories[0].output_text())]) == [None]
        judge.close()
    assert judge.failed == 1


def test_bad_grpo_options_are_one_clear_error(tiny_qwen, tmp_path):
    with pytest.raises(UsageError, match="not a multiple of the group size 4"):
        check_group(settings(tiny_qwen, tmp_path, batch_size=3))
    check_group(settings(tiny_qwen, tmp_path, batch_size=2, grad_accum=2))  # two batches make one group
    # eight prompts a step from three stories: TRL's sampler formed no batch and training ended at step 0
    many = settings(tiny_qwen, tmp_path / "few", batch_size=8, grad_accum=2, num_generations=4)
    with pytest.raises(
        UsageError, match=r"groups of 4: 4 prompts a step, but there are only 3 \(see fit.json\)"
    ):
        train_grpo(many)
    assert not (tmp_path / "few" / "settings.json").exists()  # the folder is left unclaimed
    # a wrong dataset or a judge that is down is said before the model loads (this model does not exist)
    from ..tell.servers import closed_url

    nowhere = settings(tiny_qwen, tmp_path / "n", model=str(tmp_path / "no-model"))
    with pytest.raises(UsageError, match="does not exist"):
        train_grpo(replace(nowhere, sources=(str(tmp_path / "no-dataset"),)))
    with pytest.raises(StoryReasoningError, match=r"the judge: no server at .*--judge-endpoint"):
        train_grpo(replace(nowhere, judge_endpoint=closed_url(), judge_model="j"))
    assert not (tmp_path / "n" / "settings.json").exists()
    import importlib.util

    if importlib.util.find_spec("vllm") is None:  # said before the model loads, the folder left unclaimed
        with pytest.raises(UsageError, match="--use-vllm needs vLLM on a CUDA machine: pip install vllm"):
            train_grpo(settings(tiny_qwen, tmp_path / "v", use_vllm=True, vllm_mode="server"))
        assert not (tmp_path / "v" / "settings.json").exists()
    for changes, message in [
        ({"num_generations": 1}, "at least 2"),
        ({"w_story": 0.0}, "every reward has a weight of 0"),
        (
            {"w_story": 0.0, "w_judge": 0.0, "judge_endpoint": "http://127.0.0.1:1"},
            "every reward has a weight of 0",
        ),
        ({"max_completion_length": 4000}, "leaves no room for the prompt"),
        ({"mix": ("real=1",)}, "gives no weight to the dataset"),
        ({"w_reid": 0.0, "w_grounding": 0.0}, "at least one of the reid, grounding and boxes weights"),
        ({"sources": ()}, "at least one dataset"),
    ]:
        with pytest.raises(UsageError, match=message):
            settings(tiny_qwen, tmp_path, **changes)


def test_an_out_inside_the_dataset_folder_is_refused(tiny_qwen, tmp_path):
    """The run's cache (Arrow files) inside a parquet dataset would change that dataset's fingerprint,
    so the run could never resume: refused in one line, before the model loads, nothing written."""
    from storyreasoning.data.writers import write_parquet

    write_parquet(load_stories(str(EXAMPLES)), tmp_path / "ds", split="train")
    inside = settings(tiny_qwen, tmp_path / "ds" / "run", sources=(str(tmp_path / "ds"),), split="train")
    with pytest.raises(
        UsageError, match=r"--out .*run is inside the dataset folder .*ds: .*choose an --out outside it"
    ):
        train_grpo(inside)
    assert not (tmp_path / "ds" / "run" / "settings.json").exists()


# -- training -------------------------------------------------------------------------------------------


def log_of(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]


def test_grpo_trains_an_adapter_and_logs_every_reward_component(tiny_qwen, tmp_path):
    from ..tell.servers import FakeServer

    with FakeServer(respond=judged) as server:  # a judge on loopback, shown every completion (--no-gate)
        job = settings(tiny_qwen, tmp_path / "g", judge_endpoint=server.url, w_judge=0.25, gate=False)
        result = train_grpo(job)
        asked = server.chat_requests()
    assert result.steps == 2 and not result.skipped
    assert len(asked) == 2 * 4  # two steps of one group of four completions
    assert (result.final / "adapter_config.json").is_file()
    manifest = json.loads((result.final / "storyreasoning.json").read_text())
    assert manifest["kind"] == "grpo" and manifest["settings"]["num_generations"] == 4
    assert manifest["parameters"]["rewards"] == {
        "story": 1.0, "structure": 0.0, "reid": 0.0, "grounding": 0.0, "boxes": 0.0, "judge": 0.25, "ended": 0.0,
    }  # fmt: skip
    assert (
        manifest["parameters"]["adapters"] == ["default"]
        and manifest["parameters"]["generation"] == "transformers"
    )
    assert manifest["fit"]["stories"] == 3 and manifest["fit"]["kept"] == 3 and manifest["fit"]["train"] == 3
    steps = [r for r in log_of(tmp_path / "g") if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for record in steps:
        for name in ("story", *COMPONENTS, "judge", "ended"):
            assert f"rewards/{name}/mean" in record, (name, record)
        assert record["completions/max_length"] <= 8
        assert record["rewards/judge/mean"] == 0.5 and record["rewards/structure/mean"] == 0.0
        assert record["reward_seconds"] > 0 and record["judge_seconds"] > 0 and record["judge_asked"] == 4
        # without the gate the storytelling reward is (mix + structure) / 2, and the judge adds its weight
        assert record["reward"] == pytest.approx(record["rewards/story/mean"] + 0.25 * 0.5)
    assert sorted(p.name for p in (tmp_path / "g" / "checkpoints").glob("checkpoint-*")) == [
        "checkpoint-1", "checkpoint-2",
    ]  # fmt: skip
    again = train_grpo(job)
    assert again.skipped and again.steps == 2
    with pytest.raises(UsageError, match=r"other settings \(beta"):
        train_grpo(replace(job, beta=0.5, max_steps=3))
    # the reward workers and the judge's concurrency are operational: other counts resume the same training
    assert train_grpo(replace(job, reward_workers=0, judge_concurrency=2)).skipped


def test_a_grpo_run_knows_its_datasets_by_their_content(tiny_qwen, tmp_path, monkeypatch):
    """The same command resumes a crashed run from its project copied whole to another folder (the dataset
    known by its content) and with its dataset typed ``./ds``; a story removed from the dataset where it is
    is refused before the model loads, in the crashed folder as in a finished one."""
    import shutil

    def crash(folder: Path) -> None:  # a crash after the first checkpoint: no final/, no checkpoint-2
        shutil.rmtree(folder / "final")
        shutil.rmtree(folder / "checkpoints" / "checkpoint-2")

    shutil.copytree(EXAMPLES, tmp_path / "p1" / "ds")
    monkeypatch.chdir(tmp_path / "p1")
    job = settings(tiny_qwen, Path("run"), sources=("ds",), reward_workers=0)
    assert train_grpo(job).steps == 2
    crash(tmp_path / "p1" / "run")
    shutil.copytree(tmp_path / "p1", tmp_path / "p2")  # the project copied whole: p1 is still there
    monkeypatch.chdir(tmp_path / "p2")
    moved = train_grpo(job)
    assert moved.resumed_from == "checkpoint-1" and moved.steps == 2
    recorded = json.loads((tmp_path / "p2" / "run" / "dataset.json").read_text())
    assert [(r["source"], r["path"]) for r in recorded] == [("ds", str((tmp_path / "p2" / "ds").resolve()))]
    monkeypatch.chdir(tmp_path / "p1")
    assert train_grpo(replace(job, sources=("./ds",))).resumed_from == "checkpoint-1"
    crash(tmp_path / "p2" / "run")
    for project in ("p1", "p2"):  # finished, crashed
        shutil.rmtree(tmp_path / project / "ds" / "pioneers")
        monkeypatch.chdir(tmp_path / project)
        fit = (tmp_path / project / "run" / "fit.json").read_bytes()
        said: list[str] = []
        with pytest.raises(UsageError) as refused:
            train_grpo(job, say=said.append)
        assert str(refused.value).startswith(
            "run holds a training started with other settings (dataset: content stories 3 then, 2 now; "
            "dataset: content ids_sha256 '"
        ), project
        assert not any(line.startswith("GRPO (") for line in said)  # said before the model loaded
        assert (tmp_path / project / "run" / "fit.json").read_bytes() == fit  # fitted to it after loading


#: What transformers shows while a model's weights load.
LOADING_WEIGHTS = "Loading weights"


def test_stories_too_long_for_the_completion_are_left_out(tiny_qwen, tmp_path, capfd):
    """Counted in fit.json and refused before the weights load (minutes at 7B): the processor alone fits
    them; with room for them the weights load and the job trains."""
    with pytest.raises(UsageError, match="no story to prompt with"):
        train_grpo(settings(tiny_qwen, tmp_path / "short", max_length=120, max_completion_length=100))
    assert LOADING_WEIGHTS not in capfd.readouterr().err
    fit = json.loads((tmp_path / "short" / "fit.json").read_text())
    assert sorted(fit["too_long"]) == ["cat-and-coffee", "lighthouse", "pioneers"] and fit["kept"] == 0
    assert not (tmp_path / "short" / "settings.json").exists()
    # too few prompts for one step are said before the weights load too
    with pytest.raises(UsageError, match=r"4 prompts a step, but there are only 3"):
        train_grpo(settings(tiny_qwen, tmp_path / "few", batch_size=8, grad_accum=2))
    assert LOADING_WEIGHTS not in capfd.readouterr().err
    assert train_grpo(settings(tiny_qwen, tmp_path / "short", max_steps=1, reward_workers=0)).steps == 1
    assert LOADING_WEIGHTS in capfd.readouterr().err  # what the refusals above never reached


@pytest.mark.slow  # a real kill and a resume: two CLI runs of the tiny model
def test_a_killed_grpo_run_resumes_where_its_checkpoints_stop(tiny_qwen, tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "storyreasoning.cli", "train", "grpo", str(EXAMPLES), "--out", str(out),
        "--model", str(tiny_qwen), "--rank", "4", "--max-steps", "5", "--batch-size", "4", "--grad-accum", "1",
        "--group-size", "4", "--max-completion-length", "8", "--save-steps", "1", "--logging-steps", "1",
        "--max-length", "4000", "--min-pixels", str(PIXELS), "--max-pixels", str(PIXELS),
        "--no-gradient-checkpointing", "--device", "cpu", "--dtype", "float32", "--reward-workers", "2",
        "--w-ended", "1",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", "NO_COLOR": "1"}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if (out / "checkpoints" / "checkpoint-2").is_dir():
            time.sleep(0.5)  # into step 3, perhaps saving it
            os.killpg(process.pid, signal.SIGKILL)  # the trainer and its reward workers, no clean-up
            break
        time.sleep(0.05)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
    assert not (out / "final").exists()
    done = sorted(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("checkpoint-*"))
    assert 2 <= done[-1] < 5
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "resuming from checkpoint-" in finished.stderr and "Traceback" not in finished.stderr
    manifest = json.loads((out / "final" / "storyreasoning.json").read_text())
    assert manifest["steps"] == 5 and manifest["resumed_from"].startswith("checkpoint-")
    logged = [r["step"] for r in log_of(out) if "reward" in r]
    resumed_at = int(manifest["resumed_from"].split("-")[1])
    # every step is logged, the ones after the resumed checkpoint once more after the kill
    assert sorted(set(logged)) == list(range(1, 6)) and logged[-(5 - resumed_at) :] == list(
        range(resumed_at + 1, 6)
    )
    assert all(
        f"rewards/{name}/mean" in r for r in log_of(out) if "reward" in r for name in (*COMPONENTS, "ended")
    )


@pytest.mark.slow  # a few dozen GRPO steps of the tiny model on the CPU
def test_online_training_raises_a_learnable_reward(tiny_qwen, tmp_path):
    """The loop learns, not only runs: the tiny model learns to end its answers within the limit.

    Its storytelling reward is 0 for every completion (a random 0.2M-parameter model never writes
    a well-structured story: the gate is 0 for the whole group, hence no advantage), so the dense
    ``ended`` term is the reward it can learn: at the start about one completion in eight of 16
    tokens ends on its own (two end tokens in a vocabulary of 526).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # faster on a loaded machine, and the same numbers whatever the cores
    try:
        result = train_grpo(
            settings(
                tiny_qwen,
                tmp_path / "learn",
                mode="full",
                max_steps=16,
                batch_size=8,
                num_generations=8,
                max_completion_length=16,
                lr=5e-2,
                beta=0.0,
                warmup_ratio=0.0,
                w_ended=1.0,
                save_steps=100,
                seed=0,
            )
        )
    finally:
        torch.set_num_threads(threads)
    assert result.steps == 16
    ended = [r["rewards/ended/mean"] for r in log_of(tmp_path / "learn") if "rewards/ended/mean" in r]
    assert len(ended) == 16
    first, last = sum(ended[:4]) / 4, sum(ended[-4:]) / 4
    assert first < 0.3 and last > first + 0.5, ended
    # the storytelling reward was computed and logged all along (and is 0: nothing well-structured)
    stories = [r["rewards/story/mean"] for r in log_of(tmp_path / "learn") if "rewards/story/mean" in r]
    assert len(stories) == 16 and max(stories) == 0.0


# -- train plan -------------------------------------------------------------------------------------------


def test_train_plan_counts_the_group_the_completions_and_the_reference(tmp_path):
    from storyreasoning.testing.published import write_qwen25vl_7b_config
    from storyreasoning.train.plan import GiB, architecture, make_plan
    from storyreasoning.train.settings import PlanSettings

    from ..conftest import run_cli

    folder = write_qwen25vl_7b_config(tmp_path / "7b")
    arch = architecture(str(folder))

    def plan(**changes) -> dict:
        base = {"model": str(folder), "objective": "grpo", "max_length": 15000, "max_completion_length": 6144}
        return make_plan(PlanSettings(**{**base, **changes}), arch=arch).to_dict()["worst"]

    sft = make_plan(PlanSettings(model=str(folder), max_length=15000), arch=arch).to_dict()["worst"]
    group = plan()
    # the story's prompt (15000 tokens less its 5000 of answer) with a completion of 6144 tokens
    assert (group["tokens"], group["answer_tokens"]) == (15000 - 5000 + 6144, 6144)
    assert sft["tokens"] == 15000 and "transient: generation (KV cache)" not in sft["terms_gib"]
    kv_per_row = (
        28 * 2 * 4 * 128 * 2 * group["tokens"] + 4 * arch.vocab
    )  # bf16 keys and values, float32 logits
    doubled = plan(num_generations=16)
    grew = (
        doubled["transients_gib"]["generation (KV cache)"] - group["transients_gib"]["generation (KV cache)"]
    )
    assert grew == pytest.approx(8 * kv_per_row / GiB, abs=2e-3)  # eight more rows of the group
    assert (
        "reference pass" in group["transients_gib"] and "reference pass" not in plan(beta=0)["transients_gib"]
    )
    # LoRA's reference is the policy with its adapter off; full training holds a frozen copy unless beta is 0
    assert "reference model" not in group["terms_gib"]
    full = plan(mode="full")
    assert full["terms_gib"]["reference model"] == pytest.approx(arch.parameters * 4 / GiB, abs=1e-3)
    assert "reference model" not in plan(mode="full", beta=0)["terms_gib"]
    shown = run_cli("train", "plan", "--model", str(folder), "--objective", "grpo", "--max-length", "15000",
                    "--group-size", "16", "--json")  # fmt: skip
    assert shown.returncode in (0, 1), shown.stderr
    assert json.loads(shown.stdout)["worst"] == doubled


def test_the_grpo_recipe_is_a_valid_config():
    from storyreasoning.settings import from_config
    from storyreasoning.train.job import accumulation

    recipe = from_config(
        GRPOSettings, ROOT / "recipes" / "qwenstoryteller-grpo.yaml", out=Path("o"),
        sources=("daniel3303/StoryReasoning", "data/contrastive"),
    )  # fmt: skip
    assert (recipe.model, recipe.mode, recipe.rank, recipe.lora_alpha) == (
        "daniel3303/QwenStoryteller",
        "lora",
        64,
        128,
    )
    assert (recipe.num_generations, recipe.beta, recipe.max_completion_length, recipe.learning_rate) == (
        8, 0.04, 6144, 1e-5,
    )  # fmt: skip
    assert recipe.mix_weights() == {"daniel3303/StoryReasoning": 2.0, "data/contrastive": 1.0}
    assert recipe.gate and recipe.w_story == 1.0 and recipe.w_ended == 0.0 and not recipe.use_vllm
    check_group(recipe, 1)  # one story's group of eight per optimiser step
    assert recipe.batch_size * accumulation(recipe, 1) == recipe.num_generations


def test_the_story_check_tells_held_out_stories_of_the_first_dataset():
    from storyreasoning.train.callbacks import eval_source

    job = GRPOSettings(sources=("real", "synth"), out=Path("o"), eval_every=10, eval_split="test")
    assert eval_source(job) == ("real", "test")
    with pytest.raises(UsageError, match="is the split training uses"):
        eval_source(replace(job, eval_split="train"))
