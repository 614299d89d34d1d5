"""The load report: counts, throughput, latency percentiles, the pool over time; written
as JSON, CSV and a PNG chart (matplotlib, when installed) ready for a slide."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgburst.cli.loadgen.runner import RunResult, parse_time
from imgburst.core.percentiles import percentile
from imgburst.core.statuses import JOB_ACTIVE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

POINTS = (50, 90, 95, 99)


def summary(values: list[float]) -> dict[str, float | int | None]:
    """Nearest-rank p50/p90/p95/p99 and max, in milliseconds."""
    ordered = sorted(values)
    out: dict[str, float | int | None] = {"count": len(ordered)}
    for p in POINTS:
        out[f"p{p}"] = round(percentile(ordered, p) * 1000, 1) if ordered else None
    out["max"] = round(ordered[-1] * 1000, 1) if ordered else None
    return out


def build(result: RunResult, options: dict[str, Any]) -> dict[str, Any]:
    submits = result.submits
    codes = [s.status for s in submits]
    jobs = result.jobs
    e2e, wait, run = [], [], []
    for job in jobs:
        created, started, finished = (parse_time(job.get(k)) for k in (
            "created_at", "started_at", "finished_at"))
        if job["status"] == "succeeded" and created and started and finished:
            e2e.append(finished - created)
            wait.append(started - created)
            run.append(finished - started)
    completion = []
    for batch in result.batches.values():
        created, finished = parse_time(batch.get("created_at")), parse_time(
            batch.get("finished_at"))
        if created and finished:
            completion.append(finished - created)
    finishes = [parse_time(j.get("finished_at")) for j in jobs if j["status"] == "succeeded"]
    firsts = [parse_time(b.get("created_at")) for b in result.batches.values()]
    span = (max(f for f in finishes if f) - min(f for f in firsts if f)) \
        if finishes and firsts else 0.0
    succeeded = sum(1 for j in jobs if j["status"] == "succeeded")
    return {
        "options": options,
        "started": result.started,
        "duration_s": result.duration_s,
        "waited_s": round(result.waited_s, 2),
        "counts": {
            "batches_scheduled": len(submits) + result.dropped,
            "batches_submitted": len(submits),
            "batches_accepted": sum(1 for c in codes if c == 202),
            "dropped": result.dropped,
            "rejected_4xx": sum(1 for c in codes if 400 <= c < 500 and c != 429),
            "rejected_429": sum(1 for c in codes if c == 429),
            "rejected_5xx": sum(1 for c in codes if c >= 500),
            "errors": sum(1 for c in codes if c == 0),
            "images_submitted": sum(s.images for s in submits if s.status == 202),
            "jobs": len(jobs),
            "jobs_succeeded": succeeded,
            "jobs_failed": sum(1 for j in jobs if j["status"] == "failed"),
            "jobs_unfinished": sum(1 for j in jobs if j["status"] in JOB_ACTIVE),
        },
        "throughput_jobs_per_s": round(succeeded / span, 2) if span > 0 else None,
        "latency_ms": {
            "submit": summary([s.latency_s for s in submits if s.latency_s is not None]),
            "job_end_to_end": summary(e2e),
            "queue_wait": summary(wait),
            "processing": summary(run),
            "batch_completion": summary(completion),
        },
        "burst_pool_max": max((s.burst_running for s in result.samples), default=0),
        "timeline": [s.__dict__ for s in result.samples],
    }


def write(report: dict[str, Any], result: RunResult, out: Path) -> list[Path]:
    """report.json, submits.csv, timeline.csv and report.png (if matplotlib is there)."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "report.json"]
    written[0].write_text(json.dumps(report, indent=2) + "\n")
    with (out / "submits.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["at_s", "latency_ms", "status", "images", "batch_id", "error"])
        for s in result.submits:
            writer.writerow([s.at, None if s.latency_s is None else round(s.latency_s * 1000, 1),
                             s.status, s.images, s.batch_id or "", s.error or ""])
    written.append(out / "submits.csv")
    with (out / "timeline.csv").open("w", newline="") as f:
        fields = ["at", "waiting", "in_flight", "base", "burst_running", "burst_pending",
                  "throughput"]
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for sample in result.samples:
            writer.writerow(sample.__dict__)
    written.append(out / "timeline.csv")
    chart = chart_png(result, out / "report.png")
    if chart:
        written.append(chart)
    return written


def chart_png(result: RunResult, path: Path) -> Path | None:
    """The chart below as a PNG, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig = chart(result)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def chart(result: RunResult) -> Figure:
    """Work, workers by pool and throughput over time, one matplotlib figure. Counts are
    drawn as steps: a sample holds until the next one, and a slope between two would show
    workers that never were."""
    import matplotlib.pyplot as plt

    t = [s.at for s in result.samples]
    fig, (work, pools, rate) = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    work.stackplot(t, [s.in_flight for s in result.samples], [s.waiting for s in result.samples],
                   labels=["in flight", "waiting"], colors=["#2b7de9", "#f59f00"], step="post")
    work.set_ylabel("jobs")
    work.legend(loc="upper right")
    work.set_title("imgburst load run")
    pools.stackplot(t, [s.base for s in result.samples],
                    [s.burst_running for s in result.samples],
                    [s.burst_pending for s in result.samples],
                    labels=["base", "burst running", "burst pending"],
                    colors=["#5c7cfa", "#12b886", "#fab005"], step="post")
    pools.set_ylabel("workers")
    pools.legend(loc="upper right")
    rate.plot(t, [s.throughput for s in result.samples], color="#e03131")
    rate.set_ylabel("jobs/s (10 s)")
    rate.set_xlabel("seconds from start")
    for axis in (work, pools, rate):
        axis.axvspan(0, result.duration_s, color="#868e96", alpha=0.08)
        axis.grid(alpha=0.3)
    fig.tight_layout()
    return fig
