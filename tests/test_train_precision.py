"""A 16-bit policy trains through float32 master weights: at SC-GRPO's learning rate its
weights move, where bf16 weights alone would not; what it hands on is in its dtype."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from iadr1_rl.actors import PolicyActor
from iadr1_rl.data.records import load_records
from iadr1_rl.train.engine import OptimizerSettings


@pytest.fixture(scope="module")
def records(synthetic_records):
    return load_records(synthetic_records)[:4]


def moved(policy: PolicyActor, records) -> float:
    """The share of weights an SFT step at lr 1e-6 changes."""
    before = {n: p.detach().clone() for n, p in policy.model.named_parameters()}
    policy.sft_step(records)
    changed = sum((p.detach() != before[n]).sum().item() for n, p in policy.model.named_parameters())
    return changed / sum(p.numel() for p in before.values())


def test_bf16_updates_at_a_small_learning_rate_need_master_weights(tiny_model_dir, records):
    settings = OptimizerSettings(lr=1e-6, total_steps=10)
    master = PolicyActor(str(tiny_model_dir), dtype="bfloat16", optimizer=settings)
    assert master.model.dtype == torch.float32 and master.compute_dtype == torch.bfloat16
    pure = PolicyActor(str(tiny_model_dir), dtype="bfloat16", optimizer=settings, master_weights=False)
    assert pure.model.dtype == torch.bfloat16
    assert moved(master, records) > 0.9  # nearly every weight takes its update
    assert moved(pure, records) < 0.05  # in bf16 the same updates round away


def test_what_a_master_weight_policy_hands_on_is_in_its_dtype(tiny_model_dir, records, tmp_path):
    policy = PolicyActor(str(tiny_model_dir), dtype="bfloat16", optimizer=OptimizerSettings(lr=1e-3))
    policy.sft_step(records)
    policy.save_model(str(tmp_path / "final"))
    policy.save_checkpoint(str(tmp_path / "checkpoint"))
    final = load_file(tmp_path / "final" / "model.safetensors")
    checkpoint = load_file(tmp_path / "checkpoint" / "model.safetensors")
    assert {t.dtype for t in final.values()} == {torch.bfloat16}  # the model to evaluate and share
    assert {t.dtype for t in checkpoint.values()} == {torch.float32}  # a resume continues exactly
    weight = policy.model.get_output_embeddings().weight.detach()
    saved = next(name for name, tensor in checkpoint.items() if tensor.shape == weight.shape and "embed" in name)
    assert torch.equal(checkpoint[saved], weight)
    assert torch.equal(final[saved], weight.to(torch.bfloat16))
    policy.weight_buckets(bucket_bytes=1 << 20)
    bucket = policy.weight_bucket(0, version=1)
    assert set(bucket.dtypes) == {"bfloat16"}  # weight syncs travel in the engines' dtype
