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

import math
import time

from limits import RateLimitItem, parse
from limits.storage import RedisStorage
from limits.strategies import SlidingWindowCounterRateLimiter
from redis import RedisError

from imgburst.api.auth import Principal
from imgburst.api.errors import Problem

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
