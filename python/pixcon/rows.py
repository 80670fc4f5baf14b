"""The first step of every loss module: feature maps and label maps into rows of the loss.

A module's features [B, D, h, w] are resized bilinearly to ``size`` (when given), its labels
[B, H, W] by nearest neighbour to the features' size, the features L2-normalised along D (when
asked), and every pixel becomes a row, image by image in row-major order.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclasses.dataclass
class PixelRows:
    """The pixels of a batch as rows: ``rows`` [B * h * w, D] and ``labels`` [B * h * w], with the
    label map ``label_map`` [B, h, w] they came from."""

    rows: Tensor
    labels: Tensor
    label_map: Tensor

    @property
    def batch(self) -> int:
        return self.label_map.shape[0]

    @property
    def pixels_per_image(self) -> int:
        return self.label_map.shape[1] * self.label_map.shape[2]

    @property
    def image_size(self) -> tuple[int, int]:
        return (self.label_map.shape[1], self.label_map.shape[2])


def resize_classes(classes: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """A [B, H, W] class map resized by nearest neighbour to ``size``."""
    if tuple(classes.shape[-2:]) == tuple(size):
        return classes
    return F.interpolate(classes[:, None].float(), size=size, mode="nearest")[:, 0].long()


def check_maps(owner: str, embeddings: Tensor, labels: Tensor, *, embeddings_name: str = "embeddings",
               labels_name: str = "labels") -> None:
    """A ValueError / TypeError naming the argument unless embeddings is [B, D, h, w] and labels an
    integer [B, H, W]."""
    for name, value in ((embeddings_name, embeddings), (labels_name, labels)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{owner}: {name} must be a tensor, got {type(value).__name__}")
    if embeddings.dim() != 4:
        raise ValueError(f"{owner}: {embeddings_name} must be [B, D, H, W], got shape {tuple(embeddings.shape)}")
    if not embeddings.is_floating_point():
        raise TypeError(f"{owner}: {embeddings_name} must be a floating-point tensor, got {embeddings.dtype}")
    if labels.dim() != 3 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(f"{owner}: {labels_name} must be [B, H, W] with B = {embeddings.shape[0]}, "
                         f"got shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"{owner}: {labels_name} must be an integer tensor, got {labels.dtype}")


def pixel_rows(embeddings: Tensor, labels: Tensor, *, size: tuple[int, int] | None = None,
               normalize: bool = True) -> PixelRows:
    """The rows of ``embeddings`` [B, D, h, w] with the labels of ``labels`` [B, H, W] (checked
    with ``check_maps`` by the caller)."""
    if size is not None and tuple(embeddings.shape[-2:]) != tuple(size):
        embeddings = F.interpolate(embeddings, size=size, mode="bilinear", align_corners=False)
    label_map = resize_classes(labels, embeddings.shape[-2:])
    if normalize:
        embeddings = F.normalize(embeddings, dim=1)
    b, d, h, w = embeddings.shape
    return PixelRows(embeddings.permute(0, 2, 3, 1).reshape(b * h * w, d), label_map.reshape(-1), label_map)
