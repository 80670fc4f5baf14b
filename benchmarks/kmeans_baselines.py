"""Spherical k-means for auxiliary labels: ``pixcon.auxiliary_labels`` against faiss-cpu's
``Kmeans`` and scikit-learn's ``KMeans`` on the same unit vectors.

    python benchmarks/kmeans_baselines.py          # N = 266 256 (16 x 129^2), D 128/256, K 16/64/256
    python benchmarks/kmeans_baselines.py --quick  # N = 17 424 (16 x 33^2), D 128, K 16, 64

For each (D, K) and method, in a process of its own (``harness/runner.py``), on the same
pixel-like unit features (``harness/kmeans_cases.py`` says how they are drawn and how each
method is run and timed; ``harness/kmeans_measure.py`` what the process does):

* time per Lloyd iteration (assign + update), with the initialisation timed apart;
* the final mean cosine of each row to the normalised centroid of its label, computed here the
  same way for every method;
* peak memory: the growth of the process's peak RSS over its RSS once the features exist
  (``harness/memory.py``), so the features' own size (stated in the report) is not counted.

Every method uses the same number of threads (``--threads``, default: the machine's cores).
Methods whose package is missing (faiss) are recorded as not run. Prints a table, writes
``kmeans_baselines_cpu.json`` (machine, load averages, configuration, thread pools, every row),
``kmeans_baselines_cpu.md`` (the tables) and ``kmeans_baselines_cpu.png`` (time per iteration
against K, one panel per D) to ``--out-dir`` (``benchmarks/measured/`` for the full grid,
``benchmarks/results/`` for ``--quick``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

# torch is imported only after main has set OMP_WAIT_POLICY, which OpenMP reads when it loads
from harness import presets as ps
from harness.formats import fmt, fmt_ratio
from harness.kmeans_cases import (DIRECTIONS, DIRECTIONS_PER_IMAGE, FAISS_SAMPLE_PER_CENTROID,
                                  INITS, METHOD_LABELS, METHODS, NOISE, PACKAGE_OF)
from harness.machine import loadavg, machine_info
from harness.report import print_table, progress_bar, write_json
from harness.runner import run_forked, run_subprocess, set_omp_wait_policy

_MB = 1024.0 * 1024.0
STEM = "kmeans_baselines_cpu"
#: the methods' names in the markdown tables' headers
TABLE_NAMES = {"pixcon": "pixcon", "faiss": "faiss", "faiss_sampled": "faiss 256K",
               "sklearn": "sklearn"}
TIMING = ("time per Lloyd iteration (assign + update): pixcon = (time of iterations=20 - time "
          "of iterations=0) / 20; faiss = mean increment of its iteration_stats times after "
          "the first; scikit-learn = (fit with max_iter=20 - fit with max_iter=1) / (n_iter_ - "
          "1), both fits from the same precomputed init. init: pixcon = the iterations=0 call "
          "(unit copy, init, one assignment); faiss = train time less its iterations; "
          "scikit-learn = kmeans_plusplus (or the random rows). time.perf_counter; each time the "
          "fastest of --repeats runs.")
QUALITY = "mean over rows of cos(row, normalised centroid of its label), float64"
PEAK = ("VmHWM growth over the RSS once the features exist, after malloc_trim and a peak "
        "reset; a fresh process per (method, D, K); the features are not counted")


def _parse_ints(text: str) -> List[int]:
    try:
        vals = [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def _parse_methods(text: str) -> List[str]:
    vals = [s for s in text.replace(" ", "").split(",") if s]
    if not vals or any(v not in METHODS for v in vals):
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {','.join(METHODS)}")
    return vals


def build_parser() -> argparse.ArgumentParser:
    full, quick = ps.KMEANS_PRESETS["full"], ps.KMEANS_PRESETS["quick"]
    p = argparse.ArgumentParser(
        prog="python benchmarks/kmeans_baselines.py",
        description=(
            "Time per Lloyd iteration, init time, final mean cosine and peak memory of "
            "pixcon.auxiliary_labels (spherical k-means), faiss.Kmeans(spherical=True) on all "
            "rows and on its default sample, and sklearn.cluster.KMeans (Euclidean, on the same "
            "unit rows), each (method, D, K) in its own process."),
        epilog="Example: python benchmarks/kmeans_baselines.py --quick --out-dir /tmp/km")
    p.add_argument("--quick", action="store_true",
                   help=f"{quick.images} images of {quick.side}x{quick.side}, D "
                   f"{','.join(map(str, quick.dims))}, K {','.join(map(str, quick.ks))} (seconds)")
    p.add_argument("--images", type=int, default=None,
                   help=f"feature maps (default: {full.images}; --quick: {quick.images})")
    p.add_argument("--side", type=int, default=None,
                   help=f"feature map side (default: {full.side}; --quick: {quick.side})")
    p.add_argument("--dims", type=_parse_ints, default=None,
                   help=f"feature dimensions D (default: {','.join(map(str, full.dims))})")
    p.add_argument("--ks", type=_parse_ints, default=None,
                   help=f"cluster counts K (default: {','.join(map(str, full.ks))})")
    p.add_argument("--iterations", type=int, default=ps.KMEANS_ITERATIONS,
                   help="Lloyd iterations, >= 2 (default: %(default)s)")
    p.add_argument("--methods", type=_parse_methods, default=list(METHODS),
                   help="comma-separated subset of %(default)s")
    p.add_argument("--repeats", type=int, default=ps.KMEANS_REPEATS,
                   help="timed runs of each method; every time reported is the fastest run "
                   "(default: %(default)s)")
    p.add_argument("--init", choices=INITS, default="k-means++",
                   help="initialisation of every method (default: %(default)s)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads of every method (default: the machine's %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="features and clustering seed (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=ps.KMEANS_TIMEOUT,
                   help="seconds per (method, D, K) (default: %(default)g)")
    p.add_argument("--omp-wait-policy", choices=("passive", "active", "inherit"),
                   default="passive",
                   help="OMP_WAIT_POLICY of every OpenMP runtime (torch's, faiss's, "
                   "scikit-learn's); passive lets idle threads sleep at once, which a busy "
                   "shared machine needs (default: %(default)s)")
    p.add_argument("--isolation", choices=("auto", "fork", "subprocess"), default="auto",
                   help="fresh process per row: a fork of this one (Linux) or a new "
                   "interpreter (default: auto)")
    p.add_argument("--out-dir", default=None, metavar="DIR",
                   help=f"JSON, markdown and PNG go here (default: {ps.MEASURED_DIR}; --quick: "
                   f"{ps.RESULTS_DIR})")
    p.add_argument("--resume", action="store_true",
                   help="reuse the ok rows of the JSON already in --out-dir (written after "
                   "every row, so a stopped run keeps them) when they were measured with the "
                   "same images, side, iterations, init, seed, threads and repeats")
    p.add_argument("--no-plot", action="store_true", help="no PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _available(methods: Sequence[str]) -> Dict[str, Optional[str]]:
    """For each method, None when its package imports, else why not. Importing them here, once,
    spares each forked process the import."""
    why: Dict[str, Optional[str]] = {}
    for method in methods:
        try:
            importlib.import_module(PACKAGE_OF[method])
            why[method] = None
        except ImportError as e:
            why[method] = f"not run: {PACKAGE_OF[method]} is not installed ({e})"
    return why


def _versions() -> Dict[str, Optional[str]]:
    out: Dict[str, Optional[str]] = {}
    for name in ("faiss", "sklearn", "numpy", "threadpoolctl"):
        module = sys.modules.get(name)
        out[f"{name}_version"] = getattr(module, "__version__", None) if module else None
    return out


#: what a row's measurement depends on besides (D, K, method): a row of an earlier JSON is
#: reused by --resume only when these match
_SAME_RUN = ("images", "side", "iterations", "init", "seed", "threads", "repeats")


def reusable_rows(path: str, cfg: Dict[str, Any]) -> Dict[Tuple[int, int, str], Dict[str, Any]]:
    """The ok rows of the report at ``path`` (complete or not) measured with ``cfg``'s
    settings, by (D, K, method); none when the file is missing or its settings differ."""
    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, json.JSONDecodeError):
        return {}
    if any(old.get("config", {}).get(key) != cfg[key] for key in _SAME_RUN):
        return {}
    return {(r["dim"], r["k"], r["method"]): dict(r, reused_from=old.get("timestamp"))
            for r in old.get("rows", []) if r.get("status") == "ok"}


def run_grid(cfg: Dict[str, Any], missing: Dict[str, Optional[str]], progress: bool,
             done: Dict[Tuple[int, int, str], Dict[str, Any]],
             save: Callable[[List[Dict[str, Any]]], None]) -> List[Dict[str, Any]]:
    """Every (D, K, method) row, each measured in its own process (or the reason it was not;
    or taken from ``done``); ``save(rows)`` after each, so that a stopped run keeps them."""
    configs = [(d, k, m) for d in cfg["dims"] for k in cfg["ks"] for m in cfg["methods"]]
    bar = progress_bar(len(configs), "k-means", "row", progress)
    fork = cfg["isolation"] == "fork"
    rows: List[Dict[str, Any]] = []
    for dim, k, method in configs:
        if bar is not None:
            bar.set_postfix_str(f"D={dim} K={k} {method}")
        row: Dict[str, Any] = {"dim": dim, "k": k, "method": method, "status": "not_run",
                               "note": missing[method]}
        if (dim, k, method) in done:
            row = done[(dim, k, method)]
        elif missing[method] is None:
            spec = {"kind": "kmeans", "method": method, "dim": dim, "k": k,
                    "images": cfg["images"], "side": cfg["side"],
                    "iterations": cfg["iterations"], "init": cfg["init"], "seed": cfg["seed"],
                    "threads": cfg["threads"], "repeats": cfg["repeats"]}
            res = (run_forked if fork else run_subprocess)(spec, cfg["timeout_s"])
            row.update(res, status=res.get("status", "error"), loadavg=loadavg())
        rows.append(row)
        save(rows)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return rows


def _ok(r: Optional[Dict[str, Any]]) -> bool:
    return r is not None and r["status"] == "ok"


def _ms(r: Optional[Dict[str, Any]]) -> str:
    """Time per iteration in ms, or why there is none."""
    if r is not None and r["status"] != "ok":
        return r["status"]
    return fmt(r["per_iter_s"] * 1e3 if r and r.get("per_iter_s") else None, ".1f")


def _cos(r: Optional[Dict[str, Any]]) -> str:
    return fmt(r["mean_cos"] if _ok(r) else None, ".4f")


def _peak(r: Optional[Dict[str, Any]]) -> str:
    return fmt(r["peak_bytes"] / _MB if _ok(r) else None, ".0f")


def _init(r: Optional[Dict[str, Any]]) -> str:
    return fmt(r.get("init_s") if _ok(r) else None, ".2f")


def _iters(r: Optional[Dict[str, Any]]) -> str:
    return fmt(r["n_iter"] if _ok(r) else None, "d")


def _speedup(mine: Optional[Dict[str, Any]], theirs: Optional[Dict[str, Any]]) -> Optional[float]:
    """``theirs``'s time per iteration / ``mine``'s."""
    if not _ok(mine) or not _ok(theirs) or not mine.get("per_iter_s") \
            or not theirs.get("per_iter_s"):
        return None
    return theirs["per_iter_s"] / mine["per_iter_s"]


def print_rows(rows: Sequence[Dict[str, Any]], title: str) -> None:
    """One line per (D, K, method) on stdout."""
    by = {(r["dim"], r["k"], r["method"]): r for r in rows}
    body = [[str(r["dim"]), str(r["k"]), r["method"], _ms(r), _init(r), _iters(r), _cos(r),
             _peak(r), fmt_ratio(_speedup(by.get((r["dim"], r["k"], "pixcon")), r))
             if r["method"] != "pixcon" else "", r.get("note") or ""] for r in rows]
    print_table(title, ["D", "K", "method", "ms/iter", "init s", "iterations", "mean cos",
                        "peak MB", "pixcon speed-up", "note"], body, ("method", "note"))


def tables(rows: Sequence[Dict[str, Any]], methods: Sequence[str]) -> List[Dict[str, Any]]:
    """The markdown's two tables, as ``{"title", "header", "body"}``: per (D, K), each method's
    time per iteration, mean cosine and peak; then its init time, the iterations it ran and
    pixcon's speed-up per iteration over each other method."""
    by = {(r["dim"], r["k"], r["method"]): r for r in rows}
    keys = sorted({(r["dim"], r["k"]) for r in rows})
    name = {m: TABLE_NAMES[m] for m in methods}
    main = {"title": "Time per Lloyd iteration (ms), final mean cosine, peak memory (MB)",
            "header": ["D", "K"] + [f"{label} {name[m]}" for label in ("ms/iter", "cos", "MB")
                                    for m in methods],
            "body": [[str(d), str(k)] + [cell(by.get((d, k, m))) for cell in (_ms, _cos, _peak)
                                         for m in methods] for d, k in keys]}
    others = [m for m in methods if m != "pixcon"] if "pixcon" in methods else []
    extra = {"title": "Initialisation (s), iterations run, pixcon's speed-up per iteration",
             "header": ["D", "K"] + [f"{label} {name[m]}" for label in ("init s", "iters")
                                     for m in methods]
             + [f"pixcon vs {name[m]}" for m in others],
             "body": [[str(d), str(k)] + [cell(by.get((d, k, m))) for cell in (_init, _iters)
                                          for m in methods]
                      + [fmt_ratio(_speedup(by.get((d, k, "pixcon")), by.get((d, k, m))))
                         for m in others] for d, k in keys]}
    return [main, extra]


