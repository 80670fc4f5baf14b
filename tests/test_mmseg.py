"""pixcon.mmseg against the real mmsegmentation 1.x, mmengine and mmcv, upstream's or the
onedl fork's (installed from PyPI by scripts/install_mmseg.sh): the registered loss and decode
head, then mmengine's Runner on the configs of examples/mmseg with a small generated dataset, on
the CPU.

Without the mm packages the module is skipped, except under CI (the CI variable set), where
their absence is an error: CI installs them.
"""

from __future__ import annotations

import copy
import math
import multiprocessing
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pytest
import torch

try:
    import mmcv.ops  # noqa: F401  (mmseg's models import the compiled ops)
    import mmengine
    import mmseg
except ImportError as error:
    if os.environ.get("CI"):
        raise ImportError(f"CI needs the mm packages for pixcon.mmseg (scripts/install_mmseg.sh): {error}") from error
    pytest.skip(f"mmsegmentation/mmengine/mmcv with ops not installed (run scripts/install_mmseg.sh): {error}",
                allow_module_level=True)

from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmengine.structures import PixelData
from mmseg.models.decode_heads import DepthwiseSeparableASPPHead
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from PIL import Image

import pixcon.mmseg

CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "mmseg"
CONFIG_CE = CONFIGS / "deeplabv3plus_r50-d8_pixcon-ce_4xb4-80k_ade20k-512x512.py"
CONFIG_STAGE1 = CONFIGS / "deeplabv3plus_r50-d8_pixcon-stage1_4xb4-80k_ade20k-512x512.py"
CONFIG_STAGE2 = CONFIGS / "deeplabv3plus_r50-d8_pixcon-stage2_4xb4-80k_ade20k-512x512.py"

# The two lines of mm packages scripts/install_mmseg.sh installs: for each module, its
# distribution and version prefix. Both lines use the same import names, so only the
# distributions tell them apart.
MM_LINES = {
    "upstream": {mmseg: ("mmsegmentation", "1.2."), mmcv: ("mmcv", "2.1.0"), mmengine: ("mmengine", "0.10.")},
    "onedl": {mmseg: ("onedl-mmsegmentation", "1.4."), mmcv: ("onedl-mmcv", "2.3."),
              mmengine: ("onedl-mmengine", "0.10.")},
}

NUM_CLASSES = 4
SIZE = 64
NUM_IMAGES = 8
IGNORE = 255


def _installed_version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def test_real_mm_packages_are_imported():
    """The integration runs against the installed libraries of one line, at its pinned versions."""
    assert "site-packages" in mmseg.__file__ and "site-packages" in mmengine.__file__
    lines = [line for line, packages in MM_LINES.items() if _installed_version(packages[mmseg][0])]
    assert len(lines) == 1, f"mmseg's distributions of more than one line, or none: {lines}"
    for module, (distribution, prefix) in MM_LINES[lines[0]].items():
        assert _installed_version(distribution) == module.__version__, distribution
        assert module.__version__.startswith(prefix), (distribution, module.__version__)
    assert MODELS.get("PixelContrastiveLoss") is pixcon.mmseg.PixelContrastiveLoss
    assert MODELS.get("DepthwiseSeparableASPPContrastHead") is pixcon.mmseg.DepthwiseSeparableASPPContrastHead


# ---------------------------------------------------------------------------------------------
# The loss and the head on their own.


def test_loss_follows_mmseg_conventions():
    loss = MODELS.build(dict(type="PixelContrastiveLoss", loss_weight=0.5))
    assert loss.loss_name == "loss_contrast" and loss.ignore_index == 255
    g = torch.Generator().manual_seed(0)
    embeddings = torch.randn(2, 8, 6, 6, generator=g)
    labels = torch.randint(0, 3, (2, 12, 12), generator=g)
    labels[:, :2] = IGNORE
    plain = pixcon.nn.PixelContrastiveLoss()(embeddings, labels)
    # What a decode head passes to every loss is accepted and changes nothing.
    weighted = loss(embeddings, labels, weight=torch.rand(2, 12, 12), ignore_index=0, avg_factor=3)
    torch.testing.assert_close(weighted, 0.5 * plain)
    with pytest.raises(ValueError, match="loss_"):
        MODELS.build(dict(type="PixelContrastiveLoss", loss_name="contrast"))


def _head_config(**overrides) -> dict:
    config = dict(
        type="DepthwiseSeparableASPPContrastHead", in_channels=32, in_index=3, channels=16,
        dilations=(1, 2), c1_in_channels=8, c1_channels=4, dropout_ratio=0.1,
        num_classes=NUM_CLASSES, norm_cfg=dict(type="BN", requires_grad=True), align_corners=False,
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
        projection_channels=8, projection_layers=2)
    config.update(overrides)
    return config


