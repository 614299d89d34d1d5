"""A local burst worker leaves with the scaler that started it.

The local backend's workers are the scaler's child processes. If the scaler is killed
(SIGKILL, a crash) nothing would ever drain them: they would consume forever, unseen by
the next scaler. With `--parent-pid` the worker's main process watches its parent and,
once it is gone (even before the worker got going), sends itself SIGTERM: Celery's warm
shutdown, which finishes the task in hand and gives back what it had reserved. (Pods
have no such problem: the kubernetes backend finds them again by label.)
"""

from __future__ import annotations

import os
import signal
import threading
import time

CHECK_S = 0.5


def exit_with_parent(parent: int) -> threading.Thread:
    """Watch `parent` (the pid that started us; reparented means it died)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(CHECK_S)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="lifeline", daemon=True)
    thread.start()
    return thread
