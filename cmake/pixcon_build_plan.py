"""Whether pixcon's build makes a CUDA library, and with which nvcc: decided here once, for CMake
(which includes the plan this script writes) and for the wheel's version (``+cuNN`` when the
CUDA library is in it; the ``dynamic_metadata`` hook of scikit-build-core).

The CUDA library is compiled by a toolkit of the CUDA major version torch was built for: its
kernels then need the driver torch needs anyway, and with the CUDA runtime linked statically it
loads no second runtime next to torch's. ``PIXCON_CUDA`` (environment variable, or the CMake
variable of that name) chooses:

* ``OFF``: no CUDA library;
* ``ON``: a CUDA library, or stop with the reason;
* ``AUTO`` (default): a CUDA library when torch has CUDA and a toolkit of its major version is
  installed; none when torch has no CUDA or no toolkit is installed; stop when only toolkits of
  another major version are installed (naming both versions and ``PIXCON_CUDA=OFF``).

Usage from CMake: ``python pixcon_build_plan.py MODE OUT.cmake`` writes ``set(...)`` lines
(PIXCON_PLAN_CUDA ON/OFF, PIXCON_PLAN_NVCC, PIXCON_PLAN_CUDA_MAJOR, PIXCON_PLAN_REASON); it exits
with status 1 and the reason on stderr when the build must stop.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

MODES = ("AUTO", "ON", "OFF")


@dataclass
class Plan:
    cuda: bool  # build the CUDA library
    nvcc: Optional[str]
    cuda_major: Optional[int]
    reason: str  # why, in a sentence for the build log
    stop: bool = False  # the build must stop with ``reason``


def torch_cuda_version() -> Optional[str]:
    """The CUDA version torch was built for ("13.2"), or None for a CPU-only torch."""
    import torch

    return torch.version.cuda


def nvcc_candidates() -> List[str]:
    """Every nvcc this machine offers, the explicitly chosen ones first."""
    found: List[str] = []
    for var in ("CUDACXX",):
        if os.environ.get(var):
            found.append(os.environ[var])
    for var in ("CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"):
        if os.environ.get(var):
            found.append(os.path.join(os.environ[var], "bin", "nvcc"))
    on_path = shutil.which("nvcc")
    if on_path:
        found.append(on_path)
    found.append("/usr/local/cuda/bin/nvcc")
    found += sorted(glob.glob("/usr/local/cuda-*/bin/nvcc"), reverse=True)
    unique: List[str] = []
    for path in found:
        real = os.path.realpath(path)
        if os.access(real, os.X_OK) and real not in unique:
            unique.append(real)
    return unique


def nvcc_version(nvcc: str) -> Optional[str]:
    """The release nvcc reports ("13.0"), or None when it does not run."""
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"release (\d+\.\d+)", out)
    return match.group(1) if match else None


def major(version: str) -> int:
    return int(version.split(".")[0])


def plan(mode: str, torch_cuda: Optional[str], toolkits: Mapping[str, Optional[str]]) -> Plan:
    """The decision for ``mode`` given torch's CUDA version and the toolkits (nvcc -> release)."""
    mode = mode.upper()
    if mode not in MODES:
        return Plan(False, None, None, f"PIXCON_CUDA must be one of {', '.join(MODES)}, got {mode!r}", stop=True)
    if mode == "OFF":
        return Plan(False, None, None, "PIXCON_CUDA=OFF: the CPU library only")
    if torch_cuda is None:
        reason = "this torch was built without CUDA: the CPU library only"
        if mode == "ON":
            return Plan(False, None, None, "PIXCON_CUDA=ON, but " + reason.split(":")[0] +
                        " (install a CUDA build of torch, or set PIXCON_CUDA=OFF)", stop=True)
        return Plan(False, None, None, reason)
    want = major(torch_cuda)
    versions = {nvcc: v for nvcc, v in toolkits.items() if v}
    for nvcc, v in versions.items():
        if major(v) == want:
            return Plan(True, nvcc, want, f"torch is built for CUDA {torch_cuda}; building the CUDA "
                        f"library with {nvcc} (CUDA {v})")
    if not versions:
        reason = (f"torch is built for CUDA {torch_cuda} but no CUDA toolkit (nvcc) was found: the CPU "
                  "library only")
        if mode == "ON":
            return Plan(False, None, None, f"PIXCON_CUDA=ON, but torch is built for CUDA {torch_cuda} and "
                        f"no CUDA {want}.x toolkit (nvcc) was found; install one (or point CUDA_HOME "
                        "at it), or set PIXCON_CUDA=OFF", stop=True)
        return Plan(False, None, None, reason)
    others = ", ".join(f"CUDA {v} ({nvcc})" for nvcc, v in versions.items())
    return Plan(False, None, None, f"torch is built for CUDA {torch_cuda}, but the CUDA toolkits found "
                f"are {others}: the CUDA library must be built by a CUDA {want}.x toolkit. Install one "
                "(or point CUDA_HOME at it), or set PIXCON_CUDA=OFF to build the CPU library only",
                stop=True)


def current_plan(mode: Optional[str] = None) -> Plan:
    """The plan on this machine, for ``mode`` or else the PIXCON_CUDA environment variable."""
    mode = mode or os.environ.get("PIXCON_CUDA") or "AUTO"
    if mode.upper() == "OFF":
        return plan(mode, None, {})
    return plan(mode, torch_cuda_version(), {nvcc: nvcc_version(nvcc) for nvcc in nvcc_candidates()})


def cmake_lines(p: Plan) -> str:
    quote = lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "".join([
        f"set(PIXCON_PLAN_CUDA {'ON' if p.cuda else 'OFF'})\n",
        f"set(PIXCON_PLAN_NVCC {quote(p.nvcc or '')})\n",
        f"set(PIXCON_PLAN_CUDA_MAJOR {quote(str(p.cuda_major or ''))})\n",
        f"set(PIXCON_PLAN_REASON {quote(p.reason)})\n",
    ])


def dynamic_metadata(settings: Mapping[str, Any], project: Mapping[str, Any]) -> Dict[str, Any]:
    """scikit-build-core's hook: the version ``settings["base"]``, with ``+cuNN`` when the wheel
    holds a CUDA library for CUDA NN (as torch labels its own wheels)."""
    p = current_plan()
    if p.stop:
        raise RuntimeError("pixcon: " + p.reason)
    return {"version": str(settings["base"]) + (f"+cu{p.cuda_major}" if p.cuda else "")}


def main(argv: List[str]) -> int:
    if len(argv) != 3:
        print("usage: pixcon_build_plan.py AUTO|ON|OFF OUT.cmake", file=sys.stderr)
        return 2
    p = current_plan(argv[1])
    if p.stop:
        print(p.reason, file=sys.stderr)
        return 1
    with open(argv[2], "w") as f:
        f.write(cmake_lines(p))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
