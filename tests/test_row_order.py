"""The CPU kernels pack each bag's rows sorted by (image, label), so that a label's positives sit in
few tiles, and tile pairs whose label ranges do not meet skip the positives' work ("pair": the whole
second sweep). The results must not notice: they match the reference however sparse the positives
are, and permuting the input rows permutes the outputs."""

from __future__ import annotations

import pytest
import torch

import pixcon
from conftest import assert_close_dtype, loss_and_grad, make_problem, reference_loss_and_grad, upstream

SPARSE = {
    # 150 classes over 900 rows: most tile pairs hold no positive
    "many_classes": dict(n=900, d=16, num_classes=150),
    "many_classes_images": dict(n=900, d=16, num_classes=60, num_images=3),
    "many_classes_masks": dict(n=800, d=12, num_classes=100, masks=True, ignore_frac=0.1),
    "bags": dict(bag_sizes=[400, 1, 350], d=8, num_classes=40, num_images=2),
}


def assert_matches_reference(p, **kw):
    loss, valid, grad = loss_and_grad(pixcon.contrastive_loss, p, **kw)
    exp_loss, exp_valid, exp_grad = reference_loss_and_grad(p, **kw)
    assert torch.equal(valid, exp_valid)
    assert_close_dtype(loss, exp_loss, torch.float32, "loss")
    assert_close_dtype(grad, exp_grad, torch.float32, "grad")


@pytest.mark.parametrize("denominator", ["all", "pair"])
@pytest.mark.parametrize("case", sorted(SPARSE))
def test_sparse_positives_match_reference(cpu_isa, case, denominator):
    p = make_problem(dtype=torch.float32, seed=11, **SPARSE[case])
    kw = dict(temperature=0.1, denominator=denominator)
    assert_matches_reference(p, **kw)


@pytest.mark.parametrize("denominator", ["all", "pair"])
def test_permuting_the_rows_permutes_the_outputs(denominator):
    p = make_problem(n=700, d=16, num_classes=12, num_images=2, dtype=torch.float64, seed=12)
    perm = torch.randperm(p.n, generator=torch.Generator().manual_seed(0))
    kw = dict(temperature=0.1, denominator=denominator)
    loss, valid, grad = loss_and_grad(pixcon.contrastive_loss, p, **kw)
    shuffled = p.with_embeddings(p.embeddings[perm])
    shuffled.labels = p.labels[perm]
    shuffled.image_ids = p.image_ids[perm]
    loss_p, valid_p, grad_p = loss_and_grad(pixcon.contrastive_loss, shuffled, g=upstream(p.n)[perm], **kw)
    assert torch.equal(valid_p, valid[perm])
    torch.testing.assert_close(loss_p, loss[perm], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_p, grad[perm], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("denominator", ["all", "pair"])
def test_grouped_schedule_matches_reference(denominator):
    """A bag of 3 200 rows runs its tiles in groups of 2 blocks (schedule.h)."""
    p = make_problem(n=3200, d=8, num_classes=9, dtype=torch.float32, seed=13, ignore_frac=0.05)
    kw = dict(temperature=0.1, denominator=denominator)
    assert_matches_reference(p, **kw)
