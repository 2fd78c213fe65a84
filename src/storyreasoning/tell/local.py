"""The storyteller over local weights: transformers' Qwen2.5-VL (or any image-text-to-text model).

``TransformersTeller("daniel3303/QwenStoryteller2")`` loads a hub id or a local folder
through the ordinary ``from_pretrained`` path; dtype and device are chosen for the
machine (bfloat16 on a GPU that has it, float16 on other GPUs, float32 on a CPU).
The processor's pixel budget (``min_pixels``/``max_pixels``) can be set and is recorded
in every telling's ``meta``, so serving, training and evaluation can use the same one.

``stream`` runs ``generate`` in a thread and yields text through a
``TextIteratorStreamer``; ``tell_many`` batches stories (left padding) for throughput.
Several candidates a story (``tell_samples``, ``tell-dataset --samples N``) come from the same
``generate`` call with ``num_return_sequences=N``: the images are encoded and the prompt filled
once per story, and a batch of ``batch_size`` stories decodes ``batch_size × N`` rows. Sampling
must be on: greedy decoding would give N identical candidates, so it is refused.

How it decodes, which never changes a greedy output (tested on the tiny model):
``attn_implementation`` (``auto``: transformers' choice, SDPA; ``sdpa``, ``eager`` or
``flash_attention_2``, which needs flash-attn on a CUDA GPU), ``cache`` (``dynamic``: the
key-value cache grows each step; ``static``: allocated whole at the start of each
``generate``, for the longest prompt and ``max_new_tokens`` seen so far, so its shape stays)
and ``compile`` (``torch.compile`` of the decoding step over the static cache, with CUDA
graphs on a GPU; the first batch of each new shape pays the compilation).
``bench/gpu_tell.py`` measures each against the memory-bandwidth limit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ..errors import StoryReasoningError, UsageError
from ..format.prompts import Order, transformers_messages
from ..models import (
    adapter_base,
    check_device,
    choose_device,
    choose_dtype,
    hub_commit,
    import_torch,
    load_pretrained,
    set_pixel_budget,
)
from .base import Prompt, Sampling, Story, Teller, TellError, Usage

DEFAULT_MODEL = "daniel3303/QwenStoryteller2"
ATTENTIONS = ("auto", "sdpa", "eager", "flash_attention_2")
CACHES = ("dynamic", "static")


def _pil(image: Any):
    from ..format.images import open_image

    if hasattr(image, "bytes") and callable(image.bytes) and hasattr(image, "open"):  # a data.Frame
        return image.open()
    return open_image(image)


TELLER_HINT = "pass a local model folder with --model, make sure the hub is reachable, or use --teller baseline (no weights needed)"
OTHER_TELLERS = (
    "pass a model folder with --model FOLDER, a server with --endpoint URL, or use --teller baseline "
    "(no weights needed)"
)


TRAINED_RECORD = "storyreasoning.json"
"""What ``train`` writes into ``final/`` and ``train merge`` into its folder, with the training's settings."""


def training_settings(model: str) -> dict:
    """The settings a storyreasoning training recorded in the model folder ``model`` (its :data:`TRAINED_RECORD`:
    a run's ``final/``, an adapter's included, or a ``train merge`` folder); {} for a hub
    id, a folder no training wrote, or a record that cannot be read."""
    from pathlib import Path

    from ..files import read_json_object

    settings = read_json_object(Path(model) / TRAINED_RECORD).get("settings")
    return settings if isinstance(settings, dict) else {}


