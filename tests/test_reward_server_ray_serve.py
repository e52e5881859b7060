"""The same reward server app deployed on Ray Serve with two replicas (local Ray, CPU)."""

import httpx
import pytest

from iadr1_rl.train.distributed import free_port
from rewards import Scorer

from .conftest import ROOT

GOOD = "<think>a dark hole</think><location>top left</location><type>holes</type><answer>yes</answer>"
LABEL = {"answer": "yes", "location": "upper left", "type": "hole"}


@pytest.fixture(scope="module")
def serve_url():
    import ray
    from ray import serve

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"working_dir": str(ROOT), "excludes": [".venv", "runs", ".git", "benchmarks"]},
    )
    port = free_port("127.0.0.1")
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    from rewards.ray_serve import build

    serve.run(build(num_replicas=2, num_cpus=0.5), route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ray.shutdown()


def test_ray_serve_answers_like_the_scorer(serve_url):
    body = {"query": [GOOD, "junk"], "prompts": ["", ""], "labels": [LABEL, LABEL]}
    data = httpx.post(serve_url + "/get_reward", json=body, timeout=30).json()
    assert data["rewards"] == [r.total for r in Scorer().score_batch([GOOD, "junk"], [LABEL, LABEL])] == [4.0, 0.0]
    bad = httpx.post(serve_url + "/score", json={"completions": ["a"], "labels": [{"answer": "?"}]}, timeout=30)
    assert bad.status_code == 422 and "labels[0]" in bad.json()["error"]
    assert httpx.get(serve_url + "/health", timeout=30).json()["status"] == "ok"
