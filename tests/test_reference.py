"""The pure-PyTorch reference (pixcon.reference) against independent sources:
pytorch-metric-learning's SupConLoss, hand-computed tiny cases and a literal
loop-by-loop transcription of the spec (docs/design.md section 2)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning.losses import SupConLoss
from pytorch_metric_learning.reducers import DoNothingReducer

from conftest import IGNORE, make_problem, upstream
from pixcon import reference

TAU = 0.07


def supcon_rows(z: torch.Tensor, y: torch.Tensor, temperature: float = TAU) -> torch.Tensor:
    return SupConLoss(temperature=temperature, reducer=DoNothingReducer())(z, y)["loss"]["losses"]


def brute_force(z, y, offsets, *, temperature=TAU, ignore_index=IGNORE, denominator="all",
                self_positive=False, anchor_mask=None, contrast_mask=None, image_ids=None):
    """The spec transcribed literally with Python floats and explicit loops."""
    z = z.tolist()
    y = y.tolist()
    n = len(y)
    am = [True] * n if anchor_mask is None else anchor_mask.tolist()
    cm = [True] * n if contrast_mask is None else contrast_mask.tolist()
    img = None if image_ids is None else image_ids.tolist()
    offs = offsets.tolist()
    s = lambda i, j: math.fsum(a * b for a, b in zip(z[i], z[j])) / temperature
    lse = lambda xs: (max(xs) + math.log(math.fsum(math.exp(x - max(xs)) for x in xs))) if xs else -math.inf
    loss, valid = [0.0] * n, [False] * n
    for b in range(len(offs) - 1):
        rows = range(offs[b], offs[b + 1])
        for i in rows:
            if not (am[i] and y[i] != ignore_index):
                continue
            contrast = [j for j in rows if j != i and cm[j] and y[j] != ignore_index]
            P = [j for j in contrast if y[j] == y[i]] + ([i] if self_positive else [])
            N = [j for j in contrast if y[j] != y[i] and (img is None or img[j] == img[i])]
            if not P:
                continue
            valid[i] = True
            if denominator == "all":
                loss[i] = lse([s(i, a) for a in P + N]) - math.fsum(s(i, p) for p in P) / len(P)
            else:
                nl = lse([s(i, k) for k in N])
                # log(exp(s_ip) + sum_n exp(s_in)) - s_ip, the official form
                loss[i] = math.fsum(lse([s(i, p)] + [s(i, k) for k in N]) - s(i, p) for p in P) / len(P)
                if nl == -math.inf:
                    assert loss[i] == 0.0
    return torch.tensor(loss, dtype=torch.float64), torch.tensor(valid)


# ----------------------------------------------------------------------------- SupConLoss


@pytest.mark.parametrize("n,d,num_classes,seed", [(40, 3, 3, 0), (100, 16, 5, 1), (257, 64, 10, 2)])
def test_all_denominator_matches_pml_supcon_per_row(n, d, num_classes, seed):
    p = make_problem(n, d, num_classes, seed=seed)
    loss, valid = reference.contrastive_loss(p.embeddings, p.labels, temperature=TAU)
    expected = supcon_rows(p.embeddings, p.labels)
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-10)
    assert valid.dtype == torch.bool


def test_anchor_mean_matches_pml_supcon_default_reducer():
    p = make_problem(150, 8, 12, seed=3)
    labels = p.labels.clone()
    labels[:5] = torch.arange(100, 105)  # five anchors without a positive
    loss, valid = reference.contrastive_loss(p.embeddings, labels)
    assert valid.sum() == 145
    expected = SupConLoss(temperature=TAU)(p.embeddings, labels)
    torch.testing.assert_close(reference.reduce(loss, valid, None, "anchor_mean"), expected, rtol=1e-10, atol=1e-10)


def test_bags_match_pml_supcon_run_per_bag():
    p = make_problem(bag_sizes=[30, 0, 45, 2, 25], d=5, num_classes=3, seed=4)
    loss, valid = reference.contrastive_loss(p.embeddings, p.labels, p.bag_offsets)
    for b in range(len(p.bag_offsets) - 1):
        sl = p.bag(b)
        if sl.stop - sl.start < 3:
            continue  # pml returns a scalar 0 when a bag lacks positive or negative pairs
        torch.testing.assert_close(loss[sl], supcon_rows(p.embeddings[sl], p.labels[sl]), rtol=1e-10, atol=1e-10)


def test_anchor_without_positive_is_invalid_with_zero_loss_like_pml():
    z = F.normalize(torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64), dim=1)
    y = torch.tensor([0, 0, 1, 2, 2])
    loss, valid = reference.contrastive_loss(z, y)
    assert valid.tolist() == [True, True, False, True, True]
    assert loss[2] == 0
    torch.testing.assert_close(loss, supcon_rows(z, y), rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------- literal spec


@pytest.mark.parametrize("denominator", ["all", "pair"])
@pytest.mark.parametrize("self_positive", [False, True])
@pytest.mark.parametrize("masks,num_images,ignore_frac", [(False, 0, 0.0), (True, 0, 0.2), (False, 2, 0.1), (True, 3, 0.2)])
def test_matches_literal_loop_transcription_of_spec(denominator, self_positive, masks, num_images, ignore_frac):
    p = make_problem(bag_sizes=[9, 0, 1, 14], d=3, num_classes=3, seed=5, normalize=False,
                     masks=masks, num_images=num_images, ignore_frac=ignore_frac)
    kw = dict(denominator=denominator, self_positive=self_positive, **p.kwargs())
    loss, valid = reference.contrastive_loss(p.embeddings, p.labels, p.bag_offsets, **kw)
    exp_loss, exp_valid = brute_force(p.embeddings, p.labels, p.bag_offsets, **kw)
    assert valid.tolist() == exp_valid.tolist()
    torch.testing.assert_close(loss, exp_loss, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- hand computed


def _s(z, i, j, tau=1.0):
    return float(z[i] @ z[j]) / tau


def test_pair_denominator_hand_computed():
    # rows 0, 1 class 0; rows 2, 3 class 1; tau = 0.5
    z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-0.8, 0.6]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1])
    tau = 0.5
    loss, valid = reference.contrastive_loss(z, y, temperature=tau, denominator="pair")
    s = lambda i, j: _s(z, i, j, tau)
    sp = lambda x: math.log1p(math.exp(x))
    for i, p, negs in [(0, 1, (2, 3)), (1, 0, (2, 3)), (2, 3, (0, 1)), (3, 2, (0, 1))]:
        nl = math.log(sum(math.exp(s(i, k)) for k in negs))
        expected = math.log(math.exp(s(i, p)) + sum(math.exp(s(i, k)) for k in negs)) - s(i, p)
        assert abs(expected - sp(nl - s(i, p))) < 1e-14
        assert loss[i].item() == pytest.approx(expected, rel=1e-13, abs=1e-13)
    assert valid.all()


def test_all_denominator_hand_computed():
    z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1])
    loss, valid = reference.contrastive_loss(z, y, temperature=1.0)
    s = lambda i, j: _s(z, i, j)
    l0 = math.log(math.exp(s(0, 1)) + math.exp(s(0, 2))) - s(0, 1)
    l1 = math.log(math.exp(s(1, 0)) + math.exp(s(1, 2))) - s(1, 0)
    assert loss.tolist() == pytest.approx([l0, l1, 0.0], rel=1e-13, abs=1e-13)
    assert valid.tolist() == [True, True, False]


def test_self_positive_adds_the_diagonal_to_positives_and_to_lse():
    z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1])
    s = lambda i, j: _s(z, i, j)
    loss, valid = reference.contrastive_loss(z, y, temperature=1.0, self_positive=True)
    lse0 = math.log(math.exp(s(0, 0)) + math.exp(s(0, 1)) + math.exp(s(0, 2)))
    lse2 = math.log(math.exp(s(2, 0)) + math.exp(s(2, 1)) + math.exp(s(2, 2)))
    assert loss[0].item() == pytest.approx(lse0 - (s(0, 0) + s(0, 1)) / 2, rel=1e-13)
    assert loss[2].item() == pytest.approx(lse2 - s(2, 2), rel=1e-13)  # only itself as positive
    assert valid.all()

    loss, valid = reference.contrastive_loss(z, y, temperature=1.0, self_positive=True, denominator="pair")
    sp = lambda x: math.log1p(math.exp(x))
    assert loss[0].item() == pytest.approx((sp(s(0, 2) - s(0, 0)) + sp(s(0, 2) - s(0, 1))) / 2, rel=1e-13)
    assert loss[2].item() == pytest.approx(
        sp(math.log(math.exp(s(2, 0)) + math.exp(s(2, 1))) - s(2, 2)), rel=1e-13)


def test_self_positive_counts_the_anchor_even_when_it_is_not_a_contrast_row():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    loss, valid = reference.contrastive_loss(z, y, temperature=1.0, self_positive=True,
                                             contrast_mask=torch.tensor([False, True]))
    assert valid.tolist() == [True, True]
    assert loss[0].item() == pytest.approx(math.log(math.exp(1.0) + math.exp(0.0)) - 1.0, rel=1e-13)
    assert loss[1].item() == pytest.approx(0.0, abs=1e-15)  # P = {1}, N = {} (row 0 is not a contrast row)


def test_image_ids_restrict_negatives_but_not_positives():
    z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-0.8, 0.6]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1])
    img = torch.tensor([0, 1, 0, 1])
    s = lambda i, j: _s(z, i, j)
    loss, _ = reference.contrastive_loss(z, y, temperature=1.0, image_ids=img)
    # anchor 0: P = {1} (other image, still positive), N = {2} (3 is in another image)
    assert loss[0].item() == pytest.approx(math.log(math.exp(s(0, 1)) + math.exp(s(0, 2))) - s(0, 1), rel=1e-13)
    loss, _ = reference.contrastive_loss(z, y, temperature=1.0, image_ids=img, denominator="pair")
    assert loss[0].item() == pytest.approx(math.log1p(math.exp(s(0, 2) - s(0, 1))), rel=1e-13)


def test_ignored_rows_behave_as_if_removed():
    p = make_problem(30, 4, 3, seed=6)
    labels = p.labels.clone()
    labels[[3, 7, 20]] = IGNORE
    keep = labels != IGNORE
    for den in ("all", "pair"):
        loss, valid = reference.contrastive_loss(p.embeddings, labels, denominator=den)
        loss_removed, valid_removed = reference.contrastive_loss(p.embeddings[keep], labels[keep], denominator=den)
        torch.testing.assert_close(loss[keep], loss_removed, rtol=1e-13, atol=1e-13)
        assert (loss[~keep] == 0).all() and not valid[~keep].any()


def test_custom_ignore_index():
    p = make_problem(20, 3, 3, seed=7)
    labels = p.labels.clone()
    labels[:4] = -1
    loss_a, valid_a = reference.contrastive_loss(p.embeddings, labels, ignore_index=-1)
    labels_b = labels.clone()
    labels_b[:4] = IGNORE
    loss_b, valid_b = reference.contrastive_loss(p.embeddings, labels_b)
    assert torch.equal(loss_a, loss_b) and torch.equal(valid_a, valid_b)


def test_pair_with_no_negative_is_valid_with_zero_loss():
    z = F.normalize(torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64), dim=1)
    z.requires_grad_(True)
    loss, valid = reference.contrastive_loss(z, torch.zeros(6, dtype=torch.int64), denominator="pair")
    assert valid.all() and (loss == 0).all()
    loss.sum().backward()
    assert torch.isfinite(z.grad).all() and (z.grad == 0).all()


def test_invalid_rows_get_exactly_zero_loss_and_zero_finite_gradient():
    p = make_problem(12, 3, 2, seed=8)
    labels = p.labels.clone()
    labels[0] = 9  # unique class: no positive
    labels[1] = IGNORE
    am = torch.ones(12, dtype=torch.bool)
    am[2] = False
    cm = torch.ones(12, dtype=torch.bool)
    cm[1:3] = False  # rows 1 and 2 are neither anchors nor contrast rows
    for den in ("all", "pair"):
        z = p.embeddings.clone().requires_grad_(True)
        loss, valid = reference.contrastive_loss(z, labels, denominator=den, anchor_mask=am, contrast_mask=cm)
        assert not valid[:3].any() and valid[3:].all()
        assert (loss[:3] == 0).all()
        (loss * upstream(12)).sum().backward()
        assert torch.isfinite(z.grad).all()
        assert (z.grad[1:3] == 0).all()  # neither anchor nor contrast: no gradient at all


# ----------------------------------------------------------------------------- dtypes & autograd


@pytest.mark.parametrize("dtype,loss_dtype", [(torch.float64, torch.float64), (torch.float32, torch.float32),
                                              (torch.float16, torch.float32), (torch.bfloat16, torch.float32)])
def test_loss_dtype_and_gradient_dtype(dtype, loss_dtype):
    p = make_problem(16, 4, 3, dtype=dtype, seed=9)
    z = p.embeddings.clone().requires_grad_(True)
    loss, valid = reference.contrastive_loss(z, p.labels)
    assert loss.dtype == loss_dtype and valid.dtype == torch.bool
    loss.sum().backward()
    assert z.grad.dtype == dtype


@pytest.mark.parametrize("denominator", ["all", "pair"])
@pytest.mark.parametrize("self_positive", [False, True])
def test_reference_gradcheck(denominator, self_positive):
    p = make_problem(bag_sizes=[8, 1, 7], d=3, num_classes=3, seed=10, masks=True, num_images=2, ignore_frac=0.1)
    z = p.embeddings.clone().requires_grad_(True)
    fn = lambda x: reference.contrastive_loss(x, p.labels, p.bag_offsets, denominator=denominator,
                                              self_positive=self_positive, temperature=0.5, **p.kwargs())[0]
    assert torch.autograd.gradcheck(fn, (z,))


# ----------------------------------------------------------------------------- reduce


def test_reduce_modes_hand_computed():
    loss = torch.tensor([1.0, 2.0, 0.0, 4.0, 0.0, 6.0], dtype=torch.float64)
    valid = torch.tensor([True, True, False, True, False, False])
    offs = torch.tensor([0, 2, 3, 5, 6])  # bags: {1,2}, {-}, {4,-}, {-}
    assert reference.reduce(loss, valid, offs, "mean").item() == pytest.approx((1.5 + 4.0) / 2)
    assert reference.reduce(loss, valid, offs, "anchor_mean").item() == pytest.approx(7.0 / 3)
    assert reference.reduce(loss, valid, offs, "image_mean").item() == pytest.approx((1.5 + 4.0) / 4)
    anchor_rows = torch.tensor([True, True, True, True, False, True])
    assert reference.reduce(loss, valid, offs, "row_mean", anchor_rows=anchor_rows).item() == pytest.approx(7.0 / 5)
    assert reference.reduce(loss, valid, offs, "sum").item() == pytest.approx(7.0)
    assert reference.reduce(loss, valid, offs, "none") is loss


@pytest.mark.parametrize("reduction", ["mean", "anchor_mean", "image_mean", "row_mean", "sum"])
def test_reduce_with_no_valid_anchor_is_zero_and_differentiable(reduction):
    z = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    loss, valid = reference.contrastive_loss(z, torch.arange(5))  # all distinct classes
    assert not valid.any()
    out = reference.reduce(loss, valid, None, reduction, anchor_rows=torch.ones(5, dtype=torch.bool))
    assert out.item() == 0.0 and out.requires_grad
    out.backward()
    assert torch.isfinite(z.grad).all() and (z.grad == 0).all()
