"""The benchmark harness behind ``benchmarks/loss_suite.py``,
``benchmarks/sampling_throughput.py`` and ``benchmarks/kmeans_baselines.py``.

What is measured:

* ``cases``: the loss implementations (pixcon, ``pixcon.reference``, pytorch-metric-learning's
  ``SupConLoss``, the per-pair baseline), their inputs and nominal flops;
* ``checks``: the float64 agreement of the baselines with pixcon;
* ``presets``: the grids of N, D, variant and dtype (the full suite, ``--quick``, the one-bag
  benchmark, the GPU grid) and of the k-means benchmark (D, K);
* ``sampling_cases``: the pixel-sampling workload, pixcon's sampler and the Python-loop ones;
* ``gpu_model``: the predicted time of the fused CUDA kernels;
* ``kmeans_cases``: the k-means workload (pixel-like unit features), pixcon's, faiss's and
  scikit-learn's k-means, how each is timed, and the mean cosine that scores them all.

How a measurement runs:

* ``timing``: one timed call (``perf_counter`` on CPU, CUDA events on GPU);
* ``memory``: peak memory, the one method every program uses;
* ``measure``, ``kmeans_measure``: one configuration inside its own process (warm-up, timed
  runs, peak);
* ``runner``: that process (a fork, a fresh interpreter, or a persistent GPU worker) and the
  OpenMP wait policy a driver sets before torch loads;
* ``suite``, ``gpu_grid``: the loops over a preset's configurations.

How results are reported: ``report`` (tables, ratios, markdown, JSON, progress bar), ``plots``
(matplotlib) and ``machine`` (the machine a run describes).

Every module imports torch, pixcon and matplotlib only inside the functions that need them, so
``scripts/gpu_check_report.py`` can import ``machine``, ``cases`` and ``report`` where torch is
missing, and a driver can set ``OMP_WAIT_POLICY`` before torch loads.
"""
