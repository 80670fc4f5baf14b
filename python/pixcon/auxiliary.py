"""Auxiliary labels by spherical k-means (Zhang et al., NeurIPS 2021, "Looking Beyond Single
Images"; docs/design.md section 4b), and how good a labelling is against ground truth.

Pixel features of many images, from a frozen or partly trained extractor, are clustered on the
unit sphere; the cluster index is a pixel's auxiliary label, and the pixels farthest from their
centroid are dropped, so the contrastive loss can pretrain on every image, labelled or not.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ._library import call_op
from .options import check_count
from .sampling import _as_signed_seed

Init = Literal["k-means++", "random"]
_OWNER = "pixcon.auxiliary_labels"


def auxiliary_labels(
    features: Tensor,
    num_clusters: int,
    *,
    iterations: int = 20,
    restarts: int = 3,
    outlier_fraction: float = 0.05,
    seed: int = 0,
    ignore_index: int = 255,
    valid_mask: Tensor | None = None,
    init: Init = "k-means++",
) -> tuple[Tensor, Tensor]:
    """Clusters pixel features with spherical k-means; the cluster index is the auxiliary label.

    Each feature vector is L2-normalised; ``restarts`` runs, each of ``iterations`` Lloyd steps
    (assign every pixel to the centroid of highest cosine, then set each centroid to the
    normalised mean of its pixels) after a greedy k-means++ (or ``"random"``) initialisation,
    and the run with the highest total cosine is kept. Then the
    ``floor(outlier_fraction * n)`` valid pixels of lowest cosine to their centroid get
    ``ignore_index``. An empty cluster takes the pixel farthest from its centroid.

    The n x K matrix of cosines is never stored: memory is one float32 copy of the features plus
    O(n) integers. The same ``seed`` gives the same labels on the CPU for any thread count or
    instruction-set tier; the CUDA kernels perform the same operations in the same order (checked
    bit for bit under the CPU emulation of tests/emulation).

    Args:
        features: [N, D] rows, or a feature map [B, D, H, W] (read in place, any memory format);
            float32, or another floating dtype (converted to float32).
        num_clusters: K >= 1.
        valid_mask: bool, [N] or [B, H, W]: False excludes a pixel (padding, say). Pixels whose
            feature vector is zero or not finite are excluded too.
        seed: any integer (taken modulo 2^64).
        ignore_index: the label of excluded pixels and outliers; it must not be a cluster index
            (with ``num_clusters`` > 255, pass one outside [0, num_clusters), e.g. -1).

    Returns:
        (labels, centroids): int64 labels [N] or [B, H, W] in [0, K) or ``ignore_index``
        (excluded pixels and outliers), and the unit-norm float32 centroids [K, D] (a zero row
        for a centroid never drawn, when fewer than K pixels are valid). No gradient flows.
    """
    if not isinstance(features, Tensor):
        raise TypeError(f"{_OWNER}: features must be a tensor, got {type(features).__name__}")
    if valid_mask is not None and not isinstance(valid_mask, Tensor):
        raise TypeError(f"{_OWNER}: valid_mask must be a bool tensor or None, got {type(valid_mask).__name__}")
    check_count(_OWNER, "num_clusters", num_clusters, 1)
    check_count(_OWNER, "iterations", iterations, 0)
    check_count(_OWNER, "restarts", restarts, 1)
    if isinstance(outlier_fraction, bool) or not isinstance(outlier_fraction, (int, float)):
        raise TypeError(f"{_OWNER}: outlier_fraction must be a number, got {outlier_fraction!r}")
    if not 0 <= outlier_fraction < 1:
        raise ValueError(f"{_OWNER}: outlier_fraction must be in [0, 1), got {outlier_fraction}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"{_OWNER}: seed must be an int, got {seed!r}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"{_OWNER}: ignore_index must be an int, got {ignore_index!r}")
    if init not in ("k-means++", "random"):
        raise ValueError(f'{_OWNER}: init must be "k-means++" or "random", got {init!r}')
    return call_op(torch.ops.pixcon.kmeans.default, features.detach(),
                   None if valid_mask is None else valid_mask.detach(), num_clusters, iterations, restarts,
                   float(outlier_fraction), init, _as_signed_seed(seed), ignore_index)


@torch.library.register_fake("pixcon::kmeans")
def _kmeans_fake(features, valid_mask, num_clusters, iterations, restarts, outlier_fraction, init, seed,
                 ignore_index):
    torch._check(features.dim() in (2, 4), lambda: "pixcon.kmeans: features must be [N, D] or [B, D, H, W]")
    shape = (features.shape[0],) if features.dim() == 2 else (features.shape[0], *features.shape[2:])
    labels = features.new_empty(shape, dtype=torch.int64)
    return labels, features.new_empty((num_clusters, features.shape[1]), dtype=torch.float32)


def auxiliary_label_quality(aux_labels: Tensor, labels: Tensor, *, ignore_index: int = 255) -> dict[str, float]:
    """How well auxiliary labels agree with ground truth, without the N^2 pixel pairs.

    From the contingency table n_kc (pixels with auxiliary label k and class c, over the pixels
    that neither labelling ignores), in O(N + K C):
      - ``pair_precision`` = sum_kc n_kc^2 / sum_k n_k^2: the chance that two pixels (drawn with
        replacement) sharing an auxiliary label share a class;
      - ``pair_recall`` = sum_kc n_kc^2 / sum_c n_c^2: the chance that two pixels of one class
        share an auxiliary label;
      - ``purity`` = sum_k max_c n_kc / n;
      - ``pixels`` = n, the number of pixels compared.

    Args:
        aux_labels, labels: integer tensors of one shape; values >= 0 or ``ignore_index``.
    """
    owner = "pixcon.auxiliary_label_quality"
    for name, t in (("aux_labels", aux_labels), ("labels", labels)):
        if not isinstance(t, Tensor) or t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"{owner}: {name} must be an integer tensor")
    if aux_labels.shape != labels.shape:
        raise ValueError(f"{owner}: aux_labels {tuple(aux_labels.shape)} and labels {tuple(labels.shape)} "
                         "must have one shape")
    aux, truth = aux_labels.reshape(-1).long(), labels.reshape(-1).to(aux_labels.device).long()
    both = (aux != ignore_index) & (truth != ignore_index)
    aux, truth = aux[both], truth[both]
    if aux.numel() == 0:
        raise ValueError(f"{owner}: no pixel is labelled (not ignore_index) in both")
    for name, t in (("aux_labels", aux), ("labels", truth)):
        if int(t.min()) < 0:
            raise ValueError(f"{owner}: {name} must be >= 0 or ignore_index ({ignore_index})")
    classes = int(truth.max()) + 1
    table = torch.bincount(aux * classes + truth).reshape(-1)
    table = torch.nn.functional.pad(table, (0, (-table.numel()) % classes)).reshape(-1, classes).double()
    same = (table * table).sum()
    return {
        "pair_precision": float(same / (table.sum(1) ** 2).sum()),
        "pair_recall": float(same / (table.sum(0) ** 2).sum()),
        "purity": float(table.max(1).values.sum() / aux.numel()),
        "pixels": int(aux.numel()),
    }