def trained_order(model: str) -> Order | None:
    """The order (images or prompt first) a storyreasoning training laid out its examples in for the model
    folder ``model``, as its ``storyreasoning.json`` records it (``settings.order``): a run's ``final/``, a
    LoRA adapter's included, or a ``train merge`` folder, which keeps the record. None for a hub id, a
    folder no training wrote, or a record that names no order (unreadable, or damaged)."""
    from ..format.prompts import ORDERS

    order = training_settings(model).get("order")
    return order if order in ORDERS else None


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
        cache: str = "dynamic",
        compile: bool = False,
        compile_backend: str = "inductor",
    ) -> None:
        import_torch()
        self.model = model
        self.revision = revision
        self.device = choose_device(check_device(device))  # a wrong --device is said before the weights load
        attention = _check_decoding(attn_implementation, cache, compile, self.device)
        self.dtype = choose_dtype(dtype, self.device)
        self.batch_size = max(1, batch_size)
        self.processor, self.net = load_pretrained(
            model,
            revision=revision,
            dtype=self.dtype,
            attn_implementation=attention,
            hint=TELLER_HINT,
        )
        self._setup(min_pixels, max_pixels, cache, compile, compile_backend)

    @classmethod
    def from_parts(
        cls,
        processor: Any,
        net: Any,
        *,
        model: str,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        batch_size: int = 4,
        attn_implementation: str | None = None,
        cache: str = "dynamic",
        compile: bool = False,
        compile_backend: str = "inductor",
    ) -> TransformersTeller:
        """A teller over a processor and a model already in memory (on their device and in their dtype).

        ``model`` names them in ``describe()``. The attention implementation, when given, is set
        on ``net`` (shared with any other teller over it). ``bench/gpu_tell.py`` uses this for a
        model built from its configuration with random weights.
        """
        import_torch()
        self = cls.__new__(cls)
        self.model, self.revision = model, None
        self.device = str(next(net.parameters()).device)
        attention = _check_decoding(attn_implementation, cache, compile, self.device)
        self.dtype = next(net.parameters()).dtype
        self.batch_size = max(1, batch_size)
        self.processor, self.net = processor, net
        if attention:
            net.set_attn_implementation(attention)
        self._setup(min_pixels, max_pixels, cache, compile, compile_backend)
        return self

    def _setup(self, min_pixels, max_pixels, cache: str, compile: bool, compile_backend: str) -> None:
        self.net.to(self.device).eval()
        # the hub commit loaded (None for a folder); kept: describe() works after close()
        self.commit = hub_commit(self.model, self.revision)
        self.adapter = adapter_base(self.net)
        self.cache, self.compile, self.compile_backend = cache, compile, compile_backend
        self.attention = getattr(self.net.config, "_attn_implementation", None) or "sdpa"
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
            # how it decodes: operational (a greedy output is the same whichever), so not part of a run's identity
            "decoding": {"attention": self.attention, "cache": self.cache, "compile": self.compile},
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
        _, transformers = import_torch()
        if sampling.seed is not None:
            transformers.set_seed(sampling.seed)
        kwargs: dict = {"max_new_tokens": sampling.max_new_tokens}
        if sampling.temperature > 0:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if self.cache == "static":
            kwargs["cache_implementation"] = "static"
            if self.compile:
                config = transformers.CompileConfig(backend=self.compile_backend)
                if not self.device.startswith("cuda"):  # transformers compiles on a GPU only unless told
                    config.mode = "default"  # CUDA graphs ("reduce-overhead") need a GPU
                    config._compile_all_devices = True
                kwargs["compile_config"] = config
            else:  # transformers would compile a static cache's decoding on its own on a GPU
                kwargs["disable_compile"] = True
        return kwargs

    def prepare(self, stories: Sequence[Sequence[Any]], prompt: Prompt = Prompt()):
        """The model's inputs for a batch of stories (each a sequence of images), left-padded, on the device."""
        return self._inputs([self._conversation(images, prompt) for images in stories])

    def generate(self, inputs, sampling: Sampling = Sampling(), **extra):
        """``generate`` on prepared inputs as this teller runs it (one call at a time): the token ids.

        ``extra`` goes to ``generate`` as well (``logits_processor``, ``min_new_tokens``, ...).
        """
        torch, _ = import_torch()
        with self._lock, torch.inference_mode():
            return self.net.generate(**inputs, **self._generate_kwargs(sampling), **extra)

    def stream(
        self, images: Sequence[Any], *, prompt: Prompt = Prompt(), sampling: Sampling = Sampling()
    ) -> Iterator[str]:
        torch, transformers = import_torch()
        start, first = time.perf_counter(), None  # the first token's time, as every teller records it
        conversation = self._conversation(images, prompt)  # an unreadable image: its UsageError, as it is
        try:
            inputs = self._inputs([conversation])
        except Exception as exc:
            raise _unprepared(exc) from exc
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
                        if first is None:
                            first = time.perf_counter() - start
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
        self.last_usage.first_token_seconds, self.last_usage.seconds = first, time.perf_counter() - start

    def tell_samples(
        self, images: Sequence[Any], *, prompt: Prompt = Prompt(), sampling: Sampling = Sampling(), n: int = 1
    ) -> list[Any]:
        """``n`` candidates of one story (``meta["sample"]`` k) from one ``generate`` call
        (``num_return_sequences``); a failure is raised as :class:`TellError`."""
        ((_, result),) = self.tell_many(
            [Story("story", list(images))], prompt=prompt, sampling=sampling, samples=n
        )
        if isinstance(result, TellError):
            raise result
        return result if isinstance(result, list) else [result]

    def _usage(self, prompt_len: int, new_tokens, sampling: Sampling) -> Usage:
        pad = self.processor.tokenizer.pad_token_id
        n = int((new_tokens != pad).sum()) if pad is not None else int(new_tokens.numel())
        return Usage(
            prompt_tokens=prompt_len,
            completion_tokens=n,
            finish_reason="length" if n >= sampling.max_new_tokens else "stop",
        )

    def tell_many(
        self,
        stories: Iterable[Story],
        *,
        prompt: Prompt = Prompt(),
        sampling: Sampling = Sampling(),
        samples: int = 1,
    ) -> Iterator[tuple[Story, Any]]:
        """Batches of ``batch_size`` stories through one ``generate`` call each; with ``samples`` > 1,
        ``(story, [telling, …])`` with that many candidates of each, from the same call."""
        check_samples(samples, sampling)  # before any story is read
        return self._tell_many(stories, prompt, sampling, samples)

    def _tell_many(
        self, stories: Iterable[Story], prompt: Prompt, sampling: Sampling, samples: int
    ) -> Iterator[tuple[Story, Any]]:
        import time

        from ..format.stream import parse_output

        batch: list[Story] = []
        many = {"num_return_sequences": samples} if samples > 1 else {}

        def flush(batch: list[Story]):
            start = time.perf_counter()
            try:
                inputs = self.prepare([s.images for s in batch], prompt)
            except Exception as exc:
                if len(batch) > 1:  # one story's images spoil the batch: each alone, so only that one fails
                    for story in batch:
                        yield from flush([story])
                    return
                yield batch[0], _unprepared(exc)
                return
            try:
                out = self.generate(inputs, sampling, **many)
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
            described = self.describe()
            for row, story in enumerate(batch):
                tellings = []
                for k in range(samples):  # generate returns each story's candidates together, in order
                    new = out[row * samples + k, prompt_len:]
                    text = self.processor.tokenizer.decode(new, skip_special_tokens=True)
                    telling = parse_output(text)
                    usage = self._usage(int(inputs["attention_mask"][row].sum()), new, sampling)
                    usage.seconds = seconds
                    telling.meta = {
                        **described,
                        "sampling": sampling.to_dict(),
                        "usage": usage.to_dict(),
                        "images": len(story.images),
                        "batch_size": len(batch),
                        **(
                            {"sample": k, "request": {"num_return_sequences": samples}} if samples > 1 else {}
                        ),
                    }
                    tellings.append(telling)
                yield story, (tellings if samples > 1 else tellings[0])

        for story in stories:
            batch.append(story)
            if len(batch) == self.batch_size:
                yield from flush(batch)
                batch = []
        if batch:
            yield from flush(batch)

    def close(self) -> None:
        self.net = None  # type: ignore[assignment]  (a static cache goes with the model)
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover
            pass


