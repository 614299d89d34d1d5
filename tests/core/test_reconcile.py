"""The reconciler (in the scaler's loop) with real processes: a worker killed whole and a
broker that loses its data mid-batch. Each ends with every accepted job final exactly
once and nothing left in flight, long before the broker's visibility timeout (an hour)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from conftest import free_port, http_ok, settings_for, wait_until
from helpers import (
    jobs_of,
    reconcile,
    reconciler_env,
    start_reconciling,
    submit,
    wait_batch,
)

from imgburst.api import create_app
from imgburst.core.celery_app import make_celery
from imgburst.core.handback import message_job
from imgburst.core.reconcile import Reconciler
from imgburst.core.store import JobStore
from imgburst.core.synthetic import photo_bytes
from imgburst.core.telemetry import (
    WorkerInfo,
    in_flight,
    live_workers,
    note_unsent,
    waiting,
    write_heartbeat,
)
from imgburst.vk.events import EventLog

pytestmark = pytest.mark.slow  # real processes and waits: `-m "not slow"` leaves it out

SLOW = {"outputs": [{"name": "full", "format": "png", "ops": []}]}


def kinds(broker: redis.Redis, kind: str) -> list[dict]:
    return [e for e in EventLog(broker).recent(500) if e["kind"] == kind]


def test_a_worker_killed_whole_has_its_job_handed_back_at_once(base_env, start_worker,
                                                               tmp_path):
    env = reconciler_env(base_env)
    settings = settings_for(env)
    assert settings.visibility_timeout_s == 3600
    broker = redis.Redis.from_url(env["REDIS_URL"])
    api = create_app(settings).test_client()
    doomed = start_worker(env, concurrency=1)
    scaler = start_reconciling(env, tmp_path / "scaler.log", broker)
    try:
        big = photo_bytes(7, 4000, 3000)
        batch = submit(api, [(f"big{i}.jpg", big) for i in range(4)], SLOW)
        def running_jobs() -> list[str]:
            return [j["id"] for j in jobs_of(api, batch["id"]) if j["status"] == "running"]

        wait_until(lambda: any(running_jobs() and w.jobs for w in live_workers(broker)), 60,
                   "a job running")
        (running,) = running_jobs()
        doomed.kill()  # the whole worker, main process and pool, at once
        killed = time.monotonic()
        start_worker(env, concurrency=1)
        done = wait_batch(api, batch["id"], timeout=120, logs=tmp_path, broker=broker)
        took = time.monotonic() - killed
        assert done["status"] == "succeeded", done
        assert reconcile(settings, {batch["id"]: 4}, outputs_per_job=1) == {"succeeded": 4}
        attempts = {j["id"]: j["attempts"] for j in jobs_of(api, batch["id"])}
        assert attempts[running] == 2 and sum(attempts.values()) == 5, attempts
        (handed,) = kinds(broker, "handed-back")
        assert handed["jobs"] == [running] and "stopped beating" in handed["reason"]
        wait_until(lambda: in_flight(broker) == 0 == waiting(broker), 20, "nothing in flight")
        print(f"worker killed whole -> every job final: {took:.1f} s")
        assert took < 90, took
    finally:
        scaler.send_signal(signal.SIGTERM)
        scaler.wait(timeout=60)


def test_a_broker_that_loses_its_data_mid_batch_strands_nothing(base_env, start_worker,
                                                                tmp_path):
    """A Redis without persistence, SIGKILLed and started again empty with jobs waiting,
    running and reserved: the reconciler sends the queued ones again from the job store
    and hands back those whose task the worker cancelled when its connection dropped."""
    port = free_port()
    data = tmp_path / "redis"
    data.mkdir()
    server = start_redis(port, data)
    env = reconciler_env(base_env | {"REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    settings = settings_for(env)
    broker = redis.Redis(port=port, socket_timeout=2)
    api = create_app(settings).test_client()
    start_worker(env, concurrency=2)
    scaler = start_reconciling(env, tmp_path / "scaler.log", broker)
    try:
        big = photo_bytes(8, 3000, 2000)
        batch = submit(api, [(f"p{i}.jpg", big) for i in range(16)], SLOW)

        def under_way() -> bool:
            counts = api.get(f"/api/v1/batches/{batch['id']}").get_json()["counts"]
            return counts.get("succeeded", 0) >= 2

        wait_until(under_way, 60, "the batch to be under way")
        server.send_signal(signal.SIGKILL)  # no persistence: the queue is gone
        server.wait()
        lost = time.monotonic()
        server = start_redis(port, data)
        done = wait_batch(api, batch["id"], timeout=180, logs=tmp_path, broker=broker)
        took = time.monotonic() - lost
        assert done["status"] == "succeeded", done
        assert reconcile(settings, {batch["id"]: 16}, outputs_per_job=1) == {"succeeded": 16}
        assert kinds(broker, "requeued"), "the reconciler saw no loss"
        wait_until(lambda: in_flight(broker) == 0 == waiting(broker), 30, "nothing in flight")
        print(f"broker data lost -> every job final: {took:.1f} s")
        assert took < 120, took
    finally:
        scaler.send_signal(signal.SIGTERM)
        scaler.wait(timeout=60)
        server.terminate()
        server.wait(timeout=10)


def start_redis(port: int, data: Path) -> subprocess.Popen[bytes]:
    """A Redis of the test's own, without persistence (nothing else shares it)."""
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(data)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_timeout=1)
    wait_until(lambda: _pings(client), 10, "the broker to answer")
    return proc


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.mark.parametrize("point", ["after-record", "mid-enqueue", "after-enqueue"])
def test_an_api_killed_mid_submission_leaves_a_batch_the_reconciler_completes(
        point, base_env, start_worker, start_service):
    """The API SIGKILLs itself (an OOM kill) after recording the batch, halfway through
    sending its jobs, or right after: the client gets no answer, and the batch still ends,
    each job run once; the client's retry with its Idempotency-Key gets that batch."""
    port = free_port()
    env = reconciler_env(base_env) | {"IMGBURST_PORT": str(port),
                                  "IMGBURST_RECONCILE_GRACE_S": "2"}
    settings = settings_for(env)
    url = f"http://127.0.0.1:{port}"
    start_service(env, "scaler")
    start_worker(env, concurrency=1)
    api = start_service(env | {"IMGBURST_FAIL_POINT": point}, "api", "--host", "127.0.0.1")
    wait_until(lambda: http_ok(f"{url}/readyz"), 60, "the API to be ready")
    photos = [("files", (f"p{i}.jpg", photo_bytes(i, 320, 240), "image/jpeg"))
              for i in range(20)]
    key = {"Idempotency-Key": f"retry-{point}"}
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{url}/api/v1/batches", files=photos, headers=key, timeout=60)
    killed = time.monotonic()
    assert api.wait(timeout=10) == -signal.SIGKILL
    start_service(env, "api", "--host", "127.0.0.1")
    wait_until(lambda: http_ok(f"{url}/readyz"), 60, "the API to be up again")
    (batch,) = requests.get(f"{url}/api/v1/batches", timeout=5).json()["items"]
    time.sleep(max(0.0, 2.2 - (time.monotonic() - killed)))  # the grace: the first is dead
    retry = requests.post(f"{url}/api/v1/batches", files=photos, headers=key, timeout=60)
    assert retry.status_code == 202 and retry.json()["id"] == batch["id"], retry.text
    assert requests.get(f"{url}/api/v1/batches", timeout=5).json()["total"] == 1

    def final() -> bool:
        status = requests.get(f"{url}/api/v1/batches/{batch['id']}", timeout=5).json()
        return status["status"] in ("succeeded", "failed", "partial", "cancelled")

    wait_until(final, 60, f"the batch cut short at {point} to finish")
    took = time.monotonic() - killed
    assert reconcile(settings, {batch["id"]: 20}, outputs_per_job=2) == {"succeeded": 20}
    jobs = requests.get(f"{url}/api/v1/batches/{batch['id']}/jobs", timeout=5).json()["items"]
    assert {j["attempts"] for j in jobs} == {1}, "a job ran twice"
    broker = redis.Redis.from_url(env["REDIS_URL"])
    wait_until(lambda: in_flight(broker) == 0 == waiting(broker), 20, "nothing in flight")
    print(f"API killed at {point} -> every job final: {took:.1f} s")


