"""Online RL (GRPO) with the storytelling reward.

:func:`train_grpo` trains a storyteller (normally the SFT model, merged) with TRL's
``GRPOTrainer``: each step the model tells every prompt's story ``--num-generations``
times, each completion is scored by the storytelling reward of :mod:`.reward` against
the story's reference (structure gate, re-identification, grounding; boxes optional),
and the completions better than their group's mean are made more likely, with a KL
term of weight ``--beta`` towards the starting model (the policy with its adapter off
under LoRA; a frozen copy otherwise; no reference pass at all with ``--beta 0``).

**Prompts** are the stories of one or more datasets (real stories and contrastive
sequences from ``storyreasoning data contrastive``), told as the storyteller is told:
the system prompt, the frames and ``Generate a story based on these images.`` in
``--order``, under the job's pixel budget. ``--mix real=2,synth=1`` subsamples the
datasets in that ratio exactly as ``train dpo`` mixes pairs folders (the same code).
A story whose prompt and ``--max-completion-length`` exceed ``--max-length`` is left out
and counted in ``fit.json`` (cutting frames would change what the reward judges): the rule of
:func:`story_prompt`, by which ``train plan --objective grpo`` selects and sizes stories too.

**The reward** is computed in worker processes beside the trainer
(:mod:`.reward_pool`, ``--reward-workers``) and given to TRL as separate functions, so
``log.jsonl`` holds ``rewards/story/mean`` (the gated total that is optimised, weight
``--w-story``), ``rewards/structure|reid|grounding|boxes/mean`` (its components, logged
with weight 0) and ``rewards/ended/mean`` (``--w-ended``, a dense shaping term, off by
default), besides TRL's ``reward``, ``reward_std``, ``kl``, completion lengths and
clipped ratio.

**Generation** runs through transformers' ``generate`` by default. On a CUDA machine with
vLLM installed, ``--use-vllm`` generates with vLLM instead: ``--vllm-mode colocate`` (in
the training process, taking ``--vllm-gpu-memory`` of the GPU) or ``--vllm-mode server``
(a separate ``trl vllm-serve --model MODEL`` process on other GPUs, at ``--vllm-server``;
TRL sends it the new weights after each step).

The output folder is SFT's and DPO's: ``settings.json`` (a resume with other settings is
refused), ``dataset.json`` (a list: each dataset's
:func:`~storyreasoning.data.identity.dataset_record`, in the order given; a resume from other
datasets is refused before the model loads, a finished folder's too, while ``./ds`` and ``ds``
are one and a project moved whole is the same; a folder of an older version, without it, compares
its datasets by where they are), ``fit.json``, ``log.jsonl``, ``checkpoints/`` (resumed after a crash),
``final/`` (adapter or model, processor, ``storyreasoning.json``). A LoRA adapter as the
starting model must be merged first (``train merge``), as for DPO.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import StoryReasoningError, UsageError
from . import job
from .dpo import _start_processor, conditioned_prompt, mix
from .job import TrainResult
from .settings import GRPOSettings, dataset_now

# -- prompts --------------------------------------------------------------------------------------------


def _prompt(settings: GRPOSettings, n_images: int) -> list[dict]:
    """The storyteller's prompt messages (TRL's shape: image placeholders, text parts)."""
    from .pairs import Conditioning

    return conditioned_prompt(Conditioning(order=settings.order), n_images)


def prompt_tokens(budget, prompt: list[dict], sizes) -> int:
    """Tokens of a prompt with its generation prompt: its text and its frames' vision tokens."""
    text = budget.processor.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    n_text = len(budget.tokenizer(text, add_special_tokens=False)["input_ids"])
    return n_text + sum(budget.image_tokens(w, h) - 1 for w, h in sizes)


@dataclass(frozen=True)
class StoryPrompt:
    """A story as GRPO prompts with it: its prompt messages, their tokens and its frames' share of them
    (None when not counted), and whether the story is kept."""

    prompt: list[dict]
    tokens: int | None
    image_tokens: int | None
    kept: bool


