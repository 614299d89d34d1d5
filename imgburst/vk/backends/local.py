"""Local backend: burst workers are `imgburst worker --pool burst` processes on this machine.

So `imgburst up` shows real bursting on a laptop. Each process is named
`burst@<host>-<id>`; stopping sends SIGTERM, Celery's warm shutdown, and a worker whose
scaler died shuts itself down the same way (`--parent-pid`). When several are
asked for at once they start `STAGGER_S` apart: a worker spends about a second of CPU
starting, and on a machine already busy with the spike, starting them all together
would make the first one consume seconds later.
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
from imgburst.vk.backends.base import BackendWorker

STOP_GRACE_S = 60
STAGGER_S = 0.75


class LocalBackend:
    name = "local"

    def __init__(self, env: Mapping[str, str], concurrency: int = 1) -> None:
        self.env = dict(env)
        self.concurrency = concurrency
        # name -> (process, or None while its staggered start is pending; created at)
        self.procs: dict[str, tuple[subprocess.Popen[bytes] | None, float]] = {}
        self.lock = threading.Lock()

    def workers(self) -> list[BackendWorker]:
        with self.lock:
            for name, (proc, _) in list(self.procs.items()):
                if proc is not None and proc.poll() is not None:
                    del self.procs[name]
            return [BackendWorker(name, created, f"pid {proc.pid}" if proc else "starting")
                    for name, (proc, created) in self.procs.items()]

    def start(self, count: int) -> list[str]:
        names = [worker_name("burst", f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}")
                 for _ in range(count)]
        now = time.time()
        with self.lock:
            for name in names:
                self.procs[name] = (None, now)
        if names:
            self._launch(names[0])
        if len(names) > 1:
            threading.Thread(target=self._launch_staggered, args=(names[1:],),
                             daemon=True).start()
        return names

    def _launch_staggered(self, names: list[str]) -> None:
        for name in names:
            time.sleep(STAGGER_S)
            self._launch(name)

    def _launch(self, name: str) -> None:
        with self.lock:
            if name not in self.procs:  # stopped before it started
                return
        proc = subprocess.Popen(
            [sys.executable, "-m", "imgburst.cli", "worker", "--pool", "burst", "--name", name,
             "--concurrency", str(self.concurrency), "--parent-pid", str(os.getpid())],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        with self.lock:
            if name in self.procs:
                self.procs[name] = (proc, self.procs[name][1])
                return
        proc.terminate()  # stopped while it was being launched

    def stop(self, name: str) -> None:
        with self.lock:
            proc = self.procs.get(name, (None, 0.0))[0]
            if proc is None:
                self.procs.pop(name, None)
                return
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
        """The local burst workers are ours: stop them all (warm shutdown, in parallel)."""
        with self.lock:
            running = [p for p, _ in self.procs.values() if p is not None and p.poll() is None]
            for name in [n for n, (p, _) in self.procs.items() if p is None]:
                del self.procs[name]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        for item in self.workers():
            self.stop(item.name)
