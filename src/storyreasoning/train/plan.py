"""Memory planning: the peak memory per GPU of a training, from the model's config and the stories' lengths.

``storyreasoning train plan`` answers "will this training fit this card, story by
story, and if not, what should change?" before any weight is downloaded. The
architecture comes from the model's configuration alone: the model is built on the
``meta`` device (shapes, no storage) to count its parameters and find its decoder layers,
vision blocks and the matrices LoRA adapts. The lengths come from the dataset, counted
as training counts them (:class:`~storyreasoning.data.budget.TokenBudget` with the same
pixel budget and prompts, stories fitted to ``max_length`` by dropping trailing frames,
the learned tokens found as the collator finds them), or from one ``--max-length``. GRPO's
stories are counted as train grpo counts them, by its own rule
(:func:`storyreasoning.train.grpo.story_prompt`): each story's prompt with every frame, and a
story whose prompt and ``--max-completion-length`` exceed ``max_length`` left out and listed
(``too_long``, the summary being train grpo's ``fit.json``), never shortened. Several
datasets (train grpo's) are counted as one dataset of them all: the plan is every story's
peak, and train grpo's ``--mix`` only picks which of those stories train, never making one
heavier, so it is not used.

The memory model
----------------

Sizes in bytes. ``e`` is the compute precision (2 for bfloat16 and float16, 4 for
float32), ``h`` the hidden size, ``q = heads × head_dim``, ``kv = kv_heads × head_dim``,
``I`` the MLP's intermediate size, ``H`` the attention heads, ``V`` the vocabulary, ``L``
a row's tokens; in the vision tower ``hv``, ``Iv``, ``Hv``, ``depth``, with ``merge²``
(4) patches per image token. ``P`` is the number of parameters, ``T`` those trained,
``N`` the GPUs that share sharded terms. Every count is per token of the batch (DPO's
batch holds the chosen and the rejected answer: two rows).

The precision follows what the trainers do. LoRA: the base in the compute dtype,
frozen; adapters in float32 (PEFT casts them up) under autocast (the Trainer's
``bf16``). Full and language on one GPU or DDP: float32 master weights computing in
bfloat16 under autocast (:func:`storyreasoning.train.job.weights_dtype`), so the residual
stream is float32 (``r = 4``; otherwise ``r = e``). FSDP (FSDP2, full shard, bf16
parameters) and ZeRO-3 (DeepSpeed bf16): float32 states sharded, bf16 units gathered; the
activations are the pure bf16 ones.

Held through the step:

``weights``
    ``P × e`` for LoRA's base; ``P × 4`` for full and language (master weights; the
    frozen vision tower of ``language`` is float32 too). FSDP: ``P × 4 / N``; ZeRO-3:
    ``(P × e + T × 4) / N``. ``--offload`` moves the sharded terms to host memory.
``autocast copies``
    Full and language under autocast: ``e × `` every trained matrix (the language
    model's linear weights with the LM head; the vision tower's when it is trained),
    autocast's cache of their casts, held from the forward pass to each layer's backward.
``gradients``, ``optimizer``
    ``T × 4`` and AdamW's two float32 moments ``T × 8`` (sharded ``/ N``).
``LoRA adapters``
    ``rank × (in + out)`` parameters for every adapted matrix, with their float32
    gradients and moments and autocast's copy: 18 bytes each (rank 2048 on the attention
    of the 7B: 1.29 B parameters, 21.7 GiB; rank 16: 10 M, 0.17 GiB).
``sharding buffers``
    DDP: its buckets, a second copy of the gradients. FSDP and ZeRO-3: two units in ``e``
    (running and prefetched; a unit is a decoder layer, a vision block, or the largest of
    the embedding and LM head) and one unit's unsharded gradient (``e + 4``).

Activations saved for the backward pass (derived from the code of transformers'
Qwen2.5-VL, PEFT's LoRA and PyTorch's autograd, which saves a tensor only when a
gradient needs it):

``decoder layers``
    Without checkpointing ``n ×``, per token:

    * both RMSNorms: their float32 input and ``1/rms``, ``2 × (4h + 4)``;
    * attention: rotated query and key, value and output, ``e × (2q + 2kv)``, and the
      float32 log-sum-exp ``4H``. Rows of several lengths that do not all end with their
      padding (GRPO's batches) give SDPA a padding mask: the key and value heads are
      repeated (``2q`` for ``2kv``) and the mask becomes a bias of the query's dtype saved
      by every layer (``L × e``). SFT's and DPO's rows end with their padding, and the
      decoder gets no mask (:func:`storyreasoning.train.collate.unmask_end_padding`). Eager
      attention keeps its probabilities (``H × L × (4 + e)``);
    * MLP: gate, activation and up projection outputs, ``3e × I``;
    * when the layer is trained: the RMSNorms' normalised inputs ``2r × h`` and the
      matrices' inputs ``2e × h + e × I`` (``5e × h + e × I`` under autocast with float32
      weights, where each projection casts its input separately);
    * each LoRA adapter on a matrix of input size ``d``: the input of ``A`` (``e × d``
      under autocast, which casts PEFT's float32 copy back; ``4d`` without) and the output
      of ``A`` (``e × rank``), plus the dropout mask (1 byte per input on a GPU, a float on
      a CPU) when dropout is on. Without checkpointing, LoRA's first layer saves no input
      (the frozen embeddings need no gradient).

    For the real Qwen2.5-VL-7B layer this is 197.2 KiB per token with the default LoRA
    (rank 16, dropout 0.1) in bfloat16 under autocast on a GPU, 155.1 KiB for a frozen
    layer, 220.1 KiB for a trained one in pure bfloat16 and 255.1 KiB for a trained one
    with float32 master weights. The issue's "about 282 KiB" was measured on a CPU with
    that LoRA in bfloat16 without autocast, where PEFT's adapters save float32 inputs and
    dropout float32 masks: 267.4 KiB by this model (``device="cpu"``), 281.4 KiB with the
    layer's own bfloat16 input and output (``2 × 2h``) counted, as that measurement did.

    With gradient checkpointing each layer keeps only its input (``r × h``).
``inputs``
    Token ids, labels, attention mask, token types and the three rows of multimodal
    positions (56 bytes) and the rotary ``cos``/``sin`` (``2 × head_dim × r``); with a
    padding mask (see above), its boolean 4D form (``rows × L²`` bytes; ``e`` each for eager).
``vision tower``
    The float32 pixels (``4 × 1176`` bytes a patch). Only a trained tower (full) is in
    the backward graph. A frozen one (LoRA, language) runs without a graph, with
    gradient checkpointing too: :func:`storyreasoning.train.job.text_input_grads` makes
    only the token embeddings' output require gradients (transformers' own hook would
    take the patch embedding's too, and checkpoint and back-propagate the frozen blocks
    for nothing), so it keeps only its pixels, and its output features for as long as the
    forward pass scatters them into the token embeddings. Trained, per patch and block it
    saves ``2 × (4hv + 4)`` (RMSNorms) ``+ 6e·hv`` (rotated query and key, the fused qkv
    output whose view is the value, the output) ``+ e·hv`` (the windows' outputs
    concatenated; not with FlashAttention-2) ``+ 4Hv + 3e·Iv + 4e·hv + e·Iv`` (one more
    ``e·hv`` under autocast) and the pixels' cast. With checkpointing, ``e × hv`` a block;
    the patch merger ``4hv + 4 + 4e·hv`` and the rotary tables (``2 × head_dim_v × 4``).

The largest transient counts, on top:

``logits``
    The final RMSNorm (``4h + 4``, ``+ r × h`` trained) and, when the LM head is trained,
    its input (``e × h`` a loss position), with the LM head's output for the positions
    the loss is computed on: ``--logits answer`` (the answer's tokens; train sft computes
    its loss there only) or ``all`` (every position, a model's own loss). ``12 × V``
    bytes a position: the float32 log-softmax, its gradient and the logits' gradient of
    the backward pass (the forward's low-precision logits and float32 upcast, ``e + 8``,
    are less). DPO (TRL's fused LM head, in tiles): ``e × h + 4h`` a position.
``layer backward``
    The MLP's gradients while its saved tensors are consumed (``3e × I``, ``2e × I`` when
    its matrices are trained; an adapter's ``rank`` wide gradient if larger) and two of the
    residual stream (``2r × h``); with checkpointing plus one layer's activations rebuilt.
``reference pass`` (DPO)
    The reference's no-grad forward while the policy's activations are held:
    ``3e × I + 2r × h`` a token.
``vision backward``
    A trained tower with checkpointing: one vision block rebuilt and its MLP's gradients.

GRPO (``--objective grpo``, as ``train grpo`` runs): a row is a story's prompt (as train
grpo tells it, with no answer; for one ``--max-length`` without a dataset, that length less
its answer share) with a completion of ``--max-completion-length`` tokens, on which the
loss's logits are computed. The longest row that fits keeps the whole completion and
shortens the prompt: a lower ``--max-length`` makes train grpo skip stories, never shorten a
completion. Besides the terms above:

``reference pass`` (GRPO, ``--beta`` above 0)
    The reference's no-grad forward (``3e × I + 2r × h`` a token) and its logits with
    their float32 log-softmax (``(e + 4) × V`` a completion position). Full and language
    training also hold TRL's frozen copy of the starting model (``reference model``, the
    weights' bytes); LoRA's reference is the policy with its adapter off.
``generation (KV cache)``
    Generation runs before the step's activations exist: the keys and values of
    ``--num-generations`` rows of prompt and completion (``layers × 2 × kv × e`` a token
    a row) and one step's float32 logits (``4V`` a row), counted as what they exceed the
    step's activations by. vLLM (``train grpo --use-vllm``) keeps its own cache instead:
    colocated, it takes ``--vllm-gpu-memory`` of the card besides this plan.

``CUDA overhead``
    A fixed ``--overhead`` (default 2 GiB): the CUDA context (about 0.5 GiB, outside
    PyTorch's allocator), cuBLAS and NCCL workspaces and the caching allocator's
    fragmentation. The other terms sum to what ``torch.cuda.max_memory_allocated``
    reports; ``bench/gpu_train.py`` prints both side by side on a GPU.

Checked on the CPU (``tests/train/test_plan.py``, ``tests/bench/test_gpu_train.py``):
the peak of real training steps of the tiny Qwen2.5-VL, every allocation counted by
:func:`~storyreasoning.testing.memory.memory_meter`, within 0.2 % for LoRA, full and
language training without checkpointing and with autocast, within 5 % with
checkpointing (rebuilt tensors are freed as they are used, which this model does not
follow), within 3 % for DPO steps; and exactly, byte for byte, the tensors autograd saves
in one real-size Qwen2.5-VL-7B decoder layer in six regimes (``-m slow``). Not modelled:
Liger kernels (they only lower memory), sequence packing, tensor or context parallelism.

``train plan --config`` also reads a recipe of train sft, dpo or grpo
(:data:`RecipePlanSettings`): the plan's settings from it (train grpo's ``sources`` are the datasets
when the command line gives none), the objective and the defaults of its job, the job's own settings
(lr, epochs, ...) named in one line and left unused.

torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, make_dataclass, replace
from typing import Any, Literal

from ..errors import StoryReasoningError, UsageError
from ..settings import convert, option, settings_fields
from ..terminal import no_progress
from .settings import LORA_TARGETS, MODES, DPOSettings, GRPOSettings, PlanSettings, SFTSettings

GiB = 1024**3
Sharding = Literal["none", "fsdp", "zero3"]
SHARDINGS = ("none", "fsdp", "zero3")
DTYPES = {"bfloat16": 2, "float16": 2, "float32": 4}
#: The shares of a typical story's tokens (12.5 frames, about 15k tokens of which about
#: 5k are the answer and 9.5k image tokens) used for one --max-length without a dataset.
ANSWER_SHARE = 1 / 3
IMAGE_SHARE = 0.62
#: Inputs per token: ids, labels, attention mask (int64) and the three position rows.
_INPUT_BYTES = 8 + 8 + 8 + 3 * 8 + 8
#: Which tensor a LoRA adapter's input is, by the matrix it adapts (adapters on the same
#: input without dropout and without a cast share it).
_GROUPS = {
    "q_proj": "attn_in", "k_proj": "attn_in", "v_proj": "attn_in", "o_proj": "attn_out",
    "gate_proj": "mlp_in", "up_proj": "mlp_in", "down_proj": "mlp_act",
}  # fmt: skip


# -- the architecture ---------------------------------------------------------------------------


@dataclass(frozen=True)
class VisionTower:
    hidden: int
    intermediate: int
    depth: int
    heads: int
    merge: int  # patches merged per side into one image token
    patch_values: int  # pixel values per patch (channels × temporal patch × patch²)
    parameters: int
    block_parameters: int
    matrix_parameters: int  # linear and convolution weights: what autocast casts

    @property
    def patches_per_token(self) -> int:
        return self.merge * self.merge


@dataclass(frozen=True)
class Architecture:
    """What the memory model needs of a model, read from its config and its meta-device build."""

    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    parameters: int
    layer_parameters: int
    #: the matrices of one decoder layer: (name inside the layer, in features, out features)
    layer_matrices: tuple[tuple[str, int, int], ...]
    matrix_parameters: int  # the language model's linear weights with the LM head (autocast casts them)
    embedding_parameters: int
    lm_head_parameters: int
    vision: VisionTower | None = None

    @property
    def vision_parameters(self) -> int:
        return self.vision.parameters if self.vision else 0

    def lora_matrices(self, targets: tuple[str, ...]) -> list[tuple[str, int, int]]:
        """The matrices of one decoder layer that LoRA adapts for ``targets`` (never the vision tower)."""
        names = {t.strip().strip(".") for t in targets if t.strip()}
        return [m for m in self.layer_matrices if m[0].rsplit(".", 1)[-1] in names]

    def lora_parameters(self, rank: int, targets: tuple[str, ...]) -> int:
        return self.layers * sum(rank * (i + o) for _, i, o in self.lora_matrices(targets))

    def trained(self, mode: str) -> int:
        """Parameters with gradients in a full or language training."""
        return self.parameters - (self.vision_parameters if mode == "language" else 0)


def architecture(model: str, revision: str | None = None) -> Architecture:
    """The :class:`Architecture` of a hub id or local folder, from its config alone (no weights)."""
    try:
        from transformers import AutoConfig
    except ImportError:
        raise UsageError(
            "planning needs transformers and torch: install torch for your machine, then "
            "pip install 'storyreasoning[train]'"
        ) from None
    try:
        config = AutoConfig.from_pretrained(model, revision=revision)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise StoryReasoningError(
            f"cannot read the configuration of {model!r} ({first}); pass --model with a local folder holding "
            "its config.json or a reachable hub id"
        ) from None
    return architecture_of(config, name=model)


def architecture_of(config: Any, name: str | None = None) -> Architecture:
    """The :class:`Architecture` of a transformers config: the model is built on the meta device and counted."""
    import torch
    import transformers

    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    needed = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
    missing = [k for k in needed if getattr(text, k, None) is None]
    if missing:
        raise UsageError(
            f"the configuration of {name or 'the model'} has no {', '.join(missing)}; train plan knows decoder "
            "models of the Qwen2-VL family (hidden_size, intermediate_size, num_hidden_layers, ...)"
        )
    with torch.device("meta"):
        try:
            net = transformers.AutoModelForImageTextToText.from_config(config)
        except ValueError:
            net = transformers.AutoModelForCausalLM.from_config(config)
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    vision_config = getattr(config, "vision_config", None)
    depth = _first(vision_config, "depth", "num_hidden_layers") if vision_config is not None else None

    layers_name = blocks_name = None
    for module_name, module in net.named_modules():
        if isinstance(module, torch.nn.ModuleList):
            in_vision = "visual" in module_name.split(".") or "vision" in module_name
            if not in_vision and len(module) == text.num_hidden_layers and layers_name is None:
                layers_name = module_name
            elif in_vision and depth and len(module) == depth and blocks_name is None:
                blocks_name = module_name
    if layers_name is None:
        raise UsageError(f"cannot find the {text.num_hidden_layers} decoder layers of {name or 'the model'}")

    def size(module) -> int:
        return sum(p.numel() for p in module.parameters())

    seen: set[int] = set()
    total = vision_total = matrices = vision_matrices = embedding = lm_head = 0
    for module_name, module in net.named_modules():
        in_vision = "visual" in module_name.split(".") or module_name.startswith("vision")
        for p in module.parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            total += p.numel()
            vision_total += p.numel() if in_vision else 0
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv3d, torch.nn.Conv2d)) and p.dim() > 1:
                if in_vision:
                    vision_matrices += p.numel()
                else:
                    matrices += p.numel()
            if isinstance(module, torch.nn.Embedding):
                embedding += p.numel()
    head = net.get_output_embeddings() if hasattr(net, "get_output_embeddings") else None
    if head is not None:
        lm_head = head.weight.numel()
    layer0 = net.get_submodule(layers_name)[0]
    layer_matrices = tuple(
        (n, m.in_features, m.out_features)
        for n, m in layer0.named_modules()
        if isinstance(m, torch.nn.Linear)
    )
    vision = None
    if blocks_name is not None and vision_config is not None:
        patch = _first(vision_config, "patch_size", "spatial_patch_size") or 14
        vision = VisionTower(
            hidden=_first(vision_config, "embed_dim", "hidden_size"),
            intermediate=_vision_intermediate(vision_config),
            depth=depth,
            heads=_first(vision_config, "num_heads", "num_attention_heads"),
            merge=getattr(vision_config, "spatial_merge_size", 2) or 2,
            patch_values=(getattr(vision_config, "in_channels", None) or 3)
            * (getattr(vision_config, "temporal_patch_size", None) or 2)
            * patch
            * patch,
            parameters=vision_total,
            block_parameters=size(net.get_submodule(blocks_name)[0]),
            matrix_parameters=vision_matrices,
        )
    return Architecture(
        name=name or getattr(config, "_name_or_path", "") or type(config).__name__,
        hidden=text.hidden_size,
        intermediate=text.intermediate_size,
        layers=text.num_hidden_layers,
        heads=heads,
        kv_heads=getattr(text, "num_key_value_heads", None) or heads,
        head_dim=head_dim,
        vocab=text.vocab_size,
        parameters=total,
        layer_parameters=size(layer0),
        layer_matrices=layer_matrices,
        matrix_parameters=matrices,
        embedding_parameters=embedding,
        lm_head_parameters=lm_head,
        vision=vision,
    )


def _first(config: Any, *names: str) -> Any:
    for n in names:
        value = getattr(config, n, None)
        if value is not None:
            return value
    return None


def _vision_intermediate(vision_config: Any) -> int:
    value = getattr(vision_config, "intermediate_size", None)
    if value:
        return value
    ratio = getattr(vision_config, "mlp_ratio", 4)  # Qwen2-VL
    return int(_first(vision_config, "embed_dim", "hidden_size") * ratio)


# -- what is trained how ------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """A training's choices that decide its memory (the options of train plan, as in train sft and dpo)."""

    mode: str = "lora"
    rank: int = 16
    targets: tuple[str, ...] = LORA_TARGETS
    dropout: float = 0.1
    checkpointing: bool = True
    dtype: str = "bfloat16"
    attention: str = "sdpa"
    objective: str = "sft"  # sft | dpo (chosen and rejected in one batch, a reference pass) | grpo
    #: grpo: completions generated at once (the group), and whether a reference pass runs (beta above 0)
    generations: int = 8
    reference: bool = True
    logits: str = "answer"  # answer | all: the positions the LM head projects for the loss
    batch_size: int = 1
    gpus: int = 1
    sharding: Sharding = "none"
    offload: bool = False
    overhead_gib: float = 2.0
    #: "cpu": the CPU's kernels (float dropout masks) and no autocast, to check against CPU measurements
    device: str = "cuda"
    #: whether low-precision compute runs under autocast; None: as the trainers do (see :attr:`autocast`)
    amp: bool | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"unknown mode {self.mode!r}; use lora, full or language")
        if self.dtype not in DTYPES:
            raise UsageError(f"unknown dtype {self.dtype!r}; use bfloat16, float16 or float32")
        if self.dtype == "float16" and self.mode != "lora":
            raise UsageError(
                f"--mode {self.mode} in float16 is refused by training; use bfloat16 or --mode lora"
            )
        if self.sharding not in SHARDINGS:
            raise UsageError(f"unknown sharding {self.sharding!r}; use none, fsdp or zero3")
        if self.offload and self.sharding == "none":
            raise UsageError("--offload needs --sharding fsdp or zero3 (they move states to CPU memory)")
        if self.gpus < 1 or self.batch_size < 1 or self.rank < 1:
            raise UsageError("--gpus, --batch-size and --rank must be at least 1")
        if self.objective not in ("sft", "dpo", "grpo"):
            raise UsageError(f"unknown objective {self.objective!r}; use sft, dpo or grpo")
        if self.generations < 1:
            raise UsageError("--num-generations must be at least 1")
        if self.logits not in ("answer", "all"):
            raise UsageError(f"unknown --logits {self.logits!r}; use answer or all")
        if self.attention not in ("sdpa", "flash_attention_2", "eager"):
            raise UsageError(f"unknown attention {self.attention!r}; use sdpa, flash_attention_2 or eager")

    @property
    def e(self) -> int:
        """Bytes of the compute precision."""
        return DTYPES[self.dtype]

    @property
    def autocast(self) -> bool:
        """Low-precision compute under autocast (the Trainer's bf16/fp16; not DeepSpeed, not on the CPU here)."""
        if self.amp is not None:
            return self.amp and self.e < 4
        return self.e < 4 and self.sharding != "zero3" and self.device != "cpu"

    @property
    def master(self) -> bool:
        """Float32 master weights used directly under autocast (full and language on one GPU or DDP)."""
        return self.mode != "lora" and self.sharding == "none" and self.autocast

    @property
    def r(self) -> int:
        """Bytes of the residual stream (float32 when the weights are float32 under autocast)."""
        return 4 if self.master else self.e

    @property
    def adapter_bytes(self) -> int:
        """LoRA adapters are float32 (PEFT casts them up), except under DeepSpeed's bf16 engine."""
        return self.e if self.sharding == "zero3" else 4

    @property
    def shards(self) -> int:
        return self.gpus if self.sharding != "none" else 1

    @property
    def label(self) -> str:
        parts = [self.mode + (f" r{self.rank}" if self.mode == "lora" else ""), self.dtype]
        parts.append("checkpointing" if self.checkpointing else "no checkpointing")
        if self.sharding != "none":
            parts.append(f"{self.sharding}{' + offload' if self.offload else ''} × {self.gpus}")
        elif self.gpus > 1:
            parts.append(f"DDP × {self.gpus}")
        if self.objective == "dpo":
            parts.append("DPO")
        if self.objective == "grpo":
            parts.append(f"GRPO, groups of {self.generations}" + ("" if self.reference else ", no reference"))
        return ", ".join(parts)


