"""Nearest-rank percentiles: the one definition the stats endpoint, the load report and
the benchmarks share (p99 of 100 values is the 99th smallest, never an interpolation)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(ordered: Sequence[float], p: float) -> float:
    """The nearest-rank `p`th percentile of values already sorted ascending."""
    if not ordered:
        raise ValueError("no values")
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]
