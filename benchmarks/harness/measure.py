"""One configuration of the loss, measured inside its own process (``runner`` starts it).

The spec names the implementation, N, D, dtype, device, bags, threads, temperature, seed and
the run counts. In the process: the inputs, then a tiny warm-up step (N <= 64) that starts the
thread pools, loads the kernels and the CUDA context; then the peak-memory baseline
(``memory.PeakMemory``), ``warmup`` untimed steps and up to ``repeats`` timed ones, with no
further repeat once the timed ones used ``time_budget`` seconds. The result has the median and
every time, the peak, the nominal GFLOP/s and what the last step computed.
"""

from __future__ import annotations

import gc
import statistics
from typing import Any, Dict, List

from .cases import CLASSES, bag_offsets, kernel_flops, make_inputs, make_step, nominal_flops
from .machine import cpu_steal_seconds
from .memory import PeakMemory, limit_address_space
from .timing import timed_call


def _prepare(spec: Dict[str, Any], cuda: bool) -> None:
    import torch

    torch.set_num_threads(int(spec["threads"]))
    if cuda:
        # one global switch that pixcon.contrastive_loss and the baselines' matmuls all follow
        torch.backends.cuda.matmul.fp32_precision = "tf32" if spec["dtype"] == "tf32" else "ieee"
    else:
        limit_address_space(spec.get("memory_limit_bytes"))


def _warm_up(spec: Dict[str, Any]) -> None:
    """One step at N <= 64 (at most 4 bags): thread pools, kernels, the CUDA context."""
    m = min(int(spec["n"]), 64)
    z, y = make_inputs(m, int(spec["dim"]), spec["dtype"], int(spec["seed"]) + 1, spec["device"],
                       int(spec.get("classes", CLASSES)))
    make_step(spec["impl"], bag_offsets(m, min(int(spec["bags"]), 4)), float(spec["temperature"]),
              spec["device"])(z, y)


def _timed_runs(step, z, y, spec: Dict[str, Any], cuda: bool):
    """The warm-up times, the timed runs' times and the last step's output."""
    def once():
        z.grad = None
        return step(z, y)

    warm = [timed_call(once, cuda) for _ in range(int(spec["warmup"]))]
    times: List[float] = []
    out = warm[-1][1] if warm else None
    for _ in range(int(spec["repeats"])):
        if times and sum(times) + statistics.median(times) > float(spec["time_budget"]):
            break
        t, out = timed_call(once, cuda)
        times.append(t)
    return [t for t, _ in warm], times, out


def _efficiency(spec: Dict[str, Any], times: List[float], labels) -> Dict[str, Any]:
    """pixcon on the CPU: the kernel's flops per second and their fraction of the multiply-add peak
    of the same tier on the same threads, measured here, right after the timed runs. Like the peak
    (the fastest of its runs), the rate is the fastest timed run's: a run that another process or
    guest disturbed is only slower, and the two are compared undisturbed. The median run's
    fraction is kept beside it."""
    flops = kernel_flops(spec["impl"], int(spec["n"]), int(spec["dim"]), int(spec["bags"]),
                         labels.tolist())
    if flops is None or spec["device"] != "cpu":
        return {}
    import pixcon
    import torch

    peak = pixcon.cpu_peak_gflops(torch.get_num_threads(), seconds=0.5)
    rate, median_rate = flops / min(times) / 1e9, flops / statistics.median(times) / 1e9
    return {"kernel_flops": flops, "gflops_kernel": rate, "cpu_peak_gflops": peak,
            "peak_fraction": rate / peak, "gflops_kernel_median": median_rate,
            "peak_fraction_median": median_rate / peak, "cpu_isa": pixcon.cpu_isa()}


def measure(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Times one configuration and measures its peak memory (call in a fresh process)."""
    import torch

    n, d, bags = int(spec["n"]), int(spec["dim"]), int(spec["bags"])
    cuda = spec["device"].startswith("cuda")
    _prepare(spec, cuda)
    step = make_step(spec["impl"], bag_offsets(n, bags), float(spec["temperature"]),
                     spec["device"])
    z, y = make_inputs(n, d, spec["dtype"], int(spec["seed"]), spec["device"],
                       int(spec.get("classes", CLASSES)))
    _warm_up(spec)
    gc.collect()
    memory = PeakMemory(cuda)
    memory.start()
    steal_before = cpu_steal_seconds()
    warm, times, (loss_sum, valid) = _timed_runs(step, z, y, spec, cuda)
    steal_after = cpu_steal_seconds()
    stolen = None if steal_before is None or steal_after is None else steal_after - steal_before
    peak = memory.peak_bytes()
    med = statistics.median(times)
    return {
        "status": "ok",
        **_efficiency(spec, times, y),
        "median_s": med,
        "min_s": min(times),
        "times_s": times,
        "warmup_times_s": warm,
        "runs": len(times),
        # CPU seconds the hypervisor gave to other guests during the timed runs (all CPUs)
        "steal_s": stolen,
        "peak_bytes": peak,
        "memory_method": memory.method,
        "gflops_nominal": nominal_flops(n, d, bags) / med / 1e9,
        "num_threads": torch.get_num_threads(),
        "valid_anchors": int(valid.item()),
        "loss_sum": float(loss_sum.float().item()),
        "grad_finite": bool(z.grad is not None and torch.isfinite(z.grad).all().item()),
    }
