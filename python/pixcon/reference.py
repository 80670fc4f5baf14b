"""Pure-PyTorch reference (oracle) for pixcon's pixel-wise contrastive loss.

This module is the independent specification the compiled kernels are tested
against.  It materialises the per-bag ``n x n`` similarity matrix, so it is
only meant for small bags (a few thousand rows at most).  It deliberately
imports nothing but the standard library and ``torch`` -- in particular not the
compiled pixcon library -- so that a bug in the kernels cannot leak into it.

Semantics (see docs/design.md section 2):

* A row whose label equals ``ignore_index`` is neither an anchor nor a
  contrast row.  ``anchor(i) = anchor_mask[i] and y_i != ignore`` and
  ``contrast(j) = contrast_mask[j] and y_j != ignore``.
* Bags are the CSR row ranges ``[o_b, o_{b+1})`` of ``bag_offsets``; they are
  independent of each other.
* ``s_ij = z_i . z_j / temperature`` (embeddings are used as given).
* For an anchor ``i`` of a bag:

  - ``P(i) = {j in bag : j != i, contrast(j), y_j == y_i}``, plus ``i`` itself
    when ``self_positive`` (regardless of ``contrast(i)``);
  - ``N(i) = {j in bag : j != i, contrast(j), y_j != y_i}``, restricted to
    ``image_ids[j] == image_ids[i]`` when ``image_ids`` is given.

* ``denominator="all"``:
  ``l_i = LSE_{a in P(i) u N(i)} s_ia - mean_{p in P(i)} s_ip``.
* ``denominator="pair"``:
  ``l_i = mean_{p in P(i)} softplus(NL_i - s_ip)`` with
  ``NL_i = LSE_{n in N(i)} s_in`` (``-inf`` when ``N(i)`` is empty, which makes
  every term ``0``).
* ``valid(i) = anchor(i) and |P(i)| >= 1``; invalid rows have loss exactly
  ``0`` and receive no gradient (and never a NaN gradient).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = ["contrastive_loss", "reduce"]

_DENOMINATORS = ("all", "pair")
_REDUCTIONS = ("mean", "anchor_mean", "image_mean", "row_mean", "sum", "none")


def _check_mask(name: str, mask: Optional[Tensor], n: int, device: torch.device) -> Tensor:
    if mask is None:
        return torch.ones(n, dtype=torch.bool, device=device)
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name} must be a Tensor or None, got {type(mask).__name__}")
    if mask.dim() != 1 or mask.shape[0] != n:
        raise ValueError(f"{name} must have shape [{n}], got {list(mask.shape)}")
    return mask.to(device=device, dtype=torch.bool)


def _offsets_list(bag_offsets: Optional[Tensor], n: int) -> list:
    if bag_offsets is None:
        return [0, n]
    if bag_offsets.dim() != 1 or bag_offsets.shape[0] < 1:
        raise ValueError(f"bag_offsets must be a 1-D tensor [B+1], got shape {list(bag_offsets.shape)}")
    if bag_offsets.dtype.is_floating_point or bag_offsets.dtype == torch.bool:
        raise TypeError(f"bag_offsets must be an integer tensor, got {bag_offsets.dtype}")
    offs = [int(v) for v in bag_offsets.tolist()]
    if offs[0] != 0 or offs[-1] != n:
        raise ValueError(f"bag_offsets must start at 0 and end at N={n}, got {offs[0]} .. {offs[-1]}")
    if any(b < a for a, b in zip(offs[:-1], offs[1:])):
        raise ValueError("bag_offsets must be non-decreasing")
    return offs


def _masked_logsumexp(x: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor]:
    """Row-wise log-sum-exp of ``x`` over the entries where ``mask`` is true.

    Returns ``(lse, nonempty)``.  Rows with an empty mask get ``lse = -inf``;
    the computation keeps gradients finite (zero) for those rows.
    """
    nonempty = mask.any(dim=1)
    neg_inf = torch.full_like(x, -math.inf)
    masked = torch.where(mask, x, neg_inf)
    # An all -inf row would give a NaN gradient inside logsumexp: feed zeros
    # instead and discard the result below.
    safe = torch.where(nonempty[:, None], masked, torch.zeros_like(x))
    lse = torch.logsumexp(safe, dim=1)
    lse = torch.where(nonempty, lse, torch.full_like(lse, -math.inf))
    return lse, nonempty


def _softplus(x: Tensor) -> Tensor:
    """Exact ``log(1 + exp(x))`` (no linear cut-off, unlike ``F.softplus``),
    with finite gradients for every finite input."""
    pos = x > 0
    xp = torch.where(pos, x, torch.zeros_like(x))
    xn = torch.where(pos, torch.zeros_like(x), x)
    return torch.where(pos, xp + torch.log1p(torch.exp(-xp)), torch.log1p(torch.exp(xn)))


def _bag_loss(
    z: Tensor,
    y: Tensor,
    anchor: Tensor,
    contrast: Tensor,
    img: Optional[Tensor],
    temperature: float,
    denominator: str,
    self_positive: bool,
) -> Tuple[Tensor, Tensor]:
    """Per-row loss and validity for one bag of ``n`` rows (``n >= 1``)."""
    n = z.shape[0]
    sim = (z @ z.t()) / temperature  # s_ij, [n, n]

    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    same_label = y[:, None] == y[None, :]
    others = contrast[None, :] & ~eye  # j != i and contrast(j)

    pos = others & same_label
    if self_positive:
        pos = pos | eye
    neg = others & ~same_label
    if img is not None:
        neg = neg & (img[:, None] == img[None, :])

    num_pos = pos.sum(dim=1)
    valid = anchor & (num_pos >= 1)
    inv_num_pos = 1.0 / num_pos.clamp(min=1).to(sim.dtype)
    zeros = torch.zeros_like(sim)

    if denominator == "all":
        lse, _ = _masked_logsumexp(sim, pos | neg)
        mean_pos = torch.where(pos, sim, zeros).sum(dim=1) * inv_num_pos
        # For invalid rows lse may be -inf: replace by a finite value before
        # subtracting so that neither the value nor the gradient is NaN.
        lse = torch.where(valid, lse, torch.zeros_like(lse))
        loss = lse - mean_pos
    else:  # "pair"
        nl, has_neg = _masked_logsumexp(sim, neg)
        nl_safe = torch.where(has_neg, nl, torch.zeros_like(nl))
        terms = _softplus(nl_safe[:, None] - sim)
        terms = torch.where(pos & has_neg[:, None], terms, zeros)  # softplus(-inf - s) = 0
        loss = terms.sum(dim=1) * inv_num_pos

    loss = torch.where(valid, loss, torch.zeros_like(loss))
    return loss, valid


def contrastive_loss(
    embeddings: Tensor,
    labels: Tensor,
    bag_offsets: Optional[Tensor] = None,
    *,
    temperature: float = 0.07,
    ignore_index: int = 255,
    denominator: str = "all",
    self_positive: bool = False,
    anchor_mask: Optional[Tensor] = None,
    contrast_mask: Optional[Tensor] = None,
    image_ids: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """Reference per-row pixel contrastive loss.

    Args:
        embeddings: ``[N, D]`` floating tensor (any float dtype).  The loss is
            computed in float64 for float64 input, otherwise in float32.
        labels: ``[N]`` integer class labels; ``ignore_index`` marks ignored rows.
        bag_offsets: int ``[B+1]`` CSR offsets of the bags (``None``: one bag
            holding all rows).
        temperature: ``tau > 0``.
        ignore_index: label of rows that are neither anchors nor contrast rows.
        denominator: ``"all"`` (SupCon) or ``"pair"`` (official code / ContrastiveSeg).
        self_positive: count ``(i, i)`` as a positive pair of anchor ``i``.
        anchor_mask / contrast_mask: optional bool ``[N]`` flags (default all true).
        image_ids: optional int ``[N]``; restricts *negatives* to the anchor's image.

    Returns:
        ``(loss, valid)``: ``loss`` is ``[N]`` (float64 for float64 input, else
        float32), exactly ``0`` for invalid rows; ``valid`` is a bool ``[N]``.
        Differentiable w.r.t. ``embeddings`` through ordinary autograd.
    """
    if not isinstance(embeddings, Tensor) or embeddings.dim() != 2:
        raise ValueError("embeddings must be a 2-D tensor [N, D]")
    if not embeddings.dtype.is_floating_point:
        raise TypeError(f"embeddings must be floating point, got {embeddings.dtype}")
    n = embeddings.shape[0]
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.shape[0] != n:
        raise ValueError(f"labels must be a 1-D tensor of length N={n}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if denominator not in _DENOMINATORS:
        raise ValueError(f"denominator must be one of {_DENOMINATORS}, got {denominator!r}")
    if image_ids is not None:
        if image_ids.dim() != 1 or image_ids.shape[0] != n:
            raise ValueError(f"image_ids must have shape [{n}], got {list(image_ids.shape)}")
        image_ids = image_ids.to(torch.int64)

    device = embeddings.device
    cdtype = torch.float64 if embeddings.dtype == torch.float64 else torch.float32
    z = embeddings.to(cdtype)
    y = labels.to(torch.int64)
    keep = y != ignore_index
    anchor = _check_mask("anchor_mask", anchor_mask, n, device) & keep
    contrast = _check_mask("contrast_mask", contrast_mask, n, device) & keep
    offs = _offsets_list(bag_offsets, n)

    losses = []
    valids = []
    for start, end in zip(offs[:-1], offs[1:]):
        if end == start:
            continue
        sl = slice(start, end)
        loss_b, valid_b = _bag_loss(
            z[sl],
            y[sl],
            anchor[sl],
            contrast[sl],
            None if image_ids is None else image_ids[sl],
            float(temperature),
            denominator,
            bool(self_positive),
        )
        losses.append(loss_b)
        valids.append(valid_b)

    if not losses:  # N == 0
        return z.sum(dim=1), torch.zeros(0, dtype=torch.bool, device=device)
    return torch.cat(losses), torch.cat(valids)


def reduce(loss: Tensor, valid: Tensor, bag_offsets: Optional[Tensor] = None, reduction: str = "mean", *,
           anchor_rows: Optional[Tensor] = None) -> Tensor:
    """Reduce per-row losses the way pixcon's module does.

    * ``"mean"``: mean over valid anchors within each bag, then mean over the
      bags that have at least one valid anchor;
    * ``"anchor_mean"``: mean over all valid anchors;
    * ``"image_mean"``: mean over valid anchors within each bag, then mean over
      all bags, a bag without a valid anchor counting as ``0``;
    * ``"row_mean"``: sum over valid anchors divided by the number of anchor
      rows ``anchor_rows`` (bool ``[N]``), valid or not;
    * ``"sum"``: sum of the per-row losses;
    * ``"none"``: the per-row vector unchanged.

    With no valid anchor anywhere the result is ``0.0`` still attached to the
    graph (``loss.sum() * 0``), so backward yields zeros, never NaN.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if reduction == "none":
        return loss
    if reduction == "row_mean" and anchor_rows is None:
        raise ValueError("reduction 'row_mean' needs anchor_rows")
    valid = valid.to(torch.bool)
    masked = torch.where(valid, loss, torch.zeros_like(loss))
    if reduction == "sum":
        return masked.sum()
    if not bool(valid.any()):
        return loss.sum() * 0.0
    if reduction == "anchor_mean":
        return masked.sum() / valid.sum().to(loss.dtype)
    if reduction == "row_mean":
        return masked.sum() / int(anchor_rows.sum())

    n = loss.shape[0]
    offs = _offsets_list(bag_offsets, n)
    bag_means = []
    for start, end in zip(offs[:-1], offs[1:]):
        count = int(valid[start:end].sum())
        if count > 0:
            bag_means.append(masked[start:end].sum() / count)
        elif reduction == "image_mean":
            bag_means.append(masked[start:end].sum() * 0.0)
    return torch.stack(bag_means).mean()
