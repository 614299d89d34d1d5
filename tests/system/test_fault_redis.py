"""Redis killed and restarted mid-batch, with append-only persistence, as a deployment runs
(the scaler's reconciler beside the worker, the broker's visibility timeout at its default
hour): the queued jobs survive and run, the one running is handed back, every job ends
once with one set of outputs, nothing is left in flight, and the counts reconcile between
the 202, the job store and the blob store.

The running job is the reconciler's to hand back, not the broker's to redeliver. At the
connection loss Celery terminates a running task with late acks (it could no longer ack
it: `worker_cancel_long_running_tasks_on_connection_loss`, celery/celery#6654), and its
user guide says that the worker acknowledges the message of a child process terminated
by a signal "even when acks_late is enabled" (Tasks, the note under `acks_late`). While
this test relied on the broker alone, one CI run ended with a job still `running` 150 s
after the restart, its message gone. The worker's heartbeat no longer lists such a job,
so the reconciler hands it back (`core/reconcile.py`, `dead_holders`).
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis
from conftest import free_port, settings_for, wait_until
from helpers import jobs_of, reconciler_env, start_reconciling, submit, wait_batch

from imgburst.api import create_app
from imgburst.core.synthetic import photo_bytes
from imgburst.core.telemetry import in_flight, waiting

pytestmark = pytest.mark.slow  # real processes and waits: `-m "not slow"` leaves it out

SLOW = {"outputs": [{"name": "slow", "format": "png", "ops": [
    {"op": "resize", "width": 900}, {"op": "blur", "sigma": 12}, {"op": "rotate", "angle": 7},
    {"op": "resize", "width": 300}]}]}
JOBS = 60  # enough that many are still queued when Redis is killed, however fast the worker


def start_redis(port: int, data: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--dir", str(data), "--appendonly", "yes",
                             "--appendfsync", "everysec", "--save", ""],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)

    def up() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    wait_until(up, 20, "redis-server")
    return proc


def test_redis_restart_mid_batch_loses_nothing(base_env, start_worker, tmp_path):
    port, data = free_port(), tmp_path / "redis"
    data.mkdir()
    server = start_redis(port, data)
    env = reconciler_env(base_env | {"REDIS_URL": f"redis://127.0.0.1:{port}/0",
                                     "IMGBURST_TASK_TIME_LIMIT_S": "20"})
    broker = redis.Redis(port=port, socket_timeout=2)
    scaler = None
    try:
        client = create_app(settings_for(env)).test_client()
        start_worker(env, concurrency=1)
        scaler = start_reconciling(env, tmp_path / "scaler.log", broker)
        photos = [photo_bytes(seed, 1600, 1200) for seed in range(4)]
        batch = submit(client, [(f"p{i}.jpg", photos[i % 4]) for i in range(JOBS)], SLOW)
        assert batch["jobs"] == JOBS

        def counts() -> dict[str, int]:
            return client.get(f"/api/v1/batches/{batch['id']}").get_json()["counts"]

        wait_until(lambda: counts()["succeeded"] >= 2, 60, "the worker to finish 2 jobs")
        time.sleep(1.2)  # the queued messages are in the AOF (fsync every second)
        assert counts()["queued"] >= 10, counts()  # the kill lands mid-batch
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        time.sleep(2.0)
        server = start_redis(port, data)  # same data directory: the AOF is replayed
        batch = wait_batch(client, batch["id"], timeout=150, logs=tmp_path, broker=broker)
        wait_until(lambda: in_flight(broker) == 0 == waiting(broker), 30, "nothing in flight")
    finally:
        if scaler is not None:
            scaler.send_signal(signal.SIGTERM)
            scaler.wait(timeout=60)
        server.terminate()
        server.wait(timeout=10)
    assert batch["status"] == "succeeded", batch
    jobs = jobs_of(client, batch["id"])
    assert len(jobs) == JOBS and all(j["status"] == "succeeded" for j in jobs)
    assert all(len(j["outputs"]) == 1 for j in jobs)
    outputs = [p for p in (Path(env["IMGBURST_HOME"]) / "blobs").rglob("slow.png")]
    assert len(outputs) == JOBS  # one output per job in the blob store, none doubled
