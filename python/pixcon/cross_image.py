"""The cross-image variant of the released code of Zhao et al. (ICCV 2021)."""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import Tensor, nn

from .bags import Bags
from .options import Denominator, HasLossOptions, LossOptions, Reduction, check_reduction, check_size
from .reduction import reduce_bags
from .rows import check_maps, pixel_rows

__all__ = ["CrossImageContrastiveLoss", "partner_permutation"]

Permutation = Literal["shift", "random"]


def partner_permutation(batch_size: int, permutation: Permutation | Sequence[int] | Tensor = "shift",
                        device: torch.device | str | None = None) -> Tensor:
    """The partner of each image: ``"shift"`` pairs image k with image (k + 1) % B, ``"random"``
    draws a random permutation from torch's generator (the released code's
    ``tf.random.shuffle``, which may pair an image with itself), or an explicit sequence of B
    image indices (any mapping; it need not be a permutation)."""
    if isinstance(permutation, str):
        if permutation == "shift":
            return (torch.arange(batch_size, device=device) + 1) % max(batch_size, 1)
        if permutation == "random":
            return torch.randperm(batch_size).to(device)
        raise ValueError(f'CrossImageContrastiveLoss: permutation must be "shift", "random" or B indices, '
                         f"got {permutation!r}")
    partner = torch.as_tensor(permutation, dtype=torch.int64, device=device)
    if partner.shape != (batch_size,) or (batch_size and (int(partner.min()) < 0 or int(partner.max()) >= batch_size)):
        raise ValueError(f"CrossImageContrastiveLoss: permutation must hold {batch_size} indices in "
                         f"[0, {batch_size}), got {partner.tolist()}")
    return partner


class CrossImageContrastiveLoss(HasLossOptions, nn.Module):
    """The cross-image pixel contrastive loss of the released code of Zhao et al.

    Called as ``loss_fn(embeddings_a, labels_a, embeddings_b, labels_b)``: view a is the
    batch [B, D, H, W] (labels [B, H', W']), view b its augmented view. Following the paper's
    released code (google-research ``supervised_pixel_contrastive_loss``,
    ``within_image_loss=False``), image k of view a is paired with image partner(k) of view b,
    and each pair is one bag: every pixel of both images is an anchor, its positives are the
    pixels of the same class in either image (itself included, ``self_positive``), its negatives
    only the pixels of other classes in its own image (image ids). ``permutation``: "shift"
    (default, partner(k) = (k + 1) % B: always another image when B > 1), "random" (the
    released code's random shuffle) or B explicit indices; ``forward(..., permutation=...)``
    overrides it for one call.

    Features are resized bilinearly and labels by nearest neighbour to ``size`` (the released
    code: 65x65), otherwise labels to the features' size; features are L2-normalised along D
    (``normalize``). Defaults match the released code: temperature 0.07, the "pair" denominator
    and ``self_positive=True``; ``reduction="mean"`` averages the valid anchors of each pair,
    then the pairs that have one (the released code also averages in pairs without any, as 0:
    ``reduction="image_mean"``); "none" gives the per-pixel losses in bag order (pair k: the
    pixels of image k of view a, then those of its partner in view b).
    """

    def __init__(
        self,
        temperature: float = 0.07,
        ignore_index: int = 255,
        denominator: Denominator = "pair",
        self_positive: bool = True,
        normalize: bool = True,
        size: tuple[int, int] | None = None,
        reduction: Reduction = "mean",
        permutation: Permutation | Sequence[int] | Tensor = "shift",
    ) -> None:
        super().__init__()
        self.options = LossOptions.checked("CrossImageContrastiveLoss", temperature=temperature,
                                           ignore_index=ignore_index, denominator=denominator,
                                           self_positive=self_positive)
        check_reduction("CrossImageContrastiveLoss", reduction)
        if isinstance(permutation, str) and permutation not in ("shift", "random"):
            raise ValueError(f'CrossImageContrastiveLoss: permutation must be "shift", "random" or B indices, '
                             f"got {permutation!r}")
        self.normalize = bool(normalize)
        self.size = check_size("CrossImageContrastiveLoss", size)
        self.reduction = reduction
        self.permutation = permutation

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, denominator={self.denominator!r}, "
                f"self_positive={self.self_positive}, size={self.size}, reduction={self.reduction!r}, "
                f"permutation={self.permutation!r}")

    def _rows(self, embeddings: Tensor, labels: Tensor, view: str) -> tuple[Tensor, Tensor]:
        check_maps("CrossImageContrastiveLoss", embeddings, labels, embeddings_name=f"embeddings_{view}",
                   labels_name=f"labels_{view}")
        pixels = pixel_rows(embeddings, labels, size=self.size, normalize=self.normalize)
        b, hw = pixels.batch, pixels.pixels_per_image
        return pixels.rows.reshape(b, hw, -1), pixels.labels.reshape(b, hw)

    def forward(self, embeddings_a: Tensor, labels_a: Tensor, embeddings_b: Tensor, labels_b: Tensor,
                permutation: Permutation | Sequence[int] | Tensor | None = None) -> Tensor:
        rows_a, y_a = self._rows(embeddings_a, labels_a, "a")
        rows_b, y_b = self._rows(embeddings_b, labels_b, "b")
        batch, pixels_a, dim = rows_a.shape
        if rows_b.device != rows_a.device:
            raise ValueError(f"CrossImageContrastiveLoss: embeddings_b is on {rows_b.device} but embeddings_a is on "
                             f"{rows_a.device}; both views must be on the same device")
        if rows_b.shape[0] != batch or rows_b.shape[2] != dim:
            raise ValueError(f"CrossImageContrastiveLoss: embeddings_b must have the batch size and D of embeddings_a "
                             f"({batch}, {dim}), got {rows_b.shape[0]} and {rows_b.shape[2]}")
        pixels_b = rows_b.shape[1]
        partner = partner_permutation(batch, self.permutation if permutation is None else permutation,
                                      rows_a.device)
        bag = pixels_a + pixels_b
        rows = torch.cat([rows_a, rows_b[partner]], dim=1).reshape(batch * bag, dim)
        labels = torch.cat([y_a, y_b[partner]], dim=1).reshape(batch * bag)
        # image id 2k for the pixels of image k of view a, 2k + 1 for those of its partner
        side = torch.cat([torch.zeros(pixels_a, dtype=torch.int64, device=rows.device),
                          torch.ones(pixels_b, dtype=torch.int64, device=rows.device)])
        image_ids = (2 * torch.arange(batch, device=rows.device)[:, None] + side[None, :]).reshape(-1)
        offsets = torch.arange(batch + 1, device=rows.device, dtype=torch.int64) * bag
        bags = Bags(rows, labels, offsets, image_ids=image_ids)
        loss, valid = bags.loss(self.options)
        return reduce_bags(loss, valid, bags, self.reduction, self.ignore_index)
