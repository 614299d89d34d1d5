"""The worker's heartbeat: every second, its pool, load and consuming state into Redis.

The scaler reads it (`core.telemetry.live_workers`) to count live capacity, to see when a
new burst worker starts consuming, and to know when a draining worker holds no task.
Cheaper and faster than Celery's broadcast `inspect` (which waits for every reply).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_ready, worker_shutdown
from celery.worker import state

from imgburst.core.alive import touch
from imgburst.core.celery_app import PROCESS_IMAGE, QUEUE
from imgburst.core.telemetry import WorkerInfo, remove_heartbeat, write_heartbeat

log = logging.getLogger("imgburst.worker")
INTERVAL_S = 1.0


class Heartbeat(threading.Thread):
    home: Path | None = None  # where the liveness file goes (None: no file)

    def __init__(self, consumer: Any, broker_url: str) -> None:
        super().__init__(name="imgburst-heartbeat", daemon=True)
        self.consumer = consumer
        self.client = redis.Redis.from_url(broker_url, socket_timeout=5)
        self.stopping = threading.Event()
        self.started_at = time.time()
        self.idle_since: float | None = self.started_at
        name = consumer.hostname
        self.worker_name = name
        self.pool = name.split("@", 1)[0]
        self.host = name.split("@", 1)[1] if "@" in name else name

    def snapshot(self) -> WorkerInfo:
        active = len(state.active_requests)
        reserved = max(0, len(state.reserved_requests) - active)
        now = time.time()
        if active or reserved:
            self.idle_since = None
        elif self.idle_since is None:
            self.idle_since = now
        task_consumer = getattr(self.consumer, "task_consumer", None)
        consuming = task_consumer is not None and any(  # the images queue, not previews
            queue.name == QUEUE for queue in task_consumer.queues)
        pool = getattr(self.consumer, "pool", None)
        return WorkerInfo(
            name=self.worker_name, pool=self.pool, host=self.host, pid=os.getpid(),
            concurrency=int(getattr(pool, "num_processes", 0) or 1), consuming=consuming,
            active=active, reserved=reserved, processed=sum(state.total_count.values()),
            started_at=self.started_at, heartbeat_at=now, idle_since=self.idle_since,
            # every job in hand: running, prefetched, or waiting for a retry's countdown
            jobs=tuple(str(r.args[0]) for r in list(state.reserved_requests)
                       if r.name == PROCESS_IMAGE and r.args),
        )

    def beat(self) -> None:
        try:
            write_heartbeat(self.client, self.snapshot())
        except redis.RedisError as exc:
            log.warning("heartbeat not written: %s", exc)

    def run(self) -> None:
        while not self.stopping.wait(INTERVAL_S):
            self.beat()
            if self.home is not None:  # the pod's liveness probe reads it
                touch(self.home, "worker")
        with contextlib.suppress(redis.RedisError):
            remove_heartbeat(self.client, self.worker_name)


def start(consumer: Any, broker_url: str, home: Path | None = None) -> Heartbeat:
    """A running heartbeat whose first beat is already written: called as the consumer's
    event loop is about to run (`worker_ready`), so the worker is in the registry before
    it can take a task, and whoever sees its task in flight also sees the worker."""
    beat = Heartbeat(consumer, broker_url)
    beat.home = home
    beat.beat()
    beat.start()
    return beat


def install(app: Celery, home: Path | None = None) -> None:
    """Start the heartbeat when the worker is ready; remove it at shutdown. With `home`,
    each beat also touches the file `imgburst alive worker` reads (core/alive.py)."""
    beat: dict[str, Heartbeat] = {}

    @worker_ready.connect(weak=False)
    def _start(sender: Any = None, **_kwargs: object) -> None:
        beat["thread"] = start(sender, app.conf.broker_url, home)

    @worker_shutdown.connect(weak=False)
    def _stop(**_kwargs: object) -> None:
        if "thread" in beat:
            beat["thread"].stopping.set()
            beat["thread"].join(timeout=3)
