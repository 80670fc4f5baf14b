"""The full loss benchmark suite: pixcon against three O(N^2) baselines, plus pixel sampling.

    python benchmarks/loss_suite.py            # the full suite (about 40 minutes on 2 cores)
    python benchmarks/loss_suite.py --quick    # smoke run: N = 256, 1024, D = 128 (a minute)

Forward + backward throughput and peak memory of the contrastive loss for N from 1024 up to the
largest N each implementation can run, over D in {128, 256}, a single-image and a batch
variant, float32 and bfloat16. Implementations (``IMPLS``):

* ``pixcon_all`` / ``pixcon_pair``: ``pixcon.contrastive_loss`` with ``denominator="all"``
  (SupCon L_out) / ``"pair"`` (the per-pair formula); fused kernels, O(N*D) memory;
* ``reference``: ``pixcon.reference.contrastive_loss`` (``"all"``), pure PyTorch, builds the
  N x N matrix (computes in float32 for bfloat16 input);
* ``supcon``: pytorch-metric-learning's ``SupConLoss`` (``"all"``; it L2-normalises through
  its ``CosineSimilarity`` distance, a no-op on the unit-norm inputs every implementation gets);
  ignored rows are dropped before the call, since it has no ``ignore_index``;
* ``pair_baseline``: ``benchmarks/pair_loss_baseline.py``, the per-pair formula on the full
  N x N matrix the way ContrastiveSeg and Pissas et al. compute it.

Speed-ups compare like with like: ``reference`` and ``supcon`` against ``pixcon_all``,
``pair_baseline`` against ``pixcon_pair`` (``BASELINE_OF``).

Variants (``N`` rows in total either way, random labels over 19 classes, ~5 % ignored):

* ``single``: one bag of N rows, e.g. every pixel of one image (N = 16641 is one 129 x 129
  feature map) or the sampled pixels of a batch contrasted together;
* ``batch``: B = 8 images of N / 8 rows each, every image its own bag (the official code's
  per-image loss): pixcon and the reference take ``bag_offsets``; ``supcon`` and
  ``pair_baseline`` run one call per image in a Python loop, the way per-image losses are
  written. Cost ~N^2 / 8.

Measurement: each (device, D, variant, dtype, implementation, N) runs in a fresh process, so
peak memory is per configuration and a crash costs one row. On Linux CPU the driver imports
torch, pixcon and the baselines once and forks a child per configuration (no import cost per
row; the driver runs no torch op before forking, so OpenMP pools start fresh in every child);
``--isolation subprocess`` (and any CUDA row) starts ``python benchmarks/loss_suite.py
--_worker SPEC`` instead, like ``pixcon.bench``. In the child:

* inputs: unit-norm random embeddings ``[N, D]`` in the dtype (a ``requires_grad`` leaf) and
  labels, then a tiny warm-up step (N = 64) to start thread pools;
* time: ``time.perf_counter()`` around ``loss, valid = fn(z, y); loss.sum().backward()`` (CUDA
  events on GPU); the median of up to ``--repeats`` timed runs after ``--warmup`` untimed ones,
  with fewer runs when a step is long: no warm-up when the step is predicted to take more than
  ``--long-step`` seconds, and no further repeat once the timed runs used ``--time-budget``;
* peak memory (CPU): ``malloc_trim(0)``, reset of the peak RSS (``/proc/self/clear_refs``),
  then the growth of ``VmHWM`` over the RSS at that point: everything the step allocates at its
  peak, the gradient included, but not the inputs. CUDA: ``max_memory_allocated`` growth.
  ``ru_maxrss`` growth where ``clear_refs`` is not available;
* a memory cap: the child's address space is limited to its size at start plus
  ``--memory-limit-gb`` (default 16 GiB, at most 85 % of ``MemAvailable``), so that an
  allocation above it fails with an out-of-memory error instead of thrashing the machine;
  ``--timeout`` seconds per configuration (the child is killed after it).

An implementation that fails at some N ("oom", "timeout") is not run at larger N (same D,
variant, dtype); nor is one whose peak memory or step time, extrapolated quadratically from its
last successful N, is above the cap or the timeout ("oom"/"timeout", marked predicted). That
gives the largest N each can run.

Order and budget: the N grid is ``--sizes`` (default 1024, 4225, 16641) plus ``--large-sizes``
(default 66049) for the ``--large-combos`` (default: the four float32 combinations and D = 256
single bfloat16). Combinations run one after the other
(float32 before bfloat16; batch, then single; D = 256 before 128), each over all its N, and
no configuration starts after ``--max-minutes`` (default 40; the rest are recorded as
``not_run``), so on a slow machine the first combinations keep their largest N. A step time
predicted from the previous N is multiplied by ``PREDICT_TIME_MARGIN`` (1.25, baselines only:
their time grows faster than N^2) before the comparison with ``--timeout`` (default 180 s).

Output (``--out-dir``, default ``benchmarks/measured/``): a table on stdout per (D, variant,
dtype) and a headline table (speed-up and memory ratio of pixcon against each baseline at the
largest N both ran, and the largest N of each); ``loss_suite_<device>.json`` (machine, load
averages, configuration, agreement checks, every row); PNGs: ``loss_suite_<device>_time.png``
and ``loss_suite_<device>_memory.png`` (one log-log panel per (D, variant, dtype), one line per
implementation) and one two-panel figure per (D, variant, dtype). Then it runs
``benchmarks/sampling_throughput.py`` (pixel sampling against the Python-loop samplers) with the
same thread count and output directory (``--no-sampling`` to skip).

``--gpu-grid`` is the GPU's own preset (section "the GPU grid" below; benchmarks/README.md):
one bag of N = 4225 to 262144 rows, D = 128 and 256, float32 strict, float32 with TF32 and
bfloat16, pixcon against the reference and SupConLoss on CUDA, one worker process per
implementation, rows planned against the GPU's memory and run within ``--budget-s``; it writes
``loss_suite_cuda_grid.json`` and ``.md``. ``--gpu-model`` prints the fused kernels' predicted
times (the performance model of benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib.util
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

# pixcon._benchtools, like torch, is imported inside the functions that use it: importing pixcon
# imports torch, and main must set OMP_WAIT_POLICY before torch is loaded.

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

IMPLS = ("pixcon_all", "pixcon_pair", "reference", "supcon", "pair_baseline")
#: the pixcon implementation each baseline is compared with (same loss)
BASELINE_OF = {"reference": "pixcon_all", "supcon": "pixcon_all", "pair_baseline": "pixcon_pair"}
IMPL_LABELS = {
    "pixcon_all": 'pixcon "all"',
    "pixcon_pair": 'pixcon "pair"',
    "reference": "pixcon.reference (all)",
    "supcon": "pml SupConLoss (all)",
    "pair_baseline": "per-pair baseline (pair)",
}
IMPL_STYLE = {  # colour, marker, line style
    "pixcon_all": ("tab:blue", "o", "-"),
    "pixcon_pair": ("tab:cyan", "s", "-"),
    "reference": ("tab:red", "^", "--"),
    "supcon": ("tab:orange", "v", "--"),
    "pair_baseline": ("tab:purple", "D", "--"),
}
VARIANTS = ("single", "batch")
DTYPES = ("float32", "bfloat16")
#: the GPU grid's dtypes: "tf32" is float32 input with torch's TF32 matmul setting on
GPU_DTYPES = ("float32", "tf32", "bfloat16")
#: the tensor dtype of each benchmark dtype that is not a torch dtype name
STORAGE_DTYPE = {"tf32": "float32"}
DEFAULT_DIMS = (128, 256)
DEFAULT_SIZES = (1024, 4225, 16641, 66049)  # 32^2, 65^2, 129^2, 257^2
#: the combinations (D, variant, dtype) that also run the large N by default
DEFAULT_LARGE_COMBOS = ((256, "single", "float32"), (256, "batch", "float32"),
                        (128, "single", "float32"), (128, "batch", "float32"),
                        (256, "single", "bfloat16"))
QUICK_SIZES = (256, 1024)
QUICK_DIMS = (128,)
BATCH_IMAGES = 8
CLASSES = 19
IGNORE_INDEX = 255
IGNORE_FRACTION = 0.05
TEMPERATURE = 0.07
DEFAULT_REPEATS, DEFAULT_WARMUP = 3, 1
QUICK_REPEATS = 2
DEFAULT_TIME_BUDGET = 30.0
DEFAULT_LONG_STEP = 15.0
DEFAULT_TIMEOUT = 180.0
#: a baseline's step time extrapolated quadratically from the previous N is multiplied by this
#: before it is compared with the timeout: the matrix-building baselines grow faster than N^2 on
#: CPU (page faults of fresh N x N buffers; 4225 -> 16641 measured x17-19, not x15.5). pixcon's
#: time grows as N^2 (x15.6-15.9 measured) and gets no margin.
PREDICT_TIME_MARGIN = 1.25
DEFAULT_MEMORY_LIMIT_GB = 16.0
DEFAULT_THREADS = 2
DEFAULT_MAX_MINUTES = 40.0
DEFAULT_OUT_DIR = os.path.join("benchmarks", "measured")
_RESULT_MARKER = "PIXCON_SUITE_RESULT "
_MB = 1024.0 * 1024.0
_GB = 1024.0 ** 3


# --------------------------------------------------------------------------------------------
# workload and implementations (run in the child)
# --------------------------------------------------------------------------------------------

def bag_offsets(n: int, bags: int) -> List[int]:
    """CSR offsets of ``bags`` contiguous bags of ``n`` rows whose sizes differ by at most 1."""
    bags = max(1, min(bags, n))
    return [(n * b) // bags for b in range(bags + 1)]


def make_inputs(n: int, d: int, dtype: str, seed: int, device: str = "cpu",
                classes: int = CLASSES):
    """Unit-norm random embeddings ``[n, d]`` (a ``requires_grad`` leaf in ``dtype``) and labels
    ``[n]`` over ``classes`` classes with ~5 % ``IGNORE_INDEX``."""
    import torch

    g = torch.Generator().manual_seed(seed * 1_000_003 + n * 7 + d)
    z = torch.randn(n, d, generator=g, dtype=torch.float32)
    z.div_(z.norm(dim=1, keepdim=True).clamp_min_(1e-12))
    y = torch.randint(0, classes, (n,), generator=g, dtype=torch.int64)
    y[torch.rand(n, generator=g) < IGNORE_FRACTION] = IGNORE_INDEX
    z = z.to(device=device, dtype=getattr(torch, STORAGE_DTYPE.get(dtype, dtype)))
    z.requires_grad_(True)
    return z, y.to(device)


def _per_row_loss(impl: str, offs_t: Any, offs: List[int],
                  temperature: float) -> Optional[Callable[[Any, Any], Tuple[Any, Any]]]:
    """``fn(z, y) -> (loss [N], valid [N])`` for the implementations with a per-row output
    (``None`` for SupConLoss, which only returns a mean)."""
    if impl in ("pixcon_all", "pixcon_pair"):
        import pixcon

        den = "all" if impl == "pixcon_all" else "pair"
        return lambda z, y: pixcon.contrastive_loss(z, y, offs_t, temperature=temperature,
                                                    ignore_index=IGNORE_INDEX, denominator=den)
    if impl == "reference":
        import pixcon.reference

        return lambda z, y: pixcon.reference.contrastive_loss(
            z, y, offs_t, temperature=temperature, ignore_index=IGNORE_INDEX, denominator="all")
    if impl == "pair_baseline":
        import pair_loss_baseline

        return lambda z, y: pair_loss_baseline.pair_contrastive_loss(
            z, y, offs, temperature=temperature, ignore_index=IGNORE_INDEX)
    return None


def make_step(impl: str, offsets: Sequence[int], temperature: float = TEMPERATURE,
              device: str = "cpu") -> Callable[[Any, Any], Tuple[Any, Any]]:
    """``step(z, y)``: one forward + backward of ``impl`` over the bags ``offsets``; returns
    ``(loss_sum, valid_count)`` as tensors (no synchronisation)."""
    import torch

    offs_t = torch.tensor(list(offsets), dtype=torch.int64, device=device)
    offs = list(offsets)

    per_row = _per_row_loss(impl, offs_t, offs, temperature)
    if per_row is not None:
        def step(z, y):
            loss, valid = per_row(z, y)
            total = loss.sum()
            total.backward()
            return total.detach(), valid.sum()
        return step
    if impl == "supcon":
        from pytorch_metric_learning.losses import SupConLoss

        loss_fn = SupConLoss(temperature=temperature)

        def step(z, y):
            # SupConLoss has no ignore_index and no bags: drop the ignored rows, one call per bag
            # (its output is the mean over anchors; summing the bags' means is enough to time it)
            total = None
            count = 0
            for start, end in zip(offs[:-1], offs[1:]):
                y_b = y[start:end]
                keep = y_b != IGNORE_INDEX
                loss_b = loss_fn(z[start:end][keep], y_b[keep])
                total = loss_b if total is None else total + loss_b
                count += int(keep.sum())
            total.backward()
            return total.detach(), torch.tensor(count)
        return step
    raise ValueError(f"unknown implementation {impl!r}")


def check_supcon_against_pixcon(n: int = 300, d: int = 32, classes: int = 5, seed: int = 0,
                                temperature: float = TEMPERATURE) -> float:
    """Max abs difference per valid anchor (loss) and of the mean loss's gradient between
    pml's ``SupConLoss`` and ``pixcon.contrastive_loss(..., denominator="all")`` on unit-norm
    float64 rows (pml normalises its input, so its gradient is compared with pixcon's
    projected on the unit sphere's tangent space); raises AssertionError above 1e-9."""
    import torch
    from pytorch_metric_learning.losses import SupConLoss
    from pytorch_metric_learning.reducers import DoNothingReducer

    import pixcon

    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    z = z / z.norm(dim=1, keepdim=True)
    y = torch.randint(0, classes, (n,), generator=g)
    y[torch.rand(n, generator=g) < 0.1] = IGNORE_INDEX
    keep = y != IGNORE_INDEX
    zk, yk = z[keep].clone().requires_grad_(True), y[keep]
    per_anchor = SupConLoss(temperature=temperature, reducer=DoNothingReducer())(zk, yk)
    per_anchor = per_anchor["loss"]["losses"]
    loss, valid = pixcon.contrastive_loss(zk.detach(), yk, temperature=temperature,
                                          ignore_index=IGNORE_INDEX, denominator="all")
    assert bool(valid.all()), "every kept anchor should have a positive"
    err = float((per_anchor.detach() - loss).abs().max())
    # gradients of the mean over anchors (pml's default reduction). SupConLoss normalises its
    # input, so its gradient is pixcon's projected on the tangent space: g - (g . z) z.
    zp = zk.detach().clone().requires_grad_(True)
    SupConLoss(temperature=temperature)(zk, yk).backward()
    l2, v2 = pixcon.contrastive_loss(zp, yk, temperature=temperature, denominator="all")
    (l2.sum() / v2.sum()).backward()
    zu = zk.detach()
    projected = zp.grad - (zp.grad * zu).sum(dim=1, keepdim=True) * zu
    err = max(err, float((zk.grad - projected).abs().max()))
    assert err < 1e-9, f"SupConLoss differs from pixcon 'all' by {err:g}"
    return err


def run_checks() -> Dict[str, Any]:
    """The agreement checks of the baselines with pixcon (float64, small N)."""
    import pair_loss_baseline

    out: Dict[str, Any] = {}
    for name, fn in (("pair_baseline_vs_pixcon_pair",
                      lambda: max(pair_loss_baseline.check_against_pixcon(bags=b) for b in (1, 3))),
                     ("supcon_vs_pixcon_all", check_supcon_against_pixcon)):
        try:
            out[name] = {"ok": True, "max_abs_diff": fn()}
        except Exception as e:  # noqa: BLE001 - recorded
            out[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"[:300]}
    return out


# --------------------------------------------------------------------------------------------
# one configuration, measured in a fresh process
# --------------------------------------------------------------------------------------------

def _proc_status_bytes(key: str) -> Optional[float]:
    from pixcon._benchtools import proc_field_bytes

    return proc_field_bytes("/proc/self/status", key)


def _reset_peak_rss() -> bool:
    """Releases free heap memory to the OS and resets the kernel's peak-RSS mark (VmHWM)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _proc_status_bytes("VmHWM") is not None
    except OSError:
        return False


def _maxrss_bytes() -> float:
    v = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return v if sys.platform == "darwin" else v * 1024.0


def _limit_address_space(limit_bytes: Optional[float]) -> None:
    if not limit_bytes:
        return
    size = _proc_status_bytes("VmSize")
    if size is None:
        return
    cap = int(size + limit_bytes)
    try:
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (ValueError, OSError):
        pass


def measure(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Times one configuration and measures its peak memory (call in a fresh process)."""
    import torch

    impl, n, d, dtype = spec["impl"], int(spec["n"]), int(spec["dim"]), spec["dtype"]
    device = spec["device"]
    cuda = device.startswith("cuda")
    torch.set_num_threads(int(spec["threads"]))
    if cuda:
        # one global switch that pixcon.contrastive_loss and the baselines' matmuls all follow
        torch.backends.cuda.matmul.fp32_precision = "tf32" if dtype == "tf32" else "ieee"
    else:
        _limit_address_space(spec.get("memory_limit_bytes"))
    offs = bag_offsets(n, int(spec["bags"]))
    step = make_step(impl, offs, float(spec["temperature"]), device)

    z, y = make_inputs(n, d, dtype, int(spec["seed"]), device)
    # tiny warm-up: thread pools, kernels, the CUDA context
    m = min(n, 64)
    zs, ys = make_inputs(m, d, dtype, int(spec["seed"]) + 1, device)
    make_step(impl, bag_offsets(m, min(int(spec["bags"]), 4)), float(spec["temperature"]),
              device)(zs, ys)
    del zs, ys
    gc.collect()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = float(torch.cuda.memory_allocated())
        method = "cuda max_memory_allocated growth"
    elif _reset_peak_rss():
        base = _proc_status_bytes("VmRSS") or 0.0
        method = "VmHWM growth after malloc_trim + clear_refs"
    else:
        base = _maxrss_bytes()
        method = "ru_maxrss growth"

    def timed() -> Tuple[float, Any, Any]:
        z.grad = None
        if cuda:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            out = step(z, y)
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3, out[0], out[1]
        t0 = time.perf_counter()
        out = step(z, y)
        return time.perf_counter() - t0, out[0], out[1]

    warm_times = []
    for _ in range(int(spec["warmup"])):
        t, loss_sum, valid = timed()
        warm_times.append(t)
    times: List[float] = []
    budget = float(spec["time_budget"])
    for _ in range(int(spec["repeats"])):
        if times and sum(times) + statistics.median(times) > budget:
            break
        t, loss_sum, valid = timed()
        times.append(t)

    if cuda:
        peak = float(torch.cuda.max_memory_allocated()) - base
    elif method.startswith("VmHWM"):
        peak = (_proc_status_bytes("VmHWM") or 0.0) - base
    else:
        peak = _maxrss_bytes() - base
    med = statistics.median(times)
    nominal = nominal_flops(n, d, int(spec["bags"]))
    loss_val = float(loss_sum.float().item())
    return {
        "status": "ok",
        "median_s": med,
        "min_s": min(times),
        "times_s": times,
        "warmup_times_s": warm_times,
        "runs": len(times),
        "peak_bytes": max(peak, 0.0),
        "memory_method": method,
        "gflops_nominal": nominal / med / 1e9,
        "num_threads": torch.get_num_threads(),
        "valid_anchors": int(valid.item()),
        "loss_sum": loss_val,
        "grad_finite": bool(z.grad is not None and torch.isfinite(z.grad).all().item()),
    }


def _classify_exception(e: BaseException) -> Dict[str, Any]:
    first = (f"{type(e).__name__}: {e}".strip().splitlines() or [type(e).__name__])[0]
    low = first.lower()
    if isinstance(e, MemoryError) or "out of memory" in low or "can't allocate memory" in low \
            or type(e).__name__ == "OutOfMemoryError" or "cannot allocate memory" in low:
        return {"status": "oom", "note": "out of memory: " + first[:160]}
    return {"status": "error", "note": "failed: " + first[:200]}


def _safe_measure(spec: Dict[str, Any]) -> Dict[str, Any]:
    try:
        if spec.get("kind") == "checks":
            return {"status": "ok", "checks": run_checks()}
        if spec.get("kind") == "device":
            return _gpu_device_info()
        return measure(spec)
    except BaseException as e:  # noqa: BLE001 - reported to the driver
        return _classify_exception(e)


def _fork_entry(spec: Dict[str, Any], conn) -> None:
    conn.send(_safe_measure(spec))
    conn.close()


def _describe_exit(rc: Optional[int]) -> Tuple[str, str]:
    from pixcon._benchtools import describe_exit

    if rc is None:
        return "error", "no exit status"
    return describe_exit(rc, "the kernel's OOM killer?", " without a result")


def run_forked(spec: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    """Runs ``spec`` in a forked child of this (torch-idle) process."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    sys.stdout.flush()
    sys.stderr.flush()
    proc = ctx.Process(target=_fork_entry, args=(spec, child_conn), daemon=True)
    proc.start()
    child_conn.close()
    result = None
    if parent_conn.poll(timeout):
        try:
            result = parent_conn.recv()
        except (EOFError, OSError):
            result = None
    if result is None and proc.is_alive():
        proc.kill()
        proc.join()
        return {"status": "timeout", "note": f"timed out after {timeout:g} s"}
    proc.join()
    if result is None:
        status, note = _describe_exit(proc.exitcode)
        return {"status": status, "note": note}
    return result


def run_subprocess(spec: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    """Runs ``spec`` in ``python benchmarks/loss_suite.py --_worker SPEC``."""
    from pixcon._benchtools import run_worker

    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", json.dumps(spec)]
    # exit status 0 without a result reads as "no exit status", as it always has here
    return run_worker(cmd, timeout, _RESULT_MARKER, lambda rc: _describe_exit(rc or None),
                      stderr_chars=200)


def _worker_main(spec_json: str) -> int:
    from pixcon._benchtools import emit_result

    emit_result(_RESULT_MARKER, _safe_measure(json.loads(spec_json)))
    return 0


# --------------------------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------------------------

def _ms(v: Optional[float]) -> str:
    if v is None:
        return "-"
    ms = v * 1e3
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def _ratio(v: Optional[float]) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}x" if v >= 100 else f"{v:.1f}x" if v >= 10 else f"{v:.2f}x"


def combo_key(r: Dict[str, Any]) -> Tuple[str, int, str, str]:
    return (r["device"], r["dim"], r["variant"], r["dtype"])


def combo_order(key: Tuple[str, int, str, str]) -> Tuple:
    """Display order: device, dtype, D, variant."""
    device, dim, variant, dtype = key
    return (device, GPU_DTYPES.index(dtype) if dtype in GPU_DTYPES else 9, dim,
            VARIANTS.index(variant) if variant in VARIANTS else 9)


def combo_name(key: Tuple[str, int, str, str]) -> str:
    device, dim, variant, dtype = key
    return f"{device} D={dim} {variant} {dtype}"


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


def headline(rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per (combo, baseline): the largest N both ran, the speed-up and memory ratio there, and
    the largest N each ran."""
    out = []
    combos = sorted({combo_key(r) for r in rows}, key=combo_order)
    for key in combos:
        cr = [r for r in rows if combo_key(r) == key]
        if not any(r["status"] == "ok" for r in cr):
            continue

        def largest(impl):
            ns = [r["n"] for r in cr if r["impl"] == impl and r["status"] == "ok"]
            return max(ns) if ns else None

        for base, ours in BASELINE_OF.items():
            shared = [r for r in cr if r["impl"] == base and r.get("speedup") is not None]
            if not any(r["impl"] == base for r in cr):
                continue
            item: Dict[str, Any] = {"device": key[0], "dim": key[1], "variant": key[2],
                                    "dtype": key[3], "baseline": base, "pixcon": ours,
                                    "largest_n_baseline": largest(base),
                                    "largest_n_pixcon": largest(ours)}
            first_fail = sorted((r["n"], r["status"], bool(r.get("predicted"))) for r in cr
                                if r["impl"] == base and r["status"] != "ok")
            item["baseline_stopped_at"] = (
                None if not first_fail else {"n": first_fail[0][0], "status": first_fail[0][1],
                                             "predicted": first_fail[0][2]})
            if shared:
                top = max(shared, key=lambda r: r["n"])
                p = next(r for r in cr if r["impl"] == ours and r["n"] == top["n"])
                item.update(shared_n=top["n"], speedup=top["speedup"],
                            memory_ratio=top.get("memory_ratio"),
                            baseline_ms=top["median_s"] * 1e3, pixcon_ms=p["median_s"] * 1e3,
                            baseline_peak_mb=top["peak_bytes"] / _MB,
                            pixcon_peak_mb=p["peak_bytes"] / _MB)
            out.append(item)
    return out


def print_tables(rows: Sequence[Dict[str, Any]], heads: Sequence[Dict[str, Any]],
                 machine: Dict[str, Any], cfg: Dict[str, Any]) -> None:
    from pixcon._benchtools import fmt, print_table

    left = ("impl", "note")
    header = ["impl", "N", "median ms", "min ms", "runs", "GFLOP/s", "peak MB", "B/N^2",
              "pixcon speed-up", "pixcon mem ratio", "note"]
    for key in sorted({combo_key(r) for r in rows}, key=combo_order):
        body = []
        for r in sorted((r for r in rows if combo_key(r) == key),
                        key=lambda r: (r["n"], IMPLS.index(r["impl"]))):
            ok = r["status"] == "ok"
            note = r.get("note") or ("" if ok else r["status"])
            body.append([
                r["impl"], str(r["n"]), _ms(r.get("median_s")), _ms(r.get("min_s")),
                fmt(r.get("runs"), "d") if ok else "-", fmt(r.get("gflops_nominal"), ".1f"),
                fmt(None if r.get("peak_bytes") is None else r["peak_bytes"] / _MB, ".1f"),
                fmt(r.get("peak_bytes_per_n2"), ".1f"),
                _ratio(r.get("speedup")),
                _ratio(r.get("memory_ratio")),
                note])
        bags = BATCH_IMAGES if key[2] == "batch" else 1
        title = (f"\n{combo_name(key)} ({bags} bag{'s' if bags > 1 else ''}), fwd+bwd, "
                 f"{machine.get('cpu_model')} x {cfg['threads']} threads")
        print_table(title, header, body, left, use_rich=False)

    body = []
    for h in heads:
        body.append([f"D={h['dim']} {h['variant']} {h['dtype']}", h["baseline"], h["pixcon"],
                     fmt(h.get("shared_n"), "d"),
                     _ratio(h.get("speedup")),
                     _ratio(h.get("memory_ratio")),
                     fmt(h.get("largest_n_baseline"), "d"), fmt(h.get("largest_n_pixcon"), "d"),
                     "" if not h.get("baseline_stopped_at") else
                     f"{h['baseline_stopped_at']['status']}"
                     f"{' (predicted)' if h['baseline_stopped_at'].get('predicted') else ''}"
                     f" at {h['baseline_stopped_at']['n']}"])
    print_table("\nHeadline: pixcon against each baseline at the largest N both ran",
                ["config", "baseline", "vs", "largest shared N", "pixcon speed-up",
                 "pixcon mem ratio", "baseline max N", "pixcon max N", "baseline stopped"],
                body, ("config", "baseline", "vs", "baseline stopped"), use_rich=False)


def plot_all(rows: Sequence[Dict[str, Any]], out_dir: str, device: str,
             limit_bytes: Optional[float], subtitle: str) -> List[str]:
    """Grid figures (time, memory) with one panel per (D, variant, dtype), and one two-panel
    figure per (D, variant, dtype). Returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["device"] == device]
    combos = sorted({combo_key(r) for r in rows if r["status"] == "ok"},
                    key=lambda k: (k[2] != "single", k[1],
                                   GPU_DTYPES.index(k[3]) if k[3] in GPU_DTYPES else 9))
    if not combos:
        return []
    paths = []

    def draw(ax, key, what):
        cr = [r for r in rows if combo_key(r) == key]
        for impl in IMPLS:
            pts = sorted((r["n"], r["median_s"], r["peak_bytes"]) for r in cr
                         if r["impl"] == impl and r["status"] == "ok")
            color, marker, ls = IMPL_STYLE[impl]
            if pts:
                ys = [p[1] * 1e3 for p in pts] if what == "time" else \
                    [max(p[2] / _MB, 0.1) for p in pts]
                ax.plot([p[0] for p in pts], ys, marker=marker, ls=ls, color=color,
                        label=IMPL_LABELS[impl])
            fails = sorted(r["n"] for r in cr if r["impl"] == impl
                           and r["status"] in ("oom", "timeout") and not r.get("skipped_after"))
            if fails:  # an x along the top edge at the first N it could not run
                k = IMPLS.index(impl)
                ax.plot([fails[0]], [0.96 - 0.045 * k], marker="x", ls="none", color=color,
                        ms=8, mew=2, transform=ax.get_xaxis_transform(), clip_on=False)
        if what == "memory" and limit_bytes:
            ax.axhline(limit_bytes / _MB, color="gray", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xlabel("N (rows)")
        ax.set_ylabel("median fwd+bwd time (ms)" if what == "time" else "peak memory (MB)")
        bags = BATCH_IMAGES if key[2] == "batch" else 1
        ax.set_title(f"D={key[1]}, {key[2]} ({bags} bag{'s' if bags > 1 else ''}), {key[3]}",
                     fontsize=10)

    n_var = len({k[2] for k in combos})
    per_row = max(1, math.ceil(len(combos) / n_var))
    for what in ("time", "memory"):
        fig, axes = plt.subplots(n_var, per_row, figsize=(4.3 * per_row, 3.9 * n_var),
                                 squeeze=False, sharex=True)
        for i, key in enumerate(combos):
            draw(axes[i // per_row][i % per_row], key, what)
        for j in range(len(combos), n_var * per_row):
            axes[j // per_row][j % per_row].set_visible(False)
        handles, labels = axes[0][0].get_legend_handles_labels()
        seen = dict(zip(labels, handles))
        for ax in axes.flat:
            for h, l in zip(*ax.get_legend_handles_labels()):
                seen.setdefault(l, h)
        extra = "; x along the top: the first N it could not run (out of memory or time)"
        if what == "memory" and limit_bytes:
            extra += f"; dotted: the {limit_bytes / _GB:.0f} GiB cap"
        fig.legend(list(seen.values()), list(seen.keys()), loc="lower center",
                   ncol=len(seen), fontsize=9, frameon=False)
        fig.suptitle(("Forward + backward time" if what == "time" else "Peak memory")
                     + f" vs N, log-log ({device}) | {subtitle}\n{extra.lstrip('; ')}",
                     fontsize=10)
        fig.tight_layout(rect=(0, 0.05, 1, 0.95))
        path = os.path.join(out_dir, f"loss_suite_{device}_{what}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)

    for key in combos:
        fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.5))
        draw(ax_t, key, "time")
        draw(ax_m, key, "memory")
        ax_t.legend(fontsize=8)
        fig.suptitle(f"pixcon loss fwd+bwd, {combo_name(key)} | {subtitle}", fontsize=10)
        fig.tight_layout()
        path = os.path.join(out_dir, f"loss_suite_{device}_D{key[1]}_{key[2]}_{key[3]}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------------------------
# the GPU grid (--gpu-grid): one bag on CUDA, the fused kernels against the matrix baselines
# --------------------------------------------------------------------------------------------

GPU_GRID_SIZES = (4225, 16641, 66049, 262144)  # 65^2, 129^2, 257^2, 512^2
#: run order: the baselines first, they are cheap wherever they fit
GPU_GRID_IMPLS = ("reference", "supcon", "pixcon_all")
PIXCON_IMPLS = ("pixcon_all", "pixcon_pair")
GPU_REPEATS, GPU_TIME_BUDGET, GPU_LONG_STEP, GPU_ROW_TIMEOUT = 5, 5.0, 2.0, 60.0
GPU_DEFAULT_BUDGET_S = 900.0
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

#: The GPUs of the performance model (benchmarks/README.md, "Performance model"). Tensor-core
#: and FMA rates are NVIDIA's datasheet numbers without sparsity; exp2 runs on the SFU at 16 per
#: SM per clock; 132 SMs at the 1.98 GHz boost clock; a CTA may opt in to 227 KiB of shared
#: memory. The L2-to-SM bandwidth is not in the datasheet: 7 TB/s is an assumption until a
#: measurement replaces it.
GPU_SPECS = {
    "H100 SXM": {"bf16": 990e12, "tf32": 495e12, "fp32": 67e12, "sms": 132, "clock_hz": 1.98e9,
                 "hbm": 3.35e12, "l2": 7e12, "smem_optin": 232448},
    "H200": {"bf16": 990e12, "tf32": 495e12, "fp32": 67e12, "sms": 132, "clock_hz": 1.98e9,
             "hbm": 4.8e12, "l2": 7e12, "smem_optin": 232448},
}
#: achievable fractions of the peak rates: FlashAttention-2 reaches ~35 % of an H100 with the
#: same tile shape on mma.sync-class instructions (WMMA here), FlashAttention-3 ~75 % with wgmma
MODEL_FRACTIONS = {"expected": 0.35, "best": 0.75}
#: the fused kernels' shape (DESIGN.md 3b): rows per CTA, columns per tile, the k-chunk D is
#: padded to, the widest gradient chunk of a backward CTA; CTAs resident per SM is an assumption
TILE_ROWS, TILE_COLS, K_CHUNK, GRAD_CHUNK, CTAS_PER_SM = 64, 64, 32, 256, 2


def anchors_resident(dp: int, esize: int, smem_optin: float) -> bool:
    """Whether a CTA keeps its anchor rows in shared memory (ops/cuda/tile_math.cuh, Layout):
    the rows themselves, two stage buffers of J slices (or W Z pieces), the S tile and the rows'
    and columns' saved statistics (48 B each) must fit the device's opt-in limit."""
    r128 = lambda x: -(-x // 128) * 128
    pad = 16 // esize
    stream = max(2 * TILE_COLS * (K_CHUNK + pad) * esize, 2 * 8 * (GRAD_CHUNK + 4) * 4)
    total = (r128(TILE_ROWS * (dp + pad) * esize) + r128(stream) + r128(TILE_ROWS * (TILE_COLS + 4) * 4)
             + r128(TILE_ROWS * 48) + r128(TILE_COLS * 48))
    return total <= smem_optin


def nominal_flops(n: int, d: int, bags: int = 1) -> float:
    """The nominal forward (2 n^2 D) + backward (4 n^2 D) flops of ``n`` rows in ``bags`` bags."""
    offs = bag_offsets(n, bags)
    return 6.0 * d * sum((b - a) ** 2 for a, b in zip(offs[:-1], offs[1:]))


def gpu_spec_for(name: str) -> Tuple[str, Dict[str, float]]:
    """The model's GPU for a device name: the H200 for an H200, else the H100 SXM (whose rates
    then stand in for another GPU, so its predictions are rough there)."""
    key = "H200" if "H200" in name.upper() else "H100 SXM"
    return key, GPU_SPECS[key]


def fused_model(n: int, d: int, dtype: str, spec: Dict[str, float],
                fraction: float = MODEL_FRACTIONS["expected"]) -> Dict[str, Any]:
    """Predicted forward + backward of the fused kernels on one bag of ``n`` rows.

    Each pass takes as long as the slowest of four resources at its peak rate: the tensor cores
    or FMA pipe (similarities at the input's rate; the backward's W Z at the TF32 rate, FMA for
    strict float32), the SFU's exp2, L2-to-SM traffic (every CTA streams each column tile through
    shared memory in k-chunks, and its own anchor rows too unless they stay resident; the
    backward also streams the column tile's rows for W Z), and HBM (one read of the packed Z per
    wave of resident CTAs). The two passes' sum is divided by ``fraction``.
    """
    dp = -(-d // K_CHUNK) * K_CHUNK
    esize = 2 if dtype == "bfloat16" else 4
    chunks = -(-d // GRAD_CHUNK)
    rate_s = spec[{"bfloat16": "bf16", "tf32": "tf32", "float32": "fp32"}[dtype]]
    rate_w = spec["fp32"] if dtype == "float32" else spec["tf32"]
    exp_rate = 16.0 * spec["sms"] * spec["clock_hz"]
    n2 = float(n) * n
    tiles = n2 / (TILE_ROWS * TILE_COLS)
    waves = math.ceil(math.ceil(n / TILE_ROWS) / (CTAS_PER_SM * spec["sms"]))
    z_bytes = float(n) * dp * esize

    def phase(tensor_s, flops, exps, l2_bytes, hbm_bytes):
        times = {"tensor": tensor_s, "sfu": exps / exp_rate, "l2": l2_bytes / spec["l2"],
                 "hbm": hbm_bytes / spec["hbm"]}
        bound = max(times, key=times.get)
        return {"flops": flops, "exps": exps, "l2_bytes": l2_bytes, "hbm_bytes": hbm_bytes,
                "times_s": times, "bound": bound, "seconds": times[bound]}

    # rows streamed per tile pair for S: the column tile's, plus the anchors' unless resident
    streamed = TILE_COLS if anchors_resident(dp, esize, spec["smem_optin"]) else TILE_ROWS + TILE_COLS
    fwd = phase(2 * n2 * d / rate_s, 2 * n2 * d, n2, tiles * streamed * dp * esize + z_bytes,
                (2 + waves) * z_bytes)
    bwd = phase(chunks * 2 * n2 * d / rate_s + 2 * n2 * d / rate_w, (chunks + 1) * 2 * n2 * d,
                2 * n2 * chunks,
                tiles * (chunks * streamed + TILE_COLS) * dp * esize + chunks * z_bytes,
                (2 + waves * chunks) * z_bytes)
    seconds = (fwd["seconds"] + bwd["seconds"]) / fraction
    return {"forward": fwd, "backward": bwd, "fraction": fraction, "seconds": seconds,
            "tflops_nominal": nominal_flops(n, d) / seconds / 1e12}


def model_markdown(sizes: Sequence[int] = GPU_GRID_SIZES, dims: Sequence[int] = DEFAULT_DIMS,
                   dtypes: Sequence[str] = GPU_DTYPES) -> str:
    """The performance model's table (benchmarks/README.md): predicted forward + backward time
    on the H100 SXM and the H200 at both fractions, the bound of each pass, TFLOP/s (6 N^2 D)."""
    names = list(GPU_SPECS)
    head = ["N", "D", "dtype", "bound fwd / bwd"]
    for name in names:
        head += [f"{name} ms at {int(f * 100)} %" for f in MODEL_FRACTIONS.values()]
    head += [f"TFLOP/s at {int(MODEL_FRACTIONS['expected'] * 100)} %"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---|" + "---:|" * (len(head) - 4)]
    for dtype in dtypes:
        for d in dims:
            for n in sizes:
                first = fused_model(n, d, dtype, GPU_SPECS[names[0]])
                cells = [f"{n:,}".replace(",", " "), str(d), "float32 TF32" if dtype == "tf32"
                         else dtype, f"{first['forward']['bound']} / {first['backward']['bound']}"]
                for name in names:
                    cells += [_ms(fused_model(n, d, dtype, GPU_SPECS[name], f)["seconds"])
                              for f in MODEL_FRACTIONS.values()]
                cells.append(f"{first['tflops_nominal']:.0f}")
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    rate = spec[{"bfloat16": "bf16", "tf32": "tf32", "float32": "fp32"}[dtype]]
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
                   f"{_ms(r['predicted_s']):>9} {r['predicted_peak_bytes'] / _GB:>13.2f}  "
                   f"{r['note'] or 'run'}")
    return "\n".join(out)


class _GpuWorker:
    """One ``--_gpu_worker`` process: it runs the specs sent on its stdin one at a time and
    answers each with a marker line; a worker that dies or overruns is killed and the next
    request starts a fresh one."""

    def __init__(self) -> None:
        self.proc: Optional[subprocess.Popen] = None
        self.stderr = None
        self.buffer = b""

    def _start(self) -> None:
        import tempfile

        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--_gpu_worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr)
        self.buffer = b""

    def _readline(self, deadline: float) -> Optional[str]:
        import select

        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return None
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode(errors="replace")

    def _stderr_tail(self) -> str:
        self.stderr.seek(0)
        lines = [l for l in self.stderr.read().decode(errors="replace").splitlines() if l.strip()]
        return lines[-1].strip()[:200] if lines else ""

    def request(self, spec: Dict[str, Any], timeout: float) -> Dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        deadline = time.monotonic() + timeout
        try:
            self.proc.stdin.write((json.dumps(spec) + "\n").encode())
            self.proc.stdin.flush()
            line = ""
            while line is not None and not line.startswith(_RESULT_MARKER):
                line = self._readline(deadline)
        except (BrokenPipeError, OSError):
            line = None
        if line is not None:
            result = json.loads(line[len(_RESULT_MARKER):])
            if result.get("cuda_context_lost"):
                self.close()
            return result
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            result = {"status": "timeout", "note": f"timed out after {timeout:.0f} s"}
        else:
            status, note = _describe_exit(self.proc.returncode or None)
            tail = self._stderr_tail()
            result = {"status": status, "note": f"worker {note}" + (f": {tail}" if tail else "")}
        self.proc = None
        return result

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def _gpu_device_info() -> Dict[str, Any]:
    import torch

    props = torch.cuda.get_device_properties(0)
    free, total = torch.cuda.mem_get_info()
    info = _machine_info(["cuda"])
    info.update(gpu_name=props.name, gpu_sms=props.multi_processor_count,
                gpu_capability=f"{props.major}.{props.minor}", gpu_memory_bytes=total,
                gpu_free_bytes=free)
    return {"status": "ok", "machine": info}


def _release_cuda_memory() -> bool:
    """Frees the cached blocks of the last row; False when the CUDA context is unusable (a
    kernel fault is sticky: every later CUDA call fails in this process)."""
    import torch

    if not torch.cuda.is_initialized():
        return True
    try:
        gc.collect()
        torch.cuda.empty_cache()
        torch.zeros(1, device="cuda").add_(1)
        torch.cuda.synchronize()
        return True
    except Exception:  # noqa: BLE001 - whatever CUDA raised, this process cannot use it
        return False


def _gpu_worker_main() -> int:
    """Answers the driver's requests (one JSON spec per stdin line) until stdin closes; leaves
    when a failed row left the CUDA context unusable, so the driver starts a fresh process."""
    from pixcon._benchtools import emit_result

    for line in sys.stdin:
        result = _safe_measure(json.loads(line))
        lost = not _release_cuda_memory()
        if lost:  # said before leaving, so the driver sends the next row to a fresh process
            result["cuda_context_lost"] = True
        emit_result(_RESULT_MARKER, result)
        if lost:
            return 3
    return 0


def _gpu_row_line(i: int, total: int, r: Dict[str, Any]) -> str:
    head = f"[{i:>2}/{total}] {r['impl']:<10} D={r['dim']:<3} {r['dtype']:<8} N={r['n']:<6}"
    if r["status"] != "ok":
        return f"{head} {r['status']}: {r.get('note') or ''}"
    return (f"{head} {_ms(r['median_s'])} ms, {r['tflops']:.1f} TFLOP/s, peak "
            f"{r['peak_bytes'] / _MB:.0f} MiB")


def run_gpu_rows(rows: List[Dict[str, Any]], *, spec: Dict[str, float], usable_bytes: float,
                 row_timeout: float, deadline: float, repeats: int, warmup: int,
                 time_budget: float, long_step: float, seed: int, threads: int,
                 worker: _GpuWorker, device: str = "cuda") -> None:
    """Runs the planned rows in order, one worker process per implementation, filling in each
    row's result. Every row but those of an unavailable implementation (status "not_run" in the
    plan) is decided again here: it is skipped when a smaller N of its series failed, when its
    prediction (from the last measured N of its series, else the plan's) rules it out, or when
    the budget (``deadline``, monotonic) will not cover it; a row still running when the
    budget ends is stopped and recorded as not run. ``device`` other than "cuda" only serves
    tests of this loop on machines without a GPU."""
    last_ok: Dict[Tuple, Dict[str, Any]] = {}
    failed: Dict[Tuple, Dict[str, Any]] = {}
    current = None
    for i, row in enumerate(rows, 1):
        impl = row["impl"]
        series = (impl, row["dim"], row["dtype"])
        if row["status"] != "not_run":
            row.update(status=None, note=None, predicted=False)
            left = deadline - time.monotonic()
            if series in failed:
                row.update(status=failed[series]["status"], skipped_after=failed[series]["n"],
                           note=f"not run: {failed[series]['status']} at N={failed[series]['n']}")
            elif series in last_ok:
                row.update(gpu_prediction(impl, row["n"], row["dim"], row["dtype"], spec,
                                          last_ok[series]))
            if row["status"] is None:
                skip = gpu_skip_note(row, usable_bytes, row_timeout)
                if skip is None and row["predicted_s"] > left:
                    skip = ("not_run", f"not run: predicted {row['predicted_s']:.1f} s > the "
                            f"{max(left, 0):.0f} s left of the budget")
                if skip:
                    row.update(status=skip[0], note=skip[1], predicted=True)
            if row["status"] is None:
                if current is not None and current != impl:
                    worker.close()
                current = impl
                long = row["predicted_s"] > long_step
                cut = left < row_timeout
                res = worker.request({
                    "impl": impl, "n": row["n"], "dim": row["dim"], "dtype": row["dtype"],
                    "device": device, "bags": 1, "threads": threads, "temperature": TEMPERATURE,
                    "seed": seed, "warmup": 0 if long else warmup,
                    "repeats": 1 if long else repeats, "time_budget": time_budget},
                    max(left, 1.0) if cut else row_timeout)
                row.update(res)
                row["status"] = res.get("status", "error")
                if row["status"] == "timeout" and cut:
                    row.update(status="not_run", note=f"stopped after {left:.0f} s: the budget "
                               "ran out")
                if row["status"] == "ok" and not (row.get("grad_finite")
                                                  and math.isfinite(row.get("loss_sum", math.nan))):
                    row.update(status="error", note="non-finite loss or gradient")
                if row["status"] == "ok":
                    row["tflops"] = nominal_flops(row["n"], row["dim"]) / row["median_s"] / 1e12
                    last_ok[series] = row
                elif row["status"] != "not_run":
                    failed[series] = {"n": row["n"], "status": row["status"]}
        print(_gpu_row_line(i, len(rows), row), flush=True)
    worker.close()


def gpu_grid_markdown(report: Dict[str, Any]) -> str:
    """The GPU grid's rows as a markdown table, with the machine and the notes above it."""
    m = report.get("machine") or {}
    rows = sorted(report["rows"], key=lambda r: (
        GPU_DTYPES.index(r["dtype"]) if r["dtype"] in GPU_DTYPES else 9, r["dim"], r["n"],
        IMPLS.index(r["impl"]) if r["impl"] in IMPLS else 9))
    out = [f"GPU: {m.get('gpu_name', '?')} ({m.get('gpu_sms', '?')} SMs, "
           f"{(m.get('gpu_memory_bytes') or 0) / _GB:.0f} GiB), torch {m.get('torch_version', '?')}"
           f", CUDA {m.get('cuda_version', '?')}. Forward + backward of one bag of N rows, "
           "TFLOP/s counted as 6 N^2 D / median time; peak = max_memory_allocated growth over "
           "the inputs; model = the fused-kernel prediction (benchmarks/README.md) at "
           f"{int(MODEL_FRACTIONS['expected'] * 100)} % of the "
           f"{report.get('model_gpu', 'H100 SXM')}'s peak rates.", ""]
    out += [f"- {note}" for note in report.get("notes") or []]
    if report.get("notes"):
        out.append("")
    out += ["| D | dtype | N | implementation | median ms | TFLOP/s | peak MiB | pixcon speed-up "
            "| model ms | status / note |",
            "|---:|---|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        ok = r["status"] == "ok"
        tflops = nominal_flops(r["n"], r["dim"], r.get("bags", 1)) / r["median_s"] / 1e12 \
            if ok and r.get("median_s") else None
        out.append("| " + " | ".join([
            str(r["dim"]), "float32 TF32" if r["dtype"] == "tf32" else r["dtype"], str(r["n"]),
            IMPL_LABELS.get(r["impl"], r["impl"]), _ms(r["median_s"]) if ok else "-",
            "-" if tflops is None else f"{tflops:.1f}",
            "-" if not ok or r.get("peak_bytes") is None else f"{r['peak_bytes'] / _MB:.0f}",
            _ratio(r.get("speedup")), _ms(r.get("model_s")),
            "ok" if ok else f"{r['status']}: {r.get('note') or ''}".replace("|", "/")]) + " |")
    return "\n".join(out) + "\n"


def gpu_grid_main(args, parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]) -> int:
    """``--gpu-grid``: measures the GPU grid in worker processes (or, with ``--plan-only``,
    prints its plan without a GPU) and writes ``loss_suite_cuda_grid.{json,md}`` and the plots.
    Exit status 1 when a row failed with an error, or a pixcon row ran out of memory or time."""
    t0 = time.monotonic()
    sizes = args.sizes or list(GPU_GRID_SIZES)
    dims = args.dims or list(DEFAULT_DIMS)
    dtypes = args.dtypes or list(GPU_DTYPES)
    impls = args.impls or list(GPU_GRID_IMPLS)
    row_timeout = args.timeout if args.timeout is not None else GPU_ROW_TIMEOUT
    unavailable = {}
    if "supcon" in impls and importlib.util.find_spec("pytorch_metric_learning") is None:
        unavailable["supcon"] = "not run: pytorch-metric-learning is not installed"
    if args.plan_only:
        if args.gpu_memory_gb is None:
            parser.error("--plan-only needs --gpu-memory-gb (no GPU is asked)")
        _, spec = gpu_spec_for(args.gpu_name or "H100 SXM")
        rows = plan_gpu_grid(sizes, dims, dtypes, impls,
                             GPU_USABLE_FRACTION * args.gpu_memory_gb * _GB, spec, row_timeout,
                             unavailable)
        print(plan_text(rows))
        return 0

    budget = args.budget_s if args.budget_s is not None else GPU_DEFAULT_BUDGET_S
    deadline = t0 + budget
    worker = _GpuWorker()
    info = worker.request({"kind": "device"}, 180.0)
    if info.get("status") != "ok":
        worker.close()
        print(f"no usable GPU: {info.get('note')}", file=sys.stderr)
        return 1
    machine = info["machine"]
    free = args.gpu_memory_gb * _GB if args.gpu_memory_gb is not None else machine["gpu_free_bytes"]
    usable = GPU_USABLE_FRACTION * free
    model_gpu, spec = gpu_spec_for(args.gpu_name or machine["gpu_name"])
    rows = plan_gpu_grid(sizes, dims, dtypes, impls, usable, spec, row_timeout, unavailable)
    repeats = args.repeats if args.repeats is not None else GPU_REPEATS
    time_budget = args.time_budget if args.time_budget is not None else GPU_TIME_BUDGET
    long_step = args.long_step if args.long_step is not None else GPU_LONG_STEP
    print(f"GPU grid on {machine['gpu_name']}: {len(rows)} rows, budget {budget:.0f} s, "
          f"{usable / _GB:.1f} GiB usable", flush=True)
    run_gpu_rows(rows, spec=spec, usable_bytes=usable, row_timeout=row_timeout,
                 deadline=deadline, repeats=repeats, warmup=args.warmup, time_budget=time_budget,
                 long_step=long_step, seed=args.seed, threads=args.threads, worker=worker)
    add_ratios(rows)
    os.makedirs(args.out_dir, exist_ok=True)
    report = {
        "benchmark": "loss_suite_gpu_grid",
        "command": " ".join(["python", "benchmarks/loss_suite.py"] + list(
            argv if argv is not None else sys.argv[1:])),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_s": round(time.monotonic() - t0, 1),
        "machine": machine,
        "model_gpu": model_gpu,
        "notes": sorted(set(unavailable.values())),
        "config": {"sizes": sizes, "dims": dims, "dtypes": dtypes, "impls": impls,
                   "budget_s": budget, "row_timeout_s": row_timeout, "repeats": repeats,
                   "warmup": args.warmup, "time_budget_s": time_budget, "long_step_s": long_step,
                   "usable_bytes": usable, "classes": CLASSES, "ignore_index": IGNORE_INDEX,
                   "temperature": TEMPERATURE, "seed": args.seed,
                   "timing": "median of CUDA-event times of loss, valid = fn(z, y); "
                             "loss.sum().backward(); one worker process per implementation",
                   "peak_memory": "max_memory_allocated growth over the inputs, reset per row",
                   "flops_nominal": "6 N^2 D per forward+backward"},
        "rows": rows,
        "plots": [],
    }
    if not args.no_plot:
        sub = f"{machine['gpu_name']}, torch {machine.get('torch_version')}"
        report["plots"] = plot_all(rows, args.out_dir, "cuda", usable, sub)
    json_path = os.path.join(args.out_dir, "loss_suite_cuda_grid.json")
    with open(json_path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    md_path = os.path.join(args.out_dir, "loss_suite_cuda_grid.md")
    with open(md_path, "w") as f:
        f.write(gpu_grid_markdown(report))
    print(f"\n{gpu_grid_markdown(report)}\nJSON written to {json_path}\nmarkdown written to "
          f"{md_path}")
    bad = [r for r in rows if r["status"] == "error" or (
        r["impl"] in PIXCON_IMPLS and r["status"] in ("oom", "timeout")
        and not r.get("predicted"))]
    return 1 if bad else 0


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------

def _parse_list(kind, allowed=None, allow_empty=False):
    def parse(text: str):
        try:
            vals = [kind(s) for s in text.replace(" ", "").split(",") if s]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        if (not vals and not allow_empty) or (allowed is not None and any(v not in allowed for v in vals)):
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated subset of {','.join(map(str, allowed or []))}")
        return vals
    return parse


def _parse_large(text: str) -> List[Tuple[int, str, str]]:
    """``D/variant/dtype`` items, e.g. ``256/single/float32,128/batch/bfloat16``; '' for none."""
    out = []
    for item in [s for s in text.replace(" ", "").split(",") if s]:
        parts = item.split("/")
        if len(parts) != 3 or parts[1] not in VARIANTS or parts[2] not in DTYPES:
            raise argparse.ArgumentTypeError(f"--large-combos: bad item {item!r} "
                                             "(expected D/variant/dtype)")
        out.append((int(parts[0]), parts[1], parts[2]))
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python benchmarks/loss_suite.py",
        description=("Forward+backward time and peak memory of pixcon's contrastive loss against "
                     "pixcon.reference, pytorch-metric-learning's SupConLoss and a per-pair "
                     "baseline (ContrastiveSeg's formula), N from 1K up to the largest each can "
                     "run, D, single/batch variants, float32/bfloat16; then the pixel-sampling "
                     "benchmark. Table on stdout, JSON and PNGs in --out-dir."),
        epilog="Example: python benchmarks/loss_suite.py --quick --out-dir /tmp/suite")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: N {','.join(map(str, QUICK_SIZES))}, D "
                   f"{','.join(map(str, QUICK_DIMS))}, {QUICK_REPEATS} repeats, sampling --quick")
    p.add_argument("--sizes", type=_parse_list(int), default=None,
                   help="N grid for every combination (default: "
                   f"{','.join(map(str, DEFAULT_SIZES[:-1]))})")
    p.add_argument("--large-sizes", type=_parse_list(int, allow_empty=True), default=None,
                   help="larger N, run only for --large-combos ('' for none; default: "
                   f"{DEFAULT_SIZES[-1]}, none with --quick)")
    p.add_argument("--large-combos", type=_parse_large, default=None,
                   help="D/variant/dtype items that also run --large-sizes (default: "
                   + ",".join(f"{d}/{v}/{t}" for d, v, t in DEFAULT_LARGE_COMBOS) + ")")
    p.add_argument("--dims", type=_parse_list(int), default=None,
                   help=f"embedding dimensions (default: {','.join(map(str, DEFAULT_DIMS))})")
    p.add_argument("--variants", type=_parse_list(str, VARIANTS), default=list(VARIANTS),
                   help="single,batch (default: both)")
    p.add_argument("--dtypes", type=_parse_list(str, GPU_DTYPES), default=None,
                   help="float32,bfloat16 (default: both); --gpu-grid also tf32 (float32 input "
                   "with torch's TF32 matmul setting; default there: "
                   f"{','.join(GPU_DTYPES)})")
    p.add_argument("--impls", type=_parse_list(str, IMPLS), default=None,
                   help=f"subset of {','.join(IMPLS)} (default: all; --gpu-grid: "
                   f"{','.join(GPU_GRID_IMPLS)})")
    p.add_argument("--batch-images", type=int, default=BATCH_IMAGES,
                   help="bags of the batch variant (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=None,
                   help=f"timed runs at most (default: {DEFAULT_REPEATS}; --quick: {QUICK_REPEATS})")
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                   help="untimed runs first, unless the step is long (default: %(default)s)")
    for flag, cpu, gpu, text in (
            ("--time-budget", DEFAULT_TIME_BUDGET, GPU_TIME_BUDGET, "no further timed run once "
             "the timed runs took this many seconds"),
            ("--long-step", DEFAULT_LONG_STEP, GPU_LONG_STEP, "no warm-up and one timed run when "
             "the step is predicted to take more than this many seconds"),
            ("--timeout", DEFAULT_TIMEOUT, GPU_ROW_TIMEOUT, "seconds per configuration; a longer "
             "one is killed and recorded as 'timeout'")):
        p.add_argument(flag, type=float, default=None,
                       help=f"{text} (default: {cpu:g}; --gpu-grid: {gpu:g})")
    for flag, default, text in (
            ("--memory-limit-gb", DEFAULT_MEMORY_LIMIT_GB, "address-space cap per configuration "
             "above its start size, GiB; at most 85%% of MemAvailable on CPU "
             "(default: %(default)s)"),
            ("--max-minutes", DEFAULT_MAX_MINUTES, "start no configuration after this many "
             "minutes; the rest are recorded as 'not_run' (0: no limit; default: %(default)s)")):
        p.add_argument(flag, type=float, default=default, help=text)
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS,
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
    p.add_argument("--out-dir", default=DEFAULT_OUT_DIR, metavar="DIR",
                   help="JSON and PNGs go here (default: %(default)s)")
    p.add_argument("--no-plot", action="store_true", help="no PNGs")
    p.add_argument("--no-sampling", action="store_true",
                   help="skip benchmarks/sampling_throughput.py")
    p.add_argument("--no-checks", action="store_true",
                   help="skip the float64 agreement checks of the baselines with pixcon")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--from-json", default=None, metavar="PATH",
                   help="measure nothing: print the tables of a suite JSON and redraw its PNGs "
                   "into --out-dir")
    gpu = p.add_argument_group(
        "GPU grid", "--gpu-grid measures one bag on CUDA: N " + ",".join(map(str, GPU_GRID_SIZES))
        + f", D {','.join(map(str, DEFAULT_DIMS))}, {','.join(GPU_DTYPES)}, "
        + ",".join(GPU_GRID_IMPLS) + " (one worker process per implementation), and writes "
        "loss_suite_cuda_grid.json / .md and the plots into --out-dir")
    gpu.add_argument("--gpu-grid", action="store_true", help="run the GPU grid")
    gpu.add_argument("--budget-s", type=float, default=None,
                     help="seconds for the whole grid; a row that would end later is not run "
                     f"and a running one is stopped (default: {GPU_DEFAULT_BUDGET_S:g})")
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
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_gpu_worker", action="store_true", help=argparse.SUPPRESS)
    return p


