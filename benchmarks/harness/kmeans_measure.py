"""One (method, D, K) of the k-means benchmark, measured inside its own process (``runner``
starts it, ``worker.answer`` dispatches a spec of kind "kmeans" here).

In the process: every thread pool set to the spec's thread count, the features made
(``kmeans_cases.make_features``), a tiny warm-up run of the same method (512 rows, K <= 8, two
iterations: thread pools, kernels, lazy imports), then the peak-memory baseline
(``memory.PeakMemory``: the features are not counted), the method's ``repeats`` timed runs,
and last the mean cosine of the final labelling. The peak is read when the first run is over:
a later run could find the heap that the first one left and raise the mark by the allocator's
reuse, not by what one run needs.
"""

from __future__ import annotations

import gc
from typing import Any, Dict, List

from .kmeans_cases import make_features, mean_cosine, runner, set_threads
from .memory import PeakMemory

_WARM_ROWS = 512


def measure_kmeans(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Times ``spec["method"]`` on the spec's features and measures its peak memory (call in a
    fresh process)."""
    method, k, iterations = spec["method"], int(spec["k"]), int(spec["iterations"])
    init, seed = spec["init"], int(spec["seed"])
    _limiter, pools = set_threads(int(spec["threads"]))
    x = make_features(int(spec["images"]), int(spec["side"]), int(spec["dim"]), int(spec["seed"]))
    data = x if method == "pixcon" else x.numpy()
    run = runner(method)
    run(data[:_WARM_ROWS], min(k, 8), 2, init, seed, 1, lambda: None)
    gc.collect()
    memory = PeakMemory(False)
    memory.start()
    peak: List[float] = []
    out = run(data, k, iterations, init, seed, int(spec["repeats"]),
              lambda: peak.append(memory.peak_bytes()))
    labels, centroids = out.pop("labels"), out.pop("centroids")
    return dict(out, status="ok", n=int(x.shape[0]), features_bytes=x.numel() * x.element_size(),
                peak_bytes=peak[0], memory_method=memory.method,
                mean_cos=mean_cosine(x, labels, centroids), thread_pools=pools)
