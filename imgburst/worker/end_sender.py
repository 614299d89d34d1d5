"""Job-end telemetry written off the job's path, by one thread per pool process.

A job's end goes to Redis for the dashboard and for a client waiting on its batch (see
`core.telemetry.record_ends`). Written inline, its round trip was a fifth of a tiny
job's time in a pool process, spent waiting for Redis. Here the job hands it over and
goes on; the thread writes whatever has piled up in one pipeline. The job store stays
the record: what is lost with a killed process is a dashboard sample, and a waiting
client then wakes at its long-poll timeout instead.
"""

from __future__ import annotations

import logging
import queue
import threading

import redis

from imgburst.core.telemetry import Ended, record_ends

log = logging.getLogger("imgburst.worker")
MAX_PER_WRITE = 256


class EndSender:
    """Queues `Ended` records; a daemon thread, started on the first, writes them."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.pending: queue.SimpleQueue[Ended] = queue.SimpleQueue()
        self.idle = threading.Condition()
        self.unwritten = 0  # queued or being written
        self.thread: threading.Thread | None = None

    def send(self, end: Ended) -> None:
        with self.idle:
            self.unwritten += 1
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="imgburst-ends",
                                               daemon=True)
                self.thread.start()
        self.pending.put(end)

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until everything sent is written (a process about to exit); False if the
        time ran out first."""
        with self.idle:
            return self.idle.wait_for(lambda: self.unwritten == 0, timeout)

    def _run(self) -> None:
        while True:
            ends = [self.pending.get()]
            while len(ends) < MAX_PER_WRITE:
                try:
                    ends.append(self.pending.get_nowait())
                except queue.Empty:
                    break
            try:
                record_ends(self.client, ends)
            except Exception:  # a bug must not stop the thread (Redis errors are dropped)
                log.exception("job-end telemetry not written")
            finally:
                with self.idle:
                    self.unwritten -= len(ends)
                    self.idle.notify_all()
