"""Which Ray a recipe joins: its own local one unless told otherwise (CPU, real Ray)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from iadr1_rl.backends.local import ray_env

from .conftest import ROOT

RAY = str(Path(sys.executable).parent / "ray")
# One subprocess per connection, as each recipe is: prints the CPUs of the Ray it joined.
CONNECT = (
    "import ray; from iadr1_rl.backends.local import ray_env; "
    "ray_env.connect(num_cpus=2); print(ray.cluster_resources()['CPU'])"
)


def head_env(state: Path) -> dict[str, str]:
    return {**os.environ, "IADR1_RAY_STATE": str(state), "RAY_BIN": RAY, "RAY_NUM_CPUS": "1"}


def start_head(env: dict[str, str]) -> str:
    """ray_cluster/start-local.sh: a 1-CPU head; its job server's address."""
    started = subprocess.run(
        ["bash", str(ROOT / "ray_cluster" / "start-local.sh")], env=env, capture_output=True, text=True, timeout=180
    )
    assert started.returncode == 0, started.stderr[-2000:]
    exports = dict(line.removeprefix("export ").split("=", 1) for line in started.stdout.splitlines())
    return exports["RAY_ADDRESS"]


def stop_head(env: dict[str, str]) -> None:
    subprocess.run(["bash", str(ROOT / "ray_cluster" / "stop-local.sh")], env=env, check=True, timeout=60)


@pytest.fixture(scope="module")
def running_head(tmp_path_factory):
    """A `ray start` head with 1 CPU, as a user's (or a CI machine's) cluster left running:
    its GCS address, what Ray sets RAY_ADDRESS to under `ray job submit`."""
    env = head_env(tmp_path_factory.mktemp("running_head"))
    start_head(env)
    yield f"127.0.0.1:{(Path(env['IADR1_RAY_STATE']) / 'gcs_port').read_text().strip()}"
    stop_head(env)


def joined_cpus(env_address: str | None) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}  # conftest dropped RAY_ADDRESS
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
    env = head_env(tmp_path / "head")
    job_server = start_head(env)
    assert job_server.startswith("http://127.0.0.1:") and not job_server.endswith(":8265")
    listed = subprocess.run([RAY, "job", "list", "--address", job_server], env=env, capture_output=True)
    assert listed.returncode == 0, listed.stderr[-2000:]

    stop_head(env)
    listed = subprocess.run([RAY, "job", "list", "--address", job_server], env=env, capture_output=True, timeout=120)
    assert listed.returncode != 0
    other = subprocess.run([RAY, "status", "--address", running_head], env=env, capture_output=True, timeout=120)
    assert other.returncode == 0, "stop-local.sh stopped a Ray cluster it did not start"


class FlakyRay:
    """A stand-in for `ray` whose first `init`s raise the given errors."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls: list[str] = []

    def init(self, **options) -> None:
        self.calls.append("init")
        if self.errors:
            raise self.errors.pop(0)

    def shutdown(self) -> None:
        self.calls.append("shutdown")


TIMED_OUT = Exception(
    "The current node timed out during startup. This could happen because some of the raylet failed to "
    "startup or the GCS has become overloaded."
)  # Ray 2.60's words (measured: its raylet waited 30 s for its agents on a busy machine)


@pytest.mark.parametrize(
    ("errors", "calls", "raised"),
    [
        ([], ["init"], None),
        ([TIMED_OUT], ["init", "shutdown", "init"], None),  # a busy machine: started again
        ([TIMED_OUT, TIMED_OUT], ["init", "shutdown", "init", "shutdown", "init"], None),
        ([TIMED_OUT] * 3, ["init", "shutdown", "init", "shutdown", "init"], "timed out during startup"),  # bounded
        ([ValueError("bad num_cpus")], ["init"], "bad num_cpus"),  # anything else: not retried
    ],
)
def test_a_local_ray_that_timed_out_starting_is_started_once_more(errors, calls, raised, caplog):
    ray = FlakyRay(*errors)
    if raised:
        with pytest.raises(Exception, match=raised):
            ray_env.start_local(ray, {"address": "local"})
    else:
        ray_env.start_local(ray, {"address": "local"})
    assert ray.calls == calls
    assert ("starting it again" in caplog.text) == (calls.count("init") > 1)
