"""A worker whose consumer went deaf (alive, heartbeating, never reading its queue, as
Celery's Redis consumer can after a broker reconnect) restarts it, and only it: the
policy's samples, then a real worker made deaf the way kombu leaves one."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from conftest import settings_for, wait_until
from helpers import jobs_of, submit, wait_batch

from imgburst.api import create_app
from imgburst.core.synthetic import photo_bytes
from imgburst.core.telemetry import waiting
from imgburst.worker.stall import StallWatch

TESTS = Path(__file__).resolve().parents[1]


def samples(watch: StallWatch, seconds: int, idle: bool = True, processed: int = 0,
            queued: int = 5) -> list[bool]:
    return [watch.observe(float(t), idle, processed, lambda: queued) for t in range(seconds)]


def test_a_consumer_idle_beside_waiting_messages_is_stalled_after_the_window():
    watch = StallWatch(after_s=10)
    fired = samples(watch, 13)  # the first sample only sets the count of tasks started
    assert fired.index(True) == 11 and fired.count(True) == 1  # then it watches afresh


@pytest.mark.parametrize("case", ["queue empty", "busy", "progress"])
def test_a_listening_worker_is_never_stalled(case):
    watch = StallWatch(after_s=3)
    reads = []

    def queued() -> int:
        reads.append(1)
        return 0 if case == "queue empty" else 4

    for t in range(60):
        busy = case == "busy" and t % 5 != 0  # free for a moment between jobs
        processed = t if case == "progress" else 0  # tiny jobs, done between samples
        assert not watch.observe(float(t), not busy, processed, queued)
    if case == "busy":
        assert len(reads) == 11  # the queue is read only when the rest says stall


def test_one_sample_of_progress_or_work_restarts_the_window():
    watch = StallWatch(after_s=5)
    assert not any(samples(watch, 4))  # from t=1 (t=0 set the count)
    assert not watch.observe(4.0, False, 0, lambda: 5)  # took a job
    assert not any(watch.observe(float(t), True, 0, lambda: 5) for t in range(5, 10))
    assert watch.observe(10.0, True, 0, lambda: 5)
    assert not watch.observe(11.0, True, 1, lambda: 5)  # a task started: no stall


@pytest.mark.slow
def test_a_deaf_consumer_is_restarted_and_its_queue_drains(base_env, start_worker):
    """A deaf worker with the watch on: the consumer is restarted and every job runs once.
    The same deaf worker with the watch off: its jobs wait (the fault is real)."""
    env = base_env | {"PYTHONPATH": str(TESTS)}
    api = create_app(settings_for(env)).test_client()
    broker = redis.Redis.from_url(env["REDIS_URL"])
    files = [(f"p{i}.jpg", photo_bytes(i, 320, 240)) for i in range(4)]
    watched = start_deaf(start_worker, env | {"IMGBURST_WORKER_STALL_S": "3"})
    batch = submit(api, files)
    done = wait_batch(api, batch["id"], timeout=60)
    assert done["status"] == "succeeded", (done, watched.output())
    assert all(job["attempts"] == 1 for job in jobs_of(api, batch["id"]))
    log = watched.output()
    assert "took no message for 3 s while its queue held some" in log
    assert "Connection to broker lost" in log  # Celery's own reconnect path did the rest
    watched.stop()

    deaf = start_deaf(start_worker, env | {"IMGBURST_WORKER_STALL_S": "0"})
    batch = submit(api, files)
    time.sleep(8)
    counts = api.get(f"/api/v1/batches/{batch['id']}").get_json()["counts"]
    assert counts["queued"] == 4 and waiting(broker) == 4, (counts, deaf.output())


def start_deaf(start_worker, env: dict[str, str]):
    """A worker of `deaf_worker`, once its consumer is deaf and the BRPOP it sent before
    has timed out (so no message is popped into a socket nobody reads)."""
    worker = start_worker(env, concurrency=1, module="deaf_worker")
    wait_until(lambda: "no longer reads its queue" in worker.output(), 30, "the consumer deaf")
    time.sleep(1.5)  # kombu's BRPOP waits 1 s on the server
    return worker
