"""The machine a benchmark ran on, as every result file records it.

The helpers above :func:`machine_info` need only the standard library, so that
``scripts/gpu_check_report.py`` describes the host where torch is missing.
"""

from __future__ import annotations

import os
import platform
from typing import Any, Dict, List, Optional, Sequence

_GB = 1024.0 ** 3


def loadavg() -> Optional[List[float]]:
    """1/5/15-minute load averages: other work on the machine makes timings noisy."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def cpu_steal_seconds() -> Optional[float]:
    """CPU time the hypervisor gave to other guests, summed over this machine's CPUs since boot
    (the steal field of /proc/stat): on a shared virtual machine it grows while a timing is
    disturbed from outside. None where /proc/stat has no such field."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        if fields[0] != "cpu" or len(fields) <= 8:
            return None
        return float(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def proc_field_bytes(path: str, key: str) -> Optional[float]:
    """The field ``key`` of a ``Key: N kB`` file of /proc (``/proc/meminfo``,
    ``/proc/self/status``) in bytes; None where the file or the field is missing."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return float(line.split()[1]) * 1024.0
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def physical_cores() -> Optional[int]:
    """Physical cores from /proc/cpuinfo (distinct (physical id, core id)); None if unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return None
    cores = set()
    for block in text.split("\n\n"):
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        if "core id" in fields:
            cores.add((fields.get("physical id"), fields["core id"]))
    return len(cores) or None


def _versions() -> Dict[str, Any]:
    """torch's, pixcon's (and its CPU kernel tier) and pytorch-metric-learning's versions."""
    import torch

    info: Dict[str, Any] = {"torch_version": torch.__version__,
                            "torch_num_threads": torch.get_num_threads()}
    try:
        import pixcon

        info["pixcon_version"] = getattr(pixcon, "__version__", None)
        info["cpu_isa"] = pixcon.cpu_isa() if hasattr(pixcon, "cpu_isa") else None
    except Exception as e:  # noqa: BLE001 - recorded: the timings are still worth having
        info["pixcon_import_error"] = f"{type(e).__name__}: {e}"
    try:
        import pytorch_metric_learning

        info["pytorch_metric_learning_version"] = pytorch_metric_learning.__version__
    except ImportError:
        info["pytorch_metric_learning_version"] = None
    return info


def machine_info(devices: Sequence[str]) -> Dict[str, Any]:
    """The machine a benchmark ran on: CPU, cores, memory, versions, the load average at the
    start, and the GPU when ``devices`` include CUDA."""
    avail = proc_field_bytes("/proc/meminfo", "MemAvailable")
    total = proc_field_bytes("/proc/meminfo", "MemTotal")
    info: Dict[str, Any] = {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical_cores(),
        "mem_available_gb": None if avail is None else round(avail / _GB, 2),
        "mem_total_gb": None if total is None else round(total / _GB, 2),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_start": loadavg(),
    }
    info.update(_versions())
    if any(d.startswith("cuda") for d in devices):
        import torch

        info["cuda_device"] = torch.cuda.get_device_name(0)
        info["cuda_version"] = torch.version.cuda
    return info


def resolve_devices(choice: str) -> List[str]:
    """The devices of ``--device choice``: "auto" is the CPU plus CUDA when it is available.
    Raises ValueError for "cuda" without CUDA."""
    import torch

    if choice == "auto":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch.cuda.is_available() is False")
    return [choice]
