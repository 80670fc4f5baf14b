"""The agreement checks: before timing them, the suite confirms in float64 that the baselines
compute the same loss as pixcon, so that a speed-up compares equal work."""

from __future__ import annotations

from typing import Any, Callable, Dict

from .cases import IGNORE_INDEX, TEMPERATURE

#: the largest difference per valid anchor (loss and gradient) that counts as agreement
TOLERANCE = 1e-9


def check_supcon_against_pixcon(n: int = 300, d: int = 32, classes: int = 5, seed: int = 0,
                                temperature: float = TEMPERATURE) -> float:
    """Max abs difference per valid anchor (loss) and of the mean loss's gradient between
    pml's ``SupConLoss`` and ``pixcon.contrastive_loss(..., denominator="all")`` on unit-norm
    float64 rows (pml normalises its input, so its gradient is compared with pixcon's
    projected on the unit sphere's tangent space); raises AssertionError above 1e-9."""
    import torch
    from pytorch_metric_learning.losses import SupConLoss
    from pytorch_metric_learning.reducers import DoNothingReducer

    import pixcon

    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    z = z / z.norm(dim=1, keepdim=True)
    y = torch.randint(0, classes, (n,), generator=g)
    y[torch.rand(n, generator=g) < 0.1] = IGNORE_INDEX
    keep = y != IGNORE_INDEX
    zk, yk = z[keep].clone().requires_grad_(True), y[keep]
    per_anchor = SupConLoss(temperature=temperature, reducer=DoNothingReducer())(zk, yk)
    per_anchor = per_anchor["loss"]["losses"]
    loss, valid = pixcon.contrastive_loss(zk.detach(), yk, temperature=temperature,
                                          ignore_index=IGNORE_INDEX, denominator="all")
    assert bool(valid.all()), "every kept anchor should have a positive"
    err = float((per_anchor.detach() - loss).abs().max())
    # gradients of the mean over anchors (pml's default reduction), pixcon's projected
    zp = zk.detach().clone().requires_grad_(True)
    SupConLoss(temperature=temperature)(zk, yk).backward()
    l2, v2 = pixcon.contrastive_loss(zp, yk, temperature=temperature, denominator="all")
    (l2.sum() / v2.sum()).backward()
    zu = zk.detach()
    projected = zp.grad - (zp.grad * zu).sum(dim=1, keepdim=True) * zu
    err = max(err, float((zk.grad - projected).abs().max()))
    assert err < TOLERANCE, f"SupConLoss differs from pixcon 'all' by {err:g}"
    return err


def _check_pair_baseline() -> float:
    import pair_loss_baseline

    return max(pair_loss_baseline.check_against_pixcon(bags=b) for b in (1, 3))


def run_checks() -> Dict[str, Any]:
    """Each agreement check's maximum difference, or its failure."""
    checks: Dict[str, Callable[[], float]] = {
        "pair_baseline_vs_pixcon_pair": _check_pair_baseline,
        "supcon_vs_pixcon_all": check_supcon_against_pixcon,
    }
    out: Dict[str, Any] = {}
    for name, fn in checks.items():
        try:
            out[name] = {"ok": True, "max_abs_diff": fn()}
        except Exception as e:  # noqa: BLE001 - recorded in the result
            out[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"[:300]}
    return out