def replot(path: str, out_dir: str, plot: bool = True) -> int:
    """Prints the tables of the suite JSON ``path`` and redraws its PNGs into ``out_dir``."""
    with open(path) as f:
        report = json.load(f)
    rows, machine, cfg = report["rows"], report["machine"], report["config"]
    add_ratios(rows)
    print_tables(rows, headline(rows), machine, cfg)
    if plot:
        os.makedirs(out_dir, exist_ok=True)
        sub = (f"{machine.get('cpu_model')}, {cfg['threads']} threads, torch "
               f"{machine.get('torch_version')}")
        for device in cfg["devices"]:
            limit = cfg["memory_limit_gb"] * _GB if device == "cpu" else None
            for p in plot_all(rows, out_dir, device, limit, sub):
                print(f"plot written to {p}")
    return 0


def _machine_info(devices: Sequence[str]) -> Dict[str, Any]:
    from pixcon._benchtools import machine_info, proc_field_bytes

    try:
        info = machine_info(devices)
    except Exception as e:  # noqa: BLE001
        import platform

        import torch

        info = {"platform": platform.platform(), "torch_version": torch.__version__,
                "pixcon_import_error": f"{type(e).__name__}: {e}"}
    try:
        import pytorch_metric_learning

        info["pytorch_metric_learning_version"] = pytorch_metric_learning.__version__
    except ImportError:
        info["pytorch_metric_learning_version"] = None
    total = proc_field_bytes("/proc/meminfo", "MemTotal")
    if total is not None:
        info["mem_total_gb"] = round(total / _GB, 2)
    return info


