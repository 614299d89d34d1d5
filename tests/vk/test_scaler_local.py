"""The burst scaler with the local backend: real Redis, real Celery worker processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import redis
from conftest import settings_for, wait_until
from helpers import jobs_of, submit, wait_batch

from imgburst.api import create_app
from imgburst.core.synthetic import photo_bytes
from imgburst.core.telemetry import live_workers
from imgburst.vk.events import EventLog

pytestmark = pytest.mark.slow  # real processes and waits: `-m "not slow"` leaves it out


def test_spike_bursts_then_drains_back_without_losing_or_repeating_a_job(
        base_env, start_worker, tmp_path):
    env = base_env | {"SCALER_MAX_BURST": "3", "SCALER_MAX_STEP": "3", "SCALER_COOLDOWN_S": "3",
                      "SCALER_POLL_S": "1", "SCALER_SLOTS_PER_WORKER": "1"}
    client = create_app(settings_for(env)).test_client()
    broker = redis.Redis.from_url(env["REDIS_URL"])
    events = EventLog(broker)
    start_worker(env, concurrency=1)  # the base pool
    log = (tmp_path / "scaler.log").open("wb")
    scaler = subprocess.Popen([sys.executable, "-m", "imgburst.cli", "scaler"], env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: any(e["kind"] == "scaler-started" for e in events.recent()), 30,
                   "the scaler to start")
        photos = [photo_bytes(seed, 1600, 1200) for seed in range(8)]
        batch = submit(client, [(f"p{i}.jpg", photos[i % 8]) for i in range(200)])
        spike = time.time()
        batch = wait_batch(client, batch["id"], timeout=180)
        assert batch["status"] == "succeeded" and batch["counts"]["succeeded"] == 200

        consuming = [e for e in events.recent(200) if e["kind"] == "burst-consuming"]
        assert consuming, "no burst worker started"
        first = min(e["at"] for e in consuming)
        print(f"first burst worker consuming {first - spike:.2f} s after the spike")
        # ~1.5 s on an idle machine (bench/burst.py); the bound leaves room for a busy CI
        assert first - spike <= 4.0, f"first burst worker consumed {first - spike:.2f} s after"

        jobs = jobs_of(client, batch["id"])
        assert all(j["attempts"] == 1 for j in jobs), "a job ran twice"
        assert all(len(j["outputs"]) == 2 for j in jobs)
        by_pool = {j["worker"].split("@")[0] for j in jobs}
        assert by_pool == {"base", "burst"}, by_pool

        def burst_gone() -> bool:
            return not [w for w in live_workers(broker) if w.pool == "burst"]

        wait_until(burst_gone, 60, "the burst pool to drain back to 0")

        def drained_all() -> bool:
            recent = events.recent(300)
            drained = [e["worker"] for e in recent if e["kind"] == "drained"]
            started = [n for e in recent if e["kind"] == "decision" for n in e["started"]]
            return sorted(drained) == sorted(started)

        wait_until(drained_all, 30, "every started burst worker to be drained and removed")
        recent = events.recent(300)
        drained = [e for e in recent if e["kind"] == "drained"]
        assert not any(e["timed_out"] for e in drained)
        downs = [e for e in recent if e["kind"] == "decision" and e["stopping"]]
        assert downs and all(e["reason"].startswith("scale down") for e in downs)
        assert [w.pool for w in live_workers(broker)] == ["base"], "the base pool is never touched"
    finally:
        scaler.send_signal(signal.SIGTERM)
        assert scaler.wait(timeout=60) == 0
        log.close()


def test_a_worker_is_registered_before_its_loop_can_take_a_task(redis_url):
    """The first heartbeat is written when `heartbeat.start` returns (as `worker_ready`
    fires, just before the consumer's loop runs), not later from the thread: else a task
    can be seen in flight on a worker that is not in the registry yet."""
    from types import SimpleNamespace

    from imgburst.core.celery_app import QUEUE
    from imgburst.worker import heartbeat

    broker = redis.Redis.from_url(redis_url)
    consumer = SimpleNamespace(hostname="base@host-1", pool=SimpleNamespace(num_processes=2),
                               task_consumer=SimpleNamespace(queues=[SimpleNamespace(name=QUEUE)]))
    beat = heartbeat.start(consumer, redis_url)
    try:
        (info,) = live_workers(broker)  # no wait: written before start returned
        assert (info.name, info.pool, info.concurrency, info.consuming) == (
            "base@host-1", "base", 2, True)
    finally:
        beat.stopping.set()
        beat.join(timeout=5)
    assert live_workers(broker) == [], "a stopped heartbeat removes itself"


def test_signals_count_running_work_that_llen_misses(base_env, start_worker):
    """LLEN alone (KEDA) says 0 while a job runs; waiting + unacked says 1."""
    from imgburst.core.telemetry import NUDGE_CHANNEL, in_flight, waiting

    env = base_env | {"IMGBURST_TASK_TIME_LIMIT_S": "60", "IMGBURST_VISIBILITY_TIMEOUT_S": "61"}
    client = create_app(settings_for(env)).test_client()
    broker = redis.Redis.from_url(env["REDIS_URL"])
    nudges = broker.pubsub(ignore_subscribe_messages=True)
    nudges.subscribe(NUDGE_CHANNEL)
    nudges.get_message(timeout=1)
    slow = {"outputs": [{"name": "full", "format": "png", "ops": []}]}
    batch = submit(client, [("a.jpg", photo_bytes(1, 3000, 2000))], slow)
    assert nudges.get_message(timeout=2) is not None, "submit must wake the scaler"
    assert (waiting(broker), in_flight(broker)) == (1, 0)
    worker = start_worker(env, concurrency=1)
    wait_until(lambda: in_flight(broker) == 1, 30, "the job to be taken")
    assert broker.llen("images") == 0 and waiting(broker) == 0
    (beat,) = live_workers(broker)
    assert beat.pool == "base" and beat.consuming and beat.concurrency == 1
    wait_until(lambda: live_workers(broker)[0].active == 1, 10, "the heartbeat to show the task")
    wait_batch(client, batch["id"])
    wait_until(lambda: in_flight(broker) == 0, 10, "the ack")
    wait_until(lambda: live_workers(broker)[0].processed == 1, 10, "processed to count it")
    worker.stop()
    assert live_workers(broker) == [], "a stopped worker removes its heartbeat"


def test_a_running_scaler_says_it_is_alive(base_env, start_service):
    """`imgburst alive scaler`, the scaler pods' liveness probe: leader or standby, its
    loop touches a file each turn."""
    def alive() -> int:
        return subprocess.run([sys.executable, "-m", "imgburst.cli", "alive", "scaler"],
                              env=base_env, capture_output=True, timeout=30).returncode

    assert alive() == 1  # no scaler has run here yet
    start_service(base_env, "scaler")
    wait_until(lambda: alive() == 0, 30, "the scaler's loop to turn")
