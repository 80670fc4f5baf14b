"""pixcon.contrastive_loss (the compiled op) against the pure-PyTorch reference:
per-row losses, validity and gradients, on every CPU tier, plus SupConLoss."""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning.losses import SupConLoss
from pytorch_metric_learning.reducers import DoNothingReducer

import pixcon
from conftest import (
    ALL_CPU_ISAS,
    IGNORE,
    assert_close_dtype,
    assert_close_f64,
    loss_and_grad,
    make_problem,
    reference_loss_and_grad,
    upstream,
)

# Each case is make_problem(**kwargs) plus an optional "post" edit of the labels.
CASES = {
    "one_bag_d3": dict(n=60, d=3, num_classes=4),
    "d1": dict(n=40, d=1, num_classes=3),
    "d64_ignore": dict(n=150, d=64, num_classes=5, ignore_frac=0.2),
    "d256_masks": dict(n=120, d=256, num_classes=6, masks=True),
    "image_ids_bags": dict(n=200, d=16, num_classes=4, num_bags=3, num_images=3, ignore_frac=0.1),
    "everything": dict(bag_sizes=[0, 1, 37, 0, 2, 90, 1, 0], d=7, num_classes=3, masks=True, num_images=2,
                       ignore_frac=0.15),
    "one_class_bag": dict(bag_sizes=[25, 30], d=5, num_classes=1),
    "no_valid_anchor_bag": dict(bag_sizes=[20, 30, 25], d=4, num_classes=3),  # bag 1 edited below
    "many_small_bags": dict(bag_sizes=[3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5], d=3, num_classes=2),
    "unnormalized_large_scale": dict(n=50, d=3, num_classes=3, normalize=False, scale=4.0),
    "blocky_n333_d33": dict(n=333, d=33, num_classes=7, num_bags=2, ignore_frac=0.05, masks=True),
}


def build(case: str, dtype: torch.dtype, seed: int = 0):
    p = make_problem(dtype=dtype, seed=seed, **CASES[case])
    if case == "no_valid_anchor_bag":
        sl = p.bag(1)
        p.labels[sl] = torch.arange(100, 100 + sl.stop - sl.start)  # every row its own class
        p.labels[sl.start : sl.start + 5] = IGNORE
    return p


