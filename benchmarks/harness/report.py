"""How the loss benchmarks report: plain-text tables on stdout, pixcon's speed-up and memory
ratio against each baseline, the headline at the largest N both ran, the GPU grid's markdown,
the JSON file and the progress bar."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Collection, Dict, List, Optional, Sequence, Tuple

from .cases import BASELINE_OF, IMPL_LABELS, IMPLS, nominal_flops
from .formats import fmt, fmt_ms, fmt_ratio
from .gpu_model import MODEL_FRACTIONS
from .presets import GPU_DTYPES, VARIANTS

_MB = 1024.0 * 1024.0
_GB = 1024.0 ** 3

ComboKey = Tuple[str, int, str, str]  # (device, D, variant, dtype)


def print_table(title: str, header: Sequence[str], body: Sequence[Sequence[str]],
                left_columns: Collection[str]) -> None:
    """Prints ``body`` (rows of cells) under ``header``: the columns named in ``left_columns``
    left-aligned, the others right-aligned, two spaces apart, a dashed line under the header."""
    widths = [max([len(h)] + [len(cells[i]) for cells in body]) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if h in left_columns else c.rjust(w)
                         for c, w, h in zip(cells, widths, header)).rstrip()

    print(title)
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for cells in body:
        print(line(cells))


def progress_bar(total: int, desc: str, unit: str, enabled: bool = True):
    """A tqdm bar on stderr, or None when disabled or tqdm is missing."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)


def write_json(path: str, report: Dict[str, Any]) -> None:
    """Writes ``report`` to ``path`` (indented, one trailing newline), making its folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")


def combo_key(r: Dict[str, Any]) -> ComboKey:
    return (r["device"], r["dim"], r["variant"], r["dtype"])


def _dtype_order(dtype: str) -> int:
    return GPU_DTYPES.index(dtype) if dtype in GPU_DTYPES else len(GPU_DTYPES)


def combo_order(key: ComboKey) -> Tuple:
    """Display order: device, dtype, D, variant."""
    device, dim, variant, dtype = key
    return (device, _dtype_order(dtype), dim,
            VARIANTS.index(variant) if variant in VARIANTS else len(VARIANTS))


def combo_name(key: ComboKey) -> str:
    device, dim, variant, dtype = key
    return f"{device} D={dim} {variant} {dtype}"


def bags_text(bags: int) -> str:
    return f"{bags} bag{'s' if bags > 1 else ''}"


def add_ratios(rows: List[Dict[str, Any]]) -> None:
    """``speedup`` / ``memory_ratio`` of pixcon over each baseline row at the same config."""
    by = {(combo_key(r), r["impl"], r["n"]): r for r in rows}
    for r in rows:
        ours = BASELINE_OF.get(r["impl"])
        if ours is None or r["status"] != "ok":
            continue
        p = by.get((combo_key(r), ours, r["n"]))
        if p and p["status"] == "ok":
            r["vs"] = ours
            r["speedup"] = r["median_s"] / p["median_s"]
            if p.get("peak_bytes"):
                r["memory_ratio"] = r["peak_bytes"] / p["peak_bytes"]


def use_run_peak(rows: List[Dict[str, Any]]) -> None:
    """Each pixcon CPU row's efficiency against the highest FMA peak any row of the run measured on
    the same tier and threads (its own reading stays as ``cpu_peak_gflops_row``). The cores' peak
    does not change between rows; a reading taken while something else ran on the machine is
    only lower, and would flatter its row."""
    best: Dict[Tuple, float] = {}
    for r in rows:
        if r.get("status") == "ok" and r.get("cpu_peak_gflops"):
            key = (r.get("cpu_isa"), r.get("num_threads"))
            best[key] = max(best.get(key, 0.0), r.get("cpu_peak_gflops_row", r["cpu_peak_gflops"]))
    for r in rows:
        if r.get("status") != "ok" or not r.get("cpu_peak_gflops"):
            continue
        r.setdefault("cpu_peak_gflops_row", r["cpu_peak_gflops"])
        peak = best[(r.get("cpu_isa"), r.get("num_threads"))]
        r["cpu_peak_gflops"] = peak
        r["peak_fraction"] = r["gflops_kernel"] / peak
        if r.get("gflops_kernel_median") is not None:
            r["peak_fraction_median"] = r["gflops_kernel_median"] / peak


def _largest_ok(rows: Sequence[Dict[str, Any]], impl: str) -> Optional[int]:
    ns = [r["n"] for r in rows if r["impl"] == impl and r["status"] == "ok"]
    return max(ns) if ns else None


def _stopped_at(rows: Sequence[Dict[str, Any]], impl: str) -> Optional[Dict[str, Any]]:
    """The first N ``impl`` did not run, why, and whether that was predicted."""
    fails = sorted((r["n"], r["status"], bool(r.get("predicted"))) for r in rows
                   if r["impl"] == impl and r["status"] != "ok")
    return None if not fails else {"n": fails[0][0], "status": fails[0][1],
                                   "predicted": fails[0][2]}


def _headline_item(key: ComboKey, rows: Sequence[Dict[str, Any]], base: str,
                   ours: str) -> Dict[str, Any]:
    item: Dict[str, Any] = {"device": key[0], "dim": key[1], "variant": key[2], "dtype": key[3],
                            "baseline": base, "pixcon": ours,
                            "largest_n_baseline": _largest_ok(rows, base),
                            "largest_n_pixcon": _largest_ok(rows, ours),
                            "baseline_stopped_at": _stopped_at(rows, base)}
    shared = [r for r in rows if r["impl"] == base and r.get("speedup") is not None]
    if shared:
        top = max(shared, key=lambda r: r["n"])
        p = next(r for r in rows if r["impl"] == ours and r["n"] == top["n"])
        item.update(shared_n=top["n"], speedup=top["speedup"],
                    memory_ratio=top.get("memory_ratio"),
                    baseline_ms=top["median_s"] * 1e3, pixcon_ms=p["median_s"] * 1e3,
                    baseline_peak_mb=top["peak_bytes"] / _MB,
                    pixcon_peak_mb=p["peak_bytes"] / _MB)
    return item


def headline(rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per (combo, baseline): the largest N both ran, the speed-up and memory ratio there, and
    the largest N each ran."""
    out = []
    for key in sorted({combo_key(r) for r in rows}, key=combo_order):
        cr = [r for r in rows if combo_key(r) == key]
        if not any(r["status"] == "ok" for r in cr):
            continue
        out += [_headline_item(key, cr, base, ours) for base, ours in BASELINE_OF.items()
                if any(r["impl"] == base for r in cr)]
    return out


