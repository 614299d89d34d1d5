"""Redis killed and restarted mid-batch, with append-only persistence: the queued jobs
survive and run, the one running is redelivered, every job ends once with one set of
outputs, and the counts reconcile between the 202, the job store and the blob store."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis
from conftest import free_port, settings_for, wait_until
from helpers import jobs_of, submit, wait_batch

from imgburst.api import create_app
from imgburst.core.synthetic import photo_bytes

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
    env = base_env | {"REDIS_URL": f"redis://127.0.0.1:{port}/0",
                      "IMGBURST_TASK_TIME_LIMIT_S": "20", "IMGBURST_VISIBILITY_TIMEOUT_S": "25"}
    try:
        client = create_app(settings_for(env)).test_client()
        start_worker(env, concurrency=1)
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
        batch = wait_batch(client, batch["id"], timeout=150)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert batch["status"] == "succeeded", batch
    jobs = jobs_of(client, batch["id"])
    assert len(jobs) == JOBS and all(j["status"] == "succeeded" for j in jobs)
    assert all(len(j["outputs"]) == 1 for j in jobs)
    outputs = [p for p in (Path(env["IMGBURST_HOME"]) / "blobs").rglob("slow.png")]
    assert len(outputs) == JOBS  # one output per job in the blob store, none doubled
