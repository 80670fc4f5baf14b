"""Pixel-sampling throughput: ``pixcon.sample_pixels`` against plain-PyTorch samplers.

    python benchmarks/sampling_throughput.py [--quick] [--out-dir DIR] [--device auto|cpu|cuda]

For each strategy (``uniform``, ``class_balanced``, ``hard_easy``, with their default rule
parameters) it times one call of ``pixcon.sample_pixels`` and of the baseline of
``benchmarks/sampling_baselines.py`` (Python loops over images and classes with ``nonzero`` and
``torch.randperm``, as public code does) on the same labels (``harness/sampling_cases.py``
describes the workload):

* time: median over ``--repeats`` calls after ``--warmup`` calls, all rows in this process;
  ``time.perf_counter()`` on CPU, CUDA events around the call on GPU (the call's own
  synchronisations, e.g. for the data-dependent output size, are included);
* speed-up: baseline median / pixcon median on the same device and strategy;
* check: both implementations follow the same rule, so they must return bags of the same sizes;
  every row records that (``sizes_match``), and the exit status is 1 when one differs.

Prints a table on stdout, writes ``sampling_throughput_<devices>.json`` (machine, configuration,
every row with its individual times) and a bar chart ``sampling_throughput_<devices>.png`` to
``--out-dir`` (default ``benchmarks/measured/``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from harness import sampling_cases as sc
from harness.formats import fmt
from harness.machine import loadavg, machine_info, resolve_devices
from harness.plots import plot_sampling
from harness.presets import MEASURED_DIR
from harness.report import print_table, progress_bar, write_json

DEFAULT_REPEATS, DEFAULT_WARMUP = 15, 3
QUICK_REPEATS, QUICK_WARMUP = 5, 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python benchmarks/sampling_throughput.py",
        description=(
            "Time pixcon.sample_pixels against plain-PyTorch samplers (Python loops over images "
            "and classes with nonzero / randperm) for the uniform, class_balanced and hard_easy "
            f"strategies: B={sc.BATCH} label maps of {sc.SIZE}x{sc.SIZE}, {sc.CLASSES} classes, "
            f"~{sc.IGNORE_FRACTION:.0%} ignore_index, predictions with ~{sc.WRONG_FRACTION:.0%} "
            "of the pixels wrong. Median of the repeats after warm-up calls."),
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
    p.add_argument("--strategies", default=",".join(sc.STRATEGIES),
                   help="comma-separated subset of %(default)s")
    p.add_argument("--batch", type=int, default=sc.BATCH, help="images B (default: %(default)s)")
    p.add_argument("--size", type=int, default=sc.SIZE,
                   help="label map side (default: %(default)s)")
    p.add_argument("--classes", type=int, default=sc.CLASSES,
                   help="classes (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="workload seed (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads for the run (default: torch's default)")
    p.add_argument("--out-dir", default=MEASURED_DIR, metavar="DIR",
                   help="where the JSON and the PNG go (default: %(default)s; '' for none)")
    p.add_argument("--no-plot", action="store_true", help="no PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _run_row(device: str, strategy: str, impl: str, workload, args, warmup: int,
             repeats: int) -> Dict[str, Any]:
    labels, predictions = workload
    row: Dict[str, Any] = {"device": device, "strategy": strategy, "impl": impl,
                           "params": sc.RULE_PARAMETERS[strategy], "median_s": None,
                           "speedup": None, "note": None}
    try:
        run = sc.make_sampler(impl, strategy, labels, predictions, args.classes)
        row.update(sc.time_sampler(run, device, warmup, repeats))
    except Exception as e:  # noqa: BLE001 - reported as the row's note
        first = str(e).splitlines()[0][:200] if str(e) else ""
        row["note"] = f"failed: {type(e).__name__}: {first}"
    return row


def _compare(rows: List[Dict[str, Any]]) -> bool:
    """Adds each row's ``sizes_match`` and speed-up; False when some bag sizes differ."""
    ok = True
    by_key = {(r["device"], r["strategy"], r["impl"]): r for r in rows}
    for r in rows:
        other = by_key.get((r["device"], r["strategy"],
                            "baseline" if r["impl"] == "pixcon" else "pixcon"))
        if other is not None and "bag_sizes" in r and "bag_sizes" in other:
            r["sizes_match"] = r["bag_sizes"] == other["bag_sizes"]
            if not r["sizes_match"]:
                ok = False
                r["note"] = "bag sizes differ from the other implementation"
        base = by_key.get((r["device"], r["strategy"], "baseline"))
        if r.get("median_s") and base and base.get("median_s"):
            r["speedup"] = base["median_s"] / r["median_s"]
    return ok


