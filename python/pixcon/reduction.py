"""The reductions of per-row losses, one function for every loss module and for distributed
training (``PixelContrastiveLoss(gather=True)``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from . import distributed
from .options import REDUCTIONS, Reduction

if TYPE_CHECKING:
    from .bags import Bags


def reduce_loss(loss: Tensor, valid: Tensor, bag_offsets: Tensor, reduction: Reduction = "mean", *,
                anchor_rows: Tensor | None = None, across_ranks: bool = False) -> Tensor:
    """Reduces per-row losses.

    "mean": mean over valid anchors within each bag, then mean over the bags that have one;
    "anchor_mean": mean over all valid anchors; "image_mean": mean over valid anchors within
    each bag, then mean over all bags, a bag without a valid anchor counting as 0 (the official
    TF code's per-image mean); "row_mean": the summed loss of valid anchors divided by the
    number of anchor rows, valid or not (Pissas et al.'s normalisation), which ``anchor_rows``
    (bool [n]: not ignored and an anchor) gives; "sum"; "none": the per-row vector. With no
    valid anchor the result is 0.0, still attached to the graph (zero gradient, never NaN).
    ``across_ranks``: the rows form one bag shared by all ranks whose anchors are this rank's
    rows; every mean then divides this rank's sum by the count of all ranks (an all_reduce of
    the valid anchors, or of the anchor rows for "row_mean"), so the losses of the ranks add
    up to that of one process. One bag makes "mean", "anchor_mean" and "image_mean" the same.
    """
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction not in REDUCTIONS:
        raise ValueError(f"pixcon: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    weight = valid.to(loss.dtype)
    if reduction == "row_mean":
        if anchor_rows is None:
            raise ValueError('pixcon: reduction "row_mean" divides by the number of anchor rows, '
                             "so it needs anchor_rows (bool [n]: the rows that are anchors)")
        count = anchor_rows.to(loss.dtype).sum()
    elif reduction == "anchor_mean" or across_ranks:
        count = weight.sum()
    else:
        return _bag_mean(loss * weight, weight, bag_offsets, over_all_bags=reduction == "image_mean")
    if across_ranks:
        count = distributed.all_reduce_sum(count)
    return (loss * weight).sum() / count.clamp(min=1)


def _bag_mean(weighted: Tensor, weight: Tensor, bag_offsets: Tensor, *, over_all_bags: bool) -> Tensor:
    """The mean over bags of each bag's mean over its valid anchors: over every bag (one without a
    valid anchor counting as 0) or over the bags that have one."""
    num_bags = bag_offsets.shape[0] - 1
    counts = bag_offsets[1:] - bag_offsets[:-1]
    bag_of_row = torch.repeat_interleave(
        torch.arange(num_bags, device=weighted.device), counts, output_size=weighted.shape[0])
    zeros = torch.zeros(num_bags, dtype=weighted.dtype, device=weighted.device)
    per_bag = zeros.index_add(0, bag_of_row, weighted)
    anchors = zeros.index_add(0, bag_of_row, weight)
    bag_means = per_bag / anchors.clamp(min=1)
    if over_all_bags:
        # offsets [0] (no bag at all): the empty sum, an attached 0.0, rather than 0 / 0
        return bag_means.sum() / max(num_bags, 1)
    has_anchor = (anchors > 0).to(weighted.dtype)
    return (bag_means * has_anchor).sum() / has_anchor.sum().clamp(min=1)


def reduce_bags(loss: Tensor, valid: Tensor, bags: Bags, reduction: Reduction, ignore_index: int) -> Tensor:
    """``reduce_loss`` over ``bags``; "none" gives one value per row of the caller."""
    if reduction == "none":
        return bags.on_inputs(loss)
    anchor_rows = bags.anchor_rows(ignore_index) if reduction == "row_mean" else None
    return reduce_loss(loss, valid, bags.offsets, reduction, anchor_rows=anchor_rows,
                       across_ranks=bags.across_ranks)
