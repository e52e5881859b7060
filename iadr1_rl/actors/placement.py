"""Where an actor computes, decided from the resources Ray assigned it.

Never from `torch.cuda.is_available()`: Ray 2.60 no longer hides the GPUs from an actor
that asked for none (ray-project/ray#54868: `CUDA_VISIBLE_DEVICES` is left as it was when
`num_gpus` is 0), so a zero-GPU actor sees every GPU of its node, and "cuda when one is
visible" put actors the plan counts in host memory on GPU 0, unscheduled and unplanned.

- `device_for_gpu_ids`: the device of the GPU ids Ray assigned (it makes them the only
  visible ones, so the first is `cuda:0`), or the CPU when it assigned none;
- `assigned_device`: that, for the calling process (a Ray actor; the driver and plain
  processes get the CPU: Ray assigns a driver no GPU);
- `visible_devices_env`: what a zero-GPU actor's environment sets so that no library in it
  (vLLM's platform detection, a stray `.cuda()`) can reach a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..rollout.transport import Seat

CPU = "cpu"


def device_for_gpu_ids(gpu_ids: Sequence) -> str:
    """`cuda:0` when Ray assigned GPUs (they are then the only visible ones), else `cpu`.

    >>> device_for_gpu_ids([]), device_for_gpu_ids(["3"])
    ('cpu', 'cuda:0')
    """
    return "cuda:0" if len(gpu_ids) else CPU


def assigned_device() -> str:
    """The device of the resources Ray assigned this process (the CPU outside a Ray actor)."""
    try:
        import ray
    except ImportError:
        return CPU
    if not ray.is_initialized():
        return CPU
    from ray._private.worker import WORKER_MODE, global_worker

    if global_worker.mode != WORKER_MODE:  # the driver: Ray assigns it no GPU
        return CPU
    return device_for_gpu_ids(ray.get_gpu_ids())


def visible_devices_env(num_gpus: float) -> dict[str, str]:
    """Environment variables of an actor with `num_gpus`: none of the node's GPUs visible
    when it asked for none (Ray sets the variable itself for an actor given GPUs).

    >>> visible_devices_env(0), visible_devices_env(0.5)
    ({'CUDA_VISIBLE_DEVICES': ''}, {})
    """
    return {"CUDA_VISIBLE_DEVICES": ""} if num_gpus == 0 else {}


def current_seat() -> Seat:
    """This process's node and the GPUs Ray assigned it (a weight transport needs to know
    whether two actors share a GPU)."""
    import ray

    return Seat(ray.get_runtime_context().get_node_id(), tuple(str(g) for g in ray.get_gpu_ids()))
