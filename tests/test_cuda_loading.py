"""Importing pixcon where its CUDA library cannot serve: the CPU ops work, and a CUDA call of a
pixcon op says why there are no CUDA kernels and how to get them (python/pixcon/_library.py)."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from pixcon import _build_config, _library

CPU_STEP = textwrap.dedent("""
    import torch, pixcon
    z = torch.nn.functional.normalize(torch.randn(40, 8, dtype=torch.float64), dim=1).requires_grad_()
    y = torch.arange(40) % 3
    loss, valid = pixcon.contrastive_loss(z, y)
    ref, _ = pixcon.reference.contrastive_loss(z.detach(), y)
    torch.testing.assert_close(loss.detach(), ref)
    loss.sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    status = pixcon.cuda_status()
    print("loaded" if status.loaded else "absent:", status.reason)
    """)


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def _expected_reason(where_it_would_load: str) -> str:
    """The reason a child process must give: the library's own failure where this torch could use
    the CUDA kernels, else why it cannot (it then never tries to load them)."""
    return _library._why_not(_build_config.CUDA_MAJOR) or where_it_would_load


def test_cpu_forward_and_backward_work_when_the_cuda_library_cannot_load(tmp_path):
    broken = tmp_path / "libpixcon_cuda.so"
    broken.write_bytes(b"not a shared library")
    out = _run(CPU_STEP, PIXCON_CUDA_LIBRARY=str(broken))
    assert out.returncode == 0, out.stderr
    assert "absent:" in out.stdout and _expected_reason("failed") in out.stdout, out.stdout


def test_cpu_ops_work_when_the_named_cuda_library_does_not_exist(tmp_path):
    out = _run(CPU_STEP, PIXCON_CUDA_LIBRARY=str(tmp_path / "missing.so"))
    assert out.returncode == 0, out.stderr
    assert "absent:" in out.stdout and _expected_reason("does not exist") in out.stdout, out.stdout


def test_a_cuda_call_without_cuda_kernels_raises_the_reason(tmp_path):
    # no GPU is needed: redispatching to the CUDA key runs the kernel registered for it
    code = CPU_STEP + textwrap.dedent("""
        op = torch.ops.pixcon.contrastive_loss.default
        args = (z.detach(), y, torch.tensor([0, 40]), None, None, None, 0.1, 255, "all", False)
        try:
            op.redispatch(torch._C.DispatchKeySet(torch._C.DispatchKey.CUDA), *args)
        except RuntimeError as e:
            print("raised:", e)
        """)
    out = _run(code, PIXCON_CUDA_LIBRARY=str(tmp_path / "missing.so"))
    assert out.returncode == 0, out.stderr
    raised = out.stdout.split("raised:", 1)[-1]
    assert "pixcon.contrastive_loss: no CUDA kernels" in raised, out.stdout
    assert _expected_reason("does not exist") in raised, out.stdout
    assert "CPU kernels work" in raised


@pytest.mark.parametrize(
    "built, torch_cuda, expected",
    [
        (None, "13.2", "built without CUDA kernels"),
        (13, None, "has no CUDA"),
        (13, "12.8", "built for CUDA 13, but this torch"),
        (12, "12.8", None),
    ],
    ids=["no_cuda_build", "cpu_only_torch", "major_mismatch", "match"],
)
def test_the_reason_names_what_is_missing(monkeypatch, built, torch_cuda, expected):
    monkeypatch.setattr(torch.version, "cuda", torch_cuda)
    reason = _library._why_not(built)
    if expected is None:
        assert reason is None
    else:
        assert expected in reason, reason
