"""Weight transports (`rollout.weight_transport`), tensor-parallel engines and sleep levels.

The choice is a plain function of where the actors sit, checked table-driven and on the
shipped configs' plans; the HF engine's broadcast runs for real over gloo on CPU (the same
code NCCL runs on GPUs) from one rank and from two ZeRO-3 ranks, the engine's weights then
equal the policy's bit for bit; a worker that never takes a broadcast ends the sync within
its bound, named. vLLM's side is checked with a stand-in `LLM` (its GPU transports cannot
run here) and, in .venv-vllm, against vLLM's own classes (tests/test_rollout_vllm.py).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
import ray

from iadr1_rl.backends.local.plan import GRPOPlan
from iadr1_rl.rollout.sleep import SleepSchedule
from iadr1_rl.rollout.transport import Seat, TransportError, check_seats, choose_transport
from iadr1_rl.rollout.weight_sync import WeightSyncError
from iadr1_rl.train.config import load_config

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "recipes" / "configs"

GPU0, GPU1, GPU2 = (Seat("a", (g,)) for g in ("0", "1", "2"))
OTHER_NODE_GPU0 = Seat("b", ("0",))
CPU = Seat("a")


@pytest.mark.parametrize(
    ("requested", "worker", "policy", "engine", "tp", "expected"),
    [
        ("auto", GPU0, [GPU0], "vllm", 1, "ipc"),  # beside rank 0
        ("auto", GPU1, [GPU0, GPU1], "vllm", 1, "ipc"),  # vLLM's IPC takes a handle from every rank
        ("auto", GPU1, [GPU0, GPU1], "hf", 1, "nccl"),  # ours only rank 0's
        ("auto", GPU1, [GPU0], "hf", 1, "nccl"),
        ("auto", OTHER_NODE_GPU0, [GPU0], "vllm", 1, "nccl"),  # GPU 0 of another node is another GPU
        ("auto", CPU, [GPU0], "vllm", 1, "object_store"),
        ("auto", GPU0, [CPU], "hf", 1, "object_store"),
        ("auto", Seat("a", ("1", "2")), [GPU0], "vllm", 2, "nccl"),  # a TP engine on two other GPUs
        ("object_store", GPU0, [GPU0], "vllm", 1, "object_store"),
        ("nccl", GPU1, [GPU0], "vllm", 1, "nccl"),
        ("ipc", GPU0, [GPU0], "hf", 1, "ipc"),
    ],
)
def test_the_transport_follows_where_the_actors_sit(requested, worker, policy, engine, tp, expected):
    assert choose_transport(requested, worker, policy, engine, tp) == expected


@pytest.mark.parametrize(
    ("requested", "worker", "policy", "engine", "tp", "message"),
    [
        ("ipc", GPU1, [GPU0], "vllm", 1, r"ipc needs every GPU of the engine to be one a policy rank computes on"),
        ("ipc", GPU1, [GPU0, GPU1], "hf", 1, r"policy rank 0 computes on"),
        ("nccl", GPU0, [GPU0], "vllm", 1, r"nccl needs the engine on GPUs other than policy rank 0's"),
        ("nccl", CPU, [GPU0], "hf", 1, r"nccl needs the engine on GPUs \(the rollout worker on the CPU"),
        ("ipc", CPU, [CPU], "hf", 1, r"ipc needs"),
        ("object_store", GPU1, [GPU0], "vllm", 2, r"tensor-parallel engine's workers are processes"),
        ("auto", Seat("a", ("0", "1")), [GPU0], "vllm", 2, r"weight_transport=auto \(object_store here\)"),
        ("grpc", GPU1, [GPU0], "vllm", 1, r"choose from auto, object_store, ipc, nccl"),
    ],
)
def test_a_transport_that_cannot_work_is_refused_with_the_reason(requested, worker, policy, engine, tp, message):
    with pytest.raises(TransportError, match=message):
        choose_transport(requested, worker, policy, engine, tp)


def test_the_devices_ray_gave_are_checked_against_the_plan():
    planned = {"rollout": "ipc"}
    check_seats(planned, {"policy": GPU0, "rollout": GPU0}, ["policy"], "vllm", 1)
    with pytest.raises(TransportError, match="rollout: planned ipc, but Ray placed it otherwise"):
        check_seats(planned, {"policy": GPU0, "rollout": GPU1}, ["policy"], "vllm", 1)


def shipped(name: str, *overrides: str):
    return load_config(CONFIGS / f"{name}.yaml", list(overrides))


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory) -> dict[str, Path]:
    """Folders with the published config.json of the 2B and 7B backbones (no weights)."""
    from iadr1_rl.models.backbones import model_config

    folders = {}
    for backbone in ("qwen2_vl_2b", "qwen2_5_vl_7b"):
        config, _ = model_config("nowhere", backbone)
        folders[backbone] = tmp_path_factory.mktemp(backbone)
        config.save_pretrained(folders[backbone])
    return folders


def grpo_plan(config_name: str, folders: dict[str, Path], records: Path, *overrides: str) -> GRPOPlan:
    folder = folders[config_name]
    paths = [f"model.path={folder}", f"grpo.init={folder}", f"data.train={records}", "data.grpo_train=''"]
    return GRPOPlan.from_config(shipped(config_name, *paths, "data.eval=''", *overrides))


def test_the_shipped_layouts_send_weights_gpu_to_gpu(model_folders, synthetic_records):
    """Each shipped backbone config's rollout workers have GPUs of their own: NCCL from rank
    0; one GPU shared by all (fractional shares): CUDA IPC; on the CPU: the object store."""
    two = grpo_plan("qwen2_vl_2b", model_folders, synthetic_records)
    assert two.transports == {"rollout": "nccl"}
    seven = grpo_plan("qwen2_5_vl_7b", model_folders, synthetic_records)
    assert seven.transports == {"rollout 0": "nccl", "rollout 1": "nccl"}
    shares = ["resources.policy.num_gpus=0.5", "resources.reference.num_gpus=0.2", "resources.rollout.num_gpus=0.3"]
    shares += ["memory.device_gib=141", "rollout.gpu_memory_utilization=0.25"]  # one H200
    one_gpu = grpo_plan("qwen2_vl_2b", model_folders, synthetic_records, *shares)
    assert one_gpu.transports == {"rollout": "ipc"}
    with pytest.raises(ValueError, match=r"weight_transport=nccl needs .* \(as the memory plan places the actors"):
        grpo_plan("qwen2_vl_2b", model_folders, synthetic_records, *shares, "rollout.weight_transport=nccl")
    stored = grpo_plan("qwen2_vl_2b", model_folders, synthetic_records, "rollout.weight_transport=object_store")
    assert stored.transports == {"rollout": "object_store"}


def test_a_tensor_parallel_engine_is_planned_per_gpu_on_that_many_gpus(model_folders, synthetic_records):
    base = ["resources.num_rollout_workers=1", "memory.gpus_per_node=8"]
    one = grpo_plan("qwen2_5_vl_7b", model_folders, synthetic_records, *base, "rollout.kv_cache_gib=8")
    two = grpo_plan(
        "qwen2_5_vl_7b",
        model_folders,
        synthetic_records,
        *base,
        "rollout.kv_cache_gib=8",
        "rollout.tensor_parallel_size=2",
        "resources.rollout.num_gpus=2",
    )
    assert two.rollout_options["tensor_parallel_size"] == 2 and two.transports == {"rollout": "nccl"}
    (rollout_one,) = [a for a in one.memory.actors if a.name == "rollout"]
    (rollout_two,) = [a for a in two.memory.actors if a.name == "rollout"]
    assert rollout_two.parts["weights"] == pytest.approx(rollout_one.parts["weights"] / 2)
    (device,) = [d for d in two.memory.devices if any(a.name == "rollout" for a in d.actors)]
    assert device.gpus == 2 and two.memory.gpu_count == one.memory.gpu_count + 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["rollout.tensor_parallel_size=2"], r"rollout\.tensor_parallel_size=2: tensor parallelism needs rollout"),
        (
            ["rollout.engine=vllm", "rollout.tensor_parallel_size=2", "resources.rollout.num_gpus=1"],
            r"resources\.rollout\.num_gpus equal to it",
        ),
        (["rollout.weight_transport=nccl"], r"rollout\.weight_transport='nccl': ipc and nccl send from GPU to GPU"),
        (["rollout.sleep_level=2"], r"rollout\.sleep_level=2: sleep level 2 needs rollout\.sleep=true"),
    ],
)
def test_rollout_keys_a_layout_cannot_honour_are_refused_naming_them(
    overrides, message, tiny_model_dir, synthetic_records
):
    base = [f"model.path={tiny_model_dir}", f"data.train={synthetic_records}"]
    with pytest.raises(ValueError, match=message):
        GRPOPlan.from_config(load_config(None, [*base, *overrides]))


def test_sleep_level_two_drops_the_weights_only_where_a_sync_refills_them():
    one, two = SleepSchedule(1), SleepSchedule(2)
    for schedule in (one, two):
        assert schedule.start() == 1  # the loaded weights sample the first step
        assert schedule.before_generate() == ["weights", "kv_cache"]
    assert (one.after_generate(), two.after_generate()) == (1, 2)
    assert one.before_generate() == ["weights", "kv_cache"]  # level 1 kept them: sampling again is fine
    with pytest.raises(WeightSyncError, match="sleep_level=2 dropped the engine's weights"):
        two.before_generate()
    assert two.before_sync() == ["weights"] and two.before_sync() == []  # woken once
    two.after_sync()
    assert two.before_generate() == ["kv_cache"]  # the synced weights stay awake
    with pytest.raises(ValueError, match=r"rollout\.sleep_level must be 1 or 2"):
        SleepSchedule(3)


class StandInLLM:
    """Records what the engine asks of vLLM's `LLM` (its GPU paths cannot run here)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.llm_engine = self

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self.calls.append((name, *args, *kwargs.values()))


