"""Shared helpers for the pixcon test suite.

Tests import the plain helpers with ``from conftest import ...``; this file puts
its own directory on ``sys.path`` so that works whatever pytest import mode is
configured.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
from typing import Callable, Optional, Sequence

import pytest
import torch
import torch.nn.functional as F

_HERE = str(pathlib.Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

IGNORE = 255
#: Every CPU tier pixcon knows about, widest last.
ALL_CPU_ISAS = ("scalar", "avx2", "avx512")


@dataclasses.dataclass
class Problem:
    """A random contrastive-loss problem: rows, labels, bags and optional flags."""

    embeddings: torch.Tensor  # [N, D]
    labels: torch.Tensor  # [N] int64
    bag_offsets: torch.Tensor  # [B+1] int64
    anchor_mask: Optional[torch.Tensor] = None
    contrast_mask: Optional[torch.Tensor] = None
    image_ids: Optional[torch.Tensor] = None
    ignore_index: int = IGNORE

    @property
    def n(self) -> int:
        return self.embeddings.shape[0]

    def kwargs(self) -> dict:
        """Keyword arguments describing the problem (masks, image ids, ignore index)."""
        return dict(
            anchor_mask=self.anchor_mask,
            contrast_mask=self.contrast_mask,
            image_ids=self.image_ids,
            ignore_index=self.ignore_index,
        )

    def bag(self, b: int) -> slice:
        return slice(int(self.bag_offsets[b]), int(self.bag_offsets[b + 1]))

    def with_embeddings(self, embeddings: torch.Tensor) -> "Problem":
        return dataclasses.replace(self, embeddings=embeddings)


def make_problem(
    n: int = 64,
    d: int = 8,
    num_classes: int = 4,
    num_bags: int = 1,
    ignore_frac: float = 0.0,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    *,
    bag_sizes: Optional[Sequence[int]] = None,
    normalize: bool = True,
    scale: float = 1.0,
    masks: bool = False,
    num_images: int = 0,
    ignore_index: int = IGNORE,
) -> Problem:
    """Deterministic random problem.

    ``bag_sizes`` (explicit, may contain 0) overrides ``n``/``num_bags``;
    otherwise ``n`` rows are cut into ``num_bags`` random (possibly empty) bags.
    Embeddings are unit vectors times ``scale`` when ``normalize`` (else plain
    Gaussian times ``scale``).  ``masks`` draws random anchor/contrast masks;
    ``num_images > 0`` draws image ids in ``[0, num_images)``.
    """
    g = torch.Generator().manual_seed(seed)
    if bag_sizes is not None:
        sizes = torch.tensor([0, *bag_sizes], dtype=torch.int64)
        offsets = torch.cumsum(sizes, 0)
        n = int(offsets[-1])
    else:
        cuts = torch.sort(torch.randint(0, n + 1, (num_bags - 1,), generator=g)).values
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), cuts, torch.full((1,), n, dtype=torch.int64)])
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    if normalize:
        z = F.normalize(z, dim=1)
    z = (z * scale).to(dtype)
    labels = torch.randint(0, num_classes, (n,), generator=g, dtype=torch.int64)
    if ignore_frac > 0:
        labels[torch.rand(n, generator=g) < ignore_frac] = ignore_index
    anchor_mask = contrast_mask = image_ids = None
    if masks:
        anchor_mask = torch.rand(n, generator=g) < 0.7
        contrast_mask = torch.rand(n, generator=g) < 0.7
    if num_images:
        image_ids = torch.randint(0, num_images, (n,), generator=g, dtype=torch.int64)
    return Problem(z, labels, offsets, anchor_mask, contrast_mask, image_ids, ignore_index)


def upstream(n: int, seed: int = 1234) -> torch.Tensor:
    """Random float64 upstream gradient for the per-row losses."""
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def loss_and_grad(fn: Callable, p: Problem, g: Optional[torch.Tensor] = None, embeddings=None, **kw):
    """Run ``fn(embeddings, labels, bag_offsets, **masks, **kw)`` and backprop
    ``sum(g * loss)``.  Returns ``(loss, valid, grad)`` (detached)."""
    z = (p.embeddings if embeddings is None else embeddings).detach().clone().requires_grad_(True)
    loss, valid = fn(z, p.labels, p.bag_offsets, **p.kwargs(), **kw)
    if g is None:
        g = upstream(p.n)
    (loss * g.to(loss.dtype)).sum().backward()
    return loss.detach(), valid, z.grad


def reference_loss_and_grad(p: Problem, g: Optional[torch.Tensor] = None, **kw):
    """The reference evaluated in float64 on the (already rounded) input values."""
    from pixcon import reference

    return loss_and_grad(reference.contrastive_loss, p, g, embeddings=p.embeddings.to(torch.float64), **kw)


def _scaled_atol(expected: torch.Tensor, scale: float) -> float:
    if expected.numel() == 0:
        return scale
    return scale * max(1.0, float(expected.abs().max()))


def assert_close_f64(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """float64 agreement: 1e-10 absolute and relative."""
    torch.testing.assert_close(actual, expected.to(actual.dtype), rtol=1e-10, atol=1e-10)


def assert_close_f32(actual: torch.Tensor, expected: torch.Tensor, atol_scale: float = 1e-6) -> None:
    """float32 agreement: 1e-5 relative, absolute slack ``atol_scale * max(1, max|expected|)``
    (so entries that cancel to ~0 are judged against the magnitude of the tensor)."""
    torch.testing.assert_close(
        actual, expected.to(actual.dtype), rtol=1e-5, atol=_scaled_atol(expected, atol_scale)
    )


def assert_close_dtype(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str,
                       condition: float = 1.0) -> None:
    """float64: :func:`assert_close_f64`.  Lower precisions: :func:`assert_close_f32`;
    gradients (sums of O(N) terms) get 10x the absolute slack, and ``condition``
    (e.g. max |z|^2 for non-unit embeddings, whose similarities are that much
    larger than 1/tau) multiplies the absolute slack."""
    if dtype == torch.float64:
        assert_close_f64(actual, expected)
    else:
        scale = (1e-6 if what == "loss" else 1e-5) * max(1.0, condition)
        assert_close_f32(actual, expected, atol_scale=scale)


@pytest.fixture(params=ALL_CPU_ISAS)
def cpu_isa(request):
    """Run the test once per CPU tier, forcing it with ``pixcon.use_cpu_isa``;
    tiers this CPU lacks are skipped with the reason."""
    import pixcon

    name = request.param
    available = pixcon.available_cpu_isas()
    if name not in available:
        pytest.skip(f"this CPU does not support the {name!r} tier (available: {available})")
    with pixcon.use_cpu_isa(name):
        assert pixcon.cpu_isa() == name
        yield name
