"""Throughput and peak-memory benchmark of the contrastive loss: pixcon vs the reference.

Run ``python -m pixcon.bench --help`` (or ``python benchmarks/loss_throughput.py``).

What is measured, for each implementation (``pixcon.contrastive_loss`` and the pure-PyTorch
``pixcon.reference.contrastive_loss``, which materialises the N x N matrix) and each N:

* the median wall time of one forward + backward of ``loss.sum()`` (``loss, valid = fn(z, y)``;
  ``loss.sum().backward()``) over ``--repeats`` runs after one warm-up run, with float32
  unit-normalised random embeddings [N, D] (a ``requires_grad`` leaf), random labels over
  ``--classes`` classes with ~5% ``ignore_index`` (255), one bag;
* GFLOP/s = 6 * N^2 * D / time / 1e9, the nominal forward + backward flop count (2 N^2 D for the
  similarities, 4 N^2 D for the gradient), the same for both implementations;
* peak memory over a baseline taken after the inputs were created and a tiny warm-up ran:
  on CPU the growth of ``getrusage(RUSAGE_SELF).ru_maxrss``, on CUDA
  ``torch.cuda.max_memory_allocated()`` minus the memory allocated at the baseline;
* the speed-up of pixcon over the reference at the same N and device.

Every (device, impl, N) runs in its own fresh subprocess (``python -m pixcon.bench --_worker``),
so that peak-RSS numbers are not polluted by earlier configurations and an out-of-memory kill
costs one row, not the run. The reference is skipped, with a note, when its estimated memory
(``REF_BYTES_PER_N2 * N^2``) is above the limit.

Importing this module has no side effects; ``main(argv)`` runs the benchmark and returns an
exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ._benchtools import (describe_exit, emit_result, fmt, loadavg, machine_info,
                          mem_available_bytes, print_table, resolve_devices, run_worker)

__all__ = ["main", "REF_BYTES_PER_N2", "estimate_reference_bytes", "flops"]

# Peak extra memory of the reference's forward + backward, in bytes per N^2 (one bag, float32),
# per denominator. pixcon.reference keeps several N x N float32 matrices (similarities, masked
# logits, exp / softmax or softplus terms, their gradients) and bool masks alive at the peak.
# Measured with this harness (CPU, ru_maxrss growth, fresh process; torch 2.15, 2 threads):
#   "all":  34.7 B/N^2 at N = 4225, 30.5 B/N^2 at N = 10000  (~8-9 float32 N x N matrices)
#   "pair": 54.0 B/N^2 at N = 4225, 50.5 B/N^2 at N = 10000  (~13 float32 N x N matrices)
# and rounded up by ~15% so that the estimate is an upper bound (allocator slack, small N).
REF_BYTES_PER_N2 = {"all": 40.0, "pair": 60.0}

DEFAULT_SIZES = (1024, 4225, 10000, 16641)
QUICK_SIZES = (1024, 4225)
DEFAULT_REPEATS = 5
QUICK_REPEATS = 3
DEFAULT_DIM = 256
DEFAULT_CLASSES = 19
IGNORE_INDEX = 255
IGNORE_FRACTION = 0.05
DEFAULT_JSON = os.path.join("benchmarks", "results", "loss_throughput.json")
IMPLS = ("pixcon", "reference")
_RESULT_MARKER = "PIXCON_BENCH_RESULT "
_MB = 1024.0 * 1024.0
_GB = 1024.0 ** 3


# --------------------------------------------------------------------------------------------
# helpers shared by the driver and the worker
# --------------------------------------------------------------------------------------------

def flops(n: int, d: int) -> float:
    """Nominal forward + backward flop count of the loss for one bag of n rows of dimension d."""
    return 6.0 * float(n) * float(n) * float(d)


def estimate_reference_bytes(n: int, d: int = DEFAULT_DIM, denominator: str = "all") -> float:
    """Estimated peak extra memory (bytes) of the reference's forward + backward at N = n."""
    # the N x N matrices dominate; the O(N * D) terms (inputs, normalised copy, gradient) are
    # added so that the estimate stays an upper bound at small N too.
    per_n2 = REF_BYTES_PER_N2.get(denominator, max(REF_BYTES_PER_N2.values()))
    return per_n2 * float(n) * float(n) + 4.0 * 4.0 * float(n) * float(d)


