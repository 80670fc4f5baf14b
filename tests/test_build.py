"""The built library: CUDA kernels compiled for the promised architectures when nvcc exists."""

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import pixcon


def _library_path() -> Path:
    return next(p for p in pixcon._library._candidates() if p.is_file())


def _cuobjdump() -> str | None:
    found = shutil.which("cuobjdump")
    if found:
        return found
    import nvidia  # the pip CUDA packages torch depends on; nvidia-cuda-cuobjdump adds the tool

    for root in nvidia.__path__:
        for candidate in Path(root).glob("*/bin/cuobjdump"):
            return str(candidate)
    return None


def _has_cuda_kernels() -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key("pixcon::contrastive_loss", "CUDA")


def test_cuda_kernels_are_built_when_nvcc_is_available():
    if shutil.which("nvcc") is None:
        pytest.skip("no nvcc on this machine: PIXCON_CUDA=AUTO builds the CPU kernels only")
    assert _has_cuda_kernels()


def test_library_holds_sass_for_sm80_and_sm90_and_ptx():
    if not _has_cuda_kernels():
        pytest.skip("pixcon was built without CUDA kernels")
    tool = _cuobjdump()
    if tool is None:
        pytest.skip("cuobjdump not found (pip install nvidia-cuda-cuobjdump)")
    library = str(_library_path())
    elf = subprocess.run([tool, "--list-elf", library], capture_output=True, text=True, check=True).stdout
    ptx = subprocess.run([tool, "--list-ptx", library], capture_output=True, text=True, check=True).stdout
    for arch in ("sm_80", "sm_86", "sm_89", "sm_90"):
        assert f".{arch}.cubin" in elf, elf
    assert "sm_90.ptx" in ptx, ptx


def test_importing_pixcon_needs_no_gpu():
    code = "import pixcon, torch; print(pixcon.cpu_isa(), torch.cuda.is_available())"
    out = subprocess.run([__import__("sys").executable, "-c", code], capture_output=True, text=True,
                         env={**__import__("os").environ, "CUDA_VISIBLE_DEVICES": ""}, check=True)
    assert out.stdout.split()[0] in pixcon.available_cpu_isas()
