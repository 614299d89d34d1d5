"""A short soak: 32 clients submitting back to back (`imgburst loadgen --clients 32`)
against a live local stack with keys on (API, worker, scaler: real processes). No 5xx,
no connection error, every accepted job succeeds once, and the 202s, the job store and
the blob store reconcile. The full two-minute soak is `bench/soak.py`."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from conftest import free_port, settings_for, start_live_stack
from helpers import reconcile

from imgburst.core.keys import generate_key

pytestmark = pytest.mark.slow  # real processes and waits: `-m "not slow"` leaves it out

CLIENTS = 32
SECONDS = 12


@pytest.mark.timeout(600)
def test_32_clients_lose_nothing_and_get_no_5xx(base_env, start_worker, start_service,
                                                tmp_path):
    port = free_port()
    key = generate_key()
    env = base_env | {"IMGBURST_PORT": str(port), "IMGBURST_AUTH": "on",
                      "IMGBURST_ADMIN_KEYS": f"soak={key}", "SCALER_MAX_BURST": "2",
                      "SCALER_COOLDOWN_S": "5"}
    url = start_live_stack(env, start_service, start_worker, concurrency=2)
    out = tmp_path / "soak"
    run = subprocess.run(
        [sys.executable, "-m", "imgburst.cli", "loadgen", url, "--clients", str(CLIENTS),
         "--duration", str(SECONDS), "--batch-size", "2", "--mix", "0.3MP:jpeg=3,0.2MP:png=1",
         "--api-key", key, "--wait", "240", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=420)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    counts = report["counts"]
    assert counts["rejected_5xx"] == 0 and counts["errors"] == 0, counts
    assert counts["batches_accepted"] == counts["batches_submitted"] > CLIENTS * 2, counts
    assert counts["jobs_unfinished"] == 0 and counts["jobs_failed"] == 0, counts
    with (out / "submits.csv").open() as f:
        accepted = {row["batch_id"]: int(row["images"]) for row in csv.DictReader(f)
                    if row["status"] == "202"}
    assert len(accepted) == counts["batches_accepted"]
    assert reconcile(settings_for(env), accepted, outputs_per_job=2) == {
        "succeeded": counts["images_submitted"]}
    print(f"soak: {counts['batches_accepted']} batches from {CLIENTS} clients in {SECONDS} s, "
          f"submit p99 {report['latency_ms']['submit']['p99']} ms")
