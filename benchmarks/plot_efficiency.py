"""Plot the CPU kernels' fraction of the multiply-add peak against N, from loss-suite JSON files.

    python benchmarks/plot_efficiency.py AFTER.json [--before BEFORE.json] --out efficiency.png

One panel per D, one line per denominator; with ``--before``, that run's rows dashed. Every
row's flops are recounted with the current ``cases.kernel_flops`` on the labels the suite drew
(same seed and classes), so runs taken under an older count plot on the same scale; each row's
time is its fastest timed run (the median where a file lacks it) and its peak the one in the row
(the highest of its run for files the suite writes now). The acceptance lines of the efficiency
work (80 %, and 70 % at N = 4 225) are drawn for reference.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Dict, List, Tuple

from harness.cases import kernel_flops, make_inputs


def efficiency_points(path: str) -> Dict[Tuple[int, str], List[Tuple[int, float]]]:
    """{(D, denominator): [(N, % of peak), ...]} of a suite run's pixcon CPU rows."""
    with open(path) as f:
        run = json.load(f)
    classes, seed = int(run["config"]["classes"]), int(run["config"]["seed"])
    points: Dict[Tuple[int, str], List[Tuple[int, float]]] = {}
    for row in run["rows"]:
        if row.get("status") != "ok" or row.get("cpu_peak_gflops") is None or row["bags"] != 1:
            continue
        n, d = int(row["n"]), int(row["dim"])
        _, labels = make_inputs(n, d, "float32", seed, classes=classes)
        flops = kernel_flops(row["impl"], n, d, 1, labels.tolist())
        seconds = row.get("min_s", row["median_s"])  # the fastest run, as the suite's table
        percent = 100.0 * flops / seconds / 1e9 / row["cpu_peak_gflops"]
        points.setdefault((d, row["impl"].replace("pixcon_", "")), []).append((n, percent))
    return {key: sorted(value) for key, value in points.items()}


def plot(after: Dict, before: Dict, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    dims = sorted({d for d, _ in after})
    fig, axes = plt.subplots(1, len(dims), figsize=(5.5 * len(dims), 4.2), squeeze=False)
    colors = {"all": "tab:blue", "pair": "tab:orange"}
    for ax, d in zip(axes[0], dims):
        for den in ("all", "pair"):
            for run, style, tag in ((before, "--", "before"), (after, "-", "now")):
                pts = run.get((d, den))
                if pts:
                    ax.plot([n for n, _ in pts], [p for _, p in pts], style, marker="o",
                            color=colors[den], label=f'"{den}", {tag}')
        ax.axhline(80, color="gray", lw=0.8, ls=":", label="80 % (target)")
        ax.axhline(70, color="gray", lw=0.8, ls="-.", label="70 % (target at N = 4 225)")
        ax.set_xscale("log")
        sizes = sorted({n for run in (before, after) for (dd, _), pts in run.items() if dd == d
                        for n, _ in pts})
        ax.set_xticks(sizes, [f"{n:,}".replace(",", " ") for n in sizes])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_ylim(0, 100)
        ax.set_xlabel("N (one bag)")
        ax.set_ylabel("% of the measured FMA peak")
        ax.set_title(f"D = {d}, float32, forward + backward")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower center", ncol=3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("after", help="loss-suite JSON of the run to plot")
    parser.add_argument("--before", help="an earlier run, drawn dashed")
    parser.add_argument("--out", required=True, help="PNG to write")
    args = parser.parse_args(argv)
    after = efficiency_points(args.after)
    if not after:
        print(f"{args.after}: no pixcon CPU rows with a measured peak", file=sys.stderr)
        return 1
    before = efficiency_points(args.before) if args.before else {}
    plot(after, before, args.out)
    for (d, den), pts in sorted(after.items()):
        print(f"D = {d}, {den}: " + ", ".join(f"N = {n}: {p:.0f} %" for n, p in pts))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
