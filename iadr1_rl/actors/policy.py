"""PolicyActor: the trainable model and its optimiser; SFT and GRPO steps; checkpoints."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..data.records import Record
from ..models.encoding import encode_prompts
from ..train.distributed import DistributedSpec, all_reduce_sum, free_port
from ..train.engine import OptimizerSettings, TrainEngine, build_engine
from ..train.losses import grpo_loss, masked_mean, sft_loss
from ..train.sequences import Sample, target_ids, token_logprobs
from .base import ModelActor


class PolicyActor(ModelActor):
    def __init__(
        self,
        *args,
        lr: float = 1e-5,
        weight_decay: float = 0.0,
        total_steps: int = 1,
        warmup_steps: int = 0,
        grad_clip: float = 1.0,
        gradient_checkpointing: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.model.train()
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self.optimizer_settings = OptimizerSettings(lr, weight_decay, total_steps, warmup_steps, grad_clip)
        # AdamW allocates its moments at the first step, so this costs nothing when
        # `join_group` replaces it with a distributed engine.
        self.engine: TrainEngine = build_engine(self.model, self.optimizer_settings)

    # ------------------------------------------------------- data-parallel ranks
    def rendezvous(self) -> tuple[str, int]:
        """This node's address and a free port: rank 0's answer is the group's meeting point."""
        import ray

        return ray.util.get_node_ip_address(), free_port()

    def join_group(self, spec: DistributedSpec, micro_batches: int = 1) -> int:
        """Train as rank `spec.rank` of `spec.world_size` (DDP or DeepSpeed); all ranks
        must call it together. Returns the rank."""
        self.engine = build_engine(
            self.model, self.optimizer_settings, spec, micro_batches, dtype=str(self.model.dtype).removeprefix("torch.")
        )
        return spec.rank

    def sft_step(self, records: Sequence[Record], micro_batches: int = 1) -> dict[str, float]:
        """One optimiser step on the records' responses (split into `micro_batches` for
        gradient accumulation); token-mean loss over all response tokens of the step, on
        every rank of the group (each rank passes its own shard of the step's records).
        `loss` and `tokens` are this rank's."""
        self.model.train()
        tokenizer = self.processor.tokenizer
        prompts = encode_prompts(self.processor, records, self.family)
        samples = [Sample(p, target_ids(tokenizer, r.response)) for p, r in zip(prompts, records)]
        size = -(-len(samples) // max(1, micro_batches))
        parts = [samples[i : i + size] for i in range(0, len(samples), size)]
        self.engine.check_micro_batches(len(parts))
        local_tokens = sum(len(s.response_ids) for s in samples)
        # Every rank needs the step's token count over all ranks to weigh its share.
        step_tokens = all_reduce_sum(float(local_tokens), self.model.device)
        loss_sum = 0.0
        lr = self.engine.lr()
        for part in parts:
            batch = self.batch(part)
            mask = batch["response_mask"][:, 1:]
            tokens = mask.sum().item()
            loss = sft_loss(token_logprobs(self.engine.module, batch), mask)
            self.engine.backward(loss, tokens / max(1.0, step_tokens))
            loss_sum += loss.item() * tokens
        grad_norm = self.engine.step()
        return {"loss": loss_sum / max(1, local_tokens), "lr": lr, "grad_norm": grad_norm, "tokens": local_tokens}

    def grpo_step(
        self,
        samples: Sequence[Sample],
        advantages: Sequence[float],
        old_logprobs: Sequence[list[float]] | None,
        ref_logprobs: Sequence[list[float]],
        clip: float,
        beta: float,
        temperature: float = 1.0,
    ) -> dict[str, float]:
        """One optimiser step of the PPO-clipped objective with the k3 KL penalty, every
        log-prob at the rollouts' sampling `temperature` (as `old_logprobs` and
        `ref_logprobs` were computed).

        `old_logprobs` None means on-policy (one update per rollout batch): the sampling
        policy is the current one, so its log-probs are the current ones, detached.
        """
        self.model.train()
        batch = self.batch(samples)
        mask = batch["response_mask"][:, 1:]
        logprobs = token_logprobs(self.engine.module, batch, temperature, self.suppressed)
        old = logprobs.detach().clone() if old_logprobs is None else _scatter(old_logprobs, mask, logprobs)
        ref = _scatter(ref_logprobs, mask, logprobs)
        advantage = torch.tensor(list(advantages), dtype=logprobs.dtype, device=logprobs.device)
        result = grpo_loss(logprobs, old, ref, advantage, mask, clip=clip, beta=beta)
        lr = self.engine.lr()
        self.engine.backward(result.loss, 1.0)
        grad_norm = self.engine.step()
        return {
            "loss": result.loss.item(),
            "policy_loss": result.policy_loss,
            "kl": result.kl,
            "clip_fraction": result.clip_fraction,
            "ratio": result.ratio_mean,
            "entropy_proxy": -masked_mean(logprobs.detach(), mask).item(),
            "lr": lr,
            "grad_norm": grad_norm,
        }

    # ------------------------------------------------------------ weights, files
    def state_dict(self) -> dict[str, torch.Tensor]:
        """CPU copies of the weights, for the rollout workers."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def save_model(self, path: str) -> str:
        """An HF folder (model and processor) that evaluation or the next stage loads
        (written by rank 0; every rank of a group calls it)."""
        Path(path).mkdir(parents=True, exist_ok=True)
        self.engine.save_model(path, self.processor)
        return path

    def save_checkpoint(self, path: str) -> str:
        self.save_model(path)
        self.engine.save_state(path)
        return path

    def load_training_state(self, path: str) -> None:
        """Optimizer and scheduler from a checkpoint (the weights were loaded at start)."""
        self.engine.load_state(path)


def _scatter(values: Sequence[list[float]], mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-sample response values into a (B, T-1) tensor aligned with `mask`."""
    out = torch.zeros_like(like, requires_grad=False)
    for row, row_values in enumerate(values):
        out[row, mask[row]] = torch.tensor(row_values, dtype=out.dtype, device=out.device)
    return out
