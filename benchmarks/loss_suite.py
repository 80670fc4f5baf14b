"""The loss benchmark: pixcon against three O(N^2) baselines, plus pixel sampling.

    python benchmarks/loss_suite.py                    # the full suite (about 40 minutes on 2 cores)
    python benchmarks/loss_suite.py --quick            # smoke run: N = 256, 1024, D = 128 (a minute)
    python benchmarks/loss_suite.py --preset one-bag   # one bag, D = 256, pixcon against the reference
    python benchmarks/loss_suite.py --gpu-grid         # the GPU's grid (benchmarks/README.md)
    python benchmarks/loss_suite.py --gpu-model        # the fused kernels' predicted times

Forward + backward time and peak memory of the contrastive loss for N up to the largest N each
implementation can run, over D, a single-image variant (one bag of N rows) and a batch variant
(8 images of N / 8 rows, each its own bag), float32 and bfloat16. The pieces live in
``benchmarks/harness/``: what is measured (``cases``, ``checks``, ``presets``), how one
configuration runs in its own process (``measure``, ``memory``, ``timing``, ``runner``) and how
results are reported (``report``, ``plots``). This file turns the command line into a preset's
configuration and writes the results.

Presets (``--preset``; ``--quick`` picks a preset's short version): ``full`` (N 1024, 4225,
16641, and 66049 for five combinations; D 128 and 256; all five implementations; then the
sampling benchmark), ``quick``, ``one-bag`` (one bag of float32 rows, D = 256, N 1024 to 16641,
``pixcon_all`` against ``reference``, 5 repeats, no checks or sampling) and ``one-bag-quick``.
Options such as ``--sizes`` or ``--impls`` narrow or change a preset.

Output (``--out-dir``; ``benchmarks/measured/`` for ``full``, else ``benchmarks/results/``): a
table per (D, variant, dtype) and a headline table (speed-up and memory ratio of pixcon against
each baseline at the largest N both ran, the largest N of each) on stdout;
``<stem>_<device>.json`` (machine, load averages, configuration, agreement checks, every row)
with the stem ``loss_suite`` (``loss_one_bag`` for the one-bag presets); PNGs
``<stem>_<device>_time.png`` and ``_memory.png`` (one log-log panel per (D, variant, dtype))
and one two-panel figure per (D, variant, dtype). ``--gpu-grid`` writes
``loss_suite_cuda_grid.json`` and ``.md`` instead.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

# torch is imported only after main has set OMP_WAIT_POLICY, which libgomp reads when it loads
from harness import presets as ps
from harness.cases import (BASELINE_OF, CLASSES, IGNORE_FRACTION, IGNORE_INDEX, IMPLS,
                           TEMPERATURE)
from harness.gpu_model import GPU_SPECS, model_markdown
from harness.machine import loadavg, machine_info, proc_field_bytes, resolve_devices
from harness.report import (add_ratios, headline, print_checks, print_suite_tables, use_run_peak,
                            write_json)
from harness.runner import set_omp_wait_policy

_HERE = os.path.dirname(os.path.abspath(__file__))
_GB = 1024.0 ** 3


def _parse_list(kind, allowed=None, allow_empty=False):
    def parse(text: str):
        try:
            vals = [kind(s) for s in text.replace(" ", "").split(",") if s]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        if (not vals and not allow_empty) or (allowed is not None
                                              and any(v not in allowed for v in vals)):
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated subset of {','.join(map(str, allowed or []))}")
        return vals
    return parse


def _parse_large(text: str) -> List[Tuple[int, str, str]]:
    """``D/variant/dtype`` items, e.g. ``256/single/float32,128/batch/bfloat16``; '' for none."""
    out = []
    for item in [s for s in text.replace(" ", "").split(",") if s]:
        parts = item.split("/")
        if len(parts) != 3 or parts[1] not in ps.VARIANTS or parts[2] not in ps.DTYPES:
            raise argparse.ArgumentTypeError(f"--large-combos: bad item {item!r} "
                                             "(expected D/variant/dtype)")
        out.append((int(parts[0]), parts[1], parts[2]))
    return out


def _grid_options(p: argparse.ArgumentParser) -> None:
    full = ps.PRESETS["full"]
    p.add_argument("--preset", choices=tuple(ps.PRESETS), default="full",
                   help="the grid (default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="the preset's short version: quick (N 256,1024, D 128, 2 repeats, "
                   "sampling --quick) for full, one-bag-quick (N 1024,4225, 3 repeats) for "
                   "one-bag")
    p.add_argument("--sizes", type=_parse_list(int), default=None,
                   help="N grid for every combination (default: the preset's; full: "
                   f"{','.join(map(str, full.sizes))})")
    p.add_argument("--large-sizes", type=_parse_list(int, allow_empty=True), default=None,
                   help="larger N, run only for --large-combos ('' for none; default: the "
                   f"preset's; full: {','.join(map(str, full.large_sizes))})")
    p.add_argument("--large-combos", type=_parse_large, default=None,
                   help="D/variant/dtype items that also run --large-sizes (default: the "
                   "preset's; full: " + ",".join(f"{d}/{v}/{t}" for d, v, t in full.large_combos)
                   + ")")
    p.add_argument("--dims", type=_parse_list(int), default=None,
                   help="embedding dimensions (default: the preset's; full: "
                   f"{','.join(map(str, full.dims))})")
    p.add_argument("--variants", type=_parse_list(str, ps.VARIANTS), default=None,
                   help="single,batch (default: the preset's; full: both)")
    p.add_argument("--dtypes", type=_parse_list(str, ps.GPU_DTYPES), default=None,
                   help="float32,bfloat16 (default: the preset's; full: both); --gpu-grid also "
                   "tf32 (float32 input with torch's TF32 matmul setting; default there: "
                   f"{','.join(ps.GPU_DTYPES)})")
    p.add_argument("--impls", type=_parse_list(str, IMPLS), default=None,
                   help=f"subset of {','.join(IMPLS)} (default: the preset's; full: all; "
                   f"--gpu-grid: {','.join(ps.GPU_GRID_IMPLS)})")
    p.add_argument("--batch-images", type=int, default=ps.BATCH_IMAGES,
                   help="bags of the batch variant (default: %(default)s)")
    p.add_argument("--classes", type=int, default=CLASSES,
                   help="label classes (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=TEMPERATURE,
                   help="temperature (default: %(default)s)")


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeats", type=int, default=None,
                   help="timed runs at most (default: the preset's: full 3, quick 2, one-bag 5; "
                   f"--gpu-grid: {ps.GPU_REPEATS})")
    p.add_argument("--warmup", type=int, default=ps.WARMUP,
                   help="untimed runs first, unless the step is long (default: %(default)s)")
    for flag, cpu, gpu, text in (
            ("--time-budget", ps.TIME_BUDGET, ps.GPU_TIME_BUDGET, "no further timed run once "
             "the timed runs took this many seconds"),
            ("--long-step", ps.LONG_STEP, ps.GPU_LONG_STEP, "no warm-up and one timed run when "
             "the step is predicted to take more than this many seconds"),
            ("--timeout", ps.TIMEOUT, ps.GPU_ROW_TIMEOUT, "seconds per configuration; a longer "
             "one is killed and recorded as 'timeout'")):
        p.add_argument(flag, type=float, default=None,
                       help=f"{text} (default: {cpu:g}; --gpu-grid: {gpu:g})")
    p.add_argument("--memory-limit-gb", type=float, default=ps.MEMORY_LIMIT_GB,
                   help="address-space cap per configuration above its start size, GiB; at most "
                   "85%% of MemAvailable on CPU (default: %(default)s)")
    p.add_argument("--max-minutes", type=float, default=ps.MAX_MINUTES,
                   help="start no configuration after this many minutes; the rest are recorded "
                   "as 'not_run' (0: no limit; default: %(default)s)")
    p.add_argument("--threads", type=int, default=ps.THREADS,
                   help="torch.set_num_threads in every configuration (default: %(default)s)")
    p.add_argument("--omp-wait-policy", choices=("passive", "active", "inherit"),
                   default="passive",
                   help="OMP_WAIT_POLICY for torch's and pixcon's OpenMP threads. passive (the "
                   "default) lets a thread sleep at once at a barrier: on a machine whose cores "
                   "are busy with other processes, spinning threads (active, libgomp's default) "
                   "keep their partner off the CPU and a 2-thread step at small N takes ~100 ms "
                   "instead of ~1 ms; inherit: leave the environment as it is")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto = cpu, plus cuda when available (default: auto)")
    p.add_argument("--isolation", choices=("auto", "fork", "subprocess"), default="auto",
                   help="fresh process per configuration: fork of the driver (Linux CPU) or a "
                   "new interpreter (always for CUDA) (default: auto)")
    p.add_argument("--seed", type=int, default=0, help="input seed (default: %(default)s)")


def _output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out-dir", default=None, metavar="DIR",
                   help=f"JSON and PNGs go here (default: {ps.MEASURED_DIR} for the full suite, "
                   f"else {ps.RESULTS_DIR})")
    p.add_argument("--no-plot", action="store_true", help="no PNGs")
    p.add_argument("--no-sampling", action="store_true",
                   help="skip benchmarks/sampling_throughput.py")
    p.add_argument("--no-checks", action="store_true",
                   help="skip the float64 agreement checks of the baselines with pixcon")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--from-json", default=None, metavar="PATH",
                   help="measure nothing: print the tables of a suite JSON and redraw its PNGs "
                   "into --out-dir")


def _gpu_options(p: argparse.ArgumentParser) -> None:
    gpu = p.add_argument_group(
        "GPU grid", "--gpu-grid measures one bag on CUDA: N "
        + ",".join(map(str, ps.GPU_GRID_SIZES)) + f", D {','.join(map(str, ps.GPU_GRID_DIMS))}, "
        + f"{','.join(ps.GPU_DTYPES)}, " + ",".join(ps.GPU_GRID_IMPLS) + " (one worker process "
        "per implementation), and writes loss_suite_cuda_grid.json / .md and the plots into "
        "--out-dir")
    gpu.add_argument("--gpu-grid", action="store_true", help="run the GPU grid")
    gpu.add_argument("--budget-s", type=float, default=None,
                     help="seconds for the whole grid; a row that would end later is not run "
                     f"and a running one is stopped (default: {ps.GPU_BUDGET_S:g})")
    gpu.add_argument("--gpu-memory-gb", type=float, default=None,
                     help="GPU memory to plan with, GiB (default: what is free on the GPU)")
    gpu.add_argument("--gpu-name", default=None, choices=tuple(GPU_SPECS),
                     help="the GPU whose peak rates predict pixcon's time (default: the device's"
                     " own when it is one of these, else H100 SXM)")
    gpu.add_argument("--plan-only", action="store_true",
                     help="print the rows the grid would run or skip (needs --gpu-memory-gb, no "
                     "GPU) and exit")
    gpu.add_argument("--gpu-model", action="store_true",
                     help="print the performance model's table of predicted times (markdown) "
                     "and exit")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python benchmarks/loss_suite.py",
        description=("Forward+backward time and peak memory of pixcon's contrastive loss against "
                     "pixcon.reference, pytorch-metric-learning's SupConLoss and a per-pair "
                     "baseline (ContrastiveSeg's formula), N from 1K up to the largest each can "
                     "run, D, single/batch variants, float32/bfloat16; then the pixel-sampling "
                     "benchmark. Table on stdout, JSON and PNGs in --out-dir."),
        epilog="Examples: python benchmarks/loss_suite.py --quick --out-dir /tmp/suite ; "
               "python benchmarks/loss_suite.py --preset one-bag --quick")
    _grid_options(p)
    _run_options(p)
    _output_options(p)
    _gpu_options(p)
    return p


def _command(argv: Optional[Sequence[str]]) -> str:
    return " ".join(["python", "benchmarks/loss_suite.py"]
                    + list(argv if argv is not None else sys.argv[1:]))


def _or(value, default):
    return default if value is None else value


def replot(path: str, out_dir: str, plot: bool) -> int:
    """Prints the tables of the suite JSON ``path`` and redraws its PNGs into ``out_dir``."""
    from harness.plots import plot_suite

    with open(path) as f:
        report = json.load(f)
    rows, machine, cfg = report["rows"], report["machine"], report["config"]
    use_run_peak(rows)
    add_ratios(rows)
    print_suite_tables(rows, headline(rows), machine, cfg["threads"])
    if plot:
        sub = (f"{machine.get('cpu_model')}, {cfg['threads']} threads, torch "
               f"{machine.get('torch_version')}")
        stem = os.path.basename(path).rsplit("_", 1)[0]
        for device in cfg["devices"]:
            limit = cfg["memory_limit_gb"] * _GB if device == "cpu" else None
            for p in plot_suite(rows, out_dir, device, limit, sub, stem):
                print(f"plot written to {p}")
    return 0


def gpu_grid_main(args, parser: argparse.ArgumentParser, command: str) -> int:
    """``--gpu-grid``: the GPU's own grid, or with ``--plan-only`` its plan, asking no GPU."""
    from harness import gpu_grid

    sizes = args.sizes or list(ps.GPU_GRID_SIZES)
    dims = args.dims or list(ps.GPU_GRID_DIMS)
    dtypes = args.dtypes or list(ps.GPU_DTYPES)
    impls = args.impls or list(ps.GPU_GRID_IMPLS)
    row_timeout = _or(args.timeout, ps.GPU_ROW_TIMEOUT)
    if args.plan_only:
        if args.gpu_memory_gb is None:
            parser.error("--plan-only needs --gpu-memory-gb (no GPU is asked)")
        gpu_grid.print_plan(sizes, dims, dtypes, impls, args.gpu_memory_gb, args.gpu_name,
                            row_timeout)
        return 0
    config = {"sizes": sizes, "dims": dims, "dtypes": dtypes, "impls": impls,
              "budget_s": _or(args.budget_s, ps.GPU_BUDGET_S), "row_timeout_s": row_timeout,
              "repeats": _or(args.repeats, ps.GPU_REPEATS), "warmup": args.warmup,
              "time_budget_s": _or(args.time_budget, ps.GPU_TIME_BUDGET),
              "long_step_s": _or(args.long_step, ps.GPU_LONG_STEP), "classes": args.classes,
              "ignore_index": IGNORE_INDEX, "temperature": args.temperature, "seed": args.seed,
              "threads": args.threads}
    return gpu_grid.run_grid(config, gpu_memory_gb=args.gpu_memory_gb, gpu_name=args.gpu_name,
                             out_dir=args.out_dir or ps.RESULTS_DIR, plot=not args.no_plot,
                             command=command)


