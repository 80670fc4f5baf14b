"""The training settings on the generated scenes: Zhao et al.'s three, and Zhang et al.'s
auxiliary labels.

(1) ``ce_only``: cross-entropy on the labelled images.
(2) ``contrastive``: stage 1 pretrains encoder + decoder + projection head with
    ``pixcon.nn.PixelContrastiveLoss`` on the labelled images (single-image variant, every pixel
    of the decoder's stride-4 map, temperature 0.07; each bag holds an image and a photometrically
    distorted copy of it); stage 2 drops the head and fine-tunes the whole network with
    cross-entropy, the classifier starting from its random initialisation.
(3) ``contrastive_pseudo``: the final model of (2) labels the unlabelled training images; a
    pixel keeps its predicted class when the class's softmax probability is >= 0.8 (>= 0.97 when
    the class is background), otherwise it is ignored (255). Stages 1 and 2 are then run again
    from a fresh initialisation, every batch half labelled and half pseudo-labelled images.
(4) ``contrastive_aux`` (Zhang et al., NeurIPS 2021): the decoder features of (1)'s final model
    on all training images, labelled and unlabelled, are clustered by spherical k-means
    (``pixcon.auxiliary_labels``; the 5% of pixels farthest from their centroid are ignored); the
    cluster index is a pixel's auxiliary label. Stage 1 runs from a fresh initialisation on
    batches half labelled images with their true labels, half training images with their
    auxiliary labels (the paper adds the auxiliary-label loss to the labelled one); stage 2 is
    (2)'s, cross-entropy on the labelled images.

Every stage uses AdamW with a short linear warm-up then cosine decay and random flips and
90-degree rotations; cross-entropy steps also apply stage 1's photometric distortion to half of
the images (colour carries no class information here), so the CE-only baseline gets the same
augmentation as the contrastive views. The CE schedule (steps, batch, learning rate) is the same
in all settings, and every setting starts from the same initial weights.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

import pixcon

from .dataset import CLASSES, IGNORE_INDEX, NUM_CLASSES, SceneData
from .model import DeepLabWithProjection

SETTINGS = ("ce_only", "contrastive", "contrastive_pseudo", "contrastive_aux")
SETTING_TITLES = {
    "ce_only": "(1) cross-entropy only",
    "contrastive": "(2) contrastive pretraining + CE fine-tuning",
    "contrastive_pseudo": "(3) = (2) + pseudo labels on unlabelled images",
    "contrastive_aux": "(4) contrastive on auxiliary labels + CE fine-tuning",
}


@dataclasses.dataclass
class Config:
    image_size: int = 96
    num_train: int = 400
    num_labelled: int = 20
    num_val: int = 100
    batch_size: int = 8
    ce_steps: int = 1000
    contrastive_steps: int = 600
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    temperature: float = 0.07
    contrastive_variant: str = "image"
    ce_distort_prob: float = 0.5
    encoder: str = "resnet18"
    encoder_depth: int = 5
    decoder_channels: int = 256
    projection_channels: int = 256
    confidence: float = 0.8
    background_confidence: float = 0.97
    # Three clusters per class: the background's blotches and the objects' textures vary in
    # colour, period and orientation, so one class may spread over several modes of the
    # features. Fixed before any run: choosing it by the labels' agreement with the true labels
    # would use the unlabelled images' hidden labels.
    aux_clusters: int = 3 * NUM_CLASSES
    aux_outlier_fraction: float = 0.05
    tsne_points_per_class: int = 400
    seed: int = 0
    device: str = "cpu"


# ----------------------------------------------------------------------------- augmentation


def geometric(images: Tensor, labels: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """The same random flip / 90-degree rotation of each image and its labels."""
    images, labels = images.clone(), labels.clone()
    ops = torch.randint(0, 8, (images.shape[0],), generator=gen).tolist()
    for i, op in enumerate(ops):
        img, lab = images[i], labels[i]
        if op & 1:
            img, lab = img.flip(-1), lab.flip(-1)
        k = op >> 1
        images[i], labels[i] = img.rot90(k, (-2, -1)), lab.rot90(k, (-2, -1))
    return images, labels


def distort(images: Tensor, gen: torch.Generator) -> Tensor:
    """Photometric distortion (the labels stay valid): colour permutation and gains, contrast,
    brightness, grey scale, blur and noise, independently per image."""
    b = images.shape[0]

    def u(lo: float, hi: float, *shape: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(b, *shape, generator=gen)

    perm = torch.stack([torch.randperm(3, generator=gen) for _ in range(b)])
    out = torch.gather(images, 1, perm[:, :, None, None].expand_as(images))
    out = out * u(0.7, 1.3, 3, 1, 1)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * u(0.6, 1.4, 1, 1, 1) + mean + u(-0.15, 0.15, 1, 1, 1)
    grey = torch.rand(b, generator=gen) < 0.2
    out = torch.where(grey[:, None, None, None], out.mean(dim=1, keepdim=True).expand_as(out), out)
    blur = torch.rand(b, generator=gen) < 0.3
    kernel = torch.tensor([0.25, 0.5, 0.25])
    kernel = (kernel[:, None] * kernel[None, :]).expand(3, 1, 3, 3)
    blurred = F.conv2d(F.pad(out, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    out = torch.where(blur[:, None, None, None], blurred, out)
    out = out + 0.04 * torch.randn(out.shape, generator=gen)
    return out.clamp(0.0, 1.0)


# ----------------------------------------------------------------------------- schedule


def batches(num: int, batch_size: int, gen: torch.Generator) -> Iterator[Tensor]:
    """Endless epochs of random permutations, ``batch_size`` indices at a time."""
    buffer = torch.empty(0, dtype=torch.long)
    while True:
        while buffer.numel() < batch_size:
            buffer = torch.cat([buffer, torch.randperm(num, generator=gen)])
        yield buffer[:batch_size]
        buffer = buffer[batch_size:]


def _optimizer(params, steps: int, cfg: Config):
    params = list(params)
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    warmup = max(1, min(cfg.warmup_steps, steps // 4))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Sources:
    """Draws training batches: from one (images, labels) pool, or half from each of two (the
    first pool gets the extra image of an odd batch)."""

    def __init__(self, pools: list[tuple[Tensor, Tensor]], batch_size: int, gen: torch.Generator) -> None:
        self.pools = pools
        sizes = [batch_size] if len(pools) == 1 else [batch_size - batch_size // 2, batch_size // 2]
        self.iters = [batches(p[0].shape[0], s, gen) for p, s in zip(pools, sizes)]

    def next(self) -> tuple[Tensor, Tensor]:
        parts = [(images[idx], labels[idx]) for (images, labels), it in zip(self.pools, self.iters)
                 for idx in [next(it)]]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _summary(losses: list[float]) -> dict:
    k = max(1, len(losses) // 10)
    return {"steps": len(losses), "first_10pct_mean": sum(losses[:k]) / k,
            "last_10pct_mean": sum(losses[-k:]) / k}


# ----------------------------------------------------------------------------- stages


def train_ce(model: DeepLabWithProjection, pools: list[tuple[Tensor, Tensor]], steps: int, cfg: Config,
             gen: torch.Generator, desc: str) -> dict:
    """Cross-entropy on the classifier; the projection head takes no part."""
    sources = Sources(pools, cfg.batch_size, gen)
    params = [p for n, p in model.named_parameters() if not n.startswith("head.")]
    optimizer, scheduler = _optimizer(params, steps, cfg)
    model.train()
    losses = []
    bar = tqdm(range(steps), desc=desc, mininterval=1.0, dynamic_ncols=True)
    for _ in bar:
        images, labels = geometric(*sources.next(), gen)
        if cfg.ce_distort_prob > 0:  # the stage-1 distortion as augmentation, on some images
            pick = torch.rand(images.shape[0], generator=gen) < cfg.ce_distort_prob
            images = torch.where(pick[:, None, None, None], distort(images, gen), images)
        images, labels = images.to(cfg.device), labels.to(cfg.device)
        logits = model.classify(model.features(images))
        loss = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        bar.set_postfix(ce=f"{losses[-1]:.3f}", refresh=False)
    return _summary(losses)


def train_contrastive(model: DeepLabWithProjection, pools: list[tuple[Tensor, Tensor]], steps: int,
                      cfg: Config, gen: torch.Generator, desc: str) -> dict:
    """Stage 1: pixcon's pixel-wise label-based contrastive loss on the projection head's output.

    A batch holds batch_size // 2 images and a distorted copy of each; the two views of an image
    are joined side by side into one bag (variant="image"), so every pixel of both views is an
    anchor contrasted with every other pixel of the pair. Pixels labelled 255 take no part.
    """
    half = max(1, cfg.batch_size // 2)
    sources = Sources(pools, half, gen)
    params = [p for n, p in model.named_parameters() if not n.startswith("net.segmentation_head.")]
    optimizer, scheduler = _optimizer(params, steps, cfg)  # the classifier waits for stage 2
    contrast = pixcon.nn.PixelContrastiveLoss(temperature=cfg.temperature, ignore_index=IGNORE_INDEX,
                                              variant=cfg.contrastive_variant)
    model.train()
    losses = []
    bar = tqdm(range(steps), desc=desc, mininterval=1.0, dynamic_ncols=True)
    for _ in bar:
        images, labels = geometric(*sources.next(), gen)
        views = torch.cat([images, distort(images, gen)]).to(cfg.device)
        embeddings = model.head(model.features(views))  # [2 * half, D, h, w], unit length
        first, second = embeddings[:images.shape[0]], embeddings[images.shape[0]:]
        pairs = torch.cat([first, second], dim=-1)  # [half, D, h, 2w]: one bag per image pair
        pair_labels = torch.cat([labels, labels], dim=-1).to(cfg.device)  # [half, H, 2W]
        loss = contrast(pairs, pair_labels)  # labels resized (nearest) to the features' h x 2w
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        bar.set_postfix(contrastive=f"{losses[-1]:.3f}", refresh=False)
    return _summary(losses)


# ----------------------------------------------------------------------------- evaluation


def confusion(model: DeepLabWithProjection, images: Tensor, labels: Tensor) -> Tensor:
    pred = model.predict(images).argmax(dim=1)
    valid = labels != IGNORE_INDEX
    idx = labels[valid] * NUM_CLASSES + pred[valid]
    return torch.bincount(idx, minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)


def scores(conf: Tensor) -> dict:
    conf = conf.double()
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    return {
        "miou": float(iou.nanmean()),
        "per_class_iou": {name: round(float(v), 4) for name, v in zip(CLASSES, iou)},
        "pixel_accuracy": float(tp.sum() / conf.sum()),
    }


def pseudo_labels(model: DeepLabWithProjection, images: Tensor, cfg: Config) -> Tensor:
    """The predicted class where the model is confident enough, else 255."""
    if images.shape[0] == 0:
        return torch.empty(0, *images.shape[-2:], dtype=torch.long)
    probs = model.predict(images)
    conf, pred = probs.max(dim=1)
    threshold = torch.where(pred == 0, cfg.background_confidence, cfg.confidence)
    return torch.where(conf >= threshold, pred, torch.full_like(pred, IGNORE_INDEX))


def resize_labels(labels: Tensor, size: tuple[int, int]) -> Tensor:
    """[N, H, W] labels resized by nearest neighbour, as the contrastive loss resizes them."""
    return F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()


def auxiliary_labels(model: DeepLabWithProjection, images: Tensor, cfg: Config) -> Tensor:
    """Spherical k-means of the model's decoder features (the projection head's input) over all
    ``images`` at once, so a cluster index means the same thing in every image: [N, h, w] at the
    features' stride-4 resolution, outliers 255."""
    features = model.in_eval(model.features, images)  # [N, F, h, w]
    labels, _ = pixcon.auxiliary_labels(features, cfg.aux_clusters, outlier_fraction=cfg.aux_outlier_fraction,
                                        seed=cfg.seed, ignore_index=IGNORE_INDEX)
    return labels