@dataclass(frozen=True)
class Example:
    """One training example's lengths (a story fitted to max_length, or one length alone)."""

    tokens: int
    image_tokens: int
    answer_tokens: int
    id: str | None = None
    frames: int | None = None
    frames_before: int | None = None
    dataset: str | None = None  # the dataset of the story, as given

    @classmethod
    def of_length(cls, tokens: int, *, image_tokens: int | None = None, answer_tokens: int | None = None):
        """A typical story of ``tokens`` tokens (shares :data:`IMAGE_SHARE`, :data:`ANSWER_SHARE` unless given)."""
        image = int(tokens * IMAGE_SHARE) if image_tokens is None else image_tokens
        answer = int(tokens * ANSWER_SHARE) if answer_tokens is None else answer_tokens
        if image + answer > tokens:
            raise UsageError(
                f"{image} image tokens and {answer} answer tokens do not fit in {tokens} tokens; "
                "lower --image-tokens or --answer-tokens"
            )
        return cls(tokens=tokens, image_tokens=image, answer_tokens=answer)


@dataclass
class Estimate:
    """The memory of one example under one setup: terms in bytes, the largest transient, the overhead."""

    static: dict[str, float]
    activations: dict[str, float]
    transients: dict[str, float]
    overhead: float
    host: float = 0.0  # bytes in CPU memory per process (offload)

    @property
    def transient(self) -> tuple[str, float]:
        if not self.transients:
            return "none", 0.0
        return max(self.transients.items(), key=lambda kv: kv[1])

    @property
    def allocated(self) -> float:
        """What torch.cuda.max_memory_allocated would report."""
        return sum(self.static.values()) + sum(self.activations.values()) + self.transient[1]

    @property
    def total(self) -> float:
        return self.allocated + self.overhead

    def fits(self, gpu_memory_gib: float) -> bool:
        return self.total <= gpu_memory_gib * GiB

    def breakdown(self) -> dict[str, float]:
        """Every term in GiB, the transient named by what it is."""
        out = {k: v / GiB for k, v in {**self.static, **self.activations}.items()}
        name, value = self.transient
        out[f"transient: {name}"] = value / GiB
        out["CUDA overhead"] = self.overhead / GiB
        return out


