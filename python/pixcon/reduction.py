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
                across_ranks: bool = False) -> Tensor:
    """Reduces per-row losses.

    "mean": mean over valid anchors within each bag, then mean over the bags that have one;
    "anchor_mean": mean over all valid anchors; "sum"; "none": the per-row vector. With no
    valid anchor the result is 0.0, still attached to the graph (zero gradient, never NaN).
    ``across_ranks``: the rows form one bag shared by all ranks whose anchors are this rank's
    rows; "mean" and "anchor_mean" divide this rank's sum by the valid anchors of all ranks
    (an all_reduce), so the losses of the ranks add up to that of one process.
    """
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction not in REDUCTIONS:
        raise ValueError(f"pixcon: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    weight = valid.to(loss.dtype)
    if reduction == "anchor_mean" or across_ranks:
        anchors = weight.sum()
        if across_ranks:
            anchors = distributed.all_reduce_sum(anchors)
        return (loss * weight).sum() / anchors.clamp(min=1)
    num_bags = bag_offsets.shape[0] - 1
    counts = bag_offsets[1:] - bag_offsets[:-1]
    bag_of_row = torch.repeat_interleave(
        torch.arange(num_bags, device=loss.device), counts, output_size=loss.shape[0])
    per_bag = torch.zeros(num_bags, dtype=loss.dtype, device=loss.device).index_add(0, bag_of_row, loss * weight)
    anchors = torch.zeros(num_bags, dtype=loss.dtype, device=loss.device).index_add(0, bag_of_row, weight)
    has_anchor = (anchors > 0).to(loss.dtype)
    bag_means = per_bag / anchors.clamp(min=1)
    return (bag_means * has_anchor).sum() / has_anchor.sum().clamp(min=1)


def reduce_bags(loss: Tensor, valid: Tensor, bags: Bags, reduction: Reduction) -> Tensor:
    """``reduce_loss`` over ``bags``; "none" gives one value per row of the caller."""
    if reduction == "none":
        return bags.on_inputs(loss)
    return reduce_loss(loss, valid, bags.offsets, reduction, across_ranks=bags.across_ranks)