def _unprepared(exc: Exception) -> TellError:
    """The failure of a story whose images the processor would not take (unreadable, too narrow, …)."""
    if isinstance(exc, StoryReasoningError):  # an unreadable image: the message names it and the fix
        return TellError(str(exc))
    return TellError(
        f"the model's processor could not take these images ({type(exc).__name__}: {exc}); "
        "resize or replace the image it refuses"
    )


def check_samples(n: int, sampling: Sampling) -> None:
    """``n`` candidates a story are possible with local weights: at least one, and sampling on when more
    (greedy decoding gives every candidate the same text); one clear error otherwise."""
    if n < 1:
        raise UsageError(f"--samples must be at least 1, got {n}")
    if n > 1 and sampling.temperature == 0:
        raise UsageError(
            f"--samples {n} with --temperature 0 (greedy decoding) would give {n} identical candidates; "
            "set --temperature above 0 (the model cards use 0.7) or leave --samples at 1"
        )


def _check_decoding(attention: str | None, cache: str, compile: bool, device: str) -> str | None:
    """The attention implementation to load with (None: transformers' choice), or a clear UsageError."""
    if attention not in (None, *ATTENTIONS):
        raise UsageError(
            f"unknown attention implementation {attention!r}; use one of {', '.join(ATTENTIONS)}"
        )
    if cache not in CACHES:
        raise UsageError(f"unknown cache {cache!r}; use dynamic or static")
    if compile and cache != "static":
        raise UsageError("--compile compiles decoding over a static cache; add --cache static")
    if attention == "flash_attention_2":
        import importlib.util

        if not device.startswith("cuda"):
            raise UsageError(
                f"--attn-implementation flash_attention_2 needs a CUDA GPU (the device is {device}); use sdpa"
            )
        if importlib.util.find_spec("flash_attn") is None:
            raise UsageError(
                "--attn-implementation flash_attention_2 needs the flash-attn package: pip install flash-attn "
                "(or use sdpa, the default)"
            )
    return None if attention in (None, "auto") else attention
