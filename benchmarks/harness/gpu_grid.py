"""The GPU grid: one bag on CUDA, the fused kernels against the matrix baselines, planned
against the GPU's memory and run within a time budget (benchmarks/README.md, "The GPU grid").

Before running, each row's peak and time are predicted (:func:`gpu_prediction`); rows that
would not fit or would overrun are recorded with their status and note instead. The baselines
run first, then pixcon in ascending predicted time, one persistent worker per implementation.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .cases import PIXCON_IMPLS, TEMPERATURE, nominal_flops
from .formats import fmt_ms
from .gpu_model import MODEL_FRACTIONS, RATE_OF, fused_model, gpu_spec_for
from .plots import plot_suite
from .presets import GPU_GRID_IMPLS
from .report import add_ratios, gpu_grid_markdown, write_json
from .runner import PersistentWorker

_MB = 1024.0 * 1024.0
_GB = 1024.0 ** 3

#: a row runs only when its predicted peak fits in this share of the GPU memory that was free
#: when the first worker started
GPU_USABLE_FRACTION = 0.9
#: peak bytes per N^2 of the matrix-building baselines before the GPU has measured a smaller N:
#: the largest the CPU suite measured at N >= 4225 (benchmarks/measured/loss_suite_cpu.json:
#: reference 34.3, SupConLoss 47.7), with a quarter more for the CUDA allocator's rounding
GPU_BASELINE_BYTES_PER_N2 = {"reference": 34.3 * 1.25, "supcon": 47.7 * 1.25}
#: pixcon's peak growth per element of [N, D] before one is measured: the gradient and the
#: packed copy of Z take at most 4 B each; doubled as a margin (its O(N) statistics are small)
PIXCON_BYTES_PER_ND = 16.0


def gpu_prediction(impl: str, n: int, d: int, dtype: str, spec: Dict[str, float],
                   prev: Optional[Dict[str, Any]] = None) -> Dict[str, float]:
    """Predicted step time and peak bytes of a GPU row: scaled from ``prev``, the last measured
    row of the same implementation, D and dtype (time as N^2; peak as N^2 for a baseline, N for
    pixcon); without one, the fused-kernel model for pixcon and, for a baseline, its prior bytes
    per N^2 with the time of its matmuls plus four HBM passes over that memory."""
    if prev is not None:
        ratio = n / prev["n"]
        return {"predicted_s": prev["median_s"] * ratio ** 2,
                "predicted_peak_bytes": prev["peak_bytes"] * (ratio if impl in PIXCON_IMPLS
                                                              else ratio ** 2)}
    if impl in PIXCON_IMPLS:
        return {"predicted_s": fused_model(n, d, dtype, spec)["seconds"],
                "predicted_peak_bytes": PIXCON_BYTES_PER_ND * n * d}
    peak = GPU_BASELINE_BYTES_PER_N2[impl] * float(n) * n
    rate = spec[RATE_OF[dtype]]
    return {"predicted_s": nominal_flops(n, d) / rate + 4 * peak / spec["hbm"],
            "predicted_peak_bytes": peak}


def gpu_skip_note(row: Dict[str, Any], usable_bytes: float,
                  row_timeout: float) -> Optional[Tuple[str, str]]:
    """``(status, note)`` for a row whose prediction rules it out, else None."""
    peak, secs = row["predicted_peak_bytes"], row["predicted_s"]
    if peak > usable_bytes:
        return "oom", (f"not run: predicted peak {peak / _GB:.1f} GiB > {usable_bytes / _GB:.1f} "
                       "GiB usable on the GPU")
    if secs > row_timeout:
        return "timeout", f"not run: predicted {secs:.0f} s per step > {row_timeout:g} s per row"
    return None


def plan_gpu_grid(sizes: Sequence[int], dims: Sequence[int], dtypes: Sequence[str],
                  impls: Sequence[str], usable_bytes: float, spec: Dict[str, float],
                  row_timeout: float,
                  unavailable: Optional[Dict[str, str]] = None) -> List[Dict[str, Any]]:
    """The GPU grid's rows in run order, each with its prediction; rows that will not run
    already carry their status and note: an implementation in ``unavailable`` (impl -> note,
    e.g. a package that is not installed), a predicted peak above ``usable_bytes`` ("oom") or a
    predicted step above ``row_timeout`` ("timeout"). Each implementation's rows run by
    ascending predicted time, so a spent budget costs the longest rows."""
    unavailable = unavailable or {}
    rows: List[Dict[str, Any]] = []
    for impl in [i for i in GPU_GRID_IMPLS if i in impls]:
        mine = []
        for dtype in dtypes:
            for d in dims:
                for n in sizes:
                    row = {"device": "cuda", "dim": d, "variant": "single", "dtype": dtype,
                           "bags": 1, "impl": impl, "n": n, "status": None, "note": None,
                           "median_s": None, "peak_bytes": None}
                    row.update(gpu_prediction(impl, n, d, dtype, spec))
                    if impl in PIXCON_IMPLS:
                        row["model_s"] = row["predicted_s"]
                    skip = (("not_run", unavailable[impl]) if impl in unavailable
                            else gpu_skip_note(row, usable_bytes, row_timeout))
                    if skip:
                        row["status"], row["note"] = skip
                        row["predicted"] = skip[0] != "not_run"
                    mine.append(row)
        rows += sorted(mine, key=lambda r: (r["predicted_s"], r["n"]))
    return rows


def plan_text(rows: Sequence[Dict[str, Any]]) -> str:
    """The plan as a plain table: one line per row, in run order."""
    out = [f"{'impl':<11} {'D':>4} {'dtype':<9} {'N':>7} {'pred ms':>9} "
           f"{'pred peak GiB':>13}  plan"]
    for r in rows:
        out.append(f"{r['impl']:<11} {r['dim']:>4} {r['dtype']:<9} {r['n']:>7} "
                   f"{fmt_ms(r['predicted_s']):>9} {r['predicted_peak_bytes'] / _GB:>13.2f}  "
                   f"{r['note'] or 'run'}")
    return "\n".join(out)


def _decide(row: Dict[str, Any], spec: Dict[str, float], usable_bytes: float,
            row_timeout: float, left: float, last_ok: Dict[Tuple, Dict[str, Any]],
            failed: Dict[Tuple, Dict[str, Any]]) -> None:
    """Decides again whether a planned row runs: not after a failed smaller N of its series,
    nor when its prediction (from the last measured N of its series, else the plan's) rules it
    out or will not fit in the ``left`` seconds of the budget. Sets status None to run it."""
    series = (row["impl"], row["dim"], row["dtype"])
    row.update(status=None, note=None, predicted=False)
    if series in failed:
        f = failed[series]
        row.update(status=f["status"], skipped_after=f["n"],
                   note=f"not run: {f['status']} at N={f['n']}")
        return
    if series in last_ok:
        row.update(gpu_prediction(row["impl"], row["n"], row["dim"], row["dtype"], spec,
                                  last_ok[series]))
    skip = gpu_skip_note(row, usable_bytes, row_timeout)
    if skip is None and row["predicted_s"] > left:
        skip = ("not_run", f"not run: predicted {row['predicted_s']:.1f} s > the "
                f"{max(left, 0):.0f} s left of the budget")
    if skip:
        row.update(status=skip[0], note=skip[1], predicted=True)


def _measure_row(row: Dict[str, Any], worker: PersistentWorker, left: float, row_timeout: float,
                 run: Dict[str, Any]) -> None:
    """Measures ``row`` in the worker; a row the end of the budget stopped is "not_run", one
    whose loss or gradient is not finite an "error"."""
    long = row["predicted_s"] > run["long_step"]
    cut = left < row_timeout
    spec = {"impl": row["impl"], "n": row["n"], "dim": row["dim"], "dtype": row["dtype"],
            "device": run["device"], "bags": 1, "threads": run["threads"],
            "temperature": TEMPERATURE, "seed": run["seed"],
            "warmup": 0 if long else run["warmup"], "repeats": 1 if long else run["repeats"],
            "time_budget": run["time_budget"]}
    res = worker.request(spec, max(left, 1.0) if cut else row_timeout)
    row.update(res)
    row["status"] = res.get("status", "error")
    if row["status"] == "timeout" and cut:
        row.update(status="not_run", note=f"stopped after {left:.0f} s: the budget ran out")
    if row["status"] == "ok" and not (row.get("grad_finite")
                                      and math.isfinite(row.get("loss_sum", math.nan))):
        row.update(status="error", note="non-finite loss or gradient")
    if row["status"] == "ok":
        row["tflops"] = nominal_flops(row["n"], row["dim"]) / row["median_s"] / 1e12


def _row_line(i: int, total: int, r: Dict[str, Any]) -> str:
    head = f"[{i:>2}/{total}] {r['impl']:<10} D={r['dim']:<3} {r['dtype']:<8} N={r['n']:<6}"
    if r["status"] != "ok":
        return f"{head} {r['status']}: {r.get('note') or ''}"
    return (f"{head} {fmt_ms(r['median_s'])} ms, {r['tflops']:.1f} TFLOP/s, peak "
            f"{r['peak_bytes'] / _MB:.0f} MiB")


def run_gpu_rows(rows: List[Dict[str, Any]], *, spec: Dict[str, float], usable_bytes: float,
                 row_timeout: float, deadline: float, repeats: int, warmup: int,
                 time_budget: float, long_step: float, seed: int, threads: int,
                 worker: PersistentWorker, device: str = "cuda") -> None:
    """Runs the planned rows in order, one worker process per implementation, filling in each
    row's result. Every row but those of an unavailable implementation (status "not_run" in the
    plan) is decided again (:func:`_decide`) before it runs; a row still running when the
    budget (``deadline``, monotonic) ends is stopped and recorded as not run. ``device`` other
    than "cuda" only serves tests of this loop on machines without a GPU."""
    run = dict(repeats=repeats, warmup=warmup, time_budget=time_budget, long_step=long_step,
               seed=seed, threads=threads, device=device)
    last_ok: Dict[Tuple, Dict[str, Any]] = {}
    failed: Dict[Tuple, Dict[str, Any]] = {}
    current = None
    for i, row in enumerate(rows, 1):
        series = (row["impl"], row["dim"], row["dtype"])
        if row["status"] != "not_run":
            left = deadline - time.monotonic()
            _decide(row, spec, usable_bytes, row_timeout, left, last_ok, failed)
            if row["status"] is None:
                if current is not None and current != row["impl"]:
                    worker.close()  # one implementation's CUDA context at a time
                current = row["impl"]
                _measure_row(row, worker, left, row_timeout, run)
                if row["status"] == "ok":
                    last_ok[series] = row
                elif row["status"] != "not_run":
                    failed[series] = {"n": row["n"], "status": row["status"]}
        print(_row_line(i, len(rows), row), flush=True)
    worker.close()


def unavailable_impls(impls: Sequence[str]) -> Dict[str, str]:
    """The implementations that cannot run here, each with its note."""
    if "supcon" in impls and importlib.util.find_spec("pytorch_metric_learning") is None:
        return {"supcon": "not run: pytorch-metric-learning is not installed"}
    return {}


def print_plan(sizes: Sequence[int], dims: Sequence[int], dtypes: Sequence[str],
               impls: Sequence[str], gpu_memory_gb: float, gpu_name: Optional[str],
               row_timeout: float) -> None:
    """The rows the grid would run or skip on a GPU of that memory, asking no GPU."""
    _, spec = gpu_spec_for(gpu_name or "H100 SXM")
    rows = plan_gpu_grid(sizes, dims, dtypes, impls, GPU_USABLE_FRACTION * gpu_memory_gb * _GB,
                         spec, row_timeout, unavailable_impls(impls))
    print(plan_text(rows))


def _write(report: Dict[str, Any], out_dir: str, plot: bool) -> None:
    """loss_suite_cuda_grid.json and .md, and the plots, into ``out_dir``."""
    if plot:
        m = report["machine"]
        report["plots"] = plot_suite(report["rows"], out_dir, "cuda",
                                     report["config"]["usable_bytes"],
                                     f"{m['gpu_name']}, torch {m.get('torch_version')}")
    json_path = os.path.join(out_dir, "loss_suite_cuda_grid.json")
    write_json(json_path, report)
    md_path = os.path.join(out_dir, "loss_suite_cuda_grid.md")
    with open(md_path, "w") as f:
        f.write(gpu_grid_markdown(report))
    print(f"\n{gpu_grid_markdown(report)}\nJSON written to {json_path}\nmarkdown written to "
          f"{md_path}")


def run_grid(config: Dict[str, Any], *, gpu_memory_gb: Optional[float], gpu_name: Optional[str],
             out_dir: str, plot: bool, command: str) -> int:
    """Measures the grid ``config`` (sizes, dims, dtypes, impls, budget_s, row_timeout_s,
    repeats, warmup, time_budget_s, long_step_s, seed, threads) in worker processes and writes
    its files. Exit status 1 when no GPU is usable, a row failed with an error, or a pixcon row
    ran out of memory or time."""
    t0 = time.monotonic()
    worker = PersistentWorker()
    info = worker.request({"kind": "device"}, 180.0)
    if info.get("status") != "ok":
        worker.close()
        print(f"no usable GPU: {info.get('note')}", file=sys.stderr)
        return 1
    machine = info["machine"]
    free = gpu_memory_gb * _GB if gpu_memory_gb is not None else machine["gpu_free_bytes"]
    usable = GPU_USABLE_FRACTION * free
    model_gpu, spec = gpu_spec_for(gpu_name or machine["gpu_name"])
    unavailable = unavailable_impls(config["impls"])
    rows = plan_gpu_grid(config["sizes"], config["dims"], config["dtypes"], config["impls"],
                         usable, spec, config["row_timeout_s"], unavailable)
    print(f"GPU grid on {machine['gpu_name']}: {len(rows)} rows, budget "
          f"{config['budget_s']:.0f} s, {usable / _GB:.1f} GiB usable", flush=True)
    run_gpu_rows(rows, spec=spec, usable_bytes=usable, row_timeout=config["row_timeout_s"],
                 deadline=t0 + config["budget_s"], repeats=config["repeats"],
                 warmup=config["warmup"], time_budget=config["time_budget_s"],
                 long_step=config["long_step_s"], seed=config["seed"],
                 threads=config["threads"], worker=worker)
    add_ratios(rows)
    config = dict(config, usable_bytes=usable,
                  timing="median of CUDA-event times of loss, valid = fn(z, y); "
                         "loss.sum().backward(); one worker process per implementation",
                  peak_memory="max_memory_allocated growth over the inputs, reset per row",
                  flops_nominal="6 N^2 D per forward+backward",
                  model_fraction=MODEL_FRACTIONS["expected"])
    report = {"benchmark": "loss_suite_gpu_grid", "command": command,
              "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "wall_s": round(time.monotonic() - t0, 1), "machine": machine,
              "model_gpu": model_gpu, "notes": sorted(set(unavailable.values())),
              "config": config, "rows": rows, "plots": []}
    _write(report, out_dir, plot)
    bad = [r for r in rows if r["status"] == "error" or (
        r["impl"] in PIXCON_IMPLS and r["status"] in ("oom", "timeout")
        and not r.get("predicted"))]
    return 1 if bad else 0