# -- the terms ---------------------------------------------------------------------------------


def layer_bytes(arch: Architecture, setup: Setup, *, trained: bool, length: int = 0) -> float:
    """Bytes one decoder layer saves for the backward pass, per token (see the module docstring)."""
    h, q, kv, inter, heads = arch.hidden, arch.heads * arch.head_dim, arch.kv_heads * arch.head_dim, \
        arch.intermediate, arch.heads  # fmt: skip
    e, r = setup.e, setup.r
    padded = _masked_rows(setup)
    expanded = setup.attention == "eager" or (setup.attention == "sdpa" and padded)
    keys = q if expanded and kv != q else kv
    total = 2 * (4 * h + 4)  # both RMSNorms: float32 input, 1/rms
    total += e * (2 * q + 2 * keys)  # rotated query and key, value, output
    if setup.attention == "eager":
        total += heads * length * (4 + e)  # the probabilities, float32 and cast
    else:
        total += 4 * heads  # log-sum-exp
    if setup.attention == "sdpa" and padded:
        total += length * e  # SDPA turns the boolean mask into a bias of the query's dtype, saved per layer
    total += 3 * e * inter  # gate, activation, up
    if trained:
        total += 2 * r * h  # normalised inputs of the RMSNorms' weights
        total += (5 if setup.master else 2) * e * h + e * inter  # the matrices' inputs
    if setup.mode == "lora":
        total += lora_layer_bytes(arch, setup)
    return total


