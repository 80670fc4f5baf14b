"""TF32: pixcon's float32 CUDA GEMMs follow torch's matmul setting; the CPU ignores it."""

import pytest
import torch

import pixcon  # noqa: F401  (registers torch.ops.pixcon)
from pixcon.functional import cuda_matmul_allows_tf32


@pytest.fixture
def restore_fp32_precision():
    previous = torch.backends.cuda.matmul.fp32_precision
    yield
    torch.backends.cuda.matmul.fp32_precision = previous


@pytest.mark.parametrize("precision, allowed", [("tf32", True), ("ieee", False)])
def test_tf32_flag_follows_torch_backends_cuda_matmul(restore_fp32_precision, precision, allowed):
    torch.backends.cuda.matmul.fp32_precision = precision
    assert cuda_matmul_allows_tf32() is allowed


def test_cpu_results_do_not_depend_on_allow_tf32():
    g = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(300, 16, generator=g), dim=1)
    y = torch.randint(0, 4, (300,), generator=g)
    offsets = torch.tensor([0, 300])
    args = (z, y, offsets, None, None, None, 0.1, 255, "all", False)
    strict = torch.ops.pixcon.contrastive_loss(*args, False)
    fast = torch.ops.pixcon.contrastive_loss(*args, True)
    for a, b in zip(strict, fast):
        assert torch.equal(a, b)
    stats = strict[2]
    grad = torch.ones(300)
    assert torch.equal(torch.ops.pixcon.contrastive_loss_backward(grad, z, y, offsets, None, None, None, stats,
                                                                 0.1, 255, "all", False, False),
                       torch.ops.pixcon.contrastive_loss_backward(grad, z, y, offsets, None, None, None, stats,
                                                                 0.1, 255, "all", False, True))


def test_allow_tf32_defaults_to_false_in_the_schema():
    schema = torch.ops.pixcon.contrastive_loss.default._schema
    assert schema.arguments[-1].name == "allow_tf32"
    assert schema.arguments[-1].default_value is False
    backward = torch.ops.pixcon.contrastive_loss_backward.default._schema
    assert backward.arguments[-1].name == "allow_tf32"
    assert backward.arguments[-1].default_value is False
