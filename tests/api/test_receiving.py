"""Streamed batches through the app: open, an image a request, close; resends, resumes,
ownership, limits and the long-poll."""

from __future__ import annotations

import threading
import time
from urllib.parse import quote

import pytest
import redis
from conftest import settings_for
from test_auth import ALICE, BOB

from imgburst.api import create_app
from imgburst.api.long_poll import MIN_SPACING_S
from imgburst.core.reconcile import Reconciler
from imgburst.core.store import JobStore
from imgburst.core.synthetic import photo_bytes
from imgburst.core.telemetry import UNSENT_KEY, record_ended

PHOTOS = [photo_bytes(i, 64, 48) for i in range(4)]


def open_batch(client, **body):
    return client.post("/api/v1/batches", json={"receive": {}} | body)


def put(client, batch_id: str, name: str, data: bytes, headers=None):
    return client.put(f"/api/v1/batches/{batch_id}/images/{quote(name)}", data=data,
                      headers=headers or {})


@pytest.fixture
def client(base_env):
    return create_app(settings_for(base_env)).test_client()


def test_a_streamed_batch_receives_its_images_one_request_each_and_closes(client):
    opened = open_batch(client, name="trip")
    assert opened.status_code == 201, opened.get_json()
    batch = opened.get_json()
    assert batch["status"] == "receiving" and batch["jobs"] == 0 and batch["closed_at"] is None
    assert batch["links"]["close"] == f"/api/v1/batches/{batch['id']}/close"
    first = put(client, batch["id"], "day1/IMG_0001.jpg", PHOTOS[0])
    assert first.status_code == 201 and first.get_json()["status"] == "queued"
    assert first.get_json()["input"] == "day1/IMG_0001.jpg"
    put(client, batch["id"], "day1/IMG_0002.jpg", PHOTOS[1])
    refused = put(client, batch["id"], "notes.jpg", b"not an image")
    assert refused.status_code == 201 and refused.get_json()["status"] == "failed"
    assert refused.get_json()["error"].startswith("unsupported format: not a known image")
    view = client.get(f"/api/v1/batches/{batch['id']}").get_json()
    assert view["status"] == "receiving" and view["jobs"] == 3
    assert view["counts"]["queued"] == 2 and view["counts"]["failed"] == 1
    short = client.post(f"/api/v1/batches/{batch['id']}/close", json={"images": 4})
    assert short.status_code == 409 and "holds 3 images, not 4" in short.get_json()["detail"]
    closed = client.post(f"/api/v1/batches/{batch['id']}/close", json={"images": 3})
    assert closed.status_code == 200
    assert closed.get_json()["status"] == "queued" and closed.get_json()["closed_by"] == "client"
    late = put(client, batch["id"], "late.jpg", PHOTOS[2])
    assert late.status_code == 409 and "closed" in late.get_json()["detail"]
    again = client.post(f"/api/v1/batches/{batch['id']}/close")
    assert again.status_code == 200  # closing twice is a no-op
    jobs = client.get(f"/api/v1/batches/{batch['id']}/jobs").get_json()["items"]
    assert [j["input"] for j in jobs] == ["day1/IMG_0001.jpg", "day1/IMG_0002.jpg", "notes.jpg"]


def test_a_resend_is_a_no_op_and_the_same_name_with_other_bytes_is_refused(client):
    batch_id = open_batch(client).get_json()["id"]
    first = put(client, batch_id, "a.jpg", PHOTOS[0]).get_json()
    again = put(client, batch_id, "a.jpg", PHOTOS[0])
    assert again.status_code == 200
    assert again.get_json()["id"] == first["id"] and again.get_json()["duplicate"] is True
    other = put(client, batch_id, "a.jpg", PHOTOS[1])
    assert other.status_code == 409 and "other bytes" in other.get_json()["detail"]
    assert client.get(f"/api/v1/batches/{batch_id}").get_json()["jobs"] == 1


