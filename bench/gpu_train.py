"""Training speed and memory of Qwen2.5-VL-7B on one GPU, beside what ``train plan`` predicts.

The model is built from its published configuration (``storyreasoning.testing.published``)
with random bfloat16 weights directly on the GPU: nothing is downloaded, and a step costs
what it costs with the real weights. The input is a typical story, built as token ids
and pixels without a processor: 12 frames of 805 image tokens each (644 × 980 pixels),
15,000 tokens of which 5,114 are the answer (``--tokens`` scales it, a third answer). Each case runs a warm-up step (which also
creates the optimiser's states), then timed steps, and reports

* tokens per second and the step time (median);
* model FLOPs utilisation: ``6 × N × tokens`` for the language model and for the vision
  tower's patches, plus attention (``6 × layers × q_dim × L²`` for the causal language
  model, the windows and whole images for the vision tower), over the GPU's dense bf16
  peak (``--peak-tflops``; known for H100, H200, A100 and L40S);
* the peak of ``torch.cuda.max_memory_allocated`` over the timed steps, and beside it the
  allocated peak ``train plan`` predicts for the same setup (``storyreasoning.train.plan``).

Cases (each within ``--case-seconds``; all within about 8 minutes on an H100 or H200):

``sft``   LoRA rank 16 on the language attention, the loss on the answer's positions only
          (``storyreasoning.train.loss.answer_loss``, as ``train sft``), AdamW (fused);
          with and without gradient checkpointing; SDPA, and FlashAttention-2 when
          ``flash_attn`` is installed.
``dpo``   LoRA rank 2048 (QwenStoryteller2): chosen and rejected (the rejected answer
          shorter, so padded) in one batch, per-token log-probabilities from the last
          hidden state in tiles (the logits never whole, as TRL's fused LM head), the
          reference pass with the adapter disabled under ``no_grad``, the sigmoid DPO loss.
``longest`` the longest story ``train plan`` says fits this GPU (LoRA, checkpointing), run
          once; 10 % shorter if it runs out of memory.

Run on a GPU machine (no network needed; torch, transformers and peft installed)::

    python bench/gpu_train.py                       # all cases, about 8 minutes
    python bench/gpu_train.py --cases sft --steps 2 # a quicker look
    python bench/gpu_train.py --tiny                # the tiny model on the CPU (what the tests run)

It writes ``bench/results/gpu_train.json`` (``--out``). With ``--tiny`` the peaks are
measured by ``storyreasoning.testing.memory.memory_meter`` (there are no CUDA statistics
on a CPU) and compared with the plan for the CPU's kernels.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import inspect
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # runs from a checkout without installing the package
    sys.path.insert(0, str(ROOT / "src"))
DEFAULT_OUT = Path(__file__).parent / "results" / "gpu_train.json"
GiB = 1024**3
#: dense bfloat16 peak, TFLOP/s, by device name
PEAKS = {"H200": 989.0, "H100": 989.0, "H800": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


@dataclass(frozen=True)
class Story:
    """A synthetic story's shape: frames of ``grid`` (height, width) patches, the answer's tokens."""

    frames: int
    grid: tuple[int, int]  # patches per frame (before the 2 × 2 merge)
    answer: int
    prompt: int = 200  # system and user text
    rejected: int | None = None  # DPO: the rejected answer's tokens

    def image_tokens(self, merge: int = 2) -> int:
        return self.frames * (self.grid[0] // merge) * (self.grid[1] // merge)

    def tokens(self, merge: int = 2) -> int:
        return self.prompt + 2 * self.frames + self.image_tokens(merge) + self.answer + 2


def story_of_length(tokens: int, frames: int = 12, merge: int = 2, answer_share: float = 1 / 3) -> Story:
    """A story of about ``tokens`` tokens: a third answer, the rest mostly frames."""
    answer = int(tokens * answer_share)
    per_frame = max((tokens - answer - 200 - 2 * frames - 2) // frames, 4)
    # a frame of 3:4 aspect in merged tokens (rows × columns), as a 672 × 952 photo
    rows = max(int(math.sqrt(per_frame * 0.7)), 1)
    cols = max(per_frame // rows, 1)
    story = Story(frames, (rows * merge, cols * merge), answer)
    return replace(story, answer=answer + tokens - story.tokens(merge))  # exact length


@dataclass
class Row:
    case: str
    attention: str
    checkpointing: bool
    tokens: int
    answer: int
    image_tokens: int
    rows: int = 1
    status: str = "ok"
    steps: int = 0
    step_s: float | None = None
    tokens_per_s: float | None = None
    mfu: float | None = None
    peak_gib: float | None = None
    reserved_gib: float | None = None
    predicted_gib: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        return self.predicted_gib / self.peak_gib if self.peak_gib and self.predicted_gib else None

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "extra"}
        return {**out, **self.extra, "predicted_over_measured": self.ratio}


# -- inputs -----------------------------------------------------------------------------------------------


def batch_for(config, story: Story, device, *, dpo: bool = False, seed: int = 0, pixels_dtype=None):
    """Model inputs for ``story``: token ids laid out as the chat template lays them, pixels, labels."""
    import torch

    text = config.text_config if hasattr(config, "text_config") else config
    vision = config.vision_config
    merge = vision.spatial_merge_size
    gen = torch.Generator().manual_seed(seed)
    vocab = min(text.vocab_size, 151000)
    special = {config.image_token_id, config.vision_start_token_id, config.vision_end_token_id}
    special |= {getattr(config, "video_token_id", -1)}

    def words(n: int) -> list[int]:
        ids = torch.randint(0, vocab, (n,), generator=gen).tolist()
        return [i if i not in special else 0 for i in ids]

    per_frame = (story.grid[0] // merge) * (story.grid[1] // merge)
    head = words(story.prompt // 2)
    for _ in range(story.frames):
        head += (
            [config.vision_start_token_id]
            + [config.image_token_id] * per_frame
            + [config.vision_end_token_id]
        )
    head += words(story.prompt - story.prompt // 2)
    answers = [story.answer] + ([story.rejected or story.answer] if dpo else [])
    rows = [head + words(n) + words(2) for n in answers]
    length = max(len(r) for r in rows)
    pad = text.pad_token_id if getattr(text, "pad_token_id", None) is not None else 0
    ids = torch.full((len(rows), length), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    labels = torch.full((len(rows), length), -100, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        labels[i, len(head) : len(row)] = ids[i, len(head) : len(row)]
    patches = story.frames * story.grid[0] * story.grid[1]
    values = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
    pixels = torch.randn((patches * len(rows), values), generator=gen)
    grid = torch.tensor([[1, *story.grid]] * (story.frames * len(rows)))
    batch = {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": labels,
        "pixel_values": pixels.to(pixels_dtype) if pixels_dtype is not None else pixels,
        "image_grid_thw": grid,
    }
    import transformers

    forward = inspect.signature(transformers.Qwen2_5_VLModel.forward).parameters
    if "mm_token_type_ids" in forward:  # transformers 5 finds the image runs from it
        batch["mm_token_type_ids"] = (ids == config.image_token_id).long()
    return {k: v.to(device) for k, v in batch.items()}


# -- the model ----------------------------------------------------------------------------------------------


def build_model(config, device, dtype, attention: str):
    """Qwen2.5-VL from ``config`` with random weights, made directly on ``device``."""
    import torch
    import transformers

    torch.manual_seed(0)
    with torch.device(device):
        net = transformers.Qwen2_5_VLForConditionalGeneration._from_config(
            config, dtype=dtype, attn_implementation=attention
        )
    # as train sft and dpo load it: a frozen vision tower out of the backward pass, and the decoder
    # unmasked for rows that end with their padding (the DPO rows)
    from storyreasoning.train.collate import unmask_end_padding
    from storyreasoning.train.job import text_input_grads

    text_input_grads(net)
    unmask_end_padding(net)
    return net


def set_attention(net, attention: str) -> None:
    base = net.get_base_model() if hasattr(net, "get_base_model") else net
    if hasattr(base, "set_attn_implementation"):
        base.set_attn_implementation(attention)
    else:  # pragma: no cover - older transformers
        for config in (base.config, base.config.text_config, base.config.vision_config):
            config._attn_implementation = attention


def add_lora(base, rank: int, dropout: float):
    """PEFT LoRA on the language model's attention projections, never the vision tower (as train sft)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=dropout,
        bias="none",
        task_type="CAUSAL_LM",
        target_modules=r"^(?!.*\bvisual\b).*\.(k_proj|o_proj|q_proj|v_proj)$",
    )
    return get_peft_model(base, config)


