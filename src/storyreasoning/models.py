"""Loading models and processors: hub ids, local folders and adapters; device and dtype choice.

Shared by the storytellers (:mod:`.tell`), training (:mod:`.train`) and the dataset
builder (:mod:`.builder`). torch and transformers are imported inside the functions,
so importing this module stays light.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

from .errors import StoryReasoningError, UsageError

#: What a failed load suggests when the caller names nothing better.
LOAD_HINT = "pass a local model folder or make sure the hub is reachable"


def import_torch():
    """``(torch, transformers)``, or one clear error saying how to install them."""
    try:
        import torch
        import transformers
    except ImportError:
        raise UsageError(
            "local weights need torch and transformers: install torch for your machine, then "
            "pip install 'storyreasoning[train]'"
        ) from None
    return torch, transformers


#: What ``--device`` takes (telling over local weights, training), for the errors and the help texts.
DEVICES = "auto, cpu, cuda, cuda:N or mps"
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(?::\d+)?)$")


def check_device(spec: str) -> str:
    """``--device`` checked before any weights load: ``spec`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``,
    ``mps``; any case) in lower case, or one :class:`UsageError` when it is no
    device or torch cannot use it on this machine.

    ``auto`` and ``cpu`` never import torch; without torch installed a GPU is not checked (loading the
    weights says to install it). :func:`choose_device` then resolves ``auto``.
    """
    device = str(spec).strip().lower()
    if not _DEVICE.match(device):
        raise UsageError(f"--device {spec} is not a device: use {DEVICES}")
    if device in ("auto", "cpu"):
        return device
    try:
        import torch
    except ImportError:
        return device
    if device == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UsageError(
                "--device mps: no Apple GPU (MPS) is available to torch; use --device cpu or auto"
            )
        return device
    if not torch.cuda.is_available():
        raise UsageError(f"--device {spec}: no CUDA GPU is visible to torch; use --device cpu or auto")
    index, count = int(device.partition(":")[2] or 0), torch.cuda.device_count()
    if index >= count:
        raise UsageError(
            f"--device {spec}: torch sees {count} CUDA GPU{'s' if count != 1 else ''} "
            f"(cuda:0{f' to cuda:{count - 1}' if count > 1 else ''}); use one of them, or auto"
        )
    return device


def choose_device(device: str = "auto") -> str:
    torch, _ = import_torch()
    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def choose_dtype(dtype: str, device: str):
    torch, _ = import_torch()
    if dtype != "auto":
        try:
            return getattr(torch, dtype)
        except AttributeError:
            raise UsageError(f"unknown dtype {dtype!r}; use auto, bfloat16, float16 or float32") from None
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def set_pixel_budget(
    processor, min_pixels: int | None, max_pixels: int | None
) -> tuple[int | None, int | None]:
    """Set a Qwen2-VL-style processor's pixel budget (None keeps its own); return the budget in force."""
    ip = processor.image_processor
    size = dict(getattr(ip, "size", None) or {})
    if min_pixels is not None:
        size["shortest_edge"] = int(min_pixels)
        if hasattr(ip, "min_pixels"):
            ip.min_pixels = int(min_pixels)
    if max_pixels is not None:
        size["longest_edge"] = int(max_pixels)
        if hasattr(ip, "max_pixels"):
            ip.max_pixels = int(max_pixels)
    if size:
        ip.size = size
    low = int(size.get("shortest_edge") or getattr(ip, "min_pixels", 0) or 0) or None
    high = int(size.get("longest_edge") or getattr(ip, "max_pixels", 0) or 0) or None
    if low and high and low > high:
        raise UsageError(f"min pixels {low} exceed max pixels {high}")
    return low, high


def load_pretrained(
    model: str,
    *,
    revision: str | None = None,
    dtype: Any = None,
    attn_implementation: str | None = None,
    hint: str = LOAD_HINT,
) -> tuple[Any, Any]:
    """``(processor, model)`` of a hub id or a local folder, or one clear error saying what to pass instead.

    A folder holding a PEFT adapter loads its base model with the adapter on it.
    """
    processor = load_processor(model, revision=revision, hint=hint)
    net = load_weights(
        model, revision=revision, dtype=dtype, attn_implementation=attn_implementation, hint=hint
    )
    return processor, net


def load_processor(model: str, *, revision: str | None = None, hint: str = LOAD_HINT) -> Any:
    """The processor of a hub id or a local folder (no weights), or one clear error, as :func:`load_pretrained`."""
    _, transformers = import_torch()
    with _loading(model, hint):
        return transformers.AutoProcessor.from_pretrained(model, revision=revision)


def load_weights(
    model: str,
    *,
    revision: str | None = None,
    dtype: Any = None,
    attn_implementation: str | None = None,
    hint: str = LOAD_HINT,
) -> Any:
    """The model of a hub id or a local folder (a PEFT adapter folder: its base with the adapter on it), or
    one clear error, as :func:`load_pretrained`."""
    _, transformers = import_torch()
    kwargs: dict = {"revision": revision}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    with _loading(model, hint):
        return transformers.AutoModelForImageTextToText.from_pretrained(model, **kwargs)


@contextlib.contextmanager
def _loading(model: str, hint: str) -> Iterator[None]:
    """A model that does not load, said in one line ending in ``hint``."""
    try:
        yield
    except (OSError, ValueError, KeyError) as exc:
        # OSError: missing files or no hub; ValueError/KeyError: a folder or config that is not such a model
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise StoryReasoningError(f"cannot load the model {model!r} ({first}); {hint}") from exc


def adapter_base(net) -> str | None:
    """The base model a PEFT adapter loaded by ``from_pretrained`` sits on, or None."""
    configs = getattr(net, "peft_config", None)
    if not configs:
        return None
    first = next(iter(configs.values()))
    return getattr(first, "base_model_name_or_path", None) or "unknown base model"


def hub_commit(model: str, revision: str | None = None) -> str | None:
    """The commit of the hub id ``model`` (at ``revision``: a branch, a tag or a commit) that the local hub
    cache holds, which is what transformers loads from; None for a local folder or a model not cached.

    How a run names the exact version of a hub model: transformers 5 no longer keeps the commit on the
    loaded config, and ``--revision`` may be a branch or nothing (the newest commit at the time).
    """
    from pathlib import Path

    if looks_like_path(model) or Path(model).expanduser().exists():
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(model, "config.json", revision=revision)
    except Exception:  # not a valid repo id, a cache that cannot be read: no commit known
        return None
    if not isinstance(found, str):
        return None
    path = Path(found)
    return path.parent.name if path.parent.parent.name == "snapshots" else None


HUB_TIMEOUT = 10.0  # seconds to learn whether the hub answers (a refused or unresolved host fails at once)


def looks_like_path(model: str) -> bool:
    """Whether ``model`` can only be a folder (``/x``, ``./x``, ``~/x``, ``a/b/c``), not a hub id."""
    return (
        model.startswith(("/", "./", "../", "~", ".\\"))
        or model in (".", "..")
        or model.endswith(("/", "\\"))
        or model.count("/") > 1
        or "\\" in model
    )


def missing_model_folder(model: str, example: str = "Qwen/Qwen2.5-VL-7B-Instruct") -> UsageError | None:
    """The error for a model folder that does not exist (None when it exists or may be a hub id)."""
    from pathlib import Path

    if looks_like_path(model) and not Path(model).expanduser().exists():
        return UsageError(
            f"the model folder {model} does not exist; check the path, or give a hub id such as {example}"
        )
    return None


def check_model_source(
    model: str,
    *,
    revision: str | None = None,
    hint: str = LOAD_HINT,
    example: str = "Qwen/Qwen2.5-VL-7B-Instruct",
) -> None:
    """Before torch loads: a model folder that does not exist, or a hub id that is neither in the local
    cache nor reachable (``HF_HUB_OFFLINE`` set, no network), is one clear line now, not minutes of
    download retries. A reachable hub, a cached model and a local folder pass."""
    from pathlib import Path

    error = missing_model_folder(model, example)
    if error is not None:
        raise error
    if Path(model).expanduser().exists():
        return
    try:
        from huggingface_hub import HfApi, constants, try_to_load_from_cache
        from huggingface_hub.errors import HfHubHTTPError, HFValidationError
    except ImportError:  # then transformers is missing too: import_torch says how to install it
        return
    try:
        cached = try_to_load_from_cache(model, "config.json", revision=revision)
    except (HFValidationError, ValueError):
        raise UsageError(
            f"--model {model} is neither a folder here nor a hub id (owner/name); check the path"
        ) from None
    if isinstance(cached, str):
        return
    if constants.HF_HUB_OFFLINE:
        raise StoryReasoningError(
            f"{model} is not in the local Hugging Face cache and the hub is off (HF_HUB_OFFLINE is set); "
            + hint
        )
    try:
        HfApi().model_info(model, revision=revision, timeout=HUB_TIMEOUT)
    except HfHubHTTPError:  # the hub answered (not found, gated, …): loading says what is wrong
        return
    except Exception as exc:  # no route, no name resolution, refused, timed out
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise StoryReasoningError(
            f"cannot reach the Hugging Face Hub ({constants.ENDPOINT}: {reason}) to download {model}, "
            "and it is not in the local cache; " + hint
        ) from None


__all__ = [
    "DEVICES",
    "HUB_TIMEOUT",
    "LOAD_HINT",
    "adapter_base",
    "check_device",
    "check_model_source",
    "choose_device",
    "choose_dtype",
    "hub_commit",
    "import_torch",
    "load_pretrained",
    "load_processor",
    "load_weights",
    "looks_like_path",
    "missing_model_folder",
    "set_pixel_budget",
]
