"""A worker whose consumer went deaf restarts it.

Celery's Redis consumer can come back from a broker reconnect alive but deaf: its event
loop turns, its heartbeat (another thread, another connection) goes on, yet it never
reads the queue again, and the jobs wait in Redis until someone restarts the worker. It
is a known family of kombu bugs, fixed and found again: celery/celery#8030 ("Worker stops
consuming tasks after redis reconnection", fixed by celery/kombu#2007), celery/kombu#2492
(a stale channel's disconnect removed the new one's poll callback) and celery/kombu#2629
("Redis consumer stops receiving after reconnect before the next poll tick": the channel
stays marked as polling, with no reader for its socket). Nothing fails, so nothing retries.

The heartbeat samples the worker every second. `StallWatch` is the policy (pure): a
worker that is consuming, holds no job, has started none, and has seen messages waiting
in its queue on every sample for `after_s` is deaf: a listening worker with a free slot
takes a waiting message within milliseconds. `restart_consumer` is the cure: it raises a
connection error inside the consumer's own event loop, so Celery takes the path it takes
for a broker that dropped the connection (a new connection, its queues declared and
polled again). It acts only while the worker holds nothing, so no task is cancelled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

STALE_S = 5.0  # a restart the loop runs later than this was for a loop already restarting


class ConsumerStalled(ConnectionError):
    """Raised in the consumer's loop: Celery handles it as a lost broker connection."""


class StallWatch:
    """Whether a worker's consumer has stopped taking the messages its queue holds."""

    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self.since: float | None = None  # first sample of the current stall
        self.processed = -1

    def observe(self, now: float, idle: bool, processed: int,
                waiting: Callable[[], int]) -> bool:
        """One sample: `idle` (consuming, holding no job), `processed` (tasks started so
        far: Celery's `state.total_count`) and `waiting` (messages in the queue, read only
        when the rest says stall). True once every sample for `after_s` said stall; the
        watch then starts afresh."""
        progressed = processed != self.processed
        self.processed = processed
        if not idle or progressed or not waiting():
            self.since = None
            return False
        if self.since is None:
            self.since = now
        if now - self.since < self.after_s:
            return False
        self.since = None
        return True


def restart_consumer(consumer: Any, why: str, busy: Callable[[], bool]) -> bool:
    """Ask the consumer's event loop (thread-safe: kombu's `Hub.call_soon`) to restart its
    broker connection, unless `busy` by then; False when the worker has no loop to ask."""
    hub = getattr(consumer, "hub", None)
    if hub is None:
        return False
    asked = time.monotonic()

    def stalled() -> None:
        if time.monotonic() - asked > STALE_S or busy():
            return  # the loop was already reconnecting, or the worker took a job since
        raise ConsumerStalled(why)

    hub.call_soon(stalled)
    return True