def set_checkpointing(net, on: bool) -> None:
    """Gradient checkpointing on or off, as the Trainer sets it (transformers also hooks the embeddings'
    outputs to require gradients, the vision tower's patch embedding included; off removes those hooks)."""
    base = net.get_base_model() if hasattr(net, "get_base_model") else net
    if on:
        if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.2x
            base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if not getattr(base, "_require_grads_hooks", None):  # older transformers: train sft's own call
            base.enable_input_require_grads()
    else:
        disable = (
            getattr(base, "activation_checkpointing_disable", None) or base.gradient_checkpointing_disable
        )
        disable()
        base.disable_input_require_grads()


# -- the steps ---------------------------------------------------------------------------------------------


def _keeps_masked_logits() -> bool:
    """Whether this transformers takes a boolean ``logits_to_keep`` (what train sft's loss relies on)."""
    try:
        from transformers.modeling_utils import slice_logits_to_keep
    except ImportError:
        return False
    return "bool" in inspect.getsource(slice_logits_to_keep)


def sft_step(net, batch, autocast):
    """train sft's step: the loss on the answer's positions only, the logits computed only there."""
    import torch.nn.functional as F

    with autocast():
        if _keeps_masked_logits():
            from storyreasoning.train.loss import answer_loss

            loss = answer_loss(net, batch)[0]  # the outputs dropped before backward, as the Trainer does
        else:  # the same computation by hand: the last hidden state at the learned positions only
            base = net.get_base_model()
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            hidden = base.model(**inputs, use_cache=False).last_hidden_state
            targets = batch["labels"][:, 1:]
            learned = targets != -100
            logits = base.lm_head(hidden[:, :-1][learned])
            loss = F.cross_entropy(logits.float(), targets[learned], reduction="sum") / learned.sum()
            del logits, hidden
    loss.backward()
    return loss.item()


