"""What the sampling benchmark measures: ``pixcon.sample_pixels`` against the Python-loop
samplers of ``benchmarks/sampling_baselines.py`` on the same labels.

Workload: B label maps of S x S (default 16 of 129 x 129, the feature size of a 513 x 513 crop
at output stride 4), piecewise constant (an 8 x 8 grid of random classes upsampled by nearest
neighbour, so each image holds a dozen or so classes in blobs), ~10 % of the pixels
``ignore_index``; predictions are the labels with ~30 % of the pixels moved to another class
(the hard pixels of ``hard_easy``). Each strategy runs with the spec's default parameters.
"""

from __future__ import annotations

import statistics
from typing import Any, Callable, Dict, List, Tuple

from .timing import timed_call

STRATEGIES = ("uniform", "class_balanced", "hard_easy")
IMPLS = ("pixcon", "baseline")
BATCH = 16
SIZE = 129
CLASSES = 19
GRID = 8
IGNORE_INDEX = 255
IGNORE_FRACTION = 0.10
WRONG_FRACTION = 0.30
#: the rule parameters of every strategy: the spec's defaults, spelled out so the JSON shows them
RULE_PARAMETERS: Dict[str, Dict[str, int]] = {
    "uniform": {"num_samples": 10000},
    "class_balanced": {"min_views": 5, "max_views": 2500, "max_total": 10000},
    "hard_easy": {"max_samples": 1024, "max_views": 100},
}

Sampler = Callable[[int], Tuple[Any, Any]]  # seed -> (indices, bag_offsets)


def make_workload(batch: int, size: int, classes: int, seed: int, device: str):
    """Label maps ``[batch, size, size]`` (int64) and predictions of the same shape."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, classes, (batch, 1, GRID, GRID), generator=g).float()
    labels = F.interpolate(coarse, size=(size, size), mode="nearest")[:, 0].long()
    shift = torch.randint(1, max(classes, 2), labels.shape, generator=g)
    predictions = torch.where(torch.rand(labels.shape, generator=g) < WRONG_FRACTION,
                              (labels + shift) % classes, labels)
    ignored = torch.rand(labels.shape, generator=g) < IGNORE_FRACTION
    labels[ignored] = IGNORE_INDEX
    predictions[ignored] = torch.randint(0, classes, (int(ignored.sum()),), generator=g)
    return labels.to(device), predictions.to(device)


def make_sampler(impl: str, strategy: str, labels, predictions, classes: int) -> Sampler:
    """``run(seed) -> (indices, bag_offsets)`` of ``impl`` for ``strategy``: pixcon's counter-
    based seed, or a torch generator on the labels' device seeded with it for the baseline."""
    params = RULE_PARAMETERS[strategy]
    common = dict(predictions=predictions if strategy == "hard_easy" else None,
                  ignore_index=IGNORE_INDEX, num_classes=classes, **params)
    if impl == "pixcon":
        import pixcon

        return lambda seed: pixcon.sample_pixels(labels, strategy, seed=seed, **common)
    import torch

    import sampling_baselines

    gen = torch.Generator(device=labels.device)
    return lambda seed: sampling_baselines.sample_pixels(labels, strategy,
                                                         generator=gen.manual_seed(seed), **common)


def time_sampler(run: Sampler, device: str, warmup: int, repeats: int) -> Dict[str, Any]:
    """The median, fastest and every time of ``repeats`` calls after ``warmup`` ones, the
    number of selected pixels and the bag sizes of the last call."""
    cuda = device.startswith("cuda")
    times: List[float] = []
    out = None
    for it in range(warmup + repeats):
        t, out = timed_call(lambda: run(it), cuda)
        if it >= warmup:
            times.append(t)
    indices, offsets = out
    return {"median_s": statistics.median(times), "min_s": min(times), "times_s": times,
            "selected": int(indices.numel()), "bag_sizes": offsets.diff().cpu().tolist()}