def _make_inputs(n: int, d: int, classes: int, seed: int, device: str):
    import torch

    g = torch.Generator().manual_seed(seed * 1_000_003 + n)
    z = torch.randn(n, d, generator=g, dtype=torch.float32)
    # in place, so that creating the inputs does not raise the RSS high-water mark above the
    # inputs' own footprint (that would hide part of the measured peak)
    z.div_(z.norm(dim=1, keepdim=True).clamp_min_(1e-12))
    y = torch.randint(0, classes, (n,), generator=g, dtype=torch.int64)
    y[torch.rand(n, generator=g) < IGNORE_FRACTION] = IGNORE_INDEX
    z = z.to(device).requires_grad_(True)
    y = y.to(device)
    return z, y


def _get_impl(name: str):
    if name == "pixcon":
        import pixcon

        return pixcon.contrastive_loss
    if name == "reference":
        import pixcon.reference

        return pixcon.reference.contrastive_loss
    raise ValueError(f"unknown impl {name!r}")


# --------------------------------------------------------------------------------------------
# worker: one (device, impl, N) in a fresh process
# --------------------------------------------------------------------------------------------

def _run_worker(spec: Dict[str, Any]) -> Dict[str, Any]:
    import resource

    import torch

    impl, n, d = spec["impl"], int(spec["n"]), int(spec["dim"])
    device, repeats, warmup = spec["device"], int(spec["repeats"]), int(spec["warmup"])
    kwargs = dict(temperature=spec["temperature"], ignore_index=IGNORE_INDEX,
                  denominator=spec["denominator"])
    fn = _get_impl(impl)
    cuda = device.startswith("cuda")

    def step(z, y):
        loss, valid = fn(z, y, **kwargs)
        loss.sum().backward()
        return loss, valid

    z, y = _make_inputs(n, d, int(spec["classes"]), int(spec["seed"]), device)
    # tiny warm-up: loads kernels, spins up thread pools / the CUDA context and its allocator
    zs, ys = _make_inputs(min(n, 64), d, int(spec["classes"]), int(spec["seed"]) + 1, device)
    step(zs, ys)
    del zs, ys
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_mem = torch.cuda.memory_allocated()
    else:
        base_mem = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0  # KiB on Linux
        if sys.platform == "darwin":
            base_mem /= 1024.0  # bytes on macOS

    times: List[float] = []
    valid_count = None
    loss_sum = None
    for it in range(warmup + repeats):
        z.grad = None
        if cuda:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            loss, valid = step(z, y)
            end.record()
            end.synchronize()
            elapsed = start.elapsed_time(end) / 1e3
        else:
            t0 = time.perf_counter()
            loss, valid = step(z, y)
            elapsed = time.perf_counter() - t0
        if it >= warmup:
            times.append(elapsed)
        if valid_count is None:
            valid_count = int(valid.sum().item())
            loss_sum = float(loss.detach().sum().item())
        del loss, valid

    if cuda:
        peak = float(torch.cuda.max_memory_allocated() - base_mem)
    else:
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0
        if sys.platform == "darwin":
            peak_rss /= 1024.0
        peak = peak_rss - base_mem
    grad_ok = bool(z.grad is not None and torch.isfinite(z.grad).all().item())
    med = statistics.median(times)
    return {
        "status": "ok",
        "median_s": med,
        "min_s": min(times),
        "times_s": times,
        "peak_bytes": max(peak, 0.0),
        "gflops": flops(n, d) / med / 1e9,
        "num_threads": torch.get_num_threads(),
        "valid_anchors": valid_count,
        "loss_sum": loss_sum,
        "grad_finite": grad_ok,
    }


