"""The pixel contrastive loss module for [B, D, H, W] features (Zhao et al., ICCV 2021)."""

from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence

from torch import Tensor, nn

from .bags import Bags
from .distributed import gather_bags
from .memory_bank import PixelMemoryBank
from .options import (Denominator, HasLossOptions, LossOptions, Reduction, check_positive, check_reduction,
                      check_size)
from .reduction import reduce_bags
from .rows import check_maps, pixel_rows
from .sampling import PixelSampler

__all__ = ["PixelContrastiveLoss"]


class PixelContrastiveLoss(HasLossOptions, nn.Module):
    """Pixel-wise label-based contrastive loss (Zhao et al., ICCV 2021) over feature maps.

    Called as ``loss_fn(embeddings [B, D, H, W], labels [B, H', W'])``. With ``size``, the
    features are resized bilinearly and the labels by nearest neighbour to ``size``; otherwise
    the labels are resized (nearest) to the features' size. ``align_corners=True`` resizes as the
    official TF code does (TF1's ``align_corners=True``): features bilinearly with corners
    aligned, labels from source index round(i (in - 1) / (out - 1)), ties away from zero.
    Features are then L2-normalised along D (``normalize=True``) and every pixel is a row:
    variant "image" contrasts the pixels of each image among themselves, "batch" all pixels of
    the batch together, "blocks" the pixels of each ``block_size`` = (bh, bw) block of each
    image (Hu et al., MICCAI 2021; blocks of the resized map, partial blocks at the right and
    bottom edges included). The memory is O(pixels * D): full resolution works.

    ``base_temperature`` (ContrastiveSeg) multiplies the loss by temperature / base_temperature.

    ``sampler`` (a ``pixcon.PixelSampler`` or a dict ``{"strategy": ..., **parameters}``): only
    the pixels it picks from the resized labels become rows, in the bags it returns (which
    replace ``variant``; "blocks" refuses a sampler). ``forward`` then also takes
    ``predictions`` [B, H', W'] (predicted classes), which "hard_easy" needs.

    ``gather=True`` (under ``torch.distributed``): the rows of every rank (after sampling,
    ignored pixels dropped) join one batch-wide bag on each rank, in rank order; only this
    rank's rows are anchors, and gradients reach the other ranks' rows through an autograd
    all_gather. It needs one bag per batch: ``variant="batch"`` or a sampler returning one bag
    ("class_balanced", "hard_easy", "uniform" with ``per_image=False``); per-image or per-block
    bags raise ValueError. Sampling stays local to each rank. "mean", "anchor_mean" and
    "image_mean" divide the sum of this rank's anchor losses by the number of valid anchors of
    ALL ranks (an all_reduce), "row_mean" by the number of anchor rows of all ranks, so the sum
    over ranks of the returned losses, and of their gradients, equals the loss of one process
    holding the whole batch; "sum" is this rank's sum; "none" this rank's per-row losses. DDP
    averages gradients over ranks, so there the applied gradient is the single-process one
    divided by the world size (multiply the loss by the world size, or scale the learning
    rate, to undo it); all_reduce the returned value to log the full loss.
    Every rank makes the same collective calls even when its batch has no valid pixel. Without
    an initialised process group, ``gather=True`` changes nothing.

    ``memory_bank`` (a ``pixcon.nn.PixelMemoryBank``): its filled entries join every bag as
    contrast-only rows (positives and negatives of the anchors, never anchors themselves, no
    gradient); after the loss is computed, in training mode, the current rows (sampled, not
    ignored) are enqueued, with their image index for the segment queue (ContrastiveSeg's
    order). With ``gather=True`` every rank enqueues the gathered rows in rank order, so the
    banks of all ranks stay identical.
    """

    def __init__(
        self,
        temperature: float = 0.07,
        ignore_index: int = 255,
        variant: Literal["image", "batch", "blocks"] = "image",
        denominator: Denominator = "all",
        self_positive: bool = False,
        normalize: bool = True,
        size: tuple[int, int] | None = None,
        reduction: Reduction = "mean",
        base_temperature: float | None = None,
        sampler: PixelSampler | Mapping[str, Any] | None = None,
        gather: bool = False,
        memory_bank: PixelMemoryBank | None = None,
        block_size: Sequence[int] | None = None,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        owner = "PixelContrastiveLoss"
        self.options = LossOptions.checked(owner, temperature=temperature, ignore_index=ignore_index,
                                           denominator=denominator, self_positive=self_positive)
        check_reduction(owner, reduction)
        if variant not in ("image", "batch", "blocks"):
            raise ValueError(f'{owner}: variant must be "image", "batch" or "blocks", got {variant!r}')
        self.block_size = _checked_block_size(owner, variant, block_size)
        if base_temperature is not None:
            check_positive(owner, "base_temperature", base_temperature)
        self.variant = variant
        self.normalize = bool(normalize)
        self.align_corners = bool(align_corners)
        self.size = check_size(owner, size)
        self.reduction = reduction
        self.base_temperature = base_temperature
        self.sampler = None if sampler is None else PixelSampler.from_config(sampler)
        if self.sampler is not None and variant == "blocks":
            raise ValueError(f'{owner}: a sampler makes its own bags, which would replace the blocks of '
                             f'variant="blocks"; use one or the other')
        self.gather = bool(gather)
        if self.gather and not _one_bag(self.variant, self.sampler):
            raise ValueError(
                f"{owner}: gather=True joins the rows of every rank into one batch-wide bag, "
                "but this configuration makes one bag per image or block (variant=\"image\", \"blocks\" or "
                "a \"uniform\" sampler with per_image=True), whose pixels never contrast with other images, so "
                "there is nothing to gather; use variant=\"batch\" or a one-bag sampler (\"class_balanced\", \"hard_easy\", "
                "or \"uniform\" with per_image=False)")
        if memory_bank is not None and not isinstance(memory_bank, PixelMemoryBank):
            raise ValueError(f"{owner}: memory_bank must be a pixcon.nn.PixelMemoryBank, "
                             f"got {type(memory_bank).__name__}")
        self.memory_bank = memory_bank

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, variant={self.variant!r}, denominator={self.denominator!r}, "
                f"size={self.size}, reduction={self.reduction!r}, sampler={self.sampler!r}"
                + (f", block_size={self.block_size}" if self.block_size else "")
                + (", align_corners=True" if self.align_corners else "")
                + (", gather=True" if self.gather else ""))

    def forward(self, embeddings: Tensor, labels: Tensor, predictions: Tensor | None = None) -> Tensor:
        check_maps("PixelContrastiveLoss", embeddings, labels)
        pixels = pixel_rows(embeddings, labels, size=self.size, normalize=self.normalize,
                            align_corners=self.align_corners)
        track_images = self.gather or self.memory_bank is not None
        if self.sampler is not None:
            bags = self.sampler.select(pixels, predictions, self.ignore_index, with_images=track_images)
        elif self.block_size is not None:
            bags = Bags.of_blocks(pixels, self.block_size, with_images=track_images)
        else:
            bags = Bags.of_pixels(pixels, per_image=self.variant == "image", with_images=track_images)
        if self.gather:
            bags = gather_bags(bags, self.ignore_index)
        contributed = bags
        if self.memory_bank is not None:
            bags = self.memory_bank.join(bags)
        loss, valid = bags.loss(self.options)
        if self.base_temperature is not None:
            loss = loss * (self.temperature / self.base_temperature)
        out = reduce_bags(loss, valid, bags, self.reduction, self.ignore_index)
        if self.memory_bank is not None and self.training:
            keep = contributed.labels != self.ignore_index
            self.memory_bank.enqueue(contributed.rows.detach()[keep], contributed.labels[keep],
                                     contributed.images[keep])
        return out