def test_two_senders_of_one_image_at_once_make_one_job(base_env):
    app = create_app(settings_for(base_env))
    batch_id = open_batch(app.test_client()).get_json()["id"]
    answers: list = []
    start = threading.Barrier(6)

    def send() -> None:
        start.wait()
        answers.append(put(app.test_client(), batch_id, "same.jpg", PHOTOS[0]))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.status_code for a in answers) == [200] * 5 + [201]
    assert len({a.get_json()["id"] for a in answers}) == 1
    view = app.test_client().get(f"/api/v1/batches/{batch_id}").get_json()
    assert view["jobs"] == 1


def test_resume_finds_the_open_batch_and_reopens_one_closed_for_idleness(base_env, redis_url):
    settings = settings_for(base_env)
    client = create_app(settings).test_client()
    first = open_batch(client, receive={"resume": "folder-1"})
    assert first.status_code == 201 and first.get_json()["resumed"] is False
    batch_id = first.get_json()["id"]
    put(client, batch_id, "a.jpg", PHOTOS[0])
    resumed = open_batch(client, receive={"resume": "folder-1"})
    assert resumed.status_code == 200 and resumed.get_json()["id"] == batch_id
    assert resumed.get_json()["resumed"] is True
    other_recipe = open_batch(client, receive={"resume": "folder-1"}, preset="avatar")
    assert other_recipe.status_code == 409 and other_recipe.get_json()["field"] == "recipe"
    store = JobStore.from_settings(settings)
    assert store.close_batch(batch_id, "idle")
    cut = client.get(f"/api/v1/batches/{batch_id}").get_json()
    assert cut["closed_by"] == "idle" and cut["status"] != "receiving"
    refused = put(client, batch_id, "b.jpg", PHOTOS[1])
    assert refused.status_code == 409 and "idleness" in refused.get_json()["detail"]
    reopened = open_batch(client, receive={"resume": "folder-1"})
    assert reopened.status_code == 200 and reopened.get_json()["id"] == batch_id
    assert reopened.get_json()["status"] == "receiving"
    assert put(client, batch_id, "b.jpg", PHOTOS[1]).status_code == 201
    client.post(f"/api/v1/batches/{batch_id}/close", json={"images": 2})
    fresh = open_batch(client, receive={"resume": "folder-1"})  # closed by its client: new
    assert fresh.status_code == 201 and fresh.get_json()["id"] != batch_id


def test_an_abandoned_batch_is_closed_by_the_reconciler_and_says_it_was_cut(base_env):
    settings = settings_for(base_env)
    app = create_app(settings)
    client = app.test_client()
    batch_id = open_batch(client).get_json()["id"]
    put(client, batch_id, "a.jpg", PHOTOS[0])
    svc = app.extensions["imgburst"]
    events: list = []
    reconciler = Reconciler(svc.store, svc.celery, svc.redis,
                            lambda kind, **f: events.append((kind, f)), reserve_s=60,
                            receive_idle_s=0.2)
    reconciler.idle_batches()
    assert client.get(f"/api/v1/batches/{batch_id}").get_json()["status"] == "receiving"
    time.sleep(0.3)
    reconciler.idle_batches()
    view = client.get(f"/api/v1/batches/{batch_id}").get_json()
    assert view["closed_by"] == "idle" and view["status"] == "queued"
    assert events and events[0][0] == "closed-idle" and events[0][1]["batch"] == batch_id


def test_an_image_recorded_but_never_sent_is_sent_by_the_reconciler(base_env):
    settings = settings_for(base_env | {"IMGBURST_RECONCILE_GRACE_S": "1"})
    app = create_app(settings)
    svc = app.extensions["imgburst"]
    client = app.test_client()
    batch_id = open_batch(client).get_json()["id"]
    job_id = put(client, batch_id, "a.jpg", PHOTOS[0]).get_json()["id"]
    assert svc.redis.zscore(UNSENT_KEY, job_id) is None  # sent: forgotten at once
    svc.redis.zadd(UNSENT_KEY, {job_id: time.time() - 5})  # as if the API died before
    sent: list = []
    reconciler = Reconciler(svc.store, svc.celery, svc.redis, lambda *a, **f: sent.append(f),
                            reserve_s=60, grace_s=1)
    reconciler.unsent_images()
    assert sent and sent[0]["jobs"] == 1
    assert svc.redis.zscore(UNSENT_KEY, job_id) is None


