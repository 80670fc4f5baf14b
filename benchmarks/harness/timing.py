"""One timed call, the same way in every benchmark: ``time.perf_counter()`` around it on the CPU,
a pair of CUDA events on the GPU (so that only the device's work between them counts, with the
call's own synchronisations)."""

from __future__ import annotations

import time
from typing import Any, Callable, Tuple


def timed_call(fn: Callable[[], Any], cuda: bool) -> Tuple[float, Any]:
    """Runs ``fn()`` once; returns its time in seconds and its result."""
    if not cuda:
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, out
    import torch

    torch.cuda.synchronize()  # nothing queued before the call may count as its time
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    out = fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3, out
