"""The CUDA ops against the CPU ops on the same inputs (run where a GPU exists)."""

import pytest
import torch

import pixcon

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")

OPTIONS = [
    dict(denominator=d, self_positive=sp, masked=m)
    for d in ("all", "pair") for sp in (False, True) for m in (False, True)
]


def _problem(n, d, dtype, seed, masked, bags=3):
    g = torch.Generator().manual_seed(seed)
    z = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1).to(dtype)
    y = torch.randint(0, 5, (n,), generator=g)
    y[torch.rand(n, generator=g) < 0.1] = 255
    cuts = torch.sort(torch.randint(0, n + 1, (bags - 1,), generator=g)).values
    offsets = torch.cat([torch.tensor([0]), cuts, torch.tensor([n])])
    extra = {}
    if masked:
        extra = dict(anchor_mask=torch.rand(n, generator=g) < 0.8, contrast_mask=torch.rand(n, generator=g) < 0.8,
                     image_ids=torch.randint(0, 2, (n,), generator=g))
    return z, y, offsets, extra


def _run(device, z, y, offsets, extra, g, **options):
    to = lambda t: t.to(device) if isinstance(t, torch.Tensor) else t
    zd = z.detach().to(device).requires_grad_()
    loss, valid = pixcon.contrastive_loss(zd, to(y), to(offsets), **{k: to(v) for k, v in extra.items()}, **options)
    (grad,) = torch.autograd.grad((loss * to(g)).sum(), zd)
    return loss.cpu(), valid.cpu(), grad.cpu()


@pytest.mark.parametrize("option", OPTIONS, ids=str)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_matches_cpu(option, dtype):
    option = dict(option)
    masked = option.pop("masked")
    z, y, offsets, extra = _problem(700, 64, dtype, 0, masked)
    g = torch.randn(700, dtype=torch.float64 if dtype == torch.float64 else torch.float32)
    cpu = _run("cpu", z, y, offsets, extra, g, **option)
    cuda = _run("cuda", z, y, offsets, extra, g, **option)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cuda[0], cpu[0], **tol)
    assert torch.equal(cuda[1], cpu[1])
    torch.testing.assert_close(cuda[2], cpu[2], **tol)


@pytest.mark.parametrize("denominator", ["all", "pair"])
def test_cuda_gradcheck(denominator):
    z = torch.randn(20, 4, dtype=torch.float64, device="cuda", requires_grad=True)
    y = torch.randint(0, 3, (20,), device="cuda")
    f = lambda x: pixcon.contrastive_loss(x, y, temperature=0.5, denominator=denominator, self_positive=True)[0]
    assert torch.autograd.gradcheck(f, (z,))


def test_cuda_opcheck():
    z = torch.randn(30, 8, device="cuda", requires_grad=True)
    y = torch.randint(0, 3, (30,), device="cuda")
    offsets = torch.tensor([0, 12, 30], device="cuda")
    args = (z, y, offsets, None, None, None, 0.1, 255, "pair", False)
    torch.library.opcheck(torch.ops.pixcon.contrastive_loss.default, args)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_precision_matches_float32(dtype):
    z, y, offsets, extra = _problem(500, 32, torch.float32, 1, False)
    z16 = z.to(dtype)
    ref, _ = pixcon.contrastive_loss(z16.float().cuda(), y.cuda(), offsets.cuda())
    zd = z16.cuda().requires_grad_()
    loss, _ = pixcon.contrastive_loss(zd, y.cuda(), offsets.cuda())
    torch.testing.assert_close(loss, ref, rtol=1e-2, atol=1e-2)
    (grad,) = torch.autograd.grad(loss.sum(), zd)
    assert grad.dtype == dtype


def test_cuda_sixteen_65x65_images_as_one_bag_fit_in_memory():
    n = 16 * 65 * 65  # 67600 rows: the N x N float matrix alone would be 18 GB
    z = torch.nn.functional.normalize(torch.randn(n, 256, device="cuda"), dim=1).requires_grad_()
    y = torch.randint(0, 19, (n,), device="cuda")
    torch.cuda.reset_peak_memory_stats()
    loss, valid = pixcon.contrastive_loss(z, y)
    loss.sum().backward()
    torch.cuda.synchronize()
    assert torch.isfinite(z.grad).all()
    assert torch.cuda.max_memory_allocated() < 4 * 2**30


def test_cuda_float32_uses_tf32_only_when_torch_allows_it():
    z, y, offsets, _ = _problem(700, 64, torch.float32, 3, False)
    cpu = pixcon.contrastive_loss(z, y, offsets)[0]
    previous = torch.backends.cuda.matmul.fp32_precision
    try:
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        strict = pixcon.contrastive_loss(z.cuda(), y.cuda(), offsets.cuda())[0].cpu()
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        fast = pixcon.contrastive_loss(z.cuda(), y.cuda(), offsets.cuda())[0].cpu()
    finally:
        torch.backends.cuda.matmul.fp32_precision = previous
    torch.testing.assert_close(strict, cpu, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast, cpu, rtol=2e-2, atol=2e-2)  # TF32 keeps 10 mantissa bits
