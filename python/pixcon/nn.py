"""Modules: the pixel contrastive loss for [B, D, H, W] features, and the projection head."""

from __future__ import annotations

from typing import Any, Literal, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import distributed
from .functional import Denominator, Reduction, check_loss_options, contrastive_loss, reduce_loss
from .memory_bank import PixelMemoryBank
from .sampling import PixelSampler


class PixelContrastiveLoss(nn.Module):
    """Pixel-wise label-based contrastive loss (Zhao et al., ICCV 2021) over feature maps.

    Called as ``loss_fn(embeddings [B, D, H, W], labels [B, H', W'])``. With ``size``, the
    features are resized bilinearly and the labels by nearest neighbour to ``size``; otherwise
    the labels are resized (nearest) to the features' size. Features are then L2-normalised
    along D (``normalize=True``) and every pixel is a row: variant "image" contrasts the pixels
    of each image among themselves, "batch" all pixels of the batch together. The memory is
    O(pixels * D): full resolution works.

    ``base_temperature`` (ContrastiveSeg) multiplies the loss by temperature / base_temperature.

    ``sampler`` (a ``pixcon.PixelSampler`` or a dict ``{"strategy": ..., **parameters}``): only
    the pixels it picks from the resized labels become rows, in the bags it returns (which
    replace ``variant``). ``forward`` then also takes ``predictions`` [B, H', W'] (predicted
    classes), which "hard_easy" needs.

    ``gather=True`` (under ``torch.distributed``): the rows of every rank (after sampling,
    ignored pixels dropped) join one batch-wide bag on each rank, in rank order; only this
    rank's rows are anchors, and gradients reach the other ranks' rows through an autograd
    all_gather. It needs one bag per batch: ``variant="batch"`` or a sampler returning one bag
    ("class_balanced", "hard_easy", "uniform" with ``per_image=False``); per-image bags raise
    ValueError. Sampling stays local to each rank. "mean" and "anchor_mean" divide the sum of
    this rank's anchor losses by the number of valid anchors of ALL ranks (an all_reduce), so
    the sum over ranks of the returned losses, and of their gradients, equals the loss of one
    process holding the whole batch; "sum" is this rank's sum; "none" this rank's per-row
    losses. DDP averages gradients over ranks, so there the applied gradient is the
    single-process one divided by the world size (multiply the loss by the world size, or
    scale the learning rate, to undo it); all_reduce the returned value to log the full loss.
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
        variant: Literal["image", "batch"] = "image",
        denominator: Denominator = "all",
        self_positive: bool = False,
        normalize: bool = True,
        size: tuple[int, int] | None = None,
        reduction: Reduction = "mean",
        base_temperature: float | None = None,
        sampler: PixelSampler | Mapping[str, Any] | None = None,
        gather: bool = False,
        memory_bank: PixelMemoryBank | None = None,
    ) -> None:
        super().__init__()
        check_loss_options("PixelContrastiveLoss", temperature=temperature, denominator=denominator,
                           reduction=reduction)
        if variant not in ("image", "batch"):
            raise ValueError(f'PixelContrastiveLoss: variant must be "image" or "batch", got {variant!r}')
        if base_temperature is not None and not base_temperature > 0:
            raise ValueError(f"PixelContrastiveLoss: base_temperature must be > 0, got {base_temperature}")
        self.temperature = float(temperature)
        self.ignore_index = int(ignore_index)
        self.variant = variant
        self.denominator = denominator
        self.self_positive = bool(self_positive)
        self.normalize = bool(normalize)
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.reduction = reduction
        self.base_temperature = base_temperature
        self.sampler = None if sampler is None else PixelSampler.from_config(sampler)
        self.gather = bool(gather)
        if self.gather and not _one_bag(self.variant, self.sampler):
            raise ValueError(
                "PixelContrastiveLoss: gather=True joins the rows of every rank into one batch-wide bag, "
                "but this configuration makes one bag per image (variant=\"image\" or a \"uniform\" sampler "
                "with per_image=True), whose pixels never contrast with other images, so there is nothing "
                "to gather; use variant=\"batch\" or a one-bag sampler (\"class_balanced\", \"hard_easy\", "
                "or \"uniform\" with per_image=False)")
        if memory_bank is not None and not isinstance(memory_bank, PixelMemoryBank):
            raise ValueError("PixelContrastiveLoss: memory_bank must be a pixcon.nn.PixelMemoryBank, "
                             f"got {type(memory_bank).__name__}")
        self.memory_bank = memory_bank

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, variant={self.variant!r}, denominator={self.denominator!r}, "
                f"size={self.size}, reduction={self.reduction!r}, sampler={self.sampler!r}"
                + (", gather=True" if self.gather else ""))

    def forward(self, embeddings: Tensor, labels: Tensor, predictions: Tensor | None = None) -> Tensor:
        if embeddings.dim() != 4:
            raise ValueError(f"PixelContrastiveLoss: embeddings must be [B, D, H, W], got shape {tuple(embeddings.shape)}")
        if labels.dim() != 3 or labels.shape[0] != embeddings.shape[0]:
            raise ValueError(
                f"PixelContrastiveLoss: labels must be [B, H, W] with B = {embeddings.shape[0]}, "
                f"got shape {tuple(labels.shape)}")
        if labels.is_floating_point():
            raise ValueError("PixelContrastiveLoss: labels must be an integer tensor")
        if self.size is not None and tuple(embeddings.shape[-2:]) != self.size:
            embeddings = F.interpolate(embeddings, size=self.size, mode="bilinear", align_corners=False)
        labels = _resize_classes(labels, embeddings.shape[-2:])
        if self.normalize:
            embeddings = F.normalize(embeddings, dim=1)
        b, d, h, w = embeddings.shape
        rows = embeddings.permute(0, 2, 3, 1).reshape(b * h * w, d)
        row_labels = labels.reshape(-1)
        if self.sampler is not None:
            if predictions is not None and self.sampler.uses_predictions:
                predictions = _resize_classes(predictions, embeddings.shape[-2:])
            indices, offsets = self.sampler(labels, predictions, self.ignore_index)
            rows, row_labels = rows[indices], row_labels[indices]
        elif self.variant == "image":
            offsets = torch.arange(b + 1, device=rows.device, dtype=torch.int64) * (h * w)
        else:  # [0, B H W] made on the device (no host-to-device copy: CUDA graphs capture it)
            offsets = torch.arange(2, device=rows.device, dtype=torch.int64) * (b * h * w)
        if self.gather or self.memory_bank is not None:
            if self.sampler is not None:
                images = indices // (h * w)
            else:
                images = torch.arange(b, device=rows.device).repeat_interleave(h * w)
            return self._extended_loss(rows, row_labels, offsets, images)
        loss, valid = contrastive_loss(
            rows, row_labels, offsets, temperature=self.temperature,
            ignore_index=self.ignore_index, denominator=self.denominator,
            self_positive=self.self_positive,
        )
        if self.base_temperature is not None:
            loss = loss * (self.temperature / self.base_temperature)
        return reduce_loss(loss, valid, offsets, self.reduction)

    def _extended_loss(self, rows: Tensor, row_labels: Tensor, offsets: Tensor, images: Tensor) -> Tensor:
        """The loss with ``gather`` and/or ``memory_bank``: rows [n, D] with labels and image
        index [n] in bags ``offsets`` (one bag when gathering)."""
        bank = self.memory_bank
        if bank is not None and bank.dim != rows.shape[1]:
            raise ValueError(f"PixelContrastiveLoss: the memory bank holds {bank.dim}-dimensional entries "
                             f"but the embeddings have D = {rows.shape[1]}")
        num_local = rows.shape[0]
        anchor: Tensor | None = None
        if self.gather:
            kept = torch.nonzero(row_labels != self.ignore_index).squeeze(1)
            side = torch.stack([row_labels[kept].to(torch.int64), images[kept].to(torch.int64)], dim=1)
            gathered = distributed.all_gather_rows(rows[kept], side, pad_value=self.ignore_index)
            bag_rows, bag_labels = gathered.rows, gathered.ints[:, 0]
            # image ids unique over ranks and ordered by (rank, local image): for the segment queue
            source = torch.repeat_interleave(
                torch.arange(len(gathered.counts), device=rows.device),
                torch.tensor(gathered.counts, device=rows.device), output_size=bag_rows.shape[0])
            span = int(gathered.ints[:, 1].max()) + 1 if bag_rows.shape[0] else 1
            bag_images = source * span + gathered.ints[:, 1]
            anchor = torch.zeros(bag_rows.shape[0], dtype=torch.bool, device=rows.device)
            anchor[gathered.start:gathered.stop] = True
            offsets = torch.tensor([0, bag_rows.shape[0]], dtype=torch.int64, device=rows.device)
            local_positions = torch.arange(gathered.start, gathered.stop, device=rows.device)
        else:
            bag_rows, bag_labels, bag_images = rows, row_labels, images
            local_positions = torch.arange(num_local, device=rows.device)
        loss_rows, loss_labels, loss_offsets = bag_rows, bag_labels, offsets
        if bank is not None:
            bank_rows, bank_labels = bank.rows()
            loss_rows, loss_labels, loss_offsets, placed = _append_to_bags(
                bag_rows, bag_labels, offsets, bank_rows.to(device=rows.device, dtype=rows.dtype),
                bank_labels.to(device=rows.device, dtype=bag_labels.dtype))
            loss_anchor = torch.zeros(loss_rows.shape[0], dtype=torch.bool, device=rows.device)
            loss_anchor[placed] = True if anchor is None else anchor
            anchor = loss_anchor
            local_positions = placed[local_positions]
        loss, valid = contrastive_loss(
            loss_rows, loss_labels, loss_offsets, temperature=self.temperature,
            ignore_index=self.ignore_index, denominator=self.denominator,
            self_positive=self.self_positive, anchor_mask=anchor,
        )
        if self.base_temperature is not None:
            loss = loss * (self.temperature / self.base_temperature)
        if self.gather:
            local_loss, local_valid = loss[local_positions], valid[local_positions]
            if self.reduction == "none":
                out = loss.new_zeros(num_local).index_put((kept,), local_loss)
            elif self.reduction == "sum":
                out = local_loss.sum()
            else:  # one bag: "mean" and "anchor_mean" are both the mean over the valid anchors of all ranks
                weight = local_valid.to(local_loss.dtype)
                anchors = distributed.all_reduce_sum(weight.sum())
                out = (local_loss * weight).sum() / anchors.clamp(min=1)
        elif self.reduction == "none":
            out = loss[local_positions]
        else:
            out = reduce_loss(loss, valid, loss_offsets, self.reduction)
        if bank is not None and self.training:
            keep = bag_labels != self.ignore_index
            bank.enqueue(bag_rows.detach()[keep], bag_labels[keep], bag_images[keep])
        return out


def _one_bag(variant: str, sampler: PixelSampler | None) -> bool:
    """Whether the module makes one bag per batch (what gather=True needs)."""
    if sampler is None:
        return variant == "batch"
    return sampler.strategy != "uniform" or not sampler.per_image


def _append_to_bags(rows: Tensor, labels: Tensor, offsets: Tensor, extra_rows: Tensor,
                    extra_labels: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Appends ``extra_rows`` [m, D] (with ``extra_labels``) at the end of every bag.

    Returns (rows, labels, offsets, placed): the new rows and labels, the new CSR offsets, and
    ``placed`` [n], the new position of each original row.
    """
    n, m = rows.shape[0], extra_rows.shape[0]
    num_bags = offsets.shape[0] - 1
    device = rows.device
    steps = torch.arange(num_bags + 1, device=device, dtype=torch.int64)
    new_offsets = offsets.to(torch.int64) + steps * m
    bag_of_row = torch.repeat_interleave(steps[:-1], offsets[1:] - offsets[:-1], output_size=n)
    placed = torch.arange(n, device=device) + bag_of_row * m
    if m == 0 or num_bags == 0:
        return rows, labels, new_offsets, placed
    extra_placed = (new_offsets[1:, None] - m + torch.arange(m, device=device)[None, :]).reshape(-1)
    source = torch.empty(n + num_bags * m, dtype=torch.int64, device=device)
    source[placed] = torch.arange(n, device=device)
    source[extra_placed] = n + torch.arange(num_bags * m, device=device)
    all_rows = torch.cat([rows, extra_rows.repeat(num_bags, 1)])
    all_labels = torch.cat([labels, extra_labels.repeat(num_bags)])
    return all_rows[source], all_labels[source], new_offsets, placed


