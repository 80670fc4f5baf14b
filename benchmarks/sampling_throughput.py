"""Pixel-sampling throughput: ``pixcon.sample_pixels`` against plain-PyTorch samplers.

    python benchmarks/sampling_throughput.py [--quick] [--out-dir DIR] [--device auto|cpu|cuda]

For each strategy (``uniform``, ``class_balanced``, ``hard_easy``, with their default rule
parameters) it times one call of ``pixcon.sample_pixels`` and of the baseline of
``benchmarks/sampling_baselines.py`` (Python loops over images and classes with ``nonzero`` and
``torch.randperm``, as public code does) on the same labels:

* workload: B = 16 label maps of 129 x 129 (the feature size of a 513 x 513 crop at output
  stride 4) over 19 classes, piecewise constant (an 8 x 8 grid of random classes upsampled by
  nearest neighbour, so each image holds a dozen or so classes in blobs, like a segmentation
  map), ~10 % of the pixels set to ``ignore_index`` 255; predictions = labels with ~30 % of the
  pixels changed to another class (the hard pixels of ``hard_easy``); ``num_classes=19``;
* time: median over ``--repeats`` calls after ``--warmup`` calls; ``time.perf_counter()`` on CPU
  (torch's default thread count), CUDA events around the call on GPU (the call's own
  synchronisations, e.g. for the data-dependent output size, are included);
* speed-up: baseline median / pixcon median on the same device and strategy;
* check: both implementations follow the same rule, so they must return bags of the same sizes;
  every row records that (``sizes_match``).

Prints a table on stdout, writes ``sampling_throughput_<devices>.json`` (machine, configuration,
every row with its individual times) and a bar chart ``sampling_throughput_<devices>.png`` to
``--out-dir`` (default ``benchmarks/measured/``). Needs pixcon installed (``pip install .``), tqdm
and matplotlib.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

STRATEGIES = ("uniform", "class_balanced", "hard_easy")
IMPLS = ("pixcon", "baseline")
BATCH = 16
SIZE = 129
CLASSES = 19
GRID = 8
IGNORE_INDEX = 255
IGNORE_FRACTION = 0.10
WRONG_FRACTION = 0.30
DEFAULT_REPEATS, DEFAULT_WARMUP = 15, 3
QUICK_REPEATS, QUICK_WARMUP = 5, 1
DEFAULT_OUT_DIR = os.path.join("benchmarks", "measured")
#: the rule parameters of every strategy: the spec's defaults, spelled out so the JSON shows them
RULE_PARAMETERS: Dict[str, Dict[str, int]] = {
    "uniform": {"num_samples": 10000},
    "class_balanced": {"min_views": 5, "max_views": 2500, "max_total": 10000},
    "hard_easy": {"max_samples": 1024, "max_views": 100},
}


# --------------------------------------------------------------------------------------------
# workload
# --------------------------------------------------------------------------------------------

def make_workload(batch: int, size: int, classes: int, seed: int, device: str):
    """Label maps ``[batch, size, size]`` (int64) and predictions of the same shape.

    Labels: a ``GRID x GRID`` map of random classes per image, upsampled by nearest neighbour
    (blobs), then ~``IGNORE_FRACTION`` of the pixels set to ``IGNORE_INDEX``. Predictions: the
    labels with ~``WRONG_FRACTION`` of the pixels moved to another class (ignored pixels get a
    random class).
    """
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, classes, (batch, 1, GRID, GRID), generator=g).float()
    labels = F.interpolate(coarse, size=(size, size), mode="nearest")[:, 0].long()
    shift = torch.randint(1, max(classes, 2), labels.shape, generator=g)
    predictions = torch.where(torch.rand(labels.shape, generator=g) < WRONG_FRACTION,
                              (labels + shift) % classes, labels)
    ignored = torch.rand(labels.shape, generator=g) < IGNORE_FRACTION
    labels[ignored] = IGNORE_INDEX
    predictions[ignored] = torch.randint(0, classes, (int(ignored.sum()),), generator=g)
    return labels.to(device), predictions.to(device)


def _pixcon_fn(strategy: str, labels, predictions, classes: int) -> Callable[[int], Tuple[Any, Any]]:
    import pixcon

    params = RULE_PARAMETERS[strategy]
    preds = predictions if strategy == "hard_easy" else None

    def run(it: int):
        return pixcon.sample_pixels(labels, strategy, predictions=preds, ignore_index=IGNORE_INDEX,
                                    seed=it, num_classes=classes, **params)
    return run


def _baseline_fn(strategy: str, labels, predictions, classes: int) -> Callable[[int], Tuple[Any, Any]]:
    import torch

    import sampling_baselines

    params = RULE_PARAMETERS[strategy]
    preds = predictions if strategy == "hard_easy" else None
    gen = torch.Generator(device=labels.device)

    def run(it: int):
        gen.manual_seed(it)
        return sampling_baselines.sample_pixels(labels, strategy, predictions=preds,
                                                ignore_index=IGNORE_INDEX, num_classes=classes,
                                                generator=gen, **params)
    return run


def time_calls(fn: Callable[[int], Tuple[Any, Any]], device: str, warmup: int,
               repeats: int) -> Tuple[List[float], Tuple[Any, Any]]:
    """Times ``fn(it)`` ``repeats`` times after ``warmup`` untimed calls; returns the times in
    seconds and the last result."""
    import torch

    cuda = device.startswith("cuda")
    times: List[float] = []
    out = None
    for it in range(warmup + repeats):
        if cuda:
            torch.cuda.synchronize()
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn(it)
            end.record()
            end.synchronize()
            elapsed = start.elapsed_time(end) / 1e3
        else:
            t0 = time.perf_counter()
            out = fn(it)
            elapsed = time.perf_counter() - t0
        if it >= warmup:
            times.append(elapsed)
    return times, out


# --------------------------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------------------------

def _machine_info(devices: Sequence[str]) -> Dict[str, Any]:
    """Machine description, the same fields as ``pixcon.bench`` writes."""
    try:
        from pixcon._benchtools import machine_info

        return machine_info(devices)
    except Exception:  # noqa: BLE001 - fall back to the essentials
        import torch

        return {"platform": platform.platform(), "python": platform.python_version(),
                "torch_version": torch.__version__, "torch_num_threads": torch.get_num_threads(),
                "logical_cores": os.cpu_count()}


def _print_table(rows: Sequence[Dict[str, Any]], title: str) -> None:
    from pixcon._benchtools import fmt, print_table

    show_device = len({r["device"] for r in rows}) > 1
    header = (["device"] if show_device else []) + [
        "strategy", "impl", "pixels", "median ms", "min ms", "speed-up", "note"]
    body = []
    for r in rows:
        su = r.get("speedup")
        body.append(([r["device"]] if show_device else []) + [
            r["strategy"], r["impl"], fmt(r.get("selected"), "d"),
            fmt(None if r.get("median_s") is None else r["median_s"] * 1e3, ".2f"),
            fmt(None if r.get("min_s") is None else r["min_s"] * 1e3, ".2f"),
            "-" if su is None else f"{su:.1f}x", r.get("note") or ""])
    print_table(title, header, body, ("device", "strategy", "impl", "note"))


def _plot(rows: Sequence[Dict[str, Any]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    strategies = [s for s in STRATEGIES if any(r["strategy"] == s for r in rows)]
    series = sorted({(r["device"], r["impl"]) for r in rows}, key=lambda k: (k[0], IMPLS.index(k[1])))
    multi_device = len({d for d, _ in series}) > 1
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for k, (device, impl) in enumerate(series):
        xs, ys, labels = [], [], []
        for i, s in enumerate(strategies):
            r = next((r for r in rows if (r["device"], r["impl"], r["strategy"]) == (device, impl, s)), None)
            if r is None or r.get("median_s") is None:
                continue
            xs.append(i - 0.4 + width * (k + 0.5))
            ys.append(r["median_s"] * 1e3)
            labels.append(f"{r['median_s'] * 1e3:.3g}")
        name = impl if not multi_device else f"{impl} ({device})"
        bars = ax.bar(xs, ys, width, label=name)
        ax.bar_label(bars, labels=labels, fontsize=8, padding=2)
    ax.set_xticks(range(len(strategies)))
    ax.set_xticklabels(strategies)
    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _pos: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_ylabel("median time per call (ms, log)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------

def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python benchmarks/sampling_throughput.py",
        description=(
            "Time pixcon.sample_pixels against plain-PyTorch samplers (Python loops over images "
            "and classes with nonzero / randperm) for the uniform, class_balanced and hard_easy "
            f"strategies: B={BATCH} label maps of {SIZE}x{SIZE}, {CLASSES} classes, "
            f"~{IGNORE_FRACTION:.0%} ignore_index, predictions with ~{WRONG_FRACTION:.0%} of the "
            "pixels wrong. Median of the repeats after warm-up calls."),
        epilog="Example: python benchmarks/sampling_throughput.py --quick --device cpu")
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_REPEATS} repeats after {QUICK_WARMUP} warm-up call "
                   "(explicit --repeats/--warmup still win)")
    p.add_argument("--repeats", type=int, default=None,
                   help=f"timed calls per row (default: {DEFAULT_REPEATS}; --quick: {QUICK_REPEATS})")
    p.add_argument("--warmup", type=int, default=None,
                   help=f"untimed calls first (default: {DEFAULT_WARMUP}; --quick: {QUICK_WARMUP})")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto = cpu, plus cuda when torch.cuda.is_available() (default: auto)")
    p.add_argument("--strategies", default=",".join(STRATEGIES),
                   help="comma-separated subset of %(default)s")
    p.add_argument("--batch", type=int, default=BATCH, help="images B (default: %(default)s)")
    p.add_argument("--size", type=int, default=SIZE, help="label map side (default: %(default)s)")
    p.add_argument("--classes", type=int, default=CLASSES, help="classes (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="workload seed (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads for the run (default: torch's default)")
    p.add_argument("--out-dir", default=DEFAULT_OUT_DIR, metavar="DIR",
                   help="where the JSON and the PNG go (default: %(default)s; '' for none)")
    p.add_argument("--no-plot", action="store_true", help="no PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the benchmark; returns 0 on success, 1 when pixcon cannot be imported or a row's
    sizes disagree between the implementations, 2 on bad usage."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (QUICK_REPEATS if args.quick else DEFAULT_REPEATS)
    warmup = args.warmup if args.warmup is not None else (QUICK_WARMUP if args.quick else DEFAULT_WARMUP)
    strategies = [s for s in args.strategies.replace(" ", "").split(",") if s]
    if not strategies or any(s not in STRATEGIES for s in strategies):
        parser.error(f"--strategies expects a subset of {','.join(STRATEGIES)}")
    if repeats < 1 or warmup < 0 or args.batch < 1 or args.size < 1 or args.classes < 1:
        parser.error("--repeats, --batch, --size and --classes must be positive, --warmup >= 0")

    import torch

    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    try:
        import pixcon  # noqa: F401

        pixcon.sample_pixels  # noqa: B018
    except (ImportError, AttributeError) as e:
        sys.stderr.write(f"cannot use pixcon.sample_pixels ({e}); install pixcon first: pip install .\n")
        return 1
    # only now: pixcon may be missing, which the check above reports
    from pixcon._benchtools import loadavg, resolve_devices

    devices = resolve_devices(args.device, parser)
    machine = _machine_info(devices)
    configs = [(d, s, impl) for d in devices for s in strategies for impl in IMPLS]
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is installed by scripts/setup.sh
        tqdm = None
    bar = None
    if tqdm is not None and not args.no_progress:
        bar = tqdm(total=len(configs), desc="sampling", unit="row", file=sys.stderr)

    workloads = {d: make_workload(args.batch, args.size, args.classes, args.seed, d) for d in devices}
    rows: List[Dict[str, Any]] = []
    for device, strategy, impl in configs:
        if bar is not None:
            bar.set_postfix_str(f"{device} {strategy} {impl}")
        labels, predictions = workloads[device]
        make = _pixcon_fn if impl == "pixcon" else _baseline_fn
        row: Dict[str, Any] = {"device": device, "strategy": strategy, "impl": impl,
                               "params": RULE_PARAMETERS[strategy], "median_s": None,
                               "speedup": None, "note": None}
        try:
            times, (indices, offsets) = time_calls(make(strategy, labels, predictions, args.classes),
                                                   device, warmup, repeats)
            row.update(median_s=statistics.median(times), min_s=min(times), times_s=times,
                       selected=int(indices.numel()), bag_sizes=offsets.diff().cpu().tolist())
        except Exception as e:  # noqa: BLE001 - reported as the row's note
            row["note"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        rows.append(row)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    ok = True
    by_key = {(r["device"], r["strategy"], r["impl"]): r for r in rows}
    for r in rows:
        other = by_key.get((r["device"], r["strategy"], "baseline" if r["impl"] == "pixcon" else "pixcon"))
        if other is not None and "bag_sizes" in r and "bag_sizes" in other:
            r["sizes_match"] = r["bag_sizes"] == other["bag_sizes"]
            if not r["sizes_match"]:
                ok = False
                r["note"] = "bag sizes differ from the other implementation"
        base = by_key.get((r["device"], r["strategy"], "baseline"))
        if r.get("median_s") and base and base.get("median_s"):
            r["speedup"] = base["median_s"] / r["median_s"]

    machine["loadavg_end"] = loadavg()
    title = (f"pixel sampling, B={args.batch}, {args.size}x{args.size}, {args.classes} classes, "
             f"median of {repeats} | {machine.get('cpu_model', platform.machine())}, "
             f"torch {machine.get('torch_version')}, {machine.get('torch_num_threads')} threads"
             + (f", {machine['cuda_device']}" if "cuda_device" in machine else ""))
    print()
    _print_table(rows, title)

    if args.out_dir:
        tag = "-".join(devices)
        os.makedirs(args.out_dir, exist_ok=True)
        json_path = os.path.join(args.out_dir, f"sampling_throughput_{tag}.json")
        report = {
            "benchmark": "sampling_throughput",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": machine,
            "config": {
                "batch": args.batch, "height": args.size, "width": args.size,
                "classes": args.classes, "label_grid": GRID, "ignore_index": IGNORE_INDEX,
                "ignore_fraction": IGNORE_FRACTION, "wrong_prediction_fraction": WRONG_FRACTION,
                "repeats": repeats, "warmup": warmup, "seed": args.seed, "devices": devices,
                "strategies": strategies, "rule_parameters": RULE_PARAMETERS,
                "timing": "CPU: time.perf_counter around one call; CUDA: torch.cuda.Event pair",
                "baseline": "benchmarks/sampling_baselines.py (Python loops, nonzero, randperm)",
            },
            "rows": rows,
        }
        with open(json_path, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
        print(f"\nJSON written to {json_path}")
        if not args.no_plot:
            png_path = os.path.join(args.out_dir, f"sampling_throughput_{tag}.png")
            _plot(rows, png_path, title)
            print(f"plot written to {png_path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
