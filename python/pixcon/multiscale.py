"""Multi-scale and cross-scale pixel contrastive loss (Pissas et al., ECCV 2022)."""

from __future__ import annotations

import numbers
import operator
from typing import Any, Iterable, Mapping, Sequence


import torch
from torch import Tensor, nn

from .bags import Bags
from .heads import ProjectionHead
from .options import Denominator, HasLossOptions, LossOptions, check_count, check_positive, check_reduction
from .reduction import reduce_bags
from .rows import check_maps, pixel_rows
from .sampling import PixelSampler

__all__ = ["MultiScaleContrastiveLoss", "merge_bags"]

DEFAULT_SAMPLER: dict[str, Any] = {"strategy": "class_balanced"}


def _floats(name: str, values: Any) -> list[float]:
    """``values`` as a list of floats, or a TypeError naming ``name`` (float() would name nothing)."""
    if not isinstance(values, (str, bytes)) and isinstance(values, Iterable):
        values = list(values)
        if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
            return [float(v) for v in values]
    raise TypeError(f"MultiScaleContrastiveLoss: {name} must be a list of numbers, got {values!r}")


def merge_bags(first: Tensor, first_offsets: Tensor, second: Tensor, second_offsets: Tensor
               ) -> tuple[Tensor, Tensor, Tensor]:
    """Bag b of the result holds bag b of ``first`` [n1, ...] followed by bag b of ``second``
    [n2, ...] (both CSR offsets with the same number of bags).

    Returns (rows, offsets, from_first): the merged rows, their offsets and a bool [n1 + n2]
    that is True for the rows taken from ``first``.
    """
    if first_offsets.shape != second_offsets.shape:
        raise ValueError("pixcon.merge_bags: both sides must have the same number of bags, got offsets "
                         f"of shapes {tuple(first_offsets.shape)} and {tuple(second_offsets.shape)}")
    device = first.device
    n1, n2 = first.shape[0], second.shape[0]
    num_bags = first_offsets.shape[0] - 1
    bags = torch.arange(num_bags, device=device)
    bag1 = torch.repeat_interleave(bags, first_offsets[1:] - first_offsets[:-1], output_size=n1)
    bag2 = torch.repeat_interleave(bags, second_offsets[1:] - second_offsets[:-1], output_size=n2)
    placed1 = torch.arange(n1, device=device) + second_offsets[:-1][bag1]
    placed2 = torch.arange(n2, device=device) + first_offsets[1:][bag2]
    source = torch.empty(n1 + n2, dtype=torch.int64, device=device)
    source[placed1] = torch.arange(n1, device=device)
    source[placed2] = n1 + torch.arange(n2, device=device)
    return torch.cat([first, second])[source], first_offsets + second_offsets, source < n1