def story_prompt(settings, budget, sample, *, count: bool = False) -> StoryPrompt:
    """``sample``'s prompt as train grpo prompts with it, and whether train grpo keeps the story.

    The prompt is the storyteller's (:func:`_prompt`) with every frame of the story, in
    ``settings.order``. A story whose prompt and ``settings.max_completion_length`` exceed
    ``settings.max_length`` is left out, never shortened: cutting frames would change what the
    reward judges. The prompt is counted against a ``max_length`` only (without one every story is
    kept), or always with ``count`` (``train plan`` sizes every row). ``settings`` is train grpo's or
    train plan's: both have ``order``, ``max_length`` and ``max_completion_length``.
    """
    prompt = _prompt(settings, sample.frame_count)
    if settings.max_length is None and not count:
        return StoryPrompt(prompt, None, None, True)
    sizes = sample.frame_sizes()  # each frame's header read once
    tokens = prompt_tokens(budget, prompt, sizes)
    kept = settings.max_length is None or tokens + settings.max_completion_length <= settings.max_length
    return StoryPrompt(prompt, tokens, sum(budget.image_tokens(w, h) for w, h in sizes), kept)


def load_datasets(settings: GRPOSettings) -> dict[str, object]:
    """Each dataset's stories (its split, whole: :func:`prompt_rows` takes ``--limit`` of them): read before
    the model loads, so a wrong path fails at once."""
    from ..data.sources import load_stories

    return {source: load_stories(source, settings.split) for source in settings.sources}


def dataset_records(settings: GRPOSettings, datasets: dict[str, object] | None = None) -> list[dict]:
    """What the folder records of each dataset, in the order given
    (:func:`~storyreasoning.data.identity.dataset_record` of its split, whole), from ``datasets``
    (:func:`load_datasets`); without them, a local dataset's ids and shard sizes are read (never an
    image) and a hub id is taken as given (nothing fetched: its record says no more)."""
    from ..data.identity import dataset_record

    if datasets is not None:
        return [dataset_record(datasets[source]) for source in settings.sources]
    return [dataset_now(source, settings.split) for source in settings.sources]


def prompt_rows(
    settings: GRPOSettings, budget, progress, datasets: dict[str, object] | None = None
) -> tuple[dict[str, list[dict]], dict]:
    """The prompt rows of each dataset (``story_id``, ``prompt``, ``sample``; its first ``--limit`` stories)
    and the fit report."""
    from ..data.sources import limited

    datasets = load_datasets(settings) if datasets is None else datasets
    fit: dict = {"stories": 0, "kept": 0, "too_long": [], "max_prompt_tokens": 0, "max_length": settings.max_length,
                 "max_completion_length": settings.max_completion_length, "datasets": {}}  # fmt: skip
    by_dataset: dict[str, list[dict]] = {}
    for source, whole in datasets.items():
        stories = limited(whole, settings.limit)
        rows = by_dataset.setdefault(source, [])
        with progress(len(stories), f"reading the stories of {source}") as advance:
            for sample in stories:
                advance()
                fit["stories"] += 1
                told = story_prompt(settings, budget, sample)
                if not told.kept:
                    fit["too_long"].append(sample.story_id)
                    continue
                if told.tokens is not None:
                    fit["max_prompt_tokens"] = max(fit["max_prompt_tokens"], told.tokens)
                rows.append({"story_id": sample.story_id, "prompt": told.prompt, "sample": sample})
        fit["datasets"][source] = {"stories": len(stories), "kept": len(rows)}
    fit["kept"] = sum(len(rows) for rows in by_dataset.values())
    return by_dataset, fit


def prompt_dataset(rows: list[dict], cache: Path):
    """A ``datasets.Dataset`` of the prompts with their frames, as TRL's GRPO reads it, written under ``cache``.

    ``story`` is each row's index into the reward's stories.
    """
    import datasets

    message = datasets.List({"role": datasets.Value("string"), "content": datasets.List(
        {"type": datasets.Value("string"), "text": datasets.Value("string")}
    )})  # fmt: skip
    features = datasets.Features(
        {
            "story": datasets.Value("int64"),
            "story_id": datasets.Value("string"),
            "images": datasets.List(datasets.Image()),
            "prompt": message,
        }
    )

    def generate():
        for k, row in enumerate(rows):
            yield {
                "story": k,
                "story_id": row["story_id"],
                "images": [{"bytes": f.bytes(), "path": None} for f in row["sample"].frames],
                "prompt": row["prompt"],
            }

    return datasets.Dataset.from_generator(generate, features=features, cache_dir=str(cache))


