"""The generated data set that ships with the example: procedural scenes of textured shapes.

Every scene is a deterministic function of (seed, index, size), so the data set ships as this
code and is rebuilt in memory in about a second. Classes:

    0 background  smooth blotches of two colours
    1 disc        polka dots
    2 square      checkerboard (rotated)
    3 triangle    stripes (any orientation)
    4 bar         2x2-pixel grain (a long thin rectangle)

Each class has its own texture family and shape, but the two colours of every texture are drawn
from the same distribution for every class (background included), so colour alone says nothing
about the class. Two to five objects per scene overlap (later ones occlude earlier ones; the
label is the visible object), under a random brightness gain and linear lighting gradient, with
additive Gaussian noise.

Splits: "train" (of which only the first ``num_labelled`` images' labels are given to training;
the others are the unlabelled images — their true labels are kept only to score the pseudo
labels) and "val".
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

CLASSES = ("background", "disc", "square", "triangle", "bar")
NUM_CLASSES = len(CLASSES)
IGNORE_INDEX = 255
#: Colours of the classes in the figures (label maps and embedding plots).
CLASS_COLOURS = ("#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two random colours with some contrast between them (the same law for every class)."""
    a = rng.uniform(0.0, 1.0, 3)
    b = rng.uniform(0.0, 1.0, 3)
    while np.abs(a - b).sum() < 0.9:
        b = rng.uniform(0.0, 1.0, 3)
    return a.astype(np.float32), b.astype(np.float32)


