"""The peak memory a process's model work took, measured the way the memory plan estimates
it, and reset after each reading, so that a training step reports its own peak.

- On a GPU: torch's most reserved bytes (what the caching allocator held at the peak: what
  the device must have, and what the plan plans).
- On CPU: the kernel's resident high-water mark (`VmHWM`, reset through `clear_refs`),
  less the shared memory the process maps (`RssShmem`: Ray's object store maps into every
  process that reads an object, and those pages are the machine's once, not each
  reader's), above what the process held before its model loaded (the interpreter, torch
  and the model's code are not the model's). Free: no sampling thread.

The high-water mark is of all resident pages, the shared ones included, and the shared
pages are only known now: a reading taken after a phase that mapped new shared memory (a
weight sync's buckets) would subtract pages the earlier peak did not hold. Actors call
`mark()` after their model work and before such a phase: the peak so far is kept and the
window restarts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
from pathlib import Path

import torch

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(*fields: str) -> int | None:
    try:
        text = STATUS.read_text()
    except OSError:
        return None
    total = 0
    for field in fields:
        match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
        if match is None:
            return None
        total += int(match.group(1))
    return total


def resident_bytes() -> int | None:
    """This process's private and file-backed resident memory now (Linux), or None."""
    kib = _status_kib("RssAnon", "RssFile")
    return None if kib is None else kib * 1024


class PeakMemory:
    """Create it before the model loads; `take()` returns the peak since the last `take()`."""

    def __init__(self, device: str | torch.device) -> None:
        self.device = torch.device(device)
        self.baseline = resident_bytes() or 0
        self._kept: float | None = None  # the largest window's peak since the last take()
        self.reset()

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        release_freed_memory()
        try:  # "5" resets the resident high-water mark (Linux ≥ 4.0)
            CLEAR_REFS.write_text("5")
        except OSError:
            pass

    def mark(self) -> None:
        """Keep the peak so far and restart the window (before mapping new shared memory)."""
        self._kept = _larger(self._kept, self._window_peak())
        self.reset()

    def take(self) -> float | None:
        """The peak in bytes since the last reading (None where it cannot be measured), then reset."""
        peak, self._kept = _larger(self._kept, self._window_peak()), None
        self.reset()
        return peak

    def _window_peak(self) -> float | None:
        if self.device.type == "cuda":
            return float(torch.cuda.max_memory_reserved(self.device))
        high, shared = _status_kib("VmHWM"), _status_kib("RssShmem")
        return None if high is None or shared is None else max(0.0, (high - shared) * 1024.0 - self.baseline)


def _larger(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def release_freed_memory() -> None:
    """Give the C allocator's freed pages back to the system (glibc keeps them otherwise, and
    a CPU process's resident size then grows with every step's temporaries)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError):
        pass
