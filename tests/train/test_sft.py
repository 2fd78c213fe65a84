"""Supervised fine-tuning for real: the tiny Qwen2.5-VL, the example stories, transformers' Trainer, peft."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from ..conftest import one_error_line, require_transformers, run_cli

require_transformers()
pytest.importorskip("peft", reason="LoRA needs peft: pip install 'storyreasoning[train]'")

import torch  # noqa: E402
import transformers  # noqa: E402

from storyreasoning.data import load_stories  # noqa: E402
from storyreasoning.data.messages import MessageOptions, TrainingExamples  # noqa: E402
from storyreasoning.errors import StoryReasoningError, UsageError  # noqa: E402
from storyreasoning.train.collate import IGNORE, StoryCollator  # noqa: E402
from storyreasoning.train.settings import SFTSettings  # noqa: E402
from storyreasoning.train.sft import (  # noqa: E402
    TrainFolder,
    language_target_pattern,
    prepare_model,
    train_sft,
    vision_tower,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "stories"
SMALL = MessageOptions(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16, max_images=2)
# the same, as training settings
SMALL_SETTINGS = {
    "min_pixels": SMALL.min_pixels,
    "max_pixels": SMALL.max_pixels,
    "max_images": SMALL.max_images,
}


@pytest.fixture(scope="module")
def processor(tiny_qwen):
    return transformers.AutoProcessor.from_pretrained(tiny_qwen)


@pytest.fixture(scope="module")
def examples():
    return TrainingExamples(load_stories(str(EXAMPLES)), SMALL)


def settings(tiny_qwen, out: Path, **changes) -> SFTSettings:
    base = SFTSettings(
        source=str(EXAMPLES),
        out=out,
        split=None,
        model=str(tiny_qwen),
        max_steps=2,
        batch_size=1,
        grad_accum=1,
        save_steps=1,
        logging_steps=1,
        max_length=4000,
        **SMALL_SETTINGS,
        lr=1e-3,
    )
    return replace(base, **changes)


# -- labels -------------------------------------------------------------------------------------------


def test_assistant_loss_learns_exactly_the_answer_and_its_end(processor, examples):
    collator = StoryCollator(processor)
    batch = collator([examples[0], examples[2]])  # two lengths: the shorter row is padded
    assert batch["labels"].shape == batch["input_ids"].shape
    for row, index in enumerate((0, 2)):
        labels = batch["labels"][row]
        learned = batch["input_ids"][row][labels != IGNORE]
        answer = examples[index]["messages"][-1]["content"][0]["text"]
        assert processor.tokenizer.decode(learned) == answer + "<|im_end|>"
        # the learned tokens are one contiguous run
        positions = (labels != IGNORE).nonzero().flatten()
        assert positions[-1] - positions[0] + 1 == len(positions)
    pad_rows = batch["attention_mask"].sum(dim=1)
    assert pad_rows[0] != pad_rows[1]


def test_all_loss_is_the_original_rule(processor, examples):
    batch = StoryCollator(processor, loss="all")([examples[0], examples[1]])
    ids, labels = batch["input_ids"], batch["labels"]
    vocab = processor.tokenizer.get_vocab()
    vision = [vocab[t] for t in ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>")]
    for vid in vision:
        assert (ids == vid).any() and (labels[ids == vid] == IGNORE).all()
    pad = processor.tokenizer.pad_token_id
    assert (labels[ids == pad] == IGNORE).all()
    kept = (labels != IGNORE) & (batch["attention_mask"] == 1)
    assert torch.equal(labels[kept], ids[kept])
    # the prompts are learned too (what the original did), so more tokens than the answer alone
    answer_only = StoryCollator(processor)([examples[0], examples[1]])["labels"]
    assert (labels != IGNORE).sum() > (answer_only != IGNORE).sum()


def test_a_conversation_must_end_with_the_answer(processor, examples):
    messages = examples[0]["messages"][:-1]
    with pytest.raises(StoryReasoningError, match="must end with the assistant turn"):
        StoryCollator(processor)([{"messages": messages, "images": examples[0]["images"]}])


def test_the_answer_loss_is_the_models_own_loss_with_logits_only_where_learned(
    tiny_qwen, processor, examples
):
    from storyreasoning.train.loss import answer_loss

    batch = StoryCollator(processor)([examples[0], examples[2]])
    net = fresh_model(tiny_qwen)
    own = net(**batch)
    own.loss.backward()
    own_grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    net.zero_grad()
    loss, outputs = answer_loss(net, batch)
    loss.backward()
    learned = int((batch["labels"][:, 1:] != IGNORE).sum())
    assert outputs.logits.shape[0] == learned < batch["input_ids"].numel()  # only the answer's positions
    assert torch.allclose(loss, own.loss, atol=1e-5)
    for name, grad in own_grads.items():
        assert torch.allclose(dict(net.named_parameters())[name].grad, grad, atol=1e-6), name
    # over an optimiser step the Trainer gives the count of the whole step: the sum is divided by it
    halved, _ = answer_loss(net, batch, num_items_in_batch=torch.tensor(2 * learned))
    assert torch.allclose(halved, own.loss / 2, atol=1e-5)


def test_full_training_keeps_float32_master_weights_and_refuses_float16(tiny_qwen, tmp_path):
    from storyreasoning.train.job import load_model, weights_dtype

    assert weights_dtype("full", torch.bfloat16, torch) == torch.float32
    assert weights_dtype("lora", torch.bfloat16, torch) == torch.bfloat16
    _, _, _, net, _, dtype = load_model(settings(tiny_qwen, tmp_path, mode="language", dtype="bfloat16"))
    assert dtype == torch.bfloat16 and {p.dtype for p in net.parameters()} == {torch.float32}
    _, _, _, net, _, _ = load_model(settings(tiny_qwen, tmp_path, mode="lora", dtype="bfloat16"))
    assert {p.dtype for p in net.parameters()} == {torch.bfloat16}
    with pytest.raises(UsageError, match="float16 is refused"):
        settings(tiny_qwen, tmp_path, mode="full", dtype="float16")


def test_several_gpus_outside_a_launch_are_refused_with_the_command_to_run(monkeypatch):
    from storyreasoning.train.job import accumulation, refuse_data_parallel

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    refuse_data_parallel(1)  # one GPU: fine
    with pytest.raises(UsageError) as refused:
        refuse_data_parallel(2, ["train", "sft", "data", "--out", "runs/x y"])
    assert (
        "accelerate launch --config_file configs/accelerate/ddp.yaml --num_processes 2 -m storyreasoning.cli "
        "train sft data --out 'runs/x y'" in str(refused.value)
    )
    monkeypatch.setenv("WORLD_SIZE", "2")
    refuse_data_parallel(2)  # inside a launch: one process per GPU, fine
    # the published global batch holds whatever the number of processes
    recipe = SFTSettings(source="s", out=Path("o"), global_batch=64)
    assert [accumulation(recipe, n) for n in (1, 2, 4, 8)] == [64, 32, 16, 8]
    with pytest.raises(UsageError, match="cannot be split"):
        accumulation(recipe, 3)


def test_defaults_fit_a_7b_story_on_one_card():
    """Gradient checkpointing is on unless turned off (without it a 7B story needs 110+ GiB)."""
    assert SFTSettings(source="s", out=Path("o")).gradient_checkpointing is True
    shown = cli("train", "sft", "--help").stdout
    assert "--no-gradient-checkpointing" in shown and "--attn-implementation" in shown and "--liger" in shown


# -- modes ----------------------------------------------------------------------------------------------


def fresh_model(tiny_qwen):
    return transformers.AutoModelForImageTextToText.from_pretrained(tiny_qwen)


def test_lora_adapts_the_language_attention_and_never_the_vision_tower(tiny_qwen):
    net, counts = prepare_model(fresh_model(tiny_qwen), SFTSettings(source="x", out=Path("x"), rank=4))
    adapted = {name.rsplit(".lora_A", 1)[0] for name, _ in net.named_parameters() if ".lora_A" in name}
    assert adapted and all("visual" not in name for name in adapted)
    assert {name.rsplit(".", 1)[-1] for name in adapted} == {"q_proj", "k_proj", "v_proj", "o_proj"}
    trainable = {name for name, p in net.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in name for name in trainable)
    assert counts["trainable"] == sum(p.numel() for p in net.parameters() if p.requires_grad)
    # the vision tower's MLP has gate/up/down projections too: the pattern keeps them out
    pattern = language_target_pattern(("gate_proj",))
    net2, _ = prepare_model(
        fresh_model(tiny_qwen), SFTSettings(source="x", out=Path("x"), rank=4, targets=("gate_proj",))
    )
    names = [n for n, _ in net2.named_parameters() if ".lora_A" in n]
    assert names and all("visual" not in n for n in names), pattern


def test_language_mode_freezes_exactly_the_vision_tower(tiny_qwen):
    net = fresh_model(tiny_qwen)
    tower = sum(p.numel() for p in vision_tower(net).parameters())
    net, counts = prepare_model(net, SFTSettings(source="x", out=Path("x"), mode="language"))
    assert counts["frozen_vision"] == tower > 0
    assert counts["trainable"] == counts["parameters"] - tower
    _, counts_full = prepare_model(
        fresh_model(tiny_qwen), SFTSettings(source="x", out=Path("x"), mode="full")
    )
    assert counts_full["trainable"] == counts_full["parameters"]


def test_lora_on_names_the_model_lacks_is_a_clear_error(tiny_qwen):
    with pytest.raises(UsageError, match="--target"):
        prepare_model(fresh_model(tiny_qwen), SFTSettings(source="x", out=Path("x"), targets=("nope_proj",)))


# -- the job ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lora_run(tiny_qwen, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft") / "lora"
    result = train_sft(settings(tiny_qwen, out, max_steps=3))
    return result


def test_a_lora_run_writes_its_folder(lora_run, tiny_qwen):
    folder = TrainFolder(lora_run.folder)
    assert lora_run.steps == 3 and not lora_run.skipped and lora_run.resumed_from is None
    assert (folder.final / "adapter_config.json").is_file()
    assert (folder.final / "processor_config.json").is_file()
    manifest = json.loads((folder.final / "storyreasoning.json").read_text())
    assert manifest["base_model"] == str(tiny_qwen) and manifest["adapter"] is True and manifest["steps"] == 3
    assert manifest["settings"]["lr"] == 1e-3 and manifest["settings"]["alpha"] == 32
    log = [json.loads(line) for line in folder.log.read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 3 and all(loss > 0 for loss in losses)
    assert sorted(p.name for p in folder.checkpoints.iterdir()) == [
        "checkpoint-1",
        "checkpoint-2",
        "checkpoint-3",
    ]
    fit = json.loads(folder.fit.read_text())
    assert fit["stories"] == 3 and fit["kept"] == 3 and fit["max_length"] == 4000


def test_a_finished_run_is_not_trained_again(lora_run, tiny_qwen):
    again = train_sft(settings(tiny_qwen, lora_run.folder, max_steps=3))
    assert again.skipped and again.steps == 3


def test_a_finished_run_knows_its_dataset_wherever_it_is(lora_run, tiny_qwen, tmp_path):
    """Its stories copied elsewhere (a project moved), a finished training has nothing to do; other stories
    there, or a hub id, are refused as in an unfinished folder, and the folder is left as it was."""
    recorded = (lora_run.folder / "dataset.json").read_bytes()
    shutil.copytree(EXAMPLES, tmp_path / "same")
    said: list[str] = []
    same = settings(tiny_qwen, lora_run.folder, max_steps=3, source=str(tmp_path / "same"))
    again = train_sft(same, say=said.append)
    assert again.skipped and again.steps == 3
    assert len(said) == 1 and said[0].startswith(
        f"{lora_run.folder} already holds a finished training ({lora_run.final}, 3 steps, finished "
    )
    assert said[0].endswith("); nothing to do")
    shutil.copytree(EXAMPLES, tmp_path / "fewer")
    shutil.rmtree(tmp_path / "fewer" / "pioneers")
    with pytest.raises(UsageError) as fewer:
        train_sft(settings(tiny_qwen, lora_run.folder, max_steps=3, source=str(tmp_path / "fewer")))
    assert str(fewer.value).startswith(
        f"{lora_run.folder} holds a training started with other settings (dataset: path {EXAMPLES.resolve()} "
        f"then, {(tmp_path / 'fewer').resolve()} now; dataset: content stories 3 then, 2 now; "
    )
    with pytest.raises(UsageError) as hub:  # a hub id: never fetched, the folder records its own stories
        train_sft(settings(tiny_qwen, lora_run.folder, max_steps=3, source="someone/stories"))
    assert f"(dataset: path {EXAMPLES.resolve()} then, source 'someone/stories' now)" in str(hub.value)
    assert (lora_run.folder / "dataset.json").read_bytes() == recorded


def test_other_settings_in_the_same_folder_are_refused(lora_run, tiny_qwen):
    with pytest.raises(UsageError, match=r"other settings \(mode 'lora' then, 'full' now"):
        train_sft(settings(tiny_qwen, lora_run.folder, max_steps=3, mode="full"))


#: The figures that time a run: they differ between any two runs.
TIMING = {"time", "train_runtime", "train_samples_per_second", "train_steps_per_second"}


def untimed_log(folder: Path) -> list[dict]:
    lines = (folder / "log.jsonl").read_text(encoding="utf-8").splitlines()  # each whole JSON: none torn
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def same_adapter(a: Path, b: Path) -> None:
    from safetensors.torch import load_file

    x, y = load_file(a / "adapter_model.safetensors"), load_file(b / "adapter_model.safetensors")
    assert x.keys() == y.keys()
    for key in x:
        assert torch.allclose(x[key], y[key], atol=1e-6), key


def crashed_copy(lora_run, path: Path, *, drop: tuple[str, ...] = ()) -> Path:
    """A copy of the finished run as a crash leaves it: no final model, the checkpoints ``drop`` never saved."""
    shutil.copytree(lora_run.folder, path)
    shutil.rmtree(path / "final")
    for name in drop:
        shutil.rmtree(path / "checkpoints" / name)
    return path


def test_a_crashed_run_resumes_from_its_newest_checkpoint(lora_run, tiny_qwen, tmp_path):
    # the state a crash during step 3 leaves: checkpoints 1 and 2, no final model, the log's step 3 record
    # already written and a record after it torn by the crash
    crashed = crashed_copy(lora_run, tmp_path / "crashed", drop=("checkpoint-3",))
    log = crashed / "log.jsonl"
    step3 = log.read_text(encoding="utf-8").splitlines()[2]
    log.write_text(log.read_text(encoding="utf-8") + step3[: len(step3) // 2], encoding="utf-8")
    said: list[str] = []
    resumed = train_sft(settings(tiny_qwen, crashed, max_steps=3), say=said.append)
    assert resumed.resumed_from == "checkpoint-2" and resumed.steps == 3
    assert (
        "resuming from checkpoint-2 (log.jsonl cut back to its step: 3 later or torn line(s) dropped)" in said
    )
    # the log an uninterrupted run writes (times aside): each step once, then the end record
    assert untimed_log(crashed) == untimed_log(lora_run.folder)
    assert [r["step"] for r in untimed_log(crashed)] == [1, 2, 3, 3] and untimed_log(crashed)[-1][
        "end"
    ] is True
    # resuming gives the same adapter as the uninterrupted run (same data order, same RNG state)
    same_adapter(lora_run.final, crashed / "final")


def test_a_resumed_run_records_the_whole_runs_loss(lora_run, tiny_qwen, tmp_path):
    """Not transformers' mean over the steps of the last call (step 3 alone here): the mean of all three."""
    crashed = crashed_copy(lora_run, tmp_path / "crashed", drop=("checkpoint-3",))
    resumed = train_sft(settings(tiny_qwen, crashed, max_steps=3))
    whole = json.loads((lora_run.final / "storyreasoning.json").read_text())
    again = json.loads((crashed / "final" / "storyreasoning.json").read_text())
    losses = [r["loss"] for r in untimed_log(lora_run.folder) if "loss" in r]
    assert whole["metrics"]["train_loss"] == pytest.approx(sum(losses) / 3, abs=1e-9)
    assert again["metrics"]["train_loss"] == pytest.approx(whole["metrics"]["train_loss"], abs=1e-9)
    assert resumed.metrics["train_loss"] == again["metrics"]["train_loss"]
    assert whole["invocations"] == 1 and again["invocations"] == 2
    # the runtime is summed over both calls (the first call's share is kept in checkpoint-2), the rates follow
    state = json.loads((crashed / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text())
    first = state["stateful_callbacks"]["RunTotals"]["attributes"]
    assert (
        first["calls"] == 1
        and first["loss_steps"] == 2
        and 0 < first["runtime"] < again["metrics"]["train_runtime"]
    )
    rate = again["metrics"]["train_steps_per_second"]
    assert rate == pytest.approx(3 / again["metrics"]["train_runtime"], rel=0.01, abs=2e-3)


def test_a_run_stopped_after_its_last_checkpoint_trains_no_step_more(lora_run, tiny_qwen, tmp_path):
    """Killed after checkpoint-3 was saved, before ``final/``: the resume saves checkpoint-3's model (transformers'
    loop would train a fourth step before it checks whether to stop)."""
    crashed = crashed_copy(lora_run, tmp_path / "crashed")
    resumed = train_sft(settings(tiny_qwen, crashed, max_steps=3))
    assert resumed.resumed_from == "checkpoint-3" and resumed.steps == 3
    same_adapter(lora_run.final, crashed / "final")
    assert untimed_log(crashed) == untimed_log(lora_run.folder)
    assert resumed.metrics["train_loss"] == pytest.approx(lora_run.metrics["train_loss"], abs=1e-9)


def test_a_damaged_newest_checkpoint_is_passed_over_for_the_one_before(lora_run, tiny_qwen, tmp_path):
    crashed = crashed_copy(lora_run, tmp_path / "crashed")
    optimizer = crashed / "checkpoints" / "checkpoint-3" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:-1000])  # cut short
    size = optimizer.stat().st_size  # before the resume saves checkpoint-3 again, whole
    said: list[str] = []
    resumed = train_sft(settings(tiny_qwen, crashed, max_steps=3), say=said.append)
    assert resumed.resumed_from == "checkpoint-2" and resumed.steps == 3
    warnings = [line for line in said if line.startswith("warning:")]
    assert warnings == [
        f"warning: {optimizer.parent} is damaged: optimizer.pt is cut short or damaged (no zip directory at the "
        f"end of its {size} bytes); resuming from checkpoint-2 (it is saved again at its step)"
    ]
    same_adapter(lora_run.final, crashed / "final")