def token_logps(net, inputs, labels, tile: int = 256):
    """Per-row sums of the labels' log-probabilities, the LM head applied in tiles of positions."""
    import torch
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint

    base = net.get_base_model() if hasattr(net, "get_base_model") else net
    hidden = base.model(**inputs, use_cache=False).last_hidden_state
    targets = labels[:, 1:]
    learned = targets != -100
    rows, positions = learned.nonzero(as_tuple=True)
    states = hidden[:, :-1][rows, positions]
    wanted = targets[rows, positions]
    head = base.lm_head

    def tile_logps(h, t):
        logits = head(h).float()
        return -F.cross_entropy(logits, t, reduction="none")

    parts = []
    for start in range(0, states.shape[0], tile):
        h, t = states[start : start + tile], wanted[start : start + tile]
        parts.append(
            checkpoint(tile_logps, h, t, use_reentrant=False) if torch.is_grad_enabled() else tile_logps(h, t)
        )
    logps = torch.cat(parts)
    return torch.zeros(labels.shape[0], device=logps.device, dtype=logps.dtype).index_add(0, rows, logps)


def dpo_step(net, batch, autocast, beta: float = 0.1):
    import torch
    import torch.nn.functional as F

    inputs = {k: v for k, v in batch.items() if k != "labels"}
    labels = batch["labels"]
    with autocast():
        policy = token_logps(net, inputs, labels)
        with torch.no_grad(), net.disable_adapter():  # the reference: the policy with its adapter off
            base = net.get_base_model()
            checkpointing = any(getattr(m, "gradient_checkpointing", False) for m in base.modules())
            if checkpointing:  # as TRL: no checkpointing under no_grad
                set_checkpointing(net, False)
            try:
                reference = token_logps(net, inputs, labels)
            finally:
                if checkpointing:
                    set_checkpointing(net, True)
        ratios = (policy - reference).float()
        loss = -F.logsigmoid(beta * (ratios[0] - ratios[1]))
    loss.backward()
    return loss.item()


