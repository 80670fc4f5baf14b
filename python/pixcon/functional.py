"""Functional API: the fused loss per row."""

from __future__ import annotations

import numbers
import operator
from typing import Any, Sequence

import torch
from torch import Tensor

from . import _loss_op
from .options import Denominator


def _as_offsets(bag_offsets: Tensor | Sequence[int] | None, embeddings: Tensor) -> Tensor:
    if isinstance(bag_offsets, Tensor):
        return bag_offsets
    if bag_offsets is None:
        # [0, n] made on the device: a host tensor copied to a GPU would block the host, and a
        # CUDA graph cannot capture that copy
        n = embeddings.shape[0] if embeddings.dim() > 0 else 0
        return torch.arange(2, dtype=torch.int64, device=embeddings.device) * n
    try:
        # operator.index, not int(): an offset of 2.5 is an error, not silently offset 2
        offsets = [operator.index(offset) for offset in bag_offsets]
        return torch.as_tensor(offsets, dtype=torch.int64, device=embeddings.device)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError("pixcon.contrastive_loss: bag_offsets must be an int64 tensor, a sequence of ints "
                        f"or None, got {bag_offsets!r}") from error


def _check_arguments(tensors: dict[str, Any], temperature: Any, ignore_index: Any, denominator: Any,
                     self_positive: Any) -> None:
    """A TypeError naming the argument for a value of the wrong Python type. The op's own schema
    error names no argument the way the others do (and a None tensor reaches torch's C API), and
    float() / int() / bool() would accept "0.1", truncate 2.5 and read "no" as True."""
    owner = "pixcon.contrastive_loss"
    for name, value in tensors.items():
        if not isinstance(value, Tensor) and not (value is None and name != "labels"):
            raise TypeError(f"{owner}: {name} must be a tensor, got {type(value).__name__}")
    if isinstance(temperature, bool) or not isinstance(temperature, (numbers.Real, Tensor)):
        raise TypeError(f"{owner}: temperature must be a number, got {temperature!r}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"{owner}: ignore_index must be an int, got {ignore_index!r}")
    if not isinstance(denominator, str):
        raise TypeError(f'{owner}: denominator must be "all" or "pair", got {denominator!r}')
    if not isinstance(self_positive, (bool, numbers.Integral)):
        raise TypeError(f"{owner}: self_positive must be a bool, got {self_positive!r}")


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

    Raises:
        ValueError / TypeError naming the argument for a bad shape, dtype, device or value.

    On CUDA, float32 similarities use TF32 tensor cores only when torch allows TF32 for
    matmuls (see ``cuda_matmul_allows_tf32``); 16-bit inputs always use tensor cores.
    """
    if not isinstance(embeddings, Tensor):  # the shim sees tensors only; torch would refuse it unnamed
        raise TypeError(f"pixcon.contrastive_loss: embeddings must be a tensor, got {type(embeddings).__name__}")
    _check_arguments({"labels": labels, "anchor_mask": anchor_mask, "contrast_mask": contrast_mask,
                      "image_ids": image_ids}, temperature, ignore_index, denominator, self_positive)
    loss, valid, _ = _loss_op.call(
        embeddings=embeddings, labels=labels, bag_offsets=_as_offsets(bag_offsets, embeddings),
        anchor_mask=anchor_mask, contrast_mask=contrast_mask, image_ids=image_ids,
        temperature=float(temperature), ignore_index=int(ignore_index), denominator=denominator,
        self_positive=bool(self_positive),
        allow_tf32=embeddings.is_cuda and embeddings.dtype == torch.float32 and cuda_matmul_allows_tf32(),
    )
    return loss, valid
