"""Pixel sampling: which pixels of a label map become rows of the contrastive loss.

Thin over ``torch.ops.pixcon.sample_pixels`` (C and CUDA kernels). The rules are those of the
public code: uniform (Zhao et al.), class-balanced (Pissas et al.) and hard/easy (ContrastiveSeg);
randomness is counter-based (Philox keyed by the seed and the pixel's flat index), so a seed
gives the same pixels on CPU and GPU and with any number of threads.
"""

from __future__ import annotations

import numbers
from typing import Any, Literal, Mapping, Optional

import torch
from torch import Tensor

from ._library import call_op
from .bags import Bags
from .rows import PixelRows, resize_classes

Strategy = Literal["uniform", "class_balanced", "hard_easy"]

# Rule parameters of each strategy and their defaults (the public code's values).
RULE_DEFAULTS: dict[str, dict[str, int]] = {
    "uniform": {"num_samples": 10000},
    "class_balanced": {"min_views": 5, "max_views": 2500, "max_total": 10000},
    "hard_easy": {"max_samples": 1024, "max_views": 100},
}

_SEED_MODULUS = 1 << 64


def _rule(strategy: str, parameters: Mapping[str, Any]) -> dict[str, int]:
    if strategy not in RULE_DEFAULTS:
        raise ValueError(
            f"pixcon.sample_pixels: strategy must be one of {list(RULE_DEFAULTS)}, got {strategy!r}")
    defaults = RULE_DEFAULTS[strategy]
    unknown = sorted(set(parameters) - set(defaults))
    if unknown:
        raise ValueError(
            f"pixcon.sample_pixels: unknown parameter(s) {unknown} for strategy {strategy!r}; "
            f"it takes {sorted(defaults)}")
    rule = dict(defaults)
    for name, value in parameters.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"pixcon.sample_pixels: {name} must be an int, got {value!r}")
        rule[name] = value
    return rule


def _num_classes(labels: Tensor, ignore_index: int) -> int:
    if labels.numel() == 0:
        return 0
    return int(torch.where(labels != ignore_index, labels, -1).max().item()) + 1


def _as_signed_seed(seed: int) -> int:
    """The op takes an int64; seeds are 64-bit unsigned values taken modulo 2^64."""
    seed %= _SEED_MODULUS
    return seed - _SEED_MODULUS if seed >= 1 << 63 else seed


def sample_pixels(
    labels: Tensor,
    strategy: Strategy,
    *,
    predictions: Tensor | None = None,
    ignore_index: int = 255,
    seed: int | None = 0,
    per_image: bool = True,
    num_classes: int | None = None,
    **rule_parameters: int,
) -> tuple[Tensor, Tensor]:
    """Samples pixels of ``labels`` [B, H, W] for the contrastive loss.

    Strategies and their parameters (defaults in brackets):
      - ``"uniform"`` (num_samples [10000]): that many valid pixels per bag without replacement,
        or all of them when fewer; one bag per image (``per_image``) or one for the batch.
      - ``"class_balanced"`` (min_views [5], max_views [2500], max_total [10000]): (image, class)
        pairs with at least min_views pixels qualify; each gives exactly
        V = min(smallest qualifying count, max_views, max_total // #qualifying) pixels.
      - ``"hard_easy"`` (max_samples [1024], max_views [100]; needs ``predictions``, the
        predicted class per pixel [B, H, W]): (image, class) pairs with more than max_views
        pixels qualify; each gives n = min(max_samples // #qualifying, max_views), half hard
        (predicted != label) and half easy, topping up from the other side when one is short.
    ``class_balanced`` and ``hard_easy`` return one bag holding every sampled pixel.

    Args:
        labels: integer [B, H, W]; pixels equal to ``ignore_index`` are never sampled.
        num_classes: labels other than ``ignore_index`` must lie in [0, num_classes); None
            means the largest such label + 1 (one host synchronisation), or, for "uniform",
            only that labels are >= 0.
        seed: any integer (taken modulo 2^64); the same seed gives the same pixels on every
            device and thread count. None draws one from torch's default CPU generator (so
            ``torch.manual_seed`` makes it reproducible, compiled or not).

    Returns:
        (indices, bag_offsets): int64 flat indices into B*H*W, ascending within each bag, and
        int64 CSR offsets [num_bags + 1], both on ``labels``' device, ready for
        ``pixcon.contrastive_loss(rows[indices], labels.flatten()[indices], bag_offsets)``.
        When nothing qualifies, indices is empty.
    """
    rule = _rule(strategy, rule_parameters)
    if not isinstance(labels, Tensor):
        raise TypeError(f"pixcon.sample_pixels: labels must be a tensor [B, H, W], got {type(labels).__name__}")
    if labels.dim() != 3:
        raise ValueError("pixcon.sample_pixels: labels must be a 3-D tensor [B, H, W]")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"pixcon.sample_pixels: labels must be an integer tensor, got {labels.dtype}")
    # int() would accept "3" and truncate 1.5
    for name, value in (("ignore_index", ignore_index), ("seed", seed), ("num_classes", num_classes)):
        if value is None and name != "ignore_index":
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"pixcon.sample_pixels: {name} must be an int, got {value!r}")
    if strategy == "hard_easy":
        if predictions is None:
            raise ValueError('pixcon.sample_pixels: strategy "hard_easy" needs predictions [B, H, W]')
        if not isinstance(predictions, Tensor):
            raise TypeError(f"pixcon.sample_pixels: predictions must be a tensor, got {type(predictions).__name__}")
        if predictions.shape != labels.shape:
            raise ValueError(
                f"pixcon.sample_pixels: predictions must have the shape of labels {tuple(labels.shape)}, "
                f"got {tuple(predictions.shape)}")
    # uniform needs no classes: 0 leaves labels unbounded above; -1 asks for the largest label + 1
    infer_classes = num_classes is None and strategy != "uniform"
    arguments = (
        labels, predictions if strategy == "hard_easy" else None, strategy,
        -1 if infer_classes else int(num_classes or 0), int(ignore_index),
        0 if seed is None else _as_signed_seed(int(seed)), bool(per_image),
        rule.get("num_samples", 0), rule.get("min_views", 1), rule.get("max_views", 1),
        rule.get("max_total", 0), rule.get("max_samples", 0),
    )
    if infer_classes or seed is None:
        return _sample_pixels_resolving(*arguments, draw_seed=seed is None)
    return call_op(torch.ops.pixcon.sample_pixels.default, *arguments)


