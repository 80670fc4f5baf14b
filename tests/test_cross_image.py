"""pixcon.nn.CrossImageContrastiveLoss: the cross-image variant of the released code of Zhao et
al., against the reference composed pair by pair and against a PyTorch port of the released
code's formula (google-research supervised_pixel_contrastive_loss, within_image_loss=False)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import pixcon.nn
from conftest import IGNORE, assert_close_f64
from pixcon import reference
from pixcon.cross_image import partner_permutation


def views(seed=0, b=3, d=4, hw_a=(3, 4), hw_b=(3, 4), num_classes=3):
    g = torch.Generator().manual_seed(seed)
    xa = torch.randn(b, d, *hw_a, generator=g, dtype=torch.float64)
    xb = torch.randn(b, d, *hw_b, generator=g, dtype=torch.float64)
    ya = torch.randint(0, num_classes, (b, *hw_a), generator=g)
    yb = torch.randint(0, num_classes, (b, *hw_b), generator=g)
    ya[torch.rand(ya.shape, generator=g) < 0.1] = IGNORE
    yb[torch.rand(yb.shape, generator=g) < 0.1] = IGNORE
    return xa, ya, xb, yb


def flat(x, y, size=None):
    if size is not None:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    y = F.interpolate(y[:, None].double(), size=x.shape[-2:], mode="nearest")[:, 0].long()
    x = F.normalize(x, dim=1)
    b, d, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, h * w, d), y.reshape(b, h * w)


def reference_cross_image(xa, ya, xb, yb, partner, *, size=None, temperature=0.07, denominator="pair",
                          self_positive=True, reduction="mean"):
    """One bag per pair (image k of view a, image partner[k] of view b); image ids 0 / 1
    within the bag restrict the negatives; the reference loss and reduction."""
    ra, la = flat(xa, ya, size)
    rb, lb = flat(xb, yb, size)
    rows, labels, ids, offsets = [], [], [], [0]
    for k, p in enumerate(partner):
        rows += [ra[k], rb[p]]
        labels += [la[k], lb[p]]
        ids += [torch.zeros(ra.shape[1], dtype=torch.int64), torch.ones(rb.shape[1], dtype=torch.int64)]
        offsets.append(offsets[-1] + ra.shape[1] + rb.shape[1])
    offsets = torch.tensor(offsets)
    loss, valid = reference.contrastive_loss(
        torch.cat(rows), torch.cat(labels), offsets, temperature=temperature, denominator=denominator,
        self_positive=self_positive, image_ids=torch.cat(ids))
    labels = torch.cat(labels)
    return reference.reduce(loss, valid, offsets, reduction, anchor_rows=labels != IGNORE)


def released_code_formula(features1, features2, labels1, labels2, temperature=0.07):
    """cross_image_supervised_pixel_contrastive_loss + compute_contrastive_loss of the released
    TF code, transcribed to torch (features [B, P, C] unit vectors, labels [B, P])."""
    p1, p2 = features1.shape[1], features2.shape[1]
    features = torch.cat([features1, features2], dim=1)
    labels = torch.cat([labels1, labels2], dim=1)[..., None]
    image = torch.cat([torch.zeros(p1), torch.ones(p2)])
    same_image = (image[:, None] == image[None, :]).double()[None]
    logits = features @ features.transpose(1, 2) / temperature
    positive = (labels == labels.transpose(1, 2)).double()
    negative = (1 - positive) * same_image
    ignored = labels == IGNORE
    ignore_mask = (ignored | ignored.transpose(1, 2)).double()
    validity = 1 - ignore_mask
    positive, negative = positive * validity, negative * validity
    exp_logits = torch.exp(logits) * validity
    denominator = exp_logits + (exp_logits * negative).sum(2, keepdim=True)
    normalized = torch.where(denominator > 0, exp_logits / denominator, torch.zeros_like(exp_logits))
    nll = -torch.log(normalized * validity + ignore_mask)
    nll = (nll * positive / positive.sum(2, keepdim=True).clamp(min=1e-6)).sum(2)
    valid_index = 1 - (positive.sum(2) == 0).double()
    nll = (nll * valid_index / valid_index.sum(1, keepdim=True).clamp(min=1e-6)).sum(1)
    return nll.mean()


@pytest.mark.parametrize("denominator,self_positive", [("pair", True), ("all", False), ("pair", False)])
@pytest.mark.parametrize("reduction", ["mean", "anchor_mean", "image_mean", "row_mean", "sum", "none"])
def test_cross_image_loss_equals_reference_composed_pair_by_pair(denominator, self_positive, reduction):
    xa, ya, xb, yb = views(seed=1)
    module = pixcon.nn.CrossImageContrastiveLoss(denominator=denominator, self_positive=self_positive,
                                                 reduction=reduction)
    a1, b1 = xa.clone().requires_grad_(True), xb.clone().requires_grad_(True)
    a2, b2 = xa.clone().requires_grad_(True), xb.clone().requires_grad_(True)
    out = module(a1, ya, b1, yb)
    expected = reference_cross_image(a2, ya, b2, yb, [1, 2, 0], denominator=denominator,
                                     self_positive=self_positive, reduction=reduction)
    assert_close_f64(out, expected)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    (out * g).sum().backward()
    (expected * g).sum().backward()
    assert_close_f64(a1.grad, a2.grad)
    assert_close_f64(b1.grad, b2.grad)


def test_defaults_reproduce_the_released_code_formula():
    xa, ya, xb, yb = views(seed=2, b=4)
    partner = [2, 0, 3, 1]
    out = pixcon.nn.CrossImageContrastiveLoss(permutation=partner)(xa, ya, xb, yb)
    fa, la = flat(xa, ya)
    fb, lb = flat(xb, yb)
    assert_close_f64(out, released_code_formula(fa, fb[partner], la, lb[partner]))


def test_image_mean_reproduces_the_released_code_formula_with_a_pair_without_valid_anchor():
    xa, ya, xb, yb = views(seed=5, b=4)
    partner = [2, 0, 3, 1]
    ya[1] = IGNORE
    yb[partner[1]] = IGNORE
    out = pixcon.nn.CrossImageContrastiveLoss(permutation=partner, reduction="image_mean")(xa, ya, xb, yb)
    fa, la = flat(xa, ya)
    fb, lb = flat(xb, yb)
    assert_close_f64(out, released_code_formula(fa, fb[partner], la, lb[partner]))


def test_resizing_and_views_of_different_sizes_equal_reference():
    xa, ya, xb, yb = views(seed=4, hw_a=(6, 5), hw_b=(4, 4))
    module = pixcon.nn.CrossImageContrastiveLoss(size=(3, 3), permutation=[0, 2, 1])
    assert_close_f64(module(xa, ya, xb, yb), reference_cross_image(xa, ya, xb, yb, [0, 2, 1], size=(3, 3)))
    unresized = pixcon.nn.CrossImageContrastiveLoss()
    assert_close_f64(unresized(xa, ya, xb, yb), reference_cross_image(xa, ya, xb, yb, [1, 2, 0]))


def test_default_partner_is_the_next_image():
    assert partner_permutation(4).tolist() == [1, 2, 3, 0]
    assert partner_permutation(1).tolist() == [0]


def test_permutation_given_at_call_overrides_the_default():
    xa, ya, xb, yb = views(seed=5)
    out = pixcon.nn.CrossImageContrastiveLoss()(xa, ya, xb, yb, permutation=[2, 2, 0])
    assert_close_f64(out, reference_cross_image(xa, ya, xb, yb, [2, 2, 0]))


def test_random_permutation_is_reproducible_under_manual_seed():
    xa, ya, xb, yb = views(seed=6, b=4)
    module = pixcon.nn.CrossImageContrastiveLoss(permutation="random")
    torch.manual_seed(9)
    first = module(xa, ya, xb, yb)
    torch.manual_seed(9)
    partner = torch.randperm(4).tolist()
    assert_close_f64(first, reference_cross_image(xa, ya, xb, yb, partner))


def test_negatives_come_only_from_the_anchor_own_image():
    xa, _, xb, _ = views(seed=7, b=2, hw_a=(2, 2), hw_b=(2, 2))
    ya = torch.zeros(2, 2, 2, dtype=torch.int64)  # one class only: no negative in view a's images
    yb = torch.tensor([[0, 1], [1, 0]]).expand(2, 2, 2).clone()
    loss = pixcon.nn.CrossImageContrastiveLoss(reduction="none")(xa, ya, xb, yb).reshape(2, 8)
    assert (loss[:, :4] == 0).all()  # "pair": no negative, zero loss (view b's class 1 does not count)
    assert (loss[:, 4:] > 0).all()


def test_positives_come_from_both_images():
    xa, _, xb, _ = views(seed=8, b=2, hw_a=(2, 2), hw_b=(2, 2))
    ya = torch.tensor([[2, 0], [0, 0]]).expand(2, 2, 2).clone()  # one pixel of class 2 in view a
    yb = torch.tensor([[2, 2], [1, 1]]).expand(2, 2, 2).clone()
    loss = pixcon.nn.CrossImageContrastiveLoss(self_positive=False, reduction="none")(xa, ya, xb, yb)
    assert (loss.reshape(2, 8)[:, 0] > 0).all()  # its only positives are in the partner image


@pytest.mark.parametrize("permutation", [[0, 1], [0, 1, 3], "reverse"])
def test_bad_permutation_raises(permutation):
    xa, ya, xb, yb = views(seed=9)
    with pytest.raises(ValueError, match="permutation"):
        pixcon.nn.CrossImageContrastiveLoss()(xa, ya, xb, yb, permutation=permutation)


def test_views_with_different_batch_sizes_raise():
    xa, ya, xb, yb = views(seed=10)
    with pytest.raises(ValueError, match="batch size"):
        pixcon.nn.CrossImageContrastiveLoss()(xa, ya, xb[:2], yb[:2])
