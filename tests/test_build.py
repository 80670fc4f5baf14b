"""The built libraries: what each needs at load time, and the CUDA kernels compiled for the
promised architectures when nvcc exists."""

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import pixcon
from pixcon import _build_config, _library

#: What the CUDA library may need besides torch's own libraries: the C and C++ runtimes. No CUDA
#: runtime (cudart is linked statically), no cuBLAS, no OpenMP.
SYSTEM_LIBRARIES = {"libstdc++.so.6", "libgcc_s.so.1", "libc.so.6", "libm.so.6", "ld-linux-x86-64.so.2",
                    "libdl.so.2", "librt.so.1", "libpthread.so.0"}
TORCH_LIBRARIES = {"libtorch_cpu.so", "libc10.so", "libtorch_cuda.so", "libc10_cuda.so"}


def _installed(name: str) -> Path:
    return next(p for p in _library._candidates(name, "") if p.is_file())


def _needed(library: Path) -> list[str]:
    """The NEEDED entries of a shared library's dynamic section."""
    if shutil.which("readelf") is None:
        pytest.fail("readelf (binutils) is needed to read the libraries' dependencies")
    out = subprocess.run(["readelf", "-d", str(library)], capture_output=True, text=True, check=True).stdout
    return [line.split("[", 1)[1].split("]", 1)[0] for line in out.splitlines() if "(NEEDED)" in line]


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
    return pixcon.cuda_status().loaded


def test_cpu_library_needs_no_cuda_library():
    needed = _needed(_installed("libpixcon.so"))
    assert "libtorch_cpu.so" in needed, needed
    assert not [n for n in needed if "cuda" in n or "cublas" in n or "nvrtc" in n], needed


def test_cuda_library_needs_only_torch_libraries_and_no_cuda_runtime():
    if _build_config.CUDA_MAJOR is None:
        pytest.skip("this build has no CUDA library (no CUDA toolkit matched torch's CUDA)")
    needed = set(_needed(_installed("libpixcon_cuda.so")))
    assert "libtorch_cuda.so" in needed, needed
    assert needed <= TORCH_LIBRARIES | SYSTEM_LIBRARIES, needed - TORCH_LIBRARIES - SYSTEM_LIBRARIES


def test_cuda_kernels_are_built_when_a_toolkit_matches_torch():
    if torch.__version__ != _build_config.TORCH_VERSION:
        pytest.skip(f"built against torch {_build_config.TORCH_VERSION}, running under {torch.__version__}")
    if shutil.which("nvcc") is None or torch.version.cuda is None:
        pytest.skip("no nvcc or a CPU-only torch here: PIXCON_CUDA=AUTO builds the CPU library only")
    assert _build_config.CUDA_MAJOR == int(torch.version.cuda.split(".")[0])
    assert _has_cuda_kernels(), pixcon.cuda_status().reason


def test_the_version_names_the_cuda_major_of_the_cuda_kernels():
    suffix = f"+cu{_build_config.CUDA_MAJOR}" if _build_config.CUDA_MAJOR else ""
    assert pixcon.__version__ == "0.1.0" + suffix


def test_library_holds_sass_for_sm80_to_sm90_and_ptx():
    if not _has_cuda_kernels():
        pytest.skip("pixcon was built without CUDA kernels")
    tool = _cuobjdump()
    if tool is None:
        pytest.skip("cuobjdump not found (pip install nvidia-cuda-cuobjdump)")
    library = str(_installed("libpixcon_cuda.so"))
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