def auxiliary_label_stats(aux: Tensor, true: Tensor, clusters: int, num_labelled: int) -> dict:
    """The auxiliary labels [N, h, w] against the true labels resized to them (what the loss
    sees): pair precision / recall and purity over all training images and over the unlabelled
    ones, the pair precision of a single cluster over the same pixels (the share of same-class
    pairs: chance level), and each cluster's size and majority class."""
    true = resize_labels(true, tuple(aux.shape[-2:]))
    kept = aux != IGNORE_INDEX
    table = torch.bincount(aux[kept] * NUM_CLASSES + true[kept], minlength=clusters * NUM_CLASSES)
    table = table.reshape(clusters, NUM_CLASSES)
    stats = {
        "clusters": clusters,
        "images": int(aux.shape[0]),
        "resolution": list(aux.shape[-2:]),
        "ignored_fraction": round(float((~kept).double().mean()), 4),
        **pixcon.auxiliary_label_quality(aux, true, ignore_index=IGNORE_INDEX),
        "pair_precision_one_cluster": pixcon.auxiliary_label_quality(
            torch.where(kept, 0, IGNORE_INDEX), true, ignore_index=IGNORE_INDEX)["pair_precision"],
        "cluster_pixels": table.sum(1).tolist(),
        "cluster_majority_class": [CLASSES[int(row.argmax())] if row.any() else None for row in table],
    }
    if aux.shape[0] > num_labelled:
        stats["unlabelled_images_only"] = pixcon.auxiliary_label_quality(aux[num_labelled:], true[num_labelled:],
                                                                         ignore_index=IGNORE_INDEX)
    return stats