def _print(rows: Sequence[Dict[str, Any]], title: str) -> None:
    show_device = len({r["device"] for r in rows}) > 1
    header = (["device"] if show_device else []) + [
        "strategy", "impl", "pixels", "median ms", "min ms", "speed-up", "note"]
    body = [([r["device"]] if show_device else []) + [
        r["strategy"], r["impl"], fmt(r.get("selected"), "d"),
        fmt(None if r.get("median_s") is None else r["median_s"] * 1e3, ".2f"),
        fmt(None if r.get("min_s") is None else r["min_s"] * 1e3, ".2f"),
        "-" if r.get("speedup") is None else f"{r['speedup']:.1f}x", r.get("note") or ""]
        for r in rows]
    print_table(title, header, body, ("device", "strategy", "impl", "note"))


def _write(args, rows, machine, devices, strategies, warmup: int, repeats: int,
           title: str) -> None:
    tag = "-".join(devices)
    json_path = os.path.join(args.out_dir, f"sampling_throughput_{tag}.json")
    config = {
        "batch": args.batch, "height": args.size, "width": args.size, "classes": args.classes,
        "label_grid": sc.GRID, "ignore_index": sc.IGNORE_INDEX,
        "ignore_fraction": sc.IGNORE_FRACTION, "wrong_prediction_fraction": sc.WRONG_FRACTION,
        "repeats": repeats, "warmup": warmup, "seed": args.seed, "devices": devices,
        "strategies": strategies, "rule_parameters": sc.RULE_PARAMETERS,
        "timing": "CPU: time.perf_counter around one call; CUDA: torch.cuda.Event pair",
        "baseline": "benchmarks/sampling_baselines.py (Python loops, nonzero, randperm)",
    }
    write_json(json_path, {"benchmark": "sampling_throughput",
                           "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                           "machine": machine, "config": config, "rows": rows})
    print(f"\nJSON written to {json_path}")
    if not args.no_plot:
        png_path = os.path.join(args.out_dir, f"sampling_throughput_{tag}.png")
        plot_sampling(rows, sc.STRATEGIES, sc.IMPLS, png_path, title)
        print(f"plot written to {png_path}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the benchmark; returns 0 on success, 1 when a row's sizes disagree between the
    implementations, 2 on bad usage."""
    parser = build_parser()
    args = parser.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (
        QUICK_REPEATS if args.quick else DEFAULT_REPEATS)
    warmup = args.warmup if args.warmup is not None else (
        QUICK_WARMUP if args.quick else DEFAULT_WARMUP)
    strategies = [s for s in args.strategies.replace(" ", "").split(",") if s]
    if not strategies or any(s not in sc.STRATEGIES for s in strategies):
        parser.error(f"--strategies expects a subset of {','.join(sc.STRATEGIES)}")
    if repeats < 1 or warmup < 0 or args.batch < 1 or args.size < 1 or args.classes < 1 \
            or (args.threads is not None and args.threads < 1):
        parser.error("--repeats, --batch, --size, --classes and --threads must be positive, "
                     "--warmup >= 0")
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        devices = resolve_devices(args.device)
    except ValueError as e:
        parser.error(str(e))
    machine = machine_info(devices)
    configs = [(d, s, impl) for d in devices for s in strategies for impl in sc.IMPLS]
    workloads = {d: sc.make_workload(args.batch, args.size, args.classes, args.seed, d)
                 for d in devices}
    bar = progress_bar(len(configs), "sampling", "row", not args.no_progress)
    rows = []
    for device, strategy, impl in configs:
        if bar is not None:
            bar.set_postfix_str(f"{device} {strategy} {impl}")
        rows.append(_run_row(device, strategy, impl, workloads[device], args, warmup, repeats))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    ok = _compare(rows)
    machine["loadavg_end"] = loadavg()
    title = (f"pixel sampling, B={args.batch}, {args.size}x{args.size}, {args.classes} classes, "
             f"median of {repeats} | {machine.get('cpu_model')}, torch "
             f"{machine.get('torch_version')}, {machine.get('torch_num_threads')} threads"
             + (f", {machine['cuda_device']}" if "cuda_device" in machine else ""))
    print()
    _print(rows, title)
    if args.out_dir:
        _write(args, rows, machine, devices, strategies, warmup, repeats, title)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
