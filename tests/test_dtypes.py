"""Input dtypes and memory layouts: float16 / bfloat16 embeddings (fp32 accumulation,
fp32 loss, gradient in the input dtype), integer label dtypes, and non-contiguous
(strided / transposed) inputs giving exactly the contiguous result."""

from __future__ import annotations

import pytest
import torch

import pixcon
from conftest import assert_close_f64, loss_and_grad, make_problem

HALF_DTYPES = [torch.float16, torch.bfloat16]


@pytest.mark.parametrize("denominator", ["all", "pair"])
@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=["f16", "bf16"])
def test_half_precision_loss_matches_float32_on_the_rounded_values(cpu_isa, dtype, denominator):
    p = make_problem(300, 32, num_classes=5, num_bags=2, ignore_frac=0.1, dtype=dtype, seed=50, masks=True)
    loss, valid, grad = loss_and_grad(pixcon.contrastive_loss, p, denominator=denominator)
    loss32, valid32, grad32 = loss_and_grad(pixcon.contrastive_loss, p, embeddings=p.embeddings.float(),
                                            denominator=denominator)
    assert loss.dtype == torch.float32
    assert torch.equal(valid, valid32)
    torch.testing.assert_close(loss, loss32, rtol=1e-2, atol=1e-3 * float(loss32.abs().max()))
    assert grad.dtype == dtype
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(grad.float(), grad32, rtol=1e-2, atol=1e-2 * float(grad32.abs().max()))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_gradient_dtype_equals_input_dtype(dtype):
    p = make_problem(20, 4, 3, dtype=dtype, seed=51)
    z = p.embeddings.clone().requires_grad_(True)
    loss, _ = pixcon.contrastive_loss(z, p.labels)
    assert loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    loss.sum().backward()
    assert z.grad.dtype == dtype and z.grad.shape == z.shape


@pytest.mark.parametrize("label_dtype", [torch.int32, torch.uint8, torch.int16])
def test_integer_label_dtypes_give_the_int64_result(label_dtype):
    p = make_problem(60, 5, 4, seed=52, ignore_frac=0.2)
    loss, valid = pixcon.contrastive_loss(p.embeddings, p.labels, denominator="pair")
    loss_t, valid_t = pixcon.contrastive_loss(p.embeddings, p.labels.to(label_dtype), denominator="pair")
    assert torch.equal(valid, valid_t)
    assert_close_f64(loss_t, loss)


def _strided_copy(t: torch.Tensor, step: int = 2) -> torch.Tensor:
    """A non-contiguous view holding the same values as ``t`` (every ``step``-th
    element of a larger buffer along dim 0)."""
    buf = torch.zeros((t.shape[0] * step, *t.shape[1:]), dtype=t.dtype)
    buf[::step] = t
    view = buf[::step]
    assert not view.is_contiguous() or t.numel() <= 1
    return view


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=["f64", "f32", "bf16"])
@pytest.mark.parametrize("layout", ["transposed", "row_strided", "column_slice"])
def test_non_contiguous_embeddings_give_the_contiguous_result(layout, dtype):
    p = make_problem(bag_sizes=[40, 0, 33], d=6, num_classes=3, dtype=dtype, seed=53, masks=True, num_images=2)
    z = p.embeddings
    if layout == "transposed":
        view = z.t().contiguous().t()
    elif layout == "row_strided":
        view = _strided_copy(z)
    else:
        wide = torch.zeros(z.shape[0], z.shape[1] + 5, dtype=dtype)
        wide[:, 2 : 2 + z.shape[1]] = z
        view = wide[:, 2 : 2 + z.shape[1]]
    assert not view.is_contiguous() and torch.equal(view, z)
    for den in ("all", "pair"):
        expected = loss_and_grad(pixcon.contrastive_loss, p, denominator=den)
        actual = loss_and_grad(pixcon.contrastive_loss, p, embeddings=view, denominator=den)
        assert torch.equal(actual[1], expected[1])
        torch.testing.assert_close(actual[0], expected[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(actual[2], expected[2], rtol=1e-12, atol=1e-12)


def test_non_contiguous_labels_masks_ids_and_offsets_give_the_contiguous_result():
    p = make_problem(bag_sizes=[25, 1, 30], d=4, num_classes=3, seed=54, masks=True, num_images=2,
                     ignore_frac=0.1)
    kw = dict(denominator="pair", self_positive=True)
    expected = pixcon.contrastive_loss(p.embeddings, p.labels, p.bag_offsets, **kw, **p.kwargs())
    strided = dict(anchor_mask=_strided_copy(p.anchor_mask), contrast_mask=_strided_copy(p.contrast_mask),
                   image_ids=_strided_copy(p.image_ids), ignore_index=p.ignore_index)
    actual = pixcon.contrastive_loss(p.embeddings, _strided_copy(p.labels), _strided_copy(p.bag_offsets),
                                     **kw, **strided)
    assert torch.equal(actual[1], expected[1])
    torch.testing.assert_close(actual[0], expected[0], rtol=1e-12, atol=1e-12)


def test_non_contiguous_upstream_gradient():
    p = make_problem(30, 4, 3, seed=55)
    z = p.embeddings.clone().requires_grad_(True)
    loss, _ = pixcon.contrastive_loss(z, p.labels)
    g = torch.randn(p.n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    (grad_strided,) = torch.autograd.grad(loss, z, grad_outputs=g[:, 0], retain_graph=True)
    (grad_contig,) = torch.autograd.grad(loss, z, grad_outputs=g[:, 0].contiguous())
    torch.testing.assert_close(grad_strided, grad_contig, rtol=1e-12, atol=1e-12)


def test_expanded_upstream_gradient_from_sum():
    """loss.sum().backward() hands the op a stride-0 (expanded) gradient."""
    p = make_problem(30, 4, 3, seed=56)
    z = p.embeddings.clone().requires_grad_(True)
    loss, _ = pixcon.contrastive_loss(z, p.labels)
    loss.sum().backward()
    z2 = p.embeddings.clone().requires_grad_(True)
    loss2, _ = pixcon.contrastive_loss(z2, p.labels)
    loss2.backward(torch.ones(p.n, dtype=torch.float64))
    torch.testing.assert_close(z.grad, z2.grad, rtol=1e-12, atol=1e-12)
