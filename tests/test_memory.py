"""Memory is O(N*D): the N x N similarity matrix (and the N x K matrix of the k-means) is never
materialised.

Forward + backward of the loss (both denominators) at N = 16641 rows (a 129 x 129 feature map, one
bag), D = 256, float32 must raise the peak resident set size by less than
300 MB (the similarity matrix alone would be 16641^2 * 4 B = 1.1 GB).  Measured
in a fresh subprocess so that other tests' allocations do not hide the peak.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

LIMIT_MB = 300

SCRIPT = textwrap.dedent(
    """
    import json, resource
    import torch
    import pixcon

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux

    g = torch.Generator().manual_seed(0)
    n, d = 129 * 129, 256
    z = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1).requires_grad_(True)
    labels = torch.randint(0, 19, (n,), generator=g)
    labels[torch.rand(n, generator=g) < 0.05] = 255
    upstream = torch.randn(n, generator=g)
    # room for the gradient, touched up front: it is O(N*D) and not what we measure
    z.grad = torch.zeros_like(z)
    z.grad.zero_()

    # warm up on a tiny problem (thread pools, lazy initialisation, autograd)
    small = z[:64].detach().clone().requires_grad_(True)
    for den in ("all", "pair"):
        loss, _ = pixcon.contrastive_loss(small, labels[:64], denominator=den)
        (loss * upstream[:64]).sum().backward()

    before = peak_mb()
    ok = True
    for den in ("all", "pair"):
        loss, valid = pixcon.contrastive_loss(z, labels, denominator=den)
        (loss * upstream).sum().backward()
        ok = ok and bool(torch.isfinite(loss).all() and torch.isfinite(z.grad).all() and valid.any())
        del loss, valid
    after = peak_mb()
    print(json.dumps({"before_mb": before, "after_mb": after, "finite": ok}))
    """
)


def test_forward_backward_n16641_d256_peak_rss_below_300mb():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    delta = result["after_mb"] - result["before_mb"]
    assert result["finite"]
    assert delta < LIMIT_MB, f"peak RSS grew by {delta:.0f} MB (limit {LIMIT_MB} MB): {result}"


KMEANS_SCRIPT = textwrap.dedent(
    """
    import json, resource
    import torch
    import pixcon

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    features = torch.randn(16, 256, 129, 129, generator=torch.Generator().manual_seed(0))
    pixcon.auxiliary_labels(torch.randn(64, 8), 4)  # lazy initialisation, thread pools
    before = peak_mb()
    labels, centroids = pixcon.auxiliary_labels(features, 256, iterations=1, restarts=1, ignore_index=-1)
    after = peak_mb()
    print(json.dumps({"before_mb": before, "after_mb": after,
                      "features_mb": features.numel() * 4 / 2**20, "labelled": int((labels != -1).sum())}))
    """
)


def test_auxiliary_labels_n266256_d256_k256_peak_rss_below_one_and_a_half_features():
    """Labelling 16 maps of 129 x 129 pixels, D = 256, K = 256: the kernel's unit copy of the
    features and O(N) integers, never the N x K cosines (which would be 272 MB more)."""
    proc = subprocess.run([sys.executable, "-c", KMEANS_SCRIPT], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    delta = result["after_mb"] - result["before_mb"]
    assert result["labelled"] == 16 * 129 * 129 - int(0.05 * 16 * 129 * 129)
    assert delta < 1.5 * result["features_mb"], f"peak RSS grew by {delta:.0f} MB: {result}"
