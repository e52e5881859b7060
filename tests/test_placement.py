"""Where actors compute and in what order they start, decided without a GPU: an actor's
device comes from the GPUs Ray assigned it (a local Ray told it has one GPU stands in for
a GPU node), rollout workers on a GPU are ready before the policy and the reference load,
and a vLLM engine on a GPU is always told its share (vLLM stands in as a fake that keeps
what it was built with)."""

from __future__ import annotations

import os
import sys
import types
from typing import ClassVar

import pytest
import ray
import torch

from iadr1_rl.actors import ReferenceActor
from iadr1_rl.actors.placement import assigned_device
from iadr1_rl.backends.local import actor_groups, ray_env
from iadr1_rl.backends.local.plan import GRPOPlan
from iadr1_rl.memory.plan import plan_memory
from iadr1_rl.train.config import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def one_gpu_ray():
    """A local Ray that believes it has one GPU, on a node where GPU 0 is visible to every
    process (as on a GPU machine, where nothing hides it)."""
    ray.init(
        address="local",
        num_cpus=2,
        num_gpus=1,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": ROOT, "CUDA_VISIBLE_DEVICES": "0"}},
    )
    yield
    ray.shutdown()


def test_an_actor_computes_on_the_gpus_ray_assigned_it(one_gpu_ray):
    class Probe:  # local: Ray ships it by value
        def where(self) -> tuple[str, str | None]:
            return assigned_device(), os.environ.get("CUDA_VISIBLE_DEVICES")

    on_gpu = ray_env.remote(Probe, {"num_cpus": 0.5, "num_gpus": 0.5}).remote()
    off_gpu = ray_env.remote(Probe, {"num_cpus": 0.5, "num_gpus": 0}).remote()
    assert ray.get(on_gpu.where.remote()) == ("cuda:0", "0")
    # Ray 2.60 leaves CUDA_VISIBLE_DEVICES alone for a zero-GPU actor: we hide the GPUs.
    assert ray.get(off_gpu.where.remote()) == ("cpu", "")
    assert assigned_device() == "cpu"  # the driver: Ray assigns it no GPU


def test_a_visible_gpu_does_not_pull_an_actor_onto_it(tiny_model_dir, monkeypatch):
    """A process that sees a GPU but was assigned none (Ray 2.60's zero-GPU actor) loads on
    the CPU: the device never comes from torch.cuda.is_available()."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    reference = ReferenceActor(str(tiny_model_dir))
    assert reference.model.device.type == "cpu" and reference.memory.device.type == "cpu"


def gpu_plan(tiny_model_dir, synthetic_records, *extra: str) -> GRPOPlan:
    shares = ["resources.policy.num_gpus=0.4", "resources.reference.num_gpus=0.3", "resources.rollout.num_gpus=0.3"]
    base = [f"model.path={tiny_model_dir}", f"data.train={synthetic_records}", "memory.device_gib=80"]
    return GRPOPlan.from_config(load_config(None, [*base, *shares, *extra]))


class FakePlacement:
    """Stands in for `ray_env.Placement`: makes handles that record their creation and readiness."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    def remote(self, cls, name):
        def create(**kwargs):
            self.events.append(f"create {cls.__name__}")
            return types.SimpleNamespace(ready=types.SimpleNamespace(remote=lambda: f"ready {cls.__name__}"))

        return types.SimpleNamespace(remote=create)


def ready_calls(handles: dict) -> list[str]:
    """What a stage's wait asks of its (stand-in) actors."""
    return [handle.ready.remote() for handle in handles.values()]


def test_rollout_workers_on_a_gpu_are_ready_before_the_policy_and_reference_load(
    tiny_model_dir, synthetic_records, monkeypatch
):
    events: list[str] = []
    monkeypatch.setattr(actor_groups, "wait_ready", lambda handles, timeout_s: events.extend(ready_calls(handles)))
    # (the object store: these stand-in actors have no transports to open; tests/test_weight_transport.py)
    plan = gpu_plan(
        tiny_model_dir,
        synthetic_records,
        "resources.num_rollout_workers=2",
        "rollout.sleep=true",
        "rollout.weight_transport=object_store",
    )
    actors = actor_groups.GRPOActors.start(plan, str(tiny_model_dir), FakePlacement(events))
    assert len(actors.rollouts) == 2
    created_policy = events.index("create PolicyActor")
    assert events.count("create RolloutActor") == 2
    assert all(events.index(e) < created_policy for e in events if e.startswith("ready") and "Rollout" in e)
    assert events.index("create ReferenceActor") > max(i for i, e in enumerate(events) if "Rollout" in e)


def test_a_failed_start_kills_the_actors_already_started(tiny_model_dir, synthetic_records, monkeypatch):
    killed = []

    def fake_wait_ready(handles, timeout_s):
        if "ready PolicyActor" in ready_calls(handles):
            raise RuntimeError("the policy could not start")

    monkeypatch.setattr(actor_groups, "wait_ready", fake_wait_ready)
    monkeypatch.setattr(actor_groups.ray, "kill", killed.append)
    with pytest.raises(RuntimeError, match="could not start"):
        actor_groups.GRPOActors.start(
            gpu_plan(tiny_model_dir, synthetic_records), str(tiny_model_dir), FakePlacement([])
        )
    assert len(killed) == 3  # the rollout worker, the policy and the reference


