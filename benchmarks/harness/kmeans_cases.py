"""What the k-means benchmark measures: the feature workload, the three clusterers and how each
one's time per Lloyd iteration, initialisation time and final quality are taken.

Workload (:func:`make_features`): B images of S x S pixels (default 16 of 129 x 129, the
feature size of a 513 x 513 crop at output stride 4), one D-dimensional feature per pixel, as
float32 rows ``[B * S * S, D]`` in image-major order, L2-normalised. They are drawn as pixel
features look: ``DIRECTIONS`` random unit directions ("things" the extractor knows); each image
uses ``DIRECTIONS_PER_IMAGE`` of them, laid out in blobs (an 8 x 8 grid of random choices
upsampled by nearest neighbour); each pixel is its blob's direction plus isotropic Gaussian noise
of norm about ``NOISE`` (a cosine of about 1 / sqrt(1 + NOISE^2) = 0.71 to its direction).
Every method gets the same array (a numpy view of the same tensor).

Methods (``METHODS``), all with ``iterations`` (>= 2) Lloyd iterations and one run (no
restarts):

* ``pixcon``: ``pixcon.auxiliary_labels(restarts=1, outlier_fraction=0)``, spherical k-means.
  Timed twice: with ``iterations=0`` (normalisation, the initialisation and one assignment)
  and with ``iterations``; time per iteration = the difference / ``iterations``, init = the
  first call.
* ``faiss``: ``faiss.Kmeans(spherical=True, nredo=1, max_points_per_centroid`` = N, so it
  clusters every point instead of its default sample of 256 K points; ``init_method``
  k-means++ or random as the others). Time per iteration = the mean of the increments of its
  ``iteration_stats`` times after the first (the first also holds the set-up and the
  initialisation); init = the ``train`` call's time less the iterations it ran at that rate. It
  stops early when the objective no longer changes (its default ``early_stop_threshold=0``).
  The labels come from one more assignment against the final centroids (``Kmeans.assign``,
  untimed).
* ``faiss_sampled``: the same with faiss's default ``max_points_per_centroid=256``: it trains on
  a random sample of min(N, 256 K) rows, so its time per iteration is on that sample; the labels
  are still the assignment of all N rows.
* ``sklearn``: ``sklearn.cluster.KMeans(algorithm="lloyd", n_init=1, tol=0)``, Euclidean
  k-means on the unit rows (the usual stand-in for spherical k-means: on unit vectors the
  nearest centroid by distance is the one of highest cosine to the unnormalised mean, whose
  direction is the spherical centroid). Its init is computed first
  (``sklearn.cluster.kmeans_plusplus``, or K random rows) and timed as init; then ``fit`` with
  those centres, ``max_iter=iterations`` and ``max_iter=1``; time per iteration = the
  difference / (``n_iter_`` - 1), which leaves out its input checks, centring copy and final
  assignment. It stops early when no label changes (``n_iter_`` < ``iterations``).

With ``repeats`` > 1 each timed quantity is the fastest of that many runs (the runs of a
difference alternate, so that a slow spell of a shared machine hits both alike). A method that
converged after one iteration has no time per iteration (None).

Quality (:func:`mean_cosine`), the same for all: the mean over rows of the cosine between the
row and the normalised centroid of its label.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Tuple

from .timing import timed_call

METHODS = ("pixcon", "faiss", "faiss_sampled", "sklearn")
METHOD_LABELS = {"pixcon": "pixcon", "faiss": "faiss (all rows)",
                 "faiss_sampled": "faiss (sampled, 256 K rows)", "sklearn": "scikit-learn"}
#: which Python package each method needs
PACKAGE_OF = {"pixcon": "pixcon", "faiss": "faiss", "faiss_sampled": "faiss",
              "sklearn": "sklearn"}
INITS = ("k-means++", "random")
IMAGES = 16
SIDE = 129
DIRECTIONS = 300
DIRECTIONS_PER_IMAGE = 12
GRID = 8
NOISE = 1.0
#: faiss's default cap on training rows per centroid
FAISS_SAMPLE_PER_CENTROID = 256

Result = Dict[str, Any]
Hook = Callable[[], None]


def make_features(images: int, side: int, dim: int, seed: int):
    """Unit-norm float32 pixel features ``[images * side * side, dim]`` (see the module's
    docstring), the same for every method and every K."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed * 1_000_003 + dim)
    directions = F.normalize(torch.randn(DIRECTIONS, dim, generator=g), dim=1)
    per_image = torch.rand(images, DIRECTIONS, generator=g).argsort(dim=1)[:, :DIRECTIONS_PER_IMAGE]
    coarse = torch.randint(0, DIRECTIONS_PER_IMAGE, (images, 1, GRID, GRID), generator=g).float()
    blob = F.interpolate(coarse, size=(side, side), mode="nearest").long().reshape(images, -1)
    which = per_image.gather(1, blob).reshape(-1)
    x = torch.randn(which.numel(), dim, generator=g).mul_(NOISE / math.sqrt(dim))
    x.add_(directions[which])
    return x.div_(x.norm(dim=1, keepdim=True))


def mean_cosine(x, labels, centroids) -> float:
    """The mean over rows of cos(row, centroid of its label), in float64, in chunks so that no
    [N, D] temporary is made; every row must have a label in [0, K)."""
    import torch

    x = torch.as_tensor(x)
    labels = torch.as_tensor(labels).reshape(-1).long()
    c = torch.as_tensor(centroids).double()
    c = c / c.norm(dim=1, keepdim=True).clamp_min(1e-300)
    total = 0.0
    for start in range(0, x.shape[0], 1 << 15):
        rows = x[start:start + (1 << 15)].double()
        total += float((rows * c[labels[start:start + rows.shape[0]]]).sum())
    return total / x.shape[0]


