"""The load report's chart, from samples made up here (no stack, no clock)."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt

from imgburst.cli.loadgen.report import chart
from imgburst.cli.loadgen.runner import RunResult, Sample

matplotlib.use("Agg")


def test_worker_counts_hold_until_the_next_sample():
    """Three burst workers appear at t=10 s: the chart must not slope from 1 to 4 workers
    over the second before, as if workers had started in fractions."""
    samples = [Sample(at=float(t), waiting=0, in_flight=0, base=1,
                      burst_running=3 if t >= 10 else 0, burst_pending=0, throughput=0.0)
               for t in range(20)]
    fig = chart(RunResult(started=0.0, duration_s=20.0, submits=[], dropped=0,
                          samples=samples))
    try:
        pools = fig.axes[1]
        burst = pools.collections[1]  # stacked above the base workers
        area = burst.get_paths()[0]
        assert area.contains_point((10.5, 2.5))  # 3 burst workers on top of the base one
        assert not area.contains_point((9.5, 2.0))  # none yet: a slope would cover this
    finally:
        plt.close(fig)
