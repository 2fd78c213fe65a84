"""The settings of the telling jobs, and the option groups other jobs share: storyteller and sampling.

:class:`TellerOptions` (which storyteller: local weights, an endpoint or the baseline)
and :class:`SamplingOptions` (sampling and prompt) are declared once here; ``tell``,
``tell-dataset``, the studio and the builder inherit them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..format.prompts import DEFAULT_PROMPT, SYSTEM_PROMPT, Order
from ..settings import REQUIRED, argument, option
from .base import DEFAULT_MAX_NEW_TOKENS, DEFAULT_TEMPERATURE, DEFAULT_TOP_P, Prompt, Sampling

TELLER = "Storyteller (one of --model, --endpoint, --teller)"
SAMPLING = "Sampling and prompt"
LOCAL = "Local weights"

RETRIES_HELP = "Retries of a request that failed before any output (connection, 429, 5xx)."

SOURCE_HELP = (
    "A dataset: a hub id (daniel3303/StoryReasoning), a save_to_disk folder, parquet files or a folder of "
    "story folders (see README, Data)."
)


@dataclass(frozen=True, kw_only=True)
class EndpointOptions:
    """How to reach an OpenAI-compatible server (vLLM, transformers serve, any other)."""

    endpoint: str | None = option(
        None, "--endpoint", "-e", help="Base URL of an OpenAI-compatible server (vLLM, transformers serve).",
        panel=TELLER, operational=True, url=True,
    )  # fmt: skip
    served_model: str | None = option(
        None, help="Model name on the server (default: the first it lists).", panel=TELLER
    )
    api_key: str | None = option(
        None,
        help="API key for the server (default: $OPENAI_API_KEY); never recorded.",
        panel=TELLER,
        secret=True,
    )
    timeout: float = option(
        600.0,
        above=0.0,
        help="Seconds to wait for each read from the server (its answer, every next piece).",
        panel=TELLER,
        operational=True,
    )
    deadline: float | None = option(
        None,
        min=0,
        help="Seconds a whole story may take against a server, retries included; past it the story ends and "
        "its partial output is kept (default: one per --max-new-tokens token, at least 600; 0: none).",
        panel=TELLER,
        show_default=False,
        operational=True,
    )
    retries: int = option(
        3,
        min=0,
        help=RETRIES_HELP,
        panel=TELLER,
        operational=True,
    )


@dataclass(frozen=True, kw_only=True)
class TellerOptions(EndpointOptions):
    """Which storyteller: local weights (``model``), a server (``endpoint``) or a built-in (``teller``)."""

    model: str | None = option(
        None, "--model", "-m", help="Local model folder or hub id (default daniel3303/QwenStoryteller2).",
        panel=TELLER, place=True,
    )  # fmt: skip
    teller: str | None = option(
        None, help="A built-in teller: 'baseline' (OpenCV, no model weights).", panel=TELLER
    )
    dtype: str = option("auto", help="Local weights: auto, bfloat16, float16 or float32.", panel=LOCAL)
    device: str = option("auto", help="Local weights: auto, cpu, cuda, cuda:1, mps.", panel=LOCAL)
    revision: str | None = option(None, help="Hub revision of the model.", panel=LOCAL)
    min_pixels: int | None = option(
        None, min=1, help="Processor pixel budget per image, lower bound (local weights; vLLM endpoints).",
        panel=LOCAL,
    )  # fmt: skip
    max_pixels: int | None = option(
        None, min=1, help="Processor pixel budget per image, upper bound (local weights; vLLM endpoints).",
        panel=LOCAL,
    )  # fmt: skip
    # how local weights decode: a greedy output is the same whichever (tests/tell/test_local_decoding.py)
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = option(
        "auto", panel=LOCAL, operational=True,
        help="Local weights: attention kernel: auto (transformers' choice, SDPA), sdpa, eager or "
        "flash_attention_2 (a CUDA GPU and pip install flash-attn).",
    )  # fmt: skip
    cache: Literal["dynamic", "static"] = option(
        "dynamic", panel=LOCAL, operational=True,
        help="Local weights: key-value cache: dynamic (grows each step) or static (allocated whole for the "
        "prompt and --max-new-tokens, one shape for every step; what --compile needs).",
    )  # fmt: skip
    compile: bool = option(
        False, panel=LOCAL, operational=True,
        help="Local weights: torch.compile the decoding step (needs --cache static; CUDA graphs on a GPU; "
        "each new batch shape waits for a compilation first).",
    )  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class SamplingOptions:
    """How to sample."""

    # the bounds Sampling checks (for the Python API), declared here so that --help shows them and an error
    # names the flag or config key
    temperature: float = option(DEFAULT_TEMPERATURE, min=0.0, help="Sampling temperature; 0 is greedy.",
                                panel=SAMPLING)  # fmt: skip
    top_p: float = option(
        DEFAULT_TOP_P, above=0.0, max=1.0, help="Nucleus sampling (1 keeps every token).", panel=SAMPLING
    )
    max_new_tokens: int = option(DEFAULT_MAX_NEW_TOKENS, min=1, help="Longest output.", panel=SAMPLING)
    # local weights seed numpy too, which takes 0 to 2**32 - 1
    seed: int | None = option(None, min=0, max=2**32 - 1, help="Random seed.", panel=SAMPLING)

    def as_sampling(self) -> Sampling:
        return Sampling(self.temperature, self.top_p, self.max_new_tokens, self.seed)


@dataclass(frozen=True, kw_only=True)
class PromptOptions:
    """What the storyteller is asked, and in which order it sees the images and the prompt."""

    prompt: str = option(DEFAULT_PROMPT, help="The user prompt.", panel=SAMPLING)
    system_prompt: str | None = option(
        None, help="Replace the storyteller system prompt ('' for none).", panel=SAMPLING, show_default=False
    )
    # None: the order a training recorded in the --model folder (tell.commands.prompt_layout), so a model
    # trained text-first is asked as it learned; images-first for any other teller and in the Python API
    order: Order | None = option(
        None, panel=SAMPLING, show_default=False,
        help="Images before the prompt, or after it (default: the order the --model folder was trained with, "
        "else images-first).",
    )  # fmt: skip

    def as_prompt(self) -> Prompt:
        system = SYSTEM_PROMPT if self.system_prompt is None else (self.system_prompt or None)
        return Prompt(text=self.prompt, system=system, order=self.order or "images-first")


@dataclass(frozen=True, kw_only=True)
class TellSettings(TellerOptions, SamplingOptions, PromptOptions):
    images: tuple[Path, ...] = argument(
        help="The images, in story order (a folder stands for its numbered frames).", metavar="IMAGES..."
    )
    out: Path | None = option(
        None, "--out", "-o",
        help="Write the raw output to this file, the parse beside it (.json) and an HTML view (.html).",
    )  # fmt: skip
    as_json: bool = option(False, "--json", help="Print the parse as JSON instead of tables.")
    # one story with someone waiting for it: one retry by default, not a batch run's three
    retries: int = option(
        1,
        min=0,
        help=RETRIES_HELP,
        panel=TELLER,
        operational=True,
    )


@dataclass(frozen=True, kw_only=True)
class TellDatasetSettings(TellerOptions, SamplingOptions, PromptOptions):
    source: str = argument(help=SOURCE_HELP, place=True)
    out: Path = option(REQUIRED, "--out", "-o", help="Run folder (created; resumed when it exists).")
    split: str | None = option(None, "--split", "-s", help="Split to tell (all when omitted).")
    limit: int | None = option(None, min=1, help="Only the first N stories.")
    concurrency: int = option(8, min=1, help="Requests in flight against an endpoint.", panel=TELLER)
    batch_size: int = option(4, min=1, help="Stories per generate call with local weights.", panel=LOCAL)
    # a batch run may use several servers: the endpoint group's one URL, repeatable here
    endpoint: tuple[str, ...] = option(
        (), "--endpoint", "-e",
        help="Base URL of an OpenAI-compatible server (vLLM, transformers serve). Repeat it (or give a comma list) "
        "for several serving the same model: each story goes to the least busy, a failing one is taken out "
        "and asked again later.",
        panel=TELLER, operational=True, url=True,
    )  # fmt: skip
    samples: int = option(
        1, min=1,
        help="Candidates a story, asked in one request (the API's n: vLLM fills the prompt and encodes the "
        "images once); a server that ignores n is asked once a candidate. With local weights, one generate "
        "call a batch (num_return_sequences; needs --temperature above 0).",
        panel=SAMPLING,
    )  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class ServeSettings:
    model: str = option(REQUIRED, "--model", "-m", help="Model folder or hub id to serve.", place=True)
    max_images: int = option(20, min=1, help="Most images per story (per prompt).")
    # None: the budget a training saved with the model folder, so a model is served as it was trained
    min_pixels: int | None = option(
        None, min=1,
        help="Pixel budget per image, lower bound (default: the one training saved with the model folder, "
        "else 256*28*28).",
    )  # fmt: skip
    max_pixels: int | None = option(
        None, min=1,
        help="Pixel budget per image, upper bound (default: the one training saved with the model folder, "
        "else 1280*28*28).",
    )  # fmt: skip
    max_new_tokens: int = option(4096, min=1, help="Longest answer to leave room for.")
    host: str = option("127.0.0.1", help="Address to listen on.")
    port: int = option(8000, min=1, max=65535, help="Port to listen on.")
    server: str = option("auto", help="auto (vLLM when installed), vllm or transformers.")
    print_only: bool = option(False, "--print", help="Print the command and the endpoint; do not run it.")


__all__ = [
    "EndpointOptions",
    "PromptOptions",
    "SamplingOptions",
    "ServeSettings",
    "TellDatasetSettings",
    "TellSettings",
    "TellerOptions",
]
