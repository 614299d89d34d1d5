"""The worker's heartbeat: every second, its pool, load and consuming state into Redis.

The scaler reads it (`core.telemetry.live_workers`) to count live capacity, to see when a
new burst worker starts consuming, and to know when a draining worker holds no task.
Cheaper and faster than Celery's broadcast `inspect` (which waits for every reply). Each
beat is also a sample for the stall watch (`worker.stall`): a consumer gone deaf after a
broker reconnect is restarted.
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
from imgburst.core.telemetry import WorkerInfo, remove_heartbeat, waiting, write_heartbeat
from imgburst.worker.stall import StallWatch, restart_consumer

log = logging.getLogger("imgburst.worker")
INTERVAL_S = 1.0


def holds_a_job() -> bool:
    """Whether this worker (its main process) has a task running or reserved."""
    return bool(state.active_requests or state.reserved_requests)


class Heartbeat(threading.Thread):
    home: Path | None = None  # where the liveness file goes (None: no file)

    def __init__(self, consumer: Any, broker_url: str, stall_s: float = 0.0) -> None:
        super().__init__(name="imgburst-heartbeat", daemon=True)
        self.consumer = consumer
        self.stall = StallWatch(stall_s) if stall_s > 0 else None
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

    def beat(self) -> WorkerInfo | None:
        """Write a snapshot; it, or None when Redis did not take it."""
        info = self.snapshot()
        try:
            write_heartbeat(self.client, info)
        except redis.RedisError as exc:
            log.warning("heartbeat not written: %s", exc)
            return None
        return info

    def watch_stall(self, info: WorkerInfo) -> None:
        """Restart the consumer once the stall watch says it went deaf."""
        if self.stall is None:
            return
        idle = info.consuming and not info.active and not info.reserved
        if self.stall.observe(time.monotonic(), idle, info.processed,
                              lambda: waiting(self.client)):
            why = (f"the consumer took no message for {self.stall.after_s:g} s while its "
                   "queue held some (IMGBURST_WORKER_STALL_S)")
            if restart_consumer(self.consumer, why, holds_a_job):
                log.warning("%s: restarting its broker connection", why)

    def run(self) -> None:
        while not self.stopping.wait(INTERVAL_S):
            info = self.beat()
            if info is not None:
                with contextlib.suppress(redis.RedisError):
                    self.watch_stall(info)
            if self.home is not None:  # the pod's liveness probe reads it
                touch(self.home, "worker")
        with contextlib.suppress(redis.RedisError):
            remove_heartbeat(self.client, self.worker_name)


def start(consumer: Any, broker_url: str, home: Path | None = None,
          stall_s: float = 0.0) -> Heartbeat:
    """A running heartbeat whose first beat is already written: called as the consumer's
    event loop is about to run (`worker_ready`), so the worker is in the registry before
    it can take a task, and whoever sees its task in flight also sees the worker."""
    beat = Heartbeat(consumer, broker_url, stall_s)
    beat.home = home
    beat.beat()
    beat.start()
    return beat


def install(app: Celery, home: Path | None = None, stall_s: float = 0.0) -> None:
    """Start the heartbeat when the worker is ready; remove it at shutdown. With `home`,
    each beat also touches the file `imgburst alive worker` reads (core/alive.py); with
    `stall_s`, a consumer deaf that long is restarted (`worker.stall`)."""
    beat: dict[str, Heartbeat] = {}

    @worker_ready.connect(weak=False)
    def _start(sender: Any = None, **_kwargs: object) -> None:
        beat["thread"] = start(sender, app.conf.broker_url, home, stall_s)

    @worker_shutdown.connect(weak=False)
    def _stop(**_kwargs: object) -> None:
        if "thread" in beat:
            beat["thread"].stopping.set()
            beat["thread"].join(timeout=3)
