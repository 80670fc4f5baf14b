"""Every sampling strategy, with a fixed seed and with seed=None, runs inside
torch.compile(fullgraph=True) of a PixelContrastiveLoss and gives the eager result under the
same torch.manual_seed (the drawn seed and the inferred class count are resolved when the graph
runs, not traced)."""

from __future__ import annotations

import pytest
import torch

import pixcon
import pixcon.nn

RULES = {
    "uniform": dict(num_samples=40),
    "class_balanced": dict(min_views=2, max_views=12, max_total=60),
    "hard_easy": dict(max_samples=40, max_views=5),
}


def _batch():
    g = torch.Generator().manual_seed(11)
    features = torch.randn(2, 6, 9, 9, generator=g)
    labels = torch.randint(0, 4, (2, 9, 9), generator=g)
    labels[0, :2] = 255
    predictions = torch.randint(0, 4, (2, 9, 9), generator=g)
    return features, labels, predictions


@pytest.mark.parametrize("seed", [5, None], ids=["fixed_seed", "seed_none"])
@pytest.mark.parametrize("strategy", list(RULES))
def test_compiled_loss_with_sampler_gives_the_eager_result(strategy, seed):
    torch._dynamo.reset()
    loss_fn = pixcon.nn.PixelContrastiveLoss(sampler={"strategy": strategy, "seed": seed, **RULES[strategy]})
    features, labels, predictions = _batch()
    torch.manual_seed(3)
    eager = loss_fn(features, labels, predictions)
    compiled = torch.compile(loss_fn, fullgraph=True)
    torch.manual_seed(3)
    got = compiled(features, labels, predictions)
    assert eager.item() > 0
    torch.testing.assert_close(got, eager, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("strategy", list(RULES))
def test_compiled_sampler_picks_the_eager_pixels_with_a_drawn_seed(strategy):
    torch._dynamo.reset()
    sampler = pixcon.PixelSampler(strategy, seed=None, **RULES[strategy])
    _, labels, predictions = _batch()
    torch.manual_seed(8)
    eager = sampler(labels, predictions)
    torch.manual_seed(8)
    got = torch.compile(sampler.__call__, fullgraph=True)(labels, predictions)
    assert torch.equal(got[0], eager[0]) and torch.equal(got[1], eager[1])


def test_a_drawn_seed_changes_between_calls_and_follows_manual_seed():
    sampler = pixcon.PixelSampler("uniform", seed=None, num_samples=20)
    _, labels, _ = _batch()
    torch.manual_seed(1)
    first, second = sampler(labels)[0], sampler(labels)[0]
    torch.manual_seed(1)
    assert not torch.equal(first, second)
    assert torch.equal(sampler(labels)[0], first)
