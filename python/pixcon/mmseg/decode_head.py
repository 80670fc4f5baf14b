"""DeepLabV3+'s decode head with pixcon's projection head and contrastive term."""

from __future__ import annotations

from typing import Any

from mmseg.models.decode_heads import DepthwiseSeparableASPPHead
from mmseg.registry import MODELS
from mmseg.utils import SampleList
from torch import Tensor

from ..nn import ProjectionHead


@MODELS.register_module()
class DepthwiseSeparableASPPContrastHead(DepthwiseSeparableASPPHead):
    """``DepthwiseSeparableASPPHead`` (DeepLabV3+) plus ``pixcon.nn.ProjectionHead`` on the
    decoder features (the input of the classifier ``conv_seg``), as in Zhao et al.

    In training mode ``forward`` returns ``(seg_logits, embeddings)`` and ``loss`` adds the
    contrastive term, computed by ``loss_contrast`` on the embeddings, to the parent's losses
    (``loss_decode`` on the logits; ``loss_decode=[]`` gives contrastive pretraining alone).
    The loss receives the predicted classes (argmax of the detached logits) when its sampler
    uses them (``"hard_easy"``). In eval mode the head is its parent: same logits, same
    predictions, and a checkpoint of this head loads into a plain
    ``DepthwiseSeparableASPPHead`` (the projection weights are then unused keys).

    Args:
        loss_contrast: config of the contrastive loss, e.g.
            ``dict(type='PixelContrastiveLoss', loss_weight=0.1, sampler=dict(strategy='uniform'))``.
        projection_channels: channels of the projection head's layers and of the embeddings.
        projection_layers: number of 1x1 convolutions in the projection head.
        **kwargs: ``DepthwiseSeparableASPPHead``'s arguments.
    """

    def __init__(self, *, loss_contrast: dict[str, Any] | None = None,
                 projection_channels: int = 256, projection_layers: int = 3,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.projection = ProjectionHead(self.channels, projection_channels, projection_layers)
        self.loss_contrast = MODELS.build(
            dict(type="PixelContrastiveLoss") if loss_contrast is None else loss_contrast)

    def cls_seg(self, feat: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """The parent's logits; in training mode also the embeddings of ``feat``.

        The parent's ``forward`` returns what this returns, and ``feat`` (before dropout) is
        exactly the decoder feature map, so overriding here rather than ``forward`` reuses
        mmseg's decoder unchanged.
        """
        seg_logits = super().cls_seg(feat)
        if not self.training:
            return seg_logits
        return seg_logits, self.projection(feat)

    def loss_by_feat(self, seg_logits: tuple[Tensor, Tensor],
                     batch_data_samples: SampleList) -> dict[str, Tensor]:
        """The parent's losses on the logits plus the contrastive term on the embeddings."""
        if not isinstance(seg_logits, tuple):
            raise RuntimeError(
                "DepthwiseSeparableASPPContrastHead: the losses need the embeddings, which "
                "forward returns in training mode only; call loss() with the head in train()")
        logits, embeddings = seg_logits
        losses = super().loss_by_feat(logits, batch_data_samples)
        labels = self._stack_batch_gt(batch_data_samples).squeeze(1)
        sampler = self.loss_contrast.sampler
        predictions = logits.detach().argmax(dim=1) if sampler is not None and sampler.uses_predictions else None
        term = self.loss_contrast(embeddings, labels, predictions=predictions, ignore_index=self.ignore_index)
        name = self.loss_contrast.loss_name
        # mmseg sums terms that share a name.
        losses[name] = losses[name] + term if name in losses else term
        return losses
