"""pixcon's pixel contrastive loss registered as an mmseg loss."""

from __future__ import annotations

import math
import numbers
from typing import Any

from mmseg.registry import MODELS
from torch import Tensor

from .. import nn as pixcon_nn


@MODELS.register_module()
class PixelContrastiveLoss(pixcon_nn.PixelContrastiveLoss):
    """``pixcon.nn.PixelContrastiveLoss`` with mmseg's loss conventions.

    Args:
        loss_weight: multiplies the loss.
        loss_name: the key of the term in the losses dict. mmseg backpropagates only the
            entries whose name starts with ``loss_``, so other names are refused.
        **options: ``pixcon.nn.PixelContrastiveLoss``'s arguments (``temperature``,
            ``ignore_index`` (255 by default, as mmseg's), ``variant``, ``denominator``,
            ``size``, ``sampler``, ...).

    Called as ``loss(embeddings [B, D, h, w], labels [B, H, W], predictions=None)``.
    """

    def __init__(self, *, loss_weight: float = 1.0, loss_name: str = "loss_contrast",
                 **options: Any) -> None:
        if not isinstance(loss_name, str):
            raise TypeError(f"PixelContrastiveLoss: loss_name must be a str, got {loss_name!r}")
        if isinstance(loss_weight, bool) or not isinstance(loss_weight, numbers.Real):
            raise TypeError(f"PixelContrastiveLoss: loss_weight must be a number, got {loss_weight!r}")
        if not math.isfinite(loss_weight):
            raise ValueError(f"PixelContrastiveLoss: loss_weight must be finite, got {loss_weight}")
        if not loss_name.startswith("loss_"):
            raise ValueError(
                f"PixelContrastiveLoss: loss_name must start with 'loss_' (mmseg only "
                f"backpropagates such terms), got {loss_name!r}")
        super().__init__(**options)
        self.loss_weight = float(loss_weight)
        self._loss_name = loss_name

    @property
    def loss_name(self) -> str:
        """The key of this term in the losses dict (mmseg's loss interface)."""
        return self._loss_name

    def forward(self, embeddings: Tensor, labels: Tensor, predictions: Tensor | None = None,
                weight: Tensor | None = None, ignore_index: int | None = None,
                **kwargs: Any) -> Tensor:
        """The weighted loss. ``weight``, ``ignore_index`` and other keywords are what a
        decode head passes to each of its losses: a per-pixel weight has no meaning for a
        loss over pairs of pixels, and the ignore index is the one given at construction."""
        return self.loss_weight * super().forward(embeddings, labels, predictions)
