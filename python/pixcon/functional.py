"""Functional API: the fused loss per row, and the reductions over bags."""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import Tensor

Denominator = Literal["all", "pair"]
Reduction = Literal["mean", "anchor_mean", "sum", "none"]
REDUCTIONS = ("mean", "anchor_mean", "sum", "none")


def check_loss_options(
    owner: str,
    *,
    temperature: float | None = None,
    denominator: str | None = None,
    reduction: str | None = None,
    reductions: Sequence[str] = REDUCTIONS,
) -> None:
    """Raises ValueError, naming ``owner``, for an option the loss modules all take and reject alike."""
    if temperature is not None and not temperature > 0:
        raise ValueError(f"{owner}: temperature must be > 0, got {temperature}")
    if denominator is not None and denominator not in ("all", "pair"):
        raise ValueError(f'{owner}: denominator must be "all" or "pair", got {denominator!r}')
    if reduction is not None and reduction not in reductions:
        raise ValueError(f"{owner}: reduction must be one of {tuple(reductions)}, got {reduction!r}")


def _as_offsets(bag_offsets: Tensor | Sequence[int] | None, n: int, device: torch.device) -> Tensor:
    if bag_offsets is None:
        # [0, n] made on the device: a host tensor copied to a GPU would block the host, and a
        # CUDA graph cannot capture that copy
        return torch.arange(2, dtype=torch.int64, device=device) * n
    if isinstance(bag_offsets, Tensor):
        return bag_offsets
    return torch.as_tensor(list(bag_offsets), dtype=torch.int64, device=device)


@torch.compiler.assume_constant_result  # a global setting; torch.compile cannot trace its getter
def cuda_matmul_allows_tf32() -> bool:
    """Whether torch allows TF32 for float32 CUDA matmuls (``torch.backends.cuda.matmul``:
    ``fp32_precision == "tf32"``, or ``allow_tf32`` / ``torch.set_float32_matmul_precision``).
    pixcon's float32 CUDA GEMMs follow it; CPU kernels never use TF32."""
    matmul = torch.backends.cuda.matmul
    precision = getattr(matmul, "fp32_precision", None)
    if precision in ("tf32", "ieee"):
        return precision == "tf32"
    try:
        return bool(matmul.allow_tf32)
    except RuntimeError:  # torch refuses to answer when the legacy and new APIs were mixed
        return False


def contrastive_loss(
    embeddings: Tensor,
    labels: Tensor,
    bag_offsets: Tensor | Sequence[int] | None = None,
    *,
    temperature: float = 0.07,
    ignore_index: int = 255,
    denominator: Denominator = "all",
    self_positive: bool = False,
    anchor_mask: Tensor | None = None,
    contrast_mask: Tensor | None = None,
    image_ids: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-row pixel-wise label-based contrastive loss, never building the N x N matrix.

    Args:
        embeddings: [N, D] float32/float64/float16/bfloat16, used as given (not normalised).
        labels: [N] integer class per row; rows equal to ``ignore_index`` take no part.
        bag_offsets: int64 [B + 1] CSR offsets of independent bags (rows contrast only within
            their bag); None means one bag of all rows.
        temperature: tau > 0 in s_ij = z_i . z_j / tau.
        denominator: "all" (SupCon L_out) or "pair" (official code of Zhao et al.).
        self_positive: count the (i, i) pair as a positive (the official TF code does).
        anchor_mask / contrast_mask: bool [N]; rows that get a loss / may be positives or
            negatives of others (default: all rows).
        image_ids: int [N]; when given, negatives come only from the anchor's own image.

    Returns:
        (loss, valid): loss [N] (float64 for float64 input, else float32), 0 where ``valid``
        is False; valid [N] bool, True for anchors with at least one positive.

    On CUDA, float32 similarities use TF32 tensor cores only when torch allows TF32 for
    matmuls (see ``cuda_matmul_allows_tf32``); 16-bit inputs always use tensor cores.
    """
    if not isinstance(embeddings, Tensor) or embeddings.dim() != 2:
        raise ValueError("pixcon.contrastive_loss: embeddings must be a 2-D tensor [N, D]")
    check_loss_options("pixcon.contrastive_loss", denominator=denominator)
    offsets = _as_offsets(bag_offsets, embeddings.shape[0], embeddings.device)
    loss, valid, _ = torch.ops.pixcon.contrastive_loss(
        embeddings, labels, offsets, anchor_mask, contrast_mask, image_ids,
        float(temperature), int(ignore_index), denominator, bool(self_positive),
        embeddings.is_cuda and embeddings.dtype == torch.float32 and cuda_matmul_allows_tf32(),
    )
    return loss, valid


def reduce_loss(loss: Tensor, valid: Tensor, bag_offsets: Tensor, reduction: Reduction = "mean") -> Tensor:
    """Reduces per-row losses.

    "mean": mean over valid anchors within each bag, then mean over the bags that have one;
    "anchor_mean": mean over all valid anchors; "sum"; "none": the per-row vector. With no
    valid anchor the result is 0.0, still attached to the graph (zero gradient, never NaN).
    """
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    weight = valid.to(loss.dtype)
    if reduction == "anchor_mean":
        return (loss * weight).sum() / weight.sum().clamp(min=1)
    if reduction != "mean":
        raise ValueError(f"pixcon: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    num_bags = bag_offsets.shape[0] - 1
    counts = bag_offsets[1:] - bag_offsets[:-1]
    bag_of_row = torch.repeat_interleave(
        torch.arange(num_bags, device=loss.device), counts, output_size=loss.shape[0]
    )
    per_bag = torch.zeros(num_bags, dtype=loss.dtype, device=loss.device).index_add(0, bag_of_row, loss * weight)
    anchors = torch.zeros(num_bags, dtype=loss.dtype, device=loss.device).index_add(0, bag_of_row, weight)
    has_anchor = (anchors > 0).to(loss.dtype)
    bag_means = per_bag / anchors.clamp(min=1)
    return (bag_means * has_anchor).sum() / has_anchor.sum().clamp(min=1)
