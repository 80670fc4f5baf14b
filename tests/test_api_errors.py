"""A bad argument to any public function raises ValueError or TypeError whose message names the
argument and holds no C++ source location, whether the Python layer, the shim or the C API
finds it."""

from __future__ import annotations

import pytest
import torch

import pixcon
import pixcon.nn


def _rows(n=6, d=3):
    return torch.randn(n, d), torch.tensor([0, 1, 0, 1, 2, 255])[:n]


def _maps():
    return torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))


def loss_call(**override):
    z, y = _rows()
    args = dict(embeddings=z, labels=y, bag_offsets=None)
    args.update(override)
    return lambda: pixcon.contrastive_loss(args.pop("embeddings"), args.pop("labels"), args.pop("bag_offsets"), **args)


CASES = {
    "loss_embeddings_1d": (loss_call(embeddings=torch.randn(6)), "embeddings"),
    "loss_embeddings_int": (loss_call(embeddings=torch.ones(6, 3, dtype=torch.int64)), "embeddings"),
    "loss_embeddings_list": (loss_call(embeddings=[[1.0]] * 6), "embeddings"),
    "loss_labels_length": (loss_call(labels=torch.zeros(5, dtype=torch.int64)), "labels"),
    "loss_labels_float": (loss_call(labels=torch.zeros(6)), "labels"),
    "loss_labels_negative": (loss_call(labels=torch.tensor([0, -3, 0, 1, 1, 0])), "labels"),
    "loss_offsets_decreasing": (loss_call(bag_offsets=torch.tensor([0, 4, 2, 6])), "bag_offsets"),
    "loss_offsets_short": (loss_call(bag_offsets=torch.tensor([0, 5])), "bag_offsets"),
    "loss_offsets_int32": (loss_call(bag_offsets=torch.tensor([0, 6], dtype=torch.int32)), "bag_offsets"),
    "loss_offsets_strings": (loss_call(bag_offsets=["a", "b"]), "bag_offsets"),
    "loss_anchor_mask_length": (loss_call(anchor_mask=torch.ones(5, dtype=torch.bool)), "anchor_mask"),
    "loss_contrast_mask_dtype": (loss_call(contrast_mask=torch.ones(6)), "contrast_mask"),
    "loss_image_ids_2d": (loss_call(image_ids=torch.zeros(2, 3, dtype=torch.int64)), "image_ids"),
    "loss_temperature_zero": (loss_call(temperature=0.0), "temperature"),
    "loss_denominator": (loss_call(denominator="mean"), "denominator"),
    "reduce_loss_reduction": (lambda: pixcon.reduce_loss(torch.zeros(2), torch.ones(2, dtype=torch.bool),
                                                         torch.tensor([0, 2]), "avg"), "reduction"),
    "reduce_loss_row_mean_without_anchor_rows": (
        lambda: pixcon.reduce_loss(torch.zeros(2), torch.ones(2, dtype=torch.bool), torch.tensor([0, 2]), "row_mean"),
        "anchor_rows"),
    "sample_strategy": (lambda: pixcon.sample_pixels(_maps()[1], "random"), "strategy"),
    "sample_labels_2d": (lambda: pixcon.sample_pixels(_maps()[1][0], "uniform"), "labels"),
    "sample_unknown_rule": (lambda: pixcon.sample_pixels(_maps()[1], "uniform", max_views=3), "max_views"),
    "sample_predictions_missing": (lambda: pixcon.sample_pixels(_maps()[1], "hard_easy"), "predictions"),
    "sample_labels_above_classes": (lambda: pixcon.sample_pixels(_maps()[1], "class_balanced", num_classes=1),
                                    "labels"),
    "sampler_config": (lambda: pixcon.PixelSampler.from_config({"seed": 1}), "strategy"),
    "module_variant": (lambda: pixcon.nn.PixelContrastiveLoss(variant="pixel"), "variant"),
    "module_reduction": (lambda: pixcon.nn.PixelContrastiveLoss(reduction="per_image"), "reduction"),
    "module_blocks_without_block_size": (lambda: pixcon.nn.PixelContrastiveLoss(variant="blocks"), "block_size"),
    "module_block_size_zero": (lambda: pixcon.nn.PixelContrastiveLoss(variant="blocks", block_size=(0, 2)),
                               "block_size"),
    "module_block_size_float": (lambda: pixcon.nn.PixelContrastiveLoss(variant="blocks", block_size=(2.0, 2)),
                                "block_size"),
    "module_block_size_not_a_pair": (lambda: pixcon.nn.PixelContrastiveLoss(variant="blocks", block_size=(2, 2, 2)),
                                     "block_size"),
    "module_block_size_an_int": (lambda: pixcon.nn.PixelContrastiveLoss(variant="blocks", block_size=4),
                                 "block_size"),
    "module_block_size_for_images": (lambda: pixcon.nn.PixelContrastiveLoss(variant="image", block_size=(2, 2)),
                                     "block_size"),
    "module_blocks_with_sampler": (lambda: pixcon.nn.PixelContrastiveLoss(
        variant="blocks", block_size=(2, 2), sampler={"strategy": "uniform"}), "sampler"),
    "module_temperature": (lambda: pixcon.nn.PixelContrastiveLoss(temperature=-1.0), "temperature"),
    "module_ignore_index": (lambda: pixcon.nn.PixelContrastiveLoss(ignore_index=2.5), "ignore_index"),
    "module_labels_float": (lambda: pixcon.nn.PixelContrastiveLoss()(_maps()[0], _maps()[1].float()), "labels"),
    "module_embeddings_3d": (lambda: pixcon.nn.PixelContrastiveLoss()(_maps()[0][0], _maps()[1]), "embeddings"),
    "module_memory_bank": (lambda: pixcon.nn.PixelContrastiveLoss(memory_bank=object()), "memory_bank"),
    "bank_dim": (lambda: pixcon.nn.PixelMemoryBank(3, 4, 0), "dim"),
    "bank_enqueue_labels": (lambda: pixcon.nn.PixelMemoryBank(3, 4, 2).enqueue(torch.zeros(2, 2),
                                                                              torch.tensor([0, 7])), "labels"),
    "multiscale_cross_pairs": (lambda: pixcon.nn.MultiScaleContrastiveLoss([4, 4], cross_scale_pairs=[(0, 0)]),
                               "cross-scale pair"),
    "multiscale_reduction": (lambda: pixcon.nn.MultiScaleContrastiveLoss([4], reduction="none"), "reduction"),
    "multiscale_cross_temperature": (lambda: pixcon.nn.MultiScaleContrastiveLoss([4], cross_scale_temperature=0),
                                     "cross_scale_temperature"),
    "cross_image_reduction": (lambda: pixcon.nn.CrossImageContrastiveLoss(reduction="pixel_mean"), "reduction"),
    "cross_image_permutation": (lambda: pixcon.nn.CrossImageContrastiveLoss(permutation="reverse"), "permutation"),
    "cross_image_labels_b": (lambda: pixcon.nn.CrossImageContrastiveLoss()(*_maps(), _maps()[0], _maps()[1][0]),
                             "labels_b"),
    "head_layers": (lambda: pixcon.nn.ProjectionHead(4, num_layers=0), "num_layers"),
    "set_cpu_isa": (lambda: pixcon.set_cpu_isa("neon"), "tier"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_argument_raises_a_python_error_naming_it(case):
    call, name = CASES[case]
    with pytest.raises((ValueError, TypeError)) as raised:
        call()
    message = str(raised.value)
    assert name in message, message
    assert ".cpp:" not in message and ".cpp," not in message, message


def test_the_raw_op_says_which_python_error_an_argument_error_is():
    z, y = _rows()
    with pytest.raises(RuntimeError, match=r"^ValueError: pixcon\.contrastive_loss: labels"):
        torch.ops.pixcon.contrastive_loss(z, y[:5], torch.tensor([0, 6]), None, None, None, 0.1, 255, "all", False)
