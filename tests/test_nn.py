"""pixcon.nn: PixelContrastiveLoss against the same pipeline composed by hand
from the reference (resize, normalise, flatten pixels in (b, h, w) order, bags,
reduce), and ProjectionHead's structure."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import pixcon.nn
from conftest import IGNORE, assert_close_f64
from pixcon import reference


def reference_module(x, y, *, temperature=0.07, ignore_index=IGNORE, variant="image", denominator="all",
                     self_positive=False, normalize=True, size=None, reduction="mean", base_temperature=None):
    """PixelContrastiveLoss spelled out with torch functions and the reference.

    Order: resize (bilinear, align_corners=False), then L2-normalise, so the rows
    entering the loss are unit vectors -- as in the official code of Zhao et al.
    (google-research supervised_pixel_contrastive_loss: resize_bilinear, then the
    projection head whose last step is l2_normalize)."""
    if size is not None:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    if normalize:
        x = F.normalize(x, dim=1)
    b, d, h, w = x.shape
    y = F.interpolate(y[:, None].to(torch.float64), size=(h, w), mode="nearest")[:, 0].to(torch.int64)
    rows = x.permute(0, 2, 3, 1).reshape(b * h * w, d)
    labels = y.reshape(b * h * w)
    if variant == "image":
        offsets = torch.arange(b + 1, dtype=torch.int64) * (h * w)
    else:
        offsets = torch.tensor([0, b * h * w], dtype=torch.int64)
    loss, valid = reference.contrastive_loss(rows, labels, offsets, temperature=temperature,
                                             ignore_index=ignore_index, denominator=denominator,
                                             self_positive=self_positive)
    if base_temperature is not None:
        loss = loss * (temperature / base_temperature)
    return reference.reduce(loss, valid, offsets, reduction, anchor_rows=labels != ignore_index)


def seg_inputs(b=2, d=5, h=6, w=7, label_hw=(12, 14), num_classes=3, seed=0, dtype=torch.float64,
               ignore_frac=0.1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, h, w, generator=g, dtype=torch.float64).to(dtype)
    y = torch.randint(0, num_classes, (b, *label_hw), generator=g)
    y[torch.rand(y.shape, generator=g) < ignore_frac] = IGNORE
    return x, y


def check_module(x, y, **kw):
    x1 = x.clone().requires_grad_(True)
    out = pixcon.nn.PixelContrastiveLoss(**kw)(x1, y)
    x2 = x.clone().requires_grad_(True)
    expected = reference_module(x2, y, **kw)
    assert out.shape == expected.shape
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (out * g.to(out.dtype)).sum().backward()
    (expected * g).sum().backward()
    if x.dtype == torch.float64:
        assert_close_f64(out, expected)
        assert_close_f64(x1.grad, x2.grad)
    else:
        torch.testing.assert_close(out, expected.to(out.dtype), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(x1.grad, x2.grad.to(x.dtype), rtol=1e-4, atol=1e-5 * float(x2.grad.abs().max()))
    return out


@pytest.mark.parametrize("reduction", ["mean", "anchor_mean", "image_mean", "row_mean", "sum", "none"])
@pytest.mark.parametrize("variant", ["image", "batch"])
@pytest.mark.parametrize("size", [None, (4, 5)], ids=["native", "resized"])
def test_pixel_contrastive_loss_matches_reference_pipeline(variant, reduction, size):
    x, y = seg_inputs(seed=2)
    out = check_module(x, y, variant=variant, reduction=reduction, size=size)
    if reduction == "none":
        h, w = size or x.shape[-2:]
        assert out.shape == (x.shape[0] * h * w,)


@pytest.mark.parametrize("denominator", ["all", "pair"])
@pytest.mark.parametrize("self_positive", [False, True])
def test_pixel_contrastive_loss_options_are_forwarded(denominator, self_positive):
    x, y = seg_inputs(seed=3, num_classes=4)
    check_module(x, y, denominator=denominator, self_positive=self_positive, temperature=0.2, variant="batch")


def test_base_temperature_scales_the_loss_by_tau_over_base_tau():
    x, y = seg_inputs(seed=4)
    out = check_module(x, y, temperature=0.1, base_temperature=0.07)
    plain = pixcon.nn.PixelContrastiveLoss(temperature=0.1)(x, y)
    assert out.item() == pytest.approx(plain.item() * 0.1 / 0.07, rel=1e-12)


def test_normalize_false_uses_embeddings_as_given():
    x, y = seg_inputs(seed=5)
    x = 0.3 * x
    check_module(x, y, normalize=False)
    a = pixcon.nn.PixelContrastiveLoss(normalize=False)(x, y)
    b = pixcon.nn.PixelContrastiveLoss(normalize=True)(x, y)
    assert abs(a.item() - b.item()) > 1e-6


def test_ignore_index_option():
    x, y = seg_inputs(seed=6, ignore_frac=0.0)
    y[:, :3] = 7
    check_module(x, y, ignore_index=7, variant="batch", reduction="anchor_mean")


def test_resized_rows_are_unit_vectors_when_normalize():
    """normalize=True normalises after resizing: with a bilinear resize of unit
    vectors (not unit any more), the loss equals the loss of renormalised rows."""
    x, y = seg_inputs(seed=15, ignore_frac=0.0)
    x = F.normalize(x, dim=1)
    fn = pixcon.nn.PixelContrastiveLoss(size=(4, 5), reduction="none", normalize=True)
    resized = F.interpolate(x, size=(4, 5), mode="bilinear", align_corners=False)
    unit = pixcon.nn.PixelContrastiveLoss(size=None, reduction="none", normalize=False)
    y_small = F.interpolate(y[:, None].double(), size=(4, 5), mode="nearest")[:, 0].long()
    assert_close_f64(fn(x, y), unit(F.normalize(resized, dim=1), y_small))


def test_labels_at_feature_resolution_are_used_as_is():
    x, y = seg_inputs(seed=7, label_hw=(6, 7))
    check_module(x, y)


def test_float32_module_matches_reference_pipeline():
    x, y = seg_inputs(seed=8, dtype=torch.float32, d=16, h=8, w=8, label_hw=(16, 16))
    out = check_module(x, y, size=(6, 6), variant="image")
    assert out.dtype == torch.float32


def test_uint8_labels_give_the_int64_result():
    x, y = seg_inputs(seed=9)
    a = pixcon.nn.PixelContrastiveLoss()(x, y)
    b = pixcon.nn.PixelContrastiveLoss()(x, y.to(torch.uint8))
    assert_close_f64(b, a)


def test_image_variant_mean_is_the_mean_of_per_image_losses():
    x, y = seg_inputs(seed=10, b=3)
    loss_fn = pixcon.nn.PixelContrastiveLoss(variant="image", reduction="mean")
    per_image = torch.stack([loss_fn(x[i : i + 1], y[i : i + 1]) for i in range(3)])
    assert_close_f64(loss_fn(x, y), per_image.mean())


def test_image_variant_does_not_contrast_across_images_but_batch_variant_does():
    x, y = seg_inputs(seed=11, b=2)
    image = pixcon.nn.PixelContrastiveLoss(variant="image", reduction="none")(x, y)
    batch = pixcon.nn.PixelContrastiveLoss(variant="batch", reduction="none")(x, y)
    first = pixcon.nn.PixelContrastiveLoss(variant="batch", reduction="none")(x[:1], y[:1])
    hw = x.shape[-2] * x.shape[-1]
    assert_close_f64(image[:hw], first)
    assert not torch.allclose(batch[:hw], first)


# ----------------------------------------------------------------------------- ProjectionHead


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_projection_head_shape_and_unit_norm(num_layers):
    head = pixcon.nn.ProjectionHead(10, channels=16, num_layers=num_layers)
    x = torch.randn(2, 10, 5, 6, generator=torch.Generator().manual_seed(12))
    out = head(x)
    assert out.shape == (2, 16, 5, 6)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2, 5, 6), rtol=1e-5, atol=1e-5)


def test_projection_head_defaults_are_the_paper_head():
    head = pixcon.nn.ProjectionHead(32)
    convs = [m for m in head.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3
    assert all(c.out_channels == 256 for c in convs)
    assert head(torch.randn(1, 32, 3, 3)).shape == (1, 256, 3, 3)


@pytest.mark.parametrize("num_layers", [1, 2, 3, 4])
def test_projection_head_is_1x1_convs_with_relu_between_not_after_last(num_layers):
    head = pixcon.nn.ProjectionHead(6, channels=8, num_layers=num_layers)
    convs = [m for m in head.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == num_layers
    assert convs[0].in_channels == 6 and all(c.out_channels == 8 for c in convs)
    assert all(c.kernel_size == (1, 1) for c in convs)
    x = torch.randn(2, 6, 4, 3, generator=torch.Generator().manual_seed(13))
    h = x
    for i, conv in enumerate(convs):
        h = conv(h)
        if i < num_layers - 1:
            h = torch.relu(h)
    torch.testing.assert_close(head(x), F.normalize(h, dim=1), rtol=1e-5, atol=1e-6)
    # the output has negative entries: there is no ReLU after the last conv
    assert (head(x) < 0).any()


def test_gradient_flows_through_loss_to_every_head_parameter():
    torch.manual_seed(14)
    head = pixcon.nn.ProjectionHead(6, channels=8)
    x, y = seg_inputs(b=2, d=6, h=5, w=5, label_hw=(10, 10), seed=14, dtype=torch.float32)
    loss = pixcon.nn.PixelContrastiveLoss(size=(4, 4))(head(x), y)
    loss.backward()
    for name, prm in head.named_parameters():
        assert prm.grad is not None, name
        assert torch.isfinite(prm.grad).all() and prm.grad.abs().sum() > 0, name
