"""Enqueueing a submission's jobs: every task intact, in order, few broker round trips;
its inputs stored where each put costs least."""

from __future__ import annotations

import base64
import json
import math

import redis
from conftest import settings_for
from helpers import submit
from redis.connection import Connection

from imgburst.api import create_app
from imgburst.api.batches import INLINE_PUT_BYTES
from imgburst.core.celery_app import PROCESS_IMAGE, PUBLISH_BATCH, QUEUE, enqueue_jobs, make_celery
from imgburst.core.synthetic import photo_bytes


def test_jobs_are_sent_intact_in_order_in_few_round_trips(base_env, monkeypatch):
    app = make_celery(settings_for(base_env))
    enqueue_jobs(app, ["warm-up"])  # connects; what follows counts only the publishing
    client = redis.Redis.from_url(base_env["REDIS_URL"])
    client.delete(QUEUE)
    sends = []
    original = Connection.send_packed_command

    def counting(self, command, check_health=True):  # type: ignore[no-untyped-def]
        sends.append(command)
        return original(self, command, check_health)

    monkeypatch.setattr(Connection, "send_packed_command", counting)
    ids = [f"job-{i:02d}" for i in range(40)]
    assert enqueue_jobs(app, ids) == 40
    monkeypatch.undo()
    assert len(sends) <= math.ceil(40 / PUBLISH_BATCH), f"{len(sends)} round trips for 40"
    messages = [json.loads(raw) for raw in reversed(client.lrange(QUEUE, 0, -1))]
    assert [m["headers"]["task"] for m in messages] == [PROCESS_IMAGE] * 40
    bodies = [json.loads(base64.b64decode(m["body"])) for m in messages]
    assert [body[0] for body in bodies] == [[job_id] for job_id in ids]
    assert len({m["properties"]["delivery_tag"] for m in messages}) == 40


def test_the_message_is_the_one_send_task_makes_by_default(base_env):
    """`enqueue_jobs` passes the arguments' log text and skips the queue's declaring: the
    message on the queue is what a plain `send_task` puts there, but for its ids."""
    app = make_celery(settings_for(base_env))
    client = redis.Redis.from_url(base_env["REDIS_URL"])
    client.delete(QUEUE)
    enqueue_jobs(app, ["3f2a-ours"])
    app.send_task(PROCESS_IMAGE, args=["3f2a-ours"], queue=QUEUE)
    ours, plain = (json.loads(raw) for raw in reversed(client.lrange(QUEUE, 0, -1)))
    differ = {"id", "root_id"}  # a task id of its own each
    assert {k: v for k, v in ours["headers"].items() if k not in differ} == \
        {k: v for k, v in plain["headers"].items() if k not in differ}
    assert ours["headers"]["argsrepr"] == "['3f2a-ours']"
    assert ours["body"] == plain["body"]


class RecordingPool:
    """Stands in for the API's upload threads: counts the puts handed to it."""

    def __init__(self) -> None:
        self.handed = 0

    def map(self, fn, items):  # type: ignore[no-untyped-def]
        items = list(items)
        self.handed += len(items)
        return [fn(item) for item in items]


def test_small_local_inputs_are_written_in_the_request_the_rest_by_the_upload_threads(
        base_env):
    """A small local put is a copy into the page cache that costs less than handing it to
    a thread; photos' copies overlap on the upload threads, and so do puts that are round
    trips (Azure)."""
    app = create_app(settings_for(base_env))
    svc = app.extensions["imgburst"]
    pool = RecordingPool()
    svc.uploads = pool
    small = [(f"s{i}.jpg", photo_bytes(i, 64, 48)) for i in range(3)]
    client = app.test_client()
    assert submit(client, small)["jobs"] == 3
    assert pool.handed == 0
    photo = photo_bytes(1, 2400, 1800)
    assert len(photo) > INLINE_PUT_BYTES
    assert submit(client, [*small, ("photo.jpg", photo)])["jobs"] == 4
    assert pool.handed == 4
    svc.blobs.round_trips = True  # as AzureBlobStore's
    assert submit(client, small)["jobs"] == 3
    assert pool.handed == 7
