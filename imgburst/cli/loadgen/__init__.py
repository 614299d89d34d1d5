"""`imgburst loadgen`: demo load on demand, and a report afterwards.

- `shapes`: when batches arrive (constant, ramp, spike, steps; open model);
- `workload`: which images (a weighted mix of synthetic photos, or a directory);
- `runner`: submits on schedule, samples `/api/v1/stats`, waits for the work;
- `report`: percentiles and counts, JSON / CSV / PNG.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from imgburst.cli.console import console, load_settings
from imgburst.cli.loadgen import report as reporting
from imgburst.cli.loadgen.runner import LoadRun, Options
from imgburst.cli.loadgen.shapes import (
    Shape,
    ShapeError,
    constant,
    parse_stages,
    ramp,
    spike,
    steps,
)
from imgburst.cli.loadgen.workload import Workload, WorkloadError, parse_mix
from imgburst.cli.local_key import read_local_key
from imgburst.cli.local_url import default_url
from imgburst.core.statuses import BATCH_FINAL


def make_shape(kind: str, rate: float, start: float, end: float, spike_rate: float,
               spike_at: float, spike_length: float, stages: str | None,
               duration: float) -> Shape:
    if kind == "constant":
        return constant(rate, duration)
    if kind == "ramp":
        return ramp(start, end, duration)
    if kind == "spike":
        return spike(rate, spike_rate, spike_at, spike_length, duration)
    if not stages:
        raise ShapeError("--shape steps needs --stages, e.g. --stages 1/s:30s,5/s:10s,1/s:20s")
    return steps(parse_stages(stages))


def live_view(run: LoadRun, phase: str) -> Group:
    codes = [s.status for s in run.submits]
    sample = run.latest()
    table = Table.grid(padding=(0, 2))
    table.add_row("phase", "sending" if phase == "load" else "waiting for the work")
    table.add_row("batches sent", f"{len(run.submits)} ({sum(1 for c in codes if c == 202)} "
                                  f"accepted, {run.dropped} dropped)")
    table.add_row("rejected", f"{sum(1 for c in codes if 400 <= c < 500)} 4xx, "
                              f"{sum(1 for c in codes if c >= 500)} 5xx, "
                              f"{sum(1 for s in run.submits if s.status == 0 and s.latency_s)} "
                              "errors")
    if sample:
        table.add_row("queue", f"{sample.waiting} waiting, {sample.in_flight} in flight")
        table.add_row("workers", f"{sample.base} base, {sample.burst_running} burst running, "
                                 f"{sample.burst_pending} pending")
        table.add_row("throughput", f"{sample.throughput:.1f} jobs/s")
    statuses = run.batch_status
    if statuses:
        done = sum(1 for s in statuses.values() if s in BATCH_FINAL)
        table.add_row("batches done", f"{done} / {sum(1 for s in run.submits if s.batch_id)}")
    return Group(table)


@click.command()
@click.argument("url", required=False)
@click.option("--shape", "kind", type=click.Choice(["constant", "ramp", "spike", "steps"]),
              default="spike", show_default=True)
@click.option("--rate", type=click.FloatRange(0, 1000), default=0.5, show_default=True,
              help="Batches/s (constant; the base rate of a spike).")
@click.option("--from", "start", type=click.FloatRange(0, 1000), default=0.1,
              show_default=True, help="Ramp: starting batches/s.")
@click.option("--to", "end", type=click.FloatRange(0, 1000), default=2.0, show_default=True,
              help="Ramp: final batches/s.")
@click.option("--spike-rate", type=click.FloatRange(0, 1000), default=5.0,
              show_default=True, help="Spike: batches/s during the spike.")
@click.option("--spike-at", type=click.FloatRange(0), default=10.0, show_default=True,
              help="Spike: seconds from the start.")
@click.option("--spike-length", type=click.FloatRange(0), default=10.0, show_default=True,
              help="Spike: how long it lasts (s).")
@click.option("--stages", default=None, help="Steps: e.g. 1/s:30s,5/s:10s,1/s:20s.")
@click.option("--duration", type=click.FloatRange(0.1, 86400), default=60.0,
              show_default=True, help="Seconds of load (steps: the stages' total).")
@click.option("--batch-size", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--mix", default="2MP:jpeg=1", show_default=True,
              help="Synthetic photos: SIZEMP:FORMAT=WEIGHT,... e.g. 12MP:jpeg=3,2MP:png=1.")
@click.option("--images", "image_dir", type=click.Path(exists=True, file_okay=False,
                                                       path_type=Path),
              help="Use your own photos from this directory instead of --mix.")
@click.option("--recipe", "recipe_file", type=click.Path(exists=True, dir_okay=False,
                                                         path_type=Path))
@click.option("--preset", default=None)
@click.option("--max-in-flight", type=click.IntRange(1, 1024), default=16,
              show_default=True, help="Most HTTP submissions at once.")
@click.option("--clients", type=click.IntRange(1, 1024), default=None,
              help="Closed model (a soak): N clients, each submitting again as soon as "
                   "it has an answer, for --duration; the shape is not used.")
@click.option("--api-key", envvar="IMGBURST_API_KEY", default=None)
@click.option("--wait", "wait_s", type=click.FloatRange(0, 3600), default=120.0,
              show_default=True, help="Most seconds to wait for the submitted work.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write report.json, submits.csv, timeline.csv, report.png here.")
def loadgen(url: str | None, kind: str, rate: float, start: float, end: float,
            spike_rate: float, spike_at: float, spike_length: float, stages: str | None,
            duration: float, batch_size: int, mix: str, image_dir: Path | None,
            recipe_file: Path | None, preset: str | None, max_in_flight: int,
            clients: int | None, api_key: str | None, wait_s: float, seed: int,
            out: Path | None) -> None:
    """Generate load against an imgburst API (open model, or closed with --clients),
    then report.

    \b
    URL: the API to load (default: IMGBURST_URL, else the URL of the `imgburst up` that
    runs with this IMGBURST_HOME, else http://127.0.0.1:8000)."""
    settings = load_settings()
    url = (url or default_url(settings)).rstrip("/")
    try:
        shape = make_shape("constant" if clients else kind, rate, start, end, spike_rate,
                           spike_at, spike_length, stages, duration)
        with console.status("preparing images..."):
            workload = (Workload.from_directory(image_dir, seed) if image_dir else
                        Workload.from_mix(parse_mix(mix),
                                          settings.home / "loadgen-cache", seed))
    except (ShapeError, WorkloadError) as exc:
        raise click.BadParameter(str(exc)) from None
    recipe = recipe_file.read_text(encoding="utf-8") if recipe_file else None
    if recipe is not None:
        try:
            json.loads(recipe)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"{recipe_file} is not JSON: {exc}",
                                     param_hint="--recipe") from None
    if clients:
        console.print(f"soak on {url}: {clients} clients submitting batches of "
                      f"{batch_size} back to back for {shape.duration:g} s", markup=False)
    else:
        console.print(f"{shape.name} load on {url}: {len(shape.arrivals())} batches of "
                      f"{batch_size} over {shape.duration:g} s (peak {shape.peak:g}/s)",
                      markup=False)
    run = LoadRun(Options(url=url, shape=shape, workload=workload, batch_size=batch_size,
                          recipe=recipe, preset=preset,
                          api_key=api_key or read_local_key(settings.home),
                          max_in_flight=max_in_flight, wait_s=wait_s, clients=clients))
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        result = run.run(lambda r, phase: live.update(live_view(r, phase)))
    if not console.is_terminal:  # rich ends the last frame's line only on a terminal
        console.line()
    options = {"url": url, "shape": "closed" if clients else kind, "clients": clients,
               "duration_s": shape.duration, "peak": shape.peak,
               "batch_size": batch_size, "mix": None if image_dir else mix,
               "images": str(image_dir) if image_dir else None, "preset": preset,
               "max_in_flight": max_in_flight, "seed": seed}
    doc = reporting.build(result, options)
    print_report(console, doc)
    if out is not None:
        for path in reporting.write(doc, result, out):
            console.print(f"wrote {path}", markup=False)
    counts = doc["counts"]
    if counts["batches_submitted"] and not counts["batches_accepted"]:
        if counts["errors"] == counts["batches_submitted"]:
            console.print(f"[red]no batch reached {escape(url)}[/red]: is the API running "
                          "there?")
        else:
            console.print(f"[red]{escape(url)} accepted no batch[/red]: its answers are "
                          "counted above (401: check --api-key)")
        raise SystemExit(1)
    if counts["jobs_unfinished"]:
        console.print(f"[yellow]{counts['jobs_unfinished']} jobs still unfinished after "
                      f"--wait {wait_s:g} s[/yellow]")


def print_report(console: Console, doc: dict[str, Any]) -> None:
    counts = doc["counts"]
    table = Table(title="imgburst load report", show_lines=False)
    table.add_column("measure")
    for col in ("count", "p50", "p90", "p95", "p99", "max"):
        table.add_column(col, justify="right")
    for name, values in doc["latency_ms"].items():
        table.add_row(f"{name.replace('_', ' ')} (ms)",
                      *[("–" if values[k] is None else f"{values[k]:g}")
                        for k in ("count", "p50", "p90", "p95", "p99", "max")])
    console.print(table)
    console.print(
        f"batches: {counts['batches_submitted']} sent, {counts['batches_accepted']} accepted, "
        f"{counts['dropped']} dropped, rejected {counts['rejected_4xx']} 4xx / "
        f"{counts['rejected_429']} 429 / {counts['rejected_5xx']} 5xx, {counts['errors']} "
        f"errors\njobs: {counts['jobs_succeeded']} succeeded, {counts['jobs_failed']} failed, "
        f"{counts['jobs_unfinished']} unfinished; throughput "
        f"{doc['throughput_jobs_per_s'] or 0:g} jobs/s; burst pool peak "
        f"{doc['burst_pool_max']}")
