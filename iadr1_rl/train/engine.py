"""The policy's optimiser step behind one interface, whether it trains alone, under
DistributedDataParallel, or as a DeepSpeed ZeRO engine.

A loss goes in through `backward(loss, share)` where `share` is the fraction of the
step's tokens (over all ranks) that the loss averages: the engine scales it so that
the summed gradients equal the token mean over the whole step, whatever the number of
ranks and micro-batches (DDP and DeepSpeed average gradients over the ranks). Every rank
runs as many micro-batches as the others (`align_micro_batches`), for the engines that
gather or reduce in each forward and backward.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .distributed import DistributedSpec, all_reduce_max, backend_for, deepspeed_config, init_process_group
from .logprobs import ResponseLogprobs
from .micro_batches import pad_micro_batches
from .precision import MasterWeights, check_precision, fused_adamw_supported, loss_scaler
from .schedule import warmup_cosine

OPTIMIZER_FILE = "optimizer.pt"
DEEPSPEED_DIR = "deepspeed"


@dataclass(frozen=True)
class OptimizerSettings:
    """AdamW with linear warm-up then cosine decay, and gradient clipping."""

    lr: float = 1e-5
    weight_decay: float = 0.0
    total_steps: int = 1
    warmup_steps: int = 0
    grad_clip: float = 1.0


class TrainEngine:
    """The optimiser step on one process, or under DDP. `module(batch, temperature,
    suppressed)` gives the batch's response log-probs (`logprobs.ResponseLogprobs`, wrapped
    by DDP or DeepSpeed so that their gradient hooks see the whole forward).

    With `master_weights` (a 16-bit model) the optimizer steps float32 copies of the
    weights (`precision.MasterWeights`) and float16 adds a loss scaler; the model forwards
    its own 16-bit weights. AdamW is torch's fused one where it runs (no full-size
    temporaries at the step)."""

    def __init__(
        self,
        model: torch.nn.Module,
        settings: OptimizerSettings,
        spec: DistributedSpec = DistributedSpec(),
        master_weights: bool = False,
    ) -> None:
        self.model = model
        self.spec = spec
        self.grad_clip = settings.grad_clip
        trainable = [p for p in model.parameters() if p.requires_grad]
        # Under DDP the reducer reads `.grad` itself: fold once it has reduced the last micro-batch.
        self.master = MasterWeights(trainable, fold_as_ready=spec.strategy != "ddp") if master_weights else None
        self.params = self.master.params if self.master is not None else trainable
        self.optimizer = torch.optim.AdamW(
            self.params, lr=settings.lr, weight_decay=settings.weight_decay, fused=fused_adamw_supported(self.params)
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: warmup_cosine(step, settings.total_steps, settings.warmup_steps)
        )
        first = next(model.parameters())
        device = first.device
        self.scaler = loss_scaler(first.dtype, device) if self.master is not None else None
        self.module: torch.nn.Module = ResponseLogprobs(model)
        if spec.strategy == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            init_process_group(spec, device)
            device_ids = [device.index or 0] if device.type == "cuda" else None
            self.module = DistributedDataParallel(self.module, device_ids=device_ids)

    @property
    def loss_factor(self) -> float:
        # DDP averages gradients over ranks; undo it so shares add up to one step mean.
        return float(self.spec.world_size)

    def align_micro_batches(self, parts: list[list[int]]) -> list[tuple[list[int], float]]:
        """The step's micro-batches, as many on every rank (ZeRO reduces gradients and
        gathers weights collectively in each forward and backward): (sample indices, loss
        weight), a weight of 0 for the fillers a rank runs to keep count."""
        count = len(parts)
        if self.spec.world_size > 1:
            count = int(all_reduce_max(float(count), next(self.model.parameters()).device))
        return pad_micro_batches(parts, count)

    def gathered(self, parameters: Sequence[torch.nn.Parameter]) -> contextlib.AbstractContextManager:
        """Around reading whole parameters (a weight sync): ZeRO-3 gathers its shards (a
        collective: every rank enters it); here they are whole."""
        return contextlib.nullcontext()

    def close(self) -> None:
        """Release what ties this engine to the model (master weights' gradient hooks),
        before another engine takes the model over."""
        if self.master is not None:
            self.master.close()

    def accumulating(self, last: bool) -> contextlib.AbstractContextManager:
        """Around a micro-batch's forward and backward: under DDP the gradients are reduced
        over the ranks only with the step's last one (so ranks may split their shards into
        different numbers of micro-batches)."""
        if last or self.spec.strategy != "ddp":
            return contextlib.nullcontext()
        return self.module.no_sync()

    def backward(self, loss: torch.Tensor, share: float) -> None:
        scaled = loss * (share * self.loss_factor)
        (scaled if self.scaler is None else self.scaler.scale(scaled)).backward()

    def step(self) -> float:
        """Clip, step, advance the schedule; returns the gradient norm before clipping (a
        float16 step whose gradients overflowed is skipped: the loss scaler lowers its scale)."""
        if self.master is not None:
            self.master.fold()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.master is not None:
            self.master.copy_to_model()
        return float(grad_norm)

    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def is_writer(self) -> bool:
        """Rank 0 writes the model folder and the replicated optimizer state."""
        return self.spec.rank == 0

    def save_model(self, path: str | Path, processor: Any) -> None:
        """The model as an HF folder, in the dtype it computes in."""
        if self.is_writer():
            from ..models.processor import save_processor

            self.model.save_pretrained(path)
            save_processor(processor, path)

    def save_state(self, path: str | Path) -> None:
        """The optimizer and scheduler (and the float32 master weights: the model folder
        holds their 16-bit rounding), so that a resume continues exactly."""
        if self.is_writer():
            state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
            if self.master is not None:
                state["master_weights"] = self.master.state()
            if self.scaler is not None:
                state["loss_scaler"] = self.scaler.state_dict()
            torch.save(state, Path(path) / OPTIMIZER_FILE)

    def load_state(self, path: str | Path) -> None:
        state = torch.load(Path(path) / OPTIMIZER_FILE, map_location=self.params[0].device, weights_only=False)
        if (self.master is not None) != ("master_weights" in state):
            raise ValueError(
                f"{path} was saved {'with' if 'master_weights' in state else 'without'} float32 master weights and "
                "this run trains the other way: resume with the model.dtype and model.master_weights that wrote it"
            )
        if self.master is not None:
            self.master.load_state(state["master_weights"])
        if self.scaler is not None and "loss_scaler" in state:
            self.scaler.load_state_dict(state["loss_scaler"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


def device_dtype(model: torch.nn.Module) -> str:
    """The dtype a model's weights are in ("bfloat16", …)."""
    return str(next(model.parameters()).dtype).removeprefix("torch.")