def _available_impls(impls: Sequence[str]) -> List[str]:
    """``impls`` without SupConLoss where pytorch-metric-learning is missing. Importing every
    implementation here, once, spares each forked child the import."""
    import pair_loss_baseline  # noqa: F401
    import pixcon  # noqa: F401
    import pixcon.reference  # noqa: F401
    try:
        import pytorch_metric_learning.losses  # noqa: F401
        import pytorch_metric_learning.reducers  # noqa: F401
    except ImportError:
        if "supcon" in impls:
            sys.stderr.write("pytorch-metric-learning is not installed: skipping 'supcon'\n")
        return [i for i in impls if i != "supcon"]
    return list(impls)


def suite_config(args, parser: argparse.ArgumentParser, preset: ps.Preset) -> Dict[str, Any]:
    """The run's configuration: the preset, with what the command line changes."""
    if args.dtypes and "tf32" in args.dtypes:
        parser.error("--dtypes tf32 goes with --gpu-grid")
    cfg = {
        "preset": preset.name,
        "sizes": sorted(args.sizes or preset.sizes),
        "large_sizes": sorted(_or(args.large_sizes, preset.large_sizes)),
        "large_combos": [list(c) for c in _or(args.large_combos, preset.large_combos)],
        "dims": list(args.dims or preset.dims), "variants": list(args.variants or preset.variants),
        "dtypes": list(args.dtypes or preset.dtypes), "impls": list(args.impls or preset.impls),
        "batch_images": args.batch_images, "classes": args.classes,
        "ignore_index": IGNORE_INDEX, "ignore_fraction": IGNORE_FRACTION,
        "temperature": args.temperature,
        "repeats": _or(args.repeats, preset.repeats), "warmup": args.warmup,
        "time_budget_s": _or(args.time_budget, ps.TIME_BUDGET),
        "long_step_s": _or(args.long_step, ps.LONG_STEP),
        "timeout_s": _or(args.timeout, ps.TIMEOUT), "max_minutes": args.max_minutes,
        "threads": args.threads, "seed": args.seed,
    }
    if cfg["repeats"] < 1 or cfg["warmup"] < 0 or cfg["threads"] < 1 or cfg["batch_images"] < 1 \
            or any(s < 16 for s in cfg["sizes"] + cfg["large_sizes"]) \
            or any(d < 1 for d in cfg["dims"]) or cfg["classes"] < 2 or cfg["temperature"] <= 0:
        parser.error("--repeats, --threads, --batch-images, --dims must be >= 1, sizes >= 16, "
                     "--classes >= 2, --temperature > 0")
    return cfg


