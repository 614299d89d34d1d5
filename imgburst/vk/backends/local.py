"""Local backend: burst workers are `imgburst worker --pool burst` processes on this machine.

So `imgburst up` shows real bursting on a laptop. Each process is named
`burst@<host>-<id>`; stopping sends SIGTERM, Celery's warm shutdown.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping

from imgburst.core.celery_app import worker_name
from imgburst.vk.backends import BackendWorker

STOP_GRACE_S = 60


class LocalBackend:
    name = "local"

    def __init__(self, env: Mapping[str, str], concurrency: int = 1,
                 log_dir: str | None = None) -> None:
        self.env = dict(env)
        self.concurrency = concurrency
        self.log_dir = log_dir
        self.procs: dict[str, tuple[subprocess.Popen[bytes], float]] = {}
        self.lock = threading.Lock()

    def workers(self) -> list[BackendWorker]:
        with self.lock:
            for name, (proc, _) in list(self.procs.items()):
                if proc.poll() is not None:
                    del self.procs[name]
            return [BackendWorker(name, created, f"pid {proc.pid}")
                    for name, (proc, created) in self.procs.items()]

    def start(self, count: int) -> list[str]:
        names = []
        for _ in range(count):
            name = worker_name("burst", f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}")
            out = subprocess.DEVNULL
            if self.log_dir:
                out = open(os.path.join(self.log_dir, f"{name}.log"), "wb")  # noqa: SIM115
            proc = subprocess.Popen(
                [sys.executable, "-m", "imgburst.cli", "worker", "--pool", "burst", "--name",
                 name, "--concurrency", str(self.concurrency)],
                env=self.env, stdout=out, stderr=subprocess.STDOUT)
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
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with self.lock:
            self.procs.pop(name, None)

    def close(self) -> None:
        """The local burst workers are ours: stop them all (warm shutdown)."""
        for item in self.workers():
            with self.lock:
                proc = self.procs[item.name][0]
            proc.send_signal(signal.SIGTERM)
        for item in self.workers():
            self.stop(item.name)
