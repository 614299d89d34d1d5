"""Job-end telemetry written by a pool process's thread: nothing a job hands over is lost
while Redis answers, a waiting client is woken, and a Redis outage stops nothing."""

from __future__ import annotations

import time

import redis
from conftest import settings_for

from imgburst.core.blobs import blob_store_from_settings
from imgburst.core.store import JobStore, NewJob, migrate
from imgburst.core.telemetry import (
    BATCH_CHANNEL,
    ENDED_KEY,
    TIMINGS_KEY,
    Ended,
    recent_timings,
)
from imgburst.worker import tasks
from imgburst.worker.end_sender import EndSender


def test_every_end_handed_over_is_written_and_its_batch_woken(redis_url):
    client = redis.Redis.from_url(redis_url)
    waiter = client.pubsub()
    waiter.subscribe(BATCH_CHANNEL.format(batch_id="b1"))
    waiter.get_message(timeout=1)  # the subscription's confirmation
    sender = EndSender(client)
    now = time.time()
    for i in range(500):  # handed over faster than one round trip each
        sender.send(Ended(f"job-{i}", (5, i), now, "b1" if i % 100 == 99 else None))
    assert sender.flush(timeout=5)
    assert client.zcard(ENDED_KEY) == 500
    assert sorted(run for _wait, run in recent_timings(client, now - 1)) == list(range(500))
    told = 0  # the batch's 5 ends, in as many messages as writes: "ended N" each
    while (message := waiter.get_message(timeout=0.5)) is not None:
        kind, count = message["data"].split()
        assert kind == b"ended"
        told += int(count)
    assert told == 5
    assert client.llen(TIMINGS_KEY) == 500


def test_a_redis_outage_loses_those_ends_and_stops_nothing(redis_url):
    broken = EndSender(redis.Redis(host="127.0.0.1", port=1, socket_timeout=0.2))
    broken.send(Ended("lost", (1, 1), time.time()))
    assert broken.flush(timeout=5)  # written off (best effort), never stuck
    working = redis.Redis.from_url(redis_url)
    broken.client = working  # Redis is back
    broken.send(Ended("after", (1, 1), time.time()))
    assert broken.flush(timeout=5)
    assert working.zscore(ENDED_KEY, "after") is not None
    assert working.zscore(ENDED_KEY, "lost") is None


def test_a_job_given_up_is_told_ended_as_any_other(base_env):
    """A job failed off its run's path (retries spent) wakes its batch's waiters too:
    they count job ends, and would otherwise wait for their long-poll's timeout."""
    settings = settings_for(base_env)
    store = JobStore.from_settings(settings)
    migrate(store.engine)
    client = redis.Redis.from_url(settings.redis_url)
    waiter = client.pubsub(ignore_subscribe_messages=True)
    waiter.subscribe(BATCH_CHANNEL.format(batch_id="b1"))
    store.create_batch("b1", {"outputs": []}, "upload:test",
                       [NewJob("j1", "a.jpg", "imgburst", "inputs/b1/j1/input.jpg", "jpeg", 10)])
    sender = EndSender(client)
    rt = tasks.Runtime(settings, store, blob_store_from_settings(settings), redis=client,
                       ends=sender)
    tasks._give_up(rt, "j1", "gave up after 6 tries: the blob store did not answer")
    assert sender.flush(timeout=5)
    message = None
    deadline = time.monotonic() + 5
    while message is None and time.monotonic() < deadline:
        message = waiter.get_message(timeout=1)
    assert message is not None and message["data"] == b"ended 1"
    assert store.get_job("j1").status == "failed"
    store.dispose()
