"""The grids the benchmarks run. The loss: which N, D, variants, dtypes and implementations, and
how many runs; its CPU presets are the full suite, ``--quick`` and the one-bag benchmark; the GPU
grid has its own constants (``benchmarks/README.md``, "The GPU grid"). The k-means benchmark
(``benchmarks/kmeans_baselines.py``): images, D and K of its full grid and of ``--quick``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Tuple

from .cases import IMPLS

VARIANTS = ("single", "batch")
DTYPES = ("float32", "bfloat16")
#: the GPU grid's dtypes: "tf32" is float32 input with torch's TF32 matmul setting on
GPU_DTYPES = ("float32", "tf32", "bfloat16")
BATCH_IMAGES = 8
MEASURED_DIR = os.path.join("benchmarks", "measured")
#: where runs that are not the published measurements write (ignored by git)
RESULTS_DIR = os.path.join("benchmarks", "results")

Combo = Tuple[int, str, str]  # (D, variant, dtype)

#: the combinations that also run the large N in the full suite: every float32 one, and the
#: bfloat16 one whose pixcon time is the headline's
LARGE_COMBOS: Tuple[Combo, ...] = ((256, "single", "float32"), (256, "batch", "float32"),
                                   (128, "single", "float32"), (128, "batch", "float32"),
                                   (256, "single", "bfloat16"))


@dataclass(frozen=True)
class Preset:
    """A CPU grid: every (D, variant, dtype) over ``sizes``, and ``large_sizes`` too for the
    ``large_combos``; ``stem`` names its files; ``quick`` is the name of its short version."""

    name: str
    sizes: Tuple[int, ...]
    dims: Tuple[int, ...]
    large_sizes: Tuple[int, ...] = ()
    large_combos: Tuple[Combo, ...] = ()
    variants: Tuple[str, ...] = VARIANTS
    dtypes: Tuple[str, ...] = DTYPES
    impls: Tuple[str, ...] = IMPLS
    repeats: int = 3
    checks: bool = True
    sampling: bool = True
    out_dir: str = RESULTS_DIR
    stem: str = "loss_suite"
    quick: Optional[str] = None


PRESETS = {p.name: p for p in (
    Preset("full", sizes=(1024, 4225, 16641), dims=(128, 256), large_sizes=(66049,),
           large_combos=LARGE_COMBOS, out_dir=MEASURED_DIR, quick="quick"),
    Preset("quick", sizes=(256, 1024), dims=(128,), repeats=2),
    # one bag of float32 rows, pixcon "all" against the reference, as a user first compares them
    Preset("one-bag", sizes=(1024, 4225, 10000, 16641), dims=(256,), variants=("single",),
           dtypes=("float32",), impls=("pixcon_all", "reference"), repeats=5, checks=False,
           sampling=False, stem="loss_one_bag", quick="one-bag-quick"),
    Preset("one-bag-quick", sizes=(1024, 4225), dims=(256,), variants=("single",),
           dtypes=("float32",), impls=("pixcon_all", "reference"), repeats=3, checks=False,
           sampling=False, stem="loss_one_bag"),
)}

# per-configuration run limits of the CPU presets
WARMUP = 1
TIME_BUDGET = 30.0
LONG_STEP = 15.0
TIMEOUT = 180.0
#: a baseline's step time extrapolated quadratically from the previous N is multiplied by this
#: before it is compared with the timeout: the matrix-building baselines grow faster than N^2 on
#: CPU (page faults of fresh N x N buffers; 4225 -> 16641 measured x17-19, not x15.5). pixcon's
#: time grows as N^2 (x15.6-15.9 measured) and gets no margin.
PREDICT_TIME_MARGIN = 1.25
MEMORY_LIMIT_GB = 16.0
THREADS = 2
MAX_MINUTES = 40.0

# the GPU grid: one bag on CUDA, the fused kernels against the matrix baselines
GPU_GRID_SIZES = (4225, 16641, 66049, 262144)  # 65^2, 129^2, 257^2, 512^2
GPU_GRID_DIMS = (128, 256)
#: run order: the baselines first, they are cheap wherever they fit
GPU_GRID_IMPLS = ("reference", "supcon", "pixcon_all")
GPU_REPEATS, GPU_TIME_BUDGET, GPU_LONG_STEP, GPU_ROW_TIMEOUT = 5, 5.0, 2.0, 60.0
GPU_BUDGET_S = 900.0

# the k-means benchmark: pixcon.auxiliary_labels against faiss and scikit-learn


@dataclass(frozen=True)
class KMeansPreset:
    """A k-means grid: every (D, K) on ``images`` feature maps of ``side`` x ``side`` pixels."""

    name: str
    images: int
    side: int
    dims: Tuple[int, ...]
    ks: Tuple[int, ...]
    out_dir: str


KMEANS_PRESETS = {p.name: p for p in (
    # N = 266 256: 16 feature maps of 129 x 129 (513 x 513 crops at output stride 4)
    KMeansPreset("full", images=16, side=129, dims=(128, 256), ks=(16, 64, 256),
                 out_dir=MEASURED_DIR),
    KMeansPreset("quick", images=16, side=33, dims=(128,), ks=(16, 64), out_dir=RESULTS_DIR),
)}
KMEANS_ITERATIONS = 20
#: timed runs of each method per (D, K): on a busy shared machine the fastest of two is steadier
KMEANS_REPEATS = 2
#: seconds per (method, D, K) process; a longer one is killed and recorded as "timeout"
KMEANS_TIMEOUT = 1800.0