def stand_in_engine(sleep: bool, level: int):
    from iadr1_rl.rollout.vllm import VLLMEngine

    engine = VLLMEngine.__new__(VLLMEngine)  # the engine without vLLM: its bookkeeping only
    engine.llm, engine.sleeps, engine.schedule, engine._pending = StandInLLM(), sleep, SleepSchedule(level), []
    return engine


def test_vllm_transfers_wake_only_the_weights_and_reset_every_cache():
    engine = stand_in_engine(sleep=True, level=2)
    engine.schedule.start(), engine.schedule.before_generate(), engine.schedule.after_generate()
    engine.init_transfer({"packed": False})
    engine.start_transfer()
    engine.receive({"names": ["a"]})
    engine.finish_transfer()
    names = [call[0] for call in engine.llm.calls]
    assert names == [
        "init_weight_transfer_engine",
        "wake_up",
        "start_weight_update",
        "update_weights",
        "finish_weight_update",
        "reset_prefix_cache",
        "reset_encoder_cache",
        "reset_mm_cache",
    ]
    assert engine.llm.calls[1] == ("wake_up", ["weights"])
    assert engine.llm.calls[0] == ("init_weight_transfer_engine", {"init_info": {"packed": False}})
    assert engine.llm.calls[3] == ("update_weights", {"update_info": {"names": ["a"]}})
    assert engine.schedule.before_generate() == ["kv_cache"]