def _features_and_samples(seed: int = 0) -> tuple[list[torch.Tensor], list[SegDataSample]]:
    """Backbone-like features (stride 4 and 8 of a 32x32 image) and its labels."""
    g = torch.Generator().manual_seed(seed)
    inputs = [torch.randn(2, 8, 8, 8, generator=g), torch.randn(2, 8, 4, 4, generator=g),
              torch.randn(2, 16, 4, 4, generator=g), torch.randn(2, 32, 4, 4, generator=g)]
    samples = []
    for _ in range(2):
        labels = torch.randint(0, NUM_CLASSES, (1, 32, 32), generator=g)
        labels[:, :3] = IGNORE
        sample = SegDataSample(gt_sem_seg=PixelData(data=labels))
        sample.set_metainfo(dict(img_shape=(32, 32), pad_shape=(32, 32)))
        samples.append(sample)
    return inputs, samples


@pytest.mark.parametrize("sampler", [
    None,
    dict(strategy="uniform", num_samples=20),
    dict(strategy="class_balanced", min_views=2, max_views=10),
    dict(strategy="hard_easy", max_samples=40, max_views=4),
])
def test_head_adds_the_contrastive_term_with_any_sampler(sampler):
    torch.manual_seed(0)
    head = MODELS.build(_head_config(
        loss_contrast=dict(type="PixelContrastiveLoss", loss_weight=0.1, sampler=sampler)))
    head.train()
    inputs, samples = _features_and_samples()
    seg_logits, embeddings = head(inputs)
    assert seg_logits.shape == (2, NUM_CLASSES, 8, 8) and embeddings.shape == (2, 8, 8, 8)
    losses = head.loss(inputs, samples, train_cfg={})
    assert set(losses) == {"loss_ce", "loss_contrast", "acc_seg"}
    assert torch.isfinite(losses["loss_contrast"]) and losses["loss_contrast"] > 0
    losses["loss_contrast"].backward()
    assert head.projection.layers[0].weight.grad.abs().sum() > 0


def test_head_without_cross_entropy_trains_the_contrastive_term_alone():
    head = MODELS.build(_head_config(loss_decode=[]))
    inputs, samples = _features_and_samples()
    losses = head.train().loss(inputs, samples, train_cfg={})
    assert set(losses) == {"loss_contrast", "acc_seg"}


def test_head_predicts_as_its_parent():
    head = MODELS.build(_head_config())
    config = _head_config(type="DepthwiseSeparableASPPHead")
    for key in ("projection_channels", "projection_layers"):
        config.pop(key)
    parent = MODELS.build(config)
    assert type(parent) is DepthwiseSeparableASPPHead
    result = parent.load_state_dict(head.state_dict(), strict=False)
    assert not result.missing_keys and all(k.startswith("projection.") for k in result.unexpected_keys)
    head.eval()
    parent.eval()
    inputs, samples = _features_and_samples()
    metas = [sample.metainfo for sample in samples]
    with torch.no_grad():
        torch.testing.assert_close(head(inputs), parent(inputs), rtol=0, atol=0)
        torch.testing.assert_close(head.predict(inputs, metas, test_cfg={}),
                                   parent.predict(inputs, metas, test_cfg={}), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# mmengine's Runner on the example configs.


def _write_dataset(root: Path) -> None:
    """NUM_IMAGES images of coloured shapes (classes 1..3) on a noisy background (class 0), with
    an unlabelled (255) border, in mmseg's BaseSegDataset layout: img/*.png and ann/*.png."""
    rng = np.random.default_rng(0)
    palette = np.array([[40, 40, 40], [220, 40, 40], [40, 200, 60], [50, 80, 230]], dtype=np.float64)
    (root / "img").mkdir(parents=True)
    (root / "ann").mkdir()
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for i in range(NUM_IMAGES):
        labels = np.zeros((SIZE, SIZE), dtype=np.uint8)
        for cls in range(1, NUM_CLASSES):
            cy, cx = rng.integers(12, SIZE - 12, size=2)
            r = rng.integers(6, 14)
            if cls == 2:  # a disc; the other classes are squares
                labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = cls
            else:
                labels[cy - r:cy + r, cx - r:cx + r] = cls
        image = palette[labels] + rng.normal(0, 20, size=(SIZE, SIZE, 3))
        labels[:2] = IGNORE
        labels[:, -2:] = IGNORE
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / "img" / f"{i}.png")
        Image.fromarray(labels).save(root / "ann" / f"{i}.png")


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mmseg_data")
    _write_dataset(root)
    return root