def markdown(report: Dict[str, Any]) -> str:
    """The report's tables in markdown, under what was measured, on what, and how."""
    m, cfg = report["machine"], report["config"]
    out = ["# k-means: pixcon against faiss-cpu and scikit-learn", "",
           f"`{report['command']}`", "",
           f"N = {cfg['n']} rows ({cfg['images']} images of {cfg['side']} x {cfg['side']}), "
           f"{cfg['iterations']} Lloyd iterations, init {cfg['init']}, fastest of "
           f"{cfg['repeats']} run(s), seed "
           f"{cfg['seed']}; features: {cfg['features']}; their size, not counted in the peaks: "
           + ", ".join(f"{mb:.0f} MB at D = {d}" for d, mb in cfg["features_mb_by_dim"].items())
           + ".",
           "",
           f"Machine: {m.get('cpu_model')}, {m.get('logical_cores')} logical cores, "
           f"{cfg['threads']} threads for every method; torch {m.get('torch_version')}, pixcon "
           f"{m.get('pixcon_version')} ({m.get('cpu_isa')}), faiss {cfg['faiss_version']}, "
           f"scikit-learn {cfg['sklearn_version']}; OMP_WAIT_POLICY {cfg['omp_wait_policy']}; "
           f"load average {m.get('loadavg_start')} at the start, {m.get('loadavg_end')} at the "
           "end.", "",
           f"- time: {TIMING}", f"- mean cos: {QUALITY}", f"- peak: {PEAK}", ""]
    for t in report["tables"]:
        out += [f"## {t['title']}", "", "| " + " | ".join(t["header"]) + " |",
                "|" + "---:|" * len(t["header"])]
        out += ["| " + " | ".join(cells) + " |" for cells in t["body"]] + [""]
    notes = [f"- D={r['dim']} K={r['k']} {r['method']}: {r['status']}: {r.get('note')}"
             for r in report["rows"] if r["status"] != "ok"]
    return "\n".join(out + notes) + "\n"