# ----------------------------------------------------------------------------- the settings


def new_model(cfg: Config) -> tuple[DeepLabWithProjection, torch.Generator]:
    """The same initial weights and the same batch order in every setting."""
    torch.manual_seed(cfg.seed)
    model = DeepLabWithProjection(NUM_CLASSES, cfg.encoder, cfg.decoder_channels, cfg.projection_channels,
                                  encoder_depth=cfg.encoder_depth).to(cfg.device)
    return model, torch.Generator().manual_seed(cfg.seed)


def pretrain_then_finetune(model: DeepLabWithProjection, pools: list[tuple[Tensor, Tensor]], cfg: Config,
                           gen: torch.Generator, tag: str) -> dict:
    """Stage 1 (contrastive) then stage 2 (cross-entropy) on the same pools; their loss summaries."""
    return {"contrastive": train_contrastive(model, pools, cfg.contrastive_steps, cfg, gen,
                                             f"{tag} stage 1 contrastive"),
            "ce": train_ce(model, pools, cfg.ce_steps, cfg, gen, f"{tag} stage 2 CE")}


def pseudo_label_stats(pseudo: Tensor, true: Tensor) -> dict:
    """How many unlabelled pixels kept a pseudo label, and how many of those are right."""
    kept = pseudo != IGNORE_INDEX
    return {
        "images": int(pseudo.shape[0]),
        "pixels_kept_fraction": round(float(kept.double().mean()), 4) if kept.numel() else 0.0,
        "kept_pixels_accuracy": round(float((pseudo[kept] == true[kept]).double().mean()), 4) if kept.any() else None,
        "kept_fraction_per_true_class": {
            name: round(float(kept[true == c].double().mean()), 4) if (true == c).any() else None
            for c, name in enumerate(CLASSES)},
    }


