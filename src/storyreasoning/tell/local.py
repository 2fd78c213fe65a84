"""The storyteller over local weights: transformers' Qwen2.5-VL (or any image-text-to-text model).

``TransformersTeller("daniel3303/QwenStoryteller2")`` loads a hub id or a local folder
through the ordinary ``from_pretrained`` path; dtype and device are chosen for the
machine (bfloat16 on a GPU that has it, float16 on other GPUs, float32 on a CPU).
The processor's pixel budget (``min_pixels``/``max_pixels``) can be set and is recorded
in every telling's ``meta``, so serving, training and evaluation can use the same one.

``stream`` runs ``generate`` in a thread and yields text through a
``TextIteratorStreamer``; ``tell_many`` batches stories (left padding) for throughput.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ..errors import StoryReasoningError, UsageError
from ..format.prompts import transformers_messages
from .base import Prompt, Sampling, Story, Teller, TellError, Usage

DEFAULT_MODEL = "daniel3303/QwenStoryteller2"


def _pil(image: Any):
    from ..format.images import open_image

    if hasattr(image, "bytes") and callable(image.bytes) and hasattr(image, "open"):  # a data.Frame
        return image.open()
    return open_image(image)


def _import():
    try:
        import torch
        import transformers
    except ImportError:
        raise UsageError(
            "local weights need torch and transformers: install torch for your machine, then "
            "pip install 'storyreasoning[train]'"
        ) from None
    return torch, transformers


def choose_device(device: str = "auto") -> str:
    torch, _ = _import()
    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def choose_dtype(dtype: str, device: str):
    torch, _ = _import()
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


TELLER_HINT = "pass a local model folder with --model, make sure the hub is reachable, or use --teller baseline (no weights needed)"


def load_pretrained(
    model: str,
    *,
    revision: str | None = None,
    dtype: Any = None,
    attn_implementation: str | None = None,
    hint: str = TELLER_HINT,
) -> tuple[Any, Any]:
    """``(processor, model)`` of a hub id or a local folder, or one clear error saying what to pass instead.

    A folder holding a PEFT adapter loads its base model with the adapter on it.
    """
    _, transformers = _import()
    kwargs: dict = {"revision": revision}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        processor = transformers.AutoProcessor.from_pretrained(model, revision=revision)
        net = transformers.AutoModelForImageTextToText.from_pretrained(model, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        # OSError: missing files or no hub; ValueError/KeyError: a folder or config that is not such a model
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise StoryReasoningError(f"cannot load the model {model!r} ({first}); {hint}") from exc
    return processor, net


def _adapter_base(net) -> str | None:
    """The base model a PEFT adapter loaded by ``from_pretrained`` sits on, or None."""
    configs = getattr(net, "peft_config", None)
    if not configs:
        return None
    first = next(iter(configs.values()))
    return getattr(first, "base_model_name_or_path", None) or "unknown base model"


class TransformersTeller(Teller):
    backend = "transformers"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        revision: str | None = None,
        dtype: str = "auto",
        device: str = "auto",
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        batch_size: int = 4,
        attn_implementation: str | None = None,
    ) -> None:
        _import()
        self.model = model
        self.revision = revision
        self.device = choose_device(device)
        self.dtype = choose_dtype(dtype, self.device)
        self.batch_size = max(1, batch_size)
        self.processor, self.net = load_pretrained(
            model, revision=revision, dtype=self.dtype, attn_implementation=attn_implementation
        )
        self.net.to(self.device).eval()
        self.commit = getattr(self.net.config, "_commit_hash", None)  # kept: describe() works after close()
        self.adapter = _adapter_base(self.net)
        self._set_pixels(min_pixels, max_pixels)
        self._lock = threading.Lock()

    # -- configuration ---------------------------------------------------------------------
    def _set_pixels(self, min_pixels: int | None, max_pixels: int | None) -> None:
        self.min_pixels, self.max_pixels = set_pixel_budget(self.processor, min_pixels, max_pixels)

    def describe(self) -> dict:
        import torch
        import transformers

        return {
            "backend": self.backend,
            "model": self.model,
            "revision": self.revision,
            "commit": self.commit,
            **({"adapter_of": self.adapter} if self.adapter else {}),
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "min_pixels": self.min_pixels,
            "max_pixels": self.max_pixels,
            "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
        }

    # -- generation ------------------------------------------------------------------------
    def _inputs(self, conversations: list[list[dict]]):
        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = "left"  # generation continues at the right edge of every row
        return self.processor.apply_chat_template(
            conversations if len(conversations) > 1 else conversations[0],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            processor_kwargs={"padding": len(conversations) > 1},
        ).to(self.device)

    def _conversation(self, images: Sequence[Any], prompt: Prompt) -> list[dict]:
        if not images:
            raise UsageError("a story needs at least one image")
        pil = [_pil(image) for image in images]
        return transformers_messages(pil, prompt.text, system_prompt=prompt.system, order=prompt.order)

    def _generate_kwargs(self, sampling: Sampling) -> dict:
        _, transformers = _import()
        if sampling.seed is not None:
            transformers.set_seed(sampling.seed)
        kwargs: dict = {"max_new_tokens": sampling.max_new_tokens}
        if sampling.temperature > 0:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    def stream(
        self, images: Sequence[Any], *, prompt: Prompt = Prompt(), sampling: Sampling = Sampling()
    ) -> Iterator[str]:
        torch, transformers = _import()
        inputs = self._inputs([self._conversation(images, prompt)])
        streamer = transformers.TextIteratorStreamer(
            self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=None
        )
        result: dict = {}
        stop = threading.Event()

        class _Stop(transformers.StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return stop.is_set()

        def run() -> None:
            try:
                with torch.inference_mode():
                    result["out"] = self.net.generate(
                        **inputs,
                        **self._generate_kwargs(sampling),
                        streamer=streamer,
                        stopping_criteria=transformers.StoppingCriteriaList([_Stop()]),
                    )
            except BaseException as exc:  # surfaced in the caller's thread below
                result["error"] = exc
                streamer.end()

        prompt_len = int(inputs["input_ids"].shape[1])
        with self._lock:  # one generation at a time on this model
            thread = threading.Thread(target=run, name="storyreasoning-generate", daemon=True)
            thread.start()
            produced: list[str] = []
            try:
                for chunk in streamer:
                    if chunk:
                        produced.append(chunk)
                        yield chunk
            finally:  # also when the caller stops reading: end generation before releasing the model
                stop.set()
                thread.join()
        if "error" in result:
            exc = result["error"]
            raise TellError(
                f"generation failed: {type(exc).__name__}: {exc}", partial="".join(produced)
            ) from exc
        new = result["out"][0, prompt_len:]
        self.last_usage = self._usage(prompt_len, new, sampling)

    def _usage(self, prompt_len: int, new_tokens, sampling: Sampling) -> Usage:
        pad = self.processor.tokenizer.pad_token_id
        n = int((new_tokens != pad).sum()) if pad is not None else int(new_tokens.numel())
        return Usage(
            prompt_tokens=prompt_len,
            completion_tokens=n,
            finish_reason="length" if n >= sampling.max_new_tokens else "stop",
        )

    def tell_many(
        self, stories: Iterable[Story], *, prompt: Prompt = Prompt(), sampling: Sampling = Sampling()
    ) -> Iterator[tuple[Story, Any]]:
        """Batches of ``batch_size`` stories through one ``generate`` call each."""
        import time

        from ..format.stream import parse_output

        torch, _ = _import()
        batch: list[Story] = []

        def flush(batch: list[Story]):
            start = time.perf_counter()
            try:
                conversations = [self._conversation(s.images, prompt) for s in batch]
                inputs = self._inputs(conversations)
                with self._lock, torch.inference_mode():
                    out = self.net.generate(**inputs, **self._generate_kwargs(sampling))
            except StoryReasoningError as exc:
                for story in batch:
                    yield story, TellError(str(exc))
                return
            except Exception as exc:  # a failure of the whole batch: report it per story
                for story in batch:
                    yield story, TellError(f"generation failed: {type(exc).__name__}: {exc}")
                return
            seconds = time.perf_counter() - start
            prompt_len = int(inputs["input_ids"].shape[1])
            for row, story in enumerate(batch):
                new = out[row, prompt_len:]
                text = self.processor.tokenizer.decode(new, skip_special_tokens=True)
                telling = parse_output(text)
                usage = self._usage(int(inputs["attention_mask"][row].sum()), new, sampling)
                usage.seconds = seconds
                telling.meta = {
                    **self.describe(),
                    "sampling": sampling.to_dict(),
                    "usage": usage.to_dict(),
                    "images": len(story.images),
                    "batch_size": len(batch),
                }
                yield story, telling

        for story in stories:
            batch.append(story)
            if len(batch) == self.batch_size:
                yield from flush(batch)
                batch = []
        if batch:
            yield from flush(batch)

    def close(self) -> None:
        self.net = None  # type: ignore[assignment]
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover
            pass