def test_streamed_images_are_bounded_one_by_one_not_by_the_batch(base_env):
    client = create_app(settings_for(base_env | {"IMGBURST_MAX_FILE_MB": "1",
                                                 "IMGBURST_MAX_FILES": "2"})).test_client()
    batch_id = open_batch(client).get_json()["id"]
    for i in range(3):  # more than IMGBURST_MAX_FILES: a stream has no such cap
        assert put(client, batch_id, f"{i}.jpg", photo_bytes(i, 32, 32)).status_code == 201
    big = put(client, batch_id, "big.jpg", b"\xff\xd8" + bytes(2 << 20))
    assert big.status_code == 413 and "IMGBURST_MAX_FILE_MB" in big.get_json()["detail"]
    empty = put(client, batch_id, "empty.jpg", b"")
    assert empty.status_code == 400 and empty.get_json()["field"] == "body"
    nameless = client.put(f"/api/v1/batches/{batch_id}/images/..%2F", data=PHOTOS[0])
    assert nameless.status_code in (400, 404)
    missing = put(client, "nope", "a.jpg", PHOTOS[0])
    assert missing.status_code == 404
    bad = client.post("/api/v1/batches", json={"receive": {"resume": "x" * 65}})
    assert bad.status_code == 400 and bad.get_json()["field"] == "receive.resume"
    both = client.post("/api/v1/batches", json={"receive": {}, "source": {}})
    assert both.status_code == 400
    unknown = client.post("/api/v1/batches", json={"receive": {"folder": "x"}})
    assert unknown.status_code == 400 and "receive.folder" in unknown.get_json()["detail"]


def test_a_keys_images_in_flight_are_bounded_with_429_and_retry_after(base_env):
    env = base_env | {"IMGBURST_AUTH": "on", "IMGBURST_API_KEYS": f"alice={ALICE},bob={BOB}",
                      "IMGBURST_QUOTA_IN_FLIGHT": "2", "IMGBURST_SUBMIT_RATE": "1/minute"}
    client = create_app(settings_for(env)).test_client()
    alice = {"Authorization": f"Bearer {ALICE}"}
    bob = {"Authorization": f"Bearer {BOB}"}
    batch_id = client.post("/api/v1/batches", json={"receive": {}}, headers=alice).get_json()["id"]
    assert put(client, batch_id, "1.jpg", PHOTOS[0], alice).status_code == 201
    assert put(client, batch_id, "2.jpg", PHOTOS[1], alice).status_code == 201
    third = put(client, batch_id, "3.jpg", PHOTOS[2], alice)
    assert third.status_code == 429 and third.headers["Retry-After"] == "2"
    assert "IMGBURST_QUOTA_IN_FLIGHT" in third.get_json()["detail"]
    assert put(client, batch_id, "1.jpg", PHOTOS[0], alice).status_code == 200  # a resend
    assert put(client, batch_id, "4.jpg", PHOTOS[3], bob).status_code == 404  # not bob's
    store = JobStore.from_settings(settings_for(env))
    for job in client.get(f"/api/v1/batches/{batch_id}/jobs", headers=alice).get_json()["items"]:
        store.fail_job(job["id"], "done for the test")
    assert put(client, batch_id, "3.jpg", PHOTOS[2], alice).status_code == 201
    # an image is no submission: only the opening counted against IMGBURST_SUBMIT_RATE
    assert client.post("/api/v1/batches", json={"receive": {}},
                       headers=alice).status_code == 429


