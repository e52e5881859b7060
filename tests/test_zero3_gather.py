"""ZeRO-3 on gloo: a gather of whole parameters (what a checkpoint and a weight sync read)
returns only once every all-gather it launched has ended. Two DeepSpeed ranks built by our
`build_engine`, each in a process of its own (this file run as a script: a rank needs its
own process group)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from iadr1_rl.train.distributed import DistributedSpec, free_port, zero3_gather_settings
from iadr1_rl.train.engine import OptimizerSettings, build_engine


class GatherSpy:
    """Stands between DeepSpeed's gather and torch.distributed: counts the asynchronous
    all-gathers launched and those whose handle was waited for."""

    def __init__(self, module) -> None:
        self.module = module
        self.launched = 0
        self.waited: set[int] = set()
        self.originals = {name: getattr(module.dist, name) for name in ("all_gather_into_tensor", "all_gather")}

    def __enter__(self) -> GatherSpy:
        for name, original in self.originals.items():
            setattr(self.module.dist, name, self._spying(original))
        return self

    def __exit__(self, *exc) -> None:
        for name, original in self.originals.items():
            setattr(self.module.dist, name, original)

    def _spying(self, original):
        def call(*args, **kwargs):
            handle = original(*args, **kwargs)
            if not kwargs.get("async_op"):
                return handle
            self.launched += 1
            return WaitCounted(handle, self.waited, self.launched - 1)

        return call


class WaitCounted:
    """An all-gather's handle that notes when it is waited for (torch's `Work.wait` cannot be
    replaced on the handle itself)."""

    def __init__(self, handle, waited: set[int], index: int) -> None:
        self.handle, self.waited, self.index = handle, waited, index

    def wait(self, *args, **kwargs):
        self.waited.add(self.index)
        return self.handle.wait(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.handle, name)


def gather_in_rank(rank: int, port: int, out: str) -> None:
    import deepspeed.runtime.zero.partition_parameters as partition_parameters

    torch.manual_seed(0)
    # 131,072-element weights: over DeepSpeed's persistence threshold (1e5), so sharded at any stage.
    model = torch.nn.Sequential(*(torch.nn.Linear(512, 256) for _ in range(4)))
    whole = {name: p.detach().clone() for name, p in model.named_parameters()}
    spec = DistributedSpec("deepspeed", rank, 2, master_port=port, zero_stage=3)
    engine = build_engine(model, OptimizerSettings(), spec)
    sharded = [name for name, p in model.named_parameters() if p.numel() < whole[name].numel()]
    with GatherSpy(partition_parameters) as spy, engine.gathered(list(model.parameters())):
        # What the gather has returned, before anything else could end what it left running.
        unwaited = spy.launched - len(spy.waited)
        equal = all(torch.equal(p.detach(), whole[name]) for name, p in model.named_parameters())
    Path(out, f"rank{rank}.json").write_text(json.dumps({"sharded": sharded, "unwaited": unwaited, "equal": equal}))


def test_a_zero3_gather_on_gloo_waits_for_every_all_gather(tmp_path):
    port = str(free_port("127.0.0.1"))
    ranks = [
        subprocess.Popen([sys.executable, __file__, str(rank), port, str(tmp_path)], stderr=subprocess.PIPE, text=True)
        for rank in range(2)
    ]
    try:
        errors = [rank.communicate(timeout=300)[1] for rank in ranks]
    finally:
        for rank in ranks:
            rank.kill()
    for rank, process in enumerate(ranks):
        assert process.returncode == 0, errors[rank][-3000:]
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert len(result["sharded"]) >= 4, result  # the gather had shards to fetch
        # DeepSpeed's coalesced gather left all but its last all-gather unwaited (measured: 7 of 8).
        assert result["unwaited"] == 0, result
        assert result["equal"], result


@pytest.mark.parametrize(
    ("backend", "settings"),
    [("gloo", {"stage3_allgather_sequential": True}), ("nccl", {})],
)
def test_zero3_gathers_one_parameter_at_a_time_only_on_gloo(backend, settings):
    assert zero3_gather_settings(backend) == settings


def test_an_unknown_backend_is_named():
    with pytest.raises(ValueError, match="unknown process-group backend 'mpi'"):
        zero3_gather_settings("mpi")


if __name__ == "__main__":  # one rank: RANK PORT OUT_DIR
    gather_in_rank(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
