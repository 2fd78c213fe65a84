"""The ``storyreasoning`` command.

Every subcommand imports what it needs inside its body, so ``storyreasoning --help``
and ``import storyreasoning.cli`` stay fast and never load torch or transformers.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path

import typer
from typer.core import TyperGroup

from . import __version__
from .errors import StoryReasoningError, UsageError

app = typer.Typer(
    name="storyreasoning",
    help="Grounded visual storytelling: parse, check, tell, train and evaluate grounded stories.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"storyreasoning {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Grounded visual storytelling: parse, check, tell, train and evaluate grounded stories."""


class Kind(str, Enum):
    auto = "auto"
    output = "output"
    cot = "cot"
    story = "story"


@app.command()
def check(
    output_file: Path = typer.Argument(
        ...,
        help="A model output (<think> CoT </think> story), a CoT file or a story file; '-' reads standard input.",
        show_default=False,
    ),
    images: list[Path] = typer.Argument(
        None,
        help="The images the output describes, in order: their number and sizes are checked.",
        show_default=False,
    ),
    n_images: int | None = typer.Option(
        None,
        "--images",
        "-n",
        min=1,
        help="Number of images, when the image files are not given.",
        show_default=False,
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the parse as one JSON object instead of the summary."
    ),
    kind: Kind = typer.Option(Kind.auto, "--kind", help="What the file holds; auto detects it."),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="Also require non-empty Characters and Objects tables (the original validate_dataset rule).",
    ),
) -> None:
    """Parse a model output and say whether it is well-structured.

    Prints entities per image, story segments and tags, and every finding of the
    parser and the validator. Exit status: 0 well-structured, 1 not, 2 usage error.
    """
    from .check import run_check

    code = run_check(
        output_file, images or [], n_images=n_images, as_json=as_json, kind=kind.value, strict=strict
    )
    raise typer.Exit(code)


_SOURCE_HELP = (
    "A dataset: a hub id (daniel3303/StoryReasoning), a save_to_disk folder, parquet files or a folder of "
    "story folders (see README, Data)."
)


# -- storytellers -------------------------------------------------------------------------------

_TELLER_PANEL = "Storyteller (one of --model, --endpoint, --teller)"
_SAMPLING_PANEL = "Sampling and prompt"


def _teller_options(
    model: str | None,
    endpoint: str | None,
    teller: str | None,
    served_model: str | None,
    api_key: str | None,
    timeout: float,
    concurrency: int,
    batch_size: int,
    dtype: str,
    device: str,
    revision: str | None,
    min_pixels: int | None,
    max_pixels: int | None,
):
    from .tell.commands import TellerOptions

    return TellerOptions(
        model=model,
        endpoint=endpoint,
        teller=teller,
        served_model=served_model,
        api_key=api_key,
        timeout=timeout,
        concurrency=concurrency,
        batch_size=batch_size,
        dtype=dtype,
        device=device,
        revision=revision,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
    )


def _sampling(
    temperature: float, top_p: float, max_new_tokens: int, seed: int | None, prompt, system_prompt, order
):
    from .format.prompts import ORDERS
    from .tell.base import Prompt, Sampling

    if order not in ORDERS:
        raise UsageError(f"--order must be one of {', '.join(ORDERS)}, got {order!r}")
    system = None if system_prompt == "" else system_prompt
    kwargs = {"text": prompt, "order": order}
    if system_prompt is not None:
        kwargs["system"] = system
    return Sampling(temperature, top_p, max_new_tokens, seed), Prompt(**kwargs)


def _opt(default, *names, help, panel=_TELLER_PANEL, **kw):
    return typer.Option(default, *names, help=help, rich_help_panel=panel, **kw)


# Options shared by tell, tell-dataset and studio: one definition and one help text each.


def _model_opt(note: str = "default daniel3303/QwenStoryteller2"):
    return _opt(None, "--model", "-m", help=f"Local model folder or hub id ({note}).", show_default=False)


def _endpoint_opt():
    return _opt(
        None,
        "--endpoint",
        "-e",
        help="Base URL of an OpenAI-compatible server (vLLM, transformers serve).",
        show_default=False,
    )


def _teller_opt():
    return _opt(
        None, "--teller", help="A built-in teller: 'baseline' (OpenCV, no model weights).", show_default=False
    )


def _served_model_opt():
    return _opt(
        None,
        "--served-model",
        help="Model name on the server (default: the first it lists).",
        show_default=False,
    )


def _api_key_opt(note: str = ""):
    return _opt(
        None,
        "--api-key",
        help=f"API key for the server (default: $OPENAI_API_KEY){note}.",
        show_default=False,
    )


def _timeout_opt():
    return _opt(600.0, "--timeout", help="Seconds to wait for a server's answer.")


def _dtype_opt():
    return _opt("auto", "--dtype", help="Local weights: auto, bfloat16, float16 or float32.")


def _device_opt():
    return _opt("auto", "--device", help="Local weights: auto, cpu, cuda, cuda:1, mps.")


