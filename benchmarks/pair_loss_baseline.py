"""The per-pair contrastive loss the way public segmentation code computes it (a baseline).

Written from the formula, not copied from any project. The per-pair ("pair") denominator of
the official code of Zhao et al., used by ContrastiveSeg and Pissas et al. (docs/design.md section 2.2)
is, for an anchor i with positives P(i) and negatives N(i) (rows of the same bag, j != i),

    l_i = mean_{p in P(i)} [ log(exp(s_ip) + sum_{n in N(i)} exp(s_in)) - s_ip ],
    s_ij = z_i . z_j / temperature.

Public implementations evaluate it on the full N x N matrix, and so does this baseline:

1. ``logits = z @ z.T / temperature`` minus its row maximum (detached), for stability (the
   shift cancels in ``l_i``);
2. float masks from the labels: ``same`` (y_i == y_j), ``pos_mask = same`` with the diagonal
   zeroed, ``neg_mask = 1 - same``;
3. ``neg_logits = (exp(logits) * neg_mask).sum(1, keepdim=True)``;
4. ``log_prob = logits - log(exp(logits) + neg_logits)``;
5. ``l_i = -(pos_mask * log_prob).sum(1) / pos_mask.sum(1)``.

That keeps several N x N matrices alive for the backward pass (the logits, the exponentials,
the masks, ``log_prob``): O(N^2) memory, which is what ``pixcon.contrastive_loss(...,
denominator="pair")`` avoids. Differences from the public code, none of which changes the
O(N^2) profile:

* rows labelled ``ignore_index`` are dropped first (public code only ever sees sampled, valid
  pixels), and the per-row result is scattered back so that it lines up with pixcon's
  ``(loss, valid)`` output;
* an anchor without a positive gets loss 0 and ``valid = False`` (public code divides by zero;
  its samplers guarantee positives);
* ``bag_offsets`` (CSR, like pixcon's) runs one matrix per bag in a Python loop, the way
  per-image losses are computed.

The computation runs in the embeddings' dtype (bfloat16 in, bfloat16 N x N matrices), as public
code does when fed half-precision features.

``python benchmarks/pair_loss_baseline.py`` checks it against ``pixcon.contrastive_loss(...,
denominator="pair")`` per valid anchor in float64 and exits with status 1 on a mismatch.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

__all__ = ["pair_contrastive_loss", "check_against_pixcon"]


def _bag_pair_loss(z: Tensor, y: Tensor, temperature: float) -> Tuple[Tensor, Tensor]:
    """Per-row loss and validity for one bag of valid rows (no ignored labels)."""
    anchor_dot_contrast = torch.matmul(z, z.t()) / temperature
    row_max, _ = anchor_dot_contrast.max(dim=1, keepdim=True)
    logits = anchor_dot_contrast - row_max.detach()

    same = torch.eq(y[:, None], y[None, :]).to(z.dtype)
    not_self = torch.ones_like(same)
    not_self.fill_diagonal_(0)
    pos_mask = same * not_self
    neg_mask = 1.0 - same

    neg_logits = (torch.exp(logits) * neg_mask).sum(dim=1, keepdim=True)
    log_prob = logits - torch.log(torch.exp(logits) + neg_logits)

    num_pos = pos_mask.sum(dim=1)
    valid = num_pos > 0
    mean_log_prob_pos = (pos_mask * log_prob).sum(dim=1) / num_pos.clamp(min=1)
    return -mean_log_prob_pos, valid


def pair_contrastive_loss(
    embeddings: Tensor,
    labels: Tensor,
    bag_offsets: Optional[Union[Tensor, Sequence[int]]] = None,
    *,
    temperature: float = 0.07,
    ignore_index: int = 255,
) -> Tuple[Tensor, Tensor]:
    """Per-row per-pair contrastive loss on the full N x N matrix of every bag.

    Args:
        embeddings: ``[N, D]`` floating tensor, used as given (feed unit-norm rows).
        labels: ``[N]`` integer labels; ``ignore_index`` rows take no part.
        bag_offsets: CSR offsets ``[B + 1]`` of independent bags (``None``: one bag).
        temperature: ``tau > 0``.
        ignore_index: label of the rows to drop.

    Returns:
        ``(loss, valid)`` like ``pixcon.contrastive_loss``: ``loss`` ``[N]`` in the embeddings'
        dtype, 0 for ignored rows and anchors without a positive; ``valid`` ``[N]`` bool.
    """
    n = embeddings.shape[0]
    if bag_offsets is None:
        offs = [0, n]
    elif isinstance(bag_offsets, Tensor):
        offs = [int(v) for v in bag_offsets.tolist()]
    else:
        offs = [int(v) for v in bag_offsets]
    losses, valids = [], []
    for start, end in zip(offs[:-1], offs[1:]):
        z_b, y_b = embeddings[start:end], labels[start:end]
        keep = y_b != ignore_index
        loss_b = torch.zeros(end - start, dtype=embeddings.dtype, device=embeddings.device)
        valid_b = torch.zeros(end - start, dtype=torch.bool, device=embeddings.device)
        if int(keep.sum()) > 0:
            idx = keep.nonzero().squeeze(1)
            l_kept, v_kept = _bag_pair_loss(z_b[idx], y_b[idx], float(temperature))
            loss_b = loss_b.index_put((idx,), torch.where(v_kept, l_kept, torch.zeros_like(l_kept)))
            valid_b = valid_b.index_put((idx,), v_kept)
        losses.append(loss_b)
        valids.append(valid_b)
    if not losses:
        return embeddings.sum(dim=1), torch.zeros(0, dtype=torch.bool, device=embeddings.device)
    return torch.cat(losses), torch.cat(valids)


def check_against_pixcon(n: int = 300, d: int = 32, classes: int = 5, bags: int = 1,
                         seed: int = 0, temperature: float = 0.07) -> float:
    """Max abs difference, per valid anchor (loss and gradient), between this baseline and
    ``pixcon.contrastive_loss(..., denominator="pair")`` on a float64 problem; raises
    AssertionError when the valid masks differ or the difference is above 1e-9."""
    import pixcon

    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    z = z / z.norm(dim=1, keepdim=True)
    y = torch.randint(0, classes, (n,), generator=g)
    y[torch.rand(n, generator=g) < 0.1] = 255
    offs = torch.linspace(0, n, bags + 1, dtype=torch.float64).round().to(torch.int64)
    offs[0], offs[-1] = 0, n
    za = z.clone().requires_grad_(True)
    zb = z.clone().requires_grad_(True)
    la, va = pair_contrastive_loss(za, y, offs, temperature=temperature)
    lb, vb = pixcon.contrastive_loss(zb, y, offs, temperature=temperature, denominator="pair")
    assert torch.equal(va, vb), "valid anchors differ"
    assert int(va.sum()) > 0, "no valid anchor"
    la.sum().backward()
    lb.sum().backward()
    err = max(float((la - lb).detach()[va].abs().max()), float((za.grad - zb.grad).abs().max()))
    assert err < 1e-9, f"pair baseline differs from pixcon 'pair' by {err:g}"
    return err


if __name__ == "__main__":
    try:
        errs = [check_against_pixcon(bags=b, seed=s) for b in (1, 3) for s in (0, 1)]
    except AssertionError as e:
        print(f"FAILED: {e}")
        sys.exit(1)
    print(f"pair baseline == pixcon 'pair' per valid anchor (float64): max abs diff {max(errs):.2e}")
