"""Our side of vLLM's weight-transfer engines, against vLLM's own classes (.venv-vllm):
its GPU transports cannot run here, so what is checked is every value we hand it.

- the engine arguments a tensor-parallel, NCCL-fed engine is built with are vLLM's
  (`EngineArgs` takes them, the transfer backend becomes its `WeightTransferConfig`);
- the policy's `CheckpointSource` says in `metadata()` exactly what it then yields (vLLM's
  NCCL trainer checks the two agree: a disagreement hangs or loads garbage);
- the trainer half is asked of vLLM's factory with the rendezvous and rank we mean.
"""

from __future__ import annotations

import contextlib

import pytest

pytestmark = pytest.mark.vllm


def test_vllm_takes_the_engine_arguments_of_a_tensor_parallel_nccl_engine():
    from vllm.config.weight_transfer import WeightTransferConfig
    from vllm.distributed.weight_transfer.factory import WeightTransferEngineFactory
    from vllm.engine.arg_utils import EngineArgs

    from iadr1_rl.rollout.vllm import engine_layout_args

    args = EngineArgs(model="unused", **engine_layout_args(2, "nccl", on_gpu=True))
    assert args.weight_transfer_config == WeightTransferConfig(backend="nccl")
    assert (args.tensor_parallel_size, args.distributed_executor_backend) == (2, "mp")
    assert {"ipc", "nccl"} <= set(WeightTransferEngineFactory._registry)


def test_the_checkpoint_source_yields_what_its_metadata_declares(tiny_model_dir):
    from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerWeightTransferEngine

    from iadr1_rl.models.loading import load_vlm
    from iadr1_rl.rollout.transfer import CheckpointSource
    from iadr1_rl.rollout.weight_sync import checkpoint_named_parameters

    model, _ = load_vlm(str(tiny_model_dir))
    named = checkpoint_named_parameters(model)
    gathered = []

    def gather(parameters):
        gathered.append(len(parameters))
        return contextlib.nullcontext()

    source = CheckpointSource(named, gather, bucket_bytes=200_000)
    sent = list(NCCLTrainerWeightTransferEngine._checked_iter(source, source.metadata()))
    assert [name for name, _ in sent] == [name for name, _ in named]
    assert sum(gathered) == len(named) and len(gathered) == len(source.layout) > 1  # a bucket at a time
    assert all(name.startswith(("model.", "visual.", "lm_head")) for name, _ in sent)  # checkpoint names


def test_the_trainer_half_is_asked_of_vllm_with_our_rendezvous(monkeypatch):
    from vllm.distributed.weight_transfer.factory import WeightTransferTrainerFactory

    from iadr1_rl.rollout import transfer

    asked = []
    monkeypatch.setattr(
        WeightTransferTrainerFactory, "trainer_init", classmethod(lambda cls, info, **kw: asked.append((info, kw)))
    )
    client, source = object(), object()
    transfer.open_trainer("nccl", "vllm", 0, client, source, "10.0.0.5", 4321, tensor_parallel=2)
    transfer.open_trainer("ipc", "vllm", 1, client, source, "10.0.0.5", 4321)
    (nccl, kwargs), (ipc, _) = asked
    assert (nccl.backend, nccl.master_address, nccl.master_port, nccl.world_size) == ("nccl", "10.0.0.5", 4321, 3)
    assert nccl.is_sender and kwargs == {"client": client, "source": source}
    assert ipc.backend == "ipc" and not ipc.is_sender
    with pytest.raises(ValueError, match="vLLM's weight-transfer engines are ipc and nccl"):
        transfer.open_trainer("gloo", "vllm", 0, client, source, "10.0.0.5", 4321)
