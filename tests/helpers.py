"""Small helpers shared by the tests: submitting through the Flask test client, waiting,
reconciling after a fault, stopping `imgburst up` with Ctrl-C, and a TCP gate that fakes a
database outage."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

FINAL = {"succeeded", "failed", "partial", "cancelled"}


def ctrl_c(up: subprocess.Popen, log: Path, timeout: float = 60) -> int:
    """Stop `imgburst up` as Ctrl-C does and return its exit code; if it does not stop,
    SIGTERM it (so no stack outlives the test) and fail with its log."""
    up.send_signal(signal.SIGINT)
    try:
        return up.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        up.terminate()
        up.wait(timeout=timeout)
        raise AssertionError(f"imgburst up ignored Ctrl-C for {timeout:g} s:\n"
                             f"{log.read_text(errors='replace')}") from None


def submit(client: FlaskClient, files: list[tuple[str, bytes]],
           recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"files": [(io.BytesIO(body), name) for name, body in files]}
    if recipe is not None:
        data["recipe"] = json.dumps(recipe)
    response = client.post("/api/v1/batches", data=data, content_type="multipart/form-data")
    assert response.status_code == 202, response.get_json()
    assert response.headers["Location"] == f"/api/v1/batches/{response.get_json()['id']}"
    return response.get_json()


def download(client: FlaskClient, url: str) -> bytes:
    """An output's bytes by its signed URL: this API's route, or a SAS URL on Azure."""
    if url.startswith(("http://", "https://")):
        import requests

        response = requests.get(url, timeout=30)
        assert response.status_code == 200, response.text
        return response.content
    answer = client.get(url)
    assert answer.status_code == 200, answer.get_json()
    return answer.data


def wait_batch(client: FlaskClient, batch_id: str, timeout: float = 120,
               logs: Path | None = None, broker: Any = None) -> dict[str, Any]:
    """The batch once final; on a time-out, the failure names its counts and, given
    them, the tails of the processes' logs under `logs` and what `broker` holds (a fault
    test that fails once in many runs is then explained by its one failure)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = client.get(f"/api/v1/batches/{batch_id}").get_json()
        if batch["status"] in FINAL:
            return batch
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} not done after {timeout} s: {batch}"
                         f"{explain(logs, broker)}")


def explain(logs: Path | None, broker: Any) -> str:
    from imgburst.core.telemetry import in_flight, live_workers, waiting

    parts = []
    if broker is not None:
        parts.append(f"broker: {waiting(broker)} waiting, {in_flight(broker)} in flight; "
                     f"workers: {live_workers(broker)}")
    for log in sorted(logs.glob("*.log")) if logs is not None else ():
        tail = log.read_text(errors="replace").splitlines()[-40:]
        parts.append(f"--- {log.name} (last {len(tail)} lines)\n" + "\n".join(tail))
    return "".join(f"\n{part}" for part in parts)


def jobs_of(client: FlaskClient, batch_id: str) -> list[dict[str, Any]]:
    return client.get(f"/api/v1/batches/{batch_id}/jobs?limit=1000").get_json()["items"]


def fit(width: int, height: int, box_w: int, box_h: int) -> tuple[int, int]:
    """What `resize mode=fit` (no enlarge) must produce."""
    scale = min(box_w / width, box_h / height)
    if scale >= 1:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def reconcile(settings: Any, accepted: dict[str, int],
              outputs_per_job: int | None = None) -> dict[str, int]:
    """After a fault: the API's 202s, the job store and the blob store agree.

    `accepted` maps each batch the API accepted to its job count. Every job must be in a
    final state; a succeeded job has exactly one set of outputs (rows, and blobs under its
    own prefix: no leftovers of a repeated run); a failed job says why and has no output
    rows. Returns the jobs counted by status."""
    from imgburst.core.blobs import blob_store_from_settings
    from imgburst.core.store import JobStore

    store, blobs = JobStore.from_settings(settings), blob_store_from_settings(settings)
    counts: dict[str, int] = {}
    by_batch: dict[str, set[str]] = {}
    for blob in blobs.list("outputs/"):  # one listing: a soak leaves thousands of batches
        by_batch.setdefault(blob.name.split("/")[1], set()).add(blob.name)
    try:
        for batch_id, expected in accepted.items():
            batch = store.get_batch(batch_id)
            assert batch is not None, f"accepted batch {batch_id} is not in the store"
            jobs = store.list_jobs(batch_id, 100_000, 0)
            assert len(jobs) == expected == batch.jobs, (batch_id, len(jobs), expected)
            stored = by_batch.get(batch_id, set())
            recorded = set()
            for job in jobs:
                counts[job.status] = counts.get(job.status, 0) + 1
                assert job.status in ("succeeded", "failed", "cancelled"), job
                paths = [o.blob_path for o in job.outputs]
                if job.status == "succeeded":
                    assert paths and len(set(o.name for o in job.outputs)) == len(paths)
                    if outputs_per_job is not None:
                        assert len(paths) == outputs_per_job, job
                    mine = {p for p in stored if p.startswith(f"outputs/{batch_id}/{job.id}/")}
                    assert mine == set(paths), (job.id, mine, paths)
                else:
                    assert not paths, job
                    assert job.status == "cancelled" or job.error, job
                recorded |= set(paths)
            assert recorded <= stored, recorded - stored
    finally:
        store.dispose()
    return counts


