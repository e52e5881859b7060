"""PolicyActor: the trainable model and its optimiser; SFT and GRPO steps; checkpoints."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..data.records import Record
from ..train.losses import grpo_loss, masked_mean, sft_loss
from ..train.schedule import warmup_cosine
from ..train.sequences import Sample, target_ids, token_logprobs
from .base import ModelActor


class PolicyActor(ModelActor):
    def __init__(self, *args, lr: float = 1e-5, weight_decay: float = 0.0, total_steps: int = 1,
                 warmup_steps: int = 0, grad_clip: float = 1.0, gradient_checkpointing: bool = False,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.model.train()
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self.grad_clip = grad_clip
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: warmup_cosine(step, total_steps, warmup_steps)
        )

    # ------------------------------------------------------------------ updates
    def _apply(self) -> float:
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(grad_norm)

    def sft_step(self, records: Sequence[Record], micro_batches: int = 1) -> dict[str, float]:
        """One optimiser step on the records' responses (split into `micro_batches` for
        gradient accumulation); token-mean loss over all response tokens of the step."""
        self.model.train()
        tokenizer = self.processor.tokenizer
        samples = [Sample(r, target_ids(tokenizer, r.response)) for r in records]
        size = -(-len(samples) // max(1, micro_batches))
        micro_batches = [samples[i : i + size] for i in range(0, len(samples), size)]
        total_tokens = sum(sum(len(s.response_ids) for s in mb) for mb in micro_batches)
        loss_sum = 0.0
        for samples in micro_batches:
            batch = self.batch(samples)
            mask = batch["response_mask"][:, 1:]
            tokens = mask.sum().item()
            loss = sft_loss(token_logprobs(self.model, batch), mask)
            # Weight each micro-batch by its tokens: the step's loss is a mean over all tokens.
            (loss * tokens / total_tokens).backward()
            loss_sum += loss.item() * tokens
        lr = self.scheduler.get_last_lr()[0]
        grad_norm = self._apply()
        return {"loss": loss_sum / max(1, total_tokens), "lr": lr, "grad_norm": grad_norm, "tokens": total_tokens}

    def grpo_step(self, samples: Sequence[Sample], advantages: Sequence[float],
                  old_logprobs: Sequence[list[float]] | None, ref_logprobs: Sequence[list[float]], clip: float,
                  beta: float) -> dict[str, float]:
        """One optimiser step of the PPO-clipped objective with the k3 KL penalty.

        `old_logprobs` None means on-policy (one update per rollout batch): the sampling
        policy is the current one, so its log-probs are the current ones, detached.
        """
        self.model.train()
        batch = self.batch(samples)
        mask = batch["response_mask"][:, 1:]
        logprobs = token_logprobs(self.model, batch)
        old = logprobs.detach().clone() if old_logprobs is None else _scatter(old_logprobs, mask, logprobs)
        ref = _scatter(ref_logprobs, mask, logprobs)
        advantage = torch.tensor(list(advantages), dtype=logprobs.dtype, device=logprobs.device)
        result = grpo_loss(logprobs, old, ref, advantage, mask, clip=clip, beta=beta)
        result.loss.backward()
        lr = self.scheduler.get_last_lr()[0]
        grad_norm = self._apply()
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
        """An HF folder (model and processor) that evaluation or the next stage loads."""
        Path(path).mkdir(parents=True, exist_ok=True)
        from ..models.processor import save_processor

        self.model.save_pretrained(path)
        save_processor(self.processor, path)
        return path

    def save_checkpoint(self, path: str) -> str:
        self.save_model(path)
        torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()},
                   Path(path) / "optimizer.pt")
        return path

    def load_training_state(self, path: str) -> None:
        """Optimizer and scheduler from a checkpoint (the weights were loaded at start)."""
        state = torch.load(Path(path) / "optimizer.pt", map_location=self.model.device, weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


def _scatter(values: Sequence[list[float]], mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-sample response values into a (B, T-1) tensor aligned with `mask`."""
    out = torch.zeros_like(like, requires_grad=False)
    for row, row_values in enumerate(values):
        out[row, mask[row]] = torch.tensor(row_values, dtype=out.dtype, device=out.device)
    return out