def _revision_opt():
    return _opt(None, "--revision", help="Hub revision of the model.", show_default=False)


def _pixels_opt(bound: str):
    side = "lower" if bound == "min" else "upper"
    return _opt(
        None,
        f"--{bound}-pixels",
        help=f"Processor pixel budget per image, {side} bound (local weights; vLLM endpoints).",
        show_default=False,
    )


def _temperature_opt():
    return _opt(0.7, "--temperature", help="Sampling temperature; 0 is greedy.", panel=_SAMPLING_PANEL)


def _top_p_opt():
    return _opt(0.9, "--top-p", help="Nucleus sampling.", panel=_SAMPLING_PANEL)


def _max_new_tokens_opt():
    return _opt(4096, "--max-new-tokens", help="Longest output.", panel=_SAMPLING_PANEL)


def _seed_opt():
    return _opt(None, "--seed", help="Random seed.", panel=_SAMPLING_PANEL, show_default=False)


def _prompt_opt():
    from .format.prompts import DEFAULT_PROMPT

    return _opt(DEFAULT_PROMPT, "--prompt", help="The user prompt.", panel=_SAMPLING_PANEL)


def _system_prompt_opt():
    return _opt(
        None,
        "--system-prompt",
        help="Replace the storyteller system prompt ('' for none).",
        panel=_SAMPLING_PANEL,
        show_default=False,
    )


def _order_opt():
    return _opt("images-first", "--order", help="images-first or text-first.", panel=_SAMPLING_PANEL)


@app.command()
def tell(
    images: list[Path] = typer.Argument(
        ..., help="The images, in story order (a folder stands for its numbered frames).", show_default=False
    ),
    model: str | None = _model_opt(),
    endpoint: str | None = _endpoint_opt(),
    teller: str | None = _teller_opt(),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Write the raw output to this file, the parse beside it (.json) and an HTML view (.html).",
        show_default=False,
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the parse as JSON instead of tables."),
    temperature: float = _temperature_opt(),
    top_p: float = _top_p_opt(),
    max_new_tokens: int = _max_new_tokens_opt(),
    seed: int | None = _seed_opt(),
    prompt: str = _prompt_opt(),
    system_prompt: str | None = _system_prompt_opt(),
    order: str = _order_opt(),
    served_model: str | None = _served_model_opt(),
    api_key: str | None = _api_key_opt(),
    timeout: float = _timeout_opt(),
    dtype: str = _dtype_opt(),
    device: str = _device_opt(),
    revision: str | None = _revision_opt(),
    min_pixels: int | None = _pixels_opt("min"),
    max_pixels: int | None = _pixels_opt("max"),
) -> None:
    """Tell a grounded story about images.

    Prints the story with its tags as colours and the chain-of-thought as tables. The
    baseline teller needs no model weights: storyreasoning tell examples/stories/pioneers --teller baseline
    """
    from .tell.commands import tell as run

    sampling, prompt_ = _sampling(temperature, top_p, max_new_tokens, seed, prompt, system_prompt, order)
    options = _teller_options(
        model,
        endpoint,
        teller,
        served_model,
        api_key,
        timeout,
        1,
        1,
        dtype,
        device,
        revision,
        min_pixels,
        max_pixels,
    )
    raise typer.Exit(run(images, options, prompt=prompt_, sampling=sampling, out=out, as_json=as_json))


@app.command("tell-dataset")
def tell_dataset(
    source: str = typer.Argument(..., help=_SOURCE_HELP, show_default=False),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Run folder (created; resumed when it exists).", show_default=False
    ),
    split: str | None = typer.Option(None, "--split", "-s", help="Split to tell (all when omitted)."),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Only the first N stories.", show_default=False
    ),
    model: str | None = _model_opt(),
    endpoint: str | None = _endpoint_opt(),
    teller: str | None = _teller_opt(),
    concurrency: int = _opt(8, "--concurrency", min=1, help="Requests in flight against an endpoint."),
    batch_size: int = _opt(4, "--batch-size", min=1, help="Stories per generate call with local weights."),
    temperature: float = _temperature_opt(),
    top_p: float = _top_p_opt(),
    max_new_tokens: int = _max_new_tokens_opt(),
    seed: int | None = _seed_opt(),
    prompt: str = _prompt_opt(),
    system_prompt: str | None = _system_prompt_opt(),
    order: str = _order_opt(),
    served_model: str | None = _served_model_opt(),
    api_key: str | None = _api_key_opt(),
    timeout: float = _timeout_opt(),
    dtype: str = _dtype_opt(),
    device: str = _device_opt(),
    revision: str | None = _revision_opt(),
    min_pixels: int | None = _pixels_opt("min"),
    max_pixels: int | None = _pixels_opt("max"),
) -> None:
    """Tell every story of a dataset into a run folder (resumable; what evaluate and the studio read).

    Writes manifest.json, records.jsonl (one record per story) and errors.jsonl. Run the
    same command again after a crash or Ctrl-C: finished stories are skipped.
    """
    from .tell.commands import tell_dataset as run

    sampling, prompt_ = _sampling(temperature, top_p, max_new_tokens, seed, prompt, system_prompt, order)
    options = _teller_options(
        model,
        endpoint,
        teller,
        served_model,
        api_key,
        timeout,
        concurrency,
        batch_size,
        dtype,
        device,
        revision,
        min_pixels,
        max_pixels,
    )
    raise typer.Exit(run(source, out, options, split=split, limit=limit, prompt=prompt_, sampling=sampling))


