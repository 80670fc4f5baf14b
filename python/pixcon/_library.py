"""Locates and loads the compiled pixcon library (kernels + torch shim)."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import torch

_LIBRARY_NAME = "libpixcon.so"


def _candidates() -> list[Path]:
    import pixcon

    found = []
    env = os.environ.get("PIXCON_LIBRARY")
    if env:
        found.append(Path(env))
    # An editable install keeps Python files in the source tree and the library in
    # site-packages: both are on the package's __path__.
    for entry in pixcon.__path__:
        found.append(Path(entry) / _LIBRARY_NAME)
    return found


def load() -> ctypes.CDLL:
    """Registers torch.ops.pixcon.* and returns a ctypes handle to the C API."""
    for path in _candidates():
        if path.is_file():
            torch.ops.load_library(str(path))
            return ctypes.CDLL(str(path))
    searched = ", ".join(str(p) for p in _candidates())
    raise ImportError(
        f"pixcon: compiled library {_LIBRARY_NAME} not found (searched {searched}); "
        "install the package with `pip install .` or set PIXCON_LIBRARY"
    )