# -- accounting -------------------------------------------------------------------------------------------


def model_flops(config, story: Story, rows: int, lm_params: int, vision_params: int) -> float:
    """Training FLOPs of one step by the usual convention: 6 × parameters × tokens, plus attention."""
    text, vision = config.text_config, config.vision_config
    tokens = story.tokens() * rows
    patches = story.frames * story.grid[0] * story.grid[1] * rows
    q_dim = text.num_attention_heads * (
        getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    )
    flops = 6 * lm_params * tokens + 6 * vision_params * patches
    flops += 6 * text.num_hidden_layers * q_dim * story.tokens() ** 2 * rows  # causal: half of 12
    per_image = story.grid[0] * story.grid[1]
    window = (vision.window_size // vision.patch_size) ** 2
    full = len(vision.fullatt_block_indexes)
    attended = full * per_image + (vision.depth - full) * min(window, per_image)
    flops += 12 * vision.hidden_size * attended * patches
    return flops


class Clock:
    """Wall time of a step on the device (synchronised), and the peak memory over the timed steps."""

    def __init__(self, device: str) -> None:
        import torch

        self.torch = torch
        self.cuda = device.startswith("cuda")
        self.meter = None

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def reset(self) -> None:
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()
        elif self.meter is not None:
            self.meter.reset_peak()

    def peak(self, weights: int) -> tuple[float, float | None]:
        if self.cuda:
            return self.torch.cuda.max_memory_allocated() / GiB, self.torch.cuda.max_memory_reserved() / GiB
        return (weights + self.meter.peak) / GiB, None

    @contextlib.contextmanager
    def metering(self):
        if self.cuda:
            yield
            return
        from storyreasoning.testing.memory import memory_meter

        self.meter = memory_meter()
        with self.meter:
            yield
        self.meter = None


def run_case(row: Row, net, make_batch, step, *, clock: Clock, steps: int, seconds: float, flops: float,
             peak_tflops: float | None, autocast) -> Row:  # fmt: skip
    import torch

    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-6, fused=clock.cuda)
    weights = sum(p.numel() * p.element_size() for p in net.parameters())
    times: list[float] = []
    try:
        with clock.metering():
            batch = make_batch()
            if not steps:  # one cold step, measured whole (LoRA's optimiser states are small)
                clock.reset()
            start = time.perf_counter()
            step(net, batch, autocast)  # warm-up: kernels chosen, optimiser states made
            optimizer.step()
            optimizer.zero_grad(set_to_none=False)
            clock.sync()
            warm = time.perf_counter() - start
            if not steps:
                times.append(warm)
                row.status = "ok (one cold step)"
            else:
                clock.reset()
            for _ in range(steps):
                if times and sum(times) + warm + max(times) > seconds:
                    break
                start = time.perf_counter()
                step(net, batch, autocast)
                clock.sync()
                times.append(time.perf_counter() - start)
                optimizer.zero_grad(set_to_none=False)  # gradients stay allocated, as in accumulation
            row.peak_gib, row.reserved_gib = clock.peak(weights)
            del batch
    except torch.OutOfMemoryError:
        row.status = "out of memory"
    finally:
        optimizer.zero_grad(set_to_none=True)
        del optimizer
        gc.collect()
        if clock.cuda:
            torch.cuda.empty_cache()
    row.extra["flops"] = flops
    if times:
        row.steps = len(times)
        row.step_s = statistics.median(times)
        row.tokens_per_s = row.tokens * row.rows / row.step_s
        if peak_tflops:
            row.mfu = flops / row.step_s / (peak_tflops * 1e12)
    return row


