"""Locates and loads pixcon's compiled libraries: ``libpixcon.so`` (the CPU kernels and the op
schemas) always, ``libpixcon_cuda.so`` (the CUDA kernels) only where it can serve: a torch built
for the CUDA major version the library was built for. Where it cannot, the CPU ops work and every
CUDA call of a pixcon op raises an error that says why and how to get the CUDA kernels; importing
never fails for want of CUDA."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any, NamedTuple

import torch

_ERROR_TYPES: dict[str, type[Exception]] = {"ValueError": ValueError, "TypeError": TypeError}
_LIBRARY_NAME = "libpixcon.so"
_CUDA_LIBRARY_NAME = "libpixcon_cuda.so"
_OPS = ("contrastive_loss", "contrastive_loss_backward", "sample_pixels", "kmeans")


class CudaStatus(NamedTuple):
    """Whether pixcon's CUDA kernels are registered, and if not, why."""

    loaded: bool
    reason: str


def _candidates(name: str, env: str) -> list[Path]:
    import pixcon

    found = []
    if os.environ.get(env):
        found.append(Path(os.environ[env]))
    # An editable install keeps Python files in the source tree and the libraries in
    # site-packages: both are on the package's __path__.
    for entry in pixcon.__path__:
        found.append(Path(entry) / name)
    return found


_cpu_library: ctypes.CDLL | None = None


def cpu_library() -> ctypes.CDLL:
    """A ctypes handle to the C API of the loaded ``libpixcon.so``."""
    assert _cpu_library is not None, "pixcon._library.load() runs when pixcon is imported"
    return _cpu_library


def load() -> ctypes.CDLL:
    """Registers the op schemas and their CPU kernels; returns a ctypes handle to the C API."""
    global _cpu_library
    for path in _candidates(_LIBRARY_NAME, "PIXCON_LIBRARY"):
        if path.is_file():
            torch.ops.load_library(str(path))
            _cpu_library = ctypes.CDLL(str(path))
            return _cpu_library
    searched = ", ".join(str(p) for p in _candidates(_LIBRARY_NAME, "PIXCON_LIBRARY"))
    raise ImportError(
        f"pixcon: compiled library {_LIBRARY_NAME} not found (searched {searched}); "
        "install the package with `pip install .` or set PIXCON_LIBRARY"
    )


def _why_not(built_major: int | None) -> str | None:
    """Why the CUDA library cannot serve this torch, or None when it can."""
    rebuild = ("reinstall pixcon from source against this torch, on a machine with a CUDA toolkit of "
               "its major version (`pip install --no-build-isolation .`)")
    if built_major is None:
        return ("this pixcon was built without CUDA kernels (its build found a CPU-only torch, no CUDA "
                f"toolkit, or PIXCON_CUDA=OFF); {rebuild}")
    if torch.version.cuda is None:
        return (f"this torch ({torch.__version__}) has no CUDA; install a CUDA build of torch "
                f"(for CUDA {built_major}.x, which pixcon's CUDA kernels are built for)")
    torch_major = int(torch.version.cuda.split(".")[0])
    if torch_major != built_major:
        return (f"pixcon's CUDA kernels are built for CUDA {built_major}, but this torch "
                f"({torch.__version__}) is built for CUDA {torch.version.cuda}: {rebuild}, or install "
                f"a torch built for CUDA {built_major}.x")
    return None


def load_cuda() -> CudaStatus:
    """Registers the CUDA kernels where they can serve this torch; else registers CUDA kernels
    that raise with the reason. ``PIXCON_CUDA_LIBRARY`` names the library to load instead of the
    installed one."""
    from . import _build_config

    reason = _why_not(_build_config.CUDA_MAJOR)
    if reason is None:
        paths = [p for p in _candidates(_CUDA_LIBRARY_NAME, "PIXCON_CUDA_LIBRARY") if p.is_file()]
        explicit = os.environ.get("PIXCON_CUDA_LIBRARY")
        if explicit and Path(explicit) not in paths:
            reason = f"PIXCON_CUDA_LIBRARY names {explicit}, which does not exist"
        elif not paths:
            reason = f"{_CUDA_LIBRARY_NAME} is missing from the installation; reinstall pixcon"
        else:
            try:
                torch.ops.load_library(str(paths[0]))
                return CudaStatus(True, f"CUDA kernels for CUDA {_build_config.CUDA_MAJOR} from {paths[0]}")
            except OSError as e:
                reason = f"loading {paths[0]} failed: {e}"
    _register_cuda_errors(reason)
    return CudaStatus(False, reason)


_error_library: torch.library.Library | None = None


def _register_cuda_errors(reason: str) -> None:
    """CUDA kernels for every pixcon op that raise ``reason``: a user's first CUDA call learns
    why there are no CUDA kernels, instead of torch's generic 'could not run ... CUDA backend'."""
    global _error_library
    _error_library = torch.library.Library("pixcon", "IMPL")

    def raiser(name: str):
        def kernel(*args, **kwargs):
            raise RuntimeError(f"pixcon.{name}: no CUDA kernels in this installation: {reason}. "
                               "The CPU kernels work (move the tensors to the CPU).")
        return kernel

    for name in _OPS:
        _error_library.impl(name, raiser(name), "CUDA")


def user_error(error: RuntimeError) -> Exception:
    """The ValueError / TypeError that an argument error of a pixcon kernel stands for (``error``
    itself otherwise). torch's stable ABI turns every C++ exception into a RuntimeError, so the
    shim starts such a message with the Python type's name (shim/errors.h)."""
    kind, _, message = str(error).partition(": ")
    if kind in _ERROR_TYPES and message:
        return _ERROR_TYPES[kind](message)
    return error


def call_op(op: Any, *args: Any, **kwargs: Any) -> Any:
    """``op(*args, **kwargs)``, its argument errors raised as ValueError / TypeError (when
    compiled, the op's RuntimeError as it is: the graph runs without this frame)."""
    if torch.compiler.is_compiling():
        return op(*args, **kwargs)
    try:
        return op(*args, **kwargs)
    except RuntimeError as error:
        raise user_error(error) from None