def test_inputs_stored_by_a_submission_that_died_are_removed_after_the_grace(
        base_env, start_service):
    """The API dies after storing the inputs, before recording the batch: no batch, and
    the inputs go once older than IMGBURST_INPUT_GRACE_S."""
    port = free_port()
    env = reconciler_env(base_env) | {"IMGBURST_PORT": str(port), "IMGBURST_INPUT_GRACE_S": "3"}
    url = f"http://127.0.0.1:{port}"
    inputs = Path(env["IMGBURST_HOME"]) / "blobs" / "imgburst" / "inputs"
    api = start_service(env | {"IMGBURST_FAIL_POINT": "after-inputs"}, "api", "--host",
                        "127.0.0.1")
    wait_until(lambda: http_ok(f"{url}/readyz"), 60, "the API to be ready")
    photos = [("files", (f"p{i}.jpg", photo_bytes(i, 64, 48), "image/jpeg"))
              for i in range(10)]
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{url}/api/v1/batches", files=photos, timeout=60)
    assert api.wait(timeout=10) == -signal.SIGKILL
    stored = sorted(p for p in inputs.rglob("*") if p.is_file())
    assert len(stored) == 10
    users = [inputs / "x" / "y" / "me.jpg", inputs / "holiday.jpg"]  # a user's own blobs
    for path in users:  # (a source submission may name them): never the sweep's
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(photo_bytes(1, 64, 48))
        os.utime(path, (time.time() - 3600,) * 2)  # long past the grace
    start_service(env, "scaler")
    time.sleep(1)
    assert all(p.exists() for p in stored), "removed within the grace"
    wait_until(lambda: not any(p.exists() for p in stored), 30, "the orphan inputs to go")
    broker = redis.Redis.from_url(env["REDIS_URL"])
    (removed,) = kinds(broker, "removed-inputs")
    assert removed["count"] == 10
    assert all(p.exists() for p in users)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[int]:
    """The port of a Redis of the test's own: no consumer of an earlier test shares it."""
    port = free_port()
    server = start_redis(port, tmp_path)
    yield port
    server.terminate()
    server.wait(timeout=10)


