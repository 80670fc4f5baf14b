"""A per-class memory bank of past embeddings (ContrastiveSeg, Wang et al. ICCV 2021)."""

from __future__ import annotations

import dataclasses
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .bags import Bags
from .options import check_count

__all__ = ["PixelMemoryBank"]


def _push(queue: Tensor, ptr: Tensor, count: Tensor, values: Tensor, classes: Tensor) -> None:
    """FIFO-writes ``values`` [n, D] into ``queue`` [C, S, D], per class in row order.

    The rows of class c go to slots ptr[c], ptr[c] + 1, ... (mod S); when more than S arrive
    at once only the last S are written (the slots the earlier ones would have taken are
    overwritten by the later ones anyway). ptr[c] advances by the number of rows of class c
    (mod S), count[c] (filled slots) by the same, capped at S.
    """
    num_classes, size = queue.shape[0], queue.shape[1]
    n = classes.shape[0]
    if n == 0:
        return
    per_class = torch.bincount(classes, minlength=num_classes)
    order = torch.argsort(classes, stable=True)
    sorted_classes = classes[order]
    first_of_class = torch.cumsum(per_class, 0) - per_class
    within = torch.arange(n, device=classes.device) - first_of_class[sorted_classes]
    keep = within >= per_class[sorted_classes] - size
    slots = (ptr[sorted_classes] + within) % size
    queue[sorted_classes[keep], slots[keep]] = values[order[keep]].to(queue.dtype)
    ptr.copy_((ptr + per_class) % size)
    count.copy_(torch.clamp(count + per_class, max=size))


def _filled(queue: Tensor, count: Tensor) -> tuple[Tensor, Tensor]:
    num_classes, size = queue.shape[0], queue.shape[1]
    slots = torch.arange(size, device=queue.device)
    filled = slots[None, :] < count[:, None]
    classes = torch.arange(num_classes, device=queue.device)[:, None].expand(num_classes, size)
    return queue[filled], classes[filled]