def test_ray_places_the_actors_where_the_plan_did(one_gpu_ray, tiny_model_dir, synthetic_records):
    """Fractional GPU shares packed as the memory plan packed them: a placement group of its
    devices, each actor in its device's bundle."""
    plan = gpu_plan(tiny_model_dir, synthetic_records)
    devices = plan.memory.devices
    assert [d.device for d in devices] == ["GPU 0"] and plan.memory.gpu_count == 1
    placement = ray_env.Placement.create(plan.memory, plan.resources)

    class Probe:
        def where(self) -> tuple[str, str | None]:
            return assigned_device(), os.environ.get("CUDA_VISIBLE_DEVICES")

    try:
        bundles, _ = ray_env.placement_bundles(devices, plan.resources)
        assert bundles == [{"CPU": 1.0 + 0.5 + 0.5, "GPU": 1}]
        probes = [placement.remote(Probe, name).remote() for name in ("policy", "rollout")]
        assert ray.get([p.where.remote() for p in probes]) == [("cuda:0", "0"), ("cuda:0", "0")]
        for probe in probes:
            ray.kill(probe)
    finally:
        placement.remove()


class FakeLLM:
    """What `vllm.LLM` was built with, and the calls a rollout engine makes at start."""

    built: ClassVar[dict] = {}

    def __init__(self, **kwargs) -> None:
        FakeLLM.built = kwargs
        config = types.SimpleNamespace(image_token_id=None, video_token_id=None)
        self.llm_engine = types.SimpleNamespace(model_config=types.SimpleNamespace(hf_config=config))
        self.sleeping = False

    def sleep(self, level: int) -> None:
        self.sleeping = True


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM = FakeLLM
    monkeypatch.setitem(sys.modules, "vllm", module)
    return FakeLLM


@pytest.mark.parametrize("kv_cache_gib", [None, 2.0])
def test_a_vllm_engine_on_a_gpu_always_gets_its_share(fake_vllm, tiny_model_dir, kv_cache_gib):
    from iadr1_rl.rollout.vllm import VLLMEngine

    engine = VLLMEngine(
        str(tiny_model_dir), gpu_memory_utilization=0.3, kv_cache_gib=kv_cache_gib, sleep=True, device="cuda:0"
    )
    built = fake_vllm.built
    assert built["gpu_memory_utilization"] == 0.3  # never vLLM's 0.92 of a GPU other actors hold memory on
    assert built.get("kv_cache_memory_bytes") == (None if kv_cache_gib is None else 2 * 2**30)
    assert built["enforce_eager"] is False  # CUDA graphs on a GPU
    assert built["enable_sleep_mode"] is True and engine.llm.sleeping  # asleep before the policy loads
    assert "enable_chunked_prefill" not in built  # the CPU's workaround stays on the CPU


def test_a_vllm_engine_on_the_cpu_sizes_its_kv_cache(fake_vllm, tiny_model_dir, monkeypatch):
    from iadr1_rl.rollout import vllm as vllm_engine

    monkeypatch.setattr(vllm_engine, "keep_cpu_linear_weights", lambda: None)
    vllm_engine.VLLMEngine(str(tiny_model_dir), gpu_memory_utilization=0.3, sleep=True, device="cpu")
    built = fake_vllm.built
    assert built["kv_cache_memory_bytes"] == 2**30 and "gpu_memory_utilization" not in built
    assert built["enforce_eager"] is True and built["enable_sleep_mode"] is False
    vllm_engine.VLLMEngine(str(tiny_model_dir), enforce_eager=False, device="cpu")
    assert fake_vllm.built["enforce_eager"] is False  # a set value is kept


def test_the_plan_counts_what_the_engine_is_told(tiny_model_dir, synthetic_records):
    shared = ["rollout.engine=vllm", "rollout.gpu_memory_utilization=0.25"]
    config = load_config(
        None,
        [f"model.path={tiny_model_dir}", f"data.train={synthetic_records}", "memory.device_gib=80", *shared]
        + ["resources.policy.num_gpus=0.4", "resources.reference.num_gpus=0.3", "resources.rollout.num_gpus=0.3"],
    )
    rollout = plan_memory(config, "sc_grpo").actors[-1]
    assert rollout.parts == {"vllm_share": 0.25 * 80 * 2**30}
    config.rollout.kv_cache_gib = 3.0
    rollout = plan_memory(config, "sc_grpo").actors[-1]
    assert rollout.parts["kv_cache"] == 3 * 2**30 and "vllm_share" not in rollout.parts


def test_the_evaluation_generates_in_an_actor_what_hf_generates_here(one_gpu_ray, tiny_model_dir, synthetic_records):
    """After training, the evaluation's generation runs in a Ray actor placed as the
    training was (`evaluation_placement`), greedy: the texts HF gives in this process."""
    from iadr1_rl.backends.evaluation import EvalPlan
    from iadr1_rl.backends.local.evaluation_actor import ActorGenerator
    from iadr1_rl.data.records import load_records
    from iadr1_rl.models.generation import generate_texts
    from iadr1_rl.models.loading import load_vlm

    records = load_records(synthetic_records)[:3]
    plan = EvalPlan(str(synthetic_records), "train", 0, 3, 12, "float32", None, resources={"num_cpus": 0.5})
    generator = ActorGenerator(plan, tiny_model_dir)
    try:
        texts = generator(records)
        assert generator.where == {"engine": "hf", "device": "cpu"}
        pid = ray.get(generator.actor.__ray_call__.remote(lambda actor: os.getpid()))
        assert pid != os.getpid()
    finally:
        generator.close()
    model, processor = load_vlm(tiny_model_dir)
    assert texts == generate_texts(model, processor, records, "train", plan.sampling)
