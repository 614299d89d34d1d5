"""The job store (MariaDB) unreachable for 10 s under a running batch, with real workers.

Workers meet the outage as they claim or finish jobs, retry with backoff, and finish
after recovery; the API answers writes with 503 + Retry-After meanwhile and still serves
what needs no store. Afterwards the 202s, the job store and the blob store reconcile."""

from __future__ import annotations

import io
import time

import pytest
from conftest import settings_for, wait_until
from helpers import Gate, reconcile, submit, wait_batch

from imgburst.api import create_app
from imgburst.core.synthetic import photo_bytes

pytestmark = pytest.mark.slow  # real processes and waits: `-m "not slow"` leaves it out

JOBS = 40  # enough that many are still to do when the store goes down, however fast


def test_database_down_for_10_s_workers_retry_and_nothing_is_lost(base_env, mysql_env,
                                                                    start_worker):
    gate = Gate((mysql_env["MYSQL_HOST"], int(mysql_env["MYSQL_PORT"])))
    env = base_env | mysql_env | {"MYSQL_PORT": str(gate.port)}
    settings = settings_for(env)
    client = create_app(settings).test_client()
    distinct = [photo_bytes(i, 1600, 1200) for i in range(4)]
    photos = [(f"p{i}.jpg", distinct[i % 4]) for i in range(JOBS)]  # many left at the cut
    batch = submit(client, photos)
    worker = start_worker(env, concurrency=2)

    def succeeded() -> int:
        return client.get(f"/api/v1/batches/{batch['id']}").get_json()["counts"]["succeeded"]

    wait_until(lambda: succeeded() >= 2, 60, "the first jobs to succeed")
    gate.shut()
    down = time.monotonic()
    refused = client.post("/api/v1/batches", content_type="multipart/form-data",
                          data={"files": [(io.BytesIO(photos[0][1]), "x.jpg")]})
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
    assert mysql_env["MYSQL_PASSWORD"] not in refused.get_data(as_text=True)
    assert client.get("/version").status_code == 200
    assert client.get("/healthz").status_code == 200
    wait_until(lambda: "transient error, retrying" in worker.output(), 30,
               "a worker to meet the outage and schedule a retry")
    time.sleep(max(0.0, 10 - (time.monotonic() - down)))
    gate.reopen()
    batch = wait_batch(client, batch["id"], timeout=120)
    assert batch["status"] == "succeeded", batch
    assert reconcile(settings, {batch["id"]: JOBS}, outputs_per_job=2) == {"succeeded": JOBS}
    assert mysql_env["MYSQL_PASSWORD"] not in worker.output()
    again = submit(client, photos[:1])  # and new work flows again
    assert wait_batch(client, again["id"])["status"] == "succeeded"
