"""Arrival schedules of the load shapes, and the workload options (pure, no clock)."""

from __future__ import annotations

import math

import pytest

from imgburst.cli.loadgen.shapes import (
    ShapeError,
    constant,
    parse_stages,
    ramp,
    spike,
    steps,
)
from imgburst.cli.loadgen.workload import WorkloadError, parse_mix


def per_window(times: list[float], duration: float, width: float = 1.0) -> list[int]:
    counts = [0] * int(round(duration / width))
    for t in times:
        counts[min(int(t // width), len(counts) - 1)] += 1
    return counts


def test_constant_rate_spreads_arrivals_evenly():
    times = constant(4, 10).arrivals()
    assert len(times) == 40 and times == sorted(times)
    assert per_window(times, 10) == [4] * 10
    assert all(0 <= t < 10 for t in times)


def test_ramp_rises_linearly():
    times = ramp(0, 10, 10).arrivals()  # the integral is t^2 / 2: 50 in all
    assert len(times) == 50
    cumulative = 0
    for second, count in enumerate(per_window(times, 10)):
        cumulative += count
        assert cumulative == math.ceil(0.5 * (second + 1) ** 2 - 0.5)  # arrivals before s
    down = ramp(6, 2, 10).arrivals()
    assert len(down) == 40 and per_window(down, 10)[0] > per_window(down, 10)[-1]


def test_spike_is_base_rate_then_peak_then_base():
    times = spike(1, 10, at=4, length=2, duration=10).arrivals()
    windows = per_window(times, 10)
    assert windows == [1, 1, 1, 1, 10, 10, 1, 1, 1, 1]
    assert len(times) == 28


def test_steps_follow_their_stages():
    shape = steps(parse_stages("2/s:3s,0/s:2s,5/s:2s"))
    assert shape.duration == 7 and shape.peak == 5
    assert per_window(shape.arrivals(), 7) == [2, 2, 2, 0, 0, 5, 5]


def test_fractional_rates_accumulate():
    assert constant(0.5, 9).arrivals() == [1, 3, 5, 7]
    assert constant(0.25, 3).arrivals() == [2]  # 0.75 expected arrivals round to 1


@pytest.mark.parametrize("text", ["fast", "2/s", "2/s:0s", "-1/s:3s"])
def test_bad_stages_say_how_to_write_them(text):
    with pytest.raises(ShapeError, match="RATE/s:SECONDSs|more than 0 s"):
        parse_stages(text)


def test_mix_parses_and_refuses_clearly():
    mix = parse_mix("12MP:jpeg=3, 2MP:png=1,0.5MP:webp")
    assert [(m.megapixels, m.format, m.weight) for m in mix] == [
        (12, "JPEG", 3), (2, "PNG", 1), (0.5, "WEBP", 1)]
    assert mix[0].size == (4000, 3000)
    for bad in ("12MP", "12MP:gif=1", "big:jpeg", "0MP:jpeg", "2MP:png=0"):
        with pytest.raises(WorkloadError, match="mix entry"):
            parse_mix(bad)
