"""The overhead baseline's Celery app: a no-op task with the service's Celery settings
(same broker options, acks_late, prefetch 1), counting completions in Redis. Not a
benchmark itself: `bench/overhead.py` starts a worker with it."""

from __future__ import annotations

import os

import redis

from imgburst.core.celery_app import make_celery
from imgburst.core.settings import Settings

app = make_celery(Settings.from_env())
counter = redis.Redis.from_url(os.environ["REDIS_URL"])
DONE = "bench:noop:done"


@app.task(name="bench.noop", acks_late=True)
def noop(_job: str) -> None:
    counter.incr(DONE)