def deliver_unacked(broker: redis.Redis, at: float) -> None:
    """The queue's first message as a worker SIGKILLed before acking leaves it: kombu's
    Redis transport moved it from the list to its `unacked` hash, indexed by delivery
    time (QoS.append)."""
    payload = json.loads(broker.rpop("images"))
    tag, info = payload["properties"]["delivery_tag"], payload["properties"]["delivery_info"]
    broker.hset("unacked", tag, json.dumps([payload, info["exchange"], info["routing_key"]]))
    broker.zadd("unacked_index", {tag: at})


def beat(broker: redis.Redis, name: str, started_at: float, reserved: int = 0) -> None:
    """A live worker's heartbeat, running nothing, with `reserved` messages taken."""
    write_heartbeat(broker, WorkerInfo(
        name=name, pool="base", host=name.partition("@")[2], pid=1, concurrency=1,
        consuming=True, active=0, reserved=reserved, processed=0, started_at=started_at,
        heartbeat_at=time.time(), idle_since=None))


def test_an_unacked_message_older_than_every_live_worker_goes_back_to_the_queue(
        base_env, private_redis):
    """What a stack stopped by kill -9 leaves: a message delivered to a worker that is
    gone. A live worker holds only what came after it started, so the reconciler gives
    it back at once (no phantom in flight), and leaves a live worker's own alone."""
    env = base_env | {"REDIS_URL": f"redis://127.0.0.1:{private_redis}/0"}
    settings = settings_for(env)
    broker = redis.Redis(port=private_redis)
    api = create_app(settings).test_client()
    submit(api, [("a.jpg", photo_bytes(1, 64, 48))])
    celery = make_celery(settings)
    broker.delete("_kombu.binding.images")  # as after the broker lost its data
    deliver_unacked(broker, time.time())
    assert (waiting(broker), in_flight(broker)) == (0, 1)
    events: list[dict] = []
    reconciler = Reconciler(JobStore.from_settings(settings), celery, broker,
                            lambda kind, **f: events.append({"kind": kind, **f}),
                            reserve_s=300)

    beat(broker, "base@w", time.time() - 60, reserved=1)  # its reservation, maybe: kept
    reconciler.stale_unacked()
    assert (waiting(broker), in_flight(broker)) == (0, 1) and not events
    beat(broker, "base@w", time.time() + 5, reserved=1)  # started after the delivery
    reconciler.stale_unacked()
    assert (waiting(broker), in_flight(broker)) == (1, 0)
    assert events[0]["kind"] == "restored" and events[0]["entries"] == 1


