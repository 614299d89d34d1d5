"""Per-key submission rate limit (`IMGBURST_SUBMIT_RATE`), shared by every API replica.

A moving window kept in the broker's Redis by the `limits` library (the one
Flask-Limiter uses). Only submissions count; reads are cheap and cached. With auth off
there are no keys and so no per-key limit (IMGBURST_MAX_WAITING still bounds the queue);
admin keys (the operators') are not limited either.
"""

from __future__ import annotations

import math
import time

from limits import parse
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis import RedisError

from imgburst.api.auth import Principal
from imgburst.api.errors import Problem


class SubmitLimiter:
    def __init__(self, redis_url: str, rate: str | None) -> None:
        self.rate = rate
        self.item = parse(rate) if rate else None
        self.limiter = MovingWindowRateLimiter(RedisStorage(redis_url)) if rate else None

    def hit(self, caller: Principal) -> None:
        """Count one submission of `caller`; 429 with Retry-After when over the rate."""
        owner = caller.owner
        if self.limiter is None or self.item is None or owner is None or caller.admin:
            return
        try:
            if self.limiter.hit(self.item, "imgburst-submit", owner):
                return
        except RedisError:
            raise Problem(503, "Queue unavailable", "the broker did not answer; try again "
                          "shortly", headers={"Retry-After": "5"}) from None
        reset, _remaining = self.limiter.get_window_stats(self.item, "imgburst-submit", owner)
        wait = max(1, math.ceil(reset - time.time()))
        raise Problem(429, "Rate limit", f"more than {self.rate} submissions for this key "
                      "(IMGBURST_SUBMIT_RATE); nothing was stored, submit again after "
                      "Retry-After seconds", headers={"Retry-After": str(wait)})
