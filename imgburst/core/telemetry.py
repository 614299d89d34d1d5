"""The service's live state in Redis: what the workers and the scaler write as they run,
and what the API, the dashboard, the scaler and the tests read.

Read:
- waiting: `LLEN` of the `images` list and of kombu's priority sub-lists;
- in flight: the kombu `unacked` hash entries of our queue. Every message a worker has
  taken, prefetched or running (and a retry waiting for its countdown), sits there until
  it is acknowledged, so this is the broker's own count; KEDA's `LLEN` misses all of it;
- workers: each worker's heartbeat hash (`worker/heartbeat.py` writes it every second),
  with its pool, whether it consumes, active and reserved counts, processed total;
- the scaler's state, samples and events; each ended job's timing; the leader.

Written here because several layers share the writers: heartbeats, `record_ended` (a job's
timing, as it ends), `nudge` (wake the scaler), `write_leader`, and the admission room
(`reserve_room` / `release_room`).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, cast

import redis
from redis.typing import EncodableT, FieldT

from imgburst.core.celery_app import QUEUE

PRIORITY_SEP = "\x06\x16"  # kombu's separator for priority sub-lists
PRIORITY_STEPS = (3, 6, 9)
UNACKED = "unacked"
WORKERS_KEY = "imgburst:workers"  # sorted set: worker name -> last heartbeat
WORKER_KEY = "imgburst:worker:{name}"
HEARTBEAT_TTL_S = 10
NUDGE_CHANNEL = "imgburst:nudge"


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    pool: str
    host: str
    pid: int
    concurrency: int
    consuming: bool
    active: int
    reserved: int
    processed: int
    started_at: float
    heartbeat_at: float
    idle_since: float | None
    jobs: tuple[str, ...] = ()  # jobs in hand: running, prefetched, awaiting a retry

    @property
    def busy(self) -> bool:
        return self.active > 0 or self.reserved > 0


def waiting(client: redis.Redis, queue: str = QUEUE) -> int:
    """Messages not yet delivered to any worker (all priority levels)."""
    keys = [queue] + [f"{queue}{PRIORITY_SEP}{p}" for p in PRIORITY_STEPS]
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.llen(key)
        return sum(pipe.execute())


ADMITTING_KEY = "imgburst:admitting"  # sorted set: "<token>:<jobs>" -> deadline
ADMIT_TTL_S = 120  # a submission that died between admission and enqueue frees its room
_RESERVE = """
local now = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  held = held + tonumber(string.match(member, ':(%d+)$'))
end
local queued = held
for i = 2, #KEYS do queued = queued + redis.call('LLEN', KEYS[i]) end
if queued + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return queued end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[5] .. ':' .. ARGV[1])
return -1
"""


def reserve_room(client: redis.Redis, count: int, bound: int, token: str,
                 queue: str = QUEUE) -> int | None:
    """Hold room for `count` jobs under `bound` (waiting jobs plus rooms held by other
    submissions), in one atomic step: ten submissions at once can't each see room for
    themselves and together pass the bound. None when held (release it with
    `release_room` once the jobs are queued); else how many are waiting or held."""
    keys = [ADMITTING_KEY, queue] + [f"{queue}{PRIORITY_SEP}{p}" for p in PRIORITY_STEPS]
    found = client.eval(_RESERVE, len(keys), *keys, count, bound, time.time(), ADMIT_TTL_S,
                        token)
    return None if int(found) < 0 else int(found)


def release_room(client: redis.Redis, token: str, count: int) -> None:
    client.zrem(ADMITTING_KEY, f"{token}:{count}")


def in_flight(client: redis.Redis, queue: str = QUEUE) -> int:
    """Messages delivered to a worker of `queue` and not yet acknowledged."""
    count = 0
    for raw in client.hvals(UNACKED):
        try:
            _message, _exchange, routing_key = json.loads(raw)
        except (ValueError, TypeError):
            continue
        if routing_key == queue:
            count += 1
    return count


def write_heartbeat(client: redis.Redis, info: WorkerInfo) -> None:
    key = WORKER_KEY.format(name=info.name)
    fields: dict[FieldT, EncodableT] = {k: json.dumps(v) for k, v in info.__dict__.items()}
    with client.pipeline(transaction=False) as pipe:
        pipe.hset(key, mapping=fields)
        pipe.expire(key, HEARTBEAT_TTL_S)
        pipe.zadd(WORKERS_KEY, {info.name: info.heartbeat_at})
        pipe.execute()


def remove_heartbeat(client: redis.Redis, name: str) -> None:
    with client.pipeline(transaction=False) as pipe:
        pipe.delete(WORKER_KEY.format(name=name))
        pipe.zrem(WORKERS_KEY, name)
        pipe.execute()


def is_alive(client: redis.Redis, name: str) -> bool:
    """Whether worker `name` has beaten within the heartbeat's TTL."""
    return bool(client.exists(WORKER_KEY.format(name=name)))