def _masked_rows(setup: Setup) -> bool:
    """Whether the decoder gets a padding mask: rows of several lengths not all ending with their padding.

    train sft and train dpo end every row with its padding and give the decoder no mask
    (:func:`storyreasoning.train.collate.unmask_end_padding`); GRPO's rows pad their prompts
    on the left.
    """
    return setup.objective == "grpo" and setup.batch_size > 1


def lora_layer_bytes(arch: Architecture, setup: Setup) -> float:
    """Bytes the LoRA adapters of one decoder layer save, per token."""
    e, a, rank = setup.e, setup.adapter_bytes, setup.rank
    dropout = setup.dropout > 0
    mask = 1 if setup.device != "cpu" else a  # CUDA's fused dropout keeps a bool mask; the CPU's a float one
    shared: set[str] = set()
    total = 0.0
    for name, d_in, _ in arch.lora_matrices(setup.targets):
        if setup.autocast and a > e:  # PEFT's float32 copy, cast back by autocast for A
            total += e * d_in + e * rank + (mask * d_in if dropout else 0)
        elif a != e:  # PEFT's float32 copy of the input
            total += a * d_in + a * rank + (mask * d_in if dropout else 0)
        elif dropout:
            total += a * d_in + mask * d_in + a * rank
        else:  # no copy: the adapter saves the input itself, unless something saves it already
            group = _GROUPS.get(name.rsplit(".", 1)[-1], name)
            if group != "attn_out" and group not in shared:
                total += a * d_in
                shared.add(group)
            total += a * rank
    return total


def vision_block_bytes(vision: VisionTower, setup: Setup, *, trained: bool = True) -> float:
    """Bytes one vision block in the backward graph saves, per patch (frozen: only what input gradients need)."""
    hv, e = vision.hidden, setup.e
    total = 2 * (4 * hv + 4)  # RMSNorms: float32 input, 1/rms
    total += e * 2 * hv + e * 3 * hv + e * hv  # rotated query and key, the qkv output (value), output
    total += 0 if setup.attention == "flash_attention_2" else e * hv  # per-window outputs concatenated
    total += 4 * vision.heads + 3 * e * vision.intermediate  # log-sum-exp; gate, activation, up
    if trained:
        total += 2 * e * hv  # normalised inputs of the RMSNorms' weights
        total += (3 if setup.master else 2) * e * hv + e * vision.intermediate  # the matrices' inputs
    return total


def _first_layer_saving(arch: Architecture, setup: Setup) -> float:
    """What the first layer does not save when nothing before it needs a gradient (LoRA without checkpointing).

    Its input (the token embeddings, frozen) needs no gradient, so its first RMSNorm saves
    nothing and the dropout of the adapters reading that RMSNorm's output keeps no mask.
    """
    if setup.mode != "lora" or setup.checkpointing:
        return 0.0
    h = arch.hidden
    saving = 4 * h + 4
    if setup.dropout > 0:
        mask = 1 if setup.device != "cpu" else setup.adapter_bytes
        saving += sum(mask * d_in for name, d_in, _ in arch.lora_matrices(setup.targets)
                      if _GROUPS.get(name.rsplit(".", 1)[-1]) == "attn_in")  # fmt: skip
    return saving


def static_terms(arch: Architecture, setup: Setup) -> tuple[dict[str, float], float]:
    """``(terms, host bytes)``: what a GPU holds through the step besides activations."""
    e, n = setup.e, setup.shards
    lora = setup.mode == "lora"
    sharded = setup.sharding != "none"
    trained = 0 if lora else arch.trained(setup.mode)
    # bytes of a trained parameter, of its gradient and of each AdamW moment: float32, except when a
    # low-precision model is trained as it is (no autocast, no sharding engine: the CPU checks)
    state = 4 if (sharded or setup.master or e == 4) else e
    on_gpu = 0.0 if setup.offload else 1.0
    held: dict[str, float] = {}  # before sharding and offload
    if setup.sharding == "zero3":  # bf16 partitions and float32 master partitions of the trained ones
        held["weights"] = arch.parameters * e + trained * 4
    else:
        held["weights"] = arch.parameters * (e if lora else state)
    held["gradients"] = trained * state
    held["optimizer"] = trained * 2 * state
    if lora:
        adapters = arch.lora_parameters(setup.rank, setup.targets)
        a = setup.adapter_bytes
        # the adapters, their float32 gradients and AdamW moments (and DeepSpeed's float32 master copy)
        held["LoRA adapters"] = adapters * (a + 4 + 8 + (4 if a < 4 else 0))
    terms = {k: v / n * (on_gpu if sharded else 1.0) for k, v in held.items()}
    host = sum(v / n for v in held.values()) * (1 - on_gpu) if sharded else 0.0
    if setup.master:
        vision_trained = setup.mode == "full" and arch.vision is not None
        matrices = arch.matrix_parameters + (arch.vision.matrix_parameters if vision_trained else 0)
        terms["autocast copies"] = matrices * e
    elif lora and setup.autocast:
        terms["LoRA adapters"] += arch.lora_parameters(setup.rank, setup.targets) * e / n
    buffers = 0.0
    if not sharded and setup.gpus > 1:  # DDP's buckets: a second copy of the gradients
        buffers = (arch.lora_parameters(setup.rank, setup.targets) if lora else trained) * 4
    elif sharded:  # the unit running and the one prefetched, gathered; one unit's gradient unsharded
        unit = max(arch.layer_parameters, arch.embedding_parameters, arch.lm_head_parameters,
                   arch.vision.block_parameters if arch.vision else 0)  # fmt: skip
        buffers = 2 * unit * e + (0 if lora else unit * (e + 4))
    if buffers:
        terms["sharding buffers"] = buffers
    if setup.objective == "grpo" and setup.reference and not lora:
        # TRL's frozen copy of the starting model (LoRA's reference is the policy with its adapter off)
        terms["reference model"] = arch.parameters * (state if not sharded else e) / n
    return terms, host


