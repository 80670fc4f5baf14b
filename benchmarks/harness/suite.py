"""The CPU presets' loop: every configuration of a grid, each in its own process, stopping each
implementation at the largest N it can run.

Combinations run one after the other (float32 before bfloat16; batch, then single; larger D
first), each over all its N in ascending order, so that under ``max_minutes`` only the last
combinations lose rows. An implementation that fails at some N ("oom", "timeout", "error") is
not run at larger N of the same combination; nor is one whose peak or step time, extrapolated
quadratically from its last N, is above the memory cap or the timeout (marked predicted).
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Tuple

from .cases import BASELINE_OF
from .machine import loadavg
from .presets import PREDICT_TIME_MARGIN
from .report import progress_bar
from .runner import run_forked, run_subprocess

_GB = 1024.0 ** 3

Config = Tuple[Tuple[str, int, str, str], int, str]  # ((device, D, variant, dtype), N, impl)


def plan(cfg: Dict[str, Any]) -> List[Config]:
    """The configurations of ``cfg`` in the order they run."""
    devices, dtypes = cfg["devices"], cfg["dtypes"]
    combos = sorted(((dev, d, v, t) for dev in devices for v in cfg["variants"]
                     for t in dtypes for d in cfg["dims"]),
                    key=lambda c: (devices.index(c[0]), dtypes.index(c[3]), c[2] != "batch",
                                   -c[1]))
    large = {tuple(c) for c in cfg["large_combos"]}
    out = []
    for c in combos:
        ns = sorted(cfg["sizes"])
        if (c[1], c[2], c[3]) in large:
            ns += sorted(n for n in cfg["large_sizes"] if n > max(cfg["sizes"]))
        out += [(c, n, impl) for n in ns for impl in cfg["impls"]]
    return out


def _skip(cfg: Dict[str, Any], impl: str, n: int, prev: Optional[Dict[str, Any]],
          limit: Optional[float]) -> Optional[Dict[str, Any]]:
    """The status and note of a row its series' last measured N rules out, else None."""
    if prev is None:
        return None
    scale = (n / prev["n"]) ** 2
    pred_t, pred_m = prev["median_s"] * scale, prev["peak_bytes"] * scale
    margin = PREDICT_TIME_MARGIN if impl in BASELINE_OF else 1.0
    if limit is not None and pred_m > limit:
        return dict(status="oom", predicted=True, predicted_peak_bytes=pred_m,
                    note=f"not run: predicted peak {pred_m / _GB:.1f} GiB > cap "
                         f"{limit / _GB:.1f} GiB (N={prev['n']} x{scale:.1f})")
    if pred_t * margin > cfg["timeout_s"]:
        return dict(status="timeout", predicted=True, predicted_s=pred_t,
                    note=f"not run: predicted {pred_t:.0f} s x{margin:g} > "
                         f"timeout {cfg['timeout_s']:g} s (N={prev['n']} x{scale:.1f})")
    return None


def _measure(cfg: Dict[str, Any], combo, n: int, impl: str, prev: Optional[Dict[str, Any]],
             limit: Optional[float]) -> Dict[str, Any]:
    """One configuration in its own process: a long step (predicted over ``long_step_s``) runs
    once, without warm-up."""
    device, d, variant, dtype = combo
    long = prev is not None and prev["median_s"] * (n / prev["n"]) ** 2 > cfg["long_step_s"]
    spec = {"impl": impl, "n": n, "dim": d, "dtype": dtype, "device": device,
            "bags": cfg["batch_images"] if variant == "batch" else 1,
            "threads": cfg["threads"], "temperature": cfg["temperature"],
            "classes": cfg["classes"], "seed": cfg["seed"],
            "warmup": 0 if long else cfg["warmup"], "repeats": 1 if long else cfg["repeats"],
            "time_budget": cfg["time_budget_s"], "memory_limit_bytes": limit}
    forked = cfg["isolation"] == "fork" and device == "cpu"
    res = (run_forked if forked else run_subprocess)(spec, cfg["timeout_s"])
    res = dict(res, status=res.get("status", "error"), loadavg=loadavg())
    if res["status"] == "ok":
        res["peak_bytes_per_n2"] = res["peak_bytes"] / float(n * n)
    return res


def run_checks_isolated(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """The agreement checks, in their own process like every measurement."""
    spec = {"kind": "checks"}
    res = run_forked(spec, 600) if cfg["isolation"] == "fork" else run_subprocess(spec, 600)
    return res.get("checks", {"error": res.get("note")})


def run_suite(cfg: Dict[str, Any], limit_bytes: float, deadline: Optional[float],
              progress: bool) -> List[Dict[str, Any]]:
    """Every row of ``cfg``'s grid: measured, or with the reason it was not run. No row starts
    after ``deadline`` (``time.perf_counter()``); ``limit_bytes`` caps each CPU row."""
    configs = plan(cfg)
    bar = progress_bar(len(configs), "loss suite", "config", progress)
    rows: List[Dict[str, Any]] = []
    last_ok: Dict[Tuple, Dict[str, Any]] = {}
    failed: Dict[Tuple, Dict[str, Any]] = {}
    for combo, n, impl in configs:
        device, d, variant, dtype = combo
        series = (*combo, impl)
        if bar is not None:
            bar.set_postfix_str(f"{device} D={d} {variant} {dtype} {impl} N={n}")
        row: Dict[str, Any] = {"device": device, "dim": d, "variant": variant, "dtype": dtype,
                               "bags": cfg["batch_images"] if variant == "batch" else 1,
                               "impl": impl, "n": n, "status": None, "note": None,
                               "median_s": None, "peak_bytes": None}
        limit = limit_bytes if device == "cpu" else None
        if deadline is not None and time.perf_counter() > deadline:
            row.update(status="not_run", note="not run: the suite's --max-minutes "
                       f"{cfg['max_minutes']:g} were spent")
        elif series in failed:
            f = failed[series]
            row.update(status=f["status"], skipped_after=f["n"],
                       note=f"not run: {f['status']} at N={f['n']}")
        else:
            prev = last_ok.get(series)
            row.update(_skip(cfg, impl, n, prev, limit)
                       or _measure(cfg, combo, n, impl, prev, limit))
        if row["status"] == "ok":
            last_ok[series] = row
        elif series not in failed and row["status"] != "not_run":
            failed[series] = {"n": n, "status": row["status"]}
        rows.append(row)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return rows
