"""Edge cases of the loss semantics: no valid anchor anywhere, single-class bags,
one-row and empty bags, all-ignored bags, the exact meaning of ``valid``, and
which rows receive gradient."""

from __future__ import annotations

import pytest
import torch

import pixcon
import pixcon.nn
from conftest import IGNORE, assert_close_f64, loss_and_grad, make_problem, reference_loss_and_grad, upstream


@pytest.mark.parametrize("reduction", ["mean", "anchor_mean", "sum"])
@pytest.mark.parametrize("variant", ["image", "batch"])
@pytest.mark.parametrize("labels_kind", ["all_ignored", "every_pixel_its_own_class"])
def test_module_with_no_valid_anchor_returns_attached_zero_with_zero_gradient(labels_kind, variant, reduction):
    x = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(60), requires_grad=True)
    if labels_kind == "all_ignored":
        y = torch.full((2, 3, 3), IGNORE, dtype=torch.int64)
    else:
        y = torch.arange(18).reshape(2, 3, 3)
    out = pixcon.nn.PixelContrastiveLoss(variant=variant, reduction=reduction)(x, y)
    assert out.dim() == 0 and out.item() == 0.0
    assert out.requires_grad
    out.backward()
    assert torch.isfinite(x.grad).all() and (x.grad == 0).all()


