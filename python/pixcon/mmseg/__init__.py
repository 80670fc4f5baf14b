"""pixcon for mmsegmentation 1.x: importing this package registers, in ``mmseg.registry.MODELS``,

- ``PixelContrastiveLoss``: pixcon's loss with mmseg's loss conventions (``loss_weight``,
  ``loss_name``), and
- ``DepthwiseSeparableASPPContrastHead``: DeepLabV3+'s decode head plus pixcon's projection
  head, trained with the contrastive term on the decoder features.

Activate it in a config with ``custom_imports = dict(imports=['pixcon.mmseg'])``; the configs
under ``examples/mmseg`` do. Needs mmsegmentation 1.2.x with mmengine and mmcv 2.1.x, or the
maintained fork onedl-mmsegmentation 1.4.x with onedl-mmengine and onedl-mmcv 2.3.x, mmcv with its
ops (``scripts/install_mmseg.sh`` installs either line into the project's environment).
"""

from __future__ import annotations

from .decode_head import DepthwiseSeparableASPPContrastHead
from .loss import PixelContrastiveLoss

__all__ = ["DepthwiseSeparableASPPContrastHead", "PixelContrastiveLoss"]