def _pixcon(x, k: int, iterations: int, init: str, seed: int, repeats: int,
            first_done: Hook) -> Result:
    import pixcon

    def run(its: int):
        return pixcon.auxiliary_labels(x, k, iterations=its, restarts=1, outlier_fraction=0.0,
                                       seed=seed, init=init)

    short, full = [], []
    for r in range(repeats):  # alternated, so that a slow spell of the machine hits both alike
        short.append(timed_call(lambda: run(0), False)[0])
        t, (labels, centroids) = timed_call(lambda: run(iterations), False)
        full.append(t)
        if r == 0:
            first_done()
    return {"init_s": min(short), "per_iter_s": (min(full) - min(short)) / iterations,
            "total_s": min(full), "n_iter": iterations,
            "raw_s": {"iterations=0": short, f"iterations={iterations}": full},
            "labels": labels, "centroids": centroids}


def _faiss(x, k: int, iterations: int, init: str, seed: int, repeats: int, first_done: Hook,
           sampled: bool) -> Result:
    import faiss

    per_centroid = FAISS_SAMPLE_PER_CENTROID if sampled else x.shape[0]
    method = (faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS if init == "k-means++"
              else faiss.ClusteringInitMethod_RANDOM)
    trains, per_iters, inits = [], [], []
    for r in range(repeats):
        km = faiss.Kmeans(x.shape[1], k, niter=iterations, nredo=1, spherical=True, seed=seed,
                          max_points_per_centroid=per_centroid, init_method=method,
                          verbose=False)
        t, _ = timed_call(lambda: km.train(x), False)
        stamps = [s["time"] for s in km.iteration_stats]
        trains.append(t)
        if len(stamps) > 1:
            per_iters.append((stamps[-1] - stamps[0]) / (len(stamps) - 1))
            inits.append(t - per_iters[-1] * len(stamps))
        if r == 0:
            first_done()
    _, labels = km.assign(x)
    return {"init_s": min(inits, default=None), "per_iter_s": min(per_iters, default=None),
            "total_s": min(trains), "n_iter": len(stamps),
            "trained_rows": min(x.shape[0], per_centroid * k),
            "raw_s": {"train": trains, "per_iteration": per_iters},
            "labels": labels, "centroids": km.centroids}


def _sklearn(x, k: int, iterations: int, init: str, seed: int, repeats: int,
             first_done: Hook) -> Result:
    import numpy as np
    from sklearn.cluster import KMeans, kmeans_plusplus

    def initial_centres():
        if init == "k-means++":
            return kmeans_plusplus(x, k, random_state=seed)[0]
        return x[np.random.default_rng(seed).choice(x.shape[0], k, replace=False)]

    def fit(max_iter: int):
        return KMeans(n_clusters=k, init=centres, n_init=1, max_iter=max_iter, tol=0.0,
                      algorithm="lloyd", random_state=seed).fit(x)

    inits, ones, fulls = [], [], []
    for r in range(repeats):
        t_init, centres = timed_call(initial_centres, False)
        inits.append(t_init)
        ones.append(timed_call(lambda: fit(1), False)[0])
        t, km = timed_call(lambda: fit(iterations), False)
        fulls.append(t)
        if r == 0:
            first_done()
    n_iter = int(km.n_iter_)
    per_iter = (min(fulls) - min(ones)) / (n_iter - 1) if n_iter > 1 else None
    return {"init_s": min(inits), "per_iter_s": per_iter, "total_s": min(inits) + min(fulls),
            "n_iter": n_iter,
            "raw_s": {"init": inits, "max_iter=1": ones, f"max_iter={iterations}": fulls},
            "labels": km.labels_, "centroids": km.cluster_centers_}


def runner(method: str) -> Callable[..., Result]:
    """``run(x, k, iterations, init, seed, repeats, first_done)`` of ``method``: its times
    (``init_s``, ``per_iter_s``, ``total_s``: each the fastest of ``repeats`` runs; every run's
    in ``raw_s``), the iterations it ran (``n_iter``), ``labels`` and ``centroids`` (of its last
    run; every run is the same computation). ``first_done()`` is called once the first run
    (all its timed calls) is over, so that the peak memory can be read for one run. ``x`` is a
    float32 tensor for pixcon, its numpy view for the others."""
    if method == "pixcon":
        return _pixcon
    if method in ("faiss", "faiss_sampled"):
        return lambda *args: _faiss(*args, sampled=method == "faiss_sampled")
    if method == "sklearn":
        return _sklearn
    raise ValueError(f"unknown k-means method {method!r}")


def set_threads(threads: int) -> Tuple[Any, Dict[str, Any]]:
    """Every thread pool of this process to ``threads``: torch's (which pixcon's kernel
    follows), faiss's OpenMP, and every BLAS and OpenMP library threadpoolctl finds (numpy's,
    scikit-learn's, faiss's). Returns the threadpoolctl limiter (keep it alive) and what each
    library now uses."""
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    torch.set_num_threads(threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:
        pass
    limiter = threadpool_limits(limits=threads)
    pools = {p["filepath"]: p.get("num_threads") for p in threadpool_info()}
    pools["torch"] = torch.get_num_threads()
    return limiter, pools