def test_a_checkpoint_without_its_optimizer_state_is_passed_over_for_the_one_before(
    lora_run, tiny_qwen, tmp_path
):
    """transformers would resume from it in silence with a fresh optimiser: another run than the one stopped."""
    crashed = crashed_copy(lora_run, tmp_path / "crashed")
    optimizer = crashed / "checkpoints" / "checkpoint-3" / "optimizer.pt"
    optimizer.unlink()
    said: list[str] = []
    resumed = train_sft(settings(tiny_qwen, crashed, max_steps=3), say=said.append)
    assert resumed.resumed_from == "checkpoint-2" and resumed.steps == 3
    assert [line for line in said if line.startswith("warning:")] == [
        f"warning: {optimizer.parent} is damaged: optimizer.pt (the optimizer's state) is missing; resuming from "
        "checkpoint-2 (it is saved again at its step)"
    ]
    same_adapter(lora_run.final, crashed / "final")
    assert optimizer.is_file()  # saved again, whole


def test_a_resume_knows_the_dataset_and_model_by_where_they_are(lora_run, tiny_qwen, tmp_path, monkeypatch):
    """The run began with the example stories and the model by absolute paths: typed relative to another
    folder they are the same (resumed); the same stories less one, copied elsewhere, are another dataset,
    refused before the model loads."""
    import os

    crashed = crashed_copy(lora_run, tmp_path / "crashed", drop=("checkpoint-3",))
    other = crashed_copy(lora_run, tmp_path / "other", drop=("checkpoint-3",))
    monkeypatch.chdir(tmp_path)
    relative = {"source": os.path.relpath(EXAMPLES), "model": os.path.relpath(tiny_qwen)}
    resumed = train_sft(settings(tiny_qwen, crashed, max_steps=3, **relative))
    assert resumed.resumed_from == "checkpoint-2" and resumed.steps == 3
    same_adapter(lora_run.final, crashed / "final")
    shutil.copytree(EXAMPLES, tmp_path / "stories")
    shutil.rmtree(tmp_path / "stories" / "pioneers")
    said: list[str] = []
    with pytest.raises(UsageError) as refused:
        train_sft(settings(tiny_qwen, other, max_steps=3, source="stories"), say=said.append)
    assert str(refused.value).startswith(
        f"{other} holds a training started with other settings (dataset: path {EXAMPLES.resolve()} then, "
        f"{(tmp_path / 'stories').resolve()} now; dataset: content stories 3 then, 2 now; "
    )
    assert not any("training of" in line for line in said)  # said before the model loaded
    assert not (other / "final").exists() and json.loads((other / "dataset.json").read_text())["path"] == str(
        EXAMPLES.resolve()
    )