def config(args, parser: argparse.ArgumentParser) -> Dict[str, Any]:
    """The run's configuration: the preset, with what the command line changes."""
    preset = ps.KMEANS_PRESETS["quick" if args.quick else "full"]
    cfg = {"preset": preset.name, "images": args.images or preset.images,
           "side": args.side or preset.side, "dims": args.dims or list(preset.dims),
           "ks": args.ks or list(preset.ks), "iterations": args.iterations,
           "repeats": args.repeats,
           "methods": args.methods, "init": args.init, "threads": args.threads,
           "seed": args.seed, "timeout_s": args.timeout,
           "out_dir": preset.out_dir if args.out_dir is None else args.out_dir}
    if cfg["iterations"] < 2 or min(cfg["threads"], cfg["repeats"], cfg["images"],
                                     cfg["side"]) < 1:
        parser.error("--iterations must be >= 2; --threads, --repeats, --images, --side >= 1")
    cfg["n"] = cfg["images"] * cfg["side"] ** 2
    if max(cfg["ks"]) > cfg["n"]:
        parser.error(f"K up to {max(cfg['ks'])} needs at least as many rows (N = {cfg['n']})")
    cfg["features"] = (f"{DIRECTIONS} random unit directions, {DIRECTIONS_PER_IMAGE} per image "
                       f"in blobs, plus Gaussian noise of norm ~{NOISE:g}, L2-normalised float32")
    cfg["features_mb_by_dim"] = {d: cfg["n"] * d * 4 / _MB for d in cfg["dims"]}
    cfg["faiss_sample_rows"] = f"min(N, {FAISS_SAMPLE_PER_CENTROID} K) (faiss_sampled)"
    return cfg


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the grid; returns 0 when every row that ran is ok, else 1 (2 on bad usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = config(args, parser)
    cfg["omp_wait_policy"] = set_omp_wait_policy(args.omp_wait_policy)
    cfg["isolation"] = ("fork" if args.isolation == "fork" or (args.isolation == "auto"
                        and sys.platform == "linux") else "subprocess")
    import torch  # noqa: F401 - loaded once here (the forks inherit it), after the policy

    missing = _available(cfg["methods"])
    cfg.update(_versions(), timing=TIMING, quality=QUALITY, peak_memory=PEAK)
    machine = machine_info(["cpu"])
    command = " ".join(["python", "benchmarks/kmeans_baselines.py"]
                       + list(sys.argv[1:] if argv is None else argv))
    json_path = os.path.join(cfg["out_dir"], f"{STEM}.json") if cfg["out_dir"] else ""
    t0 = time.perf_counter()

    def report_of(rows: List[Dict[str, Any]], complete: bool) -> Dict[str, Any]:
        return {"benchmark": "kmeans_baselines", "command": command, "complete": complete,
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "wall_s": round(time.perf_counter() - t0, 1), "machine": machine,
                "config": cfg, "rows": rows, "tables": tables(rows, cfg["methods"])}

    def save(rows: List[Dict[str, Any]]) -> None:
        if json_path:
            write_json(json_path, report_of(rows, False))

    done = reusable_rows(json_path, cfg) if args.resume and json_path else {}
    rows = run_grid(cfg, missing, not args.no_progress, done, save)
    machine["loadavg_end"] = loadavg()
    report = report_of(rows, True)
    title = (f"k-means, N={cfg['n']}, {cfg['iterations']} iterations, {cfg['init']} | "
             f"{machine.get('cpu_model')}, {cfg['threads']} threads")
    print()
    print_rows(rows, title)
    if json_path:
        write_json(json_path, report)
        md_path = os.path.join(cfg["out_dir"], f"{STEM}.md")
        with open(md_path, "w") as f:
            f.write(markdown(report))
        print(f"\nJSON written to {json_path}\nmarkdown written to {md_path}")
        if not args.no_plot:
            from harness.plots import plot_kmeans

            png_path = os.path.join(cfg["out_dir"], f"{STEM}.png")
            plot_kmeans(rows, cfg["methods"], METHOD_LABELS, png_path,
                        f"time per Lloyd iteration, {title}")
            print(f"plot written to {png_path}")
    print(f"wall time: {report['wall_s']:.0f} s")
    return 0 if all(r["status"] in ("ok", "not_run") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
