"""`python -m pixcon.selfcheck`: the fused op against the pure-PyTorch reference.

Random bags in float64 for every option (denominator, self positives, masks, image ids,
several bags); prints the largest loss and gradient differences and exits non-zero if any
exceeds 1e-10 (relative to the reference's scale).
"""

from __future__ import annotations

import argparse
import itertools
import sys

import torch

import pixcon
from pixcon import reference
from pixcon.bags import Bags
from pixcon.options import LossOptions


def _problem(n: int, d: int, seed: int, with_masks: bool) -> Bags:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    z = torch.nn.functional.normalize(z, dim=1).requires_grad_()
    y = torch.randint(0, 5, (n,), generator=g)
    y[torch.rand(n, generator=g) < 0.1] = 255
    cuts = torch.sort(torch.randint(0, n + 1, (2,), generator=g)).values
    offsets = torch.cat([torch.tensor([0]), cuts, torch.tensor([n])]).to(torch.int64)
    masked = Bags(z, y, offsets, anchor=torch.rand(n, generator=g) < 0.8,
                  contrast=torch.rand(n, generator=g) < 0.8, image_ids=torch.randint(0, 2, (n,), generator=g))
    return masked if with_masks else Bags(z, y, offsets)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=300, help="rows per problem (default 300)")
    parser.add_argument("--dim", type=int, default=32, help="embedding size (default 32)")
    parser.add_argument("--tolerance", type=float, default=1e-10)
    args = parser.parse_args(argv)
    print(f"pixcon {pixcon.__version__} (CPU tier {pixcon.cpu_isa()}) vs pixcon.reference, float64, "
          f"N={args.rows}, D={args.dim}")
    worst = 0.0
    for seed, (denominator, self_positive, masked) in enumerate(
            itertools.product(("all", "pair"), (False, True), (False, True))):
        bags = _problem(args.rows, args.dim, seed, masked)
        z = bags.rows
        options = LossOptions(temperature=0.07, denominator=denominator, self_positive=self_positive)
        g = torch.randn(args.rows, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        loss, valid = bags.loss(options)
        (grad,) = torch.autograd.grad((loss * g).sum(), z)
        ref_loss, ref_valid = reference.contrastive_loss(z, bags.labels, bags.offsets, **options.as_kwargs(),
                                                         **bags.row_arguments())
        (ref_grad,) = torch.autograd.grad((ref_loss * g).sum(), z)
        loss_err = ((loss - ref_loss).abs().max() / ref_loss.abs().max().clamp(min=1)).item()
        grad_err = ((grad - ref_grad).abs().max() / ref_grad.abs().max().clamp(min=1)).item()
        same_valid = bool((valid == ref_valid).all())
        worst = max(worst, loss_err, grad_err, 0.0 if same_valid else float("inf"))
        print(f"  denominator={denominator:4s} self_positive={self_positive!s:5s} masks+image_ids={masked!s:5s} "
              f"valid anchors {int(valid.sum()):4d}  loss err {loss_err:.1e}  grad err {grad_err:.1e}"
              f"{'' if same_valid else '  VALID MASK DIFFERS'}")
    ok = worst <= args.tolerance
    print(f"{'OK' if ok else 'FAILED'}: largest relative difference {worst:.1e} (tolerance {args.tolerance:.0e})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
