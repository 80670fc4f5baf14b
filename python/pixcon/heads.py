"""The projection head of Zhao et al.: 1x1 convolutions onto unit vectors."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .options import check_count


class ProjectionHead(nn.Module):
    """1x1 convolutions with ReLU between them, output unit-normalised along channels
    (the projection head of Zhao et al.: three layers of 256 channels)."""

    def __init__(self, in_channels: int, channels: int = 256, num_layers: int = 3) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("channels", channels), ("num_layers", num_layers)):
            check_count("ProjectionHead", name, value)
        layers: list[nn.Module] = []
        for k in range(num_layers):
            layers.append(nn.Conv2d(in_channels if k == 0 else channels, channels, kernel_size=1))
            if k < num_layers - 1:
                layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> Tensor:
        return F.normalize(self.layers(features), dim=1)
