"""A burst worker leaves with the install that started it.

The local backend's workers are the scaler's child processes. If the scaler is killed
(SIGKILL, a crash) nothing would ever drain them: they would consume forever, unseen by
the next scaler. With `--parent-pid` the worker's main process watches its parent and,
once it is gone (even before the worker got going), sends itself SIGTERM: Celery's warm
shutdown, which finishes the task in hand and gives back what it had reserved.

A burst pod has no parent to watch and no API token to read the Lease, so it reads the
acting scaler's heartbeat in Redis instead (`core.telemetry.leader`): once it has seen
none for `IMGBURST_ORPHAN_AFTER_S` and holds no job, it warm-shuts down the same way.
Its container exits 0, the pod turns Succeeded, and ACI stops billing a container group
whose containers have all stopped. (While a scaler runs, even a standby's leader, the
heartbeat is there: the scaler drains its pods itself.)
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable

import redis

from imgburst.core.telemetry import leader

CHECK_S = 0.5
ORPHAN_CHECK_S = 5.0
log = logging.getLogger("imgburst.worker")


def exit_with_parent(parent: int) -> threading.Thread:
    """Watch `parent` (the pid that started us; reparented means it died)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(CHECK_S)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="lifeline", daemon=True)
    thread.start()
    return thread


def exit_when_orphaned(broker_url: str, after_s: float, busy: Callable[[], bool],
                       check_s: float = ORPHAN_CHECK_S) -> threading.Thread:
    """Warm-shut down once no scaler has been seen for `after_s` and no job is in hand.
    Redis unreachable says nothing: only a Redis that answers "no scaler" counts."""
    client = redis.Redis.from_url(broker_url, socket_timeout=5)

    def watch() -> None:
        seen = time.monotonic()
        while True:
            time.sleep(check_s)
            try:
                if leader(client) is not None:
                    seen = time.monotonic()
                    continue
            except redis.RedisError:
                seen = time.monotonic()
                continue
            if time.monotonic() - seen > after_s and not busy():
                log.warning("no scaler seen for %.0f s: this burst worker leaves", after_s)
                os.kill(os.getpid(), signal.SIGTERM)
                return

    thread = threading.Thread(target=watch, name="orphan-watch", daemon=True)
    thread.start()
    return thread
