"""Bad input gets a clear error naming the offending argument (never a crash,
hang or silent NaN): through pixcon.contrastive_loss, the raw torch.ops and the
nn module."""

from __future__ import annotations

import math

import pytest
import torch

import pixcon
import pixcon.nn
from conftest import IGNORE, make_problem

ERRORS = (RuntimeError, ValueError, TypeError)


@pytest.fixture
def p():
    return make_problem(bag_sizes=[6, 4], d=3, num_classes=2, dtype=torch.float32, seed=80, masks=True,
                        num_images=2)


def call(p, **override):
    args = dict(embeddings=p.embeddings, labels=p.labels, bag_offsets=p.bag_offsets, **p.kwargs())
    args.update(override)
    return pixcon.contrastive_loss(args.pop("embeddings"), args.pop("labels"), args.pop("bag_offsets"), **args)


def test_valid_baseline_call_works(p):
    loss, valid = call(p)
    assert loss.shape == (p.n,)


# ----------------------------------------------------------------------------- embeddings / labels


@pytest.mark.parametrize("shape", [(10,), (10, 3, 1), ()], ids=["1d", "3d", "0d"])
def test_embeddings_wrong_ndim(p, shape):
    with pytest.raises(ERRORS, match="embeddings"):
        call(p, embeddings=torch.randn(shape))


def test_embeddings_integer_dtype(p):
    with pytest.raises(ERRORS, match="embeddings"):
        call(p, embeddings=torch.ones(p.n, 3, dtype=torch.int64))


def test_labels_wrong_ndim(p):
    with pytest.raises(ERRORS, match="labels"):
        call(p, labels=p.labels.reshape(2, 5))


@pytest.mark.parametrize("length", [9, 11, 0])
def test_labels_length_differs_from_rows(p, length):
    with pytest.raises(ERRORS, match="labels"):
        call(p, labels=torch.zeros(length, dtype=torch.int64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bool])
def test_labels_non_integer_dtype(p, dtype):
    with pytest.raises(ERRORS, match="labels"):
        call(p, labels=p.labels.to(dtype))


@pytest.mark.parametrize("bad", [-1, -100])
def test_negative_label_other_than_ignore_index(p, bad):
    labels = p.labels.clone()
    labels[3] = bad
    with pytest.raises(ERRORS, match="labels"):
        call(p, labels=labels)


# ----------------------------------------------------------------------------- temperature / strings


@pytest.mark.parametrize("temperature", [0.0, -0.07, math.nan, -math.inf], ids=["zero", "negative", "nan", "-inf"])
def test_non_positive_temperature(p, temperature):
    with pytest.raises(ERRORS, match="temperature"):
        call(p, temperature=temperature)


@pytest.mark.parametrize("denominator", ["mean", "ALL ", ""])
def test_unknown_denominator(p, denominator):
    with pytest.raises(ERRORS, match="denominator"):
        call(p, denominator=denominator)


# ----------------------------------------------------------------------------- bag offsets


@pytest.mark.parametrize(
    "offsets",
    [[0, 6, 9], [0, 6, 11], [1, 6, 10], [0, 7, 6, 10], [0, -1, 10], []],
    ids=["last_short", "last_long", "first_not_zero", "decreasing", "negative", "empty"],
)
def test_bag_offsets_must_cover_the_rows(p, offsets):
    with pytest.raises(ERRORS, match="bag_offsets"):
        call(p, bag_offsets=torch.tensor(offsets, dtype=torch.int64))


def test_bag_offsets_floating_dtype(p):
    with pytest.raises(ERRORS, match="bag_offsets"):
        call(p, bag_offsets=p.bag_offsets.to(torch.float32))


def test_bag_offsets_wrong_ndim(p):
    with pytest.raises(ERRORS, match="bag_offsets"):
        call(p, bag_offsets=p.bag_offsets[None, :])


# ----------------------------------------------------------------------------- masks / image ids


@pytest.mark.parametrize("name", ["anchor_mask", "contrast_mask", "image_ids"])
@pytest.mark.parametrize("length", [9, 11])
def test_per_row_argument_of_wrong_length(p, name, length):
    value = getattr(p, name)
    bad = torch.cat([value, value])[:length]
    with pytest.raises(ERRORS, match=name):
        call(p, **{name: bad})


@pytest.mark.parametrize("name", ["anchor_mask", "contrast_mask", "image_ids"])
def test_per_row_argument_of_wrong_ndim(p, name):
    value = getattr(p, name)
    with pytest.raises(ERRORS, match=name):
        call(p, **{name: value.reshape(2, 5)})


# ----------------------------------------------------------------------------- devices


