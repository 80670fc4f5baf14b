"""Soak: 2 000 random problems (shapes, bag layouts, options, dtypes) through the Python API against
``pixcon.reference`` in float64, forward and backward, with resident memory flat over the run.

Problem k is drawn from its own seed k alone, so a failure names the seed and
``run_problem(seed)`` replays it. Most problems go through ``pixcon.contrastive_loss``; every
tenth through ``pixcon.nn.PixelContrastiveLoss`` and every tenth (offset by 5) through
``pixcon.sample_pixels``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import math
import os
import random

import torch
import torch.nn.functional as F

import pixcon
import pixcon.nn
from pixcon import reference

NUM_PROBLEMS = 2000
WARM_UP = 200
RSS_GROWTH_LIMIT = 20 * 2 ** 20
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
IGNORE = 255


def resident_bytes() -> int:
    """Resident memory after a garbage collection and, with glibc, malloc_trim: the heap's free
    pages go back to the system, so that fragmentation (steps of ~25 MiB seen without it) does not
    pass for a leak."""
    gc.collect()
    libc = ctypes.util.find_library("c")
    if libc and hasattr(ctypes.CDLL(libc), "malloc_trim"):
        ctypes.CDLL(libc).malloc_trim(0)
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def tolerance(dtype: torch.dtype, kappa: float, what: str) -> float:
    """float64: 1e-9 kappa. Others accumulate in float32: 64 float32 eps times the condition
    kappa = max(1, max|z|^2 / tau) (test_extreme_numerics measures the model), plus, for a 16-bit
    gradient, its one rounding to the input's dtype."""
    if dtype == torch.float64:
        return 1e-9 * kappa
    bound = 64 * torch.finfo(torch.float32).eps * kappa
    return bound + (torch.finfo(dtype).eps if what == "gradient" and dtype != torch.float32 else 0.0)


def normwise(actual: torch.Tensor, expected: torch.Tensor, scale: float = 0.0) -> float:
    scale = max(float(expected.abs().max()) if expected.numel() else 0.0, scale)
    error = float((actual.double() - expected.double()).abs().max()) if expected.numel() else 0.0
    return error / scale if scale > 0 else error


def random_offsets(rng: random.Random, n: int) -> list[int]:
    """Random CSR offsets over n rows: a few random cuts (empty bags allowed), or, one time in
    eight, bags of one row with an empty bag here and there."""
    if n and rng.random() < 0.125:
        sizes = [rng.choice((0, 1, 1, 1, 2)) for _ in range(n)]
        sizes[-1] += n - sum(sizes)
        if sizes[-1] < 0:
            sizes = [1] * n
        return [0] + [sum(sizes[:k + 1]) for k in range(len(sizes))]
    cuts = sorted(rng.randint(0, n) for _ in range(rng.randint(0, 5)))
    return [0, *cuts, n]


def compare(desc: str, dtype: torch.dtype, z: torch.Tensor, temperature: float, got: tuple, expected: tuple) -> None:
    """got / expected = (loss, valid, grad); loss and gradient within ``tolerance``."""
    loss, valid, grad = got
    exp_loss, exp_valid, exp_grad = expected
    norm = float(z.double().norm(dim=1).max()) if z.numel() else 0.0
    kappa = max(1.0, norm ** 2 / temperature)
    assert torch.equal(valid, exp_valid), f"{desc}: valid differs"
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all(), f"{desc}: non-finite result"
    assert grad.dtype == dtype, f"{desc}: gradient dtype {grad.dtype}"
    # against at least 1, so that a loss that underflows (6e-53 in float64 is 0 in float32) is judged by
    # its absolute error, and the gradient against at least one of its terms, w z / tau, so that
    # cancelling terms are judged fairly
    error = normwise(loss, exp_loss, 1.0)
    assert error <= tolerance(dtype, kappa, "loss"), f"{desc}: loss error {error:.3g}"
    error = normwise(grad, exp_grad, norm / temperature)
    assert error <= tolerance(dtype, kappa, "gradient"), f"{desc}: gradient error {error:.3g}"


def loss_problem(rng: random.Random, generator: torch.Generator, desc: str) -> None:
    n = rng.choice((0, 1, 2, 3)) if rng.random() < 0.05 else rng.randint(4, 300)
    d = rng.choice((1, 2, 3, 5, 8, 16, 33, 64))
    dtype = rng.choice(DTYPES)
    offsets = random_offsets(rng, n)
    num_classes = rng.randint(1, 6)
    labels = torch.randint(0, num_classes, (n,), generator=generator)
    labels[torch.rand(n, generator=generator) < rng.choice((0.0, 0.1, 0.5))] = IGNORE
    z = torch.randn(n, d, generator=generator, dtype=torch.float64)
    if rng.random() < 0.7:
        z = F.normalize(z, dim=1)
    z = (z * rng.choice((1.0, 0.5, 3.0))).to(dtype)
    options = {
        "temperature": math.exp(rng.uniform(math.log(0.05), math.log(2.0))),
        "denominator": rng.choice(("all", "pair")),
        "self_positive": rng.random() < 0.3,
        "anchor_mask": torch.rand(n, generator=generator) < 0.8 if rng.random() < 0.3 else None,
        "contrast_mask": torch.rand(n, generator=generator) < 0.8 if rng.random() < 0.3 else None,
        "image_ids": torch.randint(0, 3, (n,), generator=generator) if rng.random() < 0.3 else None,
    }
    desc += (f" contrastive_loss n={n} d={d} {dtype} offsets={offsets} classes={num_classes} "
             f"temperature={options['temperature']:.4g} {options['denominator']} "
             f"self_positive={options['self_positive']} masks/ids={[options[k] is not None for k in list(options)[3:]]}")
    upstream = torch.randn(n, generator=generator, dtype=torch.float64)
    results = []
    for fn, embeddings in ((pixcon.contrastive_loss, z), (reference.contrastive_loss, z.double())):
        leaf = embeddings.clone().requires_grad_(True)
        loss, valid = fn(leaf, labels, torch.tensor(offsets), **options)
        (loss * upstream.to(loss.dtype)).sum().backward()
        results.append((loss.detach(), valid, leaf.grad))
    compare(desc, dtype, z, options["temperature"], *results)


