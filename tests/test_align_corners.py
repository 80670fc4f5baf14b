"""PixelContrastiveLoss(align_corners=True) resizes as the official TF code does (TF1's
``align_corners=True``): features bilinearly from source coordinate i (in - 1) / (out - 1), labels
from source index round(i (in - 1) / (out - 1)), ties away from zero (TF1's roundf). Both rules
are written out here in exact arithmetic and compared in float64."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F

import pixcon
import pixcon.nn
from conftest import IGNORE, assert_close_f64
from pixcon import reference
from pixcon.rows import resize_classes


def source(i: int, size_in: int, size_out: int) -> Fraction:
    """TF1's source coordinate with align_corners: i (in - 1) / (out - 1); with one output,
    scale in / out, so index 0 maps to 0."""
    return Fraction(0) if size_out == 1 else Fraction(i * (size_in - 1), size_out - 1)


def nearest_indices(size_in: int, size_out: int) -> list[int]:
    return [math.floor(source(i, size_in, size_out) + Fraction(1, 2)) for i in range(size_out)]


def nearest(labels, size):
    rows, cols = (nearest_indices(n, m) for n, m in zip(labels.shape[-2:], size))
    return labels[:, rows][:, :, cols]


def bilinear(x, size):
    """[B, C, h, w] resized by interpolating along rows, then columns, at the source coordinates."""
    for axis, (size_in, size_out) in ((2, (x.shape[2], size[0])), (3, (x.shape[3], size[1]))):
        slices = []
        for i in range(size_out):
            s = source(i, size_in, size_out)
            low = math.floor(s)
            high = min(low + 1, size_in - 1)
            t = float(s - low)
            slices.append((1 - t) * x.select(axis, low) + t * x.select(axis, high))
        x = torch.stack(slices, dim=axis)
    return x


@pytest.mark.parametrize("size_in,size_out", [(4, 3), (3, 5), (2, 5), (9, 4), (7, 7), (5, 12), (6, 1), (1, 4)])
def test_label_indices_are_round_half_away_of_the_aligned_source(size_in, size_out):
    labels = torch.arange(size_in)[None, :, None].expand(1, size_in, 2)
    resized = resize_classes(labels, (size_out, 2), align_corners=True)
    assert resized[0, :, 0].tolist() == nearest_indices(size_in, size_out)


def test_ties_round_away_from_zero():
    labels = torch.arange(4)[None, None, :]
    assert resize_classes(labels, (1, 3), align_corners=True)[0, 0].tolist() == [0, 2, 3]  # 1.5 -> 2
    labels = torch.arange(3)[None, None, :]
    assert resize_classes(labels, (1, 5), align_corners=True)[0, 0].tolist() == [0, 1, 1, 2, 2]  # .5 -> 1


def test_one_output_row_takes_the_first_source_row():
    labels = torch.arange(12).reshape(1, 3, 4)
    assert resize_classes(labels, (1, 4), align_corners=True).tolist() == [[[0, 1, 2, 3]]]


def seg_inputs(seed=0, b=2, d=4, hw=(3, 4), label_hw=(9, 6), num_classes=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, *hw, generator=g, dtype=torch.float64)
    y = torch.randint(0, num_classes, (b, *label_hw), generator=g)
    y[torch.rand(y.shape, generator=g) < 0.1] = IGNORE
    return x, y


def reference_aligned(x, y, size=None, **options):
    """Resize by the rules above, normalise, one bag per image, the reference."""
    if size is not None:
        x = bilinear(x, size)
    y = nearest(y, x.shape[-2:])
    b, d, h, w = x.shape
    rows = F.normalize(x, dim=1).permute(0, 2, 3, 1).reshape(-1, d)
    offsets = torch.arange(b + 1) * (h * w)
    loss, valid = reference.contrastive_loss(rows, y.reshape(-1), offsets, **options)
    return reference.reduce(loss, valid, offsets, "mean")


@pytest.mark.parametrize("size", [(5, 7), (2, 2), (1, 6)], ids=["up", "down", "one-row"])
def test_resized_features_and_labels_follow_the_tf1_rules(size):
    x, y = seg_inputs(seed=1)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out = pixcon.nn.PixelContrastiveLoss(size=size, align_corners=True, denominator="pair")(x1, y)
    expected = reference_aligned(x2, y, size, denominator="pair")
    assert_close_f64(out, expected)
    out.backward()
    expected.backward()
    assert_close_f64(x1.grad, x2.grad)


def test_labels_follow_the_tf1_rule_to_the_features_size_without_size():
    x, y = seg_inputs(seed=2, label_hw=(7, 10))
    out = pixcon.nn.PixelContrastiveLoss(align_corners=True)(x, y)
    assert_close_f64(out, reference_aligned(x, y))


def test_the_rules_differ_from_torchs_defaults_on_these_sizes():
    x, y = seg_inputs(seed=3)
    aligned = pixcon.nn.PixelContrastiveLoss(size=(5, 7), align_corners=True)(x, y)
    default = pixcon.nn.PixelContrastiveLoss(size=(5, 7))(x, y)
    assert abs(float(aligned) - float(default)) > 1e-3


def test_predictions_for_the_sampler_are_resized_by_the_labels_rule():
    x, y = seg_inputs(seed=4, label_hw=(7, 10))
    predictions = torch.randint(0, 3, y.shape, generator=torch.Generator().manual_seed(5))
    rule = dict(max_samples=16, max_views=3)
    sampler = pixcon.PixelSampler("hard_easy", seed=6, **rule)
    out = pixcon.nn.PixelContrastiveLoss(size=(5, 6), align_corners=True, sampler=sampler)(x, y, predictions)
    z = bilinear(x, (5, 6))
    labels, predicted = nearest(y, (5, 6)), nearest(predictions, (5, 6))
    indices, offsets = pixcon.sample_pixels(labels, "hard_easy", predictions=predicted, seed=6, **rule)
    rows = F.normalize(z, dim=1).permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    loss, valid = reference.contrastive_loss(rows[indices], labels.reshape(-1)[indices], offsets)
    assert_close_f64(out, reference.reduce(loss, valid, offsets, "mean"))
