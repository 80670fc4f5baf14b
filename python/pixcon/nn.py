"""Modules: the pixel contrastive loss for [B, D, H, W] features, and the projection head."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .functional import REDUCTIONS, Denominator, Reduction, contrastive_loss, reduce_loss


class PixelContrastiveLoss(nn.Module):
    """Pixel-wise label-based contrastive loss (Zhao et al., ICCV 2021) over feature maps.

    Called as ``loss_fn(embeddings [B, D, H, W], labels [B, H', W'])``. With ``size``, the
    features are resized bilinearly and the labels by nearest neighbour to ``size``; otherwise
    the labels are resized (nearest) to the features' size. Features are then L2-normalised
    along D (``normalize=True``) and every pixel is a row: variant "image" contrasts the pixels
    of each image among themselves, "batch" all pixels of the batch together. The memory is
    O(pixels * D): full resolution works.

    ``base_temperature`` (ContrastiveSeg) multiplies the loss by temperature / base_temperature.
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
    ) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"PixelContrastiveLoss: temperature must be > 0, got {temperature}")
        if variant not in ("image", "batch"):
            raise ValueError(f'PixelContrastiveLoss: variant must be "image" or "batch", got {variant!r}')
        if denominator not in ("all", "pair"):
            raise ValueError(f'PixelContrastiveLoss: denominator must be "all" or "pair", got {denominator!r}')
        if reduction not in REDUCTIONS:
            raise ValueError(f"PixelContrastiveLoss: reduction must be one of {REDUCTIONS}, got {reduction!r}")
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

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, variant={self.variant!r}, denominator={self.denominator!r}, "
                f"size={self.size}, reduction={self.reduction!r}")

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
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
        if tuple(labels.shape[-2:]) != tuple(embeddings.shape[-2:]):
            labels = F.interpolate(labels[:, None].float(), size=embeddings.shape[-2:], mode="nearest")[:, 0].long()
        if self.normalize:
            embeddings = F.normalize(embeddings, dim=1)
        b, d, h, w = embeddings.shape
        rows = embeddings.permute(0, 2, 3, 1).reshape(b * h * w, d)
        if self.variant == "image":
            offsets = torch.arange(b + 1, device=rows.device, dtype=torch.int64) * (h * w)
        else:
            offsets = torch.tensor([0, b * h * w], device=rows.device, dtype=torch.int64)
        loss, valid = contrastive_loss(
            rows, labels.reshape(-1), offsets, temperature=self.temperature,
            ignore_index=self.ignore_index, denominator=self.denominator,
            self_positive=self.self_positive,
        )
        if self.base_temperature is not None:
            loss = loss * (self.temperature / self.base_temperature)
        return reduce_loss(loss, valid, offsets, self.reduction)


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
