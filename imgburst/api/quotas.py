"""Per-key quotas on what a key writes: jobs queued and bytes stored, per window.

The submission rate (`rate_limit.py`) bounds requests; a request can still carry 1,000
images or ask the demo spike for 4 GB. These bound what the requests add up to, per key,
over a sliding window (`IMGBURST_QUOTA_JOBS`, `IMGBURST_QUOTA_MB`; default a day): the
window, not a lifetime total, because outputs are kept and a lifetime byte quota would
lock every key out in time. Bytes are the inputs a key stores (removed once processed);
outputs are bounded through the jobs quota (each job's outputs are bounded by its recipe).

Kept in the broker's Redis by the `limits` library (sliding window counters, one atomic
step per charge), so every API replica shares them. Admin keys and an API without keys
are not charged (IMGBURST_MAX_WAITING still bounds the queue).
"""

from __future__ import annotations

import contextlib
import math
import time

import redis
from limits import RateLimitItem, parse
from limits.storage import RedisStorage
from limits.strategies import SlidingWindowCounterRateLimiter
from redis import RedisError

from imgburst.api.auth import Principal
from imgburst.api.errors import Problem
from imgburst.core.statuses import JOB_ACTIVE
from imgburst.core.store import JobStore, new_id

MB = 1 << 20


class Quotas:
    def __init__(self, redis_url: str, jobs: str | None, megabytes: str | None) -> None:
        self.items: dict[str, tuple[str, RateLimitItem]] = {
            name: (rate, parse(rate)) for name, rate in
            (("jobs", jobs), ("megabytes", megabytes)) if rate}
        self.limiter = (SlidingWindowCounterRateLimiter(RedisStorage(redis_url))
                        if self.items else None)

    def charge(self, caller: Principal, jobs: int, stored_bytes: int = 0) -> None:
        """Count `jobs` and `stored_bytes` against the caller's quotas, or refuse (429 with
        Retry-After) before anything is stored when either would pass its quota."""
        if self.limiter is None or caller.owner is None or caller.admin:
            return
        costs = {"jobs": jobs, "megabytes": math.ceil(stored_bytes / MB)}
        wanted = [(name, rate, item, costs[name]) for name, (rate, item) in self.items.items()
                  if costs[name] > 0]
        try:
            for name, rate, item, cost in wanted:
                if not self.limiter.test(item, "imgburst-quota", name, caller.owner, cost=cost):
                    self._refuse(name, rate, item, cost, caller.owner)
            for name, rate, item, cost in wanted:  # each hit is atomic; a race refuses here
                if not self.limiter.hit(item, "imgburst-quota", name, caller.owner, cost=cost):
                    self._refuse(name, rate, item, cost, caller.owner)
        except RedisError:
            raise Problem(503, "Queue unavailable", "the broker did not answer; try again "
                          "shortly", headers={"Retry-After": "5"}) from None

    def _refuse(self, name: str, rate: str, item: RateLimitItem, cost: int,
                owner: str) -> None:
        assert self.limiter is not None
        reset, remaining = self.limiter.get_window_stats(item, "imgburst-quota", name, owner)
        wait = max(1, math.ceil(reset - time.time()))
        unit = "jobs" if name == "jobs" else "MB stored"
        variable = "IMGBURST_QUOTA_JOBS" if name == "jobs" else "IMGBURST_QUOTA_MB"
        raise Problem(429, "Quota reached", f"this submission needs {cost} {unit}; this key "
                      f"has {remaining} of its {rate} left ({variable}). Nothing was "
                      "stored: submit less, or again after Retry-After seconds",
                      headers={"Retry-After": str(wait)})


IN_FLIGHT_KEY = "imgburst:in-flight:{owner}"  # sorted set: job id (or request token) -> since
UNKNOWN_AFTER_S = 60  # a request's token the store doesn't know, older than this, is dead
IN_FLIGHT_RETRY_S = 2


class InFlight:
    """Per-key bound on streamed images received and not yet finished (queued or running):
    what a streamed batch has instead of a cap on its size, so one key's folder of 100,000
    images waits at the door, not in the queue ahead of everyone's. Kept in the broker's
    Redis as a set of job ids per key; the job store is the truth of which are finished,
    read only when the set is full (so a worker's finish costs nothing here)."""

    def __init__(self, client: redis.Redis, bound: int) -> None:
        self.client = client
        self.bound = bound

    def admit(self, caller: Principal, store: JobStore) -> str | None:
        """Hold a place for one image (its token), or refuse: 429 with Retry-After. None:
        the caller is not bounded (admin, auth off, IMGBURST_QUOTA_IN_FLIGHT=0)."""
        if not self.bound or caller.owner is None or caller.admin:
            return None
        key, token = IN_FLIGHT_KEY.format(owner=caller.owner), f"request:{new_id()}"
        try:
            # One transaction: each request counts its own place with those taken before
            # it, never a neighbour's taken after (MULTI/EXEC: "all the commands in a
            # transaction are serialized and executed sequentially", redis.io).
            with self.client.pipeline(transaction=True) as pipe:
                pipe.zadd(key, {token: time.time()})
                pipe.expire(key, 86400)
                pipe.zcard(key)
                held = pipe.execute()[-1]
            if held > self.bound:
                held -= self._forget_finished(key, store)
            if held > self.bound:
                self.client.zrem(key, token)
                raise Problem(429, "Too many images in flight", f"this key has {self.bound} "
                              "images received and not yet processed (IMGBURST_QUOTA_IN_FLIGHT);"
                              " this one was not stored: send it again after Retry-After "
                              "seconds", headers={"Retry-After": str(IN_FLIGHT_RETRY_S)})
        except RedisError:
            raise Problem(503, "Queue unavailable", "the broker did not answer; try again "
                          "shortly", headers={"Retry-After": "5"}) from None
        return token

    def _forget_finished(self, key: str, store: JobStore) -> int:
        """Drop the ids of jobs that finished (or that the store never recorded: a request
        that died) from the set; how many were dropped."""
        entries = [(member.decode(), score) for member, score in
                   self.client.zrange(key, 0, -1, withscores=True)]
        statuses = store.job_statuses({m for m, _ in entries if not m.startswith("request:")})
        old = time.time() - UNKNOWN_AFTER_S
        gone = [m for m, score in entries
                if statuses.get(m) not in JOB_ACTIVE
                and (not m.startswith("request:") or score < old)]
        if gone:
            self.client.zrem(key, *gone)
        return len(gone)

    def settle(self, caller: Principal, token: str | None, job_id: str | None) -> None:
        """The request ended: its place goes to its job (queued), or is freed."""
        if token is None:
            return
        key = IN_FLIGHT_KEY.format(owner=caller.owner)
        with contextlib.suppress(RedisError), self.client.pipeline(transaction=False) as pipe:
            pipe.zrem(key, token)
            if job_id is not None:
                pipe.zadd(key, {job_id: time.time()})
            pipe.execute()