def module_problem(rng: random.Random, generator: torch.Generator, desc: str) -> None:
    b, d, h, w = rng.randint(1, 3), rng.choice((2, 4, 8)), rng.randint(1, 9), rng.randint(1, 9)
    dtype = rng.choice((torch.float32, torch.float64))
    options = {"temperature": rng.choice((0.07, 0.1, 0.5)), "variant": rng.choice(("image", "batch")),
               "denominator": rng.choice(("all", "pair")), "self_positive": rng.random() < 0.3,
               "reduction": rng.choice(("mean", "anchor_mean", "sum"))}
    x = torch.randn(b, d, h, w, generator=generator, dtype=dtype)
    y = torch.randint(0, rng.randint(1, 4), (b, h, w), generator=generator)
    y[torch.rand(b, h, w, generator=generator) < 0.2] = IGNORE
    desc += f" PixelContrastiveLoss x={tuple(x.shape)} {dtype} {options}"
    leaf = x.clone().requires_grad_(True)
    out = pixcon.nn.PixelContrastiveLoss(**options)(leaf, y)
    out.backward()
    exp_leaf = x.double().clone().requires_grad_(True)
    rows = F.normalize(exp_leaf, dim=1).permute(0, 2, 3, 1).reshape(-1, d)
    offsets = torch.arange(b + 1) * (h * w) if options["variant"] == "image" else torch.tensor([0, b * h * w])
    loss, valid = reference.contrastive_loss(rows, y.reshape(-1), offsets, temperature=options["temperature"],
                                             denominator=options["denominator"],
                                             self_positive=options["self_positive"])
    expected = reference.reduce(loss, valid, offsets, options["reduction"])
    expected.backward()
    compare(desc, dtype, x.new_ones(1, 1), options["temperature"],
            (out.detach().reshape(1), torch.ones(1, dtype=torch.bool), leaf.grad),
            (expected.detach().reshape(1), torch.ones(1, dtype=torch.bool), exp_leaf.grad))


def sampled_problem(rng: random.Random, generator: torch.Generator, desc: str) -> None:
    b, h, w = rng.randint(1, 3), rng.randint(2, 12), rng.randint(2, 12)
    labels = torch.randint(0, rng.randint(1, 4), (b, h, w), generator=generator)
    labels[torch.rand(b, h, w, generator=generator) < 0.1] = IGNORE
    strategy = rng.choice(("uniform", "class_balanced", "hard_easy"))
    rule = {"uniform": {"num_samples": rng.randint(1, 80)},
            "class_balanced": {"min_views": rng.randint(1, 6), "max_views": rng.randint(1, 40),
                               "max_total": rng.randint(0, 120)},
            "hard_easy": {"max_samples": rng.randint(0, 120), "max_views": rng.randint(1, 20)}}[strategy]
    predictions = torch.randint(0, 4, (b, h, w), generator=generator) if strategy == "hard_easy" else None
    seed = rng.getrandbits(64)
    desc += f" sample_pixels labels={tuple(labels.shape)} {strategy} {rule} seed={seed}"
    indices, offsets = pixcon.sample_pixels(labels, strategy, predictions=predictions, seed=seed, **rule)
    flat = labels.reshape(-1)
    assert (flat[indices] != IGNORE).all(), f"{desc}: an ignored pixel was sampled"
    assert int(offsets[0]) == 0 and int(offsets[-1]) == indices.numel(), f"{desc}: offsets {offsets.tolist()}"
    for bag in range(offsets.numel() - 1):
        picked = indices[int(offsets[bag]):int(offsets[bag + 1])]
        assert (picked[1:] > picked[:-1]).all(), f"{desc}: indices not ascending in bag {bag}"
    z = F.normalize(torch.randn(b * h * w, 8, generator=generator), dim=1)[indices]
    results = []
    for fn, embeddings in ((pixcon.contrastive_loss, z), (reference.contrastive_loss, z.double())):
        leaf = embeddings.clone().requires_grad_(True)
        loss, valid = fn(leaf, flat[indices], offsets, temperature=0.1)
        loss.sum().backward()
        results.append((loss.detach(), valid, leaf.grad))
    compare(desc, torch.float32, z, 0.1, *results)


def run_problem(seed: int) -> None:
    """Problem ``seed`` of the soak, on its own: one thread, or two for every sixteenth problem (small
    problems on two threads are slow on a loaded machine; test_threads covers thread counts)."""
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    threads = 2 if seed % 16 == 3 else 1
    desc = f"soak problem seed={seed} threads={threads} (tests/test_soak.py: run_problem({seed}))"
    kind = (module_problem if seed % 10 == 0 else sampled_problem if seed % 10 == 5 else loss_problem)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        kind(rng, generator, desc)
    finally:
        torch.set_num_threads(before)


def test_2000_random_problems_match_the_reference_with_flat_resident_memory():
    baseline = None
    for seed in range(NUM_PROBLEMS):
        run_problem(seed)
        if seed + 1 == WARM_UP:
            baseline = resident_bytes()
    growth = resident_bytes() - baseline
    assert growth <= RSS_GROWTH_LIMIT, f"resident memory grew by {growth / 2 ** 20:.1f} MiB after the warm-up"
