"""Autograd and PyTorch-integration contracts: gradcheck of the loss, opcheck of
both raw ops (schema, autograd registration, fake tensors, AOT dispatch) and
torch.compile(fullgraph=True) matching eager."""

from __future__ import annotations

import pytest
import torch

import pixcon
import pixcon.nn
from conftest import make_problem, upstream

GRADCHECK_CASES = {
    "plain": dict(n=14, d=3, num_classes=3),
    "masks_ignore": dict(n=20, d=4, num_classes=3, masks=True, ignore_frac=0.15),
    "image_ids_bags": dict(bag_sizes=[10, 1, 0, 13], d=5, num_classes=2, num_images=2),
    "everything": dict(bag_sizes=[12, 18], d=3, num_classes=3, masks=True, num_images=2, ignore_frac=0.1),
}


@pytest.mark.parametrize("self_positive", [False, True], ids=["", "selfpos"])
@pytest.mark.parametrize("denominator", ["all", "pair"])
@pytest.mark.parametrize("case", list(GRADCHECK_CASES))
def test_gradcheck(case, denominator, self_positive):
    p = make_problem(dtype=torch.float64, seed=20, **GRADCHECK_CASES[case])
    z = p.embeddings.clone().requires_grad_(True)

    def fn(x):
        return pixcon.contrastive_loss(x, p.labels, p.bag_offsets, temperature=0.5, denominator=denominator,
                                       self_positive=self_positive, **p.kwargs())[0]

    assert torch.autograd.gradcheck(fn, (z,), eps=1e-6, atol=1e-7, rtol=1e-5)


def _raw_samples():
    samples = []
    configs = [
        (dict(n=12, d=3, num_classes=3), "all", False, torch.float32),
        (dict(n=12, d=3, num_classes=3, masks=True, ignore_frac=0.2), "pair", True, torch.float64),
        (dict(bag_sizes=[6, 0, 1, 9], d=4, num_classes=2, num_images=2), "pair", False, torch.float32),
        (dict(bag_sizes=[7, 8], d=5, num_classes=3, masks=True, num_images=3), "all", True, torch.float64),
    ]
    for i, (kw, den, sp, dtype) in enumerate(configs):
        p = make_problem(dtype=dtype, seed=30 + i, **kw)
        samples.append((p, den, sp))
    return samples


def _forward_args(p, den, sp, requires_grad):
    z = p.embeddings.clone().requires_grad_(requires_grad)
    return (z, p.labels, p.bag_offsets, p.anchor_mask, p.contrast_mask, p.image_ids, 0.1, p.ignore_index, den, sp)


@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
def test_opcheck_contrastive_loss(requires_grad):
    for p, den, sp in _raw_samples():
        torch.library.opcheck(torch.ops.pixcon.contrastive_loss.default, _forward_args(p, den, sp, requires_grad))


def test_opcheck_contrastive_loss_backward():
    for p, den, sp in _raw_samples():
        args = _forward_args(p, den, sp, False)
        loss, valid, stats = torch.ops.pixcon.contrastive_loss(*args)
        g = upstream(p.n).to(loss.dtype)
        bargs = (g, p.embeddings, p.labels, p.bag_offsets, p.anchor_mask, p.contrast_mask, p.image_ids, stats,
                 0.1, p.ignore_index, den, sp)
        torch.library.opcheck(torch.ops.pixcon.contrastive_loss_backward.default, bargs)


class _SegHeadWithLoss(torch.nn.Module):
    def __init__(self, **loss_kw):
        super().__init__()
        self.head = pixcon.nn.ProjectionHead(6, channels=8, num_layers=2)
        self.loss = pixcon.nn.PixelContrastiveLoss(**loss_kw)

    def forward(self, x, y):
        return self.loss(self.head(x), y)


class _FunctionalLoss(torch.nn.Module):
    def forward(self, z, y, offsets, anchor_mask):
        loss, valid = pixcon.contrastive_loss(z, y, offsets, denominator="pair", anchor_mask=anchor_mask)
        return (loss * valid).sum() / valid.sum().clamp(min=1)


