"""What the loss benchmarks measure: the implementations, their inputs and their nominal flops.

Implementations (``IMPLS``):

* ``pixcon_all`` / ``pixcon_pair``: ``pixcon.contrastive_loss`` with ``denominator="all"``
  (SupCon L_out) / ``"pair"`` (the per-pair formula); fused kernels, O(N*D) memory;
* ``reference``: ``pixcon.reference.contrastive_loss`` (``"all"``), pure PyTorch, builds the
  N x N matrix (computes in float32 for bfloat16 input);
* ``supcon``: pytorch-metric-learning's ``SupConLoss`` (``"all"``; it L2-normalises through
  its ``CosineSimilarity`` distance, a no-op on the unit-norm inputs every implementation gets);
  ignored rows are dropped before the call, since it has no ``ignore_index``;
* ``pair_baseline``: ``benchmarks/pair_loss_baseline.py``, the per-pair formula on the full
  N x N matrix the way ContrastiveSeg and Pissas et al. compute it.

Speed-ups compare like with like (``BASELINE_OF``): ``reference`` and ``supcon`` against
``pixcon_all``, ``pair_baseline`` against ``pixcon_pair``. One step is ``loss, valid = fn(z, y);
loss.sum().backward()`` over the bags of ``bag_offsets``; in the batch variant ``supcon`` and
``pair_baseline`` run one call per bag in a Python loop, the way per-image losses are written.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, List, Optional, Sequence, Tuple

IMPLS = ("pixcon_all", "pixcon_pair", "reference", "supcon", "pair_baseline")
PIXCON_IMPLS = ("pixcon_all", "pixcon_pair")
#: the pixcon implementation each baseline is compared with (same loss)
BASELINE_OF = {"reference": "pixcon_all", "supcon": "pixcon_all", "pair_baseline": "pixcon_pair"}
IMPL_LABELS = {
    "pixcon_all": 'pixcon "all"',
    "pixcon_pair": 'pixcon "pair"',
    "reference": "pixcon.reference (all)",
    "supcon": "pml SupConLoss (all)",
    "pair_baseline": "per-pair baseline (pair)",
}
#: the tensor dtype of each benchmark dtype that is not a torch dtype name: "tf32" is float32
#: input with torch's TF32 matmul setting on
STORAGE_DTYPE = {"tf32": "float32"}
CLASSES = 19
IGNORE_INDEX = 255
IGNORE_FRACTION = 0.05
TEMPERATURE = 0.07

Step = Callable[[Any, Any], Tuple[Any, Any]]


def bag_offsets(n: int, bags: int) -> List[int]:
    """CSR offsets of ``bags`` contiguous bags of ``n`` rows whose sizes differ by at most 1."""
    bags = max(1, min(bags, n))
    return [(n * b) // bags for b in range(bags + 1)]


def nominal_flops(n: int, d: int, bags: int = 1) -> float:
    """The nominal forward (2 n^2 D) + backward (4 n^2 D) flops of ``n`` rows in ``bags`` bags,
    the same for every implementation (pixcon's symmetric tiles do less work: that counts as
    speed)."""
    offs = bag_offsets(n, bags)
    return 6.0 * d * sum((b - a) ** 2 for a, b in zip(offs[:-1], offs[1:]))


def kernel_flops(impl: str, n: int, d: int, bags: int = 1,
                 labels: Optional[Sequence[int]] = None) -> Optional[float]:
    """The flops pixcon's CPU kernels need for one forward + backward step, counting the
    multiply-adds of the similarity tiles (2 flops each) as if the bags were not padded to whole
    tiles: the matrices are symmetric, so the forward computes half of S (n^2 D / 2 multiply-adds),
    the backward half of S again and both halves of the weighted sum (n^2 D): 4 n^2 D flops for
    "all". "pair" adds its second sweep over the positives, sum_c n_c^2 D over each bag's classes
    (``labels``, IGNORE_INDEX not counted; without labels, the whole matrix again, n^2 D): the
    least that sweep needs, which the kernel's tile-sized visits exceed a little. The exponentials
    and the masks are not counted. None for the baselines."""
    if impl not in PIXCON_IMPLS:
        return None
    offs = bag_offsets(n, bags)
    total = 4.0 * d * sum((b - a) ** 2 for a, b in zip(offs[:-1], offs[1:]))
    if impl == "pixcon_all":
        return total
    for a, b in zip(offs[:-1], offs[1:]):
        if labels is None:
            total += float(d) * (b - a) ** 2
            continue
        counts = collections.Counter(int(y) for y in labels[a:b] if int(y) != IGNORE_INDEX)
        total += float(d) * sum(c * c for c in counts.values())
    return total


def make_inputs(n: int, d: int, dtype: str, seed: int, device: str = "cpu",
                classes: int = CLASSES):
    """Unit-norm random embeddings ``[n, d]`` (a ``requires_grad`` leaf in ``dtype``) and labels
    ``[n]`` over ``classes`` classes with ~5 % ``IGNORE_INDEX``."""
    import torch

    g = torch.Generator().manual_seed(seed * 1_000_003 + n * 7 + d)
    z = torch.randn(n, d, generator=g, dtype=torch.float32)
    # in place, so that making the inputs does not raise the peak above their own footprint
    z.div_(z.norm(dim=1, keepdim=True).clamp_min_(1e-12))
    y = torch.randint(0, classes, (n,), generator=g, dtype=torch.int64)
    y[torch.rand(n, generator=g) < IGNORE_FRACTION] = IGNORE_INDEX
    z = z.to(device=device, dtype=getattr(torch, STORAGE_DTYPE.get(dtype, dtype)))
    z.requires_grad_(True)
    return z, y.to(device)


def _per_row_loss(impl: str, offs_t: Any, offs: List[int], temperature: float) -> Optional[Step]:
    """``fn(z, y) -> (loss [N], valid [N])`` for the implementations with a per-row output
    (None for SupConLoss, which only returns a mean)."""
    if impl in PIXCON_IMPLS:
        import pixcon

        den = "all" if impl == "pixcon_all" else "pair"
        return lambda z, y: pixcon.contrastive_loss(z, y, offs_t, temperature=temperature,
                                                    ignore_index=IGNORE_INDEX, denominator=den)
    if impl == "reference":
        import pixcon.reference

        return lambda z, y: pixcon.reference.contrastive_loss(
            z, y, offs_t, temperature=temperature, ignore_index=IGNORE_INDEX, denominator="all")
    if impl == "pair_baseline":
        import pair_loss_baseline

        return lambda z, y: pair_loss_baseline.pair_contrastive_loss(
            z, y, offs, temperature=temperature, ignore_index=IGNORE_INDEX)
    return None


def _supcon_step(offs: List[int], temperature: float) -> Step:
    """SupConLoss has no ignore_index and no bags: the ignored rows are dropped and each bag is
    one call; its output is the mean over anchors, and the sum of the bags' means is enough to
    time it."""
    import torch
    from pytorch_metric_learning.losses import SupConLoss

    loss_fn = SupConLoss(temperature=temperature)

    def step(z, y):
        total = None
        count = 0
        for start, end in zip(offs[:-1], offs[1:]):
            y_b = y[start:end]
            keep = y_b != IGNORE_INDEX
            loss_b = loss_fn(z[start:end][keep], y_b[keep])
            total = loss_b if total is None else total + loss_b
            count += int(keep.sum())
        total.backward()
        return total.detach(), torch.tensor(count)
    return step


def make_step(impl: str, offsets: Sequence[int], temperature: float = TEMPERATURE,
              device: str = "cpu") -> Step:
    """``step(z, y)``: one forward + backward of ``impl`` over the bags ``offsets``; returns
    ``(loss_sum, valid_count)`` as tensors (no synchronisation)."""
    import torch

    offs = list(offsets)
    offs_t = torch.tensor(offs, dtype=torch.int64, device=device)
    per_row = _per_row_loss(impl, offs_t, offs, temperature)
    if per_row is not None:
        def step(z, y):
            loss, valid = per_row(z, y)
            total = loss.sum()
            total.backward()
            return total.detach(), valid.sum()
        return step
    if impl == "supcon":
        return _supcon_step(offs, temperature)
    raise ValueError(f"unknown implementation {impl!r}")