def _rotated(xx: np.ndarray, yy: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = math.cos(angle), math.sin(angle)
    return xx * c + yy * s, -xx * s + yy * c


def _texture(cls: int, rng: np.random.Generator, size: int, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """A [size, size] pattern in [0, 1] of the class's texture family, random parameters."""
    scale = size / 64.0
    u, v = _rotated(xx + rng.uniform(0, 64), yy + rng.uniform(0, 64), rng.uniform(0, math.pi))
    if cls == 0:  # blotches: a coarse random field, upsampled bilinearly, squashed
        cells = int(rng.integers(3, 6))
        coarse = torch.from_numpy(rng.standard_normal((1, 1, cells, cells)).astype(np.float32))
        field = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)[0, 0]
        return torch.sigmoid(3.0 * field).numpy()
    if cls == 1:  # polka dots
        period = rng.uniform(7.0, 10.0) * scale
        du = np.mod(u, period) - period / 2
        dv = np.mod(v, period) - period / 2
        return (du * du + dv * dv < (0.3 * period) ** 2).astype(np.float32)
    if cls == 2:  # checkerboard
        period = rng.uniform(6.0, 8.0) * scale
        return np.mod(np.floor(u / period) + np.floor(v / period), 2).astype(np.float32)
    if cls == 3:  # stripes
        period = rng.uniform(5.0, 8.0) * scale
        return (np.mod(u, period) < period * rng.uniform(0.35, 0.65)).astype(np.float32)
    if cls == 4:  # grain: random binary 2x2 blocks
        block = max(1, int(round(2 * scale)))
        cells = -(-size // block)
        grain = rng.random((cells, cells)) < 0.5
        return np.kron(grain, np.ones((block, block), dtype=bool))[:size, :size].astype(np.float32)
    raise ValueError(cls)


def _shape_mask(cls: int, rng: np.random.Generator, size: int, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """A boolean [size, size] mask of one shape of class ``cls`` at a random place."""
    s = size / 64.0
    cx, cy = rng.uniform(0.1 * size, 0.9 * size, 2)
    x, y = xx - cx, yy - cy
    if cls == 1:  # disc
        r = rng.uniform(9.0, 15.0) * s
        return x * x + y * y <= r * r
    if cls == 2:  # square
        half = rng.uniform(8.0, 14.0) * s
        u, v = _rotated(x, y, rng.uniform(0, math.pi / 2))
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    if cls == 3:  # triangle: three half-planes around the centre, slightly irregular
        r = rng.uniform(12.0, 20.0) * s
        start = rng.uniform(0, 2 * math.pi)
        angles = start + np.array([0.0, 2.0, 4.0]) * math.pi / 3 + rng.uniform(-0.25, 0.25, 3)
        px, py = r * np.cos(angles), r * np.sin(angles)
        inside = np.ones_like(x, dtype=bool)
        for i in range(3):
            ax, ay, bx, by = px[i], py[i], px[(i + 1) % 3], py[(i + 1) % 3]
            inside &= (bx - ax) * (y - ay) - (by - ay) * (x - ax) >= 0
        return inside
    if cls == 4:  # bar: a long thin rectangle
        length = rng.uniform(16.0, 28.0) * s
        width = rng.uniform(4.0, 6.0) * s
        u, v = _rotated(x, y, rng.uniform(0, math.pi))
        return (np.abs(u) <= length) & (np.abs(v) <= width)
    raise ValueError(cls)


def make_scene(seed: int, index: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Scene ``index`` of the data set of ``seed``: image float32 [3, size, size] in [0, 1] and
    labels uint8 [size, size]."""
    rng = np.random.default_rng([seed, index, size])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)

    def paint(cls: int) -> np.ndarray:
        a, b = _colours(rng)
        t = _texture(cls, rng, size, xx, yy)[..., None]
        return t * a + (1.0 - t) * b  # [size, size, 3]

    image = paint(0)
    labels = np.zeros((size, size), dtype=np.uint8)
    for _ in range(int(rng.integers(2, 6))):
        cls = int(rng.integers(1, NUM_CLASSES))
        mask = _shape_mask(cls, rng, size, xx, yy)
        if mask.sum() < 4:
            continue
        image[mask] = paint(cls)[mask]
        labels[mask] = cls
    # lighting: a global gain and a linear gradient in a random direction, then sensor noise
    angle = rng.uniform(0, 2 * math.pi)
    ramp = ((xx - size / 2) * math.cos(angle) + (yy - size / 2) * math.sin(angle)) / size
    light = rng.uniform(0.7, 1.2) * (1.0 + rng.uniform(0.0, 0.6) * ramp)
    image = image * light[..., None] + rng.uniform(-0.1, 0.1)
    image = image + rng.normal(0.0, rng.uniform(0.02, 0.06), image.shape)
    image = np.clip(image, 0.0, 1.0).astype(np.float32).transpose(2, 0, 1)
    return np.ascontiguousarray(image), labels


@dataclasses.dataclass
class SceneData:
    """The splits as tensors (images float32 [N, 3, S, S] in [0, 1], labels int64 [N, S, S])."""

    labelled_images: torch.Tensor
    labelled_labels: torch.Tensor
    unlabelled_images: torch.Tensor
    unlabelled_true_labels: torch.Tensor  # never used for training; scores the pseudo labels
    val_images: torch.Tensor
    val_labels: torch.Tensor

    def summary(self) -> dict:
        counts = torch.bincount(self.val_labels.flatten(), minlength=NUM_CLASSES).double()
        return {
            "image_size": int(self.val_images.shape[-1]),
            "classes": list(CLASSES),
            "train_images": int(self.labelled_images.shape[0] + self.unlabelled_images.shape[0]),
            "labelled_train_images": int(self.labelled_images.shape[0]),
            "unlabelled_train_images": int(self.unlabelled_images.shape[0]),
            "val_images": int(self.val_images.shape[0]),
            "val_class_fractions": [round(float(c), 4) for c in counts / counts.sum()],
        }


def _stack(seed: int, indices: range, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*(make_scene(seed, i, size) for i in indices))
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels)).long()


def generate(seed: int = 0, size: int = 64, num_train: int = 320, num_labelled: int = 16,
             num_val: int = 64) -> SceneData:
    """Builds the data set in memory: train scenes 0..num_train-1 (the first ``num_labelled``
    labelled), validation scenes from a disjoint index range."""
    if not 0 < num_labelled <= num_train:
        raise ValueError(f"num_labelled must be in [1, num_train], got {num_labelled}")
    train_images, train_labels = _stack(seed, range(num_train), size)
    val_images, val_labels = _stack(seed, range(10**6, 10**6 + num_val), size)
    return SceneData(train_images[:num_labelled], train_labels[:num_labelled],
                     train_images[num_labelled:], train_labels[num_labelled:], val_images, val_labels)


def preview(data: SceneData, path, count: int = 6) -> None:
    """Saves a PNG of a few labelled training scenes above their label maps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    count = min(count, data.labelled_images.shape[0])
    fig, axes = plt.subplots(2, count, figsize=(1.6 * count, 3.5), squeeze=False)
    cmap = ListedColormap(CLASS_COLOURS)
    for i in range(count):
        axes[0, i].imshow(data.labelled_images[i].permute(1, 2, 0).numpy())
        axes[1, i].imshow(data.labelled_labels[i].numpy(), cmap=cmap, vmin=0, vmax=NUM_CLASSES - 1,
                          interpolation="nearest")
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.legend(handles=[Patch(color=c, label=n) for c, n in zip(CLASS_COLOURS, CLASSES)],
               loc="lower center", ncol=NUM_CLASSES, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=80)
    plt.close(fig)