def test_checkpoints_all_damaged_are_one_line_before_the_model_loads(lora_run, tmp_path):
    crashed = crashed_copy(lora_run, tmp_path / "crashed")
    for step in (1, 2, 3):
        state = crashed / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json"
        state.write_bytes(state.read_bytes()[:100])
    done = run_cli("train", "sft", "--config", str(crashed / "settings.json"), "--out", str(crashed))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == [
        f"error: the checkpoint {crashed / 'checkpoints' / 'checkpoint-3'} is damaged: trainer_state.json is not "
        f"whole JSON, and none of the 2 older ones is whole; move {crashed / 'checkpoints'} away to train from the "
        "start, or put a whole copy back"
    ]
    assert "training of" not in done.stderr  # said before the model loaded


def test_a_checkpoint_damaged_inside_its_data_is_one_error(lora_run, tiny_qwen, tmp_path):
    """Damage the cheap checks cannot see (bytes overwritten inside an archive) still ends in one sentence."""
    from storyreasoning.train.checkpoints import problem

    crashed = crashed_copy(lora_run, tmp_path / "crashed", drop=("checkpoint-3",))
    rng = crashed / "checkpoints" / "checkpoint-2" / "rng_state.pth"
    data = bytearray(rng.read_bytes())
    start = data.find(b"data.pkl") + 40  # inside the pickle of the random states
    data[start : start + 200] = b"A" * 200
    rng.write_bytes(bytes(data))
    assert problem(rng.parent) == ""
    with pytest.raises(StoryReasoningError) as caught:
        train_sft(settings(tiny_qwen, crashed, max_steps=3))
    text = str(caught.value)
    assert text.startswith(f"the checkpoint {rng.parent} cannot be loaded (") and "\n" not in text
    assert text.endswith(f"move it out of {crashed / 'checkpoints'} to resume from the one before it")


