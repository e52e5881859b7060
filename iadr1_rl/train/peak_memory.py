"""The peak memory a process's model work took, measured the way the memory plan estimates
it, and reset after each reading, so that a training step reports its own peak.

- On a GPU: torch's most allocated bytes.
- On CPU: the process's private and file-backed resident memory (`RssAnon + RssFile`),
  sampled every few milliseconds, above what it held before its model loaded (the
  interpreter, torch and the model's code are not the model's). Shared memory is left
  out: Ray's object store maps into every process that reads an object, and those pages
  are counted once for the machine, not once per reader (the kernel's high-water mark
  counts them in each).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import threading
from pathlib import Path

import torch

STATUS = Path("/proc/self/status")
SAMPLE_SECONDS = 0.003


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
        self._peak = self.baseline
        self._lock = threading.Lock()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif resident_bytes() is not None:
            threading.Thread(target=self._sample, name="peak-memory", daemon=True).start()

    def _sample(self) -> None:
        stop = threading.Event()
        while not stop.wait(SAMPLE_SECONDS):
            now = resident_bytes()
            if now is not None:
                with self._lock:
                    self._peak = max(self._peak, now)

    def take(self) -> float | None:
        """The peak in bytes since the last reading (None where it cannot be measured), then reset."""
        if self.device.type == "cuda":
            peak = float(torch.cuda.max_memory_allocated(self.device))
            torch.cuda.reset_peak_memory_stats(self.device)
            return peak
        now = resident_bytes()
        if now is None:
            return None
        with self._lock:
            peak = float(max(self._peak, now) - self.baseline)
            release_freed_memory()
            self._peak = resident_bytes() or now
        return max(0.0, peak)


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