def _small_config(path: Path, data_root: Path, work_dir: Path, iterations: int) -> Config:
    """The example config with a ResNet-18-like backbone of 16 base channels, BN instead of
    SyncBN, no pretrained weights, no validation, and the generated dataset, for the CPU."""
    cfg = Config.fromfile(str(path))
    norm = dict(type="BN", requires_grad=True)
    cfg.model.pretrained = None
    cfg.model.data_preprocessor.size = (SIZE, SIZE)
    cfg.model.backbone.update(depth=18, base_channels=16, stem_channels=16, norm_cfg=norm)
    cfg.model.decode_head.update(in_channels=128, c1_in_channels=16, c1_channels=8, channels=32,
                                 dilations=(1, 2, 3, 4), num_classes=NUM_CLASSES, norm_cfg=norm)
    if "projection_channels" in cfg.model.decode_head:
        cfg.model.decode_head.projection_channels = 32
    if cfg.model.get("auxiliary_head") is not None:
        cfg.model.auxiliary_head.update(in_channels=64, channels=16, num_classes=NUM_CLASSES,
                                        norm_cfg=norm)
    cfg.train_dataloader = dict(
        batch_size=4, num_workers=0, persistent_workers=False,
        sampler=dict(type="InfiniteSampler", shuffle=True),
        dataset=dict(
            type="BaseSegDataset", data_root=str(data_root),
            data_prefix=dict(img_path="img", seg_map_path="ann"),
            img_suffix=".png", seg_map_suffix=".png",
            metainfo=dict(classes=("background", "square", "disc", "block")),
            pipeline=[dict(type="LoadImageFromFile"), dict(type="LoadAnnotations"),
                      dict(type="PackSegInputs")]))
    for stage in ("val", "test"):
        cfg[f"{stage}_dataloader"] = cfg[f"{stage}_cfg"] = cfg[f"{stage}_evaluator"] = None
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=iterations, val_interval=iterations + 1)
    cfg.param_scheduler = []  # constant learning rate: the base's PolyLR spans 80k iterations
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = iterations
    cfg.randomness = dict(seed=0)
    # The Runner force-sets the process's multiprocessing start method (to "fork" by default);
    # keeping the current one leaves the rest of the test session as it was.
    cfg.env_cfg.mp_cfg.mp_start_method = multiprocessing.get_start_method()
    cfg.launcher = "none"
    cfg.work_dir = str(work_dir)
    return cfg


def _losses(runner: Runner, key: str) -> list[float]:
    """Every value of a logged training scalar (train/<key>), one per iteration."""
    values, _ = runner.message_hub.get_scalar(f"train/{key}").data
    return [float(v) for v in values]


def test_runner_trains_with_cross_entropy_and_contrast(dataset_root, tmp_path):
    iterations = 8
    cfg = _small_config(CONFIG_CE, dataset_root, tmp_path / "ce", iterations)
    assert cfg.model.decode_head.type == "DepthwiseSeparableASPPContrastHead"
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert isinstance(runner.model.decode_head, pixcon.mmseg.DepthwiseSeparableASPPContrastHead)
    total = _losses(runner, "loss")
    contrast = _losses(runner, "decode.loss_contrast")
    assert len(total) == len(contrast) == iterations
    assert all(math.isfinite(v) for v in total + contrast)
    assert all(v > 0 for v in contrast)
    first, last = np.mean(total[:3]), np.mean(total[-3:])
    assert last < first, f"loss did not decrease: {total}"


def test_runner_contrastive_pretraining_then_cross_entropy_fine_tuning(dataset_root, tmp_path, monkeypatch):
    iterations = 3
    stage1 = _small_config(CONFIG_STAGE1, dataset_root, tmp_path / "stage1", iterations)
    assert stage1.model.auxiliary_head is None and stage1.model.decode_head.loss_decode == []
    runner1 = Runner.from_cfg(stage1)
    runner1.train()
    assert all(math.isfinite(v) for v in _losses(runner1, "decode.loss_contrast"))
    assert runner1.message_hub.get_scalar("train/loss").data[0].tolist() == pytest.approx(
        _losses(runner1, "decode.loss_contrast"))  # the contrastive term is the whole loss
    checkpoint = tmp_path / "stage1" / f"iter_{iterations}.pth"
    assert checkpoint.is_file()

    stage2 = _small_config(CONFIG_STAGE2, dataset_root, tmp_path / "stage2", iterations)
    assert stage2.model.decode_head.type == "DepthwiseSeparableASPPHead"
    stage2.load_from = str(checkpoint)
    # mmengine 0.10.7 calls torch.load without weights_only, whose default (True since torch
    # 2.6) refuses the message hub that mmengine saves in its checkpoints: the documented
    # switch back to full unpickling, for this trusted, self-made checkpoint (onedl-mmengine
    # falls back to it by itself).
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    runner2 = Runner.from_cfg(stage2)
    loaded = _StateAtStart()
    runner2.register_hook(loaded)
    runner2.train()
    trained = runner1.model.state_dict()
    for name, value in loaded.state.items():
        if name.startswith(("backbone.", "decode_head.")):
            torch.testing.assert_close(value, trained[name], rtol=0, atol=0, msg=name)
    assert not any(name.startswith("decode_head.projection") for name in loaded.state)
    assert all(math.isfinite(v) for v in _losses(runner2, "decode.loss_ce"))


class _StateAtStart(Hook):
    """Copies the model's weights when training starts, after the Runner has loaded load_from."""

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] = {}

    def before_train(self, runner: Runner) -> None:
        self.state = copy.deepcopy(runner.model.state_dict())