def test_vllm_object_store_sync_loads_once_and_without_sleep_wakes_nothing():
    engine = stand_in_engine(sleep=False, level=1)
    engine.load_weights([("a", 1)])
    engine.load_weights([("b", 2)])
    engine.finish_sync()
    assert engine.llm.calls[0] == ("collective_rpc", "reload_weights", {"weights_iterator": [("a", 1), ("b", 2)]})
    assert [c[0] for c in engine.llm.calls[1:]] == ["reset_prefix_cache", "reset_encoder_cache", "reset_mm_cache"]


def test_a_cpu_vllm_engine_refuses_gpu_layouts():
    from iadr1_rl.rollout.vllm import engine_layout_args

    with pytest.raises(ValueError, match="the engine is on the CPU"):
        engine_layout_args(2, "object_store", on_gpu=False)
    with pytest.raises(ValueError, match="weight_transport=ipc"):
        engine_layout_args(1, "ipc", on_gpu=False)


# ------------------------------------------------------------- real transfers
def rollout_digest(rollout) -> str:
    """The rollout engine's weights hashed as `PolicyActor.weights_digest` hashes the policy's
    (a function local to this one, so that Ray ships it by value)."""

    def digest_of(self) -> str:
        import torch

        from iadr1_rl.rollout.weight_sync import checkpoint_named_parameters

        digest = hashlib.sha256()
        for _, parameter in checkpoint_named_parameters(self.engine.model):
            digest.update(parameter.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    return ray.get(rollout.__ray_call__.remote(digest_of))


def nudge(actor, scale: float) -> None:
    """Move every weight of the policy (every rank's shard alike)."""

    def move(self):
        import torch

        with torch.no_grad():
            for parameter in self.model.parameters():
                getattr(parameter, "ds_tensor", parameter).add_(scale)  # a ZeRO-3 rank: its shard

    ray.get(actor.__ray_call__.remote(move))


def start_pair(model_dir: Path, world: int, rollout_cls=None):
    from iadr1_rl.actors import PolicyActor, RolloutActor
    from iadr1_rl.backends.local.actor_groups import GRPOActors, PolicyGroup
    from iadr1_rl.backends.local.plan import RanksPlan

    ranks = RanksPlan("deepspeed", world, 3, False) if world > 1 else RanksPlan("none", 1, 2, False)
    policy = PolicyGroup.start(
        ranks, lambda _: ray.remote(num_cpus=0.3)(PolicyActor).remote(str(model_dir), torch_threads=1)
    )
    rollout = ray.remote(num_cpus=0.3)(rollout_cls or RolloutActor).remote(str(model_dir), torch_threads=1)
    ray.get(rollout.ready.remote())
    return GRPOActors(policy, [], [rollout], transports=["gloo"]), rollout


def open_broadcast(actors, rollout, timeout_s: float) -> None:
    address, port = ray.get(actors.policy.ranks[0].rendezvous.remote())
    ray.get(
        [
            rank.open_weight_transfer.remote(rollout, "rollout worker 0", "gloo", "hf", address, port, 1, timeout_s)
            for rank in actors.policy.ranks
        ]
    )


def test_a_broadcast_sync_gives_the_engine_the_policys_weights_and_a_hung_engine_is_named(ray_session, tiny_model_dir):
    """Two ZeRO-3 ranks (rank 0 sends, rank 1 gathers with it): after each of two syncs the
    engine holds the policy's weights bit for bit; then an engine that never takes the
    broadcast ends the sync within its bound, named."""
    actors, rollout = start_pair(tiny_model_dir, 2)
    try:
        open_broadcast(actors, rollout, timeout_s=60)
        for version, scale in ((1, 0.01), (2, -0.003)):
            for rank in actors.policy.ranks:
                nudge(rank, scale)
            before = rollout_digest(rollout)
            actors.sync_weights(timeout_s=60)
            after = rollout_digest(rollout)
            policy = actors.policy.weights_digests()
            assert len(set(policy)) == 1 and after == policy[0] != before
            assert ray.get(rollout.weights_version.remote()) == version == actors.weights_version

        def short_bound(self):
            for client, _ in self._transfers.values():
                client.timeout_s = 3

        ray.get(actors.policy.ranks[0].__ray_call__.remote(short_bound))
        rollout.__ray_call__.remote(lambda self: __import__("time").sleep(3600))  # the engine hangs
        started = time.monotonic()
        with pytest.raises(WeightSyncError, match="rollout worker 0"):
            actors.sync_weights(timeout_s=3)
        assert time.monotonic() - started < 30
    finally:
        actors.kill()
