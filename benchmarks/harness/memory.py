"""Peak memory of one configuration, measured one way by every benchmark.

CPU: free heap memory is handed back to the OS (``malloc_trim(0)``) and the kernel's peak-RSS
mark is reset (``/proc/self/clear_refs``); the peak is then the growth of ``VmHWM`` over the
RSS at that point: everything the step allocates at its peak, the gradient included, but not the
inputs. Where ``clear_refs`` is missing (not Linux), the growth of ``ru_maxrss``. CUDA: the
growth of ``torch.cuda.max_memory_allocated()`` over the memory allocated at the start, after
``reset_peak_memory_stats()``. Each configuration runs in a fresh process (``runner``), so no
earlier configuration's peak hides in the mark.
"""

from __future__ import annotations

import ctypes
import resource
import sys
from typing import Optional

from .machine import proc_field_bytes


def _status_bytes(key: str) -> Optional[float]:
    return proc_field_bytes("/proc/self/status", key)


def _reset_peak_rss() -> bool:
    """Releases free heap memory to the OS and resets VmHWM; False where that is impossible."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _status_bytes("VmHWM") is not None


def _maxrss_bytes() -> float:
    v = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return v if sys.platform == "darwin" else v * 1024.0  # bytes on macOS, KiB on Linux


class PeakMemory:
    """The peak memory growth from :meth:`start` to :meth:`peak_bytes`."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.base = 0.0
        self.method = ""

    def start(self) -> None:
        """Takes the baseline and resets the peak mark."""
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = float(torch.cuda.memory_allocated())
            self.method = "cuda max_memory_allocated growth"
        elif _reset_peak_rss():
            self.base = _status_bytes("VmRSS") or 0.0
            self.method = "VmHWM growth after malloc_trim + clear_refs"
        else:
            self.base = _maxrss_bytes()
            self.method = "ru_maxrss growth"

    def peak_bytes(self) -> float:
        """The growth of the peak over the baseline, in bytes (at least 0)."""
        if self.cuda:
            import torch

            peak = float(torch.cuda.max_memory_allocated())
        elif self.method.startswith("VmHWM"):
            peak = _status_bytes("VmHWM") or 0.0
        else:
            peak = _maxrss_bytes()
        return max(peak - self.base, 0.0)


def limit_address_space(limit_bytes: Optional[float]) -> None:
    """Caps this process's address space at its current size plus ``limit_bytes``, so that an
    allocation above it fails with an out-of-memory error instead of thrashing the machine."""
    size = _status_bytes("VmSize")
    if not limit_bytes or size is None:
        return
    cap = int(size + limit_bytes)
    try:
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (ValueError, OSError):
        pass