def test_tell_loads_the_adapter(lora_run, tiny_qwen):
    from PIL import Image

    from storyreasoning.tell import Sampling
    from storyreasoning.tell.local import TransformersTeller

    with TransformersTeller(str(lora_run.final)) as teller:
        telling = teller.tell(
            [Image.new("RGB", (64, 48), "red")], sampling=Sampling(temperature=0, max_new_tokens=5)
        )
        assert teller.describe()["adapter_of"] == str(tiny_qwen)
    assert telling.meta["usage"]["completion_tokens"] == 5


def test_an_adapter_trained_from_a_relative_model_path_loads_from_any_folder(
    tiny_qwen, tmp_path, monkeypatch
):
    """``--model tiny`` typed in the model's parent folder: the adapter names its base by where it is, so
    ``tell --model OUT/final`` and ``train merge`` work from any folder (it named ``tiny``, found nowhere else)."""
    import os

    from storyreasoning.models import load_weights

    monkeypatch.chdir(Path(tiny_qwen).parent)
    run = train_sft(settings(tiny_qwen, tmp_path / "run", max_steps=1, model=Path(tiny_qwen).name))
    monkeypatch.chdir(tmp_path)
    where = os.path.abspath(tiny_qwen)
    assert json.loads((run.final / "adapter_config.json").read_text())["base_model_name_or_path"] == where
    assert json.loads((run.final / "storyreasoning.json").read_text())["base_model"] == where
    assert load_weights(str(run.final)).peft_config