def _run_sampling(args, devices: Sequence[str]) -> Optional[Dict[str, Any]]:
    script = os.path.join(_HERE, "sampling_throughput.py")
    cmd = [sys.executable, script, "--out-dir", args.out_dir, "--threads", str(args.threads),
           "--no-progress", "--device", devices[0] if len(devices) == 1 else "auto"]
    if args.quick:
        cmd.append("--quick")
    if args.no_plot:
        cmd.append("--no-plot")
    print("\n$ python " + " ".join([os.path.relpath(script)] + cmd[2:]), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd)
    out = {"command": cmd[1:], "exit_status": proc.returncode,
           "wall_s": round(time.perf_counter() - t0, 1)}
    path = os.path.join(args.out_dir, f"sampling_throughput_{'-'.join(devices)}.json")
    try:
        with open(path) as f:
            report = json.load(f)
        out["json"] = path
        out["rows"] = [{k: r.get(k) for k in ("device", "strategy", "impl", "median_s", "min_s",
                                              "speedup", "selected", "sizes_match", "note")}
                       for r in report.get("rows", [])]
    except (OSError, json.JSONDecodeError):
        out["json"] = None
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args._worker is not None:
        return _worker_main(args._worker)
    if args._gpu_worker:
        return _gpu_worker_main()
    if args.from_json:
        return replot(args.from_json, args.out_dir, not args.no_plot)
    if args.gpu_model:
        print(model_markdown(args.sizes or GPU_GRID_SIZES, args.dims or DEFAULT_DIMS,
                             args.dtypes or GPU_DTYPES))
        return 0
    if args.gpu_grid:
        return gpu_grid_main(args, parser, argv)
    if args.plan_only:
        parser.error("--plan-only goes with --gpu-grid")
    if args.dtypes and "tf32" in args.dtypes:
        parser.error("--dtypes tf32 goes with --gpu-grid")
    args.dtypes = args.dtypes or list(DTYPES)
    args.impls = args.impls or list(IMPLS)
    for name, default in (("time_budget", DEFAULT_TIME_BUDGET), ("long_step", DEFAULT_LONG_STEP),
                          ("timeout", DEFAULT_TIMEOUT)):
        if getattr(args, name) is None:
            setattr(args, name, default)
    t_start = time.perf_counter()
    # libgomp reads OMP_WAIT_POLICY when it is loaded (with torch), and the children inherit it
    omp_policy = os.environ.get("OMP_WAIT_POLICY")
    if args.omp_wait_policy != "inherit":
        if "torch" in sys.modules:
            omp_policy = f"{omp_policy} (torch was imported before; --omp-wait-policy ignored)"
        else:
            os.environ["OMP_WAIT_POLICY"] = omp_policy = args.omp_wait_policy.upper()

    sizes = args.sizes or list(QUICK_SIZES if args.quick else DEFAULT_SIZES[:-1])
    large = args.large_sizes if args.large_sizes is not None else (
        [] if args.quick else [DEFAULT_SIZES[-1]])
    dims = args.dims or list(QUICK_DIMS if args.quick else DEFAULT_DIMS)
    repeats = args.repeats if args.repeats is not None else (
        QUICK_REPEATS if args.quick else DEFAULT_REPEATS)
    if repeats < 1 or args.warmup < 0 or args.threads < 1 or args.batch_images < 1 \
            or any(s < 16 for s in sizes + large) or any(d < 1 for d in dims):
        parser.error("--repeats, --threads, --batch-images, --dims must be >= 1, sizes >= 16")

    # Import everything the children need once, here; run no torch op before forking.
    import torch

    import pair_loss_baseline  # noqa: F401
    import pixcon  # noqa: F401
    import pixcon.reference  # noqa: F401
    try:
        import pytorch_metric_learning.losses  # noqa: F401
        import pytorch_metric_learning.reducers  # noqa: F401
    except ImportError:
        if "supcon" in args.impls:
            sys.stderr.write("pytorch-metric-learning is not installed: skipping 'supcon'\n")
            args.impls = [i for i in args.impls if i != "supcon"]
    torch.set_num_threads(args.threads)
    from pixcon._benchtools import loadavg, proc_field_bytes, resolve_devices

    devices = resolve_devices(args.device, parser)
    use_fork = args.isolation == "fork" or (args.isolation == "auto" and sys.platform == "linux")

    avail = proc_field_bytes("/proc/meminfo", "MemAvailable")
    limit = args.memory_limit_gb * _GB
    if avail is not None:
        limit = min(limit, 0.85 * avail)
    machine = _machine_info(devices)
    machine["loadavg_start"] = loadavg()
    os.makedirs(args.out_dir, exist_ok=True)

    # Run order: float32 before bfloat16; within a dtype the cheap batch variant first, then
    # single, larger D first. Each combination runs all its N (ascending) before the next, so
    # that under --max-minutes only the last combinations lose rows (the last one is D=128
    # single bfloat16, whose baselines are the slowest).
    combos = sorted(((dev, d, v, t) for dev in devices for v in args.variants
                     for t in args.dtypes for d in dims),
                    key=lambda c: (devices.index(c[0]), args.dtypes.index(c[3]),
                                   c[2] != "batch", -c[1]))
    large_set = set(args.large_combos if args.large_combos is not None else DEFAULT_LARGE_COMBOS)
    plan = []  # (combo, n) in the order they run
    for c in combos:
        ns = sorted(sizes)
        if (c[1], c[2], c[3]) in large_set:
            ns += sorted(n for n in large if n > max(sizes))
        plan += [(c, n) for n in ns]
    configs = [(c, n, impl) for c, n in plan for impl in args.impls]

    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    bar = None
    if tqdm is not None and not args.no_progress:
        bar = tqdm(total=len(configs) + (0 if args.no_checks else 1), desc="loss suite",
                   unit="config", file=sys.stderr, dynamic_ncols=True)

    checks = None
    if not args.no_checks:
        if bar is not None:
            bar.set_postfix_str("agreement checks (float64)")
        spec = {"kind": "checks"}
        res = run_forked(spec, 600) if use_fork else run_subprocess(spec, 600)
        checks = res.get("checks", {"error": res.get("note")})
        if bar is not None:
            bar.update(1)

    deadline = None if not args.max_minutes else t_start + 60.0 * args.max_minutes
    rows: List[Dict[str, Any]] = []
    last_ok: Dict[Tuple, Dict[str, Any]] = {}
    failed: Dict[Tuple, Dict[str, Any]] = {}
    for (device, d, variant, dtype), n, impl in configs:
        series = (device, d, variant, dtype, impl)
        bags = args.batch_images if variant == "batch" else 1
        if bar is not None:
            bar.set_postfix_str(f"{device} D={d} {variant} {dtype} {impl} N={n}")
        row: Dict[str, Any] = {"device": device, "dim": d, "variant": variant, "dtype": dtype,
                               "bags": bags, "impl": impl, "n": n, "status": None, "note": None,
                               "median_s": None, "peak_bytes": None}
        prev = last_ok.get(series)
        scale = None if prev is None else (n / prev["n"]) ** 2
        pred_t = None if prev is None else prev["median_s"] * scale
        pred_m = None if prev is None else prev["peak_bytes"] * scale
        dev_limit = limit if device == "cpu" else None
        margin = PREDICT_TIME_MARGIN if impl in BASELINE_OF else 1.0
        if deadline is not None and time.perf_counter() > deadline:
            row.update(status="not_run",
                       note=f"not run: the suite's --max-minutes {args.max_minutes:g} were spent")
        elif series in failed:
            f = failed[series]
            row.update(status=f["status"], skipped_after=f["n"],
                       note=f"not run: {f['status']} at N={f['n']}")
        elif pred_m is not None and dev_limit is not None and pred_m > dev_limit:
            row.update(status="oom", predicted=True, predicted_peak_bytes=pred_m,
                       note=f"not run: predicted peak {pred_m / _GB:.1f} GiB > cap "
                            f"{dev_limit / _GB:.1f} GiB (N={prev['n']} x{scale:.1f})")
        elif pred_t is not None and pred_t * margin > args.timeout:
            row.update(status="timeout", predicted=True, predicted_s=pred_t,
                       note=f"not run: predicted {pred_t:.0f} s x{margin:g} > "
                            f"timeout {args.timeout:g} s (N={prev['n']} x{scale:.1f})")
        else:
            long = pred_t is not None and pred_t > args.long_step
            spec = {"impl": impl, "n": n, "dim": d, "dtype": dtype, "device": device,
                    "bags": bags, "threads": args.threads, "temperature": TEMPERATURE,
                    "seed": args.seed, "warmup": 0 if long else args.warmup,
                    "repeats": 1 if long else repeats, "time_budget": args.time_budget,
                    "memory_limit_bytes": dev_limit}
            if use_fork and device == "cpu":
                res = run_forked(spec, args.timeout)
            else:
                res = run_subprocess(spec, args.timeout)
            row.update(res)
            row["status"] = res.get("status", "error")
            row["loadavg"] = loadavg()
            if row["status"] == "ok":
                row["peak_bytes_per_n2"] = row["peak_bytes"] / float(n * n)
        if row["status"] == "ok":
            last_ok[series] = row
        elif series not in failed and row["status"] != "not_run":
            failed[series] = {"n": n, "status": row["status"]}
        rows.append(row)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    add_ratios(rows)
    heads = headline(rows)
    machine["loadavg_end"] = loadavg()
    cfg = {
        "sizes": sorted(sizes), "large_sizes": sorted(large),
        "large_combos": [f"{d}/{v}/{t}" for d, v, t in sorted(large_set)],
        "dims": dims, "variants": args.variants, "dtypes": args.dtypes, "impls": args.impls,
        "batch_images": args.batch_images, "classes": CLASSES, "ignore_index": IGNORE_INDEX,
        "ignore_fraction": IGNORE_FRACTION, "temperature": TEMPERATURE,
        "repeats": repeats, "warmup": args.warmup, "time_budget_s": args.time_budget,
        "long_step_s": args.long_step, "timeout_s": args.timeout,
        "max_minutes": args.max_minutes, "omp_wait_policy": omp_policy,
        "memory_limit_gb": round(limit / _GB, 2), "threads": args.threads,
        "seed": args.seed, "devices": devices,
        "isolation": "fork" if use_fork else "subprocess",
        "baseline_of": BASELINE_OF,
        "timing": "median of the timed runs of loss, valid = fn(z, y); loss.sum().backward(); "
                  "perf_counter on CPU, CUDA events on GPU",
        "peak_memory": "CPU: VmHWM growth over the RSS after inputs + tiny warm-up, "
                       "malloc_trim and a peak reset (fresh forked process per row); CUDA: "
                       "max_memory_allocated growth",
        "flops_nominal": "6 * D * sum over bags of n_b^2 per forward+backward",
    }
    print_tables(rows, heads, machine, cfg)
    if checks is not None:
        print("\nAgreement checks (float64, per valid anchor): " + "; ".join(
            f"{k}: " + (f"max abs diff {v['max_abs_diff']:.1e}" if v.get("ok") else
                        f"FAILED {v.get('error')}")
            for k, v in checks.items() if isinstance(v, dict)))

    paths = []
    if not args.no_plot:
        sub = (f"{machine.get('cpu_model')}, {args.threads} threads, torch "
               f"{machine.get('torch_version')}")
        for device in devices:
            paths += plot_all(rows, args.out_dir, device, limit if device == "cpu" else None, sub)
    loss_wall = time.perf_counter() - t_start

    sampling = None
    if not args.no_sampling:
        sampling = _run_sampling(args, devices)

    report = {
        "benchmark": "loss_suite",
        "command": " ".join(["python", "benchmarks/loss_suite.py"] + list(
            argv if argv is not None else sys.argv[1:])),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_s": {"loss": round(loss_wall, 1), "total": round(time.perf_counter() - t_start, 1)},
        "machine": machine,
        "config": cfg,
        "checks": checks,
        "headline": heads,
        "rows": rows,
        "plots": paths,
        "sampling": sampling,
    }
    tag = "-".join(devices)
    json_path = os.path.join(args.out_dir, f"loss_suite_{tag}.json")
    with open(json_path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(f"\nJSON written to {json_path}")
    for p in paths:
        print(f"plot written to {p}")
    print(f"wall time: {report['wall_s']['total']:.0f} s")
    bad_checks = checks is not None and any(isinstance(v, dict) and not v.get("ok", True)
                                            for v in checks.values())
    bad_sampling = sampling is not None and sampling.get("exit_status") not in (0, None)
    return 1 if bad_checks or bad_sampling else 0


if __name__ == "__main__":
    sys.exit(main())
