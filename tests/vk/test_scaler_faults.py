"""The burst scaler and its workers killed at the worst moments (local backend, real
processes): the scaler SIGKILLed right after a scale-up, a burst worker SIGKILLed while
it is being drained. Each ends with every accepted job final, one set of outputs per
job, nothing orphaned, and the 202s, job store and blob store reconciled."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from conftest import settings_for, wait_until
from flask.testing import FlaskClient
from helpers import (
    FINAL,
    reconcile,
    start_scaler,
    submit,
    submit_until_a_busy_drain,
    wait_batch,
)

from imgburst.api import create_app
from imgburst.core.synthetic import photo_bytes
from imgburst.core.telemetry import live_workers
from imgburst.vk.events import EventLog

pytestmark = pytest.mark.slow  # real processes and waits: `-m "not slow"` leaves it out

MAX_BURST = 2


def burst_processes(home: str) -> list[int]:
    """Main processes of this test's burst workers (not their pool children)."""
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
            status = (proc / "status").read_text()
        except OSError:
            continue
        if b"burst" not in cmdline or b"worker" not in cmdline or "zombie" in status:
            continue
        if f"IMGBURST_HOME={home}".encode() in environ:
            ppid = int(next(x for x in status.splitlines() if x.startswith("PPid:")).split()[1])
            found[int(proc.name)] = ppid
    return [pid for pid, ppid in found.items() if ppid not in found]


def scaler_env(base_env: dict[str, str], cooldown: str) -> dict[str, str]:
    return base_env | {"SCALER_MAX_BURST": str(MAX_BURST), "SCALER_MAX_STEP": "2",
                       "SCALER_COOLDOWN_S": cooldown, "SCALER_POLL_S": "0.5",
                       # a SIGKILLed worker's unacknowledged job comes back within seconds
                       "IMGBURST_TASK_TIME_LIMIT_S": "20",
                       "IMGBURST_VISIBILITY_TIMEOUT_S": "21"}


def start_stack(env: dict[str, str], start_worker: Callable[..., object], log: Path
                ) -> tuple[FlaskClient, redis.Redis, EventLog, subprocess.Popen[bytes]]:
    """Test client, broker, event log and a started scaler (after a base worker)."""
    client = create_app(settings_for(env)).test_client()
    broker = redis.Redis.from_url(env["REDIS_URL"])
    events = EventLog(broker)
    start_worker(env, concurrency=1)
    scaler = start_scaler(env, log)
    try:
        wait_until(lambda: any(e["kind"] == "scaler-started" for e in events.recent()), 30,
                   "the scaler to start")
    except AssertionError:
        scaler.kill()
        raise
    return client, broker, events, scaler


def photos(count: int) -> list[tuple[str, bytes]]:
    distinct = [photo_bytes(seed, 1600, 1200) for seed in range(6)]
    return [(f"p{i}.jpg", distinct[i % 6]) for i in range(count)]


def test_scaler_killed_mid_scale_up_leaves_no_orphans_and_no_double_pool(
        base_env, start_worker, tmp_path):
    env = scaler_env(base_env, cooldown="3")
    settings = settings_for(env)
    log = tmp_path / "scaler.log"
    client, broker, events, scaler = start_stack(env, start_worker, log)
    batch = submit(client, photos(80))

    def scaled_up() -> bool:
        return any(e["kind"] == "decision" and e["started"] for e in events.recent(50))

    wait_until(scaled_up, 30, "a scale-up decision")
    wait_until(lambda: burst_processes(env["IMGBURST_HOME"]), 10, "a burst worker process")
    scaler.kill()  # mid-scale-up: no drain, no goodbye
    scaler.wait()
    wait_until(lambda: not burst_processes(env["IMGBURST_HOME"]), 60,
               "the dead scaler's burst workers to shut down by themselves")

    restarted = start_scaler(env, log)
    most_consuming = 0
    try:
        deadline = time.monotonic() + 180
        while client.get(f"/api/v1/batches/{batch['id']}").get_json()["status"] not in FINAL:
            assert time.monotonic() < deadline, "the batch did not finish"
            consuming = [w for w in live_workers(broker) if w.pool == "burst" and w.consuming]
            most_consuming = max(most_consuming, len(consuming))
            assert len(burst_processes(env["IMGBURST_HOME"])) <= MAX_BURST
            time.sleep(0.2)
        assert most_consuming <= MAX_BURST
        batch = wait_batch(client, batch["id"])
        assert batch["status"] == "succeeded", batch
        assert reconcile(settings, {batch["id"]: 80}, outputs_per_job=2) == {"succeeded": 80}
        wait_until(lambda: not burst_processes(env["IMGBURST_HOME"]), 60,
                   "the restarted scaler to drain its pool after the cooldown")
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(timeout=60) == 0, log.read_text()
    assert not burst_processes(env["IMGBURST_HOME"])


def test_burst_worker_killed_during_its_drain_loses_nothing(base_env, start_worker,
                                                            tmp_path):
    """A burst worker is SIGKILLed while the scaler drains it with a job in hand: the job
    comes back (visibility timeout) and ends once; the scaler finishes the drain.

    Two jobs per worker as the target makes the scaler shrink while every worker is still
    busy (4 jobs left need 1 burst worker, not 2), so the drain meets a job in hand; should
    one batch still end without such a drain, another batch is submitted (at most 3)."""
    env = scaler_env(base_env, cooldown="1") | {"SCALER_MAX_STEP": "1",
                                                 "SCALER_TARGET_PER_WORKER": "2"}
    settings = settings_for(env)
    log = tmp_path / "scaler.log"
    client, broker, events, scaler = start_stack(env, start_worker, log)
    try:
        slow = {"outputs": [{"name": "full", "format": "png", "ops": []}]}
        big = photo_bytes(9, 4000, 3000)
        accepted, victim = submit_until_a_busy_drain(
            client, broker, [(f"big{i}.jpg", big) for i in range(12)], slow, str(log))
        os.kill(victim.pid, signal.SIGKILL)
        for batch_id in accepted:
            batch = wait_batch(client, batch_id, timeout=180)
            assert batch["status"] == "succeeded", batch
        assert reconcile(settings, accepted, outputs_per_job=1) == {
            "succeeded": 12 * len(accepted)}
        wait_until(lambda: not burst_processes(env["IMGBURST_HOME"]), 90,
                   "every burst worker to be gone")
        wait_until(lambda: any(e["kind"] == "drained" and e["worker"] == victim.name
                               for e in events.recent(300)), 30, "the victim's drain to end")
    finally:
        scaler.send_signal(signal.SIGTERM)
        assert scaler.wait(timeout=60) == 0, log.read_text()
