"""Fake (meta) kernels and autograd for torch.ops.pixcon.* (the kernels live in C)."""

from __future__ import annotations

import torch


def _check_devices(op: str, embeddings, **tensors) -> None:
    for name, t in tensors.items():
        if t is not None and t.device != embeddings.device:
            raise RuntimeError(
                f"{op}: {name} is on {t.device} but embeddings is on {embeddings.device}; "
                "every tensor argument must be on the same device")


@torch.library.register_fake("pixcon::contrastive_loss")
def _contrastive_loss_fake(
    embeddings, labels, bag_offsets, anchor_mask, contrast_mask, image_ids,
    temperature, ignore_index, denominator, self_positive, allow_tf32=False,
):
    torch._check(embeddings.dim() == 2, lambda: "pixcon.contrastive_loss: embeddings must be 2-D [N, D]")
    _check_devices("pixcon.contrastive_loss", embeddings, labels=labels, bag_offsets=bag_offsets,
                   anchor_mask=anchor_mask, contrast_mask=contrast_mask, image_ids=image_ids)
    n = embeddings.shape[0]
    acc = torch.float64 if embeddings.dtype == torch.float64 else torch.float32
    return (
        embeddings.new_empty((n,), dtype=acc),
        embeddings.new_empty((n,), dtype=torch.bool),
        embeddings.new_empty((n, 3), dtype=acc),
    )


@torch.library.register_fake("pixcon::contrastive_loss_backward")
def _contrastive_loss_backward_fake(
    grad_loss, embeddings, labels, bag_offsets, anchor_mask, contrast_mask, image_ids,
    stats, temperature, ignore_index, denominator, self_positive, allow_tf32=False,
):
    _check_devices("pixcon.contrastive_loss_backward", embeddings, grad_loss=grad_loss, labels=labels,
                   bag_offsets=bag_offsets, anchor_mask=anchor_mask, contrast_mask=contrast_mask,
                   image_ids=image_ids, stats=stats)
    return embeddings.new_empty(embeddings.shape)


def _setup_context(ctx, inputs, output):
    embeddings, labels, bag_offsets, anchor_mask, contrast_mask, image_ids, *options = inputs
    _, valid, stats = output
    ctx.save_for_backward(embeddings, labels, bag_offsets, anchor_mask, contrast_mask, image_ids, stats)
    ctx.options = tuple(options)  # temperature, ignore_index, denominator, self_positive[, allow_tf32]
    ctx.mark_non_differentiable(valid, stats)


def _backward(ctx, grad_loss, _grad_valid, _grad_stats):
    embeddings, labels, bag_offsets, anchor_mask, contrast_mask, image_ids, stats = ctx.saved_tensors
    grad = None
    if ctx.needs_input_grad[0]:
        grad = torch.ops.pixcon.contrastive_loss_backward(
            grad_loss, embeddings, labels, bag_offsets, anchor_mask, contrast_mask, image_ids,
            stats, *ctx.options,
        )
    return (grad,) + (None,) * (5 + len(ctx.options))


torch.library.register_autograd("pixcon::contrastive_loss", _backward, setup_context=_setup_context)


def _setup_backward_context(ctx, inputs, output):
    pass


def _double_backward(ctx, grad_output):
    raise RuntimeError(
        "pixcon.contrastive_loss: double backward (the gradient of the gradient) is not supported")


torch.library.register_autograd(
    "pixcon::contrastive_loss_backward", _double_backward, setup_context=_setup_backward_context)


@torch.library.register_fake("pixcon::sample_pixels")
def _sample_pixels_fake(
    labels, predictions, strategy, num_classes, ignore_index, seed, per_image,
    num_samples, min_views, max_views, max_total, max_samples,
):
    torch._check(labels.dim() == 3, lambda: "pixcon.sample_pixels: labels must be 3-D [B, H, W]")
    num_bags = labels.shape[0] if strategy == "uniform" and per_image else 1
    count = torch.library.get_ctx().new_dynamic_size()
    return (
        labels.new_empty((count,), dtype=torch.int64),
        labels.new_empty((num_bags + 1,), dtype=torch.int64),
    )