# -- the job ---------------------------------------------------------------------------------------------


def check_group(settings: GRPOSettings, processes: int | None = None, *, prompts: int | None = None) -> None:
    """Refuse a batch that cannot hold whole groups (TRL's rule, said in our options' names) and, given how
    many ``prompts`` there are, one that needs more prompts a step than that: TRL's sampler forms only
    whole generation batches, so the training would end at step 0 having learned nothing."""
    processes = processes or job.world_size()
    accumulation = job.accumulation(settings, processes)
    completions = settings.batch_size * accumulation * processes
    made = (
        f"a step generates {completions} completions (--batch-size {settings.batch_size} x --grad-accum "
        f"{accumulation} x {processes} process(es))"
    )
    if completions % settings.num_generations:
        raise UsageError(
            f"{made}, which is not a multiple of the group size {settings.num_generations}; change --batch-size, "
            "--grad-accum or --num-generations"
        )
    needed = completions // settings.num_generations
    if prompts is not None and prompts < needed:
        raise UsageError(
            f"{made} in groups of {settings.num_generations}: {needed} prompts a step, but there are only "
            f"{prompts} (see fit.json); lower --batch-size or --grad-accum, or give more stories"
        )


def _vllm(settings: GRPOSettings) -> dict:
    """GRPOConfig's vLLM fields for the settings; refused without vLLM installed."""
    if not settings.use_vllm:
        return {"use_vllm": False}
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise UsageError("--use-vllm needs vLLM on a CUDA machine: pip install vllm (or drop --use-vllm)")
    out = {
        "use_vllm": True,
        "vllm_mode": settings.vllm_mode,
        "vllm_gpu_memory_utilization": settings.vllm_gpu_memory,
    }
    if settings.vllm_server:
        out["vllm_server_base_url"] = settings.vllm_server
    return out


@dataclass(kw_only=True)
class GRPOJob(job.BuiltTrainer):
    """A GRPO trainer ready to train, with its reward pool and judge (close them) and what :func:`.job.train_built`
    needs."""

    pool: object
    judge: object