def _run_sampling(args, out_dir: str, devices: Sequence[str], quick: bool) -> Dict[str, Any]:
    """benchmarks/sampling_throughput.py with the same threads and output directory; its rows."""
    script = os.path.join(_HERE, "sampling_throughput.py")
    cmd = [sys.executable, script, "--out-dir", out_dir, "--threads", str(args.threads),
           "--no-progress", "--device", devices[0] if len(devices) == 1 else "auto"]
    cmd += (["--quick"] if quick else []) + (["--no-plot"] if args.no_plot else [])
    print("\n$ python " + " ".join([os.path.relpath(script)] + cmd[2:]), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd)
    out: Dict[str, Any] = {"command": cmd[1:], "exit_status": proc.returncode,
                           "wall_s": round(time.perf_counter() - t0, 1), "json": None}
    path = os.path.join(out_dir, f"sampling_throughput_{'-'.join(devices)}.json")
    try:
        with open(path) as f:
            report = json.load(f)
    except (OSError, json.JSONDecodeError):
        return out
    keys = ("device", "strategy", "impl", "median_s", "min_s", "speedup", "selected",
            "sizes_match", "note")
    out.update(json=path, rows=[{k: r.get(k) for k in keys} for r in report.get("rows", [])])
    return out


def _memory_cap(args) -> float:
    """The per-configuration cap: --memory-limit-gb, at most 85 % of MemAvailable."""
    avail = proc_field_bytes("/proc/meminfo", "MemAvailable")
    limit = args.memory_limit_gb * _GB
    return limit if avail is None else min(limit, 0.85 * avail)


