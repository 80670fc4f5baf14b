"""The bad-input matrix of the Python API: every case is one kind of bad argument to one public
function or module, with the exception it must raise and the argument its message must name.
Whether the Python layer, the shim or the C API finds it, the user sees exactly that type
(TypeError: the wrong Python type or tensor dtype; ValueError: the right type with a wrong
shape, device or value) and no C++ source location.

A second device is stood in for by ``meta``: a call mixing it with the CPU must be refused
before dispatch (docs/design.md 5.4)."""

from __future__ import annotations

from collections import Counter
from typing import Callable, NamedTuple

import pytest
import torch

import pixcon
import pixcon.nn

try:
    import pixcon.mmseg
    from mmseg.registry import MODELS
except ImportError as error:
    MMSEG_MISSING: str | None = f"mmsegmentation not installed: {error}"
else:
    MMSEG_MISSING = None


class Case(NamedTuple):
    call: Callable[[], object]
    error: type[Exception]
    argument: str


def _rows(n: int = 6, d: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, d), torch.tensor([0, 1, 0, 1, 2, 255])[:n]


def _maps(batch: int = 2, channels: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(batch, channels, 4, 4), torch.randint(0, 3, (batch, 4, 4))


def loss_call(**override) -> Callable[[], object]:
    z, y = _rows()
    args = dict(embeddings=z, labels=y, bag_offsets=None)
    args.update(override)
    return lambda: pixcon.contrastive_loss(args.pop("embeddings"), args.pop("labels"), args.pop("bag_offsets"), **args)


def module_call(*inputs: torch.Tensor | object, **options) -> Callable[[], object]:
    return lambda: pixcon.nn.PixelContrastiveLoss(**options)(*inputs)


def bank_enqueue(*inputs: torch.Tensor | object, **options) -> Callable[[], object]:
    options = {"num_classes": 3, "size_per_class": 4, "dim": 2} | options
    return lambda: pixcon.nn.PixelMemoryBank(**options).enqueue(*inputs)


def multiscale_call(features: object, labels: object, in_channels: tuple[int, ...] = (3,)) -> Callable[[], object]:
    return lambda: pixcon.nn.MultiScaleContrastiveLoss(list(in_channels), proj_channels=8, sampler=None)(
        features, labels)


def cross_image_call(*views: object, **options) -> Callable[[], object]:
    return lambda: pixcon.nn.CrossImageContrastiveLoss(**options)(*views)


def mmseg_call(*inputs: torch.Tensor, **options) -> Callable[[], object]:
    def call() -> object:
        loss = pixcon.mmseg.PixelContrastiveLoss(**options)
        return loss(*inputs) if inputs else loss
    return call


_INT = torch.int64
_BOOL = torch.bool
_MAPS = _maps()
_SEGMENT_BANK = {"segment_size_per_class": 2}

CASES: dict[str, Case] = {
    # pixcon.contrastive_loss
    "loss_embeddings_1d": Case(loss_call(embeddings=torch.randn(6)), ValueError, "embeddings"),
    "loss_embeddings_int": Case(loss_call(embeddings=torch.ones(6, 3, dtype=_INT)), TypeError, "embeddings"),
    "loss_embeddings_bool": Case(loss_call(embeddings=torch.ones(6, 3, dtype=_BOOL)), TypeError, "embeddings"),
    "loss_embeddings_list": Case(loss_call(embeddings=[[1.0]] * 6), TypeError, "embeddings"),
    "loss_embeddings_none": Case(loss_call(embeddings=None), TypeError, "embeddings"),
    "loss_embeddings_other_device": Case(loss_call(embeddings=torch.randn(6, 3, device="meta")), ValueError,
                                         "labels"),
    "loss_labels_length": Case(loss_call(labels=torch.zeros(5, dtype=_INT)), ValueError, "labels"),
    "loss_labels_2d": Case(loss_call(labels=torch.zeros(1, 6, dtype=_INT)), ValueError, "labels"),
    "loss_labels_float": Case(loss_call(labels=torch.zeros(6)), TypeError, "labels"),
    "loss_labels_list": Case(loss_call(labels=[0, 1, 0, 1, 2, 255]), TypeError, "labels"),
    "loss_labels_none": Case(loss_call(labels=None), TypeError, "labels"),
    "loss_labels_negative": Case(loss_call(labels=torch.tensor([0, -3, 0, 1, 1, 0])), ValueError, "labels"),
    "loss_labels_other_device": Case(loss_call(labels=torch.zeros(6, dtype=_INT, device="meta")), ValueError,
                                     "labels"),
    "loss_offsets_decreasing": Case(loss_call(bag_offsets=torch.tensor([0, 4, 2, 6])), ValueError, "bag_offsets"),
    "loss_offsets_short": Case(loss_call(bag_offsets=torch.tensor([0, 5])), ValueError, "bag_offsets"),
    "loss_offsets_past_the_rows": Case(loss_call(bag_offsets=[0, 7]), ValueError, "bag_offsets"),
    "loss_offsets_not_from_zero": Case(loss_call(bag_offsets=[1, 6]), ValueError, "bag_offsets"),
    "loss_offsets_2d": Case(loss_call(bag_offsets=torch.tensor([[0, 6]])), ValueError, "bag_offsets"),
    "loss_offsets_int32": Case(loss_call(bag_offsets=torch.tensor([0, 6], dtype=torch.int32)), TypeError,
                               "bag_offsets"),
    "loss_offsets_strings": Case(loss_call(bag_offsets=["a", "b"]), TypeError, "bag_offsets"),
    "loss_offsets_fractional": Case(loss_call(bag_offsets=[0, 2.5, 6]), TypeError, "bag_offsets"),
    "loss_offsets_other_device": Case(loss_call(bag_offsets=torch.tensor([0, 6], device="meta")), ValueError,
                                      "bag_offsets"),
    "loss_anchor_mask_length": Case(loss_call(anchor_mask=torch.ones(5, dtype=_BOOL)), ValueError, "anchor_mask"),
    "loss_anchor_mask_list": Case(loss_call(anchor_mask=[True] * 6), TypeError, "anchor_mask"),
    "loss_contrast_mask_dtype": Case(loss_call(contrast_mask=torch.ones(6)), TypeError, "contrast_mask"),
    "loss_image_ids_2d": Case(loss_call(image_ids=torch.zeros(2, 3, dtype=_INT)), ValueError, "image_ids"),
    "loss_image_ids_float": Case(loss_call(image_ids=torch.zeros(6)), TypeError, "image_ids"),
    "loss_temperature_zero": Case(loss_call(temperature=0.0), ValueError, "temperature"),
    "loss_temperature_nan": Case(loss_call(temperature=float("nan")), ValueError, "temperature"),
    "loss_temperature_inf": Case(loss_call(temperature=float("inf")), ValueError, "temperature"),
    "loss_temperature_string": Case(loss_call(temperature="0.1"), TypeError, "temperature"),
    "loss_ignore_index_fractional": Case(loss_call(ignore_index=2.5), TypeError, "ignore_index"),
    "loss_denominator": Case(loss_call(denominator="mean"), ValueError, "denominator"),
    "loss_denominator_none": Case(loss_call(denominator=None), TypeError, "denominator"),
    "loss_self_positive_string": Case(loss_call(self_positive="no"), TypeError, "self_positive"),
    "reduce_loss_reduction": Case(lambda: pixcon.reduce_loss(torch.zeros(2), torch.ones(2, dtype=_BOOL),
                                                             torch.tensor([0, 2]), "avg"), ValueError, "reduction"),
    # pixcon.sample_pixels and pixcon.PixelSampler
    "reduce_loss_row_mean_without_anchor_rows": Case(
        lambda: pixcon.reduce_loss(torch.zeros(2), torch.ones(2, dtype=torch.bool), torch.tensor([0, 2]), "row_mean"),
        ValueError, "anchor_rows"),
    "sample_strategy": Case(lambda: pixcon.sample_pixels(_MAPS[1], "random"), ValueError, "strategy"),
    "sample_labels_2d": Case(lambda: pixcon.sample_pixels(_MAPS[1][0], "uniform"), ValueError, "labels"),
    "sample_labels_float": Case(lambda: pixcon.sample_pixels(_MAPS[1].float(), "uniform"), TypeError, "labels"),
    "sample_labels_list": Case(lambda: pixcon.sample_pixels([[[0]]], "uniform"), TypeError, "labels"),
    "sample_labels_above_classes": Case(lambda: pixcon.sample_pixels(_MAPS[1], "class_balanced", num_classes=1),
                                        ValueError, "labels"),
    "sample_unknown_rule": Case(lambda: pixcon.sample_pixels(_MAPS[1], "uniform", max_views=3), ValueError,
                                "max_views"),
    "sample_rule_negative": Case(lambda: pixcon.sample_pixels(_MAPS[1], "uniform", num_samples=-1), ValueError,
                                 "num_samples"),
    "sample_rule_fractional": Case(lambda: pixcon.sample_pixels(_MAPS[1], "uniform", num_samples=2.5), TypeError,
                                   "num_samples"),
    "sample_min_views_zero": Case(lambda: pixcon.sample_pixels(_MAPS[1], "class_balanced", min_views=0),
                                  ValueError, "min_views"),
    "sample_predictions_missing": Case(lambda: pixcon.sample_pixels(_MAPS[1], "hard_easy"), ValueError,
                                       "predictions"),
    "sample_predictions_shape": Case(lambda: pixcon.sample_pixels(_MAPS[1], "hard_easy", predictions=_MAPS[1][:1]),
                                     ValueError, "predictions"),
    "sample_predictions_float": Case(lambda: pixcon.sample_pixels(_MAPS[1], "hard_easy",
                                                                  predictions=_MAPS[1].float()),
                                     TypeError, "predictions"),
    "sample_predictions_list": Case(lambda: pixcon.sample_pixels(_MAPS[1], "hard_easy", predictions=[0]),
                                    TypeError, "predictions"),
    "sample_num_classes_negative": Case(lambda: pixcon.sample_pixels(_MAPS[1], "class_balanced", num_classes=-2),
                                        ValueError, "num_classes"),
    "sample_num_classes_string": Case(lambda: pixcon.sample_pixels(_MAPS[1], "class_balanced", num_classes="3"),
                                      TypeError, "num_classes"),
    "sample_seed_fractional": Case(lambda: pixcon.sample_pixels(_MAPS[1], "uniform", seed=1.5), TypeError, "seed"),
    "sample_ignore_index_string": Case(lambda: pixcon.sample_pixels(_MAPS[1], "uniform", ignore_index="255"),
                                       TypeError, "ignore_index"),
    "sampler_config_without_strategy": Case(lambda: pixcon.PixelSampler.from_config({"seed": 1}), ValueError,
                                            "strategy"),
    "sampler_config_string": Case(lambda: pixcon.PixelSampler.from_config("uniform"), TypeError, "sampler"),
    "sampler_unknown_rule": Case(lambda: pixcon.PixelSampler("uniform", min_views=2), ValueError, "min_views"),
    # pixcon.nn.PixelContrastiveLoss
    "module_variant": Case(lambda: pixcon.nn.PixelContrastiveLoss(variant="pixel"), ValueError, "variant"),
    "module_temperature": Case(lambda: pixcon.nn.PixelContrastiveLoss(temperature=-1.0), ValueError, "temperature"),
    "module_temperature_string": Case(lambda: pixcon.nn.PixelContrastiveLoss(temperature="0.1"), TypeError,
                                      "temperature"),
    "module_ignore_index": Case(lambda: pixcon.nn.PixelContrastiveLoss(ignore_index=2.5), TypeError, "ignore_index"),
    "module_denominator": Case(lambda: pixcon.nn.PixelContrastiveLoss(denominator="sum"), ValueError, "denominator"),
    "module_reduction": Case(lambda: pixcon.nn.PixelContrastiveLoss(reduction="avg"), ValueError, "reduction"),
    "module_blocks_without_block_size": Case(lambda: pixcon.nn.PixelContrastiveLoss(variant="blocks"), ValueError,
                                             "block_size"),
    "module_block_size_zero": Case(lambda: pixcon.nn.PixelContrastiveLoss(variant="blocks", block_size=(0, 2)),
                                   ValueError, "block_size"),
    "module_block_size_float": Case(lambda: pixcon.nn.PixelContrastiveLoss(variant="blocks", block_size=(2.0, 2)),
                                    TypeError, "block_size"),
    "module_block_size_not_a_pair": Case(
        lambda: pixcon.nn.PixelContrastiveLoss(variant="blocks", block_size=(2, 2, 2)), ValueError, "block_size"),
    "module_block_size_an_int": Case(lambda: pixcon.nn.PixelContrastiveLoss(variant="blocks", block_size=4),
                                     TypeError, "block_size"),
    "module_block_size_for_images": Case(lambda: pixcon.nn.PixelContrastiveLoss(variant="image", block_size=(2, 2)),
                                         ValueError, "block_size"),
    "module_blocks_with_sampler": Case(lambda: pixcon.nn.PixelContrastiveLoss(
        variant="blocks", block_size=(2, 2), sampler={"strategy": "uniform"}), ValueError, "sampler"),
    "module_base_temperature": Case(lambda: pixcon.nn.PixelContrastiveLoss(base_temperature=0), ValueError,
                                    "base_temperature"),
    "module_size_int": Case(lambda: pixcon.nn.PixelContrastiveLoss(size=65), TypeError, "size"),
    "module_size_zero": Case(lambda: pixcon.nn.PixelContrastiveLoss(size=(0, 65)), ValueError, "size"),
    "module_sampler_string": Case(lambda: pixcon.nn.PixelContrastiveLoss(sampler="uniform"), TypeError, "sampler"),
    "module_sampler_strategy": Case(lambda: pixcon.nn.PixelContrastiveLoss(sampler={"strategy": "random"}),
                                    ValueError, "strategy"),
    "module_gather_per_image": Case(lambda: pixcon.nn.PixelContrastiveLoss(gather=True), ValueError, "gather"),
    "module_memory_bank": Case(lambda: pixcon.nn.PixelContrastiveLoss(memory_bank=object()), ValueError,
                               "memory_bank"),
    "module_embeddings_3d": Case(module_call(_MAPS[0][0], _MAPS[1]), ValueError, "embeddings"),
    "module_embeddings_int": Case(module_call(_MAPS[0].long(), _MAPS[1]), TypeError, "embeddings"),
    "module_embeddings_list": Case(module_call([0.0], _MAPS[1]), TypeError, "embeddings"),
    "module_embeddings_width_of_bank": Case(module_call(*_MAPS, memory_bank=pixcon.nn.PixelMemoryBank(3, 4, 5)),
                                            ValueError, "embeddings"),
    "module_labels_float": Case(module_call(_MAPS[0], _MAPS[1].float()), TypeError, "labels"),
    "module_labels_batch": Case(module_call(_MAPS[0], _MAPS[1][:1]), ValueError, "labels"),
    "module_labels_negative": Case(module_call(_MAPS[0], -1 - _MAPS[1]), ValueError, "labels"),
    "module_labels_other_device": Case(module_call(_MAPS[0], _MAPS[1].to("meta")), ValueError, "labels"),
    "module_predictions_missing": Case(module_call(*_MAPS, sampler={"strategy": "hard_easy"}), ValueError,
                                       "predictions"),
    # pixcon.nn.PixelMemoryBank
    "bank_dim": Case(lambda: pixcon.nn.PixelMemoryBank(3, 4, 0), ValueError, "dim"),
    "bank_num_classes_zero": Case(lambda: pixcon.nn.PixelMemoryBank(0, 4, 2), ValueError, "num_classes"),
    "bank_size_per_class_float": Case(lambda: pixcon.nn.PixelMemoryBank(3, 4.0, 2), TypeError, "size_per_class"),
    "bank_segment_size_negative": Case(lambda: pixcon.nn.PixelMemoryBank(3, 4, 2, segment_size_per_class=-1),
                                       ValueError, "segment_size_per_class"),
    "bank_dtype_integer": Case(lambda: pixcon.nn.PixelMemoryBank(3, 4, 2, dtype=_INT), TypeError, "dtype"),
    "bank_ignore_index_string": Case(lambda: pixcon.nn.PixelMemoryBank(3, 4, 2, ignore_index="255"), TypeError,
                                     "ignore_index"),
    "bank_enqueue_labels": Case(bank_enqueue(torch.zeros(2, 2), torch.tensor([0, 7])), ValueError, "labels"),
    "bank_enqueue_labels_float": Case(bank_enqueue(torch.zeros(1, 2), torch.zeros(1)), TypeError, "labels"),
    "bank_enqueue_labels_length": Case(bank_enqueue(torch.zeros(2, 2), torch.zeros(1, dtype=_INT)), ValueError,
                                       "labels"),
    "bank_enqueue_labels_list": Case(bank_enqueue(torch.zeros(1, 2), [0]), TypeError, "labels"),
    "bank_enqueue_embeddings_width": Case(bank_enqueue(torch.zeros(2, 3), torch.tensor([0, 1])), ValueError,
                                          "embeddings"),
    "bank_enqueue_embeddings_int": Case(bank_enqueue(torch.zeros(1, 2, dtype=_INT), torch.tensor([0])), TypeError,
                                        "embeddings"),
    "bank_enqueue_embeddings_list": Case(bank_enqueue([[0.0, 0.0]], torch.tensor([0])), TypeError, "embeddings"),
    "bank_enqueue_image_ids_missing": Case(bank_enqueue(torch.zeros(1, 2), torch.tensor([0]), **_SEGMENT_BANK),
                                           ValueError, "image_ids"),
    "bank_enqueue_image_ids_negative": Case(bank_enqueue(torch.zeros(1, 2), torch.tensor([0]), torch.tensor([-1]),
                                                         **_SEGMENT_BANK), ValueError, "image_ids"),
    "bank_enqueue_image_ids_float": Case(bank_enqueue(torch.zeros(1, 2), torch.tensor([0]), torch.tensor([0.5]),
                                                      **_SEGMENT_BANK), TypeError, "image_ids"),
    # pixcon.nn.MultiScaleContrastiveLoss
    "multiscale_in_channels_int": Case(lambda: pixcon.nn.MultiScaleContrastiveLoss(4), TypeError, "in_channels"),
    "multiscale_in_channels_empty": Case(lambda: pixcon.nn.MultiScaleContrastiveLoss([]), ValueError, "in_channels"),
    "multiscale_in_channels_zero": Case(lambda: pixcon.nn.MultiScaleContrastiveLoss([0]), ValueError, "in_channels"),
    "multiscale_proj_channels": Case(lambda: pixcon.nn.MultiScaleContrastiveLoss([4], proj_channels=0), ValueError,
                                     "proj_channels"),
    "multiscale_proj_layers": Case(lambda: pixcon.nn.MultiScaleContrastiveLoss([4], proj_layers=0), ValueError,
                                   "proj_layers"),
    "multiscale_weights_short": Case(lambda: pixcon.nn.MultiScaleContrastiveLoss([4, 4], weights=[1.0]), ValueError,
                                     "weights"),
    "multiscale_weights_string": Case(lambda: pixcon.nn.MultiScaleContrastiveLoss([4], weights="1"), TypeError,
                                      "weights"),
    "multiscale_cross_pairs": Case(lambda: pixcon.nn.MultiScaleContrastiveLoss([4, 4], cross_scale_pairs=[(0, 0)]),
                                   ValueError, "cross-scale pair"),
    "multiscale_cross_pairs_name": Case(lambda: pixcon.nn.MultiScaleContrastiveLoss([4, 4], cross_scale_pairs="all"),
                                        ValueError, "cross_scale_pairs"),
    "multiscale_cross_pairs_malformed": Case(
        lambda: pixcon.nn.MultiScaleContrastiveLoss([4, 4], cross_scale_pairs=[(0,)]), TypeError, "cross_scale_pairs"),
    "multiscale_cross_weights_length": Case(
        lambda: pixcon.nn.MultiScaleContrastiveLoss([4, 4], cross_scale_weights=[1.0, 2.0]), ValueError,
        "cross_scale_weights"),
    "multiscale_reduction": Case(lambda: pixcon.nn.MultiScaleContrastiveLoss([4], reduction="none"), ValueError,
                                 "reduction"),
    "multiscale_temperature": Case(lambda: pixcon.nn.MultiScaleContrastiveLoss([4], temperature=0), ValueError,
                                   "temperature"),
    "multiscale_cross_temperature": Case(lambda: pixcon.nn.MultiScaleContrastiveLoss([4], cross_scale_temperature=0),
                                         ValueError, "cross_scale_temperature"),
    "multiscale_features_count": Case(multiscale_call([_MAPS[0]], _MAPS[1], (3, 3)), ValueError, "features"),
    "multiscale_features_tensor": Case(multiscale_call(_MAPS[0], _MAPS[1]), TypeError, "features"),
    "multiscale_features_3d": Case(multiscale_call([_MAPS[0][0]], _MAPS[1]), ValueError, "features[0]"),
    "multiscale_features_channels": Case(multiscale_call([_MAPS[0]], _MAPS[1], (5,)), ValueError, "features[0]"),
    "multiscale_labels_float": Case(multiscale_call([_MAPS[0]], _MAPS[1].float()), TypeError, "labels"),
    "multiscale_labels_list": Case(multiscale_call([_MAPS[0]], [[[0]]]), TypeError, "labels"),
    # pixcon.nn.CrossImageContrastiveLoss
    "cross_image_temperature": Case(lambda: pixcon.nn.CrossImageContrastiveLoss(temperature=0), ValueError,
                                    "temperature"),
    "cross_image_denominator": Case(lambda: pixcon.nn.CrossImageContrastiveLoss(denominator="one"), ValueError,
                                    "denominator"),
    "cross_image_reduction": Case(lambda: pixcon.nn.CrossImageContrastiveLoss(reduction="avg"), ValueError,
                                  "reduction"),
    "cross_image_size": Case(lambda: pixcon.nn.CrossImageContrastiveLoss(size=65), TypeError, "size"),
    "cross_image_permutation": Case(lambda: pixcon.nn.CrossImageContrastiveLoss(permutation="reverse"), ValueError,
                                    "permutation"),
    "cross_image_permutation_length": Case(lambda: pixcon.nn.CrossImageContrastiveLoss()(*_MAPS, *_MAPS, [0]),
                                           ValueError, "permutation"),
    "cross_image_permutation_range": Case(cross_image_call(*_MAPS, *_MAPS, permutation=[0, 5]), ValueError,
                                          "permutation"),
    "cross_image_embeddings_a_3d": Case(cross_image_call(_MAPS[0][0], _MAPS[1], *_MAPS), ValueError, "embeddings_a"),
    "cross_image_embeddings_b_width": Case(cross_image_call(*_MAPS, _maps(channels=5)[0], _MAPS[1]), ValueError,
                                           "embeddings_b"),
    "cross_image_embeddings_b_list": Case(cross_image_call(*_MAPS, [0.0], _MAPS[1]), TypeError, "embeddings_b"),
    "cross_image_embeddings_b_other_device": Case(
        cross_image_call(*_MAPS, _MAPS[0].to("meta"), _MAPS[1].to("meta")), ValueError, "embeddings_b"),
    "cross_image_labels_a_float": Case(cross_image_call(_MAPS[0], _MAPS[1].float(), *_MAPS), TypeError, "labels_a"),
    "cross_image_labels_b": Case(cross_image_call(*_MAPS, _MAPS[0], _MAPS[1][0]), ValueError, "labels_b"),
    # pixcon.mmseg.PixelContrastiveLoss
    "mmseg_loss_name": Case(mmseg_call(loss_name="contrast"), ValueError, "loss_name"),
    "mmseg_loss_name_int": Case(mmseg_call(loss_name=3), TypeError, "loss_name"),
    "mmseg_loss_weight_string": Case(mmseg_call(loss_weight="1.0"), TypeError, "loss_weight"),
    "mmseg_loss_weight_nan": Case(mmseg_call(loss_weight=float("nan")), ValueError, "loss_weight"),
    "mmseg_unknown_option": Case(mmseg_call(temprature=0.1), TypeError, "temprature"),
    "mmseg_temperature": Case(mmseg_call(temperature=0), ValueError, "temperature"),
    "mmseg_variant": Case(mmseg_call(variant="pixel"), ValueError, "variant"),
    "mmseg_registry_temperature": Case(lambda: MODELS.build({"type": "PixelContrastiveLoss", "temperature": -1.0}),
                                       ValueError, "temperature"),
    "mmseg_embeddings_3d": Case(mmseg_call(_MAPS[0][0], _MAPS[1]), ValueError, "embeddings"),
    "mmseg_labels_float": Case(mmseg_call(_MAPS[0], _MAPS[1].float()), TypeError, "labels"),
    # the rest of the public surface
    "head_layers": Case(lambda: pixcon.nn.ProjectionHead(4, num_layers=0), ValueError, "num_layers"),
    "head_in_channels": Case(lambda: pixcon.nn.ProjectionHead(0), ValueError, "in_channels"),
    "set_cpu_isa": Case(lambda: pixcon.set_cpu_isa("neon"), ValueError, "tier"),
}

# the APIs of the matrix, by the prefix of their cases
APIS = ("loss", "module", "sample", "bank", "multiscale", "cross_image", "mmseg")


def _params() -> list:
    skip_mmseg = pytest.mark.skipif(MMSEG_MISSING is not None, reason=MMSEG_MISSING or "")
    return [pytest.param(name, marks=skip_mmseg) if name.startswith("mmseg_") else name for name in CASES]


@pytest.mark.parametrize("case", _params())
def test_bad_argument_raises_the_stated_error_naming_it(case):
    call, error, argument = CASES[case]
    with pytest.raises(Exception) as raised:
        call()
    message = str(raised.value)
    # exactly the type: a RuntimeError or an AttributeError would be a leak from below
    assert type(raised.value) is error, f"{type(raised.value).__name__}: {message}"
    assert argument in message, message
    assert ".cpp:" not in message and ".cpp," not in message, message


def test_every_api_of_the_matrix_has_several_kinds_of_bad_input():
    per_api = Counter(next(api for api in APIS if name.startswith(api)) for name in CASES
                      if any(name.startswith(api) for api in APIS))
    assert len(CASES) >= 30
    assert all(per_api[api] >= 5 for api in APIS), per_api


def test_the_raw_op_says_which_python_error_an_argument_error_is():
    z, y = _rows()
    with pytest.raises(RuntimeError, match=r"^ValueError: pixcon\.contrastive_loss: labels"):
        torch.ops.pixcon.contrastive_loss(z, y[:5], torch.tensor([0, 6]), None, None, None, 0.1, 255, "all", False)
