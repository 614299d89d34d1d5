"""`imgburst up` stops in order: the terminal's Ctrl-C under load prints no traceback, a
restart on the same home finishes the work with nothing left in flight, and a `kill -9`
of `up` leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import free_port, wait_until
from helpers import descendants

from imgburst.core.synthetic import photo_bytes

FINAL = ("succeeded", "failed", "partial", "cancelled")


def start_up(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`up` as a terminal runs it: the leader of its own foreground process group."""
    before = log.read_text().count("imgburst is up") if log.exists() else 0
    up = subprocess.Popen([sys.executable, "-m", "imgburst.cli", "up", "--no-auth",
                           "--concurrency", "1"], env=env, stdout=log.open("ab"),
                          stderr=subprocess.STDOUT, start_new_session=True)
    wait_until(lambda: log.read_text().count("imgburst is up") > before
               or up.poll() is not None, 90, "imgburst up to be ready")
    assert up.poll() is None, log.read_text()
    return up


def batch_status(url: str, batch_id: str) -> str:
    return requests.get(f"{url}/api/v1/batches/{batch_id}", timeout=5).json()["status"]


def alive(pids: set[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()
            and "zombie" not in Path(f"/proc/{pid}/status").read_text()]


@pytest.mark.services
@pytest.mark.slow
def test_ctrl_c_under_load_stops_in_order_and_a_restart_finishes_the_work(tmp_path):
    port = free_port()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "SCALER_COOLDOWN_S": "2",
           "IMGBURST_HOME": str(tmp_path / "var"), "IMGBURST_PORT": str(port)}
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "up.log"
    up = start_up(env, log)
    children = descendants(up.pid)
    photos = [("files", (f"p{i}.jpg", photo_bytes(i, 2400, 1800), "image/jpeg"))
              for i in range(24)]
    slow = '{"outputs": [{"name": "full", "format": "png", "ops": []}]}'  # ~0.3 s a job
    batch = requests.post(f"{url}/api/v1/batches", files=photos, data={"recipe": slow},
                          timeout=60).json()

    def some_done() -> bool:
        counts = requests.get(f"{url}/api/v1/batches/{batch['id']}", timeout=5).json()["counts"]
        return counts.get("succeeded", 0) >= 3

    wait_until(some_done, 60, "the batch to be under way")
    before = len(log.read_text().splitlines())
    os.killpg(up.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
    interrupted = time.monotonic()
    assert up.wait(timeout=90) == 0, log.read_text()
    said = log.read_text().splitlines()[before:]
    assert not [line for line in said if "Traceback" in line or "Couldn't ack" in line
                or "Error" in line or "refused" in line], "\n".join(said)
    jobs_log = re.compile(r"^\[[-0-9 :,]+: INFO/\w+-?\d*\] (Task|job) ")  # the worker's work
    stopping = [line for line in said if not jobs_log.match(line)]
    assert len(stopping) <= 12, "\n".join(stopping)
    assert not alive(children), log.read_text()

    up = start_up(env, log)  # the same home: the embedded Redis kept the queue
    try:
        wait_until(lambda: batch_status(url, batch["id"]) in FINAL, 120,
                   "the batch to finish after the restart")
        print(f"Ctrl-C under load, then up again -> every job final: "
              f"{time.monotonic() - interrupted:.1f} s")
        done = requests.get(f"{url}/api/v1/batches/{batch['id']}", timeout=5).json()
        assert done["status"] == "succeeded" and done["counts"]["succeeded"] == 24, done
        wait_until(lambda: requests.get(f"{url}/api/v1/stats", timeout=5).json()["queue"]
                   == {"waiting": 0, "in_flight": 0}, 20, "nothing left in flight")
    finally:
        os.killpg(up.pid, signal.SIGINT)
        assert up.wait(timeout=90) == 0, log.read_text()


@pytest.mark.services
@pytest.mark.slow
def test_a_killed_up_leaves_no_process_behind(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
           "IMGBURST_HOME": str(tmp_path / "var"), "IMGBURST_PORT": str(free_port())}
    log = tmp_path / "up.log"
    up = start_up(env, log)
    children = descendants(up.pid)
    assert len(children) >= 4  # redis, api, worker (+ its pool), scaler
    up.kill()  # no Ctrl-C, no finally: the kernel tells each child its parent is gone
    up.wait()
    deadline = time.monotonic() + 60
    while alive(children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(children), [Path(f"/proc/{p}/cmdline").read_bytes()
                                 for p in alive(children)]
