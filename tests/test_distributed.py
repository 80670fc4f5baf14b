"""PixelContrastiveLoss(gather=True) under torch.distributed: two processes on the gloo backend
against one process holding the concatenated batch (float64, 1e-10).

One spawn of two workers runs every scenario (spawning costs an interpreter, torch and pixcon
per process) and saves each result as soon as it is computed; the tests then judge one scenario
each. The scenarios with an empty rank run last, so if one hangs the others are already saved;
the workers run under a join deadline and a short gloo timeout, and a hang fails the test.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import pixcon.nn
from conftest import IGNORE, assert_close_f64

WORLD = 2
SPLIT = (2, 1)  # images per rank: unequal row counts exercise the padding
DEADLINE_S = 300.0
GLOO_TIMEOUT_S = 120.0
NUM_CLASSES = 3
DIM = 4
BANK = dict(num_classes=NUM_CLASSES, size_per_class=7, dim=DIM, segment_size_per_class=2, dtype=torch.float64)

BATCH_CASES = [(reduction, denominator)
               for reduction in ("mean", "anchor_mean", "image_mean", "row_mean", "sum", "none")
               for denominator in ("all", "pair")]


def batch(seed: int, ignore_all: bool = False):
    """The full batch [3, D, 4, 5] and its labels (about 15% ignored)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(sum(SPLIT), DIM, 4, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, NUM_CLASSES, (sum(SPLIT), 4, 5), generator=g)
    y[torch.rand(y.shape, generator=g) < 0.15] = IGNORE
    if ignore_all:
        y[:] = IGNORE
    return x, y


def rank_slice(rank: int) -> slice:
    start = sum(SPLIT[:rank])
    return slice(start, start + SPLIT[rank])


