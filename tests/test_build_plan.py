"""cmake/pixcon_build_plan.py: whether the build makes a CUDA library, with which nvcc, and the
wheel's version; one decision for CMake and the package metadata."""

import importlib.util
import sys
from pathlib import Path

import pytest

PLAN = Path(__file__).resolve().parents[1] / "cmake" / "pixcon_build_plan.py"


@pytest.fixture(scope="module")
def bp():
    spec = importlib.util.spec_from_file_location("pixcon_build_plan", PLAN)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


CU13, CU12 = {"/opt/cuda-13/bin/nvcc": "13.0"}, {"/opt/cuda-12/bin/nvcc": "12.4"}


def test_auto_builds_with_the_toolkit_of_torchs_cuda_major(bp):
    p = bp.plan("AUTO", "13.2", {**CU12, **CU13})
    assert p.cuda and p.nvcc == "/opt/cuda-13/bin/nvcc" and p.cuda_major == 13 and not p.stop


def test_auto_builds_the_cpu_library_only_for_a_cpu_only_torch(bp):
    p = bp.plan("AUTO", None, CU13)
    assert not p.cuda and not p.stop and "without CUDA" in p.reason


def test_auto_builds_the_cpu_library_only_without_any_toolkit(bp):
    p = bp.plan("AUTO", "12.8", {})
    assert not p.cuda and not p.stop and "no CUDA toolkit" in p.reason


def test_a_toolkit_of_another_major_stops_the_build_naming_both_versions(bp):
    p = bp.plan("AUTO", "12.8", CU13)
    assert p.stop and not p.cuda
    assert "CUDA 12.8" in p.reason and "CUDA 13.0" in p.reason and "PIXCON_CUDA=OFF" in p.reason


def test_on_stops_when_no_cuda_library_can_be_built(bp):
    assert bp.plan("ON", None, CU13).stop
    assert bp.plan("ON", "13.2", {}).stop
    assert "PIXCON_CUDA=OFF" in bp.plan("ON", "13.2", {}).reason


def test_off_builds_the_cpu_library_only(bp):
    p = bp.plan("OFF", "13.2", CU13)
    assert not p.cuda and not p.stop


def test_an_unknown_mode_stops(bp):
    assert bp.plan("MAYBE", "13.2", CU13).stop


def test_a_toolkit_whose_nvcc_does_not_run_is_ignored(bp):
    p = bp.plan("AUTO", "13.2", {"/broken/nvcc": None, **CU13})
    assert p.cuda and p.nvcc == "/opt/cuda-13/bin/nvcc"


def test_cmake_lines_quote_the_reason(bp):
    text = bp.cmake_lines(bp.Plan(True, "/opt/cuda-13/bin/nvcc", 13, 'a "quoted" reason'))
    assert 'set(PIXCON_PLAN_CUDA ON)' in text
    assert 'set(PIXCON_PLAN_NVCC "/opt/cuda-13/bin/nvcc")' in text
    assert 'set(PIXCON_PLAN_REASON "a \\"quoted\\" reason")' in text


def test_the_version_carries_the_cuda_major_only_with_a_cuda_library(bp, monkeypatch):
    monkeypatch.setattr(bp, "current_plan", lambda mode=None: bp.Plan(True, "nvcc", 13, ""))
    assert bp.dynamic_metadata({"base": "0.1.0"}, {}) == {"version": "0.1.0+cu13"}
    monkeypatch.setattr(bp, "current_plan", lambda mode=None: bp.Plan(False, None, None, ""))
    assert bp.dynamic_metadata({"base": "0.1.0"}, {}) == {"version": "0.1.0"}
