"""What the scaler tells the world: events, its state, samples, and scale counts.

Events go to a capped Redis stream (the dashboard's event list and chart markers) and
to the log as one JSON line each; the state key and the samples stream feed
`/api/v1/stats` and the dashboard's charts. Readers live in `core.telemetry`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from imgburst.core.telemetry import (
    EVENTS_STREAM,
    MAX_SAMPLES,
    SAMPLES_STREAM,
    SCALED_KEY,
    STATE_KEY,
    STATE_TTL_S,
    scaling_events,
)

MAX_EVENTS = 1000
log = logging.getLogger("imgburst.scaler")


class EventLog:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def record(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"time": round(time.time(), 3), "kind": kind, **fields}
        line = json.dumps(event, sort_keys=False)
        log.info("%s", line)
        try:
            self.client.xadd(EVENTS_STREAM, {"event": line}, maxlen=MAX_EVENTS, approximate=True)
        except redis.RedisError as exc:
            log.warning("event not stored: %s", exc)
        return event

    def recent(self, count: int = 50) -> list[dict[str, Any]]:
        """Newest last."""
        return scaling_events(self.client, count)

    def publish(self, state: dict[str, Any], sample: dict[str, Any], up: int = 0,
                down: int = 0) -> None:
        """The state of this tick, one sample for the charts, and what was scaled."""
        fields: dict[FieldT, EncodableT] = {k: json.dumps(v) for k, v in sample.items()}
        try:  # the entry's ID is the sample's own time, so readers can ask "after t"
            self.client.xadd(SAMPLES_STREAM, fields, id=f"{int(sample['t'] * 1000)}-*",
                             maxlen=MAX_SAMPLES, approximate=True)
        except redis.ResponseError:  # the clock went back: keep the sample anyway
            self.client.xadd(SAMPLES_STREAM, fields, maxlen=MAX_SAMPLES, approximate=True)
        except redis.RedisError as exc:
            log.warning("sample not stored: %s", exc)
        try:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.set(STATE_KEY, json.dumps(state), ex=STATE_TTL_S)
                if up:
                    pipe.hincrby(SCALED_KEY, "up", up)
                if down:
                    pipe.hincrby(SCALED_KEY, "down", down)
                pipe.execute()
        except redis.RedisError as exc:
            log.warning("state not published: %s", exc)
