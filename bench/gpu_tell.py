"""Telling a story with local weights on one GPU: time to first token and decoding speed, beside the limit.

The model is Qwen2.5-VL-7B built from its published configuration
(``storyreasoning.testing.published``) with random bfloat16 weights directly on the GPU:
nothing is downloaded, and a forward costs what it costs with the real weights. Only its
special tokens' ids are those of the tiny tokenizer (``storyreasoning.testing``), whose
processor is used with Qwen2.5-VL's own pixel budget (3,136 to 12,845,056 pixels an
image): the story goes through our real prompt building and the teller's own calls
(``TransformersTeller.prepare`` and ``generate``, the path of ``tell`` and
``tell-dataset``): 12 frames of the example stories' photographs resized to 980 × 644
pixels, 805 image tokens each. The prompt's text is tokenised by the tiny tokenizer (a
few hundred tokens against the images' 9,660). For each variant and batch size (1, and
32 different orders of the frames) one ``generate`` of ``--new-tokens`` tokens is timed
with CUDA events (no synchronisation between steps):

* time to first token, split into ``generate``'s set-up (position ids, the cache, a
  compiled call's wrapping), the vision encoder (hooks on the vision tower) and the
  language model's prefill (to the first token's logits); the CPU's preprocessing (chat
  template and image processor, once a batch size) apart;
* decoding: the median step over the second half of the steps (after compilation and
  CUDA-graph recording, which the first step's time shows), tokens per second per story
  and for the batch;
* the memory-bandwidth limit of a decoding step: the bytes it must read (the language
  model's weights without the embedding table, plus the KV cache at the mean length)
  over the card's copy bandwidth (measured: a large tensor copied, read and write
  counted), and the share of it reached;
* peak ``torch.cuda.max_memory_allocated`` (the inputs of the largest batch included);
* whether the generated tokens are those of the baseline (the same batch): a kernel
  that sums in another order may change a near tie of random weights' logits.

Variants (``--variants``, in this order; each within the total budget ``--total-seconds``):

``dynamic``   SDPA, the dynamic cache: the baseline (``tell``'s defaults)
``static``    SDPA, ``--cache static`` (uncompiled)
``compiled``  ``--cache static --compile``: the decoding step compiled, with CUDA graphs
``flash``     ``--attn-implementation flash_attention_2`` (when flash-attn is installed)
``eager``     ``--attn-implementation eager`` (skipped where its attention weights cannot fit)

A variant that fails is a row saying why, and the run goes on; the JSON is rewritten after
every row, so a run stopped by a time limit keeps what it measured.

Run on a GPU machine (no network needed; torch and transformers installed)::

    python bench/gpu_tell.py                                  # every variant, under 5 minutes
    python bench/gpu_tell.py --variants dynamic,compiled      # a quicker look
    python bench/gpu_tell.py --tiny                           # the tiny model on the CPU (the test)

It writes ``bench/results/gpu_tell.json`` (``--out``). With ``--tiny`` the model is the
tiny Qwen2.5-VL loaded through ``TransformersTeller`` from its folder, in float32 on the
CPU, batches of 1 and 4, compiled with dynamo's ``eager`` backend (inductor's C++ build
takes a minute there); there is no peak memory on a CPU.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import itertools
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # runs from a checkout without installing the package
    sys.path.insert(0, str(ROOT / "src"))
DEFAULT_OUT = Path(__file__).parent / "results" / "gpu_tell.json"
EXAMPLES = ROOT / "examples" / "stories"
GiB = 1024**3
#: Qwen2.5-VL's own pixel budget per image (its processor's defaults)
QWEN_MIN_PIXELS, QWEN_MAX_PIXELS = 56 * 56, 28 * 28 * 16384

#: name -> (attention implementation, cache, compiled)
VARIANTS = {
    "dynamic": ("sdpa", "dynamic", False),
    "static": ("sdpa", "static", False),
    "compiled": ("sdpa", "static", True),
    "flash": ("flash_attention_2", "dynamic", False),
    "eager": ("eager", "dynamic", False),
}
BASELINE = "dynamic"


@dataclass
class Row:
    variant: str
    attention: str
    cache: str
    compiled: bool
    batch: int
    prompt_tokens: int = 0  # a story's, images included
    image_tokens: int = 0  # a story's
    new_tokens: int = 0
    status: str = "ok"
    inputs_s: float | None = None  # chat template and image processor, on the CPU
    ttft_s: float | None = None  # generate called to the first token's logits
    setup_s: float | None = None  # generate called to the vision tower's start
    vision_s: float | None = None
    prefill_s: float | None = None  # after the vision tower, to the first token's logits
    first_step_s: float | None = None  # the first decoding step (compilation, CUDA graphs)
    step_ms: float | None = None  # median decoding step, second half
    tokens_per_s: float | None = None  # the batch's
    story_tokens_per_s: float | None = None  # one story's
    limit_step_ms: float | None = None
    limit_tokens_per_s: float | None = None
    of_limit: float | None = None  # limit step over measured step
    generate_s: float | None = None
    peak_gib: float | None = None
    same_tokens: float | None = None  # share of generated tokens equal to the baseline's (same batch)


# -- inputs --------------------------------------------------------------------------------------------------


def example_frames(count: int, size: tuple[int, int]):
    """``count`` photographs of the example stories (cycled), resized to ``size`` (width, height)."""
    from PIL import Image

    paths = sorted(p for p in EXAMPLES.glob("*/[0-9]*.*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not paths:
        raise SystemExit(f"no example frames under {EXAMPLES}")
    frames = []
    for i in range(count):
        with Image.open(paths[i % len(paths)]) as image:
            frames.append(image.convert("RGB").resize(size, Image.Resampling.BICUBIC))
    return frames


def stories_of(frames, batch: int) -> list[list]:
    """``batch`` stories of the same frames in different orders (the same length: no padding)."""
    return [frames[i % len(frames) :] + frames[: i % len(frames)] for i in range(batch)]


# -- the model --------------------------------------------------------------------------------------------------


#: ``--shrink``: the published configuration narrowed (head dimensions, vocabulary, patches and token ids
#: kept) so that this script's 7B path runs on a CPU in seconds
SHRUNK_TEXT = {"hidden_size": 512, "intermediate_size": 1024, "num_hidden_layers": 1, "num_attention_heads": 4,
               "num_key_value_heads": 2}  # fmt: skip
SHRUNK_VISION = {"depth": 2, "hidden_size": 160, "num_heads": 2, "intermediate_size": 320, "out_hidden_size": 512,
                 "fullatt_block_indexes": [1]}  # fmt: skip


def random_7b(processor, device: str, *, shrink: bool = False):
    """Qwen2.5-VL-7B from its published config, random weights made on ``device`` (bfloat16 on a GPU, float32
    on a CPU); special ids the processor's tokenizer's. ``shrink``: :data:`SHRUNK_TEXT`, :data:`SHRUNK_VISION`."""
    import copy

    import torch
    import transformers

    from storyreasoning.testing.published import QWEN25VL_7B_CONFIG

    tokenizer = processor.tokenizer
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"),
        ("vision_token_id", "<|vision_pad|>"), ("eos_token_id", "<|im_end|>"), ("bos_token_id", "<|endoftext|>"),
        ("pad_token_id", "<|endoftext|>"),
    )}  # fmt: skip
    data = copy.deepcopy(QWEN25VL_7B_CONFIG)
    data.pop("model_type")
    data.update(ids)
    if shrink:
        data.update(SHRUNK_TEXT)
        data["vision_config"].update(SHRUNK_VISION)
    config = transformers.Qwen2_5_VLConfig(**data)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    with torch.device(device):
        net = transformers.Qwen2_5_VLForConditionalGeneration._from_config(
            config, dtype=dtype, attn_implementation="sdpa"
        )
    net.generation_config.pad_token_id = ids["pad_token_id"]
    net.generation_config.eos_token_id = ids["eos_token_id"]
    return net.eval()


def decode_bytes(net) -> tuple[int, int]:
    """Bytes of weights a decoding step reads (the language model and its head, not the embedding table nor
    the vision tower), and KV-cache bytes per token of context."""
    visual = getattr(getattr(net, "model", net), "visual", None) or net.visual
    skip = {id(p) for p in visual.parameters()} | {id(p) for p in net.get_input_embeddings().parameters()}
    weights = sum(p.numel() * p.element_size() for p in net.parameters() if id(p) not in skip)
    text = net.config.get_text_config()
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    element = next(net.parameters()).element_size()
    per_token = 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * element
    return weights, per_token


def copy_bandwidth(device: str, nbytes: int, repeats: int = 10) -> float:
    """Bytes per second of a large on-device copy (read and write counted), the best of ``repeats``."""
    import torch

    src = torch.empty(nbytes, dtype=torch.uint8, device=device).fill_(1)
    dst = torch.empty_like(src)
    cuda = device.startswith("cuda")
    best = float("inf")
    for _ in range(repeats + 1):  # the first warms up
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            dst.copy_(src)
            end.record()
            end.synchronize()
            seconds = start.elapsed_time(end) / 1000
        else:
            began = time.perf_counter()
            dst.copy_(src)
            seconds = time.perf_counter() - began
        best = min(best, seconds)
    del src, dst
    return 2 * nbytes / best


# -- timing one generate -----------------------------------------------------------------------------------------


class Marks:
    """Labelled instants on the device's timeline: CUDA events (nothing waits) or the CPU's clock."""

    def __init__(self, cuda: bool) -> None:
        import torch

        self.torch, self.cuda = torch, cuda
        self.marks: list[tuple[str, object]] = []

    def mark(self, label: str) -> None:
        if self.cuda:
            event = self.torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append((label, event))
        else:
            self.marks.append((label, time.perf_counter()))

    def seconds(self) -> list[tuple[str, float]]:
        """Every mark's seconds since the first."""
        if not self.marks:
            return []
        first = self.marks[0][1]
        if self.cuda:
            self.torch.cuda.synchronize()
            return [(label, first.elapsed_time(event) / 1000) for label, event in self.marks]
        return [(label, t - first) for label, t in self.marks]


