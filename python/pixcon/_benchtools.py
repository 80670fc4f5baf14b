"""Helpers shared by the benchmark drivers: ``pixcon.bench`` and the scripts in ``benchmarks/``.

The result table, the worker-process protocol (the result is one JSON line behind a marker on
the worker's stdout), the ``--device`` choice and the machine description every benchmark
JSON records. Private: no stable API.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import subprocess
import sys
from typing import Any, Callable, Collection, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

_GB = 1024.0 ** 3


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------

def fmt(v: Optional[float], spec: str) -> str:
    """``format(v, spec)``, or "-" for a missing value (None or NaN)."""
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def print_table(title: str, header: Sequence[str], body: Sequence[Sequence[str]],
                left_columns: Collection[str], use_rich: bool = True) -> None:
    """Prints ``body`` (rows of cells) under ``header``, the columns named in ``left_columns``
    left-aligned and the others right-aligned: with rich when ``use_rich`` and rich is installed,
    else as plain text (two spaces between columns, a dashed line under the header)."""
    if use_rich:
        try:
            from rich.console import Console
            from rich.table import Table

            table = Table(title=title)
            for h in header:
                table.add_column(h, justify="left" if h in left_columns else "right")
            for cells in body:
                table.add_row(*cells)
            Console().print(table)
            return
        except ImportError:  # rich is optional
            pass
    widths = [max([len(h)] + [len(cells[i]) for cells in body]) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if h in left_columns else c.rjust(w)
                         for c, w, h in zip(cells, widths, header)).rstrip()

    print(title)
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for cells in body:
        print(line(cells))


# --------------------------------------------------------------------------------------------
# worker processes
# --------------------------------------------------------------------------------------------

def emit_result(marker: str, result: Dict[str, Any]) -> None:
    """Writes a worker's result as the stdout line that :func:`run_worker` looks for."""
    sys.stdout.write(marker + json.dumps(result) + "\n")
    sys.stdout.flush()


def describe_exit(returncode: int, oom_hint: str, exited_suffix: str = "") -> Tuple[str, str]:
    """``(status, note)`` for a worker that ended with ``returncode`` (negative: killed by that
    signal) without reporting a result. ``oom_hint`` follows "killed by SIGKILL" in brackets."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        if -returncode == signal.SIGKILL:
            # the kernel's OOM killer sends SIGKILL, so under a memory benchmark it most likely
            # means out of memory
            return "oom", f"killed by {name} ({oom_hint})"
        return "error", f"killed by {name}"
    return "error", f"exited with status {returncode}{exited_suffix}"


def run_worker(cmd: Sequence[str], timeout: float, marker: str,
               explain_exit: Callable[[int], Tuple[str, str]], *,
               env: Optional[Mapping[str, str]] = None,
               stderr_chars: int = 300) -> Dict[str, Any]:
    """Runs the worker command ``cmd`` (environment ``env``, None: this process's) and returns
    the result it wrote with :func:`emit_result`. Without one: ``{"status": "timeout", ...}``
    after ``timeout`` seconds, else the status and note of ``explain_exit(returncode)``, the
    note followed by the last line of the worker's stderr (``stderr_chars`` at most)."""
    try:
        proc = subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "note": f"timed out after {timeout:g} s"}
    # the last marker line wins: the worker's libraries may print anything before it
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(marker):
            try:
                return json.loads(line[len(marker):])
            except json.JSONDecodeError:
                break
    status, note = explain_exit(proc.returncode)
    # the last stderr line is usually the exception that ended the worker
    tail = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    if tail:
        note += ": " + tail[-1].strip()[:stderr_chars]
    return {"status": status, "note": note}


def resolve_devices(choice: str, parser: argparse.ArgumentParser) -> List[str]:
    """The devices of ``--device choice``: "auto" is the CPU plus CUDA when it is available;
    "cuda" without CUDA is a usage error (``parser.error`` exits)."""
    if choice == "auto":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if choice == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch.cuda.is_available() is False")
    return [choice]


# --------------------------------------------------------------------------------------------
# machine description
# --------------------------------------------------------------------------------------------

def loadavg() -> Optional[List[float]]:
    """1/5/15-minute load averages: other work on the machine makes timings noisy."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
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


def mem_available_bytes() -> Optional[float]:
    """MemAvailable, or the physical memory where /proc/meminfo does not say (non-Linux)."""
    avail = proc_field_bytes("/proc/meminfo", "MemAvailable")
    if avail is not None:
        return avail
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _physical_cores() -> Optional[int]:
    """Physical cores from /proc/cpuinfo (distinct (physical id, core id)); None if unknown."""
    try:
        cores = set()
        phys = core = None
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("physical id"):
                    phys = line.split(":", 1)[1].strip()
                elif line.startswith("core id"):
                    core = line.split(":", 1)[1].strip()
                elif not line.strip():
                    if core is not None:
                        cores.add((phys, core))
                    phys = core = None
        if core is not None:
            cores.add((phys, core))
        return len(cores) or None
    except OSError:
        return None


def machine_info(devices: Sequence[str]) -> Dict[str, Any]:
    """The machine a benchmark ran on: CPU, cores, threads, memory, versions, the load average
    at the start, and the GPU when ``devices`` include CUDA."""
    avail = mem_available_bytes()
    info: Dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "torch_num_threads": torch.get_num_threads(),
        "mem_available_gb": None if avail is None else round(avail / _GB, 2),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch_version": torch.__version__,
        "loadavg_start": loadavg(),
    }
    try:
        import pixcon

        info["pixcon_version"] = getattr(pixcon, "__version__", None)
        info["cpu_isa"] = pixcon.cpu_isa() if hasattr(pixcon, "cpu_isa") else None
    except Exception as e:  # noqa: BLE001 - recorded: the timings are still worth having
        info["pixcon_import_error"] = f"{type(e).__name__}: {e}"
    if any(d.startswith("cuda") for d in devices):
        info["cuda_device"] = torch.cuda.get_device_name(0)
        info["cuda_version"] = torch.version.cuda
    return info
