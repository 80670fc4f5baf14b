"""Label-efficient segmentation with pixcon: DeepLabV3+ on generated scenes, in four settings.

Trains a DeepLabV3+ (segmentation_models_pytorch, ResNet-18 encoder, from scratch) on a
generated data set of textured shapes of which only a few training images are labelled, in the
three settings of Zhao et al. (ICCV 2021): (1) cross-entropy only; (2) pixel-wise label-based
contrastive pretraining (pixcon) then cross-entropy fine-tuning; (3) setting 2 plus pseudo
labels on the unlabelled images (confidence 0.8, background 0.97); and (4) after Zhang et al.
(NeurIPS 2021): contrastive pretraining on auxiliary labels, spherical k-means clusters of (1)'s
features on all training images, then fine-tuning as in (2). Prints the validation mIoU of each
and the auxiliary labels' agreement with the true labels, writes results.json, one t-SNE figure
of the embeddings per setting and a figure of the auxiliary labels.

    .venv/bin/python examples/deeplabv3plus/run.py --quick     # ~6 min on 2 CPU cores
    .venv/bin/python examples/deeplabv3plus/run.py             # full: ~1 h on 2 CPU cores
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script, or loaded from its path by a test
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import pixcon  # noqa: E402
from deeplabv3plus import auxiliary_plot, dataset, embedding_plot, train  # noqa: E402

HERE = Path(__file__).resolve().parent

# Sizes and schedules. "full" is the default; explicit options override any preset.
PRESETS = {
    "full": dict(image_size=96, num_train=400, num_labelled=20, num_val=100, batch_size=8, ce_steps=1000,
                 contrastive_steps=600, decoder_channels=256, projection_channels=256,
                 tsne_points_per_class=400),
    "quick": dict(image_size=64, num_train=320, num_labelled=16, num_val=64, batch_size=8, ce_steps=400,
                  contrastive_steps=200, encoder_depth=4, decoder_channels=128, projection_channels=128,
                  tsne_points_per_class=200),
    "tiny": dict(image_size=32, num_train=12, num_labelled=4, num_val=4, batch_size=2, ce_steps=2, encoder_depth=4,
                 contrastive_steps=2, decoder_channels=32, projection_channels=16, tsne_points_per_class=12),
}
OPTIONS = {  # option -> (Config field, type, help)
    "--image-size": ("image_size", int, "scene size in pixels"),
    "--train-images": ("num_train", int, "training scenes (labelled + unlabelled)"),
    "--labelled": ("num_labelled", int, "labelled training scenes"),
    "--val-images": ("num_val", int, "validation scenes"),
    "--batch-size": ("batch_size", int, "images per step"),
    "--ce-steps": ("ce_steps", int, "cross-entropy steps (setting 1; stage 2 of settings 2 to 4)"),
    "--contrastive-steps": ("contrastive_steps", int, "contrastive pretraining steps (stage 1)"),
    "--lr": ("lr", float, "peak learning rate (AdamW, cosine decay)"),
    "--tsne-points": ("tsne_points_per_class", int, "validation pixels per class in each t-SNE figure"),
    "--aux-clusters": ("aux_clusters", int, "k-means clusters of setting 4's auxiliary labels (default 3 per class)"),
}
AUX_FIGURE = "auxiliary_labels.png"


def _threads(requested: int) -> int:
    """0 = automatic: all cores (at most 4), but one thread when the machine is already busy
    (load average >= cores), where several threads per process slow training down many times."""
    if requested > 0:
        return requested
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0] >= cores
    except OSError:
        busy = False
    return 1 if busy else min(cores, 4)


def _machine(device: str, threads: int) -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pixcon": getattr(pixcon, "__version__", "?"),
        "device": device,
    }
    try:
        import segmentation_models_pytorch as smp

        info["segmentation_models_pytorch"] = smp.__version__
    except Exception:  # pragma: no cover
        pass
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            info["cpu_model"] = names[0]
    except OSError:
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    try:
        info["load_average_at_start"] = [round(v, 1) for v in os.getloadavg()]
    except OSError:
        pass
    return info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small images and short schedules (minutes on a CPU)")
    mode.add_argument("--tiny", action="store_true", help="a few steps on tiny images: checks the pipeline only")
    parser.add_argument("--out-dir", type=Path, default=HERE / "results", help="where results.json and the PNGs go")
    parser.add_argument("--device", default="cpu", help='"cpu", "cuda", "cuda:1", ...')
    parser.add_argument("--seed", type=int, default=0, help="seed of the data set, the initial weights and the batches")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads; 0 = all cores (at most 4), or 1 when the machine is busy")
    for option, (_, kind, help_text) in OPTIONS.items():
        parser.add_argument(option, type=kind, default=None, help=help_text)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mode = "quick" if args.quick else "tiny" if args.tiny else "full"
    values = dict(PRESETS[mode], seed=args.seed, device=args.device)
    for option, (field, _, _) in OPTIONS.items():
        given = getattr(args, option[2:].replace("-", "_"))
        if given is not None:
            values[field] = given
    cfg = train.Config(**values)
    out_dir = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)

    previous_threads = torch.get_num_threads()
    threads = _threads(args.threads)
    torch.set_num_threads(threads)
    try:
        return _run(cfg, mode, out_dir, threads)
    finally:
        torch.set_num_threads(previous_threads)


def _run(cfg: train.Config, mode: str, out_dir: Path, threads: int) -> int:
    from threadpoolctl import threadpool_limits  # comes with scikit-learn

    machine = _machine(cfg.device, threads)
    started = time.perf_counter()
    print(f"pixcon DeepLabV3+ example, {mode} mode: {cfg.image_size}x{cfg.image_size} scenes, "
          f"{cfg.num_labelled} of {cfg.num_train} training images labelled, {cfg.num_val} validation images; "
          f"device {cfg.device}, {threads} thread(s)", flush=True)

    t0 = time.perf_counter()
    data = dataset.generate(cfg.seed, cfg.image_size, cfg.num_train, cfg.num_labelled, cfg.num_val)
    dataset.preview(data, out_dir / "dataset_preview.png")
    timings = {"generate_data": round(time.perf_counter() - t0, 1)}

    feature_size = cfg.image_size // 4
    indices, classes = embedding_plot.sample_pixels(data.val_labels, feature_size, cfg.tsne_points_per_class,
                                                    cfg.seed)
    figure_seconds = {}

    def on_model(name: str, model) -> dict:
        t = time.perf_counter()
        with threadpool_limits(threads):
            extra = embedding_plot.embedding_figure(model, data.val_images, indices, classes,
                                                    out_dir / f"embeddings_{name}.png",
                                                    train.SETTING_TITLES[name], cfg.seed)
        figure_seconds[name] = round(time.perf_counter() - t, 1)
        return extra

    def on_auxiliary_labels(aux: torch.Tensor) -> dict:
        t = time.perf_counter()
        labelled = data.labelled_images.shape[0]
        picks = [i for i in range(3) if i < labelled] + [labelled + i for i in range(3)
                                                         if i < data.unlabelled_images.shape[0]]
        auxiliary_plot.figure(torch.cat([data.labelled_images, data.unlabelled_images]),
                              torch.cat([data.labelled_labels, data.unlabelled_true_labels]), aux, picks,
                              labelled, cfg.aux_clusters, out_dir / AUX_FIGURE)
        figure_seconds["auxiliary_labels"] = round(time.perf_counter() - t, 1)
        return {"figure": AUX_FIGURE}

    results = train.run_settings(data, cfg, on_model, on_auxiliary_labels)
    timings["embedding_figures"] = figure_seconds
    timings["settings"] = {name: results[name]["train_seconds"] for name in train.SETTINGS}
    timings["total"] = round(time.perf_counter() - started, 1)
    try:
        machine["load_average_at_end"] = [round(v, 1) for v in os.getloadavg()]
    except OSError:
        pass

    report = {
        "mode": mode,
        "miou": {name: results[name]["miou"] for name in train.SETTINGS},
        "settings": results,
        "data": data.summary(),
        "config": dataclasses.asdict(cfg),
        "timings_seconds": timings,
        "machine": machine,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    with open(out_dir / "results.json", "w") as f:
        json.dump(report, f, indent=2)

    print(f"\nvalidation mIoU ({cfg.num_val} scenes, {dataset.NUM_CLASSES} classes; "
          f"{cfg.num_labelled} labelled training images):")
    for name in train.SETTINGS:
        print(f"  {train.SETTING_TITLES[name]:<52s} {results[name]['miou']:.4f}")
    aux = results["contrastive_aux"]["auxiliary_labels"]
    print(f"auxiliary labels of setting 4 ({aux['clusters']} clusters, {aux['images']} training images at "
          f"{aux['resolution'][0]}x{aux['resolution'][1]}, {aux['ignored_fraction']:.1%} ignored) against the "
          f"true labels: pair precision {aux['pair_precision']:.4f} (one cluster: "
          f"{aux['pair_precision_one_cluster']:.4f}), pair recall {aux['pair_recall']:.4f}, "
          f"purity {aux['purity']:.4f}")
    print(f"results: {out_dir / 'results.json'}; figures: "
          + ", ".join([str(out_dir / f"embeddings_{n}.png") for n in train.SETTINGS] + [str(out_dir / AUX_FIGURE)]))
    print(f"total time {timings['total']:.0f} s")
    return 0 if all(math.isfinite(results[n]["miou"]) for n in train.SETTINGS) else 1


if __name__ == "__main__":
    raise SystemExit(main())