def test_module_with_no_valid_anchor_and_reduction_none_returns_zero_vector():
    x = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(61), requires_grad=True)
    y = torch.full((2, 3, 3), IGNORE, dtype=torch.int64)
    out = pixcon.nn.PixelContrastiveLoss(reduction="none")(x, y)
    assert out.shape == (18,) and (out == 0).all()
    out.sum().backward()
    assert (x.grad == 0).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_single_class_bag_all_every_anchor_valid(dtype):
    p = make_problem(30, 5, num_classes=1, dtype=dtype, seed=62)
    loss, valid, grad = loss_and_grad(pixcon.contrastive_loss, p)
    assert valid.all()
    assert (loss > 0).all()  # LSE over positives exceeds their mean unless all equal
    exp_loss, _, exp_grad = reference_loss_and_grad(p)
    torch.testing.assert_close(loss, exp_loss.to(loss.dtype), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, exp_grad.to(dtype), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("self_positive", [False, True])
def test_single_class_bag_pair_has_no_negative_so_zero_loss_but_valid(self_positive):
    p = make_problem(30, 5, num_classes=1, seed=63)
    loss, valid, grad = loss_and_grad(pixcon.contrastive_loss, p, denominator="pair", self_positive=self_positive)
    assert valid.all()
    assert (loss == 0).all()
    assert torch.isfinite(grad).all() and (grad == 0).all()


@pytest.mark.parametrize("denominator", ["all", "pair"])
def test_one_row_bags_have_no_positive_and_are_invalid(denominator):
    p = make_problem(bag_sizes=[1, 1, 1, 1], d=3, num_classes=1, seed=64)
    loss, valid, grad = loss_and_grad(pixcon.contrastive_loss, p, denominator=denominator)
    assert not valid.any() and (loss == 0).all() and (grad == 0).all()


@pytest.mark.parametrize("denominator", ["all", "pair"])
def test_one_row_bags_with_self_positive_are_valid_with_zero_loss(denominator):
    # P(i) = {i}, N(i) = {}: "all" gives s_ii - s_ii = 0, "pair" softplus(-inf) = 0
    p = make_problem(bag_sizes=[1, 1, 1], d=3, num_classes=2, seed=65)
    loss, valid, grad = loss_and_grad(pixcon.contrastive_loss, p, denominator=denominator, self_positive=True)
    assert valid.all()
    torch.testing.assert_close(loss, torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(grad, torch.zeros_like(grad), rtol=0, atol=1e-12)


def test_empty_bags_are_allowed_everywhere():
    p = make_problem(bag_sizes=[0, 0, 12, 0, 9, 0], d=3, num_classes=2, seed=66)
    loss, valid, grad = loss_and_grad(pixcon.contrastive_loss, p)
    exp_loss, exp_valid, exp_grad = reference_loss_and_grad(p)
    assert torch.equal(valid, exp_valid)
    assert_close_f64(loss, exp_loss)
    assert_close_f64(grad, exp_grad)


def test_zero_rows_give_empty_outputs():
    z = torch.zeros(0, 4, dtype=torch.float64, requires_grad=True)
    loss, valid = pixcon.contrastive_loss(z, torch.zeros(0, dtype=torch.int64))
    assert loss.shape == (0,) and valid.shape == (0,) and valid.dtype == torch.bool
    loss.sum().backward()
    assert z.grad.shape == (0, 4)


@pytest.mark.parametrize("denominator", ["all", "pair"])
def test_all_ignored_bag_is_invalid_gets_no_gradient_and_does_not_affect_other_bags(denominator):
    p = make_problem(bag_sizes=[15, 12, 18], d=4, num_classes=3, seed=67)
    p.labels[p.bag(1)] = IGNORE
    loss, valid, grad = loss_and_grad(pixcon.contrastive_loss, p, denominator=denominator)
    sl = p.bag(1)
    assert not valid[sl].any() and (loss[sl] == 0).all() and (grad[sl] == 0).all()
    for b in (0, 2):
        s = p.bag(b)
        alone, _ = pixcon.contrastive_loss(p.embeddings[s], p.labels[s], denominator=denominator)
        assert_close_f64(loss[s], alone)


def test_valid_means_anchor_not_ignored_and_has_a_positive():
    z = torch.randn(8, 3, generator=torch.Generator().manual_seed(68), dtype=torch.float64)
    #                 0  1  2  3    4    5  6  7
    y = torch.tensor([0, 0, 1, 1, IGNORE, 2, 3, 3])
    anchor = torch.tensor([True, False, True, True, True, True, True, True])
    contrast = torch.tensor([True, True, True, False, True, True, True, True])
    loss, valid = pixcon.contrastive_loss(z, y, anchor_mask=anchor, contrast_mask=contrast)
    expected = [
        True,   # 0: positive 1
        False,  # 1: not an anchor (still a positive of 0)
        False,  # 2: its only same-class row 3 is not a contrast row
        True,   # 3: not a contrast row, but an anchor with positive 2
        False,  # 4: ignored
        False,  # 5: unique class
        True,   # 6
        True,   # 7
    ]
    assert valid.tolist() == expected
    assert (loss[~valid] == 0).all()
    _, valid_sp = pixcon.contrastive_loss(z, y, anchor_mask=anchor, contrast_mask=contrast, self_positive=True)
    assert valid_sp.tolist() == [True, False, True, True, False, True, True, True]  # every non-ignored anchor


def test_image_ids_do_not_change_validity():
    p = make_problem(40, 3, 3, seed=69, num_images=4)
    _, valid = pixcon.contrastive_loss(p.embeddings, p.labels)
    _, valid_img = pixcon.contrastive_loss(p.embeddings, p.labels, image_ids=p.image_ids)
    assert torch.equal(valid, valid_img)


@pytest.mark.parametrize("denominator", ["all", "pair"])
def test_rows_neither_anchor_nor_contrast_get_zero_gradient(denominator):
    p = make_problem(40, 4, 3, seed=70, ignore_frac=0.2, masks=True)
    _, _, grad = loss_and_grad(pixcon.contrastive_loss, p, denominator=denominator)
    inert = (p.labels == IGNORE) | (~p.anchor_mask & ~p.contrast_mask)
    assert inert.any()
    assert (grad[inert] == 0).all()
    assert (grad[~inert] != 0).any()


def test_upstream_gradient_of_invalid_rows_is_ignored():
    p = make_problem(30, 3, 6, seed=71)
    p.labels[:3] = torch.tensor([50, 51, 52])  # invalid anchors
    z = p.embeddings.clone().requires_grad_(True)
    loss, valid = pixcon.contrastive_loss(z, p.labels)
    assert not valid[:3].any()
    g = upstream(p.n)
    (grad,) = torch.autograd.grad(loss, z, grad_outputs=g, retain_graph=True)
    g2 = g.clone()
    g2[~valid] = 1e6
    (grad2,) = torch.autograd.grad(loss, z, grad_outputs=g2)
    assert_close_f64(grad2, grad)


def test_custom_ignore_index_negative():
    p = make_problem(30, 3, 3, seed=72)
    labels = p.labels.clone()
    labels[:5] = -1
    loss, valid = pixcon.contrastive_loss(p.embeddings, labels, ignore_index=-1)
    labels255 = labels.clone()
    labels255[:5] = IGNORE
    loss255, valid255 = pixcon.contrastive_loss(p.embeddings, labels255)
    assert torch.equal(valid, valid255) and not valid[:5].any()
    assert_close_f64(loss, loss255)


def test_label_255_is_an_ordinary_class_with_another_ignore_index():
    p = make_problem(30, 3, 2, seed=73)
    labels = p.labels.clone()
    labels[:6] = 255
    loss, valid = pixcon.contrastive_loss(p.embeddings, labels, ignore_index=-100)
    assert valid[:6].all()
    exp_loss, exp_valid, _ = reference_loss_and_grad(p.__class__(p.embeddings, labels, p.bag_offsets,
                                                                  ignore_index=-100))
    assert_close_f64(loss, exp_loss)


@pytest.mark.parametrize("scale, offset", [(1, 1000), (10 ** 6, 0), (2 ** 61, 7)],
                         ids=["offset", "wider-than-bag", "int64-wide"])
def test_labels_and_image_ids_are_compared_by_value_however_far_apart(scale, offset):
    """Values within a range no wider than their bag take the relabelling's table, wider ones its
    sort; both only compare values."""
    p = make_problem(40, 3, 4, seed=74)
    moved = torch.where(p.labels == IGNORE, p.labels, p.labels * scale + offset)
    images = torch.arange(40) // 10
    loss, valid = pixcon.contrastive_loss(p.embeddings, p.labels, image_ids=images)
    got, got_valid = pixcon.contrastive_loss(p.embeddings, moved, image_ids=images * scale + offset)
    assert torch.equal(valid, got_valid)
    assert torch.equal(loss, got)


def test_identical_embeddings_give_finite_loss_and_gradient():
    z = torch.ones(10, 4, dtype=torch.float32) * 0.5
    y = torch.tensor([0, 1] * 5)
    z.requires_grad_(True)
    for den in ("all", "pair"):
        loss, valid = pixcon.contrastive_loss(z, y, denominator=den)
        loss.sum().backward()
        assert torch.isfinite(loss).all() and torch.isfinite(z.grad).all()
        z.grad = None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_large_similarities_do_not_overflow(dtype):
    """|s| up to ~1e4 (unnormalised embeddings, tau=0.01): every exponent is taken
    relative to a running maximum, so nothing overflows to inf/NaN."""
    p = make_problem(64, 8, 3, dtype=dtype, seed=74, scale=10.0)
    for den in ("all", "pair"):
        loss, valid, grad = loss_and_grad(pixcon.contrastive_loss, p, temperature=0.01, denominator=den)
        assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
        exp_loss, _, _ = reference_loss_and_grad(p, temperature=0.01, denominator=den)
        torch.testing.assert_close(loss, exp_loss.float(), rtol=1e-3, atol=1e-3 * float(exp_loss.abs().max()))


@pytest.mark.parametrize("denominator", ["all", "pair"])
@pytest.mark.parametrize("n, ignored_tail", [(481, 0), (4225, 0), (700, 150)])
def test_rows_past_a_blocks_last_live_row_change_nothing(denominator, n, ignored_tail):
    """Tiles stop at their blocks' last row with a role: one row in a bag's last block of 96
    (481, 4 225 = 44 x 96 + 1), or a last block of ignored rows only (its ignored rows sort last),
    agree with the float64 reference, and the ignored rows get no gradient."""
    g = torch.Generator().manual_seed(n)
    z = torch.nn.functional.normalize(torch.randn(n, 8, generator=g, dtype=torch.float64), dim=1)
    y = torch.randint(0, 9, (n,), generator=g)
    y[n - ignored_tail:] = -100
    got_z, want_z = z.clone().requires_grad_(), z.clone().requires_grad_()
    got, got_valid = pixcon.contrastive_loss(got_z, y, ignore_index=-100, denominator=denominator)
    want, want_valid = pixcon.reference.contrastive_loss(want_z, y, ignore_index=-100,
                                                         denominator=denominator)
    got.sum().backward()
    want.sum().backward()
    assert torch.equal(got_valid, want_valid)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_z.grad, want_z.grad, rtol=1e-10, atol=1e-12)
    assert torch.count_nonzero(got_z.grad[n - ignored_tail:]) == 0