class Gate:
    """A TCP forwarder (in front of MariaDB, or an API) that can be shut, as an outage
    would; with `drop_posts`, that many POSTs are cut as their answer begins (the request
    went through, the client never hears back: a dropped connection)."""

    def __init__(self, target: tuple[str, int], drop_posts: int = 0) -> None:
        self.target = target
        self.drop_posts = drop_posts
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = threading.Event()
        self.open.set()
        self.conns: list[socket.socket] = []
        self.listener.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            self.conns += [client, upstream]
            posted: list[bool] = [False]  # this connection's latest request is a POST
            for a, b, asks in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pipe, args=(a, b, posted, asks),
                                 daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket, posted: list[bool] | None = None,
              asks: bool = True) -> None:
        try:
            while data := a.recv(65536):
                if posted is not None and asks and data[:5] in (b"POST ", b"GET /"):
                    posted[0] = data.startswith(b"POST ")
                elif posted is not None and not asks and posted[0] and self.drop_posts > 0:
                    self.drop_posts -= 1
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def shut(self) -> None:
        self.open.clear()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self.conns.clear()

    def reopen(self) -> None:
        self.open.set()


def start_scaler(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`imgburst scaler` as its own process, logging to `log`."""
    import sys

    return subprocess.Popen([sys.executable, "-m", "imgburst.cli", "scaler"], env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def reconciler_env(env: dict[str, str]) -> dict[str, str]:
    """No burst workers: the scaler runs for its reconciler."""
    return env | {"SCALER_MAX_BURST": "0", "SCALER_POLL_S": "0.5"}


def start_reconciling(env: dict[str, str], log: Path, broker: Any) -> subprocess.Popen[bytes]:
    """The scaler, once its reconciler's first pass has written the broker's epoch. On a
    broker without one, that pass sends every queued job again (it can't tell a new
    broker from one that lost its data): a batch submitted before it would be queued
    twice, and the second copy could run a job before the fault under test."""
    from conftest import wait_until

    from imgburst.core.reconcile import EPOCH_KEY

    scaler = start_scaler(env, log)
    wait_until(lambda: broker.exists(EPOCH_KEY), 60, "the reconciler's first pass")
    return scaler


def draining_with_a_job(broker: Any) -> Any:
    """A burst worker the scaler is draining while its heartbeat shows a job in hand
    (its WorkerInfo), or None."""
    from imgburst.core.telemetry import live_workers, scaler_state

    beats = {w.name: w for w in live_workers(broker)}
    for name, phase in ((scaler_state(broker) or {}).get("burst") or {}).items():
        beat = beats.get(name)
        if phase == "draining" and beat is not None and beat.active:
            return beat
    return None


def submit_until_a_busy_drain(client: FlaskClient, broker: Any, files: list[tuple[str, bytes]],
                              recipe: dict[str, Any], why: str) -> tuple[dict[str, int], Any]:
    """Submit `files` as a batch, again (3 batches at most) until the scaler drains a burst
    worker with a job in hand; returns the accepted batches' job counts and that worker."""
    accepted: dict[str, int] = {}
    while True:
        assert len(accepted) < 3, f"3 batches and no burst worker drained with a job: {why}"
        batch = submit(client, files, recipe)
        accepted[batch["id"]] = len(files)
        deadline = time.monotonic() + 180
        while client.get(f"/api/v1/batches/{batch['id']}").get_json()["status"] not in FINAL:
            assert time.monotonic() < deadline, f"the batch did not finish: {why}"
            victim = draining_with_a_job(broker)
            if victim is not None:
                return accepted, victim
            time.sleep(0.05)


def descendants(pid: int) -> set[int]:
    """Every process under `pid` (its children, theirs, ...), read from /proc."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        for child in children:
            found |= {int(child)} | descendants(int(child))
    return found
