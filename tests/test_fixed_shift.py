"""The CPU kernels' fixed-shift path (ops/cpu/fixed_shift_tiles.h): off-diagonal tiles whose rows'
norms bound every exponent take one exponential per pair instead of an online log-sum-exp. It must
agree with the float64 reference as the online path does, on every tier, for both denominators and
every set rule, and give way to the online path block by block where the norms do not allow it.
Bags here span several 96-row tiles, so most tiles are off-diagonal."""

from __future__ import annotations

import pytest
import torch

import pixcon
from conftest import assert_close_dtype, loss_and_grad, make_problem, reference_loss_and_grad

CASES = {
    "plain": dict(n=500, d=24, num_classes=5),
    "ignored_rows": dict(n=420, d=40, num_classes=6, ignore_frac=0.2),
    "masks": dict(n=400, d=16, num_classes=4, masks=True),
    "image_ids": dict(n=450, d=20, num_classes=4, num_images=1),
    "bags": dict(bag_sizes=[250, 0, 97, 300], d=12, num_classes=3),
}


def run_both_paths(p, dtype, **kw):
    """(loss, valid, grad) with the fixed-shift path on and off."""
    out = {}
    for enabled in (True, False):
        with pixcon.use_cpu_fixed_shift(enabled):
            out[enabled] = loss_and_grad(pixcon.contrastive_loss, p, **kw)
    return out


def check_against_reference(p, dtype, result, **kw):
    loss, valid, grad = result
    exp_loss, exp_valid, exp_grad = reference_loss_and_grad(p, **kw)
    assert torch.equal(valid, exp_valid)
    condition = float(p.embeddings.double().pow(2).sum(1).max())
    assert_close_dtype(loss, exp_loss, dtype, "loss", condition)
    assert_close_dtype(grad, exp_grad, dtype, "grad", condition)


@pytest.mark.parametrize("denominator", ["all", "pair"])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fixed_shift_matches_reference_on_unit_rows(cpu_isa, case, denominator, dtype):
    p = make_problem(dtype=dtype, seed=3, **CASES[case])
    out = run_both_paths(p, dtype, temperature=0.1, denominator=denominator)
    check_against_reference(p, dtype, out[True], temperature=0.1, denominator=denominator)
    # the two paths round differently: equal bits would mean the fast path never ran
    assert not torch.equal(out[True][2], out[False][2])


@pytest.mark.parametrize("denominator", ["all", "pair"])
def test_fixed_shift_with_self_positive(denominator):
    p = make_problem(n=400, d=16, num_classes=4, dtype=torch.float32, seed=4)
    kw = dict(temperature=0.07, denominator=denominator, self_positive=True)
    out = run_both_paths(p, torch.float32, **kw)
    check_against_reference(p, torch.float32, out[True], **kw)
    assert not torch.equal(out[True][2], out[False][2])


@pytest.mark.parametrize("denominator", ["all", "pair"])
def test_long_rows_send_only_their_blocks_to_the_online_path(denominator):
    """Rows 200..299 are 6x longer (a = 180 > the cap): their blocks' tiles take the online path,
    the others keep the fixed shift, and one row mixes both kinds of tile sums."""
    p = make_problem(n=600, d=16, num_classes=4, dtype=torch.float32, seed=5)
    z = p.embeddings.clone()
    z[200:300] *= 6
    p = p.with_embeddings(z)
    kw = dict(temperature=0.1, denominator=denominator)
    out = run_both_paths(p, torch.float32, **kw)
    check_against_reference(p, torch.float32, out[True], **kw)
    check_against_reference(p, torch.float32, out[False], **kw)
    assert not torch.equal(out[True][2], out[False][2])


@pytest.mark.parametrize("temperature", [0.026, 0.02])
def test_temperatures_at_the_bound_agree(temperature):
    """Unit rows at tau = 0.026 (a = 19.2) stay on the fixed shift, at tau = 0.02 (a = 25) they
    leave it; either way the loss matches the reference."""
    p = make_problem(n=300, d=8, num_classes=3, dtype=torch.float32, seed=6)
    out = run_both_paths(p, torch.float32, temperature=temperature)
    check_against_reference(p, torch.float32, out[True], temperature=temperature)
    assert torch.equal(out[True][2], out[False][2]) == (temperature == 0.02)


def test_a_non_finite_row_keeps_the_other_blocks_on_the_fixed_shift():
    p = make_problem(n=400, d=8, num_classes=3, dtype=torch.float32, seed=7)
    z = p.embeddings.clone()
    z[10, 0] = float("nan")
    p = p.with_embeddings(z)
    out = run_both_paths(p, torch.float32, temperature=0.1)
    loss, valid, grad = out[True]
    slow_loss, _, slow_grad = out[False]
    assert torch.isnan(loss[10])
    assert torch.equal(torch.isnan(loss), torch.isnan(slow_loss))
    finite = ~torch.isnan(loss)
    torch.testing.assert_close(loss[finite], slow_loss[finite], rtol=1e-5, atol=1e-5)


def test_use_cpu_fixed_shift_restores_the_setting():
    assert pixcon.cpu_fixed_shift()
    with pixcon.use_cpu_fixed_shift(False):
        assert not pixcon.cpu_fixed_shift()
    assert pixcon.cpu_fixed_shift()