# -- main -----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tiny", action="store_true", help="the tiny Qwen2.5-VL on the CPU, a few steps (tests)"
    )
    parser.add_argument("--cases", default="sft,dpo,longest", help="comma-separated: sft, dpo, longest")
    parser.add_argument("--tokens", type=int, default=None, help="story length (default 15000; tiny: 1200)")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per case (after one warm-up)")
    parser.add_argument("--case-seconds", type=float, default=45.0, help="time budget of one case")
    parser.add_argument(
        "--total-seconds", type=float, default=450.0, help="a case that could end after this is skipped"
    )
    parser.add_argument("--dpo-rank", type=int, default=2048)
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak")
    parser.add_argument("--gpu-memory", type=float, default=None, help="GiB for the longest-story case")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    import torch
    import transformers

    from storyreasoning.train.plan import Example, Setup, architecture_of, estimate

    began = time.perf_counter()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    cuda = torch.cuda.is_available() and not args.tiny
    device = "cuda" if cuda else "cpu"
    if not cuda and not args.tiny:
        print("no GPU: run with --tiny for the CPU check, or on a GPU machine", file=sys.stderr)
        return 2
    tmp = tempfile.TemporaryDirectory()
    if args.tiny:
        from storyreasoning.testing import build_tiny_qwen25vl

        torch.set_num_threads(1)  # tiny matrices: threads only contend
        folder = build_tiny_qwen25vl(Path(tmp.name) / "tiny")
        config = transformers.AutoConfig.from_pretrained(folder)
        dtype, compute = torch.float32, "float32"
        tokens = args.tokens or 1200
        name = "tiny Qwen2.5-VL (CPU)"
    else:
        from storyreasoning.testing.published import qwen25vl_7b_config

        config = qwen25vl_7b_config()
        dtype, compute = torch.bfloat16, "bfloat16"
        tokens = args.tokens or 15000
        name = "Qwen2.5-VL-7B (random weights)"
    peak_tflops = args.peak_tflops
    gpu_name = torch.cuda.get_device_name(0) if cuda else "cpu"
    if peak_tflops is None and cuda:
        peak_tflops = next((v for k, v in PEAKS.items() if k in gpu_name), None)
    # the card's memory; the tiny model's CPU check plans for a pretend card of 40 MiB
    gpu_memory = args.gpu_memory or (torch.cuda.get_device_properties(0).total_memory / GiB if cuda else 0.04)
    flash = cuda and importlib.util.find_spec("flash_attn") is not None
    attentions = ["sdpa"] + (["flash_attention_2"] if flash else [])

    arch = architecture_of(config, name=name)
    net = build_model(config, device, dtype, "sdpa")
    if cuda:  # memory the process holds outside PyTorch's allocator (the CUDA context and libraries)
        free, total = torch.cuda.mem_get_info()
        outside = (total - free - torch.cuda.memory_reserved()) / GiB
    vision_params = sum(p.numel() for p in net.model.visual.parameters())
    lm_params = sum(p.numel() for p in net.parameters()) - vision_params
    story = story_of_length(tokens, args.frames, config.vision_config.spatial_merge_size)
    autocast = (lambda: torch.autocast("cuda", dtype=dtype)) if cuda else contextlib.nullcontext
    plan_device = "cuda" if cuda else "cpu"
    kw = {"pixels_dtype": None}
    print(f"{name} on {gpu_name}: {sum(p.numel() for p in net.parameters()) / 1e9:.2f} B parameters; story of "
          f"{story.tokens():,} tokens ({story.image_tokens():,} image, {story.answer:,} answer, {story.frames} frames)")  # fmt: skip

    rows: list[Row] = []

    def budget_left() -> bool:  # room for one more case within the whole run's budget
        return time.perf_counter() - began + args.case_seconds < args.total_seconds

    def predicted(setup: Setup, s: Story) -> float:
        example = Example(s.tokens(), s.image_tokens(), s.answer)
        return estimate(arch, replace(setup, overhead_gib=0, device=plan_device), example).allocated / GiB

    clock = Clock(device)
    common = {"clock": clock, "steps": args.steps, "seconds": args.case_seconds, "peak_tflops": peak_tflops,
              "autocast": autocast}  # fmt: skip

    if "sft" in cases:
        lora = add_lora(net, 16, 0.1)
        for attention in attentions:
            set_attention(lora, attention)
            for ckpt in (False, True):
                row = Row("sft lora r16", attention, ckpt, story.tokens(), story.answer, story.image_tokens())
                if not budget_left():
                    rows.append(replace(row, status="skipped (time)"))
                    continue
                set_checkpointing(lora, ckpt)
                setup = Setup(mode="lora", rank=16, checkpointing=ckpt, dtype=compute, attention=attention)
                row.predicted_gib = predicted(setup, story)
                flops = model_flops(config, story, 1, lm_params, vision_params)
                rows.append(run_case(row, lora, lambda: batch_for(config, story, device, **kw), sft_step,
                                     flops=flops, **common))  # fmt: skip
                print(_line(rows[-1]), flush=True)
        set_checkpointing(lora, False)
        net = lora.unload()  # the base again, without the rank-16 adapter
        del lora
        gc.collect()

    if "dpo" in cases:
        dpo = add_lora(net, args.dpo_rank, 0.05)
        pair = replace(story, rejected=int(story.answer * 0.9))
        set_checkpointing(dpo, True)
        for attention in attentions:
            set_attention(dpo, attention)
            row = Row(f"dpo lora r{args.dpo_rank}", attention, True, pair.tokens(), pair.answer,
                      pair.image_tokens(), rows=2)  # fmt: skip
            if not budget_left():
                rows.append(replace(row, status="skipped (time)"))
                continue
            setup = Setup(mode="lora", rank=args.dpo_rank, dropout=0.05, objective="dpo", dtype=compute,
                          attention=attention)  # fmt: skip
            row.predicted_gib = predicted(setup, pair)
            # the policy's forward and backward and the reference's forward: 6N + 2N of 6N
            flops = model_flops(config, pair, 2, lm_params, vision_params) * 8 / 6
            rows.append(run_case(row, dpo, lambda: batch_for(config, pair, device, dpo=True, **kw), dpo_step,
                                 flops=flops, **common))  # fmt: skip
            print(_line(rows[-1]), flush=True)
        set_checkpointing(dpo, False)
        net = dpo.unload()  # the base again
        del dpo
        gc.collect()

    if "longest" in cases:
        lora = add_lora(net, 16, 0.1)
        set_attention(lora, "sdpa")
        set_checkpointing(lora, True)
        setup = Setup(mode="lora", rank=16, checkpointing=True, dtype=compute, device=plan_device,
                      overhead_gib=2.0 if cuda else 0.0)  # fmt: skip
        merge = config.vision_config.spatial_merge_size
        cap = getattr(config.text_config, "max_position_embeddings", None) or 1 << 20

        def fits(n: int) -> bool:  # the plan's verdict on the story this script builds for n tokens
            s = story_of_length(n, args.frames, merge)
            return estimate(arch, setup, Example(s.tokens(), s.image_tokens(), s.answer)).fits(gpu_memory)

        low, high = 0, cap
        while low < high:
            mid = (low + high + 1) // 2
            low, high = (mid, high) if mid >= 512 and fits(mid) else (low, mid - 1)
        limit = low
        timed = [r for r in rows if r.case.startswith("sft") and r.checkpointing and r.step_s]
        for attempt in (limit, int(limit * 0.9)):
            s = story_of_length(max(attempt, 64), args.frames, merge)
            row = Row("longest (plan)", "sdpa", True, s.tokens(), s.answer, s.image_tokens(),
                      extra={"gpu_memory_gib": round(gpu_memory, 2)})  # fmt: skip
            flops = model_flops(config, s, 1, lm_params, vision_params)
            # about how long one cold step takes, from the timed story (FLOPs grow faster than tokens)
            guess = 1.5 * timed[0].step_s * flops / timed[0].extra["flops"] if timed else 0.0
            left = args.total_seconds - (time.perf_counter() - began)
            if attempt <= 0 or guess > left:
                why = (
                    "nothing fits" if attempt <= 0 else f"time: about {guess:.0f} s needed, {left:.0f} s left"
                )
                rows.append(replace(row, status=f"skipped ({why})"))
                print(_line(rows[-1]), flush=True)
                break
            row.predicted_gib = predicted(setup, s)
            rows.append(run_case(row, lora, lambda s=s: batch_for(config, s, device, **kw), sft_step,
                                 flops=flops, **{**common, "steps": 0}))  # fmt: skip
            print(_line(rows[-1]), flush=True)
            if rows[-1].status.startswith("ok"):
                break
        set_checkpointing(lora, False)
        net = lora.unload()
        del lora
        gc.collect()

    _table(rows, name, gpu_name, peak_tflops)
    from _common import write_results

    write_results(
        args.out, "gpu_train", [r.to_dict() for r in rows], argv, model=name, device=gpu_name,
        peak_tflops=peak_tflops, gpu_memory_gib=round(gpu_memory, 2), torch=torch.__version__,
        transformers=transformers.__version__, flash_attention=flash, seconds=round(time.perf_counter() - began, 1),
        outside_allocator_gib=round(outside, 2) if cuda else None,
    )  # fmt: skip
    print(f"wrote {args.out}")
    tmp.cleanup()
    return 0


