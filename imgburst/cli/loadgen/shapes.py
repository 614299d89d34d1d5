"""Load shapes: when each batch is submitted (open model: arrivals never wait for
completions, as k6's arrival-rate executors and Vegeta).

Every shape is a piecewise rate (batches per second) over the run; `arrivals` turns it
into deterministic arrival times by integrating the rate and emitting arrival k when the
integral reaches k + 1/2 (so 4/s gives 4 arrivals in every second, centred, and the
total is the integral rounded). Pure: tested on numbers, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

RateFn = Callable[[float], float]


@dataclass(frozen=True)
class Shape:
    """A rate over time and how long it lasts."""

    name: str
    duration: float
    rate: RateFn
    peak: float

    def arrivals(self, step: float | None = None) -> list[float]:
        """Arrival times in seconds from the start, ascending."""
        step = step or min(0.01, 0.05 / max(self.peak, 1e-9))
        times: list[float] = []
        total, t, i = 0.0, 0.0, 0
        while t < self.duration - 1e-9:
            dt = min(step, self.duration - t)
            before = total
            rate = self.rate(t + dt / 2)  # midpoint: exact for piecewise-constant and linear
            total += rate * dt
            while len(times) + 0.5 < total - 1e-9:  # crossed the middle of a unit
                k = len(times) + 0.5
                fraction = (k - before) / (total - before) if total > before else 0.0
                times.append(round(t + min(1.0, max(0.0, fraction)) * dt, 6))
            i += 1
            t = i * step if i * step < self.duration else self.duration
        return times


def constant(rate: float, duration: float) -> Shape:
    return Shape("constant", duration, lambda _t: rate, rate)


def ramp(start: float, end: float, duration: float) -> Shape:
    return Shape("ramp", duration, lambda t: start + (end - start) * min(t, duration) / duration,
                 max(start, end))


def spike(base: float, peak: float, at: float, length: float, duration: float) -> Shape:
    return Shape("spike", duration, lambda t: peak if at <= t < at + length else base,
                 max(base, peak))


def steps(stages: list[tuple[float, float]]) -> Shape:
    """`stages`: (rate, seconds) one after the other."""
    bounds, start = [], 0.0
    for rate, seconds in stages:
        bounds.append((start, start + seconds, rate))
        start += seconds

    def rate_at(t: float) -> float:
        for lo, hi, rate in bounds:
            if lo <= t < hi:
                return rate
        return 0.0

    return Shape("steps", start, rate_at, max(r for r, _ in stages))


class ShapeError(ValueError):
    """A load shape option is malformed; the message says which and how to write it."""


def parse_stages(text: str) -> list[tuple[float, float]]:
    """`"1/s:30s,5/s:10s,1/s:20s"` -> [(1, 30), (5, 10), (1, 20)]."""
    stages = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*([0-9.]+)(?:/s)?\s*:\s*([0-9.]+)s?\s*", part)
        if not match:
            raise ShapeError(f"stage {part.strip()!r} must look like RATE/s:SECONDSs, e.g. "
                             "2/s:30s")
        rate, seconds = float(match[1]), float(match[2])
        if seconds <= 0:
            raise ShapeError(f"stage {part.strip()!r} must last more than 0 s")
        stages.append((rate, seconds))
    return stages