def timed_generate(teller, inputs, new_tokens: int, cuda: bool):
    """One ``generate`` through the teller, its instants marked: (token ids, {label: [seconds]}, wall seconds)."""
    import transformers

    from storyreasoning.tell import Sampling

    marks = Marks(cuda)

    class Stamp(transformers.LogitsProcessor):  # called once a step, outside any compiled region
        def __call__(self, input_ids, scores):
            marks.mark("token")
            return scores

    visual = getattr(getattr(teller.net, "model", teller.net), "visual", None) or teller.net.visual
    hooks = [
        visual.register_forward_pre_hook(lambda *_: marks.mark("vision start")),
        visual.register_forward_hook(lambda *_: marks.mark("vision end")),
    ]
    sampling = Sampling(temperature=0, max_new_tokens=new_tokens)
    try:
        began = time.perf_counter()
        marks.mark("start")
        out = teller.generate(
            inputs,
            sampling,
            min_new_tokens=new_tokens,  # random weights may end early: every row runs every step
            logits_processor=transformers.LogitsProcessorList([Stamp()]),
        )
        times: dict[str, list[float]] = {}
        for label, seconds in marks.seconds():  # synchronises
            times.setdefault(label, []).append(seconds)
        wall = time.perf_counter() - began
    finally:
        for hook in hooks:
            hook.remove()
    return out[:, inputs["input_ids"].shape[1] :].cpu(), times, wall