def _line(row: Row) -> str:
    speed = f"{row.tokens_per_s:,.0f} tok/s" if row.tokens_per_s else "-"
    peak = f"{row.peak_gib:.2f}" if row.peak_gib is not None else "-"
    plan = f"{row.predicted_gib:.2f}" if row.predicted_gib is not None else "-"
    return f"  {row.case} {row.attention} ckpt={'on' if row.checkpointing else 'off'} {row.tokens:,} tokens: {row.status}, {speed}, peak {peak} GiB, plan {plan} GiB"


def _table(rows: list[Row], name: str, device: str, peak_tflops: float | None) -> None:
    """A plain-text table (the GPU machine needs nothing beyond torch, transformers and peft)."""
    small = all((r.peak_gib or 0) < 1 and (r.predicted_gib or 0) < 1 for r in rows)
    unit, scale = ("MiB", 1024) if small else ("GiB", 1)
    header = ["case", "attention", "ckpt", "tokens", "answer", "step s", "tokens/s", "MFU", f"peak {unit}",
              f"plan {unit}", "plan/peak", "status"]  # fmt: skip
    body = []
    for r in rows:
        body.append([
            r.case, r.attention, "on" if r.checkpointing else "off", f"{r.tokens * r.rows:,}", f"{r.answer:,}",
            f"{r.step_s:.2f}" if r.step_s else "-", f"{r.tokens_per_s:,.0f}" if r.tokens_per_s else "-",
            f"{r.mfu:.1%}" if r.mfu is not None else "-",
            f"{r.peak_gib * scale:.2f}" if r.peak_gib is not None else "-",
            f"{r.predicted_gib * scale:.2f}" if r.predicted_gib is not None else "-",
            f"{r.ratio:.3f}" if r.ratio else "-", r.status,
        ])  # fmt: skip
    widths = [max(len(str(x)) for x in column) for column in zip(header, *body, strict=True)]
    print(
        f"\nTraining steps of {name} on {device}"
        + (f" (peak {peak_tflops:g} TFLOP/s)" if peak_tflops else "")
    )
    for line in [header, ["-" * w for w in widths], *body]:
        print("  ".join(str(x).ljust(w) if i in (0, 1, 11) else str(x).rjust(w)
                        for i, (x, w) in enumerate(zip(line, widths, strict=True))))  # fmt: skip


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    raise SystemExit(main())
