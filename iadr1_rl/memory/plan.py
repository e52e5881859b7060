"""The local backend's memory plan: each actor's expected peak for a config, the devices the
actors land on, and the refusal, before any model loads, of a run that would not fit.

The model's shape comes from its folder's `config.json` (the weights are not needed), or
from the published shape of the config's `backbone` when the folder is not there yet.
GPU actors are checked against `memory.device_gib` (the GPU the config is written for)
or, without it, the GPU of this machine; CPU actors against this machine's memory.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..models.backbones import model_config
from ..train.config import RecipeConfig
from .estimates import (
    CPU_RUNTIME,
    GIB,
    ActorEstimate,
    DeviceCheck,
    MemoryPlan,
    ModelShape,
    Workload,
    forward_estimate,
    hf_rollout_estimate,
    policy_estimate,
    vllm_rollout_estimate,
    with_allocator_reserve,
)
from .vllm_sizing import vllm_memory_args

logger = logging.getLogger(__name__)

# The share of a device the estimates may fill: the rest is for what they do not count
# (the CUDA context or the interpreter and libraries, allocator fragmentation).
HEADROOM = 0.9
# Prompt text around the images (the IAD-R1 question in a chat template): ~50 tokens with
# Qwen's tokenizer, a few more with the demo's small one.
PROMPT_TEXT_TOKENS = 64
# Crops an any-resolution LLaVA (1.6, OneVision) encodes per image: the base view and four tiles.
ANYRES_CROPS = {"llava_next": 5, "llava_onevision": 5}


class MemoryPlanError(ValueError):
    """A run whose actors would not fit their devices."""


@dataclass(frozen=True)
class PlacedActor:
    estimate: ActorEstimate
    num_gpus: float


def image_tokens(config, max_pixels: int | None, model_dir: str) -> int:
    """The LM tokens of one image at most: Qwen-VL's `max_pixels` over (patch × merge)²,
    a fixed-resolution encoder's (image size / patch)² (× crops for any-resolution LLaVA)."""
    vision = config.vision_config
    merge = getattr(vision, "spatial_merge_size", None)
    if merge:
        pixels = max_pixels or _processor_max_pixels(model_dir) or 12845056  # Qwen's processor default
        return max(1, pixels // (vision.patch_size * merge) ** 2)
    per_crop = (vision.image_size // vision.patch_size) ** 2
    return per_crop * ANYRES_CROPS.get(config.model_type, 1)


def _processor_max_pixels(model_dir: str) -> int | None:
    import json

    for name in ("preprocessor_config.json", "processor_config.json"):
        path = Path(model_dir) / name
        if path.is_file():
            settings = json.loads(path.read_text())
            settings = settings.get("image_processor", settings)
            return settings.get("max_pixels") or (settings.get("size") or {}).get("longest_edge")
    return None


def plan_memory(config: RecipeConfig, stage: str) -> MemoryPlan:
    """Every actor's estimate for `stage` ("pa_sft" or "sc_grpo") and the devices they are
    planned on (nothing is loaded: the model is counted on the meta device)."""
    model_dir = config.model.path if stage == "pa_sft" else (config.grpo.init or config.model.path)
    if not (Path(model_dir) / "config.json").is_file() and (Path(config.model.path) / "config.json").is_file():
        model_dir = config.model.path  # SC-GRPO planned before PA-SFT wrote its checkpoint
    try:
        hf_config, source = model_config(model_dir, config.backbone)
    except FileNotFoundError as error:
        key = "model.path" if model_dir == config.model.path else "grpo.init"
        raise FileNotFoundError(f"{key}: {error}") from None
    shape = ModelShape.from_config(hf_config)
    response = config.grpo.max_new_tokens + 1  # the end-of-turn token
    images = image_tokens(hf_config, config.model.max_pixels, model_dir) * (config.data.shots + 1)
    sequence = PROMPT_TEXT_TOKENS + images + response
    memory = config.memory

    def work(samples: int, budget: int, checkpointing: bool = False) -> Workload:
        return Workload(
            dtype=config.model.dtype,
            sequence=sequence,
            image_tokens=images,
            response=response,
            samples=samples,
            tokens_per_forward=budget,
            gradient_checkpointing=checkpointing,
        )

    checkpointing = config.model.gradient_checkpointing
    if stage == "pa_sft":
        sft = config.sft
        per_micro = max(1, sft.batch_size // sft.world_size // sft.gradient_accumulation)
        placed = _policy_ranks(config, sft, shape, work(per_micro, memory.train_tokens, checkpointing))
    else:
        grpo = config.grpo
        samples = grpo.prompts_per_step * grpo.group_size
        per_rank = max(1, samples // grpo.mini_batches // grpo.world_size)
        placed = _policy_ranks(config, grpo, shape, work(per_rank, memory.train_tokens, checkpointing))
        references = config.resources.num_reference_workers
        reference = forward_estimate(shape, work(-(-samples // references), memory.logprob_tokens))
        placed += _workers(reference, "reference", references, config.resources.reference.num_gpus)
        workers = config.resources.num_rollout_workers
        per_worker = -(-grpo.prompts_per_step // workers) * grpo.group_size
        rollout = _rollout_estimate(config, shape, work(per_worker, memory.logprob_tokens))
        placed += _workers(rollout, "rollout", workers, config.resources.rollout.num_gpus)
    for actor in placed:
        if actor.num_gpus == 0:
            actor.estimate.parts["runtime"] = CPU_RUNTIME
        elif "vllm_share" not in actor.estimate.parts:  # vLLM's share is what it reserves
            with_allocator_reserve(actor.estimate)
    devices = _place(placed, memory.device_gib)
    return MemoryPlan(source, shape.parameters, [p.estimate for p in placed], devices, HEADROOM)


def _policy_ranks(config: RecipeConfig, ranks, shape: ModelShape, workload: Workload) -> list[PlacedActor]:
    """A stage's policy ranks (`sft.*` or `grpo.*`), each its share of the training state
    under ZeRO and one micro-batch of its share of the step."""
    shards = _zero_shards(ranks.strategy, ranks.zero_stage, ranks.world_size, ranks.offload_optimizer)
    precision = "deepspeed" if ranks.strategy == "deepspeed" else _precision(config)
    estimate = policy_estimate(shape, workload, shards, precision, ddp=ranks.strategy == "ddp")
    return _workers(estimate, "policy", ranks.world_size, config.resources.policy.num_gpus, "policy rank")


def _workers(
    estimate: ActorEstimate, kind: str, count: int, num_gpus: float, prefix: str | None = None
) -> list[PlacedActor]:
    """`count` actors of one estimate, named as the backend names them (`plan.worker_names`)."""
    if count == 1:
        return [PlacedActor(ActorEstimate(kind, dict(estimate.parts)), num_gpus)]
    return [
        PlacedActor(ActorEstimate(f"{prefix or kind} {index}", dict(estimate.parts)), num_gpus)
        for index in range(count)
    ]


def _rollout_estimate(config: RecipeConfig, shape: ModelShape, work: Workload) -> ActorEstimate:
    """The rollout engine's peak: HF generate's, or what vLLM is told to take (the engine is
    built with the same `vllm_memory_args`): its share of a GPU, or its KV cache and the rest."""
    rollout = config.rollout
    if rollout.engine == "hf":
        return hf_rollout_estimate(shape, work)
    on_gpu = config.resources.rollout.num_gpus > 0
    told = vllm_memory_args(on_gpu, rollout.gpu_memory_utilization, rollout.kv_cache_gib)
    capacity = config.memory.device_gib * GIB if config.memory.device_gib else _this_machines_gpu()
    estimate = vllm_rollout_estimate(shape, work, told, capacity)
    if rollout.tensor_parallel_size > 1:  # per GPU: weights, KV cache and activations split over them
        parts = estimate.parts
        estimate.parts = {k: v if k == "vllm_share" else v / rollout.tensor_parallel_size for k, v in parts.items()}
    return estimate


def _precision(config: RecipeConfig) -> str:
    return "master" if config.model.master_weights else "none"


def _zero_shards(strategy: str, stage: int, world: int, offload: bool) -> dict[str, int]:
    """How many ranks share each training state under DeepSpeed ZeRO (0: not on the device)."""
    if strategy != "deepspeed":
        return {}
    shards = {
        "optimizer": world if stage >= 1 else 1,
        "gradients": world if stage >= 2 else 1,
        "weights": world if stage >= 3 else 1,
    }
    if offload:
        shards["optimizer"] = 0
    return shards


def _place(actors: list[PlacedActor], device_gib: float | None) -> list[DeviceCheck]:
    """The devices the actors land on (Ray is then told to place them so: `ray_env.Placement`):
    each GPU actor with a whole GPU (or more) alone, fractional ones packed first-fit, CPU
    actors together in host memory."""
    gpu_capacity = device_gib * GIB if device_gib else _this_machines_gpu()
    devices: list[DeviceCheck] = []
    free: list[float] = []  # GPU share left on each fractional device
    host = [p.estimate for p in actors if p.num_gpus == 0]
    for actor in (p for p in actors if p.num_gpus > 0):
        if actor.num_gpus >= 1:
            whole = math.ceil(actor.num_gpus)
            devices.append(DeviceCheck(_gpu_name(devices, whole), gpu_capacity or 0.0, [actor.estimate], whole))
            free.append(0.0)
            continue
        index = next((i for i, left in enumerate(free) if left + 1e-9 >= actor.num_gpus), None)
        if index is None:
            devices.append(DeviceCheck(_gpu_name(devices, 1), gpu_capacity or 0.0, []))
            free.append(1.0)
            index = len(devices) - 1
        devices[index].actors.append(actor.estimate)
        free[index] -= actor.num_gpus
    if host:
        devices.append(DeviceCheck("host memory", _host_memory(), host, gpus=0))
    return devices


def _gpu_name(devices: list[DeviceCheck], gpus: int) -> str:
    first = sum(d.gpus for d in devices)
    return f"GPU {first}" if gpus == 1 else f"GPUs {first}-{first + gpus - 1}"


def gpus_per_node(config: RecipeConfig) -> int | None:
    """The GPUs of one node the run is planned for: `memory.gpus_per_node`, else this
    machine's (None without a GPU: not checked)."""
    if config.memory.gpus_per_node:
        return config.memory.gpus_per_node
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.device_count() or None


def policy_section(stage: str) -> str:
    """The config section of a stage's policy ranks."""
    return "sft" if stage == "pa_sft" else "grpo"


def check_gpu_count(plan: MemoryPlan, config: RecipeConfig, stage: str) -> str | None:
    """Why the plan's actors cannot be placed on one node's GPUs, naming the keys; None when they can."""
    node = gpus_per_node(config)
    if node is None or plan.gpu_count <= node:
        return None
    section = policy_section(stage)
    workers = "" if stage == "pa_sft" else ", resources.num_reference_workers, resources.num_rollout_workers"
    return (
        f"the actors need {plan.gpu_count} GPUs and a node has {node} (memory.gpus_per_node): fewer ranks "
        f"({section}.world_size){workers}, or GPU shares (fractional resources.<actor>.num_gpus) that "
        "share a GPU"
    )


def _this_machines_gpu() -> float | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return float(torch.cuda.get_device_properties(0).total_memory)


def _host_memory() -> float:
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def check_memory(config: RecipeConfig, stage: str) -> MemoryPlan:
    """The plan, logged; a `MemoryPlanError` naming the keys to change when an actor would
    not fit its device (a warning instead with `memory.check: false`)."""
    plan = plan_memory(config, stage)
    for line in plan.lines():
        logger.info("%s", line)
    unknown = [d for d in plan.devices if d.capacity == 0]
    if unknown:
        logger.warning(
            "no GPU on this machine and memory.device_gib is not set: the GPU actors' plan is not checked "
            "(set memory.device_gib to the memory of the GPUs the run is for)"
        )
    too_many = check_gpu_count(plan, config, stage)
    if too_many:
        raise MemoryPlanError(too_many)
    full = plan.too_full()
    if not full:
        return plan
    message = "; ".join(_too_full_message(plan, device, config, stage) for device in full)
    if config.memory.check:
        raise MemoryPlanError(f"out of memory before it starts: {message}")
    logger.warning("the memory plan does not fit (memory.check is false, starting anyway): %s", message)
    return plan


def dry_run(config: RecipeConfig, stage: str) -> int:
    """`--dry-run` on the local backend: the memory plan of every actor, printed; nothing
    starts, nothing loads. Exit 0 when it fits, 2 (with the keys to change) when not."""
    try:
        plan = plan_memory(config, stage)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(plan.lines()))
    if any(d.capacity == 0 for d in plan.devices):
        print("note: no GPU here and memory.device_gib is not set: GPU actors are not checked")
    node = gpus_per_node(config)
    print(
        f"GPUs: {plan.gpu_count}" + (f" of a node's {node}" if node else " (memory.gpus_per_node not set: unchecked)")
    )
    too_many = check_gpu_count(plan, config, stage)
    if too_many:
        print(f"error: {too_many}", file=sys.stderr)
        return 2
    full = plan.too_full()
    if full:
        message = "; ".join(_too_full_message(plan, device, config, stage) for device in full)
        print(f"error: out of memory before it starts: {message}", file=sys.stderr)
        return 2 if config.memory.check else 0
    return 0


def _too_full_message(plan: MemoryPlan, device: DeviceCheck, config: RecipeConfig, stage: str) -> str:
    largest = max(device.actors, key=lambda a: a.total)
    usable = HEADROOM * device.capacity
    state = sum(largest.parts.get(part, 0.0) for part in ("weights", "master_weights", "gradients", "optimizer"))
    detail = ", ".join(a.describe() for a in device.actors)
    section = policy_section(stage)
    ranks = config.get(section)
    shard = (
        f"shard them over more GPUs: {section}.strategy=deepspeed with {section}.zero_stage=3 and a larger "
        f"{section}.world_size (now {ranks.world_size}), or {section}.offload_optimizer=true"
    )
    keys = []
    if state > usable and largest.name.startswith("policy"):
        openrlhf = "; or run SC-GRPO on the OpenRLHF backend (resources.backend=openrlhf)" if stage == "sc_grpo" else ""
        keys.append(
            f"nothing about batches helps: {largest.name}'s weights, gradients and optimizer state alone take "
            f"{state / GIB:.1f} GiB; {shard}{openrlhf}"
        )
    else:
        if largest.parts.get("activations", 0.0) > 0.2 * largest.total:
            if not config.model.gradient_checkpointing:
                keys.append("model.gradient_checkpointing=true")
            keys.append(f"a lower memory.train_tokens (now {config.memory.train_tokens})")
        if stage == "sc_grpo":
            keys.append(f"a lower grpo.max_new_tokens (now {config.grpo.max_new_tokens})")
            if largest.name.startswith("rollout"):
                keys.append("more resources.num_rollout_workers (each samples fewer prompts)")
            if largest.name.startswith("reference"):
                keys.append("more resources.num_reference_workers (each scores fewer samples)")
        if largest.name.startswith("policy") and (ranks.strategy != "deepspeed" or ranks.zero_stage < 3):
            keys.append(f"{section}.strategy=deepspeed with a higher {section}.zero_stage")
        if len(device.actors) > 1:
            keys.append("a whole GPU per actor (resources.<actor>.num_gpus=1)")
    keys.append("memory.device_gib if the GPUs the run is for are larger")
    return (
        f"{device.device} would need {device.needed / GIB:.1f} GiB of its {device.capacity / GIB:.1f} GiB "
        f"({HEADROOM:.0%} usable) for {detail}. Try: {'; '.join(keys)}"
    )