def measure(row: Row, teller, inputs, args, *, cuda: bool, weights: int, kv_per_token: int, bandwidth: float):
    import torch

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    new, times, wall = timed_generate(teller, inputs, args.new_tokens, cuda)
    tokens = times["token"]
    row.new_tokens = new.shape[1]
    row.generate_s = wall
    row.ttft_s = tokens[0]
    if "vision end" in times:
        row.setup_s = times["vision start"][0]
        row.vision_s = times["vision end"][0] - times["vision start"][0]
        row.prefill_s = tokens[0] - times["vision end"][0]
    steps = [b - a for a, b in itertools.pairwise(tokens)]
    if steps:
        row.first_step_s = steps[0]
        steady = steps[len(steps) // 2 :]
        step = statistics.median(steady)
        row.step_ms = step * 1000
        row.tokens_per_s = row.batch / step
        row.story_tokens_per_s = 1 / step
        mean_context = row.prompt_tokens + (row.new_tokens - 1) / 2
        limit = (weights + kv_per_token * mean_context * row.batch) / bandwidth
        row.limit_step_ms = limit * 1000
        row.limit_tokens_per_s = row.batch / limit
        row.of_limit = limit / step
    if cuda:
        row.peak_gib = torch.cuda.max_memory_allocated() / GiB
    return new


# -- main -----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny Qwen2.5-VL on the CPU (tests)")
    parser.add_argument(
        "--shrink", action="store_true",
        help="the 7B path with its configuration narrowed to one layer (a check of this script on a CPU)",
    )  # fmt: skip
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated: {', '.join(VARIANTS)}"
    )
    parser.add_argument(
        "--batches", default=None, help="comma-separated batch sizes (default 1,32; tiny: 1,4)"
    )
    parser.add_argument("--frames", type=int, default=12, help="frames a story")
    parser.add_argument(
        "--frame-size", default="980x644", help="WIDTHxHEIGHT of each frame (805 image tokens)"
    )
    parser.add_argument(
        "--new-tokens", type=int, default=None, help="tokens generated (default 128; tiny: 12)"
    )
    parser.add_argument(
        "--copy-gib", type=float, default=None, help="copy buffer for the bandwidth (default 4)"
    )
    parser.add_argument(
        "--compile-backend", default=None, help="torch.compile backend (inductor; tiny: eager)"
    )
    parser.add_argument(
        "--total-seconds",
        type=float,
        default=240.0,
        help="no variant starts after this (the whole run's budget)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    import torch
    import transformers

    from storyreasoning.errors import UsageError
    from storyreasoning.tell import Prompt
    from storyreasoning.tell.local import TransformersTeller
    from storyreasoning.testing import build_tiny_qwen25vl

    began = time.perf_counter()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {', '.join(unknown)}; choose among {', '.join(VARIANTS)}")
    if BASELINE in variants:  # the others are compared with it
        variants = [BASELINE] + [v for v in variants if v != BASELINE]
    cuda = torch.cuda.is_available() and not args.tiny
    if not cuda and not (args.tiny or args.shrink):
        print("no GPU: run with --tiny (or --shrink) for the CPU check, or on a GPU machine", file=sys.stderr)
        return 2
    device = "cuda" if cuda else "cpu"
    small = not cuda  # a CPU check
    batches = [int(b) for b in (args.batches or ("1,4" if small else "1,32")).split(",")]
    args.new_tokens = args.new_tokens or (12 if small else 128)
    backend = args.compile_backend or ("eager" if small else "inductor")
    width, height = (int(x) for x in args.frame_size.lower().split("x"))
    tmp = tempfile.TemporaryDirectory()

    if small:
        torch.set_num_threads(1)  # small matrices on a shared CPU: threads only contend
    if args.tiny:
        folder = build_tiny_qwen25vl(Path(tmp.name) / "tiny")
        loaded = TransformersTeller(str(folder), device="cpu", dtype="float32")
        processor, net = loaded.processor, loaded.net
        name = "tiny Qwen2.5-VL (CPU)"
    else:  # the tiny tokenizer and chat template with Qwen2.5-VL's pixel budget; the 7B model beside it
        folder = build_tiny_qwen25vl(Path(tmp.name) / "processor", min_pixels=QWEN_MIN_PIXELS,
                                     max_pixels=QWEN_MAX_PIXELS)  # fmt: skip
        processor = transformers.AutoProcessor.from_pretrained(folder)
        net = random_7b(processor, device, shrink=args.shrink)
        name = "Qwen2.5-VL-7B " + (
            "narrowed to one layer (random weights)" if args.shrink else "(random weights)"
        )
    gpu_name = torch.cuda.get_device_name(0) if cuda else "cpu"
    weights, kv_per_token = decode_bytes(net)
    copy_bytes = int((args.copy_gib or (4.0 if cuda else 1 / 16)) * GiB)
    bandwidth = copy_bandwidth(device, copy_bytes)
    flash = cuda and importlib.util.find_spec("flash_attn") is not None
    params = sum(p.numel() for p in net.parameters())
    print(f"{name} on {gpu_name}: {params:,} parameters; a decoding step reads {weights / GiB:.3f} GiB "
          f"of weights and {kv_per_token / 1024:.1f} KiB of KV cache a token of context; copy bandwidth "
          f"{bandwidth / 1e9:,.0f} GB/s", flush=True)  # fmt: skip

    def teller_for(variant: str):
        attention, cache, compiled = VARIANTS[variant]
        return TransformersTeller.from_parts(
            processor, net, model=name, batch_size=max(batches), attn_implementation=attention, cache=cache,
            compile=compiled, compile_backend=backend,
        )  # fmt: skip

    # the stories through the teller's own input building: once a batch size, reused by every variant
    frames = example_frames(args.frames, (width, height))
    base = teller_for(BASELINE)
    inputs, inputs_s = {}, {}
    for batch in batches:
        start = time.perf_counter()
        inputs[batch] = base.prepare(stories_of(frames, batch), Prompt())
        inputs_s[batch] = time.perf_counter() - start
    image_id = net.config.image_token_id
    prompt_tokens = int(inputs[batches[0]]["input_ids"].shape[1])
    image_tokens = int((inputs[batches[0]]["input_ids"][0] == image_id).sum())
    print(f"a story: {args.frames} frames of {width} x {height}, {prompt_tokens:,} prompt tokens "
          f"({image_tokens:,} image); inputs prepared in "
          + ", ".join(f"{inputs_s[b]:.2f} s (batch {b})" for b in batches), flush=True)  # fmt: skip
    base.generate(base.prepare([frames[:1]], Prompt()), _sampling(2))  # warm-up: CUDA context, kernels chosen

    from _common import write_results

    def save(rows: list[Row]) -> None:
        write_results(
            args.out, "gpu_tell", [asdict(r) for r in rows], argv, model=name, device=gpu_name,
            parameters=params, decode_weight_bytes=weights, kv_bytes_per_token=kv_per_token,
            copy_bandwidth_gb_s=round(bandwidth / 1e9, 1), frames=args.frames, frame_size=[width, height],
            prompt_tokens=prompt_tokens, image_tokens=image_tokens, new_tokens=args.new_tokens,
            compile_backend=backend, flash_attention=flash, torch=torch.__version__,
            transformers=transformers.__version__, seconds=round(time.perf_counter() - began, 1),
        )  # fmt: skip

    rows: list[Row] = []
    baseline: dict[int, object] = {}
    for variant in variants:
        attention, cache, compiled = VARIANTS[variant]
        for batch in batches:
            row = Row(variant, attention, cache, compiled, batch, prompt_tokens, image_tokens,
                      inputs_s=inputs_s[batch])  # fmt: skip
            rows.append(row)
            if time.perf_counter() - began > args.total_seconds:
                row.status = "skipped (time)"
                print(_line(row), flush=True)
                save(rows)
                continue
            try:
                teller = teller_for(variant)
            except UsageError as exc:  # flash-attn missing, or no GPU for it: the teller's own words
                row.status = f"skipped ({exc})"
                print(_line(row), flush=True)
                save(rows)
                continue
            if attention == "eager" and cuda:
                need = _eager_attention_bytes(net, batch, prompt_tokens)
                free = torch.cuda.mem_get_info()[0]
                if need > free:
                    row.status = (
                        f"skipped (eager attention weights {need / GiB:,.0f} GiB, {free / GiB:,.0f} free)"
                    )
                    print(_line(row), flush=True)
                    save(rows)
                    continue
            try:
                new = measure(row, teller, inputs[batch], args, cuda=cuda, weights=weights,
                              kv_per_token=kv_per_token, bandwidth=bandwidth)  # fmt: skip
                if variant == BASELINE:
                    baseline[batch] = new
                if batch in baseline:
                    row.same_tokens = float((new == baseline[batch]).float().mean())
            except torch.OutOfMemoryError:
                row.status = "out of memory"
            except Exception as exc:  # one variant's failure (a compiler's, say) is its row; the others run
                first = (str(exc).strip().splitlines() or [""])[0][:200]
                row.status = f"failed ({type(exc).__name__}: {first})"
            finally:
                teller = None
                gc.collect()
                if cuda:
                    torch.cuda.empty_cache()
            print(_line(row), flush=True)
            save(rows)
    _table(rows, name, gpu_name, bandwidth)
    save(rows)
    print(f"wrote {args.out} ({time.perf_counter() - began:.0f} s)")
    tmp.cleanup()
    return 0


def _sampling(new_tokens: int):
    from storyreasoning.tell import Sampling

    return Sampling(temperature=0, max_new_tokens=new_tokens)


def _eager_attention_bytes(net, batch: int, length: int) -> int:
    """The float32 attention weights eager attention materialises in the prefill (one layer at a time)."""
    text = net.config.get_text_config()
    return batch * text.num_attention_heads * length * length * 4


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _line(r: Row) -> str:
    return (f"  {r.variant} batch {r.batch}: {r.status}; TTFT {_fmt(r.ttft_s, '.3f')} s (vision "
            f"{_fmt(r.vision_s, '.3f')}, prefill {_fmt(r.prefill_s, '.3f')}), step {_fmt(r.step_ms, '.2f')} ms, "
            f"{_fmt(r.tokens_per_s, ',.1f')} tok/s, {_fmt(r.of_limit, '.0%')} of the limit")  # fmt: skip


def _table(rows: list[Row], name: str, device: str, bandwidth: float) -> None:
    """A plain-text table (the GPU machine needs nothing beyond torch and transformers)."""
    header = ["variant", "attention", "cache", "compiled", "batch", "TTFT s", "setup s", "vision s", "prefill s",
              "1st step s", "step ms", "tok/s", "tok/s/story", "limit tok/s", "of limit", "peak GiB",
              "same tokens", "status"]  # fmt: skip
    body = []
    for r in rows:
        body.append([
            r.variant, r.attention, r.cache, "yes" if r.compiled else "no", str(r.batch), _fmt(r.ttft_s, ".3f"),
            _fmt(r.setup_s, ".3f"), _fmt(r.vision_s, ".3f"), _fmt(r.prefill_s, ".3f"), _fmt(r.first_step_s, ".3f"),
            _fmt(r.step_ms, ".2f"), _fmt(r.tokens_per_s, ",.1f"), _fmt(r.story_tokens_per_s, ",.1f"),
            _fmt(r.limit_tokens_per_s, ",.1f"), _fmt(r.of_limit, ".0%"), _fmt(r.peak_gib, ".1f"),
            _fmt(r.same_tokens, ".0%"), r.status,
        ])  # fmt: skip
    widths = [max(len(str(x)) for x in column) for column in zip(header, *body, strict=True)]
    left = {0, 1, 2, len(header) - 1}
    print(f"\nTelling a story with {name} on {device} (copy bandwidth {bandwidth / 1e9:,.0f} GB/s)")
    for line in [header, ["-" * w for w in widths], *body]:
        print("  ".join(str(x).ljust(w) if i in left else str(x).rjust(w)
                        for i, (x, w) in enumerate(zip(line, widths, strict=True))))  # fmt: skip


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    raise SystemExit(main())
