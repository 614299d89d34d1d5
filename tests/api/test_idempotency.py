"""`Idempotency-Key` on creating requests: a retried submission makes one batch."""

from __future__ import annotations

import io
import time

from conftest import settings_for

from imgburst.api import create_app
from imgburst.api.idempotency import request_digest
from imgburst.core.store import JobStore, new_id
from imgburst.core.synthetic import photo_bytes

PHOTOS = [photo_bytes(i, 64, 48) for i in range(3)]


def upload(client, key: str | None, photos: list[bytes] = PHOTOS, name: str = "trip"):
    data = {"files": [(io.BytesIO(p), f"p{i}.jpg") for i, p in enumerate(photos)],
            "name": name}
    headers = {"Idempotency-Key": key} if key else {}
    return client.post("/api/v1/batches", data=data, headers=headers,
                       content_type="multipart/form-data")


def test_the_same_key_and_body_answer_as_the_first_and_make_one_batch(base_env):
    client = create_app(settings_for(base_env)).test_client()
    first = upload(client, "k-1")
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    again = upload(client, "k-1")  # a new multipart boundary: the same request all the same
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    other = upload(client, "k-1", PHOTOS[:2])
    assert other.status_code == 422 and other.get_json()["field"] == "Idempotency-Key"
    renamed = upload(client, "k-1", name="another trip")
    assert renamed.status_code == 422
    assert upload(client, "k-2").get_json()["id"] != first.get_json()["id"]
    assert upload(client, None).status_code == 202  # no key: a batch each time
    assert client.get("/api/v1/batches").get_json()["total"] == 3
    bad = upload(client, "ü" * 3)
    assert bad.status_code == 400 and bad.get_json()["field"] == "Idempotency-Key"
    refused = upload(client, "k-3", [b"not an image at all"])
    assert refused.status_code == 202  # a refused image is a failed job, still a batch


def test_a_key_whose_first_request_is_at_work_gets_409_then_its_batch_once_it_died(
        base_env):
    """The first request holds the key without an answer: 409 while it may still be at
    work; past IMGBURST_RECONCILE_GRACE_S it has died, and a retry makes its batch."""
    settings = settings_for(base_env | {"IMGBURST_RECONCILE_GRACE_S": "1"})
    app = create_app(settings)
    client = app.test_client()
    body = {"images": 2, "size": "1MP"}
    with app.test_request_context("/api/v1/demo/spike", method="POST", json=body):
        digest = request_digest()
    store = JobStore.from_settings(settings)
    batch_id = new_id()
    assert store.claim_key("", "spike-1", digest, batch_id, 1) == ("new", batch_id)
    busy = client.post("/api/v1/demo/spike", json=body, headers={"Idempotency-Key": "spike-1"})
    assert busy.status_code == 409 and busy.headers["Retry-After"] == "5"
    time.sleep(1.2)
    made = client.post("/api/v1/demo/spike", json=body, headers={"Idempotency-Key": "spike-1"})
    assert made.status_code == 202 and made.get_json()["id"] == batch_id
    replay = client.post("/api/v1/demo/spike", json=body,
                         headers={"Idempotency-Key": "spike-1"})
    assert replay.get_json()["id"] == batch_id and replay.headers["Idempotent-Replayed"]
    assert client.get("/api/v1/batches").get_json()["total"] == 1
    store.dispose()


def test_submit_sends_a_dropped_batch_again_with_its_key_and_makes_one_batch(
        base_env, start_service, start_worker, tmp_path):
    """The connection drops as the API answers (it made the batch): `imgburst submit`
    sends the same request again, once, with the same key, and gets that batch."""
    import subprocess
    import sys

    import requests
    from conftest import free_port, start_live_stack
    from helpers import Gate

    port = free_port()
    env = base_env | {"IMGBURST_PORT": str(port)}
    url = start_live_stack(env, start_service, start_worker)
    gate = Gate(("127.0.0.1", port), drop_posts=1)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, photo in enumerate(PHOTOS):
        (folder / f"p{i}.jpg").write_bytes(photo)
    result = subprocess.run(
        [sys.executable, "-m", "imgburst.cli", "submit", str(folder), "--wait",
         "--url", f"http://127.0.0.1:{gate.port}"], env=env, capture_output=True, text=True,
        timeout=120)
    assert result.returncode == 0, result.stderr
    batches = requests.get(f"{url}/api/v1/batches", timeout=5).json()
    assert batches["total"] == 1, batches
    assert result.stdout.strip().splitlines()[-1] == batches["items"][0]["id"]
    gate.shut()


def test_keys_older_than_a_day_are_free_again_and_purged(base_env):
    from datetime import timedelta

    from imgburst.core.store import utcnow

    store = JobStore.from_settings(settings_for(base_env))
    create_app(settings_for(base_env))  # migrates
    first = new_id()
    assert store.claim_key("alice", "k", "digest-1", first, 60) == ("new", first)
    store.finish_key("alice", "k", '{"body": {}}')
    assert store.claim_key("alice", "k", "digest-2", new_id(), 60) == ("mismatch", None)
    assert store.claim_key("bob", "k", "digest-2", first, 60)[0] == "new"  # per owner
    assert store.purge_keys(utcnow() - timedelta(days=1)) == 0
    assert store.purge_keys(utcnow() + timedelta(seconds=1)) == 2
    again = new_id()
    assert store.claim_key("alice", "k", "digest-2", again, 60) == ("new", again)
    store.dispose()