@pytest.mark.parametrize("name", ["labels", "bag_offsets", "anchor_mask", "contrast_mask", "image_ids"])
def test_argument_on_another_device_than_embeddings(p, name):
    """There is no second real device on a CPU-only machine, so the "other device"
    is ``meta``.  This is a real test of the device check: a mixed cpu/meta call
    that reached the dispatcher unchecked would be routed to the fake (meta)
    kernel and silently return meta tensors, so the check must happen before
    dispatch and name the argument or the device."""
    value = getattr(p, name)
    with pytest.raises(ERRORS, match=f"{name}|device"):
        call(p, **{name: value.to("meta")})


def test_embeddings_on_another_device_than_labels(p):
    with pytest.raises(ERRORS, match="embeddings|device"):
        call(p, embeddings=p.embeddings.to("meta"))


# ----------------------------------------------------------------------------- raw ops (shim checks)


def _raw(p, **override):
    args = dict(embeddings=p.embeddings, labels=p.labels, bag_offsets=p.bag_offsets, anchor_mask=p.anchor_mask,
                contrast_mask=p.contrast_mask, image_ids=p.image_ids, temperature=0.07, ignore_index=IGNORE,
                denominator="all", self_positive=False)
    args.update(override)
    return tuple(args.values())


@pytest.mark.parametrize(
    "override,name",
    [
        (dict(embeddings=torch.randn(10)), "embeddings"),
        (dict(labels=torch.zeros(9, dtype=torch.int64)), "labels"),
        (dict(labels=torch.zeros(10)), "labels"),
        (dict(bag_offsets=torch.tensor([0, 6, 10], dtype=torch.int32)), "bag_offsets"),
        (dict(bag_offsets=torch.tensor([0, 6, 9])), "bag_offsets"),
        (dict(bag_offsets=torch.tensor([0, 7, 6, 10])), "bag_offsets"),
        (dict(anchor_mask=torch.ones(9, dtype=torch.bool)), "anchor_mask"),
        (dict(image_ids=torch.zeros(11, dtype=torch.int64)), "image_ids"),
        (dict(temperature=0.0), "temperature"),
        (dict(temperature=-1.0), "temperature"),
        (dict(denominator="mean"), "denominator"),
    ],
    ids=["emb_1d", "labels_len", "labels_float", "offsets_int32", "offsets_short", "offsets_decreasing",
         "anchor_mask_len", "image_ids_len", "temp_zero", "temp_negative", "denominator"],
)
def test_raw_forward_op_rejects(p, override, name):
    with pytest.raises(ERRORS, match=name):
        torch.ops.pixcon.contrastive_loss(*_raw(p, **override))


def test_raw_forward_op_rejects_negative_label(p):
    labels = p.labels.clone()
    labels[0] = -3
    with pytest.raises(ERRORS, match="labels"):
        torch.ops.pixcon.contrastive_loss(*_raw(p, labels=labels))


@pytest.mark.parametrize("what", ["grad_loss", "stats"])
def test_raw_backward_op_rejects_wrong_shapes(p, what):
    loss, valid, stats = torch.ops.pixcon.contrastive_loss(*_raw(p))
    grad_loss = torch.ones_like(loss)
    if what == "grad_loss":
        grad_loss = torch.ones(p.n + 1, dtype=loss.dtype)
    else:
        stats = stats[:, :2]
    with pytest.raises(ERRORS, match=what):
        torch.ops.pixcon.contrastive_loss_backward(grad_loss, p.embeddings, p.labels, p.bag_offsets, p.anchor_mask,
                                                   p.contrast_mask, p.image_ids, stats, 0.07, IGNORE, "all", False)


# ----------------------------------------------------------------------------- nn module


@pytest.mark.parametrize(
    "kw,name",
    [
        (dict(variant="pixel"), "variant"),
        (dict(reduction="avg"), "reduction"),
        (dict(denominator="mean"), "denominator"),
        (dict(temperature=0.0), "temperature"),
        (dict(base_temperature=0.0), "base_temperature"),
    ],
)
def test_module_rejects_bad_options(kw, name):
    x = torch.randn(1, 3, 2, 2)
    y = torch.zeros(1, 2, 2, dtype=torch.int64)
    with pytest.raises(ERRORS, match=name):
        pixcon.nn.PixelContrastiveLoss(**kw)(x, y)


@pytest.mark.parametrize(
    "x_shape,y_shape,name",
    [
        ((2, 3, 4), (2, 4, 4), "embeddings"),
        ((2, 3, 4, 4), (3, 4, 4), "labels"),
        ((2, 3, 4, 4), (2, 4), "labels"),
    ],
    ids=["embeddings_3d", "batch_mismatch", "labels_2d"],
)
def test_module_rejects_bad_shapes(x_shape, y_shape, name):
    with pytest.raises(ERRORS, match=name):
        pixcon.nn.PixelContrastiveLoss()(torch.randn(x_shape), torch.zeros(y_shape, dtype=torch.int64))


def test_projection_head_rejects_zero_layers():
    with pytest.raises(ERRORS, match="num_layers"):
        pixcon.nn.ProjectionHead(4, channels=8, num_layers=0)
