"""The first step of every loss module: feature maps and label maps into rows of the loss.

A module's features [B, D, h, w] are resized bilinearly to ``size`` (when given), its labels
[B, H, W] by nearest neighbour to the features' size, the features L2-normalised along D (when
asked), and every pixel becomes a row, image by image in row-major order. ``align_corners``
selects torch's default rules (False) or those of TF1's ``align_corners=True`` (True).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclasses.dataclass
class PixelRows:
    """The pixels of a batch as rows: ``rows`` [B * h * w, D] and ``labels`` [B * h * w], with the
    label map ``label_map`` [B, h, w] they came from, resized with the rule ``align_corners``."""

    rows: Tensor
    labels: Tensor
    label_map: Tensor
    align_corners: bool = False

    @property
    def batch(self) -> int:
        return self.label_map.shape[0]

    @property
    def pixels_per_image(self) -> int:
        return self.label_map.shape[1] * self.label_map.shape[2]

    @property
    def image_size(self) -> tuple[int, int]:
        return (self.label_map.shape[1], self.label_map.shape[2])


def resize_classes(classes: Tensor, size: tuple[int, int] | torch.Size, align_corners: bool = False) -> Tensor:
    """A [B, H, W] class map resized by nearest neighbour to ``size``: torch's rule, or with
    ``align_corners`` TF1's (``resize_nearest_neighbor(align_corners=True)``)."""
    if tuple(classes.shape[-2:]) == tuple(size):
        return classes
    if align_corners:
        rows = _aligned_nearest(classes.shape[-2], size[0], classes.device)
        cols = _aligned_nearest(classes.shape[-1], size[1], classes.device)
        return classes[:, rows[:, None], cols[None, :]]
    return F.interpolate(classes[:, None].float(), size=size, mode="nearest")[:, 0].long()


def _aligned_nearest(size_in: int, size_out: int, device: torch.device) -> Tensor:
    """Source index round(i (in - 1) / (out - 1)) of each output index i, 0 when out is 1 (TF1
    then scales by in / out, and index 0 maps to 0). Round is TF1's roundf, half away from
    zero, i.e. floor(x + 1/2) for x >= 0, taken here in exact integer arithmetic; TF1 computes
    x in float32, so where (in - 1) / (out - 1) is not exact in binary a tie may land a hair to
    either side of .5 there."""
    i = torch.arange(size_out, device=device)
    if size_out == 1:
        return i
    return (2 * i * (size_in - 1) + (size_out - 1)) // (2 * (size_out - 1))


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
               normalize: bool = True, align_corners: bool = False) -> PixelRows:
    """The rows of ``embeddings`` [B, D, h, w] with the labels of ``labels`` [B, H, W] (checked
    with ``check_maps`` by the caller); ``align_corners`` for both resizes."""
    if size is not None and tuple(embeddings.shape[-2:]) != tuple(size):
        embeddings = F.interpolate(embeddings, size=size, mode="bilinear", align_corners=align_corners)
    label_map = resize_classes(labels, embeddings.shape[-2:], align_corners)
    if normalize:
        embeddings = F.normalize(embeddings, dim=1)
    b, d, h, w = embeddings.shape
    return PixelRows(embeddings.permute(0, 2, 3, 1).reshape(b * h * w, d), label_map.reshape(-1), label_map,
                     align_corners)
