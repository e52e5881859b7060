"""Weight syncs: buckets rebuild every parameter exactly (any dtype), a worker confirms a
version only when it took all of it, and a sync that does not happen stops the run."""

from __future__ import annotations

import pytest
import ray
import torch

from iadr1_rl.backends.local.actor_groups import check_versions
from iadr1_rl.rollout.weight_sync import WeightReceiver, WeightSender, WeightSyncError, bucket_layout


class Tiny(torch.nn.Module):
    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.a = torch.nn.Linear(16, 32).to(dtype)
        self.b = torch.nn.Linear(32, 8, bias=False).to(dtype)
        self.c = torch.nn.Embedding(10, 4).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_buckets_rebuild_every_parameter_exactly(dtype):
    source, target = Tiny(dtype), Tiny(dtype)
    sender = WeightSender(source, bucket_bytes=600)
    assert sender.count > 1
    got = {}
    for index in range(sender.count):
        got.update(dict(sender.bucket(index, version=3).tensors()))
    assert got.keys() == dict(source.named_parameters()).keys()
    for name, parameter in source.named_parameters():
        assert got[name].dtype == dtype and torch.equal(got[name], parameter.detach())
    assert not any(torch.equal(p, q) for p, q in zip(source.parameters(), target.parameters()))


def test_a_version_is_held_only_once_every_bucket_came():
    sender = WeightSender(Tiny(torch.float32), bucket_bytes=600)
    receiver, loaded = WeightReceiver(), []
    results = [receiver.take(sender.bucket(i, 1), loaded.extend) for i in range(sender.count)]
    assert results[-1] == 1 and results[:-1] == [None] * (sender.count - 1) and receiver.version == 1
    assert len(loaded) == len(sender.named)
    # Version 2 with its first bucket lost on the way: the last one reveals it.
    with pytest.raises(WeightSyncError, match=r"sync 2 ended without bucket\(s\) \[0\]"):
        for i in range(1, sender.count):
            receiver.take(sender.bucket(i, 2), loaded.extend)
    assert receiver.version == 1  # still the last whole version
    with pytest.raises(WeightSyncError, match="version 1 after version 3 began"):
        receiver.take(sender.bucket(0, 3), loaded.extend)
        receiver.take(sender.bucket(0, 1), loaded.extend)


def test_bucket_layout_keeps_order_and_size():
    assert bucket_layout([3, 3, 3], 6) == [[0, 1], [2]]
    assert bucket_layout([10], 6) == [[0]]
    assert bucket_layout([], 6) == []


def test_stale_workers_are_named():
    check_versions(4, [4, 4])
    with pytest.raises(WeightSyncError, match=r"did not reach rollout worker\(s\) \[1\] \(they hold \[3\]\)"):
        check_versions(4, [4, 3])


def test_a_sync_that_does_not_happen_stops_the_run(ray_session, tiny_model_dir):
    """Through real Ray actors: a rollout worker that drops the weights it is sent holds the
    old version; the driver's sync raises instead of sampling from stale weights."""
    from iadr1_rl.actors import PolicyActor, RolloutActor
    from iadr1_rl.backends.local.actor_groups import GRPOActors, PolicyGroup
    from iadr1_rl.backends.local.plan import RanksPlan

    class DroppingRollout(RolloutActor):
        def load_weights(self, bucket):
            return self.weights.version  # says what it holds, took nothing

    policy = ray.remote(PolicyActor).remote(str(tiny_model_dir))
    good = ray.remote(RolloutActor).remote(str(tiny_model_dir))
    dropping = ray.remote(DroppingRollout).remote(str(tiny_model_dir))
    actors = GRPOActors(PolicyGroup(RanksPlan("none", 1, 2, False), [policy]), [], [good, dropping])
    try:
        with pytest.raises(
            WeightSyncError, match=r"weight sync 1 did not reach rollout worker\(s\) \[1\] \(they hold \[0\]\)"
        ):
            actors.sync_weights(bucket_bytes=1_000_000)
        assert ray.get(good.peak_memory.remote()) is not None
    finally:
        for actor in (policy, good, dropping):
            ray.kill(actor)


def test_a_sync_an_engine_never_answers_ends_within_its_bound(ray_session, tiny_model_dir):
    """A rollout worker that never returns from a bucket (a hung engine): the sync ends within
    rollout.sync_timeout_s with an error naming it, instead of hanging the run."""
    import time

    from iadr1_rl.actors import PolicyActor, RolloutActor
    from iadr1_rl.backends.local.actor_groups import GRPOActors, PolicyGroup
    from iadr1_rl.backends.local.plan import RanksPlan

    class HungRollout(RolloutActor):
        def load_weights(self, bucket):
            time.sleep(3600)

    policy = ray.remote(PolicyActor).remote(str(tiny_model_dir))
    hung = ray.remote(HungRollout).remote(str(tiny_model_dir))
    actors = GRPOActors(PolicyGroup(RanksPlan("none", 1, 2, False), [policy]), [], [hung])
    try:
        ray.get([policy.ready.remote(), hung.ready.remote()])
        started = time.monotonic()
        late = r"rollout worker 0 was lost: did not answer within rollout\.sync_timeout_s=3 s \(weight sync 1\)"
        with pytest.raises(WeightSyncError, match=late):
            actors.sync_weights(bucket_bytes=1_000_000, timeout_s=3)
        assert time.monotonic() - started < 30
    finally:
        for actor in (policy, hung):
            ray.kill(actor)