def _resize_classes(classes: Tensor, size: torch.Size) -> Tensor:
    """A [B, H, W] class map resized by nearest neighbour to ``size``."""
    if tuple(classes.shape[-2:]) == tuple(size):
        return classes
    return F.interpolate(classes[:, None].float(), size=size, mode="nearest")[:, 0].long()


class ProjectionHead(nn.Module):
    """1x1 convolutions with ReLU between them, output unit-normalised along channels
    (the projection head of Zhao et al.: three layers of 256 channels)."""

    def __init__(self, in_channels: int, channels: int = 256, num_layers: int = 3) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"ProjectionHead: num_layers must be >= 1, got {num_layers}")
        layers: list[nn.Module] = []
        for k in range(num_layers):
            layers.append(nn.Conv2d(in_channels if k == 0 else channels, channels, kernel_size=1))
            if k < num_layers - 1:
                layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> Tensor:
        return F.normalize(self.layers(features), dim=1)


# Integrations built on the classes above (imported last: they import ProjectionHead from here).
from .cross_image import CrossImageContrastiveLoss  # noqa: E402
from .multiscale import MultiScaleContrastiveLoss  # noqa: E402

__all__ = [
    "CrossImageContrastiveLoss", "MultiScaleContrastiveLoss", "PixelContrastiveLoss", "PixelMemoryBank",
    "ProjectionHead",
]