def test_a_merged_model_names_the_adapter_it_came_from_by_where_it_is(lora_run, tmp_path, monkeypatch):
    from storyreasoning.train.commands import merge

    monkeypatch.chdir(lora_run.folder)
    assert merge(Path("final"), tmp_path / "merged", base=None, dtype="float32") == 0
    record = json.loads((tmp_path / "merged" / "storyreasoning.json").read_text())
    assert record["merged_from"] == str(lora_run.final) and record["adapter"] is False


cli = run_cli


@pytest.mark.slow  # heavy end-to-end run: CI runs it in its slow pass
def test_merge_gives_the_same_outputs_as_the_adapter(lora_run, tmp_path, processor):
    result = cli(
        "train", "merge", str(lora_run.final), "--out", str(tmp_path / "merged"), "--dtype", "float32"
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr  # PEFT's use of deprecated names is not the user's
    merged = transformers.AutoModelForImageTextToText.from_pretrained(tmp_path / "merged")
    adapted = transformers.AutoModelForImageTextToText.from_pretrained(lora_run.final)
    assert not hasattr(merged, "peft_config") or not merged.peft_config
    batch = StoryCollator(processor)([TrainingExamples(load_stories(str(EXAMPLES)), SMALL)[1]])
    batch.pop("labels")
    with torch.no_grad():
        a, b = merged(**batch).logits, adapted(**batch).logits
    assert torch.allclose(a, b, atol=1e-4)
    # the LoRA update is not zero: the merged model differs from the base
    base = transformers.AutoModelForImageTextToText.from_pretrained(
        json.loads((lora_run.final / "adapter_config.json").read_text())["base_model_name_or_path"]
    )
    with torch.no_grad():
        assert not torch.allclose(base(**batch).logits, a, atol=1e-6)
    again = cli("train", "merge", str(lora_run.final), "--out", str(tmp_path / "merged"))
    assert again.returncode == 2 and "not empty" in again.stderr and "Traceback" not in again.stderr


def test_full_training_lowers_the_loss_on_what_it_sees(tiny_qwen, tmp_path):
    one = tmp_path / "one"
    shutil.copytree(EXAMPLES / "lighthouse", one / "lighthouse")
    result = train_sft(
        settings(tiny_qwen, tmp_path / "full", source=str(one), mode="full", max_steps=6, lr=5e-3)
    )
    losses = [
        json.loads(line).get("loss") for line in (tmp_path / "full" / "log.jsonl").read_text().splitlines()
    ]
    losses = [x for x in losses if x is not None]
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.5, losses
    assert (result.final / "model.safetensors").is_file()
    assert json.loads((result.final / "storyreasoning.json").read_text())["adapter"] is False


def test_stories_over_the_budget_lose_frames(tiny_qwen, tmp_path, processor):
    from storyreasoning.data.budget import TokenBudget

    budget = TokenBudget(processor, min_pixels=SMALL.min_pixels, max_pixels=SMALL.max_pixels)
    options = replace(SMALL, max_images=None)
    sizes = {s.story_id: budget.count(s, i, options).total for i, s in enumerate(load_stories(str(EXAMPLES)))}
    limit = sorted(sizes.values())[1] - 1  # the two longest stories do not fit whole
    result = train_sft(
        settings(tiny_qwen, tmp_path / "fit", max_images=None, max_length=limit, max_steps=1, save_steps=5)
    )
    assert result.fit["shortened"] + len(result.fit["too_long"]) == 2 and result.fit["max_tokens"] <= limit


@pytest.mark.slow  # heavy end-to-end run: CI runs it in its slow pass
def test_cli_errors_are_one_line(tiny_qwen, tmp_path):
    missing = cli(
        "train", "sft", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), "--model", str(tiny_qwen)
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert str(tmp_path / "nowhere") in missing.stderr
    no_model = cli(
        "train",
        "sft",
        str(EXAMPLES),
        "--split",
        "train",
        "--out",
        str(tmp_path / "p"),
        "--model",
        str(tmp_path),
    )
    assert no_model.returncode != 0 and "Traceback" not in no_model.stderr
    assert "--model" in no_model.stderr or "split" in no_model.stderr
    # a start that failed on its inputs claims nothing: the corrected command may use the folder
    assert not (tmp_path / "p" / "settings.json").exists() and not (tmp_path / "o").exists()
    not_adapter = cli("train", "merge", str(tmp_path), "--out", str(tmp_path / "m"))
    assert not_adapter.returncode == 2 and "no LoRA adapter" in not_adapter.stderr


@pytest.mark.slow  # heavy end-to-end run: CI runs it in its slow pass
def test_cli_trains_and_prints_how_to_tell(tiny_qwen, tmp_path):
    result = cli(
        "train", "sft", str(EXAMPLES), "--split", "train", "--out", str(tmp_path / "run"),
        "--model", str(tiny_qwen), "--max-steps", "1", "--grad-accum", "1", "--max-images", "1",
        "--min-pixels", str(28 * 28 * 4), "--max-pixels", str(28 * 28 * 16), "--max-length", "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"storyreasoning tell IMAGES --model {tmp_path / 'run' / 'final'}" in result.stderr
    held = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert held["max_length"] is None and held["max_images"] == 1 and held["mode"] == "lora"


#: What transformers shows while a model's weights load.
LOADING_WEIGHTS = "Loading weights"


def test_stories_that_fit_nowhere_are_refused_before_the_weights_load(tiny_qwen, tmp_path):
    """At 7B the weights take minutes to load: stories that fit in no ``--max-length`` are said from the
    processor alone, and a run with stories to train on still loads them and trains."""
    command = (
        "train", "sft", str(EXAMPLES), "--model", str(tiny_qwen), "--device", "cpu", "--max-images", "1",
        "--min-pixels", str(SMALL.min_pixels), "--max-pixels", str(SMALL.max_pixels),
    )  # fmt: skip
    refused = run_cli(*command, "--max-length", "300", "--out", str(tmp_path / "x"))
    assert one_error_line(refused) == (
        f"error: no story of {EXAMPLES} fits in 300 tokens, even with one frame; raise --max-length or lower "
        "--max-pixels"
    )
    assert LOADING_WEIGHTS not in refused.stderr
    assert not (tmp_path / "x").exists()  # nothing claimed
    trained = run_cli(*command, "--max-steps", "1", "--grad-accum", "1", "--out", str(tmp_path / "y"))
    assert trained.returncode == 0, trained.stderr
    assert LOADING_WEIGHTS in trained.stderr  # what the refusal above never reached
    assert "Warning" not in trained.stderr  # nothing a user cannot act on (PEFT's use of a deprecated name)
    assert (tmp_path / "y" / "final" / "adapter_config.json").is_file()


def test_an_eval_split_reports_its_loss(tiny_qwen, tmp_path):
    from storyreasoning.data.writers import write_parquet

    stories = load_stories(str(EXAMPLES))
    write_parquet(stories, tmp_path / "ds", split="train")
    write_parquet([s for s in stories if s.story_id == "lighthouse"], tmp_path / "ds", split="test")
    result = train_sft(
        settings(tiny_qwen, tmp_path / "run", source=str(tmp_path / "ds"), split="train", eval_split="test",
                 max_steps=2, save_steps=2)
    )  # fmt: skip
    assert result.fit["kept"] == 3 and result.fit["eval"]["kept"] == 1
    assert result.metrics["eval_loss"] > 0
    logged = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any("eval_loss" in record for record in logged)  # evaluated at the save step, not only at the end


def test_a_recipe_file_with_a_flag_over_it(tiny_qwen, tmp_path):
    """``train sft --config recipe.yaml --lr 1e-5``: the file's settings, the flag's rate, both recorded."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"source: {EXAMPLES}\nsplit: null\nmodel: {tiny_qwen}\nrank: 4\nalpha: 8\ntarget: [q_proj, v_proj]\n"
        f"max_steps: 1\ngrad_accum: 1\nlr: 3.0e-4\nmin_pixels: {SMALL.min_pixels}\nmax_pixels: {SMALL.max_pixels}\n"
        "max_images: 2\nmax_length: 4000\nsave_steps: 5\nlogging_steps: 1\n"
    )
    out = tmp_path / "run"
    done = run_cli("train", "sft", "--config", str(recipe), "--lr", "1e-5", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "from the command line: --out, --lr" in done.stderr
    held = json.loads((out / "settings.json").read_text())
    assert held["lr"] == 1e-5 and held["rank"] == 4 and held["alpha"] == 8 and held["split"] is None
    assert (
        held["targets"] == ["q_proj", "v_proj"] and held["max_steps"] == 1 and held["model"] == str(tiny_qwen)
    )
    manifest = json.loads((out / "final" / "storyreasoning.json").read_text())
    assert manifest["settings"] == held and manifest["steps"] == 1
    adapter = json.loads((out / "final" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["lora_alpha"] == 8
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any("learning_rate" in r for r in log) and all(
        r["learning_rate"] <= 1e-5 for r in log if "learning_rate" in r
    )
    # the recorded settings repeat the run: the same folder takes them as finished, no new training
    again = run_cli("train", "sft", "--config", str(out / "settings.json"))
    assert again.returncode == 0 and "already holds a finished training" in again.stderr


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("foo", "error: --device foo is not a device: use auto, cpu, cuda, cuda:N or mps"),
        ("cuda", "error: --device cuda: no CUDA GPU is visible to torch; use --device cpu or auto"),
    ],
)
@pytest.mark.parametrize("kind", ["sft", "grpo"])
def test_a_device_torch_cannot_use_is_refused_before_the_model_loads(
    tiny_qwen, tmp_path, kind, device, message
):
    """Not a silent run on the CPU: ``--device foo``, or ``cuda`` where torch sees no GPU, is one line."""
    result = run_cli(
        "train", kind, str(EXAMPLES), "--model", str(tiny_qwen), "--out", str(tmp_path / "o"), "--device", device,
        "--max-steps", "1", env={"CUDA_VISIBLE_DEVICES": ""},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [message]
    assert not (tmp_path / "o" / "settings.json").exists()


def test_an_out_inside_the_dataset_folder_is_refused(tiny_qwen, tmp_path):
    """``--out ds/run`` would write checkpoints into the dataset it reads: one line, nothing written."""
    shutil.copytree(EXAMPLES, tmp_path / "ds", ignore=shutil.ignore_patterns("*.py"))
    done = run_cli(
        "train", "sft", str(tmp_path / "ds"), "--out", str(tmp_path / "ds" / "run"), "--model", str(tiny_qwen)
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "is inside the dataset folder" in done.stderr and "choose an --out outside it" in done.stderr
    assert not (tmp_path / "ds" / "run" / "settings.json").exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"source": "/no/such/dataset"}, "does not exist"),
        ({"split": "nosuch"}, "no split 'nosuch'"),
        ({"eval_split": "nosuch"}, "no split 'nosuch'"),
    ],
)
def test_a_wrong_dataset_or_split_is_said_before_the_model_loads(
    tiny_qwen, tmp_path, monkeypatch, changes, message
):
    """A 7B model takes minutes to load: a typo in the dataset or a split is said first."""
    from storyreasoning.train import job

    def loaded(*args, **kwargs):
        raise AssertionError("the model loaded before the dataset was opened")

    monkeypatch.setattr(job, "load_weights", loaded)
    with pytest.raises(StoryReasoningError, match=message):
        train_sft(settings(tiny_qwen, tmp_path / "o", **changes))


def test_a_model_from_the_hub_cache_is_recorded_with_the_commit_it_was_trained_from(tiny_qwen, tmp_path):
    """--revision may be a branch or nothing: final/storyreasoning.json names the exact commit loaded."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--tiny-qwen"
    shutil.copytree(tiny_qwen, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    one = tmp_path / "one"
    shutil.copytree(EXAMPLES / "lighthouse", one / "lighthouse")
    pixels = ["--min-pixels", str(SMALL.min_pixels), "--max-pixels", str(SMALL.max_pixels)]
    result = run_cli("train", "sft", str(one), "--model", "someone/tiny-qwen", "--out", str(tmp_path / "run"),
                     "--max-steps", "1", "--max-length", "4000", *pixels,
                     env={"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((tmp_path / "run" / "final" / "storyreasoning.json").read_text())
    assert manifest["base_model"] == "someone/tiny-qwen" and manifest["revision"] is None
    assert manifest["commit"] == commit
    from storyreasoning.models import hub_commit

    assert hub_commit(str(tiny_qwen)) is None  # a local folder has none