class PixelMemoryBank(nn.Module):
    """Per-class FIFO queues of detached embeddings, the memory of ContrastiveSeg.

    ``queue`` [num_classes, size_per_class, dim] holds pixel embeddings; ``ptr`` [num_classes]
    is each class's write position (the oldest entry once the class is full) and ``count``
    [num_classes] its number of filled slots. With ``segment_size_per_class > 0`` a second
    queue ``segment_queue`` [num_classes, segment_size_per_class, dim] (``segment_ptr``,
    ``segment_count``) receives one L2-normalised mean embedding per class per image at every
    ``enqueue``. All are buffers: they follow ``.to()`` and are saved in the ``state_dict``.

    ``PixelContrastiveLoss(memory_bank=bank)`` appends ``bank.rows()`` to every bag as
    contrast-only rows (positives and negatives, never anchors) and enqueues the current rows
    after computing the loss; the bank's rows are detached, so they never receive gradient.

    Unlike ContrastiveSeg's code, whose pixel-queue pointer advances by one whatever the number
    of entries written, ``ptr`` advances by the number written, so the queue is a true FIFO.
    """

    queue: Tensor
    ptr: Tensor
    count: Tensor

    def __init__(self, num_classes: int, size_per_class: int, dim: int, *, segment_size_per_class: int = 0,
                 ignore_index: int = 255, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        for name, value, least in (("num_classes", num_classes, 1), ("size_per_class", size_per_class, 1),
                                   ("dim", dim, 1), ("segment_size_per_class", segment_size_per_class, 0)):
            check_count("PixelMemoryBank", name, value, least)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
            raise TypeError(f"PixelMemoryBank: ignore_index must be an int, got {ignore_index!r}")
        # an integer queue would silently round every embedding it stores
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"PixelMemoryBank: dtype must be a floating-point torch.dtype, got {dtype!r}")
        self.num_classes = num_classes
        self.size_per_class = size_per_class
        self.dim = dim
        self.segment_size_per_class = segment_size_per_class
        self.ignore_index = int(ignore_index)
        dtype = dtype or torch.get_default_dtype()
        self.register_buffer("queue", torch.zeros(num_classes, size_per_class, dim, dtype=dtype, device=device))
        self.register_buffer("ptr", torch.zeros(num_classes, dtype=torch.int64, device=device))
        self.register_buffer("count", torch.zeros(num_classes, dtype=torch.int64, device=device))
        if segment_size_per_class:
            self.register_buffer("segment_queue", torch.zeros(
                num_classes, segment_size_per_class, dim, dtype=dtype, device=device))
            self.register_buffer("segment_ptr", torch.zeros(num_classes, dtype=torch.int64, device=device))
            self.register_buffer("segment_count", torch.zeros(num_classes, dtype=torch.int64, device=device))

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, size_per_class={self.size_per_class}, dim={self.dim}, "
                f"segment_size_per_class={self.segment_size_per_class}")

    @torch.no_grad()
    def enqueue(self, embeddings: Tensor, labels: Tensor, image_ids: Tensor | None = None) -> None:
        """Writes detached ``embeddings`` [n, D] of classes ``labels`` [n] into the queue.

        Per class, in row order: entries go to ptr, ptr + 1, ... (wrapping, the oldest
        overwritten first) and ptr advances by the number written. When more rows of a class
        than ``size_per_class`` arrive in one call, only the last ``size_per_class`` are kept.
        Rows labelled ``ignore_index`` are skipped. With a segment queue, ``image_ids`` [n]
        (integers >= 0) is required: the L2-normalised mean embedding of each (image, class)
        is enqueued in the segment queue, in ascending image id.
        """
        for name, value in (("embeddings", embeddings), ("labels", labels), ("image_ids", image_ids)):
            if not isinstance(value, Tensor) and not (value is None and name == "image_ids"):
                raise TypeError(f"PixelMemoryBank.enqueue: {name} must be a tensor, got {type(value).__name__}")
        if not embeddings.is_floating_point():
            raise TypeError(f"PixelMemoryBank.enqueue: embeddings must be a floating-point tensor, "
                            f"got {embeddings.dtype}")
        if embeddings.dim() != 2 or embeddings.shape[1] != self.dim:
            raise ValueError(f"PixelMemoryBank.enqueue: embeddings must be [n, {self.dim}], "
                             f"got shape {tuple(embeddings.shape)}")
        if labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
            raise ValueError(f"PixelMemoryBank.enqueue: labels must be [{embeddings.shape[0]}], "
                             f"got shape {tuple(labels.shape)}")
        for name, value in (("labels", labels), ("image_ids", image_ids)):
            if value is not None and (value.is_floating_point() or value.dtype == torch.bool):
                raise TypeError(f"PixelMemoryBank.enqueue: {name} must be an integer tensor, got {value.dtype}")
        if self.segment_size_per_class and image_ids is None:
            raise ValueError("PixelMemoryBank.enqueue: this bank has a segment queue, which needs image_ids [n]")
        if image_ids is not None and (image_ids.dim() != 1 or image_ids.shape[0] != embeddings.shape[0]):
            raise ValueError(f"PixelMemoryBank.enqueue: image_ids must be [{embeddings.shape[0]}], "
                             f"got shape {tuple(image_ids.shape)}")
        device = self.queue.device
        embeddings = embeddings.detach().to(device)
        labels = labels.to(device=device, dtype=torch.int64)
        keep = labels != self.ignore_index
        embeddings, labels = embeddings[keep], labels[keep]
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"PixelMemoryBank.enqueue: labels must lie in [0, {self.num_classes}) or be "
                             f"ignore_index={self.ignore_index}, got values in "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        _push(self.queue, self.ptr, self.count, embeddings, labels)
        if self.segment_size_per_class:
            images = image_ids.to(device=device, dtype=torch.int64)[keep]
            if images.numel() and int(images.min()) < 0:
                raise ValueError("PixelMemoryBank.enqueue: image_ids must be >= 0")
            pairs, which = torch.unique(images * self.num_classes + labels, return_inverse=True)
            sums = embeddings.new_zeros(pairs.shape[0], self.dim).index_add_(0, which, embeddings)
            sizes = torch.bincount(which, minlength=pairs.shape[0]).to(sums.dtype)
            means = F.normalize(sums / sizes[:, None], dim=1)
            _push(self.segment_queue, self.segment_ptr, self.segment_count, means, pairs % self.num_classes)

    def rows(self) -> tuple[Tensor, Tensor]:
        """(embeddings [M, D], labels [M] int64) of the filled entries: the pixel queue class
        by class (slots in storage order), then the segment queue likewise. Detached."""
        embeddings, labels = _filled(self.queue, self.count)
        if self.segment_size_per_class:
            seg_embeddings, seg_labels = _filled(self.segment_queue, self.segment_count)
            embeddings, labels = torch.cat([embeddings, seg_embeddings]), torch.cat([labels, seg_labels])
        return embeddings.detach(), labels

    def join(self, bags: Bags) -> Bags:
        """``bags`` with the bank's filled entries appended to every bag as contrast-only rows
        (positives and negatives of the anchors, never anchors themselves, no gradient). Bank
        entries come from no image of the batch, so bags with ``image_ids`` are refused."""
        if self.dim != bags.rows.shape[1]:
            raise ValueError(f"PixelContrastiveLoss: the memory bank holds {self.dim}-dimensional entries "
                             f"but the embeddings have D = {bags.rows.shape[1]}")
        if bags.image_ids is not None:
            raise ValueError("PixelMemoryBank.join: bank entries belong to no image, so they cannot join bags "
                             "whose negatives are restricted by image_ids")
        entries, entry_labels = self.rows()
        entries = entries.to(device=bags.rows.device, dtype=bags.rows.dtype)
        entry_labels = entry_labels.to(device=bags.rows.device, dtype=bags.labels.dtype)
        rows, labels, offsets, placed = _append_to_bags(bags.rows, bags.labels, bags.offsets, entries,
                                                        entry_labels)

        def spread(values: Tensor, entry_value: int | bool) -> Tensor:
            """Per-row ``values`` at the rows' new places, ``entry_value`` for the bank's rows."""
            out = torch.full((rows.shape[0],), entry_value, dtype=values.dtype, device=rows.device)
            out[placed] = values
            return out

        n, device = bags.num_rows, rows.device
        anchor = torch.ones(n, dtype=torch.bool, device=device) if bags.anchor is None else bags.anchor
        origin = torch.arange(n, device=device) if bags.origin is None else bags.origin
        return dataclasses.replace(
            bags, rows=rows, labels=labels, offsets=offsets, images=None, anchor=spread(anchor, False),
            contrast=None if bags.contrast is None else spread(bags.contrast, True),
            origin=spread(origin, -1), num_inputs=n if bags.num_inputs is None else bags.num_inputs)

    @torch.no_grad()
    def reset(self) -> None:
        """Empties the bank (pointers and fill counts back to 0, entries zeroed)."""
        for name, buffer in self.named_buffers():
            buffer.zero_()


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
