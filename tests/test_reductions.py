"""The reductions "image_mean" (the official TF code's per-image mean) and "row_mean" (Pissas
et al.'s normalisation by all anchor rows): ``pixcon.reduce_loss`` and the module against their
definitions written out here, and the zero-valid-anchor rule."""

from __future__ import annotations

import pytest
import torch

import pixcon
import pixcon.nn
from conftest import IGNORE, assert_close_f64

# bags {0, 1}, {2}, {3, 4}, {5}, {}: the second and fourth have no valid anchor, the last no row
LOSS = torch.tensor([1.0, 2.0, 0.0, 4.0, 0.0, 0.0], dtype=torch.float64)
VALID = torch.tensor([True, True, False, True, False, False])
OFFSETS = torch.tensor([0, 2, 3, 5, 6, 6])
ANCHOR_ROWS = torch.tensor([True, True, True, True, True, False])


def image_mean_definition(loss, valid, offsets):
    """Mean over each bag's valid anchors (0 without one), then over all bags."""
    means = []
    for start, end in zip(offsets[:-1].tolist(), offsets[1:].tolist()):
        count = int(valid[start:end].sum())
        means.append(float(loss[start:end][valid[start:end]].sum()) / count if count else 0.0)
    return sum(means) / len(means)


def row_mean_definition(loss, valid, anchor_rows):
    """Summed loss of the valid anchors over the number of anchor rows, valid or not."""
    return float(loss[valid].sum()) / int(anchor_rows.sum())


def test_image_mean_counts_a_bag_without_valid_anchor_as_zero():
    out = pixcon.reduce_loss(LOSS, VALID, OFFSETS, "image_mean")
    assert out.item() == pytest.approx((1.5 + 0.0 + 4.0 + 0.0 + 0.0) / 5, abs=1e-15)


def test_row_mean_divides_by_every_anchor_row():
    out = pixcon.reduce_loss(LOSS, VALID, OFFSETS, "row_mean", anchor_rows=ANCHOR_ROWS)
    assert out.item() == pytest.approx(7.0 / 5, abs=1e-15)


@pytest.mark.parametrize("seed", range(3))
def test_image_mean_of_random_losses_equals_its_definition(seed):
    g = torch.Generator().manual_seed(seed)
    valid = torch.rand(40, generator=g) < 0.5
    loss = torch.rand(40, generator=g, dtype=torch.float64) * valid
    offsets = torch.tensor([0, 7, 7, 19, 20, 33, 40])
    out = pixcon.reduce_loss(loss, valid, offsets, "image_mean")
    assert out.item() == pytest.approx(image_mean_definition(loss, valid, offsets), abs=1e-10)


@pytest.mark.parametrize("seed", range(3))
def test_row_mean_of_random_losses_equals_its_definition(seed):
    g = torch.Generator().manual_seed(seed)
    anchor_rows = torch.rand(40, generator=g) < 0.8
    valid = anchor_rows & (torch.rand(40, generator=g) < 0.6)
    loss = torch.rand(40, generator=g, dtype=torch.float64) * valid
    out = pixcon.reduce_loss(loss, valid, torch.tensor([0, 13, 40]), "row_mean", anchor_rows=anchor_rows)
    assert out.item() == pytest.approx(row_mean_definition(loss, valid, anchor_rows), abs=1e-10)


def seg_inputs(seed=0, b=3, d=4, h=5, w=6, num_classes=4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, h, w, generator=g, dtype=torch.float64)
    y = torch.randint(0, num_classes, (b, h, w), generator=g)
    y[torch.rand(y.shape, generator=g) < 0.2] = IGNORE
    return x, y


def per_pixel(x, y, per_image=True, **options):
    """(loss, valid) of the unit-normalised pixels of each image or of the batch, and the offsets."""
    rows = torch.nn.functional.normalize(x, dim=1).permute(0, 2, 3, 1).reshape(-1, x.shape[1])
    bags = torch.arange(x.shape[0] + 1) if per_image else torch.tensor([0, x.shape[0]])
    offsets = bags * (x.shape[2] * x.shape[3])
    return pixcon.contrastive_loss(rows, y.reshape(-1), offsets, **options), offsets


def test_module_image_mean_counts_an_image_without_valid_anchor_as_zero():
    x, y = seg_inputs(seed=1)
    y[1] = IGNORE
    y[2] = torch.arange(y[2].numel()).reshape(y[2].shape) % 200  # every pixel its own class: no positive
    out = pixcon.nn.PixelContrastiveLoss(reduction="image_mean")(x, y)
    (loss, valid), offsets = per_pixel(x, y)
    assert not valid[int(offsets[1]):].any()
    assert_close_f64(out, torch.tensor(image_mean_definition(loss, valid, offsets), dtype=torch.float64))


def test_module_row_mean_divides_by_the_pixels_that_are_not_ignored():
    x, y = seg_inputs(seed=2)
    out = pixcon.nn.PixelContrastiveLoss(reduction="row_mean", variant="batch", denominator="pair")(x, y)
    (loss, valid), _ = per_pixel(x, y, per_image=False, denominator="pair")
    expected = row_mean_definition(loss, valid, y.reshape(-1) != IGNORE)
    assert_close_f64(out, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("reduction", ["image_mean", "row_mean"])
def test_no_valid_anchor_gives_attached_zero_with_zero_gradient(reduction):
    x, y = seg_inputs(seed=3)
    y = torch.arange(y.numel()).reshape(y.shape) % 200  # no pixel has a positive
    x = x.requires_grad_(True)
    out = pixcon.nn.PixelContrastiveLoss(reduction=reduction)(x, y)
    assert out.item() == 0.0 and out.requires_grad
    out.backward()
    assert torch.isfinite(x.grad).all() and (x.grad == 0).all()


@pytest.mark.parametrize("reduction", ["image_mean", "row_mean"])
def test_no_row_gives_attached_zero(reduction):
    z = torch.zeros(0, 3, dtype=torch.float64, requires_grad=True)
    loss, valid = pixcon.contrastive_loss(z, torch.zeros(0, dtype=torch.int64), torch.tensor([0, 0]))
    out = pixcon.reduce_loss(loss, valid, torch.tensor([0, 0]), reduction, anchor_rows=valid)
    assert out.item() == 0.0 and out.requires_grad


def test_row_mean_across_ranks_without_process_group_divides_by_the_local_anchor_rows():
    out = pixcon.reduce_loss(LOSS, VALID, torch.tensor([0, 6]), "row_mean", anchor_rows=ANCHOR_ROWS,
                             across_ranks=True)
    assert out.item() == pytest.approx(7.0 / 5, abs=1e-15)


def test_image_mean_of_the_one_bag_across_ranks_is_its_mean_over_valid_anchors():
    out = pixcon.reduce_loss(LOSS, VALID, torch.tensor([0, 6]), "image_mean", across_ranks=True)
    assert out.item() == pytest.approx(7.0 / 3, abs=1e-15)