def _skip_inference_comm_op() -> None:
    """DeepSpeed's CPU backend JIT-compiles a shared-memory C++ op (`deepspeed_shm_comm`)
    whenever it starts without one cached: measured 46 s with g++ here, on every fresh
    machine (CI), and a failure without a compiler. It serves only `inference_all_reduce`
    (tensor-parallel inference kernels), which training never calls: not building it."""
    import importlib

    # importlib, not `import deepspeed.comm.torch as …`: that name resolves to the `torch`
    # package, which deepspeed.comm re-exports.
    backend = importlib.import_module("deepspeed.comm.torch")
    backend.build_shm_op = lambda: None


class DeepSpeedEngine(TrainEngine):
    """DeepSpeed ZeRO over the ranks: our AdamW and schedule as DeepSpeed's client
    optimizer and scheduler, clipping done by DeepSpeed. The step is ours to end: DeepSpeed's
    unmanaged accumulation (`managed_gradient_accumulation: false`), so a step takes any
    number of micro-batches (the same on every rank: `align_micro_batches`)."""

    def __init__(self, model: torch.nn.Module, settings: OptimizerSettings, spec: DistributedSpec) -> None:
        super().__init__(model, settings, spec)  # AdamW and the schedule become DeepSpeed's client ones
        try:
            import deepspeed
        except ImportError as error:
            raise ImportError(
                "strategy 'deepspeed' needs DeepSpeed: pip install 'iadr1-rl[deepspeed]' (or strategy 'ddp')"
            ) from error
        device = next(model.parameters()).device
        if device.type == "cpu":
            _skip_inference_comm_op()
        init_process_group(spec, device)
        self.module, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=self.module,
            optimizer=self.optimizer,
            lr_scheduler=self.scheduler,
            config=deepspeed_config(spec, settings.grad_clip, str(device_dtype(model)), backend_for(device)),
        )

    @property
    def loss_factor(self) -> float:
        # DeepSpeed averages over the ranks.
        return float(self.spec.world_size)

    def accumulating(self, last: bool) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()  # DeepSpeed reduces as its ZeRO stage does; `step` ends the step

    def backward(self, loss: torch.Tensor, share: float) -> None:
        self.module.backward(loss * (share * self.loss_factor))

    def step(self) -> float:
        self.module.step()  # the accumulation boundary: reduce what is left, clip, step
        norm = self.module.get_global_grad_norm()
        return float(norm) if norm is not None else 0.0

    def gathered(self, parameters: Sequence[torch.nn.Parameter]) -> contextlib.AbstractContextManager:
        if self.spec.zero_stage != 3:
            return contextlib.nullcontext()
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(parameters), modifier_rank=None)

    def lr(self) -> float:
        return self.module.get_lr()[0]

    def save_model(self, path: str | Path, processor: Any) -> None:
        # DeepSpeed's module is in the dtype it computes in; its float32 master copy is its own.
        state = self._gathered_state() if self.spec.zero_stage == 3 else None
        if self.is_writer():
            from ..models.processor import save_processor

            self.model.save_pretrained(path, state_dict=state)
            save_processor(processor, path)

    def _gathered_state(self) -> dict[str, torch.Tensor] | None:
        """The full weights on the writer (collective: every rank gathers its shards).

        Through the public `GatheredParameters`: DeepSpeed's private
        `_zero3_consolidated_16bit_state_dict` left the next step wrong in about 1 in 3
        ZeRO-3 runs on CPU (a checkpoint mid-run, then a different loss; measured)."""
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(self.model.parameters()), modifier_rank=None):
            if not self.is_writer():
                return None
            copies: dict[int, torch.Tensor] = {}  # tied weights stay one tensor, as HF saves them
            return {
                name: copies.setdefault(tensor.data_ptr(), tensor.detach().clone())
                for name, tensor in self.model.state_dict().items()
            }

    def save_state(self, path: str | Path) -> None:
        # Every rank writes its shard of the optimizer state (collective).
        self.module.save_checkpoint(str(Path(path) / DEEPSPEED_DIR), tag="state", save_latest=False)

    def load_state(self, path: str | Path) -> None:
        self.module.load_checkpoint(str(Path(path) / DEEPSPEED_DIR), tag="state", load_module_strict=True)


def build_engine(
    model: torch.nn.Module,
    settings: OptimizerSettings,
    spec: DistributedSpec = DistributedSpec(),
    master_weights: bool = False,
) -> TrainEngine:
    """The engine `spec.strategy` names (DeepSpeed keeps its own float32 master weights)."""
    if spec.strategy == "deepspeed":
        return DeepSpeedEngine(model, settings, spec)
    check_precision(device_dtype(model), master_weights)
    return TrainEngine(model, settings, spec, master_weights)