def suite_main(args, parser: argparse.ArgumentParser, command: str) -> int:
    """A CPU preset: checks, every configuration, tables, plots, sampling, JSON. Exit status 1
    when an agreement check or the sampling benchmark failed."""
    t_start = time.perf_counter()
    preset = ps.PRESETS[args.preset]
    if args.quick and preset.quick:
        preset = ps.PRESETS[preset.quick]
    cfg = suite_config(args, parser, preset)
    cfg["omp_wait_policy"] = set_omp_wait_policy(args.omp_wait_policy)
    cfg["impls"] = _available_impls(cfg["impls"])
    import torch

    torch.set_num_threads(args.threads)  # the driver runs no torch op: the children start fresh
    try:
        cfg["devices"] = resolve_devices(args.device)
    except ValueError as e:
        parser.error(str(e))
    fork = args.isolation == "fork" or (args.isolation == "auto" and sys.platform == "linux")
    cfg["isolation"] = "fork" if fork else "subprocess"
    limit = _memory_cap(args)
    cfg["memory_limit_gb"] = round(limit / _GB, 2)
    out_dir = args.out_dir or preset.out_dir
    machine = machine_info(cfg["devices"])
    from harness.suite import run_checks_isolated, run_suite

    checks = run_checks_isolated(cfg) if preset.checks and not args.no_checks else None
    deadline = t_start + 60.0 * args.max_minutes if args.max_minutes else None
    rows = run_suite(cfg, limit, deadline, not args.no_progress)
    use_run_peak(rows)
    add_ratios(rows)
    heads = headline(rows)
    machine["loadavg_end"] = loadavg()
    cfg.update(
        baseline_of=BASELINE_OF,
        timing="median of the timed runs of loss, valid = fn(z, y); loss.sum().backward(); "
               "perf_counter on CPU, CUDA events on GPU",
        peak_memory="CPU: VmHWM growth over the RSS after inputs + tiny warm-up, malloc_trim "
                    "and a peak reset (fresh process per row); CUDA: max_memory_allocated "
                    "growth",
        flops_nominal="6 * D * sum over bags of n_b^2 per forward+backward")
    print_suite_tables(rows, heads, machine, args.threads)
    if checks is not None:
        print_checks(checks)
    paths = [] if args.no_plot else _plot(rows, out_dir, cfg, machine, limit, preset.stem)
    loss_wall = time.perf_counter() - t_start
    sampling = None
    if preset.sampling and not args.no_sampling:
        sampling = _run_sampling(args, out_dir, cfg["devices"], preset.name == "quick")
    report = {"benchmark": preset.stem, "command": command,
              "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "wall_s": {"loss": round(loss_wall, 1),
                         "total": round(time.perf_counter() - t_start, 1)},
              "machine": machine, "config": cfg, "checks": checks, "headline": heads,
              "rows": rows, "plots": paths, "sampling": sampling}
    json_path = os.path.join(out_dir, f"{preset.stem}_{'-'.join(cfg['devices'])}.json")
    write_json(json_path, report)
    print(f"\nJSON written to {json_path}")
    for p in paths:
        print(f"plot written to {p}")
    print(f"wall time: {report['wall_s']['total']:.0f} s")
    bad_checks = checks is not None and any(isinstance(v, dict) and not v.get("ok", True)
                                            for v in checks.values())
    bad_sampling = sampling is not None and sampling.get("exit_status") not in (0, None)
    return 1 if bad_checks or bad_sampling else 0


def _plot(rows, out_dir: str, cfg: Dict[str, Any], machine: Dict[str, Any], limit: float,
          stem: str) -> List[str]:
    from harness.plots import plot_suite

    sub = (f"{machine.get('cpu_model')}, {cfg['threads']} threads, torch "
           f"{machine.get('torch_version')}")
    return [p for device in cfg["devices"]
            for p in plot_suite(rows, out_dir, device, limit if device == "cpu" else None, sub,
                                stem)]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = _command(argv)
    if args.from_json:
        return replot(args.from_json, args.out_dir or os.path.dirname(args.from_json),
                      not args.no_plot)
    if args.gpu_model:
        print(model_markdown(args.sizes or ps.GPU_GRID_SIZES, args.dims or ps.GPU_GRID_DIMS,
                             args.dtypes or ps.GPU_DTYPES))
        return 0
    if args.gpu_grid:
        return gpu_grid_main(args, parser, command)
    if args.plan_only:
        parser.error("--plan-only goes with --gpu-grid")
    return suite_main(args, parser, command)


if __name__ == "__main__":
    sys.exit(main())