def _one_bag(variant: str, sampler: PixelSampler | None) -> bool:
    """Whether the module makes one bag per batch (what gather=True needs)."""
    if sampler is None:
        return variant == "batch"
    return sampler.strategy != "uniform" or not sampler.per_image


def _checked_block_size(owner: str, variant: str, block_size: Sequence[int] | None) -> tuple[int, int] | None:
    """``block_size`` as (bh, bw), which variant "blocks" needs and the others refuse."""
    if variant != "blocks":
        if block_size is not None:
            raise ValueError(f'{owner}: block_size is for variant="blocks" only, got block_size={block_size!r} '
                             f"with variant={variant!r}")
        return None
    if block_size is None:
        raise ValueError(f'{owner}: variant="blocks" needs block_size=(bh, bw)')
    if (isinstance(block_size, (str, bytes)) or not isinstance(block_size, Sequence)
            or any(isinstance(v, bool) or not isinstance(v, int) for v in block_size)):
        raise TypeError(f"{owner}: block_size must be a pair of ints (bh, bw), got {block_size!r}")
    if len(block_size) != 2 or any(v < 1 for v in block_size):
        raise ValueError(f"{owner}: block_size must be a pair of positive ints (bh, bw), got {block_size!r}")
    return (int(block_size[0]), int(block_size[1]))
