"""README's "Coming from another implementation" table: each row's options give that code's
number. Each peer's loss is translated here from its published formula (float64, the
normalisation that peer uses), not imported, except pytorch-metric-learning's SupConLoss, which
is installed and is the oracle of its row. Sampler quotas and the resize target are scaled
down to the small maps of the tests."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import pixcon
import pixcon.nn
from conftest import IGNORE, assert_close_f64
from test_align_corners import bilinear, nearest


def maps(seed, b=2, d=6, hw=(6, 7), num_classes=3, ignore_frac=0.1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, *hw, generator=g, dtype=torch.float64)
    y = torch.randint(0, num_classes, (b, *hw), generator=g)
    y[torch.rand(y.shape, generator=g) < ignore_frac] = IGNORE
    return x, y


def unit_rows(x):
    return F.normalize(x, dim=1).permute(0, 2, 3, 1).reshape(-1, x.shape[1])


# ----------------------------------------------------------------------------- ContrastiveSeg


def contrastiveseg_contrastive(feats, labels, temperature, base_temperature):
    """ContrastiveSeg's PixelContrastLoss._contrastive (Wang et al., ICCV 2021): ``feats`` [A, V, D]
    holds V views of each of A (image, class) anchors; every view is an anchor against all views;
    for each positive the denominator is that positive plus every negative; the loss is scaled by
    temperature / base_temperature and averaged over all anchor views."""
    num_anchors, views, _ = feats.shape
    contrast = torch.cat(torch.unbind(feats, dim=1))  # view-major, as torch.cat(torch.unbind(.., 1))
    row_labels = labels.repeat(views)
    logits = contrast @ contrast.T / temperature
    logits = logits - logits.max(dim=1, keepdim=True).values
    same = (row_labels[:, None] == row_labels[None, :]).double()
    negatives = 1 - same
    positives = same * (1 - torch.eye(num_anchors * views, dtype=torch.float64))
    negative_sum = (logits.exp() * negatives).sum(1, keepdim=True)
    log_prob = logits - torch.log(logits.exp() + negative_sum)
    mean_log_prob_pos = (positives * log_prob).sum(1) / positives.sum(1)
    return (-(temperature / base_temperature) * mean_log_prob_pos).mean()


def test_contrastiveseg_options_give_its_loss():
    x, y = maps(seed=1, hw=(8, 8))
    predictions = torch.randint(0, 3, y.shape, generator=torch.Generator().manual_seed(2))
    rule = dict(max_samples=24, max_views=4)
    loss_fn = pixcon.nn.PixelContrastiveLoss(
        temperature=0.1, base_temperature=0.07, variant="batch", denominator="pair", reduction="anchor_mean",
        sampler={"strategy": "hard_easy", "seed": 3, **rule})
    indices, _ = pixcon.sample_pixels(y, "hard_easy", predictions=predictions, seed=3, **rule)
    rows, labels = unit_rows(x)[indices], y.reshape(-1)[indices]
    groups = (indices // (8 * 8)) * 1000 + labels  # the (image, class) anchor of each sampled view
    anchors = torch.unique(groups)
    feats = torch.stack([rows[groups == a] for a in anchors])
    expected = contrastiveseg_contrastive(feats, anchors % 1000, temperature=0.1, base_temperature=0.07)
    assert_close_f64(loss_fn(x, y, predictions), expected)


# ----------------------------------------------------------------------------- Pissas et al.


def pissas_infonce(anchors, anchor_labels, contrast, contrast_labels, temperature, same_rows):
    """Pissas et al. (ECCV 2022): per anchor, the mean over its positives p of
    -log(exp(s_p) / (exp(s_p) + sum_n exp(s_n))); the summed loss divided by all anchor rows, an
    anchor without a positive adding 0. ``same_rows``: the contrast rows are the anchors (an
    anchor is not its own positive)."""
    logits = anchors @ contrast.T / temperature
    same = anchor_labels[:, None] == contrast_labels[None, :]
    positives = same & ~torch.eye(*logits.shape, dtype=torch.bool) if same_rows else same
    negative_sum = (logits.exp() * ~same).sum(1, keepdim=True)
    nll = -(logits - torch.log(logits.exp() + negative_sum))
    count = positives.sum(1)
    per_anchor = torch.where(count > 0, (nll * positives).sum(1) / count.clamp(min=1), torch.zeros(()))
    return per_anchor.sum() / anchors.shape[0]


def test_pissas_options_give_their_loss():
    channels, sizes = (5, 4, 3), ((12, 12), (6, 6), (3, 3))
    g = torch.Generator().manual_seed(4)
    features = [torch.randn(2, c, *hw, generator=g, dtype=torch.float64) for c, hw in zip(channels, sizes)]
    labels = F.interpolate(torch.randint(0, 3, (2, 1, 3, 3), generator=g).double(), size=(24, 24))[:, 0].long()
    labels[:, :8, :8] = 3  # sampled at the finest scale only: cross-scale anchors without a positive
    sampler = {"strategy": "class_balanced", "seed": 5, "min_views": 2, "max_views": 6, "max_total": 60}
    torch.manual_seed(0)
    loss_fn = pixcon.nn.MultiScaleContrastiveLoss(list(channels), 8, reduction="row_mean", sampler=sampler).double()
    sampled = [loss_fn.scale_bags(f, labels, s) for s, f in enumerate(features)]
    terms = [pissas_infonce(b.rows, b.labels, b.rows, b.labels, 0.1, same_rows=True) for b in sampled]
    expected = sum(w * t for w, t in zip(loss_fn.weights, terms))
    for s, t in loss_fn.cross_scale_pairs:
        expected = expected + pissas_infonce(sampled[s].rows, sampled[s].labels, sampled[t].rows,
                                             sampled[t].labels, 0.1, same_rows=False)
    assert_close_f64(loss_fn(features, labels), expected)


# ----------------------------------------------------------------------------- the official TF code


def official_within_image_loss(features, labels, temperature):
    """The official TF code of Zhao et al. (google-research supervised_pixel_contrastive_loss,
    within-image loss): ``features`` [B, P, D] unit vectors, ``labels`` [B, P]. Same-label pairs,
    the (i, i) pair included, are positives; each positive meets all negatives; the loss is
    averaged over each anchor's positives, then over the anchors with a positive of each image,
    then over all images (an image without such an anchor adding 0)."""
    logits = features @ features.transpose(1, 2) / temperature
    kept = (labels != IGNORE).double()
    validity = kept[:, :, None] * kept[:, None, :]
    same = (labels[:, :, None] == labels[:, None, :]).double()
    positives, negatives = same * validity, (1 - same) * validity
    exp_logits = logits.exp() * validity
    denominator = exp_logits + (exp_logits * negatives).sum(2, keepdim=True)
    ratio = torch.where(validity > 0, exp_logits / torch.where(validity > 0, denominator, 1.0), 1.0)
    per_anchor = (-ratio.log() * positives).sum(2) / positives.sum(2).clamp(min=1)
    has_positive = (positives.sum(2) > 0).double()
    per_image = (per_anchor * has_positive).sum(1) / has_positive.sum(1).clamp(min=1)
    return per_image.mean()


def test_official_tf_code_options_give_its_loss():
    x, y = maps(seed=6, b=3, hw=(4, 5))
    y = F.interpolate(y[:, None].double(), size=(9, 11), mode="nearest")[:, 0].long()
    y[2] = IGNORE  # an image without a valid anchor counts as 0
    size = (7, 8)
    loss_fn = pixcon.nn.PixelContrastiveLoss(temperature=0.07, denominator="pair", self_positive=True,
                                             reduction="image_mean", size=size, align_corners=True)
    z = F.normalize(bilinear(x, size), dim=1)
    features = z.permute(0, 2, 3, 1).reshape(3, -1, z.shape[1])
    expected = official_within_image_loss(features, nearest(y, size).reshape(3, -1), temperature=0.07)
    assert_close_f64(loss_fn(x, y), expected)


# ----------------------------------------------------------------------------- pytorch-metric-learning


def test_pytorch_metric_learning_supcon_options_give_its_loss():
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    x, y = maps(seed=7)
    loss_fn = pixcon.nn.PixelContrastiveLoss(temperature=0.1, variant="batch", denominator="all",
                                             reduction="anchor_mean")
    kept = y.reshape(-1) != IGNORE  # SupConLoss has no ignore label: the ignored pixels are left out
    expected = losses.SupConLoss(temperature=0.1)(unit_rows(x)[kept], y.reshape(-1)[kept])
    assert_close_f64(loss_fn(x, y), expected)
