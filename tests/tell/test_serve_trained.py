"""storyreasoning serve of what training made: a LoRA adapter is refused (merge it first), and a merged
folder is served at the pixel budget it was trained with, not serve's default."""

from __future__ import annotations

import json

import pytest

from storyreasoning.tell.serve import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, max_model_len

from ..conftest import one_error_line, run_cli

# neither the tiny model's own budget nor serve's default
TRAINED_MIN, TRAINED_MAX = 8 * 28 * 28, 24 * 28 * 28


@pytest.fixture(scope="module")
def adapter(tiny_qwen, tmp_path_factory):
    """A LoRA ``final/`` as ``train sft`` leaves it: the adapter and the processor at the trained budget."""
    import transformers
    from peft import LoraConfig, get_peft_model

    from storyreasoning.models import set_pixel_budget

    final = tmp_path_factory.mktemp("run") / "final"
    net = transformers.AutoModelForImageTextToText.from_pretrained(tiny_qwen)
    get_peft_model(net, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(final)
    processor = transformers.AutoProcessor.from_pretrained(tiny_qwen)
    set_pixel_budget(processor, TRAINED_MIN, TRAINED_MAX)
    processor.save_pretrained(final)
    return final


@pytest.fixture(scope="module")
def merged(adapter):
    """``train merge`` of the adapter: a plain model folder with the trained processor and storyreasoning.json."""
    out = adapter.parent.parent / "merged"
    result = run_cli("train", "merge", str(adapter), "--out", str(out), "--dtype", "float32")
    assert result.returncode == 0, result.stderr
    return out


def vllm_print(model, *flags: str):
    result = run_cli(
        "serve", "--model", str(model), "--server", "vllm", "--max-images", "10", "--print", *flags
    )
    assert result.returncode == 0, result.stderr
    args = result.stdout.split()
    budget = json.loads(result.stdout.split("--mm-processor-kwargs ", 1)[1].strip().strip("'"))
    return budget, int(args[args.index("--max-model-len") + 1]), result.stderr


@pytest.mark.parametrize("server", ["vllm", "transformers"])
def test_a_lora_adapter_is_refused_naming_train_merge(adapter, server):
    """It printed ``vllm serve runs/x/final ...``, a folder with no config.json that vLLM cannot load."""
    result = run_cli("serve", "--model", str(adapter), "--server", server, "--print")
    merged = adapter.parent.parent / f"{adapter.parent.name}-merged"
    assert one_error_line(result) == (
        f"error: {adapter} is a LoRA adapter, which a server cannot load as a model; merge it into its base "
        f"first: storyreasoning train merge {adapter} --out {merged}, then serve --model {merged}"
    )
    assert not result.stdout


def test_a_merged_folder_is_served_at_its_trained_budget(merged):
    budget, length, notes = vllm_print(merged)
    assert budget == {"min_pixels": TRAINED_MIN, "max_pixels": TRAINED_MAX}
    assert length == max_model_len(10, TRAINED_MAX, 4096)
    assert f"pixel budget {TRAINED_MIN} to {TRAINED_MAX} (from {merged})" in " ".join(notes.split())


def test_explicit_pixel_flags_win_over_the_folder(merged):
    budget, length, notes = vllm_print(merged, "--max-pixels", str(40 * 784))
    assert budget == {"min_pixels": TRAINED_MIN, "max_pixels": 40 * 784}  # the other bound stays the folder's
    assert length == max_model_len(10, 40 * 784, 4096)
    budget, _, notes = vllm_print(merged, "--min-pixels", "784", "--max-pixels", "1568")
    assert budget == {"min_pixels": 784, "max_pixels": 1568}
    assert "(from --min-pixels/--max-pixels)" in " ".join(notes.split())


def test_a_flag_that_crosses_the_folder_budget_names_where_the_other_bound_came_from(merged):
    result = run_cli("serve", "--model", str(merged), "--server", "vllm", "--print", "--max-pixels", "784")
    assert one_error_line(result) == (
        f"error: need 0 < --min-pixels <= --max-pixels, got {TRAINED_MIN} (from {merged}) and 784"
    )


def test_a_model_folder_no_training_wrote_keeps_the_defaults(tiny_qwen):
    """A folder without storyreasoning.json (a hub snapshot, the base model) is served as its hub id would be:
    a base model's own processor allows 12.8M pixels an image, far past any story's context."""
    budget, _, _ = vllm_print(tiny_qwen)
    assert budget == {"min_pixels": DEFAULT_MIN_PIXELS, "max_pixels": DEFAULT_MAX_PIXELS}