def _row_cells(r: Dict[str, Any]) -> List[str]:
    ok = r["status"] == "ok"
    return [r["impl"], str(r["n"]), fmt_ms(r.get("median_s")), fmt_ms(r.get("min_s")),
            fmt(r.get("runs"), "d") if ok else "-", fmt(r.get("gflops_nominal"), ".1f"),
            fmt(r.get("gflops_kernel"), ".1f"),
            fmt(None if r.get("peak_fraction") is None else 100 * r["peak_fraction"], ".0f"),
            fmt(None if r.get("peak_bytes") is None else r["peak_bytes"] / _MB, ".1f"),
            fmt(r.get("peak_bytes_per_n2"), ".1f"), fmt_ratio(r.get("speedup")),
            fmt_ratio(r.get("memory_ratio")), r.get("note") or ("" if ok else r["status"])]


def _stopped_text(h: Dict[str, Any]) -> str:
    stop = h.get("baseline_stopped_at")
    if not stop:
        return ""
    return f"{stop['status']}{' (predicted)' if stop.get('predicted') else ''} at {stop['n']}"


def print_suite_tables(rows: Sequence[Dict[str, Any]], heads: Sequence[Dict[str, Any]],
                       machine: Dict[str, Any], threads: int) -> None:
    """One table per (device, D, variant, dtype), then the headline table."""
    header = ["impl", "N", "median ms", "min ms", "runs", "GFLOP/s", "kernel GFLOP/s", "% of FMA peak",
              "peak MB", "B/N^2",
              "pixcon speed-up", "pixcon mem ratio", "note"]
    for key in sorted({combo_key(r) for r in rows}, key=combo_order):
        mine = sorted((r for r in rows if combo_key(r) == key),
                      key=lambda r: (r["n"], IMPLS.index(r["impl"])))
        title = (f"\n{combo_name(key)} ({bags_text(mine[0]['bags'])}), fwd+bwd, "
                 f"{machine.get('cpu_model')} x {threads} threads")
        print_table(title, header, [_row_cells(r) for r in mine], ("impl", "note"))
    body = [[f"D={h['dim']} {h['variant']} {h['dtype']}", h["baseline"], h["pixcon"],
             fmt(h.get("shared_n"), "d"), fmt_ratio(h.get("speedup")),
             fmt_ratio(h.get("memory_ratio")), fmt(h.get("largest_n_baseline"), "d"),
             fmt(h.get("largest_n_pixcon"), "d"), _stopped_text(h)] for h in heads]
    print_table("\nHeadline: pixcon against each baseline at the largest N both ran",
                ["config", "baseline", "vs", "largest shared N", "pixcon speed-up",
                 "pixcon mem ratio", "baseline max N", "pixcon max N", "baseline stopped"],
                body, ("config", "baseline", "vs", "baseline stopped"))


