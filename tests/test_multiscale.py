"""pixcon.nn.MultiScaleContrastiveLoss (Pissas et al.): the per-scale and cross-scale terms
against a pure-PyTorch composition of the reference on the same sampled rows (the sampler's
seed is fixed, and the composition calls pixcon.sample_pixels with it)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import pixcon
import pixcon.nn
from conftest import IGNORE, assert_close_f64
from pixcon import reference
from pixcon.multiscale import merge_bags

CHANNELS = (5, 6, 4, 3)
SIZES = ((12, 12), (6, 6), (4, 4), (3, 3))
RULE = dict(min_views=1, max_views=6, max_total=60)
SEED = 21


def inputs(seed=0, b=2, channels=CHANNELS, sizes=SIZES, num_classes=3):
    """Features per scale and [B, 24, 24] labels made of large blocks (so every scale sees
    every class), with some ignored pixels."""
    g = torch.Generator().manual_seed(seed)
    features = [torch.randn(b, c, *hw, generator=g, dtype=torch.float64) for c, hw in zip(channels, sizes)]
    coarse = torch.randint(0, num_classes, (b, 1, 3, 3), generator=g).double()
    labels = F.interpolate(coarse, size=(24, 24), mode="nearest")[:, 0].long()
    labels[torch.rand(labels.shape, generator=g) < 0.1] = IGNORE
    return features, labels


def make_module(channels=CHANNELS, strategy="class_balanced", seed=SEED, **kw):
    torch.manual_seed(0)
    rule = RULE if strategy == "class_balanced" else dict(num_samples=20)
    sampler = pixcon.PixelSampler(strategy, seed=seed, **({"per_image": True} if strategy == "uniform" else {}), **rule)
    return pixcon.nn.MultiScaleContrastiveLoss(list(channels), 8, sampler=sampler, **kw).double()


def reference_rows(module, features, labels, strategy="class_balanced"):
    """Per scale: head, nearest-resized labels, the sampled rows (same seed as the module)."""
    out = []
    for s, f in enumerate(features):
        z = module.heads[s](f)
        b, d, h, w = z.shape
        y = F.interpolate(labels[:, None].double(), size=(h, w), mode="nearest")[:, 0].long()
        if strategy == "class_balanced":
            idx, off = pixcon.sample_pixels(y, "class_balanced", seed=SEED, **RULE)
        else:
            idx, off = pixcon.sample_pixels(y, "uniform", seed=SEED, num_samples=20, per_image=True)
        out.append((z.permute(0, 2, 3, 1).reshape(-1, d)[idx], y.reshape(-1)[idx], off))
    return out


def reference_cross(anchor, contrast, temperature, denominator, reduction="mean"):
    """Bag by bag: the anchors of scale s, then the rows of scale t as contrast-only rows."""
    (za, ya, oa), (zc, yc, oc) = anchor, contrast
    rows, labels, is_anchor, offsets = [], [], [], [0]
    for k in range(oa.shape[0] - 1):
        a, c = slice(int(oa[k]), int(oa[k + 1])), slice(int(oc[k]), int(oc[k + 1]))
        rows += [za[a], zc[c]]
        labels += [ya[a], yc[c]]
        is_anchor += [torch.ones(a.stop - a.start, dtype=torch.bool), torch.zeros(c.stop - c.start, dtype=torch.bool)]
        offsets.append(offsets[-1] + (a.stop - a.start) + (c.stop - c.start))
    is_anchor = torch.cat(is_anchor)
    offsets = torch.tensor(offsets)
    loss, valid = reference.contrastive_loss(
        torch.cat(rows), torch.cat(labels), offsets, temperature=temperature, denominator=denominator,
        anchor_mask=is_anchor, contrast_mask=~is_anchor)
    return reference.reduce(loss, valid, offsets, reduction, anchor_rows=is_anchor)


def reference_total(module, features, labels, strategy="class_balanced"):
    sampled = reference_rows(module, features, labels, strategy)
    terms = {}
    for s, (z, y, off) in enumerate(sampled):
        loss, valid = reference.contrastive_loss(z, y, off, temperature=module.temperature,
                                                 denominator=module.denominator)
        terms[f"scale{s}"] = reference.reduce(loss, valid, off, module.reduction, anchor_rows=y != IGNORE)
    for s, t in module.cross_scale_pairs:
        terms[f"cross{s}-{t}"] = reference_cross(sampled[s], sampled[t], module.cross_scale_temperature,
                                                 module.denominator, module.reduction)
    total = sum(w * terms[f"scale{s}"] for s, w in enumerate(module.weights))
    total = total + sum(w * terms[f"cross{s}-{t}"]
                        for (s, t), w in zip(module.cross_scale_pairs, module.cross_scale_weights))
    return total, terms


def check(module, features, labels, strategy="class_balanced"):
    f1 = [f.clone().requires_grad_(True) for f in features]
    f2 = [f.clone().requires_grad_(True) for f in features]
    out, terms = module(f1, labels, return_terms=True)
    expected, expected_terms = reference_total(module, f2, labels, strategy)
    assert terms.keys() == expected_terms.keys()
    for key in terms:
        assert_close_f64(terms[key], expected_terms[key].detach())
    assert_close_f64(out, expected)
    out.backward()
    expected.backward()
    for a, b in zip(f1, f2):
        assert_close_f64(a.grad, b.grad)
    return terms


@pytest.mark.parametrize("denominator", ["pair", "all"])
def test_multiscale_and_cross_scale_loss_equals_reference_composition(denominator):
    features, labels = inputs(seed=1)
    terms = check(make_module(denominator=denominator), features, labels)
    assert all(float(v) > 0 for v in terms.values())  # every term is exercised


def test_explicit_cross_scale_pairs_and_weights_equal_reference_composition():
    features, labels = inputs(seed=2)
    module = make_module(cross_scale_pairs=[(1, 0), (2, 3), (3, 1)], cross_scale_weights=[0.5, 2.0, 1.5],
                         weights=(0.3, 1.0, 0.2, 0.6), cross_scale_temperature=0.2)
    check(module, features, labels)


def test_per_image_sampler_contrasts_scales_image_by_image():
    features, labels = inputs(seed=3)
    module = make_module(strategy="uniform")
    check(module, features, labels, strategy="uniform")


@pytest.mark.parametrize("reduction", ["image_mean", "row_mean"])
def test_new_reductions_equal_reference_composition(reduction):
    features, labels = inputs(seed=1)
    check(make_module(reduction=reduction), features, labels)


def test_row_mean_counts_cross_scale_anchors_without_positive():
    features, labels = inputs(seed=1)
    labels[:, :8, :8] = 3  # 16 pixels per image at scale 0, one at scale 3: fewer than min_views

    def cross_term(reduction):
        torch.manual_seed(0)
        sampler = pixcon.PixelSampler("class_balanced", seed=SEED, min_views=2, max_views=6, max_total=60)
        module = pixcon.nn.MultiScaleContrastiveLoss(list(CHANNELS), 8, sampler=sampler, reduction=reduction)
        return float(module.double()(features, labels, return_terms=True)[1]["cross0-3"])

    assert 0 < cross_term("row_mean") < cross_term("mean")


def test_cross_scale_anchors_are_the_rows_of_the_first_scale_only():
    features, labels = inputs(seed=4)
    module = make_module(weights=(0, 0, 0, 0), cross_scale_pairs=[(0, 3)])
    f = [x.clone().requires_grad_(True) for x in features]
    module(f, labels).backward()
    assert f[0].grad.abs().sum() > 0 and f[3].grad.abs().sum() > 0  # contrast rows get gradient
    assert all((x.grad is None or (x.grad == 0).all()) for x in f[1:3])


def test_detach_cross_scale_contrast_stops_gradient_into_contrast_scale():
    features, labels = inputs(seed=5)
    module = make_module(weights=(0, 0, 0, 0), cross_scale_pairs=[(0, 3)], detach_cross_scale_contrast=True)
    f = [x.clone().requires_grad_(True) for x in features]
    module(f, labels).backward()
    assert f[0].grad.abs().sum() > 0
    assert f[3].grad is None or (f[3].grad == 0).all()


def test_defaults_are_pissas_settings():
    module = pixcon.nn.MultiScaleContrastiveLoss([8, 8, 8, 8])
    assert module.weights == [1.0, 0.7, 0.4, 0.1]
    assert module.cross_scale_pairs == [(0, 3), (0, 2)] and module.cross_scale_weights == [1.0, 1.0]
    assert module.temperature == module.cross_scale_temperature == 0.1
    assert module.denominator == "pair" and module.sampler.strategy == "class_balanced"
    assert len(module.heads) == 4 and all(isinstance(h, pixcon.nn.ProjectionHead) for h in module.heads)


@pytest.mark.parametrize("num_scales,pairs", [(1, []), (2, [(0, 1)]), (3, [(0, 2), (0, 1)])])
def test_default_cross_scale_pairs_for_fewer_scales(num_scales, pairs):
    module = pixcon.nn.MultiScaleContrastiveLoss([4] * num_scales)
    assert module.cross_scale_pairs == pairs
    assert module.weights == [1.0, 0.7, 0.4, 0.1][:num_scales]


def test_each_scale_has_its_own_projection_head():
    module = pixcon.nn.MultiScaleContrastiveLoss([3, 5], proj_channels=7)
    assert module.heads[0].layers[0].in_channels == 3 and module.heads[1].layers[0].in_channels == 5
    assert module.heads[0].layers[-1].out_channels == module.heads[1].layers[-1].out_channels == 7


def test_no_sampled_pixel_gives_attached_zero():
    features, labels = inputs(seed=6)
    labels[:] = IGNORE
    f = [x.clone().requires_grad_(True) for x in features]
    out = make_module()(f, labels)
    assert out.item() == 0.0
    out.backward()
    assert all((x.grad == 0).all() for x in f)


@pytest.mark.parametrize("kw,match", [
    (dict(cross_scale_pairs=[(0, 0)]), "two different scales"),
    (dict(cross_scale_pairs=[(0, 4)]), "two different scales"),
    (dict(cross_scale_pairs=[(0, 1)], cross_scale_weights=[1.0, 2.0]), "cross_scale_weights"),
    (dict(weights=(1.0,)), "need 4 weights"),
    (dict(reduction="none"), "reduction"),
])
def test_bad_configuration_raises(kw, match):
    with pytest.raises(ValueError, match=match):
        pixcon.nn.MultiScaleContrastiveLoss([4, 4, 4, 4], **kw)


def test_wrong_number_of_feature_maps_raises():
    features, labels = inputs()
    with pytest.raises(ValueError, match="expected 4 feature maps"):
        make_module()(features[:3], labels)


def test_merge_bags_interleaves_the_bags_of_both_sides():
    first = torch.tensor([10, 11, 12])
    second = torch.tensor([20, 21, 22, 23])
    merged, offsets, from_first = merge_bags(first, torch.tensor([0, 2, 2, 3]), second, torch.tensor([0, 1, 3, 4]))
    assert merged.tolist() == [10, 11, 20, 21, 22, 12, 23]
    assert offsets.tolist() == [0, 3, 5, 7]
    assert from_first.tolist() == [True, True, False, False, False, True, False]
