"""What the scaler keeps in Redis so that a restarted (or newly elected) scaler goes on
where the last one stopped: the drains in progress and the failure backoff.

Drain state lives in Redis rather than in pod annotations: both backends have it (local
processes have no annotations), the scaler already reads every other signal there, and
the Role needs no `patch` on pods. If Redis itself loses it, the worker still says it:
a burst worker whose heartbeat shows work done or in hand and no consuming is adopted
as draining, never taken for a pod that has yet to start.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import redis

DRAINS_KEY = "imgburst:scaler:draining"  # hash: worker name -> when its drain began
BACKOFF_KEY = "imgburst:scaler:backoff"


def drains(client: redis.Redis) -> dict[str, float]:
    return {(k.decode() if isinstance(k, bytes) else k): float(v)
            for k, v in client.hgetall(DRAINS_KEY).items()}


def begin_drain(client: redis.Redis, name: str, since: float) -> float:
    """Record a drain (keeping an earlier start, if one was recorded); returns its start."""
    client.hsetnx(DRAINS_KEY, name, since)
    raw = client.hget(DRAINS_KEY, name)
    return float(raw) if raw is not None else since


def end_drain(client: redis.Redis, name: str) -> None:
    client.hdel(DRAINS_KEY, name)


def forget_drains(client: redis.Redis, recorded: dict[str, float], keep: set[str]) -> None:
    """Drop records (as just read) of workers that no longer exist (removed by anyone)."""
    gone = set(recorded) - keep
    if gone:
        client.hdel(DRAINS_KEY, *gone)


@dataclass(frozen=True)
class Backoff:
    failures: int = 0  # burst failures in a row
    until: float | None = None  # start no burst worker before this
    reason: str = ""  # the last failure's
    at: float = 0.0  # when it failed: a burst worker created since that consumes ends it

    def save(self, client: redis.Redis) -> None:
        client.set(BACKOFF_KEY, json.dumps(asdict(self)))


def load_backoff(client: redis.Redis) -> Backoff:
    raw = client.get(BACKOFF_KEY)
    return Backoff(**json.loads(raw)) if raw else Backoff()
