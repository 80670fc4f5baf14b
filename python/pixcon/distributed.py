"""torch.distributed helpers for ``PixelContrastiveLoss(gather=True)``: one batch-wide bag
across all ranks.

Each rank contributes its (sampled, non-ignored) rows; every rank then holds the rows of all
ranks in rank order, the same bag a single process would build from the concatenated batch.
Only the local rows are anchors, so each rank computes the loss of its own anchors against the
whole bag; the gradients of the other ranks' rows flow back to them through the gather, and the
gradient each rank receives for its local rows is the sum over all ranks' losses, exactly that
of one process holding the whole batch.

Every function here makes the same collective calls in the same order on every rank whatever
its data (an empty batch pads to one zero row), so no rank waits on a collective another rank
skipped. Without an initialised process group they act as a world of one process.
"""

from __future__ import annotations

import dataclasses
import warnings

import torch
import torch.distributed as dist
from torch import Tensor

from .bags import Bags

__all__ = ["GatheredRows", "all_gather_rows", "all_reduce_sum", "gather_bags", "is_initialized", "rank",
           "world_size"]


def is_initialized() -> bool:
    """Whether torch.distributed is available and a default process group exists."""
    return dist.is_available() and dist.is_initialized()


def world_size(group=None) -> int:
    """The number of ranks of ``group`` (1 without an initialised process group)."""
    return dist.get_world_size(group) if is_initialized() else 1


def rank(group=None) -> int:
    """This process's rank in ``group`` (0 without an initialised process group)."""
    return dist.get_rank(group) if is_initialized() else 0


@dataclasses.dataclass
class GatheredRows:
    """The rows of every rank, concatenated in rank order (padding removed)."""

    rows: Tensor  # [sum(counts), D], differentiable w.r.t. each rank's local rows
    ints: Tensor  # [sum(counts), K] int64 side data (labels, image ids, ...)
    counts: list[int]  # rows contributed by each rank
    rank: int  # this process's rank

    @property
    def start(self) -> int:
        """Index of this rank's first row in ``rows``."""
        return sum(self.counts[: self.rank])

    @property
    def stop(self) -> int:
        return self.start + self.counts[self.rank]


def _all_gather_differentiable(tensor: Tensor, group) -> tuple[Tensor, ...]:
    # torch.distributed.nn.functional.all_gather is autograd-aware. Its backward (torch 2.x,
    # _AllGather.backward) gives each rank the SUM over all ranks of the gradients of its own
    # slice: reduce_scatter on NCCL/XCCL, and on gloo, which has no reduce_scatter, an all-to-all
    # emulated with one scatter per rank followed by a sum. That is the gradient one process
    # holding the whole batch would get, so no custom autograd.Function is needed. torch marks
    # the function deprecated (FutureWarning on every call) in favour of the private
    # _functional_collectives; the warning is silenced here only. (Imported here, not at the
    # top: builds without distributed support lack the module, and pixcon must import there.)
    import torch.distributed.nn.functional as dist_nn

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*all_gather is deprecated", category=FutureWarning)
        return dist_nn.all_gather(tensor, group=group)


def all_gather_rows(rows: Tensor, ints: Tensor, *, pad_value: int = 0, group=None) -> GatheredRows:
    """Gathers rows [n, D] (n may differ between ranks, and be 0) and int64 side data [n, K].

    Collectives, identical on every rank: all_gather of the row counts, all_gather of the side
    data padded to the largest count (``pad_value``), autograd all_gather of the rows padded
    with zeros. Padding is removed from the result. Without a process group it returns the
    inputs as a world of one.
    """
    if rows.dim() != 2 or ints.dim() != 2 or ints.shape[0] != rows.shape[0]:
        raise ValueError("pixcon.distributed.all_gather_rows: rows must be [n, D] and ints [n, K]")
    ints = ints.to(torch.int64)
    n = rows.shape[0]
    if not is_initialized():
        return GatheredRows(rows, ints, [n], 0)
    size, me = dist.get_world_size(group), dist.get_rank(group)
    count = torch.tensor([n], dtype=torch.int64, device=rows.device)
    counts_list = [torch.empty_like(count) for _ in range(size)]
    dist.all_gather(counts_list, count, group=group)
    counts = [int(c.item()) for c in counts_list]
    width = max(max(counts), 1)  # never gather empty tensors, even when every rank is empty
    padded_ints = ints.new_full((width, ints.shape[1]), pad_value)
    padded_ints[:n] = ints
    ints_list = [torch.empty_like(padded_ints) for _ in range(size)]
    dist.all_gather(ints_list, padded_ints, group=group)
    padded_rows = torch.cat([rows, rows.new_zeros(width - n, rows.shape[1])]) if width > n else rows
    rows_list = _all_gather_differentiable(padded_rows, group)
    all_rows = torch.cat([t[:c] for t, c in zip(rows_list, counts)])
    all_ints = torch.cat([t[:c] for t, c in zip(ints_list, counts)])
    return GatheredRows(all_rows, all_ints, counts, me)


def all_reduce_sum(tensor: Tensor, group=None) -> Tensor:
    """Sum over ranks of a tensor that needs no gradient (a copy; the input is untouched)."""
    out = tensor.detach().clone()
    if is_initialized():
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
    return out


def gather_bags(bags: Bags, ignore_index: int, group=None) -> Bags:
    """One bag of the rows of every rank, in rank order, from ``bags`` (one bag, with ``images``):
    the rows labelled ``ignore_index`` are left out, only this rank's rows are anchors, and
    image ids are made unique over ranks, ordered by (rank, local image), for the segment queue."""
    device = bags.rows.device
    kept = torch.nonzero(bags.labels != ignore_index).squeeze(1)
    side = torch.stack([bags.labels[kept].to(torch.int64), bags.images[kept].to(torch.int64)], dim=1)
    gathered = all_gather_rows(bags.rows[kept], side, pad_value=ignore_index, group=group)
    rows = gathered.rows
    source = torch.repeat_interleave(torch.arange(len(gathered.counts), device=device),
                                     torch.tensor(gathered.counts, device=device), output_size=rows.shape[0])
    span = int(gathered.ints[:, 1].max()) + 1 if rows.shape[0] else 1
    anchor = torch.zeros(rows.shape[0], dtype=torch.bool, device=device)
    anchor[gathered.start:gathered.stop] = True
    origin = torch.full((rows.shape[0],), -1, dtype=torch.int64, device=device)
    origin[gathered.start:gathered.stop] = kept if bags.origin is None else bags.origin[kept]
    return Bags(rows, gathered.ints[:, 0], torch.tensor([0, rows.shape[0]], dtype=torch.int64, device=device),
                anchor=anchor, images=source * span + gathered.ints[:, 1], origin=origin,
                num_inputs=bags.num_rows if bags.num_inputs is None else bags.num_inputs, across_ranks=True)
