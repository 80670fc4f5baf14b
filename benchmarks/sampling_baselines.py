"""Plain-PyTorch pixel samplers, written the way public segmentation code does it.

These are the baselines of ``benchmarks/sampling_throughput.py``: the three rules of
``pixcon.sample_pixels`` implemented with Python loops over images and classes, ``nonzero`` and
``torch.randperm`` (the style of ContrastiveSeg's hard-anchor sampling, of the class-balanced
sampler of Pissas et al. and of the per-image / per-batch uniform sampling of Zhao et al.), written
from the rules below, not copied from any project.

``sample_pixels`` takes the same inputs as ``pixcon.sample_pixels`` (``labels [B, H, W]``
integers, ``ignore_index``, ``num_classes``, ``per_image``, the rule's parameters) plus an
optional ``torch.Generator`` on the labels' device in place of the seed. Each rule function takes
the labels, a :class:`Draw` and the rule's parameters:

* ``labels``: ``[B, H, W]`` integer class per pixel;
* ``per_image`` (``uniform`` only): one bag per image (True) or one bag for the whole batch; the
  other rules always return one bag;
* ``Draw.ignore_index``: label of pixels that are never sampled;
* ``Draw.num_classes``: labels must lie in ``[0, num_classes)`` (None: max label + 1);
* ``Draw.generator``: torch RNG on the labels' device (None: the default generator);

and returns the same format:

* ``indices``: int64 ``[M]``, flat row indices into ``B * H * W``, ascending within each bag (and
  overall, since bags are ordered by image or there is only one);
* ``bag_offsets``: int64 ``[num_bags + 1]`` CSR offsets of the bags into ``indices``.

They draw from torch's RNG, so they follow the same rule as pixcon (the same number of pixels from
every group) but do not pick the same pixels.

Rules (those of ``pixcon.sample_pixels``):

* ``uniform(num_samples)``: ``min(num_samples, #valid)`` valid pixels (label != ignore_index) per
  bag, without replacement; one bag per image (``per_image``) or one for the batch.
* ``class_balanced(min_views, max_views, max_total)``: the (image, class) pairs with at least
  ``min_views`` valid pixels qualify; ``V = min(smallest qualifying count, max_views,
  max_total // #qualifying)``; ``V`` pixels from each qualifying pair; one bag.
* ``hard_easy(max_samples, max_views)``: the (image, class) pairs with more than ``max_views``
  pixels qualify; ``n = min(max_samples // #qualifying, max_views)``; hard = prediction != label,
  easy = prediction == label; with ``h``, ``e`` the hard and easy counts: if ``2h >= n`` and
  ``2e >= n``: ``n // 2`` hard and ``n - n // 2`` easy; elif ``2h >= n``: all ``e`` easy and
  ``n - e`` hard; else all ``h`` hard and ``n - h`` easy; one bag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch import Tensor

__all__ = ["BASELINES", "Draw", "class_balanced", "hard_easy", "sample_pixels", "uniform"]

Result = Tuple[Tensor, Tensor]


@dataclass(frozen=True)
class Draw:
    """What every rule shares: the ignored label, the number of classes, the RNG."""

    ignore_index: int = 255
    num_classes: Optional[int] = None
    generator: Optional[torch.Generator] = None


def _check_labels(labels: Tensor, ignore_index: int, num_classes: Optional[int]) -> int:
    """Validates ``labels [B, H, W]`` and returns the number of classes (max label + 1 when
    ``num_classes`` is None)."""
    if labels.dim() != 3:
        raise ValueError(f"labels must be [B, H, W], got shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
    valid = labels[labels != ignore_index]
    if num_classes is None:
        num_classes = int(valid.max()) + 1 if valid.numel() else 0
    if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= num_classes):
        raise ValueError(f"labels: values outside [0, {num_classes}) other than ignore_index")
    return num_classes


def _flatten(labels: Tensor, ignore_index: int, num_classes: Optional[int]) -> Tuple[Tensor, int]:
    """Validates ``labels [B, H, W]`` and returns them as ``[B, H * W]`` rows and ``H * W``
    (image ``i``'s flat indices start at ``i * H * W``)."""
    _check_labels(labels, ignore_index, num_classes)
    b, h, w = labels.shape
    return labels.reshape(b, h * w), h * w


def _image_classes(flat: Tensor, ignore_index: int) -> Iterator[Tuple[int, int, Tensor]]:
    """``(image, class, row)`` for every class present in every image (``row``: that image's
    labels), the per-image, per-class Python loop of the public samplers."""
    for image in range(flat.shape[0]):
        row = flat[image]
        for c in torch.unique(row).tolist():
            if c != ignore_index:
                yield image, c, row


def _randperm(n: int, generator: Optional[torch.Generator], device: torch.device) -> Tensor:
    return torch.randperm(n, generator=generator, device=device)


def _take(candidates: Tensor, k: int, generator: Optional[torch.Generator]) -> Tensor:
    """``k`` of the ``candidates`` (a 1-D index tensor) uniformly at random without replacement,
    or all of them when there are not more than ``k``."""
    if candidates.numel() <= k:
        return candidates
    return candidates[_randperm(candidates.numel(), generator, candidates.device)[:k]]


def _finish(chunks: List[Tensor], bag_sizes: List[int], device: torch.device) -> Result:
    """Concatenates the selected indices, sorts them ascending and builds the bag offsets
    (bags are contiguous ranges of images, so one global sort keeps every bag sorted)."""
    if chunks:
        indices = torch.sort(torch.cat(chunks)).values
    else:
        indices = torch.zeros(0, dtype=torch.int64, device=device)
    offsets = torch.zeros(len(bag_sizes) + 1, dtype=torch.int64)
    if bag_sizes:
        offsets[1:] = torch.cumsum(torch.tensor(bag_sizes, dtype=torch.int64), 0)
    return indices, offsets.to(device)


def uniform(labels: Tensor, draw: Draw = Draw(), *, num_samples: int = 10000,
            per_image: bool = True) -> Result:
    """Uniform sampling of Zhao et al.: ``min(num_samples, #valid)`` valid pixels per image
    (``per_image``) or per batch, without replacement.

    Args:
        num_samples: pixels per bag.
        labels, draw, per_image: see the module docstring.

    Returns:
        ``(indices, bag_offsets)``, see the module docstring.
    """
    flat, hw = _flatten(labels, draw.ignore_index, draw.num_classes)
    if per_image:
        chunks, sizes = [], []
        for image in range(flat.shape[0]):
            valid = (flat[image] != draw.ignore_index).nonzero().squeeze(1)
            chosen = _take(valid, num_samples, draw.generator) + image * hw
            chunks.append(chosen)
            sizes.append(int(chosen.numel()))
        return _finish(chunks, sizes, labels.device)
    valid = (flat.reshape(-1) != draw.ignore_index).nonzero().squeeze(1)
    chosen = _take(valid, num_samples, draw.generator)
    return _finish([chosen], [int(chosen.numel())], labels.device)


def class_balanced(labels: Tensor, draw: Draw = Draw(), *, min_views: int = 5,
                   max_views: int = 2500, max_total: int = 10000) -> Result:
    """Class-balanced sampling in the style of Pissas et al.: the same number ``V`` of pixels
    from every (image, class) pair that has at least ``min_views`` pixels, with
    ``V = min(smallest qualifying count, max_views, max_total // #qualifying)``; one bag.

    Args:
        min_views: pixels a pair needs to take part.
        max_views: upper bound on ``V``.
        max_total: upper bound on the total, ``V * #qualifying``.
        labels, draw: see the module docstring.

    Returns:
        ``(indices, bag_offsets)`` with one bag.
    """
    flat, hw = _flatten(labels, draw.ignore_index, draw.num_classes)
    # pass 1: the candidate pixels of every (image, class) pair present in the image
    pairs: List[Tensor] = []
    for image, c, row in _image_classes(flat, draw.ignore_index):
        idx = (row == c).nonzero().squeeze(1)
        if idx.numel() >= min_views:
            pairs.append(idx + image * hw)
    if not pairs:
        return _finish([], [0], labels.device)
    smallest = min(int(p.numel()) for p in pairs)
    views = min(smallest, max_views, max_total // len(pairs))
    # pass 2: V random pixels of each qualifying pair
    chunks = [_take(p, views, draw.generator) for p in pairs] if views > 0 else []
    return _finish(chunks, [views * len(pairs)], labels.device)


def _split(n: int, hard: int, easy: int) -> Tuple[int, int]:
    """ContrastiveSeg's split of ``n`` views between ``hard`` and ``easy`` candidates: the test
    ``count >= n / 2`` is in real division, i.e. ``2 * count >= n``."""
    if 2 * hard >= n and 2 * easy >= n:
        return n // 2, n - n // 2
    if 2 * hard >= n:
        return n - easy, easy
    return hard, n - hard


def hard_easy(labels: Tensor, predictions: Tensor, draw: Draw = Draw(), *,
              max_samples: int = 1024, max_views: int = 100) -> Result:
    """Hard/easy anchor sampling in the style of ContrastiveSeg: every (image, class) pair with
    more than ``max_views`` pixels takes ``n = min(max_samples // #qualifying, max_views)``
    pixels, split between hard (prediction != label) and easy (prediction == label) pixels by
    :func:`_split`; one bag.

    Args:
        predictions: ``[B, H, W]`` predicted class per pixel.
        max_samples: total budget, shared equally by the qualifying pairs.
        max_views: pixels a pair needs more than, and the most it takes.
        labels, draw: see the module docstring.

    Returns:
        ``(indices, bag_offsets)`` with one bag.
    """
    flat, hw = _flatten(labels, draw.ignore_index, draw.num_classes)
    if predictions is None or predictions.shape != labels.shape:
        raise ValueError("predictions must be a [B, H, W] tensor like labels")
    flat_pred = predictions.reshape(flat.shape)
    # pass 1: the qualifying (image, class) pairs
    qualifying: List[Tuple[int, int]] = [
        (image, c) for image, c, row in _image_classes(flat, draw.ignore_index)
        if int((row == c).sum()) > max_views]
    if not qualifying:
        return _finish([], [0], labels.device)
    n = min(max_samples // len(qualifying), max_views)
    # pass 2: split n between the hard and easy pixels of each pair
    chunks: List[Tensor] = []
    for image, c in qualifying:
        row, pred = flat[image], flat_pred[image]
        is_class = row == c
        hard_idx = (is_class & (pred != c)).nonzero().squeeze(1)
        easy_idx = (is_class & (pred == c)).nonzero().squeeze(1)
        num_hard, num_easy = _split(n, int(hard_idx.numel()), int(easy_idx.numel()))
        chunks.append(_take(hard_idx, num_hard, draw.generator) + image * hw)
        chunks.append(_take(easy_idx, num_easy, draw.generator) + image * hw)
    return _finish(chunks, [n * len(qualifying)], labels.device)


#: strategy name -> baseline function (hard_easy takes ``predictions`` as second argument)
BASELINES: Dict[str, Callable[..., Result]] = {
    "uniform": uniform,
    "class_balanced": class_balanced,
    "hard_easy": hard_easy,
}


def sample_pixels(
    labels: Tensor,
    strategy: str,
    *,
    predictions: Optional[Tensor] = None,
    ignore_index: int = 255,
    per_image: bool = True,
    num_classes: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    **rule_parameters: int,
) -> Result:
    """Dispatches to the baseline of ``strategy`` with the calling convention of
    ``pixcon.sample_pixels`` (``generator`` in place of ``seed``)."""
    if strategy not in BASELINES:
        raise ValueError(f"strategy: unknown {strategy!r}; choose from {sorted(BASELINES)}")
    draw = Draw(ignore_index, num_classes, generator)
    if strategy == "uniform":
        return uniform(labels, draw, per_image=per_image, **rule_parameters)
    if strategy == "hard_easy":
        if predictions is None:
            raise ValueError("predictions are required by strategy 'hard_easy'")
        return hard_easy(labels, predictions, draw, **rule_parameters)
    return BASELINES[strategy](labels, draw, **rule_parameters)
