"""DeepLabV3+ (segmentation_models_pytorch, trained from scratch) with pixcon's projection head.

The projection head reads the decoder features (stride 4, the features the classifier reads),
as in Zhao et al.: three 1x1 convolutions, ReLU between them, unit-normalised output. The head
is used by the contrastive pretraining stage only; fine-tuning and inference use the classifier.
"""

from __future__ import annotations

from typing import Callable

import segmentation_models_pytorch as smp
import torch
from torch import Tensor, nn

import pixcon

# The scenes' mean and spread per channel are about 0.5 and 0.25 whatever the seed.
_MEAN, _STD = 0.5, 0.25


class DeepLabWithProjection(nn.Module):
    """``forward(images [B, 3, H, W] in [0, 1])`` returns ``(logits [B, C, H, W], embeddings
    [B, D, H/4, W/4])``; ``features`` returns the decoder features [B, F, H/4, W/4]."""

    def __init__(self, num_classes: int, encoder: str = "resnet18", decoder_channels: int = 256,
                 projection_channels: int = 256, atrous_rates: tuple[int, int, int] = (2, 4, 6),
                 encoder_depth: int = 5) -> None:
        super().__init__()
        # encoder_weights=None: nothing is downloaded, the encoder trains from scratch. The ASPP
        # rates are scaled down from (12, 24, 36) to the 4x4 to 6x6 maps of 64-96 pixel images.
        # encoder_depth=4 stops the encoder after its stride-16 stage: at output stride 16 the
        # last ResNet stage runs dilated at stride 16 too, and costs over half of the step.
        self.net = smp.DeepLabV3Plus(encoder_name=encoder, encoder_depth=encoder_depth, encoder_weights=None,
                                     classes=num_classes, decoder_channels=decoder_channels,
                                     encoder_output_stride=16, decoder_atrous_rates=atrous_rates)
        if encoder_depth < 5 and hasattr(self.net.encoder, "layer4"):
            self.net.encoder.layer4 = nn.Identity()  # smp keeps the unused stage's weights
        self.head = pixcon.nn.ProjectionHead(decoder_channels, channels=projection_channels, num_layers=3)

    def features(self, images: Tensor) -> Tensor:
        return self.net.decoder(self.net.encoder((images - _MEAN) / _STD))

    def classify(self, features: Tensor) -> Tensor:
        return self.net.segmentation_head(features)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        features = self.features(images)
        return self.classify(features), self.head(features)

    @torch.no_grad()
    def in_eval(self, fn: Callable[[Tensor], Tensor], images: Tensor, batch_size: int = 32) -> Tensor:
        """``fn`` (e.g. ``self.features``) over ``images`` in batches, in eval mode, concatenated
        on the CPU; the training mode is restored after."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out = [fn(images[i:i + batch_size].to(device)).cpu() for i in range(0, images.shape[0], batch_size)]
        self.train(was_training)
        return torch.cat(out)

    def predict(self, images: Tensor) -> Tensor:
        """Softmax probabilities [N, C, H, W] (on the CPU) in eval mode."""
        return self.in_eval(lambda x: torch.softmax(self.classify(self.features(x)), dim=1), images)
