"""Numerics at the extremes: temperatures from 1e-4 to 1e4, unnormalised rows with norms up to
1e3, 16-bit inputs at temperature 0.01, one-row and one-class bags, 10^6 rows of D = 1, and
NaN / +-Inf in an embedding.

Accuracy model (README, Numerics). Errors are normwise: max |actual - expected| / max |expected|
over the tensor (for a gradient at least max |z| / tau, see ``gradient_error``), against
``pixcon.reference`` in float64 on the very values the kernel got. A
similarity s = z.z / tau is known to eps * max|z|^2 / tau absolutely, and a gradient is a
softmax of similarities, so its error grows with the condition
kappa = max(1, max|z|^2 / tau). Measured on this CPU: the loss within 3 eps whatever kappa
(it is as large as the similarities), the gradient within 3.6 eps * kappa (float32 at tau = 1e-4
with unit rows: 4e-4). The tests allow 8 eps and 8 eps * kappa. 16-bit inputs accumulate in
float32 and round the gradient once to 16 bits; at tau = 0.01 (unit rows, D = 32) the measured
worst over 20 seeds was, against the rounded inputs, loss 3.4e-7 and gradient 4.2e-4 (float16)
/ 3.1e-3 (bfloat16), and against the unrounded float64 inputs, loss 3.5e-4 / 2.7e-3 and
gradient 3.4e-3 / 2.7e-2 (0.35 eps and 3.5 eps of the 16-bit type).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

import pixcon
import pixcon.nn
from conftest import make_problem, loss_and_grad, reference_loss_and_grad, upstream

TEMPERATURES = [10.0 ** k for k in range(-4, 5)]
DENOMINATORS = ("all", "pair")
NON_FINITE = {"nan": float("nan"), "+inf": float("inf"), "-inf": float("-inf")}


def normwise(actual: torch.Tensor, expected: torch.Tensor, scale: float = 0.0) -> float:
    """max |actual - expected| / max(max |expected|, scale) (the bare error when that is 0)."""
    scale = max(float(expected.abs().max()), scale)
    error = float((actual.double() - expected.double()).abs().max())
    return error / scale if scale > 0 else error


def gradient_error(grad: torch.Tensor, expected: torch.Tensor, embeddings: torch.Tensor, temperature: float) -> float:
    """The normwise error against at least max |z| / tau, the size of one term w_ij z_j / tau of the
    gradient: where the terms cancel (one class, tau = 1e4: the softmax equals the positives' mean) the
    gradient is far smaller than the terms its rounding errors come from."""
    return normwise(grad, expected, float(embeddings.detach().double().norm(dim=1).max()) / temperature)


def condition(embeddings: torch.Tensor, temperature: float) -> float:
    return max(1.0, float(embeddings.detach().double().norm(dim=1).max()) ** 2 / temperature)


def eps(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps


def assert_matches_reference(p, dtype: torch.dtype, *, gradient: bool = True, **options) -> None:
    """Finite, and within 8 eps (loss) and 8 eps * kappa (gradient) of the float64 reference."""
    loss, valid, grad = loss_and_grad(pixcon.contrastive_loss, p, **options)
    exp_loss, exp_valid, exp_grad = reference_loss_and_grad(p, **options)
    what = f"{dtype} {options}"
    assert torch.equal(valid, exp_valid), what
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all(), what
    assert normwise(loss, exp_loss) <= 8 * eps(dtype), (what, normwise(loss, exp_loss))
    if gradient:
        temperature = options["temperature"]
        bound = 8 * eps(dtype) * condition(p.embeddings, temperature)
        error = gradient_error(grad, exp_grad, p.embeddings, temperature)
        assert error <= bound, (what, error, bound)


# ----------------------------------------------------------------------------- temperatures, norms


@pytest.mark.parametrize("denominator", DENOMINATORS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_temperatures_from_1e_minus_4_to_1e4_match_the_reference(dtype, denominator):
    p = make_problem(64, 8, 3, num_bags=2, dtype=dtype, seed=5)
    for temperature in TEMPERATURES:
        assert_matches_reference(p, dtype, temperature=temperature, denominator=denominator)


@pytest.mark.parametrize("denominator", DENOMINATORS)
def test_float64_rows_with_norms_up_to_1e3_match_the_reference_at_every_temperature(denominator):
    """Similarities up to 1e10 (norm 1e3, tau 1e-4): the loss is about 1e11, finite and exact."""
    for scale in (1.0, 10.0, 100.0, 1000.0):
        p = make_problem(64, 8, 3, num_bags=2, dtype=torch.float64, seed=6, normalize=False, scale=scale)
        for temperature in (1e-4, 0.07, 1e4):
            assert_matches_reference(p, torch.float64, temperature=temperature, denominator=denominator)


@pytest.mark.parametrize("denominator", DENOMINATORS)
def test_float32_losses_of_rows_with_norms_up_to_1e3_match_the_reference_at_every_temperature(denominator):
    for scale in (1.0, 10.0, 100.0, 1000.0):
        p = make_problem(64, 8, 3, num_bags=2, dtype=torch.float32, seed=6, normalize=False, scale=scale)
        for temperature in (1e-4, 0.07, 1e4):
            assert_matches_reference(p, torch.float32, gradient=False, temperature=temperature,
                                     denominator=denominator)


@pytest.mark.parametrize("denominator", DENOMINATORS)
def test_float32_gradients_of_unnormalised_rows_match_while_float32_resolves_the_similarities(denominator):
    """kappa up to 1e5 (eps * kappa ~ 1e-2): the pairs (norm, tau) of the grid with norm^2 / tau <= 1e5,
    norms 1 to 1e3."""
    for scale, temperatures in ((1.0, (1e-4, 1.0)), (10.0, (1e-3, 0.07)), (100.0, (0.1, 10.0)),
                                (1000.0, (10.0, 1e4))):
        p = make_problem(64, 8, 3, num_bags=2, dtype=torch.float32, seed=6, normalize=False, scale=scale)
        for temperature in temperatures:
            assert_matches_reference(p, torch.float32, temperature=temperature, denominator=denominator)


def test_float32_gradient_stays_bounded_when_similarities_exceed_float32_resolution():
    p = make_problem(64, 8, 3, dtype=torch.float32, seed=34, normalize=False, scale=100.0)
    _, _, grad = loss_and_grad(pixcon.contrastive_loss, p, temperature=1e-4)
    _, _, exp_grad = reference_loss_and_grad(p, temperature=1e-4)
    assert torch.isfinite(grad).all()
    assert float(grad.abs().max()) <= 2 * float(exp_grad.abs().max())


# ----------------------------------------------------------------------------- 16-bit inputs


@pytest.mark.parametrize("denominator", DENOMINATORS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16_bit_inputs_at_temperature_0_01_match_the_reference_on_the_rounded_values(dtype, denominator):
    """float32 accumulation: the loss within 16 float32 eps; the gradient within one 16-bit eps
    (its single rounding to the input's dtype)."""
    for seed in range(5):
        exact = make_problem(256, 32, 5, num_bags=3, dtype=torch.float64, seed=seed)
        p = exact.with_embeddings(exact.embeddings.to(dtype))
        loss, _, grad = loss_and_grad(pixcon.contrastive_loss, p, temperature=0.01, denominator=denominator)
        exp_loss, _, exp_grad = reference_loss_and_grad(p, temperature=0.01, denominator=denominator)
        assert grad.dtype == dtype and torch.isfinite(loss).all() and torch.isfinite(grad).all()
        assert normwise(loss, exp_loss) <= 16 * eps(torch.float32), (seed, normwise(loss, exp_loss))
        assert normwise(grad, exp_grad) <= eps(dtype), (seed, normwise(grad, exp_grad))


@pytest.mark.parametrize("denominator", DENOMINATORS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16_bit_inputs_at_temperature_0_01_against_the_unrounded_float64_loss(dtype, denominator):
    """What a user of 16-bit features sees: the error of rounding the inputs, the loss within one
    16-bit eps and the gradient within 8 (README, Numerics)."""
    for seed in range(5):
        exact = make_problem(256, 32, 5, num_bags=3, dtype=torch.float64, seed=seed)
        loss, _, grad = loss_and_grad(pixcon.contrastive_loss, exact.with_embeddings(exact.embeddings.to(dtype)),
                                      temperature=0.01, denominator=denominator)
        exp_loss, _, exp_grad = reference_loss_and_grad(exact, temperature=0.01, denominator=denominator)
        assert normwise(loss, exp_loss) <= eps(dtype), (seed, normwise(loss, exp_loss))
        assert normwise(grad, exp_grad) <= 8 * eps(dtype), (seed, normwise(grad, exp_grad))


# ----------------------------------------------------------------------------- degenerate bags


@pytest.mark.parametrize("self_positive", [False, True])
@pytest.mark.parametrize("denominator", DENOMINATORS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_bags_of_one_row_give_zero_loss_and_zero_gradient_at_extreme_scales(dtype, denominator, self_positive):
    """One-row bags have no positive but themselves: invalid, or with ``self_positive`` valid with loss 0
    (design 2.4), even at tau 1e-4 with norms of 1e3 (s_ii = 1e10)."""
    for scale, temperature in ((1.0, 1e4), (1000.0, 1e-4)):
        p = make_problem(bag_sizes=[1] * 16, d=4, dtype=torch.float64, seed=7, normalize=False, scale=scale)
        p = p.with_embeddings(p.embeddings.to(dtype))
        loss, valid, grad = loss_and_grad(pixcon.contrastive_loss, p, temperature=temperature,
                                          denominator=denominator, self_positive=self_positive)
        assert torch.equal(valid, torch.full_like(valid, self_positive))
        assert torch.equal(loss, torch.zeros_like(loss)), loss
        assert torch.equal(grad, torch.zeros_like(grad)), grad


@pytest.mark.parametrize("temperature", [1e-4, 0.07, 1e4])
@pytest.mark.parametrize("denominator", DENOMINATORS)
def test_bags_where_every_row_is_one_class_match_the_reference(denominator, temperature):
    """"all": every anchor valid with loss >= log |P(i)| (up to the rounding of s, eps * kappa with
    kappa = max(1, max|z|^2 / tau), README Numerics); "pair": valid, loss 0 and zero gradient (no
    negative)."""
    p = make_problem(bag_sizes=[7, 1, 30, 2], d=8, num_classes=1, dtype=torch.float32, seed=8)
    assert_matches_reference(p, torch.float32, temperature=temperature, denominator=denominator)
    loss, valid, grad = loss_and_grad(pixcon.contrastive_loss, p, temperature=temperature, denominator=denominator)
    sizes = torch.tensor([7, 1, 30, 2]).repeat_interleave(torch.tensor([7, 1, 30, 2]))
    assert torch.equal(valid, sizes > 1)
    if denominator == "pair":
        assert torch.equal(loss, torch.zeros_like(loss)) and torch.equal(grad, torch.zeros_like(grad))
    else:
        bound = torch.log((sizes - 1).clamp(min=1).double()).float()
        kappa = max(1.0, float(p.embeddings.double().pow(2).sum(1).max()) / temperature)
        rounding = torch.finfo(torch.float32).eps * kappa
        assert (loss[valid] >= bound[valid] * (1 - 1e-6) - rounding).all()


def test_a_million_rows_of_d1_in_1000_bags_match_the_reference_on_a_subset_of_bags():
    """10^6 rows, D = 1, 1 000 bags of 1 000 rows ("all"; ~15 s on 2 cores): forward and backward finite,
    and bags 0, 417 and 999 equal to the float64 reference of that bag alone."""
    generator = torch.Generator().manual_seed(11)
    n, num_bags, temperature = 10 ** 6, 1000, 0.1
    z = torch.randn(n, 1, generator=generator).requires_grad_(True)
    labels = torch.randint(0, 4, (n,), generator=generator)
    offsets = torch.arange(num_bags + 1) * (n // num_bags)
    loss, valid = pixcon.contrastive_loss(z, labels, offsets, temperature=temperature)
    g = upstream(n).float()
    (loss * g).sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(z.grad).all()
    kappa = condition(z.detach(), temperature)
    for b in (0, 417, 999):
        rows = slice(int(offsets[b]), int(offsets[b + 1]))
        z_ref = z.detach()[rows].double().requires_grad_(True)
        exp_loss, exp_valid = pixcon.reference.contrastive_loss(z_ref, labels[rows], None, temperature=temperature)
        (exp_loss * g[rows].double()).sum().backward()
        assert torch.equal(valid[rows], exp_valid)
        assert normwise(loss.detach()[rows], exp_loss.detach()) <= 8 * eps(torch.float32), b
        assert gradient_error(z.grad[rows], z_ref.grad, z_ref, temperature) <= 8 * eps(torch.float32) * kappa, b


# ----------------------------------------------------------------------------- NaN and infinity

BAG_SIZES = [20, 20, 20]
BAD_ROW = 25  # in bag 1


def poisoned(value: float, dtype: torch.dtype, role: str):
    """The problem of bags [20, 20, 20] with ``value`` in row 25 (bag 1), which is an ordinary row
    ("row"), ignored ("ignored") or outside the contrast mask ("not_contrast")."""
    p = make_problem(bag_sizes=BAG_SIZES, d=8, num_classes=3, dtype=dtype, seed=3)
    z = p.embeddings.clone()
    z[BAD_ROW, 3] = value
    p = p.with_embeddings(z)
    if role == "ignored":
        p.labels[BAD_ROW] = p.ignore_index
    if role == "not_contrast":
        p.contrast_mask = torch.ones(p.n, dtype=torch.bool)
        p.contrast_mask[BAD_ROW] = False
    return p


def test_non_finite_embeddings_neither_crash_nor_hang():
    """Every NaN / +-inf case, every dtype, both denominators, one and two threads, the module too,
    in a child process: a crash or a hang fails this test instead of killing the run."""
    script = textwrap.dedent("""
        import torch, pixcon, pixcon.nn
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
                for value in (float("nan"), float("inf"), float("-inf")):
                    for denominator in ("all", "pair"):
                        z = torch.randn(150, 16).to(dtype)
                        z[7, 0] = value
                        z.requires_grad_(True)
                        labels = torch.randint(0, 3, (150,))
                        loss, _ = pixcon.contrastive_loss(z, labels, [0, 50, 150], temperature=0.05,
                                                          denominator=denominator, self_positive=True)
                        loss.sum().backward()
                        x = torch.randn(2, 8, 6, 6)
                        x[1, :, 2, 2] = value
                        pixcon.nn.PixelContrastiveLoss(denominator=denominator)(
                            x.requires_grad_(True), torch.randint(0, 3, (2, 6, 6))).backward()
        print("done")
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "done", run.stderr[-2000:]


@pytest.mark.parametrize("role", ["row", "ignored", "not_contrast"])
@pytest.mark.parametrize("denominator", DENOMINATORS)
@pytest.mark.parametrize("value", list(NON_FINITE))
def test_a_non_finite_embedding_leaves_the_other_bags_exactly_as_they_were(value, denominator, role):
    clean = make_problem(bag_sizes=BAG_SIZES, d=8, num_classes=3, dtype=torch.float32, seed=3)
    bad = poisoned(NON_FINITE[value], torch.float32, role)
    loss, _, grad = loss_and_grad(pixcon.contrastive_loss, bad, denominator=denominator)
    exp_loss, _, exp_grad = loss_and_grad(pixcon.contrastive_loss, clean, denominator=denominator)
    for rows in (slice(0, 20), slice(40, 60)):
        assert torch.equal(loss[rows], exp_loss[rows]) and torch.equal(grad[rows], exp_grad[rows])


@pytest.mark.parametrize("role", ["row", "not_contrast"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("denominator", DENOMINATORS)
@pytest.mark.parametrize("value", list(NON_FINITE))
def test_a_non_finite_embedding_makes_the_gradient_of_every_row_of_its_bag_non_finite(value, denominator, dtype,
                                                                                      role):
    """An anchor or contrast row with a non-finite value reaches every row of its bag, so a bad value
    never slips into training unnoticed."""
    _, _, grad = loss_and_grad(pixcon.contrastive_loss, poisoned(NON_FINITE[value], dtype, role),
                               denominator=denominator)
    assert (~torch.isfinite(grad[20:40])).any(dim=1).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("denominator", DENOMINATORS)
@pytest.mark.parametrize("value", list(NON_FINITE))
def test_a_non_finite_embedding_in_an_ignored_row_changes_nothing(value, denominator, dtype):
    """An ignored row enters no loss and no gradient, whatever its values (it is packed as zeros)."""
    bad = poisoned(NON_FINITE[value], dtype, "ignored")
    clean = bad.with_embeddings(make_problem(bag_sizes=BAG_SIZES, d=8, num_classes=3, dtype=dtype, seed=3).embeddings)
    loss, valid, grad = loss_and_grad(pixcon.contrastive_loss, bad, denominator=denominator)
    exp_loss, exp_valid, exp_grad = loss_and_grad(pixcon.contrastive_loss, clean, denominator=denominator)
    assert torch.equal(loss, exp_loss) and torch.equal(valid, exp_valid) and torch.equal(grad, exp_grad)


@pytest.mark.parametrize("denominator", DENOMINATORS)
@pytest.mark.parametrize("value", list(NON_FINITE))
def test_a_non_finite_embedding_makes_the_reduced_loss_non_finite(value, denominator):
    p = poisoned(NON_FINITE[value], torch.float32, "row")
    loss, valid = pixcon.contrastive_loss(p.embeddings, p.labels, p.bag_offsets, denominator=denominator)
    assert not torch.isfinite(pixcon.reduce_loss(loss, valid, p.bag_offsets, "mean"))
    x = torch.randn(2, 8, 6, 6)
    x[1, :, 2, 2] = NON_FINITE[value]
    module = pixcon.nn.PixelContrastiveLoss(denominator=denominator)
    assert not torch.isfinite(module(x, torch.randint(0, 3, (2, 6, 6), generator=torch.Generator().manual_seed(0))))


@pytest.mark.parametrize("denominator", DENOMINATORS)
def test_nan_in_an_embedding_gives_nan_loss_in_every_valid_row_of_its_bag(denominator):
    p = poisoned(float("nan"), torch.float32, "row")
    loss, valid = pixcon.contrastive_loss(p.embeddings, p.labels, p.bag_offsets, denominator=denominator)
    assert loss[20:40][valid[20:40]].isnan().all()
