"""`imgburst loadgen` against a live local stack: a short spike, then the report is
checked against the job store, and its files are opened."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from conftest import free_port, settings_for, start_live_stack
from PIL import Image
from sqlalchemy import func, select

from imgburst.core.schema import Job
from imgburst.core.store import JobStore

pytestmark = pytest.mark.slow  # real processes and waits: `-m "not slow"` leaves it out


def test_loadgen_spike_report_matches_the_store(base_env, start_worker, start_service,
                                                tmp_path):
    port = free_port()
    env = base_env | {"IMGBURST_PORT": str(port), "SCALER_COOLDOWN_S": "2",
                      "SCALER_MAX_BURST": "2"}
    url = start_live_stack(env, start_service, start_worker)
    out = tmp_path / "report"
    run = subprocess.run(
        [sys.executable, "-m", "imgburst.cli", "loadgen", url, "--shape", "spike",
         "--rate", "0.5", "--spike-rate", "3", "--spike-at", "2", "--spike-length", "2",
         "--duration", "6", "--batch-size", "3", "--mix", "0.5MP:jpeg=2,0.3MP:png=1",
         "--wait", "90", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr
    lines = [line.strip() for line in run.stderr.splitlines()]
    assert "imgburst load report" in lines, run.stderr  # its own line, after the live panel
    assert any(line.startswith("batches done") for line in lines), run.stderr
    report = json.loads((out / "report.json").read_text())

    counts = report["counts"]
    # the schedule: 0.5/s for 4 s around a 3/s spike of 2 s -> 2 + 6 = 8 batches
    assert counts["batches_scheduled"] == 8 and counts["dropped"] == 0
    assert counts["batches_accepted"] == 8 and counts["rejected_5xx"] == 0
    store = JobStore.from_settings(settings_for(env))
    with store.engine.connect() as conn:
        by_status = dict(conn.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    assert counts["jobs"] == sum(by_status.values()) == 24
    assert {b.name for b in store.list_batches(20, 0)} == {"loadgen spike"}  # on the page
    assert counts["jobs_succeeded"] == by_status.get("succeeded", 0) == 24
    assert counts["jobs_failed"] == by_status.get("failed", 0) == 0
    assert counts["images_submitted"] == 24
    for name, values in report["latency_ms"].items():
        ordered = [values[k] for k in ("p50", "p90", "p95", "p99", "max")]
        assert None not in ordered, name
        assert ordered == sorted(ordered), (name, ordered)
    assert report["latency_ms"]["job_end_to_end"]["count"] == 24
    assert report["latency_ms"]["batch_completion"]["count"] == 8
    assert report["throughput_jobs_per_s"] > 0 and report["timeline"]

    with (out / "submits.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and {r["status"] for r in rows} == {"202"}
    with (out / "timeline.csv").open() as f:
        timeline = list(csv.DictReader(f))
    assert timeline and {"waiting", "burst_running"} <= set(timeline[0])
    chart = Image.open(out / "report.png")
    chart.verify()
    assert chart.size[0] > 600


def test_loadgen_with_no_api_there_says_so_and_fails(base_env):
    url = f"http://127.0.0.1:{free_port()}"
    run = subprocess.run(
        [sys.executable, "-m", "imgburst.cli", "loadgen", url, "--shape", "constant",
         "--rate", "2", "--duration", "1", "--batch-size", "1", "--mix", "0.3MP:jpeg=1",
         "--wait", "1"], env=base_env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    assert f"no batch reached {url}" in run.stderr and "running there?" in run.stderr