class MultiScaleContrastiveLoss(HasLossOptions, nn.Module):
    """Multi-scale and cross-scale contrastive loss of Pissas et al. (ECCV 2022).

    Called as ``loss_fn(features, labels, predictions=None)`` with ``features`` a list of S
    maps [B, C_s, h_s, w_s] (highest resolution first, e.g. HRNet's strides 4, 8, 16, 32) and
    ``labels`` [B, H, W]. For each scale s: the scale's own ``ProjectionHead`` maps the
    features to ``proj_channels`` unit vectors, the labels are resized to (h_s, w_s) by nearest
    neighbour, the sampler picks pixels (it runs once per scale; ``sampler=None`` takes every
    pixel, one bag per image), and the scale's loss is the pixel contrastive loss of those rows
    reduced with ``reduction`` ("mean": per bag, then over bags). The total is sum_s weights[s] * loss_s plus, for each pair (s, t) of
    ``cross_scale_pairs``, cross_scale_weights[k] * the cross-scale loss: the rows sampled at
    scale s are the anchors and the rows sampled at scale t the contrast rows (positives and
    negatives), bag by bag (anchor_mask / contrast_mask flags), averaged over the valid
    anchors (those with a positive at scale t).

    Defaults are the settings of Pissas et al.'s code: weights (1, 0.7, 0.4, 0.1), temperature
    0.1 for both terms, the "pair" denominator (their InfoNCE), class-balanced sampling (5 /
    2500 / 10000), two-layer projection heads, and ``cross_scale_pairs="pissas"``: the highest
    resolution against the lowest, (0, S-1), and, with more than two scales, against the
    second lowest, (0, S-2), each with weight 1. Any list of ordered pairs (s, t), s != t, can
    be given instead. ``detach_cross_scale_contrast`` (their ``detach_deepest``) stops the
    cross-scale gradient into the contrast rows. Their code divides each term's summed
    loss by all its anchor rows, those without a positive at scale t included (as 0):
    ``reduction="row_mean"`` does that; the default "mean" counts only valid anchors.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        proj_channels: int = 256,
        *,
        proj_layers: int = 2,
        weights: Sequence[float] | None = (1.0, 0.7, 0.4, 0.1),
        cross_scale_pairs: str | Sequence[tuple[int, int]] | None = "pissas",
        cross_scale_weights: float | Sequence[float] = 1.0,
        temperature: float = 0.1,
        cross_scale_temperature: float | None = None,
        ignore_index: int = 255,
        denominator: Denominator = "pair",
        self_positive: bool = False,
        reduction: str = "mean",
        sampler: PixelSampler | Mapping[str, Any] | None = DEFAULT_SAMPLER,
        detach_cross_scale_contrast: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(in_channels, (str, bytes)) or not isinstance(in_channels, Sequence):
            raise TypeError(f"MultiScaleContrastiveLoss: in_channels must be a list of ints, got {in_channels!r}")
        in_channels = [check_count("MultiScaleContrastiveLoss", "in_channels", c) for c in in_channels]
        check_count("MultiScaleContrastiveLoss", "proj_channels", proj_channels)
        check_count("MultiScaleContrastiveLoss", "proj_layers", proj_layers)
        num_scales = len(in_channels)
        if num_scales < 1:
            raise ValueError("MultiScaleContrastiveLoss: in_channels must list at least one scale")
        if weights is None:
            weights = [1.0] * num_scales
        weights = _floats("weights", weights)
        if len(weights) < num_scales:
            raise ValueError(f"MultiScaleContrastiveLoss: {num_scales} scales need {num_scales} weights, "
                             f"got {len(weights)}")
        self.weights = weights[:num_scales]  # the default lists four: fewer scales use the first ones
        if cross_scale_pairs == "pissas":
            pairs = [] if num_scales < 2 else [(0, num_scales - 1)] + ([(0, num_scales - 2)] if num_scales > 2 else [])
        elif cross_scale_pairs is None:
            pairs = []
        elif isinstance(cross_scale_pairs, str):
            raise ValueError(f'MultiScaleContrastiveLoss: cross_scale_pairs must be "pissas", None or a list of '
                             f"(s, t) pairs, got {cross_scale_pairs!r}")
        else:
            try:
                pairs = [(operator.index(s), operator.index(t)) for s, t in cross_scale_pairs]
            except (TypeError, ValueError) as error:
                raise TypeError(f'MultiScaleContrastiveLoss: cross_scale_pairs must be "pissas", None or a list of '
                                f"(s, t) pairs of ints, got {cross_scale_pairs!r}") from error
        for s, t in pairs:
            if not (0 <= s < num_scales and 0 <= t < num_scales) or s == t:
                raise ValueError(f"MultiScaleContrastiveLoss: cross-scale pair {(s, t)} must name two different "
                                 f"scales in [0, {num_scales})")
        self.cross_scale_pairs = pairs
        if isinstance(cross_scale_weights, (int, float)):
            cross_scale_weights = [float(cross_scale_weights)] * len(pairs)
        self.cross_scale_weights = _floats("cross_scale_weights", cross_scale_weights)
        if len(self.cross_scale_weights) != len(pairs):
            raise ValueError(f"MultiScaleContrastiveLoss: {len(pairs)} cross-scale pairs need as many "
                             f"cross_scale_weights, got {len(self.cross_scale_weights)}")
        owner = "MultiScaleContrastiveLoss"
        self.options = LossOptions.checked(owner, temperature=temperature, ignore_index=ignore_index,
                                           denominator=denominator, self_positive=self_positive)
        if cross_scale_temperature is not None:
            check_positive(owner, "cross_scale_temperature", cross_scale_temperature)
        self.cross_scale_options = self.options.replace(
            temperature=float(cross_scale_temperature or temperature), self_positive=False)
        check_reduction(owner, reduction, ("mean", "anchor_mean", "image_mean", "row_mean", "sum"))
        self.heads = nn.ModuleList(ProjectionHead(c, proj_channels, proj_layers) for c in in_channels)
        self.reduction = reduction
        self.sampler = None if sampler is None else PixelSampler.from_config(sampler)
        self.detach_cross_scale_contrast = bool(detach_cross_scale_contrast)

    @property
    def num_scales(self) -> int:
        return len(self.heads)

    @property
    def cross_scale_temperature(self) -> float:
        return self.cross_scale_options.temperature

    def extra_repr(self) -> str:
        return (f"weights={self.weights}, cross_scale_pairs={self.cross_scale_pairs}, "
                f"cross_scale_weights={self.cross_scale_weights}, temperature={self.temperature}, "
                f"cross_scale_temperature={self.cross_scale_temperature}, denominator={self.denominator!r}, "
                f"sampler={self.sampler!r}")

    def scale_bags(self, features: Tensor, labels: Tensor, scale: int, predictions: Tensor | None = None
                   ) -> Bags:
        """The bags of one scale: projected rows, sampled (one bag per image without a sampler)."""
        pixels = pixel_rows(self.heads[scale](features), labels, normalize=False)
        if self.sampler is None:
            return Bags.of_pixels(pixels, per_image=True)
        return self.sampler.select(pixels, predictions, self.ignore_index)

    def scale_rows(self, features: Tensor, labels: Tensor, scale: int, predictions: Tensor | None = None
                   ) -> tuple[Tensor, Tensor, Tensor]:
        """(rows [n, D], labels [n], bag_offsets) of one scale: projected, sampled."""
        bags = self.scale_bags(features, labels, scale, predictions)
        return bags.rows, bags.labels, bags.offsets

    def forward(self, features: Sequence[Tensor], labels: Tensor, predictions: Tensor | None = None,
                *, return_terms: bool = False) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """The weighted total; with ``return_terms`` also a dict of the unweighted terms
        ("scale{s}" and "cross{s}-{t}", detached) for logging."""
        owner = "MultiScaleContrastiveLoss"
        if isinstance(features, Tensor) or not isinstance(features, Sequence):
            raise TypeError(f"{owner}: features must be a list of {self.num_scales} feature maps [B, C, h, w], "
                            f"got {type(features).__name__}")
        if len(features) != self.num_scales:
            raise ValueError(f"{owner}: features: expected {self.num_scales} feature maps, got {len(features)}")
        for s, f in enumerate(features):
            check_maps(owner, f, labels, embeddings_name=f"features[{s}]")
            channels = self.heads[s].layers[0].in_channels
            if f.shape[1] != channels:
                raise ValueError(f"{owner}: features[{s}] must have in_channels[{s}] = {channels} channels, "
                                 f"got shape {tuple(f.shape)}")
        sampled = [self.scale_bags(f, labels, s, predictions) for s, f in enumerate(features)]
        total: Tensor | None = None
        terms: dict[str, Tensor] = {}
        for s, bags in enumerate(sampled):
            term = self._term(bags, self.options)
            terms[f"scale{s}"] = term.detach()
            total = self.weights[s] * term if total is None else total + self.weights[s] * term
        for (s, t), weight in zip(self.cross_scale_pairs, self.cross_scale_weights):
            term = self._term(cross_scale_bags(sampled[s], sampled[t], self.detach_cross_scale_contrast),
                              self.cross_scale_options)
            terms[f"cross{s}-{t}"] = term.detach()
            total = total + weight * term
        assert total is not None
        return (total, terms) if return_terms else total

    def _term(self, bags: Bags, options: LossOptions) -> Tensor:
        loss, valid = bags.loss(options)
        return reduce_bags(loss, valid, bags, self.reduction, self.ignore_index)


def cross_scale_bags(anchors: Bags, contrast: Bags, detach_contrast: bool) -> Bags:
    """Bag b holds bag b of ``anchors`` (the anchors) followed by bag b of ``contrast`` (the
    contrast rows: positives and negatives)."""
    contrast_rows = contrast.rows.detach() if detach_contrast else contrast.rows
    rows, offsets, is_anchor = merge_bags(anchors.rows, anchors.offsets, contrast_rows, contrast.offsets)
    labels, _, _ = merge_bags(anchors.labels, anchors.offsets, contrast.labels, contrast.offsets)
    return Bags(rows, labels, offsets, anchor=is_anchor, contrast=~is_anchor)
