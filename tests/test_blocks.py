"""PixelContrastiveLoss(variant="blocks") (Hu et al., MICCAI 2021: block division): every
bh x bw block of every image, partial blocks at the edges included, is its own bag. Checked
against the reference applied to each block's pixels, cut out of the map here block by block."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import pixcon.nn
from conftest import IGNORE, assert_close_f64
from pixcon import reference


def seg_inputs(seed=0, b=2, d=4, h=7, w=5, num_classes=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, h, w, generator=g, dtype=torch.float64)
    y = torch.randint(0, num_classes, (b, h, w), generator=g)
    y[torch.rand(y.shape, generator=g) < 0.1] = IGNORE
    return x, y


def block_bags(x, y, block_size):
    """Rows, labels and offsets of one bag per block, and each row's (image, i, j) pixel."""
    bh, bw = block_size
    b, d, h, w = x.shape
    rows, labels, pixels, offsets = [], [], [], [0]
    for k in range(b):
        for top in range(0, h, bh):
            for left in range(0, w, bw):
                block = x[k, :, top:top + bh, left:left + bw]
                rows.append(block.permute(1, 2, 0).reshape(-1, d))
                labels.append(y[k, top:top + bh, left:left + bw].reshape(-1))
                pixels += [(k, i, j) for i in range(top, min(top + bh, h)) for j in range(left, min(left + bw, w))]
                offsets.append(offsets[-1] + rows[-1].shape[0])
    return torch.cat(rows), torch.cat(labels), torch.tensor(offsets), pixels


def reference_blocks(x, y, block_size, *, size=None, reduction="mean", **options):
    """The module's pipeline spelled out: resize, normalise, then the reference on the blocks."""
    if size is not None:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    y = F.interpolate(y[:, None].double(), size=x.shape[-2:], mode="nearest")[:, 0].long()
    rows, labels, offsets, pixels = block_bags(F.normalize(x, dim=1), y, block_size)
    loss, valid = reference.contrastive_loss(rows, labels, offsets, **options)
    if reduction == "none":
        b, _, h, w = x.shape
        per_pixel = loss.new_zeros(b, h, w)
        for value, (k, i, j) in zip(loss, pixels):
            per_pixel[k, i, j] = value
        return per_pixel.reshape(-1)
    return reference.reduce(loss, valid, offsets, reduction, anchor_rows=labels != IGNORE)


def check_blocks(x, y, block_size, **options):
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out = pixcon.nn.PixelContrastiveLoss(variant="blocks", block_size=block_size, **options)(x1, y)
    expected = reference_blocks(x2, y, block_size, **options)
    assert_close_f64(out, expected)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (out * g).sum().backward()
    (expected * g).sum().backward()
    assert_close_f64(x1.grad, x2.grad)
    return out


@pytest.mark.parametrize("reduction", ["mean", "anchor_mean", "image_mean", "row_mean", "sum"])
@pytest.mark.parametrize("denominator", ["all", "pair"])
def test_each_block_is_its_own_bag_of_the_reference(reduction, denominator):
    x, y = seg_inputs(seed=1)
    check_blocks(x, y, (3, 2), reduction=reduction, denominator=denominator)


@pytest.mark.parametrize("block_size", [(2, 5), (7, 1), (4, 4)], ids=["full-width", "full-height", "partial"])
def test_block_shapes_including_partial_edges_equal_reference(block_size):
    x, y = seg_inputs(seed=2)
    check_blocks(x, y, block_size, self_positive=True)


def test_reduction_none_gives_per_pixel_values_in_the_callers_layout():
    x, y = seg_inputs(seed=3)
    out = check_blocks(x, y, (3, 2), reduction="none")
    assert out.shape == (2 * 7 * 5,)


def test_blocks_are_taken_on_the_map_after_the_size_resize():
    x, y = seg_inputs(seed=4, h=4, w=4)
    check_blocks(x, y, (4, 3), size=(6, 7))


def test_a_block_larger_than_the_image_equals_the_image_variant():
    x, y = seg_inputs(seed=5)
    blocks = pixcon.nn.PixelContrastiveLoss(variant="blocks", block_size=(8, 9))(x, y)
    images = pixcon.nn.PixelContrastiveLoss(variant="image")(x, y)
    assert_close_f64(blocks, images)


def test_one_pixel_blocks_have_no_positive_and_give_attached_zero():
    x, y = seg_inputs(seed=6)
    x = x.requires_grad_(True)
    out = pixcon.nn.PixelContrastiveLoss(variant="blocks", block_size=(1, 1))(x, y)
    assert out.item() == 0.0
    out.backward()
    assert (x.grad == 0).all()


def test_memory_bank_entries_join_every_block():
    x, y = seg_inputs(seed=7)
    bank = pixcon.nn.PixelMemoryBank(num_classes=3, size_per_class=4, dim=4, dtype=torch.float64)
    entries = F.normalize(torch.randn(6, 4, generator=torch.Generator().manual_seed(8), dtype=torch.float64), dim=1)
    bank.enqueue(entries, torch.tensor([0, 1, 2, 0, 1, 2]))
    loss_fn = pixcon.nn.PixelContrastiveLoss(variant="blocks", block_size=(3, 2), memory_bank=bank).eval()
    rows, labels, offsets, _ = block_bags(F.normalize(x, dim=1), y, (3, 2))
    bank_rows, bank_labels = bank.rows()
    joined_rows, joined_labels, anchor, joined = [], [], [], [0]
    for start, end in zip(offsets[:-1].tolist(), offsets[1:].tolist()):
        joined_rows += [rows[start:end], bank_rows]
        joined_labels += [labels[start:end], bank_labels]
        anchor += [torch.ones(end - start, dtype=torch.bool), torch.zeros(len(bank_labels), dtype=torch.bool)]
        joined.append(joined[-1] + end - start + len(bank_labels))
    joined = torch.tensor(joined)
    loss, valid = reference.contrastive_loss(torch.cat(joined_rows), torch.cat(joined_labels), joined,
                                             anchor_mask=torch.cat(anchor))
    assert_close_f64(loss_fn(x, y), reference.reduce(loss, valid, joined, "mean"))
