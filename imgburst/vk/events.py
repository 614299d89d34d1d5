"""Scaling events: a capped Redis stream for the dashboard, plus one JSON log line each."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis

STREAM = "imgburst:scaler:events"
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
            self.client.xadd(STREAM, {"event": line}, maxlen=MAX_EVENTS, approximate=True)
        except redis.RedisError as exc:
            log.warning("event not stored: %s", exc)
        return event

    def recent(self, count: int = 50) -> list[dict[str, Any]]:
        """Newest last."""
        rows = self.client.xrevrange(STREAM, count=count)
        return [json.loads(fields[b"event"]) for _id, fields in reversed(rows)]
