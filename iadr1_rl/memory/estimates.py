"""Each actor's expected peak memory, from the model's `config.json` alone.

The model is instantiated on torch's meta device (no memory, no weights) to count its
parameters exactly; its sizes (hidden, layers, heads, vocabulary, vision tower) and the
run's workload (dtype, token budgets, sequence lengths, gradient checkpointing, the
rollout batch) give each part of an actor's peak:

- weights, and for the policy its gradients, AdamW's two moments and, for a 16-bit policy,
  the float32 master weights its optimizer steps (`train/precision.py`; ZeRO shards them
  over the ranks); torch's fused AdamW makes no full-size temporaries at the step;
- activations kept for the backward pass: per token and decoder layer, what autograd saves
  in a pre-norm transformer layer (the norms' float32 copies, q/k/v and their rotated
  copies, attention in and out, the gated MLP's four intermediate tensors); with gradient
  checkpointing only each layer's input, plus one layer recomputed; the vision tower per
  image patch likewise;
- one chunk of float32 logits of the selective log-softmax (`logprobs.py`), forward and
  backward, and the LM head's gradient each chunk's backward makes;
- for forward-only passes, one layer's temporaries; for HF `generate`, the KV cache of
  the whole rollout batch and the sampler's per-step vocabulary tensors.

A GPU actor's plan is of reserved memory: the caching allocator's reserve is added
(`with_allocator_reserve`). What is not counted: the process itself (interpreter, torch,
the model's code: ~0.5 GiB on CPU, the CUDA context on a GPU); the check leaves headroom
for it. A CPU actor adds `CPU_RUNTIME` for its math library's workspaces.
How close the estimates came to measured peaks is in docs/training.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..train.logprobs import CHUNK_VALUES

GIB = 2**30
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# What a CPU actor's first passes add beyond its tensors: the math library's workspaces and
# the allocator's per-thread arenas (measured on this project's machines: ~0.08 GiB, the
# same at the tiny shape and with a 151,936-token vocabulary). On a GPU these are host
# memory, not the device's.
CPU_RUNTIME = 0.08 * GIB
# What torch's caching allocator reserves beyond what a GPU actor has allocated at its peak,
# as a share of what it allocates and frees within a step (activations, logits, gradients
# in flight, KV caches: blocks of varying sizes, freed ones kept and split). Its long-lived
# tensors (weights, master weights, moments) are allocated once in blocks of their own.
# Not measured on a GPU by this project yet: docs/training.md has the benchmark that prints
# the plan beside `torch.cuda.max_memory_reserved`.
ALLOCATOR_RESERVE = 0.25
TRANSIENT_PARTS = ("activations", "logits", "head_gradient", "kv_cache")


@dataclass(frozen=True)
class ModelShape:
    """What the estimates need to know of a model."""

    parameters: int
    vision_parameters: int
    hidden: int
    layers: int
    intermediate: int
    kv_dim: int  # key/value heads × head dim
    vocab: int
    vision_hidden: int
    vision_layers: int
    vision_intermediate: int
    patches_per_token: int  # image patches the vision tower sees per image token of the LM

    @classmethod
    def from_config(cls, config) -> ModelShape:
        """Count the parameters on the meta device; read the sizes from the config."""
        import torch
        from transformers import AutoModelForImageTextToText

        with torch.device("meta"):
            model = AutoModelForImageTextToText.from_config(config)
        parameters = sum(p.numel() for p in model.parameters())
        vision = sum(p.numel() for name, p in model.named_parameters() if _is_vision(name))
        text = config.get_text_config()
        heads = text.num_attention_heads
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
        kv_heads = getattr(text, "num_key_value_heads", None) or heads
        v = config.vision_config
        vision_hidden = getattr(v, "embed_dim", None) or v.hidden_size
        vision_intermediate = getattr(v, "intermediate_size", None) or vision_hidden * getattr(v, "mlp_ratio", 4)
        merge = getattr(v, "spatial_merge_size", 1)
        return cls(
            parameters=parameters,
            vision_parameters=vision,
            hidden=text.hidden_size,
            layers=text.num_hidden_layers,
            intermediate=text.intermediate_size,
            kv_dim=kv_heads * head_dim,
            vocab=text.vocab_size,
            vision_hidden=vision_hidden,
            vision_layers=getattr(v, "depth", None) or v.num_hidden_layers,
            vision_intermediate=vision_intermediate,
            patches_per_token=merge * merge,
        )


def _is_vision(name: str) -> bool:
    return any(part in name for part in ("visual", "vision_tower", "multi_modal_projector"))


@dataclass(frozen=True)
class Workload:
    """What one actor processes, as the run's settings bound it."""

    dtype: str
    sequence: int  # prompt + response tokens of one sample (an upper bound)
    image_tokens: int  # the LM's image tokens in one sample's prompt
    response: int  # response tokens of one sample (an upper bound)
    samples: int  # samples one update or pass covers
    tokens_per_forward: int  # the token budget of one forward
    gradient_checkpointing: bool = False

    @property
    def bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def samples_per_forward(self) -> int:
        return max(1, min(self.samples, self.tokens_per_forward // max(1, self.sequence)))


@dataclass
class ActorEstimate:
    """One actor's expected peak, part by part (bytes)."""

    name: str
    parts: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    def describe(self) -> str:
        parts = ", ".join(f"{key} {value / GIB:.2f}" for key, value in self.parts.items() if value >= 0.005 * GIB)
        return f"{self.name}: {self.total / GIB:.2f} GiB ({parts})"


def _text_layer_saved(shape: ModelShape, b: int) -> float:
    """Bytes autograd keeps per token in one decoder layer (no checkpointing): each RMSNorm's
    float32 input and normed output, q/k/v in, q and k with their rotated halves and rotated
    results, attention's q/k/v/out (k and v repeated to every head), o_proj's input, and
    the gated MLP's input, gate, up, activation and product."""
    h, kv, i = shape.hidden, shape.kv_dim, shape.intermediate
    norms = 2 * (4 * h + b * h)
    attention = b * (h + 3 * h + 3 * kv + 4 * h + h)
    mlp = b * (h + 4 * i)
    return norms + attention + mlp


def _vision_layer_saved(shape: ModelShape, b: int) -> float:
    """Bytes autograd keeps per patch in one vision block: two norms' inputs, qkv, the
    rotary float32 copies of q and k, attention in and out, the projection's input and the
    MLP's input, hidden activation (twice) and output."""
    e, m = shape.vision_hidden, shape.vision_intermediate
    return b * (2 * e + 3 * e + 4 * e + e + e) + 4 * 4 * e + b * 3 * m


def _forward_transient(shape: ModelShape, tokens: int, patches: int, b: int) -> float:
    """The temporaries of one layer's forward without autograd (the largest live at once)."""
    text = tokens * (b * (3 * shape.intermediate + 4 * shape.hidden) + 8 * shape.hidden)
    vision = patches * (b * (shape.vision_intermediate + 6 * shape.vision_hidden) + 8 * shape.vision_hidden)
    return max(text, vision)


def _chunk_rows(shape: ModelShape, rows: int) -> int:
    return max(1, min(rows, CHUNK_VALUES // shape.vocab))


def _chunk_bytes_per_value(b: int, backward: bool) -> int:
    """One chunk's bytes per logit: the head's output, its float32 copy (below float32), the
    logsumexp's exp; backward adds the recomputed chunk's gradient and softmax."""
    forward = b + (4 if b < 4 else 0) + 4
    return forward + 8 if backward else forward


def policy_estimate(
    shape: ModelShape,
    work: Workload,
    shards: dict[str, int] | None = None,
    precision: str = "master",
    ddp: bool = False,
) -> ActorEstimate:
    """The training actor: weights, gradients, AdamW's state, the activations of one
    micro-batch, and one chunk of logits forward and backward with the LM head's gradient.

    `precision` says where the float32 copy lives: "master" (our policy, `train/precision.py`:
    16-bit weights, float32 master weights, gradients and moments beside them; under DDP the
    16-bit gradients too, which DDP reduces before they are folded in), "deepspeed" (16-bit
    weights and float32 gradients, master copy and moments in the optimizer, each divided
    by its ZeRO shards `{"weights", "gradients", "optimizer"}`; optimizer 0 when offloaded),
    or "none" (everything in the weights' dtype). AdamW is torch's fused one: its step
    allocates no full-size temporaries, and clipping scales the gradients in place."""
    shards = shards or {}
    b = work.bytes
    rows = work.samples_per_forward
    tokens = rows * work.sequence
    patches = rows * work.image_tokens * shape.patches_per_token
    p = shape.parameters
    master = 0.0
    if b == 4 or precision == "none":  # one dtype for everything
        weights, gradients, optimizer = p * b, p * b, 2 * p * b
    elif precision == "master":
        weights, gradients, optimizer, master = p * b, p * 4 + (p * b if ddp else 0), 2 * p * 4, p * 4
    else:  # deepspeed
        weights, gradients, optimizer = p * b, p * 4, 3 * p * 4
    estimate = ActorEstimate("policy")
    estimate.parts["weights"] = weights / shards.get("weights", 1)
    if master:
        estimate.parts["master_weights"] = master
    estimate.parts["gradients"] = gradients / shards.get("gradients", 1)
    optimizer_shards = shards.get("optimizer", 1)
    estimate.parts["optimizer"] = 0.0 if optimizer_shards == 0 else optimizer / optimizer_shards
    text_layer = tokens * _text_layer_saved(shape, b)
    vision_layer = patches * _vision_layer_saved(shape, b)
    if work.gradient_checkpointing:  # each layer's input kept, one layer at a time recomputed
        kept = tokens * shape.hidden * b * shape.layers + patches * shape.vision_hidden * b * shape.vision_layers
        activations = kept + 2 * max(text_layer, vision_layer)
    else:
        activations = text_layer * shape.layers + vision_layer * shape.vision_layers
    estimate.parts["activations"] = activations + tokens * shape.hidden * b * 3  # embeddings, final hidden
    chunk = _chunk_rows(shape, rows * work.response)
    # Each chunk's backward makes a whole LM-head gradient before it is added into `.grad`.
    estimate.parts["logits"] = chunk * shape.vocab * _chunk_bytes_per_value(b, backward=True)
    estimate.parts["head_gradient"] = shape.vocab * shape.hidden * b
    return estimate


def with_allocator_reserve(estimate: ActorEstimate) -> ActorEstimate:
    """A GPU actor's estimate as reserved memory: torch's caching allocator holds more than
    it has allocated at the peak (freed blocks kept, split to varying sizes), which the
    device must have: `ALLOCATOR_RESERVE` of the parts allocated and freed within a step."""
    transient = sum(estimate.parts.get(part, 0.0) for part in TRANSIENT_PARTS)
    estimate.parts["allocator_reserve"] = ALLOCATOR_RESERVE * transient
    return estimate


def forward_estimate(shape: ModelShape, work: Workload, name: str = "reference") -> ActorEstimate:
    """A forward-only log-prob pass (the reference; the policy's old log-probs): weights, one
    layer's temporaries, the final hidden states and one chunk of logits."""
    b = work.bytes
    rows = work.samples_per_forward
    tokens = rows * work.sequence
    patches = rows * work.image_tokens * shape.patches_per_token
    estimate = ActorEstimate(name)
    estimate.parts["weights"] = shape.parameters * b
    estimate.parts["activations"] = _forward_transient(shape, tokens, patches, b) + tokens * shape.hidden * b * 3
    rows_in_chunk = _chunk_rows(shape, rows * work.response)
    estimate.parts["logits"] = rows_in_chunk * shape.vocab * _chunk_bytes_per_value(b, backward=False)
    return estimate


def hf_rollout_estimate(shape: ModelShape, work: Workload) -> ActorEstimate:
    """HF `generate` over a rollout batch of `work.samples` sequences: weights, the KV cache
    of every sequence at full length, the prefill's temporaries, and the sampler's per-step
    float32 logits, sort and cumulative sums over the vocabulary."""
    b = work.bytes
    sequences = work.samples
    estimate = ActorEstimate("rollout")
    estimate.parts["weights"] = shape.parameters * b
    estimate.parts["kv_cache"] = 2 * shape.layers * shape.kv_dim * b * sequences * work.sequence
    prompt = work.sequence - work.response
    patches = sequences * work.image_tokens * shape.patches_per_token
    estimate.parts["activations"] = _forward_transient(shape, sequences * prompt, patches, b)
    # The sampler's vocabulary-sized tensors per step: float32 logits, the suppressed
    # tokens' mask, the softmax, the draw's working copies.
    estimate.parts["logits"] = sequences * shape.vocab * (b + 28)
    return estimate


def vllm_rollout_estimate(
    shape: ModelShape, work: Workload, told: dict[str, Any], capacity: float | None
) -> ActorEstimate:
    """A vLLM engine as it is told to size itself (`vllm_sizing.vllm_memory_args`): on a GPU
    without a KV-cache size, the share of the GPU it takes (weights, KV cache, workspace and
    CUDA graphs inside it); otherwise weights, the KV cache it was given, the prefill's
    temporaries and the sampler's vocabulary-sized tensors (on a GPU the share is then only
    the free memory vLLM checks for at start)."""
    estimate = ActorEstimate("rollout")
    if "kv_cache_memory_bytes" not in told and capacity:
        estimate.parts["vllm_share"] = told["gpu_memory_utilization"] * capacity
        return estimate
    b = work.bytes
    sequences = work.samples
    prompt = work.sequence - work.response
    estimate.parts["weights"] = shape.parameters * b
    estimate.parts["kv_cache"] = float(told.get("kv_cache_memory_bytes", 0))
    patches = sequences * work.image_tokens * shape.patches_per_token
    estimate.parts["activations"] = _forward_transient(shape, sequences * prompt, patches, b)
    estimate.parts["logits"] = sequences * shape.vocab * (b + 28)
    return estimate


@dataclass
class DeviceCheck:
    """Actors that share one device, and what it holds (an actor over several GPUs, a
    tensor-parallel engine: what each of them holds)."""

    device: str
    capacity: float  # bytes
    actors: list[ActorEstimate]
    gpus: int = 1  # the GPUs it stands for (0: host memory; more: an actor given several whole GPUs)

    @property
    def needed(self) -> float:
        return sum(a.total for a in self.actors)


@dataclass
class MemoryPlan:
    """Every actor's estimate and the devices they are planned on."""

    source: str  # where the model's config came from
    parameters: int
    actors: list[ActorEstimate]
    devices: list[DeviceCheck]
    headroom: float  # the share of a device the estimates may use

    def lines(self) -> list[str]:
        out = [f"memory plan ({self.parameters / 1e9:.2f} B parameters, from {self.source}):"]
        out += [f"  {actor.describe()}" for actor in self.actors]
        for device in self.devices:
            names = ", ".join(a.name for a in device.actors)
            if not device.capacity:
                out.append(f"  {device.device}: {names} need {device.needed / GIB:.1f} GiB (its memory is unknown)")
                continue
            verdict = "fits" if self.fits(device) else "DOES NOT FIT"
            out.append(
                f"  {device.device}: {names} need {device.needed / GIB:.1f} of {device.capacity / GIB:.1f} GiB "
                f"({self.headroom:.0%} usable): {verdict}"
            )
        return out

    def fits(self, device: DeviceCheck) -> bool:
        return device.needed <= self.headroom * device.capacity

    @property
    def gpu_count(self) -> int:
        """The GPUs the actors are placed on."""
        return sum(device.gpus for device in self.devices)

    def too_full(self) -> list[DeviceCheck]:
        """The devices of known memory that the estimates overfill."""
        return [device for device in self.devices if device.capacity and not self.fits(device)]
