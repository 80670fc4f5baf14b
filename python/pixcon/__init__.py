"""pixcon: the fused pixel-wise, label-based contrastive loss as torch.ops.pixcon.*.

The loss never materialises the N x N similarity matrix, so it runs on every pixel of a
batch at full feature resolution. See ``pixcon.contrastive_loss`` and
``pixcon.nn.PixelContrastiveLoss``.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
from typing import Iterator

import torch

from . import _library

_lib = _library.load()
_cuda = _library.load_cuda()

from . import _loss_op  # noqa: E402, F401  (registers the loss op's fake kernels and autograd)
from . import nn, reference  # noqa: E402
from .auxiliary import auxiliary_label_quality, auxiliary_labels  # noqa: E402
from .functional import contrastive_loss  # noqa: E402
from .reduction import reduce_loss  # noqa: E402
from .sampling import PixelSampler, sample_pixels  # noqa: E402

__version__ = importlib.metadata.version("pixcon")  # "+cuNN" when the CUDA kernels are in it


def cuda_status() -> _library.CudaStatus:
    """Whether pixcon's CUDA kernels are registered (``loaded``) and, when they are not, why and
    how to get them (``reason``). The CPU kernels work either way."""
    return _cuda

_ISA_CODES = {"scalar": 1, "avx2": 2, "avx512": 3}
_ISA_NAMES = {code: name for name, code in _ISA_CODES.items()}
_forced_isa: str | None = None


def cpu_isa() -> str:
    """The instruction-set tier the CPU kernels use: "scalar", "avx2" or "avx512"."""
    return _ISA_NAMES[_lib.pixcon_cpu_isa()]


def available_cpu_isas() -> list[str]:
    """The tiers this CPU (and build) supports, narrowest first."""
    return [name for name, code in _ISA_CODES.items() if _lib.pixcon_cpu_isa_supported(code)]


def set_cpu_isa(name: str | None) -> None:
    """Forces a CPU tier (None: back to automatic detection). The PIXCON_CPU_ISA environment
    variable does the same at start-up."""
    global _forced_isa
    if name is None:
        _lib.pixcon_cpu_set_isa(0)
        _forced_isa = None
        return
    if name not in _ISA_CODES:
        raise ValueError(f"pixcon.set_cpu_isa: unknown tier {name!r}; choose from {list(_ISA_CODES)}")
    if _lib.pixcon_cpu_set_isa(_ISA_CODES[name]) != 0:
        raise RuntimeError(f"pixcon.set_cpu_isa: this CPU does not support {name!r} (available: {available_cpu_isas()})")
    _forced_isa = name


def cpu_peak_gflops(threads: int | None = None, seconds: float = 0.25) -> float:
    """The float32 multiply-add rate (2 flops each, in GFLOP/s) that the current CPU tier reaches
    on ``threads`` threads (None: torch's thread count) in a register-only loop, the fastest of a
    few runs lasting about ``seconds`` together (a run another process disturbs is only slower):
    the peak that the loss benchmark's efficiency is a fraction of, measured in the same run on
    the same cores."""
    peak = _lib.pixcon_cpu_fma_peak_gflops
    peak.restype = ctypes.c_double
    peak.argtypes = (ctypes.c_int, ctypes.c_double)
    return float(peak(torch.get_num_threads() if threads is None else int(threads), float(seconds)))


def cpu_fixed_shift() -> bool:
    """Whether the CPU kernels take the fixed-shift path where the rows' norms allow it (the
    default): one exponential per pair instead of an online log-sum-exp, same results to rounding."""
    return bool(_lib.pixcon_cpu_fixed_shift())


@contextlib.contextmanager
def use_cpu_fixed_shift(enabled: bool) -> Iterator[None]:
    """Context manager that turns the CPU kernels' fixed-shift path on or off, then restores it:
    with it off, every tile takes the online log-sum-exp path."""
    previous = cpu_fixed_shift()
    _lib.pixcon_cpu_set_fixed_shift(int(bool(enabled)))
    try:
        yield
    finally:
        _lib.pixcon_cpu_set_fixed_shift(int(previous))


@contextlib.contextmanager
def use_cpu_isa(name: str) -> Iterator[None]:
    """Context manager that runs the CPU kernels with the given tier, then restores it."""
    previous = _forced_isa
    set_cpu_isa(name)
    try:
        yield
    finally:
        set_cpu_isa(previous)


__all__ = [
    "PixelSampler", "auxiliary_label_quality", "auxiliary_labels", "available_cpu_isas", "contrastive_loss", "cpu_fixed_shift", "cpu_isa",
    "cpu_peak_gflops", "cuda_status", "nn", "reduce_loss",
    "reference", "sample_pixels", "set_cpu_isa", "use_cpu_fixed_shift", "use_cpu_isa",
]