def print_checks(checks: Dict[str, Any]) -> None:
    """One line: each agreement check's maximum difference, or its failure."""
    print("\nAgreement checks (float64, per valid anchor): " + "; ".join(
        f"{k}: " + (f"max abs diff {v['max_abs_diff']:.1e}" if v.get("ok") else
                    f"FAILED {v.get('error')}")
        for k, v in checks.items() if isinstance(v, dict)))


def _grid_cells(r: Dict[str, Any]) -> List[str]:
    ok = r["status"] == "ok"
    tflops = nominal_flops(r["n"], r["dim"], r.get("bags", 1)) / r["median_s"] / 1e12 \
        if ok and r.get("median_s") else None
    return [str(r["dim"]), "float32 TF32" if r["dtype"] == "tf32" else r["dtype"], str(r["n"]),
            IMPL_LABELS.get(r["impl"], r["impl"]), fmt_ms(r["median_s"]) if ok else "-",
            fmt(tflops, ".1f"),
            "-" if not ok or r.get("peak_bytes") is None else f"{r['peak_bytes'] / _MB:.0f}",
            fmt_ratio(r.get("speedup")), fmt_ms(r.get("model_s")),
            "ok" if ok else f"{r['status']}: {r.get('note') or ''}".replace("|", "/")]


def gpu_grid_markdown(report: Dict[str, Any]) -> str:
    """The GPU grid's rows as a markdown table, with the machine and the notes above it."""
    m = report.get("machine") or {}
    rows = sorted(report["rows"], key=lambda r: (
        _dtype_order(r["dtype"]), r["dim"], r["n"],
        IMPLS.index(r["impl"]) if r["impl"] in IMPLS else len(IMPLS)))
    out = [f"GPU: {m.get('gpu_name', '?')} ({m.get('gpu_sms', '?')} SMs, "
           f"{(m.get('gpu_memory_bytes') or 0) / _GB:.0f} GiB), torch {m.get('torch_version', '?')}"
           f", CUDA {m.get('cuda_version', '?')}. Forward + backward of one bag of N rows, "
           "TFLOP/s counted as 6 N^2 D / median time; peak = max_memory_allocated growth over "
           "the inputs; model = the fused-kernel prediction (benchmarks/README.md) at "
           f"{int(MODEL_FRACTIONS['expected'] * 100)} % of the "
           f"{report.get('model_gpu', 'H100 SXM')}'s peak rates.", ""]
    notes = report.get("notes") or []
    out += [f"- {note}" for note in notes] + ([""] if notes else [])
    out += ["| D | dtype | N | implementation | median ms | TFLOP/s | peak MiB | pixcon speed-up "
            "| model ms | status / note |",
            "|---:|---|---:|---|---:|---:|---:|---:|---:|---|"]
    out += ["| " + " | ".join(_grid_cells(r)) + " |" for r in rows]
    return "\n".join(out) + "\n"
