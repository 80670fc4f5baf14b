"""A segmentation training step with pixcon's contrastive term, on generated data.

A small encoder-decoder stands in for DeepLabV3+ (whose decoder features are what the
projection head reads); swapping in a real DeepLabV3+ changes only `SegNet`. Run:

    .venv/bin/python examples/train_step.py --steps 20
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

import pixcon


class SegNet(nn.Module):
    """Encoder at 1/4 resolution, decoder features, and a classifier."""

    def __init__(self, num_classes: int, width: int = 32) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.decoder = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.decoder(self.encoder(images))
        logits = F.interpolate(self.classifier(features), size=images.shape[-2:], mode="bilinear",
                               align_corners=False)
        return logits, features


def make_batch(batch: int, size: int, num_classes: int, generator: torch.Generator):
    """Images of coloured rectangles on noise; the label is the rectangle's class."""
    images = torch.rand(batch, 3, size, size, generator=generator) * 0.3
    labels = torch.zeros(batch, size, size, dtype=torch.long)
    palette = torch.rand(num_classes, 3, generator=generator)
    for b in range(batch):
        for _ in range(3):
            c = int(torch.randint(1, num_classes, (1,), generator=generator))
            y0, x0 = (int(v) for v in torch.randint(0, size // 2, (2,), generator=generator))
            h, w = (int(v) for v in torch.randint(size // 8, size // 2, (2,), generator=generator))
            images[b, :, y0:y0 + h, x0:x0 + w] += palette[c, :, None, None]
            labels[b, y0:y0 + h, x0:x0 + w] = c
    labels[torch.rand(labels.shape, generator=generator) < 0.02] = 255  # unlabelled pixels
    return images, labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--weight", type=float, default=0.1, help="weight of the contrastive term")
    args = parser.parse_args(argv)

    generator = torch.Generator().manual_seed(0)
    model = SegNet(args.classes)
    head = pixcon.nn.ProjectionHead(in_channels=32, channels=64)
    contrast = pixcon.nn.PixelContrastiveLoss(temperature=0.07)  # every pixel of each image
    optimizer = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=1e-3)
    for step in range(args.steps):
        images, labels = make_batch(args.batch, args.size, args.classes, generator)
        logits, features = model(images)
        ce = F.cross_entropy(logits, labels, ignore_index=255)
        con = contrast(head(features), labels)  # labels resized (nearest) to the features
        loss = ce + args.weight * con
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        print(f"step {step:3d}  cross-entropy {ce.item():.4f}  contrastive {con.item():.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