def upstream_for(loss: torch.Tensor, seed: int = 5) -> torch.Tensor:
    return torch.randn(loss.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def run_steps(module, inputs, rows=None):
    """Forward + backward of ``module`` for each (x, y): (loss, grad of x[rows]) per step, with
    ``rows`` the local images (None: all). Reduction "none" backprops against a fixed upstream
    vector of the full batch (sliced to the local rows)."""
    out = []
    for x, y in inputs:
        x = x.clone().requires_grad_(True)
        xs, ys = (x, y) if rows is None else (x[rows], y[rows])
        loss = module(xs, ys)
        if loss.dim():
            g = upstream_for(torch.empty(x.shape[0] * x.shape[2] * x.shape[3]))
            if rows is not None:
                g = g.reshape(x.shape[0], -1)[rows].reshape(-1)
            (loss * g).sum().backward()
        else:
            loss.backward()
        grad = x.grad if rows is None else x.grad[rows]
        out.append((loss.detach(), grad.detach()))
    return out


def scenario_module(name: str, gather: bool, bank: bool = False):
    if name.startswith("batch_"):
        _, reduction, denominator = name.split("_", 2)
        reduction = reduction.replace("-", "_")
        return pixcon.nn.PixelContrastiveLoss(variant="batch", reduction=reduction, denominator=denominator,
                                              gather=gather)
    if name == "sampler_uniform_one_bag":
        if not gather:  # every valid pixel is sampled: the batch variant on one process
            return pixcon.nn.PixelContrastiveLoss(variant="batch", reduction="mean")
        sampler = {"strategy": "uniform", "per_image": False, "num_samples": 10**6, "seed": 3}
        return pixcon.nn.PixelContrastiveLoss(sampler=sampler, reduction="mean", gather=True)
    if name == "memory_bank":
        return pixcon.nn.PixelContrastiveLoss(
            variant="batch", denominator="pair", gather=gather, memory_bank=pixcon.nn.PixelMemoryBank(**BANK))
    if name in ("empty_rank", "all_empty"):
        return pixcon.nn.PixelContrastiveLoss(variant="batch", reduction="mean", gather=gather)
    raise KeyError(name)


def scenario_inputs(name: str, rank: int | None = None):
    """The full-batch inputs of each step; for "empty_rank", rank 1's images are all ignore."""
    if name == "memory_bank":
        return [batch(20 + step) for step in range(3)]
    if name == "empty_rank":
        x, y = batch(30)
        y[rank_slice(1)] = IGNORE
        return [(x, y)]
    if name == "all_empty":
        return [batch(31, ignore_all=True)]
    return [batch(10 + sum(map(ord, name)) % 7)]  # deterministic in every process (unlike hash)


SCENARIOS = [f"batch_{r.replace('_', '-')}_{d}" for r, d in BATCH_CASES] + [
    "sampler_uniform_one_bag", "memory_bank", "empty_rank", "all_empty"]


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=GLOO_TIMEOUT_S))
    try:
        for name in SCENARIOS:
            module = scenario_module(name, gather=True)
            steps = run_steps(module, scenario_inputs(name), rows=rank_slice(rank))
            result = {"steps": steps}
            if module.memory_bank is not None:
                result["bank"] = {k: v.clone() for k, v in module.memory_bank.state_dict().items()}
            torch.save(result, os.path.join(out_dir, f"{name}.rank{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Runs every scenario on two gloo ranks; returns (out_dir, error or None)."""
    out = tmp_path_factory.mktemp("gather")
    init_file = out / "init"
    context = mp.start_processes(_worker, args=(str(init_file), str(out)), nprocs=WORLD, join=False,
                                 start_method="spawn")
    deadline = time.monotonic() + DEADLINE_S
    error = None
    try:
        while not context.join(timeout=1.0):
            if time.monotonic() > deadline:
                error = f"the two ranks did not finish within {DEADLINE_S:.0f} s (hang)"
                break
    except Exception as exc:  # a worker raised (e.g. a gloo timeout)
        error = f"a rank failed: {exc}"
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
                process.join(5)
    return out, error


def load(out: pathlib.Path, name: str, error):
    results = []
    for rank in range(WORLD):
        path = out / f"{name}.rank{rank}.pt"
        if not path.exists():
            pytest.fail(f"scenario {name!r}: no result from rank {rank} ({error or 'no error reported'})")
        results.append(torch.load(path))
    return results


def single_process(name: str):
    return run_steps(scenario_module(name, gather=False), scenario_inputs(name))


def check_against_single_process(name: str, results) -> None:
    """Sum over ranks of the losses (or the concatenated per-row losses for "none") and each
    rank's gradient of its local images equal the single process's."""
    expected = single_process(name)
    for step, (exp_loss, exp_grad) in enumerate(expected):
        losses = [r["steps"][step][0] for r in results]
        if exp_loss.dim():
            assert_close_f64(torch.cat(losses), exp_loss)
        else:
            assert_close_f64(sum(losses), exp_loss)
        for rank, r in enumerate(results):
            assert_close_f64(r["steps"][step][1], exp_grad[rank_slice(rank)])


@pytest.mark.parametrize("reduction,denominator", BATCH_CASES)
def test_gather_loss_and_gradients_equal_one_process_on_the_concatenated_batch(two_ranks, reduction, denominator):
    out, error = two_ranks
    name = f"batch_{reduction.replace('_', '-')}_{denominator}"
    check_against_single_process(name, load(out, name, error))


def test_gather_with_one_bag_sampler_equals_one_process(two_ranks):
    out, error = two_ranks
    check_against_single_process("sampler_uniform_one_bag", load(out, "sampler_uniform_one_bag", error))


def test_gather_with_memory_bank_equals_one_process_over_several_steps(two_ranks):
    out, error = two_ranks
    check_against_single_process("memory_bank", load(out, "memory_bank", error))


def test_gather_keeps_the_memory_banks_of_all_ranks_identical(two_ranks):
    out, error = two_ranks
    banks = [r["bank"] for r in load(out, "memory_bank", error)]
    assert banks[0].keys() == banks[1].keys()
    for key in banks[0]:
        assert torch.equal(banks[0][key], banks[1][key]), key
    # ... and equal to the bank of one process fed the concatenated batch
    module = scenario_module("memory_bank", gather=False)
    run_steps(module, scenario_inputs("memory_bank"))
    assert int(module.memory_bank.count.sum()) > 0
    for key, value in module.memory_bank.state_dict().items():
        assert_close_f64(banks[0][key].double(), value.double())


def test_rank_whose_batch_is_all_ignore_does_not_hang_and_matches_one_process(two_ranks):
    out, error = two_ranks
    results = load(out, "empty_rank", error)
    check_against_single_process("empty_rank", results)
    assert (results[1]["steps"][0][1] == 0).all()


def test_every_rank_empty_gives_attached_zero_without_hanging(two_ranks):
    out, error = two_ranks
    results = load(out, "all_empty", error)
    assert error is None, error
    for r in results:
        loss, grad = r["steps"][0]
        assert loss.item() == 0.0 and (grad == 0).all()


@pytest.mark.parametrize("config", [
    dict(variant="image"),
    dict(variant="blocks", block_size=(2, 2)),
    dict(sampler={"strategy": "uniform", "per_image": True}),
])
def test_gather_with_per_image_bags_raises(config):
    with pytest.raises(ValueError, match="one batch-wide bag"):
        pixcon.nn.PixelContrastiveLoss(gather=True, **config)


@pytest.mark.parametrize("config", [
    dict(variant="batch"),
    dict(sampler={"strategy": "class_balanced"}),
    dict(sampler={"strategy": "hard_easy"}),
    dict(sampler={"strategy": "uniform", "per_image": False}),
])
def test_gather_with_one_bag_is_accepted(config):
    assert pixcon.nn.PixelContrastiveLoss(gather=True, **config).gather


@pytest.mark.parametrize("reduction", ["mean", "anchor_mean", "image_mean", "row_mean", "sum", "none"])
def test_gather_without_process_group_equals_no_gather(reduction):
    assert not dist.is_initialized()
    x, y = batch(40)
    plain = run_steps(pixcon.nn.PixelContrastiveLoss(variant="batch", reduction=reduction), [(x, y)])
    gathered = run_steps(pixcon.nn.PixelContrastiveLoss(variant="batch", reduction=reduction, gather=True), [(x, y)])
    assert_close_f64(gathered[0][0], plain[0][0])
    assert_close_f64(gathered[0][1], plain[0][1])
