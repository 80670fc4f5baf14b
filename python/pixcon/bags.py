"""Bags: the rows of one call of the loss, grouped into independent bags, as one object.

A loss module builds the bags of its rows (one per image, one per block of each image, or one
for the batch), and each optional stage transforms them in turn: the sampler keeps some rows
(``PixelSampler.select``), ``gather_bags`` (``pixcon.distributed``) joins every rank's rows into
one bag, the memory bank appends its entries to every bag (``PixelMemoryBank.join``).
``Bags.loss`` then runs the loss op and ``reduce_bags`` (``pixcon.reduction``) reduces it, back
onto the caller's rows when ``reduction="none"``.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from .functional import contrastive_loss
from .options import LossOptions
from .rows import PixelRows


@dataclasses.dataclass
class Bags:
    """Rows [n, D] with labels [n] in CSR bags ``offsets`` [num_bags + 1] (int64).

    ``anchor`` / ``contrast`` (bool [n], None for every row): the rows that get a loss / that
    may be positives or negatives. ``image_ids`` (int64 [n] or None): when given, negatives come
    only from the anchor's own image. ``images`` (int64 [n] or None): the image each row comes
    from, for the memory bank's segment queue. ``origin`` (int64 [n] or None for the identity):
    the caller's row each bag row stands for, -1 for rows from other ranks or the memory bank;
    ``num_inputs`` is the number of the caller's rows. ``across_ranks``: the bag holds the rows
    of every rank, so a mean divides by the anchors of all ranks.
    """

    rows: Tensor
    labels: Tensor
    offsets: Tensor
    anchor: Tensor | None = None
    contrast: Tensor | None = None
    image_ids: Tensor | None = None
    images: Tensor | None = None
    origin: Tensor | None = None
    num_inputs: int | None = None
    across_ranks: bool = False

    @classmethod
    def of_pixels(cls, pixels: PixelRows, *, per_image: bool, with_images: bool = False) -> Bags:
        """Every pixel a row: one bag per image (``per_image``) or one for the batch."""
        device = pixels.rows.device
        b, hw = pixels.batch, pixels.pixels_per_image
        if per_image:
            offsets = torch.arange(b + 1, device=device, dtype=torch.int64) * hw
        else:  # [0, B h w] made on the device (no host-to-device copy: CUDA graphs capture it)
            offsets = torch.arange(2, device=device, dtype=torch.int64) * (b * hw)
        images = torch.arange(b, device=device).repeat_interleave(hw) if with_images else None
        return cls(pixels.rows, pixels.labels, offsets, images=images)

    @classmethod
    def of_blocks(cls, pixels: PixelRows, block_size: tuple[int, int], *, with_images: bool = False) -> Bags:
        """Every pixel a row, one bag per bh x bw block of each image (Hu et al., MICCAI 2021),
        partial blocks at the right and bottom edges included: the rows of a bag are its
        block's pixels in row-major order, bags ordered by image, then blocks in row-major
        order. ``origin`` maps them back to the pixels' order."""
        device = pixels.rows.device
        (h, w), (bh, bw) = pixels.image_size, block_size
        blocks_down, blocks_across = -(-h // bh), -(-w // bw)
        block_in_image = ((torch.arange(h, device=device) // bh)[:, None] * blocks_across
                          + (torch.arange(w, device=device) // bw)[None, :]).reshape(-1)
        per_image = blocks_down * blocks_across
        block = (torch.arange(pixels.batch, device=device)[:, None] * per_image + block_in_image[None, :]).reshape(-1)
        # stable: a block's pixels keep their row-major order
        order = torch.sort(block, stable=True).indices
        heights = (h - torch.arange(blocks_down, device=device) * bh).clamp(max=bh)
        widths = (w - torch.arange(blocks_across, device=device) * bw).clamp(max=bw)
        sizes = (heights[:, None] * widths[None, :]).reshape(-1).repeat(pixels.batch)
        offsets = torch.cat([sizes.new_zeros(1), torch.cumsum(sizes, 0)])
        images = order // pixels.pixels_per_image if with_images else None
        return cls(pixels.rows[order], pixels.labels[order], offsets, images=images, origin=order,
                   num_inputs=pixels.rows.shape[0])

    @property
    def num_rows(self) -> int:
        return self.rows.shape[0]

    def row_arguments(self) -> dict[str, Tensor | None]:
        """The per-row keyword arguments of ``pixcon.contrastive_loss`` (and of
        ``pixcon.reference.contrastive_loss``) these bags give."""
        return {"anchor_mask": self.anchor, "contrast_mask": self.contrast, "image_ids": self.image_ids}

    def anchor_rows(self, ignore_index: int) -> Tensor:
        """bool [n]: the rows that are anchors (not ``ignore_index``, anchor flag set), whether or
        not they have a positive."""
        rows = self.labels != ignore_index
        return rows if self.anchor is None else rows & self.anchor

    def loss(self, options: LossOptions) -> tuple[Tensor, Tensor]:
        """(loss [n], valid [n]) of ``pixcon.contrastive_loss`` over these bags."""
        return contrastive_loss(self.rows, self.labels, self.offsets, **options.as_kwargs(), **self.row_arguments())

    def on_inputs(self, values: Tensor) -> Tensor:
        """Per-row ``values`` [n] of these bags as values of the caller's rows (0 where a caller's
        row has no bag row, e.g. an ignored pixel that was not gathered)."""
        if self.origin is None:
            return values
        mine = self.origin >= 0
        return values.new_zeros(self.num_inputs).index_put((self.origin[mine],), values[mine])