def build_trainer(settings: GRPOSettings, folder, progress, say: Callable = job.quiet) -> GRPOJob:
    """Fit the prompts (the processor alone loaded: none fitting is refused before the weights load), load
    the model, claim ``folder``, start the reward pool and build TRL's ``GRPOTrainer``."""
    from .reward_pool import JudgeReward, OnlineReward, RewardPool, StorySpec
    from .sft import lora_targets_checked, trl_policy

    trl = job.require_trl("GRPO")
    check_group(settings)
    vllm = _vllm(settings)
    datasets = load_datasets(settings)
    records = dataset_records(settings, datasets)
    folder.claim(settings, write=False, dataset=records)  # other datasets: said before the model loads
    judge_client = judge_of(settings) if settings.judge_endpoint else None
    # the processor alone first: stories that do not fit are said before minutes of loading weights
    torch, transformers, processor, device, dtype = _start_processor(settings)
    budget = job.token_budget(processor, settings)
    by_dataset, fit = prompt_rows(settings, budget, progress, datasets)
    rows, counts = mix(by_dataset, settings.mix_weights(), settings.seed)
    for name, count in counts.items():
        fit["datasets"][name].update(**count)
    fit["train"] = len(rows)
    notices = [
        f"{len(fit['too_long'])} stories leave no room for {settings.max_completion_length} completion tokens in "
        f"{settings.max_length}; skipped" if fit["too_long"] else ""
    ]  # fmt: skip
    nothing = (
        "no story to prompt with (see fit.json): give datasets with stories, raise --max-length or lower "
        "--max-completion-length"
    )
    main = job.report_fit(folder, fit, say, notices, kept=len(rows), nothing=nothing)
    check_group(settings, prompts=len(rows))
    net = job.load_weights(settings, torch, transformers, dtype)
    folder.claim(settings, dataset=records)  # once the model loaded: a start that never ran claims nothing
    train_set = prompt_dataset(rows, folder.root / "cache")
    net, peft_config = trl_policy(net, settings)  # the model's dropout off, the LoRA dropout kept (as DPO)
    pool = RewardPool(
        [StorySpec.of(row["sample"]) for row in rows], settings.weights(), settings.reward_workers
    )
    judge = None
    try:
        if judge_client is not None:
            judge = JudgeReward(judge_client, [row["sample"].frames for row in rows],
                                concurrency=settings.judge_concurrency)  # fmt: skip
        reward = OnlineReward(pool, w_story=settings.w_story, w_ended=settings.w_ended, judge=judge,
                              w_judge=settings.w_judge, gate=settings.gate)  # fmt: skip
        funcs, weights = reward.functions()
        args = trl.GRPOConfig(
            **job.trainer_arguments(settings, folder, transformers, dtype=dtype, device=device),
            num_generations=settings.num_generations,
            max_completion_length=settings.max_completion_length,
            temperature=settings.temperature,
            top_p=settings.top_p,
            beta=settings.beta,
            reward_weights=weights,
            disable_dropout=False,  # done above, sparing the LoRA dropout
            remove_unused_columns=False,
            **vllm,
        )
        with lora_targets_checked(settings, peft_config):
            trainer = trl.GRPOTrainer(
                model=net, reward_funcs=funcs, args=args, train_dataset=train_set, processing_class=processor,
                callbacks=[job.json_log(transformers, folder.log)], peft_config=peft_config,
            )  # fmt: skip
        pad = processor.tokenizer.pad_token_id
        reward.stop_ids = {*trainer.eos_token_ids, *([pad] if pad is not None else [])}
    except BaseException:
        pool.close()
        if judge is not None:
            judge.close()
        raise
    parameters = {
        **job.trl_parameters(trainer.model, settings, lora=peft_config is not None),
        "rewards": {f.__name__: w for f, w in zip(funcs, weights, strict=True)},
        "generation": "vllm-" + settings.vllm_mode if settings.use_vllm else "transformers",
    }
    say(
        job.trl_summary("GRPO", settings, parameters, len(rows), "prompts", counts)
        + f", groups of {settings.num_generations}, reward in "
        + (f"{pool.workers} worker processes" if pool.workers else "the trainer's process")
        + f", device {device}"
    )
    return GRPOJob(trainer, processor, torch, fit, parameters, main, pool=pool, judge=judge)


def judge_of(settings: GRPOSettings):
    """The judge of ``--judge-endpoint``, its server asked now: one that is down stops the job before the model loads."""
    from ..evaluate.judge import Judge
    from ..tell.openai import OpenAITeller

    try:
        teller = OpenAITeller(settings.judge_endpoint, model=settings.judge_model,
                              concurrency=settings.judge_concurrency)  # fmt: skip
        teller.check()
    except StoryReasoningError as exc:  # the teller names tell's options: say ours
        message = (
            str(exc).replace("--endpoint", "--judge-endpoint").replace("--served-model", "--judge-model")
        )
        raise type(exc)(f"the judge: {message}") from None
    return Judge(teller, max_new_tokens=settings.judge_max_new_tokens, seed=settings.seed)


def train_grpo(
    settings: GRPOSettings, *, progress: Callable | None = None, say: Callable = job.quiet
) -> TrainResult:
    """Run (or resume) the GRPO job ``settings`` describes; see the module docstring."""
    folder, done, progress = job.begin(settings, progress, say, dataset=lambda: dataset_records(settings))
    if done is not None:
        return done
    built = build_trainer(settings, folder, progress, say)
    try:
        return job.train_built(
            "grpo", settings, built, folder, say,
            memory_hint="lower --num-generations, --max-completion-length, --max-pixels or --batch-size (keep the "
            "step with --grad-accum), set --beta 0 (no reference pass), or turn on --gradient-checkpointing",
        )  # fmt: skip
    finally:
        built.pool.close()
        if built.judge is not None:
            built.judge.close()


__all__ = [
    "GRPOJob", "StoryPrompt", "build_trainer", "check_group", "dataset_records", "judge_of", "load_datasets",
    "prompt_dataset", "prompt_rows", "prompt_tokens", "story_prompt", "train_grpo",
]  # fmt: skip
