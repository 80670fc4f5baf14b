"""The benchmarks' figures (matplotlib, written as PNGs): time and peak memory against N,
log-log, one line per implementation; the sampling benchmark's bar chart; the k-means
benchmark's time per iteration against K."""

from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Optional, Sequence

from .cases import IMPL_LABELS, IMPLS
from .report import ComboKey, bags_text, combo_key, combo_name
from .presets import GPU_DTYPES

_MB = 1024.0 * 1024.0
_GB = 1024.0 ** 3
IMPL_STYLE = {  # colour, marker, line style
    "pixcon_all": ("tab:blue", "o", "-"),
    "pixcon_pair": ("tab:cyan", "s", "-"),
    "reference": ("tab:red", "^", "--"),
    "supcon": ("tab:orange", "v", "--"),
    "pair_baseline": ("tab:purple", "D", "--"),
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _draw_impl(ax, rows: Sequence[Dict[str, Any]], impl: str, what: str) -> None:
    """One implementation's line, and an x along the top edge at the first N it could not run
    (out of memory or time)."""
    color, marker, ls = IMPL_STYLE[impl]
    pts = sorted((r["n"], r["median_s"], r["peak_bytes"]) for r in rows
                 if r["impl"] == impl and r["status"] == "ok")
    if pts:
        ys = [p[1] * 1e3 for p in pts] if what == "time" else [max(p[2] / _MB, 0.1) for p in pts]
        ax.plot([p[0] for p in pts], ys, marker=marker, ls=ls, color=color,
                label=IMPL_LABELS[impl])
    fails = sorted(r["n"] for r in rows if r["impl"] == impl
                   and r["status"] in ("oom", "timeout") and not r.get("skipped_after"))
    if fails:
        ax.plot([fails[0]], [0.96 - 0.045 * IMPLS.index(impl)], marker="x", ls="none",
                color=color, ms=8, mew=2, transform=ax.get_xaxis_transform(), clip_on=False)


def _draw_panel(ax, rows: Sequence[Dict[str, Any]], key: ComboKey, what: str,
                limit_bytes: Optional[float]) -> None:
    cr = [r for r in rows if combo_key(r) == key]
    for impl in IMPLS:
        _draw_impl(ax, cr, impl, what)
    if what == "memory" and limit_bytes:
        ax.axhline(limit_bytes / _MB, color="gray", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_xlabel("N (rows)")
    ax.set_ylabel("median fwd+bwd time (ms)" if what == "time" else "peak memory (MB)")
    ax.set_title(f"D={key[1]}, {key[2]} ({bags_text(cr[0]['bags'])}), {key[3]}", fontsize=10)


def _grid_figure(rows, combos: List[ComboKey], what: str, limit_bytes: Optional[float],
                 title: str, path: str) -> None:
    """One panel per combination: a row of panels per variant."""
    plt = _pyplot()
    n_var = len({k[2] for k in combos})
    per_row = max(1, math.ceil(len(combos) / n_var))
    fig, axes = plt.subplots(n_var, per_row, figsize=(4.3 * per_row, 3.9 * n_var),
                             squeeze=False, sharex=True)
    for i, key in enumerate(combos):
        _draw_panel(axes[i // per_row][i % per_row], rows, key, what, limit_bytes)
    for j in range(len(combos), n_var * per_row):
        axes[j // per_row][j % per_row].set_visible(False)
    seen: Dict[str, Any] = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, h)
    fig.legend(list(seen.values()), list(seen.keys()), loc="lower center", ncol=len(seen),
               fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _combo_figure(rows, key: ComboKey, limit_bytes: Optional[float], subtitle: str,
                  path: str) -> None:
    """Time and memory of one combination side by side."""
    plt = _pyplot()
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.5))
    _draw_panel(ax_t, rows, key, "time", limit_bytes)
    _draw_panel(ax_m, rows, key, "memory", limit_bytes)
    ax_t.legend(fontsize=8)
    fig.suptitle(f"pixcon loss fwd+bwd, {combo_name(key)} | {subtitle}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_suite(rows: Sequence[Dict[str, Any]], out_dir: str, device: str,
               limit_bytes: Optional[float], subtitle: str, stem: str = "loss_suite") -> List[str]:
    """``<stem>_<device>_time.png`` and ``_memory.png`` with one panel per (D, variant, dtype),
    and one two-panel figure per (D, variant, dtype). Returns the paths written."""
    rows = [r for r in rows if r["device"] == device]
    combos = sorted({combo_key(r) for r in rows if r["status"] == "ok"},
                    key=lambda k: (k[2] != "single", k[1],
                                   GPU_DTYPES.index(k[3]) if k[3] in GPU_DTYPES else 9))
    if not combos:
        return []
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for what in ("time", "memory"):
        extra = "x along the top: the first N it could not run (out of memory or time)"
        if what == "memory" and limit_bytes:
            extra += f"; dotted: the {limit_bytes / _GB:.0f} GiB cap"
        title = (("Forward + backward time" if what == "time" else "Peak memory")
                 + f" vs N, log-log ({device}) | {subtitle}\n{extra}")
        paths.append(os.path.join(out_dir, f"{stem}_{device}_{what}.png"))
        _grid_figure(rows, combos, what, limit_bytes, title, paths[-1])
    for key in combos:
        paths.append(os.path.join(out_dir, f"{stem}_{device}_D{key[1]}_{key[2]}_{key[3]}.png"))
        _combo_figure(rows, key, limit_bytes, subtitle, paths[-1])
    return paths


def plot_sampling(rows: Sequence[Dict[str, Any]], strategies: Sequence[str],
                  impls: Sequence[str], path: str, title: str) -> None:
    """Bars of the median time per call (log), per strategy, one bar per (device, impl)."""
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter

    strategies = [s for s in strategies if any(r["strategy"] == s for r in rows)]
    series = sorted({(r["device"], r["impl"]) for r in rows},
                    key=lambda k: (k[0], impls.index(k[1])))
    multi_device = len({d for d, _ in series}) > 1
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for k, (device, impl) in enumerate(series):
        found = [(i, r) for i, s in enumerate(strategies) for r in rows
                 if (r["device"], r["impl"], r["strategy"]) == (device, impl, s)
                 and r.get("median_s") is not None]
        bars = ax.bar([i - 0.4 + width * (k + 0.5) for i, _ in found],
                      [r["median_s"] * 1e3 for _, r in found], width,
                      label=impl if not multi_device else f"{impl} ({device})")
        ax.bar_label(bars, labels=[f"{r['median_s'] * 1e3:.3g}" for _, r in found], fontsize=8,
                     padding=2)
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


KMEANS_STYLE = {  # colour, marker, line style
    "pixcon": ("tab:blue", "o", "-"),
    "faiss": ("tab:green", "s", "--"),
    "faiss_sampled": ("tab:olive", "D", ":"),
    "sklearn": ("tab:orange", "^", "--"),
}


def plot_kmeans(rows: Sequence[Dict[str, Any]], methods: Sequence[str],
                labels: Dict[str, str], path: str, title: str) -> None:
    """Time per Lloyd iteration against K, log-log, one panel per D, one line per method (a
    time that noise made non-positive is left out)."""
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _pos: f"{v:g}")

    dims = sorted({r["dim"] for r in rows})
    fig, axes = plt.subplots(1, len(dims), figsize=(5.2 * len(dims), 4.4), squeeze=False,
                             sharey=True)
    for ax, dim in zip(axes[0], dims):
        for method in methods:
            pts = sorted((r["k"], r["per_iter_s"] * 1e3) for r in rows
                         if r["dim"] == dim and r["method"] == method and r["status"] == "ok"
                         and (r.get("per_iter_s") or 0) > 0)
            if pts:
                color, marker, ls = KMEANS_STYLE[method]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, ls=ls,
                        color=color, label=labels[method])
        ks = sorted({r["k"] for r in rows})
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(ks)
        ax.xaxis.set_major_formatter(plain)
        ax.yaxis.set_major_formatter(plain)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xlabel("K (clusters)")
        ax.set_title(f"D = {dim}", fontsize=10)
    axes[0][0].set_ylabel("time per Lloyd iteration (ms)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