def _worker_main(spec_json: str) -> int:
    spec = json.loads(spec_json)
    try:
        result = _run_worker(spec)
    except MemoryError:
        result = {"status": "oom", "note": "out of memory (MemoryError)"}
    except Exception as e:  # noqa: BLE001 - reported to the driver as a note
        msg = f"{type(e).__name__}: {e}".strip().splitlines()
        first = msg[0] if msg else type(e).__name__
        low = first.lower()
        oom = ("out of memory" in low or "can't allocate memory" in low
               or type(e).__name__ == "OutOfMemoryError")
        if oom:
            m = re.search(r"tried to allocate (\d+(?:\.\d+)?) ?(bytes|[KMGT]i?B)", first)
            what = f" allocating {m.group(1)} {m.group(2)}" if m else ""
            result = {"status": "oom", "note": f"out of memory ({type(e).__name__}{what})"}
        else:
            result = {"status": "error", "note": "failed: " + first[:200]}
    emit_result(_RESULT_MARKER, result)
    return 0


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------

def _child_env() -> Dict[str, str]:
    """Environment for the worker: make it import the same pixcon as this process."""
    env = dict(os.environ)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parts = [pkg_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    return env


def _explain_exit(rc: int) -> Tuple[str, str]:
    if not rc:
        return "error", "no result reported"
    return describe_exit(rc, "out of memory?")


def _run_config(spec: Dict[str, Any], timeout: Optional[float]) -> Dict[str, Any]:
    cmd = [sys.executable, "-m", "pixcon.bench", "--_worker", json.dumps(spec)]
    return run_worker(cmd, timeout, _RESULT_MARKER, _explain_exit, env=_child_env())


def _parse_sizes(text: str) -> List[int]:
    try:
        sizes = [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes expects comma-separated integers, got {text!r}")
    if not sizes or any(s < 2 for s in sizes):
        raise argparse.ArgumentTypeError("--sizes needs at least one size, each >= 2")
    return sizes


def _parse_impls(text: str) -> List[str]:
    impls = [s for s in text.replace(" ", "").split(",") if s]
    bad = [s for s in impls if s not in IMPLS]
    if not impls or bad:
        raise argparse.ArgumentTypeError(f"--impls expects a subset of {','.join(IMPLS)}")
    return impls


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pixcon.bench",
        description=(
            "Forward+backward throughput and peak memory of pixcon.contrastive_loss vs the "
            "pure-PyTorch reference (pixcon.reference.contrastive_loss, which materialises the "
            "N x N matrix). float32 unit-normalised random embeddings, random labels with ~5% "
            "ignore_index, one bag. Each configuration runs in a fresh subprocess. GFLOP/s uses "
            "the nominal 6*N^2*D flops of forward+backward for both implementations."),
        epilog=("Examples: python -m pixcon.bench --quick ; "
                "python -m pixcon.bench --sizes 1024,4225 --denominator pair --plot out.png"),
    )
    p.add_argument("--sizes", type=_parse_sizes, default=None,
                   help="comma-separated bag sizes N (default: %s; with --quick: %s)"
                   % (",".join(map(str, DEFAULT_SIZES)), ",".join(map(str, QUICK_SIZES))))
    p.add_argument("--dim", type=int, default=DEFAULT_DIM,
                   help="embedding dimension D (default: %(default)s)")
    p.add_argument("--classes", type=int, default=DEFAULT_CLASSES,
                   help="number of label classes (default: %(default)s)")
    p.add_argument("--denominator", choices=("all", "pair"), default="all",
                   help="loss denominator (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=0.07,
                   help="temperature (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed repeats per configuration, after 1 warm-up run "
                   f"(default: {DEFAULT_REPEATS}; with --quick: {QUICK_REPEATS})")
    p.add_argument("--quick", action="store_true",
                   help=f"quick run: sizes {','.join(map(str, QUICK_SIZES))} and "
                   f"{QUICK_REPEATS} repeats (explicit --sizes/--repeats still win)")
    p.add_argument("--impls", type=_parse_impls, default=list(IMPLS),
                   help="comma-separated implementations to run (default: pixcon,reference)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto = cpu, plus cuda when torch.cuda.is_available() (default: auto)")
    p.add_argument("--memory-limit-gb", type=float, default=None,
                   help="skip the reference when its estimated memory is above this "
                   "(default: 75%% of MemAvailable on CPU, of free GPU memory on CUDA)")
    p.add_argument("--timeout", type=float, default=3600.0,
                   help="seconds allowed per configuration subprocess (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="input seed (default: %(default)s)")
    p.add_argument("--json", default=DEFAULT_JSON, metavar="PATH",
                   help="write machine info and every row as JSON here (default: %(default)s; "
                   "'' to disable)")
    p.add_argument("--plot", default=None, metavar="PATH",
                   help="write a PNG: time vs N and peak memory vs N, log-log")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    return p


def _memory_limit_bytes(device: str, override_gb: Optional[float]) -> Optional[float]:
    if override_gb is not None:
        return override_gb * _GB
    if device == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info()
        return 0.75 * free
    avail = mem_available_bytes()
    return None if avail is None else 0.75 * avail


def _table_rows(rows: Sequence[Dict[str, Any]], show_device: bool) -> List[List[str]]:
    out = []
    for r in rows:
        su = r.get("speedup")
        cells = [r["impl"], str(r["n"]),
                 fmt(None if r.get("median_s") is None else r["median_s"] * 1e3, ".1f"),
                 fmt(r.get("gflops"), ".1f"),
                 fmt(None if r.get("peak_bytes") is None else r["peak_bytes"] / _MB, ".1f"),
                 ("-" if su is None else f"{su:.2f}x"),
                 r.get("note") or ""]
        out.append(([r["device"]] if show_device else []) + cells)
    return out


def _print_table(rows: Sequence[Dict[str, Any]], title: str) -> None:
    show_device = len({r["device"] for r in rows}) > 1
    header = (["device"] if show_device else []) + [
        "impl", "N", "median ms", "GFLOP/s", "peak MB", "speed-up", "note"]
    print_table(title, header, _table_rows(rows, show_device), ("device", "impl", "note"))


def _plot(rows: Sequence[Dict[str, Any]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.5))
    series = sorted({(r["device"], r["impl"]) for r in rows})
    for device, impl in series:
        pts = sorted((r["n"], r["median_s"], r["peak_bytes"]) for r in rows
                     if r["device"] == device and r["impl"] == impl
                     and r.get("median_s") is not None)
        if not pts:
            continue
        label = impl if len({d for d, _ in series}) == 1 else f"{impl} ({device})"
        ns = [p[0] for p in pts]
        ax_t.plot(ns, [p[1] * 1e3 for p in pts], marker="o", label=label)
        ax_m.plot(ns, [max(p[2] / _MB, 1e-3) for p in pts], marker="o", label=label)
    for ax, ylabel in ((ax_t, "median fwd+bwd time (ms)"), (ax_m, "peak memory (MB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("N (rows in the bag)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the benchmark; returns 0 on success (rows with notes included), 2 on bad usage."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args._worker is not None:
        return _worker_main(args._worker)

    sizes = args.sizes or list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    repeats = args.repeats if args.repeats is not None else (
        QUICK_REPEATS if args.quick else DEFAULT_REPEATS)
    if repeats < 1 or args.dim < 1 or args.classes < 1 or args.temperature <= 0:
        parser.error("--repeats, --dim, --classes and --temperature must be positive")

    devices = resolve_devices(args.device, parser)
    machine = machine_info(devices)
    limits = {d: _memory_limit_bytes(d, args.memory_limit_gb) for d in devices}
    configs = [(d, impl, n) for d in devices for n in sizes for impl in args.impls]

    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a declared dependency of the benchmark
        tqdm = None
    bar = None
    if tqdm is not None and not args.no_progress:
        bar = tqdm(total=len(configs), desc="pixcon.bench", unit="config", file=sys.stderr)

    rows: List[Dict[str, Any]] = []
    for device, impl, n in configs:
        if bar is not None:
            bar.set_postfix_str(f"{device} {impl} N={n}")
        row: Dict[str, Any] = {"device": device, "impl": impl, "n": n, "dim": args.dim,
                               "denominator": args.denominator, "median_s": None,
                               "gflops": None, "peak_bytes": None, "speedup": None,
                               "note": None, "status": None}
        limit = limits[device]
        need = estimate_reference_bytes(n, args.dim, args.denominator) if impl == "reference" else None
        if need is not None:
            row["estimated_bytes"] = need
        if need is not None and limit is not None and need > limit:
            row["status"] = "skipped"
            row["note"] = f"skipped: needs ~{need / _GB:.1f} GB, limit {limit / _GB:.1f} GB"
        else:
            spec = {"impl": impl, "n": n, "dim": args.dim, "classes": args.classes,
                    "device": device, "repeats": repeats, "warmup": 1,
                    "denominator": args.denominator, "temperature": args.temperature,
                    "seed": args.seed}
            res = _run_config(spec, args.timeout)
            row["status"] = res.pop("status", "error")
            row["note"] = res.pop("note", None)
            row.update(res)
            if row["status"] == "ok" and row.get("peak_bytes") is not None:
                row["peak_bytes_per_n2"] = row["peak_bytes"] / float(n * n)
        rows.append(row)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    # speed-up of pixcon over the reference at the same (device, N)
    by_key = {(r["device"], r["impl"], r["n"]): r for r in rows}
    for r in rows:
        ref = by_key.get((r["device"], "reference", r["n"]))
        if r["impl"] == "pixcon" and r.get("median_s") and ref and ref.get("median_s"):
            r["speedup"] = ref["median_s"] / r["median_s"]
        elif r["impl"] == "reference" and r.get("median_s"):
            r["speedup"] = 1.0

    machine["loadavg_end"] = loadavg()
    title = (f"pixcon contrastive loss, fwd+bwd, float32, D={args.dim}, {args.classes} classes, "
             f"denominator={args.denominator}, median of {repeats} "
             f"| {machine['cpu_model']}, isa={machine.get('cpu_isa')}, "
             f"torch {machine['torch_version']}, {machine['torch_num_threads']} threads")
    print()
    _print_table(rows, title)

    report = {
        "benchmark": "loss_throughput",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine,
        "config": {
            "dtype": "float32", "dim": args.dim, "classes": args.classes,
            "ignore_index": IGNORE_INDEX, "ignore_fraction": IGNORE_FRACTION,
            "denominator": args.denominator, "temperature": args.temperature,
            "bags": 1, "sizes": sizes, "repeats": repeats, "warmup": 1, "seed": args.seed,
            "devices": devices, "impls": args.impls,
            "memory_limit_gb": {d: (None if v is None else round(v / _GB, 2))
                                for d, v in limits.items()},
            "ref_bytes_per_n2": REF_BYTES_PER_N2,
            "flops_formula": "6 * N^2 * D per forward+backward",
            "peak_memory": ("CPU: ru_maxrss growth over a baseline after inputs + tiny warm-up, "
                            "fresh subprocess per row; CUDA: max_memory_allocated - "
                            "memory_allocated at the baseline"),
        },
        "rows": rows,
    }
    if args.json:
        d = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(d, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
        print(f"\nJSON written to {args.json}")
    if args.plot:
        _plot(rows, args.plot, f"pixcon loss fwd+bwd, D={args.dim}, {args.denominator}")
        print(f"plot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