def compare(p, dtype, **kw):
    loss, valid, grad = loss_and_grad(pixcon.contrastive_loss, p, **kw)
    exp_loss, exp_valid, exp_grad = reference_loss_and_grad(p, **kw)
    assert loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert valid.dtype == torch.bool
    assert grad.dtype == dtype
    assert torch.equal(valid, exp_valid)
    condition = float(p.embeddings.double().pow(2).sum(1).max()) if p.n else 1.0
    assert_close_dtype(loss, exp_loss, dtype, "loss", condition)
    assert_close_dtype(grad, exp_grad, dtype, "grad", condition)
    assert torch.isfinite(grad).all()
    return loss, valid


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("self_positive", [False, True], ids=["", "selfpos"])
@pytest.mark.parametrize("denominator", ["all", "pair"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_reference_on_every_cpu_tier(cpu_isa, case, denominator, self_positive, dtype):
    p = build(case, dtype)
    compare(p, dtype, denominator=denominator, self_positive=self_positive)


@pytest.mark.parametrize("denominator", ["all", "pair"])
@pytest.mark.parametrize("temperature", [0.01, 0.5, 2.0])
def test_matches_reference_for_other_temperatures(denominator, temperature):
    p = build("everything", torch.float64, seed=3)
    compare(p, torch.float64, denominator=denominator, temperature=temperature)


@pytest.mark.parametrize("denominator", ["all", "pair"])
def test_matches_reference_at_n2000_d256_float64(denominator):
    p = make_problem(2000, 256, num_classes=10, num_bags=2, ignore_frac=0.05, dtype=torch.float64, seed=11,
                     num_images=2)
    compare(p, torch.float64, denominator=denominator, self_positive=denominator == "pair")


@pytest.mark.parametrize("denominator", ["all", "pair"])
def test_matches_reference_at_n1500_d256_float32_on_every_cpu_tier(cpu_isa, denominator):
    """Many row/column tiles and threads, D not a multiple of any vector width
    after the 256: exercises the blocked paths of each tier."""
    p = make_problem(bag_sizes=[1500, 7, 300], d=256, num_classes=12, ignore_frac=0.05, dtype=torch.float32,
                     seed=15, masks=True, num_images=3)
    compare(p, torch.float32, denominator=denominator, self_positive=denominator == "all")


def test_tiers_agree_with_each_other_float64():
    p = build("everything", torch.float64, seed=4)
    results = {}
    for isa in pixcon.available_cpu_isas():
        with pixcon.use_cpu_isa(isa):
            results[isa] = loss_and_grad(pixcon.contrastive_loss, p, denominator="pair")
    base = results["scalar"]
    for isa, (loss, valid, grad) in results.items():
        assert torch.equal(valid, base[1]), isa
        assert_close_f64(loss, base[0])
        assert_close_f64(grad, base[2])


def test_avx512_tier_is_tested_when_the_cpu_has_it():
    if "avx512" not in pixcon.available_cpu_isas():
        pytest.skip("this CPU lacks AVX-512 (F/DQ/BW/VL): the avx512 tier cannot run here; "
                    f"available tiers: {pixcon.available_cpu_isas()}")
    p = build("everything", torch.float32, seed=5)
    with pixcon.use_cpu_isa("avx512"):
        assert pixcon.cpu_isa() == "avx512"
        for den in ("all", "pair"):
            compare(p, torch.float32, denominator=den)


# ----------------------------------------------------------------------------- tier selection


def test_available_isas_include_scalar_and_default_is_the_widest():
    available = pixcon.available_cpu_isas()
    assert "scalar" in available
    assert set(available) <= set(ALL_CPU_ISAS)
    widest = max(available, key=ALL_CPU_ISAS.index)
    assert pixcon.cpu_isa() == widest


def test_use_cpu_isa_restores_the_previous_tier():
    before = pixcon.cpu_isa()
    with pixcon.use_cpu_isa("scalar"):
        assert pixcon.cpu_isa() == "scalar"
    assert pixcon.cpu_isa() == before


def test_use_cpu_isa_rejects_unknown_name():
    with pytest.raises((ValueError, RuntimeError)):
        with pixcon.use_cpu_isa("sse9"):
            pass


@pytest.mark.parametrize("isa", ALL_CPU_ISAS)
def test_use_cpu_isa_rejects_a_tier_the_cpu_lacks(isa):
    if isa in pixcon.available_cpu_isas():
        pytest.skip(f"{isa} is supported by this CPU")
    before = pixcon.cpu_isa()
    with pytest.raises((ValueError, RuntimeError)):
        with pixcon.use_cpu_isa(isa):
            pass
    assert pixcon.cpu_isa() == before


# ----------------------------------------------------------------------------- SupConLoss


@pytest.mark.parametrize("n,d,num_classes", [(64, 3, 3), (300, 32, 8)])
def test_all_denominator_matches_pml_supcon(n, d, num_classes):
    p = make_problem(n, d, num_classes, seed=12)
    loss, valid = pixcon.contrastive_loss(p.embeddings, p.labels, temperature=0.07)
    expected = SupConLoss(temperature=0.07, reducer=DoNothingReducer())(p.embeddings, p.labels)["loss"]["losses"]
    assert_close_f64(loss, expected)
    assert valid.all()


# ----------------------------------------------------------------------------- raw ops


def _raw_args(p, denominator="all", self_positive=False, temperature=0.07):
    return (p.embeddings, p.labels, p.bag_offsets, p.anchor_mask, p.contrast_mask, p.image_ids,
            temperature, p.ignore_index, denominator, self_positive)


@pytest.mark.parametrize("denominator", ["all", "pair"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_raw_ops_match_the_autograd_function(denominator, dtype):
    p = build("everything", dtype, seed=6)
    loss, valid, stats = torch.ops.pixcon.contrastive_loss(*_raw_args(p, denominator))
    assert stats.shape == (p.n, 3) and stats.dtype == loss.dtype
    g = upstream(p.n).to(loss.dtype)
    grad = torch.ops.pixcon.contrastive_loss_backward(
        g, p.embeddings, p.labels, p.bag_offsets, p.anchor_mask, p.contrast_mask, p.image_ids, stats,
        0.07, p.ignore_index, denominator, False)
    assert grad.dtype == dtype and grad.shape == p.embeddings.shape
    exp_loss, exp_valid, exp_grad = loss_and_grad(pixcon.contrastive_loss, p, g.double(), denominator=denominator)
    assert torch.equal(valid, exp_valid)
    torch.testing.assert_close(loss, exp_loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, exp_grad, rtol=1e-12 if dtype == torch.float64 else 1e-6,
                               atol=1e-12 if dtype == torch.float64 else 1e-6)


def test_default_bag_offsets_is_one_bag():
    p = make_problem(50, 4, 3, seed=13)
    a, va = pixcon.contrastive_loss(p.embeddings, p.labels)
    b, vb = pixcon.contrastive_loss(p.embeddings, p.labels, torch.tensor([0, p.n]))
    assert torch.equal(a, b) and torch.equal(va, vb)


def test_bags_are_independent():
    p = build("image_ids_bags", torch.float64, seed=7)
    loss, valid = pixcon.contrastive_loss(p.embeddings, p.labels, p.bag_offsets, image_ids=p.image_ids)
    for b in range(len(p.bag_offsets) - 1):
        sl = p.bag(b)
        alone, valid_alone = pixcon.contrastive_loss(p.embeddings[sl], p.labels[sl], image_ids=p.image_ids[sl])
        assert torch.equal(valid[sl], valid_alone)
        assert_close_f64(loss[sl], alone)


def test_row_order_within_a_bag_does_not_matter():
    p = make_problem(80, 6, 4, seed=14, masks=True, num_images=2)
    perm = torch.randperm(p.n, generator=torch.Generator().manual_seed(0))
    kw = p.kwargs()
    loss, valid = pixcon.contrastive_loss(p.embeddings, p.labels, denominator="pair", **kw)
    kwp = {k: (v[perm] if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    loss_p, valid_p = pixcon.contrastive_loss(p.embeddings[perm], p.labels[perm], denominator="pair", **kwp)
    assert torch.equal(valid[perm], valid_p)
    assert_close_f64(loss[perm], loss_p)
