"""Connecting to Ray, and placing actors only where the cluster can hold them.

Ray waits forever for resources that do not exist; we check first and say what is
missing. Ray 2.60 writes `~/.ray/auth_token` on an in-process `ray.init()`, after which
`ray start` / `ray job submit` need a consistent `RAY_AUTH_MODE`; our scripts set it
(`ray_cluster/start-local.sh`), and a local in-process cluster here is started with
the same mode.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...memory.estimates import DeviceCheck, MemoryPlan

logger = logging.getLogger(__name__)


def connect(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join `address`, else the job's cluster (`RAY_ADDRESS`, set under `ray job submit`), else start a local one.

    `address="local"` always starts a new local Ray. Without an address we never attach
    to whatever `ray start` cluster happens to run on the machine (plain `ray.init()`
    would, through /tmp/ray/ray_current_cluster): a directly run recipe gets its own.
    """
    import ray

    if ray.is_initialized():
        return
    with _keep_signal_handlers():
        _init(ray, address, num_cpus)


@contextmanager
def _keep_signal_handlers():
    """ray.init installs its own SIGTERM handler (a bare sys.exit): a recipe's handler, which
    stops it cleanly and says so, is put back; the default is left to Ray's."""
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        if threading.current_thread() is threading.main_thread():
            for signum, handler in handlers.items():
                if callable(handler):
                    signal.signal(signum, handler)


def _init(ray, address: str | None, num_cpus: int | None) -> None:
    source = "resources.ray_address"
    if not address and os.environ.get("RAY_ADDRESS"):
        address, source = os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    if address and address != "local":
        try:
            ray.init(address=address, log_to_driver=True)
        except (ConnectionError, ValueError, RuntimeError) as error:
            raise RuntimeError(
                f"cannot connect to the Ray cluster at {address} (from {source}): {error}. "
                "Submit the recipe with `ray job submit`, point RAY_ADDRESS at the cluster's GCS address "
                "(host:6379), or unset it (or pass resources.ray_address=local) to start a local Ray"
            ) from error
        logger.info("connected to Ray at %s", address)
        return
    # A local, loopback-only cluster: keep token auth off (and no token written), so that
    # a later `ray start` + `ray job submit` in our scripts agree (see ray_cluster/).
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Workers import our packages: give them the checkout on their path.
    root = str(Path(__file__).resolve().parents[3])
    python_path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    options = dict(
        address="local",
        num_cpus=num_cpus or os.cpu_count(),
        include_dashboard=False,
        log_to_driver=True,
        runtime_env={"env_vars": {"PYTHONPATH": python_path}},
    )
    start_local(ray, options)
    logger.info("started a local Ray with %s CPUs", num_cpus or os.cpu_count())


LOCAL_START_ATTEMPTS = 3  # measured: two time-outs in a row beside make test's vLLM tests


def start_local(ray, options: dict[str, Any], attempts: int = LOCAL_START_ATTEMPTS) -> None:
    """`ray.init(**options)`, again when the node "timed out during startup": Ray 2.60 gives
    its raylet a fixed 30 s to see its Python agents up, which a machine busy on every core
    can exceed (measured here: a recipe started beside two training processes). Any other
    error, or the last attempt's, is raised. The failed attempt's processes share the
    driver's fate (they end with it)."""
    for attempt in range(1, attempts + 1):
        try:
            ray.init(**options)
            return
        except Exception as error:  # Ray raises a bare Exception for it
            if "timed out during startup" not in str(error) or attempt == attempts:
                raise
            logger.warning(
                "the local Ray timed out starting (%s): starting it again (attempt %d of %d)",
                error,
                attempt + 1,
                attempts,
            )
            ray.shutdown()


def check_resources(requests: dict[str, dict[str, float]]) -> None:
    """Raise a clear error when the actors cannot all be placed on this cluster."""
    import ray

    available = ray.cluster_resources()
    for kind, unit in (("num_cpus", "CPU"), ("num_gpus", "GPU")):
        needed = sum(r.get(kind, 0.0) for r in requests.values())
        have = float(available.get(unit, 0.0))
        if needed > have + 1e-9:
            detail = ", ".join(f"{name} {r.get(kind, 0.0):g}" for name, r in requests.items() if r.get(kind, 0.0))
            raise RuntimeError(
                f"impossible resource request: the actors need {needed:g} {unit} ({detail}) "
                f"but the Ray cluster has {have:g}; lower resources.* in the config"
            )
        if unit == "GPU":
            for name, r in requests.items():
                if r.get(kind, 0.0) > 1 and not float(r[kind]).is_integer():
                    raise RuntimeError(f"{name}: fractional GPU counts above 1 cannot be placed ({r[kind]})")


