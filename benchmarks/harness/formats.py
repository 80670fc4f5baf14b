"""How numbers are written in every table: a missing value is "-", times in ms with three
significant figures at most, ratios as "12.3x"."""

from __future__ import annotations

import math
from typing import Optional


def fmt(v: Optional[float], spec: str) -> str:
    """``format(v, spec)``, or "-" for a missing value (None or NaN)."""
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def fmt_ms(seconds: Optional[float]) -> str:
    """``seconds`` in milliseconds: no decimals from 100 ms, one from 10 ms, else two."""
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def fmt_ratio(v: Optional[float]) -> str:
    """A speed-up or memory ratio: "123x", "12.3x", "1.23x"."""
    if v is None:
        return "-"
    return f"{v:.0f}x" if v >= 100 else f"{v:.1f}x" if v >= 10 else f"{v:.2f}x"
