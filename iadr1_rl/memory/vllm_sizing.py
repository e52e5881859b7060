"""How a vLLM engine is told to size itself: one rule, which the engine is built with and
the memory plan counts.

vLLM 0.31 (`v1/worker/utils.py::request_memory`) refuses to start when the device's free
memory is below `gpu_memory_utilization` × its total, whatever else it is told; left out,
that share is 0.92, which no GPU shared with another actor has free. So on a GPU the
engine always gets its share, and the KV cache's size (`kv_cache_memory_bytes`, which
then replaces the profiled size inside the share) only beside it. On CPU the share would
be of host memory: the engine always gets a KV-cache size there.

CUDA graphs (`enforce_eager` false) decode 2-4× faster on a GPU; on CPU there are none.
"""

from __future__ import annotations

from typing import Any

from .estimates import GIB

# The KV cache of a CPU engine whose size the config leaves open.
CPU_KV_CACHE_GIB = 1.0


def vllm_memory_args(on_gpu: bool, gpu_share: float, kv_cache_gib: float | None) -> dict[str, Any]:
    """The memory arguments of `vllm.LLM` for an engine on a GPU or on the CPU.

    >>> vllm_memory_args(True, 0.3, None)
    {'gpu_memory_utilization': 0.3}
    >>> vllm_memory_args(True, 0.3, 2.0)
    {'gpu_memory_utilization': 0.3, 'kv_cache_memory_bytes': 2147483648}
    >>> vllm_memory_args(False, 0.3, None)
    {'kv_cache_memory_bytes': 1073741824}
    """
    if not on_gpu:
        return {"kv_cache_memory_bytes": int((kv_cache_gib or CPU_KV_CACHE_GIB) * GIB)}
    args: dict[str, Any] = {"gpu_memory_utilization": gpu_share}
    if kv_cache_gib is not None:
        args["kv_cache_memory_bytes"] = int(kv_cache_gib * GIB)
    return args


def vllm_enforce_eager(setting: bool | None, on_gpu: bool) -> bool:
    """`rollout.enforce_eager`, where null means CUDA graphs on a GPU and eager on the CPU.

    >>> vllm_enforce_eager(None, True), vllm_enforce_eager(None, False), vllm_enforce_eager(True, True)
    (False, True, True)
    """
    return (not on_gpu) if setting is None else setting