def test_a_message_the_broker_lost_is_sent_again_once_the_queue_is_empty(
        base_env, private_redis):
    """Redis kept its data but lost a message: with its append-only file fsynced every
    second, a crash can keep a worker's pop and lose the write that recorded the message
    as unacknowledged (the fault test of a Redis restart mid-batch met it: one job stayed
    queued). Once nothing waits and nothing is in flight, the store's queued jobs older
    than the grace are sent again; while a message waits, or within the grace, none is."""
    env = base_env | {"REDIS_URL": f"redis://127.0.0.1:{private_redis}/0"}
    settings = settings_for(env)
    broker = redis.Redis(port=private_redis)
    api = create_app(settings).test_client()
    lost = submit(api, [("a.jpg", photo_bytes(1, 64, 48))])
    other = submit(api, [("b.jpg", photo_bytes(2, 64, 48))])
    broker.rpop("images")  # the first job's message, popped by a worker, never recorded
    assert (waiting(broker), in_flight(broker)) == (1, 0)
    events: list[dict] = []

    def reconciler(grace_s: float) -> Reconciler:
        return Reconciler(JobStore.from_settings(settings), make_celery(settings), broker,
                          lambda kind, **f: events.append({"kind": kind, **f}),
                          reserve_s=300, grace_s=grace_s)

    reconciler(0).lost_messages()  # a message waits: the lost one can't be told apart
    assert waiting(broker) == 1 and not events
    broker.rpop("images")  # now both are gone
    reconciler(3600).lost_messages()  # both within the grace: maybe still being sent
    assert waiting(broker) == 0 and not events
    reconciler(0).lost_messages()
    sent = [message_job(json.loads(m)) for m in broker.lrange("images", 0, -1)]
    assert sorted(sent) == sorted(jobs_of(api, b["id"])[0]["id"] for b in (lost, other))
    assert [(e["kind"], e["jobs"]) for e in events] == [("requeued", 2)]
    reconciler(0).lost_messages()  # they wait now: not sent a second time
    assert waiting(broker) == 2 and len(events) == 1
    broker.delete("images")
    note_unsent(broker, jobs_of(api, lost["id"])[0]["id"])  # the API is sending it now
    reconciler(0).lost_messages()
    assert [message_job(json.loads(m)) for m in broker.lrange("images", 0, -1)] == [
        jobs_of(api, other["id"])[0]["id"]]  # the noted one is left to `unsent_images`


def test_a_running_jobs_message_left_by_a_dead_worker_goes_back_once_with_its_hand_back(
        base_env, private_redis):
    """A worker killed whole leaves its job `running` in the store and its message
    unacknowledged, delivered before any live worker started. Only the hand-back (two
    passes after the worker's heartbeat is gone) gives both back: one message in the
    queue, one event that says why. Restored on its own as well, the message came back
    twice (the hand-back found it gone from the unacknowledged and sent it anew)."""
    env = base_env | {"REDIS_URL": f"redis://127.0.0.1:{private_redis}/0"}
    settings = settings_for(env)
    broker = redis.Redis(port=private_redis)
    api = create_app(settings).test_client()
    batch = submit(api, [("a.jpg", photo_bytes(1, 64, 48))])
    (job,) = [j["id"] for j in jobs_of(api, batch["id"])]
    store = JobStore.from_settings(settings)
    deliver_unacked(broker, time.time() - 30)  # to base@dead, which claimed it, then died
    assert store.start_job(job, "base@dead") is not None
    beat(broker, "base@new", started_at=time.time())
    events: list[dict] = []
    reconciler = Reconciler(store, make_celery(settings), broker,
                            lambda kind, **f: events.append({"kind": kind, **f}),
                            reserve_s=300)
    for _ in range(2):  # a pass of the reconciler's loop, twice
        reconciler.dead_holders()
        reconciler.stale_unacked()
    assert (waiting(broker), in_flight(broker)) == (1, 0)
    assert [e["kind"] for e in events] == ["handed-back"]
    assert events[0]["jobs"] == [job] and "stopped beating" in events[0]["reason"]
    assert jobs_of(api, batch["id"])[0]["status"] == "queued"
