"""A node removed mid-run (preemption), on a local multi-node Ray (`ray.cluster_utils`): the
SC-GRPO run goes on on the node that remains, from its last checkpoint, with steps 1-3
logged once each and the restart said with Ray's reason (its node was lost)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from iadr1_rl.backends.local.grpo import run_grpo
from iadr1_rl.train.config import load_config

ROOT = Path(__file__).resolve().parent.parent


def policy_node(cluster: Cluster):
    """The cluster node the run's placement group put its bundles on."""
    for table in ray.util.placement_group_table().values():
        if table["state"] == "CREATED":
            (node_id,) = set(table["bundles_to_node_id"].values())
            return next(node for node in cluster.worker_nodes if node.node_id == node_id)
    return None


def test_a_run_goes_on_on_the_node_that_remains(tmp_path, formatted_model, synthetic_records):
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # actors on the workers only
    for _ in range(2):
        cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}}, log_to_driver=False)
    out = tmp_path / "grpo"
    config = load_config(
        None,
        [
            f"run_dir={tmp_path}",
            f"model.path={formatted_model}",
            f"data.train={synthetic_records}",
            "data.eval=''",
            "data.shots=1",
            f"grpo.output={out}",
            "grpo.steps=3",
            "grpo.prompts_per_step=2",
            "grpo.group_size=2",
            "grpo.max_new_tokens=8",
            "checkpoint.every=1",
            "resources.torch_threads=1",
            "resources.policy.num_cpus=0.4",
            "resources.reference.num_cpus=0.4",
            "resources.rollout.num_cpus=0.4",
        ],
    )
    removed = []

    def preempt() -> None:  # the node under the run, once step 1 is logged
        metrics = out / "metrics.jsonl"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if metrics.is_file() and len(metrics.read_text().splitlines()) >= 1:
                node = policy_node(cluster)
                if node is not None:
                    cluster.remove_node(node, allow_graceful=False)
                    removed.append(node.node_id)
                return
            time.sleep(0.1)

    preempting = threading.Thread(target=preempt, daemon=True)
    try:
        preempting.start()
        run_grpo(config, progress=False, run_eval=False)
        preempting.join(timeout=5)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert removed, "the node was not removed"
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    # Ray says one or the other, depending on which call first meets the node's loss.
    lost = {"its node was lost", "unreachable (its node or its process is gone)"}
    assert events and all(e["reason"] in lost for e in events), events
    assert (
        events[-1]["event"] == "run_restart" and events[-1]["resumed_from_step"] >= 0
    )  # the last checkpoint, or the start
    assert (out / "final" / "model.safetensors").is_file()
