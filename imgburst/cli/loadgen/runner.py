"""Running a load: submit batches on schedule (open model), watch the service, collect.

Arrivals follow the shape's schedule whatever the service does; a bounded pool of HTTP
requests sends them. An arrival that finds every slot busy is dropped and counted (as
k6 counts dropped iterations), so a slow API shows up as drops, not as a quietly lower
rate. With `clients` set the model is closed instead (a soak): that many clients each
submit again as soon as their previous submission is answered, for the shape's duration.
A poller samples `/api/v1/stats` every second for the live view and the report.
After the schedule ends, the run waits (bounded) for the batches it submitted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests

from imgburst.cli.loadgen.shapes import Shape
from imgburst.cli.loadgen.workload import Workload
from imgburst.core.statuses import BATCH_FINAL


@dataclass
class Submit:
    """One batch submission."""

    at: float  # seconds from the start of the run (scheduled arrival)
    latency_s: float | None = None
    status: int = 0  # HTTP status; 0: no answer (connection error, timeout)
    images: int = 0
    batch_id: str | None = None
    error: str | None = None


@dataclass
class Sample:
    """One look at `/api/v1/stats`."""

    at: float
    waiting: int
    in_flight: int
    base: int
    burst_running: int
    burst_pending: int
    throughput: float


@dataclass
class RunResult:
    started: float  # epoch
    duration_s: float
    submits: list[Submit]
    dropped: int
    samples: list[Sample]
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    waited_s: float = 0.0


@dataclass
class Options:
    url: str
    shape: Shape
    workload: Workload
    batch_size: int = 10
    recipe: str | None = None
    preset: str | None = None
    api_key: str | None = None
    max_in_flight: int = 16
    wait_s: float = 120.0
    request_timeout_s: float = 120.0
    clients: int | None = None  # closed model: this many clients back to back


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class LoadRun:
    def __init__(self, options: Options) -> None:
        self.o = options
        self.session = requests.Session()
        if options.api_key:
            self.session.headers["Authorization"] = f"Bearer {options.api_key}"
        self.submits: list[Submit] = []
        self.samples: list[Sample] = []
        self.dropped = 0
        self.in_flight = 0
        self.lock = threading.Lock()
        self.stop_polling = threading.Event()
        self.started = 0.0
        self.batch_status: dict[str, str] = {}  # batch id -> last status seen while waiting

    # -- submit ---------------------------------------------------------------------

    def _submit(self, record: Submit, session: requests.Session | None = None) -> None:
        files = [("files", (name, data)) for name, data in self.o.workload.batch(self.o.batch_size)]
        form = {k: v for k, v in (("recipe", self.o.recipe), ("preset", self.o.preset)) if v}
        form["name"] = "loadgen soak" if self.o.clients else f"loadgen {self.o.shape.name}"
        record.images = len(files)
        began = time.perf_counter()
        try:
            response = (session or self.session).post(
                f"{self.o.url}/api/v1/batches", files=files, data=form,
                timeout=self.o.request_timeout_s)
            record.latency_s = time.perf_counter() - began
            record.status = response.status_code
            if response.status_code == 202:
                record.batch_id = response.json()["id"]
            else:
                record.error = _problem(response)
        except requests.RequestException as exc:
            record.latency_s = time.perf_counter() - began
            record.error = f"{type(exc).__name__}: {exc}"
        finally:
            with self.lock:
                self.in_flight -= 1

    # -- watch ----------------------------------------------------------------------

    def _poll(self) -> None:
        while not self.stop_polling.is_set():
            try:
                stats = self.session.get(f"{self.o.url}/api/v1/stats", timeout=5).json()
                w = stats["workers"]
                self.samples.append(Sample(
                    at=round(time.time() - self.started, 3), waiting=stats["queue"]["waiting"],
                    in_flight=stats["queue"]["in_flight"], base=w["base"],
                    burst_running=w["burst_running"], burst_pending=w["burst_pending"],
                    throughput=stats["throughput"]["last_10s"]))
            except (requests.RequestException, ValueError, KeyError):
                pass
            self.stop_polling.wait(1.0)

    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    # -- run ------------------------------------------------------------------------

    def run(self, on_tick: Callable[[LoadRun, str], None] = lambda _run, _phase: None
            ) -> RunResult:
        arrivals = self.o.shape.arrivals()
        self.started = time.time()
        poller = threading.Thread(target=self._poll, daemon=True, name="stats-poller")
        poller.start()
        if self.o.clients:
            self._run_closed(on_tick)
            return self._finish(poller, on_tick)
        clock0 = time.monotonic()
        futures: list[Future[None]] = []
        last_tick = 0.0
        with ThreadPoolExecutor(self.o.max_in_flight, thread_name_prefix="submit") as pool:
            for at in arrivals:
                while (now := time.monotonic() - clock0) < at:
                    if now - last_tick >= 0.25:
                        on_tick(self, "load")
                        last_tick = now
                    time.sleep(min(0.05, at - now))
                record = Submit(at=at)
                with self.lock:
                    busy = self.in_flight >= self.o.max_in_flight
                    if not busy:
                        self.in_flight += 1
                if busy:
                    self.dropped += 1
                    continue
                self.submits.append(record)
                futures.append(pool.submit(self._submit, record))
            while time.monotonic() - clock0 < self.o.shape.duration:
                on_tick(self, "load")
                time.sleep(0.1)
            for future in futures:
                future.result()
        return self._finish(poller, on_tick)

    def _run_closed(self, on_tick: Callable[[LoadRun, str], None]) -> None:
        """`clients` threads, each with its own connection, submitting back to back."""
        clock0 = time.monotonic()

        def client() -> None:
            session = requests.Session()
            session.headers.update(self.session.headers)
            while (at := time.monotonic() - clock0) < self.o.shape.duration:
                record = Submit(at=round(at, 3))
                with self.lock:
                    self.in_flight += 1
                    self.submits.append(record)
                self._submit(record, session)

        threads = [threading.Thread(target=client, name=f"client-{i}", daemon=True)
                   for i in range(self.o.clients or 0)]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            on_tick(self, "load")
            time.sleep(0.25)

    def _finish(self, poller: threading.Thread,
                on_tick: Callable[[LoadRun, str], None]) -> RunResult:
        waited = self._wait_for_batches(on_tick)
        self.stop_polling.set()
        poller.join(timeout=5)
        result = RunResult(started=self.started, duration_s=self.o.shape.duration,
                           submits=self.submits, dropped=self.dropped, samples=self.samples,
                           waited_s=waited)
        self._collect(result)
        return result

    def _wait_for_batches(self, on_tick: Callable[[LoadRun, str], None]) -> float:
        """Poll our batches until they are final or `wait_s` passes. Oldest first, and a
        round stops at the first unfinished one: the queue is FIFO, so the newer ones are
        not done either (thousands of batches cost a few requests a round)."""
        began = time.monotonic()
        pending = [s.batch_id for s in self.submits if s.batch_id]
        while pending and time.monotonic() - began < self.o.wait_s:
            for batch_id in list(pending):
                try:
                    status = self.session.get(f"{self.o.url}/api/v1/batches/{batch_id}",
                                              timeout=10).json()["status"]
                except (requests.RequestException, ValueError, KeyError):
                    break
                self.batch_status[batch_id] = status
                if status not in BATCH_FINAL:
                    break
                pending.remove(batch_id)
            on_tick(self, "wait")
            if pending:
                time.sleep(0.5)
        return time.monotonic() - began

    def _collect(self, result: RunResult) -> None:
        """Each batch and its jobs, with the store's timestamps (8 requests at a time: a
        soak leaves thousands of batches)."""

        def fetch(batch_id: str) -> tuple[str, dict[str, Any], list[dict[str, Any]]] | None:
            try:
                batch = self.session.get(f"{self.o.url}/api/v1/batches/{batch_id}",
                                         timeout=30).json()
                jobs = self.session.get(
                    f"{self.o.url}/api/v1/batches/{batch_id}/jobs?limit=1000",
                    timeout=30).json()["items"]
            except (requests.RequestException, ValueError, KeyError):
                return None
            return batch_id, batch, jobs

        ids = [s.batch_id for s in self.submits if s.batch_id]
        with ThreadPoolExecutor(8, thread_name_prefix="collect") as pool:
            for found in pool.map(fetch, ids):
                if found is not None:
                    result.batches[found[0]] = found[1]
                    result.jobs.extend(found[2])


def _problem(response: requests.Response) -> str:
    try:
        body = response.json()
        return f"{body.get('title')}: {body.get('detail')}"
    except ValueError:
        return response.text[:200]