@app.command()
def serve(
    model: str = typer.Option(
        ..., "--model", "-m", help="Model folder or hub id to serve.", show_default=False
    ),
    max_images: int = typer.Option(20, "--max-images", min=1, help="Most images per story (per prompt)."),
    min_pixels: int = typer.Option(
        256 * 28 * 28, "--min-pixels", help="Pixel budget per image, lower bound."
    ),
    max_pixels: int = typer.Option(
        1280 * 28 * 28, "--max-pixels", help="Pixel budget per image, upper bound."
    ),
    max_new_tokens: int = typer.Option(4096, "--max-new-tokens", help="Longest answer to leave room for."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    server: str = typer.Option("auto", "--server", help="auto (vLLM when installed), vllm or transformers."),
    print_only: bool = typer.Option(
        False, "--print", help="Print the command and the endpoint; do not run it."
    ),
) -> None:
    """Serve a storyteller behind an OpenAI-compatible API, with flags derived from the story length."""
    from .tell.commands import serve as run

    raise typer.Exit(
        run(
            model,
            print_only=print_only,
            max_images=max_images,
            min_pixels=min_pixels,
            max_pixels=max_pixels,
            max_new_tokens=max_new_tokens,
            host=host,
            port=port,
            server=server,
        )
    )


@app.command()
def studio(
    endpoint: str | None = _endpoint_opt(),
    model: str | None = _model_opt("loaded at start"),
    teller: str | None = _teller_opt(),
    served_model: str | None = _served_model_opt(),
    api_key: str | None = _api_key_opt("; it stays on the server, never in the page"),
    dataset: list[str] = typer.Option(
        None,
        "--dataset",
        "-d",
        help="A dataset to browse, as SOURCE or NAME=SOURCE (repeat for more). " + _SOURCE_HELP,
        show_default=False,
    ),
    runs: Path | None = typer.Option(
        None,
        "--runs",
        help="A folder of tell-dataset run folders (with their eval/ reports) to browse and compare.",
        show_default=False,
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on; anything but loopback lets other machines in."
    ),
    port: int = typer.Option(8765, "--port", help="Port to listen on (0: any free port)."),
    max_images: int = typer.Option(20, "--max-images", min=1, help="Most images per story."),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", help="Largest image upload, in MB."),
    open_browser: bool = typer.Option(False, "--open", help="Open the studio in a web browser."),
) -> None:
    """Web studio: tell a story from uploaded images (streamed), inspect outputs, browse datasets and runs.

    Serves a local page (no CDN, works offline) on 127.0.0.1 unless --host says otherwise.
    Without --teller, --endpoint or --model it only inspects and browses.
    """
    from .studio.commands import studio as run

    raise typer.Exit(
        run(
            endpoint=endpoint,
            model=model,
            teller=teller,
            served_model=served_model,
            api_key=api_key,
            dataset=dataset or [],
            runs=runs,
            host=host,
            port=port,
            max_images=max_images,
            max_upload_mb=max_upload_mb,
            open_browser=open_browser,
        )
    )


data_app = typer.Typer(
    help="Datasets: statistics, validation, one story, conversion between formats, contrastive sequences.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")


def _source() -> str:
    return typer.Argument(..., help=_SOURCE_HELP, show_default=False)


def _split() -> str | None:
    return typer.Option(
        None, "--split", "-s", help="Split to read (train, test, ...); all splits when omitted."
    )


def _limit() -> int | None:
    return typer.Option(None, "--limit", min=1, help="Only the first N stories.", show_default=False)


@data_app.command("info")
def data_info(
    source: str = _source(),
    split: str | None = _split(),
    limit: int | None = _limit(),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
) -> None:
    """Statistics: stories, frames, entities per image, persistence across frames, tags."""
    from .data.commands import info

    raise typer.Exit(info(source, split=split, limit=limit, as_json=as_json))


@data_app.command("validate")
def data_validate(
    source: str = _source(),
    split: str | None = _split(),
    limit: int | None = _limit(),
    strict: bool = typer.Option(
        False, "--strict", help="Also require non-empty Characters and Objects tables (the original rule)."
    ),
    failures: Path | None = typer.Option(
        None, "--failures", help="Write each failing story and its reasons to this JSON-lines file."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Run the structural validator over every story (boxes checked against the frame sizes).

    Exit status 0 when every story is well-structured, 1 otherwise.
    """
    from .data.commands import validate

    raise typer.Exit(
        validate(source, split=split, limit=limit, strict=strict, as_json=as_json, failures=failures)
    )


@data_app.command("show")
def data_show(
    source: str = _source(),
    story_id: str = typer.Argument(..., help="The story's id.", show_default=False),
    split: str | None = _split(),
    strict: bool = typer.Option(False, "--strict", help="Validate with the original, stricter rule."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the parsed story as JSON (the check --json shape)."
    ),
) -> None:
    """Show one story: frames, the coloured story, entities per image and the validator's findings."""
    from .data.commands import show

    raise typer.Exit(show(source, story_id, split=split, strict=strict, as_json=as_json))


class Format(str, Enum):
    parquet = "parquet"
    folder = "folder"
    disk = "disk"


@data_app.command("convert")
def data_convert(
    source: str = _source(),
    out: Path = typer.Argument(..., help="Output folder.", show_default=False),
    to: Format = typer.Option(
        ...,
        "--to",
        help="parquet: hub-ready shards (data/SPLIT-NNNNN-of-MMMMM.parquet + README.md); folder: one folder "
        "per story; disk: a datasets save_to_disk folder.",
        show_default=False,
    ),
    split: str | None = _split(),
    limit: int | None = _limit(),
    stories_per_shard: int = typer.Option(
        256, "--stories-per-shard", min=1, help="Stories per parquet shard."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Rewrite story folders that already exist."),
) -> None:
    """Convert a dataset to another format, images byte for byte.

    Interrupted conversions resume: finished shards and story folders are kept and skipped.
    """
    from .data.commands import convert

    raise typer.Exit(
        convert(
            source,
            out,
            to=to.value,
            split=split,
            limit=limit,
            stories_per_shard=stories_per_shard,
            overwrite=overwrite,
        )
    )


@data_app.command("contrastive")
def data_contrastive(
    source: str = _source(),
    out: Path = typer.Argument(..., help="Output folder.", show_default=False),
    count: int = typer.Option(100, "--count", min=1, help="How many sequences."),
    length: str = typer.Option("5", "--length", help="Frames per sequence: N, or MIN-MAX."),
    seed: int = typer.Option(0, "--seed", help="Random seed (the same seed gives the same sequences)."),
    split: str | None = _split(),
    to: Format = typer.Option(Format.folder, "--to", help="parquet or folder."),
) -> None:
    """Build incoherent sequences (each frame from a different source) for contrastive training."""
    from .data.commands import contrastive

    try:
        lo, _, hi = length.partition("-")
        bounds = (int(lo), int(hi or lo))
    except ValueError:
        raise UsageError(f"--length must be N or MIN-MAX, got {length!r}") from None
    raise typer.Exit(
        contrastive(source, out, split=split, count=count, length=bounds, seed=seed, to=to.value)
    )


train_app = typer.Typer(
    help="Train storytellers: supervised fine-tuning, reward-ranked preference pairs, DPO, adapter merging.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")

_MODEL_PANEL = "Model and mode"
_DATA_PANEL = "Data"
_OPT_PANEL = "Optimisation"


class TrainMode(str, Enum):
    lora = "lora"
    full = "full"
    language = "language"


class LossOn(str, Enum):
    assistant = "assistant"
    all = "all"


class BoxSpace(str, Enum):
    original = "original"
    model = "model"


@train_app.command("sft")
def train_sft(
    source: str = typer.Argument(..., help=_SOURCE_HELP, show_default=False),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Training folder (created; resumed when it exists).", show_default=False
    ),
    model: str = _opt(
        "Qwen/Qwen2.5-VL-7B-Instruct",
        "--model",
        "-m",
        help="Base model: hub id or local folder.",
        panel=_MODEL_PANEL,
    ),
    revision: str | None = _opt(
        None, "--revision", help="Hub revision of the base model.", panel=_MODEL_PANEL
    ),
    mode: TrainMode = typer.Option(
        TrainMode.lora,
        "--mode",
        help="lora: adapters on the language model's attention; full: every weight; language: all but the "
        "vision tower.",
        rich_help_panel=_MODEL_PANEL,
    ),
    rank: int = _opt(16, "--rank", min=1, help="LoRA rank.", panel=_MODEL_PANEL),
    alpha: int | None = _opt(
        None,
        "--alpha",
        min=1,
        help="LoRA alpha (default twice the rank).",
        show_default=False,
        panel=_MODEL_PANEL,
    ),
    dropout: float = _opt(0.1, "--dropout", min=0.0, max=0.99, help="LoRA dropout.", panel=_MODEL_PANEL),
    target: list[str] | None = typer.Option(
        None,
        "--target",
        help="LoRA target module name, repeatable (default q_proj k_proj v_proj o_proj; never the vision tower).",
        show_default=False,
        rich_help_panel=_MODEL_PANEL,
    ),
    loss: LossOn = typer.Option(
        LossOn.assistant,
        "--loss",
        help="assistant: learn only the answer (CoT and story); all: every non-vision token, as the original.",
        rich_help_panel=_MODEL_PANEL,
    ),
    split: str = _opt("train", "--split", "-s", help="Split to train on.", panel=_DATA_PANEL),
    eval_split: str | None = _opt(
        None,
        "--eval-split",
        help="Split to evaluate the loss on at each save.",
        show_default=False,
        panel=_DATA_PANEL,
    ),
    limit: int | None = _opt(
        None, "--limit", min=1, help="Only the first N stories.", show_default=False, panel=_DATA_PANEL
    ),
    max_length: int | None = _opt(
        32768,
        "--max-length",
        min=0,
        help="Most tokens per example; longer stories lose trailing frames (0 = no limit).",
        panel=_DATA_PANEL,
    ),
    max_images: int | None = _opt(
        None, "--max-images", min=1, help="Most frames per story.", show_default=False, panel=_DATA_PANEL
    ),
    box_space: BoxSpace = typer.Option(
        BoxSpace.original,
        "--box-space",
        help="Boxes in original pixels (published convention) or in the model's resized input.",
        rich_help_panel=_DATA_PANEL,
    ),
    min_pixels: int | None = _pixels_opt("min"),
    max_pixels: int | None = _pixels_opt("max"),
    order: str = _order_opt(),
    epochs: float = _opt(3.0, "--epochs", help="Training epochs.", panel=_OPT_PANEL),
    max_steps: int | None = _opt(
        None,
        "--max-steps",
        min=1,
        help="Stop after N optimiser steps (overrides --epochs).",
        show_default=False,
        panel=_OPT_PANEL,
    ),
    lr: float | None = _opt(
        None,
        "--lr",
        help="Learning rate (default 2e-4 for lora, 2e-5 otherwise).",
        show_default=False,
        panel=_OPT_PANEL,
    ),
    batch_size: int = _opt(1, "--batch-size", min=1, help="Stories per device batch.", panel=_OPT_PANEL),
    grad_accum: int = _opt(32, "--grad-accum", min=1, help="Batches per optimiser step.", panel=_OPT_PANEL),
    warmup_ratio: float = _opt(
        0.03, "--warmup-ratio", min=0.0, max=0.99, help="Warm-up share of steps.", panel=_OPT_PANEL
    ),
    weight_decay: float = _opt(0.01, "--weight-decay", min=0.0, help="Weight decay.", panel=_OPT_PANEL),
    gradient_checkpointing: bool = _opt(
        False,
        "--gradient-checkpointing",
        help="Trade compute for memory (recommended for 7B).",
        panel=_OPT_PANEL,
    ),
    save_steps: int = _opt(100, "--save-steps", min=1, help="Checkpoint every N steps.", panel=_OPT_PANEL),
    save_total_limit: int = _opt(10, "--save-total-limit", min=1, help="Checkpoints kept.", panel=_OPT_PANEL),
    logging_steps: int = _opt(10, "--logging-steps", min=1, help="Log every N steps.", panel=_OPT_PANEL),
    seed: int = _opt(0, "--seed", help="Seed for prompts, shuffling and initialisation.", panel=_OPT_PANEL),
    dtype: str = _dtype_opt(),
    device: str = _device_opt(),
) -> None:
    """Supervised fine-tuning on a StoryReasoning dataset (resumable; writes a model tell can load).

    Writes settings.json, fit.json, log.jsonl, checkpoints/ and final/ in --out. Run the same
    command again after a crash or Ctrl-C: it resumes from the newest checkpoint.
    """
    from .data.messages import MessageOptions
    from .train.commands import sft
    from .train.sft import LORA_TARGETS, SFTSettings

    messages = MessageOptions(
        max_images=max_images,
        box_space=box_space.value,
        order=order,
        seed=seed,
        **{k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None},
    )
    settings = SFTSettings(
        source=source,
        out=out,
        split=split,
        eval_split=eval_split,
        limit=limit,
        model=model,
        revision=revision,
        mode=mode.value,
        rank=rank,
        alpha=alpha,
        dropout=dropout,
        targets=tuple(target) if target else LORA_TARGETS,
        loss=loss.value,
        epochs=epochs,
        max_steps=max_steps,
        learning_rate=lr,
        batch_size=batch_size,
        grad_accum=grad_accum,
        warmup_ratio=warmup_ratio,
        weight_decay=weight_decay,
        max_length=max_length or None,
        messages=messages,
        save_steps=save_steps,
        save_total_limit=save_total_limit,
        logging_steps=logging_steps,
        dtype=dtype,
        device=device,
        gradient_checkpointing=gradient_checkpointing,
        seed=seed,
    )
    raise typer.Exit(sft(settings))


@train_app.command("pairs")
def train_pairs(
    source: str = typer.Argument(..., help=_SOURCE_HELP, show_default=False),
    runs: list[Path] = typer.Option(
        [],
        "--run",
        "-r",
        help="A run to take candidates from (tell-dataset folder or folder of {story_id}.txt), repeatable.",
        show_default=False,
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Pairs folder to write.", show_default=False),
    split: str | None = _split(),
    limit: int | None = _limit(),
    include_reference: bool = typer.Option(
        False, "--include-reference", help="The dataset's own output is one more candidate."
    ),
    min_margin: float = typer.Option(
        0.05, "--min-margin", min=0.0, help="Skip stories whose best and worst rewards differ by less."
    ),
    w_boxes: float = typer.Option(1.0, "--w-boxes", min=0.0, help="Weight of box F1 against the reference."),
    w_reid: float = typer.Option(1.0, "--w-reid", min=0.0, help="Weight of re-identification (link F1)."),
    w_mentions: float = typer.Option(
        1.0, "--w-mentions", min=0.0, help="Weight of grounded pronouns and names."
    ),
    cross_source: float = typer.Option(
        1.0, "--cross-source", min=0.0, help="Penalty per share of links across frames of different sources."
    ),
    no_gate: bool = typer.Option(
        False, "--no-gate", help="Structure is a component, not a gate (ill-formed outputs can still score)."
    ),
) -> None:
    """Preference pairs for DPO: score each story's candidates with the reward, best against worst.

    Writes pairs.jsonl and manifest.json. The reward (structure gate, box F1,
    re-identification with a cross-source penalty, grounded mentions) is described in
    the README, Training.
    """
    from .train.commands import pairs
    from .train.reward import RewardWeights

    try:
        weights = RewardWeights(
            boxes=w_boxes, reid=w_reid, mentions=w_mentions, cross_source=cross_source, gate=not no_gate
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    raise typer.Exit(
        pairs(
            source,
            runs,
            out,
            split=split,
            limit=limit,
            include_reference=include_reference,
            min_margin=min_margin,
            weights=weights,
        )
    )


@train_app.command("dpo")
def train_dpo(
    pairs_folders: list[str] = typer.Argument(
        ..., metavar="PAIRS...", help="Pairs folders (train pairs), real and contrastive.", show_default=False
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Training folder (created; resumed when it exists).", show_default=False
    ),
    model: str = _opt(
        "daniel3303/QwenStoryteller",
        "--model",
        "-m",
        help="Model to improve: hub id or folder (a LoRA adapter must be merged first with train merge).",
        panel=_MODEL_PANEL,
    ),
    revision: str | None = _opt(None, "--revision", help="Hub revision of the model.", panel=_MODEL_PANEL),
    dataset: str | None = _opt(
        None,
        "--dataset",
        help="Dataset holding the pairs' frames (default: the one each pairs folder names).",
        show_default=False,
        panel=_DATA_PANEL,
    ),
    mode: TrainMode = typer.Option(
        TrainMode.lora, "--mode", help="lora, full or language (as train sft).", rich_help_panel=_MODEL_PANEL
    ),
    rank: int = _opt(2048, "--rank", min=1, help="LoRA rank (QwenStoryteller2: 2048).", panel=_MODEL_PANEL),
    alpha: int | None = _opt(
        None,
        "--alpha",
        min=1,
        help="LoRA alpha (default twice the rank).",
        show_default=False,
        panel=_MODEL_PANEL,
    ),
    dropout: float = _opt(0.05, "--dropout", min=0.0, max=0.99, help="LoRA dropout.", panel=_MODEL_PANEL),
    beta: float = _opt(0.1, "--beta", min=0.0, help="DPO temperature β.", panel=_OPT_PANEL),
    max_length: int | None = _opt(
        32768,
        "--max-length",
        min=0,
        help="Skip pairs longer than this many tokens (0 = no limit).",
        panel=_DATA_PANEL,
    ),
    min_pixels: int | None = _pixels_opt("min"),
    max_pixels: int | None = _pixels_opt("max"),
    order: str = _order_opt(),
    epochs: float = _opt(3.0, "--epochs", help="Training epochs.", panel=_OPT_PANEL),
    max_steps: int | None = _opt(
        None, "--max-steps", min=1, help="Stop after N optimiser steps.", show_default=False, panel=_OPT_PANEL
    ),
    lr: float = _opt(5e-6, "--lr", help="Learning rate.", panel=_OPT_PANEL),
    batch_size: int = _opt(1, "--batch-size", min=1, help="Pairs per device batch.", panel=_OPT_PANEL),
    grad_accum: int = _opt(8, "--grad-accum", min=1, help="Batches per optimiser step.", panel=_OPT_PANEL),
    gradient_checkpointing: bool = _opt(
        False, "--gradient-checkpointing", help="Trade compute for memory.", panel=_OPT_PANEL
    ),
    save_steps: int = _opt(100, "--save-steps", min=1, help="Checkpoint every N steps.", panel=_OPT_PANEL),
    logging_steps: int = _opt(10, "--logging-steps", min=1, help="Log every N steps.", panel=_OPT_PANEL),
    seed: int = _opt(0, "--seed", help="Seed for prompts, shuffling and initialisation.", panel=_OPT_PANEL),
    dtype: str = _dtype_opt(),
    device: str = _device_opt(),
) -> None:
    """Contrastive preference training (DPO) on reward-ranked pairs, as QwenStoryteller2 (resumable).

    Defaults are QwenStoryteller2's: LoRA rank 2048, alpha 4096, lr 5e-6, batch 8, 3 epochs, beta 0.1.
    """
    from .data.messages import MessageOptions
    from .train.commands import dpo
    from .train.dpo import DPOSettings

    messages = MessageOptions(
        order=order,
        seed=seed,
        **{k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None},
    )
    settings = DPOSettings(
        pairs=tuple(pairs_folders),
        out=out,
        model=model,
        revision=revision,
        dataset=dataset,
        mode=mode.value,
        rank=rank,
        alpha=alpha,
        dropout=dropout,
        beta=beta,
        epochs=epochs,
        max_steps=max_steps,
        learning_rate=lr,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_length=max_length or None,
        messages=messages,
        save_steps=save_steps,
        logging_steps=logging_steps,
        dtype=dtype,
        device=device,
        gradient_checkpointing=gradient_checkpointing,
        seed=seed,
    )
    raise typer.Exit(dpo(settings))


@train_app.command("merge")
def train_merge(
    adapter: Path = typer.Argument(
        ..., help="A LoRA adapter folder (train sft's final/).", show_default=False
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the merged model.", show_default=False),
    base: str | None = typer.Option(
        None, "--base", help="Base model (default: the one the adapter names).", show_default=False
    ),
    dtype: str = typer.Option("auto", "--dtype", help="auto (float32), bfloat16, float16 or float32."),
) -> None:
    """Merge a LoRA adapter into its base model: one folder that tell, serve and vLLM load."""
    from .train.commands import merge

    raise typer.Exit(merge(adapter, out, base=base, dtype=dtype))


class Writer(str, Enum):
    template = "template"
    chat = "chat"


@app.command("build")
def build(
    frames: Path = typer.Argument(
        ...,
        help="A folder of frames (one story), a folder of such folders (one story each), or videos (a file or "
        "a folder of them: one key frame per shot).",
        show_default=False,
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Dataset folder to write (story folders; resumed when it exists).",
        show_default=False,
    ),
    writer: Writer = typer.Option(
        Writer.template,
        "--writer",
        help="template: the baseline's templates, offline; chat: a language model at --endpoint writes the "
        "CoT and the story.",
    ),
    endpoint: str | None = _endpoint_opt(),
    served_model: str | None = _served_model_opt(),
    api_key: str | None = _api_key_opt(),
    timeout: float = _timeout_opt(),
    temperature: float = _temperature_opt(),
    top_p: float = _top_p_opt(),
    max_new_tokens: int = _opt(8192, "--max-new-tokens", help="Longest answer.", panel=_SAMPLING_PANEL),
    seed: int | None = _seed_opt(),
    max_tries: int = typer.Option(
        4, "--max-tries", min=1, help="Attempts per text, each told what was wrong."
    ),
    min_frames: int = typer.Option(2, "--min-frames", min=1, help="Skip stories with fewer frames."),
    max_frames: int | None = typer.Option(
        None, "--max-frames", min=1, help="Keep at most the first N frames of a story.", show_default=False
    ),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Only the first N stories.", show_default=False
    ),
    keep_invalid: bool = typer.Option(
        False, "--keep-invalid", help="Keep stories the validator rejects (marked in their meta.json)."
    ),
    detector: str | None = typer.Option(
        None,
        "--detector",
        help="An object detector (transformers hub id or folder, e.g. facebook/detr-resnet-50) for people and "
        "objects instead of the OpenCV baseline.",
        show_default=False,
        rich_help_panel="Perception",
    ),
    embedder: str | None = typer.Option(
        None,
        "--embedder",
        help="A vision model (e.g. google/siglip-base-patch16-224) whose crop features re-identify detections "
        "across frames; without it, detections are tracked by overlap.",
        show_default=False,
        rich_help_panel="Perception",
    ),
    detector_threshold: float = typer.Option(
        0.7,
        "--detector-threshold",
        min=0.0,
        max=1.0,
        help="Lowest detection score kept.",
        rich_help_panel="Perception",
    ),
    reid_threshold: float = typer.Option(
        0.85,
        "--reid-threshold",
        min=-1.0,
        max=1.0,
        help="Lowest cosine similarity to join an identity.",
        rich_help_panel="Perception",
    ),
    device: str = typer.Option(
        "auto", "--device", help="Device for the perception models.", rich_help_panel="Perception"
    ),
    frames_per_story: int = typer.Option(
        5, "--frames-per-story", min=1, help="Videos: key frames per story.", rich_help_panel="Videos"
    ),
    cut_threshold: float = typer.Option(
        0.35,
        "--cut-threshold",
        min=0.0,
        max=1.0,
        help="Videos: colour change between frames that starts a new shot.",
        rich_help_panel="Videos",
    ),
) -> None:
    """Build a StoryReasoning dataset from raw frames: people, re-identification, CoT tables, grounded story.

    Writes one story folder per story (frames, cot.md, story.md, meta.json), build.json,
    report.json and errors.jsonl. Run the same command again to continue an interrupted build.
    Exit status 1 when a story failed.
    """
    from .builder.commands import build as run
    from .tell.base import Sampling

    raise typer.Exit(
        run(
            frames,
            out,
            writer=writer.value,
            endpoint=endpoint,
            api_key=api_key,
            served_model=served_model,
            timeout=timeout,
            sampling=Sampling(temperature, top_p, max_new_tokens, seed),
            max_tries=max_tries,
            min_frames=min_frames,
            max_frames=max_frames,
            limit=limit,
            keep_invalid=keep_invalid,
            detector=detector,
            embedder=embedder,
            detector_threshold=detector_threshold,
            reid_threshold=reid_threshold,
            device=device,
            frames_per_story=frames_per_story,
            cut_threshold=cut_threshold,
        )
    )


class _DefaultRun(TyperGroup):
    """``evaluate RUN …`` means ``evaluate run RUN …``; ``evaluate compare …`` stays a subcommand."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


evaluate_app = typer.Typer(
    cls=_DefaultRun,
    help=(
        "Score a run against its dataset (grounding, identity, consistency, language), "
        "or compare evaluated runs.\n\n"
        "storyreasoning evaluate RUN --dataset SOURCE --split test   (same as: evaluate run RUN …)\n\n"
        "storyreasoning evaluate compare RUN1 RUN2 …"
    ),
    no_args_is_help=True,
)
app.add_typer(evaluate_app, name="evaluate")


class Protocol(str, Enum):
    default = "default"
    original = "original"


class LanguageBackend(str, Enum):
    auto = "auto"
    coco = "coco"
    python = "python"


@evaluate_app.command("run")
def evaluate_run(
    run: Path = typer.Argument(
        ...,
        help="A tell-dataset run folder, or a folder of {story_id}.txt raw outputs (the original's layout).",
        show_default=False,
        metavar="RUN",
    ),
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        "-d",
        help="The reference dataset (hub id, save_to_disk folder, parquet, story folders); "
        "default: the one the run's manifest names.",
        show_default=False,
    ),
    split: str | None = typer.Option(
        None, "--split", "-s", help="Split of the dataset (default: the run's split).", show_default=False
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Where the report goes (default: RUN/eval).", show_default=False
    ),
    metrics: str = typer.Option(
        "all",
        "--metrics",
        help="Metric families, comma-separated: grounding, identity, consistency, language.",
    ),
    protocol: Protocol = typer.Option(
        Protocol.default,
        "--protocol",
        help="default: boxes match within their image, missing outputs score zero. "
        "original: the original driver's numbers, quirks included.",
    ),
    language_backend: LanguageBackend = typer.Option(
        LanguageBackend.auto,
        "--language-backend",
        help="coco: pycocoevalcap (Java); python: pure-Python fallback; auto: coco when Java is available.",
    ),
    limit: int | None = _limit(),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write PNG plots (needs matplotlib)."),
    as_json: bool = typer.Option(False, "--json", help="Print metrics.json to standard output."),
) -> None:
    """Score a run: writes metrics.json, metrics.md, per_story.csv and plots/ (default RUN/eval)."""
    from .evaluate.commands import evaluate
    from .evaluate.report import parse_families

    raise typer.Exit(
        evaluate(
            run,
            dataset=dataset,
            split=split,
            out=out,
            families=parse_families(metrics),
            protocol=protocol.value,
            language_backend=language_backend.value,
            limit=limit,
            plots=plots,
            as_json=as_json,
        )
    )


@evaluate_app.command("compare")
def evaluate_compare(
    runs: list[Path] = typer.Argument(
        ..., help="Evaluated runs (run folders holding eval/, or report folders).", show_default=False
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write compare.md, compare.json and compare.png here.", show_default=False
    ),
    metrics: str | None = typer.Option(
        None,
        "--metrics",
        help="Only these metrics or families, comma-separated (grounding, language.bleu_4, …).",
        show_default=False,
    ),
) -> None:
    """Evaluated runs side by side: one table (and a plot with --out)."""
    from .evaluate.commands import compare

    raise typer.Exit(compare(runs, out=out, metrics=metrics))


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line on stderr, never a traceback."""
    try:
        app(args=argv, prog_name="storyreasoning")
    except StoryReasoningError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)


def _fail(message: str, code: int) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False).print(f"[bold red]error:[/bold red] {message}", markup=True)
    sys.exit(code)


__all__ = ["UsageError", "app", "main"]

if __name__ == "__main__":  # pragma: no cover
    main()
