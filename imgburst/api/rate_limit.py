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


class KeyRateLimiter:
    """A rate per key of one kind of request: submissions (IMGBURST_SUBMIT_RATE) or
    previews (IMGBURST_PREVIEW_RATE)."""

    def __init__(self, redis_url: str, rate: str | None, what: str = "submissions",
                 variable: str = "IMGBURST_SUBMIT_RATE") -> None:
        self.rate = rate
        self.what = what
        self.variable = variable
        self.item = parse(rate) if rate else None
        self.limiter = MovingWindowRateLimiter(RedisStorage(redis_url)) if rate else None

    def hit(self, caller: Principal) -> None:
        """Count one request of `caller`; 429 with Retry-After when over the rate."""
        owner = caller.owner
        if self.limiter is None or self.item is None or owner is None or caller.admin:
            return
        namespace = f"imgburst-{self.what}"
        try:
            if self.limiter.hit(self.item, namespace, owner):
                return
        except RedisError:
            raise Problem(503, "Queue unavailable", "the broker did not answer; try again "
                          "shortly", headers={"Retry-After": "5"}) from None
        reset, _remaining = self.limiter.get_window_stats(self.item, namespace, owner)
        wait = max(1, math.ceil(reset - time.time()))
        raise Problem(429, "Rate limit", f"more than {self.rate} {self.what} for this key "
                      f"({self.variable}); nothing was done, try again after Retry-After "
                      "seconds", headers={"Retry-After": str(wait)})