def live_workers(client: redis.Redis, now: float | None = None) -> list[WorkerInfo]:
    """Workers whose heartbeat is fresh; stale entries are dropped from the index."""
    now = time.time() if now is None else now
    client.zremrangebyscore(WORKERS_KEY, "-inf", now - HEARTBEAT_TTL_S)
    names = [n.decode() if isinstance(n, bytes) else n for n in client.zrange(WORKERS_KEY, 0, -1)]
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(WORKER_KEY.format(name=name))
        rows = pipe.execute()
    workers = []
    for row in rows:
        if not row:
            continue
        data = {k.decode() if isinstance(k, bytes) else k: json.loads(v) for k, v in row.items()}
        data["jobs"] = tuple(data.get("jobs") or ())
        workers.append(WorkerInfo(**data))
    return sorted(workers, key=lambda w: w.name)


def nudge(client: redis.Redis) -> None:
    """Tell the scaler new work arrived, so it reacts now rather than at its next poll."""
    client.publish(NUDGE_CHANNEL, b"1")


# -- the scaler's telemetry (the scaler writes it in vk/events.py; the API reads it) ------

EVENTS_STREAM = "imgburst:scaler:events"
STATE_KEY = "imgburst:scaler:state"
SAMPLES_STREAM = "imgburst:scaler:samples"
SCALED_KEY = "imgburst:scaler:scaled"  # hash: up / down -> burst workers started / stopped
STATE_TTL_S = 10
MAX_SAMPLES = 1800  # 30 minutes at one sample a second


FAILURES_KEY = "imgburst:scaler:failures"  # hash: reason -> burst workers that failed so
LEADER_KEY = "imgburst:scaler:leader"  # the acting scaler's heartbeat (JSON, expires)
LEADER_TTL_S = 30


def burst_failures(client: redis.Redis) -> dict[str, int]:
    """Burst workers that never started or died on their own, by reason, ever."""
    return {_decode(k): int(v) for k, v in client.hgetall(FAILURES_KEY).items()}


def write_leader(client: redis.Redis, identity: str, backend: str, now: float) -> None:
    """The acting scaler says it is alive (every tick)."""
    client.set(LEADER_KEY, json.dumps({"identity": identity, "backend": backend, "at": now}),
               ex=LEADER_TTL_S)


def leader(client: redis.Redis) -> dict[str, Any] | None:
    """The acting scaler (identity, backend, last tick), or None when none ticked lately:
    burst workers read it to leave once the install that started them is gone."""
    raw = client.get(LEADER_KEY)
    return json.loads(raw) if raw else None