def run_settings(data: SceneData, cfg: Config,
                 on_model: Callable[[str, DeepLabWithProjection], dict] | None = None,
                 on_auxiliary_labels: Callable[[Tensor], dict] | None = None) -> dict:
    """Runs the settings; returns their results (``on_model(setting, model)`` may add to each,
    e.g. the embedding figure; ``on_auxiliary_labels(labels)``, given setting 4's auxiliary
    labels of all training images at image resolution, may add to setting 4's, e.g. a figure)."""
    labelled = (data.labelled_images, data.labelled_labels)
    results: dict = {}

    def finish(name: str, model: DeepLabWithProjection, stages: dict, start: float) -> None:
        entry = {"title": SETTING_TITLES[name], **scores(confusion(model, data.val_images, data.val_labels)),
                 "losses": stages, "train_seconds": round(time.perf_counter() - start, 1)}
        if on_model is not None:
            entry.update(on_model(name, model))
        results[name] = entry
        tqdm.write(f"{SETTING_TITLES[name]}: validation mIoU {entry['miou']:.4f}")

    # (1) cross-entropy only
    start = time.perf_counter()
    model, gen = new_model(cfg)
    finish("ce_only", model, {"ce": train_ce(model, [labelled], cfg.ce_steps, cfg, gen, "(1) CE")}, start)

    # (4)'s auxiliary labels now, while (1)'s model exists; (4) itself trains last
    aux_start = time.perf_counter()
    train_images = torch.cat([data.labelled_images, data.unlabelled_images])
    train_true = torch.cat([data.labelled_labels, data.unlabelled_true_labels])
    aux = auxiliary_labels(model, train_images, cfg)
    aux_stats = auxiliary_label_stats(aux, train_true, cfg.aux_clusters, data.labelled_images.shape[0])
    aux = resize_labels(aux, tuple(train_images.shape[-2:]))  # the loss resizes it back exactly
    aux_seconds = time.perf_counter() - aux_start
    tqdm.write(f"auxiliary labels ({cfg.aux_clusters} clusters of (1)'s features): pair precision "
               f"{aux_stats['pair_precision']:.3f} (one cluster: {aux_stats['pair_precision_one_cluster']:.3f}), "
               f"pair recall {aux_stats['pair_recall']:.3f}, purity {aux_stats['purity']:.3f}")
    del model

    # (2) contrastive pretraining, then cross-entropy fine-tuning
    start = time.perf_counter()
    model, gen = new_model(cfg)
    finish("contrastive", model, pretrain_then_finetune(model, [labelled], cfg, gen, "(2)"), start)

    # (3) pseudo labels from (2)'s model, then (2) again on labelled + pseudo-labelled images
    start = time.perf_counter()
    pseudo = pseudo_labels(model, data.unlabelled_images, cfg)
    stats = pseudo_label_stats(pseudo, data.unlabelled_true_labels)
    any_kept = bool((pseudo != IGNORE_INDEX).any())
    if any_kept:
        tqdm.write(f"pseudo labels: {stats['pixels_kept_fraction']:.1%} of the unlabelled pixels kept, "
                   f"{stats['kept_pixels_accuracy']:.1%} of them correct")
    else:
        tqdm.write("pseudo labels: no unlabelled pixel passed the thresholds; (3) trains on the labelled images only")
    del model
    model, gen = new_model(cfg)
    pools = [labelled, (data.unlabelled_images, pseudo)] if any_kept else [labelled]
    finish("contrastive_pseudo", model, pretrain_then_finetune(model, pools, cfg, gen, "(3)"), start)
    results["contrastive_pseudo"]["pseudo_labels"] = stats
    del model

    # (4) stage 1 on labelled images (true labels) + all training images (auxiliary labels),
    # stage 2 as in (2); its time includes making the auxiliary labels
    start = time.perf_counter() - aux_seconds
    model, gen = new_model(cfg)
    stages = {"contrastive": train_contrastive(model, [labelled, (train_images, aux)], cfg.contrastive_steps, cfg,
                                               gen, "(4) stage 1 contrastive"),
              "ce": train_ce(model, [labelled], cfg.ce_steps, cfg, gen, "(4) stage 2 CE")}
    finish("contrastive_aux", model, stages, start)
    aux_stats["seconds"] = round(aux_seconds, 1)
    if on_auxiliary_labels is not None:
        aux_stats.update(on_auxiliary_labels(aux))
    results["contrastive_aux"]["auxiliary_labels"] = aux_stats
    return results
