"""Serving a storyteller behind an OpenAI-compatible API (vLLM, else ``transformers serve``).

vLLM's defaults do not fit stories: it accepts one image per prompt unless told
otherwise, and it reserves memory for the largest possible image. :func:`vllm_command`
derives the flags from the story length instead: ``--limit-mm-per-prompt`` from the
number of frames, ``--max-model-len`` from frames x image tokens at the pixel budget
plus the prompt and the answer, and ``--mm-processor-kwargs`` with the same pixel budget
the model was trained and evaluated with: the one a training (or ``train merge``) saved with
a model folder (:func:`trained_pixel_budget`), else the Qwen2.5-VL model cards' budget.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ..files import read_json_object
from .local import TRAINED_RECORD

# Qwen2.5-VL model cards' recommended budget: 256 to 1280 tokens of 28x28 per image.
DEFAULT_MIN_PIXELS = 256 * 28 * 28
DEFAULT_MAX_PIXELS = 1280 * 28 * 28
DEFAULT_MAX_IMAGES = 20
PROMPT_OVERHEAD = 512  # system prompt, user prompt and chat markup, in tokens (generous)


@dataclass(frozen=True)
class ServePlan:
    command: list[str]
    server: str  # "vllm" or "transformers"
    endpoint: str
    max_model_len: int | None
    notes: list[str]

    def shell(self) -> str:
        import shlex

        return shlex.join(self.command)


MAX_CONTEXT = 1 << 20
"""The longest context ``serve`` asks a server for: a million tokens, well past any model it serves."""


def max_model_len(max_images: int, max_pixels: int, max_new_tokens: int) -> int:
    """Tokens a story can need: every frame at the full budget, the prompt and the answer, rounded up to 1024."""
    per_image = max_pixels // (28 * 28)
    need = max_images * per_image + PROMPT_OVERHEAD + max_new_tokens
    return int(math.ceil(need / 1024) * 1024)


def trained_pixel_budget(model: str) -> tuple[int, int] | None:
    """The pixel budget a storyreasoning training saved with the model folder ``model``, or None.

    Training sets its budget on the processor and saves the processor with the weights, so the
    saved processor is what ``tell --model FOLDER`` sees: its ``size`` (``shortest_edge``,
    ``longest_edge``; ``min_pixels``/``max_pixels`` in older transformers), in
    ``processor_config.json`` or ``preprocessor_config.json``; else the settings
    ``storyreasoning.json`` records. None for a hub id, or a folder no training wrote (without
    :data:`~.local.TRAINED_RECORD`: a base model's processor allows 12.8M pixels an image, no training's budget).
    """
    folder = Path(model)
    if not (folder / TRAINED_RECORD).is_file():
        return None
    candidates = []
    for name, key in (("processor_config.json", "image_processor"), ("preprocessor_config.json", None)):
        data = read_json_object(folder / name)
        if key is not None:
            data = data.get(key)
        if isinstance(data, dict):
            size = data.get("size") if isinstance(data.get("size"), dict) else {}
            candidates.append((size.get("shortest_edge") or size.get("min_pixels") or data.get("min_pixels"),
                               size.get("longest_edge") or size.get("max_pixels") or data.get("max_pixels")))  # fmt: skip
    from .local import training_settings

    settings = training_settings(model)
    candidates.append((settings.get("min_pixels"), settings.get("max_pixels")))
    for low, high in candidates:
        if isinstance(low, int) and isinstance(high, int) and 0 < low <= high:
            return low, high
    return None


def merged_folder(adapter: str) -> Path:
    """Where to suggest ``train merge`` writes an adapter: ``runs/x-merged`` for ``runs/x/final``."""
    path = Path(adapter)
    named = path.parent if path.name == "final" and path.parent.name not in ("", ".") else path
    return named.with_name(f"{named.name}-merged")


def have_vllm() -> bool:
    return executable("vllm") is not None or importlib.util.find_spec("vllm") is not None


def executable(name: str) -> str | None:
    """Where the console script ``name`` (``vllm``, ``transformers``) is: on PATH, else beside this
    Python (an environment run as ``.venv/bin/storyreasoning`` without activating it); None when it is
    in neither."""
    found = shutil.which(name)
    if found is None:
        found = shutil.which(name, path=str(Path(sys.executable).parent))
    return found


def check_port(host: str, port: int) -> None:
    """Refuse a port something already listens on, in one line, before a server spends its start loading
    the model and then fails to bind it."""
    import errno
    import socket

    from ..errors import UsageError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return  # an address this machine cannot resolve: the server says so
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: a closing port is free
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(
                    f"port {port} on {host} is in use (another server?); stop it or pass another --port"
                ) from None


def plan(
    model: str,
    *,
    max_images: int = DEFAULT_MAX_IMAGES,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    max_new_tokens: int = 4096,
    host: str = "127.0.0.1",
    port: int = 8000,
    server: str = "auto",
    extra: list[str] | None = None,
) -> ServePlan:
    """The command that serves ``model``; ``server`` is ``auto`` (vLLM when installed), ``vllm`` or ``transformers``.

    ``min_pixels``/``max_pixels`` left None are the budget the model folder was trained with
    (:func:`trained_pixel_budget`), else :data:`DEFAULT_MIN_PIXELS`/:data:`DEFAULT_MAX_PIXELS`.
    """
    from ..errors import UsageError
    from ..models import missing_model_folder
    from .local import DEFAULT_MODEL

    error = missing_model_folder(
        model, DEFAULT_MODEL
    )  # a hub id is the server's to download; a folder must exist
    if error is not None:
        raise error
    # train's LoRA final/: no config.json for a server to load; vLLM serves adapters only on top of a base model
    # given apart (--enable-lora) and only up to rank 512, where QwenStoryteller2's recipe trains rank 2048
    if (Path(model) / "adapter_config.json").is_file():
        merged = merged_folder(model)
        raise UsageError(
            f"{model} is a LoRA adapter, which a server cannot load as a model; merge it into its base first: "
            f"storyreasoning train merge {model} --out {merged}, then serve --model {merged}"
        )
    if max_images < 1:
        raise UsageError("--max-images must be at least 1")
    trained = trained_pixel_budget(model)
    origin = f"from {model}" if trained else "serve's default"
    low, high = trained or (DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS)
    given = [flag for flag, value in (("--min-pixels", min_pixels), ("--max-pixels", max_pixels))
             if value is not None]  # fmt: skip
    min_pixels = low if min_pixels is None else min_pixels
    max_pixels = high if max_pixels is None else max_pixels
    if not 0 < min_pixels <= max_pixels:
        shown = [f"{value}" if flag in given else f"{value} ({origin})"
                 for flag, value in (("--min-pixels", min_pixels), ("--max-pixels", max_pixels))]  # fmt: skip
        raise UsageError(f"need 0 < --min-pixels <= --max-pixels, got {shown[0]} and {shown[1]}")
    if given:
        origin = "from " + "/".join(given) + ("" if len(given) == 2 else f", the other bound {origin}")
    if server not in ("auto", "vllm", "transformers"):
        raise UsageError(f"--server must be auto, vllm or transformers, got {server!r}")
    use_vllm = server == "vllm" or (server == "auto" and have_vllm())
    if not 0 < port < 65536:  # port 0 (any free one) would leave the endpoint to give tell unknown
        raise UsageError(f"--port must be between 1 and 65535, got {port}")
    address = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    endpoint = (
        f"http://{f'[{address}]' if ':' in address else address}:{port}/v1"  # an IPv6 address in brackets
    )
    notes: list[str] = []
    if use_vllm:
        length = max_model_len(max_images, max_pixels, max_new_tokens)
        if length > MAX_CONTEXT:
            raise UsageError(
                f"--max-images {max_images} at --max-pixels {max_pixels} with --max-new-tokens {max_new_tokens} "
                f"ask for a context of {length:,} tokens, more than any model serves ({MAX_CONTEXT:,}); "
                "lower them (Qwen2.5-VL holds 128,000)"
            )
        command = [
            "vllm",
            "serve",
            model,
            "--host",
            host,
            "--port",
            str(port),
            "--limit-mm-per-prompt",
            json.dumps({"image": max_images}),
            "--max-model-len",
            str(length),
            "--mm-processor-kwargs",
            json.dumps({"min_pixels": min_pixels, "max_pixels": max_pixels}),
        ]
        notes.append(
            f"up to {max_images} images of at most {max_pixels // 784} image tokens each, "
            f"{max_new_tokens} new tokens: max model length {length}"
        )
        notes.append(f"pixel budget {min_pixels} to {max_pixels} ({origin})")
        return ServePlan(command + list(extra or []), "vllm", endpoint, length, notes)
    if server == "auto":
        notes.append("vLLM is not installed: serving with `transformers serve` (fine for testing, slower)")
    notes.append(
        "transformers serve uses the model's own processor budget; pass --min-pixels/--max-pixels to "
        "`storyreasoning tell --model` for local runs, or use vLLM to set it on the server"
    )
    command = ["transformers", "serve", model, "--host", host, "--port", str(port)]
    return ServePlan(command + list(extra or []), "transformers", endpoint, None, notes)