def _decode(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def scaler_state(client: redis.Redis) -> dict[str, Any] | None:
    """The scaler's view at its last tick (desired size, burst workers and phases), or
    None when no scaler has ticked in the last few seconds."""
    raw = client.get(STATE_KEY)
    return json.loads(raw) if raw else None


def scaling_events(client: redis.Redis, count: int = 50) -> list[dict[str, Any]]:
    """The newest `count` scaler events, oldest first."""
    rows = client.xrevrange(EVENTS_STREAM, count=count) or []
    return [json.loads((fields or {})[b"event"]) for _id, fields in reversed(rows)]


def samples(client: redis.Redis, since: float | None = None,
            count: int = MAX_SAMPLES) -> list[dict[str, Any]]:
    """The scaler's once-a-tick samples of work and pool sizes, oldest first; only those
    after `since` (epoch seconds) when given."""
    start = f"{int(since * 1000)}" if since else "-"
    rows = client.xrevrange(SAMPLES_STREAM, max="+", min=start, count=count) or []
    found = [{_decode(k): json.loads(v) for k, v in (fields or {}).items()}
             for _id, fields in reversed(rows)]
    return [s for s in found if since is None or s.get("t", 0) > since]


def scaled_totals(client: redis.Redis) -> dict[str, int]:
    """Burst workers the scaler has started (`up`) and stopped (`down`), ever."""
    raw = client.hgetall(SCALED_KEY)
    totals = {"up": 0, "down": 0}
    totals.update({_decode(k): int(v) for k, v in raw.items()})
    return totals


# -- live job telemetry (workers write it as jobs end; the stats endpoint reads it) -------
# Kept in Redis so the dashboard's throughput and latency cost the same whatever the size
# of the job store; the store stays the record (and feeds the Prometheus histograms).

ENDED_KEY = "imgburst:jobs:ended"  # sorted set: job id -> end time, last few minutes
TIMINGS_KEY = "imgburst:jobs:timings"  # list of "end wait_ms run_ms", newest first
TELEMETRY_WINDOW_S = 300
MAX_TIMINGS = 1000


# pub/sub: the batch's state changed, "ended N" (N of its jobs reached a final status
# after running) or "changed" (an image arrived, it closed, it was cancelled)
BATCH_CHANNEL = "imgburst:batch:{batch_id}"


@dataclass(frozen=True)
class Ended:
    """A job that reached a final status after running: what the dashboard's throughput and
    latency, and a client waiting on its batch, learn of it."""

    job_id: str
    timings_ms: tuple[int, int] | None  # (queue wait, processing)
    at: float  # epoch seconds
    batch_id: str | None = None


def record_ended(client: redis.Redis, job_id: str, timings_ms: tuple[int, int] | None,
                 now: float | None = None, batch_id: str | None = None) -> None:
    """A job reached a final status after running (best effort: never fails a job); a
    client waiting on its batch is woken in the same round trip."""
    record_ends(client, [Ended(job_id, timings_ms, time.time() if now is None else now,
                               batch_id)])


def record_ends(client: redis.Redis, ends: list[Ended]) -> None:
    """`record_ended` for several jobs in one round trip (the windows trimmed once)."""
    if not ends:
        return
    newest = max(end.at for end in ends)
    timings = [f"{end.at:.3f} {end.timings_ms[0]} {end.timings_ms[1]}"
               for end in ends if end.timings_ms is not None]
    try:
        with client.pipeline(transaction=False) as pipe:
            for batch_id, count in Counter(e.batch_id for e in ends if e.batch_id).items():
                pipe.publish(BATCH_CHANNEL.format(batch_id=batch_id), f"ended {count}")
            pipe.zadd(ENDED_KEY, {end.job_id: end.at for end in ends})
            pipe.zremrangebyscore(ENDED_KEY, "-inf", newest - TELEMETRY_WINDOW_S)
            if timings:
                pipe.lpush(TIMINGS_KEY, *timings)
                pipe.ltrim(TIMINGS_KEY, 0, MAX_TIMINGS - 1)
            pipe.execute()
    except redis.RedisError:
        pass


def batch_changed(client: redis.Redis, batch_id: str) -> None:
    """Wake the clients waiting on this batch (a long-poll of `GET /batches/{id}`): an image
    arrived, it closed, it was cancelled. Best effort: a waiter also wakes at its timeout."""
    with contextlib.suppress(redis.RedisError):
        client.publish(BATCH_CHANNEL.format(batch_id=batch_id), "changed")


def ended_since(client: redis.Redis, *since: float) -> list[int]:
    """Jobs that ended at or after each of `since` (epoch seconds)."""
    with client.pipeline(transaction=False) as pipe:
        for t in since:
            pipe.zcount(ENDED_KEY, t, "+inf")
        return [int(n) for n in pipe.execute()]


def recent_timings(client: redis.Redis, since: float,
                   newest: int = MAX_TIMINGS) -> list[tuple[int, int]]:
    """(queue wait, processing) in ms of the jobs that ended since `since`, newest first;
    of the `newest` recorded at most."""
    out = []
    for raw in client.lrange(TIMINGS_KEY, 0, min(newest, MAX_TIMINGS) - 1):
        end, wait, run = _decode(raw).split()
        if float(end) >= since:  # no early stop: workers' clocks and writes interleave
            out.append((int(wait), int(run)))
    return out


def worker_pools(client: redis.Redis) -> dict[str, Any]:
    """Workers by pool and state: heartbeats, plus burst workers the scaler has asked
    for that have no heartbeat yet (pending: the pod is being scheduled or pulled)."""
    beats = live_workers(client)
    state = scaler_state(client) or {}
    phases: dict[str, str] = state.get("burst", {})
    items = []
    for w in beats:
        phase = phases.get(w.name, "running" if w.consuming else "pending")
        items.append({"name": w.name, "pool": w.pool, "host": w.host, "state": phase,
                      "active": w.active, "reserved": w.reserved, "processed": w.processed,
                      "concurrency": w.concurrency, "up_since": round(w.started_at, 3)})
    seen = {w.name for w in beats}
    for name, phase in sorted(phases.items()):
        if name not in seen:
            items.append({"name": name, "pool": "burst", "host": name.split("@", 1)[-1],
                          "state": phase, "active": 0, "reserved": 0, "processed": 0,
                          "concurrency": None, "up_since": None})
    count = {
        "base": sum(1 for w in items if w["pool"] == "base" and w["state"] == "running"),
        "burst_running": sum(1 for w in items if w["pool"] == "burst"
                             and w["state"] in ("running", "draining")),
        "burst_pending": sum(1 for w in items if w["pool"] == "burst"
                             and w["state"] == "pending"),
        "burst_draining": sum(1 for w in items if w["pool"] == "burst"
                              and w["state"] == "draining"),
    }
    return count | {"desired_burst": state.get("desired"), "items": items}


# -- jobs recorded, not yet sent to the broker (submissions and streamed images) ---------
# A job is recorded, then sent: an API that dies between the two leaves it `queued` with
# no task. Whether it was sent is a fact about the broker, so it is kept beside it: the
# API notes the job here before recording it and forgets it once sent (a Redis round
# trip, not a second write transaction in the job store); the reconciler sends what is
# still here after its grace. A broker that lost its data lost these too, and
# `broker_epoch` then sends every queued job.
UNSENT_KEY = "imgburst:unsent"  # sorted set: job id -> when the API began recording it


def note_unsent(client: redis.Redis, *job_ids: str) -> None:
    if job_ids:
        now = time.time()
        client.zadd(UNSENT_KEY, dict.fromkeys(job_ids, now))


def forget_unsent(client: redis.Redis, *job_ids: str) -> None:
    if job_ids:
        client.zrem(UNSENT_KEY, *job_ids)


def job_sent(client: redis.Redis, batch_id: str, job_id: str | None) -> None:
    """A streamed image's job was sent (`job_id`; None: none to send, it failed at arrival):
    forget it as unsent, nudge the scaler, wake the batch's waiters: one round trip."""
    with client.pipeline(transaction=False) as pipe:
        if job_id is not None:
            pipe.zrem(UNSENT_KEY, job_id)
            pipe.publish(NUDGE_CHANNEL, "1")
        pipe.publish(BATCH_CHANNEL.format(batch_id=batch_id), "changed")
        pipe.execute()


def jobs_sent(client: redis.Redis, job_ids: list[str]) -> None:
    """A submission's jobs were sent: forget them as unsent and nudge the scaler, in one
    round trip."""
    with client.pipeline(transaction=False) as pipe:
        if job_ids:
            pipe.zrem(UNSENT_KEY, *job_ids)
        pipe.publish(NUDGE_CHANNEL, "1")
        pipe.execute()


def noted_unsent(client: redis.Redis, job_ids: list[str]) -> set[str]:
    """Those of `job_ids` the API noted unsent and has not yet sent (one round trip)."""
    if not job_ids:
        return set()
    scores = cast(list[float | None], client.zmscore(UNSENT_KEY, job_ids))
    return {job for job, score in zip(job_ids, scores, strict=True) if score is not None}


def unsent_before(client: redis.Redis, before: float, limit: int = 1000) -> list[str]:
    members = cast(list[bytes], client.zrangebyscore(UNSENT_KEY, "-inf", before, 0, limit))
    return [_decode(m) for m in members]
