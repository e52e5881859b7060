"""Which Ray a recipe joins: its own local one unless told otherwise (CPU, real Ray)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from iadr1_rl.backends import ray_env
from iadr1_rl.train.distributed import free_port

from .conftest import ROOT

RAY = str(Path(sys.executable).parent / "ray")
# One subprocess per connection, as each recipe is: prints the CPUs of the Ray it joined.
CONNECT = (
    "import ray; from iadr1_rl.backends import ray_env; "
    "ray_env.connect(num_cpus=2); print(ray.cluster_resources()['CPU'])"
)


@pytest.fixture()
def running_head():
    """A `ray start` head with 1 CPU, as a user's (or a CI machine's) cluster left running."""
    port = free_port("127.0.0.1")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--num-cpus", "1", "--port", str(port), "--node-ip-address", "127.0.0.1"]
        + ["--include-dashboard=false", "--disable-usage-stats"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    for _ in range(60):
        probe = subprocess.run([RAY, "status", "--address", address], env=env, capture_output=True)
        if probe.returncode == 0:
            break
        time.sleep(1)
    else:
        os.killpg(head.pid, signal.SIGKILL)
        pytest.fail("the test's `ray start --head` did not come up")
    yield address
    os.killpg(head.pid, signal.SIGKILL)  # only this head: never `ray stop`, which stops every Ray here
    head.wait(timeout=60)
    # `ray start` recorded this head as the machine's current cluster: do not leave it stale.
    current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    if current.is_file() and current.read_text().strip().endswith(f":{port}"):
        current.unlink()


def joined_cpus(env_address: str | None) -> float:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update({"PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"})
    if env_address:
        env["RAY_ADDRESS"] = env_address
    done = subprocess.run([sys.executable, "-c", CONNECT], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return float(done.stdout.strip().splitlines()[-1])


def test_a_running_cluster_is_joined_only_when_named(running_head):
    # Without RAY_ADDRESS, a directly run recipe starts its own 2-CPU Ray; plain
    # ray.init(num_cpus=…) would find the running head and refuse (the CI failure).
    assert joined_cpus(None) == 2.0
    # Under `ray job submit` Ray sets RAY_ADDRESS: the recipe joins that cluster.
    assert joined_cpus(running_head) == 1.0


def test_an_address_ray_cannot_join_is_named_with_its_source(monkeypatch):
    # The job server's http address is what `ray job submit` wants, not a driver.
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")
    with pytest.raises(RuntimeError, match=r"(?s)http://127\.0\.0\.1:8265 \(from RAY_ADDRESS\).*unset it"):
        ray_env.connect()


def test_the_demo_head_stops_alone(running_head, tmp_path):
    # `make demo` starts and stops its own head; a cluster already running here survives.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update({"IADR1_RAY_STATE": str(tmp_path / "head"), "RAY_BIN": RAY, "RAY_NUM_CPUS": "1"})
    started = subprocess.run(
        ["bash", str(ROOT / "ray_cluster" / "start-local.sh")], env=env, capture_output=True, text=True, timeout=180
    )
    assert started.returncode == 0, started.stderr[-2000:]
    exports = dict(line.removeprefix("export ").split("=", 1) for line in started.stdout.splitlines())
    job_server = exports["RAY_ADDRESS"]
    assert job_server.startswith("http://127.0.0.1:") and not job_server.endswith(":8265")
    listed = subprocess.run([RAY, "job", "list", "--address", job_server], env=env, capture_output=True)
    assert listed.returncode == 0, listed.stderr[-2000:]

    subprocess.run(["bash", str(ROOT / "ray_cluster" / "stop-local.sh")], env=env, check=True, timeout=60)
    listed = subprocess.run([RAY, "job", "list", "--address", job_server], env=env, capture_output=True, timeout=120)
    assert listed.returncode != 0
    other = subprocess.run([RAY, "status", "--address", running_head], env=env, capture_output=True, timeout=120)
    assert other.returncode == 0, "stop-local.sh stopped a Ray cluster it did not start"
