"""Local backend: burst workers are Celery worker processes on this machine.

So `imgburst up` shows real bursting on a laptop. Each worker is forked from the scaler,
which has imported the worker code once already: a new worker skips about a second of
CPU spent on imports, which matters most when the spike has the machine busy.
Each is named `burst@<host>-<id>`; stopping sends SIGTERM, Celery's warm shutdown.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import uuid
from multiprocessing.process import BaseProcess

from imgburst.core.celery_app import QUEUE, worker_name
from imgburst.core.settings import Settings
from imgburst.vk.backends import BackendWorker

STOP_GRACE_S = 60


def _run_worker(settings: Settings, name: str, concurrency: int, log_path: str | None) -> None:
    """Body of a forked burst worker: a fresh Celery worker on the images queue."""
    from imgburst.worker.tasks import create_worker_app

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    target = os.open(log_path or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(target, 1)
    os.dup2(target, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    create_worker_app(settings).worker_main([
        "worker", "--queues", QUEUE, "--hostname", name, "--concurrency", str(concurrency),
        "--loglevel", "INFO", "--without-mingle", "--without-gossip", "--pool", "prefork"])


class LocalBackend:
    name = "local"

    def __init__(self, settings: Settings, concurrency: int = 1,
                 log_dir: str | None = None) -> None:
        import imgburst.worker.tasks  # noqa: F401  - imported once here, shared by every fork

        self.settings = settings
        self.concurrency = concurrency
        self.log_dir = log_dir
        self.procs: dict[str, tuple[BaseProcess, float]] = {}
        self.lock = threading.Lock()
        self.context = multiprocessing.get_context("fork")

    def workers(self) -> list[BackendWorker]:
        with self.lock:
            for name, (proc, _) in list(self.procs.items()):
                if not proc.is_alive():
                    proc.join(0)
                    del self.procs[name]
            return [BackendWorker(name, created, f"pid {proc.pid}")
                    for name, (proc, created) in self.procs.items()]

    def start(self, count: int) -> list[str]:
        names = []
        for _ in range(count):
            name = worker_name("burst", f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}")
            log_path = os.path.join(self.log_dir, f"{name}.log") if self.log_dir else None
            proc = self.context.Process(target=_run_worker, name=name, daemon=False,
                                        args=(self.settings, name, self.concurrency, log_path))
            proc.start()
            with self.lock:
                self.procs[name] = (proc, time.time())
            names.append(name)
        return names

    def stop(self, name: str) -> None:
        with self.lock:
            entry = self.procs.get(name)
        if entry is None:
            return
        proc = entry[0]
        if proc.is_alive():
            proc.terminate()  # SIGTERM: Celery's warm shutdown
        proc.join(STOP_GRACE_S)
        if proc.is_alive():
            proc.kill()
            proc.join()
        with self.lock:
            self.procs.pop(name, None)

    def close(self) -> None:
        """The local burst workers are ours: stop them all (warm shutdown)."""
        for item in self.workers():
            with self.lock:
                proc = self.procs[item.name][0]
            proc.terminate()
        for item in self.workers():
            self.stop(item.name)
