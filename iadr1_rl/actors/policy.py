"""PolicyActor: the trainable model and its optimiser; SFT and GRPO steps in micro-batches
by token budget; checkpoints."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..data.records import Record
from ..models.encoding import encode_prompts
from ..rollout.transport import Seat
from ..rollout.weight_sync import (
    DEFAULT_BUCKET_BYTES,
    WeightBucket,
    WeightSender,
    checkpoint_named_parameters,
    whole_bytes,
)
from ..train.distributed import DistributedSpec, all_reduce_sum, free_port
from ..train.engine import OptimizerSettings, TrainEngine, build_engine
from ..train.losses import GRPO_SUMS, PPOSettings, grpo_loss, sft_loss
from ..train.micro_batches import split_evenly, token_budget_batches
from ..train.precision import SIXTEEN_BIT
from ..train.sequences import GRPOBatch, Sample, target_ids
from .base import ModelActor
from .placement import current_seat

# The most padded tokens one training forward (and its backward) holds (memory.train_tokens).
DEFAULT_TRAIN_TOKENS = 16384


class PolicyActor(ModelActor):
    """The trainable model. It holds and forwards its weights in `dtype`, the same weights the
    reference and the rollout engines compute with (so in bf16 the policy's log-probs equal
    the reference's at step 0). With `master_weights` (the default) and a 16-bit `dtype`, its
    optimizer steps float32 copies of them (`train/precision.py`): in bf16 alone AdamW's
    updates at SC-GRPO's learning rates (1e-6 on weights of ~1e-2, whose bf16 spacing is
    ~1e-4) would round away and the policy would not move."""

    def __init__(
        self,
        *args,
        optimizer: OptimizerSettings = OptimizerSettings(),
        gradient_checkpointing: bool = False,
        train_tokens: int = DEFAULT_TRAIN_TOKENS,
        master_weights: bool = True,
        dtype: str = "float32",
        **kwargs,
    ) -> None:
        super().__init__(*args, dtype=dtype, **kwargs)
        self.master_weights = master_weights and dtype in SIXTEEN_BIT
        self.model.train()
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self.optimizer_settings = optimizer
        self.train_tokens = train_tokens
        self._sender: WeightSender | None = None
        self._sender_bytes = 0
        self._engine: TrainEngine | None = None  # built at first use, or by `join_group`
        self._transfers: dict[int, tuple] = {}  # rollout worker index → (client, trainer half)

    @property
    def engine(self) -> TrainEngine:
        """The optimizer step: one process's, unless `join_group` made it a rank's. Built when
        first used, so that a rank's float32 master weights are never made only to be dropped."""
        if self._engine is None:
            self._engine = build_engine(self.model, self.optimizer_settings, master_weights=self.master_weights)
        return self._engine

    # ------------------------------------------------------- data-parallel ranks
    def rendezvous(self) -> tuple[str, int]:
        """This node's address and a free port: rank 0's answer is the group's meeting point."""
        import ray

        return ray.util.get_node_ip_address(), free_port()

    def join_group(self, spec: DistributedSpec) -> int:
        """Train as rank `spec.rank` of `spec.world_size` (DDP or DeepSpeed); all ranks
        must call it together. Returns the rank."""
        if self._engine is not None:  # one built by an earlier use: its hooks must not fold into stale copies
            self._engine.close()
        self._engine = build_engine(self.model, self.optimizer_settings, spec, master_weights=self.master_weights)
        return spec.rank

    def micro_batches(self, parts: list[list[int]]) -> list[tuple[list[int], float]]:
        """A step's micro-batches, as many as every other rank's (`align_micro_batches`)."""
        return self.engine.align_micro_batches(parts)

    # ------------------------------------------------------------------ steps
    def sft_step(self, records: Sequence[Record], micro_batches: int = 1) -> dict[str, float]:
        """One optimiser step on the records' responses; token-mean loss over all response
        tokens of the step, on every rank of the group (each rank passes its own shard of
        the step's records). `loss` and `tokens` are this rank's."""
        self.model.train()
        tokenizer = self.processor.tokenizer
        prompts = encode_prompts(self.processor, records, self.family)
        samples = [Sample(p, target_ids(tokenizer, r.response)) for p, r in zip(prompts, records)]
        parts = self.micro_batches(self._sft_parts(samples, micro_batches))
        local_tokens = sum(len(s.response_ids) for s in samples)
        # Every rank needs the step's token count over all ranks to weigh its share.
        step_tokens = all_reduce_sum(float(local_tokens), self.model.device)
        loss_sum = 0.0
        lr = self.engine.lr()
        for index, (part, weight) in enumerate(parts):
            chosen = [samples[i] for i in part]
            tokens = sum(len(s.response_ids) for s in chosen) * weight
            with self.engine.accumulating(last=index == len(parts) - 1):
                logprobs = self.engine.module(self.batch(chosen))
                loss = sft_loss(logprobs)
                self.engine.backward(loss, tokens / max(1.0, step_tokens))
            loss_sum += loss.item() * tokens
        grad_norm = self.engine.step()
        return {
            "loss": loss_sum / max(1, local_tokens),
            "lr": lr,
            "grad_norm": grad_norm,
            "tokens": local_tokens,
            "micro_batches": len(parts),
        }

    def _sft_parts(self, samples: Sequence[Sample], micro_batches: int) -> list[list[int]]:
        """`micro_batches` even parts (sft.gradient_accumulation) when each fits the token
        budget; more, grouped by length, when not."""
        lengths = [len(s.prompt) + len(s.response_ids) for s in samples]
        even = split_evenly(len(samples), micro_batches)
        if all(len(part) * max(lengths[i] for i in part) <= self.train_tokens for part in even):
            return even
        return token_budget_batches(lengths, self.train_tokens, "memory.train_tokens")

    def grpo_step(self, update: GRPOBatch, ppo: PPOSettings) -> dict[str, float]:
        """One optimiser step of the PPO-clipped objective with the k3 KL penalty, token-mean
        over the update (over every rank's share of it: `update.normaliser`), accumulated
        over micro-batches of at most `train_tokens` padded tokens; every log-prob at the
        rollouts' sampling temperature (as the batch's old and reference log-probs were).

        `update.old_logprobs` None means on-policy (one update per rollout batch): the
        sampling policy is the current one, so its log-probs are the current ones, detached.
        The sums it returns are divided by the normaliser, so that the group adds its
        ranks' up; a filler share (`update.weight` 0: a rank given no samples) adds nothing.
        """
        self.model.train()
        samples = update.samples
        total = update.normaliser or sum(len(s.response_ids) for s in samples)
        lengths = [len(s.prompt) + len(s.response_ids) for s in samples]
        parts = self.micro_batches(token_budget_batches(lengths, self.train_tokens, "memory.train_tokens"))
        sums = dict.fromkeys(GRPO_SUMS, 0.0)
        gap = 0.0
        lr = self.engine.lr()
        for index, (part, weight) in enumerate(parts):
            chosen = [samples[i] for i in part]
            weight *= update.weight
            with self.engine.accumulating(last=index == len(parts) - 1):
                logprobs = self.engine.module(self.batch(chosen), ppo.temperature, self.suppressed)
                old = logprobs.detach() if update.old_logprobs is None else _flat(update.old_logprobs, part, logprobs)
                ref = _flat(update.ref_logprobs, part, logprobs)
                lengths_of = torch.tensor([len(s.response_ids) for s in chosen], device=logprobs.device)
                advantage = torch.tensor([update.advantages[i] for i in part], device=logprobs.device)
                result = grpo_loss(
                    logprobs, old, ref, advantage.repeat_interleave(lengths_of), ppo.clip, ppo.beta, normaliser=total
                )
                self.engine.backward(result.loss * weight, 1.0)
            for key, value in result.sums.items():
                sums[key] += value * weight
            if update.sampling_logprobs is not None:
                sampled = _flat(update.sampling_logprobs, part, logprobs)
                gap += (logprobs.detach() - sampled).abs().sum().item() * weight
        grad_norm = self.engine.step()
        tokens = max(1, total)
        measured = {} if update.sampling_logprobs is None else {"rollout_logprob_gap": gap / tokens}
        return {
            **measured,
            "loss": (sums["policy_loss"] + ppo.beta * sums["kl"]) / tokens,
            "policy_loss": sums["policy_loss"] / tokens,
            "kl": sums["kl"] / tokens,
            "clip_fraction": sums["clipped"] / tokens,
            "ratio": sums["ratio"] / tokens,
            "entropy_proxy": -sums["logprob"] / tokens,
            "lr": lr,
            "grad_norm": grad_norm,
            "micro_batches": len(parts),
        }

    # ------------------------------------------------------------ weights, files
    def weight_buckets(self, bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> int:
        """How many buckets a weight sync of `bucket_bytes` takes (lays them out once)."""
        self.memory.mark()  # the buckets go into shared memory: see PeakMemory
        if self._sender is None or self._sender_bytes != bucket_bytes:
            self._sender = WeightSender(self.model, bucket_bytes)
            self._sender_bytes = bucket_bytes
        return self._sender.count

    def weight_bucket(self, index: int, version: int) -> WeightBucket | None:
        """Bucket `index` of weight sync `version` (`weight_buckets` first), from rank 0;
        under ZeRO-3 every rank calls it, to gather the bucket's weights (never the whole
        model at once), and the others return None."""
        if self._sender is None:
            raise RuntimeError("weight_buckets() lays out the buckets before a sync")
        with self.engine.gathered(self._sender.parameters(index)):
            return self._sender.bucket(index, version) if self.engine.is_writer() else None

    def seat(self) -> Seat:
        """The node and GPUs this rank computes on (a weight transport is checked against it)."""
        return current_seat()

    def open_weight_transfer(
        self,
        worker,
        name: str,
        transport: str,
        engine: str,
        address: str,
        port: int,
        tensor_parallel: int = 1,
        timeout_s: float = 300.0,
        bucket_bytes: int = DEFAULT_BUCKET_BYTES,
        slot: int = 0,
    ) -> None:
        """Join `transport` (ipc, nccl) to rollout worker `worker` (its actor handle; `name`
        in errors) running `engine`; every rank calls it together (rank 0 sends, the others
        gather their ZeRO-3 shards), `address:port` rank 0's for a broadcast's rendezvous.
        `slot` is the worker's index: a worker started again in its place replaces it."""
        from ..rollout.transfer import ActorClient, CheckpointSource, open_trainer

        source = CheckpointSource(checkpoint_named_parameters(self.model), self.engine.gathered, bucket_bytes)
        client = ActorClient(worker, name, timeout_s)
        rank = self.engine.spec.rank
        self._transfers[slot] = (
            client,
            open_trainer(transport, engine, rank, client, source, address, port, tensor_parallel),
        )

    def send_weights(self, version: int) -> None:
        """Weight sync `version` over every direct transport opened (every rank calls it)."""
        self.memory.mark()
        for slot in sorted(self._transfers):
            client, trainer = self._transfers[slot]
            client.version = version
            trainer.send_weights()

    def weight_bytes(self) -> int:
        """Bytes of one whole copy of the weights a sync sends (the whole parameters, under
        ZeRO-3 too)."""
        return sum(whole_bytes(p) for _, p in checkpoint_named_parameters(self.model))

    def state_bytes(self) -> int:
        """Bytes of the training state this rank holds: its weights (under ZeRO-3 its shard),
        gradients, master weights and optimizer state, each storage once."""
        seen: set[int] = set()
        total = 0

        def add(tensor) -> None:
            nonlocal total
            if not isinstance(tensor, torch.Tensor):
                return
            storage = tensor.untyped_storage()
            if storage.nbytes() and storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()

        for parameter in self.model.parameters():
            for tensor in (parameter.data, parameter.grad, getattr(parameter, "ds_tensor", None)):
                add(tensor)
        if self._engine is not None:
            engine_optimizer = self._engine.optimizer
            optimizer = getattr(engine_optimizer, "optimizer", engine_optimizer)  # DeepSpeed's wraps torch's
            for group in optimizer.param_groups:
                for parameter in group["params"]:
                    add(parameter)
                    add(parameter.grad)
            for state in optimizer.state.values():
                for value in state.values():
                    add(value)
        return total

    def weights_digest(self) -> str:
        """A hash of the whole model's weights (gathered under ZeRO-3; every rank calls it):
        ranks that trained on the same steps hold the same."""
        import hashlib

        digest = hashlib.sha256()
        parameters = [p for _, p in checkpoint_named_parameters(self.model)]
        with self.engine.gathered(parameters), torch.no_grad():
            for parameter in parameters:
                digest.update(parameter.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def save_model(self, path: str) -> str:
        """An HF folder (model and processor) that evaluation or the next stage loads
        (written by rank 0; every rank of a group calls it)."""
        Path(path).mkdir(parents=True, exist_ok=True)
        self.engine.save_model(path, self.processor)
        return path

    def save_checkpoint(self, path: str) -> str:
        """The model, and the optimizer, scheduler and float32 master weights (a resume
        continues exactly)."""
        Path(path).mkdir(parents=True, exist_ok=True)
        self.engine.save_model(path, self.processor)
        self.engine.save_state(path)
        return path

    def load_training_state(self, path: str) -> None:
        """Optimizer, scheduler and master weights from a checkpoint (the model's weights
        were loaded from it at start)."""
        self.engine.load_state(path)


def _flat(values: Sequence[list[float]], part: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """The per-token values of the samples in `part`, concatenated as `like` orders them."""
    flat = [x for i in part for x in values[i]]
    return torch.tensor(flat, dtype=like.dtype, device=like.device)