def test_waiting_on_a_batch_answers_when_it_changes_or_304_after_the_wait(base_env):
    app = create_app(settings_for(base_env))
    client = app.test_client()
    batch_id = open_batch(client).get_json()["id"]
    first = client.get(f"/api/v1/batches/{batch_id}")
    tag = first.headers["ETag"]
    assert client.get(f"/api/v1/batches/{batch_id}",
                      headers={"If-None-Match": tag}).status_code == 304
    started = time.monotonic()
    quiet = client.get(f"/api/v1/batches/{batch_id}?wait=0.5", headers={"If-None-Match": tag})
    assert quiet.status_code == 304 and 0.45 < time.monotonic() - started < 3
    threading.Timer(0.5, lambda: put(app.test_client(), batch_id, "a.jpg", PHOTOS[0])).start()
    started = time.monotonic()
    woken = client.get(f"/api/v1/batches/{batch_id}?wait=20", headers={"If-None-Match": tag})
    took = time.monotonic() - started
    assert woken.status_code == 200 and woken.get_json()["jobs"] == 1
    assert 0.4 < took < 2, took  # woken by the image, not at the wait's end
    bad = client.get(f"/api/v1/batches/{batch_id}?wait=99", headers={"If-None-Match": tag})
    assert bad.status_code == 400 and bad.get_json()["field"] == "wait"


def test_a_waiter_learns_of_the_batchs_end_at_once_and_the_store_is_asked_once(base_env,
                                                                                monkeypatch):
    """Progress answers are spaced MIN_SPACING_S apart, but the end comes at once, even
    when it follows another job's end by milliseconds (the last jobs of a batch on two
    pool processes). The workers' messages count the ends ("ended N"): the store is
    asked whether the batch ended only when the count says it may have, not per end."""
    settings = settings_for(base_env)
    app = create_app(settings)
    client = app.test_client()
    batch_id = open_batch(client).get_json()["id"]
    for i in range(5):
        put(client, batch_id, f"{i}.jpg", PHOTOS[i % len(PHOTOS)])
    client.post(f"/api/v1/batches/{batch_id}/close")
    tag = client.get(f"/api/v1/batches/{batch_id}").headers["ETag"]
    store = JobStore.from_settings(settings)
    broker = redis.Redis.from_url(settings.redis_url)
    jobs = [j["id"] for j in client.get(f"/api/v1/batches/{batch_id}/jobs")
            .get_json()["items"]]
    asked = []
    settled = JobStore.settled
    monkeypatch.setattr(JobStore, "settled",
                        lambda self, b: asked.append(b) or settled(self, b))

    def end(job_id: str) -> None:  # as a worker's job ends are told (worker/end_sender.py)
        store.fail_job(job_id, "done for the test")
        record_ended(broker, job_id, None, batch_id=batch_id)

    for n, job_id in enumerate(jobs):
        threading.Timer(0.1 + 0.01 * n, end, (job_id,)).start()
    started = time.monotonic()
    answer = client.get(f"/api/v1/batches/{batch_id}?wait=20", headers={"If-None-Match": tag})
    took = time.monotonic() - started
    assert answer.get_json()["status"] == "failed", answer.get_json()
    assert took < 0.14 + MIN_SPACING_S / 2, took
    assert len(asked) == 1, asked


def test_a_waiter_learns_at_once_that_its_batch_was_cancelled(client):
    """A cancel ends the jobs that had not started, with no worker to tell it."""
    batch_id = open_batch(client).get_json()["id"]
    put(client, batch_id, "a.jpg", PHOTOS[0])
    client.post(f"/api/v1/batches/{batch_id}/close")
    tag = client.get(f"/api/v1/batches/{batch_id}").headers["ETag"]
    threading.Timer(0.2, lambda: client.application.test_client()
                    .delete(f"/api/v1/batches/{batch_id}")).start()
    started = time.monotonic()
    answer = client.get(f"/api/v1/batches/{batch_id}?wait=20", headers={"If-None-Match": tag})
    assert answer.get_json()["status"] == "cancelled", answer.get_json()
    assert time.monotonic() - started < 0.2 + MIN_SPACING_S, time.monotonic() - started