def remote(cls: type, resources: dict[str, float], **options: Any):
    """`ray.remote` with the config's resources (CPU actors share the cores); an actor given
    no GPU sees none (`actors.placement.visible_devices_env`)."""
    import ray

    from ...actors.placement import visible_devices_env

    num_gpus = resources.get("num_gpus", 0.0)
    env = visible_devices_env(num_gpus)
    if env:
        options["runtime_env"] = {"env_vars": env}
    return ray.remote(num_cpus=resources.get("num_cpus", 1.0), num_gpus=num_gpus, max_restarts=0, **options)(cls)


def placement_bundles(
    devices: list[DeviceCheck], resources: dict[str, dict[str, float]]
) -> tuple[list[dict[str, float]], dict[str, int]]:
    """A placement group's bundles for the memory plan's devices, and each actor's bundle:
    a GPU's bundle holds its GPUs and the CPUs of the actors planned on it, host-memory
    actors share one bundle of their CPUs.

    >>> from iadr1_rl.memory.estimates import ActorEstimate, DeviceCheck
    >>> gpu = DeviceCheck("GPU 0", 80.0, [ActorEstimate("policy"), ActorEstimate("rollout")])
    >>> host = DeviceCheck("host memory", 24.0, [ActorEstimate("reference")], gpus=0)
    >>> placement_bundles([gpu, host], {"policy": {"num_cpus": 1}, "rollout": {"num_cpus": 0.5},
    ...                                 "reference": {"num_cpus": 0.5}})
    ([{'CPU': 1.5, 'GPU': 1}, {'CPU': 0.5}], {'policy': 0, 'rollout': 0, 'reference': 1})
    """
    bundles, bundle_of = [], {}
    for index, device in enumerate(devices):
        names = [actor.name for actor in device.actors]
        # A bundle asks for something: an actor of no CPUs still needs a place to run.
        bundle: dict[str, float] = {"CPU": max(sum(resources[name].get("num_cpus", 1.0) for name in names), 0.01)}
        if device.gpus:
            bundle["GPU"] = device.gpus
        bundles.append(bundle)
        bundle_of.update(dict.fromkeys(names, index))
    return bundles, bundle_of


@dataclass
class Placement:
    """Ray told to place the actors as the memory plan did: a placement group of one bundle
    per planned device, each actor scheduled in its device's bundle (left to itself, Ray
    packs fractional GPU shares its own way, and the plan checked another packing)."""

    group: Any
    bundle_of: dict[str, int]
    resources: dict[str, dict[str, float]]

    @classmethod
    def create(cls, plan: MemoryPlan, resources: dict[str, dict[str, float]], timeout_s: float = 120) -> Placement:
        import ray
        from ray.exceptions import GetTimeoutError
        from ray.util.placement_group import placement_group, remove_placement_group

        bundles, bundle_of = placement_bundles(plan.devices, resources)
        group = placement_group(bundles, strategy="PACK")
        try:
            ray.get(group.ready(), timeout=timeout_s)
        except GetTimeoutError:
            remove_placement_group(group)
            raise RuntimeError(
                f"Ray could not place the actors as the memory plan does within {timeout_s:g} s: bundles {bundles} "
                f"on a cluster of {ray.cluster_resources()}; lower resources.* or add nodes"
            ) from None
        logger.info("placed %d actor(s) on %d device bundle(s): %s", len(bundle_of), len(bundles), bundles)
        return cls(group, bundle_of, resources)

    def remote(self, cls: type, name: str):
        """`cls` as a Ray actor class scheduled in `name`'s bundle, with its resources."""
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        strategy = PlacementGroupSchedulingStrategy(self.group, placement_group_bundle_index=self.bundle_of[name])
        return remote(cls, self.resources[name], scheduling_strategy=strategy)

    def wait_placed(self, timeout_s: float = 120) -> None:
        """Return once every bundle is placed again (Ray re-places the bundles of a lost node
        on the nodes that remain, when they can hold them); else say the plan no longer fits."""
        import ray
        from ray.exceptions import GetTimeoutError

        try:
            ray.get(self.group.ready(), timeout=timeout_s)
        except GetTimeoutError:
            raise RuntimeError(
                f"the cluster no longer holds the memory plan's placement within {timeout_s:g} s (a node lost?): "
                f"its devices' bundles on a cluster of {ray.cluster_resources()}; add nodes, or lower resources.* "
                "and --resume from the last checkpoint"
            ) from None

    def remove(self) -> None:
        from ray.util.placement_group import remove_placement_group

        remove_placement_group(self.group)
