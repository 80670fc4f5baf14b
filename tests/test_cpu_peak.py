"""pixcon.cpu_peak_gflops: the multiply-add peak of the current CPU tier that the loss benchmark's
efficiency figures divide by. Only its contract is tested here (a rate per tier, threads honoured);
its values are measurements and belong to the benchmarks."""

from __future__ import annotations

import math

import pytest

import pixcon


@pytest.mark.parametrize("isa", pixcon.available_cpu_isas())
def test_every_tier_reports_a_positive_finite_rate(isa):
    with pixcon.use_cpu_isa(isa):
        rate = pixcon.cpu_peak_gflops(threads=1, seconds=0.02)
    assert math.isfinite(rate) and rate > 0


def test_default_threads_follow_torch():
    assert pixcon.cpu_peak_gflops(seconds=0.02) > 0