def _seg_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 6, 6, 5, generator=g)
    y = torch.randint(0, 3, (2, 12, 10), generator=g)
    y[0, :2] = 255
    return x, y


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
@pytest.mark.parametrize("loss_kw", [dict(variant="image", reduction="mean"),
                                     dict(variant="batch", denominator="pair", size=(4, 4), reduction="anchor_mean")],
                         ids=["image_mean", "batch_pair_resize"])
def test_compile_fullgraph_pixel_contrastive_loss_matches_eager(backend, loss_kw):
    torch.manual_seed(0)
    model = _SegHeadWithLoss(**loss_kw)
    x, y = _seg_inputs()
    eager = model(x, y)
    eager.backward()
    eager_grads = [prm.grad.clone() for prm in model.parameters()]
    model.zero_grad()

    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    out = compiled(x, y)
    out.backward()
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-6)
    for prm, expected in zip(model.parameters(), eager_grads):
        torch.testing.assert_close(prm.grad, expected, rtol=1e-4, atol=1e-6)


def test_compile_fullgraph_functional_matches_eager():
    p = make_problem(bag_sizes=[20, 0, 15], d=4, num_classes=3, dtype=torch.float32, seed=40, masks=True)
    mod = _FunctionalLoss()

    def run(m):
        z = p.embeddings.clone().requires_grad_(True)
        out = m(z, p.labels, p.bag_offsets, p.anchor_mask)
        out.backward()
        return out.detach(), z.grad

    eager_out, eager_grad = run(mod)
    torch._dynamo.reset()
    out, grad = run(torch.compile(mod, fullgraph=True, backend="aot_eager"))
    torch.testing.assert_close(out, eager_out, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad, eager_grad, rtol=1e-5, atol=1e-6)


def test_double_backward_is_rejected_or_correct():
    """Second-order gradients are not part of the contract, but asking for them must
    not silently return wrong numbers: either an error or a correct result.  The
    ``z ** 3`` term keeps ``z`` in the second-order graph, so a backward op that is
    silently treated as constant would give a wrong (not a missing) Hessian-vector
    product."""
    p = make_problem(8, 3, 2, dtype=torch.float64, seed=41)
    fn = lambda x: pixcon.contrastive_loss(x, p.labels, temperature=0.5)[0].sum() + (x**3).sum()
    z = p.embeddings.clone().requires_grad_(True)
    try:
        (g,) = torch.autograd.grad(fn(z), z, create_graph=True)
        torch.autograd.grad((g * torch.randn_like(g)).sum(), z)
    except RuntimeError:
        return  # rejected loudly
    assert torch.autograd.gradgradcheck(fn, (z,), raise_exception=False), (
        "double backward through pixcon.contrastive_loss silently returns wrong second derivatives")


def test_no_grad_call_builds_no_graph():
    p = make_problem(10, 3, 2, dtype=torch.float32, seed=42)
    z = p.embeddings.clone().requires_grad_(True)
    with torch.no_grad():
        loss, valid = pixcon.contrastive_loss(z, p.labels)
    assert not loss.requires_grad and not valid.requires_grad


def test_valid_is_not_differentiable_and_loss_is():
    p = make_problem(10, 3, 2, dtype=torch.float32, seed=43)
    z = p.embeddings.clone().requires_grad_(True)
    loss, valid = pixcon.contrastive_loss(z, p.labels)
    assert loss.requires_grad and not valid.requires_grad and valid.dtype == torch.bool


def test_normalize_then_loss_gradcheck_through_module():
    """The module's L2 normalisation and reshape are part of the differentiable path."""
    g = torch.Generator().manual_seed(44)
    x = torch.randn(1, 3, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 2, (1, 3, 4), generator=g)
    fn = pixcon.nn.PixelContrastiveLoss(temperature=0.5, reduction="sum")
    assert torch.autograd.gradcheck(lambda t: fn(t, y), (x,))
