"""The loss modules and their building blocks, as ``pixcon.nn``: the pixel contrastive loss for
[B, D, H, W] features, its multi-scale and cross-image variants, the memory bank and the
projection head."""

from __future__ import annotations

from .cross_image import CrossImageContrastiveLoss
from .heads import ProjectionHead
from .memory_bank import PixelMemoryBank
from .multiscale import MultiScaleContrastiveLoss
from .pixel_loss import PixelContrastiveLoss

__all__ = [
    "CrossImageContrastiveLoss", "MultiScaleContrastiveLoss", "PixelContrastiveLoss", "PixelMemoryBank",
    "ProjectionHead",
]
