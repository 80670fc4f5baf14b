"""The figure of setting 4's auxiliary labels: training scenes, their true labels and their
k-means cluster maps."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from .dataset import CLASS_COLOURS, CLASSES, IGNORE_INDEX, NUM_CLASSES


def cluster_colours(clusters: int) -> list:
    """One colour per cluster, then black for ignored pixels. A cluster index carries no class,
    so the colours are a qualitative map (tab20b) that shares no colour with the classes."""
    import matplotlib

    cmap = matplotlib.colormaps["tab20b" if clusters <= 20 else "turbo"]
    steps = [i if clusters <= 20 else i / max(1, clusters - 1) for i in range(clusters)]
    return [cmap(s) for s in steps] + [(0.0, 0.0, 0.0, 1.0)]


def figure(images: Tensor, true: Tensor, aux: Tensor, picks: list[int], num_labelled: int, clusters: int,
           path: Path) -> None:
    """Saves a PNG with one column per picked training image: the scene, its true labels and
    its auxiliary labels (``aux`` at image resolution; ignored pixels black)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(3, len(picks), figsize=(1.6 * len(picks), 5.3), squeeze=False)
    class_cmap = ListedColormap(CLASS_COLOURS)
    aux_cmap = ListedColormap(cluster_colours(clusters))
    for col, i in enumerate(picks):
        shown = aux[i].masked_fill(aux[i] == IGNORE_INDEX, clusters)
        axes[0, col].imshow(images[i].permute(1, 2, 0).numpy())
        axes[0, col].set_title(f"{'labelled' if i < num_labelled else 'unlabelled'} #{i}", fontsize=7)
        axes[1, col].imshow(true[i].numpy(), cmap=class_cmap, vmin=0, vmax=NUM_CLASSES - 1, interpolation="nearest")
        axes[2, col].imshow(shown.numpy(), cmap=aux_cmap, vmin=0, vmax=clusters, interpolation="nearest")
        for ax in axes[:, col]:
            ax.set_xticks([])
            ax.set_yticks([])
    for row, name in enumerate(("scene", "true labels", "auxiliary labels")):
        axes[row, 0].set_ylabel(name, fontsize=8)
    fig.legend(handles=[Patch(color=c, label=n) for c, n in zip(CLASS_COLOURS, CLASSES)],
               loc="lower center", ncol=NUM_CLASSES, fontsize=7, frameon=False, bbox_to_anchor=(0.5, 0.04))
    fig.text(0.5, 0.01, f"auxiliary labels: {clusters} k-means clusters of setting 1's decoder features, "
             "one arbitrary colour each; black: ignored (outliers)", ha="center", fontsize=7)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)