def _draw_seed() -> int:
    return int(torch.randint(0, 1 << 62, (1,)).item())


# A seed drawn from torch's generator and a class count read from the labels are values of the
# data, which the sampling op takes as plain ints: traced by torch.compile they would be guarded
# on, or drawn by the compiler's own generator. This op resolves them when it runs (eagerly, also
# inside a compiled graph), so a compiled loss samples the pixels the eager one does under the same
# torch.manual_seed.
@torch.library.custom_op("pixcon::sample_pixels_resolving", mutates_args=())
def _sample_pixels_resolving(
    labels: Tensor, predictions: Optional[Tensor], strategy: str, num_classes: int, ignore_index: int,
    seed: int, per_image: bool, num_samples: int, min_views: int, max_views: int, max_total: int,
    max_samples: int, draw_seed: bool,
) -> tuple[Tensor, Tensor]:
    """``pixcon::sample_pixels`` with ``num_classes`` -1 meaning the largest label + 1 and
    ``draw_seed`` a seed drawn from torch's default generator."""
    if num_classes < 0:
        num_classes = _num_classes(labels, ignore_index)
    if draw_seed:
        seed = _draw_seed()
    return call_op(torch.ops.pixcon.sample_pixels.default, labels, predictions, strategy, num_classes,
                   ignore_index, seed, per_image, num_samples, min_views, max_views, max_total, max_samples)


def _sampled_like(labels: Tensor, strategy: str, per_image: bool) -> tuple[Tensor, Tensor]:
    """Fake outputs of the sampling ops: indices of a data-dependent count, and the offsets."""
    torch._check(labels.dim() == 3, lambda: "pixcon.sample_pixels: labels must be 3-D [B, H, W]")
    num_bags = labels.shape[0] if strategy == "uniform" and per_image else 1
    count = torch.library.get_ctx().new_dynamic_size()
    return (labels.new_empty((count,), dtype=torch.int64), labels.new_empty((num_bags + 1,), dtype=torch.int64))


@_sample_pixels_resolving.register_fake
def _sample_pixels_resolving_fake(labels, predictions, strategy, num_classes, ignore_index, seed, per_image,
                                  *rule_and_draw):
    return _sampled_like(labels, strategy, per_image)


@torch.library.register_fake("pixcon::sample_pixels")
def _sample_pixels_fake(labels, predictions, strategy, num_classes, ignore_index, seed, per_image, *rule):
    return _sampled_like(labels, strategy, per_image)


class PixelSampler:
    """A sampling strategy with its parameters, for ``PixelContrastiveLoss(sampler=...)``.

    With ``seed=None`` each call draws a fresh seed from torch's default CPU generator, so the
    pixels change every step yet are reproducible under ``torch.manual_seed``; an int seed
    gives the same pixels on every call.
    """

    def __init__(self, strategy: Strategy, *, seed: int | None = None, per_image: bool = True,
                 num_classes: int | None = None, **rule_parameters: int) -> None:
        self.rule = _rule(strategy, rule_parameters)
        self.strategy = strategy
        self.seed = seed
        self.per_image = bool(per_image)
        self.num_classes = num_classes

    @classmethod
    def from_config(cls, config: PixelSampler | Mapping[str, Any]) -> PixelSampler:
        """A sampler, or a dict ``{"strategy": ..., **parameters}``, as a PixelSampler."""
        if isinstance(config, PixelSampler):
            return config
        if not isinstance(config, Mapping) or "strategy" not in config:
            raise (ValueError if isinstance(config, Mapping) else TypeError)(
                'pixcon: a sampler is a PixelSampler or a dict with a "strategy" key, '
                f"got {config!r}")
        options = dict(config)
        return cls(options.pop("strategy"), **options)

    @property
    def uses_predictions(self) -> bool:
        """Whether the strategy reads the predicted classes (only "hard_easy" does)."""
        return self.strategy == "hard_easy"

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.rule.items())
        return f"PixelSampler({self.strategy!r}, seed={self.seed}, per_image={self.per_image}, {params})"

    def select(self, pixels: PixelRows, predictions: Tensor | None, ignore_index: int, *,
               with_images: bool = False) -> Bags:
        """The bags of the pixels this sampler picks from ``pixels`` (``predictions`` [B, H, W]
        are resized to the pixels' size, by the labels' rule, when the strategy reads them)."""
        if predictions is not None and self.uses_predictions:
            predictions = resize_classes(predictions, pixels.image_size, pixels.align_corners)
        indices, offsets = self(pixels.label_map, predictions, ignore_index)
        images = indices // pixels.pixels_per_image if with_images else None
        return Bags(pixels.rows[indices], pixels.labels[indices], offsets, images=images)

    def __call__(self, labels: Tensor, predictions: Tensor | None = None,
                 ignore_index: int = 255) -> tuple[Tensor, Tensor]:
        return sample_pixels(labels, self.strategy, predictions=predictions, ignore_index=ignore_index,
                             seed=self.seed, per_image=self.per_image, num_classes=self.num_classes,
                             **self.rule)
