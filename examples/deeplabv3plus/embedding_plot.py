"""The class distribution of a model's pixel embeddings: a t-SNE map of validation pixels.

Like the paper's figure, the points are the decoder features (the stride-4 features the
classifier reads, L2-normalised), one point per sampled validation pixel, coloured by its true
class. The same pixels are used for every setting. The silhouette score (cosine distance, true
classes as clusters; -1..1, higher = more compact and separated classes) puts a number on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .dataset import CLASS_COLOURS, CLASSES, IGNORE_INDEX, NUM_CLASSES


def sample_pixels(labels: Tensor, feature_size: int, per_class: int, seed: int) -> tuple[Tensor, Tensor]:
    """Up to ``per_class`` random pixels of each class of the labels resized (nearest) to the
    feature map: flat indices into [N, h, w] and their classes."""
    small = F.interpolate(labels[:, None].float(), size=(feature_size, feature_size), mode="nearest")[:, 0].long()
    flat = small.flatten()
    gen = torch.Generator().manual_seed(seed)
    picks = []
    for c in range(NUM_CLASSES):
        idx = (flat == c).nonzero()[:, 0]
        picks.append(idx[torch.randperm(idx.numel(), generator=gen)[:per_class]])
    idx = torch.cat(picks)
    keep = flat[idx] != IGNORE_INDEX
    return idx[keep], flat[idx[keep]]


def decoder_features(model, images: Tensor, indices: Tensor) -> Tensor:
    """L2-normalised decoder features [len(indices), F] at the given flat pixel indices."""
    feats = model.in_eval(model.features, images)  # [N, F, h, w]
    rows = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1])[indices]
    return F.normalize(rows, dim=1)


def tsne(points: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(2.0, (points.shape[0] - 1) / 3.0)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                max_iter=500).fit_transform(points)


def silhouette(points: np.ndarray, classes: np.ndarray) -> float | None:
    from sklearn.metrics import silhouette_score

    if len(np.unique(classes)) < 2:
        return None
    return float(silhouette_score(points, classes, metric="cosine"))


def plot(xy: np.ndarray, classes: np.ndarray, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 5.2))
    for c, (name, colour) in enumerate(zip(CLASSES, CLASS_COLOURS)):
        sel = classes == c
        if sel.any():
            ax.scatter(xy[sel, 0], xy[sel, 1], s=4, c=colour, label=name, alpha=0.7, linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    ax.legend(loc="best", fontsize=7, markerscale=3, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def embedding_figure(model, images: Tensor, indices: Tensor, classes: Tensor, path: Path, title: str,
                     seed: int) -> dict:
    """Writes the t-SNE PNG of the model's features at the sampled pixels; returns the
    silhouette score and the figure's path."""
    feats = decoder_features(model, images, indices).numpy()
    labels = classes.numpy()
    score = silhouette(feats, labels)
    plot(tsne(feats, seed), labels, path, f"{title}\nsilhouette (cosine) {score:.3f}" if score is not None else title)
    return {"embedding_figure": path.name, "embedding_silhouette": score, "embedding_points": int(len(labels))}
