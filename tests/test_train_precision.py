"""16-bit policies: they forward the same weights as the reference and the engines (so the
KL is 0 at step 0), their optimizer steps float32 master weights (so updates at SC-GRPO's
learning rate are not rounded away), float16 gets a loss scaler, and checkpoints resume
exactly."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from iadr1_rl.actors import PolicyActor, ReferenceActor
from iadr1_rl.data.records import load_records
from iadr1_rl.models.encoding import encode_prompts
from iadr1_rl.train.engine import OptimizerSettings
from iadr1_rl.train.losses import PPOSettings
from iadr1_rl.train.precision import check_precision
from iadr1_rl.train.sequences import GRPOBatch, Sample, target_ids


@pytest.fixture(scope="module")
def records(synthetic_records):
    return load_records(synthetic_records)[:4]


def masters(policy: PolicyActor) -> list[torch.Tensor]:
    return [m.detach().clone() for m in policy.engine.master.params]


def test_bf16_updates_at_a_small_learning_rate_move_the_master_weights(tiny_model_dir, records):
    settings = OptimizerSettings(lr=1e-6, total_steps=10)
    policy = PolicyActor(str(tiny_model_dir), dtype="bfloat16", optimizer=settings)
    assert policy.model.dtype == torch.bfloat16  # it forwards what the reference and the engines hold
    before = masters(policy)
    policy.sft_step(records)
    after = masters(policy)
    changed = sum((a != b).sum().item() for a, b in zip(after, before)) / sum(b.numel() for b in before)
    assert changed > 0.9  # nearly every weight takes its update (in bf16 alone, under 5% did)
    model = [p.detach() for p in policy.model.parameters() if p.requires_grad]
    assert all(torch.equal(p, m.to(torch.bfloat16)) for p, m in zip(model, after))  # the model is their rounding
    pure = PolicyActor(str(tiny_model_dir), dtype="bfloat16", optimizer=settings, master_weights=False)
    weights = [p.detach().clone() for p in pure.model.parameters()]
    pure.sft_step(records)
    moved = sum((p.detach() != w).sum().item() for p, w in zip(pure.model.parameters(), weights))
    assert moved / sum(w.numel() for w in weights) < 0.05  # the same updates round away in bf16


def test_in_bf16_the_policy_and_the_reference_agree_at_step_0(tiny_model_dir, records):
    """One SC-GRPO step, one micro-batch: the policy's log-probs are the reference's, so the
    KL is 0 (under autocast over float32 weights it was 1.5e-6 per token)."""
    policy = PolicyActor(str(tiny_model_dir), dtype="bfloat16", optimizer=OptimizerSettings(lr=1e-6))
    reference = ReferenceActor(str(tiny_model_dir), dtype="bfloat16")
    tokenizer = policy.processor.tokenizer
    prompts = encode_prompts(policy.processor, records, "train")
    samples = [Sample(p, target_ids(tokenizer, r.response)) for p, r in zip(prompts, records)]
    ref = reference.response_logprobs(samples)
    assert policy.response_logprobs(samples) == ref
    metrics = policy.grpo_step(GRPOBatch(samples, [1.0, -1.0, 0.5, -0.5], ref), PPOSettings(beta=0.04))
    assert metrics["micro_batches"] == 1 and metrics["kl"] < 1e-8 and metrics["ratio"] == 1.0


def test_float16_trains_with_a_loss_scaler_and_pure_float16_is_refused(tiny_model_dir, records):
    policy = PolicyActor(str(tiny_model_dir), dtype="float16", optimizer=OptimizerSettings(lr=1e-3))
    before = masters(policy)
    metrics = policy.sft_step(records)
    assert policy.engine.scaler is not None and policy.engine.scaler.get_scale() > 1
    assert metrics["grad_norm"] > 0 and any(not torch.equal(a, b) for a, b in zip(masters(policy), before))
    with pytest.raises(ValueError, match="loss-scaled"):
        check_precision("float16", master_weights=False)
    pure = PolicyActor(str(tiny_model_dir), dtype="float16", master_weights=False)
    with pytest.raises(ValueError, match=r"model\.master_weights"):
        pure.sft_step(records)


def test_what_a_16_bit_policy_hands_on_and_how_it_resumes(tiny_model_dir, records, tmp_path):
    settings = OptimizerSettings(lr=1e-3, total_steps=10)
    policy = PolicyActor(str(tiny_model_dir), dtype="bfloat16", optimizer=settings)
    policy.sft_step(records)
    policy.save_model(str(tmp_path / "final"))
    policy.save_checkpoint(str(tmp_path / "checkpoint"))
    final = load_file(tmp_path / "final" / "model.safetensors")
    assert {t.dtype for t in final.values()} == {torch.bfloat16}  # the model to evaluate and share
    policy.weight_buckets(bucket_bytes=1 << 20)
    assert set(policy.weight_bucket(0, version=1).dtypes) == {"bfloat16"}  # syncs in the engines' dtype
    # A resume from the checkpoint continues exactly: the float32 master weights come back.
    resumed = PolicyActor(str(tmp_path / "checkpoint"), dtype="bfloat16", optimizer=settings)
    resumed.load_training_state(str(tmp_path / "checkpoint"))
    assert all(torch.equal(a, b) for a, b in zip(masters(resumed), masters(policy)))
    policy.sft_step(records)
    resumed.sft_step(records)
    assert all(torch.equal(a, b) for a, b in zip(masters(resumed), masters(policy)))
    plain = PolicyActor(str(tmp_path / "checkpoint"), dtype="bfloat16", master_weights=False, optimizer=settings)
    with pytest.raises(ValueError, match="master weights"):
        plain.load_training_state(str(tmp_path / "checkpoint"))


def test_models_are_created_on_their_device(tiny_model_dir, monkeypatch):
    """Never loaded on the host first (a 7B model would need its size in host memory)."""
    from transformers import AutoModelForImageTextToText

    from iadr1_rl.models.loading import load_vlm

    seen = {}
    original = AutoModelForImageTextToText.from_pretrained

    def spy(path, **kwargs):
        seen.update(kwargs)
        return original(path, **kwargs)

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", spy)
    model, _ = load_vlm(tiny_model_dir, dtype="bfloat16", device="cpu")
    assert seen["device_map"] == "cpu" and seen["dtype"] == torch.bfloat16 and model.dtype == torch.bfloat16
