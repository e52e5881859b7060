"""The CPU peak-memory meter: the resident high-water mark less shared memory, above the
baseline, kept across `mark()` when shared memory is mapped after the peak (as a weight
sync's buckets are)."""

from __future__ import annotations

import mmap

import pytest
import torch

from iadr1_rl.memory.meter import PeakMemory

SIZE = 256 * 2**20
pytestmark = pytest.mark.skipif(PeakMemory("cpu").take() is None, reason="reads Linux /proc")


def allocate_and_free() -> None:
    block = torch.ones(SIZE // 4)  # touched pages, returned to the system when freed
    del block


def map_shared() -> mmap.mmap:
    shared = mmap.mmap(-1, SIZE, flags=mmap.MAP_SHARED)  # counted as RssShmem once touched
    for offset in range(0, SIZE, mmap.PAGESIZE):
        shared[offset] = 1
    return shared


@pytest.mark.parametrize("mark, counted", [(True, True), (False, False)])
def test_a_peak_before_shared_memory_is_mapped_is_kept_by_mark(mark, counted):
    meter = PeakMemory("cpu")
    meter.take()
    allocate_and_free()
    if mark:
        meter.mark()
    shared = map_shared()
    peak = meter.take()
    shared.close()
    # Without the mark, the shared pages mapped after the peak are subtracted from it.
    assert (peak >= 0.9 * SIZE) is counted, peak / SIZE


def test_each_take_starts_a_new_window():
    meter = PeakMemory("cpu")
    allocate_and_free()
    assert meter.take() >= 0.9 * SIZE
    assert meter.take() < 0.5 * SIZE


def test_on_a_gpu_the_meter_reads_reserved_memory(monkeypatch):
    """What the plan plans: the caching allocator's reserved peak, not the allocated one."""
    calls = []
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device: calls.append(device))
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device: 7.0 * 2**30)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: 5.0 * 2**30)
    meter = PeakMemory("cuda:0")
    assert meter.take() == 7.0 * 2**30 and calls  # reset after each reading