def estimate(arch: Architecture, setup: Setup, example: Example) -> Estimate:
    """The peak memory per GPU of one step of ``setup`` on ``example`` (see the module docstring)."""
    e, r, h = setup.e, setup.r, arch.hidden
    lora = setup.mode == "lora"
    trained = not lora
    sequences = setup.batch_size * (2 if setup.objective == "dpo" else 1)
    tokens = example.tokens * sequences
    image_tokens = example.image_tokens * sequences
    answer = example.answer_tokens * sequences
    static, host = static_terms(arch, setup)

    per_layer = layer_bytes(arch, setup, trained=trained, length=example.tokens)
    acts: dict[str, float] = {}
    if setup.checkpointing:
        acts["decoder layers"] = arch.layers * r * h * tokens
    else:
        acts["decoder layers"] = (arch.layers * per_layer - _first_layer_saving(arch, setup)) * tokens
    loss_positions = answer if setup.logits == "answer" or setup.objective != "sft" else tokens
    acts["inputs"] = (_INPUT_BYTES + 2 * arch.head_dim * r) * tokens
    if setup.attention == "eager" or (setup.attention == "sdpa" and _masked_rows(setup)):
        # padded rows (GRPO's batches): a 4D mask, boolean for SDPA, e for eager
        acts["inputs"] += sequences * example.tokens**2 * (e if setup.attention == "eager" else 1)
    # the final RMSNorm and the LM head's input: freed once the loss's backward is through them
    head = (4 * h + 4 + (r * h if trained else 0)) * tokens + (e * h * loss_positions if trained else 0)

    transients: dict[str, float] = {}
    if setup.objective == "grpo":
        transients["logits"] = head + 12 * arch.vocab * loss_positions
        if setup.reference:  # the reference's no-grad forward while the policy's activations are held
            transients["reference pass"] = (3 * e * arch.intermediate + 2 * r * h) * tokens + (
                e + 4
            ) * arch.vocab * loss_positions
        # generation runs before the step's activations exist: the group's KV cache over prompt and
        # completion and one step's float32 logits, counted as what it exceeds those activations by
        kv = arch.layers * 2 * arch.kv_heads * arch.head_dim * e * example.tokens * setup.generations
        generation = kv + 4 * arch.vocab * setup.generations
        transients["generation (KV cache)"] = max(0.0, generation - sum(acts.values()))
    elif setup.objective == "dpo":
        transients["logits"] = head + (e * h + 4 * h) * loss_positions  # TRL's fused LM head, in tiles
        transients["reference pass"] = (3 * e * arch.intermediate + 2 * r * h) * tokens
    else:
        transients["logits"] = head + 12 * arch.vocab * loss_positions
    # the gradients of the residual stream and the MLP's while its saved tensors are consumed (two when
    # its matrices are trained: the down projection's input is freed as its gradient appears); with
    # checkpointing, one layer rebuilt
    workspace = (2 if trained else 3) * e * arch.intermediate
    if lora:  # or the gradient of an adapter's rank-wide activation, at high ranks on small models
        workspace = max(workspace, (e if setup.autocast else setup.adapter_bytes) * setup.rank)
    workspace = (workspace + 2 * r * h) * tokens
    transients["layer backward"] = workspace + (per_layer * tokens if setup.checkpointing else 0)

    vision = arch.vision
    if vision is not None and image_tokens:
        patches = image_tokens * vision.patches_per_token
        acts["vision tower"] = 4 * vision.patch_values * patches  # the float32 pixels
        # Only a trained tower (full) is in the backward graph: a frozen one (LoRA, language) runs without
        # one, checkpointing or not, since job.text_input_grads hooks the token embeddings alone.
        if setup.mode == "full":
            block = vision_block_bytes(vision, setup, trained=True)
            hv = vision.hidden
            # the merger's RMSNorm, GELU and its matrices' inputs, the rotary tables, the pixels cast
            merger = 4 * hv + 4 + e * hv + 3 * e * hv
            rotary = 2 * (hv // vision.heads) * 4
            cast = e * vision.patch_values if e < 4 else 0
            kept = vision.depth * (e * hv if setup.checkpointing else block)
            acts["vision tower"] += (kept + merger + rotary + cast) * patches
            if setup.checkpointing:
                transients["vision backward"] = (block + 3 * e * vision.intermediate) * patches
    return Estimate(static, acts, transients, setup.overhead_gib * GiB, host)


def longest_length(arch: Architecture, setup: Setup, gpu_memory_gib: float, like: Example) -> int:
    """The most tokens an example shaped like ``like`` (same shares) may have to fit; 0 when none fits.

    A GRPO row keeps its whole completion (:func:`_grpo_shaped`): a shorter ``--max-length``
    makes train grpo skip stories, never shorten a completion."""
    grpo = setup.objective == "grpo"

    def shaped(tokens: int) -> Example:
        if grpo:
            return _grpo_shaped(like, tokens)
        share = tokens / max(like.tokens, 1)
        return Example(tokens, int(like.image_tokens * share), int(like.answer_tokens * share))

    low = 16 + (like.answer_tokens if grpo else 0)  # a GRPO row: a prompt of 16 tokens at least
    if not estimate(arch, setup, shaped(low)).fits(gpu_memory_gib):
        return 0
    lo, hi = low, 1 << 21
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if estimate(arch, setup, shaped(mid)).fits(gpu_memory_gib):
            lo = mid
        else:
            hi = mid - 1
    return lo


# -- advice --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Suggestion:
    change: str
    flags: str
    total_gib: float
    fits: bool


def suggestions(
    arch: Architecture,
    setup: Setup,
    example: Example,
    gpu_memory_gib: float,
    *,
    max_pixels: int | None = None,
) -> list[Suggestion]:
    """Single changes to ``setup`` (or to the lengths) and what each makes of ``example``; those that fit first.

    Within each group the simplest come first: checkpointing, the loss's positions, the
    attention kernel, LoRA, sharding, a lower rank, then shorter examples or smaller frames.
    """
    candidates: list[tuple[str, str, Setup, Example]] = []

    def add(change: str, flags: str, new: Setup | None = None, ex: Example | None = None) -> None:
        candidates.append((change, flags, new or setup, ex or example))

    if not setup.checkpointing:
        add("turn on gradient checkpointing", "--gradient-checkpointing", replace(setup, checkpointing=True))
    if setup.logits == "all" and setup.objective == "sft":
        add("compute the loss on the answer's positions only (train sft does)", "--logits answer",
            replace(setup, logits="answer"))  # fmt: skip
    if setup.attention == "eager":
        add("use SDPA or FlashAttention-2 instead of eager attention", "--attn-implementation sdpa",
            replace(setup, attention="sdpa"))  # fmt: skip
    if setup.mode != "lora":
        add("train LoRA adapters instead", "--mode lora", replace(setup, mode="lora"))
        if setup.sharding == "none":
            for gpus in (2, 4, 8):
                new = replace(setup, sharding="fsdp", gpus=gpus)
                if estimate(arch, new, example).fits(gpu_memory_gib) or gpus == 8:
                    add(f"shard parameters, gradients and optimizer states over {gpus} GPUs with FSDP",
                        f"--sharding fsdp --gpus {gpus}", new)  # fmt: skip
                    break
            add(f"ZeRO-3 with optimizer states and parameters in CPU memory on {setup.gpus} GPU(s)",
                f"--sharding zero3 --offload --gpus {setup.gpus}",
                replace(setup, sharding="zero3", offload=True))  # fmt: skip
    elif setup.rank > 64:
        for rank in (1024, 512, 256, 128, 64):
            if rank < setup.rank:
                new = replace(setup, rank=rank)
                if estimate(arch, new, example).fits(gpu_memory_gib) or rank == 64:
                    add(f"a lower LoRA rank ({rank})", f"--rank {rank}", new)
                    break
    fitting = longest_length(arch, setup, gpu_memory_gib, example)
    if 0 < fitting < example.tokens:
        if setup.objective == "grpo":  # train grpo skips a story that does not fit, never shortening one
            add(f"shorter rows: at most {fitting} tokens (longer stories are skipped)", f"--max-length {fitting}",
                ex=_grpo_shaped(example, fitting))  # fmt: skip
        else:
            add(f"shorter examples: at most {fitting} tokens (longer stories lose trailing frames)",
                f"--max-length {fitting}", ex=_shaped(example, fitting))  # fmt: skip
        images = _fitting_images(arch, setup, example, gpu_memory_gib)
        if 0 < images < example.image_tokens:
            share = images / example.image_tokens
            pixels = max_pixels or 28 * 28 * 1280
            lower = max(28 * 28 * 4, int(pixels * share) // (28 * 28) * (28 * 28))
            ex = replace(example, tokens=example.tokens - example.image_tokens + images, image_tokens=images)
            add(f"smaller frames: {lower // (28 * 28)} image tokens at most per frame", f"--max-pixels {lower}",
                ex=ex)  # fmt: skip
    out = []
    for change, flags, new, ex in candidates:
        est = estimate(arch, new, ex)
        out.append(Suggestion(change, flags, round(est.total / GiB, 2), est.fits(gpu_memory_gib)))
    return sorted(out, key=lambda s: not s.fits)  # the simplest changes first, as listed above


def _fitting_images(arch: Architecture, setup: Setup, example: Example, gpu_memory_gib: float) -> int:
    """The most image tokens ``example`` may keep (its text unchanged) to fit; 0 when even none fit."""

    def fits(images: int) -> bool:
        ex = replace(example, tokens=example.tokens - example.image_tokens + images, image_tokens=images)
        return estimate(arch, setup, ex).fits(gpu_memory_gib)

    if not fits(0):
        return 0
    lo, hi = 0, example.image_tokens
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def _shaped(example: Example, tokens: int) -> Example:
    share = tokens / max(example.tokens, 1)
    return replace(example, tokens=tokens, image_tokens=int(example.image_tokens * share),
                   answer_tokens=int(example.answer_tokens * share))  # fmt: skip


def _grpo_shaped(row: Example, tokens: int) -> Example:
    """A GRPO row of ``tokens`` tokens shaped like ``row``: its whole completion, and a prompt of the rest
    with its frames' share kept."""
    prompt = row.tokens - row.answer_tokens
    images = int(row.image_tokens * (tokens - row.answer_tokens) / max(prompt, 1))
    return replace(row, tokens=tokens, image_tokens=images)


# -- the stories ---------------------------------------------------------------------------------


def count_examples(settings: PlanSettings, progress=None) -> tuple[list[Example], dict]:
    """The datasets' stories as training fits and counts them: ``(examples, fit summary)``.

    Each story is fitted to ``max_length`` by dropping trailing frames (as train sft does)
    and counted with the processor's chat template, tokenizer and pixel budget; stories
    that do not fit even with one frame are left out and listed. Several datasets (train
    grpo's) are counted one after the other as one dataset of them all, each example
    naming its own, and the summary gives each one's ``stories`` and ``kept`` under ``datasets``.

    For ``--objective grpo`` each story is counted as train grpo prompts with it, by its own
    rule (:func:`storyreasoning.train.grpo.story_prompt`): the prompt with every frame and no
    answer (:func:`make_plan` adds the completion); a story whose prompt and
    ``--max-completion-length`` exceed ``max_length`` is left out and listed, never shortened.
    The summary is then what train grpo's ``fit.json`` says before ``--mix``.
    """
    grpo = settings.objective == "grpo"
    if grpo and settings.max_images:
        raise UsageError(
            "--max-images is train sft's: train grpo prompts with every frame of a story; drop it with "
            "--objective grpo"
        )
    from ..data.budget import TokenBudget
    from ..data.messages import MessageOptions
    from ..data.sources import limited, load_stories
    from ..models import import_torch, set_pixel_budget

    _, transformers = import_torch()
    name = settings.processor or settings.model
    try:
        processor = transformers.AutoProcessor.from_pretrained(name, revision=settings.revision)
        processor.image_processor  # noqa: B018  (a tokenizer alone cannot count images)
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise StoryReasoningError(
            f"cannot load a processor from {name!r} ({first}); counting a dataset's tokens needs the model's "
            "processor: pass --processor with a folder or hub id that has one (or plan one --max-length)"
        ) from None
    set_pixel_budget(processor, settings.min_pixels, settings.max_pixels)
    budget = TokenBudget(processor, min_pixels=settings.min_pixels, max_pixels=settings.max_pixels)
    options = MessageOptions(max_images=settings.max_images, min_pixels=settings.min_pixels,
                             max_pixels=settings.max_pixels, order=settings.order, seed=settings.seed)  # fmt: skip
    datasets = {}  # every dataset opened before any is counted: a wrong one is said at once
    for source in settings.source:
        stories = datasets[source] = limited(load_stories(source, settings.split), settings.limit)
        if len(stories) == 0:
            where = f" in split {settings.split}" if settings.split else ""
            raise UsageError(f"{source} has no stories{where}")
    examples: list[Example] = []
    stories = sum(map(len, datasets.values()))
    if grpo:  # train grpo's fit.json
        summary: dict[str, Any] = {"stories": stories, "kept": 0, "too_long": [], "max_prompt_tokens": 0,
                                   "max_length": settings.max_length,
                                   "max_completion_length": settings.max_completion_length}  # fmt: skip
    else:
        summary = {"stories": stories, "kept": 0, "shortened": 0, "frames_dropped": 0, "too_long": [],
                   "max_length": settings.max_length}  # fmt: skip
    several = len(datasets) > 1
    if several:
        summary["datasets"] = {}
    prompts: dict[str, str] = {}
    for source, stories in datasets.items():
        before = len(examples)
        label = f"counting the tokens of {source}" if several else "counting tokens"
        with (progress or no_progress)(len(stories), label) as advance:
            for sample in stories:
                if grpo:
                    _count_prompt(sample, budget, settings, examples, summary, source)
                else:
                    _count(sample, budget, processor, options, settings.max_length, examples, summary, prompts,
                           source)  # fmt: skip
                advance(1)
        if several:
            summary["datasets"][source] = {"stories": len(stories), "kept": len(examples) - before}
    summary["kept"] = len(examples)
    return examples, summary


def _count(
    sample, budget, processor, options, max_length, examples: list, summary: dict, prompts: dict, dataset: str
) -> None:
    from ..data.messages import prepare

    # the prompt of its position among the kept stories (of every dataset, one after the other), as training's
    index = len(examples)
    if max_length:
        fit = budget.fit(sample, max_length, index, options)
        if fit.sample is None:
            summary["too_long"].append(sample.story_id)
            return
        story, count = fit.sample, fit.count  # the fit counted its story: not rendered nor tokenised again
    else:
        story = prepare(sample, options)
        count = budget.count(story, index, options, prepared=True)
    # the learned tokens: the assistant turn and its end-of-turn token, tokenised on their own as the
    # collator finds them (the template's newline after the end of turn is not learned). The prompt (the
    # conversation before the answer, with the generation prompt) is one of a few: the system prompt, the
    # frames' placeholders and one of the training prompts; each is rendered once per run.
    before = count.messages[:-1]
    key = repr(before)
    prompt = prompts.get(key)
    if prompt is None:
        prompt = prompts[key] = processor.apply_chat_template(
            before, tokenize=False, add_generation_prompt=True
        )
    text = count.chat
    tail = text[len(prompt) :].rstrip() if text.startswith(prompt) else story.output_text()
    answer = len(budget.tokenizer(tail, add_special_tokens=False)["input_ids"])
    examples.append(Example(
        tokens=count.total, image_tokens=count.image_tokens, answer_tokens=answer,
        id=sample.story_id, frames=story.frame_count, frames_before=sample.frame_count, dataset=dataset,
    ))  # fmt: skip
    if story.frame_count < sample.frame_count:
        summary["shortened"] += 1
        summary["frames_dropped"] += sample.frame_count - story.frame_count


def _count_prompt(
    sample, budget, settings: PlanSettings, examples: list, summary: dict, dataset: str
) -> None:
    """A story as train grpo prompts with it: its prompt's lengths, or its id in ``too_long`` when train
    grpo leaves it out (the same function decides)."""
    from .grpo import story_prompt

    told = story_prompt(settings, budget, sample, count=True)
    if not told.kept:
        summary["too_long"].append(sample.story_id)
        return
    summary["max_prompt_tokens"] = max(summary["max_prompt_tokens"], told.tokens)
    examples.append(Example(
        tokens=told.tokens, image_tokens=told.image_tokens, answer_tokens=0, id=sample.story_id,
        frames=sample.frame_count, frames_before=sample.frame_count, dataset=dataset,
    ))  # fmt: skip


# -- the report -----------------------------------------------------------------------------------


def setup_of(settings: PlanSettings) -> Setup:
    return Setup(
        mode=settings.mode, rank=settings.rank, targets=tuple(settings.targets), dropout=settings.dropout,
        checkpointing=settings.gradient_checkpointing, dtype=settings.dtype,
        attention=settings.attn_implementation, objective=settings.objective, logits=settings.logits,
        batch_size=settings.batch_size, gpus=settings.gpus, sharding=settings.sharding, offload=settings.offload,
        overhead_gib=settings.overhead, generations=settings.num_generations, reference=settings.beta > 0,
    )  # fmt: skip


@dataclass
class Plan:
    """The answer of train plan: every example's peak, the worst one's terms, and what to change."""

    model: str
    setup: Setup
    gpu_memory_gib: float
    architecture: Architecture
    examples: list[Example]
    estimates: list[Estimate]
    fit: dict | None = None
    advice: list[Suggestion] = field(default_factory=list)
    longest: int = 0

    @property
    def fits(self) -> bool:
        return bool(self.examples) and all(e.fits(self.gpu_memory_gib) for e in self.estimates)

    @property
    def worst(self) -> int:
        return max(range(len(self.estimates)), key=lambda i: self.estimates[i].total)

    @property
    def datasets(self) -> dict[str, dict]:
        """Each dataset's ``stories`` and ``kept`` when several were counted (train grpo's); else empty."""
        return (self.fit or {}).get("datasets", {})

    def _architecture(self) -> dict:
        arch, setup = self.architecture, self.setup
        lora = setup.mode == "lora"
        return {
            "parameters": arch.parameters,
            "vision_parameters": arch.vision_parameters,
            "layers": arch.layers,
            "hidden": arch.hidden,
            "intermediate": arch.intermediate,
            "heads": arch.heads,
            "kv_heads": arch.kv_heads,
            "vocab": arch.vocab,
            "lora_parameters": arch.lora_parameters(setup.rank, setup.targets) if lora else 0,
            "layer_kib_per_token": round(layer_bytes(arch, setup, trained=not lora) / 1024, 2),
        }

    def to_dict(self) -> dict:
        worst = self.estimates[self.worst]
        return {
            "model": self.model,
            "setup": {**asdict(self.setup), "targets": list(self.setup.targets), "label": self.setup.label},
            "gpu_memory_gib": self.gpu_memory_gib,
            "fits": self.fits,
            "fitting": sum(e.fits(self.gpu_memory_gib) for e in self.estimates),
            "examples_count": len(self.examples),
            "longest_fitting_length": self.longest,
            "architecture": self._architecture(),
            "worst": {
                **self._example_dict(self.examples[self.worst], worst),
                "terms_gib": {k: round(v, 3) for k, v in worst.breakdown().items()},
                "transients_gib": {k: round(v / GiB, 3) for k, v in worst.transients.items()},
                "host_gib": round(worst.host / GiB, 2),
            },
            "examples": [
                self._example_dict(x, est) for x, est in zip(self.examples, self.estimates, strict=True)
            ],
            "fit": self.fit,
            "suggestions": [asdict(s) for s in self.advice],
        }

    def _example_dict(self, example: Example, est: Estimate) -> dict:
        return {
            "id": example.id, **({"dataset": example.dataset} if self.datasets else {}),
            "frames": example.frames, "frames_before": example.frames_before, "tokens": example.tokens,
            "image_tokens": example.image_tokens, "answer_tokens": example.answer_tokens,
            "allocated_gib": round(est.allocated / GiB, 2), "total_gib": round(est.total / GiB, 2),
            "fits": est.fits(self.gpu_memory_gib),
        }  # fmt: skip


def make_plan(settings: PlanSettings, arch: Architecture | None = None, progress=None) -> Plan:
    """The :class:`Plan` for ``settings`` (``arch`` skips reading the model's config again)."""
    setup = setup_of(settings)
    arch = arch or architecture(settings.model, settings.revision)
    if setup.mode == "lora" and not arch.lora_matrices(setup.targets):
        names = sorted({m[0].rsplit(".", 1)[-1] for m in arch.layer_matrices})
        raise UsageError(
            f"--target {' '.join(setup.targets)} names no linear layer of {settings.model}'s decoder layers, so "
            f"LoRA would adapt nothing; use some of {', '.join(names)}"
        )
    fit = None
    if settings.source:
        examples, fit = count_examples(settings, progress)
        if not examples and settings.objective == "grpo":
            raise UsageError(
                f"no story of {' or '.join(settings.source)} leaves room for {settings.max_completion_length} "
                f"completion tokens in {settings.max_length} tokens; raise --max-length or lower "
                "--max-completion-length"
            )
        if not examples:
            raise UsageError(
                f"no story of {' or '.join(settings.source)} fits in {settings.max_length} tokens, even with "
                "one frame; raise --max-length or lower --max-pixels"
            )
    else:
        if not settings.max_length:
            raise UsageError("give a dataset, or --max-length N to plan for one length")
        examples = [Example.of_length(settings.max_length, image_tokens=settings.image_tokens,
                                      answer_tokens=settings.answer_tokens)]  # fmt: skip
    if settings.objective == "grpo":  # each story's prompt with a completion instead of its reference answer
        examples = [grpo_example(x, settings.max_completion_length) for x in examples]
    estimates = [estimate(arch, setup, x) for x in examples]
    plan = Plan(settings.model, setup, settings.gpu_memory, arch, examples, estimates, fit)
    worst = examples[plan.worst]
    plan.longest = longest_length(arch, setup, settings.gpu_memory, worst)
    if not plan.fits:
        plan.advice = suggestions(arch, setup, worst, settings.gpu_memory, max_pixels=settings.max_pixels)
    return plan


def grpo_example(example: Example, completion: int) -> Example:
    """A GRPO row of ``example``'s story: its prompt (text and frames) and a completion of ``completion`` tokens.

    A story counted for GRPO (:func:`count_examples`) is its prompt alone (no answer); one ``--max-length``
    without a dataset loses its share of answer tokens."""
    prompt = example.tokens - example.answer_tokens
    return replace(example, tokens=prompt + completion, answer_tokens=completion)


# -- a training recipe as the plan's config ---------------------------------------------------------


#: The training jobs whose recipes ``train plan --config`` reads, by the objective each trains with.
TRAINERS = {"sft": SFTSettings, "dpo": DPOSettings, "grpo": GRPOSettings}


def _recipe_fields() -> tuple[list[tuple[str, Any, Any]], tuple[str, ...], tuple[str, ...]]:
    """The fields :class:`RecipePlanSettings` adds to or changes in :class:`PlanSettings`: the fields,
    the names of the jobs' own settings (read from a recipe, not used), and the names of the plan's
    settings whose default is the recipe's job's when that job's differs (LoRA rank 2048 for train dpo)."""
    plan = {f.name: f for f in settings_fields(PlanSettings)}
    objective, dtype = plan["objective"].spec, plan["dtype"].spec
    fields: dict[str, tuple[str, Any, Any]] = {
        "objective": ("objective", Literal["sft", "dpo", "grpo"] | None, option(
            None, panel=objective.panel, help=f"{objective.help} Default: the job of the recipe --config gives, else sft.",
        )),
        # a recipe's auto is bfloat16 on a GPU that has it, and a plan is for such a GPU
        "dtype": ("dtype", Literal["auto", "bfloat16", "float16", "float32"], option(
            "bfloat16", panel=dtype.panel, help=f"{dtype.help} auto: bfloat16, as training on a GPU that has it.",
        )),
    }  # fmt: skip
    own: list[str] = []
    for cls in TRAINERS.values():
        for f in settings_fields(cls):
            if f.name in fields or f.name == "out" or f.spec.secret:  # a recipe names no folder to train in
                continue
            mine = plan.get(f.name)
            if mine is None:  # a job's own setting (lr, epochs, mix): read as the job reads it, not used
                own.append(f.name)
                kind = f.type if f.optional else f.type | None  # None: not given
                fields[f.name] = (f.name, kind, option(None, *f.spec.flags, help=f.spec.help, min=f.spec.min,
                                                       max=f.spec.max, cli=False))  # fmt: skip
            elif (
                f.name != "beta"
                and not (f.required or mine.optional or f.default == mine.default)
                and _holds(mine, f.default)
            ):  # train dpo's beta is its loss's temperature, not the KL coefficient of GRPO the plan takes
                differ: dict[str, list[str]] = {}
                for job, other in TRAINERS.items():
                    for d in settings_fields(other):
                        if d.name == f.name and d.default != mine.default:
                            differ.setdefault(_listed(d.default), []).append(job)
                jobs = "; ".join(f"train {' and '.join(names)}: {value}" for value, names in differ.items())
                fields[f.name] = (f.name, mine.type | None, option(
                    None, *mine.spec.flags, panel=mine.spec.panel, min=mine.spec.min, max=mine.spec.max,
                    metavar=mine.spec.metavar, place=mine.spec.place,
                    help=f"{mine.spec.help} Default: {_listed(mine.default)}, or the default of the job whose "
                    f"recipe --config gives ({jobs}).",
                ))  # fmt: skip
    changed = tuple(name for name in fields if name in plan and name not in ("objective", "dtype"))
    return list(fields.values()), tuple(own), changed


def _holds(field, value) -> bool:
    try:
        convert(field, value)
    except UsageError:
        return False
    return True


def _listed(value: Any) -> str:
    """A default as help text shows it: a list as its items."""
    return ", ".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def recipe_settings(settings: PlanSettings) -> list[str]:
    """The settings of a training job that a recipe gave ``settings`` and the plan does not use."""
    return [name for name in JOB_SETTINGS if getattr(settings, name, None) is not None]


def recipe_note(settings: PlanSettings) -> str | None:
    """The line train plan says of a recipe's settings it does not use (None when it was given none)."""
    # train grpo's datasets are the plan's datasets when the command line gives none: used
    unused = [name for name in recipe_settings(settings) if name != "sources"]
    if not unused:
        return None
    jobs = recipe_jobs(settings)
    which = " or ".join(filter(None, [", ".join(jobs[:-1]), jobs[-1]]))
    return f"from the recipe (train {which}): {', '.join(unused)} {'is' if len(unused) == 1 else 'are'} not used by the plan"


def recipe_jobs(settings: PlanSettings) -> list[str]:
    """The training jobs (sft, dpo, grpo) whose recipe ``settings`` were read from: those that have every
    one of its own settings (all three for a file without any)."""
    given = set(recipe_settings(settings))
    return [job for job, cls in TRAINERS.items() if given <= {f.name for f in settings_fields(cls)}]


def _post_init(self) -> None:
    given, jobs = recipe_settings(self), recipe_jobs(self)
    if given and not jobs:
        raise UsageError(
            f"{', '.join(given)} are not the settings of one training job; give the plan one recipe of train sft, "
            "dpo or grpo"
        )
    job = TRAINERS[jobs[0]] if len(jobs) == 1 else PlanSettings
    for name in CHANGED_DEFAULTS:  # not given: as the recipe's job (else the plan) has it
        if getattr(self, name) is None:
            default = next((f.default for f in settings_fields(job) if f.name == name), None)
            plan = next(f for f in settings_fields(PlanSettings) if f.name == name)
            object.__setattr__(self, name, default if default is not None else plan.default)
    if self.objective is None:
        object.__setattr__(self, "objective", jobs[0] if len(jobs) == 1 else "sft")
    if not self.source and self.sources:  # a train grpo recipe's datasets, when the command line gives none
        object.__setattr__(self, "source", self.sources)
    if self.dtype == "auto":
        object.__setattr__(self, "dtype", "bfloat16")
    PlanSettings.__post_init__(self)


_FIELDS, JOB_SETTINGS, CHANGED_DEFAULTS = _recipe_fields()

#: :class:`PlanSettings` that read a recipe of train sft, dpo or grpo as their ``--config`` (the
#: settings of ``storyreasoning train plan``): the plan's own settings from it, the objective from the
#: job it belongs to (:func:`recipe_jobs`), the job's defaults where the plan's differ (its LoRA rank,
#: dropout, batch size), train grpo's ``sources`` as the datasets when none is given, and the job's own
#: settings (lr, epochs, mix, …) read as the job reads them and left unused (:func:`recipe_settings`). A
#: recipe never names an output folder; a file that does (a training's settings.json) is refused, naming
#: the command whose settings it holds.
RecipePlanSettings = make_dataclass(
    "RecipePlanSettings", _FIELDS, bases=(PlanSettings,), frozen=True, kw_only=True,
    namespace={"__post_init__": _post_init, "__module__": __name__, "__doc__": PlanSettings.__doc__},
)  # fmt: skip


def run(settings: PlanSettings) -> int:
    """The train plan command: print the table (or ``--json``); exit 0 when every example fits, 1 otherwise."""
    import json

    from rich.console import Console
    from rich.markup import escape

    from ..terminal import progress_bar

    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)

    note = recipe_note(settings)
    if note:
        err.print(f"[dim]{escape(note)}[/dim]", soft_wrap=True)
    plan = make_plan(settings, progress=progress_bar)
    if settings.json:
        text = json.dumps(plan.to_dict(), indent=2, ensure_ascii=False)
        if out.is_terminal:
            out.print_json(text, indent=2)  # coloured
        else:  # what print_json writes uncoloured, without its highlighter (4.5 s for 5,000 stories)
            out.file.write(text + "\n")
        return 0 if plan.fits else 1
    _print(plan, settings, out)
    skipped = len(plan.fit["too_long"]) if plan.fit else 0
    if skipped and settings.objective == "grpo":
        err.print(f"{skipped} {'story leaves' if skipped == 1 else 'stories leave'} no room for "
                  f"{settings.max_completion_length} completion tokens in {settings.max_length}; train grpo skips "
                  f"{'it' if skipped == 1 else 'them'}", soft_wrap=True)  # fmt: skip
    elif skipped:
        err.print(f"{len(plan.fit['too_long'])} stories do not fit in {settings.max_length} tokens even with one "
                  "frame; training skips them")  # fmt: skip
    return 0 if plan.fits else 1


def _print(plan: Plan, settings: PlanSettings, out) -> None:
    from rich.markup import escape
    from rich.table import Table

    arch, setup, gpu = plan.architecture, plan.setup, plan.gpu_memory_gib
    worst_i = plan.worst
    worst, worst_est = plan.examples[worst_i], plan.estimates[worst_i]
    head = (
        f"{plan.model}: {arch.parameters / 1e9:.2f} B parameters ({arch.vision_parameters / 1e9:.2f} B vision), "
        f"{arch.layers} layers; {setup.label}; {gpu:g} GiB per GPU"
    )
    out.print(head, markup=False)
    several = bool(plan.datasets)
    if several:
        each = "; ".join(f"{name}: {_stories(d['stories'], d['kept'])}" for name, d in plan.datasets.items())
        mixed = [m for m in getattr(settings, "mix", None) or () if m.strip().lower() != "none"]  # a recipe's
        mix = " (--mix picks which of them train: every one is planned)" if mixed else ""
        out.print(f"Datasets: {each}{mix}", soft_wrap=True, markup=False)
    described = _describe(worst, several)
    which = f"the heaviest story, {described}" if len(plan.examples) > 1 else described
    out.print(f"Peak memory per GPU, {which}:", markup=False)  # story ids and names as they are
    terms = Table(show_edge=False)
    terms.add_column("term")
    terms.add_column("GiB", justify="right")
    for name, value in worst_est.breakdown().items():
        if value or name == "CUDA overhead":
            terms.add_row(name, f"{value:.2f}")
    terms.add_row("[bold]total[/bold]", f"[bold]{worst_est.total / GiB:.2f}[/bold]")
    out.print(terms)
    if len(plan.examples) > 1:
        table = Table(title="Stories, heaviest first", title_justify="left", show_edge=False)
        left = ("story", "dataset") if several else ("story",)
        for column in (*left, "frames", "tokens", "image", "answer", "GiB", "fits"):
            table.add_column(column, justify="left" if column in left else "right")
        order = sorted(range(len(plan.examples)), key=lambda i: -plan.estimates[i].total)
        shown = order if settings.show == 0 else order[: settings.show]
        for i in shown:
            x, est = plan.examples[i], plan.estimates[i]
            frames = f"{x.frames}" + (
                f"/{x.frames_before}" if x.frames_before and x.frames_before != x.frames else ""
            )
            ids = (escape(x.id or ""), escape(x.dataset or "")) if several else (escape(x.id or ""),)
            table.add_row(*ids, frames, f"{x.tokens:,}", f"{x.image_tokens:,}", f"{x.answer_tokens:,}",
                          f"{est.total / GiB:.1f}", "yes" if est.fits(gpu) else "[red]no[/red]")  # fmt: skip
        out.print(table)
        if len(shown) < len(order):
            out.print(
                f"[dim]{len(order) - len(shown)} more stories (--show 0 lists all, --json gives all)[/dim]"
            )
    fitting = sum(e.fits(gpu) for e in plan.estimates)
    verdict = "fits" if plan.fits else "does not fit"
    out.print(
        f"[bold]{verdict}[/bold]: {fitting} of {len(plan.examples)} "
        f"{'stories' if len(plan.examples) > 1 else 'example'} fit {gpu:g} GiB; "
        + (f"the longest example that fits has {plan.longest:,} tokens" if plan.longest
           else "no length fits with these settings")
    )  # fmt: skip
    if plan.advice:
        out.print("What would make the heaviest fit:")
        for s in plan.advice:
            mark = "fits" if s.fits else "still too big"
            out.print(f"  {s.flags:<42} {s.change}: {s.total_gib:.1f} GiB ({mark})")


def _describe(x: Example, dataset: bool = False) -> str:
    """An example's lengths after its story's id (and its dataset's name, with ``dataset``)."""
    lengths = f"{x.tokens:,} tokens ({x.image_tokens:,} image, {x.answer_tokens:,} answer)"
    if not x.id:
        return f"an example of {lengths}"
    return f"{x.id} ({x.dataset}): {lengths}" if dataset else f"{x.id}: {lengths}"


def _stories(count: int, kept: int) -> str:
    """A dataset's stories, and how many are too long even with one frame when some are."""
    stories = f"{count} {'story' if count == 1 else 'stories'}"
    return stories if kept == count else f"{stories}, {count - kept} too long"


__all__ = [
    "ANSWER_SHARE",
    "IMAGE_SHARE",
    "TRAINERS",
    "Architecture",
    "Estimate",
    "Example",
    "Plan",
    "RecipePlanSettings",
    "Setup",
    "Suggestion",
    "VisionTower",
    "architecture",
    "architecture_of",
    "count_examples",
    "estimate",
    "grpo_example",
    "layer_bytes",
    "longest_length",
    "make_plan",
    "recipe_jobs",
    "recipe_note",
    "recipe_settings",
    "run",
    "setup_of",
    "suggestions",
    "vision_block_bytes",
]
